"""How often does ``selection.novelty_share: auto`` turn the novelty part on, with a new site and without one?

    python benchmarks/novelty_trigger.py DATA --groups GROUPS.json --initial-groups A B [--draws 300] [--runs DIR ...]
        [--medal-starts 300 [--medal-starts-new-site]] [--levels 0.05 0.07 0.1] [--gap-levels 1.5 2 3]

The trigger (:func:`medal.selection.strategies.far_case_test`) asks, at each selection, whether a block of
unlabelled cases lies farther, in the cold start's slice encoder, from the labelled cases than any labelled case
does. Its first decision needs no model: it depends only on the first labels and the pool's images. This draws
``--draws`` random starts of ``--slices`` random axial slices over the pool side of the split (the tuning split by
default) two ways, and counts how often the trigger fires:

- from the cases of ``--initial-groups`` only: the other groups are a site none of whose cases is labelled
  (``label_efficiency.py --initial-groups``, the new-site protocol; it should fire);
- from every case: every site is labelled (it should fire about as often as its level, 5%, or less).

``--medal-starts N`` adds a third row: N of medal's own random starts over every case, chosen as
``label_efficiency.py``'s main protocol chooses a seed's first labels (300 s of random slices at their true
cost, painted in order under the clock), the start whose level matters for the recorded runs.

``--medal-starts-new-site`` adds a fourth: the same N starts drawn from the cases of ``--initial-groups`` only, as
``label_efficiency.py --initial-groups`` chooses them (the new-site protocol's start). ``--levels`` gives every
row's fire rate at several trigger levels (``selection.novelty_alpha``) from the same draws: a start fires where its
``p`` is below the level, so one set of draws answers every level. ``--gap-levels`` does the same for a second way to fire: the
third-farthest open case lying beyond G times the farthest labelled case's distance (``far_case_test``'s ``gap``: how
far a block lies, where the rank test only counts it).

``--runs`` adds the labels recorded by earlier ``label_efficiency.py`` runs as they were: the first labels
(``RUN/initial/seed_*/tasks.json``, the first selection's decision) and those plus the default row's first round
(``RUN/default/seed_*/round_001/tasks.json``, its finished tasks: the second selection's decision, had that run
used ``auto``; the labels are then no longer a random draw, so the level is no longer exact). It trains nothing but the encoder (cached per dataset, as the cold start caches it) and touches no
test case. The last line gives both fire rates.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def embed(data, cases):
    """The cold start's default representation of every axial slice of ``cases``: (z, owner, inner)."""
    from medal.coldstart import select as S
    from medal.config import ColdstartConfig, DataConfig

    cfg = ColdstartConfig()
    volumes, vol_axes, good, owner, idx, *_ = S._describe(data, cases, cfg, DataConfig(), ["2"])
    z, _ = S._representation(volumes, vol_axes, good, cfg)
    owner, idx = np.asarray(owner), np.asarray(idx, dtype=np.float64)
    extent: dict = {}
    for o, i in zip(owner, idx):
        extent[o] = max(extent.get(o, 0.0), i + 1.0)
    pos = (idx + 0.5) / np.array([extent[o] for o in owner])
    inner = (pos >= cfg.edge_margin) & (pos <= 1.0 - cfg.edge_margin)  # as add_novelty reads the table
    return z, owner, idx.astype(np.int64), inner


def fire_rate(z, owner, inner, eligible: np.ndarray, *, draws: int, slices: int, seed: int = 0) -> dict:
    """Random starts of ``slices`` slices among the ``eligible`` ones; how often the trigger fires."""
    from medal.selection.strategies import far_case_test

    rng = np.random.default_rng(seed)
    fired, far, p, gap = [], [], [], []  # fired at the shipped level; --levels re-reads p, --gap-levels gap
    for _ in range(draws):
        pick = rng.choice(np.flatnonzero(eligible), slices, replace=False)
        t = far_case_test(z, owner, inner, set(owner[pick].tolist()))
        fired.append(t.fired)
        far.append(len(t.far_cases))
        p.append(t.p)
        gap.append(t.gap)
    lo, hi = wilson(int(np.sum(fired)), draws)
    return {"draws": draws, "fired": float(np.mean(fired)), "fired_ci95": [lo, hi],
            "far_cases_median": float(np.median(far)), "p_median": float(np.median(p)), "p": [float(x) for x in p],
            "gap": [float(x) for x in gap]}


