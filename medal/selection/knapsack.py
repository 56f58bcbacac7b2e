"""0-1 knapsack: exact dynamic programming over quantised costs, with an LP-relaxation certificate.

Costs are quantised *up* to multiples of ``budget / resolution``, so every solution found is feasible
for the real costs. The result carries the LP-relaxation (Dantzig) upper bound of the *real*
problem and the relative gap ``(bound - value) / bound``: however the solution was found, no subset
within budget is worth more than ``bound``.

Modes
-----
``exact``  DP over all items: O(n * resolution) time, n * resolution bits of memory for the choices.
``core``   for very large n: items far above the critical value/cost ratio are taken, items far below
           are dropped, and the DP runs on the ``core`` items around the ratio where the greedy
           solution breaks (Balas & Zemel's core idea). Fast for millions of items; the gap is still
           certified by the LP bound of the full problem.
``auto``   ``exact`` while ``n * resolution <= exact_limit``, else ``core``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["KnapsackResult", "knapsack", "lp_bound"]


@dataclass(frozen=True)
class KnapsackResult:
    indices: np.ndarray  # chosen items, ascending
    value: float
    cost: float
    budget: float
    upper_bound: float  # LP relaxation of the real (unquantised) problem
    mode: str

    @property
    def gap(self) -> float:
        """Certified relative optimality gap, ``(upper_bound - value) / upper_bound``."""
        return 0.0 if self.upper_bound <= 0 else max(0.0, (self.upper_bound - self.value) / self.upper_bound)


def _check(values, costs, budget):
    v = np.asarray(values, dtype=np.float64)
    c = np.asarray(costs, dtype=np.float64)
    if v.ndim != 1 or c.shape != v.shape:
        raise ValueError(f"values and costs must be 1D of equal length, got shapes {v.shape} and {c.shape}")
    if not (np.isfinite(v).all() and np.isfinite(c).all()):
        raise ValueError("values and costs must be finite")
    if (c < 0).any():
        raise ValueError("costs must be >= 0")
    if not np.isfinite(budget) or budget < 0:
        raise ValueError(f"budget must be a finite number >= 0, got {budget}")
    return v, c


def lp_bound(values, costs, budget) -> float:
    """Dantzig bound: greedy by value/cost with the break item taken fractionally (positive values only)."""
    v, c = _check(values, costs, budget)
    keep = v > 0
    v, c = v[keep], c[keep]
    free = c == 0
    bound = float(v[free].sum())
    v, c = v[~free], c[~free]
    order = np.argsort(-v / c, kind="stable")
    cum = np.cumsum(c[order])
    k = int(np.searchsorted(cum, budget, side="right"))  # items fully taken
    bound += float(v[order[:k]].sum())
    if k < len(order):
        room = budget - (cum[k - 1] if k else 0.0)
        bound += float(v[order[k]] * room / c[order[k]])
    return bound


def _dp(v: np.ndarray, w: np.ndarray, cap: int) -> np.ndarray:
    """Exact 0-1 knapsack on integer weights; returns a boolean mask of chosen items."""
    n = len(v)
    if n == 0 or cap <= 0:
        return np.zeros(n, dtype=bool)
    best = np.zeros(cap + 1)
    choice = np.zeros((n, (cap + 8) // 8), dtype=np.uint8)  # packed bits: item i improves capacity j
    for i in range(n):
        wi = int(w[i])
        if wi > cap:
            continue
        cand = best[: cap + 1 - wi] + v[i]
        better = cand > best[wi:]
        if better.any():
            best[wi:] = np.where(better, cand, best[wi:])
            bits = np.zeros(cap + 1, dtype=bool)
            bits[wi:] = better
            choice[i] = np.packbits(bits)
    chosen = np.zeros(n, dtype=bool)
    j = cap
    for i in range(n - 1, -1, -1):
        if j >= 0 and (choice[i, j >> 3] >> (7 - (j & 7))) & 1:
            chosen[i] = True
            j -= int(w[i])
    return chosen


def _quantise(costs: np.ndarray, unit: float) -> np.ndarray:
    """Integer weights rounded up, so a quantised-feasible set is feasible for the real costs."""
    return np.maximum(1, np.ceil(costs / unit - 1e-9)).astype(np.int64)


def _greedy_fill(v, c, budget, cand, chosen, *, max_steps: int = 200_000) -> np.ndarray:
    """Spend the real budget that rounding costs up left unused, best value/cost first."""
    left = budget - float(c[chosen].sum())
    taken = np.zeros(len(v), dtype=bool)
    taken[chosen] = True
    rest = cand[~taken[cand] & (c[cand] <= left)]
    if len(rest) == 0:
        return chosen
    rest = rest[np.argsort(-(v[rest] / c[rest]), kind="stable")][:max_steps]
    extra = []
    for i in rest:
        if c[i] <= left:
            extra.append(i)
            left -= c[i]
    return np.concatenate([chosen, np.asarray(extra, dtype=np.int64)])


def knapsack(values, costs, budget: float, *, resolution: int = 10_000, mode: str = "auto",
             exact_limit: float = 1e9, core_size: int = 2_000) -> KnapsackResult:
    """Choose items maximising total value with total cost <= ``budget``.

    Items with value <= 0 are never chosen; items of zero cost with positive value always are.
    ``resolution`` is the number of cost units the budget is split into (finer = closer to the
    unquantised optimum, slower).
    """
    v, c = _check(values, costs, budget)
    if mode not in ("auto", "exact", "core"):
        raise ValueError(f"mode must be 'auto', 'exact' or 'core', got {mode!r}")
    if resolution < 1:
        raise ValueError(f"resolution must be >= 1, got {resolution}")
    ub = lp_bound(v, c, budget)
    cand = np.flatnonzero((v > 0) & (c <= budget))
    free = cand[c[cand] == 0]
    cand = cand[c[cand] > 0]
    if budget == 0 or len(cand) == 0:
        idx = np.sort(free)
        return KnapsackResult(idx, float(v[idx].sum()), 0.0, float(budget), ub, "exact")
    if mode == "auto":
        mode = "exact" if len(cand) * resolution <= exact_limit else "core"
    if mode == "exact":
        w = _quantise(c[cand], budget / resolution)
        chosen = cand[_dp(v[cand], w, resolution)]
    else:
        order = cand[np.argsort(-(v[cand] / c[cand]), kind="stable")]
        brk = int(np.searchsorted(np.cumsum(c[order]), budget, side="right"))  # items that fit greedily
        lo, hi = max(0, brk - core_size // 2), min(len(order), brk + core_size // 2)
        fixed, core = order[:lo], order[lo:hi]
        room = budget - float(c[fixed].sum())  # the DP quantises only what is left: finer units
        picked = core[_dp(v[core], _quantise(c[core], room / resolution), resolution)] if room > 0 else core[:0]
        chosen = np.concatenate([fixed, picked])
    chosen = _greedy_fill(v, c, budget, cand, chosen)
    idx = np.sort(np.concatenate([free, chosen]).astype(np.int64))
    return KnapsackResult(idx, float(v[idx].sum()), float(c[idx].sum()), float(budget), ub, mode)
