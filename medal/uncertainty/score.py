"""``medal score``: MC-dropout score volumes for every case, written next to each other in a run folder.

Layout::

    RUN/scores/<case_id>/prediction.nii.gz   # uint8 label map of the mean prediction
    RUN/scores/<case_id>/probs.nii.gz        # mean class probabilities, 4D (channels last), uint8 x 1/255
    RUN/scores/<case_id>/<measure>.nii.gz    # float32, one per measure (entropy, bald, ...)
    RUN/scores/scores.json                   # checkpoint hash, config, per-case files and failures

Every file carries the image's affine and header intent and is written atomically. A case that
fails (unreadable image, NaN intensities, ...) is recorded in ``scores.json`` with its error and the
others go on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medal.config import DataConfig, UncertaintyConfig, config_to_dict
from medal.data import DatasetError, Volume, atomic_write_json, load_volume, save_volume
from medal.data.channels import network_input
from medal.data.validate import require_finite

__all__ = ["ScoreReport", "load_probs", "save_probs", "score_volume", "score_cases", "score_paths", "scorer_nets",
           "write_case_scores"]


@dataclass
class ScoreReport:
    out_dir: Path
    scored: dict[str, dict[str, str]] = field(default_factory=dict)  # case_id -> {name: relative path}
    failures: dict[str, str] = field(default_factory=dict)  # case_id -> error

    @property
    def ok(self) -> bool:
        return not self.failures


def score_paths(out_dir, case_id: str, measures) -> dict[str, Path]:
    """Where ``score_cases`` writes (or wrote) the outputs of ``case_id``."""
    base = Path(out_dir) / "scores" / case_id
    return {"prediction": base / "prediction.nii.gz", "probs": base / "probs.nii.gz",
            **{m: base / f"{m}.nii.gz" for m in measures}}


#: quantisation of stored mean probabilities: uint8 with slope 1/255 (error <= 0.002)
PROBS_SCALE = 255


def save_probs(image: Volume, probs: np.ndarray, path) -> Path:
    """Mean class probabilities ``(C, Z, Y, X)`` as a 4D NIfTI on the image's grid, channels last,
    stored as uint8 with ``scl_slope = 1/255`` (every NIfTI reader returns the probabilities)."""
    import nibabel as nib

    from medal.data import atomic_path

    p = np.asarray(probs)
    if p.ndim != 4 or p.shape[1:] != image.shape:
        raise ValueError(f"probs must be (C, {', '.join(map(str, image.shape))}), got shape {p.shape}")
    q = np.empty((*p.shape[1:], p.shape[0]), np.uint8)
    for c in range(p.shape[0]):  # a class at a time: one float64 volume at once, not C
        q[..., c] = np.clip(np.rint(p[c].astype(np.float64) * PROBS_SCALE), 0, PROBS_SCALE)
    img = nib.Nifti1Image(q, image.affine)
    img.header.set_xyzt_units("mm", "unknown")
    img.header.set_slope_inter(1.0 / PROBS_SCALE, 0.0)
    img.header.set_intent("vector", name="class probabilities")
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return Path(path)


def load_probs(path) -> np.ndarray:
    """Mean class probabilities ``(C, Z, Y, X)`` float32 from :func:`save_probs`' file."""
    vol = load_volume(path, ndim=4)
    return np.ascontiguousarray(np.moveaxis(np.asarray(vol.array, dtype=np.float32), -1, 0))


def scorer_nets(checkpoint, cfg: UncertaintyConfig, *, expected=None, device="cpu"):
    """The networks ``cfg.source`` samples from (the committee's members, or the one network) and the
    temperature to divide logits by; returns ``(nets, temperature, payload)``."""
    from medal.model import load_checkpoint, load_committee

    net, _, payload = load_checkpoint(checkpoint, expected=expected)
    nets = load_committee(checkpoint, payload) if cfg.source.startswith("committee") else [net]
    temperature = float((payload.get("meta") or {}).get("temperature", 1.0)) if cfg.temperature_scaling else 1.0
    return [n.to(device) for n in nets], temperature, payload


def check_input_channels(net, x: np.ndarray, path=None) -> None:
    """A ``ValueError`` naming the image when the network (or a committee's first member) takes another number
    of input channels than ``x`` (``(Z, Y, X)``: one; ``(C, Z, Y, X)``: C) has."""
    first = net[0] if isinstance(net, (list, tuple)) else net
    want, have = int(getattr(first, "in_channels", 1)), 1 if x.ndim == 3 else int(x.shape[0])
    if want != have:
        where = Path(path).name if path is not None else "the image"
        raise ValueError(f"{where}: the model takes {want} input channel(s), the case has {have} (channel files "
                         "_0000, _0001, ...); score with a model trained on cases with the same channels")


