"""Stage 2b: E_mot interface, PD-FGC loading, the synthetic analyser learning, exact resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.motion import MotionEncoder, build_motion_encoder
from models.motion import load_motion_encoder as load_from_path
from models.motion.synthetic_analyser import supervised_contrastive_loss
from pipeline_tasks.train_motion_encoder import (
    KIND,
    TrainingInterrupted,
    bootstrap_r2_ci,
    explained_variance,
    load_motion_encoder_artifact,
    mirror_map,
    permuted_groups,
    r2_scores,
    retrieval_top1,
    train_motion_encoder,
    variance_explained_by_groups,
)
from storage_schemas.artifacts import ArtifactError, ArtifactRegistry


# ---------------------------------------------------------------- interface
def test_synthetic_encoder_any_resolution_and_identity_is_unit_norm():
    enc = build_motion_encoder("synthetic", motion_dim=12, identity_dim=5, input_size=16, width=4)
    assert isinstance(enc, MotionEncoder) and enc.embedding_dim == 12
    for res in (16, 24, 64):
        x = torch.rand(3, 3, res, res) * 2 - 1
        assert enc.encode(x).shape == (3, 12)
        ident = enc.identity_embedding(x)
        assert ident.shape == (3, 5) and torch.allclose(ident.norm(dim=1), torch.ones(3), atol=1e-5)
    with pytest.raises(ValueError, match=r"\[B,3,H,W\]"):
        enc.encode(torch.zeros(2, 1, 16, 16))
    with pytest.raises(ValueError, match="unknown motion encoder backend 'fan'"):
        build_motion_encoder("fan")


def test_analyser_crop_sees_only_the_centre_and_survives_a_checkpoint(tmp_path):
    """``crop_fraction`` 0.5: what lies outside the centred half of the image does not change the embedding,
    what lies inside does; the fraction is saved with the weights; 1.0 sees the whole image."""
    from models.motion import save_motion_encoder

    torch.manual_seed(0)
    enc = build_motion_encoder(
        "synthetic", motion_dim=12, identity_dim=5, input_size=16, width=4, crop_fraction=0.5
    ).eval()
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    outside, inside = x.clone(), x.clone()
    outside[..., :8, :] = -outside[..., :8, :]  # the top quarter: outside the centred 16×16
    inside[..., 12:20, 12:20] = -inside[..., 12:20, 12:20]
    with torch.no_grad():
        assert torch.equal(enc.encode(x), enc.encode(outside))
        assert not torch.allclose(enc.encode(x), enc.encode(inside))
        loaded = load_from_path(save_motion_encoder(tmp_path / "e.pt", enc))
        assert loaded.crop_fraction == 0.5 and torch.allclose(loaded.encode(x), enc.encode(x))
        whole = build_motion_encoder("synthetic", motion_dim=12, identity_dim=5, input_size=16, width=4).eval()
        assert not torch.allclose(whole.encode(x), whole.encode(outside))
    with pytest.raises(ValueError, match="crop_fraction"):
        build_motion_encoder("synthetic", crop_fraction=0.1)


def test_analyser_stem_convs_are_saved_with_the_weights(tmp_path):
    """``stem_convs`` 2: a second convolution at the input's resolution (more weights, same outputs' shapes),
    rebuilt from the checkpoint; 1 keeps the layout of analysers saved before the option existed."""
    from models.motion import save_motion_encoder

    torch.manual_seed(0)
    kw = dict(motion_dim=12, identity_dim=5, input_size=16, width=4)
    one, two = (
        build_motion_encoder("synthetic", **kw).eval(),
        build_motion_encoder("synthetic", stem_convs=2, **kw).eval(),
    )
    assert sum(p.numel() for p in two.parameters()) - sum(p.numel() for p in one.parameters()) == 4 * 4 * 9 + 4 + 2 * 4
    assert [k for k in one.state_dict() if k.startswith("stem.")] == [
        "stem.0.weight",
        "stem.0.bias",
        "stem.1.weight",
        "stem.1.bias",
    ]
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        loaded = load_from_path(save_motion_encoder(tmp_path / "e.pt", two))
        assert loaded.stem_convs == 2 and torch.allclose(loaded.encode(x), two.encode(x))
    with pytest.raises(ValueError, match="stem_convs"):
        build_motion_encoder("synthetic", stem_convs=0)


def test_pdfgc_missing_weights_error_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "motion_model.pth"
    with pytest.raises(FileNotFoundError, match="motion_model.pth do not exist.*pdfgc_weights"):
        build_motion_encoder("pdfgc", weights=missing)
    with pytest.raises(FileNotFoundError, match="needs weights"):
        build_motion_encoder("pdfgc")


def test_pdfgc_loads_a_published_style_state_dict(tmp_path):
    from models.motion.pdfgc import PDFGCEncoder

    torch.manual_seed(1)
    src = PDFGCEncoder(load=False)
    state = {f"module.{k}": v for k, v in src.state_dict().items()}  # DataParallel prefix is accepted
    state["extra_head.weight"] = torch.zeros(3)  # unexpected keys are ignored
    torch.save(state, tmp_path / "motion_model.pth")
    enc = build_motion_encoder("pdfgc", weights=tmp_path / "motion_model.pth")
    for k, v in src.state_dict().items():
        assert torch.equal(enc.state_dict()[k], v), k
    enc.eval()
    with torch.no_grad():
        out = enc.encode(torch.zeros(1, 3, 96, 96))
    assert out.shape == (1, 548) and enc.embedding_dim == 548
    bad = {k: v for k, v in src.state_dict().items() if not k.startswith("to_mouth.")}
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=r"bad.pth is not a PD-FGC.*to_mouth"):
        build_motion_encoder("pdfgc", weights=tmp_path / "bad.pth")


def test_metric_helpers():
    true = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
    assert r2_scores(true, true) == [1.0, None]  # constant truth → undefined, not a fake number
    assert r2_scores(np.full_like(true, 1.0), true)[0] == pytest.approx(0.0)
    emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [-1.0, 0.0]])
    top1, chance = retrieval_top1(emb, np.array([0, 0, 1, 1, 2]))
    assert top1 == 1.0 and chance == pytest.approx(0.25)
    top1, _ = retrieval_top1(emb, np.array([0, 1, 0, 1, 2]))
    assert top1 == 0.0
    labels = torch.tensor([0, 0, 1, 1])
    good = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [1, 0.05], [0, 1], [0.05, 1]]), dim=1)
    bad = good[[0, 2, 1, 3]]
    assert supervised_contrastive_loss(good, labels) < supervised_contrastive_loss(bad, labels)


def test_identity_leakage_metrics_on_constructed_embeddings():
    """Views of one sample are twins; retrieval must find the identity across *other* samples."""
    rng = np.random.default_rng(0)
    n_id, n_expr, views = 8, 3, 2
    identity = np.repeat(np.arange(n_id), n_expr * views)
    sample = np.repeat(np.arange(n_id * n_expr), views)
    expr = rng.normal(size=(n_id * n_expr, 4)).repeat(views, 0)  # motion only: twins within a sample
    who = rng.normal(size=(n_id, 4)).repeat(n_expr * views, 0)
    motion_only, identity_only = torch.tensor(expr), torch.tensor(who + 0.01 * rng.normal(size=who.shape))
    top1, chance = retrieval_top1(motion_only, identity)
    assert top1 == 1.0  # without excluding the twin view, a pure-motion embedding looks like it knows who
    top1, chance = retrieval_top1(motion_only, identity, exclude=sample)
    assert top1 < 0.35 and chance == pytest.approx((n_expr - 1) * views / (n_id * n_expr * views - views))
    assert retrieval_top1(identity_only, identity, exclude=sample)[0] == 1.0
    assert variance_explained_by_groups(identity_only, identity) > 0.99
    eta_motion = variance_explained_by_groups(motion_only, identity)
    eta_chance = np.mean(
        [variance_explained_by_groups(motion_only, permuted_groups(identity, sample, rng)) for _ in range(50)]
    )
    assert abs(eta_motion - eta_chance) < 0.15  # at chance: who carries nothing of it
    naive = np.mean([variance_explained_by_groups(motion_only, rng.permutation(identity)) for _ in range(50)])
    assert naive < eta_chance - 0.1  # shuffling single views would break the twins and understate chance
    assert explained_variance(motion_only, motion_only) == pytest.approx(1.0)
    assert explained_variance(motion_only.mean(0, keepdim=True).expand_as(motion_only), motion_only) == pytest.approx(
        0.0
    )


def test_r2_interval_resamples_identities():
    rng = np.random.default_rng(1)
    true = rng.uniform(size=(60, 2))
    groups = np.repeat(np.arange(20), 3)
    assert bootstrap_r2_ci(true, true, groups, reps=50) == [[1.0, 1.0], [1.0, 1.0]]
    noisy = true + rng.normal(scale=0.1, size=true.shape)
    (lo, hi), _ = bootstrap_r2_ci(noisy, true, groups, reps=100)
    point = r2_scores(noisy, true)[0]
    assert lo < point < hi and hi - lo < 0.5
    const = np.concatenate([true[:, :1], np.ones((60, 1))], 1)
    assert bootstrap_r2_ci(const, const, groups, reps=20)[1] is None  # undefined stays undefined


def test_mirroring_an_image_mirrors_its_labels():
    """What a blink of the left eye, or a look to one side, does to the image, flipped, is what the
    mirrored labels (``mirror_map``: blink L↔R, eye yaw negated) do: the trainer's mirror augmentation."""
    from models import cameras as cam
    from models.genhead import params as P
    from models.genhead.procedural import ProceduralGenHead

    gen = ProceduralGenHead()
    names = P.EXPRESSION_NAMES + P.GAZE_NAMES
    perm, sign = mirror_map(names)
    n, front = P.neutral(), cam.orbit_label(torch.zeros(1), torch.zeros(1))

    def render(lab):
        return gen.render(n["shape"], lab[:, :9], n["pose"], lab[:, 9:], n["z"], front[:, None], 64).rgb[:, 0]

    def cos(a, b):
        return float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))

    base = render(torch.zeros(1, len(names)))  # (the hair parting makes the head itself asymmetric)
    for name, value in (("blink_left", 1.0), ("eye_yaw", 0.3)):
        label = torch.zeros(1, len(names))
        label[0, names.index(name)] = value
        mirrored = label[:, perm] * sign
        change, mirrored_change = render(label) - base, render(mirrored) - base
        assert cos(change.flip(-1), mirrored_change) > 0.85, name
        assert cos(change, mirrored_change) < 0.2, name  # the labels did change sides
    assert perm[names.index("smile")] == names.index("smile") and sign[names.index("eye_pitch")] == 1.0


