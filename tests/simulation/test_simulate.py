"""A two-round simulation on real cases with a tiny network (the CI's end-to-end run)."""

import csv
import dataclasses
import json

import numpy as np
import pytest

from medal.config import config_from_dict
from medal.data import UNLABELED, load_dataset, load_volume, sample_dataset, save_volume
from medal.simulation import aubc, budget_to_reach, read_results, simulate, write_report
from medal.tasks import read_tasks

SMALL = {
    "model": {"channels": [8, 16], "strides": [2], "head_channels": 8},
    "training": {"patch_size": [32, 48, 32], "batch_size": 2, "max_epochs": 1, "iterations_per_epoch": 4,
                 "val_fraction": 0.0},
    "uncertainty": {"mc_samples": 3},
    "selection": {"budget_s": 400.0},
    "simulation": {"strategies": ["fg_random", "knapsack"], "seeds": [0, 1], "rounds": 2, "initial_budget_s": 150.0,
                   "test_fraction": 0.1, "max_pool": 4},
}


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    csv_path = simulate(load_dataset(sample_dataset()), out, config_from_dict(SMALL), log=None)
    return out, csv_path


@pytest.mark.slow
def test_simulation_rows_budget_and_growth(sim):
    out, csv_path = sim
    rows = read_results(csv_path)
    assert len(rows) == 2 * 2 * 3  # strategies x seeds x (rounds + 1)
    meta = json.loads((out / "simulation.json").read_text())
    assert len(meta["pool"]) == 4 and len(meta["test"]) == 2
    for strategy in ("fg_random", "knapsack"):
        for seed in (0, 1):
            mine = sorted((r for r in rows if r["strategy"] == strategy and r["seed"] == seed), key=lambda r: r["round"])
            secs = [r["seconds"] for r in mine]
            assert secs == sorted(secs) and secs[-1] > secs[0]  # more is annotated every round
            assert [r["pct_voxels"] for r in mine] == sorted(r["pct_voxels"] for r in mine)
            assert mine[-1]["pct_voxels"] > mine[0]["pct_voxels"]
            assert all(0 <= r["dice_mean"] <= 1 for r in mine)
            run = out / strategy / f"seed_{seed}"
            # the rows each round wrote as it ended (rounds.jsonl) are the run's rows of results.csv
            logged = [json.loads(line) for line in (run / "rounds.jsonl").read_text().splitlines()]
            assert [(x["round"], x["seconds"], x["dice_mean"]) for x in logged] == \
                [(r["round"], r["seconds"], r["dice_mean"]) for r in mine]
            for k in range(2):
                tl = read_tasks(run / f"round_{k:03d}" / "tasks.json")
                n_res = int(tl.meta["reserve_tasks"])  # medal's default: a time-boxed round with a reserve queue
                main = tl.tasks[:len(tl.tasks) - n_res]
                assert n_res > 0 and 0 < sum(t.predicted_cost_s for t in main) <= 400.0  # budget never exceeded
                # the oracle's clock: tasks in file order until the true seconds reach the budget, the rest todo
                status = [t.status for t in tl.tasks]
                assert "done" in status and status == sorted(status, key=lambda s: s != "done")
                charged = [json.loads(x)["seconds"] for x in (run / f"round_{k:03d}" / "annotation_log.jsonl")
                           .read_text().splitlines()]
                assert len(charged) == status.count("done")
                assert sum(charged) - charged[-1] < 400.0 and (sum(charged) >= 400.0 or "todo" not in status)
                man = json.loads((run / f"round_{k:03d}" / "manifest.json").read_text())
                assert man["budget"]["predicted_s"] <= man["budget"]["budget_s"]
                assert set(man) >= {"config", "checkpoint", "inputs", "outputs", "budget", "metrics"}
    # every strategy of a seed starts from the same labels
    first = {(r["strategy"], r["seed"]): r["seconds"] for r in rows if r["round"] == 0}
    assert first[("fg_random", 0)] == first[("knapsack", 0)]
    # the oracle copied the truth: annotated voxels equal the ground truth there
    lab = load_volume(out / "knapsack" / "seed_0" / "labels" / f"{meta['pool'][0]}.nii.gz").array
    truth = load_volume(load_dataset(sample_dataset()).case(meta["pool"][0]).label).array
    ann = lab != UNLABELED
    assert ann.any() and (lab[ann] == truth[ann]).all()


