"""Uncompressed copies of a round's large images, so the annotation plugin shows a task at once.

A ``.nii.gz`` is one zlib stream: showing one plane of a 512x512x300 CT means decompressing up to
150 MB first (about a second on a workstation core, before napari draws anything). ``medal round``
therefore writes, next to ``tasks.json``, an uncompressed NIfTI (``display/<case>.nii``) of every
large image that has tasks, with its display window; the plugin memory-maps it, so its first draw reads
only the planes it shows. Each entry of ``display/index.json`` records the source image's size and
modification time: a source that changed, a missing or unreadable copy, or a round from an older medal
all fall back to the source file. The copies are a cache: deleting ``display/`` loses nothing.

Disk: the copies take the images' uncompressed size (only cases with tasks, only images of at least
``MIN_VOXELS`` voxels; smaller ones decompress in milliseconds and are not copied).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from medal.data import DatasetError, Volume, load_volume, save_volume, volume_shape
from medal.data.atomic import atomic_write_json

from .tasks import TaskList

__all__ = ["DISPLAY_DIR", "MIN_VOXELS", "display_window", "open_display_image", "write_display_cache"]

DISPLAY_DIR = "display"
#: images smaller than this are read from their source (decompressing them takes milliseconds)
MIN_VOXELS = 4_000_000


def display_window(a: np.ndarray, lo: float = 0.5, hi: float = 99.5) -> tuple[float, float]:
    """Intensity window from the ``lo`` / ``hi`` percentiles of about a million voxels of ``a``."""
    # order="K": a view in memory order (NIfTI arrays are Fortran-ordered); a C-order ravel would copy
    # the whole volume through strided reads
    sample = np.ravel(a, order="K")[:: max(a.size // 1_000_000, 1)]
    p = np.percentile(sample, [lo, hi]).astype(float)
    return (float(p[0]), float(p[1]) if p[1] > p[0] else float(p[0]) + 1.0)


def _stamp(path: Path) -> dict:
    st = os.stat(path)
    return {"size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def _safe_name(case_id: str) -> str | None:
    name = f"{case_id}.nii"
    return name if case_id and Path(name).name == name and not case_id.startswith(".") else None


def _read_index(folder: Path) -> dict:
    try:
        index = json.loads((folder / "index.json").read_text())
    except (OSError, ValueError):
        return {}
    return index.get("cases", {}) if isinstance(index, dict) and isinstance(index.get("cases"), dict) else {}


def _copy_intact(path: Path, entry: dict) -> bool:
    try:
        return path.stat().st_size == entry.get("bytes")
    except OSError:
        return False


def write_display_cache(tasklist: TaskList, round_dir, *, min_voxels: int | None = None) -> dict[str, str]:
    """Write ``round_dir/display/<case>.nii`` for every case of ``tasklist`` whose image has at least
    ``min_voxels`` voxels (up-to-date copies are kept). Returns ``{case_id: problem}`` for cases whose
    image could not be read or copied (the plugin then reads the source; nothing else depends on it).
    ``min_voxels`` defaults to :data:`MIN_VOXELS`."""
    min_voxels = MIN_VOXELS if min_voxels is None else int(min_voxels)
    folder = Path(round_dir) / DISPLAY_DIR
    index, problems = _read_index(folder), {}
    sources: dict[str, Path] = {}
    for task in tasklist.tasks:
        if task.case_id not in sources:
            try:
                sources[task.case_id] = tasklist.image_path(task)
            except Exception as exc:  # noqa: BLE001 - a task's bad path is reported where tasks are read
                problems[task.case_id] = str(exc)
    for case_id, src in sources.items():
        name = _safe_name(case_id)
        if name is None:
            problems[case_id] = f"case id {case_id!r} is not a plain file name: no display copy"
            continue
        try:
            stamp = _stamp(src)
            old = index.get(case_id)
            if isinstance(old, dict) and old.get("source") == stamp and _copy_intact(folder / name, old):
                continue
            if int(np.prod(volume_shape(src))) < min_voxels:  # from the header: small images are not read
                index.pop(case_id, None)
                continue
            vol = load_volume(src)
            folder.mkdir(parents=True, exist_ok=True)
            save_volume(vol, folder / name)
            index[case_id] = {"file": name, "source": stamp, "bytes": (folder / name).stat().st_size,
                              "shape": list(vol.shape),
                              "dtype": str(vol.array.dtype), "window": list(display_window(vol.array))}
        except (DatasetError, OSError, ValueError) as exc:
            problems[case_id] = str(exc)
    if index:
        atomic_write_json(folder / "index.json", {"format": "medal-display/1", "cases": index})
    return problems


def open_display_image(round_dir, case_id: str, source) -> tuple[Volume, tuple[float, float]] | None:
    """The memory-mapped copy of ``case_id``'s image and its display window, or None when there is no
    up-to-date copy (then read ``source``)."""
    folder = Path(round_dir) / DISPLAY_DIR
    name = _safe_name(case_id)
    entry = _read_index(folder).get(case_id) if name is not None else None
    if not isinstance(entry, dict):
        return None
    try:
        if entry.get("source") != _stamp(Path(source)) or not _copy_intact(folder / name, entry):
            return None
        vol = load_volume(folder / name)
        window = tuple(float(x) for x in entry["window"])
    except (DatasetError, OSError, KeyError, TypeError, ValueError):
        return None
    if list(vol.shape) != list(entry.get("shape", [])) or str(vol.array.dtype) != entry.get("dtype") \
            or len(window) != 2:
        return None
    return vol, window
