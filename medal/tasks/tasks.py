"""Annotation tasks: ``tasks.json`` in a round folder, what the expert (or the oracle) works through.

Schema (``format: medal-tasks/1``)::

    {"format": "medal-tasks/1", "dataset_root": "/abs/path", "created": "...", "strategy": "knapsack",
     "budget_s": 600.0, "predicted_s": 587.5, "value": 12.3, "upper_bound": 12.31, "gap": 0.0008,
     "tasks": [{"task_id": "t0000", "case_id": "hippocampus_004", "image": "imagesTr/hippocampus_004.nii.gz",
                "kind": "slice", "axis": 2, "index": 17, "supervoxel": -1, "mask": null,
                "bbox": [[0, 0, 17], [36, 52, 18]], "score": 1.23, "predicted_cost_s": 31.5,
                "strategy": "knapsack", "status": "todo"}, ...]}

``image`` is relative to ``dataset_root``; ``mask`` (supervoxel tasks: a label volume in which the
task's supervoxel id marks its region) is relative to the folder holding ``tasks.json``. Reading
checks every field and that no path escapes its root; an error names the task.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from medal.data.atomic import atomic_write_json

__all__ = ["Task", "TaskList", "TaskError", "read_tasks", "task_region", "validate_tasks", "write_tasks", "STATUSES",
           "FORMAT"]

FORMAT = "medal-tasks/1"
STATUSES = ("todo", "done", "skipped")
KINDS = ("slice", "supervoxel")


class TaskError(ValueError):
    """A ``tasks.json`` is malformed or unsafe; the message names the file and the task."""


@dataclass
class Task:
    task_id: str
    case_id: str
    image: str
    kind: str
    axis: int
    index: int
    supervoxel: int
    bbox: list[list[int]]
    score: float
    predicted_cost_s: float
    strategy: str
    status: str = "todo"
    mask: str | None = None
    # selection-time cost prediction before calibration, and the effort features it came from
    # (what online cost calibration pairs with the seconds actually spent); optional
    model_cost_s: float | None = None
    features: dict | None = None
    # label quality control: this task re-asks "<round folder>/<task id>", blind (its labels are compared,
    # never merged over the first annotation)
    qc_of: str | None = None

    @property
    def label(self) -> str:
        where = f"slice {self.index} (axis {self.axis})" if self.kind == "slice" else f"supervoxel {self.supervoxel}"
        return f"{self.case_id} {where}"


@dataclass
class TaskList:
    path: Path | None
    dataset_root: Path
    tasks: list[Task]
    meta: dict = field(default_factory=dict)

    def image_path(self, task: Task) -> Path:
        return _inside(self.dataset_root, task.image, f"task {task.task_id} ({task.label}): image")

    @property
    def n_reserve(self) -> int:
        """How many of the file's last tasks are the reserve queue (``selection.reserve``, ``coldstart.reserve``):
        painted only while the round's logged seconds are under its budget. 0 where the file names none or an
        unreadable count (a hand-edited file), never more than the tasks there are."""
        try:
            n = int(self.meta.get("reserve_tasks") or 0)
        except (TypeError, ValueError):
            return 0
        return max(0, min(n, len(self.tasks)))

    @property
    def budget_tasks(self) -> list[Task]:
        """The tasks the budget was spent on (quality-control copies included): all but the reserve queue."""
        return self.tasks[:len(self.tasks) - self.n_reserve]

    def mask_path(self, task: Task) -> Path | None:
        if task.mask is None:
            return None
        base = self.path.parent if self.path is not None else self.dataset_root
        return _inside(base, task.mask, f"task {task.task_id} ({task.label}): mask")


def _inside(root: Path, rel: str, what: str) -> Path:
    p = (Path(root) / rel).resolve()
    if Path(rel).is_absolute() or not p.is_relative_to(Path(root).resolve()):
        raise TaskError(f"{what}: path {rel!r} escapes its root {root}")
    return p


_OPTIONAL = ("mask", "model_cost_s", "features", "qc_of")
_FIELDS = {"task_id": str, "case_id": str, "image": str, "kind": str, "axis": int, "index": int, "supervoxel": int,
           "bbox": list, "score": (int, float), "predicted_cost_s": (int, float), "strategy": str, "status": str}


def _task_from(d, n: int, where: str, root: Path, base: Path) -> Task:
    if not isinstance(d, dict):
        raise TaskError(f"{where}: task {n}: expected an object, got {type(d).__name__}")
    tid = d.get("task_id", f"#{n}")
    name = f"{where}: task {tid} ({d.get('case_id', 'no case_id')})"
    missing = [k for k in _FIELDS if k not in d]
    if missing:
        raise TaskError(f"{name}: missing field(s) {missing}")
    unknown = sorted(set(d) - set(_FIELDS) - set(_OPTIONAL))
    if unknown:
        raise TaskError(f"{name}: unknown field(s) {unknown}")
    for k, tp in _FIELDS.items():
        if not isinstance(d[k], tp) or isinstance(d[k], bool):
            raise TaskError(f"{name}: field {k!r} should be {getattr(tp, '__name__', 'a number')}, got {d[k]!r}")
    if d["kind"] not in KINDS:
        raise TaskError(f"{name}: kind {d['kind']!r} is not one of {list(KINDS)}")
    if d["status"] not in STATUSES:
        raise TaskError(f"{name}: status {d['status']!r} is not one of {list(STATUSES)}")
    if d["axis"] not in (0, 1, 2):
        raise TaskError(f"{name}: axis must be 0, 1 or 2, got {d['axis']}")
    bbox = d["bbox"]
    if (len(bbox) != 2 or any(not isinstance(b, list) or len(b) != 3 for b in bbox)
            or any(not isinstance(x, int) or isinstance(x, bool) for b in bbox for x in b)
            or any(lo < 0 or hi <= lo for lo, hi in zip(*bbox))):
        raise TaskError(f"{name}: bbox must be [[lo0, lo1, lo2], [hi0, hi1, hi2]] with 0 <= lo < hi, got {bbox}")
    if d["kind"] == "slice" and not bbox[0][d["axis"]] <= d["index"] < bbox[1][d["axis"]]:
        raise TaskError(f"{name}: slice index {d['index']} lies outside its bbox {bbox}")
    if d["kind"] == "supervoxel" and (d["supervoxel"] < 1 or not isinstance(d.get("mask"), str)):
        raise TaskError(f"{name}: a supervoxel task needs supervoxel >= 1 and a mask path")
    for k in ("score", "predicted_cost_s"):
        if not math.isfinite(d[k]):
            raise TaskError(f"{name}: field {k!r} must be a finite number, got {d[k]!r}")
    if d["predicted_cost_s"] < 0:
        raise TaskError(f"{name}: predicted_cost_s must be >= 0, got {d['predicted_cost_s']}")
    _inside(root, d["image"], f"{name}: image")
    if d.get("mask") is not None:
        _inside(base, d["mask"], f"{name}: mask")
    mc, feats = d.get("model_cost_s"), d.get("features")
    if mc is not None and (isinstance(mc, bool) or not isinstance(mc, (int, float)) or not mc >= 0):
        raise TaskError(f"{name}: model_cost_s must be a number >= 0, got {mc!r}")
    if feats is not None and (not isinstance(feats, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in feats.values())):
        raise TaskError(f"{name}: features must map names to numbers, got {feats!r}")
    qc = d.get("qc_of")
    if qc is not None and not isinstance(qc, str):
        raise TaskError(f"{name}: qc_of must be '<round>/<task id>', got {qc!r}")
    return Task(**{k: d[k] for k in _FIELDS}, mask=d.get("mask"), model_cost_s=mc, features=feats, qc_of=qc)


def read_tasks(path, *, dataset_root=None) -> TaskList:
    """Read and check a ``tasks.json``. ``dataset_root`` overrides the one recorded in the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaskError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TaskError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise TaskError(f"{path}: expected format {FORMAT!r}, got {got!r}")
    if not isinstance(data.get("tasks"), list):
        raise TaskError(f"{path}: 'tasks' must be a list")
    root = Path(dataset_root) if dataset_root is not None else Path(str(data.get("dataset_root", "")))
    if not str(root) or not root.is_dir():
        raise TaskError(f"{path}: dataset_root {str(root)!r} is not a folder")
    tasks = [_task_from(d, n, str(path), root, path.parent) for n, d in enumerate(data["tasks"])]
    ids = [t.task_id for t in tasks]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise TaskError(f"{path}: duplicate task ids {dupes}")
    meta = {k: v for k, v in data.items() if k not in ("tasks", "dataset_root")}
    return TaskList(path, root, tasks, meta)


