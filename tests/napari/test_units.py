"""Pieces of the plugin that need no viewer: locks, the active-time clock, the sample round."""

import json
import os
import socket
import subprocess
import sys

import pytest

from medal_napari.lock import CaseLock, LockHeld
from medal_napari.store import AnnotationFileError, RoundStore
from medal_napari.timing import ActiveTimer


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_active_timer_counts_work_and_leaves_out_idle_gaps():
    clock = Clock()
    timer = ActiveTimer(idle_s=30, clock=clock)
    timer.start()
    for t in (5, 10, 20):  # strokes 5-10 s apart: all counted
        clock.t = t
        timer.touch()
    clock.t = 200  # the expert left for three minutes
    timer.touch()
    clock.t = 212
    assert timer.stop() == pytest.approx(20 + 12)
    clock.t = 500
    timer.touch()  # stopped: nothing more counts
    assert timer.seconds == pytest.approx(32)
    timer.start(seconds=32)  # resumed task keeps its time
    clock.t = 503
    assert timer.stop() == pytest.approx(35)


def test_lock_names_its_holder_and_takes_over_stale_locks(tmp_path):
    path = tmp_path / "case.lock"
    alice = CaseLock(path, "alice", "tok-a")
    alice.acquire()
    alice.acquire()  # re-entrant for the same session
    with pytest.raises(LockHeld, match="alice") as err:
        CaseLock(path, "bob", "tok-b").acquire()
    assert socket.gethostname() in str(err.value) and str(path) in str(err.value)
    alice.release()
    assert not path.exists()
    # a lock left by a dead process on this host is stale
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    path.write_text(json.dumps({"user": "carol", "host": socket.gethostname(), "pid": int(dead.stdout), "token": "x"}))
    bob = CaseLock(path, "bob", "tok-b")
    bob.acquire()
    assert json.loads(path.read_text())["user"] == "bob"
    # one from another machine is never taken over
    path.write_text(json.dumps({"user": "dave", "host": "elsewhere", "pid": os.getpid(), "token": "y"}))
    with pytest.raises(LockHeld, match="dave on elsewhere"):
        bob.acquire()
    # releasing someone else's lock does nothing
    bob.release()
    assert path.exists()


def test_round_store_rejects_unsafe_or_broken_task_files(round_dir, tmp_path):
    body = json.loads((round_dir / "tasks.json").read_text())
    body["tasks"][0]["image"] = "../../../etc/passwd"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tasks.json").write_text(json.dumps(body))
    with pytest.raises(AnnotationFileError, match="escapes its root"):
        RoundStore(bad)
    with pytest.raises(AnnotationFileError, match="no tasks.json"):
        RoundStore(tmp_path / "missing")
    store = RoundStore(round_dir)
    assert store.label_names == {0: "background", 1: "Anterior", 2: "Posterior"}
    assert set(store.label_colors) == {1, 2}
    (round_dir / "annotations").mkdir()
    (round_dir / "annotations" / "hippocampus_004.json").write_text("{broken")
    with pytest.raises(AnnotationFileError, match="cannot read the saved progress"):
        RoundStore(round_dir)


def test_sample_round_is_prepared_once_and_then_resumed(tmp_path):
    from medal_napari._sample_data import prepare_sample_round

    path = prepare_sample_round(tmp_path / "s")
    store = RoundStore(path)
    bundled = json.loads((path / "tasks.json").read_text())["tasks"]
    assert len(store.tasks) == len(bundled) >= 10 and {t.kind for t in store.tasks} == {"slice", "supervoxel"}
    assert "CC-BY-SA" in (path / "README.md").read_text() and (path / "LICENSE").is_file()
    marker = path / "annotations" / "mine.txt"
    marker.parent.mkdir()
    marker.write_text("work")
    assert prepare_sample_round(tmp_path / "s") == path and marker.read_text() == "work"


def _task(**kw):
    from medal.tasks import Task

    base = dict(task_id="t0", case_id="c", image="i.nii.gz", kind="slice", axis=2, index=3, supervoxel=-1,
                bbox=[[0, 0, 3], [4, 5, 4]], score=1.0, predicted_cost_s=10.0, strategy="s")
    base.update(kw)
    return Task(**base)


