"""One active-learning round: train -> score -> regions -> costs -> select -> ``tasks.json``.

Composition only, no maths. A run folder holds the partial labels and one folder per round::

    RUN/labels/<case_id>.nii.gz      partial labels, 255 = not annotated (medal ingest merges into it)
    RUN/labels/.history/             the previous version of every label file ingest changed
    RUN/round_000/progress.json      steps finished so far (train, score, select), rewritten atomically
    RUN/round_000/model.pt           checkpoint (warm-started from the previous round's)
    RUN/round_000/scores/...         score volumes of the pool
    RUN/round_000/tasks.json         what to annotate next (+ masks/ for supervoxels)
    RUN/round_000/annotations/       finished annotations for ingest (napari plugin or the oracle)
    RUN/round_000/ingested/          each annotation as ingest last merged it (a re-ingest merges changes only)
    RUN/round_000/manifest.json      written once, when the round is complete

A round interrupted anywhere resumes from the first unfinished step: each step's outputs are written
atomically before the step is recorded in ``progress.json``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medal.config import MedalConfig, config_to_dict
from medal.data import (UNLABELED, Dataset, atomic_write_json, empty_partial_labels, load_volume, save_volume)

__all__ = ["STEPS", "RoundResult", "round_dir", "run_round", "ingest", "labels_dir", "IngestReport", "round_spending"]

STEPS = ("train", "score", "select")


def round_dir(run_dir, index: int) -> Path:
    return Path(run_dir) / f"round_{index:03d}"


def labels_dir(run_dir) -> Path:
    return Path(run_dir) / "labels"


@dataclass
class RoundResult:
    round_dir: Path
    manifest: dict
    steps_run: list[str]


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def run_round(run_dir, dataset: Dataset, cfg: MedalConfig, *, index: int, pool: list[str] | None = None,
              budget_s: float | None = None, strategy: str | None = None, progress: bool = False,
              stop_after: str | None = None, cache=None, overwrite: bool = False,
              allow_empty: bool = False) -> RoundResult:
    """Run (or resume) round ``index`` of the run in ``run_dir``.

    ``pool``: case ids that may be trained on and annotated (default: every case with an image).
    ``stop_after``: stop once that step is recorded (for staged runs; a later call resumes).
    ``cache``: a :class:`~medal.data.VolumeCache` kept across rounds (the images are read once).
    A ``tasks.json`` in the round folder that this command did not write (``medal coldstart``'s, say)
    is never replaced unless ``overwrite``. A finished round asked for again with another budget,
    strategy or config is an error saying what differs; asked for the same, it is returned as it is.
    ``allow_empty``: a selection with no task is written instead of being an error.
    """
    if int(index) < 0:
        raise ValueError(f"round index: a round number is 0, 1, 2, ..., got {index}")
    rd = round_dir(run_dir, index)
    numbered = [int(d.name[len("round_"):]) for d in Path(run_dir).glob("round_*")
                if d.is_dir() and d.name[len("round_"):].isdigit()] if Path(run_dir).is_dir() else []
    if numbered and int(index) > max(numbered) + 1:  # a typo: round 5 after round 1 would also train from scratch
        raise ValueError(f"round index {index}: {run_dir}'s last round is {max(numbered)}, so the next is "
                         f"{max(numbered) + 1} (--index {max(numbered) + 1}); rounds are numbered without gaps")
    known = {c.case_id for c in dataset.cases}
    if pool is not None:
        unknown = sorted(set(pool) - known)
        if unknown:
            raise ValueError(f"{dataset.root}: no case(s) {unknown} (the dataset has {len(known)} cases, e.g. "
                             f"{sorted(known)[:3]})")
    pool = sorted(pool) if pool is not None else sorted(known)
    sel_cfg = cfg.selection
    if budget_s is not None or strategy is not None:
        sel_cfg = dataclasses.replace(sel_cfg, **{k: v for k, v in (("budget_s", budget_s), ("strategy", strategy))
                                                  if v is not None})
    wanted = config_to_dict(dataclasses.replace(cfg, selection=sel_cfg))
    finished = _read_json(rd / "manifest.json")
    if finished:
        return RoundResult(rd, _same_round(rd, finished, wanted), [])
    foreign = _foreign_tasks(rd)
    if foreign and not overwrite:
        raise FileExistsError(f"{rd / 'tasks.json'}: written by {foreign}, and an expert may be working on it; "
                              "`medal round` does not replace it (pass --overwrite to), or use another --index")
    created = not rd.exists()
    rd.mkdir(parents=True, exist_ok=True)
    try:
        return _run_round_steps(run_dir, rd, dataset, cfg, sel_cfg, index=index, pool=pool, progress=progress,
                                stop_after=stop_after, cache=cache, allow_empty=allow_empty)
    except BaseException:
        if created and rd.is_dir() and not any(rd.iterdir()):
            rd.rmdir()  # a refused round leaves nothing behind
        raise


def pending_ingest(round_path) -> list[str]:
    """Case ids of ``round_path/annotations/<case>.nii.gz`` saved after the round's last ingest (all of
    them when it was never ingested): finished work that ``run/labels`` does not hold yet."""
    round_path = Path(round_path)
    ann = round_path / "annotations"
    if not ann.is_dir():
        return []
    stamp = round_path / "ingest.json"
    since = stamp.stat().st_mtime_ns if stamp.is_file() else -1
    try:
        seen = _read_json(stamp).get("files") if stamp.is_file() else None
    except (OSError, ValueError, AttributeError):  # unreadable: judged by its time alone
        seen = None
    files = [p for p in ann.glob("*.nii.gz") if not p.name.startswith(".")]
    if isinstance(seen, dict):  # each file as the ingest found it: a save during or after the ingest differs
        return sorted(p.name[:-len(".nii.gz")] for p in files if seen.get(p.name) != _file_stamp(p))
    return sorted(p.name[:-len(".nii.gz")] for p in files if p.stat().st_mtime_ns > since)  # an older ingest.json


def _file_stamp(path: Path) -> list[int]:
    """What changes whenever a file is written again: modification time, inode (an atomic save replaces
    the file) and size."""
    st = path.stat()
    return [int(st.st_mtime_ns), int(st.st_ino), int(st.st_size)]


def _history_path(lab_dir: Path, cid: str, round_name: str) -> Path:
    """``labels/.history/<case>.<round>.nii.gz``; a round ingested again (more painted after its first
    ingest) keeps every earlier version: ``<case>.<round>.2.nii.gz``, ``.3``, ... (never overwritten)."""
    path = lab_dir / ".history" / f"{cid}.{round_name}.nii.gz"
    n = 2
    while path.exists():
        path = lab_dir / ".history" / f"{cid}.{round_name}.{n}.nii.gz"
        n += 1
    return path


def _require_ingested(run_dir, index: int, dataset: Dataset) -> None:
    """Refuse to train round ``index`` while an earlier round holds finished annotations not merged into
    ``run/labels``: the model would not learn from them and the selection could ask for the same units
    again (an expert's time spent twice). The files stay where they are; the message says what to run."""
    for earlier in sorted(Path(run_dir).iterdir()):
        if not earlier.is_dir() or not (earlier / "annotations").is_dir():
            continue  # a round's folder (round_000, or a cold start's --out such as round_init) has annotations/
        number = earlier.name[len("round_"):] if earlier.name.startswith("round_") else ""
        if number.isdigit() and int(number) >= index:
            continue  # this round or a later one
        cases = pending_ingest(earlier)
        if cases:
            shown = ", ".join(cases[:3]) + (", ..." if len(cases) > 3 else "")
            raise ValueError(f"{earlier}: finished annotations of {len(cases)} case(s) ({shown}) are not merged into "
                             f"{labels_dir(run_dir)} yet; run `medal ingest {dataset.root} --run {run_dir} --round "
                             f"{earlier}` first, so round {index} trains on them and does not ask for them again")


def _foreign_tasks(rd: Path) -> str | None:
    """Who wrote ``rd/tasks.json`` when it was not ``medal round`` (None: absent, or ours)."""
    path = rd / "tasks.json"
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError):
        return "another tool (it is not readable JSON)"
    if isinstance(meta, dict) and meta.get("written_by") == "medal round":
        return None
    return f"medal {meta.get('strategy', 'select')}" if isinstance(meta, dict) and meta.get("strategy") == "coldstart" \
        else "`medal select` or another tool"


