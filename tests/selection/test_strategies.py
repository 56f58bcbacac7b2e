import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medal.config import SelectionConfig
from medal.regions import RegionTable
from medal.selection import STRATEGIES, dominant_class, get_strategy, select
from medal.selection.strategies import beta_for_round, class_shares, power_noise


#: selection without class quotas or noise: the plain strategies
PLAIN = {"foreground_share": 0.0, "noise": "none"}


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
        "value_1": rng.random(n) * 5 * (rng.random(n) < 0.6),
        "value_2": rng.random(n) * 5 * (rng.random(n) < 0.6),
        # fg_typical's label-free clusters (add_clusters)
        "cluster": (cluster := rng.integers(0, 6, n)),
        "typicality": rng.random(n),
        "cluster_size": np.bincount(cluster, minlength=6)[cluster].astype(float),
        # badge's gradient embeddings (add_gradient_embeddings); a third of the slices at the origin
        "grad_embedding": rng.normal(size=(n, 2, 3)) * (rng.random(n) < 0.66)[:, None, None],
        "has_embedding": np.ones(n, bool),
    })


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(sorted(STRATEGIES)), st.integers(20, 400), st.integers(0, 3),
       st.integers(0, 4), st.sampled_from(["none", "explicit", "foreground"]), st.sampled_from([0.0, 0.15, 0.4]),
       st.sampled_from(["none", "power"]), st.integers(0, 5))
def test_every_strategy_honours_every_constraint(seed, strategy, budget, max_per_case, spacing, quota, case_share,
                                                 noise, round_index):
    t = _table(seed)
    cfg = SelectionConfig(strategy=strategy, budget_s=float(budget), max_per_case=max_per_case,
                          min_slice_spacing=spacing, class_quota={1: 0.4, 2: 0.3} if quota == "explicit" else {},
                          foreground_share=0.66 if quota == "foreground" else 0.0, max_case_share=case_share,
                          noise=noise, seed=seed)
    sel = select(t, cfg, round_index=round_index)
    idx = sel.indices
    assert len(set(idx.tolist())) == len(idx)
    # never more predicted seconds than the budget, whatever the quota, cap or noise
    assert t["cost"][idx].sum() <= budget + 1e-9 and sel.spent_s == pytest.approx(t["cost"][idx].sum())
    assert (t["annotated_fraction"][idx] <= cfg.skip_annotated_above).all()
    cap = max_per_case or (cfg.diversity_max_per_case if strategy == "knapsack+diversity" else 0)
    gap = max(spacing, cfg.diversity_spacing if strategy == "knapsack+diversity" else 0)
    for case in set(t["case_id"][idx]):
        mine = idx[t["case_id"][idx] == case]
        if cap:
            assert len(mine) <= cap
        if case_share:  # per-case seconds cap; a case's first unit may exceed it on its own
            assert len(mine) == 1 or t["cost"][mine].sum() <= case_share * budget + 1e-9
        k = np.sort(t["index"][mine])
        if gap > 1 and len(k) > 1:
            assert np.diff(k).min() >= gap
    if quota != "none":
        assert set(sel.shares) == ({1, 2} if strategy in ("topk", "knapsack", "knapsack+diversity") else set())
    if strategy.startswith("knapsack"):
        assert sel.upper_bound >= sel.objective - 1e-9 and 0 <= sel.gap <= 1
        if noise == "none" and quota == "none":
            assert sel.objective == pytest.approx(sel.value)


def test_class_parts_spend_their_share_on_their_class():
    """With a class quota, the class-c part buys units worth something for class c, and nothing it
    could still afford is left that is worth more per second for c (each part is an exact knapsack)."""
    for seed in range(10):
        t = _table(seed, n_cases=4, n_slices=20)
        t["cost"] = np.round(t["cost"])
        cfg = SelectionConfig(strategy="knapsack", budget_s=300.0, class_quota={1: 0.5}, resolution=300, seed=seed,
                              noise="none")
        sel = select(t, cfg)
        alone = select(t, SelectionConfig(strategy="knapsack", budget_s=150.0, resolution=150, seed=seed, **PLAIN))
        part = [i for i in sel.indices if t["value_1"][i] > 0]
        # the class-1 part alone is worth at least as much class-1 value as the best 150 s chosen by overall value
        assert t["value_1"][part].sum() >= t["value_1"][alone.indices].sum() - 1e-9
        assert sel.spent_s <= 300.0 + 1e-9


