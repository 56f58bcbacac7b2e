"""Datasets as users bring them, and bad input as users make it: every case on disk, through the CLI.

Each run checks the exit code, a one-line message naming the file or key, that no Python traceback
reached the user, and (for batch commands) that the other cases were processed.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from medal.data import LabelMap, load_dataset, load_volume, sample_dataset, save_volume
from medal.testing import SPARSE_LABELS, write_sparse_label_dataset

TINY = {"model": {"channels": [8, 16], "strides": [2], "head_channels": 8},
        "training": {"patch_size": [16, 16, 16], "batch_size": 2, "max_epochs": 1, "iterations_per_epoch": 3,
                     "val_fraction": 0.0, "num_threads": 1},
        "uncertainty": {"mc_samples": 2, "roi_size": [16, 16, 16]},
        "selection": {"budget_s": 3000.0},
        "coldstart": {"encoder_steps": 60}}  # as tests/coldstart: what a start does, not a 300-step encoder


def medal(*args, env=None):
    out = subprocess.run([sys.executable, "-m", "medal.cli", *map(str, args)], capture_output=True, text=True,
                         env={**os.environ, **(env or {})})
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout, out.stderr
    return out


def every_fourth_slice(ds, run) -> None:
    """First labels for a run: every fourth slice along the first axis of each case's ground truth, 255 elsewhere."""
    for case in ds.cases:
        lab = load_volume(case.label)
        part = np.full(lab.shape, 255, np.uint8)
        part[::4] = lab.array[::4]
        save_volume(lab.with_array(part), run / "labels" / f"{case.case_id}.nii.gz")


def one_error_line(out) -> str:
    lines = [ln for ln in out.stderr.splitlines() if ln.startswith("medal: error:")]
    assert len(lines) == 1, out.stderr
    return lines[0]


@pytest.fixture(scope="module")
def sample_cases():
    return load_dataset(sample_dataset()).cases


