"""Does Dice on a *fixed* label set still grow with more optimiser steps? (choosing the per-round schedule)

    python benchmarks/training_schedule.py [--quick] [--steps 100 200 400 800 1600] [--budgets 600 3000]

A learning curve should measure labels, not training: if a round's model is undertrained, every
later round looks better partly because it trained longer. This benchmark builds fixed partial-label
sets (random slices of the *tuning* pool, charged at their true cost, ``hippocampus_tuning_split.json``),
trains the label-efficiency CPU model on each from scratch with a growing number of steps, and also
with the round schedule medal uses (``training.steps`` rules: fixed, or scaled with annotated slices),
and evaluates on the tuning validation cases. Never on the 40 test cases.

Runs two single-threaded worker processes side by side (two 1-thread processes train ~1.3x faster on 2
cores than one 2-thread process, and the results do not depend on how many run at once).
Last line: ``dice_gain_doubling_steps: X`` (Dice at the largest step count minus Dice at half of it,
mean over label sets and seeds).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DATA = HERE.parent.parent / "shared" / "data" / "hippocampus"


def _job(args):
    """One training run in a worker: (label folder, steps, seed[, init]) -> Dice on the validation cases."""
    labels, steps, seed, config, data, split, ckpt, init = args
    import torch

    torch.set_num_threads(1)
    from medal.config import load_config
    from medal.data import load_dataset
    from medal.simulation import evaluate, split_cases
    from medal.training import prepare_items, train_model

    cfg = load_config(config)
    sim = dataclasses.replace(cfg.simulation, split_file=split, max_pool=0)
    ds = load_dataset(data)
    pool, test = split_cases(ds, sim)
    items = prepare_items(ds, cfg.data, labels_dir=labels, case_ids=set(pool))
    iters = cfg.training.iterations_per_epoch
    tcfg = dataclasses.replace(cfg.training, seed=seed, max_epochs=max(1, steps // iters), val_fraction=0.0)
    t0 = time.perf_counter()
    res = train_model(items, [], n_classes=3, model_cfg=cfg.model, train_cfg=tcfg, progress=False,
                      checkpoint=ckpt, init=init)
    dice = evaluate(res.checkpoint, ds, test, cfg)
    return {"labels": str(labels), "steps": tcfg.max_epochs * iters, "seed": seed, "init": init,
            "dice": float(dice.mean()), "dice_per_class": [float(d) for d in dice],
            "train_s": time.perf_counter() - t0}


def _run(jobs, workers):
    import multiprocessing as mp

    rows = []
    with mp.get_context("spawn").Pool(workers) as pool:
        for r in pool.imap_unordered(_job, jobs):
            print(json.dumps(r), flush=True)
            rows.append(r)
    return rows


def make_label_sets(ds, cfg, budgets, out: Path) -> dict[float, Path]:
    """Random slices of the pool worth ``budget`` true seconds, painted by the oracle, per budget."""
    from medal.costs import CostModel
    from medal.simulation.simulate import initial_labels, split_cases

    pool, _ = split_cases(ds, cfg.simulation)
    cost_model = CostModel.default(3)
    sets = {}
    for b in budgets:
        run = out / f"labels_{int(b)}s"
        c = dataclasses.replace(cfg, simulation=dataclasses.replace(cfg.simulation, initial_budget_s=float(b)))
        spent = initial_labels(run, ds, pool, c, 0, cost_model, out / f"cache_{int(b)}s")
        sets[float(b)] = (run / "labels", spent["seconds"])
    return sets


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(HERE.parent / "configs" / "label_efficiency_cpu.yaml"))
    ap.add_argument("--split", default=str(HERE / "hippocampus_tuning_split.json"))
    ap.add_argument("--steps", type=int, nargs="+", default=[100, 200, 400, 800, 1600])
    ap.add_argument("--budgets", type=float, nargs="+", default=[600.0, 3000.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--quick", action="store_true", help="one budget, steps 100 and 200, one seed")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--out", default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--warm-from", type=int, default=800,
                    help="warm-start the larger label sets from the smallest set's model at this many steps (0: off)")
    ap.add_argument("--warm-steps", type=int, nargs="+", default=[200, 400, 800])
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.budgets, args.seeds, args.warm_from = [100, 200], [600.0], [0], 0

    from _record import record

    from medal.config import load_config
    from medal.data import load_dataset

    cfg = load_config(args.config)
    cfg = dataclasses.replace(cfg, simulation=dataclasses.replace(cfg.simulation, split_file=args.split, max_pool=0))
    ds = load_dataset(args.data)
    out = Path(args.out or tempfile.mkdtemp(prefix="medal-schedule-"))
    t0 = time.perf_counter()
    sets = make_label_sets(ds, cfg, args.budgets, out)
    ckpt = out / "checkpoints"
    ckpt.mkdir(exist_ok=True)
    jobs = [(str(path), s, seed, args.config, args.data, args.split, str(ckpt / f"{int(b)}s_{s}_{seed}.pt"), None)
            for b, (path, _) in sets.items() for s in args.steps for seed in args.seeds]
    rows = _run(jobs, args.workers)
    # warm start, as a later round does: from the model of the smallest label set at --warm-from steps,
    # continue on each larger label set for each of --warm-steps
    warm_rows = []
    if args.warm_from and len(sets) > 1:
        first = min(sets)
        warm = [(str(path), s, seed, args.config, args.data, args.split, str(ckpt / f"warm_{int(b)}s_{s}_{seed}.pt"),
                 str(ckpt / f"{int(first)}s_{args.warm_from}_{seed}.pt"))
                for b, (path, _) in sets.items() if b != first for s in args.warm_steps for seed in args.seeds]
        warm_rows = _run(warm, args.workers)
    minutes = (time.perf_counter() - t0) / 60
    lines = [f"- config: `{Path(args.config).name}` (model {list(cfg.model.channels)}, batch {cfg.training.batch_size}, "
             f"patch {list(cfg.training.patch_size)}, lr {cfg.training.learning_rate}, polynomial decay over the run); "
             f"trained from scratch; Dice on the {Path(args.split).name} validation cases; seeds {args.seeds}; "
             f"wall {minutes:.0f} min (2 single-thread workers)", "",
             "| label set (random slices, true seconds) | " + " | ".join(f"{s} steps" for s in args.steps) + " |",
             "| --- |" + " --- |" * len(args.steps)]
    gains = []
    result = {"config": Path(args.config).name, "split": Path(args.split).name, "seeds": args.seeds, "sets": []}
    for b, (path, spent) in sets.items():
        cells, per_steps = [], {}
        for s in args.steps:
            d = [r["dice"] for r in rows if r["labels"] == str(path) and r["steps"] == s]
            per_steps[s] = d
            cells.append(f"{np.mean(d):.3f}" + (f" ± {np.std(d):.3f}" if len(d) > 1 else ""))
        lines.append(f"| {spent:.0f} s | " + " | ".join(cells) + " |")
        if len(args.steps) >= 2:
            gains.append(np.mean(per_steps[args.steps[-1]]) - np.mean(per_steps[args.steps[-2]]))
        result["sets"].append({"budget_s": b, "charged_s": spent, "dice": {str(k): v for k, v in per_steps.items()}})
    gain = float(np.mean(gains)) if gains else float("nan")
    if len(args.steps) >= 2:
        lines += ["", f"- Dice gain from doubling {args.steps[-2]} -> {args.steps[-1]} steps, mean over label sets: "
                      f"{gain:+.4f}"]
    if warm_rows:
        first = min(sets)
        lines += ["", f"Warm start (a later round): from the {sets[first][1]:.0f} s set's model after {args.warm_from} "
                      "steps, continued on a larger label set:", "",
                  "| label set | " + " | ".join(f"+{s} steps" for s in args.warm_steps) + " |",
                  "| --- |" + " --- |" * len(args.warm_steps)]
        result["warm"] = {"from_steps": args.warm_from, "sets": []}
        for b, (path, spent) in sets.items():
            if b == first:
                continue
            per = {s: [r["dice"] for r in warm_rows if r["labels"] == str(path) and r["steps"] == s]
                   for s in args.warm_steps}
            lines.append(f"| {spent:.0f} s | " + " | ".join(
                f"{np.mean(d):.3f}" + (f" ± {np.std(d):.3f}" if len(d) > 1 else "") for d in per.values()) + " |")
            result["warm"]["sets"].append({"budget_s": b, "charged_s": spent, "dice": {str(k): v for k, v in per.items()}})
    (HERE / "results").mkdir(exist_ok=True)
    if not args.quick:
        (HERE / "results" / "training_schedule.json").write_text(json.dumps(result, indent=1) + "\n")
    record("Training schedule: Dice on a fixed label set vs optimiser steps" + (" (quick)" if args.quick else ""),
           lines)
    print(f"dice_gain_doubling_steps: {gain:+.4f}")
    return gain


if __name__ == "__main__":
    main()
