"""Region tables: one row per candidate unit, columns as numpy arrays (like ``regionprops_table``).

Every aggregation is vectorised over all units at once (``np.bincount``, cumulative sums over sorted
voxels, ``scipy.ndimage.find_objects``): there is no Python loop over regions.
"""

from __future__ import annotations

import numpy as np

from medal.data.labels import UNLABELED

__all__ = ["RegionTable", "aggregate", "region_table", "AGGREGATIONS"]

AGGREGATIONS = ("mean", "sum", "max", "topq")


class RegionTable:
    """Columns of equal length; ``table["score"]``, ``table.take(idx)``, ``RegionTable.concat``."""

    def __init__(self, columns: dict[str, np.ndarray]):
        lengths = {k: len(v) for k, v in columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"columns differ in length: {lengths}")
        self.columns = {k: np.asarray(v) for k, v in columns.items()}

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def __setitem__(self, name: str, values) -> None:
        values = np.asarray(values)
        if self.columns and len(values) != len(self):
            raise ValueError(f"column {name!r} has {len(values)} values for {len(self)} rows")
        self.columns[name] = values

    def __contains__(self, name: str) -> bool:
        return name in self.columns

    def take(self, idx) -> "RegionTable":
        idx = np.asarray(idx, dtype=np.int64)
        return RegionTable({k: v[idx] for k, v in self.columns.items()})

    def records(self) -> list[dict]:
        return [{k: v[i].item() if hasattr(v[i], "item") else v[i] for k, v in self.columns.items()}
                for i in range(len(self))]

    @staticmethod
    def concat(tables) -> "RegionTable":
        tables = [t for t in tables if len(t)]
        if not tables:
            return RegionTable({})
        keys = list(tables[0].columns)
        for t in tables[1:]:
            if list(t.columns) != keys:
                raise ValueError(f"tables have different columns: {keys} vs {list(t.columns)}")
        return RegionTable({k: np.concatenate([t[k] for t in tables]) for k in keys})


def aggregate(units: np.ndarray, values: np.ndarray, n_units: int, *, how: str = "mean", q: float = 0.1) -> np.ndarray:
    """Per-unit statistic of ``values`` over each unit's voxels (ids 1..n_units; 0 ignored).

    ``topq``: mean of the highest ``ceil(q * n)`` values of each unit (uncertainty concentrated in a
    small part of a large unit still counts).
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {how!r}; valid: {list(AGGREGATIONS)}")
    lab = np.asarray(units).ravel()
    val = np.asarray(values, dtype=np.float64).ravel()
    if lab.shape != val.shape:
        raise ValueError(f"units shape {np.shape(units)} does not match values shape {np.shape(values)}")
    counts = np.bincount(lab, minlength=n_units + 1)[1:n_units + 1]
    if how in ("sum", "mean"):
        sums = np.bincount(lab, weights=val, minlength=n_units + 1)[1:n_units + 1]
        return sums if how == "sum" else sums / np.maximum(counts, 1)
    order = np.lexsort((val, lab))  # by unit, then ascending value
    lab_s, val_s = lab[order], val[order]
    keep = lab_s > 0
    lab_s, val_s = lab_s[keep], val_s[keep]
    ends = np.cumsum(counts)  # end offset of each unit's run in the sorted arrays
    if how == "max":
        out = np.zeros(n_units)
        nz = counts > 0
        out[nz] = val_s[ends[nz] - 1]
        return out
    if not 0 < q <= 1:
        raise ValueError(f"q must lie in (0, 1], got {q}")
    k = np.maximum(1, np.ceil(q * counts)).astype(np.int64)
    csum = np.concatenate([[0.0], np.cumsum(val_s)])
    tops = csum[ends] - csum[np.maximum(ends - k, 0)]
    return np.where(counts > 0, tops / np.minimum(k, np.maximum(counts, 1)), 0.0)


def _bboxes(units: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounding boxes (lo inclusive, hi exclusive) of the units ``present``, vectorised."""
    flat = units.ravel()
    order = np.argsort(flat, kind="stable")
    starts = np.searchsorted(flat[order], present)
    coords = np.unravel_index(order, units.shape)
    if len(present) == 0:
        return np.zeros((0, 3), np.int64), np.zeros((0, 3), np.int64)
    lo = np.stack([np.minimum.reduceat(c, starts) for c in coords], axis=1)
    hi = np.stack([np.maximum.reduceat(c, starts) for c in coords], axis=1) + 1
    return lo.astype(np.int64), hi.astype(np.int64)