@pytest.fixture
def tiny_cfg(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def test_label_map_round_trips_sparse_values():
    m = LabelMap((0, 3, 17, 42, 99, 117), SPARSE_LABELS)
    arr = np.array([[0, 3], [117, 255]], np.uint8)
    idx = m.to_index(arr)
    assert idx.tolist() == [[0, 1], [5, 255]] and m.to_values(idx).tolist() == arr.tolist()
    with pytest.raises(ValueError, match=r"x: label values \[4\] are not among the dataset's \[0, 3, 17, 42, 99, 117\]"):
        m.to_index(np.array([4]), where="x")
    with pytest.raises(ValueError, match="start with 0"):
        LabelMap((1, 2))


def test_plain_folder_of_the_sample_trains_with_scanned_labels(tmp_path, sample_cases, tiny_cfg):
    """The bundled sample laid out as a plain folder (no dataset.json): the label values are found by
    scanning, reported by `dataset check`, and training no longer crashes on `Target 2`."""
    root = tmp_path / "plain"
    for case in sample_cases[:3]:
        save_volume(load_volume(case.image), root / f"{case.case_id}.nii.gz")
        save_volume(load_volume(case.label), root / "labels" / f"{case.case_id}.nii.gz")
    out = medal("dataset", "check", root)
    assert out.returncode == 0, out.stderr
    assert "label values found in the label files: 0, 1, 2" in out.stdout
    assert load_dataset(root).label_map.values == (0, 1, 2)
    out = medal("train", root, "--config", tiny_cfg, "--out", tmp_path / "m.pt")
    assert out.returncode == 0, out.stderr
    import torch

    meta = torch.load(tmp_path / "m.pt", weights_only=True)["meta"]
    assert meta["label_values"] == [0, 1, 2] and torch.load(tmp_path / "m.pt", weights_only=True)["out_channels"] == 3


def test_sparse_multiclass_two_rounds_end_to_end(tmp_path, sample_cases, tiny_cfg):
    """Six classes with values 0, 3, 17, 42, 99, 117: two `medal round`s with `medal ingest` between,
    and every prediction and annotation carries the dataset's own values."""
    from medal.simulation import oracle_annotate
    from medal.costs import CostModel
    from medal.tasks import read_tasks

    ds_root = write_sparse_label_dataset(tmp_path / "sparse", sample_cases[:4])
    ds = load_dataset(ds_root)
    assert ds.label_map.values == (0, 3, 17, 42, 99, 117) and ds.n_classes == 6
    out = medal("dataset", "check", ds_root)
    assert out.returncode == 0, out.stderr
    assert "labels: 0=background, 3=rim, 17=anterior, 42=posterior, 99=bright, 117=dark" in out.stdout
    # first labels: three slices of each case, from the truth
    run = tmp_path / "run"
    for case in ds.cases:
        lab = load_volume(case.label)
        part = np.full(lab.shape, 255, np.uint8)
        part[:, :, ::8] = lab.array[:, :, ::8]
        save_volume(lab.with_array(part), run / "labels" / f"{case.case_id}.nii.gz")
    for index in (0, 1):
        out = medal("round", ds_root, "--run", run, "--index", index, "--config", tiny_cfg)
        assert out.returncode == 0, out.stderr
        rd = run / f"round_{index:03d}"
        for case in ds.cases:
            pred = np.unique(load_volume(rd / "scores" / case.case_id / "prediction.nii.gz").array)
            assert set(pred.tolist()) <= set(SPARSE_LABELS), pred
        tl = read_tasks(rd / "tasks.json")
        assert tl.tasks
        oracle_annotate(tl, ds, rd / "annotations", cost_model=CostModel.default(6))
        out = medal("ingest", ds_root, "--run", run, "--round", rd)
        assert out.returncode == 0, out.stderr
    merged = load_volume(run / "labels" / f"{ds.cases[0].case_id}.nii.gz").array
    assert set(np.unique(merged).tolist()) <= set(SPARSE_LABELS) | {255}
    # a checkpoint of another label set is refused, naming both
    other = tmp_path / "other"
    for case in sample_cases[:2]:
        save_volume(load_volume(case.image), other / f"{case.case_id}.nii.gz")
        save_volume(load_volume(case.label), other / "labels" / f"{case.case_id}.nii.gz")
    out = medal("score", other, "--checkpoint", run / "round_001" / "model.pt", "--out", tmp_path / "s")
    msg = one_error_line(out)
    assert out.returncode == 1 and "model.pt: trained for label values [0, 3, 17, 42, 99, 117] (6 classes)" in msg
    assert "[0, 1, 2] (3 classes)" in msg


def test_dataset_check_reports_undeclared_values(tmp_path, sample_cases):
    ds_root = write_sparse_label_dataset(tmp_path / "sparse", sample_cases[:2])
    meta = json.loads((ds_root / "dataset.json").read_text())
    del meta["labels"]["99"]
    (ds_root / "dataset.json").write_text(json.dumps(meta))
    out = medal("dataset", "check", ds_root)
    assert out.returncode == 1
    assert "label values [99] are not in dataset.json labels" in out.stdout


def test_config_mistakes_name_the_key(tmp_path, phantom_dataset):
    cases = [({"training": {"num_threads": -3}}, "training.num_threads: must be >= 0"),
             ({"regions": {"supervoxel_size_mm": float("inf")}}, "regions.supervoxel_size_mm: expected a finite number"),
             ({"selection": {"budget_s": float("nan")}}, "selection.budget_s: expected a finite number")]
    for n, (cfg, expect) in enumerate(cases):
        path = tmp_path / f"c{n}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        out = medal("train", phantom_dataset, "--config", path, "--out", tmp_path / "m.pt")
        msg = one_error_line(out)
        assert out.returncode == 1 and str(path) in msg and expect in msg, msg
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("training:\n  seed: 0 # caf\xe9\n".encode("latin-1"))
    out = medal("train", phantom_dataset, "--config", bad, "--out", tmp_path / "m.pt")
    assert out.returncode == 1 and f"{bad}: not a UTF-8 text file" in one_error_line(out)


def test_cuda_without_a_gpu_is_a_message(tmp_path, phantom_dataset):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    path = tmp_path / "cuda.yaml"
    path.write_text(yaml.safe_dump({**TINY, "training": {**TINY["training"], "device": "cuda"}}))
    out = medal("train", phantom_dataset, "--config", path, "--out", tmp_path / "m.pt")
    assert out.returncode == 1 and "device 'cuda' requested but CUDA is not available" in one_error_line(out)


def test_symlink_loop_and_links(tmp_path, sample_cases, tiny_cfg):
    root = tmp_path / "ds"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    entries = []
    for case in sample_cases[:2]:
        save_volume(load_volume(case.image), root / "imagesTr" / f"{case.case_id}.nii.gz")
        save_volume(load_volume(case.label), root / "labelsTr" / f"{case.case_id}.nii.gz")
        entries.append({"image": f"imagesTr/{case.case_id}.nii.gz", "label": f"labelsTr/{case.case_id}.nii.gz"})
    # a link inside the dataset to a file inside it (nnU-Net raw data laid out without copying): fine
    os.symlink(root / "imagesTr" / f"{sample_cases[0].case_id}.nii.gz", root / "imagesTr" / "linked_case.nii.gz")
    meta = {"labels": {"0": "background", "1": "a", "2": "b"},
            "training": entries + [{"image": "imagesTr/linked_case.nii.gz"}]}
    (root / "dataset.json").write_text(json.dumps(meta))
    ds = load_dataset(root)
    assert "linked_case" in {c.case_id for c in ds.cases}
    # a link to a file outside the dataset: refused unless allowed
    outside = tmp_path / "elsewhere.nii.gz"
    save_volume(load_volume(sample_cases[2].image), outside)
    os.symlink(outside, root / "imagesTr" / "outside.nii.gz")
    meta["training"].append({"image": "imagesTr/outside.nii.gz"})
    (root / "dataset.json").write_text(json.dumps(meta))
    out = medal("dataset", "check", root)
    assert out.returncode == 1 and "outside.nii.gz' is a link to" in out.stderr + out.stdout
    assert medal("dataset", "check", root, env={"MEDAL_ALLOW_EXTERNAL_LINKS": "1"}).returncode == 0
    # a symlink loop: a message from every command, no traceback
    os.symlink(root / "imagesTr" / "loop_b.nii.gz", root / "imagesTr" / "loop_a.nii.gz")
    os.symlink(root / "imagesTr" / "loop_a.nii.gz", root / "imagesTr" / "loop_b.nii.gz")
    meta["training"] = entries + [{"image": "imagesTr/loop_a.nii.gz"}]
    (root / "dataset.json").write_text(json.dumps(meta))
    for args in (["dataset", "check", root], ["train", root, "--config", tiny_cfg, "--out", tmp_path / "m.pt"],
                 ["coldstart", root, "--out", tmp_path / "cs", "--budget", "60"]):
        out = medal(*args)
        assert out.returncode == 1, (args, out.stderr)
        assert "loop_a.nii.gz' cannot be resolved" in out.stderr + out.stdout


def test_coldstart_bad_budget_and_nan_image(tmp_path, sample_cases):
    root = tmp_path / "ds"
    for case in sample_cases[:3]:
        save_volume(load_volume(case.image), root / f"{case.case_id}.nii.gz")
    bad = load_volume(sample_cases[3].image)
    arr = bad.array.astype(np.float32)
    arr[0, 0, 0] = np.nan
    save_volume(bad.with_array(arr), root / "nan_case.nii.gz")
    save_volume(bad.with_array(np.zeros_like(arr)), root / "blank.nii.gz")  # an empty export
    data = (root / "nan_case.nii.gz").read_bytes()
    (root / "cut.nii.gz").write_bytes(data[: len(data) // 3])
    for budget in ("0", "nan", "-5"):
        out = medal("coldstart", root, "--out", tmp_path / f"cs{budget}", "--budget", budget)
        assert out.returncode == 1 and "budget: expected a finite number of seconds > 0" in one_error_line(out)
        assert not (tmp_path / f"cs{budget}" / "tasks.json").exists()
    thumbs = tmp_path / "thumbnails.yaml"  # bad input is the point here, not the (slower) default encoder
    thumbs.write_text("coldstart: {representation: thumbnails}\n")
    out = medal("coldstart", root, "--out", tmp_path / "cs", "--budget", "120", "--config", thumbs)
    assert out.returncode == 1  # a case was skipped: said, and the others chosen from
    assert "SKIPPED [nan_case]" in out.stderr and "nan_case.nii.gz: 1 NaN and 0 Inf intensity values" in out.stderr
    assert "SKIPPED [blank] blank.nii.gz: every voxel has the same intensity (0)" in out.stderr
    assert "SKIPPED [cut] cut.nii.gz: file is truncated" in out.stderr  # named as in the other lines
    tasks = json.loads((tmp_path / "cs" / "tasks.json").read_text())["tasks"]
    assert tasks and not {"nan_case", "blank", "cut"} & {t["case_id"] for t in tasks}


def test_coldstart_axis_chooses_over_several_planes_from_the_command_or_the_config(tmp_path):
    ds = sample_dataset()
    thumbs = tmp_path / "thumbnails.yaml"  # the planes are the point here, not the (slower) default encoder
    thumbs.write_text("coldstart: {representation: thumbnails}\n")
    out = medal("coldstart", ds, "--out", tmp_path / "one", "--budget", "400", "--config", thumbs, "--axis", "axial")
    assert out.returncode == 0, out.stderr
    one = json.loads((tmp_path / "one" / "tasks.json").read_text())["tasks"]
    assert len({t["axis"] for t in one}) == 1
    out = medal("coldstart", ds, "--out", tmp_path / "three", "--budget", "400", "--config", thumbs)
    assert out.returncode == 0, out.stderr  # the default: three planes, one pool
    meta = json.loads((tmp_path / "three" / "tasks.json").read_text())
    three, n_reserve = meta["tasks"], meta["reserve_tasks"]
    main = three[:len(three) - n_reserve]
    assert len({t["axis"] for t in three}) >= 2 and sum(t["predicted_cost_s"] for t in main) <= 400.0 + 1e-6
    cfg1 = tmp_path / "axial.yaml"  # coldstart.axis "" follows regions.axis
    cfg1.write_text("coldstart: {representation: thumbnails, axis: ''}\nregions: {axis: axial}\n")
    out = medal("coldstart", ds, "--out", tmp_path / "one_cfg", "--budget", "400", "--config", cfg1)
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "one_cfg" / "tasks.json").read_text())["tasks"] == one  # same seed, same pick
    out = medal("coldstart", ds, "--out", tmp_path / "bad", "--budget", "400", "--axis", "axial,axil")
    assert out.returncode == 1 and "--axis: coldstart.axis" in one_error_line(out)
    assert not (tmp_path / "bad" / "tasks.json").exists()


def test_coldstart_pilot_then_a_timed_batch_then_the_rest(tmp_path):
    """The expert's cold start: 3 pilot slices timed, then a further timed batch (--pilot-log --pilot),
    then the rest; every timed slice is kept first at the seconds it took, and the prior is scaled by
    all of them."""
    from medal.costs import append_annotation_log

    ds, out, log = sample_dataset(), tmp_path / "round_init", tmp_path / "annotation_log.jsonl"

    def paint(tasks, factor):  # what the napari plugin logs for a task done
        for t in tasks:
            append_annotation_log(log, {"task_id": t["task_id"], "case_id": t["case_id"], "kind": "slice",
                                        "axis": t["axis"], "index": t["index"],
                                        "seconds": factor * t["predicted_cost_s"]})

    def tasks():
        return json.loads((out / "tasks.json").read_text())

    # the flow on one plane, with no reserve unless asked (the defaults: elsewhere), on a short-trained encoder
    plain = tmp_path / "plain.yaml"
    plain.write_text("coldstart: {axis: axial, reserve: 0.0, encoder_steps: 60}\n")

    res = medal("coldstart", ds, "--out", out, "--budget", "400", "--pilot", "3", "--config", plain)
    assert res.returncode == 0, res.stderr
    assert "paint and time these 3 slice(s) first" in res.stdout
    pilot = tasks()["tasks"]
    assert len(pilot) == 3
    paint(pilot, 2.0)
    res = medal("coldstart", ds, "--out", out, "--budget", "400", "--pilot-log", log, "--pilot", "4", "--config", plain)
    assert res.returncode == 0, res.stderr
    assert "paint and time these 4 slice(s) first" in res.stdout and "x 2.00 from a pilot of 3" in res.stdout
    second = tasks()
    assert [t["task_id"] for t in second["tasks"][:3]] == [t["task_id"] for t in pilot]
    assert len(second["tasks"]) == 7
    batch = second["tasks"][3:]
    assert all(t["predicted_cost_s"] > 0 for t in batch)
    paint(batch, 0.5)  # the batch took what the unscaled prior said: the scale over all 7 lies between
    res = medal("coldstart", ds, "--out", out, "--budget", "400", "--pilot-log", log, "--config", plain)
    assert res.returncode == 0, res.stderr
    final = tasks()
    assert [t["task_id"] for t in final["tasks"][:7]] == [t["task_id"] for t in second["tasks"]]
    assert final["cost_prior"]["pilot_tasks"] == 7 and 1.0 < final["cost_prior"]["scale"] < 2.0
    assert len(final["tasks"]) > 7 and sum(t["predicted_cost_s"] for t in final["tasks"]) <= 400.0 + 1e-6
    # a reserve queue of a quarter budget more: here the per-volume cap (2 x 20 cases) is already used up
    res = medal("coldstart", ds, "--out", out, "--budget", "400", "--pilot-log", log, "--reserve", "0.25",
                "--config", plain)
    assert res.returncode == 0, res.stderr
    assert "reserve: none left to choose" in res.stdout and tasks()["reserve_tasks"] == 0
    cap3 = tmp_path / "cap3.yaml"
    cap3.write_text("coldstart: {max_per_case: 3, axis: axial, reserve: 0.0, encoder_steps: 60}\n")
    res = medal("coldstart", ds, "--out", out, "--budget", "400", "--pilot-log", log, "--reserve", "0.25",
                "--config", cap3)
    assert res.returncode == 0, res.stderr
    final = tasks()
    n_reserve = final["reserve_tasks"]
    main, reserve = final["tasks"][:len(final["tasks"]) - n_reserve], final["tasks"][len(final["tasks"]) - n_reserve:]
    assert [t["task_id"] for t in main[:7]] == [t["task_id"] for t in second["tasks"]]
    assert len(main) > 7 and sum(t["predicted_cost_s"] for t in main) <= 400.0 + 1e-6
    assert n_reserve > 0 and 0 < sum(t["predicted_cost_s"] for t in reserve) <= 100.0 + 1e-6
    assert f"reserve: {n_reserve} more slice(s)" in res.stdout and f"{len(main)} slice(s) from" in res.stdout
    assert len({(t["case_id"], t["index"]) for t in final["tasks"]}) == len(final["tasks"])
    res = medal("coldstart", ds, "--out", tmp_path / "bad", "--budget", "400", "--reserve", "-1")
    assert res.returncode == 1 and "--reserve: coldstart.reserve: must lie in [0, 10]" in one_error_line(res)


def test_round_refuses_what_it_should_not_touch(tmp_path, sample_cases, tiny_cfg):
    ds = sample_dataset()
    run = tmp_path / "run"
    case = sample_cases[0]
    lab = load_volume(case.label)
    part = np.full(lab.shape, 255, np.uint8)
    part[:, :, 10] = lab.array[:, :, 10]
    save_volume(lab.with_array(part), run / "labels" / f"{case.case_id}.nii.gz")
    out = medal("round", ds, "--run", run, "--index", "0", "--cases", "nope", "--config", tiny_cfg)
    assert out.returncode == 1 and "no case(s) ['nope']" in one_error_line(out)
    assert not (run / "round_000").exists()  # a refused round leaves no folder
    # the simulation's oracle value reads the ground truth: refused before any training, naming file and key
    oracle = tmp_path / "oracle.yaml"
    oracle.write_text(yaml.safe_dump({**TINY, "regions": {"value": "oracle_errors"}}))
    for cmd in (("round", ds, "--run", run, "--index", "0"), ("select", ds, "--scores", tmp_path / "s", "--out",
                                                            tmp_path / "sel")):
        out = medal(*cmd, "--config", oracle)
        line = one_error_line(out)
        assert out.returncode == 1 and str(oracle) in line and "regions.value 'oracle_errors'" in line, line
        assert "'class_entropy'" in line and "'oracle_errors'" not in line.split("valid here")[1]
    assert not (run / "round_000").exists() and not (tmp_path / "sel").exists()
    # a cold start's tasks.json in the round folder is never replaced
    out = medal("coldstart", ds, "--out", run / "round_000", "--budget", "60", "--config", tiny_cfg)
    assert out.returncode == 0, out.stderr
    before = (run / "round_000" / "tasks.json").read_bytes()
    out = medal("round", ds, "--run", run, "--index", "0", "--config", tiny_cfg, "--cases", case.case_id,
                sample_cases[1].case_id)
    assert out.returncode == 1 and "written by medal coldstart" in one_error_line(out)
    assert (run / "round_000" / "tasks.json").read_bytes() == before
    # a finished round asked for again with another budget: says what differs
    (run / "round_000" / "tasks.json").unlink()
    (run / "round_000" / ".model.deadbeef.tmp.pt").write_bytes(b"partial")  # a killed writer's leftover
    out = medal("round", ds, "--run", run, "--index", "0", "--config", tiny_cfg, "--cases", case.case_id,
                sample_cases[1].case_id)
    assert out.returncode == 0, out.stderr
    assert not (run / "round_000" / ".model.deadbeef.tmp.pt").exists()
    again = medal("round", ds, "--run", run, "--index", "0", "--config", tiny_cfg, "--cases", case.case_id,
                  sample_cases[1].case_id)
    assert again.returncode == 0 and "already finished" in again.stdout
    out = medal("round", ds, "--run", run, "--index", "0", "--config", tiny_cfg, "--budget", "999", "--cases",
                case.case_id, sample_cases[1].case_id)
    msg = one_error_line(out)
    assert out.returncode == 1 and "this round is finished" in msg and "selection.budget_s: 3000.0 then, 999.0 now" in msg


def test_ingest_names_a_round_folder_that_is_not_there_and_takes_a_round_index(tmp_path, sample_cases, capsys):
    """A mistyped --round is an error naming the folder, not "0 voxels ingested"; ``--round 0`` is RUN/round_000;
    a round whose tasks were never saved says so."""
    from medal.cli import main

    ds, run = str(sample_dataset()), tmp_path / "run"
    assert main(["ingest", ds, "--run", str(run), "--round", str(tmp_path / "round_00")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"medal: error: {tmp_path / 'round_00'}: no such round folder (give the round's folder, e.g. " \
                  f"{run / 'round_000'}, or its index)"
    (run / "round_000").mkdir(parents=True)
    assert main(["ingest", ds, "--run", str(run), "--round", "0"]) == 1
    assert "round_000: not a round folder (no tasks.json, no annotations/)" in capsys.readouterr().err
    (run / "round_000" / "tasks.json").write_text('{"tasks": []}')
    assert main(["ingest", ds, "--run", str(run), "--round", "0"]) == 0
    assert "annotations is not there: no task of this round has been saved yet" in capsys.readouterr().out
    case = sample_cases[0]
    lab = load_volume(case.label)
    part = np.full(lab.shape, 255, np.uint8)
    part[:, :, 5] = lab.array[:, :, 5]
    save_volume(lab.with_array(part), run / "round_000" / "annotations" / f"{case.case_id}.nii.gz")
    assert main(["ingest", ds, "--run", str(run), "--round", "0"]) == 0
    assert f"ingested 1 case(s), {part[:, :, 5].size} new annotated voxel(s)" in capsys.readouterr().out
    np.testing.assert_array_equal(load_volume(run / "labels" / f"{case.case_id}.nii.gz").array, part)


def test_ingest_checks_every_file_and_merges_the_good_ones(tmp_path, sample_cases):
    ds = sample_dataset()
    rd = tmp_path / "run" / "round_000"
    ann = rd / "annotations"
    good, shifted, wrong_values = sample_cases[0], sample_cases[1], sample_cases[2]
    for case in (good, shifted, wrong_values):
        lab = load_volume(case.label)
        a = np.full(lab.shape, 255, np.uint8)
        a[:, :, 5] = lab.array[:, :, 5]
        if case is wrong_values:
            a[0, 0, 5] = 7
        vol = lab.with_array(a)
        if case is shifted:
            aff = vol.affine.copy()
            aff[0, 3] += 5.0
            from medal.data import Volume

            vol = Volume(a, aff)
        save_volume(vol, ann / f"{case.case_id}.nii.gz")
    save_volume(load_volume(good.label), ann / "not_a_case.nii.gz")
    (ann / f".{good.case_id}.1234abcd.tmp.nii.gz").write_bytes(b"half")
    (ann / f"{good.case_id}.json").write_text("{}")  # the plugin's progress file: not an annotation
    out = medal("ingest", ds, "--run", tmp_path / "run", "--round", rd)
    assert out.returncode == 1
    assert f"{good.case_id}: " in out.stdout and "ingested 1 case(s)" in out.stdout
    err = out.stderr
    assert f"SKIPPED {shifted.case_id}.nii.gz:" in err and "affine differs" in err
    assert f"SKIPPED {wrong_values.case_id}.nii.gz:" in err and "label values [7]" in err
    assert "SKIPPED not_a_case.nii.gz: no case 'not_a_case'" in err
    assert "temporary file left by an interrupted save" in err and f"{good.case_id}.json" not in err
    assert (tmp_path / "run" / "labels" / f"{good.case_id}.nii.gz").is_file()
    assert not (tmp_path / "run" / "labels" / f"{shifted.case_id}.nii.gz").exists()


def test_tasks_are_checked_against_the_images(tmp_path, sample_cases):
    from medal.tasks import Task, TaskError, read_tasks, validate_tasks, write_tasks

    ds = load_dataset(sample_dataset())
    case = sample_cases[0]
    shape = load_volume(case.image).shape
    rel = ds.relative(case.image)

    def task(**kw):
        base = dict(task_id="t0", case_id=case.case_id, image=rel, kind="slice", axis=2, index=3, supervoxel=-1,
                    bbox=[[0, 0, 3], [shape[0], shape[1], 4]], score=1.0, predicted_cost_s=10.0, strategy="x")
        return Task(**{**base, **kw})

    for bad, expect in [(task(index=shape[2] + 5, bbox=[[0, 0, shape[2] + 5], [shape[0], shape[1], shape[2] + 6]]),
                         "outside the volume"),
                        (task(case_id="nope"), "no case 'nope'"),
                        (task(image=ds.relative(sample_cases[1].image)), "is not case")]:
        write_tasks(tmp_path / "tasks.json", [bad], dataset_root=ds.root)
        with pytest.raises(TaskError, match=expect):
            validate_tasks(read_tasks(tmp_path / "tasks.json"), ds)
    # the same case in another copy of the dataset: the message names both folders, not one file name twice
    copy = tmp_path / "copy"
    save_volume(load_volume(case.image), copy / rel)
    write_tasks(tmp_path / "tasks.json", [task()], dataset_root=copy)
    with pytest.raises(TaskError, match=f"written for the dataset {copy}, not {ds.root}"):
        validate_tasks(read_tasks(tmp_path / "tasks.json"), ds.subset([case.case_id]))
    write_tasks(tmp_path / "tasks.json", [task()], dataset_root=ds.root)
    text = (tmp_path / "tasks.json").read_text().replace('"score": 1.0', '"score": NaN')
    (tmp_path / "tasks.json").write_text(text)
    with pytest.raises(TaskError, match="field 'score' must be a finite number"):
        read_tasks(tmp_path / "tasks.json")


def test_nothing_fits_is_said_and_supervoxels_are_offered(tmp_path, sample_cases):
    from medal.config import CostsConfig, RegionsConfig, SelectionConfig
    from medal.selection.api import NothingFitsError, select_round
    from medal.uncertainty.score import save_probs

    ds = load_dataset(sample_dataset())
    scores = tmp_path / "scores"
    for case in sample_cases[:2]:
        lab = load_volume(case.label)
        p = np.stack([(lab.array == c).astype(np.float32) for c in range(3)])
        p = 0.5 * p + 0.5 / 3  # a model unsure everywhere: every slice is expensive
        save_probs(lab, p, scores / case.case_id / "probs.nii.gz")
        h = -(p * np.log(p)).sum(0)
        save_volume(lab.with_array(h.astype(np.float32)), scores / case.case_id / "entropy.nii.gz")
        save_volume(lab.with_array(lab.array.astype(np.uint8)), scores / case.case_id / "prediction.nii.gz")
    kw = dict(regions_cfg=RegionsConfig(supervoxel_size_mm=3.0), costs_cfg=CostsConfig(), data_cfg=None)
    with pytest.raises(NothingFitsError, match=r"nothing fits the 3 s budget: the cheapest slice is predicted at \d+ s"):
        select_round(ds, scores, tmp_path / "r1", selection_cfg=SelectionConfig(budget_s=3.0, fallback="none"), **kw)
    table = select_round(ds, scores, tmp_path / "r0", selection_cfg=SelectionConfig(budget_s=1e4), **kw).table
    cheapest = float(table["cost"].min())
    # a budget below the cheapest slice: supervoxels are chosen instead, and it is said
    res = select_round(ds, scores, tmp_path / "r2", selection_cfg=SelectionConfig(budget_s=cheapest - 0.5), **kw)
    assert res.fallback and "chose supervoxels instead" in res.summary()
    assert {t["kind"] for t in json.loads((tmp_path / "r2" / "tasks.json").read_text())["tasks"]} == {"supervoxel"}
    assert json.loads((tmp_path / "r2" / "tasks.json").read_text())["fallback"].startswith("no slice fits")
    empty = select_round(ds, scores, tmp_path / "r3", selection_cfg=SelectionConfig(budget_s=3.0, fallback="none"),
                         allow_empty=True, **kw)
    assert len(empty.selection.indices) == 0 and json.loads((tmp_path / "r3" / "tasks.json").read_text())["tasks"] == []


def test_thick_slices_get_strides_planned_for_them(tmp_path, sample_cases, tiny_cfg):
    """`model.strides: auto` on real cases stored as 3 mm slices: `medal train` pools the thick axis one stage later
    (nnU-Net's rule; printed and stored in the checkpoint) and says when the patch is mostly padding along the thick
    axis (not on the sample's isotropic cases), `medal score` under the same auto config loads it, and a
    warm start under a config giving other strides is one line naming the key."""
    root = tmp_path / "thick"
    for case in sample_cases[:3]:
        v, lab = load_volume(case.image), load_volume(case.label)
        aff = v.affine.copy()
        aff[:3, 2] *= 3
        save_volume(v.__class__(np.ascontiguousarray(v.array[:, :, ::3]), aff),
                    root / "imagesTr" / f"{case.case_id}.nii.gz")
        save_volume(lab.__class__(np.ascontiguousarray(lab.array[:, :, ::3]), aff),
                    root / "labelsTr" / f"{case.case_id}.nii.gz")
    auto = {**TINY, "model": {**TINY["model"], "channels": [8, 16, 32], "strides": "auto"},
            "training": {**TINY["training"], "patch_size": [16, 16, 24]},
            "uncertainty": {**TINY["uncertainty"], "roi_size": [16, 16, 24]}}
    cfg = tmp_path / "auto.yaml"
    cfg.write_text(yaml.safe_dump(auto))
    out = medal("train", root, "--config", cfg, "--out", tmp_path / "m.pt")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["strides"] == [[2, 2, 1], 2]
    # 13 slices deep (the median): a 24-deep patch is mostly padding, and the run says what fits (a multiple of the
    # planned strides' product along that axis, 2)
    notes = [ln for ln in out.stderr.splitlines() if ln.startswith("NOTE: training.patch_size")]
    assert len(notes) == 1 and "[16, 16, 24] is larger than the median case on the network's grid ([35, 52, 13] " \
        "voxels) along axis 2" in notes[0] and "[16, 16, 14] (training.patch_size and uncertainty.roi_size)" in notes[0]
    from medal.config import load_config
    from medal.data.resample import patch_padding_note

    assert patch_padding_note(load_config(tiny_cfg), load_dataset(sample_dataset())) is None
    assert patch_padding_note(load_config(cfg), load_dataset(root)) == notes[0]
    cid = sample_cases[0].case_id
    out = medal("score", root, "--checkpoint", tmp_path / "m.pt", "--out", tmp_path / "s", "--config", cfg,
                "--cases", cid)
    assert out.returncode == 0, out.stderr
    assert load_volume(tmp_path / "s" / "scores" / cid / "prediction.nii.gz").shape == load_volume(
        root / "imagesTr" / f"{cid}.nii.gz").shape
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(yaml.safe_dump({**auto, "model": {**auto["model"], "strides": [2, 2]}}))
    out = medal("train", root, "--config", fixed, "--init", tmp_path / "m.pt", "--out", tmp_path / "w.pt")
    assert out.returncode != 0 and "strides: checkpoint [[2, 2, 1], 2] vs expected [2, 2]" in one_error_line(out)


def test_mixed_spacing_trains_at_the_median_and_answers_on_each_cases_grid(tmp_path, sample_cases):
    """Five real cases, two re-written as a thick-slice scanner would (every third slice, 3x the spacing).
    With `data.spacing: median` the round trains at the median spacing (recorded in the checkpoint and the
    round's progress), and every score volume, task and `medal score` output lies on each case's own
    grid; a typo in the option is one line naming the key."""
    import torch

    from medal.simulation.simulate import evaluate
    from medal.config import load_config
    from medal.tasks import read_tasks

    root = tmp_path / "mixed"
    for i, case in enumerate(sample_cases[:5]):
        v, lab = load_volume(case.image), load_volume(case.label)
        if i in (1, 3):
            aff = v.affine.copy()
            aff[:3, 2] *= 3
            v = v.__class__(np.ascontiguousarray(v.array[:, :, ::3]), aff)
            lab = lab.__class__(np.ascontiguousarray(lab.array[:, :, ::3]), aff)
        save_volume(v, root / "imagesTr" / f"{case.case_id}.nii.gz")
        save_volume(lab, root / "labelsTr" / f"{case.case_id}.nii.gz")
    ds = load_dataset(root)
    spacing = {c.case_id: load_volume(c.image).spacing for c in ds.cases}
    shapes = {c.case_id: load_volume(c.image).shape for c in ds.cases}
    median = tuple(np.median(list(spacing.values()), axis=0))
    out = medal("dataset", "check", root)
    assert out.returncode == 0 and "data.spacing: median" in out.stdout, out.stdout
    cfg = tmp_path / "cfg.yaml"
    # data.spacing: median is the default; strides per axis (recorded with the round, named in the report)
    cfg.write_text(yaml.safe_dump({**TINY, "model": {**TINY["model"], "strides": [[2, 2, 1]]}}))
    assert load_config(cfg).data.spacing == "median"
    plain = tmp_path / "plain.yaml"  # each case's own grid: the run says what it could use
    plain.write_text(yaml.safe_dump({**TINY, "data": {"spacing": None}}))
    out = medal("train", root, "--config", plain, "--out", tmp_path / "plain.pt")
    assert out.returncode == 0, out.stderr
    notes = [ln for ln in out.stderr.splitlines() if ln.startswith("NOTE: voxel spacing differs")]
    assert len(notes) == 1 and "up to 3.0x along axis 2" in notes[0] and "data.spacing: median" in notes[0]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY, "data": {"spacing": "medain"}}))
    out = medal("round", root, "--run", tmp_path / "never", "--index", 0, "--config", bad)
    assert out.returncode != 0 and "data.spacing: 'medain'" in one_error_line(out)
    assert not (tmp_path / "never").exists()
    run = tmp_path / "run"
    every_fourth_slice(ds, run)  # first labels (every case has them)
    out = medal("round", root, "--run", run, "--index", 0, "--config", cfg)
    assert out.returncode == 0, out.stderr
    assert "NOTE: voxel spacing" not in out.stderr  # resampled: nothing to say
    rd = run / "round_000"
    meta = torch.load(rd / "model.pt", weights_only=True)["meta"]
    assert meta["spacing"] == pytest.approx(list(median))
    assert json.loads((rd / "progress.json").read_text())["train"]["spacing"] == pytest.approx(list(median))
    assert json.loads((rd / "progress.json").read_text())["train"]["strides"] == [[2, 2, 1]]
    assert json.loads((rd / "manifest.json").read_text())["checkpoint"]["spacing"] == pytest.approx(list(median))
    from medal.report.run_report import write_run_report

    md = write_run_report(run, ds, load_config(cfg)).read_text()
    assert "- network down-sampling per stage (model.strides, per array axis where not 2 on every axis): " \
        "round_000 [[2, 2, 1]]" in md
    assert "- network voxel spacing (data.spacing; predictions and tasks on each case's own grid): round_000 " \
        + " x ".join(f"{v:g}" for v in median) + " mm" in md
    for cid, shape in shapes.items():
        for name in ("prediction", "entropy"):
            vol = load_volume(rd / "scores" / cid / f"{name}.nii.gz")
            assert vol.shape == shape and vol.spacing == pytest.approx(spacing[cid]), (cid, name)
        probs = load_volume(rd / "scores" / cid / "probs.nii.gz", ndim=None).array
        assert probs.shape[:3] == shape
    tasks = read_tasks(rd / "tasks.json").tasks
    assert tasks
    for t in tasks:
        assert 0 <= t.index < shapes[t.case_id][t.axis], t
    # `medal score` with that checkpoint: the thick cases' outputs on their own (thick) grid
    thick_id = ds.cases[1].case_id
    out = medal("score", root, "--checkpoint", rd / "model.pt", "--out", tmp_path / "s", "--config", cfg,
                "--cases", thick_id)
    assert out.returncode == 0, out.stderr
    assert load_volume(tmp_path / "s" / "scores" / thick_id / "prediction.nii.gz").shape == shapes[thick_id]
    # ... and they are the network's answer at the median spacing brought back, not its answer on the thick grid
    from medal.uncertainty.score import load_probs, score_volume, scorer_nets

    c = load_config(cfg)
    nets, temp, _ = scorer_nets(rd / "model.pt", c.uncertainty)
    image = load_volume(ds.cases[1].image)
    _, _, at_median = score_volume(nets, image, cfg=c.uncertainty, data_cfg=c.data, temperature=temp, spacing=median)
    _, _, as_is = score_volume(nets, image, cfg=c.uncertainty, data_cfg=c.data, temperature=temp)
    written = load_probs(tmp_path / "s" / "scores" / thick_id / "probs.nii.gz")
    assert np.abs(written - at_median).max() <= 1 / 255 + 1e-6
    assert np.abs(written - as_is).max() > 0.05
    assert np.allclose(at_median.sum(0), 1, atol=1e-4)
    # badge with the spacing: `medal score` writes one gradient embedding per slice of the case's own grid,
    # and `medal select --strategy badge` picks from them
    from medal.uncertainty.embedding import EMBEDDING_FILE

    bcfg = tmp_path / "badge.yaml"
    bcfg.write_text(yaml.safe_dump({**TINY, "data": {"spacing": "median"}, "selection": {"strategy": "badge"}}))
    out = medal("score", root, "--checkpoint", rd / "model.pt", "--out", tmp_path / "b", "--config", bcfg)
    assert out.returncode == 0, out.stderr
    for cid, shape in shapes.items():
        with np.load(tmp_path / "b" / "scores" / cid / EMBEDDING_FILE) as z:
            assert [z[f"axis{a}"].shape[0] for a in range(3)] == list(shape), cid
    out = medal("select", root, "--scores", tmp_path / "b" / "scores", "--out", tmp_path / "bsel", "--budget", 60,
                "--strategy", "badge", "--config", bcfg)
    assert out.returncode == 0, out.stderr
    picked = read_tasks(tmp_path / "bsel" / "tasks.json").tasks
    assert picked and {t.strategy for t in picked} == {"badge"}
    assert all(0 <= t.index < shapes[t.case_id][t.axis] for t in picked)
    # a round scored without them (a simulation's shared round 0) gets them from its checkpoint's spacing
    from medal.uncertainty.embedding import ensure_gradient_embeddings

    assert ensure_gradient_embeddings(rd / "model.pt", ds.cases, rd, ucfg=c.uncertainty, data_cfg=c.data) == {}
    for cid, shape in shapes.items():
        with np.load(rd / "scores" / cid / EMBEDDING_FILE) as z, \
                np.load(tmp_path / "b" / "scores" / cid / EMBEDDING_FILE) as ref:
            np.testing.assert_allclose(z["axis2"], ref["axis2"], rtol=1e-4, atol=1e-4 * np.abs(ref["axis2"]).max())
    # the simulation's test Dice is taken on each case's own grid (no shape error on the thick cases)
    dice = evaluate(rd / "model.pt", ds, [c.case_id for c in ds.cases], load_config(cfg), per_case=True)
    assert dice.shape == (5, 2) and np.isfinite(dice).all()


