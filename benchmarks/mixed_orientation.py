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

import dataclasses
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
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
    from _paired_data import write_copy

    return write_copy(src, out, ids, turned, lambda img, lab: (turn(img), turn(lab)),
                      want={"ids": sorted(ids), "turned": sorted(turned)},
                      name="Hippocampus, mixed orientation (derived)",
                      how=f"{len(turned)} of {len(ids)} cases stored with the first two array axes swapped and reversed "
                          "(the affine changed to match: the same voxels in the same world positions)",
                      script="mixed_orientation.py",
                      remark="The other cases are the Decathlon files unchanged; the turned ones hold the same voxels.")


def main(argv=None) -> str:
    from _paired_data import arguments, paired, split_and_base, summarise, train_and_score, write_result

    args = arguments(__doc__, "--turned-share", "/tmp/medal_mixed_orientation", argv)

    from _record import record

    from medal.data import load_dataset, load_volume

    pool, val, base = split_and_base(SPLIT, args.config)
    turned = turned_cases(pool, args.turned_share) | turned_cases(val, args.turned_share)
    work = Path(args.work)
    ds = load_dataset(derive(Path(args.data), work / "data", pool + val, turned))
    codes = load_volume(ds.case(next(c for c in pool if c not in turned)).image).orientation
    seeds = args.seeds[:1] if args.quick else args.seeds
    settings = {name: dataclasses.replace(base.data, orientation=spec)
                for name, spec in {"storage order (null)": None, codes: codes}.items()}
    dice, wall, target = train_and_score(ds, pool, val, base, settings, seeds, quick=args.quick, work=work)

    is_turned = np.array([c in turned for c in val])
    out = {"split": SPLIT.name, "pool": len(pool), "validation": len(val), "turned_share": args.turned_share,
           "turned_validation": int(is_turned.sum()), "orientation": codes, "seeds": seeds,
           "spacing": target, "quick": args.quick, "settings": {}}
    rows, out["settings"] = summarise(dice, wall, seeds, is_turned, "turned", "as_stored")
    a = np.stack([dice[codes][s] for s in seeds])
    b = np.stack([dice["storage order (null)"][s] for s in seeds])
    comp = paired(a, b, {"turned": is_turned, "as stored": ~is_turned, "all": np.ones_like(is_turned)})
    for c in comp.values():
        c["pairs_oriented_better"] = c.pop("pairs_a_better")
    out["oriented_vs_storage_order"] = comp
    write_result("mixed_orientation", out, args.quick)
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
