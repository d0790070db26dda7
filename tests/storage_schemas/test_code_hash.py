"""Artifact versions follow the code a stage runs (storage_schemas/code_hash.py), not only the package version."""

import json
import shutil
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline_tasks.stage import run_once
from storage_schemas.code_hash import PROJECT_PACKAGES, PROJECT_ROOT, code_hash, module_closure, stage_code_hash


@pytest.fixture
def project_copy(tmp_path) -> Path:
    """The project's Python sources copied to a scratch root, to edit them."""
    for pkg in PROJECT_PACKAGES:
        shutil.copytree(PROJECT_ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def test_a_changed_statement_in_an_imported_module_changes_the_stage_hash(project_copy):
    stage = "pipeline_tasks.genhead_samples"
    before = code_hash(stage, project_copy)
    assert before == code_hash(stage, PROJECT_ROOT)  # a copy of the same code hashes the same
    procedural = project_copy / "models" / "genhead" / "procedural.py"
    _edit(procedural, "from __future__ import annotations\n", "from __future__ import annotations\nSCALE_FIX = 1.0\n")
    assert code_hash(stage, project_copy) != before


def test_comments_docstrings_and_formatting_keep_the_hash(project_copy):
    stage = "pipeline_tasks.genhead_samples"
    before = code_hash(stage, project_copy)
    path = project_copy / "pipeline_tasks" / "genhead_samples.py"
    text = path.read_text()
    doc_end = text.index('"""', 3) + 3
    path.write_text(
        '"""Another module docstring."""' + text[doc_end:].replace("\n\n\n", "\n\n\n# a comment\n\n", 1) + "\n\n"
    )
    assert code_hash(stage, project_copy) == before


def test_a_module_the_stage_does_not_import_leaves_its_hash_alone(project_copy):
    before = {m: code_hash(m, project_copy) for m in ("pipeline_tasks.genhead_samples", "pipeline_tasks.train_psi3d")}
    _edit(
        project_copy / "pipeline_tasks" / "train_psi.py",
        "from __future__ import annotations\n",
        "from __future__ import annotations\nEXTRA = 2\n",
    )
    after = {m: code_hash(m, project_copy) for m in before}
    assert after == before  # Ψ's trainer is not code of stage 1 or of Ψ3d
    assert code_hash("pipeline_tasks.train_psi", project_copy) != code_hash("pipeline_tasks.train_psi", PROJECT_ROOT)


def test_the_closure_follows_relative_and_lazy_imports_and_skips_other_packages(tmp_path):
    pkg = tmp_path / "pipeline_tasks"
    (pkg / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "stage.py": "import numpy\nfrom . import helper\nfrom .sub import tool\n\n"
        "def run():\n    from pipeline_tasks import lazy\n    return lazy.X\n",
        "helper.py": "A = 1\n",
        "lazy.py": "X = 1\n",
        "unused.py": "Y = 1\n",
        "sub/__init__.py": "",
        "sub/tool.py": "from ..helper import A\n",
    }
    for name, body in files.items():
        (pkg / name).write_text(textwrap.dedent(body))
    closure = module_closure("pipeline_tasks.stage", tmp_path, ("pipeline_tasks",))
    assert sorted(closure) == [
        "pipeline_tasks",
        "pipeline_tasks.helper",
        "pipeline_tasks.lazy",
        "pipeline_tasks.stage",
        "pipeline_tasks.sub",
        "pipeline_tasks.sub.tool",
    ]
    h = code_hash("pipeline_tasks.stage", tmp_path, ("pipeline_tasks",))
    (pkg / "lazy.py").write_text("X = 2\n")
    assert code_hash("pipeline_tasks.stage", tmp_path, ("pipeline_tasks",)) != h
    with pytest.raises(FileNotFoundError, match="no_such_stage"):
        code_hash("pipeline_tasks.no_such_stage", tmp_path, ("pipeline_tasks",))


def test_run_once_versions_by_the_stage_code_and_records_it(registry):
    built = []

    def build(w):
        built.append(w.version)

    a = run_once(registry, "stage", {"n": 1}, [], 1, build, code_module="pipeline_tasks.genhead_samples")
    again = run_once(registry, "stage", {"n": 1}, [], 1, build, code_module="pipeline_tasks.genhead_samples")
    b = run_once(registry, "stage", {"n": 1}, [], 1, build, code_module="pipeline_tasks.synthetic_videos")
    assert again.version == a.version and b.version != a.version and len(built) == 2
    manifest = json.loads((a.path / "manifest.json").read_text())
    assert manifest["code_hash"] == stage_code_hash("pipeline_tasks.genhead_samples")
    catalog = {r["version"]: r for r in pq.read_table(registry.catalog_path).to_pylist()}
    assert catalog[b.version]["code_hash"] == stage_code_hash("pipeline_tasks.synthetic_videos")
    # a build function from outside the project names no stage code: the caller must say which module it is
    with pytest.raises(ValueError, match="code_module"):
        run_once(registry, "stage", {"n": 2}, [], 1, build)
