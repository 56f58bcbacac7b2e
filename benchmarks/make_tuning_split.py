"""Write benchmarks/hippocampus_tuning_split.json: the split every setting is chosen on.

    python benchmarks/make_tuning_split.py

Carved from the ``train`` side of ``hippocampus_split.json`` only: never its 40 test cases, and
never the 60 cases the final label-efficiency runs take as their pool (``simulation.max_pool: 60``
picks them with a fixed seed). Of the 120 training cases left, 60 become the tuning pool and 40 the
tuning validation cases (the ``test`` key, so ``simulation.split_file`` reads it like the final split).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 20261122


def main() -> Path:
    split = json.loads((HERE / "hippocampus_split.json").read_text())
    train = sorted(split["train"])
    final_pool = set(np.random.default_rng(54321).permutation(train)[:60].tolist())  # as split_cases picks it
    rest = [c for c in train if c not in final_pool]
    order = np.random.default_rng(SEED).permutation(rest).tolist()
    out = {"seed": SEED,
           "note": "Tuning split carved from the 'train' side of hippocampus_split.json, disjoint from its 40 test "
                   "cases and from the 60-case pool of the final label-efficiency runs: choose settings here, "
                   "report on hippocampus_split.json once. Made by benchmarks/make_tuning_split.py.",
           "pool": sorted(order[:60]), "test": sorted(order[60:100])}
    assert not set(out["pool"]) & set(split["test"]) and not set(out["test"]) & set(split["test"])
    path = HERE / "hippocampus_tuning_split.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"{path}: pool {len(out['pool'])}, validation (test key) {len(out['test'])}")
    return path


if __name__ == "__main__":
    main()
