"""Stages 2–4 on a handful of synthetic samples: the sample rules, the loss rules, E_mot frozen,
exact resume of Ψ training, and conversion resuming after a kill without redoing videos."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline_tasks import pseudo_mv as pmv_stage
from pipeline_tasks import stages
from pipeline_tasks import train_psi as psi_stage
from pipeline_tasks.analyser_samples import run_analyser_samples_stage
from pipeline_tasks.config import load_config
from pipeline_tasks.data.images import to_model_images
from pipeline_tasks.data.video_sidecars import list_videos, read_ground_truth_maps, read_sidecar
from pipeline_tasks.genhead_samples import run_genhead_stage
from pipeline_tasks.synthetic_videos import run_videos_stage
from pipeline_tasks.train_motion_encoder import train_motion_encoder
from pipeline_tasks.train_psi3d import load_psi3d, train_psi3d
from pipeline_tasks.training.logs import read_log
from pipeline_tasks.training.objective import PsiObjective
from storage_schemas import pseudo_mv as pm
from storage_schemas.artifacts import ArtifactRegistry

FAST = [
    "genhead.n_identities=12",
    "genhead.shard_size=6",
    "genhead.views_per_identity=3",
    "psi3d.steps=2",
    "psi3d.val_identities=2",
    "psi3d.batch_size=2",
    "psi3d.checkpoint_every=1",
    "analyser_samples.n_identities=4",
    "analyser_samples.expressions_per_identity=2",
    "analyser_samples.shard_size=8",
    "analyser_samples.visibility_samples=4",
    "motion_encoder.steps=2",
    "motion_encoder.val_identities=2",
    "motion_encoder.batch_size=8",
    "videos.n_videos=3",
    "videos.n_frames=4",
    "pseudo_mv.views_per_frame=2",
    "pseudo_mv.frame_batch=4",
    "psi.steps=4",
    "psi.batch_size=2",
    "psi.checkpoint_every=2",
    "psi.val_every=2",
    "psi.log_every=1",
    "psi.sample_every=4",
]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """Stages 1, 2a, 2b, videos and 3 on a few samples (shared by the tests of this module)."""
    root = tmp_path_factory.mktemp("stages") / "artifacts"
    reg = ArtifactRegistry(root)
    cfg = load_config("tiny", FAST)
    g = run_genhead_stage(cfg, reg, progress=False)
    p3 = train_psi3d(cfg, g, reg)
    me = train_motion_encoder(cfg, run_analyser_samples_stage(cfg, reg, progress=False), reg)
    vids = run_videos_stage(cfg, reg, progress=False)
    pmv = pmv_stage.convert(cfg, p3, me, vids, reg, progress=False)
    return {"cfg": cfg, "reg": reg, "genhead": g, "psi3d": p3, "motion_encoder": me, "videos": vids, "pseudo_mv": pmv}


def test_end_to_end_lineage_and_store(upstream):
    reg, pmv = upstream["reg"], upstream["pseudo_mv"]
    assert set(pmv.parents) == {upstream["psi3d"].ref, upstream["motion_encoder"].ref, upstream["videos"].ref}
    assert upstream["psi3d"].parents == [upstream["genhead"].ref]
    store = pmv.path / "store.zarr"
    pm.validate(store)
    index = pm.read_index(store)
    assert [e["status"] for e in index] == ["converted"] * 3
    g = pm.open_read(store)[index[0]["video_id"]]
    assert g["views"].shape == (4, 2, 64, 64, 3) and g["view_motion"].shape[:2] == (4, 2)
    assert g.attrs["camera_source"] == "ground_truth"
    # the frame alpha of a synthetic video is the generator's, not Ψ3d's render
    assert g.attrs["alpha_source"] == "ground_truth"
    row = next(r for r in list_videos(upstream["videos"]) if r["name"] == index[0]["video_id"])
    truth = read_ground_truth_maps(row["sidecar"], read_sidecar(row["sidecar"]))["alpha"]
    assert np.array_equal(g["alpha"][:], truth[np.asarray(g.attrs["frame_indices"])])
    assert g["alpha"][:].mean() > 20 and not np.array_equal(g["alpha"][:], g["view_alpha"][:, 0])
    assert (pmv.path / pmv_stage.CONTACT_SHEET).stat().st_size > 1000
    check = json.loads(
        (pmv.path / "pseudo_view_check.json").read_text()
    )  # compared with the truth (2 Ψ3d steps: no claim)
    assert check["videos"] == 3 and check["views"] == check["frames"] * 2 and np.isfinite(check["psnr_views"])
    # the stored views are Ψ3d's renders of each frame at the stored (distinct, seeded) cameras
    vc = torch.from_numpy(g["view_cameras"][:])
    assert not torch.allclose(vc[:, 0], vc[:, 1]) and not torch.allclose(vc[0], vc[1])
    assert torch.equal(vc, pmv_stage.view_cameras(index[0]["video_id"], np.asarray(g.attrs["frame_indices"]), 2, 0))
    psi3d = load_psi3d(upstream["psi3d"], upstream["cfg"].model)
    with torch.no_grad():
        src = to_model_images(g["frames"][:1])
        again = psi3d.render(psi3d(src), vc[:1], perturb=False)["image"]
    stored = to_model_images(g["views"][:1])
    assert (again.clamp(-1, 1) - stored).abs().max() < 2.5 / 127.5
    assert g["frames"][:].std() > 5
    m = pmv.manifest["metrics"]
    assert m["frames_per_s"] > 0 and m["views_per_s"] == pytest.approx(2 * m["frames_per_s"])
    # the same call again finds it complete and returns it unchanged
    again = pmv_stage.convert(
        upstream["cfg"], upstream["psi3d"], upstream["motion_encoder"], upstream["videos"], reg, progress=False
    )
    assert again.version == pmv.version


def test_replacement_probabilities_over_many_draws():
    rng = np.random.default_rng(0)
    lengths = np.array([7, 30, 12])
    videos = rng.integers(0, 3, 200_000)
    plan = psi_stage.draw_plan(rng, videos, lengths, 4, 0.8, 0.1)
    assert plan.target_real.mean() == pytest.approx(0.8, abs=0.005)
    assert plan.driving_real.mean() == pytest.approx(0.1, abs=0.005)
    # independent draws; views p ≠ q; frames inside their own video
    assert (plan.target_real & plan.driving_real).mean() == pytest.approx(0.08, abs=0.005)
    assert (plan.view_p != plan.view_q).all()
    assert (plan.t < lengths[videos]).all() and (plan.source_t < lengths[videos]).all() and plan.t.min() == 0
    other = psi_stage.draw_plan(np.random.default_rng(0), videos, lengths, 4, 0.3, 0.6)
    assert other.target_real.mean() == pytest.approx(0.3, abs=0.005) and other.driving_real.mean() == pytest.approx(
        0.6, abs=0.005
    )


def _render_like(g, b=4):
    return {
        "image": torch.rand(b, 3, 64, 64, generator=g) * 2 - 1,
        "image_raw": torch.rand(b, 3, 32, 32, generator=g) * 2 - 1,
        "foreground_raw": torch.rand(b, 3, 32, 32, generator=g) * 2 - 1,
        "background_raw": torch.rand(b, 3, 32, 32, generator=g) * 2 - 1,
        "alpha": torch.rand(b, 1, 32, 32, generator=g),
        "depth": 4 + torch.rand(b, 1, 32, 32, generator=g),
    }


def test_pseudo_targets_contribute_only_masked_lpips():
    cfg = load_config(
        "tiny",
        [
            "psi.losses.l1.weight=5",
            "psi.losses.adversarial.weight=0.5",
            "psi.losses.pseudo_lpips.weight=0.7",
            "psi.losses.raw_lpips.weight=1",
            "psi.losses.foreground_lpips.weight=1",
        ],
    )
    obj = PsiObjective(cfg.model, cfg.psi.losses)
    g = torch.Generator().manual_seed(0)
    out = _render_like(g)
    target = torch.rand(4, 3, 64, 64, generator=g) * 2 - 1
    mask = torch.rand(4, 1, 64, 64, generator=g)
    cams = torch.zeros(4, 25)
    pseudo = torch.zeros(4, dtype=torch.bool)
    total, log = obj.generator_loss(out, target, mask, cams, pseudo, step=10**6)
    assert set(log) == {"pseudo_lpips", "total", "real_fraction"}
    masked = lambda x: (x + 1) * mask - 1  # noqa: E731  over black: target × mask
    assert float(total) == pytest.approx(0.7 * float(obj.lpips(masked(out["image"]), masked(target))), rel=1e-5)
    # changing what only the real-target terms would see does not change a pseudo sample's loss
    out2 = {
        **out,
        "image_raw": out["image_raw"] * 0,
        "alpha": out["alpha"] * 0,
        "background_raw": out["background_raw"] * 0,
    }
    assert float(obj.generator_loss(out2, target, mask, cams, pseudo, step=10**6)[0]) == pytest.approx(
        float(total), rel=1e-6
    )
    # nor what lies outside the pseudo view's foreground
    hard = (mask > 0.5).float()
    t_hard, _ = obj.generator_loss(out, target, hard, cams, pseudo, step=10**6)
    out3 = {**out, "image": torch.where(hard.expand(-1, 3, -1, -1) < 0.5, -out["image"], out["image"])}
    assert float(obj.generator_loss(out3, target, hard, cams, pseudo, step=10**6)[0]) == pytest.approx(
        float(t_hard), rel=1e-6
    )
    real = torch.ones(4, dtype=torch.bool)
    _, log_real = obj.generator_loss(
        out, target, mask, cams, real, step=10**6, target_depth=torch.full((4, 1, 64, 64), 4.0)
    )
    assert {
        "l1",
        "lpips",
        "raw_l1",
        "raw_lpips",
        "foreground_l1",
        "foreground_lpips",
        "background_l1",
        "alpha",
        "adversarial",
        "diag_background_psnr",
        "diag_alpha_inside",
    } <= set(log_real)
    assert "depth" not in log_real  # weight 0 in the tiny preset's Ψ section: not computed


def test_the_background_shortcut_is_closed():
    """ "Copy the source through the background network" must cost far more than the honest split.

    Two renders of the same target: the shortcut (empty volume, background = target, final image =
    target) and the honest one (volume = target × alpha, background = target × (1 − alpha)). Both
    reproduce the final image exactly, so an objective on the final image alone cannot tell them apart;
    the official structure must."""
    cfg = load_config("tiny")
    losses = cfg.psi3d.losses.model_copy(update={"lpips": cfg.psi3d.losses.lpips.model_copy(update={"weight": 0.0})})
    obj = PsiObjective(cfg.model, losses)
    g = torch.Generator().manual_seed(1)
    target = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    mask = ((xx**2 + yy**2) < 0.4).float().expand(2, 1, 64, 64)  # a head-sized disc
    t32 = torch.nn.functional.interpolate(target, size=32, mode="area")
    m32 = torch.nn.functional.interpolate(mask, size=32, mode="area")
    black = -torch.ones_like(t32)
    shortcut = {
        "image": target,
        "image_raw": t32,
        "foreground_raw": black,
        "background_raw": t32,
        "alpha": torch.zeros_like(m32),
        "depth": torch.full_like(m32, 4.85),
    }
    honest = {
        "image": target,
        "image_raw": t32,
        "foreground_raw": (t32 + 1) * m32 - 1,
        "background_raw": (t32 + 1) * (1 - m32) - 1,
        "alpha": m32,
        "depth": torch.full_like(m32, 4.0),
    }
    real = torch.ones(2, dtype=torch.bool)
    cams = torch.zeros(2, 25)
    l_short, log_short = obj.generator_loss(shortcut, target, mask, cams, real, step=0)
    l_honest, log_honest = obj.generator_loss(honest, target, mask, cams, real, step=0)
    assert float(l_honest) < 0.05 * float(l_short)
    assert float(l_short) > 0.3
    # the diagnostics see the difference: alpha inside the true mask, and the background alone
    assert log_honest["diag_alpha_inside"] > 0.9 and log_short["diag_alpha_inside"] == 0
    assert log_short["diag_background_psnr"] > 60 > log_honest["diag_background_psnr"]


def _copy_registry(reg: ArtifactRegistry, dest) -> ArtifactRegistry:
    shutil.copytree(reg.root, dest)
    return ArtifactRegistry(dest)


def test_psi_training_resume_equals_uninterrupted_and_emot_stays_frozen(upstream, tmp_path, monkeypatch):
    cfg = load_config("tiny", FAST + ["psi.losses.identity.weight=1", "psi.losses.identity_backend=synthetic"])
    seen = []
    real_load = stages.load

    def capture(art, **kw):  # what Ψ's trainer loads through the stage registry
        loaded = real_load(art, **kw)
        if art.kind == "motion_encoder":
            seen.append((loaded, {k: v.clone() for k, v in loaded.state_dict().items()}))
        return loaded

    monkeypatch.setattr(stages, "load", capture)
    reg_a = _copy_registry(upstream["reg"], tmp_path / "a")
    reg_b = _copy_registry(upstream["reg"], tmp_path / "b")
    args = (upstream["pseudo_mv"].ref, upstream["psi3d"].ref, upstream["motion_encoder"].ref)
    whole = psi_stage.train_psi(cfg, *args, registry=reg_a)
    with pytest.raises(InterruptedError):
        psi_stage.train_psi(cfg, *args, registry=reg_b, stop_after=3)  # killed after step 3; last checkpoint at 2
    assert reg_b.find("psi", whole.version) is None
    resumed = psi_stage.train_psi(cfg, *args, registry=reg_b)
    assert resumed.version == whole.version
    a = torch.load(whole.path / "checkpoint.pt", weights_only=True)["state_dicts"]["psi"]
    b = torch.load(resumed.path / "checkpoint.pt", weights_only=True)["state_dicts"]["psi"]
    diffs = {k: float((a[k].float() - b[k].float()).abs().max()) for k in a if not torch.equal(a[k], b[k])}
    assert a.keys() == b.keys() and not diffs, sorted(diffs.items(), key=lambda kv: -kv[1])[:5]
    # E_mot: frozen, its weights untouched by Ψ training (identity loss on, so it was in the graph)
    assert seen
    for enc, before in seen:
        assert not any(p.requires_grad for p in enc.parameters())
        assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())
    m = whole.manifest["metrics"]
    assert {"val_reenactment_loss_step0", "val_reenactment_loss"} <= set(m)
    # the final metrics are the last step's validation (reused, not recomputed), the same after a resume
    last = [r for r in read_log(whole.path / "logs" / "scalars.jsonl") if "val_psnr" in r][-1]
    assert last["step"] == cfg.psi.steps and last["val_psnr"] == pytest.approx(m["val_psnr"], abs=1e-9)
    assert resumed.manifest["metrics"]["val_psnr"] == pytest.approx(m["val_psnr"], abs=1e-6)
    assert whole.manifest["counts"]["params_not_copied_from_psi3d"] > 0


def test_conversion_resumes_without_redoing_finished_videos(upstream, tmp_path, monkeypatch):
    cfg = upstream["cfg"].model_copy(update={"pseudo_mv": upstream["cfg"].pseudo_mv.model_copy(update={"seed": 7})})
    reg = _copy_registry(upstream["reg"], tmp_path / "c")
    args = (cfg, upstream["psi3d"].ref, upstream["motion_encoder"].ref, upstream["videos"].ref, reg)

    def die_after_first(shard_fn, parts):
        shard_fn(parts[0])
        raise KeyboardInterrupt("killed")  # as if the process died after the first video

    with pytest.raises(KeyboardInterrupt):
        pmv_stage.convert(*args, map_shards=die_after_first, progress=False)
    assert reg.list("pseudo_mv") == [a for a in reg.list("pseudo_mv") if a.manifest["config"]["pseudo_mv"]["seed"] != 7]
    tmp = reg.incomplete("pseudo_mv")
    assert len(tmp) == 1
    first = pm.completed_videos(tmp[0] / "store.zarr")
    assert len(first) == 1
    stamp = (tmp[0] / "store.zarr" / first[0] / "views" / "zarr.json").stat().st_mtime_ns

    rendered = []
    real_render = pmv_stage.render_pseudo_views
    monkeypatch.setattr(
        pmv_stage,
        "render_pseudo_views",
        lambda psi3d, e, vid, *a, **k: rendered.append(vid) or real_render(psi3d, e, vid, *a, **k),
    )
    art = pmv_stage.convert(*args, progress=False)
    assert first[0] not in rendered and len(rendered) == 2
    assert (art.path / "store.zarr" / first[0] / "views" / "zarr.json").stat().st_mtime_ns == stamp
    assert [e["status"] for e in pm.read_index(art.path / "store.zarr")] == ["converted"] * 3
    pm.validate(art.path / "store.zarr")


def test_user_videos_convert_with_estimated_cameras_and_bad_one_is_skipped(upstream, tmp_path):
    """Issue 6 wiring: a real photograph animated into an mp4 goes through ingestion into a
    pseudo_mv group (camera source 'estimated'); a broken file in the same folder is recorded
    with its reason and does not stop the good one."""
    from tests.pipeline_tasks.ingest.clips import animate_astronaut

    folder = tmp_path / "videos"
    folder.mkdir()
    animate_astronaut(folder / "astronaut.mp4", n_frames=12, size=256)
    (folder / "broken.mp4").write_text("this is not a video")
    (folder / "copy").mkdir()
    (folder / "copy" / "astronaut.mp4").write_bytes((folder / "astronaut.mp4").read_bytes())  # the same file twice
    (folder / "other").mkdir()
    animate_astronaut(folder / "other" / "astronaut.mp4", n_frames=8, size=256)  # the same name, other content
    cfg = load_config("tiny", FAST + [f"pseudo_mv.videos={folder}", "pseudo_mv.ingest.min_usable_frames=4"])
    reg = _copy_registry(upstream["reg"], tmp_path / "d")
    art = pmv_stage.convert(cfg, upstream["psi3d"].ref, upstream["motion_encoder"].ref, registry=reg, progress=False)
    assert set(art.parents) == {upstream["psi3d"].ref, upstream["motion_encoder"].ref}  # no synthetic videos
    store = art.path / "store.zarr"
    pm.validate(store)
    index = {str(Path(e["source_file"]).relative_to(folder)): e for e in pm.read_index(store)}
    assert sorted(index) == ["astronaut.mp4", "broken.mp4", "other/astronaut.mp4"]  # the copy converts once...
    assert index["astronaut.mp4"]["also_at"] == [str(folder / "copy" / "astronaut.mp4")]  # ...and its path is listed
    assert index["other/astronaut.mp4"]["status"] == "converted" and index["other/astronaut.mp4"]["frames"] == 8
    assert index["other/astronaut.mp4"]["video_id"] != index["astronaut.mp4"]["video_id"]
    assert index["astronaut.mp4"]["status"] == "converted" and index["astronaut.mp4"]["frames"] == 12
    assert index["broken.mp4"]["status"] == "skipped"
    assert "broken.mp4" in index["broken.mp4"]["reason"] and "not a video" in index["broken.mp4"]["reason"]
    group = pm.open_read(store)[index["astronaut.mp4"]["video_id"]]
    assert group.attrs["camera_source"] == "estimated"
    assert group["frames"].shape == (12, 64, 64, 3)
    assert group["alpha"][:].mean() > 20  # the segmentation mask covers the face
    assert art.manifest["counts"]["skipped_videos"] == 1 and art.manifest["counts"]["videos"] == 2


def test_stage3_streams_a_video_in_chunks_and_writes_the_same_store(upstream, tmp_path, monkeypatch):
    """Issue 12: a video goes through stage 3 ``chunk_frames`` frames at a time (never more in memory for
    rendering), and the store equals the one written from a single chunk, frame for frame; the chunked run also
    overlaps ingestion, rendering and Zarr writes (two chunks ahead, two behind), the single chunk runs them in
    sequence. The ingest cache keeps the analysis only (no pixels), compressed."""
    from tests.pipeline_tasks.ingest.clips import animate_astronaut

    folder = tmp_path / "videos"
    folder.mkdir()
    animate_astronaut(folder / "astronaut.mp4", n_frames=12, size=256)
    reg = _copy_registry(upstream["reg"], tmp_path / "s")
    real_render, sizes = pmv_stage.render_pseudo_views, []
    monkeypatch.setattr(
        pmv_stage,
        "render_pseudo_views",
        lambda p, e, vid, frames, *a, **k: sizes.append(len(frames)) or real_render(p, e, vid, frames, *a, **k),
    )
    stores = {}
    for chunk in (5, 64):
        cfg = load_config(
            "tiny",
            FAST
            + [f"pseudo_mv.videos={folder}", "pseudo_mv.ingest.min_usable_frames=4", f"pseudo_mv.chunk_frames={chunk}"]
            + [f"pseudo_mv.executor.{k}={2 if chunk == 5 else 0}" for k in ("prefetch_chunks", "write_behind_chunks")],
        )
        sizes.clear()
        art = pmv_stage.convert(
            cfg, upstream["psi3d"].ref, upstream["motion_encoder"].ref, registry=reg, progress=False
        )
        stores[chunk] = art.path / "store.zarr"
        assert sizes == ([5, 5, 2] if chunk == 5 else [12]), sizes
    a, b = pm.open_read(stores[5]), pm.open_read(stores[64])
    (vid,) = [name for name, _ in a.groups()]
    # the frames, their alpha and the cameras exactly; what the networks compute up to batch-size round-off (a frame
    # is in a batch of 5 in one store and of 8 in the other, and CPU kernels need not give the last bit alike):
    # embeddings to 1e-5, rendered views and their alpha to one grey level in at most 0.01 % of the pixels (measured:
    # 1 pixel of 294 912 after the ResNet's weight gradient changed its arithmetic, 2026-12-06)
    for spec in pm.VIDEO_SCHEMA.arrays:
        x, y = a[vid][spec.name][:], b[vid][spec.name][:]
        if spec.name.endswith("motion"):
            np.testing.assert_allclose(x, y, atol=1e-5, err_msg=spec.name)
        elif spec.name in ("views", "view_alpha"):
            diff = np.abs(x.astype(np.int16) - y.astype(np.int16))
            assert diff.max() <= 1 and (diff > 0).mean() <= 1e-4, (spec.name, diff.max(), (diff > 0).sum())
        else:
            np.testing.assert_array_equal(x, y, err_msg=spec.name)
    assert a[vid].attrs["frames"] == 12 and a[vid].attrs["frame_indices"] == list(range(12))
    (entry,) = list((reg.root / ".cache" / "ingest").glob("*.analysis.npz"))
    with np.load(entry) as z:
        assert "frames" not in z and "alpha" not in z
    assert entry.stat().st_size < 20_000


def test_psi3d_several_target_views_per_source(upstream):
    """``psi3d.targets_per_source`` K: K distinct target views ≠ the source per sample, each paired with its
    own camera, alpha and depth; a K = 2 run trains; an impossible K fails before training."""
    from pipeline_tasks.data.genhead_views import GenHeadViews, draw_views

    rng = np.random.default_rng(3)
    p, q = draw_views(rng, 500, 4, 3)
    assert q.shape == (500, 3) and (q != p[:, None]).all() and all(len(set(row)) == 3 for row in q)
    p1, q1 = draw_views(np.random.default_rng(3), 500, 4, 1)
    assert q1.shape == (500,) and (q1 != p1).all() and set(q1) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="targets_per_source=4"):
        draw_views(rng, 2, 4, 4)

    data = GenHeadViews(upstream["genhead"].path / "store.zarr")
    ids = np.array([3, 0, 5])
    p, q = draw_views(np.random.default_rng(0), 3, data.views, 2)
    src, tgt, alpha, depth, cams = data.pairs(ids, p, q, torch.device("cpu"))
    assert tgt.shape[:2] == (3, 2) and cams.shape == (3, 2, 25) and alpha.shape[:2] == depth.shape[:2] == (3, 2)
    store = {k: data.get(k, ids) for k in ("images", "cameras")}
    for i in range(3):
        assert torch.equal(src[i], to_model_images(store["images"][i, p[i]]))
        for k in range(2):
            assert torch.equal(tgt[i, k], to_model_images(store["images"][i, q[i, k]]))
            assert torch.equal(cams[i, k], torch.from_numpy(store["cameras"][i, q[i, k]]).float())

    reg = upstream["reg"]
    cfg = load_config("tiny", FAST + ["psi3d.targets_per_source=2"])
    p3 = train_psi3d(cfg, upstream["genhead"], reg)
    rows = [r for r in read_log(p3.path / "logs") if "loss" in r]
    assert rows and all(np.isfinite(r["loss"]) and np.isfinite(r["alpha"]) for r in rows)
    assert p3.manifest["config"]["psi3d"]["targets_per_source"] == 2 and np.isfinite(
        p3.manifest["metrics"]["val_psnr_novel"]
    )
    with pytest.raises(ValueError, match="targets_per_source=3"):
        train_psi3d(load_config("tiny", FAST + ["psi3d.targets_per_source=3"]), upstream["genhead"], reg)


def test_psi3d_frontal_sources(upstream):
    """``psi3d.frontal_source_p``: the most frontal stored view is the one whose head-relative camera is nearest
    the face's axis; with p = 1 every source is that view and no target equals it; with p = 0 sources are uniform."""
    from pipeline_tasks.data.genhead_views import GenHeadViews, draw_views

    data = GenHeadViews(upstream["genhead"].path / "store.zarr")
    ids = np.arange(data.n)
    frontal = data.most_frontal_view(ids)
    pos = data.get("cameras", ids)[..., :16].reshape(data.n, data.views, 4, 4)[..., :3, 3]
    off_axis = np.degrees(np.arccos(pos[..., 2] / np.linalg.norm(pos, axis=-1)))  # angle from the face's +z axis
    assert np.array_equal(off_axis[ids, frontal], off_axis.min(1))
    p, q = draw_views(np.random.default_rng(1), data.n, data.views, 1, frontal, 1.0)
    assert np.array_equal(p, frontal) and (q != p).all()
    p0, _ = draw_views(np.random.default_rng(1), 400, 4, 1, np.zeros(400, int), 0.0)
    assert 0.15 < (p0 == 0).mean() < 0.35  # uniform over 4 views: the preference is ignored at p = 0


