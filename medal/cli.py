"""The ``medal`` command. Each subcommand parses its arguments, then calls one API function.

Heavy libraries (torch, monai, nibabel) are imported inside the commands, so ``medal --help`` is
instant.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


def _progress(desc: str):
    def wrap(items):
        from tqdm import tqdm

        return tqdm(items, desc=desc, unit="case", leave=False, disable=None, file=sys.stderr)

    return wrap


def cmd_dataset_check(args) -> int:
    from medal.config import load_config
    from medal.data import check_dataset

    cfg = load_config(args.config) if args.config is not None else None
    report = check_dataset(args.path, labels_dir=args.labels, progress=_progress("checking"), config=cfg)
    if args.json:
        print(report.to_json())
    else:
        if args.verbose:
            for c in report.cases:
                status = "ok" if c.ok else f"{len(c.problems)} problem(s)"
                print(f"{c.case_id}: shape {c.shape} spacing {c.spacing} dtype {c.dtype} "
                      f"labels {c.label_values} -- {status}")
        print(report.summary())
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def cmd_dataset_split_channels(args) -> int:
    from medal.data.channels import split_channels

    res = split_channels(args.src, args.dst)
    print(f"wrote {len(res['written'])} case(s) to {args.dst} (one file per channel: _0000, _0001, ...)"
          + (f"; skipped {len(res['skipped'])}" if res["skipped"] else ""))
    return EXIT_PROBLEMS if res["skipped"] else EXIT_OK


def cmd_dataset_from_dicom(args) -> int:
    from pathlib import Path

    from medal.data.dicom import from_dicom, plan

    if args.dst is None and not args.list:
        print("medal dataset from-dicom: give DST (the dataset folder to write), or --list", file=sys.stderr)
        return EXIT_USAGE
    if args.list:
        left_out = {}
        keep, names, segs = plan(args.src, series=args.series, modality=args.modality, channels=args.channels,
                                 skipped=left_out, part=args.part)
        for s, name in zip(keep, names):
            where = s.folders[0].relative_to(args.src) if s.folders[0] != Path(args.src) else Path(".")
            why = s.obvious_skip()
            files = f"{len(s.files)} file(s)" + (f" ({s.frames} frames)" if len(s.files) == 1 and s.frames > 1 else "")
            part = f" ({s.part})" if s.part else ""
            print(f"{name}: {s.modality or '?'} series {s.number or '?'} {s.description!r}{part}, {files} "
                  f"in {where}" + (f" (will be skipped: {why})" if why else "")
                  + "".join(f"; channel {k}: series {c.number or '?'} {c.description!r}" + (f" ({c.part})" if c.part
                                                                                              else "")
                            for k, c in enumerate(s.channels, 1)))
        for why in left_out.values():
            print(f"will be skipped: {why}")
        for s in segs:
            where = s.folders[0].relative_to(args.src) if s.folders[0] != Path(args.src) else Path(".")
            print(f"labels: {s.modality} series {s.number or '?'} {s.description!r}, {len(s.files)} file(s) in {where}")
        n = sum(not s.obvious_skip() for s in keep)
        print(f"{n} series would be converted, {len(segs)} SEG / RTSTRUCT series read as their labels "
              "(nothing written: --list)")
        return EXIT_OK
    res = from_dicom(args.src, args.dst, series=args.series, modality=args.modality, labels=args.labels,
                     channels=args.channels, part=args.part)
    print(f"wrote {len(res['written'])} case(s) to {args.dst}/imagesTr"
          + (f", {len(res['kept'])} already there" if res["kept"] else "")
          + (f"; labels of {len(res['labelled'])} case(s) from DICOM SEG / RTSTRUCT in labelsTr"
             if res["labelled"] else "")
          + (f"; skipped {len(res['skipped'])} series (listed above)" if res["skipped"] else "")
          + f"; sources in {Path(args.dst) / 'dicom_sources.json'}")
    return EXIT_PROBLEMS if res["skipped"] else EXIT_OK


def cmd_dataset_export_seg(args) -> int:
    from medal.data.dicom import export_seg

    res = export_seg(args.dataset, args.labels, args.out, dicom_root=args.dicom, automatic=args.prediction,
                     rtstruct=args.rtstruct, codes=args.codes)
    print(f"wrote {len(res['written'])} DICOM {'RTSTRUCT' if args.rtstruct else 'SEG'} file(s) to {args.out}"
          + (f"; skipped {len(res['skipped'])} case(s) (listed above)" if res["skipped"] else ""))
    return EXIT_PROBLEMS if res["skipped"] or not res["written"] else EXIT_OK


def cmd_dataset_from_folders(args) -> int:
    from medal.data.folders import from_folders

    res = from_folders(args.root, args.dst, images=args.image, label=args.label, labels=args.labels,
                       channel_names=args.channel_names, copy=args.copy, case_depth=args.case_depth,
                       label_root=args.label_root)
    how = "copied" if args.copy else "linked"
    print(f"{how} {len(res['written'])} case(s) into {args.dst} (imagesTr/, labelsTr/, dataset.json)"
          + (f"; skipped {len(res['skipped'])} case folder(s) (listed above)" if res["skipped"] else ""))
    return EXIT_PROBLEMS if res["skipped"] or not res["written"] else EXIT_OK


def cmd_demo(args) -> int:
    from medal.demo import run_demo

    res = run_demo(args.out, quick=args.quick)
    print(f"\nwrote {len(res['tasks'])} tasks.json file(s), e.g. {res['tasks'][-1]}")
    print(f"results: {res['results']}")
    print(f"plots:   {', '.join(str(p) for p in res['plots'])}")
    print(f"report:  {res['report']}")
    print(f"run report (default strategy, as `medal report` writes it): {res['run_report']}\n")
    print(res["report"].read_text())
    return EXIT_OK


def cmd_annotate(args) -> int:
    try:
        from medal_napari.cli import main as annotate_main
    except ImportError as exc:
        print(f"medal: error: the napari plugin is not installed ({exc}); install it with "
              "`pip install -e napari_plugin` (and a Qt binding, e.g. PyQt6)", file=sys.stderr)
        return EXIT_USAGE
    return annotate_main(args.rest)


def cmd_sample_path(args) -> int:
    from medal.data import sample_dataset

    print(sample_dataset())
    return EXIT_OK


def _note_mixed_spacing(cfg, ds) -> None:
    """The NOTEs of a run over cases of mixed spacing or storage order that the config leaves as they are, or
    smaller than its patch."""
    from medal.data.resample import mixed_orientation_note, mixed_spacing_note, patch_padding_note

    for note in (mixed_spacing_note(cfg.data, ds), mixed_orientation_note(cfg.data, ds), patch_padding_note(cfg, ds)):
        if note:
            print(note, file=sys.stderr)


def cmd_train(args) -> int:
    import json
    from pathlib import Path

    from medal.config import config_to_dict, load_config
    from medal.data import load_dataset
    from medal.data.scratch import scratch_folder
    from medal.training import mapped_items, prepare_items, split_items, train_model

    cfg = load_config(args.config)
    ds = load_dataset(args.dataset)
    _note_mixed_spacing(cfg, ds)
    if args.labels is not None and not Path(args.labels).is_dir():
        print(f"medal: error: {args.labels}: no such labels folder", file=sys.stderr)
        return EXIT_PROBLEMS
    skipped: dict[str, str] = {}
    from medal.data.resample import planning_spacing, training_orientation, training_spacing

    spacing = training_spacing(cfg.data, ds, args.init)
    orientation = training_orientation(cfg.data, args.init)
    from medal.data.intensity import training_intensity

    try:
        intensity = training_intensity(cfg.data, ds, init=args.init, labels_dir=args.labels,
                                       log=lambda m: print(m, file=sys.stderr))
    except ValueError as exc:
        print(f"medal: error: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
    items = prepare_items(ds, cfg.data, labels_dir=args.labels, skipped=skipped, spacing=spacing,
                          orientation=orientation, intensity=intensity, in_memory_gb=cfg.training.items_in_memory_gb,
                          scratch_dir=cfg.training.scratch_dir)
    for cid, why in skipped.items():
        print(f"SKIPPED [{cid}] {why}", file=sys.stderr)
    if not items:
        print(f"medal: error: {args.dataset}: no case has annotated voxels to train on", file=sys.stderr)
        return EXIT_PROBLEMS
    train, val = split_items(items, cfg.training.val_fraction, cfg.training.seed)
    mapped = mapped_items(items)
    print(f"training on {len(train)} case(s), validating on {len(val)}"
          + (f" ({mapped} read by memory map from {scratch_folder(cfg.training.scratch_dir)}: over "
             f"training.items_in_memory_gb {cfg.training.items_in_memory_gb:g})" if mapped else ""), file=sys.stderr)
    res = train_model(train, val, n_classes=ds.n_classes, model_cfg=cfg.model, train_cfg=cfg.training, init=args.init,
                      checkpoint=args.out, label_map=ds.label_map, spacing=spacing, orientation=orientation,
                      intensity=intensity, plan_spacing=planning_spacing(cfg.data, ds, spacing))
    print(json.dumps({"checkpoint": str(res.checkpoint), "best_epoch": res.best_epoch,
                      "spacing": list(spacing) if spacing is not None else None, "orientation": orientation,
                      "strides": config_to_dict(res.model_cfg)["strides"],
                      "intensity": list(intensity) if intensity is not None else None,
                      "best_val_dice": res.best_val_dice, "epochs": len(res.history), "skipped": sorted(skipped)}))
    return EXIT_PROBLEMS if skipped else EXIT_OK


def cmd_score(args) -> int:
    from medal.config import load_config
    from medal.data import load_dataset
    from medal.execution import ScoreSpec, get_executor, score_dataset

    cfg = load_config(args.config)
    ds = load_dataset(args.dataset)
    cases = [c for c in ds.cases if not args.cases or c.case_id in set(args.cases)]
    missing = set(args.cases or []) - {c.case_id for c in cases}
    if missing:
        print(f"medal: error: {args.dataset}: no case(s) {sorted(missing)}", file=sys.stderr)
        return EXIT_USAGE
    from medal.model import check_checkpoint_labels, load_checkpoint

    payload = load_checkpoint(args.checkpoint)[2]  # a bad checkpoint is one clear error, not one failure per case
    check_checkpoint_labels(payload, ds.label_map, args.checkpoint)
    from medal.selection.strategies import NEEDS_EMBEDDINGS

    spec = ScoreSpec.make(args.checkpoint, args.out, cfg.uncertainty, cfg.data, device=cfg.uncertainty.device,
                          label_map=ds.label_map, embeddings=cfg.selection.strategy in NEEDS_EMBEDDINGS,
                          root=ds.root)
    if args.executor == "ray":
        executor = get_executor("ray", workers=args.workers, address=args.address, num_cpus=args.num_cpus)
    else:
        executor = get_executor("local", workers=args.workers or 1)
    report = score_dataset(spec, cases, executor, retries=args.retries)
    print(report.summary())
    print(f"outputs in {args.out}/scores/<case_id>/; failures in {args.out}/scores/failures.json")
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def _refuse_oracle_value(cfg, config_path) -> None:
    """A real round or selection cannot read the ground truth: say so before any training."""
    from medal.config import ConfigError
    from medal.regions.values import ORACLE_VALUES, VALUES

    if cfg.regions.value in ORACLE_VALUES:
        valid = sorted(set(VALUES) - set(ORACLE_VALUES))
        raise ConfigError(f"{config_path}: regions.value {cfg.regions.value!r} reads the ground truth, a `medal "
                          f"simulate` diagnostic; a real round cannot use it (valid here: {valid})")


def cmd_select(args) -> int:
    import dataclasses
    from pathlib import Path

    from medal.config import load_config
    from medal.data import load_dataset
    from medal.selection.api import select_round

    cfg = load_config(args.config)
    _refuse_oracle_value(cfg, args.config)
    sel = cfg.selection
    given = (("budget_s", args.budget), ("strategy", args.strategy), ("reserve", args.reserve))
    if any(v is not None for _, v in given):
        sel = dataclasses.replace(sel, **{k: v for k, v in given if v is not None})
    if args.strategy is not None:  # the strategy asked for, not selection.typical_rounds' fg_typical
        sel = dataclasses.replace(sel, typical_rounds=0)
    regions = cfg.regions if args.kind is None else dataclasses.replace(cfg.regions, kind=args.kind)
    ds = load_dataset(args.dataset)
    if not Path(args.scores).is_dir():
        raise ValueError(f"{args.scores}: no such scores folder (what `medal score --out` wrote)")
    inner = Path(args.scores) / "scores"
    if inner.is_dir() and not any(Path(args.scores).glob("*/prediction.nii.gz")):
        args.scores = str(inner)  # `medal score --out run` writes run/scores/<case>/: take the folder given either way
    res = select_round(ds, args.scores, args.out, regions_cfg=regions, costs_cfg=cfg.costs, selection_cfg=sel,
                       labels_dir=args.labels, data_cfg=cfg.data, coldstart_cfg=cfg.coldstart, progress=True,
                       overwrite=args.overwrite, allow_empty=args.allow_empty)
    print(res.summary())
    return EXIT_OK


def cmd_costs_fit(args) -> int:
    from medal.costs import fit_cost_model

    from medal.costs import read_annotation_log

    records = [rec for log in args.log for rec in read_annotation_log(log)]
    model = fit_cost_model(records, n_classes=args.classes)
    model.save(args.out)
    print(f"fitted {len(model.coefficients)} coefficients on {model.fit['n_tasks']} tasks: "
          f"R^2 {model.fit['r2']:.3f}, mean abs error {model.fit['mae_s']:.1f} s -> {args.out}")
    return EXIT_OK


def cmd_round(args) -> int:
    from medal.config import load_config
    from medal.data import load_dataset
    from medal.loop import run_round

    if args.index < 0:  # before the config and the dataset are read (run_round says the same)
        raise ValueError(f"--index: a round number is 0, 1, 2, ..., got {args.index}")
    cfg = load_config(args.config)
    _refuse_oracle_value(cfg, args.config)
    ds = load_dataset(args.dataset)
    _note_mixed_spacing(cfg, ds)
    res = run_round(args.run, ds, cfg, index=args.index, budget_s=args.budget, strategy=args.strategy,
                    pool=args.cases, progress=True, overwrite=args.overwrite, allow_empty=args.allow_empty)
    b = res.manifest["budget"]
    line = (f"round {args.index}: {b['tasks']} task(s), {b['predicted_s']:.0f} s predicted of {b['budget_s']:.0f} s"
            + (f", then a reserve of {b['reserve_tasks']} task(s) ({b.get('reserve_s', 0.0):.0f} s predicted) to paint "
               f"only while the logged seconds are under the budget" if b.get("reserve_tasks") else "")
            + f" -> {res.round_dir / 'tasks.json'}")
    if cfg.costs.annotation == "correct":
        line += ("; priced for correcting the model's prediction (costs.annotation: correct): napari opens the "
                 "tasks on it")
    if not res.steps_run:
        line = f"round {args.index} is already finished, with these settings; nothing to do. " + line
    elif len(res.steps_run) < 3:
        line += f" (resumed; ran {', '.join(res.steps_run)})"
    print(line)
    for cid, why in res.manifest.get("inputs", {}).get("skipped", {}).items():
        print(f"SKIPPED [{cid}] {why}", file=sys.stderr)
    if b.get("novelty"):
        print(f"NOTE: {b['novelty']['message']}")
    if b.get("fallback"):
        print(f"NOTE: {b['fallback']}")
    _auto_report(args.run, ds, cfg)
    return EXIT_OK


def cmd_ingest(args) -> int:
    from pathlib import Path

    from medal.data import load_dataset
    from medal.loop import ingest

    from medal.config import load_config

    ds = load_dataset(args.dataset)
    round_path = _ingest_round_path(args.run, args.round)
    rep = ingest(args.run, round_path, ds)
    if not (round_path / "annotations").is_dir():
        print(f"NOTE: {round_path / 'annotations'} is not there: no task of this round has been saved yet")
    for cid, v in rep.cases.items():
        print(f"{cid}: {v['added']} voxel(s) added, {v['changed']} changed (previous labels kept in labels/.history)")
    for name, why in rep.skipped.items():
        print(f"SKIPPED {name}: {why}", file=sys.stderr)
    sp = rep.spending
    if sp.get("logged"):
        print(f"time: {sp['charged_s']:.0f} s logged for {sp['logged']} task(s) predicted at {sp['predicted_s']:.0f} s")
    print(f"ingested {len(rep.cases)} case(s), {rep.voxels_added} new annotated voxel(s)"
          + (f"; {len(rep.skipped)} file(s) not merged (above)" if rep.skipped else ""))
    for q in rep.qc:
        print(f"quality control {q['task_id']} (re-asks {q['qc_of']}): Dice "
              + ", ".join(f"{k} {'n/a' if v is None else f'{v:.3f}'}" for k, v in q["dice"].items()))
    if sorted(Path(args.run).glob("round_[0-9]*/manifest.json")):
        _auto_report(args.run, ds, load_config(args.config) if args.config else _run_config(args.run))
    return EXIT_PROBLEMS if any(not n.startswith(".") for n in rep.skipped) else EXIT_OK


def _ingest_round_path(run, given: str):
    """``medal ingest --round``: a round folder, or a round's index within ``--run`` (``0`` -> RUN/round_000).

    A folder that is not there, or holds neither a ``tasks.json`` nor ``annotations/``, is an error naming it: a
    mistyped path must not read as "0 voxels ingested"."""
    from pathlib import Path

    from medal.loop import round_dir

    path = Path(given)
    if not path.exists() and given.isdigit():
        path = round_dir(run, int(given))
    if not path.is_dir():
        raise ValueError(f"{path}: no such round folder (give the round's folder, e.g. {round_dir(run, 0)}, "
                         f"or its index)")
    if not (path / "tasks.json").is_file() and not (path / "annotations").is_dir():
        raise ValueError(f"{path}: not a round folder (no tasks.json, no annotations/)")
    return path


def cmd_report(args) -> int:
    import json
    from pathlib import Path

    from medal.config import config_from_dict, load_config
    from medal.data import load_dataset
    from medal.report import write_run_report

    run = Path(args.run)
    if not run.is_dir():
        print(f"medal: error: {run}: no such run folder", file=sys.stderr)
        return EXIT_PROBLEMS
    rounds = sorted(run.glob("round_[0-9]*/manifest.json"))
    if not rounds:
        print(f"medal: error: {run}: no finished round (round_*/manifest.json) to report on", file=sys.stderr)
        return EXIT_PROBLEMS
    manifest = json.loads(rounds[-1].read_text())
    cfg = load_config(args.config) if args.config else config_from_dict(
        {k: v for k, v in manifest.get("config", {}).items() if k != "simulation"}, source=str(rounds[-1]))
    ds = load_dataset(args.dataset or manifest["dataset_root"])
    md = write_run_report(run, ds, cfg)
    if args.json:
        print((run / "report.json").read_text())
    else:
        print(md.read_text())
    return EXIT_OK


def _run_config(run):
    """The config the run's last finished round was made with (defaults when there is none)."""
    import json
    from pathlib import Path

    from medal.config import MedalConfig, config_from_dict

    rounds = sorted(Path(run).glob("round_[0-9]*/manifest.json"))
    if not rounds:
        return MedalConfig()
    cfg = json.loads(rounds[-1].read_text()).get("config", {})
    return config_from_dict({k: v for k, v in cfg.items() if k != "simulation"}, source=str(rounds[-1]))