def test_score_names_a_bad_image_inside_the_dataset_and_scores_the_rest(tmp_path, sample_cases, tiny_cfg):
    """`medal score` and `medal round` over a folder holding a NaN image, an empty export and a cut file:
    one FAILED line each, naming the file as the dataset knows it (not an absolute path, no exception
    class for a bad file), and the good cases scored."""
    from medal.config import load_config
    from medal.data import load_dataset
    from medal.model import build_model, save_checkpoint
    from medal.uncertainty.score import score_cases

    root = tmp_path / "ds"
    for case in sample_cases[:2]:
        save_volume(load_volume(case.image), root / f"{case.case_id}.nii.gz")
        save_volume(load_volume(case.label), root / "labels" / f"{case.case_id}.nii.gz")
    bad = load_volume(sample_cases[3].image)
    arr = bad.array.astype(np.float32)
    arr[0, 0, 0] = np.nan
    save_volume(bad.with_array(arr), root / "nan_case.nii.gz")
    save_volume(bad.with_array(np.zeros_like(arr)), root / "blank.nii.gz")
    cfg = load_config(tiny_cfg)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, build_model(cfg.model, out_channels=3), cfg.model, in_channels=1, out_channels=3,
                    meta={"label_values": [0, 1, 2]})
    out = medal("score", root, "--checkpoint", ckpt, "--out", tmp_path / "s", "--config", tiny_cfg)
    assert out.returncode == 1, out.stderr
    failed = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("FAILED")]
    assert len(failed) == 2, out.stdout + out.stderr
    assert any(ln.startswith("FAILED [nan_case]") and ln.endswith("nan_case.nii.gz: 1 NaN and 0 Inf intensity values")
               for ln in failed), failed
    assert any("FAILED [blank]" in ln and ": blank.nii.gz: every voxel has the same intensity" in ln for ln in failed)
    assert not [ln for ln in failed if str(tmp_path) in ln or "DatasetError" in ln], failed
    for case in sample_cases[:2]:
        assert (tmp_path / "s" / "scores" / case.case_id / "prediction.nii.gz").is_file()
    # the round's scoring (score_cases) names them the same way
    ds = load_dataset(root)
    rep = score_cases(build_model(cfg.model, out_channels=3), [c for c in ds.cases if c.case_id == "nan_case"],
                      tmp_path / "r", cfg=cfg.uncertainty, data_cfg=cfg.data, progress=False, root=ds.root)
    assert rep.failures == {"nan_case": "nan_case.nii.gz: 1 NaN and 0 Inf intensity values"}


