"""``pseudo_mv/store.zarr``: per video, real frames + K rendered views per frame (DESIGN.md §5).

Layout: one group per video at ``/<video_id>`` with ``frames [T,H,W,3] u8``, ``alpha [T,H,W] u8``,
``frame_cameras [T,25] f32``, ``frame_motion [T,D] f32``, ``views [T,K,H,W,3] u8``,
``view_alpha [T,K,H,W] u8``, ``view_cameras [T,K,25] f32``, ``view_motion [T,K,D] f32``; attributes
name the source file and its hash, fps, crop parameters, the camera source (``ground_truth`` or
``estimated``) and ingestion quality flags. One chunk is one frame; a shard holds
``shard_frames`` frames.

A video group is written in chunks of frames (``begin_video``, ``append_frames``, ``finish_video``:
memory is one chunk, whatever the video's length), then marked ``complete``; a group left incomplete
by a killed run is deleted and rewritten on resume. The root attribute ``index`` lists every video (id,
frames, status ``converted``, ``skipped`` (bad input) or ``failed`` (a fault while converting it) with its step
and reason).
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import zarr

from storage_schemas.zarr_schema import ArraySpec, GroupSchema, SchemaError, create_root, finalize, open_group

SCHEMA_VERSION = 1
CAMERA_SOURCES = ("ground_truth", "estimated")
VIDEO_SCHEMA = GroupSchema(
    name="pseudo_mv_video",
    version=SCHEMA_VERSION,
    arrays=(
        ArraySpec("frames", "uint8", ("frame", "height", "width", "rgb")),
        ArraySpec("alpha", "uint8", ("frame", "height", "width")),
        ArraySpec("frame_cameras", "float32", ("frame", "camera")),
        ArraySpec("frame_motion", "float32", ("frame", "motion")),
        ArraySpec("views", "uint8", ("frame", "view", "height", "width", "rgb")),
        ArraySpec("view_alpha", "uint8", ("frame", "view", "height", "width")),
        ArraySpec("view_cameras", "float32", ("frame", "view", "camera")),
        ArraySpec("view_motion", "float32", ("frame", "view", "motion")),
    ),
    required_attrs=("source_file", "source_hash", "fps", "crop", "camera_source", "quality_flags", "complete"),
)
ROOT_SCHEMA = "pseudo_mv"

__all__ = [
    "SCHEMA_VERSION",
    "VIDEO_SCHEMA",
    "SchemaError",
    "create",
    "write_video",
    "begin_video",
    "append_frames",
    "finish_video",
    "completed_videos",
    "is_complete",
    "video_claim",
    "set_index",
    "read_index",
    "open_read",
    "validate",
    "finalize",
]


def create(store_path: str | Path, attrs: Mapping[str, Any] | None = None) -> zarr.Group:
    root = create_root(store_path)
    root.attrs.update({"schema": ROOT_SCHEMA, "schema_version": SCHEMA_VERSION, "index": [], **dict(attrs or {})})
    return root


def open_or_create(store_path: str | Path, attrs: Mapping[str, Any] | None = None) -> zarr.Group:
    if (Path(store_path) / "zarr.json").exists():
        return open_group(store_path, mode="r+")
    return create(store_path, attrs)


def completed_videos(store_path: str | Path) -> list[str]:
    """Video groups written whole (resume skips these)."""
    if not (Path(store_path) / "zarr.json").exists():
        return []
    root = open_group(store_path, mode="r+")
    return sorted(name for name, g in root.groups() if g.attrs.get("complete") is True)


def is_complete(store_path: str | Path, video_id: str) -> bool:
    """Whether ``video_id``'s group is written whole."""
    root = open_group(store_path, mode="r")
    return video_id in root.group_keys() and root[video_id].attrs.get("complete") is True


def claims_dir(store_path: str | Path) -> Path:
    """Beside the store (never in it): one lock file per video being written."""
    return Path(f"{store_path}.claims")


@contextlib.contextmanager
def video_claim(store_path: str | Path, video_id: str):
    """Hold the right to write ``video_id``'s group: an exclusive ``flock`` (waits while another process holds it;
    the kernel releases it when its holder dies). A task run twice at once (Dask runs a task again when it believes
    its worker lost) then writes each video once: the second writer waits, and finds the group complete."""
    d = claims_dir(store_path)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / f"{video_id}.lock", "a+") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def begin_video(
    store_path: str | Path,
    video_id: str,
    sizes: Mapping[str, int],
    attrs: Mapping[str, Any],
    shard_frames: int = 16,
) -> zarr.Group:
    """Create an empty, incomplete group for ``video_id`` (replacing an incomplete leftover of a killed run).
    ``sizes``: height, width, motion and view (rgb and camera are fixed)."""
    if "/" in video_id or not video_id:
        raise ValueError(f"invalid video id {video_id!r}")
    if attrs.get("camera_source") not in CAMERA_SOURCES:
        raise ValueError(
            f"video {video_id}: camera_source must be one of {CAMERA_SOURCES}, got {attrs.get('camera_source')!r}"
        )
    root = open_group(store_path, mode="r+")
    if video_id in root.group_keys():
        if root[video_id].attrs.get("complete") is True:
            raise FileExistsError(f"{store_path}/{video_id} is already complete; refusing to overwrite it")
        shutil.rmtree(Path(store_path) / video_id)  # leftover of a killed run
        root = open_group(store_path, mode="r+")
    group = root.create_group(video_id)
    dims = {"rgb": 3, "camera": 25, **{k: int(v) for k, v in sizes.items()}}
    VIDEO_SCHEMA.create(group, dims, shard_frames, {**dict(attrs), "complete": False, "frames": 0})
    return group


