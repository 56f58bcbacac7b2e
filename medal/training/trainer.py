"""Training a U-Net from full or partial labels, with validation, early stopping and warm start."""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medal.config import DataConfig, ModelConfig, TrainingConfig
from medal.data import Dataset, DatasetError, annotated_mask, load_case
from medal.data.labels import UNLABELED
from medal.training.metrics import dice_counts, dice_from_counts, dice_per_class
from medal.training.semi import EMATeacher, propagation_mask, rampup, unlabeled_loss
from medal.training.sampling import AnnotatedIndex, crop_patch, patch_start

__all__ = ["TrainItem", "TrainResult", "held_out_slices", "holdout_mask", "mapped_items", "prepare_items", "split_items",
           "train_model"]


@dataclass
class TrainItem:
    """One case in memory: normalised image (``(Z, Y, X)``, or ``(C, Z, Y, X)`` with several input channels) and
    (partial) label ``(Z, Y, X)``."""

    case_id: str
    image: np.ndarray
    label: np.ndarray
    index: AnnotatedIndex = field(init=False, repr=False)

    def __post_init__(self):
        self.index = AnnotatedIndex(self.label)


@dataclass
class TrainResult:
    net: object
    history: list[dict]
    best_epoch: int
    best_val_dice: float | None
    train_cases: list[str]
    val_cases: list[str]
    checkpoint: Path | None = None
    temperature: float | None = None
    calibration: dict | None = None  # validation_calibration(): temperature, ECE before/after, reliability bins
    model_cfg: ModelConfig | None = None  # the config the net was built from (model.strides: auto planned)


def held_out_slices(case_id: str, n_slices: int, fraction: float) -> np.ndarray:
    """Which axial slices of a case are held out: a hash of (case, slice) below ``fraction``, so the
    choice never changes as labels are added, and a held-out slice is never trained on."""
    import hashlib

    if fraction <= 0:
        return np.zeros(n_slices, bool)
    keys = [int(hashlib.sha256(f"{case_id}:{k}".encode()).hexdigest()[:8], 16) / 16 ** 8 for k in range(n_slices)]
    return np.asarray(keys) < fraction


def holdout_mask(case_id: str, shape, orientation: str, fraction: float) -> np.ndarray:
    """Boolean volume of the held-out axial slices (see :func:`held_out_slices`)."""
    from medal.regions import resolve_axis

    axis = resolve_axis("axial", orientation)
    view = [1, 1, 1]
    view[axis] = shape[axis]
    return np.broadcast_to(held_out_slices(case_id, shape[axis], fraction).reshape(view), shape)


