"""What each strategy actually chose in a label-efficiency run: foreground share, area, predicted cost.

    python benchmarks/selection_diagnostics.py RUN_FOLDER [--data ../shared/data/hippocampus]

RUN_FOLDER is the ``main/`` folder that benchmarks/label_efficiency.py (or ``medal simulate``) wrote.
For every strategy, over all seeds and rounds: how many slices were chosen, the share that contain
any ground-truth foreground, their mean foreground area, and their mean predicted cost. Last line:
``knapsack_fg_slice_share: X`` (percent).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="the simulation folder (with results.csv and one folder per strategy)")
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data" / "hippocampus"))
    args = ap.parse_args(argv)
    from _record import record

    from medal.data import load_dataset, load_volume
    from medal.tasks import read_tasks

    ds = load_dataset(args.data)
    root = Path(args.run)
    labels: dict = {}
    rows, share = [], {}
    for sdir in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in ("initial", "shared")):
        chosen = []
        for tf in sorted(sdir.glob("seed_*/round_[0-9]*/tasks.json")):
            for t in read_tasks(tf).tasks:
                if t.case_id not in labels:
                    labels[t.case_id] = load_volume(ds.case(t.case_id).label).array
                sl = np.take(labels[t.case_id], t.index, axis=t.axis) if t.kind == "slice" else None
                chosen.append(((sl > 0).any(), (sl > 0).mean(), t.predicted_cost_s) if sl is not None else None)
        chosen = [c for c in chosen if c is not None]
        if not chosen:
            continue
        fg, area, cost = map(np.array, zip(*chosen))
        share[sdir.name] = 100 * fg.mean()
        rows.append(f"| {sdir.name} | {len(chosen)} | {100 * fg.mean():.1f}% | {100 * area.mean():.2f}% | {cost.mean():.1f} |")
        print(rows[-1], flush=True)
    record("Selection diagnostics", [f"Slices chosen in all rounds and seeds of `{root}`, against the ground truth.", "",
                                     "| strategy | slices chosen | with any foreground | mean foreground area | "
                                     "mean predicted cost (s) |", "| --- | --- | --- | --- | --- |", *rows])
    print(f"knapsack_fg_slice_share: {share.get('knapsack', float('nan')):.1f}")
    return share.get("knapsack", float("nan"))


if __name__ == "__main__":
    main()
