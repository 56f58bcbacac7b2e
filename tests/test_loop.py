"""Rounds, resume and ingest on real hippocampus cases with a tiny network."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from medal.config import config_from_dict
from medal.data import UNLABELED, load_dataset, load_volume, sample_dataset, save_volume
from medal.loop import ingest, labels_dir, round_dir, run_round

TINY = {
    # strides planned by the loop (model.strides: auto, the default): [2] for the sample's 1 mm voxels
    "model": {"channels": [8, 16], "strides": "auto", "head_channels": 8},
    "training": {"patch_size": [32, 48, 32], "batch_size": 2, "max_epochs": 1, "iterations_per_epoch": 3,
                 "val_fraction": 0.0},
    "uncertainty": {"mc_samples": 3},
    "selection": {"budget_s": 120.0},
}
POOL = ["hippocampus_004", "hippocampus_006", "hippocampus_007"]


def _seed_labels(run):
    """Two painted slices of one case: the only labels the run starts with."""
    ds = load_dataset(sample_dataset())
    lab = load_volume(ds.case("hippocampus_004").label)
    part = np.full(lab.shape, UNLABELED, np.uint8)
    part[:, :, 10] = lab.array[:, :, 10]
    part[:, :, 20] = lab.array[:, :, 20]
    save_volume(lab.with_array(part), labels_dir(run) / "hippocampus_004.nii.gz")
    return ds


def test_round_writes_manifest_and_resumes_without_redoing_steps(tmp_path):
    cfg = config_from_dict(TINY)
    ds = _seed_labels(tmp_path / "a")
    res = run_round(tmp_path / "a", ds, cfg, index=0, pool=POOL)
    m = res.manifest
    assert res.steps_run == ["train", "score", "select"]
    for key in ("config", "checkpoint", "inputs", "outputs", "budget", "metrics", "steps"):
        assert key in m
    assert m["budget"]["predicted_s"] <= m["budget"]["budget_s"] == 120.0
    assert len(m["checkpoint"]["sha256"]) == 64 and m["inputs"]["pool"] == POOL
    assert m["checkpoint"]["strides"] == [2] and m["config"]["model"]["strides"] == "auto"  # planned, as asked
    assert json.loads((res.round_dir / "manifest.json").read_text()) == m
    # staged run: stop after training, then resume; the resumed run must not retrain
    _seed_labels(tmp_path / "b")
    first = run_round(tmp_path / "b", ds, cfg, index=0, pool=POOL, stop_after="train")
    assert first.steps_run == ["train"]
    mtime = (first.round_dir / "model.pt").stat().st_mtime_ns
    again = run_round(tmp_path / "b", ds, cfg, index=0, pool=POOL)
    assert again.steps_run == ["score", "select"]
    assert (again.round_dir / "model.pt").stat().st_mtime_ns == mtime
    # ... and reproduces exactly the tasks of the uninterrupted run
    ta = json.loads((res.round_dir / "tasks.json").read_text())["tasks"]
    tb = json.loads((again.round_dir / "tasks.json").read_text())["tasks"]
    assert ta == tb and len(ta) > 0
    # a finished round does nothing when run again
    assert run_round(tmp_path / "b", ds, cfg, index=0, pool=POOL).steps_run == []
    # its labelled case read by memory map (training.items_in_memory_gb: 0): the same tasks, nothing left behind
    scratch = tmp_path / "scratch"
    mapped = config_from_dict({**TINY, "training": {**TINY["training"], "items_in_memory_gb": 0,
                                                     "scratch_dir": str(scratch)}})
    _seed_labels(tmp_path / "c")
    res_c = run_round(tmp_path / "c", ds, mapped, index=0, pool=POOL)
    assert json.loads((res_c.round_dir / "tasks.json").read_text())["tasks"] == ta
    assert res_c.manifest["metrics"]["cases_by_memory_map"] == 1 and list(scratch.iterdir()) == []
    assert m["metrics"]["cases_by_memory_map"] == 0


@pytest.mark.slow
def test_round_killed_midway_resumes(tmp_path):
    """SIGKILL `medal round` once training is recorded; the rerun resumes and finishes."""
    run = tmp_path / "run"
    _seed_labels(run)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(TINY))
    cmd = [sys.executable, "-m", "medal.cli", "round", str(sample_dataset()), "--run", str(run), "--index", "0",
           "--config", str(tmp_path / "c.yaml"), "--cases", *POOL]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    prog = round_dir(run, 0) / "progress.json"
    deadline = time.time() + 120
    while time.time() < deadline and not (prog.is_file() and "train" in json.loads(prog.read_text())):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert "select" not in json.loads(prog.read_text())
    assert not list(round_dir(run, 0).rglob(".*.tmp*"))  # no partial files left behind
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "resumed" in out.stdout and "train" not in out.stdout.split("ran")[-1]
    assert (round_dir(run, 0) / "manifest.json").is_file()


def test_ingest_merges_keeps_history_and_never_loses_painting(tmp_path):
    ds = _seed_labels(tmp_path)
    target = labels_dir(tmp_path) / "hippocampus_004.nii.gz"
    before = load_volume(target).array
    ann = np.full(before.shape, UNLABELED, np.uint8)
    ann[:, :, 15] = 1  # a new slice
    ann[0, 0, 10] = 2  # a correction of an existing voxel
    rd = tmp_path / "round_000"
    save_volume(load_volume(target).with_array(ann), rd / "annotations" / "hippocampus_004.nii.gz")
    rep = ingest(tmp_path, rd, ds)
    after = load_volume(target).array
    assert rep.cases["hippocampus_004"] == {"added": before.shape[0] * before.shape[1], "changed": 1}
    assert (after[:, :, 15] == 1).all() and after[0, 0, 10] == 2
    assert (after[:, :, 20] == before[:, :, 20]).all()  # untouched annotation survives
    hist = load_volume(labels_dir(tmp_path) / ".history" / "hippocampus_004.round_000.nii.gz").array
    np.testing.assert_array_equal(hist, before)
    # a later round corrects part of round 0's slice ...
    fix = np.full(before.shape, UNLABELED, np.uint8)
    fix[:4, :, 15] = 2
    save_volume(load_volume(target).with_array(fix), tmp_path / "round_001" / "annotations" / "hippocampus_004.nii.gz")
    ingest(tmp_path, tmp_path / "round_001", ds)
    corrected = load_volume(target).array
    # ... then round 0 is ingested again after its expert painted one more slice: only that slice is news,
    # so the later correction stands; the first history file is kept, a second one added
    ann[:, :, 16] = 2
    save_volume(load_volume(target).with_array(ann), rd / "annotations" / "hippocampus_004.nii.gz")
    rep = ingest(tmp_path, rd, ds)
    final = load_volume(target).array
    assert (final[:, :, 16] == 2).all() and (final[:4, :, 15] == 2).all() and (final[4:, :, 15] == 1).all()
    assert rep.cases["hippocampus_004"] == {"added": before.shape[0] * before.shape[1], "changed": 0}
    np.testing.assert_array_equal(
        load_volume(labels_dir(tmp_path) / ".history" / "hippocampus_004.round_000.nii.gz").array, before)
    np.testing.assert_array_equal(
        load_volume(labels_dir(tmp_path) / ".history" / "hippocampus_004.round_000.2.nii.gz").array, corrected)
    assert after[0, 0, 10] == final[0, 0, 10] == 2
    # ingested once more with nothing new: no label write, no third history copy
    stamp = target.stat().st_mtime_ns
    assert ingest(tmp_path, rd, ds).cases["hippocampus_004"] == {"added": 0, "changed": 0}
    assert target.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in (labels_dir(tmp_path) / ".history").iterdir()) == [
        "hippocampus_004.round_000.2.nii.gz", "hippocampus_004.round_000.nii.gz", "hippocampus_004.round_001.nii.gz"]


def test_an_annotation_another_tool_saved_cropped_and_reordered_merges_as_the_full_file(tmp_path):
    """An expert who painted a task in another tool (3D Slicer saves a segmentation cropped to what was painted,
    and may store it in another axis order): ingest reads it onto the image's grid, the voxels outside its box
    not annotated, so the merged labels are those of the same painting saved full size, and the earlier
    painting outside the box survives."""
    from medal.data import Volume

    ds = _seed_labels(tmp_path)
    target = labels_dir(tmp_path) / "hippocampus_004.nii.gz"
    before = load_volume(target).array
    truth = load_volume(ds.case("hippocampus_004").label)
    box = (slice(5, 30), slice(8, 40), slice(14, 17))  # three painted slices, part of each
    ann = np.full(before.shape, UNLABELED, np.uint8)
    ann[box] = truth.array[box]
    start = np.eye(4)
    start[:3, 3] = [s.start for s in box]
    small = Volume(np.ascontiguousarray(ann[box]), truth.affine @ start)
    turn = np.zeros((4, 4))  # stored with the first two axes swapped and reversed
    turn[0, 1], turn[1, 0], turn[2, 2], turn[3, 3] = -1.0, -1.0, 1.0, 1.0
    turn[0, 3], turn[1, 3] = small.shape[0] - 1, small.shape[1] - 1
    stored = Volume(np.ascontiguousarray(np.flip(small.array, (0, 1)).transpose(1, 0, 2)), small.affine @ turn)
    save_volume(stored, tmp_path / "round_000" / "annotations" / "hippocampus_004.nii.gz")
    assert load_volume(tmp_path / "round_000" / "annotations" / "hippocampus_004.nii.gz").shape == (32, 25, 3)
    rep = ingest(tmp_path, tmp_path / "round_000", ds)
    assert rep.skipped == {} and rep.cases["hippocampus_004"] == {"added": 25 * 32 * 3, "changed": 0}
    expected = before.copy()
    expected[box] = truth.array[box]
    np.testing.assert_array_equal(load_volume(target).array, expected)
    assert (expected[:, :, 10] == truth.array[:, :, 10]).all()  # the seed slices outside the box are kept
    # a file that is not the image's voxels (half a voxel off) is skipped and named, the labels untouched
    half = np.eye(4)
    half[0, 3] = 0.5
    save_volume(Volume(small.array, small.affine @ half), tmp_path / "round_001" / "annotations" / "hippocampus_004.nii.gz")
    rep = ingest(tmp_path, tmp_path / "round_001", ds)
    assert rep.cases == {} and "hippocampus_004.nii.gz: shape (25, 32, 3) does not match image shape" in \
        rep.skipped["hippocampus_004.nii.gz"]
    np.testing.assert_array_equal(load_volume(target).array, expected)


def test_a_round_waits_for_the_earlier_rounds_annotations_to_be_ingested(tmp_path):
    """Finished annotations not merged into run/labels would not be learnt from, and their units could
    be asked for again: the next round refuses to train, says what to run, and leaves nothing behind."""
    ds = _seed_labels(tmp_path)
    cfg = config_from_dict(TINY)
    labels_before = {p.name: p.read_bytes() for p in labels_dir(tmp_path).glob("*.nii.gz")}
    lab = load_volume(ds.case("hippocampus_006").label)
    ann = np.full(lab.shape, UNLABELED, np.uint8)
    ann[:, :, 12] = lab.array[:, :, 12]
    rd0 = tmp_path / "round_000"
    save_volume(lab.with_array(ann), rd0 / "annotations" / "hippocampus_006.nii.gz")
    with pytest.raises(ValueError, match=r"round_000: finished annotations of 1 case\(s\) \(hippocampus_006\) are not "
                                         r"merged .* run `medal ingest .* --round .*round_000` first"):
        run_round(tmp_path, ds, cfg, index=1, pool=POOL)
    assert not (tmp_path / "round_001").exists()
    assert {p.name: p.read_bytes() for p in labels_dir(tmp_path).glob("*.nii.gz")} == labels_before
    ingest(tmp_path, rd0, ds)
    assert run_round(tmp_path, ds, cfg, index=1, pool=POOL, stop_after="train").steps_run == ["train"]
    # painted again after the ingest (a later save of the same case): pending once more
    later = (rd0 / "ingest.json").stat().st_mtime_ns + 10**9
    os.utime(rd0 / "annotations" / "hippocampus_006.nii.gz", ns=(later, later))
    with pytest.raises(ValueError, match="round_000: finished annotations of 1 case"):
        run_round(tmp_path, ds, cfg, index=2, pool=POOL)
    assert run_round(tmp_path, ds, cfg, index=1, pool=POOL, stop_after="score").steps_run == ["score"]  # trained
    # a cold start's folder under any name (the CLI reference's run/round_init) counts too
    ingest(tmp_path, rd0, ds)
    save_volume(lab.with_array(ann), tmp_path / "round_init" / "annotations" / "hippocampus_007.nii.gz")
    with pytest.raises(ValueError, match=r"round_init: finished annotations of 1 case\(s\) \(hippocampus_007\)"):
        run_round(tmp_path, ds, cfg, index=2, pool=POOL)
    assert not (tmp_path / "round_002").exists()


def test_a_save_during_the_ingest_is_still_pending(tmp_path):
    """An expert saving a case while `medal ingest` runs on the same round: the file's time is older than
    ingest.json, but it is not what the ingest read. Each file's stamp (time, inode, size) taken before
    it is read tells; a file the ingest skipped for bad values is not pending, nor one left alone."""
    import json

    from medal.loop import pending_ingest

    ds = _seed_labels(tmp_path)
    lab = load_volume(ds.case("hippocampus_006").label)
    ann = np.full(lab.shape, UNLABELED, np.uint8)
    ann[:, :, 12] = lab.array[:, :, 12]
    rd0 = tmp_path / "round_000"
    path = rd0 / "annotations" / "hippocampus_006.nii.gz"
    save_volume(lab.with_array(ann), path)
    bad = ann.copy()
    bad[:, :, 13] = 7  # not a label value: skipped by the ingest
    save_volume(lab.with_array(bad), rd0 / "annotations" / "hippocampus_007.nii.gz")
    assert pending_ingest(rd0) == ["hippocampus_006", "hippocampus_007"]
    rep = ingest(tmp_path, rd0, ds)
    assert "hippocampus_007.nii.gz" in rep.skipped and pending_ingest(rd0) == []
    # the expert's next save lands while the ingest is still writing: older than ingest.json
    ann[:, :, 14] = lab.array[:, :, 14]
    save_volume(lab.with_array(ann), path)
    old = (rd0 / "ingest.json").stat().st_mtime_ns - 10**9
    os.utime(path, ns=(old, old))
    assert pending_ingest(rd0) == ["hippocampus_006"]
    with pytest.raises(ValueError, match=r"round_000: finished annotations of 1 case\(s\) \(hippocampus_006\)"):
        run_round(tmp_path, ds, config_from_dict(TINY), index=1, pool=POOL)
    assert ingest(tmp_path, rd0, ds).cases["hippocampus_006"]["added"] > 0 and pending_ingest(rd0) == []
    # an ingest.json written before the stamps were kept: judged by its time, as then
    stamp = rd0 / "ingest.json"
    data = json.loads(stamp.read_text())
    data.pop("files")
    stamp.write_text(json.dumps(data))
    assert pending_ingest(rd0) == []
    later = stamp.stat().st_mtime_ns + 10**9
    os.utime(path, ns=(later, later))
    assert pending_ingest(rd0) == ["hippocampus_006"]


def test_a_round_number_past_the_next_is_refused(tmp_path):
    """--index 5 after round 1 (a typo) would train from scratch, no warm start: refused, nothing made.
    With no numbered round yet, 0 or 1 (after a cold start under another name) are both fine to start."""
    ds = _seed_labels(tmp_path)
    (tmp_path / "round_000").mkdir()
    (tmp_path / "round_001").mkdir()
    with pytest.raises(ValueError, match=r"round index 5: .* last round is 1, so the next is 2 \(--index 2\)"):
        run_round(tmp_path, ds, config_from_dict(TINY), index=5, pool=POOL)
    assert sorted(p.name for p in tmp_path.glob("round_*")) == ["round_000", "round_001"]


def test_round_without_any_label_says_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="no annotated voxel in the pool yet; start with `medal coldstart`"):
        run_round(tmp_path, load_dataset(sample_dataset()), config_from_dict(TINY), index=0, pool=POOL)


def test_badge_round_embeds_scores_it_finds_without_them_and_medal_score_writes_them(tmp_path):
    """selection.strategy badge on real cases: a round scored without embeddings (as a simulation's shared
    round 0 is) gets them from its own model before selecting; `medal score` writes them when the config's
    strategy is badge, and `medal select --strategy badge` reads them."""
    from medal.selection.strategies import add_gradient_embeddings
    from medal.tasks import read_tasks
    from medal.uncertainty.embedding import EMBEDDING_FILE

    base = config_from_dict(TINY)
    ds = _seed_labels(tmp_path / "run")
    res = run_round(tmp_path / "run", ds, base, index=0, pool=POOL, stop_after="score")
    scores = res.round_dir / "scores"
    assert not list(scores.glob(f"*/{EMBEDDING_FILE}"))
    res = run_round(tmp_path / "run", ds, base, index=0, pool=POOL, strategy="badge")
    assert res.steps_run == ["select"]
    assert sorted(p.parent.name for p in scores.glob(f"*/{EMBEDDING_FILE}")) == POOL
    tl = read_tasks(res.round_dir / "tasks.json")
    n_main = len(tl.tasks) - int(tl.meta["reserve_tasks"])
    assert n_main and {t.strategy for t in tl.tasks} == {"badge"}
    assert sum(t.predicted_cost_s for t in tl.tasks[:n_main]) <= 120.0
    # `medal score` with the strategy in its config writes the embeddings beside the score volumes
    conf = tmp_path / "badge.yaml"
    conf.write_text(yaml.safe_dump({**TINY, "selection": {"budget_s": 120.0, "strategy": "badge"}}))
    out = subprocess.run([sys.executable, "-m", "medal.cli", "score", str(sample_dataset()), "--checkpoint",
                          str(res.round_dir / "model.pt"), "--out", str(tmp_path / "cli"), "--config", str(conf),
                          "--cases", *POOL[:2]], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for case in POOL[:2]:  # the same model and image: the same embeddings as the round's
        a = np.load(tmp_path / "cli" / "scores" / case / EMBEDDING_FILE)
        b = np.load(scores / case / EMBEDDING_FILE)
        np.testing.assert_allclose(a["axis2"], b["axis2"], rtol=1e-4, atol=1e-3)
    sel = subprocess.run([sys.executable, "-m", "medal.cli", "select", str(sample_dataset()), "--scores",
                          str(tmp_path / "cli" / "scores"), "--out", str(tmp_path / "sel"), "--budget", "120",
                          "--strategy", "badge", "--config", str(conf)], capture_output=True, text=True)
    assert sel.returncode == 0, sel.stderr
    assert {t.case_id for t in read_tasks(tmp_path / "sel" / "tasks.json").tasks} <= set(POOL[:2])
    # scores without embeddings: one line naming the file, no traceback
    (tmp_path / "cli" / "scores" / POOL[0] / EMBEDDING_FILE).unlink()
    bad = subprocess.run([sys.executable, "-m", "medal.cli", "select", str(sample_dataset()), "--scores",
                          str(tmp_path / "cli" / "scores"), "--out", str(tmp_path / "bad"), "--budget", "120",
                          "--strategy", "badge"], capture_output=True, text=True)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert f"{POOL[0]}/{EMBEDDING_FILE}: no gradient embeddings" in bad.stderr
    # the table's rows carry their own slice's embedding
    from medal.regions import RegionTable

    t = RegionTable({"case_id": np.array([POOL[1]] * 2, dtype=object), "kind": np.array(["slice"] * 2, dtype=object),
                     "axis": np.array([2, 2]), "index": np.array([3, 7])})
    t = add_gradient_embeddings(t, tmp_path / "cli" / "scores")
    emb = np.load(tmp_path / "cli" / "scores" / POOL[1] / EMBEDDING_FILE)["axis2"]
    np.testing.assert_array_equal(t["grad_embedding"], emb[[3, 7]])
    assert t["has_embedding"].all()
    # selection.badge_weighting: foreground reads the foreground-weighted set written beside it
    fg = add_gradient_embeddings(t, tmp_path / "cli" / "scores", weighting="foreground")
    emb_fg = np.load(tmp_path / "cli" / "scores" / POOL[1] / EMBEDDING_FILE)["fg_axis2"]
    np.testing.assert_array_equal(fg["grad_embedding"], emb_fg[[3, 7]])
    assert not np.allclose(fg["grad_embedding"], t["grad_embedding"])
