"""Label efficiency on the hippocampus data: every strategy, several seeds, ground truth as the oracle.

    python benchmarks/label_efficiency.py [--quick] [--config configs/label_efficiency_cpu.yaml]

Reports per strategy: Dice at each round with the true seconds spent, AUBC, and the budget (seconds,
% of the full annotation cost, % of slices) at which 95% of the full-supervision Dice is reached, for
two 100% lines: the full-supervision reference of benchmarks/full_supervision.py (``--full-dice``)
and the same config trained on every pool label (what this config could reach with all labels).
Then a cold start (``medal coldstart``, TypiClust) against a random start at the same budget.
Last line: ``aubc_knapsack_minus_fg_random: X``.
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


def same_config_full_dice(dataset, cfg, pool, test) -> float:
    from medal.simulation import evaluate
    from medal.training import prepare_items, train_model

    import tempfile

    items = prepare_items(dataset, cfg.data, case_ids=set(pool))
    # as many optimiser steps as the active-learning run takes in all its rounds together
    tcfg = dataclasses.replace(cfg.training, max_epochs=cfg.training.max_epochs * (cfg.simulation.rounds + 1))
    with tempfile.TemporaryDirectory() as tmp:
        res = train_model(items, [], n_classes=3, model_cfg=cfg.model, train_cfg=tcfg, progress=False,
                          checkpoint=Path(tmp) / "full.pt")
        return float(evaluate(res.checkpoint, dataset, test, cfg).mean())


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(HERE.parent / "configs" / "label_efficiency_cpu.yaml"))
    ap.add_argument("--quick", action="store_true", help="2 strategies, 1 seed, 1 round, 8 pool cases")
    ap.add_argument("--out", default=None, help="new folder for the simulation (default: a temporary one)")
    ap.add_argument("--full-dice", type=float, default=0.882, help="full-supervision reference Dice")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--from-results", default=None,
                    help="re-report an earlier run's folder (its main/ and coldstart/) without simulating again")
    ap.add_argument("--same-config-dice", type=float, default=None, help="with --from-results: that run's figure")
    args = ap.parse_args(argv)

    import tempfile

    from _record import record

    from medal.config import load_config
    from medal.data import load_dataset
    from medal.simulation import budget_to_reach, read_results, simulate, split_cases, write_report

    cfg = load_config(args.config)
    sim = cfg.simulation
    if sim.split_file and not Path(sim.split_file).is_absolute():
        sim = dataclasses.replace(sim, split_file=str(HERE.parent / sim.split_file))
    if args.quick:
        sim = dataclasses.replace(sim, strategies=("fg_random", "knapsack"), seeds=(0,), rounds=1, max_pool=8)
    cfg = dataclasses.replace(cfg, simulation=sim)
    ds = load_dataset(args.data)
    out = Path(args.from_results or args.out or tempfile.mkdtemp(prefix="medal-label-efficiency-"))
    t0 = time.perf_counter()
    pool, test = split_cases(ds, sim)
    if args.from_results:
        csv_path = out / "main" / "results.csv"
        own_full = args.same_config_dice
    else:
        csv_path = simulate(ds, out / "main", cfg, log=lambda r: print(r, flush=True))
        own_full = same_config_full_dice(ds, cfg, pool, test)
    print(f"same-config full-label Dice: {own_full:.3f}", flush=True)
    write_report(csv_path, full_dice=args.full_dice)
    rows = read_results(csv_path)
    meta = json.loads((out / "main" / "simulation.json").read_text())
    full_cost = meta["full_annotation_cost_s"]
    summary = json.loads((out / "main" / "summary.json").read_text())

    # cold start vs random start: the model trained on the first labels only, same seeds, same budget
    cold_cfg = dataclasses.replace(cfg, simulation=dataclasses.replace(sim, initial="coldstart", rounds=0,
                                                                        strategies=("random",)))
    cold_csv = out / "coldstart" / "results.csv"
    if not args.from_results:
        cold_csv = simulate(ds, out / "coldstart", cold_cfg, log=lambda r: print(r, flush=True))
    cold_rows = read_results(cold_csv)
    minutes = (time.perf_counter() - t0) / 60

    lines = [f"- config: `{Path(args.config).name}`{' --quick' if args.quick else ''}; pool {len(pool)} cases, test "
             f"{len(test)} cases ({Path(sim.split_file).name if sim.split_file else 'seeded split'}); seeds "
             f"{list(sim.seeds)}; initial {sim.initial} {sim.initial_budget_s:.0f} s, then {sim.rounds} rounds of "
             f"{cfg.selection.budget_s:.0f} s; full annotation cost of the pool {full_cost:.0f} s; wall {minutes:.0f} min",
             f"- 100% lines: full-supervision reference {args.full_dice:.3f} (default model, 16 min training); same "
             f"config on every pool label, as many optimiser steps as all rounds together: {own_full:.3f}", "",
             "| strategy | round: true seconds (% full cost) -> Dice, mean of seeds | AUBC | 95% of ref | 95% of same-config |",
             "| --- | --- | --- | --- | --- |"]
    for s in sim.strategies:
        mine = [r for r in rows if r["strategy"] == s]
        per_round = []
        for k in range(sim.rounds + 1):
            rr = [r for r in mine if r["round"] == k]
            per_round.append(f"{k}: {np.mean([r['seconds'] for r in rr]):.0f} s "
                             f"({np.mean([r['pct_full_cost'] for r in rr]):.1f}%) -> {np.mean([r['dice_mean'] for r in rr]):.3f}")
        reach = []
        for target in (0.95 * args.full_dice, 0.95 * own_full):
            hits = []
            for seed in sim.seeds:
                rs = sorted((r for r in mine if r["seed"] == seed), key=lambda r: r["round"])
                b = budget_to_reach([r["seconds"] for r in rs], [r["dice_mean"] for r in rs], target)
                pct = np.interp(b, [r["seconds"] for r in rs], [r["pct_slices"] for r in rs]) if b is not None else None
                hits.append((b, pct))
            if any(b is None for b, _ in hits):
                reach.append(f"not reached ({sum(b is not None for b, _ in hits)}/{len(hits)} seeds)")
            else:
                reach.append(f"{np.mean([b for b, _ in hits]):.0f} s ({100 * np.mean([b for b, _ in hits]) / full_cost:.1f}% "
                             f"cost, {np.mean([p for _, p in hits]):.1f}% slices)")
        a = summary["strategies"][s]
        lines.append(f"| {s} | {'; '.join(per_round)} | {a['aubc_mean']:.4f} ± {a['aubc_std']:.4f} | {reach[0]} | {reach[1]} |")
    diff = None
    for p in summary["pairwise"]:
        if {p["a"], p["b"]} == {"knapsack", "fg_random"}:
            diff = p["mean_diff"] if p["a"] == "knapsack" else -p["mean_diff"]
            wins = p["a_wins"] if p["a"] == "knapsack" else p["seeds"] - p["a_wins"]
            lines += ["", f"- AUBC knapsack - fg_random: {diff:+.4f}, knapsack better in {wins}/{p['seeds']} seeds, "
                          f"paired t-test p = {p['p_paired_t']:.3g}"]
    rand0 = {int(r["seed"]): r for r in rows if r["round"] == 0 and r["strategy"] == sim.strategies[0]}
    cold0 = {int(r["seed"]): r for r in cold_rows if r["round"] == 0}
    lines += [f"- cold start (TypiClust, {cfg.coldstart.prior_cost_s:.0f} s prior per slice) vs random start, same "
              f"{sim.initial_budget_s:.0f} s budget, first model's Dice (true seconds charged): "
              + "; ".join(f"seed {k}: {cold0[k]['dice_mean']:.3f} ({cold0[k]['seconds']:.0f} s) vs "
                          f"{rand0[k]['dice_mean']:.3f} ({rand0[k]['seconds']:.0f} s)" for k in sorted(cold0) if k in rand0)]
    if args.from_results:
        lines.insert(0, f"- re-reported from the results of an earlier run of this benchmark ({out}); the wall time "
                        "below is the re-report's, the simulation's is in that run's entry")
    record("Label efficiency, hippocampus" + (" (quick)" if args.quick else "")
           + (" (re-reported)" if args.from_results else ""), lines)
    print(f"results in {out}")
    print(f"aubc_knapsack_minus_fg_random: {diff:+.4f}")
    return diff


if __name__ == "__main__":
    main()