def test_edits_outside_the_region_are_found_for_both_napari_atom_kinds():
    from collections import namedtuple

    import numpy as np

    from medal_napari.edits import split_edits

    Masked = namedtuple("Masked", "slice_key mask old_values new_value")  # napari >= 0.6 atom
    sl = (slice(0, 4), slice(0, 5), slice(3, 4))
    region = np.ones((4, 5, 1), bool)
    region[0, 0, 0] = False  # a hole, as a supervoxel region has
    whole_box = Masked((slice(0, 2), slice(0, 2), slice(3, 5)), None, np.arange(8).reshape(2, 2, 2), 1)
    mask = np.zeros((2, 2, 1), bool)
    mask[1, 1, 0] = True
    masked = Masked((slice(2, 4), slice(3, 5), slice(3, 4)), mask, np.array([7]), 2)
    legacy = ((np.array([0, 1]), np.array([0, 1]), np.array([3, 3])), np.array([9, 9]), 1)
    outside, n_out, n_in = split_edits([whole_box, masked, legacy], sl, region)
    # whole box: plane 4 (4 voxels) and the hole (0,0,3) out, 3 in; masked: 1 in; legacy: the hole out, 1 in
    assert (n_out, n_in) == (6, 3 + 1 + 1)
    coords, old = outside[0]
    got = sorted(zip(*(c.tolist() for c in coords), old.tolist()))
    assert got[0] == (0, 0, 3, 0) and (0, 0, 4, 1) in got and len(got) == 5
    assert outside[1][1].tolist() == [9]


def test_navigation_order_plane_and_value_checks():
    import numpy as np

    from medal_napari.edits import bad_values, neighbour, task_plane, value_per_second_order

    tasks = [_task(task_id="a", score=1, predicted_cost_s=10), _task(task_id="b", score=3, predicted_cost_s=10),
             _task(task_id="c", score=2, predicted_cost_s=5)]
    order = value_per_second_order(tasks)
    assert order == [2, 1, 0]
    # grouped by case: a patient is finished before the next is opened (cases by their best task)
    mixed = [_task(task_id="x1", case_id="x", score=5, predicted_cost_s=10), _task(task_id="y1", case_id="y", score=9, predicted_cost_s=10),
             _task(task_id="x2", case_id="x", score=1, predicted_cost_s=10), _task(task_id="y2", case_id="y", score=2, predicted_cost_s=10),
             _task(task_id="x3", case_id="x", score=4, predicted_cost_s=10)]
    assert [mixed[i].task_id for i in value_per_second_order(mixed)] == ["y1", "y2", "x1", "x3", "x2"]
    # the last 2 tasks are the round's reserve queue: after every other task, grouped the same way
    assert [mixed[i].task_id for i in value_per_second_order(mixed, reserve=2)] == ["y1", "x1", "x2", "x3", "y2"]
    statuses = ["todo", "done", "todo"]
    assert neighbour(order, 2, statuses, +1) == 1
    assert neighbour(order, 2, statuses, +1, only_todo=True) == 0
    assert neighbour(order, 2, statuses, -1) is None and neighbour(order, None, statuses, +1) == 2
    sv = _task(kind="supervoxel", supervoxel=4, bbox=[[0, 0, 2], [3, 3, 6]], mask="m.nii.gz")
    region = np.zeros((3, 3, 4), bool)
    region[:, :, 2] = True  # most of it on plane 2 + 2 = 4
    region[0, 0, 0] = True
    assert task_plane(sv, (slice(0, 3), slice(0, 3), slice(2, 6)), region) == 4
    assert task_plane(tasks[0], None, None) == 3
    from medal.data import LabelMap

    three = LabelMap((0, 1, 2), {0: "bg", 1: "a", 2: "b"})
    assert bad_values(np.array([0, 1, 2]), three) is None
    assert "[7]" in bad_values(np.array([0, 7]), three)
    sparse = LabelMap((0, 17, 42), {17: "liver"})  # sparse values as a dataset declares them
    assert bad_values(np.array([0, 17, 42]), sparse) is None
    msg = bad_values(np.array([0, 1, 17]), sparse)
    assert "[1]" in msg and "17 liver" in msg