@pytest.mark.slow
def test_report_and_plots(sim):
    out, csv_path = sim
    md = write_report(csv_path, full_dice=0.88)
    text = md.read_text()
    assert "| **knapsack** |" in text and "Paired comparison" in text
    for png in ("dice_vs_seconds.png", "dice_vs_annotated.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["strategies"]) == {"fg_random", "knapsack"}
    assert summary["pairwise"][0]["seeds"] == 2
    with pytest.raises(FileExistsError):
        simulate(load_dataset(sample_dataset()), out, config_from_dict(SMALL), log=None)


@pytest.mark.slow
def test_the_report_replayed_over_a_simulated_run(sim):
    """benchmarks/stopping.py's reading of a simulated run: one entry per round with a manifest, the report's
    held-out slices (training.holdout, 0.1 by default, also in a simulation) beside the CSV's true Dice."""
    import importlib.util
    from pathlib import Path

    bench = Path(__file__).resolve().parents[2] / "benchmarks" / "stopping.py"
    spec = importlib.util.spec_from_file_location("stopping_bench", bench)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out, csv_path = sim
    ds, cfg = load_dataset(sample_dataset()), config_from_dict(SMALL)
    assert cfg.training.holdout == pytest.approx(0.1)
    for seed in (0, 1):
        mine = {r["round"]: (r["seconds"], r["dice_mean"]) for r in read_results(csv_path)
                if r["strategy"] == "knapsack" and r["seed"] == seed}
        run = out / "knapsack" / f"seed_{seed}"
        got = mod.seed_rounds(run, ds, cfg, mine)
        assert [g["round"] for g in got] == [0, 1]  # the last round trains a model and selects nothing: no report
        for g in got:
            man = json.loads((run / f"round_{g['round']:03d}" / "manifest.json").read_text())
            assert (g["seconds"], g["true_dice"]) == mine[g["round"]]
            assert g["holdout_dice"] == man["metrics"]["holdout"]["dice"]
            assert g["holdout_cases"] == man["metrics"]["holdout"]["cases"]
            assert g["pool_entropy"] == pytest.approx(man["metrics"]["pool_entropy"])
            assert g["verdict"] in ("continue", "consider stopping", "stop")
        assert any(g["holdout_cases"] > 0 for g in got)  # some annotated slices were held out


def test_aubc_and_budget_to_reach():
    xs, ys = np.array([0.0, 10, 20]), np.array([0.2, 0.6, 0.8])
    assert aubc(xs, ys, 20) == pytest.approx((0.4 * 10 + 0.7 * 10) / 20, rel=1e-3)
    assert aubc(xs, ys, 40) == pytest.approx((0.4 * 10 + 0.7 * 10 + 0.8 * 20) / 40, rel=1e-3)
    assert budget_to_reach(xs, ys, 0.7) == pytest.approx(15.0)
    assert budget_to_reach(xs, ys, 0.9) is None


def test_a_timed_simulation_spends_each_round_budget_within_one_task(tmp_path):
    from medal.costs import read_annotation_log

    cfg = {**SMALL, "selection": {"budget_s": 60.0, "reserve": 4.0},
           "simulation": {**SMALL["simulation"], "strategies": ["fg_random"], "seeds": [0], "rounds": 1,
                          "timed": True}}
    csv_path = simulate(load_dataset(sample_dataset()), tmp_path, config_from_dict(cfg), log=None)
    rows = sorted(read_results(csv_path), key=lambda r: r["round"])
    rd = tmp_path / "fg_random" / "seed_0" / "round_000"
    tl = read_tasks(rd / "tasks.json")
    n_reserve = int(tl.meta["reserve_tasks"])
    assert n_reserve > 0 and sum(t.predicted_cost_s for t in tl.tasks[:-n_reserve]) <= 60.0
    done = [t for t in tl.tasks if t.status == "done"]
    assert done == tl.tasks[:len(done)] and len(done) < len(tl.tasks)  # in order; the rest left undone
    log = {r["task_id"]: r["seconds"] for r in read_annotation_log(rd / "annotation_log.jsonl")}
    assert sorted(log) == sorted(t.task_id for t in done)
    charged = rows[1]["seconds"] - rows[0]["seconds"]
    assert charged == pytest.approx(sum(log.values()), abs=0.05) == pytest.approx(rows[1]["round_charged_s"], abs=0.05)
    assert charged >= 60.0 and charged - log[done[-1].task_id] < 60.0  # stops once the budget is reached
    assert rows[1]["round_tasks"] == len(done)


def test_a_correcting_expert_is_charged_for_what_changes_in_the_prediction_shown(tmp_path):
    from medal.config import ConfigError
    from medal.costs import CostModel, correction_features, effort_features, read_annotation_log
    from medal.simulation import unit_mask

    cfg = {**SMALL, "costs": {"annotation": "correct"}, "selection": {"budget_s": 120.0, "reserve": 0.0},
           "simulation": {**SMALL["simulation"], "strategies": ["fg_random"], "seeds": [0], "rounds": 1}}
    ds = load_dataset(sample_dataset())
    simulate(ds, tmp_path, config_from_dict(cfg), log=None)
    rd = tmp_path / "fg_random" / "seed_0" / "round_000"
    tl = read_tasks(rd / "tasks.json")
    assert tl.meta["costs"]["annotation"] == "correct"  # what the napari plugin reads to start from the prediction
    log = {r["task_id"]: r for r in read_annotation_log(rd / "annotation_log.jsonl")}
    done = [t for t in tl.tasks if t.status == "done"]
    assert done and sorted(log) == sorted(t.task_id for t in done)
    model, cheaper = CostModel.default(ds.n_classes), 0
    for t in done:
        truth = load_volume(ds.case(t.case_id).label)
        shown = load_volume(rd / "scores" / t.case_id / "prediction.nii.gz").array
        m = unit_mask(t, truth.shape, tl).astype(np.int32)
        geom = dict(axis=t.axis, spacing=truth.spacing, n_classes=ds.n_classes, ids=np.array([1]))
        fixed = float(model.predict(correction_features(m, truth.array, shown, **geom))[0])
        drawn = float(model.predict(effort_features(m, truth.array, **geom))[0])
        # charged for the correction, or for clearing a prediction worse than nothing and drawing
        assert log[t.task_id]["seconds"] == pytest.approx(min(fixed, drawn))
        painted = load_volume(rd / "annotations" / f"{t.case_id}.nii.gz").array
        np.testing.assert_array_equal(painted[m > 0], truth.array[m > 0])  # the labels are the truth all the same
    # the oracle on its own, shown a perfect prediction, and one with a missed piece: check, then check and fix
    from medal.simulation import oracle_annotate
    from medal.tasks import TaskList

    case = done[0].case_id
    truth = load_volume(ds.case(case).label)
    for name, shown in (("right", truth.array), ("missed", np.where(np.arange(truth.shape[1])[None, :, None] < 20,
                                                                    0, truth.array).astype(np.uint8))):
        (tmp_path / name / "scores" / case).mkdir(parents=True)
        save_volume(truth.with_array(shown), tmp_path / name / "scores" / case / "prediction.nii.gz")
        def todo():
            return TaskList(None, tl.dataset_root,
                            [dataclasses.replace(t, status="todo") for t in done if t.case_id == case])

        mine = todo()
        got = oracle_annotate(mine, ds, tmp_path / name / "ann", cost_model=model, start_dir=tmp_path / name / "scores")
        drawn = oracle_annotate(todo(), ds, tmp_path / name / "drawn", cost_model=model)
        for t in mine.tasks:
            if name == "right":  # nothing to change: 4 s to open the task + 1.5 s for its one slice
                assert got["per_task"][t.task_id] == pytest.approx(5.5)
            else:
                assert 5.5 <= got["per_task"][t.task_id] <= drawn["per_task"][t.task_id]
        if name == "missed":
            assert got["seconds"] > 5.5 * len(mine.tasks)  # some hippocampus lay in the erased part
    with pytest.raises(ConfigError, match="costs.annotation"):
        config_from_dict({**SMALL, "costs": {"annotation": "corect"}})


@pytest.mark.parametrize("initial_kind, expected", [("", "supervoxel"), ("slice", "slice")])
def test_initial_kind_sets_the_unit_of_the_first_labels(tmp_path, initial_kind, expected):
    from medal.config import ConfigError
    from medal.costs import CostModel
    from medal.simulation.simulate import _initial_key, _prepare_initial, split_cases

    raw = {**SMALL, "regions": {"kind": "supervoxel"},
           "simulation": {**SMALL["simulation"], "initial_kind": initial_kind}}
    cfg = config_from_dict(raw)
    ds = load_dataset(sample_dataset())
    pool, _ = split_cases(ds, cfg.simulation)
    _prepare_initial(ds, pool, cfg, 0, CostModel.default(ds.n_classes), tmp_path)
    tasks = read_tasks(tmp_path / "tasks.json").tasks
    assert tasks and {t.kind for t in tasks} == {expected}
    assert sum(t.predicted_cost_s for t in tasks) <= cfg.simulation.initial_budget_s
    # a supervoxel row started from slices shares its first labels (and so round 0) with the slice rows
    slice_cfg = config_from_dict({**SMALL, "regions": {"kind": "slice"}})
    assert (_initial_key(cfg, 0) == _initial_key(slice_cfg, 0)) == (expected == "slice")
    with pytest.raises(ConfigError, match="simulation.initial_kind"):
        config_from_dict({**SMALL, "simulation": {**SMALL["simulation"], "initial_kind": "slices"}})


def test_initial_axis_sets_the_planes_of_the_first_labels_only(tmp_path):
    from medal.config import ConfigError
    from medal.costs import CostModel
    from medal.simulation.simulate import _initial_key, _prepare_initial, split_cases

    planes = ["axial", "coronal", "sagittal"]
    raw = {**SMALL, "simulation": {**SMALL["simulation"], "initial_budget_s": 600.0, "initial_axis": planes}}
    cfg = config_from_dict(raw)
    assert cfg.regions.axes == ("axial",)  # the rounds keep their plane
    ds = load_dataset(sample_dataset())
    pool, _ = split_cases(ds, cfg.simulation)
    _prepare_initial(ds, pool, cfg, 0, CostModel.default(ds.n_classes), tmp_path)
    tasks = read_tasks(tmp_path / "tasks.json").tasks
    assert len({t.axis for t in tasks}) >= 2 and {t.kind for t in tasks} == {"slice"}
    assert sum(t.predicted_cost_s for t in tasks) <= 600.0
    # its own first labels (and round 0); naming the row's own plane is the same start as naming none
    plain = config_from_dict({**SMALL, "simulation": {**SMALL["simulation"], "initial_budget_s": 600.0}})
    same = config_from_dict({**SMALL, "simulation": {**SMALL["simulation"], "initial_budget_s": 600.0,
                                                     "initial_axis": "axial"}})
    assert _initial_key(cfg, 0) != _initial_key(plain, 0) == _initial_key(same, 0)
    with pytest.raises(ConfigError, match="simulation.initial_axis"):
        config_from_dict({**SMALL, "simulation": {**SMALL["simulation"], "initial_axis": ["axial", "axil"]}})
    # a cold start takes coldstart.axis (the product's setting, as `medal coldstart` does) unless initial_axis says
    from medal.simulation.simulate import _initial_axes

    cold = {**SMALL, "coldstart": {"axis": planes}, "simulation": {**SMALL["simulation"], "initial": "coldstart"}}
    assert _initial_axes(config_from_dict(cold)) == tuple(planes)
    cold["simulation"]["initial_axis"] = "sagittal"
    assert _initial_axes(config_from_dict(cold)) == ("sagittal",)
    cold["simulation"]["initial"] = "random"
    cold["simulation"]["initial_axis"] = ""
    assert _initial_axes(config_from_dict(cold)) == ("axial",)  # coldstart.axis is the cold start's only
    with pytest.raises(ConfigError, match="coldstart.axis"):
        config_from_dict({**SMALL, "coldstart": {"axis": "axil"}})


def test_pct_slices_counts_painted_slices_in_every_plane_a_run_paints(tmp_path):
    from medal.data.io import Volume, save_volume
    from medal.simulation.simulate import _annotated_stats, _painted_axes, round_dir

    shape = (6, 8, 10)
    first = np.full(shape, UNLABELED, np.uint8)
    first[:, :, 3] = 0  # a slice along array axis 2, painted whole
    first[1:3, 4, 5:8] = 1  # a blob (as a supervoxel) touching axis-2 slices 5-7
    later = np.full(shape, UNLABELED, np.uint8)
    later[2, :, :] = 0  # round 0's task: a slice along axis 0
    for folder, ann in ((tmp_path / "round_init" / "annotations", first),
                        (round_dir(tmp_path, 0) / "annotations", later)):
        folder.mkdir(parents=True)
        save_volume(Volume(ann, np.eye(4)), folder / "c.nii.gz")
    shapes = {"c": shape}
    # one plane: its slices touched by any label (3, 5, 6, 7 of 10); the rounds before `before` only
    pct_s, pct_v = _annotated_stats(tmp_path, ["c"], shapes, (2,), before=0)
    assert pct_s == pytest.approx(40.0) and pct_v == pytest.approx(100.0 * (first != UNLABELED).sum() / first.size)
    # a coronal slice crosses every axial one: "touched" would say 100% here ...
    assert _annotated_stats(tmp_path, ["c"], shapes, (2,), before=1)[0] == pytest.approx(100.0)
    # ... so with several planes: the slices labelled whole along each (one along axis 2, one along axis 0)
    assert _annotated_stats(tmp_path, ["c"], shapes, (2, 0), before=1)[0] == pytest.approx(100.0 * 2 / (10 + 6))
    assert _annotated_stats(tmp_path, ["c"], shapes, (2, 0), before=0)[0] == pytest.approx(100.0 * 1 / (10 + 6))
    three = config_from_dict({**SMALL, "simulation": {**SMALL["simulation"], "initial_axis": ["axial", "coronal",
                                                                                              "sagittal"]}})
    orientation = load_volume(load_dataset(sample_dataset()).cases[0].image).orientation
    assert len(_painted_axes(three, orientation)) == 3 and len(_painted_axes(config_from_dict(SMALL), orientation)) == 1


def _split(out, tmp_path, column: str):
    """One folder per value of ``column`` (``seed``: per-seed batch jobs; ``strategy``: per-row jobs, every seed in
    each), as separate ``medal simulate`` runs would leave them (runs are deterministic per seed)."""
    meta = json.loads((out / "simulation.json").read_text())
    with open(out / "results.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    folders = []
    for value in sorted({r[column] for r in rows}):
        d = tmp_path / f"{column}_{value}"
        d.mkdir()
        m = json.loads(json.dumps(meta))
        m["config"]["simulation"]["seeds" if column == "seed" else "strategies"] = \
            [int(value)] if column == "seed" else [value]
        (d / "simulation.json").write_text(json.dumps(m))
        with open(d / "results.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            w.writerows(r for r in rows if r[column] == value)
        folders.append(d)
    return folders


def _split_by_seed(out, tmp_path):
    return _split(out, tmp_path, "seed")


@pytest.mark.slow
def test_merging_per_seed_runs_gives_the_joint_report(sim, tmp_path):
    from medal.simulation import merge_runs

    out, csv_path = sim
    write_report(csv_path, full_dice=0.88)
    joint = json.loads((out / "summary.json").read_text())
    a, b = _split_by_seed(out, tmp_path)
    merged = merge_runs([b, a], tmp_path / "merged")
    write_report(merged, full_dice=0.88)
    got = json.loads((tmp_path / "merged" / "summary.json").read_text())
    for s in ("fg_random", "knapsack"):
        assert got["strategies"][s]["aubc_per_seed"] == joint["strategies"][s]["aubc_per_seed"]
        assert got["strategies"][s]["seeds"] == 2
    assert got["pairwise"][0]["p_paired_t"] == pytest.approx(joint["pairwise"][0]["p_paired_t"])
    assert json.loads((tmp_path / "merged" / "simulation.json").read_text())["config"]["simulation"]["seeds"] == [0, 1]
    with pytest.raises(FileExistsError):
        merge_runs([a, b], tmp_path / "merged")


def _split_by_row(out, tmp_path):
    return _split(out, tmp_path, "strategy")


@pytest.mark.slow
def test_merge_flags_seeds_whose_round_0_differs_between_runs_and_keeps_every_environment(sim, tmp_path):
    """Per-row batch jobs on two machines: the same seed's first model can differ, and then the rows are not
    paired; the merge says which seeds and where each folder ran."""
    import torch

    from medal.simulation import merge_runs

    out, _ = sim
    env = json.loads((out / "simulation.json").read_text())["environments"]
    assert len(env) == 1 and env[0]["torch"] == torch.__version__ and env[0]["cores"] >= 1
    a, b = _split_by_row(out, tmp_path)
    write_report(merge_runs([a, b], tmp_path / "same"))  # one machine: the same starts, nothing flagged
    same = json.loads((tmp_path / "same" / "simulation.json").read_text())
    assert "start_mismatch" not in same and same["environments"] == env
    assert "not paired" not in (tmp_path / "same" / "report.md").read_text()
    meta = json.loads((b / "simulation.json").read_text())
    meta["environments"] = [{**env[0], "numpy": "0.0-other"}]
    (b / "simulation.json").write_text(json.dumps(meta))
    with open(b / "results.csv", newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    for r in rows:
        if r["seed"] == "1" and r["round"] == "0":
            r["dice_mean"] = str(float(r["dice_mean"]) - 0.015)
    with open(b / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    write_report(merge_runs([a, b], tmp_path / "two"))
    two = json.loads((tmp_path / "two" / "simulation.json").read_text())
    assert list(two["start_mismatch"]) == ["1"] and set(two["start_mismatch"]["1"]) == {str(a), str(b)}
    assert len(two["environments"]) == 2
    report = (tmp_path / "two" / "report.md").read_text()
    assert "not paired: round 0 differs between the merged runs for seed(s) 1" in report
    assert "ran in 2 environments" in report
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["unpaired_seeds"] == [1]


@pytest.mark.slow
def test_merge_refuses_runs_of_another_protocol_or_the_same_pair_twice(sim, tmp_path, capsys):
    from medal.cli import main
    from medal.simulation import merge_runs

    out, _ = sim
    a, b = _split_by_seed(out, tmp_path)
    with pytest.raises(ValueError, match="seed 0 is also in"):
        merge_runs([a, b, a], tmp_path / "twice")
    meta = json.loads((b / "simulation.json").read_text())
    meta["config"]["selection"]["budget_s"] = 999.0
    (b / "simulation.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"'selection\.budget_s' differs"):
        merge_runs([a, b], tmp_path / "budget")
    meta["config"]["selection"]["budget_s"] = 400.0
    meta["test"] = meta["test"][:1]
    (b / "simulation.json").write_text(json.dumps(meta))
    assert main(["merge", str(a), str(b), "--out", str(tmp_path / "cli")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("medal: error:") and "test cases differ" in err and str(b) in err and "\n" not in err
    assert not (tmp_path / "cli" / "results.csv").exists()


@pytest.mark.slow
def test_merge_waves_through_only_the_named_config_keys_and_records_them(sim, tmp_path, capsys):
    from medal.cli import main
    from medal.simulation import merge_runs

    out, _ = sim
    a, b = _split_by_seed(out, tmp_path)
    meta = json.loads((b / "simulation.json").read_text())
    # a key an older medal did not write, while the other run has it at its default: not a difference
    del meta["config"]["training"]["pseudo_margin"]
    meta["config"]["coldstart"]["edge_margin"] = 0.0          # a section this protocol does not use
    (b / "simulation.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"'coldstart\.edge_margin' differs"):
        merge_runs([a, b], tmp_path / "refused")
    assert main(["merge", str(a), str(b), "--out", str(tmp_path / "cli"), "--ignore-config", "coldstart"]) == 0
    merged = json.loads((tmp_path / "cli" / "simulation.json").read_text())
    assert merged["merge_ignored"] == {str(b): ["coldstart.edge_margin"]}
    assert merged["config"]["training"]["pseudo_margin"] == json.loads(
        (a / "simulation.json").read_text())["config"]["training"]["pseudo_margin"]
    report = (tmp_path / "cli" / "report.md").read_text()
    assert "waved through" in report and "coldstart.edge_margin" in report
    assert json.loads((tmp_path / "cli" / "summary.json").read_text())["strategies"]["knapsack"]["seeds"] == 2


@pytest.mark.slow
def test_an_interrupted_simulation_resumed_with_more_rounds_writes_what_an_uninterrupted_one_does(tmp_path, capsys):
    """Interrupted for real (the row logger raises once round 1 is evaluated), then resumed with a
    second round: the same rows as a run that was never interrupted (seconds included)."""
    cfg = {**SMALL, "selection": {"budget_s": 60.0, "reserve": 2.0},
           "simulation": {**SMALL["simulation"], "strategies": ["fg_random"], "seeds": [0], "rounds": 2,
                          "timed": True}}
    ds = load_dataset(sample_dataset())
    ref = read_results(simulate(ds, tmp_path / "ref", config_from_dict(cfg), log=None, workers=1))

    logged = []

    def stop_at_round_1(line):
        logged.append(json.loads(line))
        if logged[-1]["round"] == 1:
            raise KeyboardInterrupt

    short = {**cfg, "simulation": {**cfg["simulation"], "rounds": 1}}
    with pytest.raises(KeyboardInterrupt):
        simulate(ds, tmp_path / "cut", config_from_dict(short), log=stop_at_round_1, workers=1)
    assert not (tmp_path / "cut" / "results.csv").exists()
    with pytest.raises(FileExistsError, match="--resume"):
        simulate(ds, tmp_path / "cut", config_from_dict(cfg), log=None, workers=1)
    other = {**cfg, "selection": {"budget_s": 90.0, "reserve": 2.0}}
    with pytest.raises(ValueError, match="selection.budget_s"):
        simulate(ds, tmp_path / "cut", config_from_dict(other), log=None, workers=1, resume=True)
    given = {**cfg, "model": {**cfg["model"], "strides": [[2, 2, 1]]}}
    with pytest.raises(ValueError, match="model.strides"):
        simulate(ds, tmp_path / "cut", config_from_dict(given), log=None, workers=1, resume=True)
    # resumed under model.strides: auto, which plans the strides the interrupted run was given ([2] for the
    # sample's 1 mm voxels): the same simulation goes on (what a run started before `auto` was the default meets)
    auto = {**cfg, "model": {**cfg["model"], "strides": "auto"}}
    got = read_results(simulate(ds, tmp_path / "cut", config_from_dict(auto), log=None, workers=1, resume=True))
    meta = json.loads((tmp_path / "cut" / "simulation.json").read_text())
    assert meta["resumed"] == 1 and meta["config"]["model"]["strides"] == [2]
    assert "resumed 1 time" in (write_report(tmp_path / "cut" / "results.csv")).read_text()
    assert len(got) == len(ref) == 3 and ref[0]["seconds"] > 0
    # a round trained before the interruption keeps the training seconds measured then (not the ~0 s of
    # finding its model already there)
    assert logged[1]["train_s"] > 0 and got[1]["train_s"] == pytest.approx(logged[1]["train_s"])
    for a, b in zip(ref, got):
        a.pop("train_s"), b.pop("train_s")
        assert a == b
    run = {n: tmp_path / n / "fg_random" / "seed_0" for n in ("ref", "cut")}
    for r in ("round_000", "round_001"):
        ids = [row["task_id"] for row in (run["cut"] / r / "annotation_log.jsonl").read_text().splitlines()
               for row in [json.loads(row)]]
        assert len(ids) == len(set(ids)) > 0
        assert [t.status for t in read_tasks(run["cut"] / r / "tasks.json").tasks] == \
            [t.status for t in read_tasks(run["ref"] / r / "tasks.json").tasks]
    # a finished run is kept as it is: resuming again changes nothing
    before = (tmp_path / "cut" / "results.csv").read_text()
    simulate(ds, tmp_path / "cut", config_from_dict(cfg), log=None, workers=1, resume=True)
    assert (tmp_path / "cut" / "results.csv").read_text() == before
    # a variant defined since is a row added: resumable, the finished rows kept; redefining it later is refused
    more = {**cfg, "simulation": {**cfg["simulation"], "variants": {"fg_b": {"selection": {"strategy": "random"}}}}}
    simulate(ds, tmp_path / "cut", config_from_dict(more), log=None, workers=1, resume=True)
    assert (tmp_path / "cut" / "results.csv").read_text() == before
    changed = {**cfg, "simulation": {**cfg["simulation"], "variants": {"fg_b": {"selection": {"strategy": "topk"}}}}}
    with pytest.raises(ValueError, match=r"simulation\.variants\.fg_b"):
        simulate(ds, tmp_path / "cut", config_from_dict(changed), log=None, workers=1, resume=True)
    # the command line: one line naming the folder and the way on, no traceback
    from medal.cli import main

    assert main(["simulate", str(sample_dataset()), "--out", str(tmp_path / "cut")]) == 1
    assert main(["simulate", str(sample_dataset()), "--out", str(tmp_path / "none"), "--resume"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("medal: error:") for e in err)
    assert "--resume" in err[0] and str(tmp_path / "cut") in err[0] and "no simulation to resume" in err[1]


def test_a_training_seed_offset_retrains_the_same_start_under_another_seed(tmp_path):
    """``simulation.training_seed_offset``: the first labels are the seed's, the model's seeds move."""
    import torch

    from medal.config import ConfigError

    def run(offset):
        cfg = {**SMALL, "simulation": {**SMALL["simulation"], "strategies": ["fg_random"], "seeds": [0], "rounds": 0,
                                       "training_seed_offset": offset}}
        out = tmp_path / f"off{offset}"
        simulate(load_dataset(sample_dataset()), out, config_from_dict(cfg), log=None)
        starts = list((out / "initial").glob("seed_0_*/tasks.json"))
        models = sorted((out / "shared").rglob("*.pt"))
        assert len(starts) == 1 and models
        tasks = [(t.case_id, t.axis, t.index) for t in read_tasks(starts[0]).tasks]
        weights = torch.load(models[0], weights_only=True)
        return tasks, weights.get("state_dict", weights)

    tasks0, w0 = run(0)
    tasks7, w7 = run(7)
    assert tasks0 == tasks7  # the same start
    tensors = [k for k, v in w0.items() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    assert tensors and any(not torch.equal(w0[k], w7[k]) for k in tensors)  # another training seed
    with pytest.raises(ConfigError, match="training_seed_offset"):
        config_from_dict({**SMALL, "simulation": {**SMALL["simulation"], "training_seed_offset": -1}})


def test_a_setting_added_later_at_its_default_does_not_make_runs_differ():
    from medal.simulation.merge import _default_config, _diffs

    new = _default_config()
    old = json.loads(json.dumps(new))
    del old["simulation"]["training_seed_offset"], old["coldstart"]["ends_margin"]
    assert _diffs(old, new, defaults=_default_config()) == []
    assert _diffs(old, new) == ["coldstart.ends_margin", "simulation.training_seed_offset"]
    new["simulation"]["training_seed_offset"] = 3  # not the default: a real difference
    assert _diffs(old, new, defaults=_default_config()) == ["simulation.training_seed_offset"]
    new["simulation"]["rounds"] = 9
    assert "simulation.rounds" in _diffs(old, new, defaults=_default_config())


def test_first_labels_chosen_in_two_workers_equal_those_chosen_in_one(tmp_path):
    """Every seed's cold start (a timed pilot and batches) is chosen in worker processes when a run has several
    workers; the tasks are those this process chooses, seed for seed."""
    from medal.costs import CostModel
    from medal.simulation.simulate import _prepare_starts

    ds = load_dataset(sample_dataset())
    pool = [c.case_id for c in ds.cases[:8]]
    cfg = config_from_dict({**SMALL, "coldstart": {"representation": "thumbnails", "axis": ["axial", "coronal"]},
                            "simulation": {**SMALL["simulation"], "initial": "coldstart"}})
    cost = CostModel.default(3)

    def choose(where, workers):
        starts = [(ds, pool, cfg, seed, cost, tmp_path / where / f"seed_{seed}") for seed in (0, 1, 2)]
        _prepare_starts(starts, workers)
        return [[(t.case_id, t.axis, t.index, round(t.predicted_cost_s, 6))
                 for t in read_tasks(tmp_path / where / f"seed_{seed}" / "tasks.json").tasks] for seed in (0, 1, 2)]

    one, two = choose("one", 1), choose("two", 2)
    assert one == two
    assert all(one) and one[0] != one[1]  # every seed chose, and seeds differ
    assert (tmp_path / "two" / "seed_0" / "pilot").is_dir()  # the timed pilot ran in the worker as well


def test_round_fits_the_deadline():
    from medal.simulation.simulate import round_fits

    assert round_fits(100.0, 200.0, None) and round_fits(100.0, 200.0, 100.0)
    assert not round_fits(100.0, 200.0, 100.5)  # the previous round's duration would end past it
    assert not round_fits(200.0, 200.0, None) and not round_fits(250.0, 200.0, 0.0)


@pytest.mark.slow
def test_a_deadline_reports_the_rounds_every_run_finished_and_resume_completes_them(tmp_path):
    """One run finished before, one stopped by a deadline after round 0: the report pairs them on round 0
    (results.csv, simulation.json say so); resumed without a deadline, the rows of a run never stopped."""
    import time

    both = {**SMALL, "simulation": {**SMALL["simulation"], "strategies": ["fg_random", "knapsack"], "seeds": [0],
                                    "rounds": 1}}
    one = {**both, "simulation": {**both["simulation"], "strategies": ["fg_random"]}}
    ds = load_dataset(sample_dataset())
    ref = read_results(simulate(ds, tmp_path / "ref", config_from_dict(both), log=None, workers=1))
    cut = tmp_path / "cut"
    assert len(read_results(simulate(ds, cut, config_from_dict(one), log=None, workers=1))) == 2
    logged = []
    rows = read_results(simulate(ds, cut, config_from_dict(both), log=logged.append, workers=1, resume=True,
                                 deadline=time.time() - 1.0))
    assert sorted((r["strategy"], r["round"]) for r in rows) == [("fg_random", 0), ("knapsack", 0)]
    meta = json.loads((cut / "simulation.json").read_text())
    assert meta["deadline"]["rounds_reported"] == 0 and meta["deadline"]["runs_stopped"] == ["knapsack/seed_0"]
    assert "rounds 0..0 of 1" in logged[-1]
    # the stopped run's rows so far, as it wrote them (rounds.jsonl); nothing of round 1 was started
    assert [json.loads(x)["round"] for x in (cut / "knapsack" / "seed_0" / "rounds.jsonl").read_text().splitlines()] == [0]
    assert not (cut / "knapsack" / "seed_0" / "round_001" / "model.pt").exists()
    assert "stopped by a deadline" in write_report(cut / "results.csv").read_text()
    got = read_results(simulate(ds, cut, config_from_dict(both), log=None, workers=1, resume=True))
    assert "deadline" not in json.loads((cut / "simulation.json").read_text())
    assert len(got) == len(ref) == 4
    for a, b in zip(ref, got):
        a.pop("train_s"), b.pop("train_s")
        assert a == b


@pytest.mark.slow
def test_simulate_command_line_deadline(tmp_path, capsys):
    """medal simulate --deadline 0: round 0 of every run, then none; the report says where it stopped."""
    import yaml

    from medal.cli import main

    cfg = {**SMALL, "simulation": {**SMALL["simulation"], "strategies": ["fg_random"], "seeds": [0], "rounds": 1}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["simulate", str(sample_dataset()), "--out", str(tmp_path / "o"), "--config", str(tmp_path / "c.yaml"),
                 "--deadline", "0"]) == 0
    assert [r["round"] for r in read_results(tmp_path / "o" / "results.csv")] == [0]
    assert "rounds 0..0 of 1" in (tmp_path / "o" / "report.md").read_text()
    capsys.readouterr()
    assert main(["simulate", str(sample_dataset()), "--out", str(tmp_path / "p"), "--deadline", "-5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("medal: error: --deadline") and not (tmp_path / "p").exists()


def test_group_columns_split_the_mean_dice_by_the_groups_file(tmp_path):
    """simulation.groups: one dice_group_NAME column per group, each the mean Dice of its test cases, so the
    groups' means weighted by their case counts give dice_mean back, and a tasks_group_NAME column counting
    each round's painted units per group; the file's problems are one-line errors."""
    from medal.simulation.simulate import load_groups

    ds = load_dataset(sample_dataset())
    cfg = {**SMALL, "simulation": {**SMALL["simulation"], "strategies": ["fg_random"], "seeds": [0], "rounds": 1,
                                   "test_fraction": 0.2}}
    ids = sorted(c.case_id for c in ds.cases)
    groups = {c: ("site-A" if i % 3 else "site_B.2") for i, c in enumerate(ids)}
    path = tmp_path / "groups.json"
    path.write_text(json.dumps(groups))
    cfg["simulation"]["groups"] = str(path)
    csv_path = simulate(ds, tmp_path / "run", config_from_dict(cfg), log=None)
    meta = json.loads((tmp_path / "run" / "simulation.json").read_text())
    test = meta["test"]
    assert sorted(meta["groups"]) == sorted({groups[c] for c in test})
    assert sorted(c for v in meta["groups"].values() for c in v) == sorted(test)
    assert {c: g for g, v in meta["pool_groups"].items() for c in v} == {
        c: groups[c] for c in meta["pool"] if groups[c] in meta["groups"]}
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["round"]) for r in rows] == [0, 1]
    for row in rows:
        cols = {k: float(v) for k, v in row.items() if k.startswith("dice_group_")}
        assert set(cols) == {f"dice_group_{g}" for g in meta["groups"]}
        weighted = sum(cols[f"dice_group_{g}"] * len(v) for g, v in meta["groups"].items()) / len(test)
        assert weighted == pytest.approx(float(row["dice_mean"]), abs=1e-4)
        assert len(cols) == 2 and len(set(cols.values())) == 2  # two groups of different cases: their Dice differ
        # every painted unit counted once, in its case's group (here every pool case has a test group)
        painted = {k: int(v) for k, v in row.items() if k.startswith("tasks_group_")}
        assert set(painted) == {f"tasks_group_{g}" for g in meta["groups"]}
        assert sum(painted.values()) == int(row["round_tasks"]) > 0
    logged = [json.loads(x)["case_id"] for x in
              (tmp_path / "run" / "fg_random" / "seed_0" / "round_000" / "annotation_log.jsonl").read_text().splitlines()]
    assert {k: int(v) for k, v in rows[1].items() if k.startswith("tasks_group_")} == {
        f"tasks_group_{g}": sum(groups[c] == g for c in logged) for g in meta["groups"]}
    # the report and summary.json carry each group's final Dice (here the one round's) and the balanced mean
    md = write_report(csv_path).read_text()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())["groups"]
    assert summary["names"] == sorted(meta["groups"])
    assert summary["cases"] == {g: len(v) for g, v in meta["groups"].items()}
    got = summary["strategies"]["fg_random"]
    for g in meta["groups"]:
        assert got[g]["final_dice_per_seed"]["0"] == pytest.approx(cols[f"dice_group_{g}"], abs=1e-5)
        assert got[g]["selected_units_per_seed"] == {"0": int(rows[1][f"tasks_group_{g}"])}
    assert got["balanced"]["final_dice_mean"] == pytest.approx(np.mean(list(cols.values())), abs=1e-5)
    assert "Final Dice per group" in md and "Units painted per group" in md
    assert all(f"{g} ({len(v)} cases)" in md for g, v in meta["groups"].items())
    assert all(f"{g} ({len(v)} pool cases)" in md for g, v in meta["pool_groups"].items())

    with pytest.raises(ValueError, match=r"simulation.groups: .*groups.json has no group for 1 test case\(s\), e.g. nope"):
        load_groups(path, [test[0], "nope"])
    path.write_text(json.dumps({test[0]: "a b"}))
    with pytest.raises(ValueError, match="'a b' of .* is not a usable name"):
        load_groups(path, [test[0]])
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        load_groups(path, [test[0]])
    with pytest.raises(ValueError, match="cannot read .*missing.json"):
        load_groups(tmp_path / "missing.json", [test[0]])


def test_initial_groups_draw_the_first_labels_from_those_groups_only(tmp_path):
    """simulation.initial_groups: a new site joins the pool; the random first labels come only from the pool
    cases of the named groups (the same start for every row of a seed), the later rounds from the whole pool;
    a group without pool cases, or initial_groups without a groups file, is a one-line error."""
    from medal.config import ConfigError

    ds = load_dataset(sample_dataset())
    ids = sorted(c.case_id for c in ds.cases)
    groups = {c: ("old" if i % 4 else "new") for i, c in enumerate(ids)}
    path = tmp_path / "groups.json"
    path.write_text(json.dumps(groups))
    cfg = {**SMALL, "simulation": {**SMALL["simulation"], "strategies": ["random", "fg_random"], "seeds": [0],
                                   "rounds": 0, "initial_budget_s": 400.0, "test_fraction": 0.2, "max_pool": 0,
                                   "groups": str(path), "initial_groups": ["old"]}}
    simulate(ds, tmp_path / "run", config_from_dict(cfg), log=None)
    meta = json.loads((tmp_path / "run" / "simulation.json").read_text())
    assert any(groups[c] == "new" for c in meta["pool"])  # the new site is in the pool ...
    assert meta["start_pool"] == [c for c in meta["pool"] if groups[c] == "old"]
    for row in ("random", "fg_random"):
        start = read_tasks(tmp_path / "run" / row / "seed_0" / "round_init" / "tasks.json").tasks
        assert len({t.case_id for t in start}) > 1  # ... but none of its cases is in the start
        assert {groups[t.case_id] for t in start} == {"old"}
        assert sum(t.predicted_cost_s for t in start) <= 400.0
    # the whole pool draws from both sites (this seed's unrestricted start holds a new-site case)
    cfg["simulation"]["initial_groups"], cfg["simulation"]["initial_budget_s"] = [], 2000.0
    cfg["simulation"]["strategies"] = ["fg_random"]
    simulate(ds, tmp_path / "all", config_from_dict(cfg), log=None)
    start = read_tasks(tmp_path / "all" / "fg_random" / "seed_0" / "round_init" / "tasks.json").tasks
    assert {groups[t.case_id] for t in start} == {"old", "new"}

    cfg["simulation"]["initial_groups"] = ["nowhere"]
    with pytest.raises(ValueError, match=r"simulation.initial_groups: .*groups.json gives no pool case the group\(s\) "
                                          r"\['nowhere'\]; its pool groups are \['new', 'old'\]"):
        simulate(ds, tmp_path / "bad", config_from_dict(cfg), log=None)
    cfg["simulation"]["groups"] = ""
    with pytest.raises(ConfigError, match="simulation.initial_groups: needs simulation.groups"):
        config_from_dict(cfg)


def test_group_summary_takes_each_seeds_last_round_and_pairs_seeds():
    """group_summary against a hand computation on a small table: the last round by seconds per seed, the
    group-balanced mean, scipy's paired t-test per group; rows without the columns say nothing."""
    from scipy.stats import ttest_rel

    from medal.simulation.report import group_summary

    rng = np.random.default_rng(0)
    rows, last = [], {}
    for strategy in ("default", "fg_random"):
        for seed in range(4):
            for rnd in (2, 0, 1):  # out of order: the last round is found by its seconds, not by row order
                a, b = rng.uniform(0.3, 0.9, 2)
                rows.append({"strategy": strategy, "seed": float(seed), "round": float(rnd), "seconds": 300.0 * (rnd + 1),
                             "dice_mean": 0.5, "dice_group_A": a, "dice_group_rare": b,
                             "tasks_group_A": float(10 + rnd), "tasks_group_rare": float(seed * rnd)})
                if rnd == 2:
                    last[strategy, seed] = (a, b)
    rows.append({"strategy": "default", "seed": 9.0, "round": 0.0, "seconds": 1.0, "dice_mean": 0.5,
                 "dice_group_A": None, "dice_group_rare": None})  # a merged run without groups: skipped
    out = group_summary(rows, {"A": ["x", "y"], "rare": ["z"]}, {"A": ["p", "q", "r"], "rare": ["s"]})
    assert out["names"] == ["A", "rare"] and out["cases"] == {"A": 2, "rare": 1}
    assert out["pool_cases"] == {"A": 3, "rare": 1}
    for strategy in ("default", "fg_random"):
        got = out["strategies"][strategy]
        assert sorted(got["A"]["final_dice_per_seed"]) == ["0", "1", "2", "3"]
        for seed in range(4):
            a, b = last[strategy, seed]
            assert got["A"]["final_dice_per_seed"][str(seed)] == pytest.approx(a, abs=1e-5)
            assert got["rare"]["final_dice_per_seed"][str(seed)] == pytest.approx(b, abs=1e-5)
            assert got["balanced"]["final_dice_per_seed"][str(seed)] == pytest.approx((a + b) / 2, abs=1e-5)
            # units of the selection rounds 1 and 2 only (round 0 is the first labels)
            assert got["A"]["selected_units_per_seed"][str(seed)] == 11 + 12
            assert got["rare"]["selected_units_per_seed"][str(seed)] == seed * 3
    pair = {p["group"]: p for p in out["pairwise"]}
    assert set(pair) == {"A", "rare", "balanced"} and all(p["a"] == "default" for p in pair.values())
    for g, k in (("A", 0), ("rare", 1)):
        da = np.array([last["default", s][k] for s in range(4)])
        db = np.array([last["fg_random", s][k] for s in range(4)])
        assert pair[g]["mean_diff"] == pytest.approx((da - db).mean())
        assert pair[g]["a_wins"] == int((da > db).sum()) and pair[g]["seeds"] == 4
        assert pair[g]["p_paired_t"] == pytest.approx(ttest_rel(da, db).pvalue)
    assert group_summary([{k: v for k, v in r.items() if not k.startswith("dice_group_")} for r in rows]) == {}


def test_simulate_skips_cases_that_fail_the_dataset_checks_and_says_why(tmp_path, capsys):
    """A 0/255 mask (its foreground would read as 'not annotated') and a label off the image's grid are
    skipped with a SKIPPED line naming the file; the rest of the simulation runs; exit 1; recorded."""
    import shutil

    import nibabel as nib
    import yaml

    from medal.cli import main

    src = sample_dataset()
    ds = tmp_path / "ds"
    shutil.copytree(src, ds)
    ids = sorted(p.name[:-len(".nii.gz")] for p in (ds / "labelsTr").glob("*.nii.gz"))[:6]
    mask_id, shifted_id = ids[1], ids[4]
    lab = nib.load(ds / "labelsTr" / f"{mask_id}.nii.gz")
    nib.save(nib.Nifti1Image((np.asarray(lab.dataobj) > 0).astype(np.uint8) * 255, lab.affine),
             ds / "labelsTr" / f"{mask_id}.nii.gz")
    lab = nib.load(ds / "labelsTr" / f"{shifted_id}.nii.gz")
    aff = lab.affine.copy()
    aff[0, 3] += 3.0
    nib.save(nib.Nifti1Image(np.asarray(lab.dataobj), aff), ds / "labelsTr" / f"{shifted_id}.nii.gz")
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"pool": ids[:4], "test": ids[4:] + ["hippocampus_999"]}))  # a typo'd id too
    cfg = {**SMALL, "simulation": {**SMALL["simulation"], "strategies": ["fg_random"], "seeds": [0], "rounds": 1,
                                   "split_file": str(split), "max_pool": 0}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = tmp_path / "o"
    assert main(["simulate", str(ds), "--out", str(out), "--config", str(tmp_path / "c.yaml"),
                 "--deadline", "0"]) == 1
    err = capsys.readouterr().err
    skipped = [line for line in err.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) == 3, err
    assert f"labelsTr/{mask_id}.nii.gz" in skipped[0] and "0/255 binary mask" in skipped[0]
    assert f"labelsTr/{shifted_id}.nii.gz" in skipped[1] and "affine differs" in skipped[1]
    assert skipped[2].startswith(f"SKIPPED [hippocampus_999] {split}: its 'test' list names 'hippocampus_999', not a case")
    meta = json.loads((out / "simulation.json").read_text())
    assert sorted(meta["skipped"]) == sorted([mask_id, shifted_id, "hippocampus_999"])
    assert meta["pool"] == [ids[0], ids[2], ids[3]] and meta["test"] == [ids[5]]
    assert [r["round"] for r in read_results(out / "results.csv")] == [0]
    assert mask_id in (out / "report.md").read_text()
    # nothing usable left on one side: a one-line error, no traceback
    split.write_text(json.dumps({"pool": ids[:4], "test": [shifted_id]}))
    assert main(["simulate", str(ds), "--out", str(tmp_path / "p"), "--config", str(tmp_path / "c.yaml")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("medal: error:") and "no usable test case" in err[-1]
    assert "Traceback" not in "\n".join(err) and not (tmp_path / "p").exists()  # a refused run leaves no folder
    split.unlink()
    assert main(["simulate", str(ds), "--out", str(tmp_path / "p"), "--config", str(tmp_path / "c.yaml")]) == 1
    assert capsys.readouterr().err == f"medal: error: simulation.split_file: {split}: not found\n"
