"""Mixed storage orientation: does `data.orientation` (the network sees every case in one axis order) beat each
case's own storage order?

    python benchmarks/mixed_orientation.py [--quick] [--seeds 0 1] [--turned-share 0.33] [--work DIR]

A dataset as a group whose scans come from two converters brings it, built from the real hippocampus cases of the
tuning split (`hippocampus_tuning_split.json`: its 60 pool cases train, its 40 validation cases are scored; the 40
test cases of `hippocampus_split.json` are never read). A fixed third of the cases of each side is stored the way
another converter writes the same scan: the first two array axes swapped and both reversed, the affine changed to
match (the voxels' world positions are the same: a lossless change of storage order). Each seed trains the CPU
label-efficiency config (`label_efficiency_cpu.yaml`, 800 steps from scratch) on all pool labels twice,
`data.orientation: null` (each case's storage order) and the untouched cases' axis codes (RAS), and takes the
foreground Dice of every validation case on its own grid with `medal.simulation.evaluate` (the code path
simulations use). Paired by case and seed.

Writes `benchmarks/results/mixed_orientation.json`; appends to RESULTS.md. Last line:
``mixed_orientation_turned_dice: oriented X vs storage-order Y (ratio R)``.
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


def turned_cases(ids: list[str], share: float, seed: int = 20261207) -> set[str]:
    order = np.random.default_rng(seed).permutation(sorted(ids)).tolist()
    return set(order[:int(round(share * len(order)))])


def turn(volume):
    """The same scan stored with its first two array axes swapped and both reversed; world positions unchanged."""
    from medal.data import Volume

    n0, n1 = volume.shape[0], volume.shape[1]
    idx = np.zeros((4, 4))  # new index (i, j, k) -> old index (n0 - 1 - j, n1 - 1 - i, k)
    idx[0, 1], idx[1, 0], idx[2, 2], idx[3, 3] = -1.0, -1.0, 1.0, 1.0
    idx[0, 3], idx[1, 3] = n0 - 1, n1 - 1
    return Volume(np.ascontiguousarray(np.flip(volume.array, (0, 1)).transpose(1, 0, 2)), volume.affine @ idx)


def derive(src: Path, out: Path, ids: list[str], turned: set[str]) -> Path:
    """The cases ``ids`` of ``src``, those in ``turned`` stored in the other order (see the module docstring)."""
    from _derived import write_derived

    from medal.data import load_dataset, load_volume, save_volume

    stamp = out / "derived.json"
    want = {"ids": sorted(ids), "turned": sorted(turned)}
    if stamp.is_file() and json.loads(stamp.read_text()) == want:
        return out
    ds = load_dataset(src)
    (out / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out / "labelsTr").mkdir(parents=True, exist_ok=True)
    for cid in ids:
        case = ds.case(cid)
        img, lab = load_volume(case.image), load_volume(case.label)
        if cid in turned:
            img, lab = turn(img), turn(lab)
        save_volume(img, out / "imagesTr" / f"{cid}.nii.gz")
        save_volume(lab, out / "labelsTr" / f"{cid}.nii.gz")
    meta = json.loads((src / "dataset.json").read_text())
    meta["training"] = [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in sorted(ids)]
    meta["numTraining"] = len(ids)
    meta.pop("test", None)
    meta["numTest"] = 0
    write_derived(src, out, meta, name="Hippocampus, mixed orientation (derived)",
                  how=f"{len(turned)} of {len(ids)} cases stored with the first two array axes swapped and reversed "
                      "(the affine changed to match: the same voxels in the same world positions)",
                  script="mixed_orientation.py",
                  remark="The other cases are the Decathlon files unchanged; the turned ones hold the same voxels.")
    stamp.write_text(json.dumps(want))
    return out


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 seed, 2 epochs x 10 steps (smoke run)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--turned-share", type=float, default=0.33)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--work", default="/tmp/medal_mixed_orientation")
    ap.add_argument("--config", default=str(HERE.parent / "configs" / "label_efficiency_cpu.yaml"))
    args = ap.parse_args(argv)

    from _record import record

    from medal.config import load_config
    from medal.data import load_dataset, load_volume
    from medal.data.resample import resolve_spacing
    from medal.simulation.simulate import evaluate
    from medal.training import prepare_items, train_model

    split = json.loads(SPLIT.read_text())
    pool, val = sorted(split["pool"]), sorted(split["test"])
    turned = turned_cases(pool, args.turned_share) | turned_cases(val, args.turned_share)
    work = Path(args.work)
    ds = load_dataset(derive(Path(args.data), work / "data", pool + val, turned))
    codes = load_volume(ds.case(next(c for c in pool if c not in turned)).image).orientation
    base = load_config(args.config)
    base = dataclasses.replace(base, simulation=dataclasses.replace(base.simulation, variants={},
                                                                          strategies=("random",)))  # no simulation here
    seeds = args.seeds[:1] if args.quick else args.seeds
    settings = {"storage order (null)": None, codes: codes}
    dice: dict[str, dict[int, np.ndarray]] = {s: {} for s in settings}
    wall: dict[str, list[float]] = {s: [] for s in settings}
    target = None
    for seed in seeds:
        for name, spec in settings.items():
            cfg = dataclasses.replace(base, data=dataclasses.replace(base.data, orientation=spec))
            tcfg = dataclasses.replace(cfg.training, seed=seed, val_fraction=0.0)
            if args.quick:
                tcfg = dataclasses.replace(tcfg, max_epochs=2, iterations_per_epoch=10)
            spacing = resolve_spacing(cfg.data, ds)
            target = spacing or target
            t0 = time.perf_counter()
            items = prepare_items(ds, cfg.data, case_ids=set(pool), spacing=spacing, orientation=spec)
            ckpt = work / f"seed{seed}_{spec or 'null'}.pt"
            train_model(items, [], n_classes=ds.n_classes, model_cfg=cfg.model, train_cfg=tcfg, checkpoint=ckpt,
                        progress=False, label_map=ds.label_map, spacing=spacing, orientation=spec)
            per_case = evaluate(ckpt, ds, val, cfg, per_case=True)
            wall[name].append(time.perf_counter() - t0)
            dice[name][seed] = per_case.mean(axis=1)  # mean foreground Dice per validation case
            print(json.dumps({"seed": seed, "setting": name, "dice": float(dice[name][seed].mean()),
                              "wall_s": round(wall[name][-1])}), flush=True)

    from scipy.stats import wilcoxon

    is_turned = np.array([c in turned for c in val])
    rows, out = [], {"split": SPLIT.name, "pool": len(pool), "validation": len(val), "turned_share": args.turned_share,
                     "turned_validation": int(is_turned.sum()), "orientation": codes, "seeds": seeds,
                     "spacing": target, "quick": args.quick, "settings": {}}
    for name in settings:
        d = np.stack([dice[name][s] for s in seeds])
        out["settings"][name] = {"turned": float(d[:, is_turned].mean()), "as_stored": float(d[:, ~is_turned].mean()),
                                 "all": float(d.mean()), "per_seed_all": d.mean(1).tolist(),
                                 "per_seed_turned": d[:, is_turned].mean(1).tolist(),
                                 "train_and_eval_s": float(np.mean(wall[name]))}
        rows.append(f"| {name} | {d[:, is_turned].mean():.3f} | {d[:, ~is_turned].mean():.3f} | {d.mean():.3f} | "
                    f"{' / '.join(f'{v:.3f}' for v in d[:, is_turned].mean(1))} | {np.mean(wall[name]) / 60:.1f} |")
    a = np.stack([dice[codes][s] for s in seeds])
    b = np.stack([dice["storage order (null)"][s] for s in seeds])
    comp = {}
    for part, mask in (("turned", is_turned), ("as stored", ~is_turned), ("all", np.ones_like(is_turned))):
        diff = (a[:, mask] - b[:, mask]).ravel()
        p = float(wilcoxon(diff).pvalue) if np.any(diff != 0) else 1.0
        comp[part] = {"mean_difference": float(diff.mean()), "p_wilcoxon": p,
                      "pairs_oriented_better": int((diff > 0).sum()), "pairs": int(diff.size)}
    out["oriented_vs_storage_order"] = comp
    res_dir = HERE / "results"
    res_dir.mkdir(exist_ok=True)
    (res_dir / ("mixed_orientation_quick.json" if args.quick else "mixed_orientation.json")).write_text(
        json.dumps(out, indent=1) + "\n")
    lines = [
        f"- data: the tuning split's {len(pool)} pool cases (trained on, all labels) and {len(val)} validation "
        f"cases (scored); {int(is_turned.sum())} validation and {len(turned) - int(is_turned.sum())} pool cases "
        f"stored with the first two axes swapped and reversed (`{work / 'data'}`); the others {codes}",
        f"- config `{Path(args.config).name}`"
        f"{', --quick: 2 epochs x 10 steps' if args.quick else ''}; seeds {seeds}; Dice on each case's own grid",
        "",
        "| data.orientation | turned cases: fg Dice | as stored | all | turned, per seed | train + score, min |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        "Paired by validation case and seed (Wilcoxon): " + "; ".join(
            f"{part} {c['mean_difference']:+.3f} ({codes} better in {c['pairs_oriented_better']}/{c['pairs']}, "
            f"p = {c['p_wilcoxon']:.2g})" for part, c in comp.items()),
    ]
    record("Mixed storage orientation, Hippocampus (derived), tuning split" + (" (quick)" if args.quick else ""), lines)
    ta, tb = out["settings"][codes]["turned"], out["settings"]["storage order (null)"]["turned"]
    head = (f"mixed_orientation_turned_dice: oriented {ta:.3f} vs storage-order {tb:.3f} "
            f"(ratio {ta / max(tb, 1e-9):.2f})")
    print(head)
    return head


if __name__ == "__main__":
    main()
