"""The dock widget: task queue, class picker, done/skip/next, autosave, keyboard shortcuts."""

from __future__ import annotations

import numpy as np


from qtpy.QtCore import Qt, QTimer
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (QApplication, QCheckBox, QComboBox, QFileDialog, QHBoxLayout, QHeaderView, QLabel, QPushButton,
                            QProgressBar, QSlider, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from .display import WINDOWS, drag_window, window_limits
from .session import FILTERS, AnnotationSession
from .store import AnnotationFileError

#: the window a case opens in (the case's own percentiles), and the one a CT dataset opens in instead
AUTO_WINDOW, CT_WINDOW = "auto (this case)", "CT soft tissue"

__all__ = ["AnnotationWidget", "SHORTCUTS"]

#: napari key -> (action, what it does); none of these is bound by napari itself
SHORTCUTS = {
    "Shift-N": ("next", "next task"), "PageDown": ("next", "next task"),
    "Shift-B": ("previous", "previous task"), "PageUp": ("previous", "previous task"),
    "Shift-D": ("done", "mark done (saves, logs the time, opens the next task)"),
    "Shift-S": ("skip", "skip the task"),
    "Shift-U": ("toggle_uncertainty", "show/hide the uncertainty overlay"),
}
COLUMNS = ["task", "case", "where", "pred. s", "score", "value/s", "status", "active s"]
STATUS_COLORS = {"todo": None, "done": "#2e7d32", "skipped": "#9e9e9e"}


class AnnotationWidget(QWidget):
    """medal tasks: open a round, work through its tasks, save safely.

    Parameters
    ----------
    napari_viewer : napari.Viewer
    round_path : path, optional
        Round folder or ``tasks.json`` to open now.
    autosave_s : float
        Save the open task every this many seconds (0 = only on switch/done).
    idle_s : float
        Pauses longer than this are not counted as annotation time.
    user : str, optional
        Name recorded in locks and the time log (default: login name).
    """

    def __init__(self, napari_viewer, round_path=None, *, autosave_s: float = 30.0, idle_s: float = 60.0,
                 user: str | None = None, start_from_prediction: bool | None = None):
        super().__init__()
        self.viewer = napari_viewer
        self.setMaximumWidth(420)  # the canvas, not the task list, gets the screen
        self.session: AnnotationSession | None = None
        self.idle_s, self.user = idle_s, user
        self.autosaves = 0
        self._windowed_case: str | None = None

        self.round_label = QLabel("no round open")
        self.round_label.setWordWrap(True)
        open_btn = QPushButton("Open round…")
        open_btn.clicked.connect(self._choose_round)
        top = QHBoxLayout()
        top.addWidget(self.round_label, 1)
        top.addWidget(open_btn)

        self.filter_box = QComboBox()
        self.filter_box.addItems(list(FILTERS))
        self.filter_box.currentTextChanged.connect(self._set_filter)
        self.progress_label = QLabel("")
        frow = QHBoxLayout()
        frow.addWidget(QLabel("show"))
        frow.addWidget(self.filter_box)
        frow.addWidget(self.progress_label, 1)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.verticalHeader().setVisible(False)
        self.table.cellClicked.connect(self._row_clicked)
        self.table.setToolTip("ordered by value per predicted second; click a row to open the task")

        self.class_box = QComboBox()
        self.class_box.currentIndexChanged.connect(self._class_chosen)
        crow = QHBoxLayout()
        crow.addWidget(QLabel("paint"))
        crow.addWidget(self.class_box, 1)

        self.show_unc = QCheckBox("uncertainty overlay (Shift-U)")
        self.show_unc.setChecked(True)
        self.show_unc.toggled.connect(self._toggle_unc_layer)
        self.unc_opacity = QSlider(Qt.Orientation.Horizontal)
        self.unc_opacity.setRange(0, 100)
        self.unc_opacity.setValue(50)
        self.unc_opacity.setToolTip("opacity of the uncertainty overlay")
        self.unc_opacity.valueChanged.connect(self._set_unc_opacity)
        urow = QHBoxLayout()
        urow.addWidget(self.show_unc)
        urow.addWidget(self.unc_opacity, 1)
        self.window_box = QComboBox()
        self.window_box.addItems(list(WINDOWS))
        self.window_box.setToolTip("window/level preset; Shift + right-drag on the image adjusts it")
        self.window_box.currentTextChanged.connect(self.set_window)
        wrow = QHBoxLayout()
        wrow.addWidget(QLabel("window"))
        wrow.addWidget(self.window_box, 1)
        self.show_pred = QCheckBox("show model prediction (outline)")
        self.show_pred.toggled.connect(self._toggle_pred_layer)
        self.from_pred = QCheckBox("start new tasks from the model's prediction")
        # None: as each round was priced (costs.annotation: correct -> on); a click is the user's choice
        self._from_pred_choice = start_from_prediction
        self.from_pred.setChecked(bool(start_from_prediction))
        self.from_pred.toggled.connect(self._toggle_from_pred)

        self.buttons = {}
        brow = QHBoxLayout()
        for key, text, tip in (("previous", "◀ Prev", "Shift-B / PageUp"), ("next", "Next ▶", "Shift-N / PageDown"),
                               ("done", "Done ✓", "Shift-D: save, log the time, open the next task"),
                               ("skip", "Skip", "Shift-S"), ("reopen", "Reopen", "set back to todo"),
                               ("save", "Save", "autosaves anyway")):
            b = QPushButton(text)
            b.setToolTip(tip)
            b.clicked.connect(getattr(self, f"action_{key}"))
            brow.addWidget(b)
            self.buttons[key] = b

        self.finish_btn = QPushButton("Finish round → next round")
        self.finish_btn.setToolTip("ingest this round's finished annotations, train and score, open the next round")
        self.finish_btn.clicked.connect(self.finish_round)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.worker = None

        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.message_label = QLabel("")
        self.message_label.setWordWrap(True)
        help_text = " · ".join([f"{k}: {v[1]}" for k, v in SHORTCUTS.items() if not k.startswith("Page")]
                               + ["[ / ]: smaller / larger brush (napari's own)", "Shift+right-drag: window/level"])
        keys = QLabel(help_text)
        keys.setWordWrap(True)
        keys.setStyleSheet("color: #999;")

        layout = QVBoxLayout(self)
        for item in (top, frow):
            layout.addLayout(item)
        layout.addWidget(self.table, 1)
        layout.addLayout(crow)
        layout.addLayout(wrow)
        layout.addLayout(urow)
        for w in (self.show_pred, self.from_pred):
            layout.addWidget(w)
        layout.addLayout(brow)
        layout.addWidget(self.finish_btn)
        layout.addWidget(self.progress)
        for w in (self.status_label, self.message_label, keys):
            layout.addWidget(w)

        self.autosave_timer = QTimer(self)
        self.autosave_timer.timeout.connect(self.autosave)
        self.set_autosave(autosave_s)
        self.clock_timer = QTimer(self)  # refreshes the active-seconds display
        self.clock_timer.timeout.connect(self._refresh_status)
        self.clock_timer.start(1000)

        for key, (action, _) in SHORTCUTS.items():
            self.viewer.bind_key(key, self._key_handler(action), overwrite=True)
        self.viewer.mouse_drag_callbacks.append(self._drag_window)
        if round_path is not None:
            self.open_round(round_path)
        else:  # the expert is still choosing a round: load what napari's first layers need meanwhile
            from .warmup import warm_glyphs, warm_up, warm_visuals

            QTimer.singleShot(0, lambda: (warm_up(), warm_glyphs(self.viewer), warm_visuals(self.viewer)))

    # ------------------------------------------------------------------ opening
    def _choose_round(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a medal round", "", "medal tasks (tasks.json)")
        if path:
            self.open_round(path)

    def open_round(self, path) -> bool:
        """Open a round folder (or its tasks.json) and its first unfinished task (the canvas is drawn
        once, when all of it is in place: the dock's table and labels can resize the canvas)."""
        from .display import hold_drawing

        with hold_drawing(self.viewer):
            return self._open_round(path)

    def _open_round(self, path) -> bool:
        self.close_session()
        try:
            self.session = AnnotationSession(path, self.viewer, user=self.user, idle_s=self.idle_s,
                                             start_from_prediction=self._from_pred_choice)
            self.from_pred.blockSignals(True)  # shows the session's setting; not a choice of the user's
            self.from_pred.setChecked(self.session.start_from_prediction)
            self.from_pred.blockSignals(False)
        except AnnotationFileError as exc:
            self._message(f"cannot open {path}: {exc}", "error")
            try:
                from napari.utils.notifications import show_error

                show_error(f"cannot open {path}: {exc}")
            except Exception:
                pass
            return False
        s = self.session
        s.listeners.append(self._session_changed)
        # napari deletes its dock widgets when it closes: save and unlock then (the session outlives us)
        self.destroyed.connect(s.close)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(s.close)
        self.round_label.setText(f"<b>{s.store.round_dir.name}</b> · {len(s.tasks)} tasks · "
                                 f"{s.store.tasklist.meta.get('strategy', '?')} · {s.store.round_dir}")
        self.class_box.blockSignals(True)
        self.class_box.clear()
        for value, name in sorted(s.store.label_names.items()):
            self.class_box.addItem(f"{value}: {name}", value)
            color = s.store.label_colors.get(value)
            if color:
                self.class_box.setItemData(self.class_box.count() - 1, QColor(color), Qt.ItemDataRole.DecorationRole)
        self.class_box.blockSignals(False)
        if self.window_box.currentText() == AUTO_WINDOW and s.store.modality == "ct":
            # Hounsfield units: a radiologist reads CT in a soft-tissue window, not the volume's percentiles
            # (air to bone); any preset chosen in this session stays as chosen
            self.window_box.blockSignals(True)
            self.window_box.setCurrentText(CT_WINDOW)
            self.window_box.blockSignals(False)
        if not s.first_task():  # opening a task fills the table (the session reports the change)
            self._fill_table()
        # the canvas only has its final size once Qt has laid the window out (dock included): fit then,
        # or a fresh profile shows a slice cut off at both sides
        self._fitted_size = self._canvas_size()
        QTimer.singleShot(0, lambda: self.fit_view(only_if_resized=True))
        return True

    def _canvas_size(self):
        try:
            size = self.viewer.window._qt_viewer.canvas.native.size()
            return size.width(), size.height()
        except Exception:  # noqa: BLE001 - private napari API: then always fit
            return None

    def fit_view(self, only_if_resized: bool = False) -> None:
        """Fit the open task in the canvas as it is now (after the window's layout); with
        ``only_if_resized``, only if the canvas changed size since the task was shown."""
        s = self.session
        if s is None or s.task is None or s._entry is None:
            return
        size = self._canvas_size()
        if only_if_resized and size is not None and size == getattr(self, "_fitted_size", None):
            return
        self._fitted_size = size
        try:
            self.viewer.reset_view()
            s._move_to(s.task, s._entry.data, new_case=False)
        except RuntimeError:  # the viewer is closing
            pass

    def close_session(self) -> None:
        """Save, unlock and release the open session. Safe to call again, and after napari has
        deleted this widget (the normal way out of ``medal annotate``)."""
        if self.session is not None:
            s, self.session = self.session, None
            s.close()
            # drop the connections made in open_round, or the closed session (and its cached
            # volumes) would live as long as the application
            app = QApplication.instance()
            signals = [app.aboutToQuit] if app is not None else []
            try:
                signals.append(self.destroyed)
            except RuntimeError:  # the C++ widget is gone (napari closed): its signal went with it
                pass
            for signal in signals:
                try:
                    signal.disconnect(s.close)
                except (TypeError, RuntimeError):  # already gone with the widget
                    pass

    # ------------------------------------------------------------------ table
    def _fill_table(self) -> None:
        s = self.session
        self.table.setRowCount(0)
        if s is None:
            return
        rows = s.visible_order()
        # one repaint and one column sizing for the whole table, not one per cell (with columns sized to
        # their contents on every insert, 24 rows took 120-160 ms on a loaded 2-core machine)
        header = self.table.horizontalHeader()
        self.table.setUpdatesEnabled(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        try:
            self._fill_rows(s, rows)
        finally:
            header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
            self.table.setUpdatesEnabled(True)
        done = sum(t.status == "done" for t in s.tasks)
        skipped = sum(t.status == "skipped" for t in s.tasks)
        self.progress_label.setText(f"{done} done · {skipped} skipped · {len(s.tasks) - done - skipped} to do")

    def _fill_rows(self, s, rows) -> None:
        self.table.setRowCount(len(rows))
        for r, i in enumerate(rows):
            t = s.tasks[i]
            cells = [t.task_id, t.case_id, s.store.where(t), f"{t.predicted_cost_s:.0f}", f"{t.score:.3g}",
                     f"{t.score / max(t.predicted_cost_s, 1e-9):.3g}", t.status, f"{s.seconds(t):.0f}"]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, i)
                if STATUS_COLORS.get(t.status):
                    item.setForeground(QColor(STATUS_COLORS[t.status]))
                self.table.setItem(r, c, item)
            if i == s.current:
                self.table.selectRow(r)

    def row_of(self, index: int) -> int | None:
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).data(Qt.ItemDataRole.UserRole) == index:
                return r
        return None

    def _row_clicked(self, row: int, col: int) -> None:
        if self.session is not None:
            self.session.activity()
            self.session.open_task(self.table.item(row, 0).data(Qt.ItemDataRole.UserRole))

    def _set_filter(self, text: str) -> None:
        if self.session is not None:
            self.session.filter = text
            self._fill_table()

    def _session_changed(self) -> None:
        self._fill_table()
        self._refresh_status()
        s = self.session
        if s is not None and s.messages:
            level, text = s.messages[-1]
            self._message(text, level)
        lab = s.layer("labels") if s is not None else None
        if lab is not None:
            idx = self.class_box.findData(int(lab.selected_label))
            if idx >= 0 and idx != self.class_box.currentIndex():
                self.class_box.blockSignals(True)
                self.class_box.setCurrentIndex(idx)
                self.class_box.blockSignals(False)
        unc = s.layer("uncertainty") if s is not None else None
        if unc is not None:
            unc.visible = self.show_unc.isChecked()
            unc.opacity = self.unc_opacity.value() / 100.0
        if s is not None and s.case_id != self._windowed_case:
            self._windowed_case = s.case_id
            if WINDOWS.get(self.window_box.currentText()) is not None:  # a chosen preset outlives the case
                self.set_window(self.window_box.currentText())
        pred = s.layer("prediction") if s is not None else None
        if pred is not None:
            pred.visible = self.show_pred.isChecked()

    def _message(self, text: str, level: str) -> None:
        color = {"error": "#e53935", "warning": "#fb8c00"}.get(level, "#9e9e9e")
        self.message_label.setStyleSheet(f"color: {color};")
        self.message_label.setText(text)

    def _refresh_status(self) -> None:
        s = self.session
        if s is None or s.task is None:
            self.status_label.setText("")
            return
        t = s.task
        saved = f" · saved {s.last_saved}" if s.last_saved else ""
        spent, budget = s.round_seconds()
        round_text = f" · round {spent:.0f} of {budget:.0f} s" if budget else ""
        if s.is_reserve(t):
            round_text += " · reserve task (only while the round is under its budget)"
        self.status_label.setText(f"<b>{t.task_id}</b> {t.case_id} {s.store.where(t)} · {t.status} · predicted {t.predicted_cost_s:.0f} s"
                                  f" · active {s.seconds(t):.0f} s{round_text}{saved} · {s.user}")

    # ------------------------------------------------------------------ actions
    def _key_handler(self, action: str):
        def handler(viewer):
            if self.session is not None:
                self.session.activity()
            getattr(self, f"action_{action}")()
        handler.__name__ = f"medal_{action}"
        return handler

    def action_next(self) -> None:
        if self.session is not None:
            self.session.next_task()

    def action_previous(self) -> None:
        if self.session is not None:
            self.session.previous_task()

    def action_done(self) -> None:
        if self.session is not None:
            self.session.mark_done()

    def action_skip(self) -> None:
        if self.session is not None:
            self.session.mark_skipped()

    def action_reopen(self) -> None:
        if self.session is not None:
            self.session.reopen()

    def action_save(self) -> None:
        if self.session is not None:
            written = self.session.save()
            self._message(f"saved {', '.join(p.name for p in written) or '(nothing changed)'}", "info")
            self._refresh_status()

    def action_toggle_uncertainty(self) -> None:
        self.show_unc.setChecked(not self.show_unc.isChecked())

    def _toggle_unc_layer(self, on: bool) -> None:
        layer = self.session.layer("uncertainty") if self.session is not None else None
        if layer is not None:
            layer.visible = on

    def _toggle_pred_layer(self, on: bool) -> None:
        layer = self.session.layer("prediction") if self.session is not None else None
        if layer is not None:
            layer.visible = on

    def _toggle_from_pred(self, on: bool) -> None:
        self._from_pred_choice = on
        if self.session is not None:
            self.session.start_from_prediction = on

    def _class_chosen(self, idx: int) -> None:
        value = self.class_box.itemData(idx)
        layer = self.session.layer("labels") if self.session is not None else None
        if layer is not None and value is not None:
            layer.selected_label = int(value)

    def finish_round(self) -> None:
        """Ingest the round, make the next one in a worker thread (progress shown), then open it."""
        from napari.qt.threading import thread_worker

        from .next_round import make_next_round, plan_next_round

        if self.session is None or self.worker is not None:
            return
        try:
            plan = plan_next_round(self.session.store.round_dir)
        except ValueError as exc:
            self._message(str(exc), "error")
            return
        todo = sum(t.status == "todo" for t in self.session.tasks)
        self.close_session()  # everything saved and unlocked before ingest reads the files
        self.finish_btn.setEnabled(False)
        self.progress.setVisible(True)
        self.progress.setRange(0, 4)
        self._message(f"finishing {plan.round_dir.name}" + (f" ({todo} task(s) left undone)" if todo else ""), "info")
        worker = thread_worker(make_next_round, progress=False)(plan)

        def on_step(value):
            n, total, what = value
            self.progress.setValue(n)
            self.progress.setFormat(f"{what} ({n}/{total})")
            self._message(f"{plan.next_dir.name}: {what}", "info")

        def on_done(next_dir):
            self.worker = None
            self.progress.setVisible(False)
            self.finish_btn.setEnabled(True)
            if next_dir is not None:
                self.open_round(next_dir)

        def on_error(exc):
            self.worker = None
            self.progress.setVisible(False)
            self.finish_btn.setEnabled(True)
            self._message(f"the next round could not be made: {exc}", "error")

        worker.yielded.connect(on_step)
        worker.returned.connect(on_done)
        worker.errored.connect(on_error)
        self.worker = worker
        worker.start()

    def set_window(self, name: str) -> None:
        """Apply a window/level preset to the image (``auto``: the case's percentile window)."""
        s = self.session
        layer = s.layer("image") if s is not None else None
        if layer is None or s._entry is None:
            return
        lo, hi = window_limits(name, s._entry.data.contrast)
        rlo, rhi = layer.contrast_limits_range
        layer.contrast_limits_range = (min(rlo, lo), max(rhi, hi))
        layer.contrast_limits = (lo, hi)

    def _set_unc_opacity(self, value: int) -> None:
        layer = self.session.layer("uncertainty") if self.session is not None else None
        if layer is not None:
            layer.opacity = value / 100.0

    def _drag_window(self, viewer, event):
        """Shift + right-drag: window (left-right) and level (up-down) of the image, live."""
        if event.button != 2 or "Shift" not in {str(m) for m in event.modifiers} or self.session is None:
            return
        layer = self.session.layer("image")
        if layer is None:
            return
        start = np.asarray(event.pos, float)
        limits = tuple(layer.contrast_limits)
        rlo, rhi = layer.contrast_limits_range
        span = max(rhi - rlo, 1e-6)
        yield
        while event.type == "mouse_move":
            dx, dy = np.asarray(event.pos, float) - start
            lo, hi = drag_window(limits, dx, dy, span)
            layer.contrast_limits_range = (min(rlo, lo), max(rhi, hi))
            layer.contrast_limits = (lo, hi)
            yield

    def set_autosave(self, seconds: float) -> None:
        self.autosave_timer.stop()
        if seconds and seconds > 0:
            self.autosave_timer.start(int(seconds * 1000))

    def autosave(self) -> None:
        if self.session is not None and self.session.task is not None:
            self.session.save()
            self.autosaves += 1
            self._refresh_status()

    def closeEvent(self, event):  # noqa: N802 (Qt API)
        self.close_session()
        super().closeEvent(event)