def test_quota_naming_a_missing_class_is_an_error():
    t = _table(0)
    with pytest.raises(ValueError, match=r"class_quota: class\(es\) \[7\] do not exist; the dataset's foreground classes are \[1, 2\]"):
        select(t, SelectionConfig(class_quota={7: 0.3}))
    assert class_shares(t, SelectionConfig(foreground_share=0.6)) == {1: 0.3, 2: 0.3}


def test_power_noise_is_reproducible_and_follows_its_schedule():
    t = _table(4, n_cases=5, n_slices=30)
    cfg = SelectionConfig(strategy="knapsack", budget_s=400.0, noise="power", seed=3, beta_end=100.0)
    assert beta_for_round(SelectionConfig(), 5) == pytest.approx(1.0)  # the default: beta 1 in every round
    a, b = select(t, cfg, round_index=1), select(t, cfg, round_index=1)
    np.testing.assert_array_equal(a.indices, b.indices)  # same seed, same round: same batch
    others = [select(t, cfg, round_index=1, budget_s=400.0).indices.tolist()]
    others += [select(t, SelectionConfig(strategy="knapsack", budget_s=400.0, noise="power", seed=s), round_index=1)
               .indices.tolist() for s in range(4, 8)]
    assert any(o != a.indices.tolist() for o in others)  # another seed: another batch
    assert beta_for_round(cfg, 0) == pytest.approx(1.0) and beta_for_round(cfg, 3) == pytest.approx(100.0)
    assert beta_for_round(cfg, 1) == pytest.approx(100 ** (1 / 3)) and beta_for_round(cfg, 9) == pytest.approx(100.0)
    rng = np.random.default_rng(0)
    v = np.array([0.0, 1.0, 2.0])
    assert power_noise(v, 1.0, rng)[0] == 0.0
    # large beta: values barely move, so the batch is the greedy one
    big = power_noise(np.full(2000, 5.0), 1e4, np.random.default_rng(1))
    assert np.abs(np.log(big / 5.0)).max() < 0.01
    greedy = select(t, SelectionConfig(strategy="knapsack", budget_s=400.0, seed=3, noise="none"))
    late = select(t, SelectionConfig(strategy="knapsack", budget_s=400.0, noise="power", beta_start=1e5,
                                     beta_end=1e5, seed=3))
    assert set(late.indices.tolist()) == set(greedy.indices.tolist())


def test_knapsack_is_worth_at_least_as_much_as_the_baselines():
    for seed in range(20):
        t = _table(seed)
        t["cost"] = np.round(t["cost"])
        values = {s: select(t, SelectionConfig(strategy=s, budget_s=150.0, resolution=150, seed=seed, **PLAIN)).value
                  for s in ("random", "fg_random", "topk", "knapsack")}
        assert values["knapsack"] >= max(values.values()) - 1e-9


def test_topk_ignores_cost_and_fg_random_prefers_foreground():
    t = _table(1)
    top = select(t, SelectionConfig(strategy="topk", budget_s=100.0, **PLAIN))
    first = top.indices[0]
    ok = np.flatnonzero(t["annotated_fraction"] <= 0.5)
    assert first == ok[np.argmax(t["score"][ok])]
    fg = np.mean([t["fg_fraction"][select(t, SelectionConfig(strategy="fg_random", budget_s=200.0, seed=s)).indices].mean()
                  for s in range(30)])
    rnd = np.mean([t["fg_fraction"][select(t, SelectionConfig(strategy="random", budget_s=200.0, seed=s)).indices].mean()
                   for s in range(30)])
    assert fg > rnd