def test_shift_and_scale_augmentation_moves_the_face_within_its_bounds():
    """The crop jitter moves an image's content by at most ``shift`` × the width (both ways), zooms it by at
    most ``scale``, keeps the image size, and is the identity when both are 0."""
    from pipeline_tasks.train_motion_encoder import _shift_scale

    x = torch.zeros(64, 3, 64, 64)
    x[:, :, 28:36, 28:36] = 1.0  # a bright square at the centre (x, y = 31.5)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(_shift_scale(x, 0.0, 0.0, gen), x)
    ys = torch.arange(64.0)

    def centre_and_size(img):
        m = img[:, 0]
        w = m.sum((1, 2))
        cx = (m.sum(1) * ys).sum(-1) / w
        return cx, w

    cx, mass = centre_and_size(_shift_scale(x, 4 / 64, 0.0, gen))
    dx = cx - 31.5
    assert dx.abs().max() <= 4.0 + 1e-3 and dx.min() < -2.0 and dx.max() > 2.0  # ±4 px, both directions
    assert torch.allclose(mass, torch.full_like(mass, 64.0), atol=0.5)  # a pure shift keeps the square's area
    _, mass = centre_and_size(_shift_scale(x, 0.0, 0.2, gen))
    assert (
        mass.min() < 64 * 0.85 and mass.max() > 64 * 1.15 and mass.max() <= 64 * 1.2**2 + 1
    )  # zoom in and out by ≤ 20%


