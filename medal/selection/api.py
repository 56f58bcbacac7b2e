"""``medal select``: score volumes + dataset + budget + strategy -> ``tasks.json``.

Composition only: units (``medal.regions``), predicted seconds (``medal.costs``), the choice
(``medal.selection``) and the task file (``medal.tasks``). A case whose inputs are missing or broken
is reported and skipped; the others are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medal.config import CostsConfig, DataConfig, RegionsConfig, SelectionConfig, config_to_dict
from medal.costs import CostModel, effort_features, feature_names
from medal.data import Dataset, DatasetError, Volume, load_volume, normalize_intensity, save_volume
from medal.regions import RegionTable, region_table, resolve_axis, slice_units, supervoxel_units
from medal.selection.strategies import Selection, select
from medal.tasks import Task, TaskList, write_tasks

__all__ = ["CaseUnits", "case_units", "candidate_table", "select_round", "RoundSelection"]


@dataclass
class CaseUnits:
    case_id: str
    image: Volume
    units: np.ndarray
    table: RegionTable


@dataclass
class RoundSelection:
    tasks_path: Path
    table: RegionTable
    selection: Selection
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        s = self.selection
        lines = [f"{len(s.indices)} task(s) from {len(set(self.table['case_id'][s.indices]))} case(s), "
                 f"strategy {s.strategy}",
                 f"  predicted time: {s.spent_s:.0f} s of a {s.budget_s:.0f} s budget",
                 f"  value (sum of scores): {s.value:.4g} over {len(self.table)} candidate units"]
        if s.gap is not None:
            lines.append(f"  certified: no selection within budget is worth more than {s.upper_bound:.4g} "
                         f"(gap {100 * s.gap:.3f}%)")
        for cid, err in self.skipped.items():
            lines.append(f"  SKIPPED [{cid}] {err}")
        lines.append(f"  tasks written to {self.tasks_path}")
        return "\n".join(lines)


def case_units(case_id: str, image: Volume, score: np.ndarray, prediction: np.ndarray, *, cfg: RegionsConfig,
               cost_model: CostModel, labels: np.ndarray | None = None, data_cfg: DataConfig | None = None,
               cost_segmentation: np.ndarray | None = None) -> CaseUnits:
    """Units of one case with their region-table row, effort features and predicted seconds.

    ``cost_segmentation`` replaces the prediction for the cost features (the simulation charges the
    true cost from the ground truth).
    """
    axis = resolve_axis(int(cfg.axis) if cfg.axis.isdigit() else cfg.axis, image.orientation)
    if cfg.kind == "slice":
        units = slice_units(image.shape, axis=axis)
    else:
        dcfg = data_cfg or DataConfig()
        x = normalize_intensity(image.array, method=dcfg.normalize, clip_percentiles=dcfg.clip_percentiles)
        units = supervoxel_units(x, spacing=image.spacing, size_mm=cfg.supervoxel_size_mm,
                                 compactness=cfg.compactness, iterations=cfg.slic_iterations)
    n_classes = cost_model.n_classes
    table = region_table(units, case_id=case_id, kind=cfg.kind, axis=axis, score=score, prediction=prediction,
                         labels=labels, n_classes=n_classes, how=cfg.aggregate, q=cfg.top_q)
    present = np.where(table["kind"] == "slice", table["index"] + 1, table["supervoxel"]).astype(np.int64)
    feats = effort_features(units, prediction if cost_segmentation is None else cost_segmentation, axis=axis,
                            spacing=image.spacing, n_classes=n_classes, ids=present)
    for name in feature_names(n_classes):
        table[name] = feats[name]
    table["cost"] = cost_model.predict(feats)
    return CaseUnits(case_id, image, units, table)


def candidate_table(dataset: Dataset, scores_dir, *, regions_cfg: RegionsConfig, cost_model: CostModel,
                    labels_dir=None, data_cfg: DataConfig | None = None, progress: bool = False):
    """Units of every case that has score volumes; returns ``(table, {case_id: CaseUnits}, skipped)``."""
    from tqdm import tqdm

    scores_dir = Path(scores_dir)
    per_case, skipped = {}, {}
    for case in tqdm(dataset.cases, desc="regions", unit="case", disable=not progress, leave=False):
        score_path = scores_dir / case.case_id / f"{regions_cfg.measure}.nii.gz"
        pred_path = scores_dir / case.case_id / "prediction.nii.gz"
        if not score_path.exists():
            continue  # not scored (e.g. fully labelled): not a candidate
        try:
            image = load_volume(case.image)
            score, pred = load_volume(score_path), load_volume(pred_path)
            for v, p in ((score, score_path), (pred, pred_path)):
                if v.shape != image.shape:
                    raise DatasetError(f"{p}: shape {v.shape} does not match image shape {image.shape}")
            labels = None
            if labels_dir is not None:
                found = [p for p in Path(labels_dir).glob(f"{case.case_id}.nii*")]
                labels = load_volume(found[0]).array if found else None
            per_case[case.case_id] = case_units(case.case_id, image, score.array, pred.array, cfg=regions_cfg,
                                                cost_model=cost_model, labels=labels, data_cfg=data_cfg)
        except (DatasetError, ValueError) as exc:
            skipped[case.case_id] = str(exc)
    table = RegionTable.concat([cu.table for cu in per_case.values()])
    return table, per_case, skipped


def tasks_from_selection(dataset: Dataset, table: RegionTable, selection: Selection, per_case: dict[str, CaseUnits],
                         round_dir) -> list[Task]:
    """Task objects for the chosen rows; supervoxel tasks get a mask volume per case under ``masks/``."""
    round_dir = Path(round_dir)
    tasks = []
    sv_by_case: dict[str, list[int]] = {}
    for n, i in enumerate(selection.indices):
        case = dataset.case(str(table["case_id"][i]))
        kind = str(table["kind"][i])
        mask = None
        if kind == "supervoxel":
            mask = f"masks/{case.case_id}.nii.gz"
            sv_by_case.setdefault(case.case_id, []).append(int(table["supervoxel"][i]))
        bbox = [[int(table[f"bbox_lo_{d}"][i]) for d in range(3)], [int(table[f"bbox_hi_{d}"][i]) for d in range(3)]]
        tasks.append(Task(task_id=f"t{n:04d}", case_id=case.case_id, image=dataset.relative(case.image), kind=kind,
                          axis=int(table["axis"][i]), index=int(table["index"][i]),
                          supervoxel=int(table["supervoxel"][i]), bbox=bbox, score=float(table["score"][i]),
                          predicted_cost_s=float(table["cost"][i]), strategy=selection.strategy, mask=mask))
    for cid, ids in sv_by_case.items():
        cu = per_case[cid]
        keep = np.where(np.isin(cu.units, ids), cu.units, 0).astype(np.int32)
        save_volume(cu.image.with_array(keep), round_dir / "masks" / f"{cid}.nii.gz")
    return tasks


def select_round(dataset: Dataset, scores_dir, round_dir, *, regions_cfg: RegionsConfig, costs_cfg: CostsConfig,
                 selection_cfg: SelectionConfig, labels_dir=None, data_cfg: DataConfig | None = None,
                 progress: bool = False, overwrite: bool = False) -> RoundSelection:
    """Build candidates from score volumes, choose within budget, write ``round_dir/tasks.json``."""
    round_dir = Path(round_dir)
    tasks_path = round_dir / "tasks.json"
    if tasks_path.exists() and not overwrite:
        raise FileExistsError(f"{tasks_path}: exists and an expert may be working on it; pass --overwrite (overwrite=True) to replace it")
    n_classes = max(len(dataset.label_names), 2)
    cost_model = CostModel.load(costs_cfg.model) if costs_cfg.model else CostModel.default(n_classes)
    if cost_model.n_classes != n_classes:
        raise ValueError(f"{costs_cfg.model}: cost model has {cost_model.n_classes} classes, dataset has {n_classes}")
    table, per_case, skipped = candidate_table(dataset, scores_dir, regions_cfg=regions_cfg, cost_model=cost_model,
                                               labels_dir=labels_dir, data_cfg=data_cfg, progress=progress)
    if not len(table):
        raise ValueError(f"{scores_dir}: no case has a '{regions_cfg.measure}' score volume to select from")
    sel = select(table, selection_cfg)
    tasks = tasks_from_selection(dataset, table, sel, per_case, round_dir)
    write_tasks(tasks_path, tasks, dataset_root=dataset.root, meta={
        "strategy": sel.strategy, "budget_s": sel.budget_s, "predicted_s": sel.spent_s, "value": sel.value,
        "upper_bound": sel.upper_bound, "gap": sel.gap, "cost_model": cost_model.source,
        "scores_dir": str(Path(scores_dir).resolve()),
        "regions": config_to_dict(regions_cfg), "selection": config_to_dict(selection_cfg), "skipped": skipped})
    return RoundSelection(tasks_path, table, sel, skipped)
