"""Markdown summaries of artifacts for Prefect artifacts and the console."""

from __future__ import annotations

from storage_schemas.artifacts import Artifact


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def artifact_markdown(art: Artifact, title: str | None = None) -> str:
    """Counts, headline metrics, parents and payload files of one artifact."""
    m = art.manifest
    lines = [f"## {title or art.kind} `{art.ref}`", "", f"path: `{art.path}`", ""]
    if art.parents:
        lines += ["parents: " + ", ".join(f"`{p}`" for p in art.parents), ""]
    rows = [(k, v) for k, v in m.get("counts", {}).items()] + [
        (k, v) for k, v in m.get("metrics", {}).items() if isinstance(v, (int, float, str, bool))
    ]
    if rows:
        lines += ["| quantity | value |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in rows]
    pngs = sorted(p.relative_to(art.path) for p in art.path.rglob("*.png"))
    if pngs:
        lines += ["", "pictures: " + ", ".join(f"`{p}`" for p in pngs[-6:])]
    lines += ["", f"wall time: {_fmt(m.get('wall_time_s'))} s"]
    return "\n".join(lines)
