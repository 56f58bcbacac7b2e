"""``medal select``: score volumes + dataset + budget + strategy -> ``tasks.json``.

Composition only: units (``medal.regions``), predicted seconds (``medal.costs``), the choice
(``medal.selection``) and the task file (``medal.tasks``). A case whose inputs are missing or broken
is reported and skipped; the others are used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medal.config import CostsConfig, DataConfig, RegionsConfig, SelectionConfig, config_to_dict
from medal.costs import CostCalibration, CostModel, effort_features, feature_names
from medal.data import Dataset, DatasetError, Volume, load_volume, save_volume
from medal.regions import RegionTable, region_table, resolve_axis, slice_units, supervoxel_units
from medal.selection.strategies import (NEEDS_CLUSTERS, NEEDS_EMBEDDINGS, VALUE_DRIVEN, Selection, add_clusters,
                                       add_gradient_embeddings, add_novelty, add_novelty_auto, select)
from medal.tasks import Task, TaskList, write_tasks

__all__ = ["CaseUnits", "NothingFitsError", "case_units", "candidate_table", "load_score_maps", "select_round",
           "RoundSelection"]


class NothingFitsError(ValueError):
    """No candidate unit fits the budget: the message names the cheapest unit and what to do."""

_FEATURE_PREFIXES = ("boundary_mm_", "components_", "area_mm2_")


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
    calibration: CostCalibration | None = None
    fallback: str | None = None
    reserve: Selection | None = None  # selection.reserve: the queue after the budget's tasks
    novelty: dict | None = None  # selection.novelty_share: auto -- the trigger's outcome (NoveltyTrigger.to_json)

    def summary(self) -> str:
        s = self.selection
        lines = [f"{len(s.indices)} task(s) from {len(set(self.table['case_id'][s.indices]))} case(s), "
                 f"strategy {s.strategy}",
                 f"  predicted time: {s.spent_s:.0f} s of a {s.budget_s:.0f} s budget",
                 f"  value (sum of scores): {s.value:.4g} over {len(self.table)} candidate units"]
        if s.gap is not None:
            what = "" if s.objective is None or abs(s.objective - s.value) <= 1e-9 * max(1.0, abs(s.value)) else \
                (" (of what the knapsack maximised: " + ("class values in the class parts" if s.shares else "")
                 + (", " if s.shares and s.beta else "") + ("noise-perturbed values" if s.beta else "") + ")")
            lines.append(f"  certified: no selection within budget is worth more than {s.upper_bound:.4g}{what} "
                         f"(gap {100 * s.gap:.3f}%)")
        if s.shares:
            lines.append("  class quota: " + ", ".join(f"class {c} {100 * v:.0f}%" for c, v in s.shares.items())
                         + " of the budget chosen by that class's value")
        if s.beta is not None:
            lines.append(f"  stochastic batch: power noise, beta {s.beta:.3g}")
        c = self.calibration
        if c is not None and c.method != "none":
            how = f"x{c.scale:.2f} + {c.offset:.1f} s" if not c.coefficients else "refitted cost model"
            lines.append(f"  predicted seconds calibrated on {c.n_tasks} logged task(s) of {', '.join(c.rounds)} "
                         f"({c.method}: {how})")
        elif c is not None and c.rounds:
            lines.append(f"  predicted seconds not calibrated: {c.rounds[0]}")
        if self.reserve is not None and len(self.reserve.indices):
            lines.append(f"  reserve: {len(self.reserve.indices)} more task(s), {self.reserve.spent_s:.0f} s predicted, "
                         f"after the budget's tasks: for when they take less than predicted (stop at "
                         f"{s.budget_s:.0f} s logged)")
        if self.novelty:
            lines.append(f"  {self.novelty['message']}")
        if self.fallback:
            lines.append(f"  NOTE: {self.fallback}")
        for cid, err in self.skipped.items():
            lines.append(f"  SKIPPED [{cid}] {err}")
        lines.append(f"  tasks written to {self.tasks_path}")
        return "\n".join(lines)


def load_score_maps(case_dir, names, label_map=None) -> dict[str, np.ndarray]:
    """A case's score volumes by stem (``prediction``, ``probs`` as ``(C, Z, Y, X)``, measures...).

    ``names`` lists the measures needed; ``prediction`` is always read and ``probs`` whenever it exists.
    With ``label_map`` the prediction (written in the dataset's label values) comes back as class
    indices, the order of ``probs``. A missing needed volume raises :class:`DatasetError` naming the file.
    """
    from medal.uncertainty.score import load_probs

    case_dir = Path(case_dir)
    maps: dict[str, np.ndarray] = {}
    for name in ["prediction", *[n for n in names if n != "probs"]]:
        path = case_dir / f"{name}.nii.gz"
        if not path.exists():
            why = "the ground truth, written only by `medal simulate` for a row whose regions.value is a " \
                  "simulation diagnostic" if name == "truth" else "needed by the configured value"
            raise DatasetError(f"{path}: score volume not found ({why})", path=path)
        maps[name] = load_volume(path).array
    if label_map is not None:
        try:
            maps["prediction"] = label_map.to_index(maps["prediction"], where=str(case_dir / "prediction.nii.gz"))
        except ValueError as exc:
            raise DatasetError(str(exc), path=case_dir / "prediction.nii.gz") from None
    probs_path = case_dir / "probs.nii.gz"
    if probs_path.exists():
        maps["probs"] = load_probs(probs_path)
    elif "probs" in names:
        raise DatasetError(f"{probs_path}: mean class probabilities not found (needed by the configured value); "
                           "re-score the pool with this medal version", path=probs_path)
    return maps


def case_units(case_id: str, image: Volume, maps: dict, *, cfg: RegionsConfig, cost_model: CostModel,
               labels: np.ndarray | None = None, data_cfg: DataConfig | None = None,
               costs_cfg: CostsConfig | None = None, calibration: CostCalibration | None = None,
               cost_segmentation: np.ndarray | None = None, intensity=None) -> CaseUnits:
    """Units of one case with their region-table row, value, effort features and predicted seconds.

    ``maps``: the case's score volumes (:func:`load_score_maps`; at least ``prediction``).
    Predicted seconds: the cost model on the effort features expected under the model's predictive
    distribution (``costs.prediction: expected``, needs ``probs``) or on the predicted label map,
    then ``calibration`` (with its floor). With ``costs.annotation: correct`` the features are those of
    correcting the prediction (:func:`~medal.costs.expected_correction_features`), or of drawing where
    that is priced lower; without ``probs`` (or with ``costs.prediction: argmax``) there is no estimate
    of what is wrong, and units are priced as drawn (an upper bound that calibration then scales).
    ``cost_segmentation`` replaces both for the features (the simulation charges the true cost from the
    ground truth). ``intensity``: the round model's per-channel normalisation (a CT channel's window): supervoxels
    follow the contrast the network reads; ``None``: the image's own z-score.
    """
    from medal.costs import (cheaper_features, correction_features, drop_small_pieces, expected_correction_features,
                             expected_effort_features)
    from medal.regions.values import get_value

    costs_cfg = costs_cfg or CostsConfig()
    calibration = calibration or CostCalibration(floor=costs_cfg.min_seconds)
    prediction = maps["prediction"]
    for name, vol in maps.items():
        if np.shape(vol)[-3:] != image.shape:
            raise DatasetError(f"{case_id}: score volume {name!r} has shape {np.shape(vol)} but the image is {image.shape}")
    if "probs" in maps and maps["probs"].shape[0] != cost_model.n_classes:
        raise DatasetError(f"{case_id}: probs.nii.gz has {maps['probs'].shape[0]} classes but the dataset has "
                           f"{cost_model.n_classes}; score the pool with a model trained for this dataset")
    axes = [resolve_axis(int(a) if a.isdigit() else a, image.orientation) for a in cfg.axes]
    if cfg.kind == "slice":
        unit_volumes = [(a, slice_units(image.shape, axis=a)) for a in axes]
    else:
        dcfg = data_cfg or DataConfig()
        # supervoxels follow the contrast the network reads: a CT window, else the image's own z-score
        from medal.data.intensity import normalize_channel

        x = normalize_channel(image.array, intensity[0] if intensity else None, dcfg)
        unit_volumes = [(axes[0], supervoxel_units(x, spacing=image.spacing, size_mm=cfg.supervoxel_size_mm,
                                                   compactness=cfg.compactness, iterations=cfg.slic_iterations))]
    n_classes = cost_model.n_classes
    value_fn = get_value(cfg.value)
    tables = []
    for axis, units in unit_volumes:
        n_units = int(units.max()) if units.size else 0
        values = value_fn(units, n_units, maps, n_classes=n_classes, measure=cfg.measure, aggregate=cfg.aggregate,
                          top_q=cfg.top_q, band=cfg.band)
        table = region_table(units, case_id=case_id, kind=cfg.kind, axis=axis, values=values, prediction=prediction,
                             labels=labels, n_classes=n_classes)
        present = np.where(table["kind"] == "slice", table["index"] + 1, table["supervoxel"]).astype(np.int64)
        correct = costs_cfg.annotation == "correct"  # the expert edits the prediction shown in the unit
        geom = dict(axis=axis, spacing=image.spacing, n_classes=n_classes, ids=present)
        if cost_segmentation is not None:
            feats = effort_features(units, cost_segmentation, **geom)
            if correct:
                feats = cheaper_features(cost_model, correction_features(units, cost_segmentation, prediction, **geom),
                                         feats)
        elif costs_cfg.prediction == "expected" and "probs" in maps:
            kw = dict(levels=costs_cfg.levels, min_piece_mm2=costs_cfg.min_piece_mm2, **geom)
            feats = expected_effort_features(units, maps["probs"], **kw)
            if correct:  # correcting, or clearing and drawing where that is cheaper
                feats = cheaper_features(cost_model, expected_correction_features(units, maps["probs"], prediction,
                                                                                  **kw), feats)
        else:  # argmax (or no probs): no estimate of what is wrong, so correction is priced as drawing, an upper bound
            seg = drop_small_pieces(prediction, axis=axis, spacing=image.spacing, min_mm2=costs_cfg.min_piece_mm2)
            feats = effort_features(units, seg, **geom)
        for name in feature_names(n_classes):
            table[name] = feats[name]
        table["model_cost"] = cost_model.predict(feats)
        table["cost"] = calibration.apply(table["model_cost"], feats) if cost_segmentation is None \
            else table["model_cost"]
        tables.append(table)
    return CaseUnits(case_id, image, unit_volumes[0][1], RegionTable.concat(tables))


def candidate_table(dataset: Dataset, scores_dir, *, regions_cfg: RegionsConfig, cost_model: CostModel,
                    labels_dir=None, data_cfg: DataConfig | None = None, costs_cfg: CostsConfig | None = None,
                    calibration: CostCalibration | None = None, progress: bool = False, intensity=None):
    """Units of every case that has score volumes; returns ``(table, {case_id: CaseUnits}, skipped)``.
    ``intensity``: the scoring model's per-channel normalisation, which supervoxels are cut on (:func:`case_units`)."""
    from tqdm import tqdm

    from medal.regions.values import value_needs

    scores_dir = Path(scores_dir)
    needs = value_needs(regions_cfg.value, measure=regions_cfg.measure)
    per_case, skipped = {}, {}
    for case in tqdm(dataset.cases, desc="regions", unit="case", disable=not progress, leave=False):
        case_dir = scores_dir / case.case_id
        if not (case_dir / "prediction.nii.gz").exists():
            continue  # not scored (e.g. fully labelled): not a candidate
        try:
            image = load_volume(case.image)
            maps = load_score_maps(case_dir, needs, dataset.label_map)
            labels = None
            if labels_dir is not None:
                found = [p for p in Path(labels_dir).glob(f"{case.case_id}.nii*") if not p.name.startswith(".")]
                labels = load_volume(found[0]).array if found else None
            per_case[case.case_id] = case_units(case.case_id, image, maps, cfg=regions_cfg, cost_model=cost_model,
                                                labels=labels, data_cfg=data_cfg, costs_cfg=costs_cfg, intensity=intensity,
                                                calibration=calibration)
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
        feats = {k: float(table[k][i]) for k in table.columns if k == "n_slices" or k.startswith(_FEATURE_PREFIXES)}
        tasks.append(Task(task_id=f"t{n:04d}", case_id=case.case_id, image=dataset.relative(case.image), kind=kind,
                          axis=int(table["axis"][i]), index=int(table["index"][i]),
                          supervoxel=int(table["supervoxel"][i]), bbox=bbox, score=float(table["score"][i]),
                          predicted_cost_s=float(table["cost"][i]), strategy=selection.strategy, mask=mask,
                          model_cost_s=float(table["model_cost"][i]) if "model_cost" in table else None,
                          features=feats or None))
    for cid, ids in sv_by_case.items():
        cu = per_case[cid]
        keep = np.where(np.isin(cu.units, ids), cu.units, 0).astype(np.int32)
        save_volume(cu.image.with_array(keep), round_dir / "masks" / f"{cid}.nii.gz")
    return tasks


