"""Per-volume intensity normalisation (pure functions; inputs are never modified).

The hippocampus sample mixes uint8 scans (0..255) and float32 scans with ranges in the thousands,
so every volume is normalised on its own statistics before it reaches a network.

CT is the exception, as in nnU-Net (Isensee et al., Nature Methods 2021; ``nnunetv2/preprocessing/normalization/
default_normalization_schemes.py``, ``CTNormalization``): Hounsfield units mean the same in every scan, so a CT
channel is clipped to the 0.5 / 99.5 percentiles of the *dataset's* foreground intensities and z-scored with
their mean and std (:func:`ct_properties`, :func:`ct_normalize`), one window for every case, instead of each
volume's own statistics, which shift with how much air and table a scan's field of view holds.
"""

from __future__ import annotations

import numpy as np

__all__ = ["NORMALIZERS", "SCHEMES", "ct_normalize", "ct_properties", "normalize_intensity", "scheme_for_channel",
           "volume_method"]


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


#: per-channel schemes ``data.normalize`` may name: the per-volume ones, and ``ct`` (one dataset-wide window)
SCHEMES = tuple(NORMALIZERS) + ("ct",)

#: nnU-Net v2's channel names (``dataset.json`` ``channel_names``, the Decathlon's ``modality``) -> medal's scheme
#: (``map_channel_name_to_normalization.py``: "CT" -> CT, "noNorm" -> none, "rescale_0_1" -> 0..1, anything else
#: z-score). "rescale_0_1" maps to ``minmax``, which clips at ``data.clip_percentiles`` first.
_CHANNEL_NAMES = {"ct": "ct", "nonorm": "none", "rescale_0_1": "minmax", "rgb_to_0_1": "minmax", "zscore": "zscore"}


def scheme_for_channel(name) -> str:
    """medal's scheme for a channel named ``name`` in ``dataset.json`` (case-insensitive; unknown -> ``zscore``)."""
    return _CHANNEL_NAMES.get(str(name or "").strip().lower(), "zscore")


def volume_method(scheme: str) -> str:
    """The per-volume method standing in for ``scheme`` where no dataset-wide window exists (supervoxels, the cold
    start, a model trained before CT windows): ``ct`` and ``auto`` -> ``zscore``."""
    return scheme if scheme in NORMALIZERS else "zscore"


def ct_properties(values: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5)) -> dict:
    """The CT window of a dataset from its foreground intensities (nnU-Net's ``intensityproperties``): the
    ``percentiles`` as ``lo`` / ``hi`` and the ``mean`` / ``std`` of the values."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise ValueError("no intensity values to take a CT window from")
    lo, hi = np.percentile(v, percentiles)
    return {"lo": float(lo), "hi": float(hi), "mean": float(v.mean()), "std": float(v.std())}


def ct_normalize(image: np.ndarray, props: dict) -> np.ndarray:
    """Clip to ``props``' ``[lo, hi]``, subtract its ``mean``, divide by its ``std`` (float32, a new array)."""
    x = np.clip(np.asarray(image, dtype=np.float32), props["lo"], props["hi"])
    return ((x - np.float32(props["mean"])) / np.float32(max(float(props["std"]), 1e-8))).astype(np.float32, copy=False)


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