def _auto_report(run, ds, cfg) -> None:
    """The run report after a round or an ingest; a failure to write it never fails the command."""
    from medal.report import write_run_report

    try:
        print(f"report: {write_run_report(run, ds, cfg)}")
    except Exception as exc:  # noqa: BLE001 - the report is a by-product
        print(f"medal: warning: could not write the run report ({type(exc).__name__}: {_one_line(exc)})",
              file=sys.stderr)


def cmd_simulate(args) -> int:
    from medal.config import load_config
    from medal.data import load_dataset
    from medal.simulation import simulate, write_report

    if args.deadline is not None and not args.deadline >= 0:
        print(f"medal: error: --deadline: minutes from now, >= 0 (got {args.deadline})", file=sys.stderr)
        return EXIT_USAGE
    cfg = load_config(args.config)
    try:
        deadline = time.time() + 60 * args.deadline if args.deadline is not None else None
        ds = load_dataset(args.dataset)
        _note_mixed_spacing(cfg, ds)
        csv_path = simulate(ds, args.out, cfg, log=lambda r: print(r, file=sys.stderr),
                            resume=args.resume, deadline=deadline)
    except KeyboardInterrupt:
        print(f"medal: interrupted; continue where it stopped with the same command and --resume "
              f"(finished runs and rounds in {args.out} are kept)", file=sys.stderr)
        return 130
    report = write_report(csv_path, full_dice=args.full_dice)
    print(f"results: {csv_path}\nreport: {report}")
    import json
    from pathlib import Path

    skipped = json.loads((Path(args.out) / "simulation.json").read_text(encoding="utf-8")).get("skipped")
    if skipped:
        print(f"{len(skipped)} case(s) skipped (SKIPPED lines above; simulation.json 'skipped')", file=sys.stderr)
    return EXIT_PROBLEMS if skipped else EXIT_OK


