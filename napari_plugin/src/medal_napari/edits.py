"""The plugin's decisions as pure functions (no viewer, no Qt): which edits belong to the task,
which plane shows it, which task comes next, what a finished task logs."""

from __future__ import annotations

import datetime as _dt

import numpy as np

from medal.costs import correction_features, effort_features
from medal.tasks import Task

__all__ = ["atom_changes", "inside_region", "split_edits", "task_plane", "neighbour", "bad_values", "log_record",
           "value_per_second_order"]


def atom_changes(atom) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """Voxel coordinates an undo-history atom of a napari Labels layer changed, and their old values.

    napari >= 0.6 records a masked edit of a bounding box (``slice_key``, ``mask`` or None for the
    whole box, ``old_values``); older versions a tuple ``(indices, old values, new values)``.
    """
    if hasattr(atom, "slice_key"):
        starts = [s.start or 0 for s in atom.slice_key]
        old = np.asarray(atom.old_values)
        if atom.mask is None:
            coords = tuple(g.ravel() + s for g, s in zip(np.indices(old.shape), starts))
        else:
            coords = tuple(n + s for n, s in zip(np.nonzero(atom.mask), starts))
        return coords, old.ravel()
    coords = tuple(np.asarray(i).ravel() for i in atom[0])
    return coords, np.broadcast_to(np.asarray(atom[1]).ravel(), coords[0].shape)


def inside_region(coords: tuple[np.ndarray, ...], sl: tuple[slice, ...], region: np.ndarray) -> np.ndarray:
    """Which of the voxels ``coords`` lie in the task region (``region`` is the mask inside box ``sl``)."""
    inside = np.ones(len(coords[0]), dtype=bool)
    for c, s in zip(coords, sl):
        inside &= (c >= s.start) & (c < s.stop)
    if inside.any():
        local = tuple(c[inside] - s.start for c, s in zip(coords, sl))
        inside[np.nonzero(inside)[0]] = region[local]
    return inside


def split_edits(atoms, sl, region) -> tuple[list[tuple[tuple[np.ndarray, ...], np.ndarray]], int, int]:
    """``(outside, n_outside, n_inside)``: for each atom, the coordinates outside the task and their old values."""
    outside, n_out, n_in = [], 0, 0
    for atom in atoms:
        coords, old = atom_changes(atom)
        inside = inside_region(coords, sl, region) if region is not None else np.zeros(len(coords[0]), bool)
        out = ~inside
        if out.any():
            outside.append((tuple(c[out] for c in coords), old[out]))
            n_out += int(out.sum())
        n_in += int(inside.sum())
    return outside, n_out, n_in


def task_plane(task: Task, sl: tuple[slice, ...], region: np.ndarray) -> int:
    """The plane shown for a task: its slice, or the plane holding most of its supervoxel."""
    if task.kind == "slice":
        return task.index
    other = tuple(d for d in range(3) if d != task.axis)
    return int(sl[task.axis].start + np.argmax(region.sum(axis=other)))


def region_planes(task: Task, sl: tuple[slice, ...], region: np.ndarray) -> list[int]:
    """The planes along the task axis that hold part of the task's region (a slice: just its own)."""
    if task.kind == "slice":
        return [task.index]
    other = tuple(d for d in range(3) if d != task.axis)
    return [int(sl[task.axis].start + k) for k in np.flatnonzero(region.any(axis=other))]


def plane_ranges(planes) -> str:
    """``[7, 8, 9, 12]`` -> ``"7-9, 12"``."""
    planes = sorted(int(p) for p in planes)
    out, start = [], None
    for i, p in enumerate(planes):
        if start is None:
            start = p
        if i == len(planes) - 1 or planes[i + 1] != p + 1:
            out.append(f"{start}" if start == p else f"{start}-{p}")
            start = None
    return ", ".join(out)


def value_per_second_order(tasks: list[Task], reserve: int = 0) -> list[int]:
    """Task indices grouped by case, so an expert finishes one patient before opening the next: cases
    ordered by their best task's value (score) per predicted second, and within a case the best first;
    ties keep the file's order. Quality-control re-asks come last, each after its case's tasks.
    ``reserve``: the file's last this many tasks are the round's reserve queue (``selection.reserve``),
    ordered the same way after all the others."""
    def rate(i):
        return tasks[i].score / max(tasks[i].predicted_cost_s, 1e-9)

    start = len(tasks) - max(0, min(int(reserve), len(tasks)))
    best: dict[tuple, float] = {}
    first: dict[tuple, int] = {}
    for i, t in enumerate(tasks):
        key = (i >= start, t.case_id)
        best[key] = max(best.get(key, -np.inf), rate(i))
        first.setdefault(key, i)

    def order(i):
        key = (i >= start, tasks[i].case_id)
        return (key[0], -best[key], first[key], tasks[i].qc_of is not None, -rate(i), i)
    return sorted(range(len(tasks)), key=order)


def neighbour(order: list[int], current: int | None, statuses: list[str], step: int, *,
              only_todo: bool = False) -> int | None:
    """The task ``step`` places away from ``current`` in ``order`` (optionally the next one still to do)."""
    if not order:
        return None
    pos = order.index(current) if current in order else -1
    j = pos + step
    while 0 <= j < len(order):
        if not only_todo or statuses[order[j]] == "todo":
            return order[j]
        j += step
    return None


def bad_values(values: np.ndarray, label_map) -> str | None:
    """A message if painted ``values`` hold a value that is not a label of the dataset, else None."""
    bad = sorted(set(np.unique(values).tolist()) - set(label_map.values))
    if not bad:
        return None
    names = ", ".join(f"{k} {label_map.name(k)}" for k in label_map.values)
    return f"label value(s) {bad} are not labels of this dataset ({names}); repaint them first"


def log_record(task: Task, region: np.ndarray, values: np.ndarray, *, spacing, label_map, seconds: float,
               start: np.ndarray | None = None, **extra) -> dict:
    """One annotation-log line: active seconds and the effort features of what was painted in the region
    (features are per class index, as the cost model counts them).

    ``start``: the model's prediction the task was opened on (label values, same shape as ``values``),
    when the expert corrected it: the features are then those of the correction (what changed,
    :func:`medal.costs.correction_features`), so `medal costs fit` prices strokes, not what was already
    there; ``annotation`` says which (``draw`` / ``correct``)."""
    painted = label_map.to_index(np.where(region, values, 0), where=f"task {task.task_id}")
    n_classes = label_map.n_classes
    geom = dict(axis=task.axis, spacing=spacing, n_classes=n_classes, ids=np.array([1]))
    if start is None:
        feats = effort_features(region.astype(np.int32), painted, **geom)
    else:
        shown = label_map.to_index(np.where(region, start, 0), where=f"task {task.task_id}: prediction")
        feats = correction_features(region.astype(np.int32), painted, shown, **geom)
    record = {k: float(v[0]) for k, v in feats.items()}
    record.update({"seconds": round(float(seconds), 3), "task_id": task.task_id, "case_id": task.case_id,
                   "kind": task.kind, "axis": task.axis, "index": task.index, "supervoxel": task.supervoxel,
                   "predicted_cost_s": task.predicted_cost_s, "n_classes": n_classes,
                   "annotation": "draw" if start is None else "correct",
                   "finished": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), **extra})
    return record
