"""Five-seed read-out of the rare-site question (plan of 2026-12-04 23:05 UTC in RESULTS.md).

    python .../combine.py SCREEN_READOUT.json CONFIRM_READOUT.json SCREEN_RESULTS.json CONFIRM_RESULTS.json OUT.json

Seeds 0-1 from the screen, 2-4 from the confirmation run; default - fg_random, paired t-tests (scipy)."""
import json
import sys

import numpy as np
from scipy.stats import ttest_rel

sr, cr, sj, cj, out = sys.argv[1:6]
readout = {**json.load(open(sr)), **json.load(open(cr))}
aubc = {}
for f in (sj, cj):
    d = json.load(open(f))
    for s in ("default", "fg_random"):
        aubc.setdefault(s, {}).update(d["strategies"][s]["aubc_per_seed"])
seeds = sorted(int(k) for k in aubc["default"])


def metric(row, seed, name):
    dice = readout[f"{row}/seed_{seed}"]["dice"]["round_002"]
    if name == "site_C_fg_dice":
        return dice["C"]["fg_dice"]
    if name == "site_C_dice_mean":
        return dice["C"]["dice_mean"]
    if name == "site_balanced_dice_mean":
        return float(np.mean([dice[s]["dice_mean"] for s in "ABC"]))
    if name == "aubc":
        return aubc[row][str(seed)]
    raise KeyError(name)


res = {"seeds": seeds, "comparisons": {}}
for name in ("site_C_fg_dice", "site_C_dice_mean", "site_balanced_dice_mean", "aubc"):
    a = np.array([metric("default", s, name) for s in seeds])
    b = np.array([metric("fg_random", s, name) for s in seeds])
    p = float(ttest_rel(a, b).pvalue)
    res["comparisons"][name] = {"a": "default", "b": "fg_random", "default": a.round(4).tolist(),
                                "fg_random": b.round(4).tolist(), "mean_difference": float((a - b).mean()),
                                "p": p, "default_wins": int((a > b).sum())}
    print(f"{name}: default - fg_random {float((a - b).mean()):+.4f}, default higher in {int((a > b).sum())}/{len(seeds)}"
          f" seeds, paired t-test p = {p:.3f}; per seed {np.round(a - b, 3).tolist()}")
json.dump(res, open(out, "w"), indent=1)
