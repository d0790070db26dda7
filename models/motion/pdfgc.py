"""PD-FGC motion encoder (Wang et al. 2023), the E_mot of Portrait4D (facts §4), with user-supplied weights.

Architecture (written from the published description; parameter names follow the published
``FanEncoder`` so its ``motion_model.pth`` state dict loads directly):

* ``model`` — a one-stack FAN: 7×7/2 conv (64) → ConvBlock 64→128 → max-pool → ConvBlocks 128→128→256
  → hourglass of depth 4 (256 channels) → ConvBlock → 1×1 conv + BN → 1×1 conv to 68 heatmaps
  → BN/ReLU → 3×3/2 conv to 1 channel → flatten (28·28 = 784 at 224² input) → ReLU → FC 784→512.
* heads — ``to_{mouth,headpose,eye,emo}``: Linear 512→512, ReLU, BatchNorm1d, Linear 512→512; then
  ``eye_embed`` → 6, ``emo_embed`` → 30, ``headpose_embed`` → 6, ``mouth_embed`` → 500.
* embedding (what Portrait4D uses) = concat(eye 6, emotion 30, mouth *feature* 512) = **548**;
  the head-pose embedding is dropped and the 500-d ``mouth_embed`` is not used.

Input: 224² in [−1, 1]. Portrait4D first similarity-aligns eye centres and inner-mouth centre to
(87,59), (137,59), (112,120) of a 224 canvas; that alignment needs landmarks and is the caller's
job (ingestion). This module resizes to 224 and, with ``crop=True`` (default), crops rows 0:192 and
columns 16:208 and resizes back to 224, as ``extract_pdfgc.py`` does.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.motion.base import MotionEncoder

EMBEDDING_DIM = 6 + 30 + 512
INPUT_SIZE = 224


class ConvBlock(nn.Module):
    """FAN's pre-activation bottleneck: three 3×3 convs (½, ¼, ¼ of out) concatenated + residual."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        half, quarter = cout // 2, cout // 4
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, half, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, quarter, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = nn.Conv2d(quarter, quarter, 3, padding=1, bias=False)
        self.downsample = (
            nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(True), nn.Conv2d(cin, cout, 1, bias=False))
            if cin != cout
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv1(F.relu(self.bn1(x)))
        b = self.conv2(F.relu(self.bn2(a)))
        c = self.conv3(F.relu(self.bn3(b)))
        res = x if self.downsample is None else self.downsample(x)
        return torch.cat([a, b, c], 1) + res