def test_fg_value_is_fg_random_at_power_zero_and_leans_to_value():
    t = _table(3, n_cases=6, n_slices=20)
    for seed in range(5):
        base = select(t, SelectionConfig(strategy="fg_random", budget_s=300.0, seed=seed))
        same = select(t, SelectionConfig(strategy="fg_value", value_power=0.0, budget_s=300.0, seed=seed))
        assert same.indices.tolist() == base.indices.tolist()
    # a higher power buys more value per unit, over many seeds, than plain fg_random
    def mean_value(strategy, power):
        rows = [select(t, SelectionConfig(strategy=strategy, value_power=power, budget_s=300.0, seed=s)).indices
                for s in range(40)]
        return np.mean([t["score"][r].mean() for r in rows])
    assert mean_value("fg_value", 2.0) > mean_value("fg_value", 0.5) > mean_value("fg_random", 0.5)
    # units without value are left to the end (weight ~1e-6 of the rest)
    t["score"] = np.where(np.arange(len(t)) % 2 == 0, 0.0, t["score"])
    sel = select(t, SelectionConfig(strategy="fg_value", value_power=1.0, budget_s=200.0, seed=0))
    assert (t["score"][sel.indices] > 0).all()
    with pytest.raises(Exception, match="selection.value_power"):
        SelectionConfig(strategy="fg_value", value_power=-1.0)


def test_registry_errors():
    with pytest.raises(KeyError, match=r"unknown selection strategy 'best'; valid: \['badge', 'fg_badge', 'fg_random'"):
        get_strategy("best")
    with pytest.raises(ValueError, match="lacks column 'cost'"):
        select(RegionTable({"score": np.ones(2)}), SelectionConfig())


def test_fg_typical_takes_the_most_typical_foreground_slice_of_each_uncovered_cluster_largest_first():
    n = 10
    t = RegionTable({
        "case_id": np.array([f"c{i}" for i in range(n)], dtype=object),
        "kind": np.array(["slice"] * n, dtype=object),
        "axis": np.full(n, 2), "index": np.arange(n), "supervoxel": np.full(n, -1),
        "score": np.ones(n), "cost": np.full(n, 10.0),
        #                    0    1    2    3    4    5    6    7    8    9
        "cluster": np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 3]),
        "typicality": np.array([.9, .5, .7, .1, .3, .8, .6, .9, .2, .5]),
        "fg_fraction": np.array([0, .2, .1, .3, .1, 0, .4, .2, .1, .5]),
        "annotated_fraction": np.array([0, 0, 0, 0, 0, 0, 0, 1.0, 0, 0]),
    })
    t["cluster_size"] = np.bincount(t["cluster"])[t["cluster"]].astype(float)
    cfg = SelectionConfig(strategy="fg_typical", budget_s=30.0, **PLAIN)
    sel = select(t, cfg)
    # cluster 0 (4 slices): slice 0 is the most typical but holds no predicted foreground -> slice 2;
    # cluster 1 (3): slice 5 has no foreground -> slice 6; cluster 2 holds an annotated slice (covered);
    # cluster 3 (1): slice 9
    assert sel.indices.tolist() == [2, 6, 9]
    # a budget beyond the uncovered clusters: the rest by fg_random's draw, never a background-only slice first
    more = select(t, SelectionConfig(strategy="fg_typical", budget_s=60.0, **PLAIN))
    assert more.indices[:3].tolist() == [2, 6, 9] and len(more.indices) == 6 and 7 not in more.indices.tolist()
    assert set(more.indices[3:].tolist()) <= {0, 1, 3, 4, 5, 8}
    # without the cluster columns (supervoxels): fg_random exactly
    bare = RegionTable({k: v for k, v in t.columns.items() if k not in ("cluster", "typicality", "cluster_size")})
    fg = select(bare, SelectionConfig(strategy="fg_random", budget_s=30.0, **PLAIN))
    assert select(bare, cfg).indices.tolist() == fg.indices.tolist()