def test_two_channel_cases_train_score_and_select_on_every_channel(tmp_path, sample_cases, tiny_cfg):
    """Four real cases as the Decathlon stores a two-channel task (one 4D file each; channel 1 the scan
    inverted, smoothed and rescaled). `dataset check` says how to split them; `split-channels` writes nnU-Net's
    _0000/_0001 files; a round trains a 2-channel network (recorded in the checkpoint) whose answer depends on
    channel 1, and writes tasks on the _0000 image's grid; a one-channel model is refused per case."""
    import torch

    from medal.config import load_config
    from medal.simulation.simulate import evaluate
    from medal.tasks import read_tasks
    from medal.testing import write_multichannel_dataset

    src = write_multichannel_dataset(tmp_path / "msd", sample_cases[:4], layout="4d")
    out = medal("dataset", "check", src)
    assert out.returncode == 1 and "expected a 3D volume, got 4D" in out.stdout
    assert "`medal dataset split-channels`" in out.stdout
    root = tmp_path / "split"
    out = medal("dataset", "split-channels", src, root)
    assert out.returncode == 0 and "wrote 4 case(s)" in out.stdout, out.stderr
    out = medal("dataset", "check", root)
    assert out.returncode == 0 and "channels: 2 per case" in out.stdout, out.stdout
    ds = load_dataset(root)
    run = tmp_path / "run"
    every_fourth_slice(ds, run)
    out = medal("round", root, "--run", run, "--index", 0, "--config", tiny_cfg)
    assert out.returncode == 0, out.stderr
    rd = run / "round_000"
    assert torch.load(rd / "model.pt", weights_only=True)["in_channels"] == 2
    for case in ds.cases:
        shape = load_volume(case.image).shape
        assert load_volume(rd / "scores" / case.case_id / "entropy.nii.gz").shape == shape
    tasks = read_tasks(rd / "tasks.json")
    assert tasks.tasks and all(tasks.image_path(t).name.endswith("_0000.nii.gz") for t in tasks.tasks)
    # the network reads channel 1: the same checkpoint answers differently when channel 1 changes
    from medal.uncertainty.score import score_volume, scorer_nets

    c = load_config(tiny_cfg)
    nets, temp, _ = scorer_nets(rd / "model.pt", c.uncertainty)
    image = load_volume(ds.cases[0].image)
    _, _, probs = score_volume(nets, image, cfg=c.uncertainty, data_cfg=c.data, temperature=temp)
    out = medal("score", root, "--checkpoint", rd / "model.pt", "--out", tmp_path / "s2", "--config", tiny_cfg)
    assert out.returncode == 0 and "4 scored" in out.stdout, out.stderr
    second = root / "imagesTr" / f"{ds.cases[0].case_id}_0001.nii.gz"
    v1 = load_volume(second)
    save_volume(v1.with_array(v1.array[::-1].copy()), second)
    _, _, flipped = score_volume(nets, image, cfg=c.uncertainty, data_cfg=c.data, temperature=temp)
    assert np.abs(probs - flipped).max() > 1e-3
    # ... and `medal score` sees the changed channel file as a changed case (its key holds every channel)
    out = medal("score", root, "--checkpoint", rd / "model.pt", "--out", tmp_path / "s2", "--config", tiny_cfg)
    assert out.returncode == 0 and "1 scored, 3 already up to date" in out.stdout, out.stdout
    # the simulation's test Dice reads both channels too
    dice = evaluate(rd / "model.pt", ds, [x.case_id for x in ds.cases], c, per_case=True)
    assert dice.shape == (4, 2) and np.isfinite(dice).all()
    # a one-channel model on two-channel cases: each case fails with one line naming it, no traceback
    one = tmp_path / "one.pt"
    assert medal("train", sample_dataset(), "--config", tiny_cfg, "--out", one).returncode == 0
    out = medal("score", root, "--checkpoint", one, "--out", tmp_path / "s1", "--config", tiny_cfg)
    assert out.returncode != 0
    assert f"{ds.cases[0].case_id}_0000.nii.gz: the model takes 1 input channel(s), the case has 2" in out.stdout + out.stderr
    # a channel file with NaN: that case fails with one line naming the file as the dataset knows it
    bad = root / "imagesTr" / f"{ds.cases[1].case_id}_0001.nii.gz"
    v = load_volume(bad)
    arr = v.array.astype(np.float32)
    arr[0, 0, 0] = np.nan
    save_volume(v.with_array(arr), bad)
    out = medal("score", root, "--checkpoint", rd / "model.pt", "--out", tmp_path / "s3", "--config", tiny_cfg)
    text = out.stdout + out.stderr
    assert out.returncode != 0 and "3 scored" in out.stdout
    assert f"imagesTr/{ds.cases[1].case_id}_0001.nii.gz: 1 NaN" in text and str(root) not in text.split("outputs in")[0]