def select_round(dataset: Dataset, scores_dir, round_dir, *, regions_cfg: RegionsConfig, costs_cfg: CostsConfig,
                 selection_cfg: SelectionConfig, labels_dir=None, data_cfg: DataConfig | None = None,
                 progress: bool = False, overwrite: bool = False, round_index: int = 0,
                 earlier_rounds=(), allow_empty: bool = False, meta: dict | None = None,
                 display_cache: bool = True, coldstart_cfg=None, intensity=None) -> RoundSelection:
    """Build candidates from score volumes, choose within budget, write ``round_dir/tasks.json``.

    ``earlier_rounds``: round folders whose finished tasks (``tasks.json`` + ``annotation_log.jsonl``)
    calibrate the predicted seconds (``costs.calibration``). ``round_index`` sets the noise schedule.
    When nothing fits the budget: with ``selection.fallback: supervoxel`` slices give way to
    supervoxels (said in the summary and the file); otherwise :class:`NothingFitsError`, unless
    ``allow_empty`` (then an empty ``tasks.json`` is written). ``meta``: extra fields for tasks.json.
    ``display_cache``: also write uncompressed copies of the large images with tasks for the annotation
    plugin (:mod:`medal.tasks.display`). ``coldstart_cfg``: the label-free representation ``fg_typical`` clusters
    on (the ``coldstart`` section: encoder steps and seed, so a round reuses the cold start's cached encoder);
    ``None`` = its defaults. ``intensity``: the scoring model's per-channel normalisation (its checkpoint's), on which
    supervoxels are cut.
    """
    from medal.costs import calibration_pairs, fit_calibration

    round_dir = Path(round_dir)
    if labels_dir is not None and not Path(labels_dir).is_dir():  # else every unit would read as unannotated
        raise ValueError(f"{labels_dir}: no such labels folder")
    tasks_path = round_dir / "tasks.json"
    if tasks_path.exists() and not overwrite:
        raise FileExistsError(f"{tasks_path}: exists and an expert may be working on it; pass --overwrite (overwrite=True) to replace it")
    n_classes = dataset.n_classes
    cost_model = CostModel.load(costs_cfg.model) if costs_cfg.model else CostModel.default(n_classes)
    if cost_model.n_classes != n_classes:
        raise ValueError(f"{costs_cfg.model}: cost model has {cost_model.n_classes} classes, dataset has {n_classes}")
    qc = qc_tasks(earlier_rounds, round_dir, budget_s=selection_cfg.qc_share * selection_cfg.budget_s,
                  seed=selection_cfg.seed + round_index) if selection_cfg.qc_share else []
    if qc:  # the quality-control share is spent first; the rest of the budget is chosen as usual
        selection_cfg = dataclasses.replace(selection_cfg,
                                            budget_s=selection_cfg.budget_s - sum(t.predicted_cost_s for t in qc))
    calibration = fit_calibration(calibration_pairs(earlier_rounds), method=costs_cfg.calibration,
                                  floor=costs_cfg.min_seconds, decay=costs_cfg.calibration_decay,
                                  min_tasks=costs_cfg.calibration_min_tasks, n_classes=n_classes)
    table, per_case, skipped = candidate_table(dataset, scores_dir, regions_cfg=regions_cfg, cost_model=cost_model,
                                               labels_dir=labels_dir, data_cfg=data_cfg, costs_cfg=costs_cfg,
                                               calibration=calibration, progress=progress, intensity=intensity)
    if not len(table):
        raise ValueError(f"{scores_dir}: no case has score volumes to select from"
                         + (f" ({len(skipped)} skipped: {next(iter(skipped.values()))})" if skipped else ""))
    if round_index < selection_cfg.typical_rounds and selection_cfg.strategy != "fg_typical":
        # TCM (Doucet et al., "Bridging Diversity and Uncertainty in Active Learning with Self-Supervised
        # Pre-Training", ICLR 2024 PML4LRS, arXiv:2403.03728): typical slices while the model is weak, then `strategy`
        selection_cfg = dataclasses.replace(selection_cfg, strategy="fg_typical")
    if selection_cfg.strategy in NEEDS_CLUSTERS:
        table = add_clusters(table, dataset, budget_s=selection_cfg.budget_s,
                             skip_annotated_above=selection_cfg.skip_annotated_above, data_cfg=data_cfg,
                             coldstart_cfg=coldstart_cfg)
    if selection_cfg.strategy in NEEDS_EMBEDDINGS:
        table = add_gradient_embeddings(table, scores_dir, weighting=selection_cfg.badge_weighting)
    novelty, auto_share = None, None
    if selection_cfg.novelty_share == "auto" and selection_cfg.strategy in VALUE_DRIVEN:
        table, trigger = add_novelty_auto(table, dataset, skip_annotated_above=selection_cfg.skip_annotated_above,
                                          data_cfg=data_cfg, coldstart_cfg=coldstart_cfg,
                                          alpha=selection_cfg.novelty_alpha,
                                          weak_alpha=selection_cfg.novelty_weak_alpha,
                                          gap_level=selection_cfg.novelty_gap)
        novelty, auto_share = trigger.to_json(), trigger.share or None
    elif selection_cfg.novelty_share != "auto" and selection_cfg.novelty_share > 0 \
            and selection_cfg.strategy in VALUE_DRIVEN:
        table = add_novelty(table, dataset, skip_annotated_above=selection_cfg.skip_annotated_above,
                            data_cfg=data_cfg, coldstart_cfg=coldstart_cfg)
    sel = select(table, selection_cfg, round_index=round_index, novelty_share=auto_share)
    fallback = None
    if not len(sel.indices) and not qc:
        cheapest = _cheapest(table, selection_cfg)
        if regions_cfg.kind == "slice" and selection_cfg.fallback == "supervoxel":
            sv_cfg = dataclasses.replace(regions_cfg, kind="supervoxel")
            sv_table, sv_cases, _ = candidate_table(dataset, scores_dir, regions_cfg=sv_cfg, cost_model=cost_model,
                                                    labels_dir=labels_dir, data_cfg=data_cfg, costs_cfg=costs_cfg,
                                                    calibration=calibration, progress=progress, intensity=intensity)
            sv_sel = select(sv_table, selection_cfg, round_index=round_index) if len(sv_table) else None
            if sv_sel is not None and len(sv_sel.indices):
                fallback = (f"no slice fits the {sel.budget_s:.0f} s budget (the cheapest is predicted at "
                            f"{cheapest:.0f} s): chose supervoxels instead")
                table, per_case, sel, regions_cfg = sv_table, sv_cases, sv_sel, sv_cfg
        if fallback is None and not allow_empty:
            unit = "slice" if regions_cfg.kind == "slice" else "supervoxel"
            raise NothingFitsError(
                f"nothing fits the {sel.budget_s:.0f} s budget: the cheapest {unit} is predicted at {cheapest:.0f} s"
                + ("" if regions_cfg.kind == "supervoxel" else
                   "; use supervoxels (--kind supervoxel, or selection.fallback: supervoxel)")
                + ", a larger budget (--budget), or fewer classes per task (a cost model for this dataset)")
    reserve = None
    if selection_cfg.reserve > 0 and len(sel.indices):
        # a time-boxed session: the same strategy over the units not chosen, for reserve x budget more
        # predicted seconds; done only while the expert's logged seconds are below the budget
        taken = np.zeros(len(table), bool)
        taken[sel.indices] = True
        rest = RegionTable({**table.columns, "annotated_fraction": np.where(taken, 2.0, table["annotated_fraction"])})
        reserve = select(rest, dataclasses.replace(selection_cfg, budget_s=selection_cfg.reserve * sel.budget_s),
                         round_index=round_index, novelty_share=auto_share)
    both = sel if reserve is None else dataclasses.replace(sel, indices=np.concatenate([sel.indices, reserve.indices]))
    chosen = tasks_from_selection(dataset, table, both, per_case, round_dir)
    tasks = chosen[:len(sel.indices)] + qc + chosen[len(sel.indices):]
    write_tasks(tasks_path, tasks, dataset_root=dataset.root, meta={
        "strategy": sel.strategy, "budget_s": sel.budget_s, "predicted_s": sel.spent_s, "value": sel.value,
        "upper_bound": sel.upper_bound, "gap": sel.gap, "cost_model": cost_model.source,
        "cost_calibration": calibration.to_json(), "beta": sel.beta, "class_shares": sel.shares,
        "round_index": round_index, "scores_dir": _relative_to(scores_dir, round_dir),
        "regions": config_to_dict(regions_cfg), "selection": config_to_dict(selection_cfg),
        "costs": config_to_dict(costs_cfg), "skipped": skipped, "fallback": fallback, "novelty": novelty,
        "qc_tasks": len(qc), "qc_s": sum(t.predicted_cost_s for t in qc),
        "reserve_tasks": 0 if reserve is None else len(reserve.indices),
        "reserve_s": 0.0 if reserve is None else reserve.spent_s, **(meta or {})})
    if display_cache and tasks:
        from medal.tasks import TaskList
        from medal.tasks.display import write_display_cache

        # a failed copy only means the plugin reads the source image: never a reason to fail the round
        write_display_cache(TaskList(tasks_path, dataset.root, tasks), round_dir)
    return RoundSelection(tasks_path, table, sel, skipped, calibration, fallback, reserve, novelty)


