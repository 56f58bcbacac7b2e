"""Online calibration of predicted seconds: what the expert actually spent on earlier rounds' tasks.

The cost model predicts a unit's seconds from a *predicted* segmentation. A weak model's errors bias
those predictions (an early model over-calls foreground, so its units look dearer than they are),
and a selection that maximises value per predicted second prefers the units whose cost is
*under*-predicted (the optimiser's curse). Refitting the cost model on the features of what was
finally painted cannot remove either bias, because the bias comes from predicting those features.
So medal fits the map it actually uses, **selection-time prediction -> seconds spent**, on the
finished tasks of earlier rounds (the napari plugin's ``annotation_log.jsonl``; the oracle's charge
in a simulation writes the same log), and applies it to the next round's predictions:

``scale`` (default)
    ``seconds = a * predicted + b`` with ``a, b >= 0`` (weighted non-negative least squares over the
    tasks, recent rounds weighing more: weight ``decay ** age``). Two parameters: stable on the few
    dozen tasks of one round. With fewer than ``min_tasks`` logged tasks (but at least one), the
    ratio of weighted totals, ``a = sum(spent) / sum(predicted)``, ``b = 0`` (method ``ratio``): a
    weak early model can predict ten times the real seconds, and one logged task already says so.
    The ratio is also used where the two-parameter fit is degenerate (``a < MIN_SCALE`` or ``b`` above
    the median task's seconds): then the per-task predictions barely rank the seconds, the offset
    carries the fit, and applying it would make every unit cost the same.
``features``
    The full cost model refitted (NNLS) on the selection-time effort features stored with each task
    -> seconds spent; falls back to ``scale`` while there are fewer than 3 tasks per coefficient.
``none``
    Predictions are used as they are.

The correction is used only where it carries over from round to round (see :func:`fit_calibration`):
an annotator's steady pace does, a weak early model's transient over-drawing does not.

A floor (``costs.min_seconds``) stands for navigating to a unit and checking it: no unit is ever
predicted cheaper than that.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

#: a two-parameter fit with a smaller scale is degenerate (the offset carries it): the ratio of totals is used
MIN_SCALE = 0.25
#: with a single round logged, the half-way correction changes predictions by at most this factor either way
MAX_ONE_ROUND_FACTOR = 1.5

__all__ = ["CALIBRATIONS", "CostCalibration", "calibration_pairs", "fit_calibration", "fit_scale",
           "load_calibration"]

CALIBRATIONS = ("scale", "features", "none")


@dataclass(frozen=True)
class CostCalibration:
    """``calibrated = max(floor, scale * predicted + offset)``, or a refitted model (``coefficients``)."""

    scale: float = 1.0
    offset: float = 0.0
    floor: float = 0.0
    method: str = "none"
    n_tasks: int = 0
    rounds: tuple[str, ...] = ()
    coefficients: dict = field(default_factory=dict)  # method "features": the refitted cost model

    def apply(self, predicted, features: dict | None = None) -> np.ndarray:
        """Calibrated seconds for raw model predictions (and, for ``features``, their effort features)."""
        raw = np.asarray(predicted, dtype=np.float64)
        if self.coefficients and features is not None:
            out = np.full(raw.shape, self.coefficients.get("intercept", 0.0))
            for k, v in self.coefficients.items():
                if k != "intercept":
                    out = out + v * np.asarray(features[k], dtype=np.float64)
        else:
            out = self.scale * raw + self.offset
        return np.maximum(out, self.floor)

    def to_json(self) -> dict:
        d = asdict(self)
        d["rounds"] = list(self.rounds)
        return d


def fit_scale(predicted, charged, weights=None) -> tuple[float, float]:
    """Weighted NNLS fit of ``charged ~ a * predicted + b`` with ``a, b >= 0``."""
    from scipy.optimize import nnls

    x = np.asarray(predicted, dtype=np.float64)
    y = np.asarray(charged, dtype=np.float64)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=np.float64)
    if x.shape != y.shape or x.shape != w.shape or x.ndim != 1 or not len(x):
        raise ValueError(f"predicted, charged and weights must be equal-length 1D arrays, got {x.shape}, {y.shape}, {w.shape}")
    sw = np.sqrt(w)
    a = np.stack([x, np.ones_like(x)], axis=1) * sw[:, None]
    scale = np.array([max(x.max(), 1e-9), 1.0])
    coef, _ = nnls(a / scale, y * sw)
    coef = coef / scale
    return float(coef[0]), float(coef[1])


def calibration_pairs(round_dirs) -> list[dict]:
    """Finished tasks of earlier rounds with both their selection-time prediction and the seconds
    logged for them: ``[{"round", "task_id", "predicted", "seconds", "features"}]``.

    Reads each round's ``tasks.json`` (``model_cost_s``: the uncalibrated prediction, ``features``)
    and ``annotation_log.jsonl`` (``task_id``, ``seconds``). Tasks without a log row, and logs without
    a matching task, are left out. Unreadable files are skipped: calibration is an improvement, never
    a reason to stop a round.
    """
    from medal.costs.model import read_annotation_log
    from medal.tasks import TaskError, read_tasks

    out = []
    for rd in round_dirs:
        rd = Path(rd)
        log = rd / "annotation_log.jsonl"
        if not (rd / "tasks.json").is_file() or not log.is_file():
            continue
        try:
            tasks = {t.task_id: t for t in read_tasks(rd / "tasks.json").tasks}
            records = read_annotation_log(log, strict=False)
        except (TaskError, ValueError, OSError):
            continue
        seen = set()
        for rec in records:
            t = tasks.get(str(rec.get("task_id")))
            if t is None or t.task_id in seen or t.model_cost_s is None:
                continue
            seen.add(t.task_id)
            out.append({"round": rd.name, "task_id": t.task_id, "predicted": float(t.model_cost_s),
                        "seconds": float(rec["seconds"]), "features": t.features or {}})
    return out


def _fit(pairs, w, *, method: str, floor: float, min_tasks: int, n_classes: int, rounds) -> CostCalibration:
    if method == "features":
        from medal.costs.features import feature_names
        from medal.costs.model import fit_cost_model

        names = feature_names(n_classes)
        usable = [p for p in pairs if all(k in p["features"] for k in names)]
        if len(usable) >= 3 * (len(names) + 1):
            model = fit_cost_model([{**p["features"], "seconds": p["seconds"]} for p in usable], n_classes=n_classes)
            return CostCalibration(floor=floor, method="features", n_tasks=len(usable), rounds=rounds,
                                   coefficients=dict(model.coefficients))
    pred = np.array([p["predicted"] for p in pairs])
    spent = np.array([p["seconds"] for p in pairs])
    if len(pairs) < min_tasks:  # too few for two parameters: the ratio of (weighted) totals
        ratio = float((w * spent).sum() / max((w * pred).sum(), 1e-9))
        return CostCalibration(scale=ratio, offset=0.0, floor=floor, method="ratio", n_tasks=len(pairs), rounds=rounds)
    a, b = fit_scale(pred, spent, w)
    if a < MIN_SCALE or b > float(np.median(spent)):
        # Degenerate: the per-task predictions barely rank the seconds spent (a weak model's
        # over-drawn foreground), so the offset carries the fit. Applied to a new selection it makes
        # every unit cost about the same, and value per second then buys many units predicted dear:
        # in a tuning run a = 0, b = 7.4 s bought 81 slices for "600 s" that took 1,468 s. The ratio
        # of totals keeps the ranking and corrects only the total.
        ratio = float((w * spent).sum() / max((w * pred).sum(), 1e-9))
        return CostCalibration(scale=ratio, offset=0.0, floor=floor, method="ratio (two-parameter fit degenerate)",
                               n_tasks=len(pairs), rounds=rounds)
    return CostCalibration(scale=a, offset=b, floor=floor, method="scale", n_tasks=len(pairs), rounds=rounds)


def _total_error(cal: CostCalibration, pairs) -> float:
    pred = np.array([p["predicted"] for p in pairs])
    feats = {k: np.array([p["features"].get(k, 0.0) for p in pairs]) for k in (pairs[0]["features"] or {})}
    spent = sum(p["seconds"] for p in pairs)
    return abs(float(cal.apply(pred, feats if cal.coefficients else None).sum()) - spent) / max(spent, 1e-9)


def fit_calibration(pairs: list[dict], *, method: str = "scale", floor: float = 0.0, decay: float = 0.5,
                    min_tasks: int = 10, n_classes: int = 2) -> CostCalibration:
    """Calibration from :func:`calibration_pairs` (rounds in order, the last is the most recent).

    A correction is used only where it carries over from one round to the next. Two kinds of bias
    reach the logged seconds: the annotator's own pace against the cost model (steady: it carries
    over), and a weak model's mis-drawn structure (it shrinks as the model improves: last round's
    correction would overshoot this round). So with two or more rounds logged, the calibration fitted
    on all rounds but the latest is first tested on the latest: it is used (refitted on every round)
    only if it predicts the latest round's total seconds better than the uncorrected predictions do;
    otherwise none is applied (method ``none``, said in ``rounds``). With a single round logged, half
    of its correction is applied (the geometric mean of its scale and 1, within a factor
    ``MAX_ONE_ROUND_FACTOR``; half its offset).
    """
    if method not in CALIBRATIONS:
        raise ValueError(f"unknown cost calibration {method!r}; valid: {list(CALIBRATIONS)}")
    if method == "none" or not pairs:
        return CostCalibration(floor=floor, method="none", n_tasks=len(pairs))
    order = list(dict.fromkeys(p["round"] for p in pairs))

    def weights(ps):
        rs = list(dict.fromkeys(p["round"] for p in ps))
        age = {r: len(rs) - 1 - i for i, r in enumerate(rs)}
        return np.array([decay ** age[p["round"]] for p in ps])

    kw = dict(method=method, floor=floor, min_tasks=min_tasks, n_classes=n_classes)
    if len(order) == 1:
        cal = _fit(pairs, weights(pairs), rounds=tuple(order), **kw)
        if cal.coefficients:  # a refitted model cannot be halved: use it as it is
            return cal
        half = float(np.clip(np.sqrt(cal.scale), 1 / MAX_ONE_ROUND_FACTOR, MAX_ONE_ROUND_FACTOR))
        return dataclasses.replace(cal, scale=half, offset=cal.offset / 2,
                                   method=f"{cal.method} (half-way: one round logged)")
    earlier = [p for p in pairs if p["round"] != order[-1]]
    latest = [p for p in pairs if p["round"] == order[-1]]
    trial = _fit(earlier, weights(earlier), rounds=tuple(order[:-1]), **kw)
    if _total_error(trial, latest) >= _total_error(CostCalibration(floor=floor), latest):
        return CostCalibration(floor=floor, method="none", n_tasks=len(pairs),
                               rounds=(f"declined: the correction of {', '.join(order[:-1])} did not carry over to "
                                       f"{order[-1]}",))
    return _fit(pairs, weights(pairs), rounds=tuple(order), **kw)


def load_calibration(meta: dict | None) -> CostCalibration:
    """The calibration recorded in a ``tasks.json``'s ``cost_calibration`` (identity when absent)."""
    if not meta:
        return CostCalibration()
    d = dict(meta)
    d["rounds"] = tuple(d.get("rounds", ()))
    return CostCalibration(**{k: v for k, v in d.items() if k in CostCalibration.__dataclass_fields__})
