"""Turning ``results.csv`` into learning curves, AUBC, paired comparisons and a markdown report."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np

from medal.data import atomic_write_text

__all__ = ["read_results", "aubc", "budget_to_reach", "group_summary", "seeds_for_power", "spending", "write_report"]


def read_results(path) -> list[dict]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k, v in r.items():
            if k != "strategy":
                r[k] = float(v) if v not in ("", None) else None
    return rows


def spending(rows, strategy: str) -> dict:
    """Predicted vs charged seconds of a strategy's selection rounds (rows with ``round >= 1`` carry
    the round that produced their labels), and the share of chosen units holding foreground."""
    mine = [r for r in rows if r["strategy"] == strategy and r["round"] >= 1 and r.get("round_charged_s") is not None]
    if not mine:
        return {}
    later = [r for r in mine if r["round"] >= 2]  # selections after the first: calibration had data
    tasks = sum(r.get("round_tasks") or 0 for r in mine)
    fg = sum(r.get("round_fg_tasks") or 0 for r in mine)

    def ratios(rs, key):
        return [r["round_charged_s"] / r[key] for r in rs if r.get(key)]

    return {
        "charged_over_predicted": [round(x, 4) for x in ratios(mine, "round_predicted_s")],
        "charged_over_budget": [round(x, 4) for x in ratios(mine, "round_budget_s")],
        "median_charged_over_budget_after_first": float(np.median(ratios(later, "round_budget_s"))) if later else None,
        "median_charged_over_predicted": float(np.median(ratios(mine, "round_predicted_s"))) if mine else None,
        "tasks": int(tasks), "foreground_share": fg / tasks if tasks else None,
    }


def _paired(a: dict, b: dict) -> dict:
    """Paired t-test of two {seed: value} maps over their common seeds (scipy's ``ttest_rel``)."""
    from scipy import stats

    common = sorted(set(a) & set(b))
    da, db = np.array([a[k] for k in common], float), np.array([b[k] for k in common], float)
    p = float(stats.ttest_rel(da, db).pvalue) if len(common) >= 2 and np.any(da != db) else float("nan")
    return {"seeds": len(common), "mean_diff": float((da - db).mean()) if common else float("nan"), "p_paired_t": p,
            "a_wins": int((da > db).sum()), "seeds_for_80pct_power": seeds_for_power(da - db) if common else None}


def group_summary(rows, groups: dict[str, list[str]] | None = None,
                  pool_groups: dict[str, list[str]] | None = None) -> dict:
    """Final Dice per group (``simulation.groups``: a site, a scanner) from the ``dice_group_NAME`` columns.

    Per strategy and group: the Dice of each seed's last round, and the group-balanced mean (each group
    counts once, however many test cases it has: a rare site weighs as much as the common one); paired
    t-tests over seeds between every two strategies, per group and on the balanced mean; with
    ``tasks_group_NAME`` columns, the units each strategy's selection rounds painted per group. The pool-wide
    mean Dice lets a rare group's curve vanish (5 of 40 test cases move it by an eighth of their change),
    so a question about that group is asked here. ``{}`` when the results have no group columns."""
    names = sorted({k[len("dice_group_"):] for r in rows for k in r if k.startswith("dice_group_")})
    if not names:
        return {}
    final: dict = {}
    for r in sorted(rows, key=lambda r: (r["strategy"], r["seed"], r["seconds"])):
        vals = {g: r.get(f"dice_group_{g}") for g in names}
        if any(v is None for v in vals.values()):
            continue  # a row from a run without the groups (a merge): it has nothing to say per group
        final.setdefault(r["strategy"], {})[int(r["seed"])] = vals  # sorted by seconds: the last row wins
    measures = names + ["balanced"]
    per = {s: {m: {seed: (float(np.mean(list(v.values()))) if m == "balanced" else float(v[m]))
                   for seed, v in seeds.items()} for m in measures} for s, seeds in final.items()}
    out: dict = {"names": names, "cases": {g: len((groups or {}).get(g, [])) for g in names} if groups else {},
                 "pool_cases": {g: len(pool_groups.get(g, [])) for g in names} if pool_groups else {},
                 "strategies": {s: {m: {"final_dice_mean": float(np.mean(list(v.values()))),
                                        "final_dice_per_seed": {str(k): round(x, 5) for k, x in sorted(v.items())}}
                                    for m, v in d.items()} for s, d in sorted(per.items())},
                 "pairwise": []}
    for a, b in itertools.combinations(sorted(per), 2):
        for m in measures:
            out["pairwise"].append({"group": m, "a": a, "b": b, **_paired(per[a][m], per[b][m])})
    # units the selection rounds painted per group (tasks_group_NAME; round 0's first labels left out)
    chosen: dict = {}
    for r in rows:
        if r["round"] >= 1 and all(r.get(f"tasks_group_{g}") is not None for g in names):
            seeds = chosen.setdefault(r["strategy"], {})
            for g in names:
                seeds.setdefault(g, {}).setdefault(int(r["seed"]), 0)
                seeds[g][int(r["seed"])] += int(r[f"tasks_group_{g}"])
    for s, d in chosen.items():
        for g, v in d.items():
            out["strategies"].setdefault(s, {}).setdefault(g, {}).update(
                selected_units_mean=float(np.mean(list(v.values()))),
                selected_units_per_seed={str(k): x for k, x in sorted(v.items())})
    return out


def _curves(rows, x: str, y: str = "dice_mean") -> dict[str, dict[int, tuple[np.ndarray, np.ndarray]]]:
    out: dict = {}
    for r in rows:
        out.setdefault(r["strategy"], {}).setdefault(int(r["seed"]), []).append((r[x], r[y]))
    return {s: {seed: tuple(map(np.array, zip(*sorted(v)))) for seed, v in d.items()} for s, d in out.items()}


def aubc(xs: np.ndarray, ys: np.ndarray, x_max: float) -> float:
    """Area under the budget curve on [x0, x_max], normalised by the width (a mean Dice over budgets).

    The curve is held flat after its last point (what was reached stays reached)."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    if x_max <= xs[0]:
        return float(ys[0])
    grid = np.linspace(xs[0], x_max, 200)
    return float(np.trapezoid(np.interp(grid, xs, ys), grid) / (x_max - xs[0]))


def budget_to_reach(xs, ys, target: float) -> float | None:
    """First budget at which the curve reaches ``target`` (linear interpolation), else None."""
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    hit = np.flatnonzero(ys >= target)
    if not len(hit):
        return None
    i = int(hit[0])
    if i == 0:
        return float(xs[0])
    f = (target - ys[i - 1]) / (ys[i] - ys[i - 1])
    return float(xs[i - 1] + f * (xs[i] - xs[i - 1]))


def seeds_for_power(differences, *, alpha: float = 0.05, power: float = 0.8, max_seeds: int = 1000) -> int | None:
    """Seeds a paired t-test needs to detect the observed mean difference with the given power.

    A planning figure, not a test: the mean and standard deviation of the per-seed differences
    ``a - b`` are taken as the true effect and spread, and the smallest ``n`` is returned at which a
    two-sided paired t-test at ``alpha`` rejects with probability ``>= power`` (the noncentral t
    distribution, as in G*Power's "difference between two dependent means"; Cohen 1988, ch. 2).
    ``None`` when the differences are all zero, their mean is zero, or more than ``max_seeds`` would
    be needed. With 2 seeds the spread itself is barely estimated: read the figure as an order of
    magnitude.
    """
    from scipy import stats

    d = np.asarray(differences, float)
    if d.size < 2:
        return None
    mean, sd = abs(float(d.mean())), float(d.std(ddof=1))
    if mean == 0.0:
        return None
    if sd == 0.0:
        return 2
    dz = mean / sd
    if ((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)) / dz) ** 2 > max_seeds:
        return None  # the normal approximation already needs more (it never overstates n)
    for n in range(2, max_seeds + 1):
        df = n - 1
        t = stats.t.ppf(1 - alpha / 2, df)
        nc = dz * np.sqrt(n)
        if stats.nct.sf(t, df, nc) + stats.nct.cdf(-t, df, nc) >= power:
            return n
    return None


def _plot(curves, xlabel: str, path: Path, title: str) -> None:
    from medal.report.plots import _pyplot, learning_curves, save_figure

    fig, ax = _pyplot().subplots(figsize=(6.4, 4.2), dpi=110)
    learning_curves(ax, {s: list(seeds.values()) for s, seeds in curves.items()})
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mean foreground Dice (test)")
    ax.set_title(title)
    fig.tight_layout()
    save_figure(fig, path)


def _group_lines(groups: dict, default_strategy: str) -> list[str]:
    """The report's per-group section: final Dice per strategy and group, the units painted per group
    (when the CSV counts them), then the paired tests that involve the default strategy (all pairs when it
    is not among the rows)."""
    names, cases, pool = groups["names"], groups.get("cases") or {}, groups.get("pool_cases") or {}
    head = [f"{g} ({cases[g]} cases)" if cases.get(g) else g for g in names] + ["group-balanced mean"]
    lines = ["", "Final Dice per group (`simulation.groups`; each seed's last round, mean over seeds):", "",
             "| strategy | " + " | ".join(head) + " |", "| --- |" + " --- |" * len(head)]
    for s, d in groups["strategies"].items():
        if "balanced" not in d:
            continue  # units counted, but no final Dice (not expected from medal simulate's own CSV)
        bold = "**" if s == default_strategy else ""
        lines.append(f"| {bold}{s}{bold} | " + " | ".join(f"{d[m]['final_dice_mean']:.4f}" for m in names + ["balanced"])
                     + " |")
    picked = {s: d for s, d in groups["strategies"].items() if all("selected_units_mean" in d.get(g, {}) for g in names)}
    if picked:
        lines += ["", "Units painted per group in the selection rounds (round 0's first labels left out; mean over "
                  "seeds):", "", "| strategy | " + " | ".join(
                      f"{g} ({pool.get(g, 0)} pool cases)" if pool else g for g in names) + " |",
                  "| --- |" + " --- |" * len(names)]
        for s, d in picked.items():
            lines.append(f"| {s} | " + " | ".join(f"{d[g]['selected_units_mean']:.1f}" for g in names) + " |")
    pairs = [p for p in groups["pairwise"] if default_strategy in (p["a"], p["b"])] or groups["pairwise"]
    lines += ["", "Paired comparison of final Dice per group over seeds (paired t-test):", "",
              "| group | A | B | mean(A - B) | A better in | p |", "| --- | --- | --- | --- | --- | --- |"]
    for p in pairs:
        lines.append(f"| {p['group']} | {p['a']} | {p['b']} | {p['mean_diff']:+.4f} | {p['a_wins']}/{p['seeds']} | "
                     f"{p['p_paired_t']:.3g} |")
    return lines


def write_report(results_csv, *, full_dice: float | None = None, default_strategy: str = "knapsack") -> Path:
    """Write ``dice_vs_seconds.png``, ``dice_vs_annotated.png``, ``summary.json`` and ``report.md``
    beside ``results_csv``; returns the report's path."""
    results_csv = Path(results_csv)
    out = results_csv.parent
    rows = read_results(results_csv)
    if not rows:
        raise ValueError(f"{results_csv}: no rows")
    meta_path = out / "simulation.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    by_sec, by_pct = _curves(rows, "seconds"), _curves(rows, "pct_slices")
    _plot(by_sec, "expert seconds spent (true cost)", out / "dice_vs_seconds.png", "Dice vs annotation time")
    _plot(by_pct, "% of pool slices annotated", out / "dice_vs_annotated.png", "Dice vs annotated slices")
    # common budget range: up to the largest final spend; a run that spent less is held at its last
    # Dice (it gets no credit for budget it did not use, and none is invented for it)
    x_max = max(x[-1] for seeds in by_sec.values() for x, _ in seeds.values())
    summary: dict = {"x_max_s": x_max, "strategies": {}}
    aubcs = {s: {seed: aubc(x, y, x_max) for seed, (x, y) in seeds.items()} for s, seeds in by_sec.items()}
    target = 0.95 * full_dice if full_dice else None
    for s, seeds in sorted(by_sec.items()):
        finals = {int(k): float(y[-1]) for k, (_, y) in seeds.items()}
        reach = [budget_to_reach(x, y, target) for x, y in seeds.values()] if target else []
        summary["strategies"][s] = {
            "aubc_mean": float(np.mean(list(aubcs[s].values()))), "aubc_std": float(np.std(list(aubcs[s].values()))),
            "final_dice_mean": float(np.mean(list(finals.values()))), "seeds": len(seeds),
            "aubc_per_seed": {str(k): float(v) for k, v in sorted(aubcs[s].items())},
            "final_dice_per_seed": {str(k): v for k, v in sorted(finals.items())},
            "seconds_to_95pct": None if not reach or any(r is None for r in reach) else float(np.mean(reach)),
            **spending(rows, s),
        }
    pairs = []
    for a, b in itertools.combinations(sorted(aubcs), 2):
        pairs.append({"a": a, "b": b, **_paired(aubcs[a], aubcs[b])})
    summary["pairwise"] = pairs
    if meta.get("start_mismatch"):  # merged runs whose round 0 differs for these seeds: the pairs are not paired
        summary["unpaired_seeds"] = sorted(int(k) for k in meta["start_mismatch"])
    groups = group_summary(rows, meta.get("groups"), meta.get("pool_groups"))
    if groups:
        summary["groups"] = groups
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1))

    full_cost = meta.get("full_annotation_cost_s")
    lines = ["# medal simulation report", ""]
    if meta:
        lines += [f"- pool: {len(meta['pool'])} cases, test: {len(meta['test'])} cases; annotating every pool slice "
                  f"would take {full_cost:.0f} s (true cost model on the ground truth)", ""]
    if meta.get("skipped"):
        lines += [f"- skipped {len(meta['skipped'])} case(s) that failed the dataset checks (simulation.json "
                  f"'skipped'): {', '.join(sorted(meta['skipped']))}", ""]
    if meta.get("merged_from"):
        lines += [f"- merged from {len(meta['merged_from'])} runs: {', '.join(meta['merged_from'])}", ""]
    if meta.get("resumed"):
        lines += [f"- resumed {meta['resumed']} time(s) (`medal simulate --resume`): finished runs kept, the rest "
                  "went on from their first unfinished step; painted tasks charged once", ""]
    if meta.get("deadline"):
        d = meta["deadline"]
        lines += [f"- **stopped by a deadline** ({d.get('at') or 'given'}): every row reported on rounds "
                  f"0..{d['rounds_reported']} of {meta['config']['simulation']['rounds']}; stopped early: "
                  f"{', '.join(d['runs_stopped'])} (`--resume` completes them)", ""]
    if meta.get("start_mismatch"):
        seeds = ", ".join(f"{seed} ({', '.join(f'{v:.4f}' for v in d.values())})"
                          for seed, d in meta["start_mismatch"].items())
        lines += [f"- **not paired: round 0 differs between the merged runs for seed(s) {seeds}**: the same seed "
                  "trained a different first model (another machine or install; see `environments` in "
                  "simulation.json), so those seeds' rows compare different starts", ""]
    if len(meta.get("environments") or []) > 1:
        lines += [f"- ran in {len(meta['environments'])} environments (versions, CPU: `environments` in "
                  "simulation.json)", ""]
    for folder, keys in (meta.get("merge_ignored") or {}).items():
        lines += [f"- config differences waved through (merge --ignore-config) in {folder}: {', '.join(keys)}", ""]
    if full_dice:
        lines += [f"- full-supervision reference Dice: {full_dice:.3f}; 95% of it: {target:.3f}", ""]
    lines += ["| strategy | seeds | AUBC (first labels to %.0f s) | final Dice | seconds to 95%% of full Dice | "
              "chosen units with foreground | charged / predicted s (median) |" % x_max,
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for s, v in summary["strategies"].items():
        reach = "not reached" if v["seconds_to_95pct"] is None else f"{v['seconds_to_95pct']:.0f} s" + (
            f" ({100 * v['seconds_to_95pct'] / full_cost:.1f}% of full cost)" if full_cost else "")
        bold = "**" if s == default_strategy else ""
        fg = "n/a" if v.get("foreground_share") is None else f"{100 * v['foreground_share']:.0f}%"
        ratio = "n/a" if v.get("median_charged_over_predicted") is None else f"{v['median_charged_over_predicted']:.2f}"
        lines.append(f"| {bold}{s}{bold} | {v['seeds']} | {v['aubc_mean']:.4f} ± {v['aubc_std']:.4f} | "
                     f"{v['final_dice_mean']:.4f} | {reach if full_dice else 'n/a'} | {fg} | {ratio} |")
    lines += ["", "Paired comparison of AUBC over seeds (paired t-test):", "",
              "| A | B | mean(A - B) | A better in | p | seeds for 80% power at this effect |",
              "| --- | --- | --- | --- | --- | --- |"]
    for p in pairs:
        n80 = p["seeds_for_80pct_power"]
        lines.append(f"| {p['a']} | {p['b']} | {p['mean_diff']:+.4f} | {p['a_wins']}/{p['seeds']} | {p['p_paired_t']:.3g} | "
                     f"{'n/a' if n80 is None else n80} |")
    if groups:
        lines += _group_lines(groups, default_strategy)
    lines += ["", "![Dice vs seconds](dice_vs_seconds.png)", "", "![Dice vs annotated](dice_vs_annotated.png)", ""]
    atomic_write_text(out / "report.md", "\n".join(lines))
    return out / "report.md"
