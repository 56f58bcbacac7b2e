"""Where a run stands: per-round report, learning curve, stopping rules, label quality control."""

from .metrics import bootstrap_mean, holdout_dice, pool_uncertainty
from .quality import agreement, confident_disagreement
from .stopping import Verdict, decide, expected_gain, fit_power_law, plateau, power_law

__all__ = ["Verdict", "agreement", "bootstrap_mean", "confident_disagreement", "decide", "expected_gain",
           "fit_power_law", "holdout_dice", "plateau", "pool_uncertainty", "power_law", "write_run_report"]


def write_run_report(run_dir, dataset, cfg):
    """``RUN/report.md`` (+ ``report.json``, ``report/*.png``); see :mod:`medal.report.run_report`."""
    from .run_report import write_run_report as _write

    return _write(run_dir, dataset, cfg)
