"""Benchmark helpers: the merged re-report keeps the rows and seeds the command names; a recorded random
start is reused only for the same protocol; the head/body/tail layout derived from the real cases; the stopping
benchmark's summary."""

import csv
import json
import importlib.util
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench(name):
    """A benchmark script as a module (benchmarks/ is not a package)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(f"{name}_bench", ROOT / "benchmarks" / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.pop(0)


def test_merged_csv_keeps_the_asked_rows_and_seeds(tmp_path):
    path = tmp_path / "results.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["strategy", "seed", "round", "dice_mean"])
        w.writeheader()
        for s in ("default", "fg_random", "default_pseudo"):
            for seed in range(4):
                w.writerow({"strategy": s, "seed": seed, "round": 0, "dice_mean": 0.5})
    mod = _bench("label_efficiency")
    mod._keep_asked(path, {"default", "fg_random"}, {0, 2})
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["strategy"], int(r["seed"])) for r in rows) == [
        ("default", 0), ("default", 2), ("fg_random", 0), ("fg_random", 2)]
    mod._keep_asked(path, None, None)  # nothing asked: nothing dropped
    with open(path, newline="") as f:
        assert len(list(csv.DictReader(f))) == 4
    with pytest.raises(SystemExit, match="no row random"):
        mod._keep_asked(path, {"default", "random"}, None)


def test_random_start_taken_from_a_finished_run_only_if_it_ran_the_same_protocol(tmp_path):
    import dataclasses
    import json

    from medal.config import config_from_dict
    from medal.data import load_dataset, sample_dataset
    from medal.simulation.simulate import split_cases

    ds = load_dataset(sample_dataset())
    # a label_efficiency-style run: rows `default` and a variant with another selection setting
    theirs = config_from_dict({"simulation": {"strategies": ["default", "beta5", "fg_random"], "seeds": [0, 1], "rounds": 1,
                                              "max_pool": 4, "test_fraction": 0.2,
                                              "variants": {"beta5": {"selection": {"beta_end": 5.0}}}}})
    pool, test = split_cases(ds, theirs.simulation)
    meta = {"pool": pool, "test": test, "full_annotation_cost_s": 1000.0,
            "config": json.loads(json.dumps(dataclasses.asdict(theirs)))}
    (tmp_path / "simulation.json").write_text(json.dumps(meta))
    with open(tmp_path / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["strategy", "seed", "round", "seconds", "dice_mean"])
        w.writeheader()
        for s in ("default", "beta5", "fg_random"):
            for seed in (0, 1):
                for r in (0, 1):
                    w.writerow({"strategy": s, "seed": seed, "round": r, "seconds": 300 + 600 * r,
                                "dice_mean": 0.5 + 0.1 * r + (s == "beta5") * 0.01 + (s == "fg_random") * 0.02})
    mod = _bench("coldstart")
    # what coldstart.py would run: one seed list, its own strategies, the random start on the row's plane
    # named explicitly (the same as naming none), and other cold-start settings (unused by a random start)
    mine = dataclasses.replace(theirs, simulation=dataclasses.replace(
        theirs.simulation, strategies=("default",), variants={}, seeds=(0,), initial_axis="axial"),
        coldstart=dataclasses.replace(theirs.coldstart, edge_margin=0.3))
    rows = mod._random_from(tmp_path, "default", mine, [0, 1], ds)
    assert {r["strategy"] for r in rows} == {"random"} and len(rows) == 4
    assert all(r["dice_mean"] in (0.5, 0.6) for r in rows)  # the `default` row's, not the variant's
    with pytest.raises(SystemExit, match="beta_end"):
        mod._random_from(tmp_path, "beta5", mine, [0, 1], ds)
    with pytest.raises(SystemExit, match="initial_axis"):
        other = dataclasses.replace(mine, simulation=dataclasses.replace(mine.simulation, initial_axis="coronal"))
        mod._random_from(tmp_path, "default", other, [0, 1], ds)
    with pytest.raises(SystemExit, match=r"no seed \[2\]"):
        mod._random_from(tmp_path, "default", mine, [0, 1, 2], ds)
    with pytest.raises(SystemExit, match="no_such_folder"):
        mod._random_from(tmp_path / "no_such_folder", "default", mine, [0], ds)
    # a baseline's own rounds (the workflow comparison): its strategy may differ from the cold rows', nothing else
    rows = mod._random_from(tmp_path, "fg_random", mine, [0, 1], ds)
    assert {r["strategy"] for r in rows} == {"random"} and len(rows) == 4
    assert sorted({round(r["dice_mean"], 6) for r in rows}) == [0.52, 0.62]
    # ... and the keys it never reads (power noise, quotas), which the default's rows must share
    other = dataclasses.replace(mine, selection=dataclasses.replace(mine.selection, beta_end=100.0))
    assert len(mod._random_from(tmp_path, "fg_random", other, [0, 1], ds)) == 4
    with pytest.raises(SystemExit, match="beta_end"):
        mod._random_from(tmp_path, "default", other, [0, 1], ds)
    with pytest.raises(SystemExit, match="budget_s"):
        other = dataclasses.replace(mine, selection=dataclasses.replace(mine.selection, budget_s=900.0))
        mod._random_from(tmp_path, "fg_random", other, [0, 1], ds)


def test_derived_tail_is_the_far_quarter_of_each_posterior_label(shared_hippocampus, tmp_path):
    """benchmarks/derive_tail.py on the real cases: head and images untouched, the posterior label split into
    body and a tail of about a quarter of its voxels at the end away from the head; the result loads as a
    four-class medal dataset and keeps the data's licence."""
    from medal.data import load_dataset

    out = tmp_path / "tail"
    assert _bench("derive_tail").main([str(out), "--data", str(shared_hippocampus), "--tail", "0.25"]) == 0
    ds = load_dataset(out)
    assert ds.n_classes == 4 and len(ds.cases) == 220
    assert (out / "LICENSE").read_bytes() == (shared_hippocampus / "LICENSE").read_bytes()
    assert "derive_tail.py" in (out / "README.md").read_text()
    for name in ("hippocampus_004.nii.gz", "hippocampus_195.nii.gz", "hippocampus_355.nii.gz"):
        src = np.asarray(nib.load(shared_hippocampus / "labelsTr" / name).dataobj)
        new = np.asarray(nib.load(out / "labelsTr" / name).dataobj)
        assert (out / "imagesTr" / name).read_bytes() == (shared_hippocampus / "imagesTr" / name).read_bytes()
        assert np.array_equal(new == 1, src == 1) and np.array_equal(new == 0, src == 0)
        assert np.array_equal((new == 2) | (new == 3), src == 2)
        share = (new == 3).sum() / (src == 2).sum()
        assert 0.2 < share < 0.3, (name, share)
        head, body, tail = (np.argwhere(new == c).mean(0) for c in (1, 2, 3))
        assert np.linalg.norm(tail - head) > np.linalg.norm(body - head), name


