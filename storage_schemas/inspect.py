"""Inspect what the pipeline made.

    python -m storage_schemas.inspect                      # the catalog as a table
    python -m storage_schemas.inspect --json               # one JSON object per artifact
    python -m storage_schemas.inspect PATH/store.zarr      # tree, chunks, compression, validation
    python -m storage_schemas.inspect --lineage kind@version   # ancestry (and descendants)
    python -m storage_schemas.inspect --stale              # temporary folders: running or abandoned
    python -m storage_schemas.inspect --remove-stale [--older-than HOURS]   # delete the abandoned ones

The root is ``$P4D_HOME`` (default ``./artifacts``) unless ``--root`` is given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from storage_schemas import genhead_samples, pseudo_mv
from storage_schemas.artifacts import ArtifactError, ArtifactRegistry
from storage_schemas.zarr_schema import SchemaError, open_group

VALIDATORS = {"genhead_samples": genhead_samples.validate, "pseudo_mv": pseudo_mv.validate}


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def format_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(out)


def _short_metrics(metrics_json: str, limit: int = 3) -> str:
    try:
        metrics = json.loads(metrics_json or "{}")
    except json.JSONDecodeError:
        return ""
    items = []
    for k, v in list(metrics.items())[:limit]:
        items.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
    return ", ".join(items)


def catalog_table(registry: ArtifactRegistry) -> str:
    rows = registry.catalog_rows()
    if not rows:
        return f"no artifacts under {registry.location}"
    shown = [
        {
            "kind": r["kind"],
            "version": r["version"],
            "status": r["status"],
            "created_at": r["created_at"] or "",
            "parents": ",".join(r["parents"]),
            "size": human_bytes(r["bytes"]),
            "metrics": _short_metrics(r["metrics"]),
        }
        for r in rows
    ]
    return format_table(shown, ["kind", "version", "status", "created_at", "parents", "size", "metrics"])


def stale_report(registry: ArtifactRegistry) -> str:
    temps = registry.temporaries()
    if not temps:
        return f"no temporary folders under {registry.root}"
    rows = [
        {
            "kind": t.kind,
            "version": t.version,
            "state": "running" if t.in_use else "abandoned",
            "idle": f"{t.idle_s / 3600:.1f} h",
            "size": human_bytes(t.bytes),
            "path": str(t.path),
        }
        for t in temps
    ]
    abandoned = [t for t in temps if not t.in_use]
    note = (
        f"\n{len(abandoned)} abandoned ({human_bytes(sum(t.bytes for t in abandoned))}): the next run of the same "
        "version resumes from its folder; `make clean-stale [OLDER_THAN=hours]` removes them (their progress is lost)"
    )
    return format_table(rows, ["kind", "version", "state", "idle", "size", "path"]) + (note if abandoned else "")


def store_report(path: Path) -> tuple[str, bool]:
    """Tree of a Zarr store (arrays, shapes, dtypes, chunks, compression ratio, attributes) and its validation."""
    group = open_group(path, mode="r")
    lines = [f"{path}"]

    def attrs_lines(g, indent: str) -> None:
        for k, v in sorted(dict(g.attrs).items()):
            text = json.dumps(v, default=str)
            if len(text) > 160:
                text = text[:157] + "..."
            lines.append(f"{indent}@{k}: {text}")

    def walk(g, indent: str) -> None:
        attrs_lines(g, indent)
        for name, arr in sorted(g.arrays(), key=lambda x: x[0]):
            stored = arr.nbytes_stored()
            ratio = arr.nbytes / stored if stored else float("nan")
            comp = ",".join(type(c).__name__ for c in (arr.compressors or ())) or "none"
            dims = getattr(arr.metadata, "dimension_names", None)
            lines.append(
                f"{indent}{name}  {arr.dtype}{list(arr.shape)}  dims={list(dims) if dims else '-'}"
                f"  chunks={list(arr.chunks)}"
                f"  shards={list(arr.shards) if arr.shards else '-'}  {comp}  {human_bytes(stored)} stored,"
                f" ratio {ratio:.2f}x"
            )
        for name, sub in sorted(g.groups(), key=lambda x: x[0]):
            lines.append(f"{indent}{name}/")
            walk(sub, indent + "  ")

    walk(group, "  ")
    schema = group.attrs.get("schema")
    validator = VALIDATORS.get(schema)
    ok = True
    if validator is None:
        lines.append(f"validation: no schema named {schema!r} is known; not validated")
    else:
        try:
            validator(path)
            lines.append(f"validation: OK ({schema} schema version {group.attrs.get('schema_version')})")
        except SchemaError as exc:
            ok = False
            lines.append(f"validation: FAILED\n{exc}")
    return "\n".join(lines), ok


def lineage_report(registry: ArtifactRegistry, spec: str) -> str:
    art = registry.resolve(spec)
    lines = [f"{art.ref}  ({art.path})", "ancestors:"]
    for a in registry.ancestors(art):
        lines.append(f"  {a.ref}  <- parents: {', '.join(a.parents) or '-'}")
    lines.append("descendants:")
    for a in registry.descendants(art):
        lines.append(f"  {a.ref}  <- parents: {', '.join(a.parents)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m storage_schemas.inspect", description=__doc__.split("\n\n")[0])
    ap.add_argument("store", nargs="?", help="a Zarr store to inspect (PATH/store.zarr)")
    ap.add_argument("--root", help="artifact root (default $P4D_HOME or ./artifacts)")
    ap.add_argument("--json", action="store_true", help="one JSON object per artifact")
    ap.add_argument("--lineage", metavar="KIND@VERSION", help="print ancestors and descendants")
    ap.add_argument(
        "--stale", action="store_true", help="temporary folders: a stage running now, or abandoned by a killed one"
    )
    ap.add_argument("--remove-stale", action="store_true", help="delete abandoned temporary folders (not running ones)")
    ap.add_argument(
        "--older-than", type=float, default=0.0, metavar="HOURS", help="with --remove-stale: idle at least this long"
    )
    args = ap.parse_args(argv)
    registry = ArtifactRegistry(args.root)
    try:
        if args.remove_stale:
            removed = registry.remove_abandoned(older_than_s=args.older_than * 3600)
            for t in removed:
                print(f"removed {t.path} ({human_bytes(t.bytes)}, idle {t.idle_s / 3600:.1f} h)")
            print(f"removed {len(removed)} abandoned temporary folder(s)")
            return 0
        if args.stale:
            print(stale_report(registry))
            return 0
        if args.store:
            report, ok = store_report(args.store if "://" in args.store else Path(args.store))
            print(report)
            return 0 if ok else 1
        if args.lineage:
            print(lineage_report(registry, args.lineage))
            return 0
        if args.json:
            for row in registry.catalog_rows():
                row = {**row, "counts": json.loads(row["counts"]), "metrics": json.loads(row["metrics"])}
                print(json.dumps(row, default=str))
            return 0
        print(catalog_table(registry))
        if registry.catalog_path.exists():
            where = f" (published to {registry.location}/catalog.parquet)" if registry.remote is not None else ""
            print(f"\ncatalog: {registry.catalog_path}{where}")
        return 0
    except (ArtifactError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