def test_novelty_part_draws_only_novel_slices_at_most_two_per_case_and_off_changes_nothing():
    t = _table(3, n_cases=6, n_slices=12)
    rng = np.random.default_rng(0)
    novel = np.where(np.isin(t["case_id"], ["c4", "c5"]) & (t["annotated_fraction"] == 0), rng.random(len(t)) + 0.1, 0.0)
    t = RegionTable({**t.columns, "novelty": novel})
    cfg = SelectionConfig(strategy="knapsack", budget_s=300.0, novelty_share=0.3, noise="power", seed=5)
    sel = select(t, cfg, round_index=1)
    assert sel.spent_s <= 300.0 + 1e-9 and len(set(sel.indices.tolist())) == len(sel.indices)
    assert (t["annotated_fraction"][sel.indices] == 0).all()
    # the novelty part comes first: its picks lead the list, are novel, at most 2 per case, within 30% of the budget
    first = []
    for i in sel.indices:
        if t["novelty"][i] <= 0:
            break
        first.append(int(i))
    assert first and sum(t["cost"][first]) <= 90.0 + 1e-9
    cases = list(t["case_id"][first])
    assert set(cases) <= {"c4", "c5"} and max(cases.count(c) for c in set(cases)) <= 2
    # reproducible for a seed
    assert np.array_equal(select(t, cfg, round_index=1).indices, sel.indices)
    # novelty zero everywhere (nothing annotated yet) or share 0: exactly the selection without the column
    plain = RegionTable({k: v for k, v in t.columns.items() if k != "novelty"})
    base = select(plain, cfg, round_index=1).indices
    assert np.array_equal(select(RegionTable({**t.columns, "novelty": np.zeros(len(t))}), cfg, round_index=1).indices, base)
    off = SelectionConfig(strategy="knapsack", budget_s=300.0, novelty_share=0.0, noise="power", seed=5)
    assert np.array_equal(select(t, off, round_index=1).indices, base)
    # the random baselines ignore it
    rnd = SelectionConfig(strategy="random", budget_s=300.0, novelty_share=0.3, seed=5)
    assert np.array_equal(select(t, rnd).indices, select(plain, rnd).indices)
    with pytest.raises(Exception, match="novelty_share"):
        SelectionConfig(novelty_share=0.7)


def test_auto_novelty_share_spends_the_auto_share_when_the_column_is_set_and_nothing_otherwise():
    from medal.selection.strategies import AUTO_NOVELTY_SHARE

    t = _table(3, n_cases=6, n_slices=12)
    rng = np.random.default_rng(0)
    novel = np.where(np.isin(t["case_id"], ["c4", "c5"]) & (t["annotated_fraction"] == 0), rng.random(len(t)) + 0.1, 0.0)
    t = RegionTable({**t.columns, "novelty": novel})
    auto = SelectionConfig(strategy="knapsack", budget_s=300.0, novelty_share="auto", noise="power", seed=5)
    fixed = SelectionConfig(strategy="knapsack", budget_s=300.0, novelty_share=AUTO_NOVELTY_SHARE, noise="power", seed=5)
    assert np.array_equal(select(t, auto, round_index=1).indices, select(t, fixed, round_index=1).indices)
    assert t["novelty"][select(t, auto, round_index=1).indices[0]] > 0  # the novelty part leads
    # the trigger not fired (add_novelty_auto leaves the column zero): the selection without a novelty part
    zero = RegionTable({**t.columns, "novelty": np.zeros(len(t))})
    plain = RegionTable({k: v for k, v in t.columns.items() if k != "novelty"})
    assert np.array_equal(select(zero, auto, round_index=1).indices, select(plain, auto, round_index=1).indices)
    with pytest.raises(Exception, match="novelty_share"):
        SelectionConfig(novelty_share="on")
    with pytest.raises(Exception, match="novelty_share"):
        SelectionConfig(novelty_share=True)
    # the trigger's share (novelty_weak_alpha: half of it) is what select spends under auto
    half = AUTO_NOVELTY_SHARE / 2
    fixed_half = SelectionConfig(strategy="knapsack", budget_s=300.0, novelty_share=half, noise="power", seed=5)
    weak = select(t, auto, round_index=1, novelty_share=half)
    assert np.array_equal(weak.indices, select(t, fixed_half, round_index=1).indices)
    assert not np.array_equal(weak.indices, select(t, auto, round_index=1).indices)  # the share is what differs
    assert t["novelty"][weak.indices[0]] > 0


def _cases_embedding(rng, centres, per_case=10, spread=0.05):
    z = np.concatenate([c + spread * rng.standard_normal((per_case, len(c))) for c in centres])
    owner = np.repeat([f"c{i:02d}" for i in range(len(centres))], per_case)
    return z, owner