def test_blur_augmentation_softens_edges_by_a_per_image_amount_and_keeps_the_mean():
    """The blur keeps each image's mean and a flat image, is off at 0, and spreads a sharp edge over a width
    that differs between images and stays within σ_max."""
    from pipeline_tasks.train_motion_encoder import _blur

    x = -torch.ones(32, 3, 32, 32)
    x[..., 16:] = 1.0  # a vertical edge between columns 15 and 16
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(_blur(x, 0.0, gen), x)
    flat = torch.full((4, 3, 16, 16), 0.3)
    assert torch.allclose(_blur(flat, 1.5, gen), flat, atol=1e-6)
    y = _blur(x, 1.5, gen)
    assert y.shape == x.shape
    assert torch.allclose(y.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=1e-4)
    soft = ((y[:, 0, 16, :] > -0.95) & (y[:, 0, 16, :] < 0.95)).sum(-1)  # columns the edge is spread over
    assert soft.min() < soft.max()  # σ differs per image
    assert soft.max() <= 2 * 3 * 1.5 + 1 and soft.max() >= 4  # up to ±3σ_max, and some images clearly blurred


# ---------------------------------------------------------------- the stage
def test_analyser_learns_expressions_and_identity(registry_with_samples, make_cfg, encoded_names):
    reg, samples = registry_with_samples
    cfg = make_cfg(steps=70, val_every=1000, checkpoint_every=35)
    art = train_motion_encoder(cfg, samples.ref, reg)
    assert art.kind == KIND and art.parents == [samples.ref]
    for name in (
        "checkpoint.pt",
        "metrics.json",
        "curves.png",
        "samples/val_predictions.png",
        "logs/scalars.csv",
        "logs/scalars.jsonl",
    ):
        assert (art.path / name).is_file(), name
    assert list((art.path / "logs").glob("events.out.tfevents.*"))
    assert not (art.path / "checkpoints").exists()  # resumable state is not part of the payload

    m = json.loads((art.path / "metrics.json").read_text())
    assert m["n_val_samples"] == 16  # 8 held-out identities × 2 samples
    for name in encoded_names:
        assert m["r2"][name] > 0.3, (name, m["r2"])
    assert m["r2_expression_mean"] > 0.5
    assert m["r2"]["cheek_puff"] is None  # constant in this data
    assert m["identity_retrieval_top1"] > m["identity_retrieval_chance"] + 0.3
    assert m["probe_r2_expression_mean"] > 0.3  # the embedding itself carries the expression
    assert art.manifest["metrics"]["r2"] == m["r2"]

    rows = [json.loads(x) for x in (art.path / "logs" / "scalars.jsonl").read_text().splitlines()]
    assert any("val_r2_expression_mean" in r for r in rows)  # validation at the last step is logged
    rows = [r for r in rows if "loss_motion" in r]
    first = np.mean([r["loss_motion"] for r in rows[:2]])
    last = np.mean([r["loss_motion"] for r in rows[-2:]])
    assert last < 0.6 * first

    enc = load_motion_encoder_artifact(art.ref, registry=reg)
    assert enc.embedding_dim == cfg.model.psi.motion_dim
    assert not enc.training and not any(p.requires_grad for p in enc.parameters())
    parent = torch.nn.Sequential(enc)
    parent.train()
    assert not enc.training  # frozen stays in eval mode
    x = torch.rand(2, 3, 48, 48) * 2 - 1
    assert torch.equal(enc.encode(x), load_from_path(art.path).encode(x))

    assert train_motion_encoder(cfg, samples.ref, reg).path == art.path  # complete → reused, not retrained


