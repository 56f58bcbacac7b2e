"""The round report: stopping rules, learning-curve fit, label quality control, and a real two-round run."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from medal.data import load_dataset, load_volume, sample_dataset, save_volume
from medal.report import agreement, confident_disagreement, decide, expected_gain, fit_power_law, power_law


def _rounds(dices, seconds, cases=8, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for s, d in zip(seconds, dices):
        per = {f"c{i}": float(d + rng.normal(0, noise)) for i in range(cases)}
        out.append({"seconds": s, "dice": float(np.mean(list(per.values()))), "per_case": per, "budget_s": 600.0,
                    "pool_entropy": 0.2})
    return out


def test_learning_curve_fit_recovers_known_parameters():
    s = np.array([300, 900, 1500, 2100, 2700, 3300.0])
    a, b, c = 0.88, 9.0, 0.6
    p = fit_power_law(s, power_law(s, a, b, c))
    assert p is not None
    assert p[0] == pytest.approx(a, abs=0.01) and p[2] == pytest.approx(c, abs=0.05)
    np.testing.assert_allclose(power_law(s, *p), power_law(s, a, b, c), atol=1e-3)
    assert expected_gain(p, 3300, 600) == pytest.approx(power_law(3900, a, b, c) - power_law(3300, a, b, c), abs=2e-3)
    assert fit_power_law([100, 200], [0.5, 0.6]) is None  # two points: no fit


def test_stopping_fires_on_a_plateau_and_not_on_a_rising_curve():
    secs = [600, 1200, 1800, 2400, 3000]
    flat = decide(_rounds([0.60, 0.80, 0.850, 0.852, 0.853], secs, noise=0.002), min_gain=0.01)
    assert flat.decision in ("consider stopping", "stop") and flat.rules["plateau"]["fired"]
    assert any("gained less than 0.01" in r for r in flat.reasons)
    assert flat.rules["plateau"]["sure"]  # eight cases agreeing: the small gains are sure
    rising = decide(_rounds([0.40, 0.55, 0.65, 0.72, 0.78], secs, noise=0.002), min_gain=0.01)
    assert rising.decision == "continue" and not rising.rules["plateau"]["fired"]
    assert rising.rules["learning_curve"]["expected_gain"] > 0.01
    spent = decide(_rounds([0.4, 0.6], [600, 1200]), total_budget_s=1000)
    assert spent.decision == "stop" and "budget is spent" in spent.reasons[0]
    sure = decide([dict(r, pool_entropy=0.001) for r in _rounds([0.6, 0.7], [600, 1200])])
    assert sure.rules["confident_pool"]["fired"] and sure.decision == "consider stopping"
    assert decide([]).decision == "continue"


def test_verdict_after_a_prefix_is_the_report_after_that_round():
    """``verdict_after`` reads ``collect_run``'s round entries: the whole list gives the run's verdict, a
    prefix the verdict the report showed after that round (what benchmarks/stopping.py replays)."""
    from medal.config import ReportConfig
    from medal.report.run_report import verdict_after

    simple = _rounds([0.60, 0.80, 0.850, 0.852, 0.853], [600, 1200, 1800, 2400, 3000], noise=0.002)
    agreements = [None, 0.70, 0.90, 0.93, 0.95]
    simple = [dict(r, agreement=a) for r, a in zip(simple, agreements)]
    entries = [{"seconds_at_training": r["seconds"], "budget_s": r["budget_s"], "pool_entropy": r["pool_entropy"],
                "agreement": r["agreement"], "holdout": {"dice": r["dice"], "per_case": r["per_case"], "cases": 8}}
               for r in simple]
    rc = ReportConfig()
    assert rc.min_agreement == 0.92 and rc.agreement_window_s == 600  # the defaults (benchmarks/stopping.py)
    verdicts = [verdict_after(entries[:k], rc) for k in range(1, len(entries) + 1)]
    assert [v.decision for v in verdicts[:4]] == ["continue"] * 4  # rising, then stable only once (0.90, 0.93)
    assert verdicts[-1].decision == "stop"  # stable twice, the held-out curve flat
    for k in (2, 5):
        assert verdicts[k - 1].to_json() == decide(simple[:k], min_agreement=0.92).to_json()
    ungated = [verdict_after(entries[:k], ReportConfig(min_agreement=0.0)).decision for k in (3, 4)]
    assert ungated == ["continue", "consider stopping"]  # without the gate the held-out plateau alone fires at round 3
    strict = verdict_after(entries, ReportConfig(min_gain=0.001))  # the config's thresholds are used
    assert not strict.rules["plateau"]["fired"] and strict.rules["plateau"]["min_gain"] == 0.001


def test_prediction_agreement_by_hand_and_the_stable_predictions_rule(tmp_path):
    from medal.data import LabelMap, Volume
    from medal.report.metrics import prediction_agreement

    a = np.zeros((4, 4, 4), np.uint8)
    a[0, :2] = 1  # label 1: 8 voxels
    a[2] = 2  # label 2: 16 voxels
    b = a.copy()
    b[0, 1] = 0  # label 1 keeps 4 of its 8
    c = np.zeros_like(a)
    c[3, 0, 0] = 2  # a label one map lacks counts 0 for it; label 1 in neither is left out
    z = np.zeros_like(a)

    def agree(first, second, **kw):
        for rd, arr in (("r0", first), ("r1", second)):
            save_volume(Volume(arr, np.eye(4)), tmp_path / rd / "x" / "prediction.nii.gz")
        return prediction_agreement(tmp_path / "r0", tmp_path / "r1", ["x"], **kw)["agreement"]

    assert agree(a, b) == pytest.approx((2 * 4 / (8 + 4) + 1.0) / 2)
    assert agree(a, a) == 1.0 and agree(z, z) == 1.0  # nothing predicted twice: nothing changed
    assert agree(z, c) == 0.0
    sparse = a.copy()
    sparse[sparse == 2] = 42  # sparse label values map to classes through the dataset's label map
    sparse_b = b.copy()
    sparse_b[sparse_b == 2] = 42
    assert agree(sparse, sparse_b, label_map=LabelMap((0, 1, 42))) == pytest.approx(agree(a, b))
    save_volume(Volume(a, np.eye(4)), tmp_path / "r1" / "z" / "prediction.nii.gz")  # case z: round 1 only
    got = prediction_agreement(tmp_path / "r0", tmp_path / "r1", ["x", "y", "z"])
    assert got == {"agreement": pytest.approx(agree(a, b)), "cases": 1}
    assert prediction_agreement(tmp_path / "r0", tmp_path / "r1", ["y"]) == {"agreement": None, "cases": 0}

    rounds = [dict(r, agreement=ag) for r, ag in zip(_rounds([0.40, 0.60, 0.70, 0.75], [600, 1200, 1800, 2400]),
                                                      [None, 0.80, 0.95, 0.96])]
    off = decide(rounds)  # reported, never fired, while report.min_agreement is 0
    assert off.rules["stable_predictions"] == {"fired": False, "agreements": [0.80, 0.95, 0.96], "min_agreement": None,
                                               "rounds": 2, "gate": False}
    on = decide(rounds, min_agreement=0.94)
    assert on.rules["stable_predictions"]["fired"] and on.decision in ("consider stopping", "stop")
    assert any("changed little" in r for r in on.reasons)
    assert not decide(rounds[:3], min_agreement=0.94).rules["stable_predictions"]["fired"]  # 0.80 then 0.95
    assert "stable_predictions" not in decide(_rounds([0.4, 0.6], [600, 1200])).rules  # no agreement: no rule


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2000).map(float), min_size=1, max_size=12), st.integers(0, 5000).map(float))
def test_agreement_reference_is_the_span_closest_to_the_window(seconds, window):
    """Whole seconds: their sums are exact in floating point, so a tie is a tie whatever the order of the sum (with
    fractions, seconds=[1e-12, 1998, 99.28, 1999.33] summed forwards tied two spans the function, summing backwards,
    told apart by one ulp: a flaky reference, not a wrong choice)."""
    from medal.report.metrics import agreement_reference

    j = agreement_reference(seconds, window)
    n = len(seconds)
    assert 0 <= j <= n - 1
    if window == 0:
        assert j == n - 1  # off: the round before
        return
    err = [abs(sum(seconds[k:]) - window) for k in range(n)]  # span of labels from round k up to round n
    assert err[j] == min(err)  # the closest span ...
    assert all(err[k] > err[j] for k in range(j))  # ... the longest of those tied


def test_agreement_reference_by_round_size():
    from medal.report.metrics import agreement_reference

    assert agreement_reference([300.0] * 5, 600) == 3  # 300 s rounds: two rounds back
    assert agreement_reference([310.0, 290.0, 305.0], 600) == 1  # logged seconds, not the nominal budget
    assert agreement_reference([600.0] * 3, 600) == 2  # 600 s rounds: the round before, as without a window
    assert agreement_reference([560.0] * 3, 600) == 2  # ... also when a round logged a little less
    assert agreement_reference([1200.0] * 3, 600) == 2  # larger rounds: never less than one round
    assert agreement_reference([400.0] * 3, 600) == 1  # 400 or 800 s: a tie goes to the longer span
    assert agreement_reference([300.0] * 5, 0) == 4
    with pytest.raises(ValueError, match="no earlier round"):
        agreement_reference([], 600)


def test_pool_agreement_compares_with_the_round_a_window_of_labels_before(tmp_path):
    """Run folders with real prediction files: ``report.agreement_window_s`` picks the round the loop and
    the report compare with, from the rounds' seconds (their budget where nothing was logged)."""
    from medal.data import Volume
    from medal.loop import pool_agreement
    from medal.report.metrics import prediction_agreement

    ds = load_dataset(sample_dataset())
    run = tmp_path / "run"
    rng = np.random.default_rng(0)
    for k in range(4):
        rd = run / f"round_{k:03d}"
        for cid in ("a", "b"):
            arr = (rng.random((6, 6, 6)) < 0.2 + 0.2 * k).astype(np.uint8)  # each round predicts more foreground
            save_volume(Volume(arr, np.eye(4)), rd / "scores" / cid / "prediction.nii.gz")
        (rd / "manifest.json").write_text(json.dumps({"round": k, "budget": {"budget_s": 300.0}}))
    direct = {j: prediction_agreement(run / f"round_{j:03d}" / "scores", run / "round_003" / "scores", ["a", "b"],
                                      label_map=ds.label_map)["agreement"] for j in range(3)}
    assert len(set(direct.values())) == 3  # the three earlier rounds differ from round 3 by different amounts
    got = pool_agreement(run, 3, ["a", "b"], ds, 600.0)
    assert got == {"agreement": pytest.approx(direct[1]), "cases": 2, "against": "round_001", "span_s": 600.0,
                   "window_s": 600.0}
    got = pool_agreement(run, 3, ["a", "b"], ds, 0.0)  # off: the round before
    assert got["against"] == "round_002" and got["agreement"] == pytest.approx(direct[2]) and got["span_s"] == 300.0
    assert pool_agreement(run, 3, ["a", "b"], ds, 5000.0)["against"] == "round_000"
    assert pool_agreement(run, 0, ["a", "b"], ds, 600.0)["agreement"] is None
    import shutil

    shutil.rmtree(run / "round_001" / "scores")  # that round's predictions deleted: no agreement, said so
    assert pool_agreement(run, 3, ["a", "b"], ds, 600.0)["agreement"] is None
    # the stable-predictions reasons name the span of labels the agreement covers
    rounds = [dict(r, agreement=ag, agreement_span_s=span) for r, ag, span in
              zip(_rounds([0.40, 0.60, 0.70, 0.75], [300, 600, 900, 1200]), [None, 0.8, 0.90, 0.91], [None, 300, 600, 600])]
    v = decide(rounds, min_agreement=0.92)
    assert v.decision == "continue" and "agreement with the predictions 600 s of labels before: 0.900, 0.910" in v.reasons[-1]