def cmd_merge(args) -> int:
    from medal.simulation import merge_runs, write_report

    csv_path = merge_runs(args.runs, args.out, ignore_config=args.ignore_config)
    report = write_report(csv_path, full_dice=args.full_dice)
    print(f"results: {csv_path}\nreport: {report}")
    return EXIT_OK


def cmd_coldstart(args) -> int:
    import dataclasses

    from medal.config import load_config
    from medal.coldstart import coldstart_select
    from medal.data import load_dataset

    import json
    from pathlib import Path

    from medal.tasks import read_tasks

    cfg = load_config(args.config)
    if args.reserve is not None:
        from medal.config import ConfigError

        try:
            cfg = dataclasses.replace(cfg, coldstart=dataclasses.replace(cfg.coldstart, reserve=args.reserve))
        except ConfigError as err:
            raise ConfigError(f"--reserve: {err}") from None
    if args.axis is not None:
        from medal.config import ConfigError

        axis = args.axis.split(",") if "," in args.axis else args.axis
        try:
            cfg = dataclasses.replace(cfg, coldstart=dataclasses.replace(cfg.coldstart, axis=axis))
        except ConfigError as err:
            raise ConfigError(f"--axis: {err}") from None
    keep, overwrite = [], args.overwrite
    if args.pilot_log:  # the pilot's slices, timed: keep them (at the seconds they took) and choose the rest
        from medal.costs import read_annotation_log

        took = {str(r.get("task_id")): float(r["seconds"]) for r in read_annotation_log(args.pilot_log)}
        pilot = read_tasks(Path(args.out) / "tasks.json").tasks
        keep = [dataclasses.replace(t, predicted_cost_s=took[t.task_id], status="done" if t.task_id in took else t.status)
                for t in pilot if t.task_id in took]
        overwrite = True
    tasks = coldstart_select(load_dataset(args.dataset), args.out, budget_s=args.budget, cfg=cfg.coldstart,
                             data_cfg=cfg.data, pool=args.cases, axis=cfg.coldstart.axis or cfg.regions.axes,
                             overwrite=overwrite,
                             pilot=args.pilot or 0, pilot_log=args.pilot_log, keep=keep)
    meta = json.loads((Path(args.out) / "tasks.json").read_text())
    for cid, why in meta.get("skipped", {}).items():
        print(f"SKIPPED [{cid}] {why}", file=sys.stderr)
    n_reserve = int(meta.get("reserve_tasks") or 0)
    main = tasks[:len(tasks) - n_reserve]
    print(f"{len(main)} slice(s) from {len({t.case_id for t in main})} case(s), "
          f"{sum(t.predicted_cost_s for t in main):.0f} s predicted of {args.budget:.0f} s -> {args.out}/tasks.json")
    if n_reserve:
        print(f"reserve: {n_reserve} more slice(s), {meta['reserve_s']:.0f} s predicted, after those: paint them only "
              "while your logged seconds are under the budget")
    elif cfg.coldstart.reserve > 0 and not args.pilot:
        print(f"reserve: none left to choose (at most {cfg.coldstart.max_per_case} slice(s) per volume, "
              "coldstart.max_per_case, and none within coldstart.edge_margin of a volume's ends)")
    print(f"representation: {meta['representation']}; method: {meta['method']}")
    print(f"predicted seconds: {meta['cost_prior']['text']}")
    if args.pilot:
        print(f"pilot: paint and time these {len(tasks) - len(keep)} slice(s) first (medal annotate {args.out}), then run "
              f"`medal coldstart ... --out {args.out} --budget {args.budget:.0f} --pilot-log "
              f"{Path(args.out) / 'annotation_log.jsonl'} [--pilot N]` to choose the rest (or a next timed batch) with "
              "the prior scaled to your pace")
    else:
        print("paint in order; when a slice's predicted seconds exceed what is left of the budget, skip it "
              "(medal simulate does the same, so a start lands within one slice of the budget)")
    return EXIT_PROBLEMS if meta.get("skipped") else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    from medal import __version__

    parser = argparse.ArgumentParser(
        prog="medal",
        description="Active learning for 3D medical image segmentation: spend an expert's annotation "
        "time where it helps the model most.",
    )
    parser.add_argument("--version", action="version", version=f"medal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ds = sub.add_parser("dataset", help="inspect and validate datasets")
    ds.set_defaults(group_parser=ds)
    ds_sub = ds.add_subparsers(dest="dataset_command", metavar="ACTION")
    chk = ds_sub.add_parser("check", help="check every case of a dataset and report each problem",
                            description="Check every case (shape, spacing, label values, grid match, "
                            "NaN/Inf, readability). Exits 1 if any problem was found.")
    chk.add_argument("path", help="dataset folder (MSD/nnU-Net layout or a plain folder of images)")
    chk.add_argument("--labels", default=None, help="labels folder (default: labelsTr/ or labels/)")
    chk.add_argument("--config", default=None, help="the config the run will use (default: the defaults): its "
                     "network plan is what the notes on anisotropic voxels and the patch size are about")
    chk.add_argument("--json", action="store_true", help="print the full report as JSON")
    chk.add_argument("-v", "--verbose", action="store_true", help="one line per case")
    chk.set_defaults(func=cmd_dataset_check)
    spl = ds_sub.add_parser("split-channels", help="rewrite 4D multi-channel images (MSD) as one file per channel",
                            description="Write SRC's cases into DST in nnU-Net v2's layout: each image's channels "
                            "(a 4D file's fourth axis) as imagesTr/<case>_0000.nii.gz, _0001, ...; labels, "
                            "dataset.json (without its file lists) and other top-level files (LICENSE) copied. "
                            "Exits 1 if any case was skipped.")
    spl.add_argument("src", help="dataset folder with 4D images (e.g. an MSD task)")
    spl.add_argument("dst", help="new folder to write")
    spl.set_defaults(func=cmd_dataset_split_channels)
    dcm = ds_sub.add_parser("from-dicom", help="convert DICOM series (a scanner or PACS export) into a dataset folder",
                            description="Convert every image series found under SRC (any folder depth) into DST: "
                            "imagesTr/<case>_0000.nii.gz per series, dataset.json (channel named by the modality: "
                            "CT gets the CT window), dicom_sources.json (the folder and series of each case; no "
                            "patient identifiers). A series that is not one evenly spaced volume (missing slice, "
                            "gantry tilt, localizer) is skipped with the reason; several volumes in one series (echoes, "
                            "b-values, time points) become one case each (<case>_echo1, ...); DICOM SEG objects "
                            "and RT structure sets (RTSTRUCT contours; --labels keeps the ROIs named after a label) "
                            "become labelsTr/<case>.nii.gz of their series. Run again on the same DST "
                            "to go on where it stopped. Exits 1 if any series was skipped.")
    dcm.add_argument("src", help="folder holding the DICOM files (searched recursively)")
    dcm.add_argument("dst", nargs="?", default=None, help="new dataset folder to write (or an earlier conversion's)")
    dcm.add_argument("--series", default=None, metavar="PATTERN",
                     help="keep series whose description matches, e.g. '*T2*' (case ignored)")
    dcm.add_argument("--part", default=None, metavar="PATTERN",
                     help="of series holding several volumes (echoes, b-values, time points), keep the volumes whose "
                     "part matches, e.g. 'b1000' or 'echo2' (case ignored)")
    dcm.add_argument("--modality", default=None, help="keep one modality (DICOM code: CT, MR, PT, ...)")
    dcm.add_argument("--labels", nargs="+", default=None, metavar="NAME",
                     help="label names for dataset.json, background first (e.g. background liver tumour)")
    dcm.add_argument("--channels", nargs="+", default=None, metavar="PATTERN",
                     help="one case per study with these series as its input channels, in order, e.g. "
                     "--channels '*t2*' '*adc*' 'b1400' (a pattern matches a series' description or, for one volume "
                     "of a split series, its part; case ignored): the first is the image experts see and label, "
                     "the others are resampled onto its grid where they lie on another; a study without exactly "
                     "one series per pattern is skipped with the reason")
    dcm.add_argument("--list", action="store_true", help="list the series and their case ids; write nothing")
    dcm.set_defaults(func=cmd_dataset_from_dicom)
    exp = ds_sub.add_parser("export-seg", help="write labels or predictions as DICOM SEG on their source series",
                            description="For a dataset `from-dicom` made: each case whose label (LABELS/<case>.nii.gz) "
                            "or prediction (LABELS/<case>/prediction.nii.gz, what `medal score` writes) is found "
                            "becomes OUT/<case>.dcm, a DICOM SEG on the series it came from, one segment per label "
                            "present, for a PACS or a DICOM viewer (--rtstruct: an RT structure set, one ROI of "
                            "contours per label, for a treatment planning system). Exits 1 if any case was skipped.")
    exp.add_argument("dataset", help="dataset folder written by `medal dataset from-dicom`")
    exp.add_argument("labels", help="folder of label files (e.g. RUN/labels) or of scores (RUN/scores)")
    exp.add_argument("out", help="folder to write the SEG files into")
    exp.add_argument("--dicom", default=None, help="the DICOM export's folder, if it moved since the conversion")
    exp.add_argument("--prediction", action="store_true",
                     help="the labels are a model's prediction (SEG algorithm type AUTOMATIC, not MANUAL)")
    exp.add_argument("--rtstruct", action="store_true",
                     help="write RT structure sets (closed contours per slice) instead of SEG objects")
    exp.add_argument("--codes", default=None, metavar="FILE",
                     help="JSON of segment codes per label (by value or name): {\"1\": {\"SegmentedPropertyTypeCode"
                     "Sequence\": {\"CodeValue\": ..., \"CodingSchemeDesignator\": ..., \"CodeMeaning\": ...}}}, "
                     "optionally ...CategoryCodeSequence and ...TypeModifierCodeSequence, as dcmqi names them; labels "
                     "it does not name are coded from their names (SNOMED CT where a name is a concept)")
    exp.set_defaults(func=cmd_dataset_export_seg)
    fol = ds_sub.add_parser("from-folders", help="lay out a folder per case (KiTS, BraTS, TotalSegmentator) as a dataset",
                            description="Link (or --copy) each case folder's image(s) and label into DST as "
                            "imagesTr/<folder>_0000.nii.gz (_0001, ... per channel) and labelsTr/<folder>.nii.gz, "
                            "with dataset.json. Without --image, a folder's one volume whose name is not "
                            "label-like (seg, segmentation, label, mask, gt) is the image and the label-like one "
                            "the label; a label pattern matching several files per case merges them as binary "
                            "masks named by their files. Exits 1 if any case folder was skipped.")
    fol.add_argument("root", help="folder holding one subfolder per case")
    fol.add_argument("dst", help="new dataset folder to write")
    fol.add_argument("--image", action="append", default=None, metavar="PATTERN",
                     help="glob of a channel's file inside each case folder, once per channel in order "
                     "(e.g. --image '*_flair.nii.gz' --image '*_t1.nii.gz')")
    fol.add_argument("--label", default=None, metavar="PATTERN",
                     help="glob of the label file(s) inside each case folder (e.g. '*_seg.nii.gz', "
                     "'segmentations/*.nii.gz' for one mask per structure)")
    fol.add_argument("--labels", nargs="+", default=None, metavar="NAME",
                     help="label names, background first (masks: the structures to keep, by file name)")
    fol.add_argument("--channel-names", nargs="+", default=None, metavar="NAME",
                     help="one name per channel for dataset.json (CT gets the CT window)")
    fol.add_argument("--case-depth", type=int, default=1, metavar="N",
                     help="the case folders are N levels under ROOT (BIDS with sessions, sub-01/ses-1: 2); the case "
                     "id joins the levels (sub-01_ses-1)")
    fol.add_argument("--label-root", default=None, metavar="FOLDER",
                     help="labels in a tree parallel to the cases' (BIDS: derivatives/<pipeline>): --label is "
                     "matched in FOLDER/<case path>; a case with none there is laid out unlabelled")
    fol.add_argument("--copy", action="store_true", help="copy the files instead of linking them")
    fol.set_defaults(func=cmd_dataset_from_folders)

    tr = sub.add_parser("train", help="train the U-Net on full or partial labels (255 = not annotated)")
    tr.add_argument("dataset", help="dataset folder")
    tr.add_argument("--out", required=True, help="checkpoint file to write (e.g. run/model.pt)")
    tr.add_argument("--config", default=None, help="YAML config (default: built-in defaults)")
    tr.add_argument("--labels", default=None, help="partial labels folder replacing the dataset's labels")
    tr.add_argument("--init", default=None, help="checkpoint to warm-start from")
    tr.set_defaults(func=cmd_train)

    sc = sub.add_parser("score", help="write MC-dropout score volumes (entropy, BALD, ...) for each case")
    sc.add_argument("dataset", help="dataset folder")
    sc.add_argument("--checkpoint", required=True, help="checkpoint written by `medal train`")
    sc.add_argument("--out", required=True, help="run folder; outputs go to OUT/scores/<case_id>/")
    sc.add_argument("--config", default=None, help="YAML config (its uncertainty and data sections)")
    sc.add_argument("--cases", nargs="*", default=None, help="only these case ids")
    sc.add_argument("--executor", choices=["local", "ray"], default="local",
                    help="local (default: in-process, or --workers processes) or ray (pip install 'medal[ray]')")
    sc.add_argument("--workers", type=int, default=None, help="worker processes / Ray actors")
    sc.add_argument("--address", default=None, help="Ray: join this cluster (default: start a local one)")
    sc.add_argument("--num-cpus", type=int, default=None, help="Ray: CPUs of the local cluster it starts")
    sc.add_argument("--retries", type=int, default=1, help="retries of a failing case before it is reported")
    sc.set_defaults(func=cmd_score)

    se = sub.add_parser("select", help="choose slices/supervoxels to annotate within a budget -> tasks.json")
    se.add_argument("dataset", help="dataset folder")
    se.add_argument("--scores", required=True, help="scores folder written by `medal score` (RUN/scores)")
    se.add_argument("--out", required=True, help="round folder; tasks.json (and masks/) are written there")
    se.add_argument("--budget", type=float, default=None, help="expert seconds to spend (default: config)")
    se.add_argument("--strategy", default=None,
                    help="random | fg_random | fg_value | fg_typical | badge | fg_badge | topk | knapsack | knapsack+diversity")
    se.add_argument("--reserve", type=float, default=None, metavar="BUDGETS",
                    help="also queue this many budgets of reserve tasks after the budget's own, for a time-boxed "
                         "session (default: config selection.reserve)")
    se.add_argument("--kind", choices=["slice", "supervoxel"], default=None, help="unit kind (default: config)")
    se.add_argument("--labels", default=None, help="partial labels folder (already annotated units are skipped)")
    se.add_argument("--config", default=None, help="YAML config (regions, costs, selection sections)")
    se.add_argument("--overwrite", action="store_true", help="replace an existing tasks.json")
    se.add_argument("--allow-empty", action="store_true", help="write an empty tasks.json when nothing fits the budget")
    se.set_defaults(func=cmd_select)

    ro = sub.add_parser("round", help="one active-learning round: train -> score -> select -> tasks.json "
                        "(resumes where an interrupted round stopped)")
    ro.add_argument("dataset", help="dataset folder (images; labels come from RUN/labels)")
    ro.add_argument("--run", required=True, help="run folder (RUN/labels holds the partial labels)")
    ro.add_argument("--index", type=int, required=True, help="round number (0, 1, ...)")
    ro.add_argument("--budget", type=float, default=None, help="expert seconds (default: config)")
    ro.add_argument("--strategy", default=None, help="selection strategy (default: config)")
    ro.add_argument("--cases", nargs="*", default=None, help="the pool of case ids (default: all)")
    ro.add_argument("--config", default=None)
    ro.add_argument("--overwrite", action="store_true", help="replace a tasks.json another command wrote in the round folder")
    ro.add_argument("--allow-empty", action="store_true", help="write an empty tasks.json when nothing fits the budget")
    ro.set_defaults(func=cmd_round)

    ig = sub.add_parser("ingest", help="merge a round's finished annotations into the run's partial labels")
    ig.add_argument("dataset")
    ig.add_argument("--run", required=True)
    ig.add_argument("--round", required=True, help="round folder holding annotations/, or its index (0 = RUN/round_000)")
    ig.add_argument("--config", default=None, help="YAML config (the report's rules; default: the run's)")
    ig.set_defaults(func=cmd_ingest)

    rp = sub.add_parser("report", help="where a run stands: chosen tasks, seconds, held-out Dice, when to stop")
    rp.add_argument("run", help="run folder (RUN/round_*/manifest.json)")
    rp.add_argument("--dataset", default=None, help="dataset folder (default: the one the rounds recorded)")
    rp.add_argument("--config", default=None, help="YAML config (default: the last round's)")
    rp.add_argument("--json", action="store_true", help="print the report as JSON")
    rp.set_defaults(func=cmd_report)

    si = sub.add_parser("simulate", help="label-efficiency simulation with the ground truth as the oracle")
    si.add_argument("dataset")
    si.add_argument("--out", required=True, help="new folder for results.csv, plots and report.md")
    si.add_argument("--config", default=None, help="YAML config (its simulation section: strategies, seeds, ...)")
    si.add_argument("--full-dice", type=float, default=None, help="full-supervision Dice (the 100%% line)")
    si.add_argument("--resume", action="store_true",
                    help="continue the simulation in --out (interrupted, or with more rounds, seeds or rows); "
                         "finished runs are kept, the rest go on from their first unfinished step")
    si.add_argument("--deadline", type=float, default=None, metavar="MINUTES",
                    help="start no round that would end later than this many minutes from now (a GPU lease, a "
                         "batch job's wall time); the report covers the rounds every run finished, --resume goes on")
    si.set_defaults(func=cmd_simulate)

    mg = sub.add_parser("merge", help="join simulation folders that ran other seeds or rows of one protocol")
    mg.add_argument("runs", nargs="+", help="medal simulate --out folders (the same pool, test cases and config)")
    mg.add_argument("--out", required=True, help="new folder for the merged results.csv, plots and report.md")
    mg.add_argument("--full-dice", type=float, default=None, help="full-supervision Dice (the 100%% line)")
    mg.add_argument("--ignore-config", nargs="+", default=(), metavar="KEY",
                    help="config keys or sections (e.g. coldstart, training.pseudo_margin) allowed to differ; "
                         "listed in simulation.json as merge_ignored")
    mg.set_defaults(func=cmd_merge)

    cs = sub.add_parser("coldstart", help="one-shot selection with no labels and no model (TypiClust)")
    cs.add_argument("dataset")
    cs.add_argument("--out", required=True, help="round folder for tasks.json")
    cs.add_argument("--budget", type=float, required=True, help="expert seconds")
    cs.add_argument("--cases", nargs="*", default=None, help="the pool of case ids (default: all)")
    cs.add_argument("--config", default=None)
    cs.add_argument("--overwrite", action="store_true")
    cs.add_argument("--pilot", type=int, default=None, help="write only the first N slices, to be painted and timed "
                    "first (with --pilot-log: the timed slices and the next N, a further timed batch)")
    cs.add_argument("--pilot-log", default=None, help="the pilot's annotation log: scale the cost prior, keep the "
                    "timed slices and choose the rest of the budget")
    cs.add_argument("--reserve", type=float, default=None, metavar="BUDGETS",
                    help="also queue this many budgets of reserve slices after the budget's own, painted only while "
                         "the logged seconds are under the budget (default: config coldstart.reserve; not with --pilot)")
    cs.add_argument("--axis", default=None, help="slice plane(s) to choose from, comma-separated (e.g. "
                    "axial,coronal,sagittal: one pool over three planes; default: config coldstart.axis, else "
                    "regions.axis)")
    cs.set_defaults(func=cmd_coldstart)

    co = sub.add_parser("costs", help="annotation-cost model")
    co.set_defaults(group_parser=co)
    co_sub = co.add_subparsers(dest="costs_command", metavar="ACTION")
    fit = co_sub.add_parser("fit", help="fit cost coefficients (NNLS) to an annotation log of timed tasks")
    fit.add_argument("log", nargs="+", help="annotation log(s) (JSON lines with seconds and effort features), "
                     "e.g. every ROUND/annotation_log.jsonl the napari plugin wrote")
    fit.add_argument("--classes", type=int, required=True, help="number of classes including background")
    fit.add_argument("--out", required=True, help="cost model JSON to write")
    fit.set_defaults(func=cmd_costs_fit)

    demo = sub.add_parser("demo", help="a short simulated active-learning run on the bundled hippocampus sample")
    demo.add_argument("--out", default=None, help="new folder for the run (default: runs/demo-<time>)")
    demo.add_argument("--quick", action="store_true",
                      help="less training and fewer MC samples (about a minute): checks that the pipeline runs")
    demo.set_defaults(func=cmd_demo)

    an = sub.add_parser("annotate", help="annotate a round's tasks in napari (the napari-medal plugin)",
                        add_help=False)
    an.add_argument("rest", nargs=argparse.REMAINDER, help="arguments of medal-annotate (ROUND, --user, ...)")
    an.set_defaults(func=cmd_annotate)

    sp = sub.add_parser("sample-path", help="print where the bundled sample dataset is installed")
    sp.set_defaults(func=cmd_sample_path)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["annotate"]:  # everything after it belongs to medal-annotate, options included
        return cmd_annotate(argparse.Namespace(rest=argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        # a group without its action (e.g. `medal dataset`) prints that group's help
        getattr(args, "group_parser", parser).print_help()
        return EXIT_USAGE
    try:
        return args.func(args)
    except (ValueError, FileExistsError, KeyError) as exc:
        # DatasetError, ConfigError and CheckpointError are ValueErrors whose messages name the file
        print(f"medal: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_PROBLEMS
    except KeyboardInterrupt:
        print("medal: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the boundary: a person reads this, not a traceback
        if os.environ.get("MEDAL_DEBUG"):
            raise
        print(f"medal: error: {type(exc).__name__}: {_one_line(exc)} (set MEDAL_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return EXIT_PROBLEMS


def _one_line(exc: BaseException) -> str:
    text = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(str(text).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
