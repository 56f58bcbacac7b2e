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
    assert len(store.tasks) == 18 and {t.kind for t in store.tasks} == {"slice", "supervoxel"}
    assert "CC-BY-SA" in (path / "README.md").read_text() and (path / "LICENSE").is_file()
    marker = path / "annotations" / "mine.txt"
    marker.parent.mkdir()
    marker.write_text("work")
    assert prepare_sample_round(tmp_path / "s") == path and marker.read_text() == "work"
