"""Ten-seed read-out of the rare-site question (plan of 2026-12-05 00:42 UTC in RESULTS.md).

    python .../combine.py OUT.json --readouts R0.json R1.json ... --results J0.json J1.json ...

R*: ``sites_readout_extended.json`` of each run (``sites_readout.py --eval extended``: the round models read on
the 120 train-side cases outside the tuning pool, site C 17 of them); J*: each run's
``benchmarks/results/*.json`` (AUBC per seed on the tuning validation; each run's AUBC on its own budget
axis, so a seed's pair shares one axis). Default - fg_random, paired t-tests (scipy), over all seeds and over
seeds 5-9 alone (the runs made after the plan)."""
import argparse
import json

import numpy as np
from scipy.stats import ttest_rel

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--readouts", nargs="+", required=True)
ap.add_argument("--results", nargs="+", required=True)
args = ap.parse_args()
readout, aubc = {}, {}
for f in args.readouts:
    readout.update(json.load(open(f)))
for f in args.results:
    d = json.load(open(f))
    for s in ("default", "fg_random"):
        aubc.setdefault(s, {}).update(d["strategies"][s]["aubc_per_seed"])
seeds = sorted(int(k) for k in aubc["default"])
assert all(f"{r}/seed_{s}" in readout for r in ("default", "fg_random") for s in seeds), "a read-out is missing"


def metric(row, seed, name, rnd="round_002"):
    dice = readout[f"{row}/seed_{seed}"]["dice"][rnd]
    if name == "site_C_fg_dice":
        return dice["C"]["fg_dice"]
    if name == "site_C_dice_mean":
        return dice["C"]["dice_mean"]
    if name == "site_balanced_dice_mean":
        return float(np.mean([dice[s]["dice_mean"] for s in "ABC"]))
    if name == "aubc":
        return aubc[row][str(seed)]
    raise KeyError(name)


res = {"seeds": seeds, "eval_cases_per_site": readout.get("val_cases_per_site"), "comparisons": {}}
for subset, ss in (("seeds_0_9", seeds), ("seeds_5_9", [s for s in seeds if s >= 5])):
    res["comparisons"][subset] = {}
    for name in ("site_C_fg_dice", "site_C_dice_mean", "site_balanced_dice_mean", "aubc"):
        a = np.array([metric("default", s, name) for s in ss])
        b = np.array([metric("fg_random", s, name) for s in ss])
        p = float(ttest_rel(a, b).pvalue)
        res["comparisons"][subset][name] = {
            "a": "default", "b": "fg_random", "seeds": ss, "default": a.round(4).tolist(),
            "fg_random": b.round(4).tolist(), "mean_difference": float((a - b).mean()), "p": p,
            "default_wins": int((a > b).sum())}
        print(f"{subset} {name}: default - fg_random {float((a - b).mean()):+.4f}, default higher in "
              f"{int((a > b).sum())}/{len(ss)} seeds, paired t-test p = {p:.3f}; per seed {np.round(a - b, 3).tolist()}")
# what each row bought from the rare site, per selection round (from the annotation logs, as read out)
res["site_C_slices_painted"] = {
    row: {str(s): [readout[f"{row}/seed_{s}"]["painted"].get(f"selection_{r}", {}).get("C", 0) for r in (1, 2)]
          for s in seeds} for row in ("default", "fg_random")}
json.dump(res, open(args.out, "w"), indent=1)
