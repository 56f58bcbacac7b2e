"""Per-site read-out of the three-site screen (issue 11), from the run's own files, no new training.

    python benchmarks/results/raw/label_efficiency_tuning_sites_screen/sites_readout.py RUN DATA [--seeds 0 1]

For every row and seed: the painted slices per site in each selection round (annotation logs: the oracle's
finished tasks, slices with foreground counted apart), and the foreground Dice (mean over cases, classes
merged) and mean per-class Dice per site on the tuning-validation cases of the round models (round_000 = the
shared first model, round_001/002 after each selection round). Writes RUN/sites_readout.json; prints a table.
Also the read-out of the inverted-site screen and check (2026-12-05 11:09 / 11:40 UTC plans), with DATA the
``derive_sites.py --site-c inverted`` copy.

``--eval extended`` (the plan of 2026-12-05 00:42 UTC) reads the models on every case of the train side of
hippocampus_split.json outside the tuning pool instead: the 40 tuning-validation cases plus the 80 left over
(A 72, B 31, C 17; never the 40 test cases), and writes RUN/sites_readout_extended.json.
"""
import argparse
import collections
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from medal.data import normalize_intensity
from medal.data.io import load_volume
from medal.model import load_checkpoint
from medal.training import dice_per_class
from medal.uncertainty.inference import predict_probs

ROOT = Path(__file__).resolve().parents[4]

ap = argparse.ArgumentParser()
ap.add_argument("run")
ap.add_argument("data")
ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
ap.add_argument("--rows", nargs="+", default=["random", "fg_random", "default"])
ap.add_argument("--eval", choices=["validation", "extended"], default="validation")
args = ap.parse_args()
torch.set_num_threads(int(os.environ.get("READOUT_THREADS", "2")))  # 1 beside a running benchmark
run, data = Path(args.run), Path(args.data)
sites = json.loads((data / "sites.json").read_text())
tuning = json.loads((ROOT / "benchmarks" / "hippocampus_tuning_split.json").read_text())
val = tuning["test"]
if args.eval == "extended":
    train_side = json.loads((ROOT / "benchmarks" / "hippocampus_split.json").read_text())["train"]
    val = sorted(set(train_side) - set(tuning["pool"]))
xs = {c: normalize_intensity(load_volume(data / "imagesTr" / f"{c}.nii.gz").array, method="zscore",
                             clip_percentiles=(0.5, 99.5)) for c in val}
ys = {c: load_volume(data / "labelsTr" / f"{c}.nii.gz").array.astype(int) for c in val}
out = {"val_cases_per_site": dict(collections.Counter(sites[c] for c in val))}
cache = {}


def dice_by_site(model):
    if model in cache:
        return cache[model]
    net = load_checkpoint(model)[0]
    per = collections.defaultdict(list)
    for c in val:
        pred = predict_probs(net, xs[c], roi_size=(32, 48, 32)).argmax(0)
        p, y = pred > 0, ys[c] > 0
        fg = 2 * (p & y).sum() / max(1, p.sum() + y.sum())
        per[sites[c]].append((fg, float(np.mean(dice_per_class(pred, ys[c], 3)))))
    cache[model] = {s: {"fg_dice": float(np.mean([a for a, _ in v])), "dice_mean": float(np.mean([b for _, b in v]))}
                    for s, v in sorted(per.items())}
    return cache[model]


for row in args.rows:
    for seed in args.seeds:
        d = run / row / f"seed_{seed}"
        rec = {"painted": {}, "dice": {}}
        for r, name in ((1, "round_000"), (2, "round_001")):
            log = d / name / "annotation_log.jsonl"
            cnt = collections.Counter()
            if log.is_file():
                for line in log.read_text().splitlines():
                    t = json.loads(line)
                    cnt[sites[t["case_id"]]] += 1
                    cnt[sites[t["case_id"]] + "_fg"] += bool(t.get("foreground"))
            rec["painted"][f"selection_{r}"] = dict(sorted(cnt.items()))
        for name in ("round_000", "round_001", "round_002"):
            m = d / name / "model.pt"
            if not m.is_file():
                shared = sorted((run / "shared").glob(f"seed_{seed}_*/{name}/model.pt"))
                m = shared[0] if shared else None
            if m is not None:
                rec["dice"][name] = dice_by_site(m)
        out[f"{row}/seed_{seed}"] = rec
        paint = " ".join(f"sel{r[-1]}: " + ",".join(f"{s}{v.get(s, 0)}({v.get(s + '_fg', 0)})" for s in "ABC")
                         for r, v in rec["painted"].items())
        dice = " ".join(f"{n[-1]}: " + ",".join(f"{s}{v[s]['fg_dice']:.3f}" for s in "ABC")
                        for n, v in rec["dice"].items())
        print(f"{row:10s} seed {seed} | painted slices (with fg) {paint} | fg Dice by site {dice}", flush=True)
(run / ("sites_readout.json" if args.eval == "validation" else "sites_readout_extended.json")).write_text(
    json.dumps(out, indent=1))
sys.exit(0)
