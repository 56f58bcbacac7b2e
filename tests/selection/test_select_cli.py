"""`medal select` on real hippocampus cases with synthetic score volumes (the ground truth's outline)."""

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from medal.data import load_dataset, load_volume, save_volume, sample_dataset
from medal.tasks import read_tasks
from medal.uncertainty.score import load_probs, save_probs


SHORT_ENCODER = 60  # encoder steps for the fg_typical tests: a real encoder, trained in seconds


@pytest.fixture
def scores_dir(tmp_path):
    ds = load_dataset(sample_dataset())
    out = tmp_path / "run" / "scores"
    for case in ds.cases[:4]:
        lab = load_volume(case.label)
        fg = lab.array > 0
        edge = fg ^ ndimage.binary_erosion(fg)  # uncertainty where the outline is: plausible scores
        entropy = ndimage.gaussian_filter(edge.astype(np.float32), 1.5)
        save_volume(lab.with_array(entropy.astype(np.float32)), out / case.case_id / "entropy.nii.gz")
        save_volume(lab.with_array(lab.array.astype(np.uint8)), out / case.case_id / "prediction.nii.gz")
        # mean class probabilities: the one-hot truth blurred, so they are soft at the outline
        onehot = np.stack([ndimage.gaussian_filter((lab.array == c).astype(np.float32), 1.0) for c in range(3)])
        save_probs(lab, onehot / onehot.sum(0), out / case.case_id / "probs.nii.gz")
    return out


@pytest.mark.parametrize("kind, strategy", [("slice", "knapsack"), ("slice", "fg_random"), ("slice", "fg_typical"),
                                            ("supervoxel", "knapsack+diversity")])
