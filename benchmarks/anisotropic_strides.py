"""Thick slices: does pooling the thick axis later (`model.strides` per axis, as nnU-Net's plans do) help?

    python benchmarks/anisotropic_strides.py [--quick] [--seeds 0 1] [--work DIR]

Every real hippocampus case of the tuning split (`hippocampus_tuning_split.json`: 60 pool cases train, all labels;
its 40 validation cases are scored; the 40 test cases of `hippocampus_split.json` are never read) rewritten as a
thick-slice scan (`mixed_spacing.py`'s rewrite: every 3 slices along the last array axis averaged into one, the
middle slice's label, 3x the spacing), so the network's grid (`data.spacing: median`) is ~1 x 1 x 3 mm and ~12
voxels deep. The CPU label-efficiency config (`label_efficiency_cpu.yaml`, two down-sampling stages, 800 steps
from scratch) trains three ways, paired by seed: as shipped (patch and sliding window 32 x 48 x 32, strides
[2, 2]); the same with a patch 16 deep (32 x 48 x 16, most of a 32-deep patch is padding here); and that patch with
the first stage pooling in plane only (strides [[2, 2, 1], 2]: the thick axis is halved once, not twice).
Foreground Dice of every validation case on its own grid (`medal.simulation.evaluate`).

Writes `benchmarks/results/anisotropic_strides.json`; appends to RESULTS.md. Last line:
``anisotropic_strides_dice: per-axis X vs isotropic Y (same patch)``.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
SPLIT = HERE / "hippocampus_tuning_split.json"


def main(argv=None) -> str:
    from _paired_data import arguments, paired, split_and_base, train_and_score, write_result
    from _record import record
    from mixed_spacing import K, derive

    from medal.data import load_dataset

    args = arguments(__doc__, "--thick-share", "/tmp/medal_anisotropic", argv)
    pool, val, base = split_and_base(SPLIT, args.config)
    work = Path(args.work)
    ds = load_dataset(derive(Path(args.data), work / "data", pool + val, set(pool + val)))
    seeds = args.seeds[:1] if args.quick else args.seeds
    base = dataclasses.replace(base, data=dataclasses.replace(base.data, spacing="median"))
    flat = (32, 48, 16)

    def variant(strides, patch):
        return dataclasses.replace(
            base, model=dataclasses.replace(base.model, strides=strides),
            training=dataclasses.replace(base.training, patch_size=patch),
            uncertainty=dataclasses.replace(base.uncertainty, roi_size=patch))

    settings = {"shipped (patch 32x48x32, strides [2, 2])": base,
                "patch 32x48x16, strides [2, 2]": variant((2, 2), flat),
                "patch 32x48x16, strides [[2, 2, 1], 2]": variant(((2, 2, 1), 2), flat)}
    dice, wall, target = train_and_score(ds, pool, val, base, settings, seeds, quick=args.quick, work=work)
    names = list(settings)
    every = np.ones(len(val), bool)
    rows, figures = [], {}
    for name in names:
        d = np.stack([dice[name][s] for s in seeds])
        figures[name] = {"dice": float(d.mean()), "per_seed": d.mean(1).tolist(),
                         "train_and_eval_s": float(np.mean(wall[name]))}
        rows.append(f"| {name} | {d.mean():.4f} | {' / '.join(f'{v:.4f}' for v in d.mean(1))} | "
                    f"{np.mean(wall[name]) / 60:.1f} |")
    a = np.stack([dice[names[2]][s] for s in seeds])
    b = np.stack([dice[names[1]][s] for s in seeds])
    c = np.stack([dice[names[0]][s] for s in seeds])
    comp = {"per_axis_vs_isotropic_same_patch": paired(a, b, {"all": every})["all"],
            "per_axis_vs_shipped": paired(a, c, {"all": every})["all"]}
    out = {"split": SPLIT.name, "pool": len(pool), "validation": len(val), "k": K, "seeds": seeds,
           "median_spacing": target, "quick": args.quick, "settings": figures, "comparisons": comp}
    write_result("anisotropic_strides", out, args.quick)
    lines = [
        f"- data: the tuning split's {len(pool)} pool cases (trained on, all labels) and {len(val)} validation cases "
        f"(scored), every one rewritten as {K}-voxel thick slices along the last axis (`{work / 'data'}`); network "
        f"spacing (median) {tuple(round(v, 3) for v in target) if target else None}",
        f"- config `{Path(args.config).name}` with `data.spacing: median`"
        f"{', --quick: 2 epochs x 10 steps' if args.quick else ''}; seeds {seeds}; Dice on each case's own grid",
        "",
        "| setting | fg Dice, validation cases | per seed | train + score, min |",
        "| --- | --- | --- | --- |",
        *rows,
        "",
        "Paired by validation case and seed (Wilcoxon): " + "; ".join(
            f"{k.replace('_', ' ')} {v['mean_difference']:+.4f} (per-axis better in {v['pairs_a_better']}/"
            f"{v['pairs']}, p = {v['p_wilcoxon']:.2g})" for k, v in comp.items()),
    ]
    record("Thick slices: per-axis strides, Hippocampus (derived), tuning split" + (" (quick)" if args.quick else ""),
           lines)
    head = (f"anisotropic_strides_dice: per-axis {figures[names[2]]['dice']:.3f} vs isotropic "
            f"{figures[names[1]]['dice']:.3f} (same patch)")
    print(head)
    return head


if __name__ == "__main__":
    main()
