"""An annotation session: the tasks of one round in one napari viewer.

Holds no Qt widget (the dock widget in :mod:`medal_napari.widget` drives it), so every behaviour can
be scripted and tested through the viewer: open a task, paint through the Labels layer, save, mark
done or skipped. Layers it manages (reused by name): ``image``, ``uncertainty``, ``prediction``,
``labels`` (what the expert paints) and ``task region`` (the outline of the current task).
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as _dt
import getpass
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from medal.costs import append_annotation_log, effort_features
from medal.data import UNLABELED
from medal.tasks import Task

from .lock import CaseLock, LockHeld
from .store import AnnotationFileError, CaseData, CaseLabels, RoundStore
from .timing import ActiveTimer

__all__ = ["AnnotationSession", "LAYERS"]

LAYERS = {"image": "image", "uncertainty": "uncertainty", "prediction": "prediction", "labels": "labels",
          "region": "task region"}
FILTERS = ("all", "todo", "done", "skipped")


@dataclass
class _Cached:
    data: CaseData
    labels: CaseLabels | None = None
    working: np.ndarray | None = None
    stamps: tuple | None = None


def _stamp(paths) -> tuple:
    out = []
    for p in paths:
        try:
            st = p.stat()
            out.append((st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


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
    start_from_prediction : bool
        Fill a task's region with the model's prediction when it is first opened, for correction.
    """

    def __init__(self, round_path, viewer, *, user: str | None = None, idle_s: float = 60.0,
                 start_from_prediction: bool = False, clock: Callable[[], float] = time.monotonic,
                 cache_cases: int = 3, prefetch: bool = True):
        self.store = RoundStore(round_path)
        self.viewer = viewer
        self.user = user or getpass.getuser()
        self.token = secrets.token_hex(8)
        self.timer = ActiveTimer(idle_s, clock)
        self.start_from_prediction = start_from_prediction
        self.current: int | None = None
        self.case_id: str | None = None
        self.filter = "all"
        self.messages: list[tuple[str, str]] = []  # (level, text): everything the user was told
        self.outside_reverted = 0  # voxels painted outside the current task and not kept
        self.last_saved: str = ""
        self.listeners: list[Callable[[], None]] = []
        self._lock: CaseLock | None = None
        self._entry: _Cached | None = None
        self._region: tuple | None = None
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._cache_cases = max(int(cache_cases), 1)
        self._pool = cf.ThreadPoolExecutor(1, thread_name_prefix="medal-prefetch") if prefetch else None
        self._pending: dict[str, cf.Future] = {}
        self._closed = False
        self._pending_atoms: list = []
        self._last_kind = ""
        self._flush_scheduled = False
        t = self.tasks
        self.order = sorted(range(len(t)), key=lambda i: (-t[i].score / max(t[i].predicted_cost_s, 1e-9), i))
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
        name = LAYERS[key]
        return self.viewer.layers[name] if name in self.viewer.layers else None

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

    def seconds(self, task: Task) -> float:
        if task is self.task and self.timer.running:
            return self.timer.seconds
        return float(self.store.task_state(task).get("seconds", 0.0))

    # ------------------------------------------------------------------ activity -> time
    def _on_mouse(self, viewer, event):
        self.timer.touch()

    def _on_step(self, event=None):
        self.timer.touch()
        self._update_overlay()

    def activity(self) -> None:
        """Something the expert did (key press, widget click): counts towards active time."""
        self.timer.touch()

    # ------------------------------------------------------------------ case cache
    def _load(self, case_id: str) -> CaseData:
        return self.store.load_case(case_id, [t for t in self.tasks if t.case_id == case_id])

    def _cached(self, case_id: str) -> _Cached:
        if case_id in self._cache:
            self._cache.move_to_end(case_id)
            return self._cache[case_id]
        fut = self._pending.pop(case_id, None)
        data = fut.result() if fut is not None else self._load(case_id)
        entry = _Cached(data)
        self._cache[case_id] = entry
        while len(self._cache) > self._cache_cases:
            old = next(iter(self._cache))
            if old == self.case_id:
                self._cache.move_to_end(old)
                continue
            self._cache.pop(old)
        return entry

    def _prefetch(self, case_id: str) -> None:
        if self._pool is None or case_id in self._cache or case_id in self._pending:
            return
        self._pending[case_id] = self._pool.submit(self._load, case_id)

    # ------------------------------------------------------------------ opening a task
    def open_task(self, index: int) -> bool:
        """Save the current task, then show task ``index``. False (with a message) if it cannot be opened."""
        if self._closed:
            return False
        task = self.tasks[index]
        if self.current is not None and self.current != index:
            self.save()
            self._pause_timer()
        lock = None
        try:
            if task.case_id != self.case_id:
                lock = CaseLock(self.store.ann_dir / f"{task.case_id}.lock", self.user, self.token)
                lock.acquire()
                entry = self._cached(task.case_id)
                paths = (self.store.ann_dir / f"{task.case_id}.nii.gz", self.store.draft_dir / f"{task.case_id}.nii.gz")
                stamps = _stamp(paths)
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
            self._show_case(entry)
            for w in entry.data.warnings:
                self.notify(w, "warning")
        self.current = index
        self.outside_reverted = 0
        self._region = self.store.region(task, entry.data)
        state = self.store.task_state(task)
        if (self.start_from_prediction and not state["started"] and task.status == "todo"
                and entry.data.prediction is not None):
            sl, region = self._region
            view = entry.working[sl]
            view[region] = entry.data.prediction[sl][region]
            state["started"] = True
            self.layer("labels").refresh()
        self._show_region(task, entry.data)
        self._move_to(task, entry.data, new_case)
        self.timer.start(float(state.get("seconds", 0.0)))
        self._update_overlay()
        nxt = self._neighbour(+1)
        if nxt is not None and self.tasks[nxt].case_id != self.case_id:
            self._prefetch(self.tasks[nxt].case_id)
        self._changed()
        return True

    def _set_layer(self, key, kind, data, **props):
        layer = self.layer(key)
        if layer is not None and not isinstance(layer, kind):
            self.viewer.layers.remove(layer)
            layer = None
        if layer is None:
            add = {"Image": self.viewer.add_image, "Labels": self.viewer.add_labels}[kind.__name__]
            layer = add(data, name=LAYERS[key], **props)
            return layer, True
        # every assignment re-slices the layer: skip the ones that change nothing
        if layer.data is not data:
            current = layer.data
            if not (isinstance(current, np.ndarray) and current.shape == data.shape and current.size < 1_000_000
                    and np.array_equal(current, data)):
                layer.data = data
        for k, v in props.items():
            if not np.array_equal(np.asarray(getattr(layer, k)), np.asarray(v)):
                setattr(layer, k, v)
        return layer, False

    def _show_case(self, entry: _Cached) -> None:
        from napari.layers import Image, Labels
        from napari.utils.colormaps import DirectLabelColormap

        d = entry.data
        scale = tuple(d.image.spacing)
        img, _ = self._set_layer("image", Image, d.image.array, scale=scale)
        img.contrast_limits_range = d.contrast
        img.contrast_limits = d.contrast
        if d.uncertainty is not None:
            unc, new = self._set_layer("uncertainty", Image, d.uncertainty, scale=scale)
            unc.contrast_limits_range = d.uncertainty_limits
            unc.contrast_limits = d.uncertainty_limits
            if new:
                unc.colormap, unc.blending, unc.opacity = "inferno", "additive", 0.5
            unc.metadata["measure"] = d.uncertainty_name
        elif self.layer("uncertainty") is not None:
            self.viewer.layers.remove(self.layer("uncertainty"))
        if d.prediction is not None:
            pred, new = self._set_layer("prediction", Labels, d.prediction, scale=scale)
            if new:
                pred.contour, pred.opacity, pred.visible = 1, 0.7, False
                pred.colormap = self._colormap()
        elif self.layer("prediction") is not None:
            self.viewer.layers.remove(self.layer("prediction"))
        lab, new = self._set_layer("labels", Labels, entry.working, scale=scale)
        if new:
            lab.colormap = self._colormap()
            lab.opacity = 0.6
            lab.events.paint.connect(self._on_paint)
        lab.selected_label = max(lab.selected_label, 1)
        lab.metadata["case_id"] = d.case_id
        self.viewer.layers.selection.active = lab

    def _colormap(self):
        from napari.utils.colormaps import DirectLabelColormap

        colors = {0: "transparent", None: "#ff00ff"}  # magenta: a value that is not a class of the dataset
        colors.update(self.store.label_colors)
        return DirectLabelColormap(color_dict=colors)

    def _show_region(self, task: Task, data: CaseData) -> None:
        from napari.layers import Labels
        from napari.utils.colormaps import DirectLabelColormap

        sl, region = self._region
        scale = np.asarray(data.image.spacing)
        # one voxel of padding in-plane, so the outline of a region that touches the image border
        # (every slice task) is drawn too
        pad = [(0, 0) if d == task.axis else (1, 1) for d in range(3)]
        shown = np.pad(region.astype(np.uint8), pad)
        translate = tuple((float(s.start) - (0 if d == task.axis else 1)) * float(sc)
                          for d, (s, sc) in enumerate(zip(sl, scale)))
        layer, new = self._set_layer("region", Labels, shown, scale=tuple(scale), translate=translate)
        if new:
            layer.contour = 1
            layer.colormap = DirectLabelColormap(color_dict={0: "transparent", 1: "yellow", None: "yellow"})
            layer.opacity = 1.0
        layer.metadata["task_id"] = task.task_id
        lab = self.layer("labels")
        if lab is not None:  # keep painting on the labels layer, above the outline
            self.viewer.layers.selection.active = lab

    def task_plane(self, task: Task, data: CaseData | None = None) -> int:
        """The plane shown for a task: its slice, or the plane holding most of its supervoxel."""
        if task.kind == "slice":
            return task.index
        sl, region = self._region if data is None else self.store.region(task, data)
        other = tuple(d for d in range(3) if d != task.axis)
        return int(sl[task.axis].start + np.argmax(region.sum(axis=other)))

    def _move_to(self, task: Task, data: CaseData, new_case: bool = True) -> None:
        v = self.viewer
        if v.dims.ndisplay != 2:
            v.dims.ndisplay = 2
        axis = task.axis
        order = (axis,) + tuple(d for d in range(3) if d != axis)
        if tuple(v.dims.order) != order:
            v.dims.order = order
        spacing = np.asarray(data.image.spacing, dtype=float)
        v.dims.set_point(axis, self.task_plane(task, data) * spacing[axis])
        if task.kind == "supervoxel" or new_case or self._last_kind == "supervoxel":
            v.reset_view()
        self._last_kind = task.kind
        if task.kind == "supervoxel":
            lo, hi = np.asarray(task.bbox[0], float), np.asarray(task.bbox[1], float)
            shown = [d for d in v.dims.order[-2:]]
            centre = ((lo + hi) / 2 * spacing)[shown]
            extent = max(float(((hi - lo) * spacing)[shown].max()), 1e-6)
            full = max(float((np.asarray(data.image.shape) * spacing)[shown].max()), 1e-6)
            v.camera.center = tuple(centre)
            # the region at about a third of the view, never closer than 64 voxels across
            voxels = float(np.asarray(data.image.shape)[shown].max())
            v.camera.zoom = v.camera.zoom * float(max(min(full / (extent * 3.0), voxels / 64.0, 4.0), 1.0))

    def _text_overlay(self):
        canvas = getattr(self.viewer, "canvas", None)  # napari >= 0.9
        overlays = getattr(canvas, "overlays", None)
        if overlays is not None and "text" in overlays:
            return overlays["text"]
        return self.viewer.text_overlay

    def _update_overlay(self) -> None:
        task = self.task
        ov = self._text_overlay()
        if task is None:
            ov.visible = False
            return
        plane = self.task_plane(task) if self._region is not None else task.index
        shown = int(self.viewer.dims.current_step[task.axis])
        text = f"{task.task_id} · {task.case_id} · {self.store.where(task)} · {task.status}"
        if task.kind == "slice" and shown != plane:
            text += f"\nOFF THE TASK: you are on plane {shown}, the task is plane {plane}; edits here are not saved"
        ov.text = text
        ov.color = "yellow" if "OFF THE TASK" in text else "white"
        ov.visible = True

    # ------------------------------------------------------------------ painting confined to the task
    def _inside(self, coords: tuple[np.ndarray, ...]) -> np.ndarray:
        if self._region is None:
            return np.zeros(len(coords[0]), dtype=bool)
        sl, region = self._region
        inside = np.ones(len(coords[0]), dtype=bool)
        for c, s in zip(coords, sl):
            inside &= (c >= s.start) & (c < s.stop)
        if inside.any():
            local = tuple(c[inside] - s.start for c, s in zip(coords, sl))
            inside[np.nonzero(inside)[0]] = region[local]
        return inside

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
        data = layer.data
        n_out = n_in = 0
        for atom in atoms:
            if hasattr(atom, "slice_key"):  # napari >= 0.6: a masked edit of a bounding box
                starts = [s.start or 0 for s in atom.slice_key]
                if atom.mask is None:
                    box = atom.old_values.shape
                    coords = tuple(g.ravel() + s for g, s in zip(np.indices(box), starts))
                    old = np.asarray(atom.old_values).ravel()
                else:
                    coords = tuple(n + s for n, s in zip(np.nonzero(atom.mask), starts))
                    old = np.asarray(atom.old_values).ravel()
            else:  # (indices, old values, new values)
                coords = tuple(np.asarray(i).ravel() for i in atom[0])
                old = np.broadcast_to(np.asarray(atom[1]), coords[0].shape)
            inside = self._inside(coords)
            out = ~inside
            if out.any():
                data[tuple(c[out] for c in coords)] = old[out]
                n_out += int(out.sum())
            n_in += int(inside.sum())
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
        values = np.asarray(self._labels_data()[sl])
        if task.status == "done":
            labels.final.assign(sl, values, where=region)
            labels.draft.assign(sl, np.uint8(UNLABELED), where=region)
        else:
            if state["started"]:
                labels.draft.assign(sl, values, where=region)
            labels.final.assign(sl, np.uint8(UNLABELED), where=region)
        try:
            written = labels.write()
            self._entry.stamps = _stamp((labels.final_path, labels.draft_path))
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
        values = np.asarray(self._labels_data()[sl])[region]
        bad = sorted(set(np.unique(values).tolist()) - set(range(self.store.n_classes)))
        if bad:
            names = ", ".join(f"{k} {v}" for k, v in sorted(self.store.label_names.items()))
            return f"label value(s) {bad} are not classes of this dataset ({names}); repaint them first"
        return None

    def mark_done(self, advance: bool = True) -> bool:
        task = self.task
        if task is None:
            return False
        self.check_edits()
        problem = self._check_values()
        if problem:
            self.notify(f"task {task.task_id} not marked done: {problem}", "error")
            return False
        state = self.store.task_state(task)
        state["started"] = True
        task.status = "done"
        seconds = self.timer.stop()
        state["seconds"] = round(seconds, 3)
        self.save()
        if not state.get("logged"):
            self._log(task, seconds)
            state["logged"] = True
            self.store.save_progress(task.case_id, self.user)
        self._write_statuses()
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

    def _log(self, task: Task, seconds: float) -> None:
        sl, region = self._region
        spacing = self._entry.data.image.spacing
        values = np.where(region, np.asarray(self._labels_data()[sl]), 0)
        feats = effort_features(region.astype(np.int32), values, axis=task.axis, spacing=spacing,
                                n_classes=self.store.n_classes, ids=np.array([1]))
        record = {k: float(v[0]) for k, v in feats.items()}
        record.update({"seconds": round(float(seconds), 3), "task_id": task.task_id, "case_id": task.case_id,
                       "kind": task.kind, "axis": task.axis, "index": task.index, "supervoxel": task.supervoxel,
                       "predicted_cost_s": task.predicted_cost_s, "user": self.user,
                       "round": str(self.store.round_dir.resolve()),
                       "finished": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                       "idle_s": self.timer.idle_s, "n_classes": self.store.n_classes})
        try:
            append_annotation_log(self.store.log_path, record)
        except OSError as exc:
            self.notify(f"time not logged to {self.store.log_path}: {exc}", "warning")

    # ------------------------------------------------------------------ navigation
    def _neighbour(self, step: int, only_todo: bool = False) -> int | None:
        order = self.visible_order()
        if not order:
            return None
        pos = order.index(self.current) if self.current in order else -1
        for k in range(1, len(order) + 1):
            j = pos + step * k
            if not 0 <= j < len(order):
                return None
            if not only_todo or self.tasks[order[j]].status == "todo":
                return order[j]
        return None

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
        try:
            self.save()
            self._pause_timer()
            if self.task is not None:
                self.store.save_progress(self.task.case_id, self.user)
        finally:
            self._closed = True
            if self._lock is not None:
                self._lock.release()
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            for cb in (self._on_mouse,):
                for lst in (self.viewer.mouse_move_callbacks, self.viewer.mouse_drag_callbacks):
                    if cb in lst:
                        lst.remove(cb)
            try:
                self.viewer.dims.events.current_step.disconnect(self._on_step)
            except Exception:
                pass
