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

import dataclasses
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
SPLIT = HERE / "hippocampus_tuning_split.json"
K = 3  # slices averaged into one thick slice


def thick_cases(ids: list[str], share: float, seed: int = 20261207) -> set[str]:
    order = np.random.default_rng(seed).permutation(sorted(ids)).tolist()
    return set(order[:int(round(share * len(order)))])


def _thicken(img, lab):
    """Every K slices along the last axis averaged into one, the middle slice's label, K x the spacing."""
    from medal.data import Volume

    n = img.shape[2] // K
    x = img.array[:, :, :n * K].astype(np.float32).reshape(*img.shape[:2], n, K).mean(axis=3)
    y = lab.array[:, :, K // 2:n * K:K]
    aff = img.affine.copy()
    aff[:3, 3] += aff[:3, 2] * (K - 1) / 2  # the thick voxel's centre
    aff[:3, 2] *= K
    return Volume(np.ascontiguousarray(x), aff), Volume(np.ascontiguousarray(y), aff)


def derive(src: Path, out: Path, ids: list[str], thick: set[str]) -> Path:
    """The cases ``ids`` of ``src``, those in ``thick`` as thick-slice scans (see the module docstring)."""
    from _paired_data import write_copy

    return write_copy(src, out, ids, thick, _thicken, want={"ids": sorted(ids), "thick": sorted(thick), "k": K},
                      name="Hippocampus, mixed spacing (derived)",
                      how=f"{len(thick)} of {len(ids)} cases as {K}-voxel thick slices along the last axis (averaged "
                          f"image, middle-slice label, {K}x spacing in the header)", script="mixed_spacing.py",
                      remark="The thin cases are the Decathlon files unchanged; the thick ones are computed from them.")


def main(argv=None) -> str:
    from _paired_data import arguments, paired, split_and_base, summarise, train_and_score, write_result

    args = arguments(__doc__, "--thick-share", "/tmp/medal_mixed_spacing", argv)

    from _record import record

    from medal.data import load_dataset

    pool, val, base = split_and_base(SPLIT, args.config)
    thick = thick_cases(pool, args.thick_share) | thick_cases(val, args.thick_share)
    work = Path(args.work)
    ds = load_dataset(derive(Path(args.data), work / "data", pool + val, thick))
    seeds = args.seeds[:1] if args.quick else args.seeds
    settings = {name: dataclasses.replace(base.data, spacing=spec)
                for name, spec in {"own grid (null)": None, "median": "median"}.items()}
    dice, wall, target = train_and_score(ds, pool, val, base, settings, seeds, quick=args.quick, work=work)

    is_thick = np.array([c in thick for c in val])
    out = {"split": SPLIT.name, "pool": len(pool), "validation": len(val), "thick_share": args.thick_share,
           "thick_validation": int(is_thick.sum()), "k": K, "seeds": seeds, "median_spacing": target,
           "quick": args.quick, "settings": {}}
    rows, out["settings"] = summarise(dice, wall, seeds, is_thick, "thick", "thin")
    a = np.stack([dice["median"][s] for s in seeds])
    b = np.stack([dice["own grid (null)"][s] for s in seeds])
    comp = paired(a, b, {"thick": is_thick, "thin": ~is_thick, "all": np.ones_like(is_thick)})
    for c in comp.values():
        c["pairs_median_better"] = c.pop("pairs_a_better")
    out["median_vs_own_grid"] = comp
    write_result("mixed_spacing", out, args.quick)
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
