"""How close a temperature fitted on windows comes to one fitted on the whole volume (large validation cases).

    python benchmarks/calibration_windows.py [--quick]

A validation case above ``training.val_whole_max_voxels`` is not predicted whole; its temperature
(``validation_calibration``, Guo et al. 2017) is fitted on the annotated voxels of ``training.val_window_voxels``
worth of windows (``_window_logits``: each voxel once, overlapping windows blended with the sliding window's
Gaussian weights, windows kept inside the volume). This trains the default model on 14 cases of the bundled sample
(10 epochs of 25 steps, seed 0) and, on each of the other six zoomed x3 (image linear, labels nearest; ~2 M
voxels, as a larger scan the model was not trained at the scale of; ``--quick``: four cases, 4 epochs), fits the
temperature three ways: whole volume (sliding window), windows centred on any annotated voxel (what ``train_model``
uses), windows half centred on foreground (as the validation Dice's are). Last line:
``calibration_windows_gap: X``, the median over cases of |T(windows, any voxel) - T(whole)| / T(whole).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    import numpy as np
    import torch
    from _record import record
    from scipy import ndimage

    from medal.config import DataConfig, ModelConfig, TrainingConfig
    from medal.data import load_dataset, sample_dataset
    from medal.training import TrainItem, prepare_items, train_model
    from medal.training.trainer import validation_calibration, validation_windows

    torch.manual_seed(0)
    items = prepare_items(load_dataset(sample_dataset()), DataConfig())
    train, held = items[:14], items[14:]
    if args.quick:
        held = held[:4]
    epochs = 4 if args.quick else 10
    cfg = TrainingConfig(max_epochs=epochs, val_fraction=0.0, calibrate=False, semi_supervised="none", seed=0)
    start = time.perf_counter()
    net = train_model(train, [], n_classes=3, model_cfg=ModelConfig(), train_cfg=cfg, progress=False).net
    train_s = time.perf_counter() - start
    roi = tuple(cfg.patch_size)
    rows, gaps, gaps_fg = [], [], []
    for it in held:
        big = TrainItem(it.case_id, ndimage.zoom(it.image, 3.0, order=1).astype(np.float32),
                        ndimage.zoom(it.label, 3.0, order=0))
        t0 = time.perf_counter()
        whole = validation_calibration(net, [big], roi_size=roi, device="cpu")["temperature"]
        whole_s = time.perf_counter() - t0
        got = {}
        for name, fg in (("any", 0.0), ("fg", 0.5)):
            w = validation_windows([big], roi, max_whole_voxels=1, window_voxels=cfg.val_window_voxels,
                                   seed=cfg.seed, foreground_fraction=fg)
            t0 = time.perf_counter()
            got[name] = (validation_calibration(net, [big], roi_size=roi, device="cpu", windows=w,
                                                batch_size=cfg.batch_size)["temperature"], time.perf_counter() - t0)
        gaps.append(abs(got["any"][0] - whole) / whole)
        gaps_fg.append(abs(got["fg"][0] - whole) / whole)
        rows.append(f"| {it.case_id} | {big.label.size / 1e6:.2f} | {whole:.3f} ({whole_s:.1f} s) | "
                    f"{got['any'][0]:.3f} ({got['any'][1]:.1f} s) | {got['fg'][0]:.3f} ({got['fg'][1]:.1f} s) |")
        print(rows[-1], flush=True)
    gap, gap_fg = float(np.median(gaps)), float(np.median(gaps_fg))
    lines = [f"Default model trained on the bundled sample's first 14 cases ({epochs} epochs of {cfg.iterations_per_epoch} "
             f"steps, seed 0, {train_s:.0f} s); each of the other cases zoomed x3; windows worth "
             f"{cfg.val_window_voxels} voxels of patch {list(roi)}.", "",
             "| case | M voxels | T whole volume | T windows on any annotated voxel (train_model) | "
             "T windows half on foreground |", "| --- | --- | --- | --- | --- |", *rows, "",
             f"- median |T - T(whole)| / T(whole): windows on any annotated voxel **{gap:.3f}**, half on foreground "
             f"{gap_fg:.3f}"]
    record("A large validation case's temperature from windows" + (" (quick)" if args.quick else ""), lines)
    print(f"calibration_windows_gap: {gap:.3f}")
    return gap


if __name__ == "__main__":
    main()
