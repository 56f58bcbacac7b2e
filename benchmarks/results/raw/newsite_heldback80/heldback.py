"""Read-out of the plan of 2026-12-06 17:48 UTC (issue 11): the gap-route default's tuning run on the new-site
protocol (seeds 60-64, rows default / random / fg_random) re-read, no new training, on the 80 cases of
hippocampus_split.json's train side outside the tuning split's pool and validation (never the 40 test cases).

    python heldback.py RUN DATA OUT.json

RUN: the run folder (/work/runs_inv/fresh6064: ROW/seed_S/round_00R/model.pt, results.csv, summary.json,
simulation.json); DATA: the derived layout it ran on (``derive_sites.py --site-c inverted``). First the check fixed
in the plan: the same code on the run's own 40 validation cases must reproduce results.csv's dice_mean (1e-4) and
summary.json's AUBC (1e-6; from the Dice rounded to 5 decimals as results.csv keeps it, the one deviation from
the plan: unrounded Dice differ from the recorded AUBC by up to ~3e-6 through that rounding alone). Then Dice per round on the 80 other cases, AUBC on the run's own seconds and x_max,
paired t-tests of the default against each baseline.
"""
import collections
import csv
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from medal.config import config_from_dict
from medal.data import VolumeCache
from medal.data.dataset import load_dataset
from medal.simulation.report import aubc
from medal.simulation.simulate import evaluate

ROOT = Path(__file__).resolve().parents[4]
ROWS = ("default", "random", "fg_random")
torch.set_num_threads(int(os.environ.get("READOUT_THREADS", "2")))

run, data, out_path = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
meta = json.loads((run / "simulation.json").read_text())
cfg = config_from_dict(meta["config"], source=str(run / "simulation.json"))
dataset = load_dataset(data)
sites = json.loads((data / "sites.json").read_text())
tuning = json.loads((ROOT / "benchmarks" / "hippocampus_tuning_split.json").read_text())
train_side = json.loads((ROOT / "benchmarks" / "hippocampus_split.json").read_text())["train"]
others = sorted(set(train_side) - set(tuning["pool"]) - set(tuning["test"]))
assert len(others) == 80 and not set(others) & set(meta["test"]) and not set(others) & set(meta["pool"])
validation = meta["test"]  # the run's own evaluation cases, in its order

csv_rows = collections.defaultdict(dict)  # (row, seed) -> round -> csv row
for r in csv.DictReader(open(run / "results.csv")):
    if r["strategy"] in ROWS:
        csv_rows[(r["strategy"], int(r["seed"]))][int(r["round"])] = r
seeds = sorted({s for _, s in csv_rows})
summary = json.loads((run / "summary.json").read_text())
x_max = float(summary["x_max_s"])
cache = VolumeCache()
memo = {}


def dice(model: Path, cases: list[str]) -> np.ndarray:
    """Per case (in ``cases``' order) the mean per-class Dice, as results.csv's dice_mean averages it."""
    key = (str(model), tuple(cases))
    if key not in memo:
        memo[key] = evaluate(model, dataset, cases, cfg, cache=cache, per_case=True).mean(axis=1)
    return memo[key]


def model_of(row: str, seed: int, r: int) -> Path:
    return run / row / f"seed_{seed}" / f"round_{r:03d}" / "model.pt"


# the check: the run's own validation Dice and AUBC, reproduced
check = {"max_abs_dice_diff": 0.0, "max_abs_aubc_diff": 0.0}
for (row, seed), rounds in sorted(csv_rows.items()):
    ys = []
    for r in sorted(rounds):
        y = float(dice(model_of(row, seed, r), validation).mean())
        check["max_abs_dice_diff"] = max(check["max_abs_dice_diff"], abs(y - float(rounds[r]["dice_mean"])))
        ys.append(round(y, 5))  # results.csv keeps 5 decimals and summary.json's AUBC is computed from them
    xs = [float(rounds[r]["seconds"]) for r in sorted(rounds)]
    recorded = float(summary["strategies"][row]["aubc_per_seed"][str(seed)])
    check["max_abs_aubc_diff"] = max(check["max_abs_aubc_diff"], abs(aubc(xs, ys, x_max) - recorded))
check["passed"] = check["max_abs_dice_diff"] <= 1e-4 and check["max_abs_aubc_diff"] <= 1e-6
print(f"check on the 40 validation cases: max |dice diff| {check['max_abs_dice_diff']:.2e}, "
      f"max |AUBC diff| {check['max_abs_aubc_diff']:.2e} -> {'passed' if check['passed'] else 'FAILED'}", flush=True)

site_idx = {g: [i for i, c in enumerate(others) if sites[c] == g] for g in "ABC"}
res = {"aubc": collections.defaultdict(dict), "final_dice": collections.defaultdict(dict),
       "site_C_final_dice": collections.defaultdict(dict), "dice_per_round": collections.defaultdict(dict)}
for (row, seed), rounds in sorted(csv_rows.items()):
    per = [dice(model_of(row, seed, r), others) for r in sorted(rounds)]
    ys = [float(p.mean()) for p in per]
    xs = [float(rounds[r]["seconds"]) for r in sorted(rounds)]
    res["aubc"][row][seed] = aubc(xs, ys, x_max)
    res["final_dice"][row][seed] = ys[-1]
    res["site_C_final_dice"][row][seed] = float(per[-1][site_idx["C"]].mean())
    res["dice_per_round"][row][seed] = ys
    print(f"{row:9s} seed {seed}: Dice per round {' '.join(f'{y:.4f}' for y in ys)}  AUBC {res['aubc'][row][seed]:.4f}"
          f"  site C final {res['site_C_final_dice'][row][seed]:.4f}", flush=True)


def paired(metric, a, b):
    x = np.array([metric[a][s] - metric[b][s] for s in seeds])
    p = float(stats.ttest_rel([metric[a][s] for s in seeds], [metric[b][s] for s in seeds]).pvalue)
    return {"a": a, "b": b, "seeds": len(seeds), "mean_diff": float(x.mean()), "a_wins": int((x > 0).sum()),
            "p_paired_t": p, "per_seed_diff": {str(s): float(d) for s, d in zip(seeds, x)}}


comparisons = {k: [paired(res[k], "default", b) for b in ("random", "fg_random")]
               for k in ("aubc", "final_dice", "site_C_final_dice")}
a = comparisons["aubc"]
if all(c["a_wins"] >= 4 and c["p_paired_t"] < 0.05 for c in a):
    verdict = "holds"
elif all(c["mean_diff"] > 0 for c in a):
    verdict = "same direction, not significant"
else:
    verdict = "does not hold"
out = {"plan": "RESULTS.md, 2026-12-06 17:48 UTC", "run": str(run), "seeds": seeds, "x_max_s": x_max,
       "cases": others, "cases_per_site": {g: len(v) for g, v in site_idx.items()}, "check": check,
       "means": {k: {r: float(np.mean(list(res[k][r].values()))) for r in ROWS} for k in ("aubc", "final_dice",
                                                                                          "site_C_final_dice")},
       "per_seed": {k: {r: {str(s): v for s, v in res[k][r].items()} for r in ROWS} for k in res},
       "comparisons": comparisons, "verdict": verdict if check["passed"] else "void (check failed)"}
out_path.write_text(json.dumps(out, indent=1))
for k, cs in comparisons.items():
    for c in cs:
        print(f"{k:18s} default - {c['b']:9s} {c['mean_diff']:+.4f}  {c['a_wins']}/{c['seeds']}  p = {c['p_paired_t']:.3g}")
print(f"verdict on the 80 other held-back cases: {out['verdict']}")