def at_levels(row: dict, levels) -> dict:
    """A row's fire rate (and 95% Wilson interval) at each trigger level: the share of its draws with ``p`` below."""
    p = np.asarray(row["p"])
    out = {}
    for a in levels:
        k = int(np.sum(p < a))
        out[f"{a:g}"] = {"fired": k / len(p), "fired_ci95": list(wilson(k, len(p)))}
    return out


def at_gap_levels(row: dict, gap_levels, alpha: float) -> dict:
    """A row's fire rate where the trigger also fires on its gap (``far_case_test``'s ``gap`` above ``g``), for each
    ``g``: ``gap`` alone and together with the rank test at ``alpha`` (either fires)."""
    p, gap = np.asarray(row["p"]), np.asarray(row["gap"])
    out = {}
    for g in gap_levels:
        alone, either = int(np.sum(gap > g)), int(np.sum((gap > g) | (p < alpha)))
        out[f"{g:g}"] = {"gap_alone": alone / len(p), "either": either / len(p),
                         "either_ci95": list(wilson(either, len(p))), "added_to_rank": int(np.sum((gap > g) & (p >= alpha)))}
    return out


def protocol_config(config, *, initial_budget: float = 300.0, budget: float = 600.0, timed: float = 8.0):
    """``config`` as ``label_efficiency.py --initial-budget 300 --budget 600 --timed 8`` runs it (the main protocol)."""
    import dataclasses

    from medal.config import load_config

    cfg = load_config(config)
    return dataclasses.replace(
        cfg, selection=dataclasses.replace(cfg.selection, budget_s=budget, reserve=timed),
        simulation=dataclasses.replace(cfg.simulation, timed=True, initial_budget_s=initial_budget))


