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
