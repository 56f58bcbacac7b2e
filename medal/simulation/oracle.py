"""The ground truth as the annotator: fills selected units from the true labels and charges the true cost.

The true cost is the cost model evaluated on the *ground truth* inside the unit (what painting it
really takes), not on the prediction the selection saw. An expert who corrects the model's prediction
(``costs.annotation: correct``) is charged for the difference between that prediction and the truth
(:func:`medal.costs.correction_features`).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from medal.costs import CostModel, append_annotation_log, cheaper_features, correction_features, effort_features
from medal.data import UNLABELED, Dataset, empty_partial_labels, load_label, load_volume, save_volume
from medal.regions import slice_units
from medal.tasks import TaskList, write_tasks

__all__ = ["oracle_annotate", "unit_mask", "true_costs"]


def unit_mask(task, shape, tasks: TaskList) -> np.ndarray:
    """Boolean mask of a task's unit (:func:`medal.tasks.task_region`)."""
    from medal.tasks import task_region

    return task_region(task, shape, tasks)


def true_costs(units: np.ndarray, truth: np.ndarray, *, axis: int, spacing, cost_model: CostModel,
               ids=None) -> np.ndarray:
    feats = effort_features(units, truth, axis=axis, spacing=spacing, n_classes=cost_model.n_classes, ids=ids)
    return cost_model.predict(feats)


def oracle_annotate(tasks: TaskList, dataset: Dataset, out_dir, *, cost_model: CostModel, log=None,
                    budget_s: float | None = None, start_dir=None) -> dict:
    """Annotate ``todo`` tasks from the ground truth into ``out_dir/<case>.nii.gz`` (255 elsewhere),
    mark them done, and return the charge of every task ``done`` in the list afterwards: ``{"seconds":
    true total, "per_task": {task_id: s}, "foreground": {task_id: whether the unit holds any
    ground-truth foreground}}``.

    ``budget_s``: work like an expert with a clock: tasks in their order until the true seconds
    reach ``budget_s`` (the task in hand is finished), the rest left ``todo``. ``None``: every task.

    ``log``: a JSON-lines annotation log to append one row per task to (task id, true seconds, the
    ground truth's effort features), the same rows the napari plugin writes for an expert, so cost
    calibration reads a simulated round like a real one. A task already in the log is not logged twice.

    ``start_dir``: a round's ``scores`` folder. Given, the expert corrects the prediction shown in each
    unit (``<start_dir>/<case>/prediction.nii.gz``) instead of drawing from an empty one, and is charged
    the cost of that correction, or of drawing where a prediction worse than nothing is cheaper to clear
    (:func:`medal.costs.cheaper_features`); the painted labels are the ground truth either way.

    Resuming: tasks already ``done`` in the list (painted before an interruption) are not painted again
    but are charged at their true cost and counted in the returned totals and against ``budget_s``, so
    an interrupted round resumed here charges, paints and logs exactly what an uninterrupted one does.
    """
    from medal.tasks import validate_tasks

    out_dir = Path(out_dir)
    validate_tasks(tasks, dataset)
    truths: OrderedDict[str, tuple] = OrderedDict()  # the last few cases' ground truth (bounded memory)

    def truth_of(cid):
        if cid in truths:
            truths.move_to_end(cid)
        else:
            case = dataset.case(cid)
            if case.label is None:
                raise ValueError(f"{cid}: the oracle needs a ground-truth label")
            truth, _ = load_label(case.label, case.image, dataset.relative(case.label),  # on the image's grid
                                  label_names=dataset.label_names)
            truths[cid] = (truth, dataset.label_map.to_index(truth.array, where=dataset.relative(case.label)))
            while len(truths) > 4:
                truths.popitem(last=False)
        return truths[cid]

    per_task: dict[str, float] = {}
    fg: dict[str, bool] = {}
    rows: dict[str, dict] = {}
    spent = 0.0

    starts: OrderedDict[str, np.ndarray] = OrderedDict()

    def start_of(cid, shape):
        if cid not in starts:
            path = Path(start_dir) / cid / "prediction.nii.gz"
            try:
                pred = load_volume(path).array
            except (OSError, ValueError) as exc:
                raise ValueError(f"{path}: the prediction to correct cannot be read ({exc})") from None
            if pred.shape != shape:
                raise ValueError(f"{path}: prediction shape {pred.shape} does not match the label's {shape}")
            starts[cid] = dataset.label_map.to_index(pred, where=str(path))
            while len(starts) > 4:
                starts.popitem(last=False)
        return starts[cid]

    def charge(t):
        truth, truth_index = truth_of(t.case_id)
        m = unit_mask(t, truth.shape, tasks)
        geom = dict(axis=t.axis, spacing=truth.spacing, n_classes=cost_model.n_classes, ids=np.array([1]))
        feats = effort_features(m.astype(np.int32), truth_index, **geom)
        if start_dir is not None:  # correct the prediction, or clear it and draw where that is cheaper
            feats = cheaper_features(cost_model, correction_features(m.astype(np.int32), truth_index,
                                                                     start_of(t.case_id, truth.shape), **geom), feats)
        per_task[t.task_id] = float(cost_model.predict(feats)[0])
        fg[t.task_id] = bool((truth.array[m] > 0).any())
        rows[t.task_id] = {"task_id": t.task_id, "case_id": t.case_id, "kind": t.kind, "axis": t.axis,
                           "index": t.index, "supervoxel": t.supervoxel, "seconds": per_task[t.task_id],
                           "source": "oracle", "foreground": fg[t.task_id],
                           **{k: float(v[0]) for k, v in feats.items()}}
        return per_task[t.task_id]

    for t in tasks.tasks:  # painted before an interruption: on the clock already
        if t.status == "done":
            spent += charge(t)
    painted = set()
    for t in tasks.tasks:  # in the task file's order, as an expert works through them
        if t.status != "todo":
            continue
        if budget_s is not None and spent >= budget_s:
            break
        spent += charge(t)
        painted.add(t.task_id)
    logged = _logged_keys(log) if log is not None else set()
    by_case: dict[str, list] = {}
    for t in tasks.tasks:
        if t.task_id in painted:
            by_case.setdefault(t.case_id, []).append(t)
    for cid, group in by_case.items():
        truth, _ = truth_of(cid)
        ann = empty_partial_labels(truth.shape)
        for t in group:
            m = unit_mask(t, truth.shape, tasks)
            ann[m] = truth.array[m]
            t.status = "done"
            if log is not None and tuple(rows[t.task_id][k] for k in _LOG_KEY) not in logged:
                append_annotation_log(log, rows[t.task_id])
        target = out_dir / f"{cid}.nii.gz"
        if target.is_file():  # several task files annotated into one folder: keep what is there
            prev = load_volume(target).array
            ann = np.where(ann != UNLABELED, ann, prev).astype(np.uint8)
        save_volume(truth.with_array(ann.astype(np.uint8)), target)
    if tasks.path is not None:
        write_tasks(tasks.path, tasks)
    return {"seconds": float(sum(per_task.values())), "per_task": per_task, "foreground": fg}


