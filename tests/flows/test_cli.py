"""One command-line grammar for every flow (flows/cli.py): ``--preset`` and ``--set section.field=value``, once per
override; and the Makefile's ``SET='a.b=1 c.d=2'`` reaching a flow as one ``--set`` per word."""

import importlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli import flow_parser

ROOT = Path(__file__).resolve().parents[2]
# every module of flows/ with a command line (the others are helpers: cli, supervise, stage_flow, reports)
FLOWS = sorted(p.stem for p in (ROOT / "flows").glob("*.py") if "def build_parser(" in p.read_text())
SUPERVISED = {"pipeline", "ablation"}  # their main() runs the flow in a child process unless it is that child


def test_repeated_set_is_a_list_of_overrides_in_order():
    a = flow_parser("Doc line.\n\nmore").parse_args(["--set", "a.b=1", "--set", "c.d=x"])
    assert a.overrides == ["a.b=1", "c.d=x"]
    assert a.preset == "tiny"


def test_defaults_and_description():
    ap = flow_parser("The flow's first sentence,\nwrapped.\n\n    python -m flows.x", preset_default="learn")
    a = ap.parse_args([])
    assert a.preset == "learn" and a.overrides == []
    assert ap.description == "The flow's first sentence, wrapped."
    assert ap.parse_args(["--preset", "small"]).preset == "small"


def test_a_value_may_hold_spaces_and_equals_signs_and_top_level_fields_need_no_dot():
    given = ["pseudo_mv.videos=my clips/a=b #1/*.mp4", "device=cpu", "a.b=[0.5, 0.99]"]
    a = flow_parser(None).parse_args([x for v in given for x in ("--set", v)])
    assert a.overrides == given


@pytest.mark.parametrize(
    "bad, says",
    [
        ("a.b=1 c.d=2", "repeat --set once per override"),
        ("nodots=1", "is not a dotted section.field"),
        ("a.b", "has no '='"),
        ("=1", "is not a dotted section.field"),
        ("a.b=1 device=cpu", "repeat --set once per override"),
    ],
)
def test_anything_but_one_dotted_override_is_refused_naming_it(bad, says, capsys):
    with pytest.raises(SystemExit) as exc:
        flow_parser(None).parse_args(["--set", "a.b=1", "--set", bad])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --set" in err and repr(bad) in err and says in err


@pytest.mark.parametrize("name", FLOWS)
def test_every_flow_takes_the_grammar(name):
    mod = importlib.import_module(f"flows.{name}")
    a = mod.build_parser().parse_args(["--preset", "tiny", "--set", "psi.steps=1", "--set", "psi3d.steps=2"])
    assert a.preset == "tiny" and a.overrides == ["psi.steps=1", "psi3d.steps=2"]
    assert mod.build_parser().description.startswith(mod.__doc__.strip().splitlines()[0])
    with pytest.raises(SystemExit):
        mod.build_parser().parse_args(["--set", "psi.steps=1 psi3d.steps=2"])


@pytest.mark.parametrize("name", FLOWS)
def test_every_flow_main_passes_the_list_on(name, monkeypatch):
    """``main(argv)`` hands the flow function ``--set``'s list (the flow itself replaced: nothing runs)."""
    mod = importlib.import_module(f"flows.{name}")
    calls = []
    monkeypatch.setattr(mod, f"{name}_flow", lambda *a, **k: calls.append((a, k)) or "ref@v")
    if name in SUPERVISED:
        monkeypatch.setenv("P4D_SUPERVISED_CHILD", "1")  # as the supervisor's child: parse and run here
    mod.main(["--preset", "tiny", "--set", "psi.steps=1", "--set", "pseudo_mv.videos=a b/*.mp4"])
    ((args, _),) = calls
    assert args[:2] == ("tiny", ["psi.steps=1", "pseudo_mv.videos=a b/*.mp4"])


def _run_make(target: str, tmp_path: Path, **variables: str) -> list[str]:
    """``make TARGET VAR=...`` with ``setup`` taken as done and ``$(PY)`` a stub that prints the argv the flow would
    get (``-c`` still runs Python, so the Makefile's WITH_SET one-liner runs for real): the recipe, not the flow."""
    stub = tmp_path / "py"
    real = shlex.quote(sys.executable)
    stub.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "-c" ]; then exec {real} "$@"; fi\n'
        f'exec {real} -c \'import json, sys; print("ARGV " + json.dumps(sys.argv[1:]))\' "$@"\n'
    )
    stub.chmod(0o755)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PRESET", "SET", "VIDEOS", "SEEDS"}
    }
    cmd = ["make", "--no-print-directory", "-o", "setup", target, f"PY={stub}"]
    cmd += [f"{k}={v}" for k, v in variables.items()]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("ARGV ")]
    return json.loads(line[5:])


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_set_reaches_the_flows_as_one_set_per_word(tmp_path):
    argv = _run_make("pipeline", tmp_path, SET="psi.steps=3 psi3d.steps=4", VIDEOS="my clips/*.mp4")
    assert argv[:2] == ["-m", "flows.pipeline"]
    assert argv[2:] == [
        "--preset",
        "tiny",
        "--videos",
        "my clips/*.mp4",
        "--set",
        "psi.steps=3",
        "--set",
        "psi3d.steps=4",
    ]
    from flows.pipeline import build_parser

    assert build_parser().parse_args(argv[2:]).overrides == ["psi.steps=3", "psi3d.steps=4"]

    # shell quoting groups a word; nothing in SET is evaluated by a shell (`, ; and * stay in the value)
    argv = _run_make("ablation", tmp_path, SET="pseudo_mv.videos='my `id`;clips/*.mp4' psi.steps=3", SEEDS="2")
    assert argv == ["-m", "flows.ablation", "--preset", "tiny", "--seeds", "2"] + [
        "--set",
        "pseudo_mv.videos=my `id`;clips/*.mp4",
        "--set",
        "psi.steps=3",
    ]
    assert _run_make("pipeline", tmp_path) == ["-m", "flows.pipeline", "--preset", "tiny"]  # no SET, no --set
