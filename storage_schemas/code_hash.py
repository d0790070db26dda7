"""The code a stage runs, as a hash that goes into its artifact versions (DESIGN.md §4).

A stage is named by its module (``pipeline_tasks.train_psi3d``). Its code is that module plus every
project module it imports, transitively, found by reading the sources (``ast``; nothing is
imported or run). Each module contributes its syntax tree without docstrings, so a comment, a
docstring or a reformatting keeps the version and a changed statement makes a new one. Modules
outside the project (torch, zarr, ...) are pinned by ``requirements/constraints.txt`` and are not
hashed.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = ("flows", "pipeline_tasks", "models", "storage_schemas")


def _module_file(name: str, root: Path) -> Path | None:
    """``a.b.c`` → ``root/a/b/c.py`` or ``root/a/b/c/__init__.py``; None if neither exists."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(getattr(body[0], "value", None), ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return tree


def import_from_target(node: ast.ImportFrom, package: str) -> str:
    """The absolute module a ``from … import`` statement reads from, inside ``package`` (relative levels resolved)."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Absolute names of every module the tree imports (``from x import y`` also names ``x.y``)."""
    names: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = import_from_target(node, package)
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def module_closure(
    module: str, root: Path = PROJECT_ROOT, packages: tuple[str, ...] = PROJECT_PACKAGES
) -> dict[str, Path]:
    """Every project module ``module`` depends on, itself and its parent packages included: name → file."""
    if _module_file(module, root) is None:
        raise FileNotFoundError(f"stage module {module!r} has no source under {root}")
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen or name.split(".")[0] not in packages:
            continue
        path = _module_file(name, root)
        if path is None:
            continue
        seen[name] = path
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # importing a.b runs a/__init__.py
        tree = ast.parse(path.read_bytes(), filename=str(path))
        todo.extend(_imported_names(tree, name, path.name == "__init__.py"))
    return seen


def _module_digest(path: Path) -> str:
    tree = _strip_docstrings(ast.parse(path.read_bytes(), filename=str(path)))
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()


def code_hash(module: str, root: Path = PROJECT_ROOT, packages: tuple[str, ...] = PROJECT_PACKAGES) -> str:
    """Hash of the code ``module`` runs (its project-module closure), 16 hex digits."""
    closure = module_closure(module, root, packages)
    h = hashlib.sha256()
    for name in sorted(closure):
        h.update(f"{name}\0{_module_digest(closure[name])}\n".encode())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=None)
def stage_code_hash(module: str) -> str:
    """``code_hash`` of a project stage module, once per process (sources do not change under a run)."""
    return code_hash(module)
