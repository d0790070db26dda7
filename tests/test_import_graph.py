"""Imports run one way (DESIGN.md §3): no cycle among the project's modules, and `models` /
`storage_schemas` never import `pipeline_tasks` or `flows`. The graph is read from the sources (ast),
as the code hash reads it, so a lazy import inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

from pipeline_tasks.stages import STAGE_MODULES
from storage_schemas.code_hash import PROJECT_PACKAGES, PROJECT_ROOT, import_from_target


def project_modules(root: Path = PROJECT_ROOT) -> dict[str, Path]:
    mods = {}
    for pkg in PROJECT_PACKAGES:
        for path in (root / pkg).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            mods[name] = path
    return mods


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module → the project modules it imports. ``from pkg import sub`` names ``pkg.sub`` when that is a
    module (not ``pkg``: importing a submodule through its package is not a dependency on the package's
    own code); the implicit import of parent packages is left out for the same reason."""
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                target = import_from_target(node, package)
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]
                deps.update(subs if len(subs) == len(node.names) else [target, *subs])
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def test_the_cycle_finder_sees_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_project_modules():
    found = cycles(import_graph(project_modules()))
    assert not found, "import cycles: " + "; ".join(" ↔ ".join(c) for c in found)


def test_imports_run_one_way():
    graph = import_graph(project_modules())
    allowed = {
        "flows": {"flows", "pipeline_tasks", "models", "storage_schemas"},
        "pipeline_tasks": {"pipeline_tasks", "models", "storage_schemas"},
        "models": {"models"},
        "storage_schemas": {"storage_schemas"},
    }
    wrong = sorted(
        f"{m} → {d}" for m, deps in graph.items() for d in deps if d.split(".")[0] not in allowed[m.split(".")[0]]
    )
    assert not wrong, "imports against the direction flows → pipeline_tasks → {models, storage_schemas}: " + ", ".join(
        wrong
    )


def test_no_stage_module_imports_another_stage_module():
    """Stages name each other by artifact kind through ``pipeline_tasks.stages``, never by import."""
    graph = import_graph(project_modules())
    assert len(STAGE_MODULES) >= 8
    wrong = sorted(f"{m} → {d}" for m in STAGE_MODULES for d in graph[m] if d in STAGE_MODULES)
    assert not wrong, "stage modules importing other stage modules: " + ", ".join(wrong)


def test_the_stage_rule_would_see_a_stage_importing_a_stage(tmp_path):
    pkg = tmp_path / "pipeline_tasks"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pipeline_tasks.b import g\n    return g\n")
    (pkg / "b.py").write_text("from pipeline_tasks import a\n")
    mods = {"pipeline_tasks": pkg / "__init__.py", "pipeline_tasks.a": pkg / "a.py", "pipeline_tasks.b": pkg / "b.py"}
    graph = import_graph(mods)
    assert graph["pipeline_tasks.a"] == {"pipeline_tasks.b"} and graph["pipeline_tasks.b"] == {"pipeline_tasks.a"}
    assert cycles(graph) == [["pipeline_tasks.a", "pipeline_tasks.b"]]
