"""Annotation cost in seconds: a linear model of effort features, calibrated from real annotation times.

    seconds = intercept + per_slice * n_slices
              + sum over classes c of ( boundary * boundary_mm_c + component * components_c + area * area_mm2_c )

The form follows the literature that estimated manual segmentation time from the traced outline and
the number of separate pieces: Kuo et al., "Cost-sensitive active learning for intracranial
haemorrhage detection", MICCAI 2018 (time from boundary length and connected components), and Atzeni
et al., 2022 (traced boundary length as the cost of a slice). Per-class coefficients are allowed
(some structures are slower to trace than others).

Default coefficients (``DEFAULT_COEFFICIENTS``) are **rough, hand-set values, not fitted to any
data**: 4 s per task (navigate, look), 1.5 s per slice visited, 0.2 s per mm of outline (about
5 mm/s with a brush or polygon tool), 2 s per separate piece, 0.002 s per mm² filled. They give the
right orders of magnitude for a first round; calibrate with ``fit_cost_model`` from the annotation
log the napari plugin writes as soon as a few dozen tasks are timed.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medal.data.atomic import atomic_write_json

from .features import feature_names

__all__ = ["CostModel", "DEFAULT_COEFFICIENTS", "fit_cost_model", "read_annotation_log", "append_annotation_log"]

DEFAULT_COEFFICIENTS = {"intercept": 4.0, "n_slices": 1.5, "boundary_mm": 0.2, "components": 2.0, "area_mm2": 0.002}
_KINDS = ("boundary_mm", "components", "area_mm2")


@dataclass(frozen=True)
class CostModel:
    """Coefficients by feature name (``intercept``, ``n_slices``, ``boundary_mm_1``, ...)."""

    coefficients: dict[str, float]
    n_classes: int = 2
    source: str = "default (hand-set, uncalibrated)"
    fit: dict = field(default_factory=dict)

    @classmethod
    def default(cls, n_classes: int) -> "CostModel":
        coef = {"intercept": DEFAULT_COEFFICIENTS["intercept"], "n_slices": DEFAULT_COEFFICIENTS["n_slices"]}
        for c in range(1, n_classes):
            for k in _KINDS:
                coef[f"{k}_{c}"] = DEFAULT_COEFFICIENTS[k]
        return cls(coef, n_classes)

    def __post_init__(self):
        expected = {"intercept", *feature_names(self.n_classes)}
        if set(self.coefficients) != expected:
            raise ValueError(f"cost model coefficients {sorted(self.coefficients)} do not match the features of "
                             f"{self.n_classes} classes {sorted(expected)}")
        bad = {k: v for k, v in self.coefficients.items() if not np.isfinite(v) or v < 0}
        if bad:
            raise ValueError(f"cost model coefficients must be finite and >= 0, got {bad}")

    def predict(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """Seconds for each unit."""
        out = np.full(len(features["n_slices"]), self.coefficients["intercept"], dtype=float)
        for name in feature_names(self.n_classes):
            out += self.coefficients[name] * np.asarray(features[name], dtype=float)
        return out

    def to_json(self) -> dict:
        return {"format": "medal-cost-model/1", "n_classes": self.n_classes, "coefficients": self.coefficients,
                "source": self.source, "fit": self.fit}

    def save(self, path) -> Path:
        return atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path) -> "CostModel":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read cost model ({exc})") from exc
        if not isinstance(d, dict) or d.get("format") != "medal-cost-model/1":
            raise ValueError(f"{path}: not a medal cost model (format {d.get('format') if isinstance(d, dict) else d!r})")
        try:
            return cls({k: float(v) for k, v in d["coefficients"].items()}, int(d["n_classes"]),
                       str(d.get("source", path.name)), dict(d.get("fit", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: invalid cost model ({exc})") from exc


def append_annotation_log(path, record: dict) -> None:
    """Append one timed task (``seconds`` plus the feature names) to a JSON-lines log, flushed to disk."""
    import os

    line = json.dumps(record, sort_keys=True)
    with open(path, "a+b") as fh:
        torn = False
        if fh.seek(0, os.SEEK_END) > 0:
            fh.seek(-1, os.SEEK_END)
            # a write cut short (a crash mid-line) left no newline: start on a line of our own, or this
            # record would be glued to the fragment and lost with it
            torn = fh.read(1) != b"\n"
        fh.write((("\n" if torn else "") + line + "\n").encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def read_annotation_log(path, *, strict: bool = True, bad: list | None = None) -> list[dict]:
    """Records of a JSON-lines annotation log.

    ``strict`` (a log a person names, e.g. ``medal costs fit``): a malformed line is an error naming its
    number. Otherwise (a round's own log, read by calibration, spending, the report and the annotation
    plugin) a malformed line, such as the fragment a crash mid-write leaves, is skipped and its number
    appended to ``bad``: one cut line must not hide the round's other timed tasks.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: annotation log not found (a round's annotation_log.jsonl)")
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace" if not strict else "strict")
                             .splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            if strict:
                raise ValueError(f"{path}:{n}: not valid JSON ({exc.msg})") from exc
            rec = None
        if not isinstance(rec, dict) or "seconds" not in rec:
            if strict:
                raise ValueError(f"{path}:{n}: a record needs 'seconds' and the effort features")
            if bad is not None:
                bad.append(n)
            continue
        out.append(rec)
    return out


def fit_cost_model(records, *, n_classes: int, min_seconds: float = 0.0) -> CostModel:
    """Non-negative least squares fit of the coefficients to timed tasks.

    ``records``: dicts (or a log path) with ``seconds`` and every feature of ``feature_names(n_classes)``.
    The result reports R² and the mean absolute error in seconds in ``fit``.
    """
    from scipy.optimize import nnls

    if isinstance(records, (str, Path)):
        records = read_annotation_log(records)
    names = feature_names(n_classes)
    rows, y = [], []
    for i, rec in enumerate(records):
        missing = [k for k in names if k not in rec]
        if missing:
            raise ValueError(f"annotation record {i} lacks features {missing}")
        if float(rec["seconds"]) <= min_seconds:
            continue
        rows.append([1.0] + [float(rec[k]) for k in names])
        y.append(float(rec["seconds"]))
    if len(rows) < len(names) + 1:
        raise ValueError(f"need at least {len(names) + 1} timed tasks to fit {len(names) + 1} coefficients, got {len(rows)}")
    a, y = np.asarray(rows), np.asarray(y)
    scale = np.maximum(a.max(axis=0), 1e-12)  # column scaling for a well-conditioned NNLS
    coef_scaled, _ = nnls(a / scale, y)
    coef = coef_scaled / scale
    pred = a @ coef
    ss_res, ss_tot = float(((y - pred) ** 2).sum()), float(((y - y.mean()) ** 2).sum())
    fit = {"n_tasks": len(y), "r2": 1 - ss_res / ss_tot if ss_tot > 0 else 1.0,
           "mae_s": float(np.abs(y - pred).mean()), "fitted": _dt.date.today().isoformat()}
    return CostModel(dict(zip(["intercept"] + names, map(float, coef))), n_classes,
                     f"fitted by NNLS on {len(y)} timed tasks", fit)
