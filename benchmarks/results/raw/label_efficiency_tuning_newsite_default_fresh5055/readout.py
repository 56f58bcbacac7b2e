"""Read-out of the plan of 2026-12-06 13:14 UTC (issue 11): the shipped default (novelty auto at 0.05) against random
and fg_random on the new-site protocol, seeds 50-55, and every seed this default has run on for the protocol pooled.

    python readout.py RAW_DIR OUT.json

RAW_DIR: benchmarks/results/raw. Per seed the AUBC of each row comes from its run's summary.json (each run's own
seconds axis; the paired differences are within a run), site-balanced final Dice = mean of the site A, B and C
validation Dice after round 2 (results.csv).
"""
import csv, collections, json, sys
from pathlib import Path

import numpy as np
from scipy import stats

RAW = Path(sys.argv[1])
# run folder -> {row name in that run: row name here}; seeds 27-31 ran the shipped default as the variant default_auto
RUNS = {
    "label_efficiency_tuning_newsite_auto": {"default_auto": "default", "random": "random", "fg_random": "fg_random"},
    "label_efficiency_tuning_newsite_default_auto": {"default": "default", "random": "random", "fg_random": "fg_random"},
    "label_efficiency_tuning_newsite_default_fresh5055": {"default": "default", "random": "random",
                                                          "fg_random": "fg_random"},
}
aubc, bal, site_c, units_c = (collections.defaultdict(dict) for _ in range(4))
origin = {}
for run, rows in RUNS.items():
    summary = json.load(open(RAW / run / "summary.json"))["strategies"]
    for name, row in rows.items():
        for seed, v in summary[name]["aubc_per_seed"].items():
            aubc[row][int(seed)] = float(v)
            origin[int(seed)] = run
    by = collections.defaultdict(dict)
    for r in csv.DictReader(open(RAW / run / "results.csv")):
        if r["strategy"] in rows:
            by[(rows[r["strategy"]], int(r["seed"]))][int(r["round"])] = r
    for (row, seed), rounds in by.items():
        bal[row][seed] = float(np.mean([float(rounds[2]["dice_group_" + g]) for g in "ABC"]))
        site_c[row][seed] = float(rounds[2]["dice_group_C"])
        units_c[row][seed] = sum(int(rounds[k]["tasks_group_C"] or 0) for k in (1, 2))


def paired(metric, a, b, seeds):
    x = np.array([metric[a][s] - metric[b][s] for s in seeds])
    t = stats.ttest_rel([metric[a][s] for s in seeds], [metric[b][s] for s in seeds])
    return {"a": a, "b": b, "seeds": len(seeds), "mean_diff": float(x.mean()), "a_wins": int((x > 0).sum()),
            "p_paired_t": float(t.pvalue)}


fresh = [50, 51, 52, 53, 54, 55]
sets = {"fresh_50_55": fresh, "pooled_16": sorted(aubc["default"]),
        "pooled_11_without_27_31": [s for s in sorted(aubc["default"]) if s not in range(27, 32)]}
out = {"runs": RUNS, "seed_run": {str(s): origin[s] for s in sorted(origin)}}
for name, seeds in sets.items():
    assert all(s in aubc[r] for r in ("default", "random", "fg_random") for s in seeds), name
    out[name] = {
        "aubc": [paired(aubc, "default", b, seeds) for b in ("random", "fg_random")],
        "balanced_final_dice": [paired(bal, "default", b, seeds) for b in ("random", "fg_random")],
        "means": {r: {"aubc": float(np.mean([aubc[r][s] for s in seeds])),
                      "balanced_final_dice": float(np.mean([bal[r][s] for s in seeds])),
                      "site_C_final_dice": float(np.mean([site_c[r][s] for s in seeds])),
                      "site_C_units_rounds_1_2": int(sum(units_c[r][s] for s in seeds))}
                  for r in ("default", "random", "fg_random")},
    }
    for k in ("aubc", "balanced_final_dice"):
        for c in out[name][k]:
            print(f"{name:24s} {k:20s} default - {c['b']:9s} {c['mean_diff']:+.4f}  {c['a_wins']}/{c['seeds']}  "
                  f"p = {c['p_paired_t']:.3g}")
json.dump(out, open(sys.argv[2], "w"), indent=1)
