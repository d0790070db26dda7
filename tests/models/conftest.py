"""Shared tiny configurations for the model tests (smaller than the tiny preset, to stay fast on 2 cores)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from models.config import DiscriminatorConfig, ModelConfig, PsiConfig, RenderConfig


@pytest.fixture(scope="session")
def micro_cfg() -> ModelConfig:
    return ModelConfig(
        preset="micro",
        render=RenderConfig(
            image_resolution=32,
            neural_resolution=16,
            n_coarse=8,
            n_fine=8,
            feature_channels=8,
            decoder_hidden=16,
            sr_channels=16,
        ),
        psi=PsiConfig(
            image_resolution=32,
            triplane_channels=8,
            triplane_resolution=32,
            embed_dim=32,
            token_grid=4,
            n_neutral=1,
            n_motion=1,
            heads=2,
            motion_dim=12,
            motion_token_grid=2,
            motion_hidden=16,
            global_channels=16,
            aspp_rates=[1, 2, 3],
            detail_channels=8,
            decoder_channels=8,
            decoder_embed_dim=16,
            decoder_heads=2,
            bg_channels=4,
        ),
        discriminator=DiscriminatorConfig(channels=8, max_channels=16, cmap_dim=16),
    )


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
