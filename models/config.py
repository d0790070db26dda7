"""Typed architecture configuration of the networks (one preset = one ModelConfig).

Pydantic models so that presets load from YAML, validate, and serialise to JSON inside
checkpoints and artifact manifests. Stage parameters (steps, batch sizes, …) live in
``pipeline_tasks.config``; this module holds only what defines a network's shape, and the
loss terms (``LossConfig``, used by the training sections of ``pipeline_tasks.config``).
Sizes of the ``paper`` preset follow shared/reference/official-implementation-facts.md §2.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _is_pow2(x: int) -> bool:
    return x >= 1 and 2 ** int(round(math.log2(x))) == x


class RenderConfig(_Strict):
    """Tri-plane volume rendering and super-resolution (EG3D-style)."""

    image_resolution: int = 64  # output (super-resolved) image size
    neural_resolution: int = 32  # raw volume-render size
    n_coarse: int = 24  # stratified samples per ray
    n_fine: int = 24  # importance samples per ray
    box_half: float = 0.65  # head box half-size (box_warp / 2)
    decoder_hidden: int = 64
    feature_channels: int = 32  # decoder feature output; first 3 are RGB
    sr_channels: int = 64  # width of the first super-resolution stage (halved per ×2 stage)


class PsiConfig(_Strict):
    """Ψ / Ψ3d sizes (DESIGN.md §1, official-implementation-facts §2).

    Spatial chain: image → global encoder at image/8 → overlap patch embedding with stride
    (image/8)/token_grid → token_grid² ViT tokens → PixelShuffle(2) → ×2 upsamplings up to
    triplane_resolution.
    """

    image_resolution: int = 64
    triplane_channels: int = 16
    triplane_resolution: int = 64
    embed_dim: int = 128  # ViT token width
    token_grid: int = 8  # tokens per side of the ViT grid
    n_neutral: int = 2
    n_motion: int = 2
    heads: int = 4
    mlp_ratio: float = 2.0
    motion_dim: int = 64  # E_mot embedding size
    motion_token_grid: int = 4  # motion tokens per side (8 → 64 tokens in the paper)
    motion_hidden: int = 128
    global_backbone: str = "resnet34"  # timm ResNet of the global encoder (the paper: resnet34)
    global_channels: int = 64  # ASPP output channels (256 in the paper)
    aspp_rates: list[int] = [12, 24, 36]
    aspp_dropout: float = 0.5
    detail_channels: int = 32  # detail encoder channels (96 in the paper)
    # Resample the image-aligned features (detail and upsampled global) into the (x,y) plane's frame before the
    # tri-plane decoder: image rows run along −y and the image spans ±0.44 at the head's depth, the plane +y and
    # ±box_half, a flip and a zoom that local convolutions cannot learn. Not in the paper; False keeps old checkpoints.
    plane_aligned: bool = False
    decoder_channels: int = 128  # conv width of the upsampler and tri-plane decoder (128 in the paper)
    decoder_embed_dim: int = 128
    decoder_heads: int = 2
    decoder_sr_ratio: int = 2
    bg_channels: int = 16  # background U-Net base width
    motion_scale: float = 1.0  # 0 → Ψ3d (every cross-attention off)

    @property
    def patch_stride(self) -> int:
        return (self.image_resolution // 8) // self.token_grid

    @model_validator(mode="after")
    def _check(self) -> "PsiConfig":
        feat = self.image_resolution // 8
        if self.image_resolution % 8 or feat % self.token_grid or self.patch_stride not in (1, 2, 4):
            raise ValueError(f"token_grid={self.token_grid} must be image_resolution/8={feat} divided by 1, 2 or 4")
        up = self.triplane_resolution // (2 * self.token_grid)
        if self.triplane_resolution % (2 * self.token_grid) or not _is_pow2(up):
            raise ValueError(
                f"triplane_resolution={self.triplane_resolution} must be 2·token_grid={2 * self.token_grid} "
                "times a power of 2"
            )
        for name, dim, heads in (
            ("embed_dim", self.embed_dim, self.heads),
            ("decoder_embed_dim", self.decoder_embed_dim, self.decoder_heads),
        ):
            if dim % 4 or dim % heads:
                raise ValueError(f"{name}={dim} must be divisible by 4 (PixelShuffle) and by its heads={heads}")
        if self.triplane_resolution % (2 * self.decoder_sr_ratio):
            raise ValueError(f"triplane_resolution={self.triplane_resolution} must be divisible by 2·decoder_sr_ratio")
        return self


class DiscriminatorConfig(_Strict):
    """Camera-conditioned dual discriminator (StyleGAN2-like residual D)."""

    channels: int = 32  # width at the highest resolution (doubled per ×2 downsampling)
    max_channels: int = 128
    cmap_dim: int = 128  # camera-embedding (projection) width
    mbstd_group: int = 2
    r1_gamma: float = 1.0
    r1_every: int = 16


class LossTerm(_Strict):
    """One loss term: its weight and the training step from which it is switched on."""

    weight: float = 1.0
    start_step: int = 0

    def at(self, step: int) -> float:
        """The weight in force at ``step`` (0 before ``start_step``)."""
        return self.weight if step >= self.start_step else 0.0


class LossConfig(_Strict):
    """Weights of the official ``loss_recon_v2`` structure (DESIGN.md §1, reference facts).

    Real targets: L1 and LPIPS on the final image (``l1``, ``lpips``), on the raw render
    (``raw_l1``, ``raw_lpips``) and on the raw foreground-only render against target × alpha
    (``foreground_l1``, ``foreground_lpips``); L1 of the background against target × (1 − alpha)
    (``background_l1``); L1 of the rendered alpha (``alpha``); masked L1 of the rendered depth
    against the synthetic world's depth where one is given (``depth``); L1 inside the mouth and eye regions
    (``region_l1``, not in the official structure). Pseudo targets: LPIPS on
    foreground-masked images (``pseudo_lpips``). The split is what keeps the 2D background network
    from drawing the head.
    """

    l1: LossTerm = LossTerm(weight=1.0)
    lpips: LossTerm = LossTerm(weight=1.0)
    raw_l1: LossTerm = LossTerm(weight=1.0)
    raw_lpips: LossTerm = LossTerm(weight=1.0)
    foreground_l1: LossTerm = LossTerm(weight=1.0)
    foreground_lpips: LossTerm = LossTerm(weight=1.0)
    background_l1: LossTerm = LossTerm(weight=1.0)
    alpha: LossTerm = LossTerm(weight=0.3)  # the published "seg" L1 weight
    depth: LossTerm = LossTerm(weight=0.0)
    # L1 inside the projected mouth and eye boxes (models/genhead/regions.py; head-relative cameras), a mean over
    # their pixels: the expression detail a whole-image mean averages away (a learn Ψ3d renders every mouth closed)
    region_l1: LossTerm = LossTerm(weight=0.0)
    pseudo_lpips: LossTerm = LossTerm(weight=1.0)
    identity: LossTerm = LossTerm(weight=0.0)
    adversarial: LossTerm = LossTerm(weight=0.0)
    identity_backend: str = "none"  # none | arcface | synthetic
    arcface_weights: str | None = None  # path to user-supplied iresnet18 weights
    lpips_net: str = "vgg"


class ModelConfig(_Strict):
    preset: str = "tiny"
    render: RenderConfig = RenderConfig()
    psi: PsiConfig = PsiConfig()
    discriminator: DiscriminatorConfig = DiscriminatorConfig()

    @model_validator(mode="after")
    def _check(self) -> "ModelConfig":
        if self.psi.image_resolution != self.render.image_resolution:
            raise ValueError(
                f"psi.image_resolution={self.psi.image_resolution} "
                f"!= render.image_resolution={self.render.image_resolution}"
            )
        scale = self.render.image_resolution // self.render.neural_resolution
        if self.render.image_resolution % self.render.neural_resolution or not _is_pow2(scale):
            raise ValueError(
                f"render.image_resolution={self.render.image_resolution} "
                f"must be neural_resolution={self.render.neural_resolution} times a power of 2"
            )
        return self