def test_killed_run_resumes_to_identical_weights(tmp_path, registry_with_samples, make_cfg):
    reg_b, samples_b = registry_with_samples
    import shutil

    reg_a = ArtifactRegistry(tmp_path / "uninterrupted")
    with reg_a.writer("genhead_samples", {"blobs": 1}, schema_version=samples_b.manifest["schema_version"]) as w:
        shutil.copytree(samples_b.path / "store.zarr", w.path / "store.zarr")
        samples_a = w.commit()
    cfg = make_cfg(steps=9, val_every=1000, checkpoint_every=4, log_every=1, input_size=16, batch_size=16)

    art_a = train_motion_encoder(cfg, samples_a, reg_a)

    with pytest.raises(TrainingInterrupted, match="6/9"):
        train_motion_encoder(cfg, samples_b, reg_b, stop_after=6)  # killed at step 6, last checkpoint at 4
    with pytest.raises(ArtifactError, match="no complete 'motion_encoder'"):
        reg_b.resolve("motion_encoder@latest")
    (tmp,) = reg_b.incomplete(KIND)
    assert [p.name for p in (tmp / "checkpoints").iterdir()] == ["step_00000004.pt"]
    art_b = train_motion_encoder(cfg, samples_b, reg_b)
    assert art_b.version == art_a.version

    sa = torch.load(art_a.path / "checkpoint.pt", weights_only=True)["state_dict"]
    sb = torch.load(art_b.path / "checkpoint.pt", weights_only=True)["state_dict"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    rows_a = (art_a.path / "logs" / "scalars.jsonl").read_text()
    rows_b = (art_b.path / "logs" / "scalars.jsonl").read_text()
    assert rows_a == rows_b  # steps 5–6 logged once, not twice


def test_flow_publishes_r2_table(registry_with_samples, make_cfg, flow_in_subprocess):
    """The Prefect flow end to end (temporary Prefect home and API, in a subprocess)."""
    reg, samples = registry_with_samples
    cfg = make_cfg(steps=4, val_every=1000, checkpoint_every=1000, input_size=16, batch_size=8)
    fields = {
        "device": "cpu",
        "model.psi.motion_dim": cfg.model.psi.motion_dim,
        **{f"motion_encoder.{k}": v for k, v in cfg.motion_encoder.model_dump().items() if k != "betas"},
    }
    # the flow's overrides are "key=value" strings, as `--set` gives them (text fields verbatim, "" is None)
    overrides = [f"{k}=" + ("" if v is None else v if isinstance(v, str) else json.dumps(v)) for k, v in fields.items()]
    code = (
        "import json, sys; import models; from flows.train_motion_encoder import train_motion_encoder_flow;"
        "from prefect.client.orchestration import get_client;"
        f"ref = train_motion_encoder_flow('tiny', json.loads(sys.argv[1]), {samples.ref!r}, {str(reg.root)!r});"
        "import asyncio\n"
        "async def arts():\n"
        "    async with get_client() as c:\n"
        "        return {a.key: a.data for a in await c.read_artifacts()}\n"
        "got = asyncio.run(arts()); print('REF', ref); print('KEYS', sorted(got));"
        "print('MARKDOWN', json.dumps(got.get('motion-encoder-' + ref.split('@')[1])))"
    )
    lines = flow_in_subprocess(code, json.dumps(overrides))
    ref = next(line.split()[1] for line in lines if line.startswith("REF "))
    art = reg.resolve(ref)
    assert art.kind == KIND and art.parents == [samples.ref]
    keys = next(line for line in lines if line.startswith("KEYS "))
    assert f"motion-encoder-{art.version}" in keys and f"motion-encoder-{art.version}-r2" in keys
    markdown = json.loads(next(line for line in lines if line.startswith("MARKDOWN "))[9:])
    assert "| jaw_open |" in markdown and art.ref in markdown  # the R² table


def test_pdfgc_backend_publishes_the_same_kind_of_artifact(tmp_path):
    from models.motion.pdfgc import PDFGCEncoder
    from pipeline_tasks.config import load_config

    weights = tmp_path / "motion_model.pth"
    torch.save(PDFGCEncoder(load=False).state_dict(), weights)
    reg = ArtifactRegistry(tmp_path / "artifacts")
    wrong = load_config("tiny", {"motion_encoder.backend": "pdfgc", "motion_encoder.pdfgc_weights": str(weights)})
    with pytest.raises(ValueError, match="model.psi.motion_dim=548"):
        train_motion_encoder(wrong, registry=reg)
    cfg = load_config(
        "tiny",
        {"motion_encoder.backend": "pdfgc", "motion_encoder.pdfgc_weights": str(weights), "model.psi.motion_dim": 548},
    )
    art = train_motion_encoder(cfg, registry=reg)  # no genhead_samples needed
    enc = load_motion_encoder_artifact(art)
    assert enc.embedding_dim == 548 and not enc.training and not any(p.requires_grad for p in enc.parameters())
    assert json.loads((art.path / "metrics.json").read_text())["backend"] == "pdfgc"