def test_binary_layout_merges_head_and_body(shared_hippocampus, tmp_path):
    """derive_tail.py --binary: one foreground class, exactly the union of the real head and body labels."""
    from medal.data import load_dataset

    out = tmp_path / "binary"
    assert _bench("derive_tail").main([str(out), "--data", str(shared_hippocampus), "--binary"]) == 0
    assert load_dataset(out).n_classes == 2
    for name in ("hippocampus_004.nii.gz", "hippocampus_355.nii.gz"):
        src = np.asarray(nib.load(shared_hippocampus / "labelsTr" / name).dataobj)
        new = np.asarray(nib.load(out / "labelsTr" / name).dataobj)
        assert new.dtype == np.uint8 and set(np.unique(new)) == {0, 1}
        assert np.array_equal(new == 1, src > 0)


def test_derived_sites_alter_only_the_minority_images(shared_hippocampus, tmp_path):
    """benchmarks/derive_sites.py on the real cases: sites in the asked shares (the same on every run), site A's
    images and every label byte-identical, sites B and C's images changed but the same shape and header; B adds
    noise (rougher than its original), C blurs along the axial axis (smoother); licence and sites.json written."""
    from medal.data import load_dataset

    mod = _bench("derive_sites")
    out = tmp_path / "sites"
    assert mod.main([str(out), "--data", str(shared_hippocampus)]) == 0
    assert load_dataset(out).n_classes == 3
    sites = json.loads((out / "sites.json").read_text())
    assert len(sites) == 220 and [sum(v == s for v in sites.values()) for s in "ABC"] == [132, 55, 33]
    assert mod.assign_sites(list(sites), [0.6, 0.25, 0.15]) == sites
    assert (out / "LICENSE").read_bytes() == (shared_hippocampus / "LICENSE").read_bytes()
    assert "derive_sites.py" in (out / "README.md").read_text()

    def roughness(a, axis):
        return float(np.abs(np.diff(a, axis=axis)).mean() / (np.percentile(a, 99.5) - np.percentile(a, 0.5)))

    for site in "ABC":
        for cid in sorted(c for c, s in sites.items() if s == site)[:2]:
            name = f"{cid}.nii.gz"
            assert (out / "labelsTr" / name).read_bytes() == (shared_hippocampus / "labelsTr" / name).read_bytes()
            a, b = nib.load(shared_hippocampus / "imagesTr" / name), nib.load(out / "imagesTr" / name)
            x, y = np.asarray(a.dataobj, np.float32), np.asarray(b.dataobj)
            assert y.shape == x.shape and np.allclose(b.affine, a.affine)
            if site == "A":
                assert np.array_equal(x, y)
                continue
            assert np.abs(y - x).mean() > 0.02 * (np.percentile(x, 99.5) - np.percentile(x, 0.5)), cid
            if site == "B":
                assert roughness(y, 0) > 1.2 * roughness(x, 0), cid
            else:
                assert roughness(y, 2) < 0.8 * roughness(x, 2), cid
    assert mod.main([str(tmp_path / "bad"), "--data", str(shared_hippocampus), "--shares", "0.5", "0.5", "0.5"]) == 2


