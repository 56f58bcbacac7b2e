"""Segmentation metrics on label maps (pure numpy; 255 = not annotated is ignored)."""

from __future__ import annotations

import numpy as np

from medal.data.labels import UNLABELED

__all__ = ["dice_per_class", "mean_foreground_dice"]


def dice_per_class(pred: np.ndarray, target: np.ndarray, n_classes: int, *, ignore: int = UNLABELED) -> np.ndarray:
    """Dice of classes ``1..n_classes-1`` over the voxels where ``target != ignore``.

    A class absent from both prediction and target scores 1.0 (nothing to find, nothing found).
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} does not match target shape {target.shape}")
    valid = target != ignore
    p, t = pred[valid].astype(np.int64), target[valid].astype(np.int64)
    inter = np.bincount(t[p == t], minlength=n_classes)[:n_classes]
    size_p = np.bincount(p, minlength=n_classes)[:n_classes]
    size_t = np.bincount(t, minlength=n_classes)[:n_classes]
    denom = size_p + size_t
    dice = np.where(denom > 0, 2 * inter / np.maximum(denom, 1), 1.0)
    return dice[1:].astype(np.float64)


def mean_foreground_dice(pred, target, n_classes: int) -> float:
    return float(dice_per_class(pred, target, n_classes).mean())