def score_volume(net, image: Volume, *, cfg: UncertaintyConfig, data_cfg: DataConfig, device="cpu", normalized=None,
                 temperature: float = 1.0, spacing=None, orientation=None):
    """Prediction, measures and mean probabilities of ``cfg.source``'s samples for one image; returns
    ``(prediction, {measure: volume}, probs (C, Z, Y, X))``. ``net``: a network or a committee (list).
    ``normalized``: the image already normalised with ``data_cfg`` (skips doing it again).
    ``spacing``: the voxel spacing the network was trained at (:func:`medal.data.resample.checkpoint_spacing`):
    the image is resampled to it and every output comes back on the image's own grid. ``orientation``: the axis
    codes it was trained in (:func:`medal.data.resample.checkpoint_orientation`): the same, by flips and
    permutations of the axes."""
    from medal.data.resample import network_grid
    from medal.uncertainty.sources import predict_moments

    x = normalized if normalized is not None else network_input(image, data_cfg)
    check_input_channels(net, x, image.path)
    grid = network_grid(image.shape, image.affine, spacing, orientation)
    if not grid.identity:
        x = grid.to_network(x)
    res = predict_moments(net, x, source=cfg.source, n_samples=cfg.mc_samples, sample_batch=cfg.sample_batch,
                          roi_size=cfg.roi_size, overlap=cfg.overlap, device=device, seed=cfg.seed,
                          tta_axes=cfg.tta_axes, tta_jitter=cfg.tta_jitter, temperature=temperature,
                          votes="vote_entropy" in cfg.measures)
    if not grid.identity:  # back on the image's own grid; the prediction is the argmax of the probabilities brought back
        probs = grid.to_case(res.full_probs())
        probs /= np.maximum(probs.sum(axis=0, keepdims=True), 1e-12)
        measures = {k: grid.to_case(v) for k, v in res.measures(cfg.measures).items()}
        return probs.argmax(axis=0).astype(np.uint8), measures, probs
    return res.prediction(), res.measures(cfg.measures), res.full_probs()


def write_case_scores(out_dir, case_id: str, image: Volume, prediction: np.ndarray, measures: dict,
                      probs: np.ndarray | None = None, label_map=None) -> dict[str, Path]:
    """Write one case's prediction (uint8, in the dataset's label values when ``label_map`` is given),
    measures (float32) and mean probabilities (class-index order) on the image's grid, atomically."""
    paths = score_paths(out_dir, case_id, list(measures))
    pred = label_map.to_values(prediction) if label_map is not None else prediction.astype(np.uint8)
    save_volume(image.with_array(pred), paths["prediction"])
    for name, vol in measures.items():
        save_volume(image.with_array(vol.astype(np.float32)), paths[name])
    if probs is not None:
        save_probs(image, probs, paths["probs"])
    else:
        paths.pop("probs")
    return paths


def score_cases(net, cases, out_dir, *, cfg: UncertaintyConfig, data_cfg: DataConfig, checkpoint_hash: str = "",
                device="cpu", progress: bool = True, cache=None, label_map=None, temperature: float = 1.0,
                spacing=None, root=None, orientation=None, intensity=None) -> ScoreReport:
    """Score ``cases`` (``medal.data.Case``) with ``net`` and write the score volumes under ``out_dir``.
    ``spacing``, ``orientation``: the network's training grid (see :func:`score_volume`); ``intensity``: its
    per-channel normalisation (:func:`medal.data.intensity.checkpoint_intensity`). ``root``: the dataset's
    folder, which failure messages name images relative to.

    ``cache``: a :class:`~medal.data.VolumeCache` images and their normalised arrays come from."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    report = ScoreReport(out_dir)

    def name(path) -> str:
        from medal.data.dataset import relative_to_root

        return relative_to_root(path, root)
    for n in (net if isinstance(net, (list, tuple)) else [net]):
        n.to(device)
    for case in tqdm(list(cases), desc="scoring", unit="case", disable=not progress, leave=False):
        try:
            image = cache.volume(case.image) if cache is not None else load_volume(case.image)
            require_finite(image, name(case.image))
            pred, measures, probs = score_volume(net, image, cfg=cfg, data_cfg=data_cfg, device=device,
                                                 normalized=network_input(image, data_cfg, path=case.image, name=name,
                                                                          cache=cache, intensity=intensity),
                                                 temperature=temperature, spacing=spacing, orientation=orientation)
        except DatasetError as exc:  # a bad file: the message names it
            report.failures[case.case_id] = str(exc).replace(str(case.image), name(case.image))
            continue
        except (ValueError, RuntimeError) as exc:  # RuntimeError: torch, e.g. out of memory
            report.failures[case.case_id] = f"{type(exc).__name__}: {exc}"
            continue
        paths = write_case_scores(out_dir, case.case_id, image, pred, measures, probs, label_map=label_map)
        report.scored[case.case_id] = {k: str(p.relative_to(out_dir)) for k, p in paths.items()}
    atomic_write_json(out_dir / "scores" / "scores.json", {
        "checkpoint_sha256": checkpoint_hash,
        "uncertainty": config_to_dict(cfg),
        "data": config_to_dict(data_cfg),
        "cases": report.scored,
        "failures": report.failures,
    })
    return report
