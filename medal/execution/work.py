"""Per-case scoring work whose outputs are idempotent and resumable.

Each case's outputs live in ``OUT/scores/<case_id>/`` and are keyed by
``sha256(image bytes) + sha256(checkpoint) + hash(uncertainty and data config)``. The key file
``key.json`` is written last, atomically: a case is done exactly when its key file exists and
matches. A re-run skips done cases, recomputes missing or stale ones (other checkpoint or config,
changed image), and, since scoring is seeded and NIfTI output is deterministic, a killed-and-resumed
run ends with byte-identical files. Temporary files a killed writer left behind are swept first.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from medal.config import DataConfig, UncertaintyConfig, config_from_dict, config_hash, config_to_dict
from medal.data import atomic_write_json, load_volume
from medal.data.validate import require_finite

__all__ = ["ScoreSpec", "CaseScorer", "case_key", "sweep_temp_files", "KEY_FILE"]

KEY_FILE = "key.json"


@dataclass(frozen=True)
class ScoreSpec:
    """Everything a worker needs to build its scorer (plain, picklable values)."""

    checkpoint: str
    out_dir: str
    uncertainty: dict
    data: dict
    threads: int = 0  # torch CPU threads per worker; 0 = leave torch's default
    device: str = "cpu"
    label_values: tuple[int, ...] = ()  # the dataset's label values: predictions are written in them
    embeddings: bool = False  # also write the gradient embeddings selection.strategy badge reads
    root: str = ""  # the dataset's folder: failure messages name an image relative to it

    @classmethod
    def make(cls, checkpoint, out_dir, ucfg: UncertaintyConfig, dcfg: DataConfig, *, threads=0, device="cpu",
             label_map=None, embeddings: bool = False, root=""):
        return cls(str(checkpoint), str(out_dir), config_to_dict(ucfg), config_to_dict(dcfg), threads, device,
                   tuple(label_map.values) if label_map is not None else (), bool(embeddings), str(root or ""))

    def make_worker(self) -> "CaseScorer":
        return CaseScorer(self)

    def configs(self) -> tuple[UncertaintyConfig, DataConfig]:
        cfg = config_from_dict({"uncertainty": self.uncertainty, "data": self.data}, source="ScoreSpec")
        return cfg.uncertainty, cfg.data


def case_key(image_sha: str, checkpoint_sha: str, ucfg: UncertaintyConfig, dcfg: DataConfig) -> dict:
    return {"image_sha256": image_sha, "checkpoint_sha256": checkpoint_sha,
            "config_sha256": config_hash({"uncertainty": config_to_dict(ucfg), "data": config_to_dict(dcfg)})}


def sweep_temp_files(folder) -> int:
    """Remove temporary files a killed atomic writer left (``.<name>.<hex>.tmp<ext>``)."""
    n = 0
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.rglob(".*.tmp*"):
            if p.is_file():
                p.unlink()
                n += 1
    return n


class CaseScorer:
    """Holds the network (loaded once per worker) and scores one case at a time."""

    def __init__(self, spec: ScoreSpec):
        import torch

        from medal.model import file_hash, load_checkpoint

        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.spec = spec
        self.ucfg, self.dcfg = spec.configs()
        from medal.uncertainty.score import scorer_nets

        from medal.data.resample import checkpoint_orientation, checkpoint_spacing

        self.nets, self.temperature, payload = scorer_nets(spec.checkpoint, self.ucfg, device=spec.device)
        self.spacing = checkpoint_spacing(payload)
        self.orientation = checkpoint_orientation(payload)
        from medal.data.intensity import checkpoint_intensity

        self.intensity = checkpoint_intensity(payload)  # the CT window it learnt with, never recomputed here
        self.checkpoint_sha = file_hash(spec.checkpoint)
        self.out = Path(spec.out_dir)
        from medal.data import LabelMap

        self.label_map = LabelMap(spec.label_values) if spec.label_values else None

    def name(self, image_path) -> str:
        """``image_path`` as messages give it: relative to the dataset's folder when inside it."""
        from medal.data.dataset import relative_to_root

        return relative_to_root(image_path, self.spec.root)

    def key(self, image_path) -> dict:
        from medal.model import file_hash

        from medal.data.channels import channel_files

        key = case_key(file_hash(image_path), self.checkpoint_sha, self.ucfg, self.dcfg)
        more = channel_files(image_path)[1:]
        if more:  # a multi-channel case: a changed _0001 file is a changed input too
            key["channel_sha256"] = [file_hash(f) for f in more]
        if self.spec.label_values and list(self.spec.label_values) != list(range(len(self.spec.label_values))):
            key["label_values"] = list(self.spec.label_values)  # predictions are written in these values
        return key

    def is_done(self, case_id: str, key: dict) -> bool:
        from medal.uncertainty.score import score_paths

        kf = self.out / "scores" / case_id / KEY_FILE
        if not kf.is_file():
            return False
        try:
            stored = json.loads(kf.read_text())
        except (OSError, json.JSONDecodeError):
            return False
        paths = list(score_paths(self.out, case_id, self.ucfg.measures).values())
        if self.spec.embeddings:
            from medal.uncertainty.embedding import embedding_path, has_gradient_embeddings

            if not has_gradient_embeddings(embedding_path(self.out, case_id)):  # every weighting's arrays
                return False
        return stored.get("key") == key and all(p.is_file() for p in paths)

    def __call__(self, case_id: str, image_path: str, image=None) -> dict:
        """Score one case unless its outputs are current; returns a result record (never raises for
        a bad case: the error is in the record)."""
        from medal.uncertainty.score import score_volume, write_case_scores

        t0 = time.perf_counter()
        try:
            key = self.key(image_path)
            if self.is_done(case_id, key):
                return {"case_id": case_id, "status": "cached", "seconds": time.perf_counter() - t0, "voxels": 0}
            image = image if image is not None else load_volume(image_path)
            require_finite(image, self.name(image_path))
            from medal.data.channels import network_input

            # what the network reads (every channel file, named as the dataset knows it), once for both uses
            x = network_input(image, self.dcfg, path=image_path, name=self.name, intensity=self.intensity)
            pred, measures, probs = score_volume(self.nets, image, cfg=self.ucfg, data_cfg=self.dcfg,
                                                 device=self.spec.device, temperature=self.temperature,
                                                 normalized=x, spacing=self.spacing, orientation=self.orientation)
            write_case_scores(self.out, case_id, image, pred, measures, probs, label_map=self.label_map)
            if self.spec.embeddings:
                from medal.data.resample import network_grid
                from medal.uncertainty.embedding import write_case_embeddings

                write_case_embeddings(self.nets, x, self.out, case_id, ucfg=self.ucfg, device=self.spec.device,
                                      temperature=self.temperature, grid=network_grid(image.shape, image.affine,
                                                                                      self.spacing, self.orientation))
            atomic_write_json(self.out / "scores" / case_id / KEY_FILE, {"key": key})
            return {"case_id": case_id, "status": "scored", "seconds": time.perf_counter() - t0,
                    "voxels": int(image.array.size)}
        except Exception as exc:  # noqa: BLE001 - any failure of one case is recorded, the run goes on
            from medal.data import DatasetError

            why = str(exc).replace(str(image_path), self.name(image_path)) if isinstance(exc, DatasetError) \
                else f"{type(exc).__name__}: {exc}"  # a bad file says so itself; anything else names its kind
            return {"case_id": case_id, "status": "failed", "error": why,
                    "seconds": time.perf_counter() - t0, "voxels": 0}
