"""An annotation session: the tasks of one round in one napari viewer.

Holds no Qt widget (the dock widget in :mod:`medal_napari.widget` drives it), so every behaviour can
be scripted and tested through the viewer: open a task, paint through the Labels layer, save, mark
done or skipped. Layers it manages (reused by name): ``image``, ``uncertainty``, ``prediction``,
``labels`` (what the expert paints) and ``task region`` (the outline of the current task).
"""

from __future__ import annotations

import datetime as _dt
import getpass
import secrets
import time
from pathlib import Path
from typing import Callable

import numpy as np

from medal.costs import append_annotation_log
from medal.tasks import Task

from . import display, edits
from .display import LAYERS
from .cache import CaseCache, Cached, file_stamps
from .lock import CaseLock, LockHeld
from .store import AnnotationFileError, CaseData, RoundStore
from .timing import ActiveTimer

__all__ = ["AnnotationSession", "LAYERS"]

FILTERS = ("all", "todo", "done", "skipped")


class AnnotationSession:
    """Work through ``tasks.json`` of ``round_path`` in ``viewer``.

    Parameters
    ----------
    round_path : path
        A round folder (holding ``tasks.json``) or the ``tasks.json`` itself.
    viewer : napari.Viewer
    user : str, optional
        Who annotates (lock files, time log). Default: the login name.
    idle_s : float
        Gaps between activity events longer than this are not counted as annotation time.
    start_from_prediction : bool or None
        Fill a task's region with the model's prediction when it is first opened, for correction.
        ``None`` (default): as the round was priced, i.e. on when its ``tasks.json`` says
        ``costs.annotation: correct`` (the predicted seconds assume a correction), off otherwise.
    """

    def __init__(self, round_path, viewer, *, user: str | None = None, idle_s: float = 60.0,
                 start_from_prediction: bool | None = None, clock: Callable[[], float] = time.monotonic,
                 cache_cases: int = 3, prefetch: bool = True):
        self.store = RoundStore(round_path)
        self.viewer = viewer
        self.user = user or getpass.getuser()
        self.token = secrets.token_hex(8)
        self.timer = ActiveTimer(idle_s, clock)
        if start_from_prediction is None:
            costs = self.store.tasklist.meta.get("costs") or {}
            start_from_prediction = isinstance(costs, dict) and costs.get("annotation") == "correct"
        self.start_from_prediction = bool(start_from_prediction)
        self.current: int | None = None
        self.case_id: str | None = None
        self.filter = "all"
        self.messages: list[tuple[str, str]] = []  # (level, text): everything the user was told
        self.outside_reverted = 0  # voxels painted outside the current task and not kept
        self.last_saved: str = ""
        self.listeners: list[Callable[[], None]] = []
        self._lock: CaseLock | None = None
        self._entry: Cached | None = None
        self._region: tuple | None = None
        self._cache = CaseCache(self._load, cache_cases, prefetch, quick=self._load_image,
                                complete=self.store.load_overlays)
        self._overlay_timer = None
        self._closed = False
        self._pending_atoms: list = []
        self._last_kind = ""
        self._last_axis: int | None = None
        self._flush_scheduled = False
        self._confirm: tuple[str, str] | None = None  # (task id, question) asked at the last Done
        self.order = edits.value_per_second_order(self.tasks, self.reserve)
        try:
            fixed = self.store.reconcile(self.user)
        except (OSError, AnnotationFileError) as exc:
            fixed = []
            self.notify(f"could not check the round's files after an interruption: {exc}", "warning")
        if self.store.external:
            self.notify("reading " + "; ".join(self.store.external) + " (outside this round folder)", "info")
        if fixed:
            self.notify("recovered after an interruption: " + "; ".join(fixed[:4])
                        + (f" (and {len(fixed) - 4} more)" if len(fixed) > 4 else ""), "info")
        viewer.mouse_move_callbacks.append(self._on_mouse)
        viewer.mouse_drag_callbacks.append(self._on_mouse)
        viewer.dims.events.current_step.connect(self._on_step)

    # ------------------------------------------------------------------ basics
    @property
    def tasks(self) -> list[Task]:
        return self.store.tasks

    @property
    def task(self) -> Task | None:
        return None if self.current is None else self.tasks[self.current]

    def layer(self, key: str):
        return display.get_layer(self.viewer, key)

    def notify(self, text: str, level: str = "warning") -> None:
        """Tell the user (napari notification + the widget's status line); never raises."""
        from napari.utils import notifications

        self.messages.append((level, text))
        show = {"info": notifications.show_info, "warning": notifications.show_warning,
                "error": notifications.show_error}.get(level, notifications.show_warning)
        try:
            show(text)
        except Exception:  # a notification must never break the annotation session
            pass
        self._changed()

    def _changed(self) -> None:
        for fn in list(self.listeners):
            fn()

    def visible_order(self) -> list[int]:
        return [i for i in self.order if self.filter == "all" or self.tasks[i].status == self.filter]

    @property
    def reserve(self) -> int:
        """How many of the file's last tasks are the round's reserve queue (``selection.reserve``)."""
        return self.store.tasklist.n_reserve

    def is_reserve(self, task: Task) -> bool:
        return self.reserve > 0 and self.tasks.index(task) >= len(self.tasks) - self.reserve

    def round_seconds(self) -> tuple[float, float | None]:
        """Active seconds logged on this round's tasks so far, and the round's budget (None if unknown)."""
        budget = self.store.tasklist.meta.get("budget_s")
        try:
            budget = float(budget) if budget is not None else None
        except (TypeError, ValueError):
            budget = None
        return float(sum(self.seconds(t) for t in self.tasks)), budget

    def seconds(self, task: Task) -> float:
        if task is self.task and self.timer.running:
            return self.timer.seconds
        return float(self.store.task_state(task).get("seconds", 0.0))

    # ------------------------------------------------------------------ activity -> time
    def _on_mouse(self, viewer, event):
        self.timer.touch()

    def planes(self) -> list[int]:
        """The planes (along the task axis) the open task's region spans."""
        if self.task is None or self._region is None:
            return []
        return edits.region_planes(self.task, *self._region)

    def _visit_plane(self) -> None:
        task = self.task
        if task is None or task.kind != "supervoxel" or self._region is None:
            return
        plane = int(self.viewer.dims.current_step[task.axis])
        seen = self.store.task_state(task).setdefault("visited_planes", [])
        if plane in self.planes() and plane not in seen:
            seen.append(plane)

    def unvisited_planes(self) -> list[int]:
        if self.task is None or self.task.kind != "supervoxel":
            return []
        seen = set(self.store.task_state(self.task).get("visited_planes", []))
        return [p for p in self.planes() if p not in seen]

    def _on_step(self, event=None):
        self.timer.touch()
        self._visit_plane()  # the edge letters sit on every plane: nothing to move
        self._update_overlay()

    def activity(self) -> None:
        """Something the expert did (key press, widget click): counts towards active time."""
        self.timer.touch()

    def _load(self, case_id: str) -> CaseData:
        return self.store.load_case(case_id, [t for t in self.tasks if t.case_id == case_id])

    def _load_image(self, case_id: str) -> CaseData:
        return self.store.load_case(case_id, [t for t in self.tasks if t.case_id == case_id], overlays=False)

    def _watch_overlays(self, entry: Cached) -> None:
        """Add the uncertainty and prediction layers once the worker has read them (the image is shown first)."""
        from qtpy.QtCore import QTimer

        if entry.completing is None:
            return
        if self._overlay_timer is None:
            self._overlay_timer = QTimer()
            self._overlay_timer.setInterval(30)
            self._overlay_timer.timeout.connect(self._overlays_ready)
        self._overlay_timer.start()

    def _overlays_ready(self) -> None:
        entry = self._entry
        if self._closed or entry is None or entry.completing is None:
            if self._overlay_timer is not None:
                self._overlay_timer.stop()
            return
        if not entry.completing.done():
            return
        self._overlay_timer.stop()
        fut, entry.completing = entry.completing, None
        try:
            fut.result()
        except Exception as exc:  # noqa: BLE001 - overlays are extras: say so, keep annotating
            self.notify(f"uncertainty and prediction not shown: {exc}", "warning")
            return
        self._show_case(entry)
        for w in entry.data.warnings:
            self.notify(w, "warning")
        lab = self.layer("labels")
        if lab is not None:
            self.viewer.layers.selection.active = lab
        self._changed()

    # ------------------------------------------------------------------ opening a task
    def open_task(self, index: int) -> bool:
        """Save the current task, then show task ``index``. False (with a message) if it cannot be opened.

        The canvas is drawn once, after the task is in place (:func:`display.hold_drawing`)."""
        if self._closed:
            return False
        with display.hold_drawing(self.viewer):
            return self._open_task(index)

    def _open_task(self, index: int) -> bool:
        task = self.tasks[index]
        if self.current is not None and self.current != index:
            self.save()
            self._pause_timer()
        lock = None
        try:
            if task.case_id != self.case_id:
                lock = CaseLock(self.store.ann_dir / f"{task.case_id}.lock", self.user, self.token)
                lock.acquire()
                entry = self._cache.get(task.case_id, keep=self.case_id)
                paths = (self.store.ann_dir / f"{task.case_id}.nii.gz", self.store.draft_dir / f"{task.case_id}.nii.gz")
                stamps = file_stamps(paths)
                if entry.labels is None or entry.stamps != stamps:
                    entry.labels = self.store.case_labels(task.case_id, entry.data.image)
                    entry.working = entry.labels.working()
                    entry.stamps = stamps
                self.store.case_progress(task.case_id)
            else:
                entry = self._entry
        except Exception as exc:  # a message in the viewer, not a traceback; stay on the current task
            if lock is not None:
                lock.release()
            detail = str(exc) if isinstance(exc, (LockHeld, AnnotationFileError)) else f"{type(exc).__name__}: {exc}"
            self.notify(f"cannot open task {task.task_id} ({task.label}): {detail}", "error")
            if self.task is not None and not self.timer.running:
                self.timer.start(float(self.store.task_state(self.task).get("seconds", 0.0)))
            return False
        new_case = task.case_id != self.case_id
        if new_case:
            if self._entry is not None and self.layer("labels") is not None:
                self._entry.working = self.layer("labels").data  # the live array, whatever napari did with ours
            if self._lock is not None:
                self._lock.release()
            self._lock, self._entry, self.case_id = lock, entry, task.case_id
            display.orient(self.viewer, task.axis, entry.data.image.orientation)  # new layers sliced on the task's axis
            self._show_case(entry, defer=True)  # drawn once by _move_to, on the task's plane
            if entry.completing is not None:
                self._watch_overlays(entry)
            else:
                for w in entry.data.warnings:
                    self.notify(w, "warning")
        self.current = index
        self.outside_reverted = 0
        self._region = self.store.region(task, entry.data)
        state = self.store.task_state(task)
        if (self.start_from_prediction and not state["started"] and task.status == "todo"
                and entry.data.prediction is not None):
            sl, region = self._region
            view = self._labels_data()[sl]
            view[region] = entry.data.prediction[sl][region]
            state["started"] = True
            state["from_prediction"] = True  # logged as a correction: its time prices what changed
            self.layer("labels").refresh()
        self._show_region(task, entry.data, defer=True)
        self._move_to(task, entry.data, new_case)
        self._confirm = None
        self._visit_plane()
        self.timer.start(float(state.get("seconds", 0.0)))
        self._update_overlay()
        nxt = self._neighbour(+1)
        if nxt is not None and self.tasks[nxt].case_id != self.case_id:
            self._cache.prefetch(self.tasks[nxt].case_id)
        self._changed()
        return True

    def _show_case(self, entry: Cached, *, defer: bool = False) -> None:
        display.show_case(self.viewer, entry.data, entry.working, self.store.label_colors, self._on_paint,
                          self.revert_outside, defer=defer)

    def revert_outside(self) -> int:
        """Put back every voxel outside the current task that differs from what is saved (after an undo
        or redo, which napari reports with no paint event); returns how many, with a message."""
        layer = self.layer("labels")
        if layer is None or self._entry is None or self._entry.labels is None:
            return 0
        saved = self._entry.labels.working()
        data = layer.data
        differ = np.asarray(data) != saved
        if self._region is not None:
            sl, region = self._region
            inside = np.zeros(differ.shape, bool)
            inside[sl] = region
            differ &= ~inside
        n = int(differ.sum())
        if n:
            data[differ] = saved[differ]
            self.outside_reverted += n
            layer.refresh()
            self.notify(f"{n} voxel(s) outside the task brought back by undo/redo were undone again: only "
                        f"{self.store.where(self.task) if self.task else 'the open task'} is saved", "warning")
        return n

    def _show_region(self, task: Task, data: CaseData, *, defer: bool = False) -> None:
        display.show_region(self.viewer, task, *self._region, data.image.spacing, defer=defer)

    def task_plane(self, task: Task, data: CaseData | None = None) -> int:
        """The plane shown for a task: its slice, or the plane holding most of its supervoxel."""
        sl, region = self._region if data is None else self.store.region(task, data)
        return edits.task_plane(task, sl, region)

    def _move_to(self, task: Task, data: CaseData, new_case: bool = True) -> None:
        reset = task.kind == "supervoxel" or new_case or self._last_kind == "supervoxel" \
            or self._last_axis != task.axis
        codes = data.image.orientation
        display.move_to(self.viewer, task, self.task_plane(task, data), data.image.spacing, data.image.shape,
                        reset=reset, codes=codes)
        display.edge_letters(self.viewer, task, codes, data.image.spacing, data.image.shape)
        self._last_kind, self._last_axis = task.kind, task.axis

    def _update_overlay(self) -> None:
        task = self.task
        ov = display.text_overlay(self.viewer)
        if task is None:
            ov.visible = False
            return
        plane = self.task_plane(task) if self._region is not None else task.index
        order = self.visible_order()
        position = (order.index(self.current) + 1, len(order)) if self.current in order else None
        ov.text = display.overlay_text(task, self.store.where(task), plane,
                                       int(self.viewer.dims.current_step[task.axis]), planes=self.planes(),
                                       visited=self.store.task_state(task).get("visited_planes", []),
                                       position=position)
        ov.color = "yellow" if "OFF THE TASK" in ov.text else "white"
        ov.visible = True

    # ------------------------------------------------------------------ painting confined to the task
    def _on_paint(self, event) -> None:
        # napari emits the paint event of a single (non-stroke) edit *before* writing the voxels, so
        # the check runs once control is back in the event loop (and before any save).
        self._pending_atoms.extend(event.value)
        self.timer.touch()
        if not self._flush_scheduled:
            self._flush_scheduled = True
            from qtpy.QtCore import QTimer

            QTimer.singleShot(0, self.check_edits)

    def check_edits(self) -> int:
        """Undo (with a message) every voxel painted outside the task since the last check; returns how many."""
        self._flush_scheduled = False
        atoms, self._pending_atoms = self._pending_atoms, []
        layer = self.layer("labels")
        if not atoms or layer is None:
            return 0
        sl, region = self._region if self._region is not None else (None, None)
        outside, n_out, n_in = edits.split_edits(atoms, sl, region)
        for coords, old in outside:
            layer.data[coords] = old
        if n_in and self.task is not None:
            self.store.task_state(self.task)["started"] = True
        if n_out:
            self.outside_reverted += n_out
            layer.refresh()
            task = self.task
            where = "no task is open" if task is None else f"only {self.store.where(task)} of {task.case_id} is saved"
            self.notify(f"{n_out} voxel(s) painted outside the task were undone: {where}", "warning")
        return n_out

    # ------------------------------------------------------------------ saving
    def save(self) -> list[Path]:
        """Write the current task's labels (finished -> annotations/, unfinished -> drafts/), atomically.

        Only the planes that changed are recompressed. Returns the files written.
        """
        self.check_edits()
        task = self.task
        if task is None or self._entry is None:
            return []
        state = self.store.task_state(task)
        if self.timer.running:
            state["seconds"] = round(self.timer.seconds, 3)
        state["status"] = task.status
        sl, region = self._region
        labels = self._entry.labels
        labels.store_task(sl, region, np.asarray(self._labels_data()[sl]), status=task.status,
                          started=bool(state["started"]))
        try:
            written = labels.write()
            self._entry.stamps = file_stamps((labels.final_path, labels.draft_path))
            self.store.save_progress(task.case_id, self.user)
        except OSError as exc:
            self.notify(f"could not save {task.case_id}: {exc}. Your painting is still in the viewer; "
                        "free disk space or fix permissions, then save again", "error")
            return []
        self.last_saved = _dt.datetime.now().strftime("%H:%M:%S")
        return written

    def _labels_data(self) -> np.ndarray:
        layer = self.layer("labels")
        return layer.data if layer is not None else self._entry.working  # the layer is gone when napari closes

    def _pause_timer(self) -> None:
        if self.task is not None and self.timer.running:
            self.store.task_state(self.task)["seconds"] = round(self.timer.stop(), 3)

    # ------------------------------------------------------------------ statuses
    def _check_values(self) -> str | None:
        sl, region = self._region
        return edits.bad_values(np.asarray(self._labels_data()[sl])[region], self.store.label_map)

    def _question(self, task: Task) -> tuple[str, str] | None:
        """What to ask before *Done*: planes of a supervoxel never looked at, or a unit painted empty."""
        missing = self.unvisited_planes()
        if missing:
            return ("planes", f"planes {edits.plane_ranges(missing)} of {self.store.where(task)} were never shown; "
                              "look through them (scroll), or press Done again to save them as they are")
        sl, region = self._region
        painted = np.asarray(self._labels_data()[sl])[region]
        if not (painted > 0).any() and not user_preferences(self.user).get("empty_done_confirmed"):
            return ("empty", f"nothing is painted in {self.store.where(task)}: press Done again to mark it as "
                             "containing no structure (asked once; remembered for you)")
        return None

    def mark_done(self, advance: bool = True, *, confirm: bool = False) -> bool:
        """Finish the open task. Unseen supervoxel planes, or an empty unit, are asked about first: the
        call returns False with the question, and a second call for the same task (or ``confirm``)
        finishes it."""
        task = self.task
        if task is None:
            return False
        self.check_edits()
        self.revert_outside()
        problem = self._check_values()
        if problem:
            self.notify(f"task {task.task_id} not marked done: {problem}", "error")
            return False
        question = None if confirm else self._question(task)
        if question is not None:
            if self._confirm != (task.task_id, question[0]):
                self._confirm = (task.task_id, question[0])
                self.notify(question[1], "warning")
                return False
            if question[0] == "empty":  # asked once: this annotator's answer is remembered
                remember_preference(self.user, "empty_done_confirmed", True)
        self._confirm = None
        state = self.store.task_state(task)
        state["started"] = True
        task.status = "done"
        seconds = self.timer.stop()
        state["seconds"] = round(seconds, 3)
        if not state.get("logged"):  # kept with the status, so a kill before the log line loses nothing
            state["log_record"] = self._log_record(task, seconds)
        self.save()  # (1) labels into annotations/, (2) progress: done + the log record
        if not state.get("logged"):
            self._append_log(state["log_record"])  # (3)
            state["logged"] = True
            self.store.save_progress(task.case_id, self.user)  # (4)
        self._write_statuses()  # (5); a kill anywhere is repaired by RoundStore.reconcile on opening
        spent, budget = self.round_seconds()
        left = [t for t in self.tasks[len(self.tasks) - self.reserve:] if t.status == "todo"] if self.reserve else []
        if budget and left and spent >= budget and spent - seconds < budget:  # said once, when it happens
            self.notify(f"this round's budget is spent ({spent:.0f} of {budget:.0f} s logged): the "
                        f"{len(left)} reserve task(s) left are optional", "info")
        if advance and not self._advance():
            self.timer.start(seconds)
        elif not advance:
            self.timer.start(seconds)
        self._changed()
        return True

    def mark_skipped(self, advance: bool = True) -> bool:
        task = self.task
        if task is None:
            return False
        task.status = "skipped"
        self.save()
        self._write_statuses()
        if advance:
            self._advance()
        self._changed()
        return True

    def reopen(self) -> None:
        """Set the current task back to todo (its labels move back to the drafts)."""
        if self.task is not None:
            self.task.status = "todo"
            self.save()
            self._write_statuses()
            self._changed()

    def _write_statuses(self) -> None:
        try:
            self.store.write_statuses()
        except AnnotationFileError as exc:
            self.notify(f"statuses not written to tasks.json: {exc} (they are kept in annotations/)", "warning")

    def _log_record(self, task: Task, seconds: float) -> dict:
        sl, region = self._region
        pred = self._entry.data.prediction
        start = (np.asarray(pred[sl]) if self.store.task_state(task).get("from_prediction") and pred is not None
                 else None)
        return edits.log_record(task, region, np.asarray(self._labels_data()[sl]),
                                spacing=self._entry.data.image.spacing, label_map=self.store.label_map,
                                seconds=seconds, start=start, user=self.user,
                                round=str(self.store.round_dir.resolve()), idle_s=self.timer.idle_s)

    def _append_log(self, record: dict) -> None:
        try:
            append_annotation_log(self.store.log_path, record)
        except OSError as exc:
            self.notify(f"time not logged to {self.store.log_path}: {exc}", "warning")

    # ------------------------------------------------------------------ navigation
    def _neighbour(self, step: int, only_todo: bool = False) -> int | None:
        return edits.neighbour(self.visible_order(), self.current, [t.status for t in self.tasks], step,
                               only_todo=only_todo)

    def _advance(self) -> bool:
        nxt = self._neighbour(+1, only_todo=True)
        if nxt is None:
            todo = [i for i in self.order if self.tasks[i].status == "todo"]
            nxt = todo[0] if todo else None
        if nxt is None:
            self.notify("all tasks of this round are finished: run `medal ingest` to merge them", "info")
            return False
        return self.open_task(nxt)

    def next_task(self) -> bool:
        nxt = self._neighbour(+1)
        return self.open_task(nxt) if nxt is not None else False

    def previous_task(self) -> bool:
        prv = self._neighbour(-1)
        return self.open_task(prv) if prv is not None else False

    def first_task(self) -> bool:
        """Open the first unfinished task (by value per cost), or the first task."""
        todo = [i for i in self.order if self.tasks[i].status == "todo"]
        target = todo[0] if todo else (self.order[0] if self.order else None)
        return self.open_task(target) if target is not None else False

    # ------------------------------------------------------------------ end
    def close(self) -> None:
        """Save, release the lock, stop the prefetcher. Safe to call twice."""
        if self._closed:
            return
        if self._overlay_timer is not None:
            self._overlay_timer.stop()
        try:
            self.save()
            self._pause_timer()
            if self.task is not None:
                self.store.save_progress(self.task.case_id, self.user)
        finally:
            self._closed = True
            if self._lock is not None:
                self._lock.release()
            self._cache.close()
            for cb in (self._on_mouse,):
                for lst in (self.viewer.mouse_move_callbacks, self.viewer.mouse_drag_callbacks):
                    if cb in lst:
                        lst.remove(cb)
            try:
                self.viewer.dims.events.current_step.disconnect(self._on_step)
            except Exception:
                pass


def _preferences_path():
    import os
    from pathlib import Path

    base = os.environ.get("MEDAL_CONFIG_DIR") or os.path.join(os.path.expanduser("~"), ".config", "medal")
    return Path(base) / "napari.json"


def user_preferences(user: str) -> dict:
    """What an annotator answered before (``$MEDAL_CONFIG_DIR/napari.json``, per user name)."""
    import json

    try:
        return dict(json.loads(_preferences_path().read_text()).get("users", {}).get(user, {}))
    except (OSError, ValueError, AttributeError):
        return {}


def remember_preference(user: str, key: str, value) -> None:
    import json

    from medal.data import atomic_write_json

    path = _preferences_path()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data.setdefault("users", {}).setdefault(user, {})[key] = value
    try:
        atomic_write_json(path, data)
    except OSError:
        pass  # a read-only home: asked again next time, nothing lost
