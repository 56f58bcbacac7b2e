"""``medal report RUN``: where a run stands after every round, from its own files (no ground truth).

For every round folder of the run (``round_*``): what was chosen (tasks per case, per predicted
class, per plane; the share with predicted foreground; quality-control tasks), the seconds predicted
and the seconds the napari plugin logged; the model's Dice on the held-out annotated slices
(``training.holdout``) with a bootstrap interval over cases; the mean uncertainty of the still
unannotated pool; how much the pool's predictions changed since the round before (or the round about
``report.agreement_window_s`` seconds of labels before); the agreement of
quality-control re-annotations; earlier labels the current model
confidently contradicts (for review); and a stopping recommendation (:mod:`medal.report.stopping`).
Writes ``RUN/report.md``, ``RUN/report.json`` and the plots in ``RUN/report/``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from medal.data import atomic_write_text

__all__ = ["collect_run", "verdict_after", "write_run_report"]

_AXES = {0: "axis 0", 1: "axis 1", 2: "axis 2"}


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _rounds(run_dir: Path) -> list[Path]:
    return sorted(p for p in run_dir.glob("round_[0-9]*") if p.is_dir())


def _dominant_class(task, n_classes: int) -> int:
    f = task.features or {}
    areas = [f.get(f"area_mm2_{c}", 0.0) for c in range(1, n_classes)]
    return int(np.argmax(areas)) + 1 if areas and max(areas) > 0 else 0


def _plane(task, orientation: str) -> str:
    from medal.regions import AXIS_NAMES

    for name, letters in AXIS_NAMES.items():
        if orientation[task.axis] in letters:
            return f"{task.kind} {name}"
    return f"{task.kind} axis {task.axis}"


def collect_run(run_dir, dataset, cfg) -> dict:
    """Everything the report says, as plain data (the ``--json`` output)."""
    from medal.loop import round_spending
    from medal.report.metrics import bootstrap_mean
    from medal.tasks import TaskError, read_tasks

    run_dir = Path(run_dir)
    lmap = dataset.label_map
    orientation = None
    rounds, logged_before = [], 0.0
    init = run_dir / "round_init"
    if (init / "annotation_log.jsonl").is_file():
        logged_before += round_spending(init)["charged_s"]
    for rd in _rounds(run_dir):
        man = _read(rd / "manifest.json")
        if not man:
            continue
        entry: dict = {"round": rd.name, "index": man.get("round"), "seconds_at_training": logged_before}
        try:
            tl = read_tasks(rd / "tasks.json")
        except TaskError:
            tl = None
        if tl is not None and tl.tasks:
            if orientation is None:
                from medal.data import load_volume

                orientation = load_volume(tl.image_path(tl.tasks[0])).orientation
            # the reserve queue (selection.reserve) is the file's last tasks: optional, counted apart
            n_res = tl.n_reserve
            main = [t for t in tl.budget_tasks if not t.qc_of]
            reserve = tl.tasks[len(tl.tasks) - n_res:]
            classes = Counter(lmap.name(lmap.values[_dominant_class(t, lmap.n_classes)]) for t in main)
            entry["chosen"] = {
                "tasks": len(main), "qc_tasks": len(tl.tasks) - n_res - len(main),
                "reserve_tasks": n_res, "reserve_done": sum(t.status == "done" for t in reserve),
                "cases": len({t.case_id for t in main}),
                "per_case_max": max(Counter(t.case_id for t in main).values()) if main else 0,
                "per_plane": dict(Counter(_plane(t, orientation) for t in main)),
                "per_class": dict(classes),
                "with_predicted_foreground": (sum(_dominant_class(t, lmap.n_classes) > 0 for t in main) / len(main))
                if main else None,
                "fallback": tl.meta.get("fallback"),
                "novelty": (tl.meta.get("novelty") or {}).get("message")}
        sp = round_spending(rd)
        entry["budget_s"] = (man.get("budget") or {}).get("budget_s")
        entry["predicted_s"] = (man.get("budget") or {}).get("predicted_s")
        entry["logged"] = sp
        held = (man.get("metrics") or {}).get("holdout") or {}
        entry["holdout"] = {"dice": held.get("dice"), "cases": held.get("cases", 0), "voxels": held.get("voxels", 0),
                            "interval_90": list(bootstrap_mean(held.get("per_case", {}).values()))
                            if held.get("per_case") else None, "per_case": held.get("per_case", {})}
        entry["pool_entropy"] = (man.get("metrics") or {}).get("pool_entropy")
        pa = (man.get("metrics") or {}).get("prediction_agreement") or {}
        window = cfg.report.agreement_window_s
        if man.get("round") and float(pa.get("window_s") or 0.0) != float(window):
            # recorded against another reference round (an older run, or a changed report.agreement_window_s):
            # read it again from the rounds' saved predictions, as the loop would now
            from medal.loop import pool_agreement

            pa = pool_agreement(run_dir, int(man["round"]), (man.get("inputs") or {}).get("pool") or [], dataset,
                                window)
        entry["agreement"] = pa.get("agreement")
        entry["agreement_against"] = pa.get("against")
        entry["agreement_span_s"] = pa.get("span_s")
        entry["calibration"] = (man.get("metrics") or {}).get("calibration")
        entry["spacing"] = (man.get("checkpoint") or {}).get("spacing")
        entry["orientation"] = (man.get("checkpoint") or {}).get("orientation")
        entry["strides"] = (man.get("checkpoint") or {}).get("strides")
        entry["intensity"] = (man.get("checkpoint") or {}).get("intensity")
        entry["qc"] = _read(rd / "ingest.json").get("qc", [])
        rounds.append(entry)
        logged_before += sp["charged_s"] if sp["logged"] else 0.0
    rcfg = cfg.report
    return {"run": str(run_dir), "dataset": str(dataset.root), "labels": lmap.to_json(), "rounds": rounds,
            "logged_s": logged_before, "agreement": _agreement_summary(rounds), "flags": _flags(run_dir, dataset, rcfg),
            "verdict": verdict_after(rounds, rcfg).to_json()}


def verdict_after(rounds: list[dict], report_cfg):
    """The stopping verdict (:func:`medal.report.stopping.decide`) after the last of ``rounds`` (entries of
    :func:`collect_run`'s ``rounds``) under ``report_cfg`` (the config's ``report`` section); a prefix of
    the list gives the verdict the report showed after that round."""
    from medal.report.stopping import decide

    return decide([{"seconds": r["seconds_at_training"] or None, "dice": r["holdout"]["dice"],
                    "per_case": r["holdout"]["per_case"], "pool_entropy": r["pool_entropy"],
                    "budget_s": r["budget_s"], "agreement": r.get("agreement"),
                    "agreement_span_s": r.get("agreement_span_s")} for r in rounds],
                  min_gain=report_cfg.min_gain, plateau_rounds=report_cfg.plateau_rounds,
                  max_pool_entropy=report_cfg.max_pool_entropy, total_budget_s=report_cfg.total_budget_s,
                  min_agreement=report_cfg.min_agreement)


def _agreement_summary(rounds: list[dict]) -> dict:
    per_class: dict[str, list] = {}
    per_pair: dict[str, list] = {}
    for r in rounds:
        for q in r["qc"]:
            vals = [v for v in q["dice"].values() if v is not None]
            for name, v in q["dice"].items():
                if v is not None:
                    per_class.setdefault(name, []).append(v)
            if vals:
                pair = " / ".join(sorted([q.get("first_user") or "?", q.get("qc_user") or "?"]))
                per_pair.setdefault(pair, []).append(float(np.mean(vals)))
    return {"tasks": sum(len(r["qc"]) for r in rounds),
            "per_class": {k: {"mean_dice": float(np.mean(v)), "tasks": len(v)} for k, v in per_class.items()},
            "per_user_pair": {k: {"mean_dice": float(np.mean(v)), "tasks": len(v)} for k, v in per_pair.items()}}


def _flags(run_dir: Path, dataset, rcfg) -> list[dict]:
    """Finished tasks whose labels the latest model contradicts with high confidence (for review)."""
    from medal.data import load_volume
    from medal.report.quality import confident_disagreement
    from medal.tasks import TaskError, read_tasks, task_region
    from medal.uncertainty.score import load_probs

    rounds = [rd for rd in _rounds(run_dir) if (rd / "scores").is_dir()]
    if not rounds:
        return []
    latest = rounds[-1] / "scores"
    out, labels, probs = [], {}, {}
    for rd in _rounds(run_dir)[:-1] + [run_dir / "round_init"]:
        try:
            tl = read_tasks(rd / "tasks.json")
        except TaskError:
            continue
        for t in tl.tasks:
            if t.status != "done" or t.qc_of:
                continue
            lab_p, prob_p = run_dir / "labels" / f"{t.case_id}.nii.gz", latest / t.case_id / "probs.nii.gz"
            if not lab_p.is_file() or not prob_p.is_file():
                continue
            if t.case_id not in labels:
                labels[t.case_id] = dataset.label_map.to_index(load_volume(lab_p).array)
                probs[t.case_id] = load_probs(prob_p)
            region = task_region(t, labels[t.case_id].shape, tl)
            share, n = confident_disagreement(labels[t.case_id][region], probs[t.case_id][:, region],
                                              confidence=rcfg.flag_confidence)
            if n >= 20 and share > rcfg.flag_share:
                out.append({"round": rd.name, "task_id": t.task_id, "case_id": t.case_id, "where": t.label,
                            "disagreement": share, "confident_voxels": n})
    return sorted(out, key=lambda f: -f["disagreement"])


def _plots(data: dict, out: Path) -> list[str]:
    from medal.report.plots import _pyplot, learning_curves, save_figure
    from medal.report.stopping import power_law

    plt = _pyplot()
    rounds = data["rounds"]
    files = []
    pts = [(r["seconds_at_training"], r["holdout"]["dice"], *(r["holdout"]["interval_90"] or [r["holdout"]["dice"]] * 2))
           for r in rounds if r["holdout"]["dice"] is not None]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    if pts:
        x, y, lo, hi = (np.array(v, float) for v in zip(*pts))
        fit = None
        curve = data["verdict"]["rules"].get("learning_curve", {})
        if curve.get("params"):
            p = curve["params"]
            xs = np.linspace(max(x.min(), 1.0), x.max() + (curve.get("round_budget_s") or 0), 80)
            fit = (xs, power_law(xs, p["a"], p["b"], p["c"]))
        learning_curves(ax, {"held-out Dice (90% interval over cases)": [(x, y, lo, hi)]}, fit=fit,
                        fit_label="fitted a - b s^-c, one round ahead")
    else:
        ax.text(0.5, 0.5, "no held-out Dice yet\n(training.holdout = 0, or no held-out slice annotated)",
                ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("expert seconds logged before the round's training")
    ax.set_ylabel("Dice on held-out annotated slices")
    ax.set_title("Learning curve")
    fig.tight_layout()
    files.append(save_figure(fig, out / "learning_curve.png").name)

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), dpi=100)
    names = [r["round"][-3:] for r in rounds]
    idx = np.arange(len(rounds))
    pred = [r["predicted_s"] or 0 for r in rounds]
    logged = [r["logged"]["charged_s"] if r["logged"]["logged"] else np.nan for r in rounds]
    axes[0].bar(idx - 0.2, pred, 0.4, label="predicted")
    axes[0].bar(idx + 0.2, logged, 0.4, label="logged")
    axes[0].plot(idx, [r["budget_s"] or 0 for r in rounds], "k_", ms=20, label="budget")
    axes[0].set_title("seconds per round")
    axes[0].legend(fontsize=8)
    classes = sorted({c for r in rounds for c in (r.get("chosen") or {}).get("per_class", {})})
    bottom = np.zeros(len(rounds))
    for c in classes:
        v = np.array([(r.get("chosen") or {}).get("per_class", {}).get(c, 0) for r in rounds], float)
        axes[1].bar(idx, v, 0.6, bottom=bottom, label=c)
        bottom += v
    axes[1].set_title("tasks by predicted class")
    axes[1].legend(fontsize=8)
    axes[2].plot(idx, [r["pool_entropy"] if r["pool_entropy"] is not None else np.nan for r in rounds], "o-")
    axes[2].set_title("mean entropy of the unannotated pool")
    for a in axes:
        a.set_xticks(idx)
        a.set_xticklabels(names)
        a.set_xlabel("round")
        a.grid(alpha=0.3)
    fig.tight_layout()
    files.append(save_figure(fig, out / "rounds.png").name)
    calibrated = [r for r in rounds if r.get("calibration")]
    if calibrated:  # reliability diagram of the latest model, before and after temperature scaling
        cal = calibrated[-1]["calibration"]
        fig, ax = plt.subplots(figsize=(4.6, 4.2), dpi=110)
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, label="perfect calibration")
        for name, style in (("before", "o--"), ("after", "s-")):
            rel = cal[f"reliability_{name}"]
            keep = np.asarray(rel["count"]) > 0
            temp = 1.0 if name == "before" else cal["temperature"]
            ax.plot(np.asarray(rel["confidence"])[keep], np.asarray(rel["accuracy"])[keep], style,
                    label=f"T = {temp:.2f} (ECE {cal[f'ece_{name}']:.4f})")
        ax.set_xlabel("confidence of the predicted class")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{calibrated[-1]['round']}: validation voxels ({cal['voxels']})")
        ax.legend(fontsize=8)
        files.append(save_figure(fig, out / "reliability.png").name)
    return files


def _markdown(data: dict, plots: list[str]) -> str:
    v = data["verdict"]
    lines = [f"# medal run report: {data['run']}", "",
             f"**Recommendation: {v['decision']}.** " + " ".join(r[0].upper() + r[1:] + "." for r in v["reasons"]), "",
             f"- dataset: {data['dataset']} (labels {', '.join(str(x) for x in data['labels']['values'])})",
             f"- rounds: {len(data['rounds'])}; expert seconds logged: {data['logged_s']:.0f}"]
    spaced = [(r["round"], r["spacing"]) for r in data["rounds"] if r.get("spacing")]
    if spaced:
        lines.append("- network voxel spacing (data.spacing; predictions and tasks on each case's own grid): " + "; ".join(
            f"{name} {' x '.join(f'{v:g}' for v in sp)} mm" for name, sp in spaced))
    strided = [(r["round"], r["strides"]) for r in data["rounds"] if r.get("strides")]
    if strided and any(isinstance(v, list) for _, st in strided for v in st):  # per-axis: worth a line
        lines.append("- network down-sampling per stage (model.strides, per array axis where not 2 on every axis): "
                     + "; ".join(f"{name} {st}" for name, st in strided))
    oriented = sorted({r["orientation"] for r in data["rounds"] if r.get("orientation")})
    if oriented:
        lines.append(f"- network orientation (data.orientation; each case flipped and permuted to it, tasks on the "
                     f"case's own axes): {', '.join(oriented)}")
    from medal.data.intensity import SETTLED_CASES

    windows = [(r["round"], k, s) for r in data["rounds"] for k, s in enumerate(r.get("intensity") or [])
               if isinstance(s, dict) and s.get("scheme") == "ct"]
    if windows:
        lines.append("- CT window (data.normalize; clip and z-score, from the painted foreground): " + "; ".join(
            f"{name} channel {k} [{s['lo']:.0f}, {s['hi']:.0f}] from {s.get('cases', '?')} case(s)"
            + (" (provisional)" if s.get("source") != "foreground" or int(s.get("cases", 0)) < SETTLED_CASES else "")
            for name, k, s in windows))
    lines += ["",
             "| round | tasks (cases, most per case) | planes | predicted class | with predicted fg | predicted s "
             "| logged s (tasks) | held-out Dice [90%] (cases, voxels) | pool entropy | pool predictions vs earlier round |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in data["rounds"]:
        ch = r.get("chosen") or {}
        held = r["holdout"]
        dice = "n/a" if held["dice"] is None else (
            f"{held['dice']:.3f} [{held['interval_90'][0]:.3f}, {held['interval_90'][1]:.3f}] "
            f"({held['cases']}, {held['voxels']})")
        lg = r["logged"]
        lines.append(
            f"| {r['round']} | {ch.get('tasks', 0)}" + (f" + {ch['qc_tasks']} QC" if ch.get("qc_tasks") else "")
            + (f" + reserve {ch.get('reserve_done', 0)} of {ch['reserve_tasks']} painted" if ch.get("reserve_tasks") else "")
            + f" ({ch.get('cases', 0)}, {ch.get('per_case_max', 0)}) | "
            + ", ".join(f"{k} {n}" for k, n in (ch.get("per_plane") or {}).items()) + " | "
            + ", ".join(f"{k} {n}" for k, n in (ch.get("per_class") or {}).items()) + " | "
            + ("n/a" if ch.get("with_predicted_foreground") is None else f"{100 * ch['with_predicted_foreground']:.0f}%")
            + f" | {r['predicted_s'] or 0:.0f} | "
            + (f"{lg['charged_s']:.0f} ({lg['logged']})" if lg["logged"] else "not logged yet")
            + f" | {dice} | " + ("n/a" if r["pool_entropy"] is None else f"{r['pool_entropy']:.4f}")
            + " | " + ("n/a" if r.get("agreement") is None else f"{r['agreement']:.3f}" + (
                f" (vs {r['agreement_against']}, {r['agreement_span_s']:.0f} s)" if r.get("agreement_against") else ""))
            + " |")
    cal = [(r["round"], r["calibration"]) for r in data["rounds"] if r.get("calibration")]
    if cal:
        lines += ["", "Calibration (temperature scaling on the validation cases' annotated voxels; ECE of the "
                      "predicted class, before -> after): " + "; ".join(
                          f"{name} T = {c['temperature']:.2f}, ECE {c['ece_before']:.4f} -> {c['ece_after']:.4f}"
                          for name, c in cal)]
    nov = [(r["round"], (r.get("chosen") or {}).get("novelty")) for r in data["rounds"]]
    if any(m for _, m in nov):
        lines += ["", "Novelty part (selection.novelty_share: auto): " + "; ".join(
            f"{name}: {m}" for name, m in nov if m)]
    lines += ["", "Stopping rules (medal/report/stopping.py):", ""]
    for name, rule in v["rules"].items():
        lines.append(f"- {name}: {'fired' if rule.get('fired') else 'not fired'}; "
                     + json.dumps({k: val for k, val in rule.items() if k not in ('fired',)}, default=str)[:300])
    ag = data["agreement"]
    lines += ["", f"Label quality control: {ag['tasks']} re-annotated task(s)."]
    if ag["tasks"]:
        lines.append("Agreement (Dice) per class: " + ", ".join(f"{k} {x['mean_dice']:.3f} ({x['tasks']})"
                                                                for k, x in ag["per_class"].items()))
        lines.append("Per annotator pair: " + ", ".join(f"{k} {x['mean_dice']:.3f} ({x['tasks']})"
                                                        for k, x in ag["per_user_pair"].items()))
    lines += ["", f"Flagged for review ({len(data['flags'])}): finished tasks whose labels the latest model contradicts "
                  "with >= 95% confidence on more than the set share of their voxels."]
    for f in data["flags"][:20]:
        lines.append(f"- {f['round']}/{f['task_id']} {f['where']}: {100 * f['disagreement']:.0f}% of "
                     f"{f['confident_voxels']} confident voxels disagree")
    lines += [""] + [f"![{p}](report/{p})" for p in plots] + [""]
    return "\n".join(lines)


def write_run_report(run_dir, dataset, cfg) -> Path:
    """Write ``RUN/report.md``, ``RUN/report.json`` and ``RUN/report/*.png``; returns the markdown's path."""
    run_dir = Path(run_dir)
    data = collect_run(run_dir, dataset, cfg)
    plots = _plots(data, run_dir / "report")
    atomic_write_text(run_dir / "report.json", json.dumps(data, indent=1, default=float))
    md = run_dir / "report.md"
    atomic_write_text(md, _markdown(data, plots))
    return md