def test_stable_predictions_gate_the_verdict_when_min_agreement_is_set():
    secs = [600, 1200, 1800, 2400, 3000]
    flat = _rounds([0.60, 0.80, 0.850, 0.852, 0.853], secs, noise=0.002)
    assert decide(flat).decision == "stop"  # no gate: a sure plateau and a flat curve stop on their own

    changing = [dict(r, agreement=ag, pool_entropy=0.001) for r, ag in zip(flat, [None, 0.70, 0.85, 0.88, 0.90])]
    ungated = decide(changing)  # every rule alone still counts while min_agreement is 0
    assert ungated.decision == "stop" and not ungated.rules["stable_predictions"]["fired"]
    gated = decide(changing, min_agreement=0.92)  # plateau, confident pool and curve fire, predictions still move
    assert {k for k in ("plateau", "confident_pool", "learning_curve") if gated.rules[k]["fired"]} == {
        "plateau", "confident_pool", "learning_curve"}
    assert gated.decision == "continue" and gated.rules["stable_predictions"]["gate"]
    assert "but the pool's predictions still change" in gated.reasons[-1] and "0.880, 0.900" in gated.reasons[-1]

    settled = [dict(r, agreement=ag) for r, ag in zip(flat, [None, 0.70, 0.90, 0.93, 0.95])]
    done = decide(settled, min_agreement=0.92)  # stable twice and the curve's whole interval below min_gain
    assert done.rules["learning_curve"]["interval_90"][1] < 0.01 and done.decision == "stop"
    rising = [dict(r, agreement=ag) for r, ag in zip(_rounds([0.40, 0.55, 0.65, 0.72, 0.78], secs, noise=0.002),
                                                     [None, 0.70, 0.90, 0.93, 0.95])]
    only_stable = decide(rising, min_agreement=0.92)  # stable, but the curve still expects a gain: consider only
    assert only_stable.decision == "consider stopping" and only_stable.rules["stable_predictions"]["fired"]
    no_agreement = decide(_rounds([0.60, 0.80, 0.850, 0.852, 0.853], secs, noise=0.002), min_agreement=0.92)
    assert no_agreement.decision == "continue" and "not measured yet" in no_agreement.reasons[-1]