def qc_tasks(earlier_rounds, round_dir, *, budget_s: float, seed: int = 0) -> list[Task]:
    """Earlier finished tasks asked again for label quality control, within ``budget_s`` seconds.

    Chosen at random (seeded) among tasks of ``earlier_rounds`` that were done and have logged seconds
    (their predicted cost is what they took the first time), quality-control tasks themselves left
    out. Each copy is a ``qNNNN`` task with ``qc_of = "<round>/<task id>"``; a supervoxel task's mask is
    copied into this round's ``masks/``.
    """
    import shutil

    from medal.costs import read_annotation_log
    from medal.tasks import TaskError, read_tasks

    round_dir = Path(round_dir)
    pool = []
    for rd in earlier_rounds:
        rd = Path(rd)
        log = rd / "annotation_log.jsonl"
        if not (rd / "tasks.json").is_file() or not log.is_file():
            continue
        try:
            tl = read_tasks(rd / "tasks.json")
            secs = {str(r.get("task_id")): float(r["seconds"]) for r in read_annotation_log(log, strict=False)}
        except (TaskError, ValueError, OSError):
            continue
        pool += [(rd, tl, t, secs[t.task_id]) for t in tl.tasks
                 if t.status == "done" and t.qc_of is None and t.task_id in secs]
    order = np.random.default_rng(seed).permutation(len(pool))
    out, left = [], budget_s
    for i in order:
        rd, tl, t, secs = pool[i]
        if secs > left:
            continue
        mask = None
        if t.mask is not None:
            mask = f"masks/qc_{rd.name}_{Path(t.mask).name}"
            (round_dir / "masks").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(tl.mask_path(t), round_dir / mask)
        out.append(dataclasses.replace(t, task_id=f"q{len(out):04d}", status="todo", strategy="qc", score=0.0,
                                       predicted_cost_s=secs, model_cost_s=None, mask=mask,
                                       qc_of=f"{rd.name}/{t.task_id}"))
        left -= secs
    return out


def _relative_to(path, base) -> str:
    """``path`` relative to ``base`` when inside it (a round folder copied elsewhere keeps working),
    else absolute."""
    p, b = Path(path).resolve(), Path(base).resolve()
    return str(p.relative_to(b)) if p.is_relative_to(b) else str(p)


def _cheapest(table: RegionTable, cfg: SelectionConfig) -> float:
    rows = table["annotated_fraction"] <= cfg.skip_annotated_above
    return float(table["cost"][rows].min()) if rows.any() else float("nan")
