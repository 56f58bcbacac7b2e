"""Predicted vs true seconds of every axial slice, under variants of the expected effort features.

    python benchmarks/cost_probe.py RUN/round_000 [RUN/round_001 ...]

Offline, on the score volumes a label-efficiency run left (``--out`` folder of
``benchmarks/label_efficiency.py --split tuning``): for every pool case scored in each round folder,
the default cost model on the ground truth's features (what the simulation charges) against its
prediction from the round's model (argmax; expected over probability levels; with predicted pieces
under N px dropped). Per round: predicted/true totals (all, foreground, background slices), Spearman
rho, and the charged/predicted ratio of a greedy top-value and value-per-second pick of 600 s.
Last line: the rank correlation of the current default and of levels 0.5/0.7/0.9 + 4 px, mean over rounds.
"""
import json, sys
from pathlib import Path
import numpy as np
from scipy.ndimage import label as ndlabel
from medal.data import load_dataset
from medal.data.io import load_volume
from medal.costs import CostModel, effort_features
from medal.costs.features import level_segmentation, EXPECTED_LEVELS
from medal.regions.units import slice_units, resolve_axis

ds = load_dataset(str(Path(__file__).resolve().parents[2] / "shared" / "data" / "hippocampus"))
cm = CostModel.default(3)

def despeck(seg, axis, min_px):
    out = seg.copy()
    if min_px <= 0: return out
    for c in (1, 2):
        m = seg == c
        for k in range(seg.shape[axis]):
            sl = [slice(None)] * 3; sl[axis] = k
            mm = m[tuple(sl)]
            if not mm.any(): continue
            lab, n = ndlabel(mm)
            sizes = np.bincount(lab.ravel())
            small = np.isin(lab, np.where(sizes < min_px)[0]) & mm
            o = out[tuple(sl)]; o[small] = 0
    return out

def feats_expected(units, probs, axis, sp, levels, min_px=0):
    out = {}
    for lv in levels:
        f = effort_features(units, despeck(level_segmentation(probs, lv), axis, min_px), axis=axis, spacing=sp, n_classes=3)
        for k, v in f.items(): out[k] = out.get(k, 0) + v / len(levels)
    return out

variants = {
  "expected": dict(levels=EXPECTED_LEVELS, min_px=0),
  "expected_despeck4": dict(levels=EXPECTED_LEVELS, min_px=4),
  "expected_despeck9": dict(levels=EXPECTED_LEVELS, min_px=9),
  "levels_5_7_9": dict(levels=(0.5, 0.7, 0.9), min_px=0),
  "levels_5_7_9_despeck4": dict(levels=(0.5, 0.7, 0.9), min_px=4),
}
rows = []
for rd in map(Path, sys.argv[1:]):
    sc = rd / "scores"
    for cdir in sorted(p for p in sc.iterdir() if p.is_dir()):
        cid = cdir.name
        case = ds.case(cid)
        img = load_volume(case.image)
        truth = load_volume(case.label).array.astype(np.uint8)
        from medal.uncertainty.score import load_probs
        probs = load_probs(cdir / "probs.nii.gz")
        pred = load_volume(cdir / "prediction.nii.gz").array.astype(np.uint8)
        axis = resolve_axis("axial", img.orientation)
        units = slice_units(img.shape, axis=axis)
        sp = img.spacing
        t = cm.predict(effort_features(units, truth, axis=axis, spacing=sp, n_classes=3))
        r = {"run": str(rd), "case": cid, "true": t, "fg": np.array([(np.take(truth, k, axis=axis) > 0).any() for k in range(img.shape[axis])]),
             "argmax": cm.predict(effort_features(units, pred, axis=axis, spacing=sp, n_classes=3))}
        p = probs
        ent = -(p * np.log(np.clip(p, 1e-8, 1))).sum(0)
        r["value"] = np.array([(np.take(ent * (1 - p[0]), k, axis=axis)).sum() for k in range(img.shape[axis])])
        for name, kw in variants.items():
            r[name] = cm.predict(feats_expected(units, probs, axis, sp, **kw))
        rows.append(r)
names = ["argmax"] + list(variants)
rhos = {"expected": [], "levels_5_7_9_despeck4": []}
for run in dict.fromkeys(r["run"] for r in rows):
    R = [r for r in rows if r["run"] == run]
    T = np.concatenate([r["true"] for r in R]); FG = np.concatenate([r["fg"] for r in R]); V = np.concatenate([r["value"] for r in R])
    print(run, "slices", len(T), "true total", round(T.sum()))
    order = np.argsort(-V)
    for n in names:
        P = np.concatenate([r[n] for r in R])
        from scipy.stats import spearmanr
        # top-value greedy to 600 predicted seconds, and value-per-second greedy
        take = order[np.cumsum(P[order]) <= 600]
        vps = np.argsort(-V / np.maximum(P, 5))
        take2 = vps[np.cumsum(np.maximum(P[vps], 5)) <= 600]
        if n in rhos:
            rhos[n].append(spearmanr(P, T)[0])
        print(f"  {n:24s} all {P.sum()/T.sum():.2f} fg {P[FG].sum()/T[FG].sum():.2f} bg {P[~FG].sum()/T[~FG].sum():.2f} "
              f"rho {spearmanr(P, T)[0]:.2f} | top-value {T[take].sum()/P[take].sum():.2f} ({len(take)}) "
              f"| value/s {T[take2].sum()/np.maximum(P[take2],5).sum():.2f} ({len(take2)})")
print(f"slice_seconds_rho_expected_vs_levels579_pieces4: {np.mean(rhos['expected']):.2f} -> "
      f"{np.mean(rhos['levels_5_7_9_despeck4']):.2f}")