def test_psi_validation_pairs_know_the_truth(upstream):
    """Ψ's validation pairs of a synthetic video: the synthetic world re-renders the stored frames from
    the sidecar (so the truth with the source's expression at the target camera is the right image), the
    regions are where the face is, and a model that ignores motion scores exactly its no-motion value
    with a change correlation of 0, while an oracle that reenacts perfectly scores a correlation of 1."""
    from pipeline_tasks.training.psi_validation import baseline_scores, reenactment_scores, truth_with_labels_of

    index = pm.read_index(upstream["pseudo_mv"].path / "store.zarr")
    val = psi_stage.PseudoMVVideos(upstream["pseudo_mv"].path / "store.zarr", [index[-1]["video_id"]])
    frames = np.arange(val.lengths[0])
    again = truth_with_labels_of(val.attrs[0], frames, torch.from_numpy(val.data[0]["frame_cameras"]), 64)
    stored = to_model_images(val.data[0]["frames"])
    assert float(psi_stage.psnr(again, stored).min()) > 30  # the stored frames (H.264, crf 18) re-rendered

    plan = psi_stage.validation_plan(val, n_per_video=6)
    pairs = psi_stage.held_out_pairs(val, plan)
    assert pairs.n == 6 and pairs.note == "" and pairs.truth_source_expression is not None
    for name in ("mouth", "eyes"):
        area = pairs.regions[name].flatten(1).mean(1)
        assert ((area > 0.005) & (area < 0.2)).all(), (name, area)
    # the truth with the source's expression differs from the target (another expression) only a little
    gap = psi_stage.psnr(pairs.truth_source_expression, pairs.target)
    moved = plan.source_t != plan.t
    assert (gap[moved] > 20).all() and (gap[moved] < 60).all()

    # Ψ at init is Ψ3d with motion off: reenactment = no motion, change correlation 0, equal to Ψ3d(source)
    psi = psi_stage.build_psi(upstream["cfg"].model)
    p3 = load_psi3d(upstream["psi3d"], upstream["cfg"].model)
    psi_stage.init_psi_from_psi3d(psi, p3.state_dict())
    s = reenactment_scores(psi, pairs, "cpu")
    base = baseline_scores(pairs, p3, "cpu")
    assert (
        s["psnr"] == s["no_motion_psnr"]
        and s["mouth_psnr"] == s["no_motion_mouth_psnr"]
        and s["change_correlation"] == 0
    )
    assert s["psnr"] == pytest.approx(base["psi3d_source_psnr"], abs=1e-3)
    assert base["copy_source_psnr"] == pytest.approx(float(psi_stage.psnr(pairs.source, pairs.target).mean()))

    class Oracle(torch.nn.Module):
        """Renders the truth: the target when driven by v_d, the source expression's truth when v_d = v_s."""

        def forward(self, src, m_s, m_d):
            return {"source": src, "driven": [not torch.equal(a, b) for a, b in zip(m_s, m_d)]}

        def render(self, planes, cams, perturb=False):  # the pair: its source image and its target camera
            out = []
            for x, c, driven in zip(planes["source"], cams, planes["driven"]):
                j = int(torch.nonzero((pairs.source == x).flatten(1).all(1) & (pairs.cameras == c).all(1))[0])
                out.append(pairs.target[j] if driven else pairs.truth_source_expression[j])
            return {"image": torch.stack(out)}

    pairs.motion_driving = pairs.motion_driving + 1.0  # make v_d ≠ v_s for every pair
    perfect = reenactment_scores(Oracle(), pairs, "cpu")
    assert perfect["psnr"] == pytest.approx(100, abs=0.01) and perfect["change_correlation"] > 0.999


