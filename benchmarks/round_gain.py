"""What a selection round's Dice gain goes with, read from the kept label-efficiency results (no training).

    python benchmarks/round_gain.py [--raw benchmarks/results/raw]

Issue 11's ordinary protocol ties however the slices are chosen (value types, BADGE, even the true errors as
value). This reads every kept tuning-split run of the ordinary protocol (``benchmarks/results/raw/label_efficiency_
tuning_*/results.csv``; new-site, inverted-site, GPU, supervoxel and correction runs left out, as other protocols)
and asks, among rows that share a seed, a round and the same model before it (the same previous-round Dice), how a
row's Dice gain in that round goes with what it painted: the number of slices, those with and without hippocampus
(``round_fg_tasks``), the share of the pool's voxels added and the seconds charged. Each quantity is centred
within its group (so the seed and the starting model drop out); the correlations and a least-squares fit of the
gain on (slices with foreground, slices without, seconds) are printed, and the last line is the correlation of
the gain with the number of slices painted.
"""

from __future__ import annotations

import argparse
import collections
import csv
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
OTHER_PROTOCOLS = ("newsite", "inverted", "gpu", "supervoxel", "correct")


def gains(raw: Path) -> list[dict]:
    """One record per (run folder, row, seed, round >= 1): the Dice gain over the previous round and what was painted."""
    out = []
    for f in sorted(raw.glob("label_efficiency_tuning_*/results.csv")):
        if any(k in f.parent.name for k in OTHER_PROTOCOLS):
            continue
        with open(f, newline="") as fh:
            rows = {(r["strategy"], r["seed"], int(r["round"])): r for r in csv.DictReader(fh)}
        for (row, seed, rnd), r in rows.items():
            prev = rows.get((row, seed, rnd - 1))
            if rnd == 0 or prev is None or not r.get("round_tasks") or not r.get("round_fg_tasks"):
                continue
            n, fg = int(r["round_tasks"]), int(r["round_fg_tasks"])
            out.append({"group": (f.parent.name, seed, rnd, round(float(prev["dice_mean"]), 4)),
                        "gain": float(r["dice_mean"]) - float(prev["dice_mean"]), "slices": n, "fg": fg,
                        "no_fg": n - fg, "voxels": float(r["pct_voxels"]) - float(prev["pct_voxels"]),
                        "seconds": float(r["round_charged_s"])})
    return out


def centred(records: list[dict], keys) -> tuple[np.ndarray, int]:
    """``keys`` centred within groups of >= 2 rows: an array (rows, keys), and the number of groups."""
    by = collections.defaultdict(list)
    for r in records:
        by[r["group"]].append(r)
    out, n_groups = [], 0
    for members in by.values():
        if len(members) < 2:
            continue
        n_groups += 1
        m = np.array([[r[k] for k in keys] for r in members], dtype=float)
        out.append(m - m.mean(0))
    return (np.concatenate(out) if out else np.zeros((0, len(keys)))), n_groups


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", type=Path, default=HERE / "results" / "raw")
    ap.add_argument("--results", type=Path, default=HERE / "RESULTS.md", help="where the entry is appended")
    args = ap.parse_args(argv)
    keys = ("gain", "slices", "fg", "no_fg", "voxels", "seconds")
    records = gains(args.raw)
    x, n_groups = centred(records, keys)
    if len(x) < 3:
        print(f"{args.raw}: fewer than 3 comparable rows", file=sys.stderr)
        return 1
    lines = [f"- {len(records)} row-rounds from {len({r['group'][0] for r in records})} kept runs of the ordinary "
             f"protocol; {len(x)} in {n_groups} groups of rows sharing a seed, a round and the model before it"]
    lines += [f"- corr(gain, {k}) = {np.corrcoef(x[:, 0], x[:, i])[0, 1]:+.3f}" for i, k in enumerate(keys[1:], 1)]
    a = x[:, [keys.index("fg"), keys.index("no_fg"), keys.index("seconds")]]
    coef, *_ = np.linalg.lstsq(a, x[:, 0], rcond=None)
    lines.append(f"- least squares: Dice gain per slice with foreground {coef[0]:+.5f}, per slice without "
                 f"{coef[1]:+.5f}, per second {coef[2]:+.6f}")
    for line in lines:
        print(line[2:])
    from _record import record

    record("A round's Dice gain and what it painted (kept results, no training)", lines, path=args.results)
    print(f"corr(round Dice gain, slices painted) = {np.corrcoef(x[:, 0], x[:, 1])[0, 1]:+.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
