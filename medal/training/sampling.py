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


_CHUNK = 1 << 20


def window_coverage(index: AnnotatedIndex, size, *, foreground_fraction: float = 0.5, clip: bool = True,
                    starts=None):
    """Per voxel, the probability (float32) that one window drawn as :func:`patch_start` draws it
    (``foreground_fraction`` centred on annotated foreground, the rest on any annotated voxel; with ``clip`` the
    start then kept inside the volume, as validation windows are) covers that voxel: over the volume's shape, or,
    with ``starts``, one ``size`` array per window start (1.0 where it leaves the volume).

    The windows are independent draws, so a count over ``n`` of them with each voxel weighted ``1 / (n * q)``
    estimates the count over the whole volume without bias (Hansen & Hurwitz 1943, sampling with replacement and
    unequal probabilities): windows half on foreground see the anatomy often and the background rarely, and the
    weights give a false positive far from the anatomy the weight of all the background it stands for. Exact: the
    centre distribution is pushed through each axis's placement (:func:`_axis_coverage`, separable): for a
    fully annotated volume its uniform part is a product of three vectors, the foreground part three matrix products
    over the foreground's bounding box only, and with ``starts`` only the windows' rows are computed (a 512 x 512 x 200
    CT's windows never hold a float copy of the volume)."""
    shape = tuple(int(n) for n in index.shape)
    size = tuple(int(v) for v in size)
    t = [_axis_coverage(n, s, clip) for n, s in zip(shape, size)]
    if starts is None:
        boxes = [tuple(slice(0, n) for n in shape)]
    else:
        boxes = [tuple(slice(min(max(int(a), 0), n), min(max(int(a) + s, 0), n)) for a, s, n in zip(st, size, shape))
                 for st in starts]
    out = [np.zeros(tuple(b.stop - b.start for b in box), np.float64) for box in boxes]
    f = float(foreground_fraction) if index.foreground.size else 0.0
    terms = []  # (probability of each of the voxels, their flat indices; None: every voxel)
    if isinstance(index.annotated, AllIndices):
        terms.append(((1.0 - f) / index.annotated.size, None))
    else:
        terms.append(((1.0 - f) / index.annotated.size, index.annotated))
    if f:
        terms.append((f / index.foreground.size, index.foreground))
    for p, flat in terms:
        if p == 0:
            continue
        if flat is None:  # uniform: separable
            for box, q in zip(boxes, out):
                vecs = [td[b].sum(axis=1) for td, b in zip(t, box)]
                q += p * vecs[0][:, None, None] * vecs[1][None, :, None] * vecs[2][None, None, :]
            continue
        chunks = [flat[k:k + _CHUNK] for k in range(0, flat.size, _CHUNK)]  # int64 coordinates a chunk at a time
        lo, hi = list(shape), [0] * len(shape)
        for chunk in chunks:
            for axis, c in enumerate(np.unravel_index(chunk, shape)):
                lo[axis], hi[axis] = min(lo[axis], int(c.min())), max(hi[axis], int(c.max()) + 1)
        centre = np.zeros(tuple(h - l for l, h in zip(lo, hi)), np.float32)
        for chunk in chunks:
            centre[tuple(c - l for c, l in zip(np.unravel_index(chunk, shape), lo))] = p
        for box, q in zip(boxes, out):
            part = centre
            for axis, (td, b, l, h) in enumerate(zip(t, box, lo, hi)):
                part = np.moveaxis(np.tensordot(td[b, l:h].astype(np.float32), part, axes=([1], [axis])), 0, axis)
            q += part
    if starts is None:
        return out[0].astype(np.float32)
    windows = []
    for st, box, q in zip(starts, boxes, out):
        w = np.ones(size, np.float32)
        w[tuple(slice(b.start - int(a), b.stop - int(a)) for a, b in zip(st, box))] = q
        windows.append(w)
    return windows


def sample_patch(image: np.ndarray, label: np.ndarray, index: AnnotatedIndex, size, rng: np.random.Generator,
                 *, foreground_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """One (image, label) patch of ``size`` containing at least one annotated voxel."""
    start = patch_start(index, size, rng, foreground_fraction=foreground_fraction)
    return (crop_patch(image, start, size, fill=0.0),
            crop_patch(label, start, size, fill=UNLABELED))
