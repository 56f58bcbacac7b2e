"""A screen, not shipped: does the pool's entropy near the predicted foreground track the true gain better than
the mean entropy over every unannotated voxel (the ``confident_pool`` rule's signal, mostly background)?

Reads a stopping.py run folder's saved per-round scores (entropy.nii.gz, prediction.nii.gz of every pool case)
and results.csv (true Dice on the held-out cases); per round: the manifest's pool entropy, the mean entropy in a
2-voxel band around the predicted foreground, and the pool agreement; Spearman of each against the true gain of
the round just past (r-1 -> r) and of the next round (r -> r+1).

    python benchmarks/results/raw/stopping_fg_entropy/fg_entropy.py /work/runs_topk/stop47 4 5 6 7
"""
import csv
import json
import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_dilation
from scipy.stats import spearmanr

from medal.data import load_volume

run, seeds = Path(sys.argv[1]), [int(s) for s in sys.argv[2:]]
true = {}
for row in csv.DictReader(open(run / "results.csv")):
    true[(int(row["seed"]), int(row["round"]))] = float(row["dice_mean"])
rows = []
for seed in seeds:
    d = run / "default" / f"seed_{seed}"
    for r in sorted(p for p in d.glob("round_0*") if (p / "manifest.json").is_file()):
        k = int(r.name[6:])
        man = json.loads((r / "manifest.json").read_text())
        band = []
        for c in sorted(p for p in (r / "scores").iterdir() if (p / "entropy.nii.gz").is_file()):
            ent = load_volume(c / "entropy.nii.gz").array
            fg = binary_dilation(load_volume(c / "prediction.nii.gz").array > 0, iterations=2)
            band.append(float(ent[fg].mean()) if fg.any() else 0.0)
        rows.append({"seed": seed, "round": k, "pool_entropy": man["metrics"].get("pool_entropy"),
                     "fg_entropy": float(np.mean(band)), "agreement": (man["metrics"].get("prediction_agreement") or {}).get("agreement"),
                     "gain_past": true[(seed, k)] - true[(seed, k - 1)] if (seed, k - 1) in true else None,
                     "gain_next": true[(seed, k + 1)] - true[(seed, k)] if (seed, k + 1) in true else None})
for r in rows:
    print(r["seed"], r["round"], *(f"{r[x]:.4f}" if r[x] is not None else "n/a"
                                   for x in ("pool_entropy", "fg_entropy", "agreement", "gain_past", "gain_next")))
out = {}
for sig in ("pool_entropy", "fg_entropy", "agreement"):
    for g in ("gain_past", "gain_next"):
        pairs = [(r[sig], r[g]) for r in rows if r[sig] is not None and r[g] is not None]
        if len(pairs) < 3:  # an older run folder whose manifests did not record it
            continue
        rho = spearmanr(*zip(*pairs))[0]
        out[f"{sig}~{g}"] = {"spearman": float(rho), "rounds": len(pairs)}
        print(f"{sig} vs {g}: Spearman {rho:+.2f} over {len(pairs)} rounds")
print(json.dumps({"rows": rows, "spearman": out}))
