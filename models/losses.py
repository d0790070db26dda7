"""Training losses: L1, LPIPS, identity (pluggable backends), non-saturating adversarial.

Weights and start steps are configuration (``models.config.LossConfig`` / ``LossTerm.at``);
``weighted_total`` applies them. Images are in [−1, 1], NCHW.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from models import torchvision_compat as _tvc

# idempotent; before timm/lpips import torchvision (also when `models` was imported as a namespace package)
_tvc.install()
from models.config import LossConfig

# torchvision's cached ImageNet trunks (what lpips' trunk loader looks for in torch.hub's cache)
_TRUNK_FILES = {
    "vgg": "vgg16-397923af.pth",
    "alex": "alexnet-owt-7be5be79.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}
_LPIPS_WARNED = False


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).abs().mean()


def lpips_trunk_path(net: str = "vgg") -> Path:
    """Where a real LPIPS trunk must be for offline use: ``torch.hub.get_dir()/checkpoints/<file>``."""
    if net not in _TRUNK_FILES:
        raise ValueError(f"unknown LPIPS net {net!r}; use one of {sorted(_TRUNK_FILES)}")
    return Path(torch.hub.get_dir()) / "checkpoints" / _TRUNK_FILES[net]


class LPIPSLoss(nn.Module):
    """LPIPS (``lpips`` package, v0.1 linear heads). Uses the real ImageNet trunk when its weights
    are already in torch.hub's cache, else a *random* trunk (``pnet_rand=True``, seeded so every
    run builds the same one); never downloads. Warns once which one is in use. Frozen."""

    def __init__(self, net: str = "vgg"):
        super().__init__()
        import lpips

        trunk = lpips_trunk_path(net)
        self.real_trunk = trunk.is_file()
        global _LPIPS_WARNED
        if not _LPIPS_WARNED:
            msg = (
                f"LPIPS({net}): using the real ImageNet trunk from {trunk}"
                if self.real_trunk
                else f"LPIPS({net}): trunk weights not found at {trunk}; using a fixed RANDOM trunk "
                "(pnet_rand=True). Put the torchvision file there for the real perceptual metric."
            )
            warnings.warn(msg, stacklevel=2)
            _LPIPS_WARNED = True
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")  # lpips' legacy `pretrained=`
            torch.manual_seed(0)
            self.lpips = lpips.LPIPS(net=net, pnet_rand=not self.real_trunk, verbose=False)
        self.lpips.eval().requires_grad_(False)

    def train(self, mode: bool = True):  # the metric stays in eval mode (no dropout)
        super().train(mode)
        self.lpips.eval()
        return self

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.lpips(pred, target, normalize=False).mean()


# ---------------------------------------------------------------- identity: ArcFace iresnet18


class _IBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-5)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-5)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-5)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (self.downsample(x) if self.downsample is not None else x)


class IResNet(nn.Module):
    """ArcFace iresnet (insightface ``arcface_torch``), 112² input in [−1,1] → 512-d embedding.

    Parameter names match insightface's ``backbone.pth`` so its state dict loads directly.
    """

    def __init__(self, layers=(2, 2, 2, 2), num_features: int = 512):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-5)
        self.prelu = nn.PReLU(64)
        self.layer1 = self._make_layer(64, layers[0], 2)
        self.layer2 = self._make_layer(128, layers[1], 2)
        self.layer3 = self._make_layer(256, layers[2], 2)
        self.layer4 = self._make_layer(512, layers[3], 2)
        self.bn2 = nn.BatchNorm2d(512, eps=1e-5)
        self.dropout = nn.Dropout(0.0)
        self.fc = nn.Linear(512 * 7 * 7, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-5)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        down = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes, eps=1e-5))
        layers = [_IBasicBlock(self.inplanes, planes, stride, down)]
        self.inplanes = planes
        layers += [_IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn2(x).flatten(1))
        return self.features(self.fc(x))


def iresnet18() -> IResNet:
    return IResNet((2, 2, 2, 2))


def load_arcface(weights: str | os.PathLike | None) -> IResNet:
    """ArcFace iresnet18 with user-supplied weights (e.g. insightface ms1mv3_arcface_r18 ``backbone.pth``)."""
    if weights is None:
        raise FileNotFoundError(
            "identity_backend='arcface' needs LossConfig.arcface_weights: the path to an insightface "
            "iresnet18 backbone.pth (ms1mv3_arcface_r18). It cannot be downloaded here; set the path, "
            "or use identity_backend 'synthetic' or 'none'."
        )
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"ArcFace weights not found at {path} (LossConfig.arcface_weights). Copy the insightface "
            "iresnet18 backbone.pth there, or use identity_backend 'synthetic' or 'none'."
        )
    net = iresnet18()
    state = torch.load(path, map_location="cpu", weights_only=True)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{path} is not an iresnet18 state dict: {e}") from e
    return net


class IdentityLoss(nn.Module):
    """1 − cos(embed(pred), embed(target)) with a frozen image→embedding network.

    ``input_size`` resizes the images first (112 for ArcFace: pass face crops); the target
    embedding carries no gradient.
    """

    def __init__(self, embedder: nn.Module, input_size: int | None = None):
        super().__init__()
        self.embedder = embedder.eval().requires_grad_(False)
        self.input_size = input_size

    def train(self, mode: bool = True):
        super().train(mode)
        self.embedder.eval()
        return self

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_size is not None and x.shape[-1] != self.input_size:
            x = F.interpolate(
                x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False, antialias=True
            )
        return F.normalize(self.embedder(x).flatten(1), dim=-1)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            t = self._embed(target)
        return (1 - (self._embed(pred) * t).sum(-1)).mean()


def build_identity_loss(cfg: LossConfig, synthetic_embedder: nn.Module | None = None) -> IdentityLoss | None:
    """The identity loss of ``cfg.identity_backend``: ``none`` → None; ``arcface`` → iresnet18 from
    ``cfg.arcface_weights``; ``synthetic`` → ``synthetic_embedder`` (the stage-2b analyser's identity head)."""
    backend = cfg.identity_backend
    if backend == "none":
        return None
    if backend == "arcface":
        return IdentityLoss(load_arcface(cfg.arcface_weights), input_size=112)
    if backend == "synthetic":
        if synthetic_embedder is None:
            raise ValueError(
                "identity_backend='synthetic' needs the synthetic analyser's identity head "
                "(an image→embedding nn.Module)"
            )
        return IdentityLoss(synthetic_embedder)
    raise ValueError(f"unknown identity_backend {backend!r}; use 'none', 'arcface' or 'synthetic'")


# ---------------------------------------------------------------- adversarial (non-saturating)


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """−log σ(D(fake)) = softplus(−D(fake))."""
    return F.softplus(-fake_logits).mean()


def discriminator_adversarial_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """softplus(D(fake)) + softplus(−D(real))."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()


def weighted_total(terms: dict[str, torch.Tensor], cfg: LossConfig, step: int) -> tuple[torch.Tensor, dict[str, float]]:
    """Σ weight(step)·term over ``terms`` named like LossConfig's fields (``l1``, ``lpips``, ``identity``,
    ``adversarial``); terms switched off at ``step`` are skipped. Returns (total, float log of each term)."""
    total, log = None, {}
    for name, value in terms.items():
        term = getattr(cfg, name, None)
        if term is None or not hasattr(term, "at"):
            raise KeyError(f"no loss term '{name}' in LossConfig")
        w = term.at(step)
        log[name] = float(value.detach())
        if w:
            total = w * value if total is None else total + w * value
    if total is None:
        total = next(iter(terms.values())).new_zeros(()) if terms else torch.zeros(())
    return total, log
