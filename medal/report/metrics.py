"""What a round's files say about the model, without any ground truth beyond the expert's labels.

* Dice on the held-out annotated slices (``training.holdout``): the pool predictions ``medal score``
  wrote, compared with the expert's labels on voxels the model was never trained on.
* The mean uncertainty of the pool's still-unannotated voxels.
* How much the pool's predicted segmentation changed since the previous round (stabilizing predictions).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["holdout_dice", "pool_uncertainty", "bootstrap_mean", "prediction_agreement", "agreement_reference"]


def holdout_dice(scores_dir, labels_dir, dataset, case_ids, fraction: float) -> dict:
    """Per-case foreground Dice of the predictions on held-out annotated voxels.

    Returns ``{"cases": n, "voxels": n, "dice": mean, "per_case": {case: dice}}`` (``dice`` None when
    no held-out slice is annotated yet). Classes absent from both prediction and labels on a case's
    held-out voxels are left out of that case's mean.
    """
    from medal.data import UNLABELED, load_volume
    from medal.training import holdout_mask

    per_case, voxels = {}, 0
    if fraction <= 0:
        return {"cases": 0, "voxels": 0, "dice": None, "per_case": {}}
    lmap = dataset.label_map
    for cid in case_ids:
        lab_path = Path(labels_dir) / f"{cid}.nii.gz"
        pred_path = Path(scores_dir) / cid / "prediction.nii.gz"
        if not lab_path.is_file() or not pred_path.is_file():
            continue
        lab = load_volume(lab_path)
        mask = holdout_mask(cid, lab.shape, lab.orientation, fraction) & (lab.array != UNLABELED)
        if not mask.any():
            continue
        truth = lmap.to_index(lab.array[mask])
        pred = lmap.to_index(load_volume(pred_path).array[mask])
        scores = []
        for c in range(1, lmap.n_classes):
            t, p = truth == c, pred == c
            if t.any() or p.any():
                scores.append(2 * (t & p).sum() / (t.sum() + p.sum()))
        if scores:
            per_case[cid] = float(np.mean(scores))
            voxels += int(mask.sum())
    vals = list(per_case.values())
    return {"cases": len(vals), "voxels": voxels, "dice": float(np.mean(vals)) if vals else None, "per_case": per_case}


def pool_uncertainty(scores_dir, labels_dir, case_ids, measure: str = "entropy") -> float | None:
    """Mean ``measure`` over the pool's voxels nobody has annotated yet."""
    from medal.data import UNLABELED, load_volume

    total, n = 0.0, 0
    for cid in case_ids:
        path = Path(scores_dir) / cid / f"{measure}.nii.gz"
        if not path.is_file():
            continue
        m = load_volume(path).array
        lab_path = Path(labels_dir) / f"{cid}.nii.gz"
        free = load_volume(lab_path).array == UNLABELED if lab_path.is_file() else np.ones(m.shape, bool)
        total += float(m[free].sum())
        n += int(free.sum())
    return total / n if n else None


def prediction_agreement(previous_scores, scores, case_ids, *, label_map=None) -> dict:
    """How much the pool's predicted segmentation changed since the previous round.

    Per case scored in both rounds, the mean over foreground classes of the Dice between the two rounds'
    ``prediction.nii.gz`` (:func:`medal.report.quality.agreement`; a class neither holds is left out, a
    case with none counts 1; ``label_map`` maps the files' label values to classes, else values are
    classes); returns ``{"agreement": mean over those cases (None when none), "cases": n}``. A label-free
    signal over the whole pool, where the held-out slices are few: predictions that stop changing from
    one round to the next mean the model has stopped learning from the new labels ("stabilizing
    predictions", Bloodgood & Vijay-Shanker, CoNLL 2009).
    """
    from medal.data import load_volume
    from medal.report.quality import agreement

    per = []
    for cid in case_ids:
        a, b = Path(previous_scores) / cid / "prediction.nii.gz", Path(scores) / cid / "prediction.nii.gz"
        if not (a.is_file() and b.is_file()):
            continue
        x, y = load_volume(a).array, load_volume(b).array
        if label_map is not None:
            x, y = label_map.to_index(x), label_map.to_index(y)
        n = label_map.n_classes if label_map is not None else int(max(x.max(initial=0), y.max(initial=0))) + 1
        dice = [d for d in agreement(x, y, n).values() if d is not None]
        per.append(float(np.mean(dice)) if dice else 1.0)
    return {"agreement": float(np.mean(per)) if per else None, "cases": len(per)}


def agreement_reference(seconds, window_s: float = 0.0) -> int:
    """Which earlier round's predictions the next round's are compared with (:func:`prediction_agreement`).

    ``seconds[j]``: the seconds of labels added after round ``j``'s predictions (round ``j``'s logged
    annotation time), for every round before the current one (index ``len(seconds)``). With ``window_s``
    0: the round before. Otherwise the round whose span of seconds up to the current round lies closest
    to ``window_s`` (ties to the longer span; at least one round back), so that "stable" means the same
    amount of new labels whatever the round size: with 300 s rounds and a 600 s window the round two
    back, with 600 s or larger rounds the round before (``benchmarks/stopping.py``, RESULTS.md 2026-12-05).
    """
    seconds = [max(0.0, float(s)) for s in seconds]
    if not seconds:
        raise ValueError("agreement_reference: no earlier round to compare with")
    current = len(seconds)
    if not window_s or window_s <= 0:
        return current - 1
    best, best_err, span = current - 1, None, 0.0
    for j in range(current - 1, -1, -1):
        span += seconds[j]
        err = abs(span - window_s)
        if best_err is None or err <= best_err:
            best, best_err = j, err
    return best


def bootstrap_mean(values, *, n: int = 2000, seed: int = 0, level: float = 0.9) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (over cases)."""
    v = np.asarray(list(values), dtype=float)
    if len(v) == 0:
        return (float("nan"), float("nan"))
    if len(v) == 1:
        return (float(v[0]), float(v[0]))
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n, len(v)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return (float(lo), float(hi))
