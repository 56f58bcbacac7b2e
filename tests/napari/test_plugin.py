"""The napari plugin on a real round, in a real (shown) napari viewer under Xvfb."""

import json

import numpy as np
import pytest
from qtpy.QtCore import Qt

from medal.costs import feature_names, read_annotation_log
from medal.data import UNLABELED, load_volume
from medal.tasks import read_tasks

from .conftest import paint_at, plane_index

pytestmark = pytest.mark.gui


def _coord_in_plane(task, shape, at=(0.45, 0.5)):
    free = [d for d in range(3) if d != task.axis]
    c = [0, 0, 0]
    c[task.axis] = task.index
    for d, f in zip(free, at):
        c[d] = int(shape[d] * f)
    return c


def test_open_round_shows_task_layers_and_jumps_to_slice(open_widget, round_dir):
    viewer, widget = open_widget(round_dir)
    s = widget.session
    task = s.task
    image = load_volume(s.store.tasklist.image_path(task))
    # the first task is the best value per predicted second among those to do
    ratio = [t.score / t.predicted_cost_s for t in s.tasks]
    assert s.current == int(np.argmax(ratio))
    assert viewer.dims.order[0] == task.axis
    assert viewer.dims.current_step[task.axis] == task.index
    names = [layer.name for layer in viewer.layers]
    for name in ("image", "uncertainty", "prediction", "labels", "task region"):
        assert name in names
    np.testing.assert_allclose(viewer.layers["image"].scale, image.spacing)
    np.testing.assert_allclose(viewer.layers["labels"].scale, image.spacing)
    assert viewer.layers["uncertainty"].metadata["measure"] == "entropy"
    # label names and colours from dataset.json
    items = [widget.class_box.itemText(i) for i in range(widget.class_box.count())]
    assert items == ["0: background", "1: Anterior", "2: Posterior"]
    cmap = viewer.layers["labels"].colormap
    assert np.allclose(cmap.map(1)[:3], [0xe6 / 255, 0x9f / 255, 0x00])
    # the table is ordered by value per cost and the filter hides other statuses
    shown = [widget.table.item(r, 5).text() for r in range(widget.table.rowCount())]
    assert [float(x) for x in shown] == sorted((float(x) for x in shown), reverse=True)
    assert widget.table.rowCount() == len(s.tasks) == len(json.loads(s.store.tasks_path.read_text())["tasks"])
    widget.filter_box.setCurrentText("done")
    assert widget.table.rowCount() == 0
    widget.filter_box.setCurrentText("all")
    # the uncertainty overlay toggles
    widget.show_unc.setChecked(False)
    assert not viewer.layers["uncertainty"].visible
    widget.show_unc.setChecked(True)
    assert viewer.layers["uncertainty"].visible


def test_supervoxel_task_centres_on_its_region(open_widget, round_dir):
    viewer, widget = open_widget(round_dir)
    s = widget.session
    i = next(i for i, t in enumerate(s.tasks) if t.kind == "supervoxel")
    assert s.open_task(i)
    task = s.task
    mask = load_volume(s.store.tasklist.mask_path(task)).array == task.supervoxel
    plane = viewer.dims.current_step[task.axis]
    other = tuple(d for d in range(3) if d != task.axis)
    assert plane == int(np.argmax(mask.sum(axis=other)))  # the plane with most of the supervoxel
    region = viewer.layers["task region"]
    assert region.metadata["task_id"] == task.task_id and region.contour == 1
    spacing = np.asarray(s._entry.data.image.spacing)
    centre = (np.asarray(task.bbox[0]) + np.asarray(task.bbox[1])) / 2 * spacing
    shown = list(viewer.dims.order[-2:])
    np.testing.assert_allclose(viewer.camera.center[-2:], centre[shown], atol=1e-6)


def test_paint_done_saves_exactly_the_slice_and_logs_the_time(open_widget, round_dir, qtbot):
    viewer, widget = open_widget(round_dir)
    s = widget.session
    task = s.task
    lab = viewer.layers["labels"]
    shape = lab.data.shape
    paint_at(lab, _coord_in_plane(task, shape), 1, qtbot)
    painted = np.array(lab.data[plane_index(task, shape)])
    assert (painted == 1).sum() > 0
    # an edit on another plane is undone and the user told so
    off = _coord_in_plane(task, shape)
    off[task.axis] = (task.index + 5) % shape[task.axis]
    before = len(s.messages)
    paint_at(lab, off, 2, qtbot)
    assert (np.asarray(lab.data) == 2).sum() == 0
    assert s.outside_reverted > 0
    assert "outside the task" in s.messages[before][1] and "outside the task" in widget.message_label.text()
    done_id = task.task_id
    assert s.mark_done()
    assert s.task.task_id != done_id  # moved on to the next task to do
    out = load_volume(round_dir / "annotations" / f"{task.case_id}.nii.gz")
    image = load_volume(s.store.tasklist.image_path(task))
    np.testing.assert_array_equal(out.affine, image.affine)
    assert out.array.dtype == np.uint8 and out.shape == image.shape
    expect = np.full(shape, UNLABELED, np.uint8)
    expect[plane_index(task, shape)] = painted
    np.testing.assert_array_equal(out.array, expect)
    statuses = {t.task_id: t.status for t in read_tasks(round_dir / "tasks.json").tasks}
    assert statuses[done_id] == "done" and list(statuses.values()).count("done") == 1
    log = read_annotation_log(round_dir / "annotation_log.jsonl")
    assert len(log) == 1 and log[0]["task_id"] == done_id
    assert set(feature_names(3)) <= set(log[0]) and log[0]["seconds"] >= 0
    assert log[0]["area_mm2_1"] > 0 and log[0]["n_slices"] == 1
    # the draft of that task is gone: it is finished
    draft = round_dir / "drafts" / f"{task.case_id}.nii.gz"
    assert not draft.exists() or (load_volume(draft).array == UNLABELED).all()


