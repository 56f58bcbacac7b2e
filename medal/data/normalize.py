"""Per-volume intensity normalisation (pure functions; inputs are never modified).

The hippocampus sample mixes uint8 scans (0..255) and float32 scans with ranges in the thousands,
so every volume is normalised on its own statistics before it reaches a network.
"""

from __future__ import annotations

import numpy as np

__all__ = ["NORMALIZERS", "normalize_intensity"]


def _clip(x: np.ndarray, mask: np.ndarray | None, percentiles: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    values = x[mask] if mask is not None else x.ravel()
    if values.size == 0:
        values = x.ravel()
    lo, hi = np.percentile(values, percentiles)
    return np.clip(x, lo, hi), values.clip(lo, hi)


def _zscore(x, mask, percentiles):
    clipped, values = _clip(x, mask, percentiles)
    std = float(values.std())
    return (clipped - float(values.mean())) / (std if std > 0 else 1.0)


def _minmax(x, mask, percentiles):
    clipped, values = _clip(x, mask, percentiles)
    lo, hi = float(values.min()), float(values.max())
    return (clipped - lo) / (hi - lo if hi > lo else 1.0)


def _none(x, mask, percentiles):
    return x.copy()


#: name -> function(x, mask, percentiles); see :func:`normalize_intensity`.
NORMALIZERS = {"zscore": _zscore, "minmax": _minmax, "none": _none}


def normalize_intensity(
    image: np.ndarray,
    *,
    method: str = "zscore",
    clip_percentiles: tuple[float, float] = (0.5, 99.5),
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Normalise one volume's intensities; returns a new float32 array.

    Parameters
    ----------
    image : ndarray
        Any real dtype.
    method : {"zscore", "minmax", "none"}
        ``zscore``: clip to the percentiles, subtract the mean, divide by the std.
        ``minmax``: clip to the percentiles, rescale to [0, 1]. ``none``: cast only.
    clip_percentiles : (low, high)
        Percentiles of the (masked) intensities used to clip outliers first.
    mask : bool ndarray, optional
        Statistics are taken inside the mask only (e.g. a body mask); all voxels are transformed.
    """
    if method not in NORMALIZERS:
        raise ValueError(f"unknown normalisation {method!r}; valid: {sorted(NORMALIZERS)}")
    lo, hi = clip_percentiles
    if not 0 <= lo < hi <= 100:
        raise ValueError(f"clip_percentiles must satisfy 0 <= low < high <= 100, got {clip_percentiles}")
    x = np.asarray(image, dtype=np.float32)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != x.shape:
            raise ValueError(f"mask shape {mask.shape} does not match image shape {x.shape}")
    return NORMALIZERS[method](x, mask, (lo, hi)).astype(np.float32, copy=False)
