"""Validating a CT-sized case each epoch: whole-volume sliding window vs fixed windows around its labels.

    python benchmarks/validation_cost.py [--quick]

A real hippocampus case and its labels zoomed (image linear, labels nearest) x5 to 180 x 260 x 190 = 8.9 M voxels
(``--quick``: x3, 1.9 M), every other axial slice of the labels left unannotated (partial labels); the default
model (untrained, seeded) and training config. Timed: one epoch of training steps (``iterations_per_epoch``
steps of ``batch_size`` patches, forward, loss, backward, AdamW), one validation of the case whole (MONAI sliding
window, what every epoch did for every validation case before 2026-12-07) and one on the windows
``training.val_whole_max_voxels`` now switches to (``val_window_voxels`` of them), and the windows' weights
(``validation_weights``, once per training: time and peak memory allocated) and the weighted windowed validation; then the round's temperature fit
(``validation_calibration``, once per round) on the whole case and on as many windows centred on any annotated
voxel (what ``train_model`` fits it on; ``benchmarks/calibration_windows.py`` measures how close it comes). Last line:
``validation_cost_ratio: X`` (whole-volume validation seconds / windowed validation seconds).
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

    from medal.config import ModelConfig, TrainingConfig
    from medal.data import UNLABELED, load_dataset, load_volume, normalize_intensity, sample_dataset
    from medal.model import build_model
    from medal.training.loss import masked_dice_ce
    from medal.training.sampling import crop_patch, patch_start
    from medal.training.trainer import TrainItem, validate, validation_calibration, validation_weights, validation_windows

    zoom = 3.0 if args.quick else 5.0
    case = load_dataset(sample_dataset()).cases[0]
    image = ndimage.zoom(normalize_intensity(load_volume(case.image).array), zoom, order=1).astype(np.float32)
    label = ndimage.zoom(load_volume(case.label).array, zoom, order=0).astype(np.uint8)
    label[:, :, ::2] = UNLABELED
    item = TrainItem(case.case_id, image, label)
    cfg, mcfg = TrainingConfig(), ModelConfig()
    roi = tuple(cfg.patch_size)
    torch.manual_seed(0)
    net = build_model(mcfg, out_channels=3)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate)
    rng = np.random.default_rng(0)
    net.train()
    start = time.perf_counter()
    for _ in range(cfg.iterations_per_epoch):
        starts = [patch_start(item.index, roi, rng) for _ in range(cfg.batch_size)]
        x = torch.from_numpy(np.stack([crop_patch(image, s, roi, fill=0.0)[None] for s in starts]))
        y = torch.from_numpy(np.stack([crop_patch(label, s, roi, fill=UNLABELED) for s in starts]).astype(np.int64))
        loss = masked_dice_ce(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    epoch_s = time.perf_counter() - start
    windows = validation_windows([item], roi, max_whole_voxels=cfg.val_whole_max_voxels,
                                 window_voxels=cfg.val_window_voxels)
    if item.case_id not in windows:
        raise SystemExit(f"{image.size} voxels: not above val_whole_max_voxels {cfg.val_whole_max_voxels}")
    start = time.perf_counter()
    whole = validate(net, [item], 3, roi_size=roi, device="cpu")
    whole_s = time.perf_counter() - start
    start = time.perf_counter()
    win = validate(net, [item], 3, roi_size=roi, device="cpu", windows=windows, batch_size=cfg.batch_size)
    win_s = time.perf_counter() - start
    ratio = whole_s / win_s
    import tracemalloc

    tracemalloc.start()
    start = time.perf_counter()
    weights = validation_weights([item], windows, roi)
    weights_s = time.perf_counter() - start
    weights_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    start = time.perf_counter()
    win_w = validate(net, [item], 3, roi_size=roi, device="cpu", windows=windows, batch_size=cfg.batch_size,
                     weights=weights)
    win_w_s = time.perf_counter() - start
    start = time.perf_counter()
    cal_whole = validation_calibration(net, [item], roi_size=roi, device="cpu")
    cal_whole_s = time.perf_counter() - start
    start = time.perf_counter()
    cal_windows = validation_windows([item], roi, max_whole_voxels=cfg.val_whole_max_voxels,
                                     window_voxels=cfg.val_window_voxels, foreground_fraction=0.0)
    cal_win = validation_calibration(net, [item], roi_size=roi, device="cpu", windows=cal_windows,
                                     batch_size=cfg.batch_size)
    cal_win_s = time.perf_counter() - start
    rows = [f"| one epoch of training ({cfg.iterations_per_epoch} steps of {cfg.batch_size} patches) | {epoch_s:.1f} | "
            f"1.00 | |",
            f"| validation, whole volume (sliding window) | {whole_s:.1f} | {whole_s / epoch_s:.2f} | {whole:.4f} |",
            f"| validation, {len(windows[item.case_id])} windows | {win_s:.1f} | {win_s / epoch_s:.2f} | {win:.4f} |",
            f"| the windows' weights (once per training; peak {weights_mb:.0f} MB allocated) | {weights_s:.2f} | "
            f"{weights_s / epoch_s:.2f} | |",
            f"| validation, the same windows, weighted counts | {win_w_s:.1f} | {win_w_s / epoch_s:.2f} | {win_w:.4f} |",
            f"| temperature fit (once per round), whole volume | {cal_whole_s:.1f} | {cal_whole_s / epoch_s:.2f} | "
            f"T = {cal_whole['temperature']:.3f} |",
            f"| temperature fit, {len(cal_windows[item.case_id])} windows on any annotated voxel | {cal_win_s:.1f} | "
            f"{cal_win_s / epoch_s:.2f} | "
            f"T = {cal_win['temperature']:.3f} |"]
    lines = [f"{case.case_id} zoomed x{zoom:g} to {' x '.join(map(str, image.shape))} = {image.size / 1e6:.1f} M voxels, "
             "every other axial slice of its labels unannotated; default model (untrained, seed 0) and training "
             f"config (patch {list(roi)}, val_whole_max_voxels {cfg.val_whole_max_voxels}, val_window_voxels "
             f"{cfg.val_window_voxels}).", "",
             "| step | seconds | in epochs of training | mean foreground Dice or temperature (untrained) |",
             "| --- | --- | --- | --- |",
             *rows, "", f"- whole-volume / windowed validation time: **{ratio:.1f}x**"]
    print("\n".join(rows))
    record("Validating a CT-sized case each epoch" + (" (quick)" if args.quick else ""), lines)
    print(f"validation_cost_ratio: {ratio:.1f}")
    return ratio


if __name__ == "__main__":
    main()
