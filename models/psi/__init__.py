"""Ψ and Ψ3d (the tri-plane synthesiser) and their building blocks."""

from models.psi.network import Psi, PsiOutput, build_psi, init_psi_from_psi3d, is_cross_attention_param, param_groups

__all__ = ["Psi", "PsiOutput", "build_psi", "init_psi_from_psi3d", "is_cross_attention_param", "param_groups"]
