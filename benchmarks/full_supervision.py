"""Full-supervision reference: train on every labelled training case, Dice on a fixed held-out split.

    python benchmarks/full_supervision.py [--quick] [--config configs/hippocampus_full.yaml]

The held-out split lives in benchmarks/hippocampus_split.json (written once, then only read): the
label-efficiency benchmark evaluates on the same test cases, and this Dice is its 100% line.
Last line: ``full_supervision_dice: 0.xxx``.
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
SPLIT = HERE / "hippocampus_split.json"


def fixed_split(case_ids: list[str], *, n_test: int = 40, seed: int = 20261121) -> dict:
    if SPLIT.is_file():
        return json.loads(SPLIT.read_text())
    order = np.random.default_rng(seed).permutation(sorted(case_ids)).tolist()
    split = {"seed": seed, "test": sorted(order[:n_test]), "train": sorted(order[n_test:])}
    SPLIT.write_text(json.dumps(split, indent=1) + "\n")
    return split


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(HERE.parent / "configs" / "hippocampus_full.yaml"))
    ap.add_argument("--quick", action="store_true", help="a few epochs only (smoke run)")
    ap.add_argument("--data", default=str(DATA))
    args = ap.parse_args(argv)

    from _record import record

    from medal.config import load_config
    from medal.data import load_dataset
    from medal.training import dice_per_class, prepare_items, split_items, train_model
    from medal.uncertainty.inference import predict_probs

    cfg = load_config(args.config)
    tcfg = cfg.training
    if args.quick:
        tcfg = dataclasses.replace(tcfg, max_epochs=2, iterations_per_epoch=10)
    ds = load_dataset(args.data)
    split = fixed_split([c.case_id for c in ds.cases])
    items = prepare_items(ds, cfg.data, case_ids=set(split["train"]))
    test = prepare_items(ds, cfg.data, case_ids=set(split["test"]))
    train, val = split_items(items, tcfg.val_fraction, tcfg.seed)
    n_classes = len(ds.label_names)
    t0 = time.perf_counter()
    res = train_model(train, val, n_classes=n_classes, model_cfg=cfg.model, train_cfg=tcfg,
                      log=lambda r: print(json.dumps(r), flush=True))
    train_s = time.perf_counter() - t0
    roi = tuple(int(np.ceil(s / d) * d) for s, d in zip(tcfg.patch_size, cfg.model.divisors))
    per_case = np.array([dice_per_class(predict_probs(res.net, it.image, roi_size=roi).argmax(0), it.label, n_classes)
                         for it in test])
    mean = float(per_case.mean())
    names = [ds.label_names[i] for i in range(1, n_classes)]
    lines = [
        f"- split: {SPLIT.name} ({len(split['train'])} train cases of which {len(val)} validation, "
        f"{len(split['test'])} test)",
        f"- config: `{Path(args.config).name}`{' with --quick (2 epochs x 10 iterations)' if args.quick else ''}: "
        f"`{json.dumps(dataclasses.asdict(cfg.model))}`, training `{json.dumps(dataclasses.asdict(tcfg))}`",
        f"- training wall time: {train_s / 60:.1f} min, {len(res.history)} epochs, best epoch {res.best_epoch} "
        f"(validation Dice {res.best_val_dice:.3f})",
        "",
        "| test Dice | " + " | ".join(names) + " | mean foreground |",
        "| --- | " + " | ".join("---" for _ in names) + " | --- |",
        "| medal | " + " | ".join(f"{v:.3f}" for v in per_case.mean(0)) + f" | **{mean:.3f}** |",
        "| nnActive's nnU-Net (reported, GPU, full schedule) | | | 0.895 |",
    ]
    record("Full-supervision reference, hippocampus" + (" (quick)" if args.quick else ""), lines)
    print(f"full_supervision_dice: {mean:.3f}")
    return mean


if __name__ == "__main__":
    main()
