"""Mixed voxel spacing: does `data.spacing: median` (train and predict at one spacing) beat each case's own grid?

    python benchmarks/mixed_spacing.py [--quick] [--seeds 0 1] [--thick-share 0.33] [--work DIR]

A dataset as a group with two scanner protocols brings it, built from the real hippocampus cases of the
tuning split (`hippocampus_tuning_split.json`: its 60 pool cases train, its 40 validation cases are scored;
the 40 test cases of `hippocampus_split.json` are never read). A fixed third of the cases of each side is
rewritten as a thick-slice scanner writes them: every 3 consecutive slices along the last array axis
averaged into one (partial volume), the voxel 3x as long along that axis in the header, the label the
middle slice of each three. Each seed trains the CPU label-efficiency config (`label_efficiency_cpu.yaml`,
800 steps from scratch) on all pool labels twice, `data.spacing: null` (each case's own grid, medal's
default) and `median`, and takes the foreground Dice of every validation case on its own grid with
`medal.simulation.evaluate` (the code path simulations use). Paired by case and seed.

Writes `benchmarks/results/mixed_spacing.json`; appends to RESULTS.md. Last line:
``mixed_spacing_thick_dice: median X vs own-grid Y (ratio R)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DATA = HERE.parent.parent / "shared" / "data" / "hippocampus"
SPLIT = HERE / "hippocampus_tuning_split.json"
K = 3  # slices averaged into one thick slice


def thick_cases(ids: list[str], share: float, seed: int = 20261207) -> set[str]:
    order = np.random.default_rng(seed).permutation(sorted(ids)).tolist()
    return set(order[:int(round(share * len(order)))])


def derive(src: Path, out: Path, ids: list[str], thick: set[str]) -> Path:
    """The cases ``ids`` of ``src``, those in ``thick`` as thick-slice scans (see the module docstring)."""
    from _derived import write_derived

    from medal.data import Volume, load_dataset, load_volume, save_volume

    stamp = out / "derived.json"
    want = {"ids": sorted(ids), "thick": sorted(thick), "k": K}
    if stamp.is_file() and json.loads(stamp.read_text()) == want:
        return out
    ds = load_dataset(src)
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    for cid in ids:
        case = ds.case(cid)
        img, lab = load_volume(case.image), load_volume(case.label)
        if cid in thick:
            n = img.shape[2] // K
            x = img.array[:, :, :n * K].astype(np.float32).reshape(*img.shape[:2], n, K).mean(axis=3)
            y = lab.array[:, :, K // 2:n * K:K]
            aff = img.affine.copy()
            aff[:3, 3] += aff[:3, 2] * (K - 1) / 2  # the thick voxel's centre
            aff[:3, 2] *= K
            img, lab = Volume(np.ascontiguousarray(x), aff), Volume(np.ascontiguousarray(y), aff)
        save_volume(img, out / "imagesTr" / f"{cid}.nii.gz")
        save_volume(lab, out / "labelsTr" / f"{cid}.nii.gz")
    meta = json.loads((src / "dataset.json").read_text())
    meta["training"] = [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in sorted(ids)]
    meta["numTraining"] = len(ids)
    meta.pop("test", None)
    meta["numTest"] = 0
    write_derived(src, out, meta, name="Hippocampus, mixed spacing (derived)",
                  how=f"{len(thick)} of {len(ids)} cases as {K}-voxel thick slices along the last axis (averaged "
                      f"image, middle-slice label, {K}x spacing in the header)", script="mixed_spacing.py",
                  remark="The thin cases are the Decathlon files unchanged; the thick ones are computed from them.")
    stamp.write_text(json.dumps(want))
    return out


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, 2 epochs x 10 steps (smoke run)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--thick-share", type=float, default=0.33)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--work", default="/tmp/medal_mixed_spacing")
    ap.add_argument("--config", default=str(HERE.parent / "configs" / "label_efficiency_cpu.yaml"))
    args = ap.parse_args(argv)

    from _record import record

    from medal.config import load_config
    from medal.data import load_dataset
    from medal.data.resample import resolve_spacing
    from medal.simulation.simulate import evaluate
    from medal.training import prepare_items, train_model

    split = json.loads(SPLIT.read_text())
    pool, val = sorted(split["pool"]), sorted(split["test"])
    thick = thick_cases(pool, args.thick_share) | thick_cases(val, args.thick_share)
    work = Path(args.work)
    ds = load_dataset(derive(Path(args.data), work / "data", pool + val, thick))
    base = load_config(args.config)
    base = dataclasses.replace(base, simulation=dataclasses.replace(base.simulation, variants={},
                                                                          strategies=("random",)))  # no simulation here
    seeds = args.seeds[:1] if args.quick else args.seeds
    settings = {"own grid (null)": None, "median": "median"}
    dice: dict[str, dict[int, np.ndarray]] = {s: {} for s in settings}
    wall: dict[str, list[float]] = {s: [] for s in settings}
    target = None
    for seed in seeds:
        for name, spec in settings.items():
            cfg = dataclasses.replace(base, data=dataclasses.replace(base.data, spacing=spec))
            tcfg = dataclasses.replace(cfg.training, seed=seed, val_fraction=0.0)
            if args.quick:
                tcfg = dataclasses.replace(tcfg, max_epochs=2, iterations_per_epoch=10)
            spacing = resolve_spacing(cfg.data, ds)
            target = spacing or target
            t0 = time.perf_counter()
            items = prepare_items(ds, cfg.data, case_ids=set(pool), spacing=spacing)
            ckpt = work / f"seed{seed}_{spec or 'null'}.pt"
            train_model(items, [], n_classes=ds.n_classes, model_cfg=cfg.model, train_cfg=tcfg, checkpoint=ckpt,
                        progress=False, label_map=ds.label_map, spacing=spacing)
            per_case = evaluate(ckpt, ds, val, cfg, per_case=True)
            wall[name].append(time.perf_counter() - t0)
            dice[name][seed] = per_case.mean(axis=1)  # mean foreground Dice per validation case
            print(json.dumps({"seed": seed, "setting": name, "dice": float(dice[name][seed].mean()),
                              "wall_s": round(wall[name][-1])}), flush=True)

    from scipy.stats import wilcoxon

    is_thick = np.array([c in thick for c in val])
    rows, out = [], {"split": SPLIT.name, "pool": len(pool), "validation": len(val), "thick_share": args.thick_share,
                     "thick_validation": int(is_thick.sum()), "k": K, "seeds": seeds, "median_spacing": target,
                     "quick": args.quick, "settings": {}}
    for name in settings:
        d = np.stack([dice[name][s] for s in seeds])
        out["settings"][name] = {"thick": float(d[:, is_thick].mean()), "thin": float(d[:, ~is_thick].mean()),
                                 "all": float(d.mean()), "per_seed_all": d.mean(1).tolist(),
                                 "per_seed_thick": d[:, is_thick].mean(1).tolist(),
                                 "train_and_eval_s": float(np.mean(wall[name]))}
        rows.append(f"| {name} | {d[:, is_thick].mean():.3f} | {d[:, ~is_thick].mean():.3f} | {d.mean():.3f} | "
                    f"{' / '.join(f'{v:.3f}' for v in d[:, is_thick].mean(1))} | {np.mean(wall[name]) / 60:.1f} |")
    a = np.stack([dice["median"][s] for s in seeds])
    b = np.stack([dice["own grid (null)"][s] for s in seeds])
    comp = {}
    for part, mask in (("thick", is_thick), ("thin", ~is_thick), ("all", np.ones_like(is_thick))):
        diff = (a[:, mask] - b[:, mask]).ravel()
        p = float(wilcoxon(diff).pvalue) if np.any(diff != 0) else 1.0
        comp[part] = {"mean_difference": float(diff.mean()), "p_wilcoxon": p,
                      "pairs_median_better": int((diff > 0).sum()), "pairs": int(diff.size)}
    out["median_vs_own_grid"] = comp
    res_dir = HERE / "results"
    res_dir.mkdir(exist_ok=True)
    (res_dir / ("mixed_spacing_quick.json" if args.quick else "mixed_spacing.json")).write_text(
        json.dumps(out, indent=1) + "\n")
    lines = [
        f"- data: the tuning split's {len(pool)} pool cases (trained on, all labels) and {len(val)} validation "
        f"cases (scored); {int(is_thick.sum())} validation and {len(thick) - int(is_thick.sum())} pool cases "
        f"rewritten as {K}-voxel thick slices along the last axis (`{work / 'data'}`); median spacing "
        f"{tuple(round(v, 3) for v in target) if target else None}",
        f"- config `{Path(args.config).name}`"
        f"{', --quick: 2 epochs x 10 steps' if args.quick else ''}; seeds {seeds}; Dice on each case's own grid",
        "",
        "| data.spacing | thick cases: fg Dice | thin cases | all | thick, per seed | train + score, min |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "Paired by validation case and seed (Wilcoxon): " + "; ".join(
            f"{part} {c['mean_difference']:+.3f} (median better in {c['pairs_median_better']}/{c['pairs']}, "
            f"p = {c['p_wilcoxon']:.2g})" for part, c in comp.items()),
    ]
    record("Mixed voxel spacing, Hippocampus (derived), tuning split" + (" (quick)" if args.quick else ""), lines)
    ta, tb = out["settings"]["median"]["thick"], out["settings"]["own grid (null)"]["thick"]
    head = f"mixed_spacing_thick_dice: median {ta:.3f} vs own-grid {tb:.3f} (ratio {ta / max(tb, 1e-9):.2f})"
    print(head)
    return head


if __name__ == "__main__":
    main()
