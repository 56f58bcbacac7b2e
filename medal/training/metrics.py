"""Segmentation metrics on label maps (pure numpy; 255 = not annotated is ignored)."""

from __future__ import annotations

import numpy as np

from medal.data.labels import UNLABELED

__all__ = ["dice_counts", "dice_from_counts", "dice_per_class", "mean_foreground_dice"]


def dice_per_class(pred: np.ndarray, target: np.ndarray, n_classes: int, *, ignore: int = UNLABELED) -> np.ndarray:
    """Dice of classes ``1..n_classes-1`` over the voxels where ``target != ignore``.

    A class absent from both prediction and target scores 1.0 (nothing to find, nothing found).
    """
    return dice_from_counts(dice_counts(pred, target, n_classes, ignore=ignore))


def dice_counts(pred: np.ndarray, target: np.ndarray, n_classes: int, *, ignore: int = UNLABELED,
                weights: np.ndarray | None = None) -> np.ndarray:
    """Per class ``0..n_classes-1``, over the voxels where ``target != ignore``: the voxels both call that class,
    the prediction's and the target's, as an int64 array ``(3, n_classes)``; counts of several arrays add up to
    those of their union (windows of one case, say). With ``weights`` (one per voxel): the sums of the voxels'
    weights instead, float64."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} does not match target shape {target.shape}")
    valid = target != ignore
    p, t = pred[valid].astype(np.int64), target[valid].astype(np.int64)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)[valid]
    hit = p == t
    return np.stack([np.bincount(t[hit], weights=None if w is None else w[hit], minlength=n_classes)[:n_classes],
                     np.bincount(p, weights=w, minlength=n_classes)[:n_classes],
                     np.bincount(t, weights=w, minlength=n_classes)[:n_classes]])


def dice_from_counts(counts: np.ndarray) -> np.ndarray:
    """Dice of classes ``1..`` from :func:`dice_counts`' array (1.0 where a class is in neither)."""
    inter, size_p, size_t = counts
    denom = size_p + size_t
    dice = np.where(denom > 0, 2 * inter / np.where(denom > 0, denom, 1), 1.0)  # counts or weighted counts
    return dice[1:].astype(np.float64)


def mean_foreground_dice(pred, target, n_classes: int) -> float:
    return float(dice_per_class(pred, target, n_classes).mean())