def test_supervoxel_painting_is_confined_to_the_supervoxel(open_widget, round_dir, qtbot):
    viewer, widget = open_widget(round_dir)
    s = widget.session
    i = next(i for i, t in enumerate(s.tasks) if t.kind == "supervoxel")
    s.open_task(i)
    task = s.task
    lab = viewer.layers["labels"]
    lab.brush_size = 15  # wider than the supervoxel: part of the dab falls outside
    plane = viewer.dims.current_step[task.axis]
    centre = [(lo + hi) // 2 for lo, hi in zip(*task.bbox)]
    centre[task.axis] = plane
    lab.paint(np.asarray(centre, float), 2)
    qtbot.wait(20)
    mask = load_volume(s.store.tasklist.mask_path(task)).array == task.supervoxel
    data = np.asarray(lab.data)
    assert (data == 2).any() and not (data[~mask] == 2).any()
    assert s.outside_reverted > 0
    assert not s.mark_done(advance=False)  # its other planes were never shown: asked first
    assert "were never shown" in s.messages[-1][1]
    assert s.mark_done(advance=False)  # pressed again: saved as it is
    out = load_volume(round_dir / "annotations" / f"{task.case_id}.nii.gz").array
    assert (out[~mask] == UNLABELED).all()
    np.testing.assert_array_equal(out[mask], data[mask])


def test_autosave_writes_the_draft(open_widget, round_dir, qtbot):
    viewer, widget = open_widget(round_dir, autosave_s=0.2)
    s = widget.session
    task = s.task
    lab = viewer.layers["labels"]
    paint_at(lab, _coord_in_plane(task, lab.data.shape), 2, qtbot)
    draft = round_dir / "drafts" / f"{task.case_id}.nii.gz"
    qtbot.waitUntil(lambda: widget.autosaves > 0 and draft.exists(), timeout=5000)
    saved = load_volume(draft).array
    np.testing.assert_array_equal(saved[plane_index(task, saved.shape)], np.asarray(lab.data)[plane_index(task, saved.shape)])
    assert (saved[plane_index(task, saved.shape)] == 2).any()
    # unfinished work never goes to the folder `medal ingest` reads
    assert not (round_dir / "annotations" / f"{task.case_id}.nii.gz").exists()


def test_reopening_resumes_every_voxel_and_status(open_widget, round_dir, qtbot):
    viewer, widget = open_widget(round_dir)
    s = widget.session
    first = s.task
    lab = viewer.layers["labels"]
    paint_at(lab, _coord_in_plane(first, lab.data.shape), 1, qtbot)
    s.mark_done()
    second = s.task
    paint_at(lab, _coord_in_plane(second, lab.data.shape, at=(0.3, 0.3)), 2, qtbot)
    s.mark_skipped()
    third = s.task
    paint_at(lab, _coord_in_plane(third, lab.data.shape, at=(0.6, 0.6)), 1, qtbot)
    expected = np.array(lab.data)
    widget.close_session()  # what closing napari does
    assert not list((round_dir / "annotations").glob("*.lock"))

    viewer2, widget2 = open_widget(round_dir)
    s2 = widget2.session
    status = {t.task_id: t.status for t in s2.tasks}
    assert status[first.task_id] == "done" and status[second.task_id] == "skipped"
    assert status[third.task_id] == "todo"
    assert s2.task.task_id == third.task_id  # the first task still to do
    np.testing.assert_array_equal(np.asarray(viewer2.layers["labels"].data), expected)


def test_second_instance_is_refused_by_the_lock(open_widget, round_dir):
    viewer, widget = open_widget(round_dir, user="alice")
    case = widget.session.task.case_id
    from medal_napari.widget import AnnotationWidget

    viewer2 = type(viewer)(show=False)
    try:
        w2 = AnnotationWidget(viewer2, user="bob", autosave_s=0)
        assert w2.open_round(round_dir)
        assert w2.session.task is None  # nothing opened: the only case is locked
        level, text = w2.session.messages[-1]
        assert level == "error" and "alice" in text and case in text
        assert "alice" in w2.message_label.text()
        widget.close_session()  # alice leaves: bob can work
        assert w2.session.first_task() and w2.session.task.case_id == case
        w2.close_session()
    finally:
        viewer2.close()


def test_corrupt_or_missing_files_give_messages_not_tracebacks(open_widget, round_dir, tmp_path):
    case = "hippocampus_004"
    bad = round_dir / "annotations" / f"{case}.nii.gz"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\x1f\x8b\x08\x00 this is not a NIfTI file")
    viewer, widget = open_widget(round_dir)
    s = widget.session
    assert s.task is None
    assert bad.name in s.messages[-1][1] and "will not overwrite" in s.messages[-1][1]
    assert bad.read_bytes() == b"\x1f\x8b\x08\x00 this is not a NIfTI file"  # untouched
    assert widget.open_round(tmp_path / "nowhere") is False
    assert "no tasks.json" in widget.message_label.text()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tasks.json").write_text("{not json")
    assert widget.open_round(broken) is False
    assert "not valid JSON" in widget.message_label.text()


def test_start_from_prediction_fills_the_task_region(open_widget, round_dir):
    viewer, widget = open_widget(round_dir, start_from_prediction=True)
    s = widget.session
    task = s.task
    pred = load_volume(round_dir / "scores" / task.case_id / "prediction.nii.gz").array
    idx = plane_index(task, pred.shape)
    np.testing.assert_array_equal(np.asarray(viewer.layers["labels"].data)[idx], pred[idx])
    assert s.store.task_state(task)["started"]


def test_a_round_priced_for_correction_opens_its_tasks_from_the_prediction(open_widget, round_dir, tmp_path):
    import json
    import shutil

    # the sample round was selected for drawing: its tasks open empty unless asked
    viewer, widget = open_widget(round_dir)
    assert widget.session.start_from_prediction is False and not widget.from_pred.isChecked()
    first = widget.session.task
    empty = np.asarray(viewer.layers["labels"].data)[plane_index(first, viewer.layers["labels"].data.shape)].copy()
    widget.close_session()
    # the same round priced for correction (costs.annotation: correct): tasks open on the prediction
    priced = tmp_path / "priced"
    shutil.copytree(round_dir, priced)
    raw = json.loads((priced / "tasks.json").read_text())
    raw["costs"] = {**raw["costs"], "annotation": "correct"}
    (priced / "tasks.json").write_text(json.dumps(raw))
    viewer, widget = open_widget(priced)
    s = widget.session
    assert s.start_from_prediction is True and widget.from_pred.isChecked()
    pred = load_volume(priced / "scores" / s.task.case_id / "prediction.nii.gz").array
    idx = plane_index(s.task, pred.shape)
    np.testing.assert_array_equal(np.asarray(viewer.layers["labels"].data)[idx], pred[idx])
    # accepted as shown: logged as a correction with nothing changed, so only the check counts as work
    done = s.task
    assert s.mark_done(confirm=True)
    rec = [json.loads(x) for x in s.store.log_path.read_text().splitlines()][-1]
    assert rec["task_id"] == done.task_id and rec["annotation"] == "correct"
    assert rec["n_slices"] == 1 and rec["area_mm2_1"] == rec["area_mm2_2"] == rec["components_1"] == 0
    # an explicit choice (medal-annotate --from-empty, or a click) wins over the round's pricing (on a fresh
    # copy: the session above saved its opened task, prediction and all, as any started task is kept)
    fresh = tmp_path / "fresh"
    shutil.copytree(round_dir, fresh)
    (fresh / "tasks.json").write_text(json.dumps(raw))
    viewer, widget = open_widget(fresh, start_from_prediction=False)
    assert widget.session.start_from_prediction is False and not widget.from_pred.isChecked()
    assert widget.session.task.task_id == first.task_id and (pred[idx] > 0).any()
    np.testing.assert_array_equal(np.asarray(viewer.layers["labels"].data)[idx], empty)  # as drawn from nothing


def test_keyboard_shortcuts_move_and_finish_tasks(open_widget, round_dir, qtbot):
    viewer, widget = open_widget(round_dir)
    s = widget.session
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    start = s.current
    qtbot.keyClick(canvas, Qt.Key.Key_N, Qt.KeyboardModifier.ShiftModifier)
    assert s.current == s.order[s.order.index(start) + 1]
    qtbot.keyClick(canvas, Qt.Key.Key_B, Qt.KeyboardModifier.ShiftModifier)
    assert s.current == start
    qtbot.keyClick(canvas, Qt.Key.Key_S, Qt.KeyboardModifier.ShiftModifier)
    assert s.tasks[start].status == "skipped" and s.current != start
    nxt = s.current
    qtbot.keyClick(canvas, Qt.Key.Key_D, Qt.KeyboardModifier.ShiftModifier)
    assert s.tasks[nxt].status == "todo" and "nothing is painted" in s.messages[-1][1]  # asked once
    qtbot.keyClick(canvas, Qt.Key.Key_D, Qt.KeyboardModifier.ShiftModifier)
    assert s.tasks[nxt].status == "done"
    assert json.loads((round_dir / "tasks.json").read_text())["tasks"][nxt]["status"] == "done"


def test_screenshot_of_an_open_task_has_real_pixels(open_widget, round_dir, qtbot):
    viewer, widget = open_widget(round_dir)
    qtbot.wait(50)
    canvas = viewer.screenshot(canvas_only=True, flash=False)[..., :3]
    assert canvas.std() > 10 and (canvas.max(axis=-1) > 30).mean() > 0.2
    shot = widget.grab().toImage()
    w, h = shot.width(), shot.height()
    px = np.array([[shot.pixelColor(x, y).value() for x in range(0, w, 7)] for y in range(0, h, 7)])
    assert w > 200 and h > 200 and (px > 60).mean() > 0.05  # text and table drawn, not a black box


def test_time_log_has_active_seconds_once_per_finished_task(make_napari_viewer, round_dir, qtbot):
    from medal_napari.session import AnnotationSession

    from .test_units import Clock

    clock = Clock()
    viewer = make_napari_viewer()
    s = AnnotationSession(round_dir, viewer, idle_s=30, clock=clock, user="tester")
    try:
        assert s.first_task()
        first = s.current
        lab = viewer.layers["labels"]
        clock.t = 10
        paint_at(lab, _coord_in_plane(s.task, lab.data.shape), 1, qtbot)  # a stroke is activity
        clock.t = 15
        s.activity()
        clock.t = 300  # nearly five minutes away from the desk: not annotation time
        s.activity()
        clock.t = 304
        assert s.mark_done()
        log = read_annotation_log(round_dir / "annotation_log.jsonl")
        assert len(log) == 1 and log[0]["seconds"] == pytest.approx(19) and log[0]["user"] == "tester"
        s.open_task(first)  # revisit and finish again: still one row for that task
        clock.t = 310
        assert s.mark_done()
        clock.t = 322
        assert not s.mark_done()  # the next task, 12 s later: nothing painted, so asked once ...
        assert s.mark_done()  # ... and confirmed
        log = read_annotation_log(round_dir / "annotation_log.jsonl")
        assert len(log) == 2 and log[0]["task_id"] == s.tasks[first].task_id
        assert log[1]["task_id"] != log[0]["task_id"] and log[1]["seconds"] == pytest.approx(12)
    finally:
        s.close()


def test_closing_napari_saves_the_open_task_and_releases_the_lock(round_dir, qtbot):
    import napari

    from medal_napari.widget import AnnotationWidget

    viewer = napari.Viewer(show=False)
    widget = AnnotationWidget(viewer, autosave_s=0)
    viewer.window.add_dock_widget(widget)
    assert widget.open_round(round_dir)
    task = widget.session.task
    lab = viewer.layers["labels"]
    paint_at(lab, _coord_in_plane(task, lab.data.shape), 2, qtbot)
    expected = np.array(lab.data[plane_index(task, lab.data.shape)])
    assert (round_dir / "annotations" / f"{task.case_id}.lock").exists()
    viewer.close()
    draft = load_volume(round_dir / "drafts" / f"{task.case_id}.nii.gz").array
    np.testing.assert_array_equal(draft[plane_index(task, draft.shape)], expected)
    assert not (round_dir / "annotations" / f"{task.case_id}.lock").exists()
    state = json.loads((round_dir / "annotations" / f"{task.case_id}.json").read_text())
    assert state["tasks"][task.task_id]["started"] and state["tasks"][task.task_id]["status"] == "todo"


def test_a_closed_session_is_released(open_widget, round_dir, tmp_path):
    import gc
    import weakref

    viewer, widget = open_widget(round_dir)
    first = weakref.ref(widget.session)
    assert widget.open_round(round_dir)  # opening another round closes the first session
    gc.collect()
    assert first() is None  # no viewer callback or Qt signal keeps it, and its cached volumes, alive


def test_medal_annotate_exits_cleanly(round_dir):
    """Closing the window is the normal way out of `medal annotate`: no RuntimeError about a deleted
    widget, exit status 0, the case saved and unlocked. A real process: the window is closed the way
    a person closes it, while `medal-annotate` runs."""
    import subprocess
    import sys

    code = ("import sys; import napari; from qtpy.QtWidgets import QApplication; from qtpy.QtCore import QTimer; "
            "from medal_napari.cli import main; app = QApplication.instance() or QApplication(sys.argv[:1]); "
            "QTimer.singleShot(4000, lambda: napari.current_viewer().close()); sys.exit(main(sys.argv[1:]))")
    out = subprocess.run([sys.executable, "-c", code, str(round_dir), "--autosave", "0", "--user", "tester"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "RuntimeError" not in out.stderr and "Traceback" not in out.stderr
    assert not list((round_dir / "annotations").glob("*.lock"))
    assert (round_dir / "annotations").is_dir()  # the open task's progress was saved on the way out


def test_done_on_an_empty_slice_is_asked_once_per_user(open_widget, round_dir):
    viewer, widget = open_widget(round_dir, user="alice")
    s = widget.session
    first = s.task
    assert not s.mark_done()
    assert "nothing is painted" in s.messages[-1][1] and s.task is first
    assert s.mark_done() and first.status == "done"  # confirmed: saved as containing no structure
    out = load_volume(round_dir / "annotations" / f"{first.case_id}.nii.gz").array
    assert (out[plane_index(first, out.shape)] == 0).all()
    second = s.task
    assert s.mark_done() and second.status == "done"  # alice was asked once: not again
    from medal_napari.session import user_preferences

    assert user_preferences("alice") == {"empty_done_confirmed": True} and user_preferences("bob") == {}


def test_supervoxel_done_waits_until_every_plane_was_seen(open_widget, round_dir, qtbot):
    viewer, widget = open_widget(round_dir)
    s = widget.session
    i = next(i for i, t in enumerate(s.tasks) if t.kind == "supervoxel")
    s.open_task(i)
    task = s.task
    planes = s.planes()
    assert len(planes) > 1 and s.unvisited_planes()
    ov = viewer.text_overlay.text
    assert f"spans planes {planes[0]}-{planes[-1]}" in ov and "looked at" in ov and "task " in ov
    lab = viewer.layers["labels"]
    centre = [(lo + hi) // 2 for lo, hi in zip(*task.bbox)]
    centre[task.axis] = viewer.dims.current_step[task.axis]
    lab.brush_size = 3
    lab.paint(np.asarray(centre, float), 1)
    qtbot.wait(20)
    for p in planes:  # the expert scrolls through the supervoxel
        step = list(viewer.dims.current_step)
        step[task.axis] = p
        viewer.dims.current_step = tuple(step)
    assert s.unvisited_planes() == []
    assert s.mark_done(advance=False) and task.status == "done"


def test_undo_then_redo_cannot_bring_back_an_edit_off_the_task(open_widget, round_dir, qtbot):
    viewer, widget = open_widget(round_dir)
    s = widget.session
    task = s.task
    lab = viewer.layers["labels"]
    shape = lab.data.shape
    off = _coord_in_plane(task, shape)
    off[task.axis] = (task.index + 4) % shape[task.axis]
    paint_at(lab, off, 2, qtbot)
    assert (np.asarray(lab.data) == 2).sum() == 0 and s.outside_reverted > 0
    lab.undo()
    lab.redo()  # napari replays the stroke, outside voxels included, with no paint event
    qtbot.wait(20)
    assert (np.asarray(lab.data) == 2).sum() == 0
    assert "undo/redo were undone again" in s.messages[-1][1]


@pytest.mark.parametrize("kill_at", ["after labels", "after progress", "mid log line", "after log", "after logged",
                                     "none"])
def test_a_kill_during_done_leaves_a_round_that_reopens_consistent(open_widget, round_dir, qtbot, kill_at,
                                                                   monkeypatch):
    """Done writes labels, progress (done + log record), the log line, progress (logged), tasks.json:
    killed after any step (each write is atomic, so the files are as a kill leaves them), reopening the
    round repairs the rest: one log line, status done everywhere, and ingest merges the task's labels."""
    from medal.data import load_dataset
    from medal.loop import ingest
    from medal_napari import session as session_mod
    from medal_napari.store import RoundStore

    viewer, widget = open_widget(round_dir)
    s = widget.session
    task = s.task
    lab = viewer.layers["labels"]
    paint_at(lab, _coord_in_plane(task, lab.data.shape), 1, qtbot)
    expected = np.array(lab.data[plane_index(task, lab.data.shape)])

    class Killed(Exception):
        pass

    calls = {"progress": 0}
    real_progress = RoundStore.save_progress

    def progress(self, case_id, user):
        calls["progress"] += 1
        if (kill_at == "after labels" and calls["progress"] == 1) or (kill_at == "after log" and calls["progress"] == 2):
            raise Killed
        return real_progress(self, case_id, user)

    monkeypatch.setattr(RoundStore, "save_progress", progress)
    if kill_at == "after progress":
        monkeypatch.setattr(session_mod.AnnotationSession, "_append_log", lambda self, r: (_ for _ in ()).throw(Killed()))
    if kill_at == "mid log line":  # the process dies inside the write: half a line, no newline

        def cut_short(self, record):
            with open(self.store.log_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, sort_keys=True)[:40])
            raise Killed

        monkeypatch.setattr(session_mod.AnnotationSession, "_append_log", cut_short)
    if kill_at == "after logged":
        monkeypatch.setattr(session_mod.AnnotationSession, "_write_statuses", lambda self: (_ for _ in ()).throw(Killed()))
    if kill_at == "none":
        assert s.mark_done(advance=False)
    else:
        with pytest.raises(Killed):
            s.mark_done(advance=False)
    monkeypatch.undo()
    s._closed = True  # the process is gone: no closing save; its lock is left behind
    s._lock.release()
    viewer2, widget2 = open_widget(round_dir)
    s2 = widget2.session
    again = next(t for t in s2.tasks if t.task_id == task.task_id)
    assert again.status == "done"
    cut: list[int] = []
    log = read_annotation_log(round_dir / "annotation_log.jsonl", strict=False, bad=cut)
    assert [r["task_id"] for r in log].count(task.task_id) == 1
    assert len(cut) == (kill_at == "mid log line")  # the fragment set aside; the record again, on a line of its own
    if kill_at == "mid log line":
        assert any("cut short by the crash, is set aside" in m for _, m in s2.messages)
    state = json.loads((round_dir / "annotations" / f"{task.case_id}.json").read_text())["tasks"][task.task_id]
    assert state["status"] == "done" and state["logged"]
    assert {t.task_id: t.status for t in read_tasks(round_dir / "tasks.json").tasks}[task.task_id] == "done"
    widget2.close_session()
    ds = load_dataset(read_tasks(round_dir / "tasks.json").dataset_root)
    run = round_dir.parent / "run"
    rep = ingest(run, round_dir, ds)
    merged = load_volume(run / "labels" / f"{task.case_id}.nii.gz").array
    np.testing.assert_array_equal(merged[plane_index(task, merged.shape)], expected)
    assert task.case_id in rep.cases


def test_reopening_sweeps_what_a_killed_save_left(round_dir, open_widget):
    import os
    import time

    ann = round_dir / "annotations"
    ann.mkdir(exist_ok=True)
    stale = ann / ".hippocampus_004.1234abcd.tmp.nii.gz"
    stale.write_bytes(b"half a file")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = ann / ".hippocampus_004.feedbeef.tmp.nii.gz"  # another session's save in flight: left alone
    fresh.write_bytes(b"x")
    viewer, widget = open_widget(round_dir)
    assert not stale.exists() and fresh.exists() and widget.session.store.swept == 1


def _oriented_round(tmp_path, name: str):
    """A real case saved with another affine (RAS, LPS, or RAS turned 20 degrees about S), with a bright
    marker 12 mm to the patient's left and 12 mm anterior of the centre, and one axial slice task
    through it."""
    from medal.data import Volume, load_dataset, sample_dataset, save_volume
    from medal.regions import resolve_axis
    from medal.tasks import Task, write_tasks

    case = load_dataset(sample_dataset()).cases[0]
    img = load_volume(case.image).array.astype(np.float32)
    if name == "RAS":
        affine = np.diag([1.0, 1.0, 1.0, 1.0])
    elif name == "LPS":
        affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    else:
        t = np.deg2rad(20)
        affine = np.eye(4)
        affine[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    centre = affine[:3, :3] @ ((np.array(img.shape) - 1) / 2) + affine[:3, 3]
    world = centre + np.array([-12.0, 12.0, 0.0])  # RAS+ world: -x is the patient's left, +y anterior
    ijk = np.rint(np.linalg.solve(affine[:3, :3], world - affine[:3, 3])).astype(int)
    img[tuple(slice(c - 2, c + 3) for c in ijk)] = img.max() * 3
    root = tmp_path / f"ds_{name}"
    vol = Volume(img, affine)
    save_volume(vol, root / "imagesTr" / "case_001.nii.gz")
    save_volume(vol.with_array(np.zeros(img.shape, np.uint8)), root / "labelsTr" / "case_001.nii.gz")
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "a", "2": "b"}}))
    ds = load_dataset(root)
    codes = load_volume(ds.cases[0].image).orientation
    axis = resolve_axis("axial", codes)
    lo, hi = [0, 0, 0], list(img.shape)
    lo[axis], hi[axis] = int(ijk[axis]), int(ijk[axis]) + 1
    rd = tmp_path / f"round_{name}"
    write_tasks(rd / "tasks.json", [Task(task_id="t0000", case_id="case_001", image="imagesTr/case_001.nii.gz",
                                         kind="slice", axis=axis, index=int(ijk[axis]), supervoxel=-1, bbox=[lo, hi],
                                         score=1.0, predicted_cost_s=10.0, strategy="test")], dataset_root=root)
    return rd, codes, axis


@pytest.mark.parametrize("name", ["RAS", "LPS", "oblique"])
def test_axial_view_is_radiological_whatever_the_storage_order(open_widget, tmp_path, qtbot, name):
    from medal_napari.display import text_overlay

    rd, codes, axis = _oriented_round(tmp_path, name)
    viewer, widget = open_widget(rd)
    assert viewer.dims.axis_labels[axis] == "axial"
    assert viewer.layers["orientation"].metadata["letters"] == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
    text_overlay(viewer).visible = False
    qtbot.wait(100)  # the window's layout settles; the widget then fits the task into the canvas
    image = viewer.layers["image"]
    top = float(np.asarray(image.data).max())
    image.contrast_limits_range = (float(np.asarray(image.data).min()), top)
    image.contrast_limits = (float(np.asarray(image.data).min()), top * 0.9)  # only the marker is white
    qtbot.wait(50)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    letters = (shot[..., 0] < 80) & (shot[..., 1] > 200) & (shot[..., 2] > 200)  # cyan
    assert letters[:, : shot.shape[1] // 5].any() and letters[:, -shot.shape[1] // 5:].any()  # R and L on screen
    white = (shot[..., 0] > 220) & (shot[..., 1] > 220) & (shot[..., 2] > 220)  # the marker (letters are cyan)
    ys, xs = np.nonzero(white)
    assert len(xs) > 4, f"marker not found on screen ({codes})"
    h, w = white.shape
    # the patient's left is on the screen's right, anterior is up
    assert xs.mean() > w / 2 and ys.mean() < h / 2, (codes, xs.mean(), ys.mean(), w, h)


def test_overlay_window_and_brush_in_the_viewer(open_widget, round_dir, qtbot):
    viewer, widget = open_widget(round_dir)
    s = widget.session
    assert widget.window_box.currentText() == "auto (this case)"  # an MRI dataset: the case's own window
    unc = viewer.layers["uncertainty"]
    values = np.asarray(unc.data)
    assert unc.colorbar.visible  # a legend for the heat map
    assert unc.contrast_limits[0] >= np.percentile(values, 89)  # only the upper tail is coloured
    widget.unc_opacity.setValue(20)
    assert unc.opacity == pytest.approx(0.2)
    widget.window_box.setCurrentText("CT soft tissue")
    assert tuple(viewer.layers["image"].contrast_limits) == (-150.0, 250.0)
    widget.window_box.setCurrentText("auto (this case)")
    assert tuple(viewer.layers["image"].contrast_limits) == pytest.approx(s._entry.data.contrast)
    assert viewer.layers["labels"].brush_size == 3  # about 3 mm on this 1 mm scan
    # the brush-size keys the help line names: "]" and "[" on the canvas, labels layer active
    lab = viewer.layers["labels"]
    viewer.layers.selection.active = lab
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.keyClick(canvas, "]")
    qtbot.keyClick(canvas, "]")
    assert lab.brush_size == 5
    qtbot.keyClick(canvas, "[")
    assert lab.brush_size == 4
    assert "[ / ]" in " ".join(w.text() for w in widget.findChildren(type(widget.status_label)))


def test_a_ct_dataset_opens_in_a_soft_tissue_window(open_widget, round_dir, tmp_path):
    """A round of a dataset whose dataset.json calls the scans CT opens in the CT soft-tissue window (a radiologist
    reads CT there; the volume's percentiles run from air to bone), shown on the image; a preset the annotator
    picks stays."""
    import json
    import shutil

    from medal.data import sample_dataset

    ct = tmp_path / "ct"
    shutil.copytree(sample_dataset(), ct)
    meta = json.loads((ct / "dataset.json").read_text())
    meta["modality"] = {"0": "CT"}
    (ct / "dataset.json").write_text(json.dumps(meta))
    body = json.loads((round_dir / "tasks.json").read_text())
    body["dataset_root"] = str(ct)
    (round_dir / "tasks.json").write_text(json.dumps(body))
    viewer, widget = open_widget(round_dir)
    assert widget.session.store.modality == "ct"
    assert widget.window_box.currentText() == "CT soft tissue"
    assert tuple(viewer.layers["image"].contrast_limits) == (-150.0, 250.0)
    widget.window_box.setCurrentText("CT bone")
    widget.session.next_task()
    assert widget.window_box.currentText() == "CT bone"


def test_quality_control_re_ask_is_shown_blank_marked_and_after_its_case(open_widget, round_dir):
    import json

    tl = json.loads((round_dir / "tasks.json").read_text())
    first = next(t for t in tl["tasks"] if t["kind"] == "slice")
    used = {t["index"] for t in tl["tasks"] if t["kind"] == "slice" and t["case_id"] == first["case_id"]}
    index = min(set(range(first["bbox"][1][first["axis"]] + 20)) - used)  # a plane no task of the round holds
    bbox = [list(first["bbox"][0]), list(first["bbox"][1])]
    bbox[0][first["axis"]], bbox[1][first["axis"]] = index, index + 1
    qc = dict(first, task_id="q0000", qc_of="round_000/t9999", index=index, bbox=bbox)
    tl["tasks"].insert(0, qc)  # first in the file, yet shown after its case's ordinary tasks
    (round_dir / "tasks.json").write_text(json.dumps(tl))
    viewer, widget = open_widget(round_dir)
    s = widget.session
    cases = [s.tasks[i].case_id for i in s.order]
    qpos = next(p for p, i in enumerate(s.order) if s.tasks[i].task_id == "q0000")
    assert all(c != s.tasks[s.order[qpos]].case_id for c in cases[qpos + 1:])  # last of its case
    rows = [widget.table.item(r, 2).text() for r in range(widget.table.rowCount())]
    assert sum(r.endswith("· QC") for r in rows) == 1
    s.open_task(s.order[qpos])
    data = np.asarray(viewer.layers["labels"].data)
    assert (data[plane_index(s.task, data.shape)] == 0).all()  # blind: nothing painted shows, earlier labels neither


def test_showing_a_case_again_keeps_the_labels_layer_and_rewires_its_callbacks(make_napari_viewer, round_dir):
    """A case switch updates the labels layer in place (re-adding it cost ~1 s per switch on a
    512x512x300 case: napari collects garbage on every layer removal); a later session's paint and
    undo callbacks replace the earlier session's instead of joining them."""
    from medal_napari import display
    from medal_napari.store import RoundStore

    viewer = make_napari_viewer(show=True)
    store = RoundStore(round_dir)
    case = store.tasks[0].case_id
    data = store.load_case(case, [t for t in store.tasks if t.case_id == case])
    working = np.zeros(data.image.shape, np.uint8)
    calls = {"a": 0, "b": 0}

    def on_a(event):
        calls["a"] += 1

    def on_b(event):
        calls["b"] += 1

    first = display.show_case(viewer, data, working, store.label_colors, on_a, on_history=lambda: None)
    removed = []
    viewer.layers.events.removed.connect(lambda e: removed.append(e.value.name))
    second = display.show_case(viewer, data, working.copy(), store.label_colors, on_b, on_history=lambda: None)
    assert second is first and "labels" not in removed
    assert len(second.on_history) == 1
    second.events.paint(value=[])
    assert calls == {"a": 0, "b": 1}


def test_a_case_switch_draws_each_layer_once_on_the_task_plane(open_widget, tmp_path):
    """Two real cases with 0.8 x 0.8 x 1.5 mm voxels: the plane slider steps one plane (the edge
    letters once made it step 1 mm), a case switch slices each volume layer once (it was two or three
    times: for the old plane, then the new one), and what is drawn is the new case at the task's plane,
    also when that plane number does not change."""
    from medal.data import Volume, load_dataset, sample_dataset, save_volume
    from medal.tasks import Task, write_tasks

    root = tmp_path / "ds"
    affine = np.diag([0.8, 0.8, 1.5, 1.0])
    arrays = {}
    for case in load_dataset(sample_dataset()).cases[:2]:
        img = load_volume(case.image).array
        arrays[case.case_id] = img
        save_volume(Volume(img, affine), root / "imagesTr" / f"{case.case_id}.nii.gz")
        save_volume(Volume(np.zeros(img.shape, np.uint8), affine), root / "labelsTr" / f"{case.case_id}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "a", "2": "b"}}))
    a, b = arrays
    planes = [(a, 10), (b, 10), (a, 14)]  # the same plane number across a switch, then another one
    tasks = []
    for n, (case, k) in enumerate(planes):
        shape = arrays[case].shape
        tasks.append(Task(task_id=f"t{n}", case_id=case, image=f"imagesTr/{case}.nii.gz", kind="slice", axis=2,
                          index=k, supervoxel=-1, bbox=[[0, 0, k], [shape[0], shape[1], k + 1]],
                          score=3.0 - n, predicted_cost_s=10.0, strategy="test"))
    write_tasks(tmp_path / "round" / "tasks.json", tasks, dataset_root=root)
    viewer, widget = open_widget(tmp_path / "round")
    s = widget.session
    assert s.open_task(0)
    assert viewer.dims.range[2].step == pytest.approx(1.5)
    slices = {"image": 0, "labels": 0}
    for name in slices:
        viewer.layers[name].events.set_data.connect(lambda e, n=name: slices.__setitem__(n, slices[n] + 1))
    for i, (case, k) in enumerate(planes[1:], start=1):
        before = dict(slices)
        assert s.open_task(i)
        assert {n: slices[n] - before[n] for n in slices} == {"image": 1, "labels": 1}
        assert viewer.dims.current_step[2] == k
        np.testing.assert_array_equal(np.asarray(viewer.layers["image"]._data_view), arrays[case][:, :, k].T
                                      if viewer.dims.order[-2:] == (1, 0) else arrays[case][:, :, k])


def test_the_dock_loads_napari_lazy_imports_while_no_round_is_open(make_napari_viewer, qtbot, monkeypatch):
    import sys

    from medal_napari import warmup
    from medal_napari.widget import AnnotationWidget

    monkeypatch.setattr(warmup, "_done", False)
    monkeypatch.setattr(warmup, "_visuals_done", False)
    viewer = make_napari_viewer(show=False)
    widget = AnnotationWidget(viewer, autosave_s=0)
    assert not warmup.warmed_up()  # not in the constructor: once Qt idles, while the expert picks a round
    qtbot.waitUntil(warmup.warmed_up, timeout=20000)
    assert all(name in sys.modules for name in warmup.MODULES)
    assert len(viewer.layers) == 0  # the layers it builds to warm up are never added
    font = viewer.window._qt_viewer.canvas._font_info
    glyphs = font.font_manager.get_font(font.face, False, False)._glyphs
    assert set(warmup.GLYPHS) <= set(glyphs)  # the canvas text's glyphs are rendered before a round opens
    assert warmup.warm_glyphs(viewer) == 0  # once per viewer
    assert warmup.warm_visuals(viewer) == 0  # done with the rest, once per process
    monkeypatch.setattr(warmup, "_visuals_done", False)
    assert warmup.warm_visuals(viewer) == 3  # image, labels and points visuals and controls built for real
    assert len(viewer.layers) == 0
    widget.close_session()


def test_a_time_boxed_round_shows_its_seconds_and_keeps_the_reserve_queue_last(open_widget, round_dir):
    import json

    tl = json.loads((round_dir / "tasks.json").read_text())
    tl["reserve_tasks"], tl["budget_s"] = 1, 1e-3  # the file's last task is the reserve; a tiny budget
    (round_dir / "tasks.json").write_text(json.dumps(tl))
    viewer, widget = open_widget(round_dir)
    s = widget.session
    last = s.tasks[-1]
    assert s.tasks[s.order[-1]] is last and s.is_reserve(last) and not s.is_reserve(s.tasks[0])
    assert s.task is not last and "round 0 of 0 s" in widget.status_label.text()
    assert "reserve task" not in widget.status_label.text()
    assert s.mark_done(confirm=True)
    spent, budget = s.round_seconds()
    assert spent > budget == 1e-3
    assert any("budget is spent" in text and "1 reserve task(s) left are optional" in text for _, text in s.messages)
    s.open_task(len(s.tasks) - 1)
    widget._refresh_status()
    assert "reserve task (only while the round is under its budget)" in widget.status_label.text()


@pytest.mark.parametrize("held", [True, False])
def test_opening_a_round_draws_the_canvas_once_the_task_is_in_place(make_napari_viewer, round_dir, qtbot,
                                                                   monkeypatch, held):
    """Adding layers, moving the dims and resizing the canvas each drew the whole scene (QOpenGLWidget paints
    at once on a resize): opening a round now draws once, after the task is in place, and what is drawn is
    the task (held=False shows the draws it saves)."""
    import contextlib

    from medal_napari import display
    from medal_napari.widget import AnnotationWidget

    if not held:
        monkeypatch.setattr(display, "hold_drawing", lambda viewer: contextlib.nullcontext())
    viewer = make_napari_viewer(show=True)
    widget = AnnotationWidget(viewer, autosave_s=0)
    viewer.window.add_dock_widget(widget, name="medal tasks", area="right")
    qtbot.wait(50)
    scene = viewer.window._qt_viewer.canvas._scene_canvas
    draws = []
    scene.events.draw.connect(lambda event: draws.append({layer.name for layer in viewer.layers}))
    assert widget.open_round(round_dir)
    during = len(draws)
    qtbot.wait(100)
    if held:
        assert during == 0  # nothing drawn while layers were added and the dims moved
        assert 1 <= len(draws) <= 2, draws  # napari may redraw once for its overlays' positions
        assert all({"image", "labels", "task region", "orientation"} <= names for names in draws)  # the whole task
    else:
        assert during >= 1, draws
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot[..., :3].max() > 0  # the image is on screen
    widget.close_session()


def test_a_new_case_is_sliced_along_the_task_axis_from_its_first_slice(open_widget, tmp_path, monkeypatch):
    """napari slices a new layer at once, at its default view (planes normal to the first axis): across a
    NIfTI volume's storage order that reads every page of a large image. The view is turned to the task's
    axis before the case's layers are added, so every slice of the image is a plane of the task's axis."""
    from napari.layers import Image

    from medal.data import Volume, load_dataset, sample_dataset, save_volume
    from medal.tasks import Task, write_tasks

    case = load_dataset(sample_dataset()).cases[0]
    img = load_volume(case.image).array
    root = tmp_path / "ds"
    save_volume(Volume(img, np.diag([0.8, 0.8, 1.5, 1.0])), root / "imagesTr" / f"{case.case_id}.nii.gz")
    (root / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "1": "a", "2": "b"}}))
    k = img.shape[2] // 3
    write_tasks(tmp_path / "round" / "tasks.json",
                [Task(task_id="t0", case_id=case.case_id, image=f"imagesTr/{case.case_id}.nii.gz", kind="slice",
                      axis=2, index=k, supervoxel=-1, bbox=[[0, 0, k], [img.shape[0], img.shape[1], k + 1]],
                      score=1.0, predicted_cost_s=10.0, strategy="test")], dataset_root=root)
    sliced = []
    real = Image._slice_dims

    def spy(self, dims, *args, **kwargs):  # records, then slices for real
        if self.name == "image":
            sliced.append(tuple(dims.order))
        return real(self, dims, *args, **kwargs)

    monkeypatch.setattr(Image, "_slice_dims", spy)
    viewer, widget = open_widget(tmp_path / "round")
    assert sliced, "the image layer was never sliced"
    assert all(order[0] == 2 for order in sliced), sliced  # never a plane across the task's axis
    assert viewer.dims.current_step[2] == k
    np.testing.assert_array_equal(np.asarray(viewer.layers["image"]._data_view).T
                                  if viewer.dims.order[-2:] == (1, 0) else np.asarray(viewer.layers["image"]._data_view),
                                  img[:, :, k])
    widget.close_session()


