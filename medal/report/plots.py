"""The plots of medal's reports: one way to draw a learning curve, for a run and for a simulation."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["learning_curves", "save_figure"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> Path:
    """Write a figure atomically (a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp)
    _pyplot().close(fig)
    tmp.replace(path)
    return path


def learning_curves(ax, curves: dict, *, band: str = "std", fit=None, fit_label: str = ""):
    """Draw learning curves on ``ax``.

    ``curves``: label -> list of ``(x, y)`` arrays, one per seed (a simulation), or one
    ``(x, y, lo, hi)`` with an interval (a real run). Several seeds are drawn as their mean on a
    common grid with a +-1 std band and every seed's points; an interval as error bars. ``fit``: an
    optional ``(xs, ys)`` dashed line (a fitted learning curve and its extrapolation).
    """
    for label, runs in sorted(curves.items()):
        if len(runs) == 1 and len(runs[0]) == 4:
            x, y, lo, hi = (np.asarray(v, float) for v in runs[0])
            ax.errorbar(x, y, yerr=[y - lo, hi - y], fmt="o-", capsize=3, label=label)
            continue
        grid = np.linspace(min(r[0][0] for r in runs), max(r[0][-1] for r in runs), 60)
        ys = np.stack([np.interp(grid, x, y) for x, y in runs])
        mean, std = ys.mean(0), ys.std(0)
        (line,) = ax.plot(grid, mean, label=f"{label} (n={len(runs)})")
        if band == "std" and len(runs) > 1:
            ax.fill_between(grid, mean - std, mean + std, color=line.get_color(), alpha=0.15)
        for x, y in runs:
            ax.plot(x, y, "o", ms=2.5, color=line.get_color(), alpha=0.6)
    if fit is not None:
        ax.plot(fit[0], fit[1], "--", color="grey", label=fit_label or "fitted curve")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
