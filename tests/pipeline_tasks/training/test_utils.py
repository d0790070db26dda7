"""Generic training utilities: EMA, sampler, resumable checkpoints, logs/curves, image grids."""

from __future__ import annotations

import io
import json
import random

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline_tasks.training import (
    EMA,
    CheckpointError,
    SeededSampler,
    TrainingLogger,
    TrainingState,
    image_grid,
    latest_checkpoint,
    list_checkpoints,
    plot_curves,
    progress_bar,
    read_log,
    save_image_grid,
)


# ---------------------------------------------------------------- EMA
def _const_model(value: float) -> torch.nn.Module:
    m = torch.nn.Linear(2, 2)
    with torch.no_grad():
        for p in m.parameters():
            p.fill_(value)
    return m


def test_ema_halflife_means_half_the_gap_closes():
    model = _const_model(0.0)
    ema = EMA(model, halflife_steps=8, rampup=None)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
    for step in range(1, 9):
        ema.update(model, step)
    got = ema.module.weight.detach()
    assert torch.allclose(got, torch.full_like(got, 0.5), atol=1e-6)
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_ema_rampup_shortens_early_halflife_and_roundtrips():
    model = _const_model(0.0)
    ema = EMA(model, halflife_steps=100, rampup=0.05)
    assert ema.beta(10) == pytest.approx(0.5 ** (1 / 0.5))  # min(100, 10·0.05) = 0.5 steps
    assert ema.beta(10_000) == pytest.approx(0.5 ** (1 / 100))
    assert EMA(model, 0).beta(5) == 0.0  # half-life 0: plain copy
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model, 1)
    other = EMA(_const_model(-1.0), halflife_steps=100, rampup=0.05)
    other.load_state_dict(ema.state_dict())
    assert torch.equal(other.module.weight, ema.module.weight)
    assert other.num_updates == 1


# ---------------------------------------------------------------- sampler
def test_sampler_visits_each_index_once_per_epoch_and_is_seeded():
    idx = np.arange(10, 30)
    a = SeededSampler(idx, 7, seed=3)
    first_epoch = np.concatenate([a.next_batch() for _ in range(3)])[:20]
    assert sorted(first_epoch.tolist()) == idx.tolist()
    b = SeededSampler(idx, 7, seed=3)
    c = SeededSampler(idx, 7, seed=4)
    b_batches = [b.next_batch() for _ in range(3)]
    assert np.array_equal(np.concatenate(b_batches)[:20], first_epoch)
    assert not np.array_equal(np.concatenate([c.next_batch() for _ in range(3)])[:20], first_epoch)


def test_sampler_state_restores_mid_epoch_including_aux_rng():
    a = SeededSampler(50, 8, seed=1)
    for _ in range(4):
        a.next_batch()
        a.rng.integers(0, 5, 3)
    state = a.state_dict()
    expect = [(a.next_batch(), a.rng.integers(0, 5, 3)) for _ in range(10)]
    b = SeededSampler(50, 8, seed=1)
    b.load_state_dict(json.loads(json.dumps(state)))  # survives a JSON round trip too
    got = [(b.next_batch(), b.rng.integers(0, 5, 3)) for _ in range(10)]
    for (x, r), (y, s) in zip(expect, got):
        assert np.array_equal(x, y) and np.array_equal(r, s)
    with pytest.raises(ValueError, match="seed=1, n=50"):
        SeededSampler(40, 8, seed=1).load_state_dict(state)