def test_log_record_measures_what_was_painted():
    import numpy as np

    from medal.costs import feature_names
    from medal_napari.edits import log_record

    region = np.ones((10, 10, 1), bool)
    values = np.zeros((10, 10, 1), np.uint8)
    values[2:5, 2:6, 0] = 1  # a 3x4 rectangle of class 1
    from medal.data import LabelMap

    rec = log_record(_task(), region, values, spacing=(0.5, 1.0, 2.0), label_map=LabelMap((0, 1, 2)), seconds=12.34567,
                     user="u")
    assert set(feature_names(3)) <= set(rec)
    assert rec["area_mm2_1"] == 12 * 0.5 and rec["components_1"] == 1 and rec["area_mm2_2"] == 0
    assert rec["boundary_mm_1"] == 2 * 4 * 1.0 + 2 * 3 * 0.5 and rec["seconds"] == 12.346 and rec["user"] == "u"
    # sparse label values: features are counted per class index (value 42 is the second class)
    sparse = log_record(_task(), region, np.where(values == 1, 42, 0).astype(np.uint8), spacing=(0.5, 1.0, 2.0),
                        label_map=LabelMap((0, 17, 42)), seconds=1.0)
    assert sparse["area_mm2_2"] == 12 * 0.5 and sparse["area_mm2_1"] == 0
    assert rec["annotation"] == "draw" == sparse["annotation"]
    # a task opened on the model's prediction and corrected: only what changed is logged as work
    shown = values.copy()
    shown[2:5, 5, 0] = 0  # the prediction missed one column of the rectangle (3 pixels)
    fixed = log_record(_task(), region, values, spacing=(0.5, 1.0, 2.0), label_map=LabelMap((0, 1, 2)),
                       seconds=3.0, start=shown)
    assert fixed["annotation"] == "correct" and fixed["components_1"] == 1 and fixed["area_mm2_1"] == 3 * 0.5
    # the outline traced: the rectangle's new right side (3 x 0.5 mm) and the top and bottom of the column (2 x 1.0)
    assert fixed["boundary_mm_1"] == 3 * 0.5 + 2 * 1.0 and fixed["n_slices"] == rec["n_slices"]
    same = log_record(_task(), region, values, spacing=(0.5, 1.0, 2.0), label_map=LabelMap((0, 1, 2)),
                      seconds=2.0, start=values)  # accepted as shown: nothing but the check
    assert all(same[k] == 0 for k in feature_names(3) if k != "n_slices")


def test_case_labels_keep_finished_and_unfinished_work_apart(tmp_path):
    import numpy as np

    from medal.data import UNLABELED, Volume, load_volume
    from medal.data.slabs import SlabNifti
    from medal_napari.store import CaseLabels

    ref = Volume(np.zeros((4, 5, 6), np.int16), np.eye(4))
    labels = CaseLabels("c", SlabNifti(ref), SlabNifti(ref), tmp_path / "a" / "c.nii.gz", tmp_path / "d" / "c.nii.gz")
    sl = (slice(0, 4), slice(0, 5), slice(2, 3))
    region = np.ones((4, 5, 1), bool)
    values = np.full((4, 5, 1), 1, np.uint8)
    labels.store_task(sl, region, values, status="todo", started=False)
    assert labels.write() == []  # nothing painted, nothing written
    labels.store_task(sl, region, values, status="todo", started=True)
    assert labels.write() == [tmp_path / "d" / "c.nii.gz"]
    labels.store_task(sl, region, values, status="done", started=True)
    labels.write()
    final, draft = load_volume(tmp_path / "a" / "c.nii.gz").array, load_volume(tmp_path / "d" / "c.nii.gz").array
    assert (final[:, :, 2] == 1).all() and (np.delete(final, 2, axis=2) == UNLABELED).all()
    assert (draft == UNLABELED).all()
    labels.store_task(sl, region, values, status="skipped", started=True)
    labels.write()
    assert (load_volume(tmp_path / "a" / "c.nii.gz").array == UNLABELED).all()
    assert (labels.working()[:, :, 2] == 1).all()  # the skipped task's painting stays in the drafts


def test_case_cache_evicts_least_recent_but_never_the_case_on_screen():
    import threading

    from medal_napari.cache import CaseCache

    loads, threads = [], set()

    def load(case_id):
        loads.append(case_id)
        threads.add(threading.current_thread().name)
        return case_id

    cache = CaseCache(load, size=2)
    cache.get("a")
    cache.get("b", keep="a")
    cache.get("c", keep="a")  # evicts b, keeps a (on screen)
    assert "a" in cache and "c" in cache and "b" not in cache
    cache.prefetch("d")
    assert cache.get("d", keep="c").data == "d" and loads.count("d") == 1
    assert any(name.startswith("medal-prefetch") for name in threads)
    cache.close()


def test_window_level_presets_drag_and_brush_size():
    import numpy as np

    from medal_napari.display import WINDOWS, brush_size_for, drag_window, window_limits

    assert window_limits("CT soft tissue", (0, 1)) == (-150.0, 250.0)
    assert window_limits("auto (this case)", (3.0, 900.0)) == (3.0, 900.0)
    assert set(WINDOWS) >= {"CT brain", "CT bone", "CT lung"}
    lo, hi = drag_window((0.0, 100.0), dx=200.0, dy=0.0, span=100.0)  # drag right: a wider window
    assert hi - lo == pytest.approx(100 * np.e) and (lo + hi) / 2 == pytest.approx(50.0)
    lo, hi = drag_window((0.0, 100.0), dx=0.0, dy=100.0, span=100.0)  # drag down: a higher level
    assert (lo + hi) / 2 == pytest.approx(100.0) and hi - lo == pytest.approx(100.0)
    assert brush_size_for((1.0, 1.0, 1.0)) == 3 and brush_size_for((0.5, 0.5, 3.0)) == 6
    assert brush_size_for((4.0, 4.0, 4.0)) == 1


