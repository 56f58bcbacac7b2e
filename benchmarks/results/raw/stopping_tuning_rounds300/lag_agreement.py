"""A screen, not shipped: the pool predictions' agreement with the round ~600 s of labels before (lag 2 with 300 s
rounds) instead of the round before, read from a stopping.py run folder's saved per-round predictions.

    python benchmarks/results/raw/stopping_tuning_rounds300/lag_agreement.py /work/runs_topk/stop89_300 8 9
"""
import csv
import json
import sys
from pathlib import Path

from medal.report.metrics import prediction_agreement

run, seeds = Path(sys.argv[1]), [int(s) for s in sys.argv[2:]]
true = {}
for row in csv.DictReader(open(run / "results.csv")):
    true[(int(row["seed"]), int(row["round"]))] = (float(row["seconds"]), float(row["dice_mean"]))
out = {}
for seed in seeds:
    d = run / "default" / f"seed_{seed}"
    rounds = sorted(p for p in d.glob("round_0*") if (p / "scores").is_dir())
    rows = []
    for k, r in enumerate(rounds):
        cases = sorted(p.name for p in (r / "scores").iterdir() if (p / "prediction.nii.gz").is_file())
        lag1 = prediction_agreement(rounds[k - 1] / "scores", r / "scores", cases)["agreement"] if k >= 1 else None
        lag2 = prediction_agreement(rounds[k - 2] / "scores", r / "scores", cases)["agreement"] if k >= 2 else None
        rows.append({"round": k, "seconds": true[(seed, k)][0], "true_dice": true[(seed, k)][1],
                     "lag1": lag1, "lag2": lag2})
    last = max(r for (s, r) in true if s == seed)
    final = true[(seed, last)][1]
    for thr in (0.90, 0.92):
        first = next((r for a, r in zip(rows, rows[1:]) if (a["lag2"] or 0) >= thr and (r["lag2"] or 0) >= thr), None)
        print(f"seed {seed}: lag-2 >= {thr} twice first after round {first and first['round']}"
              + (f" ({first['seconds']:.0f} s, {final - first['true_dice']:+.3f} Dice short of round {last})" if first else ""))
    out[seed] = rows
    for r in rows:
        print(seed, r["round"], f"{r['seconds']:.0f}", f"{r['true_dice']:.3f}",
              *(f"{r[k]:.3f}" if r[k] is not None else "n/a" for k in ("lag1", "lag2")))
print(json.dumps(out))
