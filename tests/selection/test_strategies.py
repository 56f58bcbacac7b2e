import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medal.config import SelectionConfig
from medal.regions import RegionTable
from medal.selection import STRATEGIES, dominant_class, get_strategy, select


def _table(seed, n_cases=3, n_slices=12):
    rng = np.random.default_rng(seed)
    n = n_cases * n_slices
    return RegionTable({
        "case_id": np.array([f"c{i // n_slices}" for i in range(n)], dtype=object),
        "kind": np.array(["slice"] * n, dtype=object),
        "axis": np.full(n, 2),
        "index": np.tile(np.arange(n_slices), n_cases),
        "supervoxel": np.full(n, -1),
        "score": rng.random(n) * 10,
        "cost": rng.integers(5, 60, n).astype(float),
        "fg_fraction": rng.random(n) * (rng.random(n) < 0.5),
        "annotated_fraction": np.where(rng.random(n) < 0.2, 1.0, 0.0),
        "n_pred_1": rng.integers(0, 50, n).astype(float),
        "n_pred_2": rng.integers(0, 50, n).astype(float),
    })


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(sorted(STRATEGIES)), st.integers(20, 400), st.integers(0, 3),
       st.integers(0, 4), st.booleans())
def test_every_strategy_honours_every_constraint(seed, strategy, budget, max_per_case, spacing, quota):
    t = _table(seed)
    cfg = SelectionConfig(strategy=strategy, budget_s=float(budget), max_per_case=max_per_case,
                          min_slice_spacing=spacing, class_quota={1: 0.4, 2: 0.3} if quota else {}, seed=seed)
    sel = select(t, cfg)
    idx = sel.indices
    assert len(set(idx.tolist())) == len(idx)
    assert t["cost"][idx].sum() <= budget + 1e-9 and sel.spent_s == pytest.approx(t["cost"][idx].sum())
    assert (t["annotated_fraction"][idx] <= cfg.skip_annotated_above).all()
    cap = max_per_case or (cfg.diversity_max_per_case if strategy == "knapsack+diversity" else 0)
    gap = max(spacing, cfg.diversity_spacing if strategy == "knapsack+diversity" else 0)
    for case in set(t["case_id"][idx]):
        mine = idx[t["case_id"][idx] == case]
        if cap:
            assert len(mine) <= cap
        k = np.sort(t["index"][mine])
        if gap > 1 and len(k) > 1:
            assert np.diff(k).min() >= gap
    if quota:
        dom = dominant_class(t)
        for c, share in cfg.class_quota.items():
            assert t["cost"][idx][dom[idx] == c].sum() >= 0  # reserved share is spent on class c first
    if strategy.startswith("knapsack"):
        assert sel.upper_bound >= sel.value - 1e-9 and 0 <= sel.gap <= 1


def test_knapsack_is_worth_at_least_as_much_as_the_baselines():
    for seed in range(20):
        t = _table(seed)
        t["cost"] = np.round(t["cost"])
        values = {s: select(t, SelectionConfig(strategy=s, budget_s=150.0, resolution=150, seed=seed)).value
                  for s in ("random", "fg_random", "topk", "knapsack")}
        assert values["knapsack"] >= max(values.values()) - 1e-9


def test_topk_ignores_cost_and_fg_random_prefers_foreground():
    t = _table(1)
    top = select(t, SelectionConfig(strategy="topk", budget_s=100.0))
    first = top.indices[0]
    ok = np.flatnonzero(t["annotated_fraction"] <= 0.5)
    assert first == ok[np.argmax(t["score"][ok])]
    fg = np.mean([t["fg_fraction"][select(t, SelectionConfig(strategy="fg_random", budget_s=200.0, seed=s)).indices].mean()
                  for s in range(30)])
    rnd = np.mean([t["fg_fraction"][select(t, SelectionConfig(strategy="random", budget_s=200.0, seed=s)).indices].mean()
                   for s in range(30)])
    assert fg > rnd


def test_registry_errors():
    with pytest.raises(KeyError, match=r"unknown selection strategy 'best'; valid: \['fg_random'"):
        get_strategy("best")
    with pytest.raises(ValueError, match="lacks column 'cost'"):
        select(RegionTable({"score": np.ones(2)}), SelectionConfig())