def test_select_on_real_cases_stays_within_budget(tmp_path, scores_dir, kind, strategy):
    rd = tmp_path / f"round_{kind}_{strategy}"
    cmd = [sys.executable, "-m", "medal.cli", "select", str(sample_dataset()), "--scores", str(scores_dir),
           "--out", str(rd), "--budget", "240", "--kind", kind, "--strategy", strategy]
    if strategy == "fg_typical":  # its encoder (the config's coldstart section), trained briefly for the test
        conf = tmp_path / "short_encoder.yaml"
        conf.write_text(f"coldstart: {{encoder_steps: {SHORT_ENCODER}}}\n")
        cmd += ["--config", str(conf)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "of a 240 s budget" in out.stdout
    tl = read_tasks(rd / "tasks.json")
    # the budget's own tasks never exceed it; the reserve queue (4 budgets by default) follows, within its seconds
    n_res = int(tl.meta["reserve_tasks"])
    main, reserve = tl.tasks[:len(tl.tasks) - n_res], tl.tasks[len(tl.tasks) - n_res:]
    assert main and sum(t.predicted_cost_s for t in main) <= 240
    assert sum(t.predicted_cost_s for t in reserve) <= 4 * 240 + 1e-6 and tl.meta["reserve_s"] <= 4 * 240 + 1e-6
    assert len({(t.case_id, t.axis, t.index, t.supervoxel) for t in tl.tasks}) == len(tl.tasks)  # no unit twice
    assert {t.case_id for t in tl.tasks} <= {c.case_id for c in load_dataset(sample_dataset()).cases[:4]}
    assert all(t.kind == kind and t.strategy == strategy and t.status == "todo" for t in tl.tasks)
    for t in tl.tasks:
        assert tl.image_path(t).is_file()
        if kind == "supervoxel":
            mask = load_volume(tl.mask_path(t))
            region = np.argwhere(mask.array == t.supervoxel)
            assert len(region) and (region.min(0) >= t.bbox[0]).all() and (region.max(0) < t.bbox[1]).all()
            np.testing.assert_array_equal(mask.affine, load_volume(tl.image_path(t)).affine)
    if strategy == "fg_typical":  # one slice per label-free cluster of the predicted-foreground slices, first
        ds = load_dataset(sample_dataset())
        fg = [np.take(load_volume(ds.case(t.case_id).label).array, t.index, axis=t.axis).any() for t in main]
        assert all(fg[:len(fg) // 2 + 1]), fg
    if strategy.startswith("knapsack"):
        meta = json.loads((rd / "tasks.json").read_text())
        assert meta["upper_bound"] >= meta["value"] and meta["gap"] >= 0
    # the file is never silently replaced
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 1 and "--overwrite" in again.stderr


def test_uncertain_slices_are_preferred(tmp_path, scores_dir):
    from medal.config import CostsConfig, RegionsConfig, SelectionConfig
    from medal.selection.api import select_round

    plain = SelectionConfig(budget_s=300.0, noise="none", foreground_share=0.0)
    res = select_round(load_dataset(sample_dataset()), scores_dir, tmp_path / "r", regions_cfg=RegionsConfig(),
                       costs_cfg=CostsConfig(), selection_cfg=plain)
    chosen = res.table["score"][res.selection.indices]
    assert chosen.mean() > res.table["score"].mean() * 1.5  # outline-heavy slices, not empty ones
    # the default (class quotas, power noise at round 0: close to sampling by value) still buys slices
    # that hold the structure, never confidently empty ones
    res = select_round(load_dataset(sample_dataset()), scores_dir, tmp_path / "r2", regions_cfg=RegionsConfig(),
                       costs_cfg=CostsConfig(), selection_cfg=SelectionConfig(budget_s=300.0))
    assert (res.table["fg_fraction"][res.selection.indices] > 0).mean() > 0.8


def test_a_round_priced_for_correction_charges_what_is_unsure_not_what_is_drawn(tmp_path, scores_dir):
    from medal.config import CostsConfig, RegionsConfig, SelectionConfig

    from medal.selection.api import select_round

    import shutil

    ds, sel = load_dataset(sample_dataset()), SelectionConfig(budget_s=300.0, reserve=0.0)
    # a model sure of most of its outline (the fixture's probabilities are soft all along it): soft only at
    # the upper third of each structure's rows, where correcting it means retracing that part
    sharp = tmp_path / "sharp"
    shutil.copytree(scores_dir, sharp)
    for case in ds.cases[:4]:
        lab = load_volume(case.label)
        soft = np.stack([ndimage.gaussian_filter((lab.array == c).astype(np.float32), 1.0) for c in range(3)])
        hard = np.stack([(lab.array == c).astype(np.float32) for c in range(3)]) * 0.96 + 0.01
        rows = np.arange(lab.shape[1])[None, None, :, None] < lab.shape[1] // 3
        probs = np.where(rows, soft / soft.sum(0), hard / hard.sum(0))
        save_probs(lab, probs, sharp / case.case_id / "probs.nii.gz")
    scores_dir = sharp
    tables = {}
    for name, costs in (("draw", CostsConfig()), ("correct", CostsConfig(annotation="correct")),
                        ("draw_argmax", CostsConfig(prediction="argmax")),
                        ("correct_argmax", CostsConfig(annotation="correct", prediction="argmax"))):
        res = select_round(ds, scores_dir, tmp_path / name, regions_cfg=RegionsConfig(), costs_cfg=costs,
                           selection_cfg=sel)
        tables[name] = res.table
        assert read_tasks(tmp_path / name / "tasks.json").meta["costs"]["annotation"] == costs.annotation
    draw, corr = tables["draw"]["model_cost"], tables["correct"]["model_cost"]
    fg = tables["draw"]["fg_fraction"] > 0
    # correcting never costs more than drawing (clearing and drawing is the ceiling), and where the model is sure
    # of a structure's outline it costs less: the check plus the unsure part
    assert (corr <= draw + 1e-9).all() and (corr[fg] < draw[fg]).mean() > 0.5
    assert np.median(draw[fg] - corr[fg]) > 5.0
    # without probabilities there is no estimate of what is wrong: priced as drawn, an upper bound
    np.testing.assert_allclose(tables["correct_argmax"]["model_cost"], tables["draw_argmax"]["model_cost"])


def test_probabilities_round_trip_through_nifti(tmp_path, scores_dir):
    import nibabel as nib

    case = sorted(p.name for p in scores_dir.iterdir())[0]
    probs = load_probs(scores_dir / case / "probs.nii.gz")
    lab = load_volume(scores_dir / case / "prediction.nii.gz")
    assert probs.shape == (3, *lab.shape) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=3 / 255)
    assert (probs.argmax(0) == lab.array).mean() > 0.99  # blurred one-hot: only thin parts change
    img = nib.load(str(scores_dir / case / "probs.nii.gz"))  # any NIfTI reader gets probabilities back
    assert img.get_data_dtype() == np.uint8 and img.shape == (*lab.shape, 3)
    np.testing.assert_allclose(np.asarray(img.dataobj)[..., 1], probs[1], atol=1e-6)


def test_a_round_writes_display_copies_of_large_images_only(tmp_path, scores_dir, monkeypatch):
    from medal.config import CostsConfig, RegionsConfig, SelectionConfig
    from medal.selection.api import select_round
    from medal.tasks.display import open_display_image

    kw = dict(regions_cfg=RegionsConfig(), costs_cfg=CostsConfig(), selection_cfg=SelectionConfig(budget_s=300.0))
    ds = load_dataset(sample_dataset())
    select_round(ds, scores_dir, tmp_path / "small", **kw)
    assert not (tmp_path / "small" / "display").exists()  # the sample's crops decompress in milliseconds
    monkeypatch.setattr("medal.tasks.display.MIN_VOXELS", 0)  # as if they were large CTs
    res = select_round(ds, scores_dir, tmp_path / "large", **kw)
    tl = read_tasks(res.tasks_path)
    cases = {t.case_id: tl.image_path(t) for t in tl.tasks}
    assert sorted(p.name for p in (tmp_path / "large" / "display").glob("*.nii")) == sorted(f"{c}.nii" for c in cases)
    for case, src in cases.items():
        vol, _ = open_display_image(tmp_path / "large", case, src)
        np.testing.assert_array_equal(vol.array, load_volume(src).array)


def test_a_time_boxed_round_queues_a_reserve_and_the_clocked_oracle_stops_at_the_budget(tmp_path, scores_dir):
    from medal.config import CostsConfig, RegionsConfig, SelectionConfig
    from medal.costs import CostModel, read_annotation_log
    from medal.selection.api import select_round
    from medal.simulation import oracle_annotate

    ds = load_dataset(sample_dataset())
    kw = dict(regions_cfg=RegionsConfig(), costs_cfg=CostsConfig(), data_cfg=None, display_cache=False)
    plain = select_round(ds, scores_dir, tmp_path / "plain", selection_cfg=SelectionConfig(budget_s=120.0, reserve=0.0),
                         **kw)
    res = select_round(ds, scores_dir, tmp_path / "r", selection_cfg=SelectionConfig(budget_s=120.0, reserve=2.0), **kw)
    assert "reserve:" in res.summary() and "reserve:" not in plain.summary()
    tl = read_tasks(tmp_path / "r" / "tasks.json")
    n_main, n_res = len(res.selection.indices), int(tl.meta["reserve_tasks"])
    assert n_res == len(res.reserve.indices) > 0 and len(tl.tasks) == n_main + n_res
    # the budget's tasks are what a plain round chooses; the reserve is other units, within its seconds
    key = [(t.case_id, t.index) for t in tl.tasks]
    assert key[:n_main] == [(t.case_id, t.index) for t in read_tasks(tmp_path / "plain" / "tasks.json").tasks]
    assert len(set(key)) == len(key)
    assert tl.meta["predicted_s"] <= 120.0 and 0 < tl.meta["reserve_s"] <= 240.0 + 1e-9
    # the oracle with a clock: tasks in order until the true seconds reach the budget, the rest left todo
    budget = 60.0
    charge = oracle_annotate(tl, ds, tmp_path / "r" / "annotations", cost_model=CostModel.default(3),
                             log=tmp_path / "r" / "log.jsonl", budget_s=budget)
    done = [t.task_id for t in tl.tasks if t.status == "done"]
    assert done == [t.task_id for t in tl.tasks[:len(done)]] and 0 < len(done) < len(tl.tasks)
    last = charge["per_task"][done[-1]]
    assert charge["seconds"] >= budget and charge["seconds"] - last < budget  # the task in hand is finished
    assert [r["task_id"] for r in read_annotation_log(tmp_path / "r" / "log.jsonl")] and \
        sorted(r["task_id"] for r in read_annotation_log(tmp_path / "r" / "log.jsonl")) == sorted(done)
    painted = 0
    for cid in {t.case_id for t in tl.tasks[:len(done)]}:
        ann = load_volume(tmp_path / "r" / "annotations" / f"{cid}.nii.gz").array
        painted += int((ann != 255).sum())
    shapes = {t.case_id: load_volume(tl.image_path(t)).shape for t in tl.tasks[:len(done)]}
    assert painted == sum(int(np.prod(shapes[t.case_id]) // shapes[t.case_id][t.axis]) for t in tl.tasks[:len(done)])
    assert read_tasks(tmp_path / "r" / "tasks.json").tasks[len(done)].status == "todo"


@pytest.mark.parametrize("tasks_saved", [True, False])
def test_a_clocked_oracle_resumed_after_an_interruption_charges_paints_and_logs_what_an_uninterrupted_one_does(
        tmp_path, scores_dir, tasks_saved):
    import shutil

    from medal.config import CostsConfig, RegionsConfig, SelectionConfig
    from medal.costs import CostModel, read_annotation_log
    from medal.selection.api import select_round
    from medal.simulation import oracle_annotate
    from medal.tasks import write_tasks

    ds = load_dataset(sample_dataset())
    select_round(ds, scores_dir, tmp_path / "r", selection_cfg=SelectionConfig(budget_s=120.0, reserve=2.0),
                 regions_cfg=RegionsConfig(), costs_cfg=CostsConfig(), data_cfg=None, display_cache=False)
    for name in ("ref", "cut"):
        shutil.copytree(tmp_path / "r", tmp_path / name)
    cm, budget = CostModel.default(3), 60.0

    def paint(name, budget_s):
        return oracle_annotate(read_tasks(tmp_path / name / "tasks.json"), ds, tmp_path / name / "annotations",
                               cost_model=cm, log=tmp_path / name / "log.jsonl", budget_s=budget_s)

    ref = paint("ref", budget)
    first = paint("cut", 15.0)  # the interruption: a few tasks painted and logged, the rest not yet
    assert 0 < len(first["per_task"]) < len(ref["per_task"])
    if not tasks_saved:  # killed before the task file was rewritten: every task still says todo
        tl = read_tasks(tmp_path / "cut" / "tasks.json")
        assert sum(t.status == "done" for t in tl.tasks) == len(first["per_task"])
        for t in tl.tasks:
            t.status = "todo"
        write_tasks(tl.path, tl)
    resumed = paint("cut", budget)
    assert resumed["per_task"] == ref["per_task"] and resumed["foreground"] == ref["foreground"]
    assert resumed["seconds"] == pytest.approx(ref["seconds"]) and ref["seconds"] >= budget
    assert [t.status for t in read_tasks(tmp_path / "cut" / "tasks.json").tasks] == \
        [t.status for t in read_tasks(tmp_path / "ref" / "tasks.json").tasks]
    logs = {n: read_annotation_log(tmp_path / n / "log.jsonl") for n in ("ref", "cut")}
    assert len({r["task_id"] for r in logs["cut"]}) == len(logs["cut"])  # nothing logged twice
    assert sorted(logs["cut"], key=lambda r: r["task_id"]) == sorted(logs["ref"], key=lambda r: r["task_id"])
    files = sorted(x.name for x in (tmp_path / "ref" / "annotations").iterdir())
    assert files and files == sorted(x.name for x in (tmp_path / "cut" / "annotations").iterdir())
    for f in files:
        assert np.array_equal(load_volume(tmp_path / "ref" / "annotations" / f).array,
                              load_volume(tmp_path / "cut" / "annotations" / f).array)


def test_select_cli_reserve_option(tmp_path, scores_dir):
    base = [sys.executable, "-m", "medal.cli", "select", str(sample_dataset()), "--scores", str(scores_dir),
            "--budget", "120", "--strategy", "fg_random"]
    out = subprocess.run(base + ["--out", str(tmp_path / "r"), "--reserve", "1.5"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "reserve:" in out.stdout and "stop at 120 s logged" in out.stdout
    meta = json.loads((tmp_path / "r" / "tasks.json").read_text())
    assert meta["reserve_tasks"] > 0 and meta["reserve_s"] <= 180.0 and meta["predicted_s"] <= 120.0
    bad = subprocess.run(base + ["--out", str(tmp_path / "b"), "--reserve", "-1"], capture_output=True, text=True)
    assert bad.returncode != 0 and "selection.reserve" in bad.stderr and "Traceback" not in bad.stderr


def test_select_takes_the_folder_medal_score_was_given_as_well_as_its_scores_subfolder(tmp_path, scores_dir):
    """`medal score --out run` writes run/scores/<case>/; `--scores run` (the natural slip) chooses the same
    tasks as `--scores run/scores` instead of failing with 'no case has score volumes'."""
    from medal.cli import main

    tasks = {}
    for name, given in (("inner", scores_dir), ("outer", scores_dir.parent)):
        assert main(["select", str(sample_dataset()), "--scores", str(given), "--budget", "120", "--strategy",
                     "fg_random", "--out", str(tmp_path / name)]) == 0
        tasks[name] = [(t["case_id"], t["axis"], t["index"])
                       for t in json.loads((tmp_path / name / "tasks.json").read_text())["tasks"]]
    assert tasks["inner"] and tasks["outer"] == tasks["inner"]


def test_typical_rounds_use_fg_typical_first_then_the_strategy(tmp_path, scores_dir):
    from medal.config import ColdstartConfig, ConfigError, CostsConfig, RegionsConfig, SelectionConfig
    from medal.selection.api import select_round

    ds = load_dataset(sample_dataset())
    sel_cfg = SelectionConfig(strategy="knapsack", budget_s=200.0, typical_rounds=1)
    kw = dict(regions_cfg=RegionsConfig(), costs_cfg=CostsConfig(prediction="argmax", calibration="none"),
              selection_cfg=sel_cfg, display_cache=False, coldstart_cfg=ColdstartConfig(encoder_steps=SHORT_ENCODER))
    first = select_round(ds, scores_dir, tmp_path / "r0", round_index=0, **kw)
    later = select_round(ds, scores_dir, tmp_path / "r1", round_index=1, **kw)
    assert {t.strategy for t in read_tasks(tmp_path / "r0" / "tasks.json").tasks} == {"fg_typical"}
    assert {t.strategy for t in read_tasks(tmp_path / "r1" / "tasks.json").tasks} == {"knapsack"}
    assert "cluster" in first.table and "cluster" not in later.table
    assert first.selection.spent_s <= 200.0 and later.selection.spent_s <= 200.0
    # `medal select --strategy X` gives X, whatever typical_rounds says
    conf = tmp_path / "tcm.yaml"
    conf.write_text("selection: {typical_rounds: 1}\n")
    cmd = [sys.executable, "-m", "medal.cli", "select", str(sample_dataset()), "--scores", str(scores_dir),
           "--budget", "120", "--config", str(conf), "--strategy", "fg_random", "--out", str(tmp_path / "cli")]
    out = subprocess.run(cmd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert {t.strategy for t in read_tasks(tmp_path / "cli" / "tasks.json").tasks} == {"fg_random"}
    with pytest.raises(ConfigError, match="typical_rounds"):
        SelectionConfig(typical_rounds=-1)


def test_novelty_column_from_the_encoder_is_zero_until_slices_are_annotated(tmp_path, scores_dir):
    from medal.config import ColdstartConfig, CostsConfig, RegionsConfig, SelectionConfig
    from medal.regions import RegionTable
    from medal.selection.api import select_round
    from medal.selection.strategies import add_novelty

    ds = load_dataset(sample_dataset())
    cs = ColdstartConfig(encoder_steps=SHORT_ENCODER)
    kw = dict(regions_cfg=RegionsConfig(), costs_cfg=CostsConfig(prediction="argmax", calibration="none"),
              display_cache=False, coldstart_cfg=cs)
    res = select_round(ds, scores_dir, tmp_path / "r0", round_index=1,
                       selection_cfg=SelectionConfig(strategy="knapsack", budget_s=200.0, novelty_share=0.25), **kw)
    assert "novelty" in res.table and not res.table["novelty"].any()  # nothing annotated: no novelty part
    assert res.selection.spent_s <= 200.0
    t = res.table
    first = t["case_id"][0]
    done = (t["case_id"] == first) & (t["kind"] == "slice")
    marked = RegionTable({**t.columns, "annotated_fraction": np.where(done, 1.0, 0.0)})
    nov = add_novelty(marked, ds, coldstart_cfg=cs)["novelty"]
    open_ = (t["kind"] == "slice") & ~done
    assert (nov[done] == 0).all() and (nov >= 0).all() and (nov[open_] > 0).any()
    assert (nov[open_] > 0).sum() <= open_.sum() / 2 + 1  # the excess over the open slices' median distance
    # no novelty within the cold start's edge margin (0.2 of the extent) of a volume's ends: they hold no anatomy
    slices = t["kind"] == "slice"
    extent = {(c, a): t["index"][slices & (t["case_id"] == c) & (t["axis"] == a)].max() + 1
              for c, a in zip(t["case_id"][slices], t["axis"][slices])}
    pos = np.array([(i + 0.5) / extent[(c, a)] if k == "slice" else 0.5
                    for c, a, i, k in zip(t["case_id"], t["axis"], t["index"], t["kind"])])
    ends = open_ & ((pos < 0.2) | (pos > 0.8))
    assert ends.any() and (nov[ends] == 0).all()
    assert (add_novelty(marked, ds, coldstart_cfg=ColdstartConfig(encoder_steps=SHORT_ENCODER, edge_margin=0.0))
            ["novelty"][ends] > 0).any()  # without the margin the ends are as novel as any slice


def test_auto_novelty_fires_on_real_cases_of_a_new_contrast_and_says_so(tmp_path, scores_dir):
    """novelty_share: auto on real images: 4 of the sample's 20 cases get the other weighting (intensities inverted,
    as derive_sites.py's site C) and none of them is annotated; the trigger names them and fills the column. With
    the original images it stays off and the column is zero. Through select_round the outcome reaches tasks.json,
    the summary and the report's source (here: nothing annotated yet, so off)."""
    import shutil

    import nibabel as nib

    from medal.config import ColdstartConfig, CostsConfig, RegionsConfig, SelectionConfig
    from medal.regions import RegionTable
    from medal.selection.api import select_round
    from medal.selection.strategies import add_novelty_auto

    src = load_dataset(sample_dataset())
    root = tmp_path / "twosite"
    shutil.copytree(src.root, root)
    ds = load_dataset(root)
    new_site = [c.case_id for c in ds.cases[:4]]
    for case in ds.cases[:4]:
        img = nib.load(str(case.image))
        a = np.asarray(img.dataobj, dtype=np.float32)
        lo, hi = np.percentile(a, [0.5, 99.5])
        nib.save(nib.Nifti1Image(lo + hi - np.clip(a, lo, hi), img.affine, img.header), str(case.image))
    rows = {"case_id": [], "kind": [], "axis": [], "index": [], "annotated_fraction": []}
    for n, case in enumerate(ds.cases):
        depth = nib.load(str(case.image)).shape[2]
        for i in range(depth):
            rows["case_id"].append(case.case_id)
            rows["kind"].append("slice")
            rows["axis"].append(2)
            rows["index"].append(i)
            # the 16 other cases are labelled, one middle slice each
            rows["annotated_fraction"].append(1.0 if n >= 4 and i == depth // 2 else 0.0)
    table = RegionTable({k: np.asarray(v, dtype=object if k in ("case_id", "kind") else None)
                         for k, v in rows.items()})
    cs = ColdstartConfig(encoder_steps=SHORT_ENCODER)
    out, trigger = add_novelty_auto(table, ds, coldstart_cfg=cs)
    assert trigger.fired and set(new_site) <= set(trigger.far_cases), trigger.message()
    assert trigger.annotated_cases == 16 and trigger.open_cases == 4 and trigger.p < 0.05
    assert (out["novelty"][np.isin(out["case_id"], new_site)] > 0).any()
    plain, off = add_novelty_auto(table, src, coldstart_cfg=cs)
    assert not off.fired and not plain["novelty"].any() and "novelty part off" in off.message()
    # 6 cases (2 inverted, open; 4 labelled): at the default level, 0.05 (selection.novelty_alpha), even both far
    # gives p = 1/15, so no encoder is trained
    few = np.isin(table["case_id"], [c.case_id for c in ds.cases[2:8]])
    small = RegionTable({k: v[few] for k, v in table.columns.items()})
    fresh = tmp_path / "fresh-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MEDAL_CACHE_DIR", str(fresh))
        col, too_few = add_novelty_auto(small, ds, coldstart_cfg=cs)
    assert not too_few.fired and too_few.annotated_cases == 4 and too_few.open_cases == 2 and too_few.alpha == 0.05
    assert "too few for the test" in too_few.message() and "p = 0.067" in too_few.message()
    assert not col["novelty"].any() and not list(fresh.rglob("*.pt"))
    # at a level of 0.1 the same 6 cases can be tested: the 2 inverted ones are far
    col10, at10 = add_novelty_auto(small, ds, coldstart_cfg=cs, alpha=0.1)
    assert "too few" not in at10.message() and at10.alpha == 0.1 and at10.annotated_cases == 4
    assert at10.fired and at10.p == pytest.approx(1 / 15) and set(at10.far_cases) == set(new_site[2:4])
    assert (col10["novelty"][np.isin(col10["case_id"], new_site[2:4])] > 0).any()
    # the default level with a weaker second one (selection.novelty_weak_alpha 0.1): the same fire, half the share
    colw, weak = add_novelty_auto(small, ds, coldstart_cfg=cs, weak_alpha=0.1)
    assert weak.fired and weak.alpha == 0.05 and weak.share == at10.share / 2 and weak.far_cases == at10.far_cases
    assert np.array_equal(colw["novelty"], col10["novelty"]) and "weak evidence" in weak.message()

    kw = dict(regions_cfg=RegionsConfig(), costs_cfg=CostsConfig(prediction="argmax", calibration="none"),
              display_cache=False, coldstart_cfg=cs)
    res = select_round(src, scores_dir, tmp_path / "r0", round_index=1,
                       selection_cfg=SelectionConfig(strategy="knapsack", budget_s=200.0, novelty_share="auto"), **kw)
    meta = json.loads(res.tasks_path.read_text())
    assert meta["novelty"]["fired"] is False and "no slice is annotated yet" in meta["novelty"]["message"]
    assert "novelty part off: no slice is annotated yet" in res.summary()
