"""The label-efficiency benchmark's merged re-report keeps only the rows and seeds its command names."""

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _label_efficiency():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("label_efficiency_bench", ROOT / "benchmarks" / "label_efficiency.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.pop(0)


def test_merged_csv_keeps_the_asked_rows_and_seeds(tmp_path):
    path = tmp_path / "results.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["strategy", "seed", "round", "dice_mean"])
        w.writeheader()
        for s in ("default", "fg_random", "default_pseudo"):
            for seed in range(4):
                w.writerow({"strategy": s, "seed": seed, "round": 0, "dice_mean": 0.5})
    mod = _label_efficiency()
    mod._keep_asked(path, {"default", "fg_random"}, {0, 2})
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["strategy"], int(r["seed"])) for r in rows) == [
        ("default", 0), ("default", 2), ("fg_random", 0), ("fg_random", 2)]
    mod._keep_asked(path, None, None)  # nothing asked: nothing dropped
    with open(path, newline="") as f:
        assert len(list(csv.DictReader(f))) == 4
    with pytest.raises(SystemExit, match="no row random"):
        mod._keep_asked(path, {"default", "random"}, None)
