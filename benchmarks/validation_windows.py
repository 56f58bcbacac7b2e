"""Does the windowed validation Dice of a large case pick the epoch the whole-volume Dice would?

    python benchmarks/validation_windows.py [--quick]

A validation case above ``training.val_whole_max_voxels`` is scored each epoch on ``training.val_window_voxels``
worth of fixed windows (half centred on annotated foreground, kept inside the volume), not whole; early stopping
and the best checkpoint follow that score, from counts weighted by each voxel's chance to be in a window (the
"weighted" column; the plain one is what validation used before 2026-12-07). Here the bundled sample's cases are zoomed x3 (image linear, labels
nearest; ~1.7 M voxels each, just under the 2 M threshold, so the windows are forced; far more background than
the windows hold, as in a CT): the default model trains
on the first 14 (``--seed``, default 0, one epoch of the default config at a time, warm-started, ``--quick``: 6 epochs, else 14),
and after every epoch the other cases (``--quick``: two, else four) are scored both ways. Reported per epoch: the
mean whole-volume Dice, the mean windowed Dice and the windowed Dice from weighted counts (each voxel
``1 / (n q)``, ``q`` its chance of being in one window: an estimate of the whole volume's counts); then their Spearman correlation over epochs, the epoch each
picks, and the whole-volume Dice given up by taking the windowed pick. Last line:
``validation_windows_regret: X`` (whole-volume Dice of the best epoch minus that of the windowed pick).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--foreground-fraction", type=float, default=0.5,
                    help="share of the windows centred on annotated foreground (0.5: what validation uses)")
    ap.add_argument("--seed", type=int, default=0, help="seeds the windows and (seed + epoch) each epoch's training")
    args = ap.parse_args(argv)
    import numpy as np
    import torch
    from _record import record
    from scipy import ndimage, stats

    from medal.config import DataConfig, ModelConfig, TrainingConfig
    from medal.data import load_dataset, sample_dataset
    from medal.training import TrainItem, prepare_items, train_model
    from medal.training.trainer import validate, validation_weights, validation_windows

    torch.manual_seed(args.seed)
    zoom = 3.0
    items = [TrainItem(i.case_id, ndimage.zoom(i.image, zoom, order=1).astype(np.float32),
                       ndimage.zoom(i.label, zoom, order=0))
             for i in prepare_items(load_dataset(sample_dataset()), DataConfig())]
    epochs, n_val = (6, 2) if args.quick else (14, 4)
    train, val = items[:14], items[14:14 + n_val]
    cfg = TrainingConfig(max_epochs=1, val_fraction=0.0, calibrate=False, semi_supervised="none", seed=args.seed)
    roi = tuple(cfg.patch_size)
    # the windows a case above training.val_whole_max_voxels gets (these are just under it: forced)
    windows = validation_windows(val, roi, max_whole_voxels=1, window_voxels=cfg.val_window_voxels, seed=cfg.seed,
                                 foreground_fraction=args.foreground_fraction)
    weights = validation_weights(val, windows, roi, foreground_fraction=args.foreground_fraction)
    rows, whole, win, est = [], [], [], []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = None
        for epoch in range(1, epochs + 1):
            out = Path(tmp) / f"e{epoch}.pt"
            res = train_model(train, [], n_classes=3, model_cfg=ModelConfig(), progress=False, init=ckpt,
                              train_cfg=dataclasses.replace(cfg, seed=args.seed + epoch),
                              checkpoint=out)
            ckpt = out
            whole.append(validate(res.net, val, 3, roi_size=roi, device="cpu"))
            win.append(validate(res.net, val, 3, roi_size=roi, device="cpu", windows=windows, batch_size=cfg.batch_size))
            est.append(validate(res.net, val, 3, roi_size=roi, device="cpu", windows=windows,
                                batch_size=cfg.batch_size, weights=weights))
            rows.append(f"| {epoch} | {whole[-1]:.4f} | {win[-1]:.4f} | {est[-1]:.4f} |")
            print(rows[-1], flush=True)
    total_s = time.perf_counter() - start
    best = int(np.argmax(whole))

    def judge(scores):
        picked = int(np.argmax(scores))
        return (float(stats.spearmanr(whole, scores).statistic), picked, whole[best] - whole[picked],
                float(np.mean(np.abs(np.subtract(scores, whole)))))

    rho, picked, regret, gap = judge(win)
    rho_e, picked_e, regret_e, gap_e = judge(est)
    lines = [f"The bundled sample zoomed x{zoom:g} ({np.mean([i.label.size for i in val]) / 1e6:.2f} M voxels per "
             f"validation case); default model trained on 14 cases, one epoch ({cfg.iterations_per_epoch} steps of "
             f"{cfg.batch_size}) at a time, warm-started; {len(val)} validation cases scored whole (sliding window) "
             f"and on {len(next(iter(windows.values())))} windows each ({args.foreground_fraction:g} of them centred "
             f"on foreground), after every epoch ({total_s:.0f} s in all); seed {args.seed}. \"windows, weighted\": the same windows' counts, "
             "each voxel weighted 1 / (n q), q its probability of being in one window (`validation_weights`), an "
             "estimate of the whole volume's counts.",
             "", "| epoch | mean Dice, whole volumes | mean Dice, windows | mean Dice, windows, weighted |",
             "| --- | --- | --- | --- |", *rows, "",
             f"- best epoch by whole volumes {best + 1}",
             f"- windows: Spearman over epochs {rho:.2f}, pick epoch {picked + 1}, whole-volume Dice given up "
             f"**{regret:.4f}**, mean |windowed - whole| {gap:.4f}",
             f"- windows, weighted: Spearman over epochs {rho_e:.2f}, pick epoch {picked_e + 1}, whole-volume Dice given "
             f"up **{regret_e:.4f}**, mean |windowed - whole| {gap_e:.4f}"]
    record("A large case's windowed validation Dice and the epoch it picks" + (" (quick)" if args.quick else ""), lines)
    print(f"validation_windows_regret: {regret:.4f} (weighted: {regret_e:.4f})")
    return regret


if __name__ == "__main__":
    main()
