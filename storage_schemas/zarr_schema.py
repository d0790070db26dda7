"""Zarr v3 layouts as code: declare arrays once, then create, append, open and validate.

Every array's first dimension is the sample axis. Chunks hold one sample (one training read is one
chunk, DESIGN.md §5); shards group ``shard_samples`` chunks into one file so a block write of a
shard or more is one file write. Compression is Blosc-zstd. Dimension names, the schema name and
version, and the sizes of every named dimension are stored, so ``validate`` can check a store
without knowing how it was made.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import zarr
from zarr.codecs import BloscCodec

COMMITTED = "committed_samples"  # group attribute: samples whose append finished (written last: the commit)


class SchemaError(ValueError):
    """A store does not match its schema; the message lists every problem and the store path."""

    def __init__(self, path: str | Path, problems: list[str]):
        self.path = str(path)
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{path}: {len(problems)} problem(s) against its schema:\n{lines}")


def compressor() -> BloscCodec:
    return BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")


@dataclass(frozen=True)
class ArraySpec:
    name: str
    dtype: str
    dims: tuple[str, ...]  # dimension names; dims[0] is the sample axis


@dataclass(frozen=True)
class GroupSchema:
    name: str
    version: int
    arrays: tuple[ArraySpec, ...]
    required_attrs: tuple[str, ...] = ()

    @property
    def sample_dim(self) -> str:
        return self.arrays[0].dims[0]

    def shape(self, spec: ArraySpec, sizes: Mapping[str, int], n: int) -> tuple[int, ...]:
        return (n, *(int(sizes[d]) for d in spec.dims[1:]))

    # ---- create / append ------------------------------------------------------------------
    def create(
        self,
        group: zarr.Group,
        sizes: Mapping[str, int],
        shard_samples: int,
        attrs: Mapping[str, Any] | None = None,
    ) -> zarr.Group:
        """Create every array empty along the sample axis; store sizes and attributes."""
        missing = [d for a in self.arrays for d in a.dims[1:] if d not in sizes]
        if missing:
            raise ValueError(f"schema {self.name}: sizes missing for dimensions {sorted(set(missing))}")
        shard_samples = max(1, int(shard_samples))
        for spec in self.arrays:
            tail = tuple(int(sizes[d]) for d in spec.dims[1:])
            group.create_array(
                spec.name,
                shape=(0, *tail),
                chunks=(1, *tail),
                shards=(shard_samples, *tail),
                dtype=spec.dtype,
                compressors=compressor(),
                fill_value=0,
                dimension_names=spec.dims,
            )
        group.attrs.update(
            {
                "schema": self.name,
                "schema_version": self.version,
                "sizes": {k: int(v) for k, v in sizes.items()},
                "shard_samples": shard_samples,
                COMMITTED: 0,
                **dict(attrs or {}),
            }
        )
        return group

    def committed(self, group: zarr.Group) -> int:
        """Samples whose append finished. Arrays may be longer after a killed append: that tail is not data.

        Stores written before the commit attribute existed count their shortest array."""
        value = group.attrs.get(COMMITTED)
        if value is None:
            return min(group[a.name].shape[0] for a in self.arrays)
        return int(value)

    def append(self, group: zarr.Group, block: Mapping[str, np.ndarray]) -> int:
        """Append one block (every array, same leading length); returns the new sample count.

        Kill-safe: every array is written from the committed count (overwriting the tail a killed
        append left), and the count is raised only after the last array is written (one atomic
        metadata write), so a kill at any moment leaves the committed samples whole."""
        names = {a.name for a in self.arrays}
        if set(block) != names:
            raise ValueError(f"schema {self.name}: block has arrays {sorted(block)}, expected {sorted(names)}")
        lengths = {k: len(v) for k, v in block.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"schema {self.name}: block arrays differ in length: {lengths}")
        n = next(iter(lengths.values()))
        start = self.committed(group)
        for spec in self.arrays:
            arr = group[spec.name]
            data = np.asarray(block[spec.name])
            if data.shape[1:] != arr.shape[1:]:
                raise ValueError(
                    f"schema {self.name}: array {spec.name} block shape {data.shape[1:]} != store {arr.shape[1:]}"
                )
            arr.resize((start + n, *arr.shape[1:]))
            arr[start : start + n] = data.astype(spec.dtype, copy=False)
        group.attrs[COMMITTED] = start + n
        return start + n

    # ---- validate -------------------------------------------------------------------------
    def problems(self, group: zarr.Group, where: str) -> list[str]:
        """Every mismatch between ``group`` and this schema (empty list = valid)."""
        out: list[str] = []
        attrs = dict(group.attrs)
        if attrs.get("schema") != self.name:
            out.append(f"{where}: attribute 'schema' is {attrs.get('schema')!r}, expected {self.name!r}")
        if attrs.get("schema_version") != self.version:
            out.append(
                f"{where}: attribute 'schema_version' is {attrs.get('schema_version')!r}, expected {self.version}"
            )
        for key in self.required_attrs:
            if key not in attrs:
                out.append(f"{where}: required attribute {key!r} is missing")
        sizes = attrs.get("sizes") or {}
        present = set(group.array_keys())
        n_samples = None
        for spec in self.arrays:
            if spec.name not in present:
                out.append(f"{where}/{spec.name}: array is missing")
                continue
            arr = group[spec.name]
            if np.dtype(arr.dtype) != np.dtype(spec.dtype):
                out.append(f"{where}/{spec.name}: dtype is {arr.dtype}, expected {spec.dtype}")
            if arr.ndim != len(spec.dims):
                out.append(
                    f"{where}/{spec.name}: has {arr.ndim} dimensions {arr.shape}, expected {len(spec.dims)} {spec.dims}"
                )
                continue
            for axis, dim in enumerate(spec.dims[1:], start=1):
                if dim in sizes and arr.shape[axis] != sizes[dim]:
                    out.append(
                        f"{where}/{spec.name}: dimension {dim} (axis {axis}) is {arr.shape[axis]}, "
                        f"expected {sizes[dim]}"
                    )
                elif dim not in sizes:
                    out.append(f"{where}: attribute 'sizes' has no entry for dimension {dim!r}")
            names = getattr(arr.metadata, "dimension_names", None)
            if names is not None and tuple(names) != spec.dims:
                out.append(f"{where}/{spec.name}: dimension names {tuple(names)}, expected {spec.dims}")
            if n_samples is None:
                n_samples = arr.shape[0]
            elif arr.shape[0] != n_samples:
                out.append(
                    f"{where}/{spec.name}: {arr.shape[0]} samples along {spec.dims[0]}, other arrays have {n_samples}"
                )
            committed = attrs.get(COMMITTED)
            if committed is not None and arr.shape[0] != committed:
                out.append(
                    f"{where}/{spec.name}: {arr.shape[0]} samples but {committed} committed "
                    "(an append was interrupted; rerun the stage to finish it)"
                )
        return out


def open_group(path: str | Path, mode: str = "r", consolidated: bool = True) -> zarr.Group:
    """Open a store; read-only by default. Consolidated metadata is used when present, unless
    ``consolidated`` is False (validation: it must see what is on disk, not a snapshot of it). An object-storage URL
    (``s3://…/store.zarr``) is opened through zarr's fsspec store."""
    if "://" in str(path) and not str(path).startswith("file://"):
        return zarr.open_group(str(path), mode=mode, use_consolidated=None if mode == "r" and consolidated else False)
    path = Path(path)
    if not (path / "zarr.json").exists():
        raise FileNotFoundError(f"{path}: not a Zarr v3 store (no zarr.json)")
    if mode == "r" and consolidated:
        return zarr.open_group(str(path), mode="r")
    return zarr.open_group(str(path), mode=mode, use_consolidated=False)


def create_root(path: str | Path) -> zarr.Group:
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already exists; refusing to overwrite a store")
    return zarr.create_group(store=str(path), zarr_format=3)


def finalize(path: str | Path) -> None:
    """Consolidate metadata (call once, after the last write)."""
    import warnings

    with warnings.catch_warnings():  # "consolidated metadata is not part of the v3 spec" (zarr-python reads it)
        warnings.simplefilter("ignore")
        zarr.consolidate_metadata(str(path))
