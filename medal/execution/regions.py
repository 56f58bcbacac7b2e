"""Region tables as per-case work: units, aggregated scores and predicted costs, one file per case.

``OUT/regions/<case_id>.npz`` holds the case's region table; ``<case_id>.key.json`` (written last)
keys it by the hashes of the image and of every score volume the configured value reads (prediction,
probabilities, measures) and by the regions / costs / data config, so re-runs skip current tables and
recompute stale ones, as for scoring. Predicted seconds here are uncalibrated (a batch table has no
earlier rounds); ``medal select`` / ``medal round`` calibrate them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medal.config import config_from_dict, config_hash
from medal.data import atomic_path, atomic_write_json, load_volume
from medal.regions import RegionTable

__all__ = ["RegionSpec", "CaseRegions", "load_region_tables"]


@dataclass(frozen=True)
class RegionSpec:
    scores_dir: str
    out_dir: str
    regions: dict
    costs: dict
    data: dict
    n_classes: int
    threads: int = 0
    device: str = "cpu"  # unused: region tables run on the CPU
    label_values: tuple[int, ...] = ()  # the dataset's label values (predictions are written in them)

    @classmethod
    def make(cls, scores_dir, out_dir, cfg, *, n_classes: int, label_map=None):
        from medal.config import config_to_dict

        return cls(str(scores_dir), str(out_dir), config_to_dict(cfg.regions), config_to_dict(cfg.costs),
                   config_to_dict(cfg.data), int(n_classes),
                   label_values=tuple(label_map.values) if label_map is not None else ())

    def make_worker(self) -> "CaseRegions":
        return CaseRegions(self)


class CaseRegions:
    def __init__(self, spec: RegionSpec):
        from medal.costs import CostModel

        cfg = config_from_dict({"regions": spec.regions, "costs": spec.costs, "data": spec.data}, source="RegionSpec")
        self.spec, self.rcfg, self.dcfg, self.costs_cfg = spec, cfg.regions, cfg.data, cfg.costs
        self.cost_model = CostModel.load(cfg.costs.model) if cfg.costs.model else CostModel.default(spec.n_classes)
        self.out = Path(spec.out_dir) / "regions"

    def __call__(self, case_id: str, image_path: str, image=None) -> dict:
        from medal.model import file_hash
        from medal.regions.values import value_needs
        from medal.selection.api import case_units, load_score_maps

        t0 = time.perf_counter()
        try:
            sdir = Path(self.spec.scores_dir) / case_id
            needs = value_needs(self.rcfg.value, measure=self.rcfg.measure)
            inputs = sorted({"prediction", *needs} | ({"probs"} if (sdir / "probs.nii.gz").exists() else set()))
            key = {"image": file_hash(image_path),
                   **{name: file_hash(sdir / f"{name}.nii.gz") for name in inputs},
                   "config": config_hash({"regions": self.spec.regions, "costs": self.spec.costs,
                                          "data": self.spec.data})}
            kf = self.out / f"{case_id}.key.json"
            if kf.is_file() and json.loads(kf.read_text()).get("key") == key and (self.out / f"{case_id}.npz").is_file():
                return {"case_id": case_id, "status": "cached", "seconds": time.perf_counter() - t0, "voxels": 0}
            image = image if image is not None else load_volume(image_path)
            from medal.data import LabelMap

            lmap = LabelMap(self.spec.label_values) if self.spec.label_values else None
            cu = case_units(case_id, image, load_score_maps(sdir, needs, lmap), cfg=self.rcfg, cost_model=self.cost_model,
                            data_cfg=self.dcfg, costs_cfg=self.costs_cfg)
            with atomic_path(self.out / f"{case_id}.npz") as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, **{k: (v.astype(str) if v.dtype == object else v) for k, v in cu.table.columns.items()})
            atomic_write_json(kf, {"key": key})
            return {"case_id": case_id, "status": "scored", "seconds": time.perf_counter() - t0,
                    "voxels": int(image.array.size), "regions": len(cu.table)}
        except Exception as exc:  # noqa: BLE001 - recorded; the batch goes on
            return {"case_id": case_id, "status": "failed", "error": f"{type(exc).__name__}: {exc}",
                    "seconds": time.perf_counter() - t0, "voxels": 0}


def load_region_tables(out_dir, case_ids=None) -> RegionTable:
    """Concatenate the per-case tables written under ``out_dir/regions``."""
    tables = []
    for p in sorted((Path(out_dir) / "regions").glob("*.npz")):
        cid = p.name[: -len(".npz")]
        if case_ids is not None and cid not in set(case_ids):
            continue
        with np.load(p, allow_pickle=False) as z:
            cols = {k: (z[k].astype(object) if z[k].dtype.kind == "U" else z[k]) for k in z.files}
        tables.append(RegionTable(cols))
    return RegionTable.concat(tables)
