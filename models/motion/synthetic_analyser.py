"""The synthetic analyser: a small CNN trained on GenHead samples (stage 2b).

Two heads on one convolutional trunk:

* **motion** — trunk → MLP → ``motion_dim`` features (GELU) → linear → expression β (9 named
  coefficients) and gaze (2). The ``motion_dim`` features are E_mot's embedding: they are trained
  to carry exactly what the labels describe (expression and eye gaze), not pose or identity.
* **identity** — trunk → MLP → ``identity_dim``, L2-normalised; trained with a supervised
  contrastive loss on identity labels across views. It serves the ``synthetic`` identity loss
  (``models.losses.build_identity_loss(..., synthetic_embedder=analyser.identity_embedder())``).

Any input resolution works: images are centre-cropped to ``crop_fraction`` of their side (1 = none), resized to
``input_size`` (antialiased bilinear) and two coordinate channels are appended (expression cues are positional:
where a lid, lip or brow is).
GroupNorm, not BatchNorm, so outputs do not depend on the batch.
Targets are regressed in standardised units; ``target_mean``/``target_std`` buffers (set from the
training labels) map predictions back to parameter units.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.motion.base import MotionEncoder

DEFAULT_EXPRESSION_NAMES = [
    "jaw_open",
    "smile",
    "mouth_wide",
    "lip_pucker",
    "cheek_puff",
    "blink_left",
    "blink_right",
    "brow_raise",
    "brow_furrow",
]
DEFAULT_GAZE_NAMES = ["eye_yaw", "eye_pitch"]


def _groups(c: int) -> int:
    for g in (8, 4, 2):
        if c % g == 0:
            return g
    return 1


class _Down(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
        self.norm1 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.norm1(self.conv1(x)))
        return F.silu(x + self.norm2(self.conv2(x)))


def _coords(b: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    ys = torch.linspace(-1, 1, h, device=like.device, dtype=like.dtype)
    xs = torch.linspace(-1, 1, w, device=like.device, dtype=like.dtype)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy])[None].expand(b, -1, -1, -1)


class SyntheticAnalyser(MotionEncoder):
    """``encode(images) → [B, motion_dim]``; ``predict(images) → {"expression", "gaze"}``;
    ``identity_embedding(images) → [B, identity_dim]`` (unit norm)."""

    backend = "synthetic"

    def __init__(
        self,
        motion_dim: int = 64,
        identity_dim: int = 64,
        input_size: int = 64,
        width: int = 32,
        expression_names: Sequence[str] = DEFAULT_EXPRESSION_NAMES,
        gaze_names: Sequence[str] = DEFAULT_GAZE_NAMES,
        crop_fraction: float = 1.0,
        stem_convs: int = 1,
    ):
        super().__init__()
        if stem_convs < 1:
            raise ValueError(f"analyser stem_convs must be ≥ 1, got {stem_convs}")
        self.stem_convs = int(stem_convs)
        if not 0.25 <= crop_fraction <= 1.0:
            raise ValueError(f"analyser crop_fraction must be in [0.25, 1], got {crop_fraction}")
        self.crop_fraction = float(crop_fraction)
        if input_size < 8 or 2 ** int(round(math.log2(input_size))) != input_size:
            raise ValueError(f"analyser input_size must be a power of 2 ≥ 8, got {input_size}")
        self.motion_dim = self.embedding_dim = int(motion_dim)
        self.identity_dim = int(identity_dim)
        self.input_size = int(input_size)
        self.width = int(width)
        self.expression_names = list(expression_names)
        self.gaze_names = list(gaze_names)
        n_out = len(self.expression_names) + len(self.gaze_names)

        stem: list[nn.Module] = []
        for i in range(self.stem_convs):  # at the input's resolution, before the first stride
            cin = 5 if i == 0 else width
            stem += [nn.Conv2d(cin, width, 3, padding=1), nn.GroupNorm(_groups(width), width), nn.SiLU()]
        self.stem = nn.Sequential(*stem)
        blocks, c = [], width
        for i in range(int(math.log2(input_size // 4))):  # down to 4×4
            cout = min(width * 2 ** (i + 1), width * 8)
            blocks.append(_Down(c, cout))
            c = cout
        self.blocks = nn.Sequential(*blocks)
        feat = c * 16
        hidden = max(2 * motion_dim, 128)
        self.motion_mlp = nn.Sequential(nn.Linear(feat, hidden), nn.SiLU(), nn.Linear(hidden, motion_dim), nn.GELU())
        self.motion_head = nn.Linear(motion_dim, n_out)
        id_hidden = max(2 * identity_dim, 128)
        self.identity_mlp = nn.Sequential(nn.Linear(feat, id_hidden), nn.SiLU(), nn.Linear(id_hidden, identity_dim))
        self.register_buffer("target_mean", torch.zeros(n_out))
        self.register_buffer("target_std", torch.ones(n_out))

    def init_kwargs(self) -> dict[str, Any]:
        return {
            "motion_dim": self.motion_dim,
            "identity_dim": self.identity_dim,
            "input_size": self.input_size,
            "width": self.width,
            "expression_names": list(self.expression_names),
            "gaze_names": list(self.gaze_names),
            "crop_fraction": self.crop_fraction,
            "stem_convs": self.stem_convs,
        }

    @torch.no_grad()
    def set_target_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Standardise regression targets with training-set statistics (std floored so constants do not blow up)."""
        self.target_mean.copy_(torch.as_tensor(mean, dtype=self.target_mean.dtype))
        self.target_std.copy_(torch.as_tensor(std, dtype=self.target_std.dtype).clamp_min(1e-3))

    # ---- trunk and heads ------------------------------------------------------------------
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Shared trunk → ``[B, C·16]``."""
        self.check_images(images)
        x = images.to(self.target_mean.dtype)
        if self.crop_fraction < 1.0:  # the centred face crop: eyes and mouth take more of the analyser's pixels
            h, w = x.shape[-2:]
            ch, cw = max(1, round(h * self.crop_fraction)), max(1, round(w * self.crop_fraction))
            x = x[..., (h - ch) // 2 : (h - ch) // 2 + ch, (w - cw) // 2 : (w - cw) // 2 + cw]
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(
                x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False, antialias=True
            )
        x = torch.cat([x, _coords(x.shape[0], self.input_size, self.input_size, x)], dim=1)
        return self.blocks(self.stem(x)).flatten(1)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.motion_mlp(self.features(images))

    def forward_all(self, images: torch.Tensor, detach_identity: bool = False) -> dict[str, torch.Tensor]:
        """One trunk pass → motion embedding, standardised predictions, identity embedding.

        ``detach_identity``: the identity head reads the trunk without shaping it (measured: a shared
        trunk trained for identity too carries who the person is into the motion embedding, identity
        top-1 0.80 from it, and its expression R² stays at 0)."""
        f = self.features(images)
        motion = self.motion_mlp(f)
        return {
            "motion": motion,
            "pred_std": self.motion_head(motion),
            "identity": F.normalize(self.identity_mlp(f.detach() if detach_identity else f), dim=-1),
        }

    def unstandardise(self, pred_std: torch.Tensor) -> dict[str, torch.Tensor]:
        pred = pred_std * self.target_std + self.target_mean
        e = len(self.expression_names)
        return {"expression": pred[:, :e], "gaze": pred[:, e:]}

    def standardise(self, expression: torch.Tensor, gaze: torch.Tensor) -> torch.Tensor:
        return (torch.cat([expression, gaze], dim=-1) - self.target_mean) / self.target_std

    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Expression β ``[B,E]`` and gaze ``[B,G]`` in parameter units."""
        return self.unstandardise(self.motion_head(self.encode(images)))

    def identity_embedding(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.identity_mlp(self.features(images)), dim=-1)

    def identity_embedder(self) -> nn.Module:
        """An image → identity-embedding module (what ``models.losses.IdentityLoss`` calls)."""
        return _IdentityEmbedder(self)


class _IdentityEmbedder(nn.Module):
    def __init__(self, analyser: SyntheticAnalyser):
        super().__init__()
        self.analyser = analyser

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.analyser.identity_embedding(images)


def supervised_contrastive_loss(
    embeddings: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1
) -> torch.Tensor:
    """SupCon (Khosla et al. 2020) on unit embeddings: pull together items with the same label, push the
    rest apart. Anchors without a positive in the batch are ignored (0 if none has one)."""
    n = embeddings.shape[0]
    logits = embeddings @ embeddings.t() / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=embeddings.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]) & ~self_mask
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not bool(has.any()):
        return embeddings.sum() * 0.0
    mean_log_prob_pos = log_prob.masked_fill(~pos, 0.0).sum(1)[has] / n_pos[has]
    return -mean_log_prob_pos.mean()
