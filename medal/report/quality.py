"""Label quality control: agreement between two annotations of the same unit, and labels that the
current model confidently contradicts (pure functions on arrays)."""

from __future__ import annotations

import numpy as np

__all__ = ["agreement", "confident_disagreement"]


def agreement(a: np.ndarray, b: np.ndarray, n_classes: int, *, ignore: int = 255) -> dict[int, float | None]:
    """Dice per foreground class (indices ``1..n_classes-1``) between two annotations of the same
    voxels; voxels either left unannotated are ignored. A class neither annotation holds is None
    (nothing to agree on)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"annotations differ in shape: {a.shape} vs {b.shape}")
    both = (a != ignore) & (b != ignore)
    out: dict[int, float | None] = {}
    for c in range(1, n_classes):
        x, y = (a == c) & both, (b == c) & both
        denom = int(x.sum() + y.sum())
        out[c] = None if denom == 0 else float(2 * (x & y).sum() / denom)
    return out


def confident_disagreement(labels: np.ndarray, probs: np.ndarray, *, confidence: float = 0.95,
                           ignore: int = 255) -> tuple[float, int]:
    """Share of annotated voxels where the model predicts another class with probability >= ``confidence``,
    and how many annotated voxels it is confident on. ``labels`` are class indices; ``probs`` ``(C, ...)``."""
    labels = np.asarray(labels)
    p = np.asarray(probs)
    sure = (p.max(axis=0) >= confidence) & (labels != ignore)
    n = int(sure.sum())
    if not n:
        return 0.0, 0
    return float((p.argmax(axis=0)[sure] != labels[sure]).mean()), n