def test_agreement_on_a_constructed_example():
    a = np.full((4, 4), 255, np.uint8)
    b = a.copy()
    a[0, :] = [1, 1, 2, 0]
    b[0, :] = [1, 2, 2, 0]
    a[1, 0] = 1  # b did not annotate it: ignored
    d = agreement(a, b, 3)
    assert d[1] == pytest.approx(2 * 1 / (2 + 1)) and d[2] == pytest.approx(2 * 1 / (1 + 2))
    assert agreement(np.zeros((2, 2)), np.zeros((2, 2)), 3)[1] is None
    p = np.zeros((3, 4))
    p[1, :2], p[0, 2:] = 0.99, 0.99
    p[2, 2:] = 0.01
    p[2, :2] = 0.01
    share, n = confident_disagreement(np.array([1, 2, 0, 255]), p)
    assert n == 3 and share == pytest.approx(1 / 3)


@pytest.mark.slow
def test_report_after_every_round_matches_manifests_logs_and_qc(tmp_path):
    """Two real rounds on the bundled sample with held-out slices and quality control: the report is
    written after each round and ingest, and its numbers are the manifests' and the logs'."""
    from medal.costs import CostModel, append_annotation_log
    from medal.simulation import oracle_annotate
    from medal.tasks import read_tasks

    ds_root = sample_dataset()
    ds = load_dataset(ds_root)
    cases = [c.case_id for c in ds.cases[:4]]
    cfg = {"model": {"channels": [8, 16], "strides": [2], "head_channels": 8},
           "training": {"patch_size": [16, 16, 16], "batch_size": 2, "max_epochs": 2, "iterations_per_epoch": 3,
                        "val_fraction": 0.25, "holdout": 0.3, "num_threads": 1},
           "uncertainty": {"mc_samples": 2, "roi_size": [16, 16, 16]},
           "selection": {"budget_s": 1500.0, "qc_share": 0.2, "novelty_share": "auto"},
           "coldstart": {"encoder_steps": 60}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    for cid in cases:
        lab = load_volume(ds.case(cid).label)
        part = np.full(lab.shape, 255, np.uint8)
        part[:, :, ::3] = lab.array[:, :, ::3]
        save_volume(lab.with_array(part), run / "labels" / f"{cid}.nii.gz")

    def medal(*args):
        out = subprocess.run([sys.executable, "-m", "medal.cli", *map(str, args)], capture_output=True, text=True,
                             env={**os.environ})
        assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
        return out

    # round 1 priced for an expert who corrects the prediction shown (costs.annotation: correct)
    (tmp_path / "c1.yaml").write_text(yaml.safe_dump({**cfg, "costs": {"annotation": "correct"}}))
    for index in (0, 1):
        rd = run / f"round_{index:03d}"
        out = medal("round", ds_root, "--run", run, "--index", index, "--config", tmp_path / f"c{'1' if index else ''}.yaml",
                    "--cases", *cases)
        assert ("priced for correcting the model's prediction" in out.stdout) == (index == 1)
        assert json.loads((rd / "tasks.json").read_text())["costs"]["annotation"] == ("correct" if index else "draw")
        assert "report: " in out.stdout and (run / "report.md").is_file()
        res_meta = json.loads((rd / "tasks.json").read_text())
        assert (f"then a reserve of {res_meta['reserve_tasks']} task(s) ({res_meta['reserve_s']:.0f} s predicted)"
                in out.stdout)
        data = json.loads((run / "report.json").read_text())
        assert len(data["rounds"]) == index + 1
        man = json.loads((rd / "manifest.json").read_text())
        r = data["rounds"][-1]
        # novelty_share: auto -- every case holds labels, so the trigger stays off and every output says why
        why = "novelty part off: every case holds an annotated slice"
        assert f"NOTE: {why}" in out.stdout and man["budget"]["novelty"]["fired"] is False
        assert res_meta["novelty"]["message"] == why == r["chosen"]["novelty"]
        md = (run / "report.md").read_text()
        assert "Novelty part (selection.novelty_share: auto): round_000: " in md and f"round_{index:03d}: {why}" in md
        assert r["strides"] == man["checkpoint"]["strides"] is not None and "network down-sampling" not in md
        assert r["predicted_s"] == pytest.approx(man["budget"]["predicted_s"])
        assert man["budget"]["reserve_tasks"] == res_meta["reserve_tasks"] > 0
        assert man["budget"]["reserve_s"] == pytest.approx(res_meta["reserve_s"])
        assert r["holdout"]["dice"] == pytest.approx(man["metrics"]["holdout"]["dice"])
        agree = man["metrics"]["prediction_agreement"]  # the pool's predictions against the round before's
        if index == 0:
            assert agree["agreement"] is None and agree["cases"] == 0 and r["agreement"] is None
        else:
            assert agree["cases"] == len(cases) and 0 <= agree["agreement"] <= 1 and r["agreement"] == agree["agreement"]
            round0 = sum(json.loads(line)["seconds"] for line in (run / "round_000" / "annotation_log.jsonl")
                         .read_text().splitlines())
            assert agree["against"] == r["agreement_against"] == "round_000"  # the only earlier round
            assert agree["window_s"] == 600  # report.agreement_window_s's default
            assert agree["span_s"] == pytest.approx(round0) == r["agreement_span_s"]  # round 0's logged seconds
        assert man["metrics"]["holdout"]["voxels"] > 0 and 0 <= man["metrics"]["holdout"]["dice"] <= 1
        # temperature scaling on the validation case's voxels, with its reliability bins, in the report
        cal = man["metrics"]["calibration"]
        assert r["calibration"] == cal and cal["temperature"] > 0 and cal["cases"] == 1
        assert sum(cal["reliability_before"]["count"]) == sum(cal["reliability_after"]["count"]) == cal["voxels"] > 0
        assert 0 <= cal["ece_after"] <= 1 and 0 <= cal["ece_before"] <= 1
        tl = read_tasks(rd / "tasks.json")
        qc = [t for t in tl.tasks if t.qc_of]
        # the reserve queue (4 budgets by default, the file's last tasks) is counted apart from the budget's own
        n_res = int(tl.meta["reserve_tasks"])
        assert n_res > 0 and r["chosen"]["reserve_tasks"] == n_res and r["chosen"]["reserve_done"] == 0
        assert r["chosen"]["tasks"] + r["chosen"]["qc_tasks"] + n_res == len(tl.tasks)
        assert r["chosen"]["qc_tasks"] == len(qc)
        if index == 0:
            assert not qc  # nothing finished yet to re-ask
        else:  # quality control: earlier finished tasks, within their share of the budget, shown again
            assert qc and sum(t.predicted_cost_s for t in qc) <= 0.2 * 1500 + 1e-6
            assert all(t.qc_of.startswith("round_000/") and t.status == "todo" for t in qc)
        before = {cid: load_volume(run / "labels" / f"{cid}.nii.gz").array.copy() for cid in cases}
        oracle_annotate(tl, ds, rd / "annotations", cost_model=CostModel.default(3), log=rd / "annotation_log.jsonl")
        for t in qc:  # the re-annotation disagrees on purpose where the slice holds foreground
            lab = load_volume(rd / "annotations" / f"{t.case_id}.nii.gz")
            arr = lab.array.copy()
            sl = [slice(None)] * 3
            sl[t.axis] = t.index
            region = arr[tuple(sl)]
            region[region == 1] = 2
            arr[tuple(sl)] = region
            save_volume(lab.with_array(arr), rd / "annotations" / f"{t.case_id}.nii.gz")
        out = medal("ingest", ds_root, "--run", run, "--round", rd)
        data = json.loads((run / "report.json").read_text())
        logged = sum(json.loads(line)["seconds"] for line in (rd / "annotation_log.jsonl").read_text().splitlines())
        assert data["rounds"][-1]["logged"]["charged_s"] == pytest.approx(logged)
        assert data["rounds"][-1]["chosen"]["reserve_done"] == n_res  # this oracle (no clock) painted them all
        if qc:
            ing = json.loads((rd / "ingest.json").read_text())
            assert len(ing["qc"]) == len(qc) and data["agreement"]["tasks"] == len(qc)
            t = qc[0]
            after = load_volume(run / "labels" / f"{t.case_id}.nii.gz").array
            sl = [slice(None)] * 3
            sl[t.axis] = t.index
            np.testing.assert_array_equal(after[tuple(sl)], before[t.case_id][tuple(sl)])  # first labels kept
            assert (rd / "qc" / f"{t.case_id}.nii.gz").is_file()
    md = (run / "report.md").read_text()
    assert "**Recommendation:" in md and "learning_curve.png" in md and "Label quality control" in md
    assert "pool predictions vs earlier round" in md
    assert f"{data['rounds'][1]['agreement']:.3f} (vs round_000, {data['rounds'][1]['agreement_span_s']:.0f} s) |" in md
    # another report.agreement_window_s than the rounds were scored with: read again from the saved predictions
    from medal.config import load_config
    from medal.report.run_report import collect_run

    (tmp_path / "w.yaml").write_text(yaml.safe_dump({**cfg, "report": {"agreement_window_s": 900.0}}))
    again = collect_run(run, ds, load_config(tmp_path / "w.yaml"))["rounds"][1]
    assert again["agreement"] == pytest.approx(data["rounds"][1]["agreement"])  # the only earlier round, again
    assert again["agreement_against"] == "round_000"
    assert f"+ reserve {n_res} of {n_res} painted" in md
    assert "Calibration (temperature scaling" in md and "reliability.png" in md
    for png in ("learning_curve.png", "rounds.png", "reliability.png"):
        assert (run / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = medal("report", run, "--json")
    assert json.loads(out.stdout)["verdict"]["decision"] in ("continue", "consider stopping", "stop")