_LOG_KEY = ("task_id", "case_id", "kind", "axis", "index", "supervoxel")


def _logged_keys(log) -> set[tuple]:
    """The units already in an annotation log, keyed by task id *and* unit (several task files may
    log into one file, e.g. a cold start's pilot batches); a line torn by an interruption is skipped."""
    import json

    log = Path(log)
    if not log.is_file():
        return set()
    keys = set()
    for line in log.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
            keys.add(tuple(rec.get(k) for k in _LOG_KEY))
        except (ValueError, AttributeError):
            continue
    return keys


def full_annotation_cost(dataset: Dataset, case_ids, *, axis_name: str, cost_model: CostModel) -> float:
    """True seconds to annotate every slice of ``case_ids`` (the 100% cost line)."""
    from medal.regions import resolve_axis

    total = 0.0
    for cid in case_ids:
        case = dataset.case(cid)
        truth, _ = load_label(case.label, case.image, dataset.relative(case.label), label_names=dataset.label_names)
        axis = resolve_axis(int(axis_name) if axis_name.isdigit() else axis_name, truth.orientation)
        units = slice_units(truth.shape, axis=axis)
        index = dataset.label_map.to_index(truth.array, where=dataset.relative(dataset.case(cid).label))
        total += float(true_costs(units, index, axis=axis, spacing=truth.spacing, cost_model=cost_model).sum())
    return total