def prepare_items(dataset: Dataset, data_cfg: DataConfig, *, labels_dir=None, case_ids=None,
                  cache=None, skipped: dict | None = None, holdout: float = 0.0, spacing=None,
                  orientation=None, intensity=None, in_memory_gb: float | None = None,
                  scratch_dir=None) -> list[TrainItem]:
    """Load the cases that carry at least one annotated voxel, normalised per ``data_cfg``.

    ``labels_dir`` replaces the dataset's own labels (a folder of partial labels named by case id).
    ``cache``: a :class:`~medal.data.VolumeCache` images and their normalised arrays come from.
    ``skipped``: a dict to record bad cases in (``{case_id: message}``) and go on past them; without
    it the first bad case raises :class:`~medal.data.DatasetError`.
    ``holdout``: the share of annotated axial slices hidden from training (:func:`holdout_mask`).
    ``spacing``: the network's voxel spacing (mm per axis; :func:`medal.data.resample.resolve_spacing`):
    images and labels are resampled to it (:func:`medal.data.resample.network_grid`); ``None``: each
    case's own grid. ``orientation``: axis codes the cases are flipped and permuted to first (``data.orientation``).
    ``intensity``: the per-channel normalisation (:func:`medal.data.intensity.training_intensity`: a CT channel's
    dataset-wide window); ``None``: each volume's own statistics.
    ``in_memory_gb``: the cases' arrays stay in RAM up to this many GB in all; each case beyond it is written to
    ``scratch_dir`` and read by memory map (:func:`medal.data.scratch.mapped_copy`; ``training.items_in_memory_gb``,
    ``training.scratch_dir``); ``None``: all in RAM.
    """
    from medal.data.channels import network_input
    from medal.data.resample import network_grid
    from medal.data.scratch import mapped_copy, scratch_folder

    items = []
    held = 0
    limit = None if in_memory_gb is None else float(in_memory_gb) * 1e9
    for case in dataset.cases:
        if case_ids is not None and case.case_id not in case_ids:
            continue
        if labels_dir is not None:
            from medal.data.dataset import Case

            from medal.data.loading import label_file_in

            case = Case(case.case_id, case.image, label_file_in(labels_dir, case.case_id), case.split)
        if case.label is None:
            continue
        try:
            # a folder of partial labels: a cropped file's other voxels were not annotated
            image, label = load_case(case, dataset, cache=cache,
                                     outside=UNLABELED if labels_dir is not None else 0)
            if not annotated_mask(label.array).any():
                continue
            try:
                index = dataset.label_map.to_index(label.array, where=dataset.relative(case.label))
            except ValueError as exc:
                raise DatasetError(str(exc), path=case.label) from None
            if holdout > 0:
                index = np.where(holdout_mask(case.case_id, index.shape, image.orientation, holdout), 255, index)
                if not annotated_mask(index).any():
                    continue
            x = network_input(image, data_cfg, path=case.image, name=dataset.relative, cache=cache,
                              intensity=intensity)
            grid = network_grid(image.shape, image.affine, spacing, orientation)
            if not grid.identity:
                x = grid.to_network(x)
                index = grid.to_network(index, labels=True)
                if not annotated_mask(index).any():
                    continue
        except DatasetError as exc:
            if skipped is None:
                raise
            skipped[case.case_id] = str(exc)
            continue
        if limit is not None and held + x.nbytes + index.nbytes > limit:
            folder = scratch_folder(scratch_dir)
            x, index = mapped_copy(x, folder), mapped_copy(index, folder)
        else:
            held += x.nbytes + index.nbytes
        items.append(TrainItem(case.case_id, x, index))
    return items


def mapped_items(items) -> int:
    """How many of ``items`` are read by memory map (:func:`prepare_items`'s ``in_memory_gb``)."""
    return sum(isinstance(item.image, np.memmap) for item in items)


def input_channels(items) -> int:
    """The number of input channels of ``items`` (1 for ``(Z, Y, X)`` images, C for ``(C, Z, Y, X)``); cases
    with different numbers are a ``ValueError`` naming one of each."""
    by = {}
    for item in items:
        by.setdefault(1 if item.image.ndim == 3 else int(item.image.shape[0]), item.case_id)
    if len(by) > 1:
        raise ValueError("the cases have different numbers of input channels: "
                         + ", ".join(f"{n} ({cid}, ...)" for n, cid in sorted(by.items()))
                         + "; every case needs the same channel files (_0000, _0001, ...)")
    return next(iter(by), 1)


def split_items(items: list, val_fraction: float, seed: int) -> tuple[list, list]:
    """Deterministic train/validation split by case (validation gets at least one case when > 1)."""
    if len(items) < 2 or val_fraction <= 0:
        return list(items), []
    order = np.random.default_rng(seed).permutation(len(items))
    n_val = max(1, int(round(len(items) * val_fraction)))
    val = sorted(order[:n_val].tolist())
    return [items[i] for i in range(len(items)) if i not in val], [items[i] for i in val]


def _batch(items, cfg: TrainingConfig, rng, masks=None):
    """A batch of patches on annotated voxels; with ``masks`` (one per item), the same crop of each
    item's :func:`~medal.training.semi.propagation_mask` too (else None)."""
    imgs, labs, allowed = [], [], []
    for _ in range(cfg.batch_size):
        i = int(rng.integers(len(items)))
        item = items[i]
        start = patch_start(item.index, cfg.patch_size, rng, foreground_fraction=cfg.foreground_fraction)
        imgs.append(crop_patch(item.image, start, cfg.patch_size, fill=0.0))
        labs.append(crop_patch(item.label, start, cfg.patch_size, fill=UNLABELED))
        if masks is not None:
            allowed.append(crop_patch(masks[i], start, cfg.patch_size, fill=0).astype(np.int64))
    imgs = np.stack(imgs)
    return imgs[:, None] if imgs.ndim == 4 else imgs, np.stack(labs), (np.stack(allowed) if masks is not None else None)