def test_a_dicom_export_through_from_dicom_check_and_train(tmp_path, sample_cases, tiny_cfg):
    """A scanner export (one DICOM series per real case, nested folders, a slice lost in one series) becomes a
    dataset: `dataset from-dicom` lists, converts the good series, names the bad one and exits 1; the real labels
    come as a DICOM SEG for one case and as an RT structure set (with a BODY contour around them) for the other;
    `dataset check` passes and `medal train` trains on it."""
    from medal.data import Volume
    from medal.testing import write_dicom_rtstruct, write_dicom_seg, write_dicom_series

    src, root = tmp_path / "export", tmp_path / "ds"
    for i, c in enumerate(sample_cases[:3]):
        v = load_volume(c.image)
        files = write_dicom_series(src / f"subject{i}" / "mr", Volume(np.round(v.array), v.affine), shuffle=i)
        if i == 0:  # the first case's labels come as a DICOM SEG beside its series
            write_dicom_seg(src / "subject0" / "seg" / "seg.dcm", files, load_volume(c.label),
                            [("Anterior", 1), ("Posterior", 2)])
        if i == 1:  # the second's as a planning system's contours
            write_dicom_rtstruct(src / "subject1" / "rtss" / "rs.dcm", files, load_volume(c.label),
                                 [("Anterior", 1), ("Posterior", 2)], extra={"BODY": np.ones(v.shape, bool)})
        if i == 2:
            files[5].unlink()
    write_dicom_series(src / "subject0" / "scout", Volume(np.round(v.array[:, :, :1]), v.affine), description="loc",
                       series_number=9, image_type="ORIGINAL\\PRIMARY\\LOCALIZER")
    out = medal("dataset", "from-dicom", src, "--list")
    assert out.returncode == 0 and "subject0_mr: MR series 1 'T1'" in out.stdout, out.stderr
    assert "subject0_scout: MR series 9 'loc', 1 file(s) in subject0/scout (will be skipped: a localizer)" in out.stdout
    assert "labels: SEG series 100 'Segmentation', 1 file(s) in subject0/seg" in out.stdout
    assert "labels: RTSTRUCT series 200 'RTSTRUCT', 1 file(s) in subject1/rtss" in out.stdout
    assert not root.exists()
    out = medal("dataset", "from-dicom", src, root, "--labels", "background", "Anterior", "Posterior")
    assert out.returncode == 1, out.stderr
    assert "SKIPPED subject2/mr (series 1 'T1'): slices not evenly spaced" in out.stdout
    assert "subject0_mr: labels from subject0/seg/seg.dcm (SEG 'Segmentation'): Anterior=1, Posterior=2" in out.stdout
    assert "ROIs left out (not named after a label): BODY" in out.stdout
    assert "wrote 2 case(s)" in out.stdout and "labels of 2 case(s) from DICOM SEG / RTSTRUCT" in out.stdout
    assert "skipped 2 series" in out.stdout
    out = medal("dataset", "check", root)
    assert out.returncode == 0 and "cases: 2 (2 labelled, 0 unlabelled)" in out.stdout, out.stdout + out.stderr
    out = medal("train", root, "--config", tiny_cfg, "--out", tmp_path / "m.pt")
    assert out.returncode == 0, out.stderr
    # the model's predictions go back to the PACS as DICOM SEG on their series
    out = medal("score", root, "--checkpoint", tmp_path / "m.pt", "--out", tmp_path / "run", "--config", tiny_cfg)
    assert out.returncode == 0, out.stderr
    out = medal("dataset", "export-seg", root, tmp_path / "run" / "scores", tmp_path / "seg", "--prediction")
    assert out.returncode == 0 and "wrote 2 DICOM SEG file(s)" in out.stdout, out.stdout + out.stderr
    assert sorted(p.name for p in (tmp_path / "seg").glob("*.dcm")) == ["subject0_mr.dcm", "subject1_mr.dcm"]
    out = medal("dataset", "export-seg", root, tmp_path / "run" / "scores", tmp_path / "rt", "--prediction", "--rtstruct")
    assert out.returncode == 0 and "wrote 2 DICOM RTSTRUCT file(s)" in out.stdout, out.stdout + out.stderr
    codes = tmp_path / "codes.json"  # a label named in no code file of the dataset: one line naming file and key
    codes.write_text(json.dumps({"Middle": {"SegmentedPropertyTypeCodeSequence": {
        "CodeValue": "5366008", "CodingSchemeDesignator": "SCT", "CodeMeaning": "Hippocampus"}}}))
    out = medal("dataset", "export-seg", root, tmp_path / "run" / "scores", tmp_path / "c", "--codes", codes)
    assert out.returncode != 0 and f"{codes}: 'Middle' is no label of the dataset" in one_error_line(out)
    assert not (tmp_path / "c").exists()


