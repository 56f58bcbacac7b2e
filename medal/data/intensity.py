"""Which normalisation each input channel gets, and a CT channel's dataset-wide window.

``data.normalize: auto`` (the default) follows nnU-Net v2 (Isensee et al., Nature Methods 2021): the scheme comes
from the channel's name in ``dataset.json`` (``channel_names``, or the Decathlon's ``modality``), ``CT`` giving
one window for the whole dataset and every other name a per-volume z-score
(``nnunetv2/preprocessing/normalization/map_channel_name_to_normalization.py``). The CT window is taken as nnU-Net's
dataset fingerprint takes it (``experiment_planning/dataset_fingerprint/fingerprint_extractor.py``,
``collect_foreground_intensities``: 10,000 foreground voxels drawn per training case, seed 1234): here from the
voxels the training labels mark as foreground, partial labels included (255 is not foreground), so the first
round's few painted slices already give one. With no foreground painted yet, every voxel of the training images
stands in (said in ``source``).

The resolved normalisation, one dict per channel (``{"scheme": "zscore"}``, ``{"scheme": "ct", "lo": ..., "hi":
..., "mean": ..., "std": ..., "source": ..., "cases": n}``), is stored in the checkpoint (``meta.intensity``):
scoring always uses the checkpoint's, and a warm-started round keeps it once it is settled (taken from
:data:`SETTLED_CASES` or more painted cases), so the inputs a trained network sees stop shifting when labels are
added; a window from the first few painted cases is provisional and retaken while more cases are painted. A
checkpoint from before this (no ``meta.intensity``) goes on with each volume's own statistics.
"""

from __future__ import annotations

import json

import numpy as np

from .errors import DatasetError
from .normalize import ct_normalize, ct_properties, normalize_intensity, scheme_for_channel, volume_method

__all__ = ["FOREGROUND_SAMPLES", "SETTLED_CASES", "channel_schemes", "checkpoint_intensity", "normalize_channel", "training_intensity"]

#: foreground voxels drawn per training case for a CT window (nnU-Net's ``num_samples``)
FOREGROUND_SAMPLES = 10_000
#: fewer foreground voxels than this in all training cases: the window comes from every voxel instead
MIN_FOREGROUND = 100
#: a CT window from this many cases with painted foreground is settled: warm starts keep it from then on
SETTLED_CASES = 5


def channel_schemes(data_cfg, dataset, n_channels: int) -> tuple[str, ...]:
    """The scheme of each of ``n_channels`` input channels under ``data_cfg.normalize``: a list names one per
    channel; ``auto`` reads ``dataset.channel_names``; a single name applies to every channel."""
    norm = data_cfg.normalize
    if isinstance(norm, (tuple, list)):
        if len(norm) != n_channels:
            raise ValueError(f"data.normalize: {len(norm)} scheme(s) for cases of {n_channels} channel(s); name one "
                             "per channel, or 'auto'")
        return tuple(norm)
    if norm == "auto":
        names = getattr(dataset, "channel_names", {}) or {}
        return tuple(scheme_for_channel(names.get(k)) for k in range(n_channels))
    return (str(norm),) * n_channels


def checkpoint_intensity(payload: dict | None) -> tuple[dict, ...] | None:
    """The per-channel normalisation a checkpoint's model was trained with (``None``: from before it was kept,
    each volume's own statistics)."""
    raw = ((payload or {}).get("meta") or {}).get("intensity")
    if not raw:
        return None
    spec = json.loads(raw) if isinstance(raw, str) else raw
    return tuple(dict(s) for s in spec)


def normalize_channel(arr: np.ndarray, spec: dict | None, data_cfg, channel: int = 0) -> np.ndarray:
    """One channel normalised by its resolved ``spec``; ``None`` (no model's spec: the cold start, an old checkpoint):
    the per-volume method ``data_cfg.normalize`` stands for (for a list, its entry for ``channel``; ``ct`` / ``auto``
    -> z-score)."""
    norm = data_cfg.normalize
    scheme = (spec or {}).get("scheme") or volume_method(norm if isinstance(norm, str)
                                                          else norm[min(channel, len(norm) - 1)])
    if scheme == "ct":
        return ct_normalize(arr, spec)
    return normalize_intensity(arr, method=volume_method(scheme), clip_percentiles=data_cfg.clip_percentiles)


def _foreground_sample(image: np.ndarray, fg: np.ndarray, rng) -> np.ndarray:
    values = image[fg]
    if values.size == 0:
        return values.astype(np.float64)
    return rng.choice(values, FOREGROUND_SAMPLES, replace=True)


def _provisional(spec: tuple[dict, ...]) -> bool:
    """A CT window taken from fewer than :data:`SETTLED_CASES` painted cases (or from every voxel, no foreground
    painted yet): retaken when a warm-started round has more."""
    return any(s.get("scheme") == "ct" and (s.get("source") != "foreground" or int(s.get("cases", 0)) < SETTLED_CASES)
               for s in spec)


