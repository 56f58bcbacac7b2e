"""Checkpoints: weights plus the model config and its hash; loaded with ``weights_only=True``."""

from __future__ import annotations

import dataclasses
import hashlib
import io
from pathlib import Path

from medal.config import ModelConfig, config_from_dict, config_hash, config_to_dict
from medal.data.atomic import atomic_write_bytes

__all__ = ["CheckpointError", "check_checkpoint_labels", "save_checkpoint", "load_checkpoint", "load_committee",
           "file_hash", "FORMAT"]

FORMAT = "medal-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint is unreadable, of another format, or does not match the expected model config."""


def file_hash(path) -> str:
    """SHA-256 of a file's bytes (how manifests name a checkpoint)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(path, net, cfg: ModelConfig, *, in_channels: int, out_channels: int, meta: dict | None = None,
                    snapshots: list[dict] | None = None) -> Path:
    """Write ``net``'s weights with its config atomically. ``meta`` must hold plain JSON-like values.

    ``snapshots``: state dicts of a committee (the members of ``uncertainty.source: committee``), kept
    in the same file so a committee is one artefact with one hash. ``cfg`` with ``strides: auto`` stores the strides
    ``net`` was planned with (:func:`~medal.model.build_model`); a config that is not the one ``net`` was built from
    is refused (strides do not change the weights' shapes, so a wrong one would load without complaint)."""
    import torch

    built = getattr(net, "model_cfg", None)
    if cfg.strides == "auto":
        if built is None:
            raise ValueError("save_checkpoint: model.strides 'auto' is not planned and the network does not say "
                             "which strides it was built with; pass the planned config (ModelConfig.planned)")
        cfg = built
    elif built is not None and config_hash(built) != config_hash(cfg):
        raise ValueError(f"save_checkpoint: the network was built from another model config "
                         f"({'; '.join(_diff(config_to_dict(built), config_to_dict(cfg)))})")
    payload = {
        "format": FORMAT,
        "model_config": config_to_dict(cfg),
        "model_config_hash": config_hash(cfg),
        "in_channels": int(in_channels),
        "out_channels": int(out_channels),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "meta": dict(meta or {}),
    }
    if snapshots:
        payload["snapshots"] = [{k: v.detach().cpu() for k, v in s.items()} for s in snapshots]
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write_bytes(path, buf.getvalue())


def _diff(a: dict, b: dict) -> list[str]:
    return [f"{k}: checkpoint {a.get(k)!r} vs expected {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def load_checkpoint(path, *, expected: ModelConfig | None = None, map_location="cpu"):
    """Load a checkpoint; returns ``(net, cfg, payload)``.

    Uses ``torch.load(weights_only=True)``: no code in the file runs. With ``expected``, a checkpoint
    trained with another model config raises :class:`CheckpointError` listing the differing keys (its
    ``strides: auto`` matches the strides the checkpoint's model was planned with).
    """
    import torch

    from .unet import build_model

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for a bad file
        text = str(exc)
        if "Unsupported global" in text:
            # torch's message goes on to suggest loading with weights_only=False: never pass that on
            raise CheckpointError(f"{path}: refused: the file holds Python objects beyond tensors and plain values, "
                                  "which medal never unpickles (weights_only loading); it is not a medal checkpoint "
                                  "or it was tampered with") from None
        detail = "its content is not a checkpoint" if "weights_only" in text or "Weights" in text else \
            (text.strip().splitlines()[0] if text.strip() else type(exc).__name__)
        raise CheckpointError(f"{path}: not a readable checkpoint ({detail})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{path}: expected format {FORMAT!r}, got {got!r}")
    try:
        cfg = config_from_dict({"model": payload["model_config"]}, source=str(path)).model
    except ValueError as exc:
        raise CheckpointError(f"{path}: stored model config is invalid ({exc})") from exc
    if config_hash(cfg) != payload.get("model_config_hash"):
        raise CheckpointError(f"{path}: model config hash does not match its config (file edited or corrupt)")
    if expected is not None and expected.strides == "auto":  # planned for the data the checkpoint was trained on
        expected = dataclasses.replace(expected, strides=cfg.strides)
    if expected is not None and config_hash(expected) != config_hash(cfg):
        diffs = "; ".join(_diff(config_to_dict(cfg), config_to_dict(expected)))
        raise CheckpointError(f"{path}: model config does not match the expected one ({diffs})")
    net = build_model(cfg, in_channels=payload["in_channels"], out_channels=payload["out_channels"])
    try:
        net.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the stored config ({exc})") from exc
    return net, cfg, payload


def check_checkpoint_labels(payload: dict, label_map, path, *, n_classes: int | None = None) -> None:
    """Refuse a checkpoint trained for other classes than the dataset's, naming both.

    A checkpoint records the label values it was trained for (``meta.label_values``); an older one
    is checked by its number of output classes only.
    """
    if label_map is None and n_classes is None:
        return
    want_n = label_map.n_classes if label_map is not None else n_classes
    meta = payload.get("meta", {}) or {}
    have = meta.get("label_values")
    out = int(payload.get("out_channels", 0))
    if have is not None and label_map is not None and list(have) != list(label_map.values):
        raise CheckpointError(f"{path}: trained for label values {list(have)} ({len(have)} classes) but the dataset's "
                              f"labels are {list(label_map.values)} ({label_map.n_classes} classes); train a model "
                              "for this dataset")
    if out != want_n:
        what = f"label values {list(label_map.values)}" if label_map is not None else f"{want_n} classes"
        raise CheckpointError(f"{path}: has {out} output classes but the dataset has {want_n} ({what}); train a "
                              "model for this dataset")


def load_committee(path, payload: dict | None = None, *, expected: ModelConfig | None = None) -> list:
    """The committee a checkpoint holds (``training.snapshots``): one network per member."""
    from .unet import build_model

    if payload is None:
        payload = load_checkpoint(path, expected=expected)[2]
    members = payload.get("snapshots") or []
    if len(members) < 2:
        raise CheckpointError(f"{path}: holds no committee (trained with training.snapshots: 0); train with "
                              "training.snapshots >= 2 for uncertainty.source: committee")
    cfg = config_from_dict({"model": payload["model_config"]}, source=str(path)).model
    nets = []
    for n, state in enumerate(members):
        net = build_model(cfg, in_channels=payload["in_channels"], out_channels=payload["out_channels"])
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: committee member {n} does not fit the stored config ({exc})") from None
        nets.append(net)
    return nets
