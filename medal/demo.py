"""``medal demo`` / ``make demo``: a short simulated active-learning run on the bundled sample.

Checks the bundled 20-case hippocampus sample, then simulates two selection rounds for medal's
default selection against ``random`` and ``fg_random`` with a small U-Net (CPU, a few minutes), with
the ground truth as the annotator, and writes the round folders (``tasks.json`` each),
``results.csv``, the learning-curve plots, ``report.md``, and the run report of the default's run
(``default/seed_0/report.md``: what ``medal report`` shows a team after every round).
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from medal.config import _merge, config_from_dict

__all__ = ["DEMO_SETTINGS", "QUICK_SETTINGS", "run_demo"]

#: The demo's configuration (small enough for two CPU cores in a few minutes). The selection is medal's
#: default (configs/default.yaml); the demo compares it with random and foreground-aware random.
DEMO_SETTINGS = {
    "model": {"channels": [8, 16, 32], "strides": [2, 2], "head_channels": 16, "dropout": 0.2},
    "training": {"patch_size": [32, 48, 32], "batch_size": 4, "max_epochs": 8, "iterations_per_epoch": 15,
                 "warm_epochs": 5, "val_fraction": 0.0, "learning_rate": 0.005},
    "uncertainty": {"mc_samples": 8, "measures": ["entropy", "bald"]},
    "selection": {"budget_s": 300.0},
    "simulation": {"strategies": ["random", "fg_random", "default"], "seeds": [0], "rounds": 2,
                   "initial_budget_s": 300.0, "test_fraction": 0.3, "workers": 2},
}


#: ``medal demo --quick``: the same pipeline with less training and fewer MC samples (about a minute on two
#: cores): a check that everything runs, not a comparison of strategies
QUICK_SETTINGS = {
    "training": {"max_epochs": 2, "warm_epochs": 1, "iterations_per_epoch": 6},
    "uncertainty": {"mc_samples": 2},
    "coldstart": {"encoder_steps": 60},  # the encoder selection.novelty_share: auto reads
}


def run_demo(out=None, *, quick: bool = False, log=print) -> dict:
    """Run the demo; returns the paths it wrote. ``quick``: :data:`QUICK_SETTINGS` (a smoke run)."""
    from medal.data import check_dataset, load_dataset, sample_dataset
    from medal.report import write_run_report
    from medal.simulation import simulate, write_report

    root = sample_dataset()
    report = check_dataset(root)
    log(report.summary())
    if not report.ok:
        raise ValueError(f"{root}: the bundled sample failed its check")
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(out) if out is not None else Path("runs") / f"demo-{stamp}"
    settings = _merge(DEMO_SETTINGS, QUICK_SETTINGS) if quick else DEMO_SETTINGS
    cfg = config_from_dict(settings, source="medal.demo.DEMO_SETTINGS" + (" + QUICK_SETTINGS" if quick else ""))
    if quick:
        log("quick: less training and fewer MC samples; a check that the pipeline runs, its figures compare nothing")
    log(f"simulating {cfg.simulation.rounds} rounds of {cfg.selection.budget_s:.0f} s for "
        f"{', '.join(cfg.simulation.strategies)} (default = {cfg.selection.strategy} on {cfg.regions.value}) "
        f"into {out} ...")
    ds = load_dataset(root)
    csv_path = simulate(ds, out, cfg, log=lambda row: log(f"  {row}"))
    md = write_report(csv_path, default_strategy="default")
    run_md = write_run_report(out / "default" / "seed_0", ds, cfg)  # what a team running medal round would see
    tasks = sorted(out.glob("*/seed_*/round_[0-9]*/tasks.json"))
    return {"out": out, "results": csv_path, "report": md, "run_report": run_md, "plots": sorted(out.glob("*.png")),
            "tasks": tasks}
