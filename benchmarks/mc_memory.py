"""Memory vs T: peak memory of MC scoring with T=40 / T=5 samples.

    python benchmarks/mc_memory.py [--quick]

Each measurement runs in a fresh process: peak resident memory (``ru_maxrss``) after scoring minus
the resident memory before it (model and volume loaded). medal's streaming moments are compared
with the common approach that stacks all T probability maps before computing the measures.
Last line: ``mc_memory_ratio: X`` (T=40 / T=5, streaming).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def child(samples: int, mode: str, zoom: float) -> None:
    import numpy as np
    import torch
    from _volumes import real_volume

    from medal.config import ModelConfig, UncertaintyConfig
    from medal.model import build_model
    from medal.uncertainty.inference import mc_predict
    from medal.uncertainty.mc import mc_dropout
    from medal.uncertainty.measures import MEASURES

    torch.manual_seed(0)
    vol = real_volume(zoom=zoom)
    net = build_model(ModelConfig(), out_channels=3)
    before = _rss_mb()
    if mode == "streaming":
        res = mc_predict(net, vol, n_samples=samples, sample_batch=5, roi_size=UncertaintyConfig().roi_size)
        res.measures(["entropy", "bald"])
    else:  # stack every sample's probabilities, then compute the measures (MONAI Label style)
        from monai.inferers import sliding_window_inference

        x = torch.from_numpy(vol)[None, None]
        with torch.no_grad(), mc_dropout(net):
            probs = np.stack([torch.softmax(sliding_window_inference(x, UncertaintyConfig().roi_size, 1, net), 1)[0]
                              .numpy() for _ in range(samples)])
        MEASURES["entropy"](probs), MEASURES["bald"](probs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"delta_mb": peak - before, "before_mb": before, "peak_mb": peak}))


def measure(samples: int, mode: str, zoom: float) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(samples), mode, str(zoom)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(int(args.child[0]), args.child[1], float(args.child[2]))
        return 0.0
    from _record import record

    zoom = 1.5 if args.quick else 3.0
    rows, ratios = [], {}
    for mode in ("streaming", "stacked"):
        small, large = measure(5, mode, zoom), measure(40, mode, zoom)
        ratios[mode] = large["delta_mb"] / max(small["delta_mb"], 1e-9)
        rows.append(f"| {mode} | {small['delta_mb']:.0f} | {large['delta_mb']:.0f} | **{ratios[mode]:.2f}** |")
        print(rows[-1], flush=True)
    lines = [f"Real hippocampus_004 zoomed x{zoom}, default model (head placement), sliding window; memory above the "
             "loaded model and volume, fresh process each. Target (streaming): <= 1.2.", "",
             "| MC scoring | peak MB, T=5 | peak MB, T=40 | ratio T=40/T=5 |", "| --- | --- | --- | --- |", *rows]
    record("MC memory vs T" + (" (quick)" if args.quick else ""), lines)
    print(f"mc_memory_ratio: {ratios['streaming']:.2f}")
    return ratios["streaming"]


if __name__ == "__main__":
    main()
