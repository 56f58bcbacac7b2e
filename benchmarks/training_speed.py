"""Training throughput: optimiser steps per second in fp32 and in bf16 mixed precision, side by side.

    python benchmarks/training_speed.py [--quick] [--device auto|cpu|cuda]

For the models of ``configs/label_efficiency_cpu.yaml`` (3 levels, 8-32 channels, batch 4) and
``configs/label_efficiency_full.yaml`` (4 levels, 16-128 channels, batch 8), each trained by medal's own
``train_model`` on real hippocampus cases (``training.precision`` fp32, then bf16: the forward pass and the
loss under bfloat16 autocast, fp32 weights), after a warm-up run. On a GPU the ratio says whether
``precision: bf16`` pays (bf16 tensor cores run at twice TF32's rate on Ampere and later); on a CPU it runs
but is expected slower. Last line: ``bf16_over_fp32_steps_per_s: X`` for the full config's model.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
DATA = HERE.parent.parent / "shared" / "data" / "hippocampus"


def steps_per_s(items, model_cfg, train_cfg, steps: int) -> float:
    """Optimiser steps per second of ``train_model`` over ``steps`` steps (one epoch, no validation)."""
    import torch

    from medal.training import train_model

    cfg = dataclasses.replace(train_cfg, max_epochs=1, iterations_per_epoch=steps, val_fraction=0.0)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    train_model(items, [], n_classes=3, model_cfg=model_cfg, train_cfg=cfg, progress=False)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - t)


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps (a check that it runs)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per measurement (default 60; 10 with --quick)")
    ap.add_argument("--data", default=str(DATA))
    args = ap.parse_args(argv)

    from _record import record

    from medal.config import load_config
    from medal.data import load_dataset
    from medal.model.device import resolve_device
    from medal.training import prepare_items

    device = resolve_device(args.device)
    steps = args.steps or (10 if args.quick else 60)
    ds = load_dataset(args.data)
    ids = [c.case_id for c in ds.cases if c.label is not None][:8]
    rows, ratio = [], float("nan")
    for name in ("label_efficiency_cpu.yaml", "label_efficiency_full.yaml"):
        cfg = load_config(HERE.parent / "configs" / name)
        items = prepare_items(ds, cfg.data, case_ids=set(ids))
        tcfg = dataclasses.replace(cfg.training, device=str(device), semi_supervised="none")
        got = {}
        for precision in ("fp32", "bf16"):
            run = dataclasses.replace(tcfg, precision=precision)
            steps_per_s(items, cfg.model, run, max(2, steps // 5))  # warm-up (cuDNN plans, allocator)
            got[precision] = steps_per_s(items, cfg.model, run, steps)
        ratio = got["bf16"] / got["fp32"]
        rows.append(f"| {name} | {cfg.training.batch_size} x {list(cfg.training.patch_size)} | {got['fp32']:.2f} | "
                    f"{got['bf16']:.2f} | {ratio:.2f} |")
        print(f"{name}: fp32 {got['fp32']:.2f} steps/s, bf16 {got['bf16']:.2f} steps/s, ratio {ratio:.2f}", flush=True)
    lines = [f"- device: {device}; {steps} timed steps per cell after a warm-up; {len(ids)} real cases; "
             "medal's train_model (patch sampling included)", "",
             "| model of | batch x patch | fp32 steps/s | bf16 steps/s | bf16 / fp32 |", "| --- | --- | --- | --- | --- |",
             *rows]
    if not args.quick:
        record("Training throughput: fp32 vs bf16 mixed precision", lines)
    print(f"bf16_over_fp32_steps_per_s: {ratio:.2f}")
    return ratio


if __name__ == "__main__":
    main()
