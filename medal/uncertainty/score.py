"""``medal score``: MC-dropout score volumes for every case, written next to each other in a run folder.

Layout::

    RUN/scores/<case_id>/prediction.nii.gz   # uint8 label map of the mean prediction
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
from medal.data import DatasetError, Volume, atomic_write_json, load_volume, normalize_intensity, save_volume
from medal.data.validate import require_finite

__all__ = ["ScoreReport", "score_volume", "score_cases", "score_paths", "write_case_scores"]


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
    return {"prediction": base / "prediction.nii.gz", **{m: base / f"{m}.nii.gz" for m in measures}}


def score_volume(net, image: Volume, *, cfg: UncertaintyConfig, data_cfg: DataConfig, device="cpu"):
    """MC-dropout prediction and measures for one image; returns ``(prediction, {measure: volume})``."""
    from medal.uncertainty.inference import mc_predict

    x = normalize_intensity(image.array, method=data_cfg.normalize, clip_percentiles=data_cfg.clip_percentiles)
    res = mc_predict(net, x, n_samples=cfg.mc_samples, sample_batch=cfg.sample_batch, roi_size=cfg.roi_size,
                     overlap=cfg.overlap, device=device, seed=cfg.seed)
    return res.prediction(), res.measures(cfg.measures)


def write_case_scores(out_dir, case_id: str, image: Volume, prediction: np.ndarray, measures: dict) -> dict[str, Path]:
    """Write one case's prediction (uint8) and measures (float32) on the image's grid, atomically."""
    paths = score_paths(out_dir, case_id, list(measures))
    save_volume(image.with_array(prediction.astype(np.uint8)), paths["prediction"])
    for name, vol in measures.items():
        save_volume(image.with_array(vol.astype(np.float32)), paths[name])
    return paths


def score_cases(net, cases, out_dir, *, cfg: UncertaintyConfig, data_cfg: DataConfig, checkpoint_hash: str = "",
                device="cpu", progress: bool = True) -> ScoreReport:
    """Score ``cases`` (``medal.data.Case``) with ``net`` and write the score volumes under ``out_dir``."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    report = ScoreReport(out_dir)
    net.to(device)
    for case in tqdm(list(cases), desc="scoring", unit="case", disable=not progress, leave=False):
        try:
            image = load_volume(case.image)
            require_finite(image, str(case.image))
            pred, measures = score_volume(net, image, cfg=cfg, data_cfg=data_cfg, device=device)
        except (DatasetError, ValueError, RuntimeError) as exc:  # RuntimeError: torch, e.g. out of memory
            report.failures[case.case_id] = f"{type(exc).__name__}: {exc}"
            continue
        paths = write_case_scores(out_dir, case.case_id, image, pred, measures)
        report.scored[case.case_id] = {k: str(p.relative_to(out_dir)) for k, p in paths.items()}
    atomic_write_json(out_dir / "scores" / "scores.json", {
        "checkpoint_sha256": checkpoint_hash,
        "uncertainty": config_to_dict(cfg),
        "data": config_to_dict(data_cfg),
        "cases": report.scored,
        "failures": report.failures,
    })
    return report