def write_tasks(path, tasks: TaskList | list[Task], *, dataset_root=None, meta: dict | None = None) -> Path:
    """Write ``tasks.json`` atomically."""
    if isinstance(tasks, TaskList):
        dataset_root = tasks.dataset_root if dataset_root is None else dataset_root
        meta = {**tasks.meta, **(meta or {})}
        tasks = tasks.tasks
    if dataset_root is None:
        raise ValueError("write_tasks needs dataset_root")
    body = {"format": FORMAT, "dataset_root": str(Path(dataset_root).resolve()),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    body.update({k: v for k, v in (meta or {}).items() if k not in ("format", "dataset_root", "tasks")})
    body["tasks"] = [asdict(t) for t in tasks]
    return atomic_write_json(path, body)


def validate_tasks(tasks: TaskList, dataset) -> None:
    """Check every task against the dataset and its image: the case exists, the task's image is that
    case's image, and the slice index / box lie inside the volume. Raises :class:`TaskError` listing
    the problems (each naming the task), so a stale or hand-edited file never reaches a viewer or an
    annotator as if it were fine."""
    from medal.data import DatasetError, volume_shape

    where = str(tasks.path) if tasks.path is not None else "tasks"
    problems, shapes = [], {}
    for t in tasks.tasks:
        name = f"task {t.task_id} ({t.label})"
        try:
            case = dataset.case(t.case_id)
        except KeyError:
            problems.append(f"{name}: no case {t.case_id!r} in the dataset {dataset.root}")
            continue
        if tasks.image_path(t).resolve() != Path(case.image).resolve():
            if Path(t.image) == Path(dataset.relative(case.image)):  # the same name in another copy of the dataset
                problems.append(f"{name}: written for the dataset {tasks.dataset_root}, not {dataset.root}")
            else:
                problems.append(f"{name}: image {t.image!r} is not case {t.case_id}'s image "
                                f"{dataset.relative(case.image)!r}")
            continue
        if t.case_id not in shapes:
            try:
                shapes[t.case_id] = volume_shape(case.image)
            except DatasetError as exc:
                problems.append(f"{name}: {exc}")
                continue
        shape = shapes[t.case_id]
        if t.kind == "slice" and not 0 <= t.index < shape[t.axis]:
            problems.append(f"{name}: slice {t.index} along axis {t.axis} is outside the volume (shape {shape})")
        elif any(hi > n for hi, n in zip(t.bbox[1], shape)):
            problems.append(f"{name}: box {t.bbox} reaches outside the volume (shape {shape})")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise TaskError(f"{where}: " + "; ".join(problems[:3]) + more)


def task_region(task: Task, shape, tasks: TaskList):
    """Boolean mask of a task's unit: its slice, or its supervoxel in the task's mask volume."""
    import numpy as np

    if task.kind == "slice":
        m = np.zeros(tuple(shape), bool)
        idx = [slice(None)] * 3
        idx[task.axis] = task.index
        m[tuple(idx)] = True
        return m
    from medal.data import load_volume

    return load_volume(tasks.mask_path(task)).array == task.supervoxel
