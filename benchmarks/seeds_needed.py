"""How many seeds would the label-efficiency comparisons need? A power analysis of recorded runs.

    python benchmarks/seeds_needed.py [NAME ...]      (NAME: a benchmarks/results/NAME.json)

For every pair of rows that share seeds in each results file (rows of different semi-supervised
modes only when one is the default) (``medal simulate``'s fields:
``strategies.ROW.aubc_per_seed``), prints the mean AUBC difference, its seed-to-seed standard
deviation, the paired t-test's p, and the seeds a paired t-test would need for 80% power if the
observed mean and spread were the truth (``medal.simulation.report.seeds_for_power``). It runs nothing
but arithmetic on recorded figures: a planning aid for sizing the next confirmation run (how many
seeds, or how large an effect a change must add), never a substitute for running it. Writes
``benchmarks/results/seeds_needed.json`` and appends to ``RESULTS.md``; the last line is the seeds
needed for medal's default against random in the first file.
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
    ap.add_argument("--no-record", action="store_true", help="print only; RESULTS.md and the JSON stay as they are")
    args = ap.parse_args(argv)
    from _record import record

    report, lines, headline = {}, [], None
    for name in args.names:
        path = HERE / "results" / f"{name}.json"
        try:
            result = json.loads(path.read_text())
            comps = analyse(result)
        except (OSError, ValueError, KeyError) as exc:
            print(f"{path}: skipped ({type(exc).__name__}: {exc})", file=sys.stderr)
            continue
        report[name] = {"split": result.get("split"), "timed": result.get("timed"), "comparisons": comps}
        lines += [f"`{name}.json` (split {result.get('split')}, {'time-boxed' if result.get('timed') else 'not time-boxed'} "
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
        (HERE / "results" / "seeds_needed.json").write_text(json.dumps(report, indent=1) + "\n")
        record("Seeds needed: power analysis of recorded label-efficiency runs", lines)
    print(f"seeds_for_80pct_power_default_vs_random: {headline if headline is not None else 'n/a'}")
    return headline


if __name__ == "__main__":
    main()