class HourGlass(nn.Module):
    """Recursive hourglass; modules named ``b1_<level>``, ``b2_<level>``, ``b2_plus_1``, ``b3_<level>``."""

    def __init__(self, depth: int = 4, features: int = 256):
        super().__init__()
        self.depth = depth
        self.dropout = nn.Dropout(0.5)
        for level in range(depth, 0, -1):
            self.add_module(f"b1_{level}", ConvBlock(features, features))
            self.add_module(f"b2_{level}", ConvBlock(features, features))
            if level == 1:
                self.add_module("b2_plus_1", ConvBlock(features, features))
            self.add_module(f"b3_{level}", ConvBlock(features, features))

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        up = self.dropout(self._modules[f"b1_{level}"](x))
        low = self._modules[f"b2_{level}"](F.max_pool2d(x, 2, stride=2))
        low = self._level(level - 1, low) if level > 1 else self._modules["b2_plus_1"](low)
        low = self._modules[f"b3_{level}"](low)
        return up + F.interpolate(low, size=up.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._level(self.depth, x)


class FANFeature(nn.Module):
    """One-stack FAN → 512-d feature (the published ``FAN_use``)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, 256)
        self.m0 = HourGlass(4, 256)
        self.top_m_0 = ConvBlock(256, 256)
        self.conv_last0 = nn.Conv2d(256, 256, 1)
        self.bn_end0 = nn.BatchNorm2d(256)
        self.l0 = nn.Conv2d(256, 68, 1)
        self.bn5 = nn.BatchNorm2d(68)
        self.conv6 = nn.Conv2d(68, 1, 3, stride=2, padding=1)
        self.fc = nn.Linear(28 * 28, 512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(self.conv2(x), 2)
        x = self.conv4(self.conv3(x))
        ll = self.top_m_0(self.m0(x))
        ll = self.bn_end0(self.conv_last0(ll))
        heat = self.l0(F.relu(ll))
        net = self.conv6(F.relu(self.bn5(heat)))
        return self.fc(F.relu(net.flatten(1)))


def _head() -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.BatchNorm1d(512), nn.Linear(512, 512))


REQUIRED_PREFIXES = ("model.", "to_eye.", "eye_embed.", "to_emo.", "emo_embed.", "to_mouth.")


class PDFGCEncoder(MotionEncoder):
    """``encode(images) → [B, 548]`` = eye 6 ‖ emotion 30 ‖ mouth feature 512."""

    backend = "pdfgc"
    embedding_dim = EMBEDDING_DIM

    def __init__(self, weights: str | Path | None = None, crop: bool = True, load: bool = True):
        super().__init__()
        self.crop = crop
        self.model = FANFeature()
        self.to_mouth = _head()
        self.mouth_embed = nn.Sequential(nn.ReLU(), nn.Linear(512, 512 - 6 - 6))
        self.to_headpose = _head()
        self.headpose_embed = nn.Sequential(nn.ReLU(), nn.Linear(512, 6))
        self.to_eye = _head()
        self.eye_embed = nn.Sequential(nn.ReLU(), nn.Linear(512, 6))
        self.to_emo = _head()
        self.emo_embed = nn.Sequential(nn.ReLU(), nn.Linear(512, 30))
        self.weights = None if weights is None else str(weights)
        if load:
            self.load_weights(weights)

    def init_kwargs(self) -> dict:
        """Rebuild without reading the original file (the state dict travels in the checkpoint)."""
        return {"weights": None, "crop": self.crop, "load": False}

    def load_weights(self, weights: str | Path | None) -> None:
        """Load the published state dict; a missing file or a file that is not PD-FGC is a clear error."""
        hint = (
            "download PD-FGC's motion encoder weights (motion_model.pth, as used by Portrait4D's "
            "portrait4d/models/pdfgc/weights/) yourself and set motion_encoder.pdfgc_weights to its path, "
            "or use motion_encoder.backend=synthetic"
        )
        if weights is None:
            raise FileNotFoundError(f"the pdfgc motion encoder needs weights: {hint}")
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"PD-FGC weights {path} do not exist: {hint}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ValueError(f"cannot read PD-FGC weights {path}: {exc}") from exc
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
        state = {k.removeprefix("module."): v for k, v in state.items()}
        own = self.state_dict()
        usable = {k: v for k, v in state.items() if k in own}
        bad = [k for k, v in usable.items() if tuple(v.shape) != tuple(own[k].shape)]
        missing = [k for k in own if k not in usable and k.startswith(REQUIRED_PREFIXES)]
        if bad or missing:
            raise ValueError(
                f"{path} is not a PD-FGC FanEncoder state dict: {len(missing)} required tensors missing "
                f"(e.g. {missing[:3]}), {len(bad)} with other shapes (e.g. {bad[:3]})"
            )
        self.load_state_dict(usable, strict=False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True)
        if self.crop:
            x = F.interpolate(
                x[:, :, 0:192, 16:208], size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False
            )
        return x

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        self.check_images(images)
        x = self.model(self.preprocess(images))
        eye = self.eye_embed(self.to_eye(x))
        emo = self.emo_embed(self.to_emo(x))
        mouth = self.to_mouth(x)
        return torch.cat([eye, emo, mouth], dim=-1)
