"""Ψ: the one-shot 4D head synthesiser, and Ψ3d (the same class with ``motion_scale = 0``).

``Psi(source [B,3,H,W] in [−1,1], motion_source [B,D], motion_driving [B,D]) → PsiOutput``
(tri-planes ``[B,3,C,R,R]`` + background ``[B,C_feat,H/2,W/2]``); ``Psi.render(output, cameras)``
renders it at cameras ``[B,25]`` or ``[B,K,25]`` (K views of one tri-plane, computed once).

Memory layout: the detail encoder, the token upsampler, the tri-plane decoder and the super-resolution run their
convolutions on channels-last activations and hand contiguous tensors on (issue 15, tiny, CPU, forward+backward:
super-resolution −35%, detail encoder −20%, tri-plane decoder −13%); the ResNet global encoder and the background
U-Net measured slower that way and stay contiguous. The weights stay contiguous (checkpoints unchanged).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from models import torchvision_compat as _tvc

# idempotent; before timm/lpips import torchvision (also when `models` was imported as a namespace package)
_tvc.install()
from models import cameras as cams
from models.config import ModelConfig
from models.psi.background import BackgroundUNet
from models.psi.decoder import OverlapPatchEmbed, TokenUpsampler, TriplaneDecoder
from models.psi.encoders import DetailEncoder, GlobalEncoder, add_coords
from models.psi.transformer import BlockCross, MotionMap, MotionTokens
from models.rendering.superres import SuperResolution
from models.rendering.triplane import TriplaneRenderer

CROSS_PREFIXES = ("maps_", "proj_y_")


def to_plane_frame(
    features: torch.Tensor, size: int, box_half: float, radius: float = cams.DEFAULT_RADIUS
) -> torch.Tensor:
    """Image-aligned features ``[B,C,h,w]`` → ``[B,C,size,size]`` on the (x,y) plane's grid.

    A frontal camera at ``radius`` sees the head's depth-0 slice over ±``radius·tan(fov/2)`` with image
    rows running along −y; plane texel (x, y) ∈ ±``box_half`` takes the feature of the pixel where that
    point projects (zero outside the image). Exact for frontal sources at depth 0; elsewhere a prior."""
    half_extent = radius / (2.0 * cams.FOCAL_NORMALISED)
    s = box_half / half_extent
    theta = features.new_tensor([[s, 0.0, 0.0], [0.0, -s, 0.0]]).expand(features.shape[0], 2, 3)
    grid = F.affine_grid(theta, [features.shape[0], features.shape[1], size, size], align_corners=False)
    return F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def is_cross_attention_param(name: str) -> bool:
    """True for the motion cross-attention parts: ``maps*``, ``proj_y*``, cross norms and attention."""
    return name.startswith(CROSS_PREFIXES) or ".cross_" in name


class PsiOutput(NamedTuple):
    triplanes: torch.Tensor  # [B, 3, C, R, R]
    background: torch.Tensor  # [B, C_feat, H/2, W/2] in [0, 1]


class Psi(nn.Module):
    """Ψ / Ψ3d. ``cfg.psi.motion_scale == 0`` makes it Ψ3d: cross-attention is skipped and its
    parameters are frozen (``requires_grad=False``), so the output ignores the motion inputs."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        p, r = cfg.psi, cfg.render
        self.motion_scale = float(p.motion_scale)
        self.global_encoder = GlobalEncoder(p.global_channels, p.aspp_rates, p.aspp_dropout, backbone=p.global_backbone)
        self.detail_encoder = DetailEncoder(p.detail_channels)
        k = 3 if p.patch_stride <= 2 else 7
        self.patch_embed = OverlapPatchEmbed(
            patch_size=k, stride=p.patch_stride, in_chans=p.global_channels, embed_dim=p.embed_dim
        )
        self.blocks_neutral = nn.ModuleList(BlockCross(p.embed_dim, p.heads, p.mlp_ratio) for _ in range(p.n_neutral))
        self.blocks_motion = nn.ModuleList(BlockCross(p.embed_dim, p.heads, p.mlp_ratio) for _ in range(p.n_motion))
        self.maps_neutral = MotionMap(p.motion_dim, p.motion_hidden)
        self.maps_motion = MotionMap(p.motion_dim, p.motion_hidden)
        self.proj_y_neutral = MotionTokens(p.motion_hidden, p.motion_token_grid, p.embed_dim)
        self.proj_y_motion = MotionTokens(p.motion_hidden, p.motion_token_grid, p.embed_dim)
        self.norm = nn.LayerNorm(p.embed_dim)
        n_up = (p.triplane_resolution // (2 * p.token_grid)).bit_length() - 1
        self.upsampler = TokenUpsampler(p.embed_dim, p.decoder_channels, p.detail_channels, n_up)
        self.triplane_decoder = TriplaneDecoder(
            p.detail_channels,
            p.decoder_channels,
            p.decoder_embed_dim,
            p.decoder_heads,
            p.decoder_sr_ratio,
            p.triplane_channels,
            p.mlp_ratio,
        )
        self.background = BackgroundUNet(r.feature_channels, p.bg_channels)
        self.renderer = TriplaneRenderer(r, p.triplane_channels)
        self.superres = SuperResolution(r.feature_channels, r.sr_channels, r.image_resolution // r.neural_resolution)
        if self.motion_scale == 0:
            for name, prm in self.named_parameters():
                if is_cross_attention_param(name):
                    prm.requires_grad_(False)

    @property
    def is_static(self) -> bool:
        return self.motion_scale == 0

    def forward(
        self,
        source: torch.Tensor,
        motion_source: torch.Tensor | None = None,
        motion_driving: torch.Tensor | None = None,
    ) -> PsiOutput:
        p = self.cfg.psi
        if source.dim() != 4 or source.shape[1] != 3:
            raise ValueError(f"source must be [B,3,H,W] in [-1,1]; got {tuple(source.shape)}")
        if source.shape[-1] != p.image_resolution or source.shape[-2] != p.image_resolution:
            raise ValueError(
                f"source resolution {tuple(source.shape[-2:])} != preset image_resolution {p.image_resolution}"
            )
        x5 = add_coords(source)
        g = self.patch_embed(self.global_encoder(x5))  # [B, G, G, D]
        b, gh, gw, d = g.shape
        tokens = g.reshape(b, gh * gw, d)
        ctx_n = ctx_m = None
        if not self.is_static:
            if motion_source is None or motion_driving is None:
                raise ValueError("Ψ (motion_scale != 0) needs motion_source and motion_driving [B, motion_dim]")
            ctx_n = self.proj_y_neutral(self.maps_neutral(motion_source))
            ctx_m = self.proj_y_motion(self.maps_motion(motion_driving))
        for blk in self.blocks_neutral:
            tokens = blk(tokens, (gh, gw), ctx_n, self.motion_scale)
        for blk in self.blocks_motion:
            tokens = blk(tokens, (gh, gw), ctx_m, self.motion_scale)
        global_up = self.upsampler(self.norm(tokens), gh)  # [B, Cd, R, R]
        detail = self.detail_encoder(x5)
        if p.plane_aligned:
            r = global_up.shape[-1]
            global_up = to_plane_frame(global_up, r, self.cfg.render.box_half)
            detail = to_plane_frame(detail, r, self.cfg.render.box_half)
        elif detail.shape[-1] != global_up.shape[-1]:
            detail = F.interpolate(detail, size=global_up.shape[-2:], mode="bilinear", align_corners=False)
        planes = self.triplane_decoder(global_up, detail)
        return PsiOutput(planes, self.background(x5))

    def render(
        self,
        output: PsiOutput,
        cameras: torch.Tensor,
        neural_resolution: int | None = None,
        generator: torch.Generator | None = None,
        perturb: bool | None = None,
        return_features: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Render at cameras ``[B,25]`` → ``[B,C,H,W]`` images, or ``[B,K,25]`` → ``[B,K,C,H,W]``.

        Keys: ``image`` (SR RGB at ``neural·scale``, in [−1,1]), ``image_raw`` (raw RGB at the
        neural resolution, background composited, in [−1,1]), ``foreground_raw`` (the volume's RGB
        without background, i.e. over black), ``background_raw`` (the background alone), ``alpha``, ``depth``
        (``[…,1,h,w]``), and with ``return_features`` the raw feature image ``features``.
        """
        multi = cameras.dim() == 3
        b = output.triplanes.shape[0]
        k = cameras.shape[1] if multi else 1
        res = neural_resolution or self.cfg.render.neural_resolution
        out = self.renderer(output.triplanes, cameras, resolution=res, generator=generator, perturb=perturb)
        # fp32 (a no-op outside autocast): the antialiased resize has no bf16 backward on the CPU
        bg = F.interpolate(
            output.background.float(), size=(res, res), mode="bilinear", align_corners=False, antialias=True
        )
        bg = bg[:, None].expand(b, k, *bg.shape[1:]).reshape(b * k, *bg.shape[1:])
        feat = (out["features"] + out["transmittance"] * bg) * 2.0 - 1.0
        result = {
            "image": self.superres(feat),
            "image_raw": feat[:, :3],
            "foreground_raw": out["features"][:, :3] * 2.0 - 1.0,  # the volume alone, over black
            "background_raw": bg[:, :3] * 2.0 - 1.0,  # the 2D background alone
            "alpha": out["alpha"],
            "depth": out["depth"],
        }
        if return_features:
            result["features"] = feat
        shape = (b, k) if multi else (b,)
        return {key: v.reshape(*shape, *v.shape[1:]) for key, v in result.items()}

    def synthesize(self, source, motion_source, motion_driving, cameras, **kw) -> dict[str, torch.Tensor]:
        """``render(forward(source, motion_source, motion_driving), cameras)``."""
        return self.render(self(source, motion_source, motion_driving), cameras, **kw)


def build_psi(cfg: ModelConfig, static: bool = False, device: torch.device | str | None = None) -> Psi:
    """Ψ from a preset (``static=True`` → Ψ3d, ``motion_scale = 0``). ``device='meta'`` builds without memory."""
    if static:
        cfg = cfg.model_copy(update={"psi": cfg.psi.model_copy(update={"motion_scale": 0.0})})
    if device is None:
        return Psi(cfg)
    with torch.device(device):
        return Psi(cfg)


def init_psi_from_psi3d(psi: Psi, psi3d_state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Copy every Ψ3d weight except the motion cross-attention parts; return the names not copied.

    Because cross-attention output projections are zero-initialised, Ψ then renders exactly
    what Ψ3d renders until its first update. Raises if a non-cross weight is missing or mis-shaped.
    """
    own = psi.state_dict()
    copied, skipped = {}, []
    for name, value in own.items():
        if is_cross_attention_param(name):
            skipped.append(name)
            continue
        if name not in psi3d_state_dict:
            raise KeyError(f"Ψ3d state dict lacks '{name}': it was not saved from a Ψ of the same preset")
        src = psi3d_state_dict[name]
        if src.shape != value.shape:
            raise ValueError(
                f"shape mismatch for '{name}': Ψ3d {tuple(src.shape)} vs Ψ {tuple(value.shape)} (different presets?)"
            )
        copied[name] = src
    psi.load_state_dict(copied, strict=False)
    return skipped


def param_groups(
    psi: nn.Module, lr: float, cross_attention_lr_mult: float = 2.5, weight_decay: float = 0.0
) -> list[dict]:
    """Optimiser groups: everything at ``lr``; cross-attention parts at ``lr · cross_attention_lr_mult``."""
    base, cross = [], []
    for name, prm in psi.named_parameters():
        if prm.requires_grad:
            (cross if is_cross_attention_param(name) else base).append(prm)
    groups = [{"name": "base", "params": base, "lr": lr, "weight_decay": weight_decay}]
    if cross:
        groups.append(
            {
                "name": "cross_attention",
                "params": cross,
                "lr": lr * cross_attention_lr_mult,
                "weight_decay": weight_decay,
            }
        )
    return groups
