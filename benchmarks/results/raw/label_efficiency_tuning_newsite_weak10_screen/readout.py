"""Read-out of the 11:18 UTC plan (RESULTS.md 2026-12-06): half the novelty share at p in [0.05, 0.1), new-site screen.

python readout.py WEAK_DIR DET41_DIR OUT.json   (from the repository root)
WEAK_DIR: default_weak10 on seeds 40, 43, 44; DET41_DIR: default on seed 41 (the determinism check).
Recorded rows: share 0 = the 06:44 UTC run's default at 0.05 (raw/label_efficiency_tuning_newsite_default_auto),
share 0.2 = B2's default at 0.1 (raw/label_efficiency_tuning_newsite_alpha10_b2).
"""
import collections, csv, json, sys
from pathlib import Path

import numpy as np

RAW = Path("benchmarks/results/raw")
weak_dir, det_dir, out_path = map(Path, sys.argv[1:4])


def rows(d):
    by = collections.defaultdict(dict)
    for r in csv.DictReader(open(d / "results.csv")):
        by[(r["strategy"], int(r["seed"]))][int(r["round"])] = r
    return by


def aubc(d, st):
    return {int(k): v for k, v in json.load(open(d / "summary.json"))["strategies"][st]["aubc_per_seed"].items()}


def per_seed(d, st):
    by = rows(d)
    a = aubc(d, st)
    out = {}
    for (x, s), r in by.items():
        if x != st or 2 not in r:
            continue
        out[s] = {"aubc": a[s], "final": float(r[2]["dice_mean"]),
                  "balanced": float(np.mean([float(r[2]["dice_group_" + g]) for g in "ABC"])),
                  "site_C": float(r[2]["dice_group_C"]),
                  "units_C": sum(int(r[k]["tasks_group_C"] or 0) for k in (1, 2))}
    return out


off = per_seed(RAW / "label_efficiency_tuning_newsite_default_auto", "default")
full = per_seed(RAW / "label_efficiency_tuning_newsite_alpha10_b2", "default")
weak = per_seed(weak_dir, "default_weak10")
det = per_seed(det_dir, "default")
out = {"determinism_seed_41": {"now": det.get(41), "recorded": off.get(41)}}
ok = 41 in det and all(round(det[41][k], 4) == round(off[41][k], 4) for k in ("aubc", "final"))
out["determinism_seed_41"]["repeats"] = bool(ok)
print("determinism, seed 41:", json.dumps(out["determinism_seed_41"]))
seeds = [s for s in (40, 43, 44) if s in weak]
table = {s: {"off": off[s], "half": weak[s], "full": full[s]} for s in seeds}
out["per_seed"] = table
for s in seeds:
    print(s, {k: {m: round(v[m], 4) for m in ("aubc", "final", "balanced", "site_C")} | {"units_C": v["units_C"]}
              for k, v in table[s].items()})
kept = {}
for m in ("balanced", "final", "aubc"):
    gain_full = np.array([full[s][m] - off[s][m] for s in seeds])
    gain_half = np.array([weak[s][m] - off[s][m] for s in seeds])
    kept[m] = {"half_minus_off": gain_half.mean(), "full_minus_off": gain_full.mean(),
               "half_minus_full": float(np.mean([weak[s][m] - full[s][m] for s in seeds])),
               "kept_share": float(gain_half.mean() / gain_full.mean()) if gain_full.mean() else None,
               "half_better_than_off": int((gain_half > 0).sum()), "n": len(seeds)}
    kept[m] = {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in kept[m].items()}
out["kept"] = kept
print(json.dumps(kept, indent=1))
out_path.write_text(json.dumps(out, indent=1) + "\n")
