import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medal.selection import knapsack, lp_bound


def _brute(v, c, budget):
    best = 0.0
    for r in range(len(v) + 1):
        for combo in itertools.combinations(range(len(v)), r):
            idx = list(combo)
            if c[idx].sum() <= budget:
                best = max(best, v[idx].sum() if idx else 0.0)
    return best


items = st.integers(1, 15).flatmap(lambda n: st.tuples(
    st.lists(st.floats(-1, 10, allow_nan=False), min_size=n, max_size=n),
    st.lists(st.integers(0, 30), min_size=n, max_size=n),
    st.integers(0, 80)))


@settings(max_examples=150, deadline=None)
@given(items)
def test_equals_brute_force_and_never_exceeds_budget(case):
    v, c, budget = np.array(case[0]), np.array(case[1], dtype=float), float(case[2])
    res = knapsack(v, c, budget, resolution=max(int(budget), 1), mode="exact")  # unit = 1 s: exact
    assert res.cost <= budget + 1e-9
    assert len(set(res.indices.tolist())) == len(res.indices)
    assert res.value == pytest.approx(_brute(v, c, budget), abs=1e-9)
    assert res.value <= res.upper_bound + 1e-9 and 0 <= res.gap <= 1
    assert (v[res.indices] > 0).all()


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 300), st.sampled_from(["exact", "core"]))
def test_float_costs_stay_feasible_in_every_mode(seed, n, mode):
    rng = np.random.default_rng(seed)
    v, c = rng.random(n) * 10, rng.random(n) * 50
    budget = float(c.sum() * rng.uniform(0.01, 0.8))
    res = knapsack(v, c, budget, resolution=1000, mode=mode, core_size=20)
    assert c[res.indices].sum() <= budget + 1e-9
    assert res.value <= lp_bound(v, c, budget) + 1e-9


def test_large_instance_certified_gap():
    rng = np.random.default_rng(0)
    v, c = rng.random(200_000) * 100, rng.random(200_000) * 115 + 5
    res = knapsack(v, c, float(c.sum() * 0.01))  # n * resolution > exact_limit: auto picks core
    assert res.mode == "core" and res.gap < 1e-3 and res.cost <= c.sum() * 0.01


def test_zero_cost_and_edge_cases():
    res = knapsack([1.0, 2.0, -1.0], [0.0, 5.0, 0.0], 0.0)
    assert res.indices.tolist() == [0]
    assert knapsack([], [], 10.0).indices.tolist() == []
    with pytest.raises(ValueError, match="equal length"):
        knapsack([1.0], [1.0, 2.0], 3.0)
    with pytest.raises(ValueError, match="costs must be >= 0"):
        knapsack([1.0], [-1.0], 3.0)
    with pytest.raises(ValueError, match="budget"):
        knapsack([1.0], [1.0], float("nan"))