def _same_round(rd: Path, manifest: dict, wanted: dict) -> dict:
    """A finished round's manifest, or an error saying what differs from what was asked for."""
    have = manifest.get("config", {})
    diffs = []
    for section in sorted(set(have) | set(wanted)):
        a, b = have.get(section, {}), wanted.get(section, {})
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += [f"{section}.{k}: {a.get(k)!r} then, {b.get(k)!r} now" for k in sorted(set(a) | set(b))
                      if a.get(k) != b.get(k) and section != "simulation"]
    if diffs:
        raise ValueError(f"{rd}: this round is finished (manifest.json) and was made with other settings: "
                         + "; ".join(diffs[:4]) + ("; ..." if len(diffs) > 4 else "")
                         + ". Start the next round (--index), or a new --run folder")
    return manifest


def _run_round_steps(run_dir, rd: Path, dataset: Dataset, cfg: MedalConfig, sel_cfg, *, index: int, pool, progress,
                     stop_after, cache, allow_empty) -> RoundResult:
    from medal.execution.work import sweep_temp_files
    from medal.model import check_checkpoint_labels, file_hash
    from medal.model.device import resolve_device
    from medal.selection.api import select_round
    from medal.training import mapped_items, prepare_items, split_items, train_model
    from medal.uncertainty.score import score_cases, scorer_nets
    from medal.data.intensity import checkpoint_intensity, training_intensity
    from medal.data.resample import (checkpoint_orientation, checkpoint_spacing, planning_spacing,
                                     training_orientation, training_spacing)

    # what an interrupted run's atomic writers left (.model.<hex>.tmp.pt, .bald.<hex>.tmp.nii.gz, ...)
    for tmp in rd.glob(".*.tmp*"):
        if tmp.is_file():
            tmp.unlink()
    sweep_temp_files(rd / "scores")
    sweep_temp_files(rd / "masks")
    prog_path = rd / "progress.json"
    state = _read_json(prog_path)
    ran: list[str] = []

    def done(step: str, info: dict):
        state[step] = {"finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **info}
        atomic_write_json(prog_path, state)
        ran.append(step)

    checkpoint = rd / "model.pt"
    if "train" not in state:
        _require_ingested(run_dir, index, dataset)
        bad: dict[str, str] = {}
        prev = round_dir(run_dir, index - 1) / "model.pt" if index > 0 and cfg.training.warm_start else None
        init = prev if prev is not None and prev.is_file() else None
        spacing = training_spacing(cfg.data, dataset, init)
        orientation = training_orientation(cfg.data, init)
        intensity = training_intensity(cfg.data, dataset, init=init, labels_dir=labels_dir(run_dir),
                                       case_ids=set(pool), cache=cache)
        items = prepare_items(dataset, cfg.data, labels_dir=labels_dir(run_dir), case_ids=set(pool), cache=cache,
                              skipped=bad, holdout=cfg.training.holdout, spacing=spacing,
                              orientation=orientation, intensity=intensity,
                              in_memory_gb=cfg.training.items_in_memory_gb, scratch_dir=cfg.training.scratch_dir)
        if not items:
            raise ValueError(f"{labels_dir(run_dir)}: no annotated voxel in the pool yet; start with "
                             "`medal coldstart` or initial labels")
        train, val = split_items(items, cfg.training.val_fraction, cfg.training.seed)
        tcfg = cfg.training
        if init is not None and tcfg.warm_epochs:
            tcfg = dataclasses.replace(tcfg, max_epochs=tcfg.warm_epochs)
        res = train_model(train, val, n_classes=dataset.n_classes, model_cfg=cfg.model, train_cfg=tcfg, init=init,
                          checkpoint=checkpoint, progress=progress, label_map=dataset.label_map, spacing=spacing,
                          orientation=orientation, intensity=intensity,
                          plan_spacing=planning_spacing(cfg.data, dataset, spacing))
        done("train", {"spacing": list(spacing) if spacing is not None else None,
                       "strides": config_to_dict(res.model_cfg)["strides"],
                       "orientation": orientation, "intensity": list(intensity) if intensity is not None else None,
                       "checkpoint_sha256": file_hash(checkpoint), "warm_start": str(init) if init else None,
                       "steps": len(res.history) * tcfg.iterations_per_epoch,
                       "epochs": len(res.history), "best_epoch": res.best_epoch, "best_val_dice": res.best_val_dice,
                       "train_cases": res.train_cases, "val_cases": res.val_cases, "skipped": bad,
                       "cases_by_memory_map": mapped_items(items),
                       "calibration": res.calibration})
    if stop_after == "train":
        return RoundResult(rd, {}, ran)

    if "score" not in state:
        device = resolve_device(cfg.uncertainty.device)
        nets, temperature, payload = scorer_nets(checkpoint, cfg.uncertainty, expected=cfg.model, device=device)
        check_checkpoint_labels(payload, dataset.label_map, checkpoint)
        cases = [c for c in dataset.cases if c.case_id in set(pool)]
        rep = score_cases(nets, cases, rd, cfg=cfg.uncertainty, data_cfg=cfg.data,
                          checkpoint_hash=state["train"]["checkpoint_sha256"], device=device, progress=progress,
                          cache=cache, label_map=dataset.label_map, temperature=temperature,
                          spacing=checkpoint_spacing(payload), orientation=checkpoint_orientation(payload),
                          root=dataset.root, intensity=checkpoint_intensity(payload))
        from medal.report.metrics import holdout_dice, pool_uncertainty

        held = holdout_dice(rd / "scores", labels_dir(run_dir), dataset, pool, cfg.training.holdout)
        unc = pool_uncertainty(rd / "scores", labels_dir(run_dir), pool) if "entropy" in cfg.uncertainty.measures \
            else None
        agree = pool_agreement(run_dir, index, pool, dataset, cfg.report.agreement_window_s)
        done("score", {"scored": sorted(rep.scored), "failures": rep.failures, "holdout": held,
                       "pool_entropy": unc, "prediction_agreement": agree})
    if stop_after == "score":
        return RoundResult(rd, {}, ran)

    if "select" not in state:
        from medal.selection.strategies import NEEDS_EMBEDDINGS

        if sel_cfg.strategy in NEEDS_EMBEDDINGS:  # badge: the scoring model's gradient embeddings (a shared round 0's
            # scores were written for every row of a seed and lack them)
            from medal.model.device import resolve_device
            from medal.uncertainty.embedding import ensure_gradient_embeddings

            failed = ensure_gradient_embeddings(checkpoint, [c for c in dataset.cases if c.case_id in set(pool)], rd,
                                                ucfg=cfg.uncertainty, data_cfg=cfg.data, model_cfg=cfg.model,
                                                device=resolve_device(cfg.uncertainty.device), cache=cache)
            if failed:
                raise ValueError(f"{rd / 'scores'}: no gradient embeddings for {len(failed)} case(s): "
                                 + "; ".join(f"{k}: {v}" for k, v in list(failed.items())[:3]))
        sel = select_round(dataset, rd / "scores", rd, regions_cfg=cfg.regions, costs_cfg=cfg.costs,
                           selection_cfg=sel_cfg, labels_dir=labels_dir(run_dir), data_cfg=cfg.data,
                           coldstart_cfg=cfg.coldstart,
                           intensity=state["train"].get("intensity"),  # supervoxels cut on the network's contrast
                           overwrite=True,  # ours (checked above), not yet recorded as done: nobody started on it
                           round_index=index, earlier_rounds=[round_dir(run_dir, k) for k in range(index)],
                           allow_empty=allow_empty, meta={"written_by": "medal round"})
        done("select", {"tasks": len(sel.selection.indices), "predicted_s": sel.selection.spent_s,
                        "budget_s": sel.selection.budget_s, "value": sel.selection.value,
                        "gap": sel.selection.gap, "skipped": sel.skipped,
                        "cost_calibration": sel.calibration.to_json() if sel.calibration else None,
                        "beta": sel.selection.beta, "fallback": sel.fallback, "novelty": sel.novelty,
                        "reserve_tasks": len(sel.reserve.indices) if sel.reserve is not None else 0,
                        "reserve_s": sel.reserve.spent_s if sel.reserve is not None else 0.0})

    manifest_path = rd / "manifest.json"
    manifest = _read_json(manifest_path)
    if not manifest:
        manifest = {
            "format": "medal-round/1", "round": index, "dataset_root": str(dataset.root.resolve()),
            "config": config_to_dict(dataclasses.replace(cfg, selection=sel_cfg)),
            "checkpoint": {"path": "model.pt", "sha256": state["train"]["checkpoint_sha256"],
                           "warm_start": state["train"]["warm_start"],
                           "spacing": state["train"].get("spacing"),  # data.spacing: the network's grid (mm)
                           "orientation": state["train"].get("orientation"),  # data.orientation: its axis codes
                           "strides": state["train"].get("strides"),  # model.strides as planned ("auto") or given
                           "intensity": state["train"].get("intensity")},  # data.normalize: per channel (a CT window)
            "inputs": {"labels_dir": str(labels_dir(run_dir).resolve()), "pool": pool,
                       "train_cases": state["train"]["train_cases"], "val_cases": state["train"]["val_cases"],
                       "skipped": state["train"].get("skipped", {})},
            "outputs": {"scores": "scores/scores.json", "tasks": "tasks.json", "scored": state["score"]["scored"],
                        "score_failures": state["score"]["failures"]},
            "budget": {"budget_s": state["select"]["budget_s"], "predicted_s": state["select"]["predicted_s"],
                       "tasks": state["select"]["tasks"], "gap": state["select"]["gap"],
                       "cost_calibration": state["select"].get("cost_calibration"),
                       "fallback": state["select"].get("fallback"),
                       "novelty": state["select"].get("novelty"),
                       "reserve_tasks": state["select"].get("reserve_tasks", 0),
                       "reserve_s": state["select"].get("reserve_s", 0.0),
                       "previous_rounds": _charged_summary(run_dir, index)},
            "metrics": {"best_val_dice": state["train"]["best_val_dice"], "epochs": state["train"]["epochs"],
                        "steps": state["train"].get("steps"), "holdout": state["score"].get("holdout"),
                        "cases_by_memory_map": state["train"].get("cases_by_memory_map", 0),
                        "pool_entropy": state["score"].get("pool_entropy"),
                        "prediction_agreement": state["score"].get("prediction_agreement"),
                        "calibration": state["train"].get("calibration")},
            "steps": {k: state[k]["finished"] for k in STEPS},
        }
        atomic_write_json(manifest_path, manifest, overwrite=False)
    return RoundResult(rd, manifest, ran)


def round_spending(round_path) -> dict:
    """Predicted vs charged seconds of one round's finished tasks (``tasks.json`` + ``annotation_log.jsonl``)."""
    from medal.costs import read_annotation_log
    from medal.tasks import TaskError, read_tasks

    round_path = Path(round_path)
    out = {"round": round_path.name, "tasks": 0, "logged": 0, "predicted_s": 0.0, "charged_s": 0.0}
    try:
        tasks = {t.task_id: t for t in read_tasks(round_path / "tasks.json").tasks}
    except TaskError:
        return out
    out["tasks"] = len(tasks)
    log = round_path / "annotation_log.jsonl"
    seen = set()
    if log.is_file():
        try:
            records = read_annotation_log(log, strict=False)  # a line cut by a crash hides no other task
        except ValueError:
            records = []
        for rec in records:
            t = tasks.get(str(rec.get("task_id")))
            if t is not None and t.task_id not in seen:
                seen.add(t.task_id)
                out["predicted_s"] += t.predicted_cost_s
                out["charged_s"] += float(rec["seconds"])
    out["logged"] = len(seen)
    out["ratio"] = out["charged_s"] / out["predicted_s"] if out["predicted_s"] > 0 else None
    return out


def round_label_seconds(round_path) -> float:
    """Seconds of labels one round added: its logged annotation time (:func:`round_spending`), or, where
    nothing was logged (labels painted elsewhere and ingested), the round's budget from its manifest."""
    sp = round_spending(round_path)
    if sp["logged"]:
        return float(sp["charged_s"])
    return float((_read_json(Path(round_path) / "manifest.json").get("budget") or {}).get("budget_s") or 0.0)


def pool_agreement(run_dir, index: int, case_ids, dataset: Dataset, window_s: float = 0.0) -> dict:
    """Round ``index``'s pool predictions against an earlier round's (``report.agreement_window_s``:
    :func:`medal.report.metrics.agreement_reference` picks it from the rounds' seconds of labels):
    :func:`medal.report.metrics.prediction_agreement` plus ``against`` (that round's folder), ``span_s``
    (seconds of labels between the two) and ``window_s``. ``{"agreement": None, ...}`` for round 0 or
    when that round's predictions are gone."""
    from medal.report.metrics import agreement_reference, prediction_agreement

    if index <= 0:
        return {"agreement": None, "cases": 0, "against": None, "span_s": None, "window_s": window_s}
    seconds = [round_label_seconds(round_dir(run_dir, k)) for k in range(index)]
    j = agreement_reference(seconds, window_s)
    prev = round_dir(run_dir, j) / "scores"
    out = prediction_agreement(prev, round_dir(run_dir, index) / "scores", case_ids, label_map=dataset.label_map) \
        if prev.is_dir() else {"agreement": None, "cases": 0}
    return {**out, "against": prev.parent.name, "span_s": float(sum(seconds[j:])), "window_s": window_s}


def _charged_summary(run_dir, index: int) -> list[dict]:
    return [round_spending(round_dir(run_dir, k)) for k in range(index) if (round_dir(run_dir, k) / "tasks.json").is_file()]


@dataclass
class IngestReport:
    cases: dict[str, dict]  # case_id -> {"added": n, "changed": n}
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)  # file name -> why it was not merged
    spending: dict = dataclasses.field(default_factory=dict)  # predicted vs logged seconds of the round
    qc: list = dataclasses.field(default_factory=list)  # agreement of quality-control tasks with the first labels

    @property
    def voxels_added(self) -> int:
        return sum(v["added"] for v in self.cases.values())