def test_dicom_sequences_of_a_study_as_the_channels_of_one_case_through_the_cli(tmp_path, sample_cases):
    """`dataset from-dicom --channels '*t2*' '*adc*'`: --list shows each case's channels and the study that will be
    skipped; the conversion writes two-channel cases (an ADC on a coarser grid resampled onto the T2), says which
    study it skipped and why, exits 1; `dataset check` sees two channels per case."""
    from medal.data import Volume
    from medal.testing import write_dicom_series

    src, root = tmp_path / "export", tmp_path / "ds"
    for i, c in enumerate(sample_cases[:3]):
        v = load_volume(c.image)
        t2 = Volume(np.round(v.array), v.affine)
        study = {"0020|000d": f"2.25.880{i}"}
        write_dicom_series(src / f"subject{i}" / "t2", t2, description="T2 AX", series_number=1, extra_tags=study)
        if i < 2:
            aff = v.affine.copy()
            aff[:3, :2] *= 1 + i  # the second study's ADC on a coarser grid
            adc = Volume(np.round(v.array[:: 1 + i, :: 1 + i] / 2), aff)
            write_dicom_series(src / f"subject{i}" / "adc", adc, description="ADC", series_number=2, extra_tags=study)
    out = medal("dataset", "from-dicom", src, "--list", "--channels", "*t2*", "*adc*")
    assert out.returncode == 0, out.stderr
    assert "subject0_t2: MR series 1 'T2 AX', " in out.stdout and "; channel 1: series 2 'ADC'" in out.stdout
    assert ("will be skipped: subject2/t2: study 2.25.8802: no series matches --channels pattern 2 '*adc*' "
            "(series of this study: 'T2 AX'); left out") in out.stdout
    out = medal("dataset", "from-dicom", src, root, "--channels", "*t2*", "*adc*")
    assert out.returncode == 1, out.stderr
    assert "SKIPPED subject2/t2: study 2.25.8802: no series matches --channels pattern 2" in out.stdout
    assert "subject1_t2: " in out.stdout and "; channel 1 'ADC' resampled onto it" in out.stdout
    assert "wrote 2 case(s)" in out.stdout
    out = medal("dataset", "check", root)
    assert out.returncode == 0 and "2 per case" in out.stdout, out.stdout + out.stderr