def test_far_case_test_fires_on_a_block_of_far_cases_and_not_on_exchangeable_ones():
    from medal.selection.strategies import AUTO_NOVELTY_SHARE, NOVELTY_ALPHA, far_case_test

    rng = np.random.default_rng(0)
    dim = 16
    centres = [rng.standard_normal(dim) * 0.3 + 1.0 for _ in range(36)]
    z, owner = _cases_embedding(rng, centres)
    inner = np.ones(len(z), bool)
    annotated = {f"c{i:02d}" for i in range(36) if i % 3}  # two cases in three: an unbiased start
    same = far_case_test(z, owner, inner, annotated)
    assert not same.fired and same.p >= NOVELTY_ALPHA and same.annotated_cases == 24 and same.open_cases == 12
    # a new site: 6 open cases whose slices lie elsewhere in the embedding
    site = [f"c{i:02d}" for i in (0, 3, 6, 9, 12, 15)]
    shifted = [c + (3.0 if f"c{i:02d}" in site else 0.0) * np.eye(dim)[0] for i, c in enumerate(centres)]
    z2, _ = _cases_embedding(np.random.default_rng(0), shifted)
    new = far_case_test(z2, owner, inner, annotated)
    k = len(new.far_cases)
    assert new.fired and set(new.far_cases) >= set(site) and k >= 6
    assert new.p == pytest.approx(np.prod([(12 - i) / (36 - i) for i in range(k)]))  # C(12, k) / C(36, k)
    assert "novelty part on" in new.message() and "c0" in new.message()
    assert new.to_json()["fired"] is True and new.to_json()["open_cases"] == 12
    # the level (selection.novelty_alpha): fires strictly below it, and the record says which level was used
    at = far_case_test(z2, owner, inner, annotated, alpha=new.p)
    assert not at.fired and at.p == new.p and at.to_json()["alpha"] == new.p and f"not below {new.p:g}" in at.message()
    # a weaker second level (selection.novelty_weak_alpha): fires where alpha <= p < weak_alpha, with half the share
    assert new.share == AUTO_NOVELTY_SHARE and new.to_json()["share"] == AUTO_NOVELTY_SHARE
    weak = far_case_test(z2, owner, inner, annotated, alpha=new.p, weak_alpha=min(0.5, 2 * new.p))
    assert weak.fired and weak.share == AUTO_NOVELTY_SHARE / 2 and weak.to_json()["weak_alpha"] == min(0.5, 2 * new.p)
    assert f"novelty part on ({100 * AUTO_NOVELTY_SHARE / 2:.0f}% of the budget; weak evidence" in weak.message()
    assert at.share == 0.0 and "weak_alpha" not in at.to_json()
    below_both = far_case_test(z2, owner, inner, annotated, alpha=new.p * 1.01, weak_alpha=0.5)
    assert below_both.fired and below_both.share == AUTO_NOVELTY_SHARE and "weak" not in below_both.message()
    none = far_case_test(z, owner, inner, annotated, weak_alpha=same.p)  # p == weak_alpha: strictly below only
    assert not none.fired and none.share == 0.0 and f"not below {same.p:g}" in none.message()
    # the same far slices outside the inner mask (a volume's ends) do not count
    masked = far_case_test(z2, owner, inner & ~np.isin(owner, site), annotated)
    assert not masked.fired and masked.open_cases == 6
    # too few annotated cases to compare: off, and says why
    one = far_case_test(z2, owner, inner, {"c00"})
    assert not one.fired and "fewer than 2 annotated cases" in one.message()


def _shifted_cases(shift, block, *, n_cases=36, dim=16, per_case=10, spread=0.05):
    """Cases as clouds of slices around random centres; the ``block`` cases moved by ``shift`` along one axis."""
    rng = np.random.default_rng(0)
    centres = [rng.standard_normal(dim) * 0.3 + 1.0 for _ in range(n_cases)]
    centres = [c + (shift if f"c{i:02d}" in block else 0.0) * np.eye(dim)[0] for i, c in enumerate(centres)]
    z = np.concatenate([c + spread * rng.standard_normal((per_case, dim)) for c in centres])
    return z, np.repeat([f"c{i:02d}" for i in range(n_cases)], per_case)