def test_derived_inverted_site_reverses_contrast_without_blur(shared_hippocampus, tmp_path):
    """derive_sites.py --site-c inverted: the same sites; C's images anti-correlated with the originals (the
    weighting inverted) and as rough along the axial axis (no blur); A and B as without the option."""
    mod = _bench("derive_sites")
    out = tmp_path / "inv"
    assert mod.main([str(out), "--data", str(shared_hippocampus), "--site-c", "inverted"]) == 0
    assert "inverted" in json.loads((out / "dataset.json").read_text())["description"]
    sites = json.loads((out / "sites.json").read_text())
    assert sites == mod.assign_sites(list(sites), [0.6, 0.25, 0.15])
    for site in "ABC":
        cid = sorted(c for c, s in sites.items() if s == site)[0]
        x = np.asarray(nib.load(shared_hippocampus / "imagesTr" / f"{cid}.nii.gz").dataobj, np.float32)
        y = np.asarray(nib.load(out / "imagesTr" / f"{cid}.nii.gz").dataobj)
        expected = mod.alter(x, site, mod.zlib.crc32(cid.encode()))  # the default layout's image
        r = np.corrcoef(x.ravel(), y.ravel())[0, 1]
        if site == "C":
            assert r < -0.8, (cid, r)
            rough = [float(np.abs(np.diff(a, axis=2)).mean() / np.subtract(*np.percentile(a, [99.5, 0.5])))
                     for a in (x, y)]
            assert rough[1] > 0.8 * rough[0], (cid, rough)  # not blurred (the thick site: < 0.8)
            assert not np.allclose(y, expected)
        else:
            assert np.array_equal(y, expected), cid


