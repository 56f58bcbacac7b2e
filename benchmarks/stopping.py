"""When to stop: does ``medal report``'s recommendation come when the model has stopped improving?

    python benchmarks/stopping.py [--quick] [--split tuning] [--seeds 0 1] [--rounds 6]

``medal report`` tells a user after every round whether to go on (:mod:`medal.report.stopping`: the pool's
predictions stable over the last ~``report.agreement_window_s`` seconds of labels as the gate, since
2026-12-05; a plateau of the Dice on held-out *annotated slices*, a confident pool, a fitted learning curve),
from the run's own files, without ground truth. This checks those verdicts against what the user cannot
see: the model's Dice on whole held-out cases after every round.

It runs ``medal simulate`` with medal's default selection on ``configs/label_efficiency_cpu.yaml`` and
``training.holdout: 0.1`` (``configs/default.yaml``'s value: a hashed 10% of the annotated axial slices are
never trained on, which the report's Dice is measured on), a 300 s random start and time-boxed rounds of
600 s, on the split's pool; the split's held-out cases (``--split tuning``: 40 validation cases carved
from the training side, never the test cases) give the true Dice. Then, for every seed, it reads the run
folder as ``medal report`` does (:func:`medal.report.run_report.collect_run`) and takes the verdict the
report showed after each round (:func:`~medal.report.run_report.verdict_after` on the rounds so far),
with the config's ``report`` thresholds (``min_gain``, ``plateau_rounds``, ``max_pool_entropy``, ``min_agreement``).

Per seed and round: seconds, held-out-slice Dice (cases with held-out slices), true Dice, verdict and
the rules that fired. Summary: the first round each verdict appears; the true Dice there against the
run's last round (the Dice a user stopping there forgoes, and the seconds saved); how well the held-out
slices track the true Dice (mean absolute difference; sign agreement and correlation of round-to-round
gains); the pool predictions' agreement with the round before, or ``--agreement-window`` seconds of labels before
(:func:`medal.report.metrics.prediction_agreement`,
label-free, over the whole pool) against that round's true gain, and where ``report.min_agreement`` at a few
thresholds would first have said "consider stopping". Writes ``benchmarks/results/stopping[_tuning][_quick].json``
and appends to RESULTS.md.
Last line: ``dice_forgone_at_first_consider_stopping: X`` (mean over the seeds where it fired).
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
LEVELS = ("consider stopping", "stop")


def seed_rounds(seed_dir: Path, dataset, cfg, true_dice: dict[int, tuple[float, float]]) -> list[dict]:
    """Per round of one seed's run folder: the report's view after that round beside the true Dice.

    ``true_dice``: round -> (seconds, Dice on the held-out cases) from ``results.csv``."""
    from medal.report.metrics import prediction_agreement
    from medal.report.run_report import collect_run, verdict_after

    rounds = collect_run(seed_dir, dataset, cfg)["rounds"]
    out = []
    for i, r in enumerate(rounds):
        k = int(r["index"])
        if r.get("agreement") is None and k > 0:  # a run from before manifests recorded it: read both rounds' predictions
            prev, cur = seed_dir / f"round_{k - 1:03d}" / "scores", seed_dir / f"round_{k:03d}" / "scores"
            if prev.is_dir() and cur.is_dir():
                r["agreement"] = prediction_agreement(prev, cur, sorted(p.name for p in cur.iterdir() if p.is_dir()))[
                    "agreement"]
        v = verdict_after(rounds[: i + 1], cfg.report)
        seconds, dice = true_dice[k]
        out.append({"round": k, "seconds": seconds, "holdout_dice": r["holdout"]["dice"],
                    "holdout_cases": r["holdout"]["cases"], "true_dice": dice, "pool_entropy": r["pool_entropy"],
                    "agreement": r.get("agreement"), "agreement_against": r.get("agreement_against"),
                    "verdict": v.decision, "fired": sorted(name for name, rule in v.rules.items() if rule.get("fired"))})
    return out


def _stop_at(rows: list[dict], seed_last: dict, first_row) -> dict:
    """Per seed, the first round ``first_row(rounds)`` names, with the Dice forgone and seconds saved there."""
    out = []
    for seed, rounds in rows.items():
        hit = first_row(rounds)
        s_end, d_end = seed_last[seed]
        out.append({"seed": seed, "round": hit["round"] if hit else None, "true_dice": hit["true_dice"] if hit else None,
                    "dice_forgone": d_end - hit["true_dice"] if hit else None,
                    "seconds_saved": s_end - hit["seconds"] if hit else None})
    fired = [r for r in out if r["round"] is not None]
    return {"per_seed": out, "seeds_fired": len(fired), "seeds": len(out),
            "mean_dice_forgone": float(np.mean([r["dice_forgone"] for r in fired])) if fired else None,
            "mean_seconds_saved": float(np.mean([r["seconds_saved"] for r in fired])) if fired else None}


def summarise(per_seed: dict[int, list[dict]], last: dict[int, tuple[float, float]], *,
              thresholds=(0.90, 0.92, 0.94, 0.96), plateau_rounds: int = 2) -> dict:
    """First verdicts, what stopping there forgoes, how the held-out slices track the true Dice, and where a
    ``report.min_agreement`` of each of ``thresholds`` would first have said "consider stopping".

    ``last``: seed -> (seconds, true Dice) of the run's last round (trained after the last report)."""
    from scipy.stats import spearmanr

    agreement = {}
    for t in thresholds:
        def first(rounds, t=t):
            for i in range(len(rounds)):
                recent = [r.get("agreement") for r in rounds[: i + 1] if r.get("agreement") is not None][-plateau_rounds:]
                if len(recent) >= plateau_rounds and all(a >= t for a in recent):
                    return rounds[i]
            return None
        agreement[f"{t:g}"] = _stop_at(per_seed, last, first)
    pairs_ag = [(r["agreement"], r["true_dice"] - p["true_dice"]) for rounds in per_seed.values()
                for p, r in zip(rounds, rounds[1:]) if r.get("agreement") is not None]
    first = {level: _stop_at(per_seed, last, lambda rounds, level=level: next(
        (r for r in rounds if r["verdict"] in LEVELS and LEVELS.index(r["verdict"]) >= LEVELS.index(level)), None))
        for level in LEVELS}
    pairs = [(r["holdout_dice"], r["true_dice"]) for rounds in per_seed.values() for r in rounds
             if r["holdout_dice"] is not None]
    gains = []
    for rounds in per_seed.values():
        for a, b in zip(rounds, rounds[1:]):
            if a["holdout_dice"] is not None and b["holdout_dice"] is not None:
                gains.append((b["holdout_dice"] - a["holdout_dice"], b["true_dice"] - a["true_dice"]))
    g = np.asarray(gains, dtype=float).reshape(-1, 2)
    track = {"rounds_with_holdout": len(pairs),
             "mean_abs_difference": float(np.mean([abs(h - t) for h, t in pairs])) if pairs else None,
             "gains": len(g),
             "gain_sign_agreement": float(np.mean(np.sign(g[:, 0]) == np.sign(g[:, 1]))) if len(g) else None,
             "gain_correlation": float(np.corrcoef(g[:, 0], g[:, 1])[0, 1]) if len(g) >= 3 else None,
             "agreement_rounds": len(pairs_ag),
             "agreement_gain_spearman": float(spearmanr([a for a, _ in pairs_ag], [d for _, d in pairs_ag])[0])
             if len(pairs_ag) >= 3 else None}
    return {"first": first, "tracking": track, "min_agreement": agreement}