def training_intensity(data_cfg, dataset, *, init=None, labels_dir=None, case_ids=None, cache=None,
                       log=None) -> tuple[dict, ...] | None:
    """The per-channel normalisation a network trains with (see the module docstring).

    ``init``: a warm start's checkpoint, whose normalisation is kept (``None`` when it has none: per volume), except
    a provisional CT window (from fewer than :data:`SETTLED_CASES` painted cases, or from every voxel): that one is
    retaken when more cases are painted now, since a window from the first few slices can clip what later cases
    show; once settled it never moves. ``labels_dir`` / ``case_ids``: the training labels and cases, as
    :func:`medal.training.prepare_items` gets them. Only a ``ct`` channel reads anything: each training case's
    label and that channel's file. ``log``: a callable told where a window came from.
    """
    learnt = None
    if init is not None:
        from medal.model import load_checkpoint

        learnt = checkpoint_intensity(load_checkpoint(init)[2])
        if learnt is None or not _provisional(learnt):
            return learnt
    from .channels import channel_files

    cases = [c for c in dataset.cases if case_ids is None or c.case_id in case_ids]
    if not cases:
        return learnt
    if learnt is not None:
        schemes = tuple(str(x.get("scheme")) for x in learnt)
    else:
        schemes = channel_schemes(data_cfg, dataset, len(channel_files(cases[0].image)))
    out = list(_windows(schemes, data_cfg, dataset, cases, labels_dir, cache))
    for k, spec in enumerate(out):
        if spec.get("scheme") != "ct":
            continue
        if learnt is not None:
            old = learnt[k]
            better = spec["source"] == "foreground" and (old.get("source") != "foreground"
                                                         or spec["cases"] > int(old.get("cases", 0)))
            if not better:
                out[k] = spec = dict(old)
                continue
        if log is not None:
            log(f"channel {k}: CT window [{spec['lo']:.0f}, {spec['hi']:.0f}], mean {spec['mean']:.1f}, std "
                f"{spec['std']:.1f}, from the {spec['source']} of {spec['cases']} training case(s)"
                + (" (retaken: the model's came from fewer cases)" if learnt is not None else ""))
    return tuple(out)


def _windows(schemes, data_cfg, dataset, cases, labels_dir, cache) -> tuple[dict, ...]:
    """``{"scheme": s}`` per channel, with each ``ct`` channel's window from ``cases``' painted foreground."""
    from .channels import channel_files
    from .io import load_volume
    from .labels import UNLABELED
    from .loading import label_file_in, load_label

    out = [{"scheme": s} for s in schemes]
    ct = [k for k, s in enumerate(schemes) if s == "ct"]
    if not ct:
        return tuple(out)
    rng = np.random.RandomState(1234)
    fg_values = {k: [] for k in ct}
    all_values = {k: [] for k in ct}
    used = 0
    for case in cases:
        if labels_dir is not None:
            label_path, outside = label_file_in(labels_dir, case.case_id), UNLABELED
        else:
            label_path, outside = case.label, 0
        if label_path is None:
            continue
        files = channel_files(case.image)
        try:
            label, _ = load_label(label_path, files[0], dataset.relative(label_path), outside=outside,
                                  label_names=dataset.label_names)
            index = dataset.label_map.to_index(label.array, where=dataset.relative(label_path))
        except (DatasetError, ValueError):
            continue  # training skips and reports this case
        annotated = index != UNLABELED
        if not annotated.any():
            continue
        fg = annotated & (index > 0)
        used += 1
        for k in ct:
            if k >= len(files):
                continue
            try:
                vol = cache.volume(files[k]) if cache is not None else load_volume(files[k])
            except DatasetError:
                continue
            if vol.shape != index.shape:
                continue
            fg_values[k].append(_foreground_sample(vol.array, fg, rng))
            all_values[k].append(rng.choice(vol.array.ravel(), FOREGROUND_SAMPLES, replace=True))
    for k in ct:
        fg_all = np.concatenate(fg_values[k]) if fg_values[k] else np.empty(0)
        n_fg = sum(int(v.size > 0) for v in fg_values[k])
        if fg_all.size >= MIN_FOREGROUND:
            props, source = ct_properties(fg_all, data_cfg.clip_percentiles), "foreground"
        elif all_values[k]:
            props, source = ct_properties(np.concatenate(all_values[k]), data_cfg.clip_percentiles), "all voxels"
        else:
            raise ValueError(f"data.normalize: channel {k} is CT, but no training case could be read to take its "
                             "window from")
        out[k] = {"scheme": "ct", **props, "source": source, "cases": n_fg if source == "foreground" else used}
    return tuple(out)