def test_far_case_test_gap_fires_on_a_far_block_the_rank_test_only_counts():
    from medal.selection.strategies import AUTO_NOVELTY_SHARE, GAP_CASES, NOVELTY_ALPHA, NOVELTY_GAP, far_case_test

    assert GAP_CASES == 3 and NOVELTY_GAP == 1.2
    annotated = {f"c{i:02d}" for i in range(4, 36, 4)}  # 8 of 36 labelled: a 3-case block cannot reach p < 0.05
    z, owner = _shifted_cases(0.0, [])
    inner = np.ones(len(z), bool)
    base = far_case_test(z, owner, inner, annotated, gap_level=NOVELTY_GAP)
    assert not base.fired and base.p >= NOVELTY_ALPHA and 0.9 < base.gap < NOVELTY_GAP and base.share == 0.0
    assert f"gap not above {NOVELTY_GAP:g}" in base.message()
    # the gap is the 3rd-farthest open case's distance over the farthest annotated case's, computed as documented
    zz = z / np.linalg.norm(z, axis=1, keepdims=True)

    def dist(c, refs):
        ref = zz[np.isin(owner, sorted(refs - {c}))]
        return np.median([np.min(np.linalg.norm(ref - x, axis=1)) for x in zz[owner == c]])

    top = max(dist(c, annotated) for c in annotated)
    third = sorted((dist(c, annotated) for c in set(owner) - annotated), reverse=True)[2]
    assert base.gap == pytest.approx(third / top)
    # three open cases far beyond the rest (a new scanner): the rank test stays off, the gap turns the part on
    block = ["c01", "c02", "c03"]
    z3, _ = _shifted_cases(6.0, block)
    new = far_case_test(z3, owner, inner, annotated, gap_level=NOVELTY_GAP)
    assert new.p >= NOVELTY_ALPHA and new.gap > 1.5 and new.fired and new.by_gap
    assert new.share == AUTO_NOVELTY_SHARE and set(block) <= set(new.far_cases[:3])
    assert "gap above 1.2" in new.message() and "a new site or scanner?" in new.message()
    assert new.to_json()["gap"] == new.gap and new.to_json()["gap_level"] == NOVELTY_GAP
    # off (gap_level 0): the rank test alone, and the record has no gap
    off = far_case_test(z3, owner, inner, annotated)
    assert not off.fired and off.gap == new.gap and "gap" not in off.to_json() and "gap" not in off.message()
    # a pair of odd scans is not a block: the 3rd-farthest open case is an ordinary one
    pair = far_case_test(_shifted_cases(6.0, block[:2])[0], owner, inner, annotated, gap_level=NOVELTY_GAP)
    assert not pair.fired and pair.gap < NOVELTY_GAP and {"c01", "c02"} <= set(pair.far_cases)
    # fewer than 5 annotated cases: too few to say how far the labelled ones spread, the gap does not count
    few = far_case_test(z3, owner, inner, {"c04", "c08", "c12", "c16"}, gap_level=NOVELTY_GAP)
    assert few.gap > NOVELTY_GAP and not few.by_gap and not few.fired and "gap" not in few.message()


def test_min_far_case_p_is_the_exact_tail_of_every_open_case_far():
    from math import comb

    from medal.selection.strategies import min_far_case_p

    for n, m in [(2, 1), (3, 3), (3, 4), (16, 4), (15, 45)]:
        assert min_far_case_p(n, m) == pytest.approx(1 / comb(n + m, m))
    assert min_far_case_p(1, 10) == 1.0 and min_far_case_p(5, 0) == 1.0
    assert min_far_case_p(3, 3) >= 0.05 > min_far_case_p(3, 4)  # 7 cases: the fewest a 3-labelled pool can fire with


def _badge_table(emb, cost=None, kind=None):
    n = len(emb)
    return RegionTable({
        "case_id": np.array([f"c{i}" for i in range(n)], dtype=object),
        "kind": np.array(kind or ["slice"] * n, dtype=object),
        "axis": np.full(n, 2), "index": np.arange(n), "supervoxel": np.full(n, -1),
        "score": np.ones(n), "cost": np.full(n, 10.0) if cost is None else np.asarray(cost, float),
        "fg_fraction": np.full(n, 0.5), "annotated_fraction": np.zeros(n),
        "grad_embedding": np.asarray(emb, np.float32)[:, None, :],
        "has_embedding": np.array([k == "slice" for k in (kind or ["slice"] * n)]),
    })