def test_stopping_benchmark_summary_on_a_constructed_run():
    """benchmarks/stopping.py's summary by hand: first verdicts, Dice forgone and held-out tracking."""
    summarise = _bench("stopping").summarise

    def r(k, s, h, t, v, a=None):
        return {"round": k, "seconds": s, "holdout_dice": h, "true_dice": t, "verdict": v, "agreement": a}

    per_seed = {0: [r(0, 300, None, 0.50, "continue"), r(1, 900, 0.70, 0.78, "continue", 0.6),
                    r(2, 1500, 0.80, 0.82, "consider stopping", 0.91), r(3, 2100, 0.79, 0.83, "stop", 0.95)],
                1: [r(0, 300, 0.55, 0.52, "continue"), r(1, 900, 0.75, 0.80, "continue", 0.7),
                    r(2, 1500, 0.76, 0.79, "continue", 0.93)]}
    out = summarise(per_seed, {0: (2700.0, 0.84), 1: (2100.0, 0.83)}, thresholds=(0.90, 0.92), plateau_rounds=2)
    c, s = out["first"]["consider stopping"], out["first"]["stop"]
    assert [x["round"] for x in c["per_seed"]] == [2, None] and c["seeds_fired"] == 1 and c["seeds"] == 2
    assert c["mean_dice_forgone"] == pytest.approx(0.84 - 0.82) and c["mean_seconds_saved"] == pytest.approx(1200)
    assert [x["round"] for x in s["per_seed"]] == [3, None] and s["mean_dice_forgone"] == pytest.approx(0.01)
    t = out["tracking"]
    assert t["rounds_with_holdout"] == 6
    assert t["mean_abs_difference"] == pytest.approx(np.mean([0.08, 0.02, 0.04, 0.03, 0.05, 0.03]))
    # gains where both rounds have held-out Dice: seed 0 rounds 1->2, 2->3; seed 1 rounds 0->1, 1->2
    hold, true = np.array([0.10, -0.01, 0.20, 0.01]), np.array([0.04, 0.01, 0.28, -0.01])
    assert t["gains"] == 4 and t["gain_sign_agreement"] == pytest.approx(0.5)
    assert t["gain_correlation"] == pytest.approx(np.corrcoef(hold, true)[0, 1])
    # the pool predictions' agreement against each round's true gain, and min_agreement over 2 rounds
    from scipy.stats import spearmanr

    assert t["agreement_rounds"] == 5
    assert t["agreement_gain_spearman"] == pytest.approx(
        spearmanr([0.6, 0.91, 0.95, 0.7, 0.93], [0.28, 0.04, 0.01, 0.28, -0.01])[0])
    a90, a92 = out["min_agreement"]["0.9"], out["min_agreement"]["0.92"]
    assert [x["round"] for x in a90["per_seed"]] == [3, None]  # 0.91 and 0.95: both >= 0.90 only after round 3
    assert a90["mean_dice_forgone"] == pytest.approx(0.01) and a90["mean_seconds_saved"] == pytest.approx(600)
    assert a92["seeds_fired"] == 0 and a92["mean_dice_forgone"] is None


