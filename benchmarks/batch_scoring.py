"""Batch scoring throughput: 1 vs 2 local workers, and Ray vs local, on the same real cases.

    python benchmarks/batch_scoring.py [--quick]

Scores N real hippocampus cases (default model, T=20) into fresh folders with: the local executor
in-process (1 worker, all cores), the local executor with 2 worker processes (1 thread each), and a
local Ray cluster with 2 actors (1 CPU each). Worker start-up (loading the model) is included: it
is part of what a user waits for. Last line: ``local_2_vs_1_throughput: X``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cases", type=int, default=24)
    args = ap.parse_args(argv)
    import torch
    from _record import record
    from _volumes import DATA

    from medal.config import DataConfig, ModelConfig, UncertaintyConfig
    from medal.data import load_dataset, sample_dataset
    from medal.execution import LocalExecutor, RayExecutor, ScoreSpec, score_dataset
    from medal.model import build_model, save_checkpoint

    n = 6 if args.quick else args.cases
    root = DATA if (DATA / "dataset.json").is_file() else sample_dataset()
    cases = load_dataset(root).cases[:n]
    tmp = Path(tempfile.mkdtemp(prefix="medal-batch-"))
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp / "m.pt", build_model(ModelConfig(), out_channels=3), ModelConfig(), in_channels=1,
                           out_channels=3)
    ucfg = UncertaintyConfig(mc_samples=20)
    cores = os.cpu_count() or 1
    runs = [("local, 1 worker", LocalExecutor(1, threads=cores)),
            ("local, 2 workers", LocalExecutor(2, threads=max(1, cores // 2))),
            ("ray, 2 actors", RayExecutor(2, num_cpus=2))]
    rows, rate = [], {}
    for name, ex in runs:
        out = tmp / name.replace(" ", "_").replace(",", "")
        t = time.perf_counter()
        rep = score_dataset(ScoreSpec.make(ckpt, out, ucfg, DataConfig()), cases, ex, progress=False)
        secs = time.perf_counter() - t
        assert rep.ok and rep.count("scored") == n, rep.summary()
        rate[name] = n / secs
        rows.append(f"| {name} | {secs:.1f} | {rate[name]:.2f} |")
        print(rows[-1], flush=True)
    two_vs_one = rate["local, 2 workers"] / rate["local, 1 worker"]
    ray_overhead = rate["local, 2 workers"] / rate["ray, 2 actors"]
    lines = [f"{n} real hippocampus cases, default model (head placement), T=20, wall time including worker "
             "start-up and writing every output.", "", "| executor | seconds | volumes/s |", "| --- | --- | --- |",
             *rows, "", f"- throughput, 2 local workers / 1: **{two_vs_one:.2f}**",
             f"- overhead, local 2 workers / Ray 2 actors (time ratio, > 1 = Ray slower): **{ray_overhead:.2f}**"]
    record("Batch scoring" + (" (quick)" if args.quick else ""), lines)
    print(f"local_2_vs_1_throughput: {two_vs_one:.2f}")
    return two_vs_one


if __name__ == "__main__":
    main()