#: files the napari plugin keeps beside the annotations (progress and locks): not annotations
_SIDECARS = (".json", ".lock")


def ingest(run_dir, round_path, dataset: Dataset) -> IngestReport:
    """Merge ``round_path/annotations/<case>.nii.gz`` (255 = not annotated) into the run's labels.

    Only ``<case>.nii.gz`` of cases the dataset knows are read; each is read onto its image's grid (a file another
    tool saved in another axis order or cropped to what was painted: :func:`medal.data.load_label`, the voxels
    outside its box not annotated) and checked against the dataset's label values before anything is merged,
    and ``ingested/`` keeps it as read, on the image's grid. A file that fails is
    reported in ``skipped`` and left alone, and the others are merged. Annotated voxels replace what
    was there (an expert's correction wins); the previous label file is kept in ``labels/.history/``
    first, so nothing an expert painted is ever lost.

    A round ingested again (its expert painted more after the first ingest) merges only the voxels its
    files changed since then (``round_path/ingested/`` keeps each file as last merged): a later round's
    corrections of the same voxels are not replaced by this round's older values.
    """
    from medal.data import DatasetError, load_label

    round_path = Path(round_path)
    ann_dir = round_path / "annotations"
    out: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    if not ann_dir.is_dir():
        return IngestReport(out, skipped, round_spending(round_path))
    known = {c.case_id for c in dataset.cases}
    allowed = set(dataset.label_map.values) | {UNLABELED}
    lab_dir = labels_dir(run_dir)
    qc_by_case, users = _qc_tasks_of(round_path)
    qc_results: list[dict] = []
    seen: dict[str, list[int]] = {}  # each annotation's stamp before it is read (pending_ingest compares)
    for path in sorted(ann_dir.iterdir()):
        name = path.name
        if name.endswith(".nii.gz") and not name.startswith(".") and path.is_file():
            seen[name] = _file_stamp(path)
        if name.startswith("."):
            skipped[name] = "a temporary file left by an interrupted save (ignored; the last completed save is used)"
            continue
        if not name.endswith(".nii.gz"):
            if not name.endswith(_SIDECARS):
                skipped[name] = "not an annotation (<case>.nii.gz)"
            continue
        cid = name[: -len(".nii.gz")]
        if cid not in known:
            skipped[name] = f"no case {cid!r} in the dataset {dataset.root}"
            continue
        case = dataset.case(cid)
        try:
            image = load_volume(case.image)
            # saved by another tool (another axis order, cropped to what was painted): read onto the image's
            # grid, voxels outside a cropped file not annotated
            new, _ = load_label(path, image, str(path), outside=UNLABELED)
        except DatasetError as exc:
            skipped[name] = str(exc)
            continue
        values = np.unique(new.array)
        bad = sorted(set(values.tolist()) - allowed)
        if bad:
            skipped[name] = (f"{path}: label values {bad} are not among the dataset's {list(dataset.label_map.values)} "
                             f"(or {UNLABELED} = not annotated)")
            continue
        target = lab_dir / f"{cid}.nii.gz"
        old = load_volume(target) if target.is_file() else None
        merged = old.array.astype(np.uint8).copy() if old is not None else empty_partial_labels(image.shape)
        painted = new.array != UNLABELED
        snapshot = round_path / "ingested" / f"{cid}.nii.gz"
        if snapshot.is_file():  # ingested before: only what was painted or changed since then is news
            try:
                before = load_volume(snapshot).array
                if before.shape == painted.shape:
                    painted &= new.array != before
            except DatasetError:
                pass  # an unreadable snapshot: merge the whole file, as a first ingest does
        if cid in qc_by_case:  # quality control: compare with the first annotation, keep that one
            qc_results += _qc_agreement(round_path, qc_by_case[cid], new, merged, dataset, users)
            qc_region = np.zeros(painted.shape, bool)
            for t, region in qc_by_case[cid]:
                qc_region |= region(new.shape)
            keep = new.array.copy()
            keep[~qc_region] = UNLABELED
            save_volume(new.with_array(keep), round_path / "qc" / f"{cid}.nii.gz")
            painted &= ~qc_region
        added = int((painted & (merged == UNLABELED)).sum())
        changed = int((painted & (merged != UNLABELED) & (merged != new.array)).sum())
        if added or changed:  # nothing new (ingested twice, say): no label write, no history copy
            if old is not None:
                save_volume(old, _history_path(lab_dir, cid, round_path.name))
            merged[painted] = new.array[painted]
            save_volume(image.with_array(merged), target)
        save_volume(new, snapshot)
        out[cid] = {"added": added, "changed": changed}
    spending = round_spending(round_path)
    atomic_write_json(round_path / "ingest.json", {"cases": out, "skipped": skipped, "spending": spending,
                                                   "qc": qc_results, "files": seen})
    return IngestReport(out, skipped, spending, qc_results)