def test_pooled_runs_add_seeds_only_within_one_protocol():
    """seeds_needed.py --pool: disjoint seeds of one protocol join one paired test; anything else is refused."""
    mod = _bench("seeds_needed")
    base = {"split": "tuning", "split_file": "s.json", "kind": "slice", "config": "c.yaml", "data": "/d", "rounds": 2,
            "budget_s": 600.0, "timed": True, "reserve": 8.0, "annotation": "draw", "initial_budget_s": 300.0,
            "default_strategy": "default"}
    a = {**base, "strategies": {"default": {"aubc_per_seed": {"0": 0.70, "1": 0.62}},
                                "random": {"aubc_per_seed": {"0": 0.66, "1": 0.61}},
                                "only_here": {"aubc_per_seed": {"0": 0.5, "1": 0.5}}}}
    b = {**base, "strategies": {"default": {"aubc_per_seed": {"2": 0.68, "3": 0.64}},
                                "random": {"aubc_per_seed": {"2": 0.69, "3": 0.60}}}}
    pooled = mod.pool({"a": a, "b": b})
    assert sorted(pooled["strategies"]) == ["default", "random"] and pooled["seeds"] == [0, 1, 2, 3]
    (comp,) = mod.analyse(pooled)
    d = np.array([0.04, 0.01, -0.01, 0.04])
    from scipy.stats import ttest_1samp

    assert (comp["a"], comp["b"], comp["seeds"], comp["a_wins"]) == ("default", "random", 4, 3)
    assert comp["mean_diff"] == pytest.approx(d.mean()) and comp["p_paired_t"] == pytest.approx(ttest_1samp(d, 0).pvalue)
    with pytest.raises(ValueError, match=r"b\.json: initial_groups is \['A', 'B'\]"):
        mod.pool({"a": a, "b": {**b, "initial_groups": ["A", "B"]}})
    with pytest.raises(ValueError, match=r"b\.json: seed 1 is also in a\.json"):
        mod.pool({"a": a, "b": {**b, "strategies": {"default": {"aubc_per_seed": {"1": 0.6}}}}})
    with pytest.raises(ValueError, match="at least two"):
        mod.pool({"a": a})


def test_novelty_trigger_fires_when_a_shifted_site_is_left_out_of_the_start_and_rarely_otherwise():
    """benchmarks/novelty_trigger.py's fire rate: random starts that leave out a block of cases sitting apart in
    the embedding fire the trigger most of the time; starts over every case rarely (its level is 10%)."""
    fire_rate = _bench("novelty_trigger").fire_rate
    rng = np.random.default_rng(0)
    owner = np.repeat([f"c{i:02d}" for i in range(40)], 10)  # 40 cases of 10 slices
    centre = rng.normal(size=(40, 8)) * 0.3
    centre[:, 0] += 3.0
    z = centre[np.repeat(np.arange(40), 10)] + 0.05 * rng.normal(size=(400, 8))
    site = np.isin(owner, [f"c{i:02d}" for i in range(8)])
    z[site, 1] += 2.0  # 8 cases of another site
    inner = np.ones(len(z), bool)
    new = fire_rate(z, owner, inner, ~site, draws=40, slices=24)
    every = fire_rate(z, owner, inner, np.ones(len(z), bool), draws=40, slices=24)
    assert new["fired"] >= 0.9 and new["far_cases_median"] >= 8
    assert every["fired"] <= 0.2 and every["draws"] == 40
    lo, hi = every["fired_ci95"]
    assert 0.0 <= lo <= every["fired"] <= hi <= 1.0
    # --levels: the same draws read at other levels; a start fires where its p is strictly below the level
    from medal.selection.strategies import NOVELTY_ALPHA

    assert NOVELTY_ALPHA == 0.05  # fire_rate's "fired" is at the shipped level
    at = _bench("novelty_trigger").at_levels(every, [0.01, 0.05, 0.1, 0.5, 1.0])
    p = np.asarray(every["p"])
    assert len(p) == 40 and at["0.05"]["fired"] == pytest.approx(every["fired"])
    assert [v["fired"] for v in at.values()] == [np.mean(p < a) for a in (0.01, 0.05, 0.1, 0.5, 1.0)]
    assert at["0.01"]["fired"] <= at["0.05"]["fired"] <= at["0.5"]["fired"] <= at["1"]["fired"] < 1.0  # p = 1 never