def medal_start_rate(z, owner, inner, dataset, pool, cfg, seeds) -> dict:
    """medal's own random start for each seed, chosen exactly as a simulation chooses a seed's first labels
    (``simulate._prepare_initial``: random slices at their true cost, painted in order under the clock until the
    initial budget), and how often the trigger fires on the cases it labels. ``z``/``owner``/``inner`` as
    :func:`embed` returns them for ``pool``'s cases."""
    import tempfile

    from medal.costs import CostModel
    from medal.selection.strategies import far_case_test
    from medal.simulation.simulate import _prepare_initial

    cost_model = CostModel.load(cfg.costs.model) if cfg.costs.model else CostModel.default(dataset.n_classes)
    fired, far, p, n_cases, gap = [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="medal-starts-") as tmp:
        for seed in seeds:
            cache = Path(tmp) / f"seed_{seed}"
            _prepare_initial(dataset, list(pool), cfg, int(seed), cost_model, cache)
            ann = {t["case_id"] for t in json.loads((cache / "tasks.json").read_text())["tasks"]}
            t = far_case_test(z, owner, inner, ann)
            fired.append(t.fired)
            far.append(len(t.far_cases))
            p.append(t.p)
            gap.append(t.gap)
            n_cases.append(len(ann))
    lo, hi = wilson(int(np.sum(fired)), len(fired))
    return {"draws": len(fired), "fired": float(np.mean(fired)), "fired_ci95": [lo, hi],
            "far_cases_median": float(np.median(far)), "p_median": float(np.median(p)),
            "labelled_cases_median": float(np.median(n_cases)), "seeds": [int(s) for s in seeds],
            "labelled_cases": [int(n) for n in n_cases], "p": [float(x) for x in p], "gap": [float(x) for x in gap]}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a rate ``k / n`` (Wilson, JASA 1927): a fire rate's Monte Carlo error over its
    draws (300 draws of one seed gave 9% on the original images, other seeds 4-6%)."""
    if n <= 0:
        return 0.0, 1.0
    r = k / n
    mid = (r + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(r * (1 - r) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, mid - half)), float(min(1.0, mid + half))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="a dataset folder (imagesTr/labelsTr/dataset.json)")
    ap.add_argument("--groups", required=True, help="JSON: case id -> group name (derive_sites.py's sites.json)")
    ap.add_argument("--initial-groups", nargs="+", required=True, metavar="GROUP",
                    help="the groups the new-site starts draw from")
    ap.add_argument("--split", default=str(HERE / "hippocampus_tuning_split.json"),
                    help="split file whose pool side is read (default: the tuning split)")
    ap.add_argument("--draws", type=int, default=300)
    ap.add_argument("--slices", type=int, default=20, help="slices per random start (a 300 s start holds ~20)")
    ap.add_argument("--runs", nargs="*", default=[], help="label_efficiency.py output folders: their first labels")
    ap.add_argument("--medal-starts", type=int, default=0, metavar="N",
                    help="also N of medal's own random starts, chosen as label_efficiency.py's main protocol chooses "
                         "them (--config, 300 s under the clock), from every case (needs the labels: true costs)")
    ap.add_argument("--medal-starts-new-site", action="store_true",
                    help="with --medal-starts: also the same seeds' starts from the --initial-groups cases only (the "
                         "new-site protocol, label_efficiency.py --initial-groups)")
    ap.add_argument("--levels", type=float, nargs="+", default=None, metavar="ALPHA",
                    help="also each row's fire rate at these trigger levels (selection.novelty_alpha)")
    ap.add_argument("--gap-levels", type=float, nargs="+", default=None, metavar="G",
                    help="also each row's fire rate where the trigger fires on far_case_test's gap above G too "
                         "(the third-farthest open case beyond G times the farthest labelled one's distance)")
    ap.add_argument("--start-seed", type=int, default=1000, help="first seed of --medal-starts (default 1000: "
                    "no recorded run used it)")
    ap.add_argument("--config", default=str(HERE.parent / "configs" / "label_efficiency_cpu.yaml"),
                    help="the config --medal-starts reads (default: label_efficiency_cpu.yaml)")
    ap.add_argument("--results-name", default="novelty_trigger")
    ap.add_argument("--no-record", action="store_true", help="print only")
    args = ap.parse_args(argv)
    levels = sorted(set(args.levels or []))
    if any(not 0 < a <= 1 for a in levels):
        sys.exit(f"--levels: each level must lie in (0, 1], got {levels}")
    from _record import record
    from site_distance import read_groups_and_pool

    from medal.data import load_dataset
    from medal.selection.strategies import GAP_CASES, NOVELTY_ALPHA, far_case_test

    groups, pool = read_groups_and_pool(args.groups, args.split)
    unknown = sorted(set(args.initial_groups) - set(groups.values()))
    if unknown:
        sys.exit(f"{args.groups}: no case is in group(s) {unknown}")
    ds = load_dataset(args.data)
    cases = [c for c in ds.cases if c.case_id in pool and c.case_id in groups]
    if not cases:
        sys.exit(f"{args.groups}: no pool case of {args.split} is named in it")
    z, owner, idx, inner = embed(ds, cases)
    start = np.isin([groups[o] for o in owner], args.initial_groups)
    rows = {"new site (start from " + "+".join(args.initial_groups) + ")":
            fire_rate(z, owner, inner, start, draws=args.draws, slices=args.slices),
            "every site labelled (start from all)":
            fire_rate(z, owner, inner, np.ones(len(owner), bool), draws=args.draws, slices=args.slices)}
    if args.medal_starts:
        seeds = range(args.start_seed, args.start_seed + args.medal_starts)
        try:
            cfg = protocol_config(args.config)
        except (OSError, ValueError) as exc:
            sys.exit(f"{args.config}: {exc}")
        rows[f"medal's random start, every site (seeds {seeds[0]}-{seeds[-1]})"] = medal_start_rate(
            z, owner, inner, ds, [c.case_id for c in cases], cfg, seeds)
        if args.medal_starts_new_site:
            first = [c.case_id for c in cases if groups[c.case_id] in args.initial_groups]
            rows[f"medal's random start from {'+'.join(args.initial_groups)} only (seeds {seeds[0]}-{seeds[-1]})"] = (
                medal_start_rate(z, owner, inner, ds, first, cfg, seeds))
    n_cases = {g: sum(groups[c.case_id] == g for c in cases) for g in sorted(set(groups[c.case_id] for c in cases))}
    recorded = []
    where = {(o, int(i)): n for n, (o, i) in enumerate(zip(owner, idx))}
    for run in args.runs:
        for f in sorted(Path(run).glob("initial/seed_*/tasks.json")):
            try:
                tasks = json.loads(f.read_text())["tasks"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                print(f"SKIPPED {f}: cannot be read ({type(exc).__name__})", file=sys.stderr)
                continue
            ann = {t["case_id"] for t in tasks if t.get("kind") == "slice" and (t["case_id"], int(t["index"])) in where}
            seed = f.parent.name.split("_")[1]
            t = far_case_test(z, owner, inner, ann)
            entry = {"run": str(run), "seed": seed, "fired": t.fired, "p": t.p, "far_cases": len(t.far_cases),
                     "far_of_other_groups": sum(groups.get(c) not in args.initial_groups for c in t.far_cases)}
            r1 = Path(run) / "default" / f"seed_{seed}" / "round_001" / "tasks.json"
            try:
                more = {t["case_id"] for t in json.loads(r1.read_text())["tasks"]
                        if t.get("status") == "done" and (t["case_id"], int(t["index"])) in where}
            except (OSError, ValueError, KeyError, TypeError):
                more = None
            if more is not None:
                t2 = far_case_test(z, owner, inner, ann | more)
                entry["round_2"] = {"fired": t2.fired, "p": t2.p, "far_cases": len(t2.far_cases)}
            recorded.append(entry)
    lines = [f"- data `{args.data}`, groups `{args.groups}` ({', '.join(f'{g} {n}' for g, n in n_cases.items())} "
             f"pool cases), pool side of `{Path(args.split).name}`; {args.draws} random starts of {args.slices} axial "
             f"slices per row" + (f"; {args.medal_starts} of medal's own random starts (`{Path(args.config).name}`, "
                                  "300 s of random slices at their true cost under the clock, as "
                                  "`label_efficiency.py --initial-budget 300 --timed 8` chooses them)"
                                  if args.medal_starts else "") + f"; trigger level {NOVELTY_ALPHA}", "",
             "| start | fired (95% interval) | far cases (median) | p (median) |", "| --- | --- | --- | --- |"]
    for name, r in rows.items():
        lo, hi = r["fired_ci95"]
        lines.append(f"| {name} | {100 * r['fired']:.1f}% ({100 * lo:.1f}-{100 * hi:.1f}%) | "
                     f"{r['far_cases_median']:.0f} | {r['p_median']:.3g} |")
    if levels:
        lines += ["", "| start | " + " | ".join(f"fired at level {a:g}" for a in levels) + " |",
                  "| --- |" + " --- |" * len(levels)]
        for name, r in rows.items():
            r["levels"] = at_levels(r, levels)
            lines.append(f"| {name} | " + " | ".join(
                f"{100 * v['fired']:.1f}% ({100 * v['fired_ci95'][0]:.1f}-{100 * v['fired_ci95'][1]:.1f}%)"
                for v in r["levels"].values()) + " |")
    gap_levels = sorted(set(args.gap_levels or []))
    if gap_levels:
        lines += ["", f"Rank test at {NOVELTY_ALPHA} or gap above G (the {GAP_CASES}-th farthest open case's distance over "
                  "the farthest labelled case's): fire rate, and in brackets the gap alone / starts the gap adds",
                  "", "| start | gap (median) | " + " | ".join(f"G = {g:g}" for g in gap_levels) + " |",
                  "| --- | --- |" + " --- |" * len(gap_levels)]
        for name, r in rows.items():
            r["gap_levels"] = at_gap_levels(r, gap_levels, NOVELTY_ALPHA)
            lines.append(f"| {name} | {np.median(r['gap']):.2f} | " + " | ".join(
                f"{100 * v['either']:.1f}% ({100 * v['gap_alone']:.1f}% / +{v['added_to_rank']})"
                for v in r["gap_levels"].values()) + " |")
    if recorded:
        lines += ["", "| recorded run (`--runs`) | seeds | fired at the first selection | fired at the second (after "
                      "the default's round 1) |", "| --- | --- | --- | --- |"]
        for run in dict.fromkeys(r["run"] for r in recorded):
            mine = [r for r in recorded if r["run"] == run]
            two = [r["round_2"] for r in mine if "round_2" in r]
            ps = ", ".join(f"{r['p']:.2g}" for r in mine)
            lines.append(f"| {Path(run).name} | {', '.join(r['seed'] for r in mine)} | "
                         f"{sum(r['fired'] for r in mine)}/{len(mine)} (p: {ps}) | "
                         + (f"{sum(x['fired'] for x in two)}/{len(two)}" if two else "n/a") + " |")
    for line in lines:
        print(line)
    if not args.no_record:
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / f"{args.results_name}.json").write_text(json.dumps(
            {"data": str(args.data), "groups": str(args.groups), "split": Path(args.split).name,
             "initial_groups": args.initial_groups, "alpha": NOVELTY_ALPHA, "slices": args.slices,
             "pool_cases": n_cases, "rows": rows, "recorded": recorded}, indent=1) + "\n")
        record("Novelty trigger: how often `novelty_share: auto` turns on, with a new site and without", lines)
    new, every = list(rows.values())[:2]
    tail = f", fire_rate_medal_starts: {list(rows.values())[2]['fired']:.3f}" if args.medal_starts else ""
    if args.medal_starts and args.medal_starts_new_site:
        tail += f", fire_rate_medal_starts_new_site: {list(rows.values())[3]['fired']:.3f}"
    print(f"fire_rate_new_site: {new['fired']:.2f}, fire_rate_every_site_labelled: {every['fired']:.2f}{tail}")
    return rows


if __name__ == "__main__":
    main()
