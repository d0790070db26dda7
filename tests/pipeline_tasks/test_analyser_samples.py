"""Stage 1b (analyser_samples): several independent expressions per identity, resumable, and the
expression-visibility measurement."""

import json

import numpy as np
import pytest
import torch

from models.genhead import params as P
from models.genhead.ground_truth import GroundTruth
from pipeline_tasks.analyser_samples import (
    CONTACT_SHEET,
    STORE,
    VISIBILITY,
    expression_visibility,
    held_out_rows,
    pixels_changed_per_sample,
    r2_ceiling,
    run_analyser_samples_stage,
    sample_row,
    write_samples,
)
from pipeline_tasks.config import load_config
from storage_schemas import genhead_samples as gs

SMALL = [
    "analyser_samples.expressions_per_identity=3",
    "analyser_samples.views=2",
    "analyser_samples.shard_size=2",
    "analyser_samples.render_batch=2",
    "analyser_samples.visibility_samples=4",
    "genhead.resolution=32",
]


def test_identities_repeat_with_independent_expressions_pose_and_cameras(registry):
    cfg = load_config("tiny", SMALL + ["analyser_samples.n_identities=3"])
    art = run_analyser_samples_stage(cfg, registry, progress=False)
    gs.validate(art.path / STORE)
    grp = gs.open_read(art.path / STORE)
    assert grp["images"].shape == (9, 2, 32, 32, 3)
    ident = np.asarray(grp["identity"])
    assert list(ident) == [ident[0]] * 3 + [ident[3]] * 3 + [ident[6]] * 3 and len(set(ident)) == 3
    shape, z, expr, pose = (np.asarray(grp[k]) for k in ("shape", "z", "expression", "pose"))
    for i in (0, 3, 6):  # who the person is stays; how they look right now does not
        assert np.array_equal(shape[i], shape[i + 1]) and np.array_equal(z[i], z[i + 2])
        assert not np.array_equal(pose[i], pose[i + 1])
        assert len({tuple(np.round(e, 4)) for e in expr[i : i + 3]}) >= 2
    cams = np.asarray(grp["cameras"])
    assert not np.allclose(cams[0, 0], cams[1, 0])  # each sample has its own cameras
    # head pose is the camera here too: pose 0 at the stored camera reproduces the stored image
    r, v = 4, 1
    lab = {k: torch.from_numpy(np.asarray(grp[k][r : r + 1])) for k in ("shape", "expression", "gaze", "z")}
    out = GroundTruth().generator.render(
        lab["shape"],
        lab["expression"],
        torch.zeros(1, 3),
        lab["gaze"],
        lab["z"],
        torch.from_numpy(cams[r : r + 1, v]),
        32,
    )
    again = ((out.rgb[0].clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy()
    assert np.abs(again - np.asarray(grp["images"][r, v])).max() <= 1
    vis = json.loads((art.path / VISIBILITY).read_text())
    assert set(vis["per_expression"]) == set(P.EXPRESSION_NAMES) and "jaw_open" in vis["visible"]
    assert art.manifest["extra"]["visible_expressions"] == vis["visible"]
    assert (art.path / CONTACT_SHEET).stat().st_size > 500
    assert run_analyser_samples_stage(cfg, registry, progress=False).version == art.version
    # E_mot's held-out samples (the last identity here) re-drawn for the visibility measurement are the stored ones
    rows = held_out_rows(cfg, 1)
    assert [i for i, _ in rows] == [int(ident[6])] * 3 and [j for _, j in rows] == [0, 1, 2]
    again_expr, px, _ = pixels_changed_per_sample(cfg, 0, rows=rows)
    assert np.allclose(again_expr, expr[6:9]) and px.shape == (3, len(P.EXPRESSION_NAMES))


def test_a_sample_does_not_depend_on_what_else_is_drawn():
    a = sample_row(3_000_005, 2, 2, 0.1, 0.4)
    b = sample_row(3_000_005, 2, 2, 0.1, 0.4)
    c = sample_row(3_000_005, 1, 2, 0.1, 0.4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(a["shape"], c["shape"]) and not torch.equal(a["cameras"], c["cameras"])


def test_resume_after_a_kill_equals_one_run(tmp_path):
    part = load_config("tiny", SMALL + ["analyser_samples.n_identities=1"])  # a run killed after the first identity
    full = load_config("tiny", SMALL + ["analyser_samples.n_identities=2"])
    write_samples(part, tmp_path / "a", progress=False)
    write_samples(full, tmp_path / "a", progress=False)
    write_samples(full, tmp_path / "b", progress=False)
    a, b = gs.open_read(tmp_path / "a" / STORE), gs.open_read(tmp_path / "b" / STORE)
    for k in ("images", "cameras", "expression", "pose", "identity"):
        assert np.array_equal(np.asarray(a[k]), np.asarray(b[k])), k


def test_visibility_is_measured_at_the_resolution_on_the_stores_own_samples():
    def at(res: int) -> dict:
        return expression_visibility(load_config("tiny", [f"genhead.resolution={res}"]), n_samples=16)

    high, low = at(48), at(8)
    assert high["resolution"] == 48 and high["samples"] == 16
    assert "jaw_open" in high["visible"] and high["per_expression"]["jaw_open"]["r2_ceiling"] > 0.9
    # an eyelid is sub-pixel at 8²: no sample shows a blink, so nothing of it can be read from one image
    for side in ("blink_left", "blink_right"):
        row = low["per_expression"][side]
        assert row["active_samples"] > 0 and row["unseen_share_of_active"] == 1.0
        assert row["r2_ceiling"] == pytest.approx(0.0, abs=1e-9) and side not in low["visible"]  # 1 − SS/SS
    assert (
        low["per_expression"]["jaw_open"]["pixels_changed_full"]
        < high["per_expression"]["jaw_open"]["pixels_changed_full"]
    )


def test_a_coefficient_that_never_varies_has_no_ceiling_and_is_not_visible():
    cfg = load_config(
        "tiny", ["genhead.resolution=16", "analyser_samples.p_neutral=1.0", "analyser_samples.p_single=0.0"]
    )  # every sample neutral
    vis = expression_visibility(cfg, n_samples=4)
    assert vis["visible"] == []
    assert all(r["r2_ceiling"] is None and r["active_samples"] == 0 for r in vis["per_expression"].values())


def test_the_ceiling_is_the_variance_left_outside_the_unseen_samples():
    y = np.array([0.0, 0.0, 0.2, 0.4, 0.8, 1.0])
    assert r2_ceiling(y, np.ones(6, bool)) == 1.0  # every value seen
    assert r2_ceiling(y, np.zeros(6, bool)) == pytest.approx(0.0)  # none: the mean is the best guess
    seen = np.array([True, True, False, False, True, True])  # the two weak ones unseen: they are guessed as 0.3
    assert r2_ceiling(y, seen) == pytest.approx(1 - 0.02 / float(((y - y.mean()) ** 2).sum()))
    assert r2_ceiling(np.zeros(4), np.ones(4, bool)) is None  # never varies: undefined, not 1


def test_analyser_identities_must_be_disjoint_from_the_others(registry):
    cfg = load_config("tiny", SMALL + ["analyser_samples.seed=1"])  # = genhead.seed
    with pytest.raises(ValueError, match="analyser_samples.seed=1 equals genhead.seed"):
        run_analyser_samples_stage(cfg, registry, progress=False)