def _snapshot_epochs(max_epochs: int, k: int) -> set[int]:
    """``k`` distinct epochs, evenly spaced over the second half of the run (over all of it when the
    second half is too short), the last epoch included."""
    if not k:
        return set()
    pool = list(range(max_epochs // 2 + 1, max_epochs + 1))
    if len(pool) < k:
        pool = list(range(1, max_epochs + 1))
    idx = np.unique(np.round(np.linspace(0, len(pool) - 1, min(k, len(pool)))).astype(int))
    return {pool[i] for i in idx}


def validation_calibration(net, items, *, roi_size, device, max_voxels: int = 200_000, seed: int = 0,
                           bins: int = 10, windows: dict | None = None, batch_size: int = 4) -> dict:
    """Temperature scaling (Guo et al. 2017, "On Calibration of Modern Neural Networks") fitted on the
    annotated voxels of ``items`` (a seeded sample of at most ``max_voxels``), with what it did on those
    voxels: ECE and the reliability diagram's bins (mean confidence, accuracy, count) before and after.

    An item with ``windows[case_id]`` (:func:`validation_windows`: a case too large to predict whole) contributes
    the distinct annotated voxels of those windows (:func:`_window_logits`) rather than a whole-volume sliding
    window (~9 epochs of training and ~0.6 GB of logits for a 512 x 512 x 200 CT). :func:`train_model` places
    them on any annotated voxel (``foreground_fraction=0``): on six held-out hippocampus cases zoomed x3 the
    temperature came within 14% of the whole-volume one (median 4.8%), while windows half on foreground gave
    30-58% too high a temperature (harder voxels over-represented; ``benchmarks/calibration_windows.py``)."""
    from medal.uncertainty.calibration import fit_temperature, reliability
    from medal.uncertainty.inference import predict_logits

    rng = np.random.default_rng(seed)
    zs, ys = [], []
    for item in items:
        starts = (windows or {}).get(item.case_id)
        if starts is None:
            z = predict_logits(net, item.image, roi_size=roi_size, device=device)
            z, lab = z.reshape(z.shape[0], -1), item.label.ravel()
            ann = np.flatnonzero(lab != 255)
        else:
            z, lab = _window_logits(net, item, starts, roi_size, device, batch_size)
            ann = np.arange(lab.size)
        if len(ann) > max_voxels // max(len(items), 1):
            ann = rng.choice(ann, max_voxels // max(len(items), 1), replace=False)
        zs.append(z[:, ann].T)
        ys.append(lab[ann])
    z, y = np.concatenate(zs).astype(np.float64), np.concatenate(ys)
    t = fit_temperature(z, y)
    out = {"temperature": float(t), "voxels": int(len(y)), "cases": len(items)}
    for name, temp in (("before", 1.0), ("after", t)):
        q = z / temp
        q = np.exp(q - q.max(axis=1, keepdims=True))
        q /= q.sum(axis=1, keepdims=True)
        conf, acc, count = reliability(q, y, bins=bins)
        out[f"ece_{name}"] = float((np.abs(conf - acc) * count).sum() / max(count.sum(), 1))
        out[f"reliability_{name}"] = {"confidence": conf.tolist(), "accuracy": acc.tolist(),
                                      "count": count.astype(int).tolist()}
    return out


def fit_validation_temperature(net, items, *, roi_size, device, max_voxels: int = 200_000, seed: int = 0) -> float:
    """Temperature scaling on the annotated voxels of ``items`` (a seeded sample of at most ``max_voxels``)."""
    return validation_calibration(net, items, roi_size=roi_size, device=device, max_voxels=max_voxels,
                                  seed=seed)["temperature"]


def validate(net, items, n_classes: int, *, roi_size, device, windows: dict | None = None, batch_size: int = 4,
             weights: dict | None = None) -> float:
    """Mean over ``items`` of the mean foreground Dice on each one's annotated voxels: the whole volume by sliding
    window, or, for an item with ``windows[case_id]`` (:func:`validation_windows`), those windows of ``roi_size``
    alone, their counts summed (a pseudo-Dice, as nnU-Net's online validation on patches), each voxel counted with
    its weight where ``weights[case_id]`` holds them (:func:`validation_weights`: an estimate of the whole volume's
    counts)."""
    from medal.uncertainty.inference import predict_probs

    scores = []
    for item in items:
        starts = (windows or {}).get(item.case_id)
        if starts is None:
            pred = predict_probs(net, item.image, roi_size=roi_size, device=device).argmax(0)
            scores.append(dice_per_class(pred, item.label, n_classes).mean())
        else:
            scores.append(_window_dice(net, item, starts, n_classes, roi_size, device, batch_size,
                                       (weights or {}).get(item.case_id)).mean())
    return float(np.mean(scores)) if scores else float("nan")


def validation_windows(items, roi_size, *, max_whole_voxels: int, window_voxels: int, seed: int = 0,
                       foreground_fraction: float = 0.5) -> dict:
    """``{case_id: [window start, ...]}`` for the items with more than ``max_whole_voxels`` voxels (0: none):
    ``window_voxels // prod(roi_size)`` windows (at least one), placed as training patches are
    (:func:`~medal.training.sampling.patch_start`, ``foreground_fraction`` of them centred on annotated
    foreground, the rest on any annotated voxel), from a generator seeded by ``seed`` and the case id, so the same
    windows every epoch and every run."""
    import zlib

    if not max_whole_voxels:
        return {}
    n = max(1, int(window_voxels) // int(np.prod(roi_size)))
    out = {}
    for item in items:
        if item.label.size > max_whole_voxels and not item.index.empty:
            rng = np.random.default_rng([seed, zlib.crc32(item.case_id.encode())])
            # kept inside the volume where it is larger than a window, as a sliding window's are: a window
            # hanging over the edge sees zero padding, which the whole-volume prediction never does
            high = np.maximum(np.asarray(item.label.shape[-3:]) - np.asarray(roi_size), 0)
            out[item.case_id] = [np.clip(patch_start(item.index, roi_size, rng, foreground_fraction=foreground_fraction),
                                         0, high) for _ in range(n)]
    return out


def validation_weights(items, windows: dict, roi_size, *, foreground_fraction: float = 0.5) -> dict:
    """``{case_id: [float32 weights of each window's voxels]}`` for the items with ``windows[case_id]``: each voxel
    ``1 / (n * q)``, ``q`` its chance of being in one window drawn as :func:`validation_windows` draws them
    (:func:`~medal.training.sampling.window_coverage`, exact), ``n`` the windows: counts so weighted estimate the
    whole volume's without bias (Hansen & Hurwitz 1943). Windows half on foreground see the anatomy often and the
    rest rarely; unweighted, a false positive far from the anatomy hardly counts and the windowed Dice over-states
    the whole-volume one (~0.15 on hippocampus cases zoomed x3, ``benchmarks/validation_windows.py``). Costs a
    window's worth of float32 per window and, for the foreground's share, matrix products over the foreground's
    bounding box, once per training (no copy of the volume)."""
    from medal.training.sampling import window_coverage

    out = {}
    for item in items:
        starts = windows.get(item.case_id)
        if starts:
            qs = window_coverage(item.index, roi_size, foreground_fraction=foreground_fraction, starts=starts)
            out[item.case_id] = [np.divide(1.0, len(starts) * q, out=np.zeros_like(q), where=q > 0) for q in qs]
    return out


def _window_outputs(net, item, starts, roi_size, device, batch_size: int):
    """``(logits, start, label)`` for each of ``item``'s windows (eval mode, no gradients, ``batch_size`` windows
    per forward pass): the logits a ``(C, *roi_size)`` tensor, the label crop 255 outside the volume."""
    import torch

    image = item.image if item.image.ndim == 4 else item.image[None]
    was = net.training
    net.eval()
    try:
        with torch.no_grad():
            for b in range(0, len(starts), batch_size):
                chunk = starts[b:b + batch_size]
                x = np.stack([crop_patch(image, s, roi_size, fill=0.0) for s in chunk]).astype(np.float32)
                for z, s in zip(net(torch.from_numpy(x).to(device)), chunk):
                    yield z, s, crop_patch(item.label, s, roi_size, fill=UNLABELED)
    finally:
        net.train(was)


def _window_logits(net, item, starts, roi_size, device, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits ``(C, n)`` and labels ``(n,)`` at the ``n`` distinct annotated voxels of ``item``'s windows (eval
    mode, each window predicted on its own); a voxel two windows share gets their logits averaged with the Gaussian
    weights MONAI's sliding window blends windows with (``compute_importance_map``, sigma 1/8 of the window), and
    counts once."""
    from monai.data.utils import compute_importance_map

    weight = compute_importance_map(tuple(roi_size), mode="gaussian", sigma_scale=0.125).numpy().astype(np.float64)
    flat, zs, ws = [], [], []
    for z, s, lab in _window_outputs(net, item, starts, roi_size, device, batch_size):
        where = np.nonzero(lab != UNLABELED)  # inside the volume: crop_patch fills outside with 255
        flat.append(np.ravel_multi_index(tuple(w + int(o) for w, o in zip(where, s)), item.label.shape))
        zs.append(z.float().cpu().numpy()[(slice(None), *where)])
        ws.append(weight[where])
    flat, z, w = np.concatenate(flat), np.concatenate(zs, axis=1).astype(np.float64), np.concatenate(ws)
    voxels, inverse = np.unique(flat, return_inverse=True)
    total = np.bincount(inverse, weights=w, minlength=voxels.size)
    mean = np.stack([np.bincount(inverse, weights=zc * w, minlength=voxels.size) for zc in z]) / total
    return mean, np.asarray(item.label).ravel()[voxels]


def _window_dice(net, item, starts, n_classes: int, roi_size, device, batch_size: int, weights=None) -> np.ndarray:
    """Dice per class from the counts of ``item``'s windows summed; with ``weights`` (:func:`validation_weights`,
    one array per window) each voxel counted with its weight: estimates of the whole volume's counts."""
    counts = np.zeros((3, n_classes), np.float64)  # whole counts stay exact in float64
    for (z, _, lab), w in zip(_window_outputs(net, item, starts, roi_size, device, batch_size),
                              weights if weights is not None else [None] * len(starts)):
        counts += dice_counts(z.argmax(0).cpu().numpy(), lab, n_classes, weights=w)
    return dice_from_counts(counts)


def train_model(train_items: list[TrainItem], val_items: list[TrainItem], *, n_classes: int, model_cfg: ModelConfig,
                train_cfg: TrainingConfig, init=None, checkpoint=None, progress: bool = True,
                log=None, label_map=None, spacing=None, orientation=None, intensity=None,
                plan_spacing=None) -> TrainResult:
    """Train from (partial) labels; returns the best net by validation Dice.

    ``init``: a checkpoint to warm-start from (its model config must equal ``model_cfg``).
    ``checkpoint``: where to write the best weights (atomically), with the history in its meta.
    ``label_map``: the dataset's :class:`~medal.data.LabelMap`, recorded in the checkpoint (and the
    warm-start checkpoint must have been trained for the same labels).
    ``spacing``: the voxel spacing ``train_items`` were resampled to (``prepare_items(spacing=...)``),
    recorded in the checkpoint (``meta.spacing``) so scoring resamples to the same one; ``orientation`` the same
    (``meta.orientation``); ``intensity`` the same (``meta.intensity``, the per-channel normalisation).
    ``model.strides: auto`` is planned for ``plan_spacing`` (default ``spacing``; with neither, isotropic voxels) and
    ``train_cfg.patch_size`` (:meth:`~medal.config.ModelConfig.planned`), or, warm-started, keeps ``init``'s
    strides; the checkpoint stores the planned strides.
    Same seed, same data, same device -> the same weights.
    """
    import torch
    from tqdm import tqdm

    from medal.model import build_model, check_checkpoint_labels, load_checkpoint, save_checkpoint
    from medal.model.device import resolve_device
    from medal.training.loss import masked_dice_ce

    if not train_items:
        raise ValueError("no training case has an annotated voxel")
    if init is None:
        model_cfg = model_cfg.planned(plan_spacing if plan_spacing is not None else spacing,
                                      patch=train_cfg.patch_size)
    if any(p % d for p, d in zip(train_cfg.patch_size, model_cfg.divisors)):
        raise ValueError(f"training.patch_size {list(train_cfg.patch_size)} must be a multiple of "
                         f"{list(model_cfg.divisors)} per axis (the product of model.strides)")
    if train_cfg.num_threads:
        torch.set_num_threads(train_cfg.num_threads)
    device = resolve_device(train_cfg.device)
    torch.manual_seed(train_cfg.seed)
    rng = np.random.default_rng(train_cfg.seed)
    in_channels = input_channels(train_items + list(val_items or []))
    if init is not None:
        net, model_cfg, payload = load_checkpoint(init, expected=model_cfg)  # its strides, when planned ("auto")
        check_checkpoint_labels(payload, label_map, init, n_classes=n_classes)
        if int(payload.get("in_channels", 1)) != in_channels:
            raise ValueError(f"{init}: the model takes {int(payload.get('in_channels', 1))} input channel(s), the "
                             f"cases have {in_channels}; train from scratch (no warm start) for this dataset")
    else:
        net = build_model(model_cfg, in_channels=in_channels, out_channels=n_classes)
    net.to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=train_cfg.learning_rate, weight_decay=train_cfg.weight_decay)
    roi = tuple(int(math.ceil(s / d) * d) for s, d in zip(train_cfg.patch_size, model_cfg.divisors))
    val_windows = validation_windows(val_items, roi, max_whole_voxels=train_cfg.val_whole_max_voxels,
                                     window_voxels=train_cfg.val_window_voxels, seed=train_cfg.seed)
    val_weights = validation_weights(val_items, val_windows, roi)

    mode = train_cfg.semi_supervised
    if mode != "none" and not any(bool((i.label == UNLABELED).any()) for i in train_items):
        mode = "none"  # every voxel annotated: no voxel for the unsupervised term (the same weights, no teacher passes)
    teacher = EMATeacher(net, train_cfg.ema_decay) if mode != "none" else None
    masks = None
    if mode == "pseudo_label" and train_cfg.pseudo_propagation > 0:  # once per round: labels are fixed
        masks = [propagation_mask(i.label, train_cfg.pseudo_propagation, train_cfg.pseudo_margin) for i in train_items]
    total_steps = train_cfg.max_epochs * train_cfg.iterations_per_epoch
    amp = train_cfg.precision == "bf16"  # mixed precision: forward and loss in bf16 autocast, weights fp32
    step = 0
    history, best, best_epoch, best_state, stale = [], -1.0, 0, None, 0
    k = train_cfg.snapshots
    snap_epochs = _snapshot_epochs(train_cfg.max_epochs, k)
    snapshots: list[dict] = []
    bar = tqdm(range(1, train_cfg.max_epochs + 1), desc="training", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        for group in opt.param_groups:  # polynomial decay, as nnU-Net
            group["lr"] = train_cfg.learning_rate * (1 - (epoch - 1) / train_cfg.max_epochs) ** 0.9
        net.train()
        losses = []
        for _ in range(train_cfg.iterations_per_epoch):
            x, y, allowed = _batch(train_items, train_cfg, rng, masks)
            x = torch.from_numpy(x).to(device)
            y = torch.from_numpy(y).to(device)
            allowed = torch.from_numpy(allowed).to(device) if allowed is not None else None
            if mode == "mean_teacher":  # the student sees a noisy (optionally flipped) copy; the teacher the clean patch
                noise = torch.from_numpy(rng.normal(0, 0.1, size=x.shape).astype(np.float32)).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                if mode == "mean_teacher":
                    xs, ys, target = x + noise, y, teacher.probs(x)
                    if train_cfg.consistency_flip_axes:
                        a = int(train_cfg.consistency_flip_axes[int(rng.integers(len(train_cfg.consistency_flip_axes)))])
                        xs, ys, target = torch.flip(xs, (a + 2,)), torch.flip(ys, (a + 1,)), torch.flip(target, (a + 2,))
                    logits = net(xs)
                    loss = masked_dice_ce(logits.float(), ys, dice_weight=train_cfg.dice_weight,
                                          ce_weight=train_cfg.ce_weight)
                    extra = unlabeled_loss(mode, logits.float(), target.float(), ys)
                else:
                    logits = net(x)
                    loss = masked_dice_ce(logits.float(), y, dice_weight=train_cfg.dice_weight,
                                          ce_weight=train_cfg.ce_weight)
                    extra = unlabeled_loss(mode, logits.float(), teacher.probs(x).float(), y,
                                           threshold=train_cfg.pseudo_threshold,
                                           allowed=allowed) if teacher is not None else None
            if extra is not None:
                loss = loss + train_cfg.unlabeled_weight * rampup(step, total_steps, train_cfg.rampup) * extra
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if teacher is not None:
                teacher.update(net)
            step += 1
            losses.append(float(loss.detach()))
        row = {"epoch": epoch, "loss": float(np.mean(losses))}
        if val_items:
            row["val_dice"] = validate(net, val_items, n_classes, roi_size=roi, device=device, windows=val_windows,
                                       batch_size=train_cfg.batch_size, weights=val_weights)
            if row["val_dice"] > best + 1e-4:
                best, best_epoch, stale = row["val_dice"], epoch, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                stale += 1
        history.append(row)
        if epoch in snap_epochs:  # a committee member along the way (Huang et al. 2017): no extra training
            snapshots.append({n: t.detach().cpu().clone() for n, t in net.state_dict().items()})
        bar.set_postfix({k: round(v, 4) for k, v in row.items() if k != "epoch"})
        if log is not None:
            log(row)
        if val_items and stale >= train_cfg.patience:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    else:
        best_epoch = history[-1]["epoch"]
    result = TrainResult(net=net, history=history, best_epoch=best_epoch, best_val_dice=best if val_items else None,
                         train_cases=[i.case_id for i in train_items], val_cases=[i.case_id for i in val_items],
                         model_cfg=model_cfg)
    temperature = None
    if train_cfg.calibrate and val_items:
        # windows centred on any annotated voxel (not half on foreground, as for the Dice): the temperature is
        # applied to whole volumes, so it is fitted on voxels drawn as a whole volume's are
        cal_windows = validation_windows(val_items, roi, max_whole_voxels=train_cfg.val_whole_max_voxels,
                                         window_voxels=train_cfg.val_window_voxels, seed=train_cfg.seed,
                                         foreground_fraction=0.0)
        result.calibration = validation_calibration(net, val_items, roi_size=roi, device=device, windows=cal_windows,
                                                    batch_size=train_cfg.batch_size)
        temperature = result.calibration["temperature"]
    result.temperature = temperature
    if k and len(snapshots) < 2:  # stopped early: the members it has, and the final weights
        snapshots.append({n: t.detach().cpu().clone() for n, t in net.state_dict().items()})
    if checkpoint is not None:
        meta = {"history": json.dumps(history), "best_epoch": best_epoch,
                "best_val_dice": float(best) if val_items else -1.0,
                "train_cases": result.train_cases, "val_cases": result.val_cases, "seed": train_cfg.seed,
                "warm_start": str(init) if init is not None else ""}
        if spacing is not None:
            meta["spacing"] = [float(v) for v in spacing]
        if orientation:
            meta["orientation"] = str(orientation)
        if intensity is not None:
            meta["intensity"] = json.dumps([dict(s) for s in intensity])
        if label_map is not None:
            meta["label_values"] = list(label_map.values)
            meta["label_names"] = [label_map.name(v) for v in label_map.values]
        if temperature is not None:
            meta["temperature"] = float(temperature)
            meta["calibration"] = json.dumps(result.calibration)
        result.checkpoint = save_checkpoint(checkpoint, net.cpu(), model_cfg, in_channels=in_channels,
                                            out_channels=n_classes,
                                            meta=meta, snapshots=snapshots or None)
        net.to(device)
    return result
