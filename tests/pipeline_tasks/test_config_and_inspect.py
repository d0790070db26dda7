"""Typed configuration (presets, overrides, JSON) and the inspection CLI."""

import json

import pytest

from pipeline_tasks.config import ConfigError, PipelineConfig, load_config, parse_overrides
from storage_schemas import inspect as inspect_cli


@pytest.mark.parametrize("preset", ["tiny", "small", "paper"])
def test_presets_load_and_round_trip_json(preset):
    cfg = load_config(preset)
    assert cfg.preset == preset and cfg.model.preset == preset
    again = PipelineConfig.model_validate(json.loads(cfg.to_json()))
    assert again == cfg


def test_overrides_are_typed_and_checked():
    cfg = load_config("tiny", ["psi3d.steps=7", "psi.p_target_real=0.5", "pseudo_mv.videos=data/*.mp4"])
    assert cfg.psi3d.steps == 7 and cfg.psi.p_target_real == 0.5 and cfg.pseudo_mv.videos == "data/*.mp4"
    assert load_config("tiny", {"genhead.n_identities": 3}).genhead.n_identities == 3
    assert parse_overrides("a.b=1 c.d=x") == {"a.b": 1, "c.d": "x"}
    with pytest.raises(ConfigError, match="psi3d"):
        load_config("tiny", ["psi3d.stepz=7"])
    with pytest.raises(ConfigError, match="not of the form"):
        load_config("tiny", ["psi3d.steps"])
    with pytest.raises(ConfigError, match="no preset 'huge'"):
        load_config("huge")


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ("*.mp4", ["a.mp4", "b.mp4"]),  # YAML: an alias (ScannerError)
        ("clips #1/*.mp4", ["clips #1/c.mp4"]),  # YAML: "clips" and a comment
        ("~/home clips", ["home clips/h.mp4"]),  # YAML: "~" alone is None
        ("1080", ["1080/d.mp4"]),  # YAML: an integer (fails validation)
        ("yes", ["yes/e.mp4"]),  # YAML 1.1: a boolean
    ],
)
def test_video_paths_reach_ingestion_verbatim(tmp_path, monkeypatch, pattern, expected):
    """``--videos`` / ``VIDEOS`` as the pipeline passes it (a ``pseudo_mv.videos=`` item, re-listed for each
    subflow) selects exactly the files it names."""
    from flows.pipeline import _as_list
    from pipeline_tasks.ingest.pipeline import expand_video_inputs

    for rel in ["a.mp4", "b.mp4", "clips #1/c.mp4", "clips/x.mp4", "1080/d.mp4", "yes/e.mp4", "home/home clips/h.mp4"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    ov = _as_list(["psi3d.steps=3", f"pseudo_mv.videos={pattern}"])  # what each subflow receives
    cfg = load_config("tiny", ov)
    assert cfg.pseudo_mv.videos == pattern and cfg.psi3d.steps == 3
    found = expand_video_inputs(cfg.pseudo_mv.videos)
    roots = [tmp_path / "home" if pattern.startswith("~") else tmp_path]
    assert sorted(str(p.resolve().relative_to(roots[0])) for p in found) == expected
    assert load_config("tiny", _as_list(["pseudo_mv.videos="])).pseudo_mv.videos is None


def test_stage_config_selects_sections():
    a, b = load_config("tiny"), load_config("tiny", ["psi.steps=1"])
    assert a.stage_config("genhead") == b.stage_config("genhead")
    assert a.stage_config("psi") != b.stage_config("psi")


def test_inspect_cli_catalog_json_and_lineage(registry, capsys):
    with registry.writer("genhead_samples", {"n": 1}) as w:
        g = w.commit()
    with registry.writer("psi3d", {"s": 1}, [g]) as w:
        w.metrics["val_psnr"] = 20.25
        p = w.commit()
    assert inspect_cli.main(["--root", str(registry.root)]) == 0
    out = capsys.readouterr().out
    assert "genhead_samples" in out and p.version in out and "val_psnr=20.25" in out
    assert inspect_cli.main(["--root", str(registry.root), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["kind"] for r in rows} == {"genhead_samples", "psi3d"}
    assert inspect_cli.main(["--root", str(registry.root), "--lineage", p.ref]) == 0
    assert g.ref in capsys.readouterr().out
    assert inspect_cli.main(["--root", str(registry.root), "--lineage", "psi@latest"]) == 2


def test_the_preset_type_names_exactly_the_preset_files_and_flows_refuse_others():
    """Every flow's ``preset`` parameter is ``Preset``: Prefect validates it before a run starts."""
    import typing

    from pipeline_tasks.config import CONFIG_DIR, Preset

    assert set(typing.get_args(Preset)) == {p.stem for p in CONFIG_DIR.glob("*.yaml")}
    from prefect.exceptions import ParameterTypeError

    from flows.evaluate import evaluate_flow
    from flows.pipeline import pipeline_flow

    for f in (pipeline_flow, evaluate_flow):
        assert f.validate_parameters({"preset": "small"})["preset"] == "small"
        with pytest.raises(ParameterTypeError, match="preset"):
            f.validate_parameters({"preset": "huge"})