def test_a_bids_tree_through_from_folders_and_check(tmp_path, sample_cases):
    """`dataset from-folders --case-depth 2 --label-root derivatives/manual`: a BIDS tree with sessions becomes one
    case per session, labelled where the derivatives hold a label, the rest unlabelled; `dataset check` passes."""
    root = tmp_path / "bids"
    root.mkdir()
    (root / "dataset_description.json").write_text('{"Name": "hippocampus", "BIDSVersion": "1.9.0"}')
    for i, c in enumerate(sample_cases[:3]):
        sub, ses = f"sub-0{i + 1}", "ses-1"
        (root / sub / ses / "anat").mkdir(parents=True)
        shutil.copy(c.image, root / sub / ses / "anat" / f"{sub}_{ses}_T1w.nii.gz")
        if i < 2:
            (root / "derivatives" / "manual" / sub / ses / "anat").mkdir(parents=True)
            shutil.copy(c.label, root / "derivatives" / "manual" / sub / ses / "anat" / f"{sub}_{ses}_dseg.nii.gz")
    out = medal("dataset", "from-folders", root, tmp_path / "ds", "--case-depth", "2", "--image", "anat/*_T1w.nii.gz",
                "--label", "anat/*_dseg.nii.gz", "--label-root", "derivatives/manual",
                "--labels", "background", "Anterior", "Posterior")
    assert out.returncode == 0 and "linked 3 case(s)" in out.stdout, out.stdout + out.stderr
    assert "laid out unlabelled: sub-03_ses-1" in out.stdout
    out = medal("dataset", "check", tmp_path / "ds")
    assert out.returncode == 0 and "cases: 3 (2 labelled, 1 unlabelled)" in out.stdout, out.stdout + out.stderr