def test_badge_starts_at_the_largest_gradient_and_spreads_over_the_clusters():
    # three tight clusters of gradients (far apart), the middle one largest, and slices at the origin
    rng = np.random.default_rng(0)
    centres = np.array([[10.0, 0.0], [0.0, 30.0], [-10.0, 0.0]])
    emb = np.concatenate([c + rng.normal(scale=0.01, size=(5, 2)) for c in centres] + [np.zeros((5, 2))])
    t = _badge_table(emb)
    norms = (emb ** 2).sum(1)
    for seed in range(20):
        sel = select(t, SelectionConfig(strategy="badge", budget_s=40.0, seed=seed, **PLAIN))
        idx = sel.indices.tolist()
        assert idx[0] == int(np.argmax(norms)) and sel.spent_s == 40.0
        # four picks: one per cluster and one at the origin, never two from one cluster (the first three picks'
        # squared distances dwarf a cluster's spread)
        assert sorted(i // 5 for i in idx) == [0, 1, 2, 3], idx
        again = select(t, SelectionConfig(strategy="badge", budget_s=40.0, seed=seed, **PLAIN))
        assert again.indices.tolist() == idx  # reproducible for a seed
    # a budget beyond the distinct gradients: slices that repeat a chosen one exactly are never drawn
    dup = _badge_table(np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0], [0.0, 2.0]]))
    assert len(select(dup, SelectionConfig(strategy="badge", budget_s=100.0, **PLAIN)).indices) == 2


def test_badge_honours_cost_and_falls_back_to_fg_random_without_embeddings():
    emb = np.array([[5.0, 0.0], [0.0, 4.0], [3.0, 3.0], [0.0, 0.0]])
    # the largest gradient costs more than the budget: it is skipped, the rest still fit
    t = _badge_table(emb, cost=[50.0, 10.0, 10.0, 10.0])
    sel = select(t, SelectionConfig(strategy="badge", budget_s=30.0, **PLAIN))
    assert 0 not in sel.indices.tolist() and sel.indices[0] == 2 and sel.spent_s <= 30.0
    # supervoxel rows (no embedding) get what the slices leave, by fg_random's draw
    mixed = _badge_table(emb, kind=["slice", "slice", "supervoxel", "supervoxel"])
    got = select(mixed, SelectionConfig(strategy="badge", budget_s=40.0, **PLAIN)).indices.tolist()
    assert got[:2] == [0, 1] and sorted(got[2:]) == [2, 3]
    bare = RegionTable({k: v for k, v in t.columns.items() if k not in ("grad_embedding", "has_embedding")})
    fg = select(bare, SelectionConfig(strategy="fg_random", budget_s=30.0, **PLAIN))
    assert select(bare, SelectionConfig(strategy="badge", budget_s=30.0, **PLAIN)).indices.tolist() == \
        fg.indices.tolist()


def test_fg_badge_seeds_only_over_predicted_foreground_slices_then_fg_random():
    emb = np.array([[9.0, 0.0], [0.0, 4.0], [3.0, 3.0], [-5.0, 0.0]])
    t = _badge_table(emb)
    t["fg_fraction"] = np.array([0.0, 0.3, 0.2, 0.0])
    # the largest gradients (slices 0 and 3) hold no predicted foreground: fg_badge seeds over 1 and 2 first
    sel = select(t, SelectionConfig(strategy="fg_badge", budget_s=20.0, **PLAIN))
    assert sel.indices.tolist() == [2, 1]  # the larger norm first (18 > 16)
    assert select(t, SelectionConfig(strategy="badge", budget_s=20.0, **PLAIN)).indices[0] == 0
    # more budget than the pool holds: the rest by fg_random's draw
    more = select(t, SelectionConfig(strategy="fg_badge", budget_s=40.0, **PLAIN)).indices.tolist()
    assert more[:2] == [2, 1] and sorted(more[2:]) == [0, 3]


def test_badge_fg_weight_tilts_the_draws_to_predicted_foreground():
    # after the first (largest) gradient, two slices equally far from it: one with predicted foreground
    emb = np.array([[10.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    t = _badge_table(emb)
    t["fg_fraction"] = np.array([0.5, 0.95, 0.0])
    second = {False: [], True: []}
    for seed in range(200):
        for on in (False, True):
            cfg = SelectionConfig(strategy="badge", budget_s=20.0, seed=seed, badge_fg_weight=on, **PLAIN)
            idx = select(t, cfg).indices.tolist()
            assert idx[0] == 0
            second[on].append(idx[1])
    # plain BADGE: either, about evenly; weighted: 1.0 / 0.05 = 20 to 1 for the foreground slice
    assert 70 <= second[False].count(1) <= 130
    assert second[True].count(1) >= 180