def _bench_module(name: str):
    """A script of ``bench/`` (not an installed package) as a module."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_oracle_store_carries_the_true_labels_and_the_probe_reads_them(upstream, tmp_path):
    """bench/psi_motion_oracle.py: the copy's motion is the frame's standardised labels (views share their
    frame's), the source store is untouched, and the ridge probe reads an affine code of the labels back (R² ≈ 1)."""
    oracle = _bench_module("psi_motion_oracle")
    src = upstream["pseudo_mv"].path / "store.zarr"
    dst = tmp_path / "oracle.zarr"
    dim = upstream["cfg"].model.psi.motion_dim
    before = {v: pm.open_read(src)[v]["frame_motion"][:] for v in pm.completed_videos(src)}
    oracle.write_oracle_store(src, dst, dim)
    root = pm.open_read(dst)
    n = len(oracle.LABEL_NAMES)
    for v, emb in before.items():
        labels = oracle.oracle_labels(dict(root[v].attrs))
        got = root[v]["frame_motion"][:]
        assert got.shape == emb.shape and not np.allclose(got, emb)
        assert np.all(got[:, n:] == 0)
        varying = labels.std(0) > 1e-6
        for j in np.flatnonzero(varying):  # an affine map of the label: correlation 1
            assert np.corrcoef(got[:, j], labels[:, j])[0, 1] > 0.999
        assert np.array_equal(root[v]["view_motion"][:], np.repeat(got[:, None], root[v]["view_motion"].shape[1], 1))
        assert np.array_equal(pm.open_read(src)[v]["frame_motion"][:], emb)  # the source store is not touched
    probe = oracle.store_motion_probe(dst, 1)  # 8 training frames: too few to read much; only the layout is checked
    held = oracle.oracle_labels(dict(root[pm.completed_videos(dst)[-1]].attrs))
    constant = [bool(c) for c in held.std(0) < 1e-6]
    for key in ("frame_motion", "view_motion"):
        assert [r is None for r in probe[key]] == constant  # no R² where the held-out label does not vary
    # the probe itself: an affine code of the labels reads back at R² ≈ 1, a constant label has no R²
    rng = np.random.default_rng(0)
    y = rng.random((400, 3))
    y[:, 2] = 0.5
    code = np.c_[y @ rng.normal(size=(3, 5)), rng.normal(size=(400, 2)) * 0.01]
    r2 = oracle._ridge_r2(code[:300], y[:300], code[300:], y[300:], 1e-4)
    assert r2[0] > 0.99 and r2[1] > 0.99 and r2[2] is None


def test_a_fault_in_one_video_fails_that_video_only(upstream, tmp_path, monkeypatch):
    """Any exception while converting one video (here the renderer runs out of memory halfway through the
    videos; a fault not otherwise causable here, so injected) is recorded in the index with its file, step and
    reason, leaves no partial group, and the other videos convert."""
    cfg = upstream["cfg"].model_copy(update={"pseudo_mv": upstream["cfg"].pseudo_mv.model_copy(update={"seed": 11})})
    reg = _copy_registry(upstream["reg"], tmp_path / "f")
    args = (cfg, upstream["psi3d"].ref, upstream["motion_encoder"].ref, upstream["videos"].ref, reg)
    real_render, calls = pmv_stage.render_pseudo_views, []

    def oom_on_second(psi3d, e, vid, *a, **k):
        calls.append(vid)
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory (injected)")
        return real_render(psi3d, e, vid, *a, **k)

    monkeypatch.setattr(pmv_stage, "render_pseudo_views", oom_on_second)
    art = pmv_stage.convert(*args, progress=False)
    store = art.path / "store.zarr"
    pm.validate(store)
    index = {e["video_id"]: e for e in pm.read_index(store)}
    failed = index[calls[1]]
    assert failed["status"] == "failed" and failed["step"] == "render"
    assert failed["source_file"] in failed["reason"] and "RuntimeError: CUDA out of memory" in failed["reason"]
    assert calls[1] not in pm.completed_videos(store)
    assert sorted(e["status"] for e in index.values()) == ["converted", "converted", "failed"]
    assert art.manifest["counts"]["videos"] == 2 and art.manifest["counts"]["skipped_videos"] == 1


STAGE3_KILL = """
import json, os, sys
import zarr
from pipeline_tasks import pseudo_mv
from pipeline_tasks.config import load_config
from storage_schemas.artifacts import ArtifactRegistry
root, refs, kill_at, overrides = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
writes = [0]
real = zarr.Array.__setitem__
def dying(self, key, value):
    writes[0] += 1
    if writes[0] == kill_at:
        os._exit(137)  # as SIGKILL: no cleanup, no finally
    return real(self, key, value)
zarr.Array.__setitem__ = dying
pseudo_mv.convert(load_config("tiny", overrides), refs["psi3d"], refs["motion_encoder"], refs["videos"],
                  ArtifactRegistry(root), progress=False)
"""


@pytest.mark.parametrize(
    "kill_at",
    [12, pytest.param(21, marks=pytest.mark.slow)],  # one kill point in the fast suite (time budget)
)  # 8 arrays per chunk, 2 chunks per video: mid 2nd chunk of video 1 / of video 2's 1st
def test_stage3_killed_mid_video_resumes_to_the_uninterrupted_store(upstream, tmp_path, kill_at):
    """Issue 12: a real process death while a video's chunks are being appended, then a rerun: nothing lost,
    nothing duplicated, the store equal to an uninterrupted conversion's."""
    import subprocess
    import sys

    overrides = FAST + ["pseudo_mv.chunk_frames=2", "pseudo_mv.seed=5"]
    cfg = load_config("tiny", overrides)
    refs = {k: upstream[k].ref for k in ("psi3d", "motion_encoder", "videos")}
    reg = _copy_registry(upstream["reg"], tmp_path / "k")
    killed = subprocess.run(
        [sys.executable, "-c", STAGE3_KILL, str(reg.root), json.dumps(refs), str(kill_at), json.dumps(overrides)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    assert killed.returncode == 137, killed.stderr[-2000:]
    (tmp,) = reg.incomplete("pseudo_mv")
    store = tmp / "store.zarr"
    torn = [name for name, g in pm.open_group(store, mode="r+").groups() if g.attrs.get("complete") is not True]
    assert (
        len(torn) == 1 and len(pm.completed_videos(store)) == kill_at // 16
    )  # one video torn, the ones before it whole
    resumed = pmv_stage.convert(cfg, refs["psi3d"], refs["motion_encoder"], refs["videos"], reg, progress=False)
    whole = pmv_stage.convert(
        cfg,
        refs["psi3d"],
        refs["motion_encoder"],
        refs["videos"],
        _copy_registry(upstream["reg"], tmp_path / "w"),
        progress=False,
    )
    assert resumed.version == whole.version
    a, b = pm.open_read(resumed.path / "store.zarr"), pm.open_read(whole.path / "store.zarr")

    def index(art, root):  # source paths relative to their registry (the two runs have two registries)
        return [
            {**e, "source_file": str(Path(e["source_file"]).relative_to(root))}
            for e in pm.read_index(art.path / "store.zarr")
        ]

    assert index(resumed, reg.root) == index(whole, tmp_path / "w")
    assert sorted(n for n, _ in a.groups()) == sorted(n for n, _ in b.groups())
    for name, g in b.groups():
        assert a[name].attrs["frames"] == g.attrs["frames"] == 4
        for spec in pm.VIDEO_SCHEMA.arrays:
            np.testing.assert_allclose(a[name][spec.name][:], g[spec.name][:], atol=1e-5, err_msg=f"{name}/{spec.name}")


STAGE4_KILL = """
import json, os, sys
import torch
from pipeline_tasks import train_psi
from pipeline_tasks.config import load_config
from storage_schemas.artifacts import ArtifactRegistry
root, refs, overrides = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
saves = [0]
real = torch.save
def dying(obj, f, *a, **k):
    if not str(getattr(f, "name", "")).endswith(".tmp"):  # not a training checkpoint
        return real(obj, f, *a, **k)
    saves[0] += 1
    if saves[0] == 2:  # the step-4 checkpoint: half its bytes written, then death
        import io
        buf = io.BytesIO()
        real(obj, buf, *a, **k)
        f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
        f.flush()
        os._exit(137)
    real(obj, f, *a, **k)
torch.save = dying
train_psi.train_psi(load_config("tiny", overrides), refs["pseudo_mv"], refs["psi3d"], refs["motion_encoder"],
                    registry=ArtifactRegistry(root))
"""


@pytest.mark.slow  # 48 s; the fast suite keeps test_psi_training_resume_equals_uninterrupted (time budget)
def test_stage4_killed_while_writing_a_checkpoint_resumes_to_the_uninterrupted_weights(upstream, tmp_path):
    """Issue 12: Ψ training dies for real halfway through writing its step-4 checkpoint, then is rerun: it
    resumes from the last whole checkpoint (step 2) and ends with the uninterrupted run's weights, bit for bit.
    (A stop between steps: ``test_psi_training_resume_equals_uninterrupted_and_emot_stays_frozen``.)"""
    import subprocess
    import sys

    overrides = FAST + ["psi.checkpoint_every=2", "psi.steps=4"]
    cfg = load_config("tiny", overrides)
    refs = {k: upstream[k].ref for k in ("pseudo_mv", "psi3d", "motion_encoder")}
    reg = _copy_registry(upstream["reg"], tmp_path / "k")
    killed = subprocess.run(
        [sys.executable, "-c", STAGE4_KILL, str(reg.root), json.dumps(refs), json.dumps(overrides)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"},
    )
    assert killed.returncode == 137, killed.stderr[-2000:]
    (tmp,) = reg.incomplete("psi")
    ckpts = sorted(p.name for p in (tmp / "checkpoints").iterdir())
    assert ckpts[-1] == "step_00000002.pt" and ckpts[0].startswith(".step_00000004.pt"), (
        ckpts
    )  # the torn file never got its name
    resumed = psi_stage.train_psi(cfg, refs["pseudo_mv"], refs["psi3d"], refs["motion_encoder"], registry=reg)
    whole = psi_stage.train_psi(
        cfg,
        refs["pseudo_mv"],
        refs["psi3d"],
        refs["motion_encoder"],
        registry=_copy_registry(upstream["reg"], tmp_path / "w"),
    )
    assert resumed.version == whole.version
    a = torch.load(whole.path / "checkpoint.pt", weights_only=True)["state_dicts"]["psi"]
    b = torch.load(resumed.path / "checkpoint.pt", weights_only=True)["state_dicts"]["psi"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not list(resumed.path.rglob("*.tmp"))  # the torn temporary is not part of the artifact


def _store_contents(store: Path, registry_root: Path) -> dict:
    """Every array and attribute of a pseudo_mv store, by path (source files relative to the artifact root)."""
    root = pm.open_read(store)

    def attrs(g) -> dict:
        return json.loads(json.dumps(g.attrs.asdict()).replace(str(registry_root), "<root>"))

    out = {"/": attrs(root)}
    for name, g in root.groups():
        out[name] = attrs(g)
        out.update({f"{name}/{a}": arr[:] for a, arr in g.arrays()})
    return out


STAGE3_RUNS = """
import functools, json, os, signal, sys
from pathlib import Path

from prefect import flow

from flows.pseudo_mv import map_shards_on, pseudo_mv_flow
from pipeline_tasks import pseudo_mv as pmv
from pipeline_tasks.config import load_config
from storage_schemas.artifacts import ArtifactRegistry

a = json.loads(sys.argv[1])


def faulty(shard_fn, fault, log, victim):
    \"\"\"shard_fn, where the victim video's first chunk is followed by a fault, once: the worker process killed
    (SIGKILL) or an exception as a transient device fault would raise. Every video begun is logged.\"\"\"

    def run(items, raise_failures=False):
        from storage_schemas import pseudo_mv as pm

        # the originals, whichever shard of this worker process patches first
        append = pm.__dict__.setdefault("_unpatched_append", pm.append_frames)
        begin = pm.__dict__.setdefault("_unpatched_begin", pm.begin_video)

        def logged_begin(store, video_id, *args, **kw):
            with open(log, "a") as f:
                f.write(video_id + "\\n")
            return begin(store, video_id, *args, **kw)

        def append_then_fault(group, arrays):
            n = append(group, arrays)
            marker = Path(log + ".fault")
            if group.basename == victim and not marker.exists():
                marker.touch()
                if fault == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                raise RuntimeError("a transient fault")
            return n

        pm.append_frames, pm.begin_video = append_then_fault, logged_begin
        return shard_fn(items, raise_failures=raise_failures)

    return run


@flow
def faulty_stage3(overrides, fault, log):
    cfg = load_config("tiny", overrides)
    mapper = functools.partial(map_shards_on, cfg.pseudo_mv.executor)
    art = pmv.convert(
        cfg, a["psi3d"], a["me"], a["videos"], ArtifactRegistry(), progress=False,
        map_shards=lambda fn, parts: mapper(faulty(fn, fault, log, "video_0001"), parts),
    )
    return art.ref


for run, root in a["roots"].items():
    os.environ["P4D_HOME"] = root
    runner = "thread" if run in ("thread", "retried") else "dask"
    ov = a["overrides"] + [f"pseudo_mv.executor.runner={runner}"]
    if run in ("thread", "dask"):
        ref = pseudo_mv_flow("tiny", ov, a["psi3d"], a["me"], synthetic_videos=a["videos"])
    else:
        ref = faulty_stage3(ov, "kill" if run == "killed" else "raise", root + "/begun.log")
    print("REF", run, ref)
"""


def _stage3_runs(upstream, tmp_path, flow_in_subprocess, runs: tuple[str, ...]) -> tuple[dict, dict]:
    """Stage 3 (pseudo_mv.seed=3) once per run named (``dask``, ``thread``, ``killed``, ``retried``: STAGE3_RUNS),
    each on its own copy of the upstream registry, in one subprocess; (artifacts, roots) by run."""
    roots = {run: _copy_registry(upstream["reg"], tmp_path / run).root for run in runs}
    arg = {
        "roots": {k: str(v) for k, v in roots.items()},
        "overrides": FAST
        + [
            "pseudo_mv.seed=3",
            "pseudo_mv.chunk_frames=2",
            "pseudo_mv.executor.dask_workers=2",
            "pseudo_mv.executor.retry_delay_s=0",
        ],
        "psi3d": upstream["psi3d"].ref,
        "me": upstream["motion_encoder"].ref,
        "videos": upstream["videos"].ref,
    }
    if "thread" in roots:  # the pipeline hands stage 3 the videos it built: a newer artifact must not be converted
        newer = run_videos_stage(load_config("tiny", FAST + ["videos.n_videos=2"]), ArtifactRegistry(roots["thread"]))
        assert ArtifactRegistry(roots["thread"]).resolve("synthetic_videos@latest").ref == newer.ref
    lines = flow_in_subprocess(STAGE3_RUNS, json.dumps(arg), timeout=480)
    refs = dict(line.split()[1:3] for line in lines if line.startswith("REF "))
    assert len(set(refs.values())) == 1, refs  # where and how shards ran is not part of the version
    arts = {run: ArtifactRegistry(root).resolve(refs[run]) for run, root in roots.items()}
    if "thread" in roots:
        assert upstream["videos"].ref in arts["thread"].parents and newer.ref not in arts["thread"].parents
    return arts, roots


def _assert_same_store(arts: dict, roots: dict, reference_run: str, runs: tuple[str, ...]) -> None:
    reference = _store_contents(arts[reference_run].path / "store.zarr", roots[reference_run])
    assert len(reference) > 3
    for run in runs:
        other = _store_contents(arts[run].path / "store.zarr", roots[run])
        assert other.keys() == reference.keys(), run
        for key, value in reference.items():
            if isinstance(value, np.ndarray):
                assert value.dtype == other[key].dtype and np.array_equal(value, other[key]), (run, key)
            else:
                assert value == other[key], (run, key)


@pytest.mark.slow  # 46–54 s (two worker processes): in `make test-all`; the fast suite was over its 10 minutes (10:25)
def test_stage3_on_a_two_worker_dask_cluster_writes_the_single_process_store(upstream, tmp_path, flow_in_subprocess):
    """``pseudo_mv.executor.runner=dask``: the stage-3 flow runs its shards on a local Dask cluster of 2 worker
    processes (prefect-dask), each converting whole videos into its own groups. The store equals the one the
    single-process (thread) runner writes, array by array and attribute by attribute; the manifest says which
    workers converted what. The flow converts the videos artifact it is given, not the newest in the registry
    (real Prefect flow runs, temporary API, in a subprocess)."""
    arts, roots = _stage3_runs(upstream, tmp_path, flow_in_subprocess, ("dask", "thread"))
    shards = {run: a.manifest["extra"]["shards"] for run, a in arts.items()}
    assert len(shards["dask"]) == 3 and sum(s["videos"] for s in shards["dask"]) == 3
    assert {s["worker"].split()[-1] for s in shards["dask"]} == {"dask-0", "dask-1"}  # both workers converted videos
    assert len({s["worker"] for s in shards["thread"]}) == 1 and "dask" not in shards["thread"][0]["worker"]
    _assert_same_store(arts, roots, "thread", ("dask",))


@pytest.mark.slow
def test_stage3_finishes_every_video_once_after_a_worker_is_killed_or_a_shard_retried(
    upstream, tmp_path, flow_in_subprocess
):
    """Faults mid-video: a Dask worker killed (SIGKILL) while writing a video (Dask runs its shard again on a live
    worker), and (thread runner) a transient exception that fails the shard task until Prefect retries it. Both
    finish with the store of an uninterrupted run, every video converted once: the victim begun again, its partial
    group discarded, the others not touched."""
    arts, roots = _stage3_runs(upstream, tmp_path, flow_in_subprocess, ("thread", "killed", "retried"))
    for run in ("killed", "retried"):
        begun = (roots[run] / "begun.log").read_text().split()
        assert sorted(begun) == ["video_0000", "video_0001", "video_0001", "video_0002"], (run, begun)
    _assert_same_store(arts, roots, "thread", ("killed", "retried"))


def test_torchrun_command_is_standalone_on_one_node_and_rendezvous_across_nodes():
    from pipeline_tasks.training.distributed import torchrun_command

    one = torchrun_command("psi", Path("/w"), 4)
    assert "--standalone" in one and "--nproc_per_node=4" in one
    two = torchrun_command("psi", Path("/w"), 8, nnodes=2, node_rank=1, rdzv_endpoint="node0:29400")
    assert "--standalone" not in two
    assert {"--nnodes=2", "--node_rank=1", "--rdzv_endpoint=node0:29400", "--rdzv_backend=static"} <= set(two)
    with pytest.raises(ValueError, match="rdzv_endpoint"):
        torchrun_command("psi", Path("/w"), 1, nnodes=2)


@pytest.mark.slow
def test_psi_trained_on_two_nodes_by_torchrun_rendezvous(upstream, tmp_path):
    """Ψ (not only Ψ3d) by DDP on 2 gloo processes, as two nodes of one process each meeting at a rendezvous on
    127.0.0.1: node 0 is the pipeline's own launch, node 1 runs the command it wrote for the other nodes. The
    ranks check at the end that they hold identical weights (else the stage fails); the artifact is complete."""
    import shlex
    import socket
    import subprocess
    import threading

    from pipeline_tasks.training.distributed import OTHER_NODES, REPO_ROOT

    reg = _copy_registry(upstream["reg"], tmp_path / "ddp")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = load_config(
        "tiny",
        FAST + ["device=cpu", "psi.steps=2", "distributed.nnodes=2", f"distributed.rdzv_endpoint=127.0.0.1:{port}"],
    )
    node1 = {}

    def run_node1():
        import time

        deadline = time.monotonic() + 300
        while not (found := list((reg.root / "psi").glob(f".tmp-*/{OTHER_NODES}"))):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        (line,) = found[0].read_text().splitlines()
        node1["proc"] = subprocess.run(shlex.split(line), cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)

    t = threading.Thread(target=run_node1)
    t.start()
    art = psi_stage.train_psi(cfg, upstream["pseudo_mv"], upstream["psi3d"], upstream["motion_encoder"], registry=reg)
    t.join(600)
    assert node1["proc"].returncode == 0, node1["proc"].stdout[-3000:]
    assert art.manifest["extra"]["ddp_world_size"] == 2 and art.manifest["counts"]["steps"] == 2
    assert not (art.path / OTHER_NODES).exists() and (art.path / "checkpoint.pt").exists()
