"""The plugin inside napari (manifest, reader, sample data, commands) and a whole round trip:
select -> annotate three tasks in napari -> `medal ingest` -> the next round trains on them."""

import json
import subprocess
import sys

import numpy as np
import pytest

from medal.config import config_from_dict
from medal.data import UNLABELED, load_dataset, load_volume, sample_dataset, save_volume
from medal.loop import labels_dir, round_dir, run_round

from .conftest import plane_index

pytestmark = pytest.mark.gui

TINY = {
    "model": {"channels": [8, 16], "strides": [2], "head_channels": 8},
    "training": {"patch_size": [32, 48, 32], "batch_size": 2, "max_epochs": 1, "iterations_per_epoch": 3,
                 "val_fraction": 0.0},
    "uncertainty": {"mc_samples": 3},
    "selection": {"budget_s": 400.0, "skip_annotated_above": 0.5},
}
POOL = ["hippocampus_004", "hippocampus_006", "hippocampus_007"]


def test_manifest_declares_reader_widget_and_sample():
    import npe2

    pm = npe2.PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-medal")
    assert [w.display_name for w in manifest.contributions.widgets] == ["medal tasks"]
    assert manifest.contributions.readers[0].filename_patterns == ["tasks.json"]
    assert [s.key for s in manifest.contributions.sample_data] == ["hippocampus_round"]


def test_reader_opens_a_round_dropped_on_napari(make_napari_viewer, round_dir, qtbot):
    viewer = make_napari_viewer(show=True)
    viewer.open(str(round_dir / "tasks.json"), plugin="napari-medal")
    widget = next(w for w in viewer.window.dock_widgets.values() if type(w).__name__ == "AnnotationWidget")
    assert widget.session is not None and widget.session.task is not None
    assert "labels" in viewer.layers and "image" in viewer.layers
    widget.close_session()


def test_sample_data_opens_the_bundled_round(make_napari_viewer, tmp_path, monkeypatch, qtbot):
    monkeypatch.setenv("MEDAL_SAMPLE_ROUND", str(tmp_path / "sample"))
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-medal", "hippocampus_round")
    qtbot.waitUntil(lambda: "labels" in viewer.layers, timeout=5000)
    names = [layer.name for layer in viewer.layers]
    assert names.count("image") == 1 and "task region" in names  # the sample's image layer was reused
    assert (tmp_path / "sample" / "tasks.json").is_file() and (tmp_path / "sample" / "LICENSE").is_file()
    body = json.loads((tmp_path / "sample" / "tasks.json").read_text())
    assert body["dataset_root"] == str(sample_dataset())
    widget = next(w for w in viewer.window.dock_widgets.values() if type(w).__name__ == "AnnotationWidget")
    widget.close_session()


