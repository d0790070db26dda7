"""Ψ's two CNN encoders of the source image (official-implementation-facts §2).

* ``GlobalEncoder``: timm ResNet-34 (dilated, output stride 8, 5 input channels, BatchNorm →
  Identity as in the paper) + a DeepLabV3 ASPP head (torchvision's, BatchNorm → Identity) and a
  3×3 conv, giving ``global_channels`` at image/8.
* ``DetailEncoder``: conv k7 s2 + four 3×3 convs with LeakyReLU(0.01), at image/2.

Both take the RGB image in [−1,1] with 2 coordinate channels appended (``add_coords``).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models import torchvision_compat as _tvc
from models.amp import compute_dtype, no_autocast

# idempotent; before timm/lpips import torchvision (also when `models` was imported as a namespace package)
_tvc.install()
import timm
from torchvision.models.segmentation.deeplabv3 import ASPP


def add_coords(x: torch.Tensor) -> torch.Tensor:
    """Append normalised (x, y) pixel-coordinate channels in [−1, 1]: ``[B,C,H,W] → [B,C+2,H,W]``."""
    b, _, h, w = x.shape
    ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.cat([x, gx.expand(b, 1, h, w), gy.expand(b, 1, h, w)], dim=1)


def remove_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm layer by ``nn.Identity`` in place (Portrait4D / Live3DPortrait)."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, nn.Identity())
        else:
            remove_batchnorm(child)
    return module


class _TapsWeightGradConv(torch.autograd.Function):
    """A stride-1, bias-free convolution whose weight gradient is one matmul over the input's gathered taps
    (``F.unfold``); the input gradient is the library's. On the CPU, oneDNN's weight gradient of the ResNet's
    dilation-4 3×3 convolutions on 8×8 maps took 12–22 ms against 3 ms for their input gradient; this takes 11 ms
    less per call at tiny (issue 15, 2-core VM). Same values to fp32 rounding (test)."""

    @staticmethod
    def forward(ctx, x, weight, padding, dilation):
        dtype = compute_dtype(x)
        ctx.input_dtypes = (x.dtype, weight.dtype)
        x, weight = x.to(dtype), weight.to(dtype)
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.dilation = padding, dilation
        with no_autocast(x.device.type):
            return F.conv2d(x, weight, None, 1, padding, dilation)

    @staticmethod
    def backward(ctx, g):
        x, weight = ctx.saved_tensors
        g = g.to(x.dtype)
        g_x = g_w = None
        if ctx.needs_input_grad[0]:
            pad, dil = list(ctx.padding), list(ctx.dilation)
            g_x = torch.ops.aten.convolution_backward(
                g, x, weight, None, [1, 1], pad, dil, False, [0, 0], 1, [True, False, False]
            )[0].to(ctx.input_dtypes[0])
        if ctx.needs_input_grad[1]:
            taps = F.unfold(x, weight.shape[-2:], dilation=ctx.dilation, padding=ctx.padding)  # [B, C·k·k, H·W]
            g_w = torch.einsum("bol,bkl->ok", g.flatten(2), taps).reshape(weight.shape).to(ctx.input_dtypes[1])
        return g_x, g_w, None, None


class DilatedConv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters and state-dict keys) whose CPU backward takes ``_TapsWeightGradConv``'s weight
    gradient; elsewhere (CUDA) the plain convolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or isinstance(self.padding, str):
            return super().forward(x)
        return _TapsWeightGradConv.apply(x, self.weight, self.padding, self.dilation)


def use_taps_weight_grad(module: nn.Module, min_dilation: int = 4) -> nn.Module:
    """Make every stride-1, bias-free, ungrouped convolution of ``module`` with a dilation ≥ ``min_dilation`` a
    ``DilatedConv2d`` in place (its class only: weights, names and the random stream are untouched)."""
    for m in module.modules():
        if (
            type(m) is nn.Conv2d
            and max(m.dilation) >= min_dilation
            and m.stride == (1, 1)
            and m.groups == 1
            and m.bias is None
            and m.padding_mode == "zeros"
        ):
            m.__class__ = DilatedConv2d
    return module


class GlobalEncoder(nn.Module):
    """Dilated ResNet (ResNet-34 in the paper; no BatchNorm, random init) + ASPP → ``[B, out_channels, H/8, W/8]``."""

    def __init__(
        self,
        out_channels: int = 256,
        aspp_rates=(12, 24, 36),
        aspp_dropout: float = 0.5,
        residual_scale: float = 0.2,
        backbone: str = "resnet34",
    ):
        super().__init__()
        if not backbone.startswith("resnet"):
            raise ValueError(f"global_backbone must be a timm ResNet (resnet18, resnet34, ...); got {backbone!r}")
        self.backbone = timm.create_model(
            backbone, pretrained=False, features_only=True, output_stride=8, in_chans=5, out_indices=(4,)
        )
        remove_batchnorm(self.backbone)
        # Without BatchNorm and without ImageNet weights, 16 unnormalised residual blocks blow the
        # activations up at init; shrinking each residual branch keeps them O(1) (Fixup-like).
        for m in self.backbone.modules():
            if isinstance(m, timm.models.resnet.BasicBlock):
                m.conv2.weight.data.mul_(residual_scale)
        in_ch = self.backbone.feature_info.channels()[-1]
        aspp = remove_batchnorm(ASPP(in_ch, list(aspp_rates), out_channels))
        for m in aspp.modules():
            if isinstance(m, nn.Dropout):
                m.p = aspp_dropout
        self.head = nn.Sequential(aspp, nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.ReLU())
        use_taps_weight_grad(self)

    def forward(self, x5: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x5)[-1])


class DetailEncoder(nn.Module):
    """Conv k7 s2 then four 3×3 convs, LeakyReLU(0.01) → ``[B, channels, H/2, W/2]``."""

    def __init__(self, channels: int = 96, stem_channels: int | None = None):
        super().__init__()
        stem = stem_channels or max(8, channels * 2 // 3)
        layers: list[nn.Module] = [nn.Conv2d(5, stem, 7, stride=2, padding=3), nn.LeakyReLU(0.01)]
        c = stem
        for _ in range(4):
            layers += [nn.Conv2d(c, channels, 3, padding=1), nn.LeakyReLU(0.01)]
            c = channels
        self.net = nn.Sequential(*layers)

    def forward(self, x5: torch.Tensor) -> torch.Tensor:
        return self.net(x5.contiguous(memory_format=torch.channels_last)).contiguous()