# ---------------------------------------------------------------- checkpoints
def _state(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ema = EMA(model, 4)
    sampler = SeededSampler(32, 4, seed=seed)
    gen = torch.Generator().manual_seed(seed + 7)
    return (
        model,
        opt,
        ema,
        sampler,
        gen,
        TrainingState({"m": model}, {"m": opt}, {"m": ema}, sampler=sampler, generators={"g": gen}),
    )


def _draws(gen):
    return (torch.rand(3).tolist(), np.random.rand(2).tolist(), random.random(), torch.rand(2, generator=gen).tolist())


def _train_steps(model, opt, ema, sampler, gen, start, n):
    for step in range(start, start + n):
        idx = torch.as_tensor(sampler.next_batch())
        x = torch.sin(idx[:, None].float() + torch.arange(4.0)) + 0.1 * torch.randn(len(idx), 4, generator=gen)
        loss = (model(x).squeeze(1) - idx.float() / 32 + 0.01 * torch.randn(len(idx))).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(model, step + 1)


def test_checkpoint_restores_everything_exactly(tmp_path):
    model, opt, ema, sampler, gen, state = _state()
    _train_steps(model, opt, ema, sampler, gen, 0, 5)
    path = state.save(tmp_path / "ck", 5)
    assert path.name == "step_00000005.pt" and not list((tmp_path / "ck").glob("*.tmp"))
    expected_draws = _draws(gen)
    state.load(path)  # rewind the random states the draws consumed
    _train_steps(model, opt, ema, sampler, gen, 5, 5)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    expected_ema = {k: v.clone() for k, v in ema.module.state_dict().items()}

    model2, opt2, ema2, sampler2, gen2, state2 = _state(seed=99)  # different init, RNG, sampler seed...
    sampler2.seed = 0  # ...but the same data order definition
    torch.manual_seed(123)
    assert state2.resume(tmp_path / "ck") == 5
    assert _draws(gen2) == expected_draws
    state2.load(path)  # the draws moved the RNGs on; reload them
    _train_steps(model2, opt2, ema2, sampler2, gen2, 5, 5)
    for k, v in model2.state_dict().items():
        assert torch.equal(v, expected[k]), k
    for k, v in ema2.module.state_dict().items():
        assert torch.equal(v, expected_ema[k]), k


def test_latest_checkpoint_ordering_pruning_and_errors(tmp_path):
    *_, state = _state()
    d = tmp_path / "ck"
    assert latest_checkpoint(d) is None
    assert state.resume(d) == 0
    for step in (20, 100, 5):
        state.save(d, step, keep=None)
    (d / "step_junk.pt").write_text("x")
    (d / ".step_00000999.pt.abcd.tmp").write_text("half-written")
    assert latest_checkpoint(d).name == "step_00000100.pt"  # numeric, not lexical or mtime order
    state.save(d, 120, keep=2)
    assert [p.name for p in list_checkpoints(d)] == ["step_00000100.pt", "step_00000120.pt"]
    bad_state = TrainingState(models={"other": torch.nn.Linear(1, 1)})
    with pytest.raises(CheckpointError, match="'other'"):
        bad_state.load(d / "step_00000120.pt")
    good = (d / "step_00000120.pt").read_bytes()
    (d / "step_00000130.pt").write_bytes(
        good[: len(good) // 2]
    )  # the newest is torn: the older one kept beside it wins
    with pytest.warns(UserWarning, match="step_00000130.pt"):
        assert state.resume(d) == 120
    (d / "step_00000100.pt").write_bytes(b"x")
    (d / "step_00000120.pt").write_bytes(b"")
    with pytest.raises(
        CheckpointError, match=r"no readable checkpoint(.|\n)*step_00000130(.|\n)*step_00000120(.|\n)*step_00000100"
    ):
        with pytest.warns(UserWarning):
            state.resume(d)  # none readable: stop and say so, never silently start over


class _RunsCode:
    def __reduce__(self):
        return (open, (str(_RunsCode.marker), "w"))


def test_a_checkpoint_cannot_run_code_when_loaded(tmp_path):
    """Training state is loaded with ``weights_only``: tensors and plain data only."""
    *_, state = _state()
    _RunsCode.marker = tmp_path / "code-ran"
    payload = {**state.state_dict(3), "meta": {"x": _RunsCode()}}
    torch.save(payload, tmp_path / "step_00000003.pt")
    assert not _RunsCode.marker.exists()
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        state.load(tmp_path / "step_00000003.pt")
    assert not _RunsCode.marker.exists()


# ---------------------------------------------------------------- logs, curves, progress
def test_logger_writes_tensorboard_jsonl_csv_and_truncates_on_resume(tmp_path):
    d = tmp_path / "logs"
    with TrainingLogger(d) as log:
        for s in range(1, 11):
            log.log(s, loss=1.0 / s, lr=torch.tensor(0.1))
    assert list(d.glob("events.out.tfevents.*"))
    rows = read_log(d)
    assert [r["step"] for r in rows] == list(range(1, 11)) and rows[3]["loss"] == pytest.approx(0.25)
    header = (d / "scalars.csv").read_text().splitlines()[0]
    assert header == "step,loss,lr"
    with TrainingLogger(d, resume_step=6) as log:  # a run resumed from step 6 recomputes 7..
        log.log(7, loss=9.0)
    rows = read_log(d)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6, 7] and rows[-1]["loss"] == 9.0

    import struct

    from tensorboardX.proto import event_pb2  # events hold what was logged

    tags = set()
    for f in d.glob("events.out.tfevents.*"):
        data = f.read_bytes()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            ev = event_pb2.Event.FromString(data[i + 12 : i + 12 + n])
            tags.update(v.tag for v in ev.summary.value)
            i += 12 + n + 4
    assert {"loss", "lr"} <= tags


def test_plot_curves_writes_png_for_each_input_form(tmp_path):
    rows = [{"step": s, "loss": 2.0 / s, "val_r2": s / 10} for s in range(1, 11)]
    p = plot_curves(rows, tmp_path / "a.png", title="t")
    img = Image.open(p)
    assert img.size[0] > img.size[1] > 100  # two subplots side by side
    plot_curves({"loss": [(1, 1.0), (2, 0.5)]}, tmp_path / "b.png")
    log = TrainingLogger(tmp_path / "logs", tensorboard=False)
    log.log(1, x=1.0)
    log.close()
    assert Image.open(plot_curves(tmp_path / "logs", tmp_path / "c.png")).size[0] > 0
    with pytest.raises(ValueError, match="no scalars"):
        plot_curves([], tmp_path / "d.png")


def test_progress_bar_counts_from_resumed_step():
    out = io.StringIO()
    with progress_bar(10, initial=4, disable=False, file=out, desc="psi") as bar:
        bar.update(3)
        assert bar.n == 7 and bar.total == 10
    assert "psi" in out.getvalue() and "7/10" in out.getvalue()


# ---------------------------------------------------------------- grids
def test_image_grid_places_tiles_and_titles(tmp_path):
    imgs = -torch.ones(2, 3, 3, 8, 8)  # [R, C, 3, H, W], black
    imgs[1, 2] = 1.0  # one white tile: row 1, column 2
    plain = image_grid(imgs, pad=2)
    assert plain.shape == (2 * 10 + 2, 3 * 10 + 2, 3)
    assert (plain[2 + 10 : 2 + 18, 2 + 20 : 2 + 28] == 255).all()
    assert (plain[2:10, 2:10] == 0).all()
    titled = image_grid(imgs, row_titles=["row a", "row b"], col_titles=["x", "y", "z"], title="T")
    assert titled.shape[0] > plain.shape[0] and titled.shape[1] > plain.shape[1]
    flat = image_grid(imgs.reshape(6, 3, 8, 8)[:5], ncols=3, pad=0)  # padded to a full last row
    assert flat.shape == (16, 24, 3)
    with pytest.raises(ValueError, match="2 row titles for 1 rows"):
        image_grid(imgs[:1], row_titles=["a", "b"])
    p = save_image_grid(imgs, tmp_path / "g" / "grid.png", col_titles=["x", "y", "z"])
    assert Image.open(p).mode == "RGB"


# ---------------------------------------------------------------- learning-rate schedule
def test_lr_schedule_warms_up_then_decays_to_its_final_fraction():
    from pipeline_tasks.config import cosine_lr

    lrs = [cosine_lr(1e-3, s, 1000, 0.1, warmup_steps=100) for s in range(1000)]
    assert lrs[0] == pytest.approx(1e-5, rel=0.02)  # 1/100 of lr, times the (still ≈ 1) cosine
    assert all(b > a for a, b in zip(lrs[:99], lrs[1:100]))  # rising through the warm-up
    assert max(lrs) == pytest.approx(1e-3 * cosine_lr(1.0, 99, 1000, 0.1), rel=1e-9)  # peak at the end of the warm-up
    assert all(b <= a for a, b in zip(lrs[99:], lrs[100:]))  # then never rising
    assert lrs[-1] == pytest.approx(1e-4)
    # no warm-up and no decay: the constant lr of every older preset
    assert {cosine_lr(2e-4, s, 50, 1.0) for s in range(50)} == {2e-4}
    assert cosine_lr(1e-3, 0, 1000, 1.0, warmup_steps=10) == pytest.approx(1e-4)
