"""``medal simulate``: active learning with the ground truth as the oracle, to measure label efficiency.

For every strategy and seed, from the same initial labels (per seed): train -> evaluate Dice on the
fixed held-out test cases -> score the pool -> select within the round budget (predicted costs) ->
the oracle paints the chosen units from the ground truth and is charged the *true* cost -> ingest ->
next round. One CSV row per evaluation; ``report.py`` turns the CSV into curves, AUBC and tests.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np

from medal.config import MedalConfig
from medal.costs import CostModel
from medal.data import UNLABELED, Dataset, atomic_write_text, load_volume
from medal.loop import ingest, labels_dir, round_dir, run_round
from medal.tasks import read_tasks

from .oracle import full_annotation_cost, oracle_annotate

__all__ = ["simulate", "split_cases", "CSV_FIELDS", "evaluate"]

CSV_FIELDS = ["strategy", "seed", "round", "seconds", "predicted_seconds", "pct_full_cost", "pct_slices",
              "pct_voxels", "dice_mean"]


def split_cases(dataset: Dataset, cfg) -> tuple[list[str], list[str]]:
    """(pool, test) case ids: from ``split_file`` if given, else a seeded ``test_fraction``."""
    labelled = sorted(c.case_id for c in dataset.cases if c.label is not None)
    if cfg.split_file:
        test = [c for c in json.loads(Path(cfg.split_file).read_text())["test"] if c in set(labelled)]
    else:
        order = np.random.default_rng(12345).permutation(labelled).tolist()
        test = sorted(order[: max(1, int(round(len(labelled) * cfg.test_fraction)))])
    pool = [c for c in labelled if c not in set(test)]
    if cfg.max_pool:
        pool = sorted(np.random.default_rng(54321).permutation(pool)[: cfg.max_pool].tolist())
    if not pool or not test:
        raise ValueError(f"{dataset.root}: need labelled cases for both the pool and the test split")
    return pool, test


def evaluate(checkpoint, dataset: Dataset, test: list[str], cfg: MedalConfig) -> np.ndarray:
    """Per-class foreground Dice of ``checkpoint`` on the test cases, averaged over cases."""
    from medal.data import normalize_intensity
    from medal.model import load_checkpoint
    from medal.training import dice_per_class
    from medal.uncertainty.inference import predict_probs

    net = load_checkpoint(checkpoint)[0]
    n = max(len(dataset.label_names), 2)
    scores = []
    for cid in test:
        case = dataset.case(cid)
        x = normalize_intensity(load_volume(case.image).array, method=cfg.data.normalize,
                                clip_percentiles=cfg.data.clip_percentiles)
        pred = predict_probs(net, x, roi_size=cfg.uncertainty.roi_size).argmax(0)
        scores.append(dice_per_class(pred, load_volume(case.label).array, n))
    return np.mean(scores, axis=0)


def _annotated_stats(run_dir: Path, pool: list[str], shapes: dict[str, tuple], axis: int) -> tuple[float, float]:
    slices = voxels = tot_s = tot_v = 0
    for cid in pool:
        p = labels_dir(run_dir) / f"{cid}.nii.gz"
        shape = shapes[cid]
        tot_v += int(np.prod(shape))
        tot_s += shape[axis]
        if p.is_file():
            ann = load_volume(p).array != UNLABELED
            voxels += int(ann.sum())
            slices += int(ann.any(axis=tuple(d for d in range(3) if d != axis)).sum())
    return 100.0 * slices / tot_s, 100.0 * voxels / tot_v


def _initial_labels(run_dir: Path, dataset: Dataset, pool: list[str], cfg: MedalConfig, seed: int,
                    cost_model: CostModel, cache: Path) -> dict:
    """Round -1: the same first labels for every strategy of a seed (random units or cold start)."""
    from medal.coldstart import coldstart_select
    from medal.selection.api import candidate_table, tasks_from_selection
    from medal.selection.strategies import select
    from medal.tasks import write_tasks

    init_dir = run_dir / "round_init"
    if not (cache / "tasks.json").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        if cfg.simulation.initial == "coldstart":
            coldstart_select(dataset, cache, budget_s=cfg.simulation.initial_budget_s,
                             cfg=dataclasses.replace(cfg.coldstart, seed=seed), data_cfg=cfg.data, pool=pool,
                             axis=cfg.regions.axis)
        else:  # random units, charged at their true cost
            sub = Dataset(dataset.root, dataset.layout, tuple(c for c in dataset.cases if c.case_id in set(pool)),
                          dataset.label_names, dataset.name)
            scores = cache / "truth_scores"
            for c in sub.cases:  # candidate units need a "score" and "prediction": give the truth to the cost model
                d = scores / c.case_id
                d.mkdir(parents=True, exist_ok=True)
                lab = load_volume(c.label)
                from medal.data import save_volume

                save_volume(lab.with_array(np.zeros(lab.shape, np.float32)), d / f"{cfg.regions.measure}.nii.gz")
                save_volume(lab.with_array(lab.array.astype(np.uint8)), d / "prediction.nii.gz")
            table, per_case, _ = candidate_table(sub, scores, regions_cfg=cfg.regions, cost_model=cost_model)
            sel_cfg = dataclasses.replace(cfg.selection, strategy="random", seed=seed,
                                          budget_s=cfg.simulation.initial_budget_s)
            sel = select(table, sel_cfg)
            write_tasks(cache / "tasks.json", tasks_from_selection(sub, table, sel, per_case, cache),
                        dataset_root=dataset.root, meta={"strategy": "initial-random", "budget_s": sel.budget_s})
            shutil.rmtree(scores)
    if not init_dir.is_dir():
        shutil.copytree(cache, init_dir)
    tasks = read_tasks(init_dir / "tasks.json")
    spent = oracle_annotate(tasks, dataset, init_dir / "annotations", cost_model=cost_model)
    ingest(run_dir, init_dir, dataset)
    return spent


def simulate(dataset: Dataset, out_dir, cfg: MedalConfig, *, progress: bool = True, log=print) -> Path:
    """Run every (strategy, seed); returns the path of ``results.csv`` (written after each row)."""
    from medal.regions import resolve_axis

    out_dir = Path(out_dir)
    if (out_dir / "results.csv").exists():
        raise FileExistsError(f"{out_dir / 'results.csv'}: a simulation already ran here; choose a new folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    sim = cfg.simulation
    pool, test = split_cases(dataset, sim)
    n = max(len(dataset.label_names), 2)
    cost_model = CostModel.load(cfg.costs.model) if cfg.costs.model else CostModel.default(n)
    full = full_annotation_cost(dataset, pool, axis_name=cfg.regions.axis, cost_model=cost_model)
    names = [dataset.label_names.get(c, str(c)) for c in range(1, n)]
    fields = CSV_FIELDS + [f"dice_{name}" for name in names]
    rows: list[dict] = []
    meta = {"pool": pool, "test": test, "full_annotation_cost_s": full, "class_names": names,
            "config": json.loads(json.dumps(dataclasses.asdict(cfg)))}
    atomic_write_text(out_dir / "simulation.json", json.dumps(meta, indent=1))
    axis0 = resolve_axis(int(cfg.regions.axis) if cfg.regions.axis.isdigit() else cfg.regions.axis,
                         load_volume(dataset.case(pool[0]).image).orientation)
    shapes = {cid: load_volume(dataset.case(cid).image).shape for cid in pool}  # read once, not every round
    for seed in sim.seeds:
        for strategy in sim.strategies:
            run = out_dir / strategy.replace("+", "_") / f"seed_{seed}"
            scfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, seed=seed),
                                       selection=dataclasses.replace(cfg.selection, strategy=strategy, seed=seed),
                                       uncertainty=dataclasses.replace(cfg.uncertainty, seed=seed))
            seconds = _initial_labels(run, dataset, pool, scfg, seed, cost_model, out_dir / "initial" / f"seed_{seed}")["seconds"]
            predicted = 0.0
            for r in range(sim.rounds + 1):
                last = r == sim.rounds
                res = run_round(run, dataset, scfg, index=r, pool=pool, progress=False,
                                stop_after="train" if last else None)
                dice = evaluate(round_dir(run, r) / "model.pt", dataset, test, scfg)
                pct_s, pct_v = _annotated_stats(run, pool, shapes, axis0)
                row = {"strategy": strategy, "seed": seed, "round": r, "seconds": round(seconds, 2),
                       "predicted_seconds": round(predicted, 2), "pct_full_cost": round(100 * seconds / full, 3),
                       "pct_slices": round(pct_s, 3), "pct_voxels": round(pct_v, 3),
                       "dice_mean": round(float(dice.mean()), 5),
                       **{f"dice_{name}": round(float(d), 5) for name, d in zip(names, dice)}}
                rows.append(row)
                if log:
                    log(json.dumps(row))
                _write_csv(out_dir / "results.csv", fields, rows)
                if last:
                    break
                tl = read_tasks(res.round_dir / "tasks.json")
                predicted += sum(t.predicted_cost_s for t in tl.tasks)
                seconds += oracle_annotate(tl, dataset, res.round_dir / "annotations", cost_model=cost_model)["seconds"]
                ingest(run, res.round_dir, dataset)
    return out_dir / "results.csv"


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
