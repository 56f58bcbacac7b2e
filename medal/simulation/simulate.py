"""``medal simulate``: active learning with the ground truth as the oracle, to measure label efficiency.

For every strategy (a selection strategy, ``default``: the config as it is, or a named variant of
``simulation.variants``) and seed, from the same initial labels (per seed): train -> evaluate Dice on the
fixed held-out test cases -> score the pool -> select within the round budget (predicted costs) ->
the oracle paints the chosen units from the ground truth and is charged the *true* cost -> ingest ->
next round. One CSV row per evaluation; ``report.py`` turns the CSV into curves, AUBC and tests.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from medal.config import MedalConfig, variant_config
from medal.costs import CostModel
from medal.data import UNLABELED, Dataset, atomic_write_text, load_label, load_volume, save_volume
from medal.loop import ingest, round_dir, run_round
from medal.regions.values import ORACLE_VALUES
from medal.tasks import read_tasks

from .oracle import full_annotation_cost, oracle_annotate

__all__ = ["simulate", "split_cases", "usable_cases", "CSV_FIELDS", "evaluate", "initial_labels", "run_environment"]

CSV_FIELDS = ["strategy", "seed", "round", "seconds", "predicted_seconds", "pct_full_cost", "pct_slices",
              "pct_voxels", "dice_mean", "round_budget_s", "round_predicted_s", "round_charged_s", "round_tasks",
              "round_fg_tasks", "train_s"]


def split_cases(dataset: Dataset, cfg) -> tuple[list[str], list[str]]:
    """(pool, test) case ids: from ``split_file`` if given, else a seeded ``test_fraction``.

    A split file holds a ``test`` list and optionally a ``pool`` list (then exactly those cases are the
    pool; otherwise every other labelled case is). ``max_pool`` then keeps a seeded subset of the pool.
    """
    labelled = sorted(c.case_id for c in dataset.cases if c.label is not None)
    explicit_pool = None
    if cfg.split_file:
        split = read_split(cfg.split_file)
        test = [c for c in split["test"] if c in set(labelled)]
        if "pool" in split:
            explicit_pool = [c for c in split["pool"] if c in set(labelled) and c not in set(test)]
    else:
        order = np.random.default_rng(12345).permutation(labelled).tolist()
        test = sorted(order[: max(1, int(round(len(labelled) * cfg.test_fraction)))])
    pool = explicit_pool if explicit_pool is not None else [c for c in labelled if c not in set(test)]
    if cfg.max_pool:
        pool = sorted(np.random.default_rng(54321).permutation(pool)[: cfg.max_pool].tolist())
    if not pool or not test:
        raise ValueError(f"{dataset.root}: need labelled cases for both the pool and the test split")
    return pool, test


def read_split(path) -> dict:
    """A split file: ``{"test": [case ids], "pool": [case ids] (optional)}``; a one-line error naming
    ``simulation.split_file`` and the file when it cannot be read or is not of that form."""
    try:
        split = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        why = "not found" if isinstance(exc, FileNotFoundError) else f"not readable JSON ({type(exc).__name__})"
        raise ValueError(f"simulation.split_file: {path}: {why}") from None
    if not isinstance(split, dict) or not isinstance(split.get("test"), list) \
            or not isinstance(split.get("pool", []), list):
        raise ValueError(f"simulation.split_file: {path}: expected {{\"test\": [case ids], \"pool\": [case ids] "
                         "(optional)}")
    return split


def _split_strays(dataset: Dataset, sim) -> dict[str, str]:
    """Cases a split file lists that are not labelled cases of the dataset (a typo, another dataset's
    file): left out by :func:`split_cases`, so said here rather than evaluating on fewer cases unawares."""
    if not sim.split_file:
        return {}
    split = read_split(sim.split_file)
    labelled = {c.case_id for c in dataset.cases if c.label is not None}
    known = {c.case_id for c in dataset.cases}
    return {cid: (f"{sim.split_file}: its {key!r} list names {cid!r}, "
                  + ("a case without a label file" if cid in known else f"not a case of {dataset.root}"))
            for key in ("test", "pool") for cid in split.get(key) or [] if cid not in labelled}


def usable_cases(dataset: Dataset, case_ids) -> tuple[list[str], dict[str, tuple], dict[str, str]]:
    """The cases a simulation can use: ``(ids, {id: image shape}, {id: why skipped})``.

    Each case gets the checks of ``medal dataset check`` (readable, 3D, finite, label on the image's
    grid, integer label values named in ``dataset.json``), and its ground truth must be complete: a
    label file holding 255 ("not annotated" in medal) would have the oracle paint nothing there and the
    evaluation skip it. A 0/255 binary mask is the usual cause, so the message says how to fix it.
    A bad case is skipped and reported, the rest go on (the batch rule), as ``medal train`` does.
    """
    from medal.data import load_case
    from medal.data.errors import DatasetError

    ok: list[str] = []
    shapes: dict[str, tuple] = {}
    skipped: dict[str, str] = {}
    for cid in case_ids:
        case = dataset.case(cid)
        try:
            image, label = load_case(case, dataset)
        except DatasetError as exc:
            skipped[cid] = str(exc)
            continue
        if label is not None and (label.array == UNLABELED).any():
            values = np.unique(label.array)
            hint = (" (a 0/255 binary mask? write its foreground as 1)"
                    if set(values.tolist()) <= {0, UNLABELED} else "")
            skipped[cid] = (f"{dataset.relative(case.label)}: the ground truth holds {UNLABELED} (medal's 'not "
                            f"annotated') in {int((label.array == UNLABELED).sum())} voxel(s); a simulation needs "
                            f"complete labels{hint}")
            continue
        ok.append(cid)
        shapes[cid] = image.shape
    return ok, shapes, skipped


def _read_groups(path) -> dict:
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"simulation.groups: cannot read {path} ({type(exc).__name__})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"simulation.groups: {path} must hold a JSON object {{case id: group}}")
    return raw


def load_groups(path, test: list[str]) -> dict[str, list[int]]:
    """``simulation.groups``: group name -> indices into ``test`` of its cases, groups in sorted order.

    The file is a JSON object {case id: group} (a site, a scanner); every test case needs a group, and a
    group name becomes CSV columns (``dice_group_NAME``, ``tasks_group_NAME``), so it is letters, digits,
    ``_``, ``-`` or ``.``. Pool cases may have groups too: their painted units are counted per group."""
    raw = _read_groups(path)
    missing = [c for c in test if c not in raw]
    if missing:
        raise ValueError(f"simulation.groups: {path} has no group for {len(missing)} test case(s), e.g. {missing[0]}")
    out: dict[str, list[int]] = {}
    for i, c in enumerate(test):
        g = str(raw[c])
        if not g or not all(ch.isalnum() or ch in "_-." for ch in g):
            raise ValueError(f"simulation.groups: {path}: group {g!r} of {c} is not a usable name "
                             "(letters, digits, _ - .)")
        out.setdefault(g, []).append(i)
    return dict(sorted(out.items()))


def pool_groups(path, pool: list[str], groups) -> dict[str, str]:
    """Pool case -> group, for the pool cases the groups file names with a group the test split has (the
    ``tasks_group_NAME`` columns count a round's painted units per group; other pool cases are not counted)."""
    raw = _read_groups(path)
    return {c: str(raw[c]) for c in pool if c in raw and str(raw[c]) in groups}


def start_pool(path, pool: list[str], initial_groups) -> list[str]:
    """``simulation.initial_groups``: the pool cases the first labels may come from (those whose group in the
    groups file ``path`` is one of ``initial_groups``), in pool order; every group named must hold pool cases."""
    raw = _read_groups(path)
    of_case = {c: str(raw[c]) for c in pool if c in raw}
    empty = [g for g in initial_groups if g not in of_case.values()]
    if empty:
        raise ValueError(f"simulation.initial_groups: {path} gives no pool case the group(s) {empty}; its pool groups "
                         f"are {sorted(set(of_case.values()))}")
    return [c for c in pool if of_case.get(c) in set(initial_groups)]


def group_tasks(case_ids, of_case: dict[str, str], groups) -> dict[str, int]:
    """``tasks_group_NAME`` columns: how many of a round's painted units lie in each group's pool cases."""
    counts = collections.Counter(of_case.get(c) for c in case_ids)
    return {f"tasks_group_{g}": int(counts.get(g, 0)) for g in groups}


def group_dice(per_case: np.ndarray, groups: dict[str, list[int]]) -> dict[str, float]:
    """``dice_group_NAME`` columns: per group, the mean over its cases of each case's mean per-class Dice."""
    return {f"dice_group_{g}": round(float(per_case[idx].mean(axis=1).mean()), 5) for g, idx in groups.items()}


def evaluate(checkpoint, dataset: Dataset, test: list[str], cfg: MedalConfig, *, cache=None,
             per_case: bool = False) -> np.ndarray:
    """Per-class foreground Dice of ``checkpoint`` on the test cases, averaged over cases (``per_case``: one
    row per test case, in ``test``'s order).

    ``cache``: a :class:`~medal.data.VolumeCache` test images (normalised) and labels come from."""
    from medal.data.channels import network_input
    from medal.model import load_checkpoint
    from medal.model.device import resolve_device
    from medal.training import dice_per_class
    from medal.uncertainty.inference import predict_probs

    device = resolve_device(cfg.uncertainty.device)  # where the scoring runs (a GPU when there is one)
    from medal.data.resample import checkpoint_orientation, checkpoint_spacing, network_grid

    net, _, payload = load_checkpoint(checkpoint)
    net = net.to(device)
    spacing, orientation = checkpoint_spacing(payload), checkpoint_orientation(payload)
    from medal.data.intensity import checkpoint_intensity

    intensity = checkpoint_intensity(payload)
    n = dataset.n_classes
    scores = []
    for cid in test:
        case = dataset.case(cid)
        image = cache.volume(case.image) if cache is not None else load_volume(case.image)
        x = network_input(image, cfg.data, path=case.image, name=dataset.relative, cache=cache, intensity=intensity)
        truth = load_label(case.label, image, dataset.relative(case.label), cache=cache,
                           label_names=dataset.label_names)[0].array
        grid = network_grid(image.shape, image.affine, spacing, orientation)
        if not grid.identity:  # the network's grid and back: Dice on each case's own grid
            probs = predict_probs(net, grid.to_network(x), roi_size=cfg.uncertainty.roi_size, device=device)
            pred = grid.to_case(probs).argmax(0)
        else:
            pred = predict_probs(net, x, roi_size=cfg.uncertainty.roi_size, device=device).argmax(0)
        scores.append(dice_per_class(pred, dataset.label_map.to_index(truth, where=dataset.relative(case.label)), n))
    return np.asarray(scores) if per_case else np.mean(scores, axis=0)


def _annotated_stats(run_dir: Path, pool: list[str], shapes: dict[str, tuple], axes: tuple[int, ...],
                     before: int) -> tuple[float, float]:
    """% of the pool's slices and voxels labelled by the first labels and the rounds before ``before``: read
    from those rounds' annotations, not the label folder, which a resumed run already holds later rounds in.

    One plane (``axes``, the array axes the run paints in): the slices along it that hold any label (a
    supervoxel touches several). Several planes: the slices along each that are labelled whole (painted as a
    slice; a coronal slice touches every axial slice it crosses, so "touched" would count most of them), over
    the slices of all those planes."""
    axes = tuple(axes)
    folders = [run_dir / "round_init" / "annotations"] + [round_dir(run_dir, r) / "annotations" for r in range(before)]
    slices = voxels = tot_s = tot_v = 0
    for cid in pool:
        shape = shapes[cid]
        tot_v += int(np.prod(shape))
        tot_s += sum(shape[a] for a in axes)
        ann = None
        for f in folders:
            p = f / f"{cid}.nii.gz"
            if p.is_file():
                a = load_volume(p).array != UNLABELED
                ann = a if ann is None else ann | a
        if ann is not None:
            voxels += int(ann.sum())
            if len(axes) == 1:
                slices += int(ann.any(axis=tuple(d for d in range(3) if d != axes[0])).sum())
            else:
                slices += sum(int(ann.all(axis=tuple(d for d in range(3) if d != a)).sum()) for a in axes)
    return 100.0 * slices / tot_s, 100.0 * voxels / tot_v


def initial_labels(run_dir: Path, dataset: Dataset, pool: list[str], cfg: MedalConfig, seed: int,
                   cost_model: CostModel, cache: Path) -> dict:
    """Round -1: the same first labels for every strategy of a seed (random units or cold start),
    chosen once into ``cache``, painted by the oracle into ``run_dir``; returns the oracle's charge."""
    init_dir = run_dir / "round_init"
    _prepare_initial(dataset, pool, cfg, seed, cost_model, cache)
    if not init_dir.is_dir():
        shutil.copytree(cache, init_dir)
    tasks = read_tasks(init_dir / "tasks.json")
    spent = oracle_annotate(tasks, dataset, init_dir / "annotations", cost_model=cost_model,
                            log=init_dir / "annotation_log.jsonl")
    ingest(run_dir, init_dir, dataset)
    return spent


def _prepare_starts(starts: list[tuple], workers: int) -> None:
    """Every seed's first labels (``_prepare_initial`` arguments), side by side in ``workers`` processes when
    several are still to choose: a cold start trains its seed's encoder (on a fixed thread count, so the
    selection is the same in a worker as in this process) and was the serial part of a multi-seed run."""
    import concurrent.futures as cf
    import multiprocessing as mp

    todo = [a for a in starts if not (Path(a[-1]) / "tasks.json").is_file()]
    if workers == 1 or len(todo) < 2:
        for a in todo:
            _prepare_initial(*a)
        return
    with cf.ProcessPoolExecutor(min(workers, len(todo)), mp_context=mp.get_context("spawn")) as ex:
        for fut in [ex.submit(_prepare_initial, *a) for a in todo]:
            fut.result()


def _prepare_initial(dataset: Dataset, pool: list[str], cfg: MedalConfig, seed: int, cost_model: CostModel,
                     cache: Path) -> None:
    """Choose a seed's first labels once (into ``cache``), before runs start in parallel."""
    from medal.coldstart import coldstart_select
    from medal.config import CostsConfig
    from medal.selection.api import candidate_table, tasks_from_selection
    from medal.selection.strategies import select
    from medal.tasks import write_tasks

    if (cache / "tasks.json").is_file():
        return
    cache.mkdir(parents=True, exist_ok=True)
    if cfg.simulation.initial == "coldstart":
        ccfg = dataclasses.replace(cfg.coldstart, seed=seed)
        budget = cfg.simulation.initial_budget_s
        kw = dict(cfg=ccfg, data_cfg=cfg.data, pool=pool, axis=_initial_axes(cfg), overwrite=True)
        # the reserve queue (coldstart.reserve) is painted by the clock below; without a pilot there is no
        # clock, and the pilot's batches are taken from the front of the budget's slices
        stage_kw = {**kw, "cfg": dataclasses.replace(ccfg, reserve=0.0)}
        if not ccfg.pilot:
            coldstart_select(dataset, cache, budget_s=budget, **stage_kw)
            return
        # the pilot: the first slices chosen, painted by the oracle at their true cost, scale the prior;
        # then ``pilot_batches`` batches, each a third of the budget left, are painted and timed the same
        # way (the prior re-scaled on every timed slice) before the rest is chosen: what an expert does
        # with `medal coldstart --pilot N [--pilot-log LOG]`, so the start spends its budget in true seconds
        pilot_dir = cache / "pilot"
        log = pilot_dir / "annotation_log.jsonl"
        keep: list = []
        for stage in range(1 + ccfg.pilot_batches):
            stage_dir = pilot_dir / f"batch_{stage}"
            left = budget - sum(t.predicted_cost_s for t in keep)
            if (stage_dir / "tasks.json").is_file():
                pass  # chosen before an interruption (from the log as it was then): painted as chosen
            elif stage == 0:
                coldstart_select(dataset, stage_dir, budget_s=budget, pilot=ccfg.pilot, **stage_kw)
            else:
                # the next batch: the best new slices worth a third of what is left, in re-scaled seconds
                # (a pilot of 3 slices can be off by 2x: a batch must not spend everything left)
                full = coldstart_select(dataset, stage_dir / "candidates", budget_s=budget, pilot_log=log, keep=keep,
                                        **stage_kw)
                batch = front_batch(full[len(keep):], left / 3)
                write_tasks(stage_dir / "tasks.json", batch, dataset_root=dataset.root, meta={"strategy": "coldstart"})
            tl = read_tasks(stage_dir / "tasks.json")
            if not tl.tasks:
                break
            spent = oracle_annotate(tl, dataset, stage_dir / "annotations", cost_model=cost_model, log=log)
            keep += [dataclasses.replace(t, predicted_cost_s=spent["per_task"][t.task_id], status="todo")
                     for t in tl.tasks]
            if sum(t.predicted_cost_s for t in keep) >= budget:
                break
        # chosen into the pilot's folder: ``cache/tasks.json`` (what a resumed run takes as done) is
        # written only once the clock below has run
        chosen = pilot_dir / "chosen"
        full = coldstart_select(dataset, chosen, budget_s=budget, pilot_log=log, keep=keep, **kw)
        # the rest, painted in order by an expert with a clock: a slice is started only if its re-scaled
        # prediction fits the true seconds left (its true seconds are known once painted), so the start
        # misses the budget by at most one slice's prediction error, not by the error of the whole rest;
        # the reserve queue (coldstart.reserve) follows the budget's slices, under the same clock
        rest = [dataclasses.replace(t, status="todo") for t in full[len(keep):]]
        meta = read_tasks(chosen / "tasks.json").meta
        n_reserve = int(meta.get("reserve_tasks") or 0)
        if not rest:
            write_tasks(cache / "tasks.json", list(full), dataset_root=dataset.root, meta=meta)
        else:
            probe = cache / "pilot" / "rest"
            write_tasks(probe / "tasks.json", rest, dataset_root=dataset.root, meta={"strategy": "coldstart"})
            took = oracle_annotate(read_tasks(probe / "tasks.json"), dataset, probe / "annotations",
                                   cost_model=cost_model)["per_task"]
            spent, done = sum(t.predicted_cost_s for t in keep), []
            for t in rest:
                if spent + t.predicted_cost_s <= budget:
                    done.append(t)
                    spent += took[t.task_id]
            final = list(full[:len(keep)]) + done
            from_reserve = len({t.task_id for t in done} & {t.task_id for t in rest[len(rest) - n_reserve:]})
            meta["clock"] = {"chosen": len(rest) - n_reserve, "painted": len(done) - from_reserve, "true_s": spent,
                             "reserve": n_reserve, "reserve_painted": from_reserve}
            meta["reserve_tasks"], meta["reserve_s"] = 0, 0.0  # what was painted is the start
            meta["predicted_s"] = float(sum(t.predicted_cost_s for t in final))
            write_tasks(cache / "tasks.json", final, dataset_root=dataset.root, meta=meta)
        return
    # random units, charged at their true cost: the truth stands in for the prediction
    sub = dataset.subset(pool)
    scores = cache / "truth_scores"
    for c in sub.cases:
        d = scores / c.case_id
        d.mkdir(parents=True, exist_ok=True)
        lab, _ = load_label(c.label, c.image, dataset.relative(c.label), label_names=dataset.label_names)
        save_volume(lab.with_array(np.zeros(lab.shape, np.float32)), d / "entropy.nii.gz")
        save_volume(lab.with_array(lab.array.astype(np.uint8)), d / "prediction.nii.gz")
    regions = dataclasses.replace(cfg.regions, value="entropy", measure="entropy", kind=_initial_kind(cfg),
                                  axis=_initial_axes(cfg))
    table, per_case, _ = candidate_table(sub, scores, regions_cfg=regions, cost_model=cost_model,
                                         costs_cfg=CostsConfig(prediction="argmax", calibration="none", min_seconds=0.0))
    sel_cfg = dataclasses.replace(cfg.selection, strategy="random", seed=seed, budget_s=cfg.simulation.initial_budget_s,
                                  class_quota={}, foreground_share=0.0, noise="none")
    sel = select(table, sel_cfg)
    write_tasks(cache / "tasks.json", tasks_from_selection(sub, table, sel, per_case, cache),
                dataset_root=dataset.root, meta={"strategy": "initial-random", "budget_s": sel.budget_s})
    shutil.rmtree(scores)


def _run_one(job: dict) -> list[dict]:
    """One (strategy, seed) run: every round trained, evaluated, selected and annotated by the oracle."""
    import time

    from medal.data import VolumeCache

    if job.get("threads"):
        import torch

        torch.set_num_threads(job["threads"])
    dataset, cfg, run = job["dataset"], job["cfg"], Path(job["run"])
    pool, test, strategy, seed = job["pool"], job["test"], job["strategy"], job["seed"]
    cost_model, full, names, shapes, planes = job["cost_model"], job["full"], job["names"], job["shapes"], job["planes"]
    sim = cfg.simulation
    cache = VolumeCache()
    seconds = initial_labels(run, dataset, job.get("start_pool") or pool, cfg, seed, cost_model,
                             Path(job["initial"]))["seconds"]
    shared = Path(job["shared_round0"]) / "round_000" if job.get("shared_round0") else None
    if shared is not None and not (run / "round_000").exists() and (shared / "progress.json").is_file():
        # round 0's training and scoring depend on the first labels and the model config only, not on
        # the selection strategy: done once per seed and config, copied here, then selected on
        (run / "round_000").mkdir(parents=True)
        for name in ("model.pt", "progress.json"):
            shutil.copy2(shared / name, run / "round_000" / name)
        shutil.copytree(shared / "scores", run / "round_000" / "scores")
    predicted = 0.0
    init = read_tasks(run / "round_init" / "tasks.json").tasks
    # the first labels: random units at their true cost, or the cold start's (its prior as the prediction)
    of_case, groups = job.get("pool_groups") or {}, job.get("groups") or {}
    last_round = (sum(t.predicted_cost_s for t in init), seconds, len(init), None,
                  group_tasks([t.case_id for t in init], of_case, groups))
    rows = []
    deadline, took = job.get("deadline"), None
    for r in range(sim.rounds + 1):
        if r and deadline is not None and not round_fits(time.time(), deadline, took):
            break  # reported as far as every run got (simulate); --resume goes on from here
        started = time.time()
        last = r == sim.rounds
        timing = round_dir(run, r) / "train_s.json"
        trained = (round_dir(run, r) / "model.pt").is_file()
        t0 = time.perf_counter()
        res = run_round(run, dataset, cfg, index=r, pool=pool, progress=False, stop_after="train", cache=cache)
        train_s = time.perf_counter() - t0
        if trained and timing.is_file():  # resumed: the round was trained before the interruption
            train_s = float(json.loads(timing.read_text())["train_s"])
        elif not trained:
            atomic_write_text(timing, json.dumps({"train_s": round(train_s, 1)}))
        cases = evaluate(round_dir(run, r) / "model.pt", dataset, test, cfg, cache=cache, per_case=True)
        dice = cases.mean(axis=0)
        pct_s, pct_v = _annotated_stats(run, pool, shapes, planes, before=r)
        rows.append({"strategy": strategy, "seed": seed, "round": r, "seconds": round(seconds, 2),
                     "predicted_seconds": round(predicted, 2), "pct_full_cost": round(100 * seconds / full, 3),
                     "pct_slices": round(pct_s, 3), "pct_voxels": round(pct_v, 3),
                     "dice_mean": round(float(dice.mean()), 5),
                     "round_budget_s": cfg.selection.budget_s if r else sim.initial_budget_s,
                     "round_predicted_s": round(last_round[0], 2), "round_charged_s": round(last_round[1], 2),
                     "round_tasks": last_round[2], "round_fg_tasks": "" if last_round[3] is None else last_round[3],
                     "train_s": round(train_s, 1),
                     **{f"dice_{name}": round(float(d), 5) for name, d in zip(names, dice)},
                     **group_dice(cases, groups), **last_round[4]})
        # the rows so far, rewritten as each round ends: a long run (or one stopped by a time limit) can be
        # followed, and reported on the rounds every run finished, before results.csv gets its rows
        atomic_write_text(run / "rounds.jsonl", "".join(json.dumps(x) + "\n" for x in rows))
        if job.get("log"):
            job["log"](json.dumps(rows[-1]))
        if last:
            break
        if cfg.regions.value in ORACLE_VALUES:  # a diagnostic row: its value reads the ground truth
            run_round(run, dataset, cfg, index=r, pool=pool, progress=False, stop_after="score", cache=cache)
            write_truth_maps(round_dir(run, r) / "scores", dataset, pool)
        res = run_round(run, dataset, cfg, index=r, pool=pool, progress=False, cache=cache)
        tl = read_tasks(res.round_dir / "tasks.json")
        # the reserve queue (selection.reserve) sits after the budget's tasks: not part of the prediction
        round_pred = sum(t.predicted_cost_s for t in tl.budget_tasks)
        charge = oracle_annotate(tl, dataset, res.round_dir / "annotations", cost_model=cost_model,
                                 log=res.round_dir / "annotation_log.jsonl",
                                 budget_s=cfg.selection.budget_s if sim.timed else None,
                                 start_dir=res.round_dir / "scores" if cfg.costs.annotation == "correct" else None)
        round_charged = charge["seconds"]
        predicted += round_pred
        seconds += round_charged
        case_of = {t.task_id: t.case_id for t in tl.tasks}
        last_round = (round_pred, round_charged, len(charge["per_task"]), sum(charge["foreground"].values()),
                      group_tasks([case_of[t] for t in charge["per_task"]], of_case, groups))
        ingest(run, res.round_dir, dataset)
        took = time.time() - started
    return rows


def round_fits(now: float, deadline: float, previous_s: float | None) -> bool:
    """Whether a run may start its next round under a wall-clock ``deadline`` (``time.time()`` seconds):
    not once the deadline has passed, nor when the previous round's duration (``previous_s``; ``None``
    before round 1 ends, as round 0's own model is trained once per seed elsewhere) would take it past."""
    return now < deadline and (previous_s is None or now + previous_s <= deadline)


def write_truth_maps(scores_dir, dataset: Dataset, pool) -> list[str]:
    """``truth.nii.gz`` (the ground truth as class indices) beside each scored pool case's prediction, for
    values that read it (:data:`~medal.regions.values.ORACLE_VALUES`: simulation diagnostics only).
    Returns the case ids written; a case already holding one is left as it is (a resumed round)."""
    written, pool = [], set(pool)
    for case in dataset.cases:
        folder = Path(scores_dir) / case.case_id
        if case.case_id not in pool or case.label is None or not (folder / "prediction.nii.gz").is_file():
            continue
        if not (folder / "truth.nii.gz").is_file():
            truth, _ = load_label(case.label, case.image, dataset.relative(case.label),
                                  label_names=dataset.label_names)
            idx = dataset.label_map.to_index(truth.array, where=dataset.relative(case.label))
            save_volume(truth.with_array(idx.astype(np.uint8)), folder / "truth.nii.gz")
        written.append(case.case_id)
    return written


def front_batch(tasks, seconds: float) -> list:
    """The first ``tasks`` whose predicted seconds fit ``seconds`` (at least one): a timed cold-start batch."""
    batch, total = [], 0.0
    for t in tasks:
        if total + t.predicted_cost_s > seconds and batch:
            break
        batch.append(t)
        total += t.predicted_cost_s
    return batch


def _initial_kind(cfg: MedalConfig) -> str:
    """Unit kind of random first labels: ``simulation.initial_kind``, else the row's ``regions.kind``
    (a cold start always chooses slices)."""
    if cfg.simulation.initial == "coldstart":
        return "slice"
    return cfg.simulation.initial_kind or cfg.regions.kind


def _initial_axes(cfg: MedalConfig) -> tuple[str, ...]:
    """Slice plane(s) of the first labels: ``simulation.initial_axis``, else ``coldstart.axis`` for a cold
    start, else the row's ``regions.axis``."""
    ax = cfg.simulation.initial_axis
    if ax in ("", ()) and cfg.simulation.initial == "coldstart":
        ax = cfg.coldstart.axis
    if ax in ("", ()):
        return cfg.regions.axes
    return (ax,) if isinstance(ax, str) else tuple(ax)


def _painted_axes(cfg: MedalConfig, orientation) -> tuple[int, ...]:
    """The array axes a run paints slices along: its first labels' planes, then its rounds' (``regions.axis``)."""
    from medal.regions import resolve_axis

    out: list[int] = []
    for name in list(_initial_axes(cfg)) + list(cfg.regions.axes):
        a = resolve_axis(int(name) if str(name).isdigit() else name, orientation)
        if a not in out:
            out.append(a)
    return tuple(out)


def _initial_key(cfg: MedalConfig, seed: int) -> str:
    """What a seed's first labels depend on: random units, or the cold start and its settings."""
    from medal.config import config_hash

    what = {"seed": seed, "initial": cfg.simulation.initial, "budget": cfg.simulation.initial_budget_s,
            "axis": list(_initial_axes(cfg)), "kind": _initial_kind(cfg)}
    if cfg.simulation.initial == "coldstart":
        what["coldstart"] = cfg.coldstart
    if cfg.simulation.initial_groups:  # (absent otherwise: the folders of earlier runs keep their names)
        what["groups"] = list(cfg.simulation.initial_groups)
    return config_hash(what)[:12]


def _round0_key(cfg: MedalConfig, seed: int) -> str:
    from medal.config import config_hash

    return config_hash({"seed": seed, "initial": _initial_key(cfg, seed), "data": cfg.data, "model": cfg.model,
                        "training": cfg.training, "uncertainty": cfg.uncertainty})[:12]


def _shared_round0(job: dict) -> str:
    """Train and score round 0 once for every row of a seed that shares the model config."""
    from medal.data import VolumeCache

    if job.get("threads"):
        import torch

        torch.set_num_threads(job["threads"])
    run = Path(job["shared_round0"])
    initial_labels(run, job["dataset"], job.get("start_pool") or job["pool"], job["cfg"], job["seed"], job["cost_model"],
                   Path(job["initial"]))
    run_round(run, job["dataset"], job["cfg"], index=0, pool=job["pool"], progress=False, stop_after="score",
              cache=VolumeCache())
    return str(run)


def run_environment() -> dict:
    """What ran a simulation: Python, medal, torch, numpy and MONAI versions, the CPU and its core count.

    A seed fixes a run's numbers on one machine and install only: the same seed's round 0 trained on another
    CPU or numpy build can differ (0.647 vs 0.662 Dice was seen, 2026-12-06), so ``simulation.json`` keeps the
    ``environments`` that produced its rows, and a merge or resume that mixes them says so."""
    import os
    import platform

    import torch

    import medal

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        import monai

        monai_version = monai.__version__
    except ImportError:  # pragma: no cover - a dependency
        monai_version = None
    return {"python": platform.python_version(), "medal": medal.__version__, "torch": torch.__version__,
            "numpy": np.__version__, "monai": monai_version, "cpu": cpu, "cores": os.cpu_count()}


def planned_config(cfg: MedalConfig, dataset: Dataset) -> MedalConfig:
    """``cfg`` with ``model.strides: auto`` planned once for the whole simulation, from the spacing its networks
    train at (:meth:`~medal.config.ModelConfig.planned`; ``data.spacing`` resolved over ``dataset``): every row and
    seed builds the same network, ``simulation.json`` records the strides used, and a simulation made when the
    strides were given (the default was ``[2, 2, 2]`` before ``auto``) resumes or merges under ``auto`` wherever
    ``auto`` plans the same."""
    if cfg.model.strides != "auto":
        return cfg
    from medal.data.resample import planning_spacing, resolve_spacing

    spacing = planning_spacing(cfg.data, dataset, resolve_spacing(cfg.data, dataset))
    return dataclasses.replace(cfg, model=cfg.model.planned(spacing, patch=cfg.training.patch_size))


#: config keys a resumed simulation may change: more rounds, seeds or rows, other parallelism
RESUMABLE_KEYS = ("simulation.rounds", "simulation.seeds", "simulation.strategies", "simulation.workers")


def simulate(dataset: Dataset, out_dir, cfg: MedalConfig, *, progress: bool = True, log=print,
             workers: int | None = None, resume: bool = False, deadline: float | None = None) -> Path:
    """Run every (strategy, seed); returns the path of ``results.csv`` (rewritten as runs finish).

    ``workers`` (default ``simulation.workers``): runs side by side in that many processes, each
    with ``cores // workers`` torch threads (on 2 cores, two 1-thread runs finish ~1.3x sooner than
    one 2-thread run after the other). On one machine and install a run's numbers depend only on its seed and
    its thread count; another CPU or numpy build can train another first model (:func:`run_environment`).

    ``resume``: continue the simulation in ``out_dir`` (interrupted, or to be extended by more rounds,
    seeds or rows: :data:`RESUMABLE_KEYS`, and variants defined since, ``simulation.variants``; any other config
    difference, an existing variant's definition included, is refused, naming the key).
    Finished (strategy, seed) runs keep their rows; the others go on from their first unfinished step
    (trained models, scores, selections and painted tasks are reused; a painted task is charged its true
    seconds again, never painted twice), so a resumed simulation writes the results of an
    uninterrupted one. Without ``resume`` a folder that already holds a simulation is refused.

    ``deadline`` (``time.time()`` seconds; a GPU lease, a batch job's wall time): no run starts a round
    once it has passed or when its previous round's duration says the round would end after it
    (:func:`round_fits`); rounds under way finish. Runs stopped so are reported on rounds ``0..k``, ``k``
    the last round every run finished (results.csv holds those rows, ``simulation.json`` says so under
    ``deadline``), so every row of the report is paired; ``resume`` without a deadline completes them.
    """
    import concurrent.futures as cf
    import multiprocessing as mp
    import os

    from medal.simulation.merge import _default_config, _diffs, _ignored

    out_dir = Path(out_dir)
    meta_path = out_dir / "simulation.json"
    if not resume and (meta_path.exists() or (out_dir / "results.csv").exists()):
        raise FileExistsError(f"{out_dir}: a simulation already ran here; choose a new folder "
                              "(or resume it: --resume)")
    if resume and not meta_path.is_file():
        raise ValueError(f"{meta_path}: no simulation to resume here")
    cfg = planned_config(cfg, dataset)
    sim = cfg.simulation
    workers = max(1, workers if workers is not None else sim.workers)
    pool, test = split_cases(dataset, sim)
    pool, shapes, skipped = usable_cases(dataset, pool)
    test, _, bad_test = usable_cases(dataset, test)
    skipped.update(bad_test)
    skipped.update(_split_strays(dataset, sim))
    for cid, why in skipped.items():
        print(f"SKIPPED [{cid}] {why}", file=sys.stderr)
    if not pool or not test:
        raise ValueError(f"{dataset.root}: no usable {'pool' if not pool else 'test'} case left after skipping "
                         f"{len(skipped)} bad one(s) (above)")
    n = dataset.n_classes
    cost_model = CostModel.load(cfg.costs.model) if cfg.costs.model else CostModel.default(n)
    full = full_annotation_cost(dataset, pool, axis_name=cfg.regions.axes[0], cost_model=cost_model)
    names = [dataset.label_map.name(v) for v in dataset.label_map.values[1:]]
    groups = load_groups(sim.groups, test) if sim.groups else {}
    of_case = pool_groups(sim.groups, pool, groups) if sim.groups else {}
    first = start_pool(sim.groups, pool, sim.initial_groups) if sim.initial_groups else pool
    fields = (CSV_FIELDS + [f"dice_{name}" for name in names] + [f"dice_group_{g}" for g in groups]
              + [f"tasks_group_{g}" for g in groups])
    meta = {"pool": pool, "test": test, "full_annotation_cost_s": full, "class_names": names,
            "groups": {g: [test[i] for i in idx] for g, idx in groups.items()},
            "pool_groups": {g: [c for c in pool if of_case.get(c) == g] for g in groups},
            **({"start_pool": first} if sim.initial_groups else {}),
            **({"skipped": skipped} if skipped else {}),
            "environments": [run_environment()],
            "config": json.loads(json.dumps(dataclasses.asdict(cfg)))}
    kept: list[dict] = []
    if resume:
        try:
            old = json.loads(meta_path.read_text(encoding="utf-8"))
            old_cfg = old["config"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{meta_path}: not a medal simulation record ({type(exc).__name__})") from None
        for key in ("pool", "test"):
            if old.get(key) != meta[key]:
                raise ValueError(f"{meta_path}: cannot resume: the {key} cases differ (dataset or split changed)")
        # a variant defined now and not before is a row added (its definition cannot touch the finished rows);
        # an existing variant redefined is refused like any other key
        old_variants = (old_cfg.get("simulation") or {}).get("variants") or {}
        diffs = [d for d in _diffs(old_cfg, meta["config"], defaults=_default_config())
                 if not _ignored(d, RESUMABLE_KEYS)
                 and not (d.startswith("simulation.variants.") and d.split(".")[2] not in old_variants)]
        if diffs:
            raise ValueError(f"{meta_path}: cannot resume with another config: {', '.join(diffs[:6])} "
                             f"differ{'s' if len(diffs) == 1 else ''} (only {', '.join(RESUMABLE_KEYS)} may)")
        meta["resumed"] = int(old.get("resumed", 0)) + 1
        envs = list(old.get("environments") or [{"note": "not recorded (an older medal)"}])
        meta["environments"] = envs + [e for e in meta["environments"] if e not in envs]
        kept = _finished_rows(out_dir / "results.csv", sim)
    out_dir.mkdir(parents=True, exist_ok=True)  # only now: a refused simulation leaves no folder behind
    atomic_write_text(meta_path, json.dumps(meta, indent=1))
    orientation = load_volume(dataset.case(pool[0]).image).orientation
    threads = cfg.training.num_threads or max(1, (os.cpu_count() or 1) // workers)
    jobs = []
    finished = {(r["strategy"], r["seed"]) for r in kept}
    starts: dict[str, tuple] = {}  # the first labels to choose: one folder per seed and start key
    for seed in sim.seeds:
        for strategy in sim.strategies:
            if (strategy, seed) in finished:
                continue
            vcfg = variant_config(cfg, strategy)
            initial = out_dir / "initial" / f"seed_{seed}_{_initial_key(vcfg, seed)}"
            starts.setdefault(str(initial), (dataset, first, dataclasses.replace(
                vcfg, selection=dataclasses.replace(vcfg.selection, seed=seed)), seed, cost_model, initial))
            model_seed = seed + sim.training_seed_offset  # the first labels and the selection keep the seed
            scfg = dataclasses.replace(vcfg, training=dataclasses.replace(vcfg.training, seed=model_seed),
                                       selection=dataclasses.replace(vcfg.selection, seed=seed),
                                       uncertainty=dataclasses.replace(vcfg.uncertainty, seed=model_seed))
            jobs.append({"dataset": dataset, "cfg": scfg, "run": str(out_dir / strategy.replace("+", "_") / f"seed_{seed}"),
                         "shared_round0": str(out_dir / "shared" / f"seed_{seed}_{_round0_key(scfg, seed)}"),
                         "pool": pool, "test": test, "strategy": strategy, "seed": seed, "cost_model": cost_model,
                         "full": full, "names": names, "groups": groups, "pool_groups": of_case, "shapes": shapes,
                         "planes": _painted_axes(scfg, orientation),
                         "initial": str(initial), "start_pool": first,
                         "threads": threads if workers > 1 or cfg.training.num_threads else 0,
                         "deadline": deadline})
    _prepare_starts(list(starts.values()), workers)

    def order(r):  # results.csv: rows in config order, then seed, then round
        return list(sim.strategies).index(r["strategy"]), r["seed"], r["round"]

    rows: list[dict] = sorted(kept, key=order)
    if resume:  # rows of dropped rounds, seeds or rows do not stay behind
        _write_csv(out_dir / "results.csv", fields, rows)

    def collect(new_rows):
        rows.extend(new_rows)
        rows.sort(key=order)
        _write_csv(out_dir / "results.csv", fields, rows)

    firsts = list({job["shared_round0"]: job for job in jobs}.values())
    if workers == 1:
        for job in firsts:
            _shared_round0(job)
        for job in jobs:
            collect(_run_one({**job, "log": log}))
    else:
        with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
            for fut in cf.as_completed([ex.submit(_shared_round0, job) for job in firsts]):
                fut.result()
            futures = {ex.submit(_run_one, job): job for job in jobs}
            for fut in cf.as_completed(futures):
                done = fut.result()
                if log:
                    for row in done:
                        log(json.dumps(row))
                collect(done)
    reached = {}
    for r in rows:
        key = (r["strategy"], r["seed"])
        reached[key] = max(reached.get(key, -1), r["round"])
    k = min(reached.values(), default=sim.rounds)
    if k < sim.rounds:  # the deadline stopped some run: every row of the report on the same rounds
        import datetime

        stopped = sorted(f"{a}/seed_{b}" for (a, b), v in reached.items() if v < sim.rounds)
        meta["deadline"] = {"at": datetime.datetime.fromtimestamp(deadline, datetime.timezone.utc).isoformat(
            timespec="seconds") if deadline is not None else None, "rounds_reported": k, "runs_stopped": stopped}
        atomic_write_text(meta_path, json.dumps(meta, indent=1))
        _write_csv(out_dir / "results.csv", fields, [r for r in rows if r["round"] <= k])
        if log:
            log(f"deadline: {len(stopped)} run(s) stopped early; reported on rounds 0..{k} of {sim.rounds} "
                "(--resume completes them)")
    return out_dir / "results.csv"


def _finished_rows(path: Path, sim) -> list[dict]:
    """Rows of ``results.csv`` for (strategy, seed) runs that have every round ``0..sim.rounds``
    (as written: their values stay byte-identical); runs of other rows or seeds are dropped."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    by_run: dict[tuple, list] = {}
    for r in rows:
        try:
            r["seed"], r["round"] = int(r["seed"]), int(r["round"])
        except (KeyError, ValueError):
            raise ValueError(f"{path}: a row without an integer seed and round") from None
        if r["strategy"] in sim.strategies and r["seed"] in sim.seeds and r["round"] <= sim.rounds:
            by_run.setdefault((r["strategy"], r["seed"]), []).append(r)
    want = set(range(sim.rounds + 1))
    return [r for run in by_run.values() if {x["round"] for x in run} == want for r in run]


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(path, buf.getvalue())
