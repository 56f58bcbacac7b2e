"""How many seeds would the label-efficiency comparisons need? A power analysis of recorded runs.

    python benchmarks/seeds_needed.py [NAME ...]      (NAME: a benchmarks/results/NAME.json)
    python benchmarks/seeds_needed.py --pool NAME NAME ...

For every pair of rows that share seeds in each results file (rows of different semi-supervised
modes only when one is the default) (``medal simulate``'s fields:
``strategies.ROW.aubc_per_seed``), prints the mean AUBC difference, its seed-to-seed standard
deviation, the paired t-test's p, and the seeds a paired t-test would need for 80% power if the
observed mean and spread were the truth (``medal.simulation.report.seeds_for_power``). It runs nothing
but arithmetic on recorded figures: a planning aid for sizing the next confirmation run (how many
seeds, or how large an effect a change must add), never a substitute for running it. Adds its
analyses to ``benchmarks/results/seeds_needed.json`` (one key per file or pool) and appends to ``RESULTS.md``; the last line is the seeds
needed for medal's default against random in the first file.

``--pool`` reads the named files as one run: runs of one protocol (same split, data, config, unit kind,
rounds, budgets, time-boxing, annotation mode and start groups, else a one-line error naming the file
and the key) on disjoint seeds, e.g. a confirmation run on fresh seeds after an earlier one. Each
seed's AUBC difference stays within its own run (rows of one run share the AUBC's seconds axis), so
pooling only adds seeds to the paired test. Whether a pooled reading may decide anything is for the
plan written before the run to say.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DEFAULT_FILES = ["semi_supervised", "label_efficiency_tuning_timed", "label_efficiency"]
#: what must match for runs to be pooled (``label_efficiency.py``'s results fields)
PROTOCOL_KEYS = ("split", "split_file", "kind", "config", "data", "rounds", "budget_s", "timed", "reserve",
                 "annotation", "initial_budget_s", "initial_groups", "default_strategy")


def pool(results: dict[str, dict]) -> dict:
    """One results dict from several runs of one protocol on disjoint seeds (``--pool``).

    Only the per-seed AUBC of the rows every run has is kept (what :func:`analyse` reads). Raises
    ``ValueError`` naming the file and key where a protocol field differs or a seed repeats.
    """
    names = list(results)
    if len(names) < 2:
        raise ValueError("--pool needs at least two distinct results files")
    first = results[names[0]]
    for name in names[1:]:
        for key in PROTOCOL_KEYS:
            if results[name].get(key) != first.get(key):
                raise ValueError(f"{name}.json: {key} is {results[name].get(key)!r}, {names[0]}.json has "
                                 f"{first.get(key)!r}; only runs of one protocol can be pooled")
    rows = set.intersection(*(set(r["strategies"]) for r in results.values()))
    if not rows:
        raise ValueError(f"{', '.join(names)}: no row in common")
    strategies, owner = {}, {}
    for row in sorted(rows):
        per_seed = {}
        for name in names:
            for seed, v in results[name]["strategies"][row]["aubc_per_seed"].items():
                if seed in per_seed:
                    raise ValueError(f"{name}.json: seed {seed} is also in {owner[seed]}.json; pool disjoint seeds only")
                per_seed[seed], owner[seed] = v, name
        strategies[row] = {"aubc_per_seed": per_seed,
                           "semi_supervised": results[names[0]]["strategies"][row].get("semi_supervised")}
    out = {key: first.get(key) for key in PROTOCOL_KEYS}
    out.update(strategies=strategies, pooled=names,
               seeds=sorted({int(s) for r in strategies.values() for s in r["aubc_per_seed"]}))
    return out


def analyse(result: dict) -> list[dict]:
    from scipy import stats

    from medal.simulation.report import seeds_for_power

    rows = result["strategies"]
    default = result.get("default_strategy", "default")
    out = []
    for a, b in itertools.combinations(sorted(rows), 2):
        if b == default:  # the default first, as in the benchmark's comparisons
            a, b = b, a
        if a != default and rows[a].get("semi_supervised") != rows[b].get("semi_supervised"):
            continue  # across training modes only against the default (selection is compared within a mode)
        common = sorted(set(rows[a]["aubc_per_seed"]) & set(rows[b]["aubc_per_seed"]), key=int)
        if len(common) < 2:
            continue
        d = np.array([rows[a]["aubc_per_seed"][k] - rows[b]["aubc_per_seed"][k] for k in common])
        p = float(stats.ttest_rel(d, np.zeros_like(d)).pvalue) if np.any(d != 0) else float("nan")
        out.append({"a": a, "b": b, "seeds": len(common), "mean_diff": float(d.mean()),
                    "sd_diff": float(d.std(ddof=1)), "p_paired_t": p, "a_wins": int((d > 0).sum()),
                    "seeds_for_80pct_power": seeds_for_power(d)})
    return out


def main(argv=None) -> int | None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", default=DEFAULT_FILES, help="results JSON names (benchmarks/results/NAME.json)")
    ap.add_argument("--pool", action="store_true",
                    help="read the named files as one run: one protocol, disjoint seeds (see the module docstring)")
    ap.add_argument("--no-record", action="store_true", help="print only; RESULTS.md and the JSON stay as they are")
    args = ap.parse_args(argv)
    from _record import record

    report, lines, headline = {}, [], None
    loaded = {}
    for name in args.names:
        path = HERE / "results" / f"{name}.json"
        try:
            loaded[name] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            if args.pool:
                sys.exit(f"{path}: cannot be read ({type(exc).__name__}: {exc})")
            print(f"{path}: skipped ({type(exc).__name__}: {exc})", file=sys.stderr)
    if args.pool:
        try:
            loaded = {" + ".join(loaded): pool(loaded)}
        except (ValueError, KeyError) as exc:
            sys.exit(f"--pool: {exc}")
    for name, result in loaded.items():
        try:
            comps = analyse(result)
        except (ValueError, KeyError) as exc:
            print(f"{name}: skipped ({type(exc).__name__}: {exc})", file=sys.stderr)
            continue
        report[name] = {"split": result.get("split"), "timed": result.get("timed"), "comparisons": comps}
        if result.get("pooled"):
            report[name].update(pooled=result["pooled"], seeds=result["seeds"])
        label = " + ".join(f"`{n}.json`" for n in result["pooled"]) + " pooled" if result.get("pooled") else f"`{name}.json`"
        lines += [f"{label} (split {result.get('split')}, {'time-boxed' if result.get('timed') else 'not time-boxed'} "
                  f"rounds):", "",
                  "| A | B | seeds | mean(A - B) | sd of the differences | A better in | p | seeds for 80% power |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for c in comps:
            n80 = c["seeds_for_80pct_power"]
            lines.append(f"| {c['a']} | {c['b']} | {c['seeds']} | {c['mean_diff']:+.4f} | {c['sd_diff']:.4f} | "
                         f"{c['a_wins']}/{c['seeds']} | {c['p_paired_t']:.3g} | {'> 1000' if n80 is None else n80} |")
            if headline is None and c["a"] == result.get("default_strategy", "default") and c["b"] == "random":
                headline = n80
        lines.append("")
    for line in lines:
        print(line)
    if not args.no_record and report:
        (HERE / "results").mkdir(exist_ok=True)
        out = HERE / "results" / "seeds_needed.json"
        try:  # earlier analyses of other files stay; a file (or pool) analysed again is replaced
            report = {**json.loads(out.read_text()), **report}
        except (OSError, ValueError):
            pass
        out.write_text(json.dumps(report, indent=1) + "\n")
        record("Seeds needed: power analysis of recorded label-efficiency runs", lines)
    print(f"seeds_for_80pct_power_default_vs_random: {headline if headline is not None else 'n/a'}")
    return headline


if __name__ == "__main__":
    main()
