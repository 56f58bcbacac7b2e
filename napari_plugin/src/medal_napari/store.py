"""Files of a round as the annotation plugin reads and writes them (no Qt, no napari here).

::

    ROUND/tasks.json                  the tasks; statuses are written back here
    ROUND/annotations/<case>.nii.gz   finished tasks' labels, 255 elsewhere: what `medal ingest` merges
    ROUND/annotations/<case>.json     per-case progress: status, active seconds, started/logged flags
    ROUND/annotations/<case>.lock     who is annotating the case now
    ROUND/drafts/<case>.nii.gz        work in progress of unfinished tasks (also 255 elsewhere)
    ROUND/annotation_log.jsonl        one line per finished task: active seconds + effort features

Every file is written atomically (temporary file, fsync, rename). An existing annotation file that
cannot be read is never overwritten: the case is refused with a message naming the file.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medal.data import UNLABELED, DatasetError, Volume, atomic_write_json, load_dataset, load_volume
from medal.data.slabs import SlabNifti
from medal.data.validate import label_on_grid
from medal.tasks import Task, TaskError, TaskList, read_tasks, validate_tasks, write_tasks
from medal.tasks.display import display_window, open_display_image

__all__ = ["AnnotationFileError", "CaseData", "CaseLabels", "RoundStore", "PALETTE", "find_tasks_file"]

#: colours of classes 1.. when dataset.json gives none (colour-blind-safe, Okabe-Ito)
PALETTE = ["#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7", "#999999"]


class AnnotationFileError(RuntimeError):
    """A file of the round is missing, unreadable or inconsistent; the message names it."""


def sweep_stale_temp_files(*folders, older_than_s: float = 60.0) -> int:
    """Remove what a killed atomic save left (``.<name>.<hex>.tmp*``), if older than ``older_than_s`` (a
    save in flight from another session takes milliseconds: its temporary file is never touched)."""
    n, now = 0, time.time()
    for folder in folders:
        if not Path(folder).is_dir():
            continue
        for p in Path(folder).glob(".*.tmp*"):
            try:
                if p.is_file() and now - p.stat().st_mtime > older_than_s:
                    p.unlink()
                    n += 1
            except OSError:
                pass
    return n


def find_tasks_file(path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / "tasks.json"
    if not path.is_file():
        raise AnnotationFileError(f"{path}: no tasks.json here (run `medal select` or `medal round` first)")
    return path


@dataclass
class CaseData:
    """Everything shown for one case; loaded off the GUI thread and cached."""

    case_id: str
    image: Volume
    contrast: tuple[float, float]
    uncertainty: np.ndarray | None = None
    uncertainty_name: str = ""
    uncertainty_limits: tuple[float, float] = (0.0, 1.0)
    prediction: np.ndarray | None = None
    sv_mask: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)
    source: Path | None = None  # the image file (a multi-channel case's _0000 file)
    channels: list = field(default_factory=list)  # the other channels: (layer name, array, contrast)


def _volume_like(path, image: Volume, warnings: list, what: str) -> Volume | None:
    """The volume at ``path`` when it reads and has ``image``'s shape; else ``None``, with ``what: why`` added to
    ``warnings`` (an overlay is an extra: the expert goes on without it)."""
    try:
        vol = load_volume(path)
        if vol.shape != image.shape:
            raise DatasetError(f"{path}: shape {vol.shape} does not match the image {image.shape}")
    except DatasetError as exc:
        warnings.append(f"{what}: {exc}")
        return None
    return vol


@dataclass
class CaseLabels:
    """Finished (``final``) and in-progress (``draft``) labels of one case, each saved incrementally."""

    case_id: str
    final: SlabNifti
    draft: SlabNifti
    final_path: Path
    draft_path: Path

    def working(self) -> np.ndarray:
        """The labels the expert sees: finished labels over drafts, 0 where nothing is painted."""
        out = np.zeros(self.final.shape, dtype=np.uint8, order="F")
        for vol in (self.draft, self.final):  # finished labels last: they win
            if vol.uniform == UNLABELED:  # nothing painted (a new case): no need to scan it
                continue
            np.copyto(out, vol.array, where=vol.array != UNLABELED)
        return out

    def store_task(self, sl: tuple[slice, ...], region: np.ndarray, values: np.ndarray, *, status: str,
                   started: bool) -> None:
        """Put what is painted in a task's region where it belongs: finished labels for a done task (and
        out of the drafts), the drafts for a started unfinished one; never finished labels otherwise."""
        if status == "done":
            self.final.assign(sl, values, where=region)
            self.draft.assign(sl, np.uint8(UNLABELED), where=region)
        else:
            if started:
                self.draft.assign(sl, values, where=region)
            self.final.assign(sl, np.uint8(UNLABELED), where=region)

    def write(self) -> list[Path]:
        written = []
        for vol, path in ((self.final, self.final_path), (self.draft, self.draft_path)):
            # no file yet: the slabs serialized so far were all unannotated (else the file would exist),
            # so only the changed ones can hold labels
            if vol.dirty and (path.exists() or vol.dirty_differs(UNLABELED)):
                written.append(vol.write(path))
            elif vol.dirty:
                vol.to_bytes()  # nothing to write yet: just clear the dirty flags
        return written


#: the uncertainty overlay starts colouring at this percentile of the case's values
UNCERTAINTY_QUANTILE = 90.0


class RoundStore:
    """The tasks, dataset and files of one round folder."""

    def __init__(self, path, *, dataset_root=None):
        self.tasks_path = find_tasks_file(path)
        self.round_dir = self.tasks_path.parent
        try:
            self.tasklist: TaskList = read_tasks(self.tasks_path, dataset_root=dataset_root)
        except TaskError as exc:
            raise AnnotationFileError(str(exc)) from exc
        try:
            self.dataset = load_dataset(self.tasklist.dataset_root)
            validate_tasks(self.tasklist, self.dataset)  # stale or hand-edited tasks never reach the viewer
        except (DatasetError, TaskError) as exc:
            raise AnnotationFileError(str(exc)) from exc
        self.ann_dir = self.round_dir / "annotations"
        self.draft_dir = self.round_dir / "drafts"
        self.log_path = self.round_dir / "annotation_log.jsonl"
        meta = self.tasklist.meta
        given = Path(meta["scores_dir"]) if meta.get("scores_dir") else Path("scores")
        self.scores_dir = given if given.is_absolute() else self.round_dir / given
        # files read from outside the round folder are named once, so a copied round never reads the
        # old place silently
        self.external = [f"{what} from {p}" for what, p in (("images", self.tasklist.dataset_root),
                                                           ("uncertainty and predictions", self.scores_dir))
                         if not Path(p).resolve().is_relative_to(self.round_dir.resolve())]
        self.measure = str((meta.get("regions") or {}).get("measure", "") or "")
        self.label_map = self.dataset.label_map
        self.n_classes = self.label_map.n_classes
        self.label_names = {v: self.label_map.name(v) for v in self.label_map.values}
        from medal.data.normalize import scheme_for_channel

        #: how the dataset names the image shown (dataset.json channel_names / modality, channel 0): "ct" or ""
        self.modality = "ct" if scheme_for_channel(self.dataset.channel_names.get(0)) == "ct" else ""
        self.label_colors = self._colors()
        self.progress: dict[str, dict] = {}  # case_id -> {"tasks": {task_id: {...}}}
        self._axis_codes: dict[str, str] = {}
        self.swept = sweep_stale_temp_files(self.ann_dir, self.draft_dir)
        for t in self.tasks:
            state = self.case_progress(t.case_id)["tasks"].get(t.task_id)
            if state and state.get("status") in ("todo", "done", "skipped"):
                t.status = state["status"]
        self.recovered: list[str] = []  # what reconcile() repaired, for a message

    def reconcile(self, user: str) -> list[str]:
        """Finish what a killed *Done* left half-done, so every file agrees again.

        *Done* writes, each step atomic: (1) the task's labels into ``annotations/<case>.nii.gz``,
        (2) the progress file with the status ``done`` and the time-log record, (3) the log line,
        (4) the progress file marked ``logged``, (5) the statuses in ``tasks.json``. Whatever step a
        kill stopped at, this repairs it: labels of a task in the finished file mean *Done* was
        pressed (status done); a done task not yet logged gets its stored record appended (once);
        ``tasks.json`` gets the progress files' statuses.
        """
        from medal.costs import append_annotation_log, read_annotation_log
        from medal.tasks import task_region

        from .edits import log_record

        fixed: list[str] = []
        cut: list[int] = []
        try:
            logged = {str(r.get("task_id")) for r in read_annotation_log(self.log_path, strict=False, bad=cut)} \
                if self.log_path.is_file() else set()
        except ValueError:
            logged = set()
        by_case: dict[str, list[Task]] = {}
        for t in self.tasks:
            by_case.setdefault(t.case_id, []).append(t)
        for cid, tasks in by_case.items():
            if (self.ann_dir / f"{cid}.lock").exists():
                continue  # another session holds this case (or left a lock): it is repaired when opened
            final_path = self.ann_dir / f"{cid}.nii.gz"
            final = final_vol = None
            if final_path.is_file():
                try:
                    final_vol = load_volume(final_path)
                    final = final_vol.array
                except DatasetError:
                    final = None  # reported when the case is opened; never overwritten
            changed = False
            for t in tasks:
                state = self.task_state(t)
                if final is not None and state.get("status") != "done" and t.status != "done":
                    region = task_region(t, final.shape, self.tasklist)
                    if (final[region] != UNLABELED).any():
                        state["status"], t.status = "done", "done"
                        fixed.append(f"{t.task_id}: finished labels were saved; marked done")
                        changed = True
                if state.get("status") == "done" and not state.get("logged"):
                    record = state.get("log_record")
                    if record is None and final is not None:  # killed before the record was kept: measure it
                        region = task_region(t, final.shape, self.tasklist)
                        record = log_record(t, region, final, spacing=final_vol.spacing, label_map=self.label_map,
                                            seconds=float(state.get("seconds", 0.0)), user=user, recovered=True,
                                            round=str(self.round_dir.resolve()))
                    if record and t.task_id not in logged:  # never twice
                        append_annotation_log(self.log_path, record)
                        logged.add(t.task_id)
                        fixed.append(f"{t.task_id}: time log line written"
                                     + (f" (line {', '.join(map(str, cut))} of {self.log_path.name}, cut short by "
                                        "the crash, is set aside)" if cut else ""))
                    state["logged"] = True
                    changed = True
            if changed:
                self.save_progress(cid, user)
        disagree = False
        try:
            on_disk = {t.task_id: t.status for t in read_tasks(self.tasks_path, dataset_root=self.tasklist.dataset_root).tasks}
            disagree = any(on_disk.get(t.task_id) != t.status for t in self.tasks if t.task_id in
                           self.case_progress(t.case_id)["tasks"])
        except TaskError:
            pass
        if disagree:
            self.write_statuses()
            fixed.append("tasks.json statuses brought in line with the saved progress")
        self.recovered = fixed
        return fixed

    @property
    def tasks(self) -> list[Task]:
        return self.tasklist.tasks

    def _colors(self) -> dict[int, str]:
        meta_path = self.tasklist.dataset_root / "dataset.json"
        given = {}
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
                given = {int(k): str(v) for k, v in (meta.get("colors") or meta.get("label_colors") or {}).items()}
            except (ValueError, TypeError, AttributeError):
                given = {}
        return {c: given.get(c, PALETTE[(c - 1) % len(PALETTE)]) for c in self.label_names if c != 0}

    def axis_name(self, task: Task) -> str:
        """``axial`` / ``coronal`` / ``sagittal`` for the task's slicing axis (from the image header)."""
        if task.case_id not in self._axis_codes:
            try:
                import nibabel as nib

                path = self.tasklist.image_path(task)
                affine = nib.load(str(path)).affine if ".nii" in path.name else load_volume(path).affine
                self._axis_codes[task.case_id] = "".join(nib.aff2axcodes(affine))
            except Exception:  # a bad image is reported when the task is opened; here only a label
                self._axis_codes[task.case_id] = "???"
        code = self._axis_codes[task.case_id][task.axis]
        return {"L": "sagittal", "R": "sagittal", "A": "coronal", "P": "coronal", "S": "axial", "I": "axial"}.get(
            code, f"axis {task.axis}")

    def where(self, task: Task) -> str:
        if task.kind == "slice":
            text = f"{self.axis_name(task)} slice {task.index}"
        else:
            text = f"supervoxel {task.supervoxel} ({self.axis_name(task)})"
        # a quality-control re-ask: painted blind again, compared with the first labels by the report
        return f"{text} · QC" if task.qc_of else text

    # ------------------------------------------------------------------ per-case progress
    def case_progress(self, case_id: str) -> dict:
        if case_id not in self.progress:
            path = self.ann_dir / f"{case_id}.json"
            state = {"tasks": {}}
            if path.is_file():
                try:
                    state = json.loads(path.read_text(encoding="utf-8"))
                    if not isinstance(state.get("tasks"), dict):
                        raise ValueError("no 'tasks' object")
                except (OSError, ValueError) as exc:
                    raise AnnotationFileError(f"{path}: cannot read the saved progress ({exc}); "
                                              "move it away to start this case's statuses afresh") from exc
            self.progress[case_id] = state
        return self.progress[case_id]

    def task_state(self, task: Task) -> dict:
        return self.case_progress(task.case_id)["tasks"].setdefault(
            task.task_id, {"status": task.status, "seconds": 0.0, "started": False, "logged": False})

    def save_progress(self, case_id: str, user: str) -> Path:
        state = self.case_progress(case_id)
        state.update({"format": "medal-annotation-progress/1", "case_id": case_id, "user": user,
                      "updated": _dt.datetime.now().astimezone().isoformat(timespec="seconds")})
        return atomic_write_json(self.ann_dir / f"{case_id}.json", state)

    def write_statuses(self, timeout_s: float = 5.0) -> None:
        """Write the statuses back into tasks.json (re-read first: other cases may be annotated elsewhere)."""
        guard = self.tasks_path.with_name("tasks.json.writing")
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                os.close(fd)
                break
            except FileExistsError:
                if time.monotonic() > deadline:
                    if time.time() - guard.stat().st_mtime > 60:  # left behind by a killed writer
                        guard.unlink(missing_ok=True)
                        continue
                    raise AnnotationFileError(f"{guard}: another session is writing tasks.json; try again")
                time.sleep(0.02)
        try:
            fresh = read_tasks(self.tasks_path, dataset_root=self.tasklist.dataset_root)
            mine = {t.task_id: t.status for t in self.tasks
                    if t.task_id in self.case_progress(t.case_id)["tasks"]}
            for t in fresh.tasks:
                if t.task_id in mine:
                    t.status = mine[t.task_id]
            write_tasks(self.tasks_path, fresh)
        except TaskError as exc:
            raise AnnotationFileError(str(exc)) from exc
        finally:
            guard.unlink(missing_ok=True)

    # ------------------------------------------------------------------ volumes
    def load_case(self, case_id: str, tasks: list[Task], *, overlays: bool = True) -> CaseData:
        """Image, uncertainty, prediction and supervoxel mask of a case (missing extras are warnings).
        ``overlays=False``: the image alone (what the expert needs first); :meth:`load_overlays` adds the rest."""
        task = tasks[0]
        try:
            source = self.tasklist.image_path(task)
            # the round's uncompressed copy (medal.tasks.display), memory-mapped: the first draw reads
            # only the planes it shows instead of decompressing the whole .nii.gz
            cached = open_display_image(self.round_dir, case_id, source)
            image, window = cached if cached is not None else (load_volume(source), None)
        except (DatasetError, TaskError) as exc:
            raise AnnotationFileError(str(exc)) from exc
        data = CaseData(case_id, image, window if window is not None else display_window(image.array),
                        source=Path(source))
        sv_tasks = [t for t in tasks if t.kind == "supervoxel"]
        if sv_tasks:
            try:
                path = self.tasklist.mask_path(sv_tasks[0])
                vol = load_volume(path)
                if vol.shape != image.shape:
                    raise DatasetError(f"{path}: shape {vol.shape} does not match the image {image.shape}")
            except (DatasetError, TaskError) as exc:
                raise AnnotationFileError(f"supervoxel tasks of {case_id} cannot be shown: {exc}") from exc
            data.sv_mask = np.asarray(vol.array)
        return self.load_overlays(data) if overlays else data

    def load_overlays(self, data: CaseData) -> CaseData:
        """Add the case's uncertainty and prediction volumes, and a multi-channel case's other channels
        (``_0001``, ... beside its ``_0000`` image), to ``data`` (missing or unreadable ones are warnings)."""
        case_id, image = data.case_id, data.image
        if data.source is not None and not data.channels:
            from medal.data.channels import channel_files

            from .display import CHANNEL_LAYER

            for k, path in enumerate(channel_files(data.source)[1:], start=1):
                vol = _volume_like(path, image, data.warnings, f"channel {k} not shown")
                if vol is None:
                    continue
                arr = vol.array.astype(np.float32, copy=False)
                data.channels.append((CHANNEL_LAYER.format(k), arr, display_window(arr)))
        base = self.scores_dir / case_id
        names = [self.measure] if self.measure else []
        names += [p.name[:-7] for p in sorted(base.glob("*.nii.gz")) if p.name not in ("prediction.nii.gz", "probs.nii.gz")]
        for name in dict.fromkeys(names):
            path = base / f"{name}.nii.gz"
            if not path.is_file():
                continue
            vol = _volume_like(path, image, data.warnings, "uncertainty not shown")
            if vol is None:
                continue
            data.uncertainty, data.uncertainty_name = vol.array.astype(np.float32, copy=False), name
            # only the upper tail is coloured (additive blending: below the lower limit is transparent),
            # so the overlay marks where the model is unsure instead of washing over the slice
            data.uncertainty_limits = display_window(data.uncertainty, UNCERTAINTY_QUANTILE, 99.9)
            break
        if data.uncertainty is None and not data.warnings:
            data.warnings.append(f"no uncertainty volume for {case_id} under {base}")
        pred = base / "prediction.nii.gz"
        if pred.is_file():
            try:
                vol = load_volume(pred)
                if vol.shape != image.shape:
                    raise DatasetError(f"{pred}: shape {vol.shape} does not match the image {image.shape}")
                data.prediction = vol.array.astype(np.uint8, copy=False)
            except DatasetError as exc:
                data.warnings.append(f"prediction not shown: {exc}")
        return data

    def case_labels(self, case_id: str, image: Volume) -> CaseLabels:
        """Saved labels of a case (resume), or empty ones; an unreadable file is an error, never replaced."""
        vols = []
        for path in (self.ann_dir / f"{case_id}.nii.gz", self.draft_dir / f"{case_id}.nii.gz"):
            if path.exists():
                try:
                    vol = load_volume(path)
                except DatasetError as exc:
                    raise AnnotationFileError(f"{exc}. medal will not overwrite it: repair or move it away, "
                                              "then open the task again") from exc
                try:  # saved by another tool (another axis order, cropped to what was painted): onto the grid
                    vol, _ = label_on_grid(vol, image.shape, image.affine, str(path), outside=UNLABELED)
                except DatasetError as exc:
                    raise AnnotationFileError(f"{exc}; medal will not overwrite it") from exc
                vols.append(SlabNifti(image, vol.array))
                vols[-1].to_bytes()  # in sync with the file: nothing dirty
            else:
                vols.append(SlabNifti(image))
        return CaseLabels(case_id, vols[0], vols[1], self.ann_dir / f"{case_id}.nii.gz",
                          self.draft_dir / f"{case_id}.nii.gz")

    # ------------------------------------------------------------------ regions
    @staticmethod
    def region(task: Task, data: CaseData) -> tuple[tuple[slice, slice, slice], np.ndarray]:
        """The task's bounding box (slices) and its region inside that box (bool)."""
        lo, hi = task.bbox
        if task.kind == "slice":
            lo, hi = list(lo), list(hi)
            lo[task.axis], hi[task.axis] = task.index, task.index + 1
            shape = data.image.shape
            lo = [0 if d != task.axis else lo[d] for d in range(3)]
            hi = [shape[d] if d != task.axis else hi[d] for d in range(3)]
        sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        if task.kind == "slice":
            return sl, np.ones(tuple(s.stop - s.start for s in sl), dtype=bool)
        return sl, data.sv_mask[sl] == task.supervoxel
