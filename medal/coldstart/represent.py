"""Label-free representation of slices (pure numpy/scipy).

Each slice of a per-volume normalised image becomes a small thumbnail (``t x t`` pixels, resampled
with linear interpolation, so slices of any size are comparable) plus a 16-bin histogram of its
intensities; the stacked vectors are projected onto their first principal components. This is the
cheapest representation that sees anatomy (shape and intensity layout) without any label or
trained model; it is deterministic and runs on a CPU in milliseconds per volume. A self-supervised
encoder would capture more, at the cost of a training run before the first selection.
"""

from __future__ import annotations

import numpy as np

__all__ = ["slice_descriptors", "pca"]


def slice_descriptors(image: np.ndarray, *, axis: int, thumbnail: int = 16, bins: int = 16) -> np.ndarray:
    """``(n_slices, thumbnail**2 + bins)`` descriptors of a normalised volume's slices along ``axis``."""
    from scipy import ndimage

    x = np.moveaxis(np.asarray(image, dtype=np.float32), axis, 0)
    n, h, w = x.shape
    thumbs = ndimage.zoom(x, (1, thumbnail / h, thumbnail / w), order=1)[:, :thumbnail, :thumbnail]
    thumbs = thumbs.reshape(n, -1)
    lo, hi = np.percentile(x, [1, 99])
    edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    flat = x.reshape(n, -1)
    idx = np.clip(np.searchsorted(edges, flat, side="right") - 1, 0, bins - 1)
    hist = np.stack([np.bincount(row, minlength=bins) for row in idx]).astype(np.float32) / flat.shape[1]
    return np.concatenate([thumbs, hist * np.sqrt(thumbs.shape[1] / bins)], axis=1)


def pca(features: np.ndarray, components: int) -> np.ndarray:
    """Project centred, standardised features onto their first principal components."""
    f = np.asarray(features, dtype=np.float64)
    f = (f - f.mean(0)) / np.maximum(f.std(0), 1e-8)
    _, _, vt = np.linalg.svd(f, full_matrices=False)
    return f @ vt[: min(components, vt.shape[0])].T
