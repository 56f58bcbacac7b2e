"""Label efficiency on the hippocampus data: medal's default against honest baselines, ground truth as oracle.

    python benchmarks/label_efficiency.py --split tuning [--quick]     # choose settings here
    python benchmarks/label_efficiency.py --split final                # report once, on the 40 test cases

``--timed RESERVE`` makes every round time-boxed, as an expert works with a clock: each round's tasks
are followed by a reserve queue (``selection.reserve``), and the oracle paints tasks in order until the
round's budget of true seconds is reached (``simulation.timed``), so every row spends the budget
within one task whatever its predicted seconds said.

``--deadline MINUTES`` (a GPU lease): no run starts a round that would end later (``simulate``'s
``deadline``); the report covers rounds 0..k, k the last round every run finished.

``--split tuning`` runs on ``hippocampus_tuning_split.json`` (a 60-case pool and 40 validation cases
carved from the training side; never the test cases, never the final pool). ``--split final`` runs on
``hippocampus_split.json``: its 40 test cases, and the 60-case pool ``max_pool`` picks from its
training side. The rows (strategies and named variants: the default, its ablations, the baselines)
come from the config (``configs/label_efficiency_cpu.yaml``); ``--kind supervoxel`` runs the same rows
with supervoxel units.

Per row: Dice per round at the true seconds charged, AUBC, seconds to 95% of the same config's
all-labels Dice, the share of chosen units holding foreground, charged vs predicted seconds per
round; paired t-tests over seeds of the default against random and against fg_random. Writes
``benchmarks/results/label_efficiency[_supervoxel][_tuning].json`` (the fields of ``medal simulate``'s
``summary.json``) and appends to RESULTS.md. Runs (row, seed) pairs in ``--workers`` single-thread
processes. Last line: ``aubc_default_minus_best_baseline: X``.
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
SPLITS = {"tuning": HERE / "hippocampus_tuning_split.json", "final": HERE / "hippocampus_split.json"}
BASELINES = ("random", "fg_random")


def same_config_full_dice(dataset, cfg, pool, test, steps: int) -> float:
    """The same model and training config trained on every pool label (the 100% line)."""
    import torch

    from medal.simulation import evaluate
    from medal.training import prepare_items, train_model

    torch.set_num_threads(max(1, torch.get_num_threads()))
    items = prepare_items(dataset, cfg.data, case_ids=set(pool))
    tcfg = dataclasses.replace(cfg.training, max_epochs=max(1, steps // cfg.training.iterations_per_epoch))
    with tempfile.TemporaryDirectory() as tmp:
        res = train_model(items, [], n_classes=dataset.n_classes, model_cfg=cfg.model, train_cfg=tcfg, progress=False,
                          checkpoint=Path(tmp) / "full.pt")
        return float(evaluate(res.checkpoint, dataset, test, cfg).mean())


def round_steps(cfg) -> list[int]:
    """Optimiser steps of each round's training under the config's schedule."""
    t = cfg.training
    first = t.max_epochs * t.iterations_per_epoch
    later = (t.warm_epochs or t.max_epochs) * t.iterations_per_epoch if t.warm_start else first
    return [first] + [later] * cfg.simulation.rounds


def _keep_asked(csv_path: Path, strategies: set | None, seeds: set | None) -> None:
    """Keep only the rows and seeds asked for (``--strategies``, ``--seeds``) in a merged folder's CSV: the
    folders merged may hold more (other rows, other seeds), and the report, its means and its paired tests
    must be of what the command names."""
    import csv
    import io

    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    kept = [r for r in rows if (strategies is None or r["strategy"] in strategies)
            and (seeds is None or int(r["seed"]) in seeds)]
    missing = sorted((strategies or set()) - {r["strategy"] for r in kept})
    if missing:
        raise SystemExit(f"label_efficiency: error: {csv_path.parent}: no row {', '.join(missing)} in the merged runs")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(kept)
    csv_path.write_text(buf.getvalue())


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(HERE.parent / "configs" / "label_efficiency_cpu.yaml"))
    ap.add_argument("--split", choices=sorted(SPLITS), default="tuning")
    ap.add_argument("--kind", choices=["slice", "supervoxel"], default=None, help="unit kind for every row")
    ap.add_argument("--initial-kind", choices=["slice", "supervoxel"], default=None,
                    help="unit kind of the random first labels (default: each row's own kind)")
    ap.add_argument("--quick", action="store_true", help="2 rows, 1 seed, 1 round, 8 pool cases")
    ap.add_argument("--seeds", type=int, nargs="+", default=None)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--strategies", nargs="+", default=None, help="only these rows of the config")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--initial-budget", type=float, default=None, help="seconds of the first (random) labels")
    ap.add_argument("--budget", type=float, default=None, help="seconds per selection round")
    ap.add_argument("--timed", type=float, default=None, metavar="RESERVE",
                    help="time-boxed rounds: the oracle stops at each round's budget of true seconds; "
                         "selection.reserve = RESERVE budgets of further tasks queued (e.g. 2)")
    ap.add_argument("--annotation", choices=["draw", "correct"], default=None,
                    help="how the expert annotates the selected units of every round (costs.annotation): draw "
                    "them, or correct the model's prediction shown in them (the first random labels are drawn)")
    ap.add_argument("--out", default=None, help="new folder for the simulation (default: a temporary one)")
    ap.add_argument("--deadline", type=float, default=None, metavar="MINUTES",
                    help="start no round that would end later than this many minutes from now (a GPU lease); "
                         "the report covers rounds 0..k, k the last round every run finished")
    ap.add_argument("--resume", action="store_true",
                    help="continue the simulation in --out (interrupted, or with more --rounds, seeds or rows)")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--groups", default="", metavar="JSON",
                    help="{case id: group} (e.g. derive_sites.py's sites.json): a dice_group_NAME column per group "
                         "in results.csv (simulation.groups)")
    ap.add_argument("--initial-groups", nargs="+", default=None, metavar="GROUP",
                    help="the random first labels only from pool cases of these --groups groups, e.g. A B: a new "
                         "site joins a pool whose labelled start came from the others (simulation.initial_groups)")
    ap.add_argument("--from-results", nargs="+", default=None, metavar="DIR",
                    help="re-report an earlier run's folder without simulating; several folders (other seeds or "
                         "rows of the same protocol, e.g. batch jobs) are merged into --out first (medal merge)")
    ap.add_argument("--merge-ignore", nargs="+", default=(), metavar="KEY",
                    help="with several --from-results: config keys allowed to differ (medal merge --ignore-config)")
    ap.add_argument("--full-dice", type=float, default=None, help="skip training the all-labels reference")
    ap.add_argument("--full-dice-only", action="store_true",
                    help="only train the all-labels reference (the 100%% line) and print 'full_dice: X' (to run it "
                         "beside a simulation that gets --full-dice 0, e.g. benchmarks/gpu_full.sh)")
    ap.add_argument("--tag", default="", help="suffix of the results JSON name")
    ap.add_argument("--results-name", default=None,
                    help="name of the results JSON (default: label_efficiency[_KIND][_tuning][_TAG]), e.g. semi_supervised")
    args = ap.parse_args(argv)
    if args.deadline is not None and not args.deadline >= 0:
        ap.error(f"--deadline: minutes from now, >= 0 (got {args.deadline})")

    from _record import record

    from medal.config import load_config, variant_config
    from medal.data import load_dataset
    from medal.simulation import budget_to_reach, merge_runs, read_results, simulate, split_cases, write_report

    cfg = load_config(args.config)
    sim = dataclasses.replace(cfg.simulation, split_file=str(SPLITS[args.split]),
                              max_pool=0 if args.split == "tuning" else cfg.simulation.max_pool)
    if args.groups:
        sim = dataclasses.replace(sim, groups=args.groups)
    if args.initial_groups:
        if not args.groups:
            ap.error("--initial-groups needs --groups (the JSON that names each case's group)")
        sim = dataclasses.replace(sim, initial_groups=tuple(args.initial_groups))
    if args.seeds:
        sim = dataclasses.replace(sim, seeds=tuple(args.seeds))
    if args.rounds is not None:
        sim = dataclasses.replace(sim, rounds=args.rounds)
    if args.strategies:
        sim = dataclasses.replace(sim, strategies=tuple(args.strategies))
    if args.initial_budget:
        sim = dataclasses.replace(sim, initial_budget_s=args.initial_budget)
    if args.initial_kind:
        sim = dataclasses.replace(sim, initial_kind=args.initial_kind)
    if args.budget:
        cfg = dataclasses.replace(cfg, selection=dataclasses.replace(cfg.selection, budget_s=args.budget))
    if args.timed is not None:
        sim = dataclasses.replace(sim, timed=True)
        cfg = dataclasses.replace(cfg, selection=dataclasses.replace(cfg.selection, reserve=args.timed))
    if args.annotation:
        cfg = dataclasses.replace(cfg, costs=dataclasses.replace(cfg.costs, annotation=args.annotation))
    if args.quick:
        keep = tuple(s for s in sim.strategies if s in ("fg_random", "default"))[:2] or sim.strategies[:2]
        sim = dataclasses.replace(sim, strategies=keep, seeds=(0,), rounds=1, max_pool=8)
    cfg = dataclasses.replace(cfg, simulation=sim)
    if args.kind:
        cfg = dataclasses.replace(cfg, regions=dataclasses.replace(cfg.regions, kind=args.kind))
        sim = dataclasses.replace(sim, variants={k: {**v, "regions": {**v.get("regions", {}), "kind": args.kind}}
                                                 for k, v in sim.variants.items()})
        cfg = dataclasses.replace(cfg, simulation=sim)
    ds = load_dataset(args.data)
    if args.from_results and len(args.from_results) > 1:
        out = Path(args.out or tempfile.mkdtemp(prefix="medal-label-efficiency-merged-"))
        try:
            merge_runs(args.from_results, out, ignore_config=args.merge_ignore)
        except (ValueError, FileExistsError) as exc:
            raise SystemExit(f"label_efficiency: error: {exc}") from None
        _keep_asked(out / "results.csv", set(sim.strategies) if args.strategies else None,
                    set(sim.seeds) if args.seeds else None)
    else:
        out = Path((args.from_results or [None])[0] or args.out or tempfile.mkdtemp(prefix="medal-label-efficiency-"))
    t0 = time.perf_counter()
    pool, test = split_cases(ds, sim)
    if args.full_dice_only:
        steps, t_full = sum(round_steps(cfg)), time.perf_counter()
        d = same_config_full_dice(ds, cfg, pool, test, steps)
        print(f"full_dice: {d:.5f} ({steps} steps, {len(pool)} pool cases, {time.perf_counter() - t_full:.0f} s)")
        return d
    if args.from_results:
        csv_path = out / "results.csv"
    else:
        try:
            csv_path = simulate(ds, out, cfg, log=lambda r: print(r, flush=True), workers=args.workers,
                                resume=args.resume,
                                deadline=time.time() + 60 * args.deadline if args.deadline is not None else None)
        except (ValueError, FileExistsError, FileNotFoundError) as exc:
            raise SystemExit(f"label_efficiency: error: {exc}") from None
    sim_minutes = (time.perf_counter() - t0) / 60
    stopped = json.loads((out / "simulation.json").read_text()).get("deadline")
    if stopped:  # the deadline stopped some run: the report is of the rounds every run finished
        sim = dataclasses.replace(sim, rounds=int(stopped["rounds_reported"]))
        cfg = dataclasses.replace(cfg, simulation=sim)
    steps = round_steps(cfg)
    own_full = args.full_dice if args.full_dice is not None else same_config_full_dice(ds, cfg, pool, test, sum(steps))
    print(f"same-config all-labels Dice ({sum(steps)} steps): {own_full:.3f}", flush=True)
    default = "default" if "default" in sim.strategies else sim.strategies[-1]
    write_report(csv_path, full_dice=own_full, default_strategy=default)
    rows = read_results(csv_path)
    meta = json.loads((out / "simulation.json").read_text())
    full_cost = meta["full_annotation_cost_s"]
    summary = json.loads((out / "summary.json").read_text())
    minutes = (time.perf_counter() - t0) / 60

    target = 0.95 * own_full
    sched = (f"round 0: {steps[0]} steps from scratch; later rounds: {steps[1] if len(steps) > 1 else 0} steps, "
             + ("warm-started" if cfg.training.warm_start else "from scratch"))
    lines = [f"- split: `{Path(sim.split_file).name}` ({args.split}); config `{Path(args.config).name}`"
             f"{' --quick' if args.quick else ''}{f' --kind {args.kind}' if args.kind else ''}; pool {len(pool)} cases, "
             f"{'validation' if args.split == 'tuning' else 'test'} {len(test)} cases; seeds {list(sim.seeds)}; "
             f"initial random {sim.initial_budget_s:.0f} s{f' of {sim.initial_kind}s' if sim.initial_kind else ''}"
             f"{f' from groups {list(sim.initial_groups)} only' if sim.initial_groups else ''}, "
             f"then {sim.rounds} rounds of {cfg.selection.budget_s:.0f} s"
             + (f" (time-boxed: the oracle stops at the budget; reserve queue {cfg.selection.reserve:g} budgets)"
                if sim.timed else "")
             + ("; **annotation by correction**: after the first labels the expert edits the model's prediction in "
                "each unit and is charged for what changes plus checking every slice (`costs.annotation: correct`)"
                if cfg.costs.annotation == "correct" else "") + "; "
             f"full annotation cost of the pool {full_cost:.0f} s; training {sched}; wall {minutes:.0f} min "
             f"({args.workers} single-thread workers)"
             + (f"; **stopped by --deadline**: rounds 0..{sim.rounds} of every run reported, "
                f"{len(stopped['runs_stopped'])} run(s) stopped early" if stopped else ""),
             (f"- 100% line: the same config trained on every pool label ({sum(steps)} steps): Dice {own_full:.3f}; "
              if args.full_dice is None else
              f"- 100% line: not measured in this run: {own_full:.3f} given with --full-dice; ") + f"95% of it: {target:.3f}",
             "",
             "| row | round: true seconds (% full cost) -> Dice, mean of seeds | AUBC | final Dice | to 95% of all-labels "
             "| chosen units with fg | charged/budget, rounds after the first (median) | semi-supervised "
             "| training s per round after round 0 (mean) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    modes = {s: variant_config(cfg, s).training.semi_supervised for s in sim.strategies}
    for s in sim.strategies:
        mine = [r for r in rows if r["strategy"] == s]
        per_round = []
        for k in range(sim.rounds + 1):
            rr = [r for r in mine if r["round"] == k]
            per_round.append(f"{k}: {np.mean([r['seconds'] for r in rr]):.0f} s "
                             f"({np.mean([r['pct_full_cost'] for r in rr]):.1f}%) -> {np.mean([r['dice_mean'] for r in rr]):.3f}")
        hits = []
        for seed in sorted({r["seed"] for r in mine}):   # a merged row may have fewer seeds than the run
            rs = sorted((r for r in mine if r["seed"] == seed), key=lambda r: r["round"])
            hits.append(budget_to_reach([r["seconds"] for r in rs], [r["dice_mean"] for r in rs], target))
        reach = (f"{np.mean(hits):.0f} s ({100 * np.mean(hits) / full_cost:.1f}%)" if all(h is not None for h in hits)
                 else f"not reached ({sum(h is not None for h in hits)}/{len(hits)} seeds)")
        a = summary["strategies"][s]
        train_s = float(np.mean([float(r["train_s"]) for r in mine
                                  if r["round"] >= 1 and r.get("train_s") is not None] or [np.nan]))
        fg = "n/a" if a.get("foreground_share") is None else f"{100 * a['foreground_share']:.0f}%"
        cb = a.get("median_charged_over_budget_after_first")
        name = f"**{s}**" if s == default else s
        lines.append(f"| {name} | {'; '.join(per_round)} | {a['aubc_mean']:.4f} ± {a['aubc_std']:.4f} | "
                     f"{a['final_dice_mean']:.3f} | {reach} | {fg} | {'n/a' if cb is None else f'{cb:.2f}'} | "
                     f"{modes[s]} | {train_s:.0f} |")
        a["seconds_to_95pct_same_config"] = hits
        # the curve itself (true seconds, Dice per round), so runs can be merged on one budget axis later
        a["curve_per_seed"] = {str(seed): [[float(r["seconds"]), float(r["dice_mean"])] for r in
                                           sorted((r for r in mine if r["seed"] == seed), key=lambda r: r["round"])]
                               for seed in sim.seeds}
        a["semi_supervised"] = modes[s]
        a["train_s_per_round_mean"] = train_s
    comparisons = []
    for p in summary["pairwise"]:
        if default in (p["a"], p["b"]):  # the default against every other row (baselines, variants, modes)
            flip = p["b"] == default
            c = {"a": default, "b": p["a"] if flip else p["b"], "seeds": p["seeds"],
                 "mean_diff": -p["mean_diff"] if flip else p["mean_diff"], "p_paired_t": p["p_paired_t"],
                 "a_wins": p["seeds"] - p["a_wins"] if flip else p["a_wins"],
                 "seeds_for_80pct_power": p.get("seeds_for_80pct_power")}
            comparisons.append(c)
            n80 = c["seeds_for_80pct_power"]
            lines.append(f"- AUBC {c['a']} - {c['b']}: {c['mean_diff']:+.4f}, {c['a']} better in {c['a_wins']}/"
                         f"{c['seeds']} seeds, paired t-test p = {c['p_paired_t']:.3g}; seeds for 80% power at "
                         f"this effect: {'n/a' if n80 is None else n80}")
    groups = summary.get("groups") or {}
    for p in groups.get("pairwise", []):
        if default in (p["a"], p["b"]):  # per group (--groups): the default's final Dice against every other row
            flip = p["b"] == default
            lines.append(f"- final Dice, group {p['group']}: {default} - {p['a'] if flip else p['b']} "
                         f"{-p['mean_diff'] if flip else p['mean_diff']:+.4f}, {default} better in "
                         f"{p['seeds'] - p['a_wins'] if flip else p['a_wins']}/{p['seeds']} seeds, "
                         f"paired t-test p = {p['p_paired_t']:.3g}")
    result = {"split": args.split, "split_file": Path(sim.split_file).name, "kind": args.kind or cfg.regions.kind,
              "config": Path(args.config).name, "data": str(args.data), "default_strategy": default,
              "seeds": list(sim.seeds),
              "rounds": sim.rounds, "budget_s": cfg.selection.budget_s, "timed": sim.timed,
              "reserve": cfg.selection.reserve, "annotation": cfg.costs.annotation, "initial_budget_s": sim.initial_budget_s,
              "initial_groups": list(sim.initial_groups) or None,
              "full_annotation_cost_s": full_cost, "same_config_all_labels_dice": own_full,
              "aubc_axis_max_s": summary.get("x_max_s"),
              "simulation_minutes": sim_minutes, "strategies": summary["strategies"],
              "pairwise": summary["pairwise"], "comparisons": comparisons,
              "variants": sim.variants, "groups": groups or None}
    if not args.quick:
        name = args.results_name or "label_efficiency" + (f"_{args.kind}" if args.kind else "") + ("_tuning" if args.split == "tuning" else "") \
            + (f"_{args.tag}" if args.tag else "")
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    if args.from_results:
        lines.insert(0, f"- re-reported from an earlier run's folder ({out})" if len(args.from_results) == 1 else
                     f"- merged from {len(args.from_results)} runs' folders ({', '.join(args.from_results)}) into {out}")
    data_name = "hippocampus" if Path(args.data).resolve() == DATA.resolve() else \
        f"{json.loads((Path(args.data) / 'dataset.json').read_text()).get('name', Path(args.data).name)} ({args.data})"
    record(f"Label efficiency, {data_name}" + (f", {args.kind}s" if args.kind else "")
           + (" (tuning split)" if args.split == "tuning" else " (final: test split)") + (" (quick)" if args.quick else ""),
           lines)
    base = [summary["strategies"][b]["aubc_mean"] for b in BASELINES if b in summary["strategies"]]
    diff = summary["strategies"][default]["aubc_mean"] - max(base) if base else float("nan")
    print(f"results in {out}")
    print(f"aubc_default_minus_best_baseline: {diff:+.4f}")
    return diff


if __name__ == "__main__":
    main()
