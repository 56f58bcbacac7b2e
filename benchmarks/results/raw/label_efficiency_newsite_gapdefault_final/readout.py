"""Read-out of the plan of 2026-12-06 16:41 UTC (issue 11): the gap-route default on the new-site protocol's test
cases (seeds 0-4, run alone), paired with the random and fg_random rows of the 2026-12-05 23:22 UTC test run (same
seeds, same starts), and default_novelty (a fixed 0.2 share) beside it.

    python readout.py RAW_DIR OUT.json

RAW_DIR: benchmarks/results/raw. Each run's summary.json measures AUBC up to its own x_max (the most seconds any row
reached), so here every row's AUBC is recomputed from results.csv on one axis, x_max = the most seconds over both
runs (medal.simulation.report.aubc). Check fixed in the plan: each seed's round-0 Dice (shared by all rows) must
match the old run's to 1e-3, else the pairing is void.
"""
import csv, collections, json, sys
from pathlib import Path

import numpy as np
from scipy import stats

from medal.simulation.report import aubc

RAW = Path(sys.argv[1])
NEW, OLD = "label_efficiency_newsite_gapdefault_final", "label_efficiency_newsite_novelty_final"
rows = collections.defaultdict(lambda: collections.defaultdict(dict))  # row -> seed -> round -> csv row
for run, keep in ((NEW, {"default": "default"}),
                  (OLD, {"random": "random", "fg_random": "fg_random", "default_novelty": "default_novelty",
                         "default": "default_novelty_off"})):
    for r in csv.DictReader(open(RAW / run / "results.csv")):
        if r["strategy"] in keep:
            rows[keep[r["strategy"]]][int(r["seed"])][int(r["round"])] = r
seeds = sorted(rows["default"])
check = {str(s): {"new": float(rows["default"][s][0]["dice_mean"]), "old": float(rows["random"][s][0]["dice_mean"])}
         for s in seeds}
paired_ok = all(abs(v["new"] - v["old"]) <= 1e-3 for v in check.values())
x_max = max(float(rd[max(rd)]["seconds"]) for row in rows.values() for rd in row.values())
metric = {"aubc": {}, "balanced_final_dice": {}, "site_C_final_dice": {}, "final_dice": {}}
for name, row in rows.items():
    metric["aubc"][name] = {s: aubc(np.array([float(row[s][k]["seconds"]) for k in sorted(row[s])]),
                                    np.array([float(row[s][k]["dice_mean"]) for k in sorted(row[s])]), x_max)
                            for s in seeds}
    metric["balanced_final_dice"][name] = {s: float(np.mean([float(row[s][2]["dice_group_" + g]) for g in "ABC"]))
                                           for s in seeds}
    metric["site_C_final_dice"][name] = {s: float(row[s][2]["dice_group_C"]) for s in seeds}
    metric["final_dice"][name] = {s: float(row[s][2]["dice_mean"]) for s in seeds}


def paired(m, a, b):
    x = np.array([m[a][s] - m[b][s] for s in seeds])
    t = stats.ttest_rel([m[a][s] for s in seeds], [m[b][s] for s in seeds])
    return {"a": a, "b": b, "seeds": len(seeds), "mean_diff": float(x.mean()), "a_wins": int((x > 0).sum()),
            "p_paired_t": float(t.pvalue), "per_seed_diff": {str(s): float(d) for s, d in zip(seeds, x)}}


out = {"runs": {"default": NEW, "random, fg_random, default_novelty, default_novelty_off": OLD}, "x_max_s": x_max,
       "round0_check": check, "round0_check_passed": paired_ok,
       "means": {k: {r: float(np.mean(list(v[r].values()))) for r in v} for k, v in metric.items()}}
print("round-0 check", "passed" if paired_ok else "FAILED", check)
for k in metric:
    out[k] = [paired(metric[k], "default", b) for b in ("random", "fg_random", "default_novelty")]
    for c in out[k]:
        print(f"{k:20s} default - {c['b']:16s} {c['mean_diff']:+.4f}  {c['a_wins']}/{c['seeds']}  "
              f"p = {c['p_paired_t']:.3g}")
print({k: {r: round(v, 4) for r, v in m.items()} for k, m in out["means"].items()})
json.dump(out, open(sys.argv[2], "w"), indent=1)