def region_table(units: np.ndarray, *, case_id: str, kind: str, axis: int, score: np.ndarray | None = None,
                 prediction: np.ndarray | None = None, labels: np.ndarray | None = None, n_classes: int = 2,
                 how: str = "sum", q: float = 0.1, values=None) -> RegionTable:
    """The region table of one case.

    Columns: region_id, case_id, kind, axis, index (slice index; -1 for supervoxels), supervoxel
    (unit id; -1 for slices), n_voxels, bbox_lo_{0,1,2}, bbox_hi_{0,1,2} (exclusive), score (the
    unit's value), score_mean, value_{c} (its value for foreground class c), fg_fraction (predicted
    foreground), annotated_fraction (voxels already labelled in ``labels``, 255 = not annotated), and
    n_pred_{c} (predicted voxels of class c).

    The value comes either from ``values`` (a :class:`medal.regions.values.UnitValues` over unit ids
    ``1..units.max()``) or from the voxel map ``score`` aggregated with ``how``.
    """
    if (score is None) == (values is None):
        raise ValueError("region_table needs exactly one of score (a voxel map) or values (per unit)")
    units = np.asarray(units)
    n = int(units.max()) if units.size else 0
    counts = np.bincount(units.ravel(), minlength=n + 1)[1:]
    present = np.flatnonzero(counts) + 1  # unit ids that own voxels
    cols: dict[str, np.ndarray] = {}
    lo, hi = _bboxes(units, present)
    sel = present - 1
    if kind == "slice":
        index, sv = present - 1, np.full(len(present), -1)
        ids = [f"{case_id}:slice:{axis}:{i}" for i in index]
    elif kind == "supervoxel":
        index, sv = np.full(len(present), -1), present
        ids = [f"{case_id}:sv:{i}" for i in present]
    else:
        raise ValueError(f"kind must be 'slice' or 'supervoxel', got {kind!r}")
    cols["region_id"] = np.array(ids, dtype=object)
    cols["case_id"] = np.array([case_id] * len(present), dtype=object)
    cols["kind"] = np.array([kind] * len(present), dtype=object)
    cols["axis"] = np.full(len(present), axis, dtype=np.int64)
    cols["index"] = index.astype(np.int64)
    cols["supervoxel"] = sv.astype(np.int64)
    cols["n_voxels"] = counts[sel].astype(np.int64)
    for d in range(3):
        cols[f"bbox_lo_{d}"] = lo[:, d]
        cols[f"bbox_hi_{d}"] = hi[:, d]
    if values is not None:
        cols["score"] = np.asarray(values.value, dtype=np.float64)[sel]
        cols["score_mean"] = cols["score"] / counts[sel]
        for c in range(1, n_classes):
            cols[f"value_{c}"] = np.asarray(values.per_class[c - 1], dtype=np.float64)[sel]
    else:
        cols["score"] = aggregate(units, score, n, how=how, q=q)[sel]
        cols["score_mean"] = aggregate(units, score, n, how="mean")[sel]
        pred = np.asarray(prediction).ravel() if prediction is not None else None
        for c in range(1, n_classes):  # the score where class c is predicted
            w = np.asarray(score, dtype=np.float64).ravel() * (pred == c) if pred is not None else np.zeros(units.size)
            cols[f"value_{c}"] = np.bincount(units.ravel(), weights=w, minlength=n + 1)[1:][sel]
    if prediction is not None:
        pred = np.asarray(prediction).ravel()
        lab = units.ravel()
        cols["fg_fraction"] = (np.bincount(lab, weights=(pred > 0).astype(float), minlength=n + 1)[1:][sel]
                               / counts[sel])
        for c in range(1, n_classes):
            cols[f"n_pred_{c}"] = np.bincount(lab, weights=(pred == c).astype(float), minlength=n + 1)[1:][sel]
    else:
        cols["fg_fraction"] = np.zeros(len(present))
    if labels is not None:
        ann = (np.asarray(labels) != UNLABELED).astype(float).ravel()
        cols["annotated_fraction"] = np.bincount(units.ravel(), weights=ann, minlength=n + 1)[1:][sel] / counts[sel]
    else:
        cols["annotated_fraction"] = np.zeros(len(present))
    return RegionTable(cols)