def test_novelty_trigger_medal_starts_are_the_simulations_first_labels(tmp_path):
    """--medal-starts: the labelled cases of each seed are those simulate._prepare_initial chooses (real sample
    cases, real labels for the true costs), and on embeddings with no structure the trigger rarely fires."""
    import json

    from medal.costs import CostModel
    from medal.data import load_dataset, sample_dataset
    from medal.simulation.simulate import _prepare_initial

    mod = _bench("novelty_trigger")
    ds = load_dataset(sample_dataset())
    pool = [c.case_id for c in ds.cases]
    depth = {c.case_id: int(load_volume_shape(c.image)[2]) for c in ds.cases}
    owner = np.concatenate([[c] * depth[c] for c in pool])
    rng = np.random.default_rng(0)
    z = rng.normal(size=(len(owner), 8)) + 3.0 * np.eye(8)[0]
    cfg = mod.protocol_config(mod.HERE.parent / "configs" / "label_efficiency_cpu.yaml", initial_budget=200.0)
    assert cfg.simulation.timed and cfg.selection.reserve == 8.0 and cfg.simulation.initial_budget_s == 200.0
    row = mod.medal_start_rate(z, owner, np.ones(len(owner), bool), ds, pool, cfg, [3, 4, 5])
    assert row["draws"] == 3 and row["seeds"] == [3, 4, 5] and row["fired"] <= 1 / 3
    lo, hi = row["fired_ci95"]
    assert lo <= row["fired"] <= hi
    _prepare_initial(ds, pool, cfg, 4, CostModel.default(ds.n_classes), tmp_path / "s4")
    tasks = json.loads((tmp_path / "s4" / "tasks.json").read_text())["tasks"]
    assert len({t["case_id"] for t in tasks}) == row["labelled_cases"][1] >= 2  # seed 4: the same first labels
    assert sum(t["predicted_cost_s"] for t in tasks) <= 200.0 + 1e-6


def load_volume_shape(path):
    import nibabel as nib

    return nib.load(str(path)).shape


def test_novelty_trigger_fire_rate_interval_covers_the_rate_and_narrows_with_draws():
    """The Wilson interval printed beside a fire rate: 21/300 (7%) cannot be told from 5%, 210/3000 can."""
    wilson = _bench("novelty_trigger").wilson
    lo, hi = wilson(21, 300)
    assert lo < 0.05 < 0.07 < hi
    lo2, hi2 = wilson(210, 3000)
    assert 0.05 < lo2 < 0.07 < hi2 and hi2 - lo2 < (hi - lo) / 2
    assert wilson(0, 300)[0] == pytest.approx(0.0) and wilson(300, 300)[1] == pytest.approx(1.0)
    assert wilson(0, 0) == (0.0, 1.0)


def test_site_distance_separates_a_shifted_group_and_not_a_random_one():
    """benchmarks/site_distance.py's separation: a group whose embeddings sit apart scores AUC ~1, a group drawn
    from the same cloud ~0.5, and a slice's own case never serves as its nearest neighbour."""
    separation = _bench("site_distance").separation
    rng = np.random.default_rng(0)
    owner = np.repeat([f"c{i}" for i in range(12)], 20)  # 12 cases of 20 slices
    z = rng.normal(size=(240, 8))
    z[:, 0] += 3.0  # every embedding off the origin, so the unit normalisation keeps the cloud
    shifted = z.copy()
    shifted[owner == "c0", 1] += 6.0
    shifted[owner == "c1", 1] += 6.0
    group = np.where(np.isin(owner, ["c0", "c1"]), "new", "old")
    far = separation(shifted, owner, group, "new", sample=200)
    same = separation(z, owner, group, "new", sample=200)
    assert far["slices"] == 40 and far["auc"] > 0.95 and far["median_group"] > far["median_rest"]
    assert 0.3 < same["auc"] < 0.7
    # one case alone as a group: its own slices are excluded, so a copy of one of them elsewhere is its neighbour
    dup = z.copy()
    dup[owner == "c5"] = dup[owner == "c0"]
    alone = separation(dup, owner, np.where(owner == "c0", "new", "old"), "new", sample=50)
    assert alone["median_group"] == pytest.approx(0.0, abs=1e-9)


