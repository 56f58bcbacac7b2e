"""Read-out of the plan of 2026-12-06 15:25 UTC (issue 11): the gap-route default (novelty auto, rank test at 0.05
or gap above 1.2) against random and fg_random on the new-site protocol, seeds 60-64; the pre-gap default's seeds
50-55 beside it, descriptively (different seeds: not paired, not pooled).

    python readout.py RAW_DIR OUT.json [RUN ...]

RUN: other run folders under RAW_DIR to read the same way instead (each labelled by its name; the thick-slice run
of seeds 70-74 was read with ``label_efficiency_tuning_newsite_thick_gapdefault``).

RAW_DIR: benchmarks/results/raw. Per seed the AUBC of each row comes from its run's summary.json (each run's own
seconds axis; the paired differences are within a run), site-balanced final Dice = mean of the site A, B and C
validation Dice after round 2 (results.csv).
"""
import csv, collections, json, sys
from pathlib import Path

import numpy as np
from scipy import stats

RAW = Path(sys.argv[1])
RUNS = {"label_efficiency_tuning_newsite_gapdefault_fresh6064": "gap-route default (seeds 60-64)",
        "label_efficiency_tuning_newsite_default_fresh5055": "pre-gap default (seeds 50-55), for reference"}
if sys.argv[3:]:
    RUNS = {run: run for run in sys.argv[3:]}
ROWS = ("default", "random", "fg_random")


def load(run):
    aubc, bal, site_c, units_c = (collections.defaultdict(dict) for _ in range(4))
    summary = json.load(open(RAW / run / "summary.json"))["strategies"]
    for row in ROWS:
        for seed, v in summary[row]["aubc_per_seed"].items():
            aubc[row][int(seed)] = float(v)
    by = collections.defaultdict(dict)
    for r in csv.DictReader(open(RAW / run / "results.csv")):
        if r["strategy"] in ROWS:
            by[(r["strategy"], int(r["seed"]))][int(r["round"])] = r
    for (row, seed), rounds in by.items():
        bal[row][seed] = float(np.mean([float(rounds[2]["dice_group_" + g]) for g in "ABC"]))
        site_c[row][seed] = float(rounds[2]["dice_group_C"])
        units_c[row][seed] = sum(int(rounds[k]["tasks_group_C"] or 0) for k in (1, 2))
    return aubc, bal, site_c, units_c


def paired(metric, a, b, seeds):
    x = np.array([metric[a][s] - metric[b][s] for s in seeds])
    t = stats.ttest_rel([metric[a][s] for s in seeds], [metric[b][s] for s in seeds])
    return {"a": a, "b": b, "seeds": len(seeds), "mean_diff": float(x.mean()), "a_wins": int((x > 0).sum()),
            "p_paired_t": float(t.pvalue), "per_seed_diff": {str(s): float(d) for s, d in zip(seeds, x)}}


out = {"runs": RUNS}
for run, label in RUNS.items():
    aubc, bal, site_c, units_c = load(run)
    seeds = sorted(aubc["default"])
    assert all(s in aubc[r] and s in bal[r] for r in ROWS for s in seeds), run
    out[run] = {
        "label": label, "seeds": seeds,
        "aubc": [paired(aubc, "default", b, seeds) for b in ("random", "fg_random")],
        "balanced_final_dice": [paired(bal, "default", b, seeds) for b in ("random", "fg_random")],
        "site_C_final_dice": [paired(site_c, "default", b, seeds) for b in ("random", "fg_random")],
        "means": {r: {"aubc": float(np.mean([aubc[r][s] for s in seeds])),
                      "balanced_final_dice": float(np.mean([bal[r][s] for s in seeds])),
                      "site_C_final_dice": float(np.mean([site_c[r][s] for s in seeds])),
                      "site_C_units_rounds_1_2": int(sum(units_c[r][s] for s in seeds))} for r in ROWS},
    }
    for k in ("aubc", "balanced_final_dice", "site_C_final_dice"):
        for c in out[run][k]:
            print(f"{label:46s} {k:20s} default - {c['b']:9s} {c['mean_diff']:+.4f}  {c['a_wins']}/{c['seeds']}  "
                  f"p = {c['p_paired_t']:.3g}")
    for r in ROWS:
        print(f"{label:46s} {r:9s} " + "  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                                   for k, v in out[run]["means"][r].items()))
json.dump(out, open(sys.argv[2], "w"), indent=1)
