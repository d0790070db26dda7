"""A small synthetic ``genhead_samples`` store whose pixels encode known labels, so learning is measurable.

Per sample: a bright disc whose radius encodes β0, horizontal position β1 and vertical position β2,
a bar whose length encodes β3, and a small dot whose horizontal position encodes gaze 0. Other
expression entries are constant 0 (R² undefined → reported as None). Identity = background colour +
stripe pattern; two samples (different expressions) per identity. Views shift the picture by a few
pixels and change brightness, so a view is not a copy of another.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from pathlib import Path

import numpy as np
import pytest
import torch

import models  # noqa: F401  (torchvision shim first)
from models.motion.synthetic_analyser import DEFAULT_EXPRESSION_NAMES
from pipeline_tasks.config import load_config
from storage_schemas import genhead_samples as gs
from storage_schemas.artifacts import ArtifactRegistry

EXPRESSION_NAMES = list(DEFAULT_EXPRESSION_NAMES)  # the blob stores carry the analyser's coefficient names
ENCODED = ["jaw_open", "smile", "mouth_wide", "lip_pucker"]


def render_blob(expr: np.ndarray, gaze: np.ndarray, ident: int, view: int, res: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + ident)
    bg = rng.uniform(0.1, 0.6, 3)
    stripe = rng.uniform(0.0, 0.4, 3)
    freq = rng.integers(2, 6)
    yy, xx = np.mgrid[0:res, 0:res] / res
    shift = (view - 1) * 0.04
    img = np.empty((res, res, 3))
    img[:] = bg
    img += stripe * (np.sin(2 * np.pi * freq * (yy + xx)) > 0)[..., None] * 0.5
    cx, cy, r = 0.3 + 0.4 * expr[1] + shift, 0.25 + 0.35 * expr[2], 0.06 + 0.12 * expr[0]
    img[(xx - cx) ** 2 + (yy - cy) ** 2 < r**2] = (1.0, 0.95, 0.8)
    bar = (yy > 0.82) & (yy < 0.9) & (xx > 0.1 + shift) & (xx < 0.1 + shift + 0.8 * expr[3])
    img[bar] = (0.9, 0.1, 0.1)
    dx = 0.5 + gaze[0] / 0.3 * 0.35 + shift
    img[(xx - dx) ** 2 + (yy - 0.08) ** 2 < 0.07**2] = (0.1, 0.9, 0.2)
    img *= 1.0 + 0.08 * (view - 1)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def front_camera() -> np.ndarray:
    """The frontal 25-vector camera (a valid label: stores reject zero cameras as never written)."""
    from models import cameras as cam

    return cam.orbit_label(torch.zeros(1), torch.zeros(1))[0].numpy()


def make_blob_store(path: Path, n_samples: int = 96, views: int = 3, res: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    expr = np.zeros((n_samples, 9), np.float32)
    expr[:, :4] = rng.uniform(0, 1, (n_samples, 4))
    gaze = np.zeros((n_samples, 2), np.float32)
    gaze[:, 0] = rng.uniform(-0.3, 0.3, n_samples)
    identity = np.arange(n_samples, dtype=np.int64) // 2
    images = np.stack(
        [[render_blob(expr[i], gaze[i], int(identity[i]), v, res) for v in range(views)] for i in range(n_samples)]
    )
    gs.create(
        path,
        n_views=views,
        resolution=res,
        n_shape=2,
        n_expression=9,
        n_pose=3,
        n_gaze=2,
        n_z=4,
        shard_identities=16,
        attrs={
            "generator_backend": "blobs",
            "parameter_names": {
                "expression": EXPRESSION_NAMES,
                "gaze": ["eye_yaw", "eye_pitch"],
                "shape": ["a", "b"],
                "pose": ["yaw", "pitch", "roll"],
                "z": list("abcd"),
            },
        },
    )
    gs.append(
        path,
        {
            "images": images,
            "alpha": np.full(images.shape[:-1], 255, np.uint8),
            "depth": np.full(images.shape[:-1], 4.0, np.float16),
            "cameras": np.broadcast_to(front_camera(), (n_samples, views, 25)).copy(),
            "shape": np.zeros((n_samples, 2), np.float32),
            "expression": expr,
            "pose": np.zeros((n_samples, 3), np.float32),
            "gaze": gaze,
            "z": np.zeros((n_samples, 4), np.float32),
            "identity": identity,
        },
    )
    gs.finalize(path)
    return path


@pytest.fixture(scope="session")
def blob_store(tmp_path_factory) -> Path:
    return make_blob_store(tmp_path_factory.mktemp("blobs") / "store.zarr")


@pytest.fixture
def registry_with_samples(tmp_path, blob_store):
    """A fresh registry holding one complete ``genhead_samples`` artifact (the blob store)."""
    import shutil

    reg = ArtifactRegistry(tmp_path / "artifacts")
    with reg.writer("genhead_samples", {"blobs": 1}, schema_version=gs.SCHEMA_VERSION) as w:
        shutil.copytree(blob_store, w.path / "store.zarr")
        art = w.commit()
    return reg, art


def tiny_cfg(**motion_overrides):
    over = {
        "device": "cpu",
        "model.psi.motion_dim": 16,
        "motion_encoder.input_size": 32,
        "motion_encoder.width": 8,
        "motion_encoder.identity_dim": 16,
        "motion_encoder.batch_size": 32,
        "motion_encoder.val_identities": 8,
        "motion_encoder.log_every": 5,
        "motion_encoder.lr": 3e-3,
        "motion_encoder.lr_warmup_steps": 0,  # the blob store is learnt at a constant lr in a few dozen steps
        "motion_encoder.lr_final_fraction": 1.0,
        "motion_encoder.shift_jitter": 0.0,  # the blobs encode labels by position: a crop jitter would move them
        "motion_encoder.scale_jitter": 0.0,
        "motion_encoder.ema_halflife_steps": 5,
        "motion_encoder.mirror": False,  # the blobs encode labels by position, unlike a mirror-symmetric head
    }
    over.update({f"motion_encoder.{k}": v for k, v in motion_overrides.items()})
    return load_config("tiny", over)


@pytest.fixture
def make_cfg():
    """``make_cfg(**motion_encoder_fields)`` → a tiny PipelineConfig for the blob store."""
    return tiny_cfg


@pytest.fixture
def encoded_names() -> list[str]:
    """Expression parameters the blob images encode (the rest are constant)."""
    return list(ENCODED)


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Seeded, and one torch thread: the test machine's cores are shared; one thread is faster under contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