def _fmt(x, spec=".3f", none="n/a") -> str:
    return none if x is None else format(x, spec)


def main(argv=None) -> float | None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(HERE.parent / "configs" / "label_efficiency_cpu.yaml"))
    ap.add_argument("--split", choices=sorted(SPLITS), default="tuning")
    ap.add_argument("--quick", action="store_true", help="1 seed, 3 rounds, 8 pool cases (a check that it runs)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--initial-budget", type=float, default=300.0)
    ap.add_argument("--budget", type=float, default=600.0, help="seconds per selection round")
    ap.add_argument("--holdout", type=float, default=0.1, help="training.holdout: share of annotated slices held out")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=None, help="new folder for the simulation (default: a temporary one)")
    ap.add_argument("--resume", action="store_true",
                    help="continue the simulation in --out (interrupted, or with other --seeds or more --rounds)")
    ap.add_argument("--from-results", default=None, metavar="DIR", help="re-read an earlier run's folder")
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--agreement-window", type=float, default=None, metavar="S",
                    help="report.agreement_window_s (default: the config's): compare each round's pool predictions "
                         "with the round about S seconds of labels before")
    ap.add_argument("--results-name", default=None, metavar="NAME",
                    help="write benchmarks/results/NAME.json (default: stopping[_tuning][_quick])")
    args = ap.parse_args(argv)

    from _record import record

    from medal.config import load_config
    from medal.data import load_dataset
    from medal.simulation import read_results, simulate, split_cases

    cfg = load_config(args.config)
    sim = dataclasses.replace(cfg.simulation, split_file=str(SPLITS[args.split]), strategies=("default",),
                              seeds=tuple(args.seeds), rounds=args.rounds, initial_budget_s=args.initial_budget,
                              timed=True, max_pool=0 if args.split == "tuning" else cfg.simulation.max_pool)
    if args.quick:
        sim = dataclasses.replace(sim, seeds=(args.seeds[0],), rounds=3, max_pool=8)
    cfg = dataclasses.replace(cfg, simulation=sim,
                              selection=dataclasses.replace(cfg.selection, budget_s=args.budget, reserve=8.0),
                              training=dataclasses.replace(cfg.training, holdout=args.holdout))
    if args.agreement_window is not None:
        cfg = dataclasses.replace(cfg, report=dataclasses.replace(cfg.report, agreement_window_s=args.agreement_window))
    ds = load_dataset(args.data)
    t0 = time.perf_counter()
    out = Path(args.from_results or args.out or tempfile.mkdtemp(prefix="medal-stopping-"))
    pool, test = split_cases(ds, sim)
    if args.from_results:
        csv_path = out / "results.csv"
        ran = json.loads((out / "simulation.json").read_text())["config"]  # what that run measured
        sim = dataclasses.replace(sim, seeds=tuple(ran["simulation"]["seeds"]), rounds=int(ran["simulation"]["rounds"]),
                                  initial_budget_s=float(ran["simulation"]["initial_budget_s"]))
        args.budget, args.holdout = float(ran["selection"]["budget_s"]), float(ran["training"]["holdout"])
    else:
        try:
            csv_path = simulate(ds, out, cfg, log=lambda r: print(r, flush=True), workers=args.workers,
                                resume=args.resume)
        except (ValueError, FileExistsError, FileNotFoundError) as exc:
            raise SystemExit(f"stopping: error: {exc}") from None
    rows = [r for r in read_results(csv_path) if r["strategy"] == "default"]
    per_seed, last = {}, {}
    for seed in sim.seeds:
        mine = {int(r["round"]): (float(r["seconds"]), float(r["dice_mean"])) for r in rows if int(r["seed"]) == seed}
        per_seed[seed] = seed_rounds(out / "default" / f"seed_{seed}", ds, cfg, mine)
        last[seed] = mine[max(mine)]
    summary = summarise(per_seed, last, plateau_rounds=cfg.report.plateau_rounds)
    minutes = (time.perf_counter() - t0) / 60
    rc = cfg.report
    name = args.results_name or ("stopping" + ("_tuning" if args.split == "tuning" else "") + ("_quick" if args.quick else ""))
    result = {"split": args.split, "config": Path(args.config).name, "seeds": list(sim.seeds), "rounds": sim.rounds,
              "pool_cases": len(pool), "true_dice_cases": len(test), "initial_budget_s": sim.initial_budget_s,
              "budget_s": args.budget, "holdout": args.holdout,
              "report": {"min_gain": rc.min_gain, "plateau_rounds": rc.plateau_rounds,
                         "max_pool_entropy": rc.max_pool_entropy, "min_agreement": rc.min_agreement,
                         "agreement_window_s": rc.agreement_window_s},
              "per_seed": {str(k): v for k, v in per_seed.items()},
              "last_round": {str(k): {"seconds": v[0], "true_dice": v[1]} for k, v in last.items()}, **summary}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / f"{name}.json").write_text(json.dumps(result, indent=1))

    lines = [f"- split: `{Path(sim.split_file).name}` ({args.split}){' --quick' if args.quick else ''}; config "
             f"`{Path(args.config).name}` with `training.holdout: {args.holdout:g}`; pool {len(pool)} cases, true Dice on "
             f"{len(test)} held-out cases; default selection; seeds {list(sim.seeds)}; random start "
             f"{sim.initial_budget_s:.0f} s, then {sim.rounds} time-boxed rounds of {args.budget:.0f} s; report "
             f"thresholds min_gain {rc.min_gain:g}, plateau_rounds {rc.plateau_rounds}, max_pool_entropy "
             f"{rc.max_pool_entropy:g}, min_agreement {rc.min_agreement:g}, agreement_window_s "
             f"{rc.agreement_window_s:g}; wall {minutes:.0f} min; "
             f"per-round JSON `benchmarks/results/{name}.json`",
             "", "| seed | round | true seconds | held-out slices: Dice (cases) | pool predictions vs earlier round "
             "| true Dice | report's verdict | rules fired |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for seed, rounds in per_seed.items():
        for r in rounds:
            vs = f" (vs {r['agreement_against'].removeprefix('round_')})" if r.get("agreement_against") else ""
            lines.append(f"| {seed} | {r['round']} | {r['seconds']:.0f} | {_fmt(r['holdout_dice'])} ({r['holdout_cases']}) "
                         f"| {_fmt(r['agreement'])}{vs} "
                         f"| {r['true_dice']:.3f} | {r['verdict']} | {', '.join(r['fired']) or '-'} |")
        s_end, d_end = last[seed]
        lines.append(f"| {seed} | {max(r['round'] for r in rounds) + 1} (last model) | {s_end:.0f} | - | - | {d_end:.3f} "
                     f"| - | - |")

    def where(f):
        return ", ".join(f"seed {r['seed']}: " + (f"round {r['round']} (true Dice {r['true_dice']:.3f}, "
                                                   f"{r['dice_forgone']:+.3f} forgone, {r['seconds_saved']:.0f} s saved)"
                                                   if r["round"] is not None else "never") for r in f["per_seed"])
    for level in LEVELS:
        f = summary["first"][level]
        lines.append(f"- first '{level}' (or firmer): {f['seeds_fired']}/{f['seeds']} seeds; {where(f)}")
    t = summary["tracking"]
    lines.append(f"- held-out slices vs true Dice: mean |difference| {_fmt(t['mean_abs_difference'])} over "
                 f"{t['rounds_with_holdout']} rounds; round-to-round gains agree in sign "
                 f"{_fmt(t['gain_sign_agreement'], '.0%')} of {t['gains']}, correlation {_fmt(t['gain_correlation'], '.2f')}")
    lines.append("- pool predictions' agreement (with the round before, or per agreement_window_s) vs that round's "
                 "true Dice gain: Spearman "
                 f"{_fmt(t['agreement_gain_spearman'], '.2f')} over {t['agreement_rounds']} rounds")
    for thr, f in summary["min_agreement"].items():
        lines.append(f"- `report.min_agreement: {thr}` ({rc.plateau_rounds} rounds) would first say 'consider stopping': "
                     f"{f['seeds_fired']}/{f['seeds']} seeds, mean {_fmt(f['mean_dice_forgone'], '+.3f')} Dice forgone, "
                     f"{_fmt(f['mean_seconds_saved'], '.0f')} s saved; {where(f)}")
    record(f"When to stop: `medal report`'s verdict against the true learning curve ({args.split} split)", lines)
    print("\n".join(lines))
    forgone = summary["first"]["consider stopping"]["mean_dice_forgone"]
    print(f"dice_forgone_at_first_consider_stopping: {_fmt(forgone, '+.4f')}")
    return forgone


if __name__ == "__main__":
    main()