def test_gpu_run_names_what_is_missing_before_it_starts_anything(tmp_path):
    """benchmarks/gpu_run.sh (the device loop): no seeds, no data folder or no groups file stop it at once with
    one line naming what is missing, before any run starts or any file is written under $OUT but the folder."""
    import os
    import subprocess

    carry = tmp_path / "carry"
    (carry / "sites").mkdir(parents=True)
    base = {k: v for k, v in os.environ.items() if k not in ("SEEDS", "DATA", "GROUP_FILE", "INITIAL_GROUPS")}
    base.update(OUT=str(tmp_path / "out"), SIM=str(tmp_path / "sim"), CARRY=str(carry))

    def run(**env):
        return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_run.sh")], cwd=ROOT, env={**base, **env},
                              capture_output=True, text=True, timeout=60)

    r = run()
    assert r.returncode != 0 and "SEEDS is required" in r.stderr
    r = run(SEEDS="0")
    assert r.returncode == 2 and f"no data folder {carry}/hippocampus" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run(SEEDS="0", DATA="sites", GROUP_FILE="sites.json")
    assert r.returncode == 2 and f"no groups file {carry}/sites/sites.json" in r.stderr
    assert not (tmp_path / "sim").exists() and list((tmp_path / "out").iterdir()) == []