def test_the_task_outline_is_built_without_painting_overlays(open_widget, round_dir):
    """The outline and the prediction are only shown: napari's polygon and brush visuals (about 0.1 s per
    layer to build) are made for the labels being painted only, which keeps them."""
    viewer, widget = open_widget(round_dir)
    canvas = viewer.window._qt_viewer.canvas
    kinds = {name: {type(o).__name__ for o in canvas._layer_overlay_to_visual.get(viewer.layers[name], {})}
             for name in ("labels", "task region")}
    assert {"LabelsPolygonOverlay", "LabelsBrushStrokeOverlay"} <= kinds["labels"]
    assert not kinds["task region"] & {"LabelsPolygonOverlay", "LabelsBrushStrokeOverlay"}
    pred = viewer.layers["prediction"]
    assert not pred._overlays["polygon"].visible and not pred._overlays["brush_stroke"].visible
    widget.close_session()


def test_a_multi_channel_case_shows_its_other_channels_as_hidden_layers(open_widget, tmp_path, qtbot):
    """Two real cases as nnU-Net stores two channels (_0000, _0001; channel 1 derived from the scan): the task
    opens on the _0000 image, channel 1 comes as a hidden layer above it with its own window; a one-channel
    case opened next drops it, and a painted voxel still lands in the labels."""
    from medal.data import load_dataset, sample_dataset
    from medal.tasks import Task, write_tasks
    from medal.testing import write_multichannel_dataset

    src = load_dataset(sample_dataset()).cases[:2]
    root = write_multichannel_dataset(tmp_path / "ds", src)
    (root / "imagesTr" / f"{src[1].case_id}_0001.nii.gz").unlink()  # the second case: one channel only
    tasks = []
    for n, case in enumerate(src):
        shape = load_volume(root / "imagesTr" / f"{case.case_id}_0000.nii.gz").shape
        tasks.append(Task(task_id=f"t{n:04d}", case_id=case.case_id, image=f"imagesTr/{case.case_id}_0000.nii.gz",
                          kind="slice", axis=2, index=shape[2] // 2, supervoxel=-1,
                          bbox=[[0, 0, shape[2] // 2], [shape[0], shape[1], shape[2] // 2 + 1]],
                          score=2.0 - n, predicted_cost_s=10.0, strategy="test"))
    rd = tmp_path / "round"
    write_tasks(rd / "tasks.json", tasks, dataset_root=root)
    viewer, widget = open_widget(rd)
    assert widget.session.case_id == src[0].case_id
    qtbot.waitUntil(lambda: "channel 1" in viewer.layers, timeout=10000)
    ch1 = viewer.layers["channel 1"]
    want = load_volume(root / "imagesTr" / f"{src[0].case_id}_0001.nii.gz").array
    np.testing.assert_array_equal(np.asarray(ch1.data), want)
    assert not ch1.visible and viewer.layers["image"].visible
    np.testing.assert_array_equal(np.asarray(viewer.layers["image"].data),
                                  load_volume(root / "imagesTr" / f"{src[0].case_id}_0000.nii.gz").array)
    names = [x.name for x in viewer.layers]
    assert names.index("image") < names.index("channel 1") < names.index("labels")
    from medal.tasks.display import display_window

    np.testing.assert_allclose(ch1.contrast_limits, display_window(want), rtol=1e-5)  # its own window (1000 - 3x)
    assert not np.allclose(ch1.contrast_limits, viewer.layers["image"].contrast_limits)
    task = widget.session.task
    shape = want.shape
    paint_at(viewer.layers["labels"], _coord_in_plane(task, shape), 1, qtbot)
    assert (np.asarray(viewer.layers["labels"].data)[plane_index(task, shape)] == 1).any()
    assert widget.session.open_task(1)
    assert widget.session.case_id == src[1].case_id
    assert "channel 1" not in viewer.layers
