"""The catalog: one Parquet row per artifact (pyarrow), rebuilt from the manifests."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

CATALOG_SCHEMA = pa.schema(
    [
        ("kind", pa.string()),
        ("version", pa.string()),
        ("status", pa.string()),
        ("created_at", pa.string()),
        ("parents", pa.list_(pa.string())),
        ("config_hash", pa.string()),
        ("code_version", pa.string()),
        ("code_hash", pa.string()),  # the stage's code (storage_schemas/code_hash.py)
        ("git_commit", pa.string()),
        ("schema_version", pa.int64()),
        ("counts", pa.string()),  # JSON object
        ("metrics", pa.string()),  # JSON object of headline (scalar) metrics
        ("wall_time_s", pa.float64()),
        ("bytes", pa.int64()),
        ("path", pa.string()),
    ]
)


def write_catalog(rows: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows, schema=CATALOG_SCHEMA)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def read_catalog(path: Path) -> pa.Table:
    return pq.read_table(path)