def test_round_gain_centres_within_a_shared_start_and_skips_other_protocols(tmp_path, capsys):
    """benchmarks/round_gain.py: rows sharing a seed and a start are compared with each other only (a seed's
    offset drops out), runs of other protocols are left out, and a gain that grows with the slices painted reads
    as a correlation of 1."""
    mod = _bench("round_gain")
    fields = ["strategy", "seed", "round", "dice_mean", "round_tasks", "round_fg_tasks", "pct_voxels",
              "round_charged_s"]
    for folder in ("label_efficiency_tuning_a", "label_efficiency_tuning_newsite_b"):
        (tmp_path / folder).mkdir()
        with open(tmp_path / folder / "results.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=fields)
            w.writeheader()
            for seed, offset in ((0, 0.0), (1, 0.1)):
                for k, row in enumerate(("p", "q", "r")):
                    n = 10 + 5 * k
                    w.writerow(dict(strategy=row, seed=seed, round=0, dice_mean=0.5 + offset, round_tasks=9,
                                    round_fg_tasks="", pct_voxels=1.0, round_charged_s=300))
                    w.writerow(dict(strategy=row, seed=seed, round=1, dice_mean=0.5 + offset + 0.002 * n,
                                    round_tasks=n, round_fg_tasks=n - 2 - k, pct_voxels=1.0 + 0.1 * n,
                                    round_charged_s=600))
    records = mod.gains(tmp_path)
    assert len(records) == 6 and {r["group"][0] for r in records} == {"label_efficiency_tuning_a"}
    x, n_groups = mod.centred(records, ("gain", "slices"))
    assert n_groups == 2 and np.allclose(x.sum(0), 0) and np.allclose(x[:, 0], 0.002 * x[:, 1])
    assert mod.main(["--raw", str(tmp_path), "--results", str(tmp_path / "R.md")]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "corr(round Dice gain, slices painted) = +1.000"
    entry = (tmp_path / "R.md").read_text()
    assert "- command: `python" in entry and "- machine:" in entry and "corr(gain, slices) = +1.000" in entry


def _derived_keeps(out, src_root, ids, untouched: str, script: str) -> None:
    """A derived dataset holds exactly ``ids``, the source's licence, a README naming ``script``, and the case
    ``untouched`` as the Decathlon file was."""
    from medal.data import load_dataset, load_volume

    assert sorted(c.case_id for c in load_dataset(out).cases) == ids
    assert (out / "LICENSE").read_bytes() == (src_root / "LICENSE").read_bytes()
    assert script in (out / "README.md").read_text()
    same = load_volume(out / "imagesTr" / f"{untouched}.nii.gz")
    src = load_volume(src_root / "imagesTr" / f"{untouched}.nii.gz")
    assert np.array_equal(same.array, src.array) and np.allclose(same.affine, src.affine)


def test_mixed_spacing_derives_thick_slice_cases_a_scanner_would_write(shared_hippocampus, tmp_path):
    """benchmarks/mixed_spacing.py's data: a thin case is the Decathlon file as it was; a thick one averages
    each 3 slices along the last axis, keeps the middle slice's label, has 3x the spacing along that axis and
    its voxel centres where the 3 slices' centre was; the licence travels with the copy."""
    from medal.data import load_dataset, load_volume

    mod = _bench("mixed_spacing")
    ids = ["hippocampus_004", "hippocampus_195", "hippocampus_355"]
    out = mod.derive(shared_hippocampus, tmp_path / "mixed", ids, {"hippocampus_195"})
    _derived_keeps(out, shared_hippocampus, ids, "hippocampus_004", "mixed_spacing.py")
    src = load_volume(shared_hippocampus / "imagesTr" / "hippocampus_195.nii.gz")
    lab = load_volume(shared_hippocampus / "labelsTr" / "hippocampus_195.nii.gz")
    img = load_volume(out / "imagesTr" / "hippocampus_195.nii.gz")
    tl = load_volume(out / "labelsTr" / "hippocampus_195.nii.gz")
    n = src.shape[2] // 3
    assert img.shape == (*src.shape[:2], n) and tl.shape == img.shape
    assert np.allclose(img.array[:, :, 1], src.array[:, :, 3:6].astype(np.float32).mean(axis=2), atol=1e-4)
    assert np.array_equal(tl.array[:, :, 1], lab.array[:, :, 4])
    assert img.spacing == pytest.approx((src.spacing[0], src.spacing[1], 3 * src.spacing[2]))
    centre = src.affine @ np.array([0, 0, 4, 1.0])  # thick slice 1 = source slices 3, 4, 5
    assert np.allclose(img.affine @ np.array([0, 0, 1, 1.0]), centre)
    # a second call with the same cases reuses the folder; other cases rewrite it
    stamp = (out / "derived.json").stat().st_mtime_ns
    mod.derive(shared_hippocampus, tmp_path / "mixed", ids, {"hippocampus_195"})
    assert (out / "derived.json").stat().st_mtime_ns == stamp


def test_mixed_orientation_derives_turned_cases_with_the_same_voxels_in_the_same_places(shared_hippocampus, tmp_path):
    """benchmarks/mixed_orientation.py's data: an untouched case is the Decathlon file; a turned one holds the same
    voxels with its first two axes swapped and reversed, each at the same world position; the licence travels."""
    from medal.data import load_dataset, load_volume
    from medal.data.resample import network_grid

    mod = _bench("mixed_orientation")
    ids = ["hippocampus_004", "hippocampus_195"]
    out = mod.derive(shared_hippocampus, tmp_path / "mixed", ids, {"hippocampus_195"})
    _derived_keeps(out, shared_hippocampus, ids, "hippocampus_004", "mixed_orientation.py")
    src = load_volume(shared_hippocampus / "imagesTr" / "hippocampus_195.nii.gz")
    img = load_volume(out / "imagesTr" / "hippocampus_195.nii.gz")
    lab = load_volume(out / "labelsTr" / "hippocampus_195.nii.gz")
    assert img.shape == (src.shape[1], src.shape[0], src.shape[2]) and img.orientation != src.orientation
    i, j, k = 4, 7, 9  # a voxel of the turned file lies where its source voxel lay
    assert img.array[i, j, k] == src.array[src.shape[0] - 1 - j, src.shape[1] - 1 - i, k]
    np.testing.assert_allclose(img.affine @ [i, j, k, 1], src.affine @ [src.shape[0] - 1 - j, src.shape[1] - 1 - i, k, 1])
    # data.orientation brings it back to the source's array exactly
    grid = network_grid(img.shape, img.affine, None, src.orientation)
    np.testing.assert_array_equal(grid.to_network(img.array), src.array)
    np.testing.assert_array_equal(grid.to_network(lab.array, labels=True),
                                  load_volume(shared_hippocampus / "labelsTr" / "hippocampus_195.nii.gz").array)
