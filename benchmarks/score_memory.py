"""Scoring a CT-sized volume: memory and time of turning MC moments into measures and stored probabilities.

    python benchmarks/score_memory.py [--quick]

A real MRI case's MC-dropout moments (default model, untrained, head placement, T=20, sliding window), zoomed
(linear) to a CT-sized grid (288 x 416 x 304 = 36 M voxels; ``--quick``: 144 x 208 x 152), then, in a fresh process
each: the measures medal's config asks for by default (entropy, BALD, variance, margin, least confidence) and the
probabilities' uint8 file, computed

* ``whole``: as medal did up to 2026-12-07, every measure in float64 over the whole volume at once
  (``measures_from_moments`` on the whole arrays) and the probabilities cast to float64 in one piece;
* ``slabs``: as ``MCResult.measures`` / ``save_probs`` do now, float64 a slab of the last axis (~1 M voxels) and a
  class at a time.

Outputs are checked identical. Peak resident memory above the loaded moments (``ru_maxrss``), wall seconds.
Last line: ``score_memory_ratio: X`` (peak MB slabs / whole; below 1 = less memory).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
NAMES = ["entropy", "bald", "variance", "margin", "least_confidence"]


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def moments(path: Path, zoom: float) -> None:
    import numpy as np
    import torch
    from _volumes import real_volume
    from scipy import ndimage

    from medal.config import ModelConfig, UncertaintyConfig
    from medal.model import build_model
    from medal.uncertainty.inference import mc_predict

    torch.manual_seed(0)
    net = build_model(ModelConfig(), out_channels=3)
    res = mc_predict(net, real_volume(), n_samples=20, sample_batch=10, roi_size=UncertaintyConfig().roi_size)
    z = lambda a: ndimage.zoom(a, (1, zoom, zoom, zoom) if a.ndim == 4 else zoom, order=1).astype(np.float32)  # noqa: E731
    np.savez(path, p=z(res.mean_probs), p2=z(res.mean_p2), h=z(res.mean_entropy))


def child(path: str, mode: str) -> None:
    import nibabel as nib
    import numpy as np

    from medal.data import Volume
    from medal.uncertainty.inference import MCResult
    from medal.uncertainty.measures import measures_from_moments
    from medal.uncertainty.score import PROBS_SCALE, save_probs

    with np.load(path) as f:
        p, p2, h = f["p"], f["p2"], f["h"]
    res = MCResult(p, p2, h, 20)
    before = _rss_mb()
    start = time.perf_counter()
    out = Path(tempfile.mkdtemp()) / "probs.nii.gz"
    if mode == "whole":
        allm = measures_from_moments(p.astype(np.float64), p2.astype(np.float64), h.astype(np.float64))
        got = {n: allm[n] for n in NAMES}
        q = np.clip(np.rint(np.moveaxis(res.full_probs().astype(np.float64), 0, -1) * PROBS_SCALE), 0,
                    PROBS_SCALE).astype(np.uint8)
        img = nib.Nifti1Image(q, np.eye(4))
        img.header.set_slope_inter(1.0 / PROBS_SCALE, 0.0)
        nib.save(img, str(out))
    else:
        got = res.measures(NAMES)
        save_probs(Volume(h, np.eye(4)), res.full_probs(), out)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    digest_q = hashlib.sha256(np.asarray(nib.load(str(out)).dataobj.get_unscaled()).tobytes()).hexdigest()
    digest = hashlib.sha256(b"".join(got[n].tobytes() for n in NAMES)).hexdigest()
    print(json.dumps({"delta_mb": peak - before, "seconds": seconds, "measures": digest, "probs": digest_q,
                      "voxels": int(h.size)}))


def measure(path: Path, mode: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", str(path), mode], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0.0
    from _record import record

    zoom = 4.0 if args.quick else 8.0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "moments.npz"
        moments(path, zoom)
        res = {mode: measure(path, mode) for mode in ("whole", "slabs")}
    same = res["whole"]["measures"] == res["slabs"]["measures"] and res["whole"]["probs"] == res["slabs"]["probs"]
    if not same:
        raise SystemExit("the slab path's measures or probabilities differ from the whole volume's")
    ratio = res["slabs"]["delta_mb"] / res["whole"]["delta_mb"]
    speed = res["whole"]["seconds"] / res["slabs"]["seconds"]
    rows = [f"| {m} | {r['delta_mb']:.0f} | {r['seconds']:.1f} |" for m, r in res.items()]
    lines = [f"hippocampus_004's MC moments (default model, untrained, T=20) zoomed x{zoom:g} to "
             f"{res['whole']['voxels'] / 1e6:.1f} M voxels; measures {', '.join(NAMES)} and the uint8 "
             "probabilities, fresh process each; outputs identical (sha256 of every measure and of the stored "
             "probabilities).", "",
             "| path | peak MB above the moments | seconds |", "| --- | --- | --- |", *rows, "",
             f"- memory, slabs / whole: **{ratio:.2f}**; time, whole / slabs: **{speed:.1f}x**"]
    print("\n".join(rows))
    record("Scoring a CT-sized volume: measures and probabilities" + (" (quick)" if args.quick else ""), lines)
    print(f"score_memory_ratio: {ratio:.2f}")
    return ratio


if __name__ == "__main__":
    main()
