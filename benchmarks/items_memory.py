"""Training cases in RAM vs read by memory map (``training.items_in_memory_gb``): private memory and step time.

    python benchmarks/items_memory.py [--quick]

Twelve real hippocampus cases (``--quick``: six) with their labels, zoomed (image linear, labels nearest) x5 to
~9 M voxels each (``--quick``: x3, ~2 M), written as a NIfTI dataset. Then, in a fresh process each:

* ``ram``: ``prepare_items(..., in_memory_gb=None)``, every normalised case in the process's own memory (what medal
  did up to 2026-12-07, and still does below the 8 GB default);
* ``mapped``: ``in_memory_gb=0``, every case written to a scratch folder and read by memory map.

Each process then trains the default model (seeded) for one epoch of the default config (25 steps of 4 patches,
validation off). Reported: private (anonymous) resident memory, sampled every 20 ms (peak while preparing, peak
while training; file pages of the mapped cases are cache the kernel may drop and are not counted), seconds to
prepare and to train, and a hash of the trained weights (must be equal: same patches). Last line:
``items_memory_ratio: X``: private MB the prepared cases hold (after preparing, above the process before), ram /
mapped. That part grows with the dataset; the training peak adds the network's activations, which do not.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _anon_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class _Peak:
    """The largest private resident memory seen by a sampling thread between start() and stop()."""

    def __init__(self):
        self.peak, self._run = 0.0, False

    def __enter__(self):
        self.peak, self._run = _anon_mb(), True
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self):
        while self._run:
            self.peak = max(self.peak, _anon_mb())
            time.sleep(0.02)

    def __exit__(self, *exc):
        self._run = False
        self._thread.join()
        self.peak = max(self.peak, _anon_mb())


def _child(mode: str, root: str, scratch: str) -> dict:
    import numpy as np
    import torch

    from medal.config import DataConfig, ModelConfig, TrainingConfig
    from medal.data import load_dataset
    from medal.training import mapped_items, prepare_items, train_model

    torch.set_num_threads(2)
    ds = load_dataset(root)
    base = _anon_mb()
    t = time.perf_counter()
    with _Peak() as prep:
        items = prepare_items(ds, DataConfig(), in_memory_gb=None if mode == "ram" else 0.0, scratch_dir=scratch)
    prep_s = time.perf_counter() - t
    after_prep = _anon_mb()
    cfg = TrainingConfig(max_epochs=1, val_fraction=0.0, calibrate=False, semi_supervised="none", seed=0)
    t = time.perf_counter()
    with _Peak() as train:
        res = train_model(items, [], n_classes=ds.n_classes, model_cfg=ModelConfig(), train_cfg=cfg, progress=False)
    train_s = time.perf_counter() - t
    digest = hashlib.sha256()
    for k, v in sorted(res.net.state_dict().items()):
        digest.update(k.encode() + v.detach().cpu().numpy().tobytes())
    return {"mode": mode, "cases": len(items), "mapped": mapped_items(items),
            "voxels": int(sum(np.prod(i.label.shape) for i in items)),
            "array_mb": sum(i.image.nbytes + i.label.nbytes for i in items) / 2**20,
            "base_mb": base, "prep_peak_mb": prep.peak, "after_prep_mb": after_prep, "train_peak_mb": train.peak,
            "prep_s": prep_s, "train_s": train_s, "weights": digest.hexdigest()[:16]}


def _write_dataset(root: Path, n: int, zoom: float) -> None:
    import numpy as np
    from scipy import ndimage

    from medal.data import Volume, load_dataset, load_volume, sample_dataset, save_volume

    src = load_dataset(sample_dataset())
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    meta = json.loads((sample_dataset() / "dataset.json").read_text())
    training = []
    for case in src.cases[:n]:
        img, lab = load_volume(case.image), load_volume(case.label)
        affine = img.affine.copy()
        affine[:3, :3] /= zoom
        big = ndimage.zoom(img.array.astype(np.float32), zoom, order=1)
        save_volume(Volume(big, affine), root / "imagesTr" / f"{case.case_id}.nii.gz")
        save_volume(Volume(ndimage.zoom(lab.array, zoom, order=0).astype(np.uint8), affine),
                    root / "labelsTr" / f"{case.case_id}.nii.gz")
        training.append({"image": f"./imagesTr/{case.case_id}.nii.gz", "label": f"./labelsTr/{case.case_id}.nii.gz"})
    meta.update(training=training, test=[], numTraining=len(training))
    (root / "dataset.json").write_text(json.dumps(meta, indent=1))


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", nargs=3, metavar=("MODE", "ROOT", "SCRATCH"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_child(*args.child)))
        return 0.0
    from _record import record

    n, zoom = (6, 3.0) if args.quick else (12, 5.0)
    with tempfile.TemporaryDirectory(prefix="medal-items-") as tmp:
        root = Path(tmp) / "data"
        _write_dataset(root, n, zoom)
        out = {}
        for mode in ("ram", "mapped"):
            proc = subprocess.run([sys.executable, __file__, "--child", mode, str(root), str(Path(tmp) / "scratch")],
                                  capture_output=True, text=True, check=True)
            out[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
        left = list((Path(tmp) / "scratch").iterdir())
    if out["ram"]["weights"] != out["mapped"]["weights"]:
        raise SystemExit(f"trained weights differ: {out['ram']['weights']} vs {out['mapped']['weights']}")
    if left:
        raise SystemExit(f"scratch folder not empty: {left}")
    r, m = out["ram"], out["mapped"]
    held = {k: o["after_prep_mb"] - o["base_mb"] for k, o in out.items()}
    ratio = held["ram"] / max(held["mapped"], 1.0)
    rows = [f"| {o['mode']} | {o['mapped']}/{o['cases']} | {o['base_mb']:.0f} | {o['prep_peak_mb']:.0f} | "
            f"{o['after_prep_mb']:.0f} | {o['train_peak_mb']:.0f} | {o['prep_s']:.1f} | {o['train_s']:.1f} | "
            f"`{o['weights']}` |" for o in (r, m)]
    lines = [f"{n} real hippocampus cases zoomed x{zoom:g} ({r['voxels'] / 1e6:.1f} M voxels in all; normalised "
             f"images and labels {r['array_mb']:.0f} MB), written as NIfTI; a fresh process per row; default model and "
             "training config, one epoch (25 steps of 4 patches), no validation, seed 0.", "",
             "| cases in | by memory map | private MB before | peak while preparing | after preparing | "
             "peak while training | prepare s | train s | weights (sha256) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |", *rows, "",
             f"- private memory the prepared cases hold, ram / mapped: {held['ram']:.0f} / {held['mapped']:.0f} MB = "
             f"**{ratio:.1f}x**; peak while training {r['train_peak_mb']:.0f} vs {m['train_peak_mb']:.0f} MB; train "
             f"seconds mapped / ram: {m['train_s'] / r['train_s']:.2f}; weights identical, scratch folder empty "
             "afterwards."]
    print("\n".join(rows))
    record("Training cases in RAM vs by memory map" + (" (quick)" if args.quick else ""), lines)
    print(f"items_memory_ratio: {ratio:.1f}")
    return ratio


if __name__ == "__main__":
    main()
