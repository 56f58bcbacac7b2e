"""MC cost ratio: wall time of T=20 MC-dropout scoring / one deterministic pass, same volume, same run.

    python benchmarks/mc_cost.py [--quick]

For each dropout placement (``head``: medal's default, ``decoder``, ``monai``: MONAI UNet's own), on a
real hippocampus case at its own size and zoomed x3 (sliding window over ~105x150x110 voxels).
MONAI Label's epistemic scoring runs T full passes (ratio about T). Last line: ``mc_cost_ratio: X``
for the default placement on the zoomed volume.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--samples", type=int, default=20)
    args = ap.parse_args(argv)

    import torch
    from _record import record
    from _volumes import real_volume

    from medal.config import ModelConfig, UncertaintyConfig
    from medal.model import build_model
    from medal.model.device import resolve_device
    from medal.uncertainty.inference import mc_predict, predict_probs

    device = resolve_device("auto")
    roi = UncertaintyConfig().roi_size
    volumes = {"hippocampus_004 (36x52x38)": real_volume()}
    if not args.quick:
        volumes["hippocampus_004 zoomed x3"] = real_volume(zoom=3.0)
    repeats = 1 if args.quick else 3
    rows, headline = [], None
    for vname, vol in volumes.items():
        for placement in ("head", "decoder", "monai"):
            torch.manual_seed(0)
            net = build_model(ModelConfig(placement=placement), out_channels=3).to(device)
            det = _median_time(lambda: predict_probs(net, vol, roi_size=roi, device=device), repeats)
            mc = _median_time(lambda: mc_predict(net, vol, n_samples=args.samples, sample_batch=10, roi_size=roi,
                                                 device=device), repeats)
            rows.append(f"| {vname} {tuple(vol.shape)} | {placement} | {det * 1000:.0f} | {mc * 1000:.0f} | "
                        f"**{mc / det:.2f}** |")
            print(rows[-1], flush=True)
            if placement == "head":
                headline = mc / det
    lines = [f"T = {args.samples} MC samples (sample_batch 10), sliding window {roi}, default U-Net channels "
             f"{ModelConfig().channels}; median of {repeats} after a warm-up. Target for the default (head): <= 2.0.",
             "", "| volume | dropout placement | deterministic pass (ms) | T-sample MC scoring (ms) | ratio |",
             "| --- | --- | --- | --- | --- |", *rows]
    record("MC cost ratio" + (" (quick)" if args.quick else ""), lines)
    print(f"mc_cost_ratio: {headline:.2f}")
    return headline


if __name__ == "__main__":
    main()
