"""Selection strategies behind one registry, all spending the same budget of expert seconds.

``random``             units in random order, taken while they fit the budget.
``fg_random``          random, biased to predicted foreground (weighted sampling without replacement,
                       weight = 0.05 + predicted foreground fraction): nnActive's hard-to-beat baseline.
``topk``               highest score first, ignoring cost.
``knapsack``           most total score within the budget (0-1 knapsack on score and predicted seconds).
``knapsack+diversity`` knapsack over units that are also spread out: slices of one case at least
                       ``diversity_spacing`` apart, at most ``diversity_max_per_case`` units per case.

Constraints, honoured by every strategy: skip units already annotated beyond
``skip_annotated_above``; at most ``max_per_case`` units per case; chosen slices of one case and axis
at least ``min_slice_spacing`` apart; ``class_quota`` reserves a share of the budget for units whose
predicted dominant class is that class. The knapsack strategies first reduce the candidates to a set
in which every subset honours the spacing and per-case limits (best value/cost first), then solve the
knapsack exactly on it; the certificate (LP bound, gap) refers to that candidate set.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from medal.regions.table import RegionTable
from medal.selection.knapsack import knapsack

__all__ = ["STRATEGIES", "Selection", "select", "get_strategy", "dominant_class"]


@dataclass(frozen=True)
class Selection:
    indices: np.ndarray  # rows of the region table, in the order the expert should do them
    spent_s: float
    value: float
    budget_s: float
    upper_bound: float | None = None  # knapsack strategies: LP bound over their candidates
    gap: float | None = None
    strategy: str = ""


class _Constraints:
    """Incremental check of per-case and slice-spacing limits."""

    def __init__(self, table: RegionTable, max_per_case: int, spacing: int):
        self.t, self.max_per_case, self.spacing = table, max_per_case, spacing
        self.per_case: dict = {}
        self.slices: dict = {}

    def admits(self, i: int) -> bool:
        case = self.t["case_id"][i]
        if self.max_per_case and self.per_case.get(case, 0) >= self.max_per_case:
            return False
        if self.spacing > 1 and self.t["kind"][i] == "slice":
            taken = self.slices.get((case, int(self.t["axis"][i])), ())
            k = int(self.t["index"][i])
            if any(abs(k - j) < self.spacing for j in taken):
                return False
        return True

    def copy(self) -> "_Constraints":
        other = _Constraints(self.t, self.max_per_case, self.spacing)
        other.per_case = dict(self.per_case)
        other.slices = {k: set(v) for k, v in self.slices.items()}
        return other

    def add(self, i: int) -> None:
        case = self.t["case_id"][i]
        self.per_case[case] = self.per_case.get(case, 0) + 1
        if self.t["kind"][i] == "slice":
            self.slices.setdefault((case, int(self.t["axis"][i])), set()).add(int(self.t["index"][i]))


def _sequential(order, table, budget, cons: _Constraints) -> list[int]:
    cost = table["cost"]
    out, left = [], budget
    for i in order:
        i = int(i)
        if cost[i] <= left and cons.admits(i):
            out.append(i)
            cons.add(i)
            left -= cost[i]
    return out


def _random(table, rows, budget, cfg, rng, cons):
    return _sequential(rng.permutation(rows), table, budget, cons), None


def _fg_random(table, rows, budget, cfg, rng, cons):
    w = 0.05 + np.clip(table["fg_fraction"][rows], 0, 1)
    keys = rng.random(len(rows)) ** (1.0 / w)  # Efraimidis-Spirakis weighted permutation
    return _sequential(rows[np.argsort(-keys)], table, budget, cons), None


def _topk(table, rows, budget, cfg, rng, cons):
    return _sequential(rows[np.argsort(-table["score"][rows], kind="stable")], table, budget, cons), None


def _knapsack(table, rows, budget, cfg, rng, cons):
    score, cost = table["score"][rows], table["cost"][rows]
    ratio = score / np.maximum(cost, 1e-12)
    if cons.max_per_case or cons.spacing > 1:  # reduce to a set whose every subset honours the limits
        order = rows[np.argsort(-ratio, kind="stable")]
        rows = np.asarray(_sequential(order, table, np.inf, cons.copy()), dtype=np.int64)
    res = knapsack(table["score"][rows], table["cost"][rows], budget, resolution=cfg.resolution)
    chosen = rows[res.indices]
    for i in chosen:
        cons.add(int(i))
    chosen = chosen[np.argsort(-table["score"][chosen], kind="stable")]
    return chosen.tolist(), res


def _knapsack_diversity(table, rows, budget, cfg, rng, cons):
    cons.spacing = max(cons.spacing, cfg.diversity_spacing)
    cons.max_per_case = cons.max_per_case or cfg.diversity_max_per_case
    return _knapsack(table, rows, budget, cfg, rng, cons)


#: name -> function(table, candidate rows, budget, cfg, rng, constraints) -> (rows, knapsack result or None)
STRATEGIES = {
    "random": _random,
    "fg_random": _fg_random,
    "topk": _topk,
    "knapsack": _knapsack,
    "knapsack+diversity": _knapsack_diversity,
}


def get_strategy(name: str):
    try:
        return STRATEGIES[name]
    except KeyError:
        raise KeyError(f"unknown selection strategy {name!r}; valid: {sorted(STRATEGIES)}") from None


def dominant_class(table: RegionTable) -> np.ndarray:
    """Predicted class with most voxels in each unit (0 when no foreground is predicted)."""
    names = sorted((k for k in table.columns if k.startswith("n_pred_")), key=lambda k: int(k[7:]))
    if not names:
        return np.zeros(len(table), dtype=np.int64)
    counts = np.stack([table[k] for k in names], axis=1)
    return np.where(counts.max(axis=1) > 0, counts.argmax(axis=1) + 1, 0)


def select(table: RegionTable, cfg, *, budget_s: float | None = None, strategy: str | None = None) -> Selection:
    """Choose units of ``table`` (needs ``score`` and ``cost`` columns) per the selection config."""
    for col in ("score", "cost", "case_id", "kind", "axis", "index", "annotated_fraction", "fg_fraction"):
        if col not in table:
            raise ValueError(f"region table lacks column {col!r}")
    if len(table) and (not np.isfinite(table["cost"]).all() or (table["cost"] < 0).any()):
        raise ValueError("region costs must be finite and >= 0")
    name = strategy or cfg.strategy
    fn = get_strategy(name)
    budget = float(cfg.budget_s if budget_s is None else budget_s)
    rng = np.random.default_rng(cfg.seed)
    cons = _Constraints(table, cfg.max_per_case, cfg.min_slice_spacing)
    rows = np.flatnonzero(table["annotated_fraction"] <= cfg.skip_annotated_above) if len(table) else np.zeros(0, int)
    chosen: list[int] = []
    results = []
    if cfg.class_quota:
        dom = dominant_class(table)
        for c, share in sorted(cfg.class_quota.items()):
            part = rows[dom[rows] == c]
            picked, res = fn(table, part, budget * share, cfg, rng, cons)
            chosen += picked
            results.append(res)
        rows = np.setdiff1d(rows, np.asarray(chosen, dtype=np.int64))
    left = budget - float(table["cost"][chosen].sum()) if chosen else budget
    picked, res = fn(table, rows, left, cfg, rng, cons)
    chosen += picked
    results.append(res)
    idx = np.asarray(chosen, dtype=np.int64)
    spent = float(table["cost"][idx].sum()) if len(idx) else 0.0
    value = float(table["score"][idx].sum()) if len(idx) else 0.0
    ub = gap = None
    if all(r is not None for r in results):
        ub = float(sum(r.upper_bound for r in results))
        gap = 0.0 if ub <= 0 else max(0.0, (ub - sum(r.value for r in results)) / ub)
    return Selection(idx, spent, value, budget, ub, gap, name)
