"""Print the parameter count of each preset's networks (built on the meta device: no memory).

python -m models.param_counts [tiny small paper]
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import torch
import yaml

from models.config import ModelConfig
from models.discriminator import DualDiscriminator
from models.psi import build_psi

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def preset_config(name: str) -> ModelConfig:
    """The ``model:`` section of ``configs/<name>.yaml``."""
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no preset file {path}")
    return ModelConfig(**yaml.safe_load(path.read_text())["model"])


def count(cfg: ModelConfig) -> dict[str, int]:
    """Parameters per top-level part of Ψ, Ψ total, and the discriminator."""
    psi = build_psi(cfg, device="meta")
    parts: Counter[str] = Counter()
    for name, p in psi.named_parameters():
        parts[name.split(".")[0]] += p.numel()
    with torch.device("meta"):
        d = DualDiscriminator(cfg.discriminator, cfg.render.image_resolution)
    out = dict(sorted(parts.items(), key=lambda kv: -kv[1]))
    out["psi_total"] = sum(parts.values())
    out["discriminator"] = sum(p.numel() for p in d.parameters())
    return out


def main(argv: list[str]) -> None:
    presets = argv or ["tiny", "small", "paper"]
    table = {p: count(preset_config(p)) for p in presets}
    keys = list(dict.fromkeys(k for t in table.values() for k in t))
    print(f"{'part':<20}" + "".join(f"{p:>16}" for p in presets))
    for k in keys:
        print(f"{k:<20}" + "".join(f"{table[p].get(k, 0):>16,}" for p in presets))


if __name__ == "__main__":
    main(sys.argv[1:])