def test_working_labels_skip_untouched_volumes_but_never_hide_painted_ones(tmp_path):
    import numpy as np

    from medal.data import UNLABELED, Volume
    from medal.data.slabs import SlabNifti
    from medal_napari.store import CaseLabels

    ref = Volume(np.zeros((4, 5, 6), np.int16), np.eye(4))
    labels = CaseLabels("c", SlabNifti(ref), SlabNifti(ref), tmp_path / "a" / "c.nii.gz", tmp_path / "d" / "c.nii.gz")
    assert labels.final.uniform == UNLABELED and labels.draft.uniform == UNLABELED
    assert not labels.working().any()
    sl, region = (slice(0, 4), slice(0, 5), slice(2, 3)), np.ones((4, 5, 1), bool)
    labels.store_task(sl, region, np.full((4, 5, 1), 2, np.uint8), status="todo", started=True)
    assert labels.draft.uniform is None and labels.final.uniform == UNLABELED
    working = labels.working()
    assert (working[:, :, 2] == 2).all() and int((working != 0).sum()) == 20
    # volumes read back from files are scanned, whatever they hold
    read = np.full((4, 5, 6), UNLABELED, np.uint8)
    read[1, 1, 4] = 1
    back = CaseLabels("c", SlabNifti(ref, read), SlabNifti(ref), tmp_path / "a" / "c.nii.gz", tmp_path / "d" / "c.nii.gz")
    assert back.final.uniform is None and back.working()[1, 1, 4] == 1 and int(back.working().sum()) == 1


def test_round_store_shows_the_rounds_display_copy_and_falls_back_without_it(round_dir):
    import numpy as np

    from medal.tasks.display import write_display_cache
    from tests.tasks.test_display import is_mapped

    store = RoundStore(round_dir)
    task = store.tasklist.tasks[0]
    source = store.load_case(task.case_id, [task], overlays=False)
    assert not is_mapped(source.image.array)  # decompressed into memory
    assert write_display_cache(store.tasklist, store.round_dir, min_voxels=0) == {}  # the sample cases are small
    copy = RoundStore(round_dir).load_case(task.case_id, [task], overlays=False)
    assert is_mapped(copy.image.array)
    np.testing.assert_array_equal(copy.image.array, source.image.array)
    assert copy.contrast == source.contrast
    np.testing.assert_allclose(copy.image.affine, source.image.affine)


def test_an_annotation_saved_cropped_by_another_tool_opens_whole_and_an_off_grid_one_is_refused(round_dir):
    """The expert painted part of a case in 3D Slicer, which saves the segmentation cropped to what was painted:
    opening the case shows that painting in place, the rest not annotated; a file that is not the image's voxels
    (half a voxel off) is an error and the file stays as it is."""
    import numpy as np

    from medal.data import UNLABELED, Volume, save_volume

    store = RoundStore(round_dir)
    task = store.tasklist.tasks[0]
    data = store.load_case(task.case_id, [task], overlays=False)
    image = data.image
    box = (slice(4, 20), slice(10, 30), slice(7, 9))
    painted = np.zeros([s.stop - s.start for s in box], np.uint8)
    painted[3:9, 5:12, :] = 2
    start = np.eye(4)
    start[:3, 3] = [s.start for s in box]
    path = round_dir / "annotations" / f"{task.case_id}.nii.gz"
    save_volume(Volume(painted, image.affine @ start), path)
    labels = store.case_labels(task.case_id, image)
    full = labels.final.array
    assert full.shape == image.shape
    np.testing.assert_array_equal(full[box], painted)
    outside = np.ones(image.shape, bool)
    outside[box] = False
    assert (full[outside] == UNLABELED).all()
    assert (labels.working()[box] == painted).all()
    start[0, 3] += 0.5
    save_volume(Volume(painted, image.affine @ start), path)
    before = path.read_bytes()
    with pytest.raises(AnnotationFileError, match=r"hippocampus_004\.nii\.gz: shape \(16, 20, 2\) does not match "
                                                  r"image shape .* \(the image's voxel size and axes, but its voxels "
                                                  r"sit 0\.5 mm off the image's\); medal will not overwrite it"):
        store.case_labels(task.case_id, image)
    assert path.read_bytes() == before