def test_commands_start_and_fail_clearly(tmp_path):
    out = subprocess.run([sys.executable, "-m", "medal_napari.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--autosave" in out.stdout
    out = subprocess.run([sys.executable, "-m", "medal.cli", "annotate", str(tmp_path / "none")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "no tasks.json" in out.stderr


@pytest.mark.slow
def test_three_tasks_painted_in_napari_reach_the_next_round(open_widget, tmp_path, qtbot):
    from medal.loop import ingest

    run = tmp_path / "run"
    ds = load_dataset(sample_dataset())
    truth = load_volume(ds.case("hippocampus_004").label)
    seed = np.full(truth.shape, UNLABELED, np.uint8)
    seed[:, :, 10] = truth.array[:, :, 10]
    save_volume(truth.with_array(seed), labels_dir(run) / "hippocampus_004.nii.gz")
    cfg = config_from_dict(TINY)
    r0 = run_round(run, ds, cfg, index=0, pool=POOL)
    tasks0 = json.loads((r0.round_dir / "tasks.json").read_text())["tasks"]
    assert len(tasks0) >= 3

    viewer, widget = open_widget(r0.round_dir)
    s = widget.session
    lab = viewer.layers["labels"]
    painted = {}
    for _ in range(3):  # the expert copies the truth of the task's slice, as napari's fill would
        task = s.task
        gt = load_volume(ds.case(task.case_id).label).array
        sl, region = s._region
        target = np.asarray(lab.data)
        idx = np.nonzero(region)
        coords = tuple(i + x.start for i, x in zip(idx, sl))
        lab.data_setitem(coords, gt[coords].astype(np.uint8))
        qtbot.wait(10)
        painted[(task.case_id, task.axis, task.index)] = gt[plane_index(task, gt.shape)].copy()
        assert s.mark_done(confirm=True)  # a slice may hold no hippocampus: saved as background, no question
    widget.close_session()

    rep = ingest(run, r0.round_dir, ds)
    assert sum(v["added"] for v in rep.cases.values()) == sum(p.size for p in painted.values())
    for (case, axis, index), plane in painted.items():
        merged = load_volume(labels_dir(run) / f"{case}.nii.gz").array
        np.testing.assert_array_equal(merged[tuple(index if d == axis else slice(None) for d in range(3))], plane)

    r1 = run_round(run, ds, cfg, index=1, pool=POOL)
    trained_on = set(r1.manifest["inputs"]["train_cases"])
    assert {case for case, _, _ in painted} <= trained_on
    tasks1 = json.loads((round_dir(run, 1) / "tasks.json").read_text())["tasks"]
    again = {(t["case_id"], t["axis"], t["index"]) for t in tasks1 if t["kind"] == "slice"}
    assert not again & set(painted)  # annotated slices are not asked for again


@pytest.mark.slow
def test_finish_round_ingests_and_opens_the_next_round(open_widget, tmp_path, qtbot):
    """The expert never needs the terminal: Finish round ingests the round's annotations (with its
    report), makes round N+1 in a worker thread, and opens it."""
    import json

    import numpy as np

    from medal.config import config_from_dict
    from medal.data import load_dataset, load_volume, sample_dataset, save_volume
    from medal.loop import run_round

    ds = load_dataset(sample_dataset())
    pool = [c.case_id for c in ds.cases[:3]]
    run = tmp_path / "run"
    for cid in pool:
        lab = load_volume(ds.case(cid).label)
        part = np.full(lab.shape, 255, np.uint8)
        part[:, :, ::6] = lab.array[:, :, ::6]
        save_volume(lab.with_array(part), run / "labels" / f"{cid}.nii.gz")
    cfg = config_from_dict({"model": {"channels": [8, 16], "strides": [2], "head_channels": 8},
                            "training": {"patch_size": [16, 16, 16], "batch_size": 2, "max_epochs": 1,
                                         "iterations_per_epoch": 2, "val_fraction": 0.0, "num_threads": 1},
                            "uncertainty": {"mc_samples": 2, "roi_size": [16, 16, 16]},
                            "selection": {"budget_s": 400.0},
                            # round 1 scores all 20 cases, so novelty_share: auto trains the cold start's encoder:
                            # 300 steps took 63 s of this test; its quality is not what this test checks
                            "coldstart": {"encoder_steps": 20}})
    run_round(run, ds, cfg, index=0, pool=pool)
    viewer, widget = open_widget(run / "round_000")
    s = widget.session
    task = s.task
    lab = viewer.layers["labels"]
    sl, region = s._region
    gt = load_volume(ds.case(task.case_id).label).array
    idx = np.nonzero(region)
    coords = tuple(i + x.start for i, x in zip(idx, sl))
    lab.data_setitem(coords, gt[coords].astype(np.uint8))
    qtbot.wait(10)
    assert s.mark_done(confirm=True)
    widget.finish_round()
    qtbot.waitUntil(lambda: widget.session is not None and widget.session.store.round_dir.name == "round_001",
                    timeout=300_000)
    assert json.loads((run / "round_000" / "ingest.json").read_text())["cases"][task.case_id]["added"] > 0
    assert (run / "round_001" / "manifest.json").is_file() and (run / "report.md").is_file()
    assert widget.session.task is not None and not widget.progress.isVisible()
    merged = load_volume(run / "labels" / f"{task.case_id}.nii.gz").array
    plane = tuple(task.index if d == task.axis else slice(None) for d in range(3))
    np.testing.assert_array_equal(merged[plane], gt[plane])


def test_finish_round_needs_a_round_made_by_medal_round(open_widget, tmp_path):
    from medal_napari._sample_data import prepare_sample_round

    rd = prepare_sample_round(tmp_path / "round")
    viewer, widget = open_widget(rd)
    widget.finish_round()
    assert "not made by `medal round`" in widget.message_label.text() and widget.session is not None