def append_frames(group: zarr.Group, arrays: Mapping[str, np.ndarray]) -> int:
    """Append one chunk of frames (every array of the schema); returns the frame count so far."""
    return VIDEO_SCHEMA.append(group, arrays)


def finish_video(group: zarr.Group, attrs: Mapping[str, Any] | None = None) -> int:
    """Mark a group complete (after its last chunk), with its frame count and any final attributes."""
    n = VIDEO_SCHEMA.committed(group)
    group.attrs.update({**dict(attrs or {}), "frames": n})
    group.attrs["complete"] = True  # last: a kill before this leaves an incomplete group, redone on resume
    return n


def write_video(
    store_path: str | Path,
    video_id: str,
    arrays: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any],
    shard_frames: int = 16,
) -> None:
    """Write one video group whole (replacing an incomplete leftover), then mark it complete."""
    frames, views = np.asarray(arrays["frames"]), np.asarray(arrays["views"])
    sizes = {
        "height": frames.shape[1],
        "width": frames.shape[2],
        "motion": int(np.asarray(arrays["frame_motion"]).shape[1]),
        "view": views.shape[1],
    }
    group = begin_video(store_path, video_id, sizes, attrs, shard_frames)
    append_frames(group, arrays)
    finish_video(group)


def discard_incomplete(store_path: str | Path, video_id: str) -> None:
    """Remove what a failed writer left of ``video_id`` (never a complete group)."""
    root = open_group(store_path, mode="r+")
    if video_id in root.group_keys() and root[video_id].attrs.get("complete") is not True:
        shutil.rmtree(Path(store_path) / video_id)


def open_group_frames(store_path: str | Path, video_id: str) -> int:
    """Frame count of a written video group."""
    return int(open_group(store_path, mode="r+")[video_id].attrs["frames"])


def set_index(store_path: str | Path, entries: list[dict[str, Any]]) -> None:
    """Root index: one entry per input video (id, source, frames, status, reason)."""
    root = open_group(store_path, mode="r+")
    root.attrs["index"] = entries


def read_index(store_path: str | Path) -> list[dict[str, Any]]:
    return list(open_group(store_path, mode="r").attrs.get("index", []))


def open_read(store_path: str | Path) -> zarr.Group:
    return open_group(store_path, mode="r")


def validate(store_path: str | Path) -> None:
    """Check the root and every video group; raise :class:`SchemaError` listing every problem."""
    try:
        root = open_group(store_path, mode="r", consolidated=False)
    except FileNotFoundError as exc:
        raise SchemaError(store_path, [str(exc)]) from None
    problems: list[str] = []
    attrs = dict(root.attrs)
    if attrs.get("schema") != ROOT_SCHEMA:
        problems.append(f"{store_path}: attribute 'schema' is {attrs.get('schema')!r}, expected {ROOT_SCHEMA!r}")
    if attrs.get("schema_version") != SCHEMA_VERSION:
        problems.append(
            f"{store_path}: attribute 'schema_version' is {attrs.get('schema_version')!r}, expected {SCHEMA_VERSION}"
        )
    index = attrs.get("index")
    if not isinstance(index, list):
        problems.append(f"{store_path}: root attribute 'index' is missing or not a list")
        index = []
    groups = dict(root.groups())
    for entry in index:
        vid = entry.get("video_id")
        if entry.get("status") == "converted":
            if vid not in groups:
                problems.append(f"{store_path}: index lists {vid!r} as converted but the group is missing")
            elif groups[vid].attrs.get("frames") != entry.get("frames"):
                problems.append(
                    f"{store_path}/{vid}: index says {entry.get('frames')} frames, "
                    f"group says {groups[vid].attrs.get('frames')}"
                )
    for name, group in groups.items():
        where = f"{store_path}/{name}"
        problems += VIDEO_SCHEMA.problems(group, where)
        if group.attrs.get("complete") is not True:
            problems.append(f"{where}: video group is incomplete (its writer did not finish)")
        if group.attrs.get("camera_source") not in CAMERA_SOURCES:
            problems.append(
                f"{where}: camera_source {group.attrs.get('camera_source')!r} is not one of {CAMERA_SOURCES}"
            )
    if problems:
        raise SchemaError(store_path, problems)
