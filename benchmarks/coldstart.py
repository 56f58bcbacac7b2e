"""Cold start against a random start, at equal true seconds (ground truth as the oracle).

    python benchmarks/coldstart.py --split tuning [--seeds 0 1 2] [--rounds 0]   # choose the method here
    python benchmarks/coldstart.py --split final --rows cs_thumbnails_typiclust [--rounds 3]
    python benchmarks/coldstart.py --split tuning --rows ROW --seeds 5 6 7 8 9 --training-offsets 0 100 200
        # each start trained under three training seeds: selection told from training noise
    python benchmarks/coldstart.py --split final --rows ROW --initial-axis axial,coronal,sagittal \
        --random-axis axial --rounds 2 --budget 600 --timed 8
        # a start over three planes, against the axial random start, then axial rounds of the default
    ... --random-from FOLDER --random-row default
        # the random start and its rounds taken from a finished simulation (e.g. a label_efficiency.py
        # run: its `default` row is the random start followed by the default's rounds), after checking
        # that it ran the same protocol
    ... --random-from FOLDER --random-row fg_random
        # medal's path from zero labels (cold start, then the default's rounds) against a random start
        # followed by the baseline's own rounds (random or fg_random): the workflow comparison

Both starts spend ``initial_budget_s`` true seconds on the 60-case pool; the random start picks random
slices at their true cost, the cold start uses no label and no model (its predicted seconds come from
the image prior scaled by a 3-slice pilot and timed batches, all included in the budget). Every start is then
trained for the same steps (round 0; ``--rounds`` more rounds with medal's default selection give the
AUBC over the following rounds). Rows: ``random`` (random start) and the cold-start variants of
``configs/label_efficiency_cpu.yaml`` (``cs_<representation>_<method>``). Reports first-round Dice per
class, true seconds charged, paired t-tests over seeds against the random start, AUBC; writes
``benchmarks/results/coldstart[_tuning].json``. Last line: ``first_round_dice_coldstart_minus_random: X``.
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
# every row names all three settings, and ROW_BASE the rest a default change touched, so a change of medal's
# defaults never changes a row (the planes come from --axis / --initial-axis)
ROW_BASE = {"axis": "", "reserve": 0.0, "plane_quota": False, "encoders": 1, "min_gap": 0.0}
COLDSTART_ROWS = {
    "cs_thumbnails_typiclust": {"representation": "thumbnails", "method": "typiclust", "edge_margin": 0.0},
    "cs_thumbnails_probcover": {"representation": "thumbnails", "method": "probcover", "edge_margin": 0.0},
    "cs_encoder_typiclust": {"representation": "encoder", "method": "typiclust", "edge_margin": 0.0},
    "cs_encoder_probcover": {"representation": "encoder", "method": "probcover", "edge_margin": 0.0},
    # not from the first or last fifth of each volume (coldstart.edge_margin)
    "cs_thumbnails_typiclust_m20": {"representation": "thumbnails", "method": "typiclust", "edge_margin": 0.2},
    "cs_encoder_typiclust_m20": {"representation": "encoder", "method": "typiclust", "edge_margin": 0.2},
    "cs_encoder_probcover_m20": {"representation": "encoder", "method": "probcover", "edge_margin": 0.2},
    # + the relative slice position as a feature with this share of the variance (coldstart.position_weight)
    "cs_encoder_typiclust_m20_pos05": {"representation": "encoder", "method": "typiclust", "edge_margin": 0.2,
                                       "position_weight": 0.5},
    "cs_encoder_typiclust_m20_pos1": {"representation": "encoder", "method": "typiclust", "edge_margin": 0.2,
                                      "position_weight": 1.0},
    # an equal share of the budget per third of the axis inside the margin (coldstart.position_strata)
    "cs_encoder_typiclust_m20_strata3": {"representation": "encoder", "method": "typiclust", "edge_margin": 0.2,
                                         "position_strata": 3},
    # + a reserve queue of half a budget after the budget's slices, painted while the clock allows (coldstart.reserve)
    "cs_encoder_typiclust_m20_res05": {"representation": "encoder", "method": "typiclust", "edge_margin": 0.2,
                                       "reserve": 0.5},
    # at most one slice per volume (coldstart.max_per_case: 1): as many subjects as a random start reaches
    "cs_encoder_typiclust_m20_cap1": {"representation": "encoder", "method": "typiclust", "edge_margin": 0.2,
                                      "max_per_case": 1},
    # + a fifth of the budget for slices from the ends outside the margin (coldstart.edge_share): negatives
    "cs_encoder_typiclust_m20_ends20": {"representation": "encoder", "method": "typiclust", "edge_margin": 0.2,
                                        "edge_share": 0.2},
    # + 15% of the budget for slices of the outermost tenth only (coldstart.ends_margin): a label-free
    # background proxy (on the tuning pool 0-1% of those slices hold hippocampus), the negatives a random start buys
    "cs_encoder_typiclust_m20_bg15": {"representation": "encoder", "method": "typiclust", "edge_margin": 0.2,
                                      "edge_share": 0.15, "ends_margin": 0.1},
    # + a reserve queue of half a budget (the ends' slices are over-predicted: without it a start can end short)
    "cs_encoder_typiclust_m20_bg15_res05": {"representation": "encoder", "method": "typiclust", "edge_margin": 0.2,
                                            "edge_share": 0.15, "ends_margin": 0.1, "reserve": 0.5},
    # + an equal share of the budget per plane when the start spans several (coldstart.plane_quota)
    "cs_encoder_typiclust_m20_res05_pq": {"representation": "encoder", "method": "typiclust", "edge_margin": 0.2,
                                          "reserve": 0.5, "plane_quota": True},
    # typicality over 20 neighbours, as the TypiClust reference code (avihu111/TypiClust, K = 20); medal's default 10
    "cs_encoder_typiclust_m20_res05_k20": {"representation": "encoder", "method": "typiclust", "edge_margin": 0.2,
                                           "reserve": 0.5, "neighbours": 20},
    # three encoders under different seeds, embeddings side by side (coldstart.encoders): less dependence on one seed
    "cs_encoder_typiclust_m20_res05_e3": {"representation": "encoder", "method": "typiclust", "edge_margin": 0.2,
                                          "reserve": 0.5, "encoders": 3},
    # slices of one volume and plane at least a tenth of its extent apart (coldstart.min_gap): no near-duplicates
    "cs_encoder_typiclust_m20_res05_gap10": {"representation": "encoder", "method": "typiclust", "edge_margin": 0.2,
                                             "reserve": 0.5, "min_gap": 0.1},
}


def main(argv=None) -> float:
    from scipy import stats

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(HERE.parent / "configs" / "label_efficiency_cpu.yaml"))
    ap.add_argument("--split", choices=sorted(SPLITS), default="tuning")
    ap.add_argument("--rows", nargs="*", default=list(COLDSTART_ROWS),
                    help="cold-start rows (none: the random start alone)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--rounds", type=int, default=0, help="rounds of the default selection after the start")
    ap.add_argument("--initial-budget", type=float, default=600.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--budget", type=float, default=None, help="seconds per selection round (after the start)")
    ap.add_argument("--timed", type=float, default=None, metavar="RESERVE",
                    help="time-boxed rounds after the start (as label_efficiency.py --timed): the oracle stops at "
                         "each round's budget of true seconds; RESERVE budgets of further tasks queued")
    ap.add_argument("--axis", default=None,
                    help="slice orientation of every round, and of the starts unless --initial-axis (regions.axis: "
                         "axial | coronal | sagittal, or "
                         "several with commas, e.g. axial,coronal,sagittal: the slices of every plane one pool); "
                         "default: the config's")
    ap.add_argument("--initial-axis", default=None,
                    help="slice plane(s) of the starts only (simulation.initial_axis, comma-separated); the rounds "
                         "keep --axis")
    ap.add_argument("--random-axis", default=None,
                    help="slice plane(s) of the random start (default: those of the cold start)")
    ap.add_argument("--random-from", default=None, metavar="FOLDER",
                    help="take the random start's rows from this finished simulation folder (same protocol, "
                         "checked) instead of running it")
    ap.add_argument("--random-row", default="default",
                    help="with --random-from: the row (strategy) to take; a baseline (random, fg_random) keeps its own "
                         "rounds: the cold start and the default's rounds against a random start and that baseline's")
    ap.add_argument("--training-offsets", type=int, nargs="+", default=[0],
                    help="train every start again with the model's seeds moved by each offset "
                         "(simulation.training_seed_offset; the starts stay the seed's): a row's Dice per seed is the "
                         "mean over them, so selection is compared with less training noise")
    ap.add_argument("--out", default=None)
    ap.add_argument("--results-name", default=None,
                    help="benchmarks/results/NAME.json (default coldstart[_tuning])")
    ap.add_argument("--data", default=str(DATA))
    args = ap.parse_args(argv)

    from _record import record

    from medal.config import load_config
    from medal.data import load_dataset
    from medal.simulation import read_results, simulate, write_report
    from medal.simulation.report import aubc, seeds_for_power

    base = load_config(args.config)
    sim = dataclasses.replace(base.simulation, split_file=str(SPLITS[args.split]), seeds=tuple(args.seeds),
                              rounds=args.rounds, initial_budget_s=args.initial_budget, strategies=("default",),
                              variants={}, max_pool=0 if args.split == "tuning" else base.simulation.max_pool)
    if args.timed is not None:
        sim = dataclasses.replace(sim, timed=True)
        base = dataclasses.replace(base, selection=dataclasses.replace(base.selection, reserve=args.timed))
    if args.budget:
        base = dataclasses.replace(base, selection=dataclasses.replace(base.selection, budget_s=args.budget))
    if args.axis:
        axis = args.axis.split(",") if "," in args.axis else args.axis
        base = dataclasses.replace(base, regions=dataclasses.replace(base.regions, axis=axis))
    if args.initial_axis:
        sim = dataclasses.replace(sim, initial_axis=_planes(args.initial_axis))
    base = dataclasses.replace(base, simulation=sim)
    ds = load_dataset(args.data)
    out = Path(args.out or tempfile.mkdtemp(prefix="medal-coldstart-"))
    t0 = time.perf_counter()
    rows = {}
    rsim = dataclasses.replace(sim, initial="random")
    if args.random_axis:
        rsim = dataclasses.replace(rsim, initial_axis=_planes(args.random_axis))
    runs = [("random", dataclasses.replace(base, simulation=rsim))]
    for name in args.rows:
        cs = dataclasses.replace(base.coldstart, **{**ROW_BASE, **COLDSTART_ROWS[name]})
        runs.append((name, dataclasses.replace(base, coldstart=cs,
                                               simulation=dataclasses.replace(sim, initial="coldstart"))))
    offsets = sorted(set(args.training_offsets))
    by_offset = {}
    for name, cfg in runs:
        by_offset[name] = {}
        for off in offsets:
            # offset 0 is the plain run (its folder reused by screens without offsets), the others beside it
            where = out if off == 0 else out / f"training_offset_{off}"
            cfg_o = dataclasses.replace(cfg, simulation=dataclasses.replace(cfg.simulation, training_seed_offset=off))
            csv_path = where / name / "results.csv"
            if name == "random" and args.random_from:
                if off != 0:
                    sys.exit("--random-from: takes one training offset (0)")
                by_offset[name][off] = _random_from(Path(args.random_from), args.random_row, cfg_o, args.seeds, ds)
                print(name, f"from {args.random_from} row {args.random_row}", flush=True)
                continue
            if csv_path.is_file():  # a row finished by an earlier run into the same --out is reused
                done = sorted({int(r["seed"]) for r in read_results(csv_path)})
                if done != sorted(args.seeds):
                    sys.exit(f"{csv_path}: holds seeds {done}, not {sorted(args.seeds)}; choose another --out")
            else:
                csv_path = simulate(ds, where / name, cfg_o, log=None, workers=args.workers)
                write_report(csv_path)
            by_offset[name][off] = read_results(csv_path)
            print(name, f"training offset {off}", json.dumps([(int(r["seed"]), int(r["round"]), r["seconds"],
                                                               r["dice_mean"]) for r in by_offset[name][off]]),
                  flush=True)
        rows[name] = _mean_over_offsets(by_offset[name])
    names = [k for k in rows[runs[0][0]][0] if k.startswith("dice_") and k != "dice_mean"]
    result = {"split": args.split, "seeds": args.seeds, "rounds": args.rounds, "initial_budget_s": args.initial_budget,
              "rows": {}, "comparisons": []}
    # AUBC of every row on one budget axis: each row is its own simulation, whose summary.json measures
    # its AUBC up to its own largest spend; compared side by side, the axis must be the same
    x0 = min(r["seconds"] for rs in rows.values() for r in rs if r["round"] == 0)
    x_max = max(r["seconds"] for rs in rows.values() for r in rs)
    aubcs = {}
    for name, rs in rows.items():
        aubcs[name] = {}
        for seed in sorted({int(r["seed"]) for r in rs}):
            pts = sorted((r["seconds"], r["dice_mean"]) for r in rs if int(r["seed"]) == seed)
            xs, ys = np.array([x0] + [p[0] for p in pts]), np.array([pts[0][1]] + [p[1] for p in pts])
            aubcs[name][str(seed)] = aubc(xs, ys, x_max) if args.rounds else None
    lines = [f"- split `{SPLITS[args.split].name}` ({args.split}); config `{Path(args.config).name}`; first labels worth "
             f"{args.initial_budget:.0f} s (random slices at their true cost, or the cold start: no label, no model, "
             f"image cost prior scaled by a {base.coldstart.pilot}-slice pilot and {base.coldstart.pilot_batches} timed "
             f"batches, all inside the budget); then "
             f"{args.rounds} round(s) of {base.selection.budget_s:.0f} s of medal's default selection; "
             f"slices {'/'.join(base.regions.axes)}"
             + (f"; cold start on {args.initial_axis}" if args.initial_axis else "")
             + (f"; random start on {args.random_axis or args.initial_axis}" if args.random_axis or args.initial_axis
                else "")
             + (f"; random start and its rounds from `{args.random_from}` row `{args.random_row}` (same protocol, "
                "checked" + (f"; its rounds are {args.random_row}'s own, the cold rows' the default's: the two paths "
                             "from zero labels" if args.random_row in BASELINE_ROUNDS else "") + ")"
                if args.random_from else "")
             + (f" (time-boxed: the oracle stops at the budget; reserve queue {args.timed:g} budgets)" if args.timed
                is not None else "")
             + (f"; AUBC of every row on one axis, {x0:.0f}-{x_max:.0f} s" if args.rounds else "")
             + f"; seeds {args.seeds}; wall "
             f"{(time.perf_counter() - t0) / 60:.0f} min", "",
             "| start | true seconds charged (mean, min-max) | first-round Dice (mean) | "
             + " | ".join(f"first-round {n[5:]}" for n in names) + " | seeds with a class missed (< 0.1) | AUBC |",
             "| --- | --- | --- | " + " --- |" * len(names) + " --- | --- |"]
    first = {}
    for name, rs in rows.items():
        r0 = sorted((r for r in rs if r["round"] == 0), key=lambda r: r["seed"])
        secs = [r["seconds"] for r in r0]
        first[name] = np.array([r["dice_mean"] for r in r0])
        per_class = {n: [r[n] for r in r0] for n in names}
        missed = sum(any(r[n] < 0.1 for n in names) for r in r0)
        mean_aubc = float(np.mean(list(aubcs[name].values()))) if args.rounds else None
        curve = {str(seed): [(r["seconds"], r["dice_mean"]) for r in sorted(rs, key=lambda r: r["round"])
                             if int(r["seed"]) == seed] for seed in sorted({int(r["seed"]) for r in rs})}
        result["rows"][name] = {"seconds": secs, "first_round_dice": first[name].tolist(), "per_class": per_class,
                                "seeds_with_a_missed_class": missed, "aubc_per_seed": aubcs[name],
                                "aubc_mean": mean_aubc, "curve_per_seed": curve}
        lines.append(f"| {name} | {np.mean(secs):.0f} ({min(secs):.0f}-{max(secs):.0f}) | {np.mean(first[name]):.3f} | "
                     + " | ".join(f"{np.mean(v):.3f}" for v in per_class.values())
                     + f" | {missed}/{len(r0)} | {'n/a' if mean_aubc is None else f'{mean_aubc:.4f}'} |")
    if len(offsets) > 1:
        lines.append(f"- each start trained under {len(offsets)} training seeds (offsets {offsets}); Dice per seed is "
                     "their mean. Training noise, the sd of first-round Dice over training seeds (mean over seeds): "
                     + ", ".join(f"{name} {_training_sd(by_offset[name]):.3f}" for name in rows))
    best_gap = float("nan")
    for name in args.rows:
        d = first[name] - first["random"]
        p = float(stats.ttest_rel(first[name], first["random"]).pvalue) if len(d) >= 2 and np.any(d != 0) else float("nan")
        comp = {"a": name, "b": "random", "mean_diff": float(d.mean()), "p_paired_t": p, "a_wins": int((d > 0).sum()),
                "seeds": len(d), "seeds_for_80pct_power": seeds_for_power(d)}
        if args.rounds:
            a = np.array([aubcs[name][k] for k in sorted(aubcs[name])])
            b = np.array([aubcs["random"][k] for k in sorted(aubcs[name])])
            comp["aubc_diff"] = float((a - b).mean())
            comp["aubc_a_wins"] = int((a > b).sum())
            comp["aubc_p_paired_t"] = (float(stats.ttest_rel(a, b).pvalue) if len(a) >= 2 and np.any(a != b)
                                       else float("nan"))
        result["comparisons"].append(comp)
        lines.append(f"- first-round Dice {name} - random start: {d.mean():+.4f}, better in {comp['a_wins']}/{len(d)} "
                     f"seeds, paired t-test p = {p:.3g} (seeds for 80% power at this effect: "
                     f"{comp['seeds_for_80pct_power'] or 'n/a'})" + (f"; AUBC {comp['aubc_diff']:+.4f}, better in {comp['aubc_a_wins']}/{len(d)} seeds, "
                    f"p = {comp['aubc_p_paired_t']:.3g}" if args.rounds else ""))
        best_gap = d.mean() if not np.isfinite(best_gap) else max(best_gap, float(d.mean()))
    (HERE / "results").mkdir(exist_ok=True)
    result.update({"training_offsets": offsets,
                   "training_sd": {name: _training_sd(by_offset[name]) for name in rows} if len(offsets) > 1 else None,
                   "first_round_dice_per_offset": {name: {str(off): [r["dice_mean"] for r in sorted(
                       (r for r in rs if int(r["round"]) == 0), key=lambda r: int(r["seed"]))]
                       for off, rs in by_offset[name].items()} for name in rows},
                   "axis": list(base.regions.axes), "initial_axis": args.initial_axis, "random_axis": args.random_axis,
                   "random_from": [args.random_from, args.random_row] if args.random_from else None,
                   "timed": args.timed is not None, "reserve": args.timed,
                   "budget_s": base.selection.budget_s, "aubc_axis_s": [x0, x_max] if args.rounds else None})
    name = args.results_name or f"coldstart{'_tuning' if args.split == 'tuning' else ''}"
    (HERE / "results" / f"{name}.json").write_text(
        json.dumps(result, indent=1) + "\n")
    record("Cold start vs random start" + (" (tuning split)" if args.split == "tuning" else " (final: test split)"),
           lines)
    print(f"first_round_dice_coldstart_minus_random: {best_gap:+.4f}")
    return best_gap


def _planes(text: str):
    return text.split(",") if "," in text else text


#: rows whose own rounds ``--random-row`` may take: their strategy differs from the cold rows', and the selection
#: keys only value-driven strategies read (``medal.selection.strategies.select``: quota and power noise) may too
BASELINE_ROUNDS = ("random", "fg_random")
BASELINE_UNREAD = ("strategy", "class_quota", "foreground_share", "noise", "beta_start", "beta_end", "beta_rounds",
                   "value_power", "diversity_spacing", "diversity_max_per_case")


def _random_from(folder: Path, row: str, cfg, seeds, ds) -> list[dict]:
    """The random start's rows (renamed ``random``) from a finished simulation folder, if its ``row`` ran
    the protocol ``cfg`` would run: the same pool, test cases and config (the row's variant applied), apart
    from the per-run keys and the ``coldstart`` section (a random start does not use it). A ``row`` of
    :data:`BASELINE_ROUNDS` keeps its own rounds: only ``selection.strategy`` and the keys such a baseline never
    reads (:data:`BASELINE_UNREAD`) may differ from ``cfg``, so the comparison is medal's path from zero labels
    against a random start and that baseline's rounds. Exits with
    one line naming the folder and the first key that differs."""
    from medal.config import config_from_dict, variant_config
    from medal.simulation import read_results
    from medal.simulation.merge import _default_config, _diffs, _load
    from medal.simulation.simulate import _initial_axes, split_cases

    try:
        meta, _, _ = _load(folder)
        theirs = variant_config(config_from_dict(meta["config"], source=str(folder / "simulation.json")), row)
    except Exception as exc:  # a one-line reason, never a traceback
        sys.exit(f"--random-from {folder}: {exc}")

    def plain(c):
        d = json.loads(json.dumps(dataclasses.asdict(c)))
        d.pop("coldstart", None)
        for k in ("seeds", "strategies", "workers", "variants"):
            d["simulation"].pop(k, None)
        d["simulation"]["initial_axis"] = list(_initial_axes(c))  # "" = the row's own plane(s)
        for k in BASELINE_UNREAD if row in BASELINE_ROUNDS else ():
            d["selection"].pop(k, None)
        return d

    where = _diffs(plain(theirs), plain(cfg), defaults=_default_config())
    if where:
        sys.exit(f"--random-from {folder}: row {row!r} ran with another {where[0]!r}; not the same protocol")
    pool, test = split_cases(ds, cfg.simulation)
    if sorted(meta["pool"]) != sorted(pool) or sorted(meta["test"]) != sorted(test):
        sys.exit(f"--random-from {folder}: its pool or test cases differ from this run's")
    rows = [dict(r, strategy="random") for r in read_results(folder / "results.csv")
            if r["strategy"] == row and int(r["seed"]) in set(seeds)]
    missing = sorted(set(seeds) - {int(r["seed"]) for r in rows})
    if missing:
        sys.exit(f"--random-from {folder}: row {row!r} has no seed {missing}")
    return rows


def _mean_over_offsets(by_off: dict) -> list[dict]:
    """One row per (seed, round): the numbers averaged over the training offsets' runs (one offset: as it is)."""
    runs = list(by_off.values())
    if len(runs) == 1:
        return runs[0]
    out = []
    for r in runs[0]:
        same = [next(x for x in rs if int(x["seed"]) == int(r["seed"]) and int(x["round"]) == int(r["round"]))
                for rs in runs]
        row = dict(r)
        for k, v in r.items():
            if k.startswith("dice") or k == "seconds":
                row[k] = float(np.mean([x[k] for x in same]))
        out.append(row)
    return out


def _training_sd(by_off: dict) -> float:
    """Mean over seeds of the sd of first-round Dice over the training offsets."""
    first = {}
    for rs in by_off.values():
        for r in rs:
            if int(r["round"]) == 0:
                first.setdefault(int(r["seed"]), []).append(r["dice_mean"])
    return float(np.mean([np.std(v, ddof=1) for v in first.values() if len(v) > 1])) if first else float("nan")


if __name__ == "__main__":
    main()
