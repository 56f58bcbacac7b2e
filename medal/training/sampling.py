"""Patch sampling that always lands on annotated voxels (pure numpy).

A volume with only a few painted slices still trains: every patch is placed so that it contains an
annotated voxel, a share of them (``foreground_fraction``) on annotated foreground.
"""

from __future__ import annotations

import numpy as np

from medal.data.labels import UNLABELED

__all__ = ["AnnotatedIndex", "crop_patch", "patch_start", "sample_patch"]


class AnnotatedIndex:
    """Flat indices of a label volume's annotated voxels and annotated foreground voxels."""

    def __init__(self, label: np.ndarray):
        flat = np.asarray(label).ravel()
        self.shape = label.shape
        self.annotated = np.flatnonzero(flat != UNLABELED)
        self.foreground = np.flatnonzero((flat != UNLABELED) & (flat > 0))

    @property
    def empty(self) -> bool:
        return self.annotated.size == 0


def crop_patch(array: np.ndarray, start, size, *, fill) -> np.ndarray:
    """``array[start:start+size]`` over the last 3 axes, padded with ``fill`` where it leaves the volume."""
    spatial = array.shape[-3:]
    out = np.full(array.shape[:-3] + tuple(size), fill, dtype=array.dtype)
    src, dst = [], []
    for st, sz, n in zip(start, size, spatial):
        a, b = max(st, 0), min(st + sz, n)
        if b <= a:
            return out
        src.append(slice(a, b))
        dst.append(slice(a - st, b - st))
    out[(..., *dst)] = array[(..., *src)]
    return out


def patch_start(index: AnnotatedIndex, size, rng: np.random.Generator, *, foreground_fraction: float = 0.5) -> np.ndarray:
    """Where a patch of ``size`` containing at least one annotated voxel starts (may lie outside the volume)."""
    if index.empty:
        raise ValueError("volume has no annotated voxel to sample a patch from")
    pool = index.foreground if index.foreground.size and rng.random() < foreground_fraction else index.annotated
    centre = np.unravel_index(pool[rng.integers(pool.size)], index.shape)
    size = np.asarray(size)
    # place the chosen voxel anywhere in the middle half of the patch, not always at its centre
    offset = size // 2 + rng.integers(-(size // 4), size // 4 + 1)
    return np.asarray(centre) - offset


def sample_patch(image: np.ndarray, label: np.ndarray, index: AnnotatedIndex, size, rng: np.random.Generator,
                 *, foreground_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """One (image, label) patch of ``size`` containing at least one annotated voxel."""
    start = patch_start(index, size, rng, foreground_fraction=foreground_fraction)
    return (crop_patch(image, start, size, fill=0.0),
            crop_patch(label, start, size, fill=UNLABELED))
