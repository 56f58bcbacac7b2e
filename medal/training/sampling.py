"""Patch sampling that always lands on annotated voxels (pure numpy).

A volume with only a few painted slices still trains: every patch is placed so that it contains an
annotated voxel, a share of them (``foreground_fraction``) on annotated foreground.
"""

from __future__ import annotations

import numpy as np

from medal.data.labels import UNLABELED

__all__ = ["AllIndices", "AnnotatedIndex", "crop_patch", "patch_start", "sample_patch", "window_coverage"]


class AllIndices:
    """The flat indices ``0 .. size-1`` without storing them (``[k]`` is ``k``): a fully annotated volume's
    annotated voxels, which as an int64 array took twice its float32 image's memory (400 MB for a 52 M-voxel CT)."""

    __slots__ = ("size",)

    def __init__(self, size: int):
        self.size = int(size)

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        return 0

    def __getitem__(self, k) -> int:
        k = int(k)
        if not 0 <= k < self.size:
            raise IndexError(k)
        return k


class AnnotatedIndex:
    """Flat indices of a label volume's annotated voxels and annotated foreground voxels (int32 where the volume
    has fewer than 2**31 voxels; every voxel annotated: :class:`AllIndices`). Patches drawn from it are the same
    as from int64 arrays of the same indices: the same generator calls pick the same voxels."""

    def __init__(self, label: np.ndarray):
        flat = np.asarray(label).ravel()
        self.shape = label.shape
        dtype = np.int32 if flat.size < 2**31 else np.int64
        annotated = flat != UNLABELED
        self.annotated = AllIndices(flat.size) if annotated.all() else np.flatnonzero(annotated).astype(dtype)
        self.foreground = np.flatnonzero(annotated & (flat > 0)).astype(dtype)

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


def _axis_coverage(n: int, size: int, clip: bool) -> np.ndarray:
    """``T[v, c]``: along one axis of length ``n``, the probability that a patch of ``size`` placed by
    :func:`patch_start` on a centre at ``c`` (then, with ``clip``, its start clipped to ``[0, max(n - size, 0)]``)
    covers ``v``."""
    h, q = size // 2, size // 4
    c = np.arange(n)[:, None]
    start = c - h - np.arange(-q, q + 1)[None, :]  # (centre, offset): each offset equally likely
    if clip:
        start = np.clip(start, 0, max(n - size, 0))
    v = np.arange(n)[:, None, None]
    covered = (start[None] <= v) & (v < start[None] + size)
    return covered.mean(axis=2)


def window_coverage(index: AnnotatedIndex, size, *, foreground_fraction: float = 0.5, clip: bool = True) -> np.ndarray:
    """Per voxel, the probability (float32, the volume's shape) that one window drawn as :func:`patch_start` draws
    it (``foreground_fraction`` centred on annotated foreground, the rest on any annotated voxel; with ``clip`` the
    start then kept inside the volume, as validation windows are) covers that voxel.

    The windows are independent draws, so a count over ``n`` of them with each voxel weighted ``1 / (n * q)``
    estimates the count over the whole volume without bias (Hansen & Hurwitz 1943, sampling with replacement and
    unequal probabilities): windows half on foreground see the anatomy often and the background rarely, and the
    weights give a false positive far from the anatomy the weight of all the background it stands for. Exact: the
    centre distribution is pushed through each axis's placement (:func:`_axis_coverage`, separable), three
    matrix products of the volume."""
    shape = tuple(index.shape)
    n_vox = int(np.prod(shape))
    centre = np.zeros(n_vox, np.float64)
    f = float(foreground_fraction) if index.foreground.size else 0.0
    if isinstance(index.annotated, AllIndices):
        centre += (1.0 - f) / n_vox
    else:
        centre[index.annotated] += (1.0 - f) / index.annotated.size  # distinct indices: += adds once each
    if f:
        centre[index.foreground] += f / index.foreground.size
    q = centre.reshape(shape).astype(np.float32)
    for axis, (n, s) in enumerate(zip(shape, size)):
        t = _axis_coverage(n, int(s), clip).astype(np.float32)
        q = np.moveaxis(np.tensordot(t, q, axes=([1], [axis])), 0, axis)
    return np.ascontiguousarray(q)


def sample_patch(image: np.ndarray, label: np.ndarray, index: AnnotatedIndex, size, rng: np.random.Generator,
                 *, foreground_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """One (image, label) patch of ``size`` containing at least one annotated voxel."""
    start = patch_start(index, size, rng, foreground_fraction=foreground_fraction)
    return (crop_patch(image, start, size, fill=0.0),
            crop_patch(label, start, size, fill=UNLABELED))