def test_case_folders_through_from_folders_check_and_train(tmp_path, sample_cases, tiny_cfg):
    """BraTS-style case folders (two channels and a `_seg` label per folder, named by the case): `dataset check`
    points at `from-folders`; without channel patterns it names them; with them the linked dataset trains."""
    from medal.testing import write_case_folders

    root = write_case_folders(tmp_path / "brats", sample_cases[:3], channels=("t2", "adc"))
    os.remove(root / "Case_002" / "Case_002_adc.nii.gz")  # one case lacks a channel
    out = medal("dataset", "check", root)
    assert out.returncode == 1 and f"`medal dataset from-folders {root} NEW_FOLDER`" in out.stdout + out.stderr
    out = medal("dataset", "from-folders", root, tmp_path / "guess")
    assert out.returncode == 1 and "--image '*_adc.nii.gz' --image '*_t2.nii.gz'" in out.stdout, out.stdout
    ds = tmp_path / "ds"
    out = medal("dataset", "from-folders", root, ds, "--image", "*_t2.nii.gz", "--image", "*_adc.nii.gz",
                "--labels", "background", "Anterior", "Posterior")
    assert out.returncode == 1, out.stderr
    assert "SKIPPED " + str(root / "Case_002") + ": 0 files match --image '*_adc.nii.gz'" in out.stdout
    assert "linked 2 case(s)" in out.stdout
    out = medal("dataset", "check", ds)
    assert out.returncode == 0 and "cases: 2 (2 labelled, 0 unlabelled)" in out.stdout, out.stdout + out.stderr
    out = medal("train", ds, "--config", tiny_cfg, "--out", tmp_path / "m.pt")
    assert out.returncode == 0, out.stderr
    import torch

    assert torch.load(tmp_path / "m.pt", weights_only=True)["in_channels"] == 2