def _qc_tasks_of(round_path: Path):
    """The round's finished quality-control tasks by case (with a lazy region), and who did each task."""
    from medal.costs import read_annotation_log
    from medal.tasks import TaskError, read_tasks, task_region

    by_case: dict[str, list] = {}
    users: dict[str, str] = {}
    try:
        tl = read_tasks(round_path / "tasks.json")
    except TaskError:
        return by_case, users
    for t in tl.tasks:
        if t.qc_of and t.status == "done":
            by_case.setdefault(t.case_id, []).append((t, lambda shape, t=t: task_region(t, shape, tl)))
    log = round_path / "annotation_log.jsonl"
    if log.is_file():
        try:
            users = {str(r.get("task_id")): str(r.get("user", "")) for r in read_annotation_log(log, strict=False)}
        except ValueError:
            pass
    return by_case, users


def _qc_agreement(round_path: Path, tasks, new, existing: np.ndarray, dataset: Dataset, users: dict) -> list[dict]:
    from medal.costs import read_annotation_log
    from medal.report.quality import agreement

    lmap = dataset.label_map
    out = []
    for t, region in tasks:
        r = region(new.shape)
        first_round, first_task = t.qc_of.split("/", 1)
        log = round_path.parent / first_round / "annotation_log.jsonl"
        first_user = ""
        if log.is_file():
            try:
                first_user = next((str(x.get("user", "")) for x in read_annotation_log(log, strict=False)
                                   if str(x.get("task_id")) == first_task), "")
            except ValueError:
                pass
        dice = agreement(lmap.to_index(existing[r]), lmap.to_index(new.array[r]), lmap.n_classes)
        out.append({"task_id": t.task_id, "qc_of": t.qc_of, "case_id": t.case_id, "first_user": first_user,
                    "qc_user": users.get(t.task_id, ""),
                    "dice": {lmap.name(lmap.values[c]): v for c, v in dice.items()}})
    return out
