"""Selection strategies behind one registry, all spending the same budget of expert seconds.

``random``             units in random order, taken while they fit the budget.
``fg_random``          random, biased to predicted foreground (weighted sampling without replacement,
                       weight = 0.05 + predicted foreground fraction): nnActive's hard-to-beat baseline.
``fg_value``           fg_random's weighted sampling with the weight tilted by the unit's value:
                       ``(0.05 + fg fraction) * (value / mean value) ** value_power`` (0 = fg_random).
``topk``               highest value first, ignoring cost.
``knapsack``           most total value within the budget (0-1 knapsack on value and predicted seconds).
``knapsack+diversity`` knapsack over units that are also spread out: slices of one case at least
                       ``diversity_spacing`` apart, at most ``diversity_max_per_case`` units per case.
``fg_typical``         TypiClust in the rounds (Hacohen et al., "Active Learning on a Budget", ICML 2022: in the
                       low-budget regime the typical, diverse points teach more than the uncertain ones): the pool's
                       slices with predicted foreground (fg_random's pool) and the annotated ones, embedded by the
                       cold start's label-free encoder, fall into k-means clusters (as many as the slices annotated
                       plus those the budget affords); from each cluster holding no annotated slice, largest first,
                       its most typical slice; seconds left over go to fg_random's draw. Needs the ``cluster``,
                       ``typicality`` and ``cluster_size`` columns (:func:`add_clusters`); without them (supervoxels)
                       it is fg_random. Not a lever on the hippocampus tuning split (RESULTS.md): ahead of
                       fg_random in 2/2 screen seeds (+0.004 AUBC), but TCM (``selection.typical_rounds: 1``,
                       this strategy's first round, then the default) ended -0.0014 vs fg_random (3/5 seeds) and
                       -0.0022 vs the default (2/5).
``badge``              BADGE (Ash et al., "Deep Batch Active Learning by Diverse, Uncertain Gradient Lower
                       Bounds", ICLR 2020): k-means++ seeding over the slices' last-layer gradient embeddings
                       (:mod:`medal.uncertainty.embedding`; the model's own prediction as the label). The first
                       slice has the largest gradient norm, each next one is drawn with probability ~ its squared
                       distance to the nearest slice already chosen, taken while it fits the budget: uncertain and
                       spread out, cost-blind as BADGE is. Ignores value, quotas and noise. Needs the
                       ``grad_embedding`` column (:func:`add_gradient_embeddings`); units without one (supervoxels)
                       get the seconds left over by fg_random's draw.
``fg_badge``           ``badge`` over fg_random's pool only (slices with predicted foreground); the seconds left
                       over go to fg_random's draw over the rest. ``badge_fg_weight: true`` weights both
                       strategies' draws (after the first) also by fg_random's weight, 0.05 + predicted foreground
                       fraction; ``badge_weighting: foreground`` weights each voxel's term of the embedding by its
                       predicted foreground probability instead (ClaSP-style). None of the three first forms beat
                       fg_random on tuning screens (RESULTS.md, 2026-12-06).

A unit's value is the region table's ``score`` (see :mod:`medal.regions.values`); ``value_{c}`` is
its value for foreground class ``c``.

Class quotas. ``class_quota`` (``{class: share}``), or ``foreground_share`` split equally over the
foreground classes, reserves that share of the budget for class ``c``: a part solved on its own
with the units' class-``c`` value (``value_{c}``; only units where ``c`` has value take part), the
classes in a seeded random order; the rest of the budget (and whatever the class parts left) is then
solved on the overall value. Quotas and noise apply to the value-driven strategies (topk, knapsack,
knapsack+diversity); ``random`` and ``fg_random`` stay the honest baselines they are named after. With the knapsack, each part is an exact knapsack. This is the class
stratification of ClaSP PE (Lüth, Traub et al., TMLR 2025, arXiv:2601.13677; nnActive's
``ClassBalancedEntropy``: 66% of the queries split over the foreground classes).

Stochastic batches. ``noise: power`` perturbs every value as ``v * exp(g)``, ``g ~ Gumbel(0, 1/beta)``,
before the choice: power acquisition (Kirsch et al., "Stochastic Batch Acquisition: A Simple
Baseline for Deep Active Learning", TMLR 2023), which for ranking equals sampling units with
probability proportional to ``v ** beta``. ``beta`` follows an exponential schedule over rounds from
``beta_start`` to ``beta_end`` (reached at round ``beta_rounds - 1``). medal's default is beta 1 in every
round (proportional sampling, Kirsch et al.'s own default); ``beta_end: 100`` gives ClaSP PE's scheduled
power noising (``exponential_schedule(steps, 1, 100)``: exploratory batches while the model is weak,
nearly greedy later), which on the hippocampus tuning split fell behind fg_random once it turned greedy
(``benchmarks/RESULTS.md``). Reproducible for a seed and round.

Constraints, honoured by every strategy: skip units already annotated beyond
``skip_annotated_above``; at most ``max_per_case`` units and ``max_case_share`` of the budget's
seconds per case (spread across volumes; a case's first unit is admitted whatever it costs); chosen slices of one case and axis at least
``min_slice_spacing`` apart. The knapsack strategies first reduce the candidates to a set in which
every subset honours the spacing and per-case limits (best value/cost first), then solve the knapsack
exactly on it; the certificate (LP bound, gap) refers to that candidate set and, with noise, to the
perturbed values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from medal.regions.table import RegionTable
from medal.selection.knapsack import knapsack

__all__ = ["AUTO_NOVELTY_SHARE", "GAP_CASES", "NEEDS_CLUSTERS", "NEEDS_EMBEDDINGS", "NOVELTY_ALPHA", "NOVELTY_GAP", "STRATEGIES", "NoveltyTrigger", "Selection", "add_clusters", "add_gradient_embeddings",
           "add_novelty", "add_novelty_auto", "beta_for_round", "class_shares", "far_case_test", "min_far_case_p",
           "dominant_class", "get_strategy", "power_noise", "select"]


@dataclass(frozen=True)
class Selection:
    indices: np.ndarray  # rows of the region table, in the order the expert should do them
    spent_s: float
    value: float
    budget_s: float
    upper_bound: float | None = None  # knapsack strategies: LP bound over their candidates
    gap: float | None = None
    strategy: str = ""
    beta: float | None = None  # power-noise beta of this round (None: no noise)
    shares: dict = dataclasses.field(default_factory=dict)  # class -> budget share of the class parts
    # knapsack strategies: what the parts maximised (class parts count their class value, and noise
    # perturbs values), the sum the certificate (upper_bound, gap) bounds; equals value without either
    objective: float | None = None


class _Constraints:
    """Incremental check of per-case (count and seconds) and slice-spacing limits."""

    def __init__(self, table: RegionTable, max_per_case: int, spacing: int, max_seconds: float = 0.0):
        self.t, self.max_per_case, self.spacing, self.max_seconds = table, max_per_case, spacing, max_seconds
        self.per_case: dict = {}
        self.seconds: dict = {}
        self.slices: dict = {}

    def admits(self, i: int) -> bool:
        case = self.t["case_id"][i]
        if self.max_per_case and self.per_case.get(case, 0) >= self.max_per_case:
            return False
        spent = self.seconds.get(case, 0.0)
        if self.max_seconds and spent > 0 and spent + self.t["cost"][i] > self.max_seconds + 1e-9:
            return False  # a case's first unit is always admitted, whatever it costs
        if self.spacing > 1 and self.t["kind"][i] == "slice":
            taken = self.slices.get((case, int(self.t["axis"][i])), ())
            k = int(self.t["index"][i])
            if any(abs(k - j) < self.spacing for j in taken):
                return False
        return True

    def copy(self) -> "_Constraints":
        other = _Constraints(self.t, self.max_per_case, self.spacing, self.max_seconds)
        other.per_case = dict(self.per_case)
        other.seconds = dict(self.seconds)
        other.slices = {k: set(v) for k, v in self.slices.items()}
        return other

    def view(self, table: RegionTable) -> "_Constraints":
        """The same state, reading ``table`` (same rows, other values)."""
        other = self.copy()
        other.t = table
        return other

    def update(self, other: "_Constraints") -> None:
        self.per_case, self.seconds, self.slices = other.per_case, other.seconds, other.slices

    def add(self, i: int) -> None:
        case = self.t["case_id"][i]
        self.per_case[case] = self.per_case.get(case, 0) + 1
        self.seconds[case] = self.seconds.get(case, 0.0) + float(self.t["cost"][i])
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


def _fg_value(table, rows, budget, cfg, rng, cons):
    """fg_random's weighted permutation, its weight tilted by the unit's value (``value_power``).

    nnActive's foreground-aware random (Lüth et al., "Navigating the pitfalls of active learning
    evaluation", NeurIPS 2023 / nnActive 2025) is the baseline value-per-second selection has not beaten
    here; this keeps its cost-blind, spread-out sampling and uses the model's value only as a soft
    preference (power sampling in the sense of Kirsch et al., TMLR 2023, with probability ~ weight).
    ``value_power: 0`` is fg_random exactly (same random draws, same order)."""
    fg = 0.05 + np.clip(table["fg_fraction"][rows], 0, 1)
    v = np.maximum(np.asarray(table["score"][rows], dtype=np.float64), 0.0)
    mean = v[v > 0].mean() if (v > 0).any() else 1.0
    w = fg * np.maximum(v / mean, 1e-6) ** cfg.value_power if cfg.value_power else fg
    u = rng.random(len(rows))
    # Efraimidis-Spirakis keys u ** (1 / w), compared in log space (tiny weights would underflow)
    keys = np.log(np.maximum(u, 1e-300)) / w
    return _sequential(rows[np.argsort(-keys, kind="stable")], table, budget, cons), None


def _fg_typical(table, rows, budget, cfg, rng, cons):
    """TypiClust over the rounds (see the module docstring), spending ``budget`` in predicted seconds."""
    if "cluster" not in table:
        return _fg_random(table, rows, budget, cfg, rng, cons)
    cluster, typ, size = table["cluster"], table["typicality"], table["cluster_size"]
    annotated = (table["annotated_fraction"] > cfg.skip_annotated_above) & (cluster >= 0)
    covered = set(cluster[annotated].tolist())
    cand = rows[(cluster[rows] >= 0) & (table["fg_fraction"][rows] > 0)]
    cand = cand[[int(c) not in covered for c in cluster[cand]]] if len(cand) else cand
    # each cluster's most typical candidate, the clusters largest first (ties: the more typical)
    cand = cand[np.lexsort((-typ[cand], cluster[cand]))]
    first = np.ones(len(cand), bool)
    first[1:] = cluster[cand][1:] != cluster[cand][:-1]
    reps = cand[first]
    reps = reps[np.lexsort((-typ[reps], -size[reps]))]
    chosen = _sequential(reps, table, budget, cons)
    left = budget - float(table["cost"][chosen].sum()) if chosen else budget
    rest = np.setdiff1d(rows, np.asarray(chosen, dtype=np.int64))
    more, _ = _fg_random(table, rest, left, cfg, rng, cons)
    return chosen + more, None


def _badge(table, rows, budget, cfg, rng, cons, foreground: bool = False):
    """BADGE's k-means++ seeding (``init_centers`` of github.com/JordanAsh/badge) within ``budget`` seconds;
    ``foreground``: over the slices with predicted foreground only (fg_random's pool)."""
    if "grad_embedding" not in table:
        return _fg_random(table, rows, budget, cfg, rng, cons)
    has = table["has_embedding"][rows].astype(bool)
    if foreground:
        has &= table["fg_fraction"][rows] > 0
    cand = rows[has]
    emb = table["grad_embedding"][cand].reshape(len(cand), -1).astype(np.float64)
    cost = table["cost"][cand]
    # selection.badge_fg_weight: the draws also weighted by fg_random's weight (0.05 + predicted foreground fraction)
    fg_w = 0.05 + np.clip(table["fg_fraction"][cand], 0, 1) if cfg.badge_fg_weight else np.ones(len(cand))
    open_ = cost <= budget
    chosen, left, d2 = [], budget, None
    while open_.any():
        if d2 is None:  # the first centre: the largest gradient norm (BADGE's choice)
            norm = np.where(open_, (emb ** 2).sum(1), -1.0)
            j = int(np.argmax(norm))
        else:
            w = np.where(open_, d2 * fg_w, 0.0)
            if not w.sum() > 0:  # every open slice sits on a chosen one: nothing new to add
                break
            j = int(rng.choice(len(cand), p=w / w.sum()))
        open_[j] = False
        i = int(cand[j])
        if not cons.admits(i):
            continue
        chosen.append(i)
        cons.add(i)
        left -= cost[j]
        open_ &= cost <= left
        dj = ((emb - emb[j]) ** 2).sum(1)
        d2 = dj if d2 is None else np.minimum(d2, dj)
    rest = rows[~has]
    if len(rest) and left > 0:  # units without an embedding (supervoxels), or outside the pool: fg_random's draw
        more, _ = _fg_random(table, rest, left, cfg, rng, cons)
        chosen += more
    return chosen, None


def _fg_badge(table, rows, budget, cfg, rng, cons):
    return _badge(table, rows, budget, cfg, rng, cons, foreground=True)


def _topk(table, rows, budget, cfg, rng, cons):
    return _sequential(rows[np.argsort(-table["score"][rows], kind="stable")], table, budget, cons), None


def _knapsack(table, rows, budget, cfg, rng, cons):
    score, cost = table["score"][rows], table["cost"][rows]
    ratio = score / np.maximum(cost, 1e-12)
    if cons.max_per_case or cons.spacing > 1 or cons.max_seconds:  # reduce to a set whose every subset honours the limits
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
    "fg_value": _fg_value,
    "topk": _topk,
    "knapsack": _knapsack,
    "knapsack+diversity": _knapsack_diversity,
    "fg_typical": _fg_typical,
    "badge": _badge,
    "fg_badge": _fg_badge,
}

#: strategies that read per-slice gradient embeddings (columns added by :func:`add_gradient_embeddings`)
NEEDS_EMBEDDINGS = ("badge", "fg_badge")

#: strategies that read the pool's label-free clusters (columns added by :func:`add_clusters`)
NEEDS_CLUSTERS = ("fg_typical",)


#: strategies that rank by value: class quotas and power noise apply to these only
VALUE_DRIVEN = ("topk", "knapsack", "knapsack+diversity")


def add_clusters(table: RegionTable, dataset, *, budget_s: float, skip_annotated_above: float = 0.5,
                 data_cfg=None, coldstart_cfg=None) -> RegionTable:
    """``table`` with ``cluster``, ``typicality`` and ``cluster_size`` columns (TypiClust's view,
    :func:`medal.coldstart.slice_clusters`) for its slices with predicted foreground or annotated beyond
    ``skip_annotated_above`` (-1 / 0 / 0 for other rows): k = those annotated plus the slices ``budget_s`` affords
    at the open ones' median predicted cost."""
    from medal.coldstart import slice_clusters

    is_slice = table["kind"] == "slice" if len(table) else np.zeros(0, bool)
    cluster = np.full(len(table), -1, np.int64)
    typ, size = np.zeros(len(table)), np.zeros(len(table))
    done = table["annotated_fraction"] > skip_annotated_above if len(table) else np.zeros(0, bool)
    # the slices TypiClust clusters: those with predicted foreground (fg_random's pool), and the annotated ones
    # (which cover their clusters)
    rows = np.flatnonzero(is_slice & (done | (table["fg_fraction"] > 0))) if len(table) else np.zeros(0, np.int64)
    if len(rows):
        open_cost = table["cost"][rows][~done[rows]]
        afford = int(budget_s // max(float(np.median(open_cost)), 1e-9)) if len(open_cost) else 0
        k = max(1, int(done[rows].sum()) + max(afford, 1))
        c, t, n = slice_clusters(dataset, table["case_id"][rows], table["axis"][rows], table["index"][rows], k=k,
                                 cfg=coldstart_cfg, data_cfg=data_cfg)
        cluster[rows], typ[rows], size[rows] = c, t, n
    return RegionTable({**table.columns, "cluster": cluster, "typicality": typ, "cluster_size": size})


def add_gradient_embeddings(table: RegionTable, scores_dir, weighting: str = "none") -> RegionTable:
    """``table`` with ``grad_embedding`` (``(n, C, H + 1)``, float32) and ``has_embedding`` columns for ``badge``:
    each slice row's embedding (of ``weighting``, ``selection.badge_weighting``) from its case's
    ``gradient_embedding.npz`` under ``scores_dir`` (see :mod:`medal.uncertainty.embedding`); other rows
    (supervoxels) get zeros and ``has_embedding`` False. A slice case without the file is a ``ValueError`` naming
    it."""
    from pathlib import Path

    from medal.uncertainty.embedding import EMBEDDING_FILE, load_gradient_embeddings

    n = len(table)
    is_slice = table["kind"] == "slice" if n else np.zeros(0, bool)
    has = np.zeros(n, bool)
    out = None
    for (case, axis) in sorted({(str(c), int(a)) for c, a in zip(table["case_id"][is_slice], table["axis"][is_slice])}):
        arr = load_gradient_embeddings(Path(scores_dir) / case / EMBEDDING_FILE, axis, weighting)
        if out is None:
            out = np.zeros((n, *arr.shape[1:]), np.float32)
        elif arr.shape[1:] != out.shape[1:]:
            raise ValueError(f"{Path(scores_dir) / case / EMBEDDING_FILE}: embeddings of shape {arr.shape[1:]}, "
                             f"other cases' {out.shape[1:]}")
        rows = np.flatnonzero(is_slice & (table["case_id"] == case) & (table["axis"] == axis))
        idx = table["index"][rows].astype(np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(arr)):
            raise ValueError(f"{Path(scores_dir) / case / EMBEDDING_FILE}: {len(arr)} slices along axis {axis}, "
                             f"the table has slice {int(idx.max())}")
        out[rows] = arr[idx]
        has[rows] = True
    if out is None:
        out = np.zeros((n, 1), np.float32)
    return RegionTable({**table.columns, "grad_embedding": out, "has_embedding": has})


# selection.novelty_share: auto -- the share it spends when the trigger fires (0.2: the share measured on the new-site
# layout, RESULTS.md 2026-12-05 19:21 and 21:52 UTC) and the trigger's default level (selection.novelty_alpha; an exact
# rank test, far_case_test): 0.05 (on medal's own starts it fires on 66% of the new-site protocol's and 5% of the
# ordinary pool's; 0.1 fires on 93% and 12%, but its extra ordinary fires cost -0.0046 AUBC each, 22 seeds: RESULTS.md
# 2026-12-06 10:59 UTC plan and 11:12 UTC prose; 0.1 was the default from 08:54 to 11:12 UTC that day)
AUTO_NOVELTY_SHARE = 0.2
NOVELTY_ALPHA = 0.05
# far_case_test's gap: how far the GAP_CASES-th farthest open case lies, as a multiple of the farthest annotated case's
# distance (a block of cases, not one odd scan). selection.novelty_gap (NOVELTY_GAP): the trigger also fires where the
# gap is above it, with at least GAP_MIN_ANNOTATED annotated cases (a guard, not screened). 1.2: the smallest level
# that added at most 3 of 300 fires to the rank test's on the ordinary pool (medal's starts 1000-1299; 1 of 300 on
# starts 2000-2299), and it raised the new-site protocol's fires from 66% to 99% (RESULTS.md, plan of 2026-12-06 13:59 UTC)
GAP_CASES = 3
GAP_MIN_ANNOTATED = 5
NOVELTY_GAP = 1.2


@dataclass
class NoveltyTrigger:
    """The outcome of :func:`far_case_test`: is there a group of open cases unlike every annotated case?"""

    fired: bool
    p: float
    far_cases: list
    annotated_cases: int
    open_cases: int
    alpha: float = NOVELTY_ALPHA
    why: str = ""
    weak_alpha: float = 0.0  # selection.novelty_weak_alpha: half the share where alpha <= p < weak_alpha (0: off)
    gap: float = 0.0  # the GAP_CASES-th largest open-case distance / the largest annotated one (0: fewer open cases)
    gap_level: float = 0.0  # selection.novelty_gap: the trigger also fires where gap is above it (0: off)

    @property
    def by_gap(self) -> bool:
        """Whether the gap alone is enough: above ``gap_level``, with at least ``GAP_MIN_ANNOTATED`` annotated cases."""
        return bool(self.gap_level > 0 and self.gap > self.gap_level and self.annotated_cases >= GAP_MIN_ANNOTATED)

    @property
    def level(self) -> float:
        """The level below which the part turns on at all."""
        return max(self.alpha, self.weak_alpha)

    @property
    def share(self) -> float:
        """The share of the round's seconds the part spends: 0 unless fired; half where only the weak level is met."""
        if not self.fired:
            return 0.0
        return AUTO_NOVELTY_SHARE if self.p < self.alpha or self.by_gap else AUTO_NOVELTY_SHARE / 2

    def message(self) -> str:
        if self.why:
            return f"novelty part off: {self.why}"
        n, o, a = len(self.far_cases), self.open_cases, self.annotated_cases
        head = (f"{n} of {o} unlabelled case(s) lie farther from the labelled cases than any of the {a} labelled case(s) "
                f"does (by chance: p = {self.p:.2g})")
        far = (f"; the {GAP_CASES} farthest lie {self.gap:.2f}x as far as the farthest labelled case"
               if self.gap_level > 0 and self.annotated_cases >= GAP_MIN_ANNOTATED and self.gap > 0 else "")
        if self.fired:
            shown = ", ".join(self.far_cases[:5]) + (", ..." if n > 5 else "")
            if self.p < self.alpha:
                why = ""
            elif self.by_gap:
                why = f"; p not below {self.alpha:g}, but far: gap above {self.gap_level:g}"
            else:
                why = f"; weak evidence, p not below {self.alpha:g}"
            return (f"novelty part on ({100 * self.share:.0f}% of the budget{why}): {head}{far}: a new site or "
                    f"scanner? ({shown})")
        gap_off = f", gap not above {self.gap_level:g}" if far else ""
        return f"novelty part off: {head}, not below {self.level:g}{far}{gap_off}"

    def to_json(self) -> dict:
        out = {"fired": self.fired, "p": self.p, "far_cases": list(self.far_cases),
               "annotated_cases": self.annotated_cases, "open_cases": self.open_cases, "alpha": self.alpha}
        if self.weak_alpha:
            out["weak_alpha"] = self.weak_alpha
        if self.gap_level:
            out.update(gap=self.gap, gap_level=self.gap_level)
        return {**out, "share": self.share, "message": self.message()}


def min_far_case_p(n: int, m: int) -> float:
    """The smallest ``p`` :func:`far_case_test` can return with ``n`` annotated and ``m`` open cases: every open case
    far, ``1 / C(n + m, m)``; 1 where there are fewer than 2 annotated cases or no open one."""
    if n < 2 or m < 1:
        return 1.0
    return _far_tail(n, m, m)


def _untestable(n: int, m: int) -> str:
    """Why :func:`far_case_test` cannot compare ``n`` annotated with ``m`` open cases at all ("" where it can)."""
    if n < 2:
        return "fewer than 2 annotated cases to compare with"
    return "every case holds an annotated slice" if m < 1 else ""


def _far_tail(n: int, m: int, k: int) -> float:
    """``C(m, k) / C(n + m, k)``: the chance that the ``k`` largest of ``n + m`` exchangeable values are all among
    the ``m`` (1 for ``k = 0``)."""
    return float(np.prod([(m - i) / (n + m - i) for i in range(k)]))


def far_case_test(z: np.ndarray, owner, inner: np.ndarray, annotated_cases, *,
                  alpha: float = NOVELTY_ALPHA, weak_alpha: float = 0.0, gap_level: float = 0.0) -> NoveltyTrigger:
    """Are some open cases farther from the annotated cases than the annotated cases are from each other?

    ``z``: one embedding per slice (rows unit-normalised here), ``owner``: each slice's case, ``inner``: the slices
    that count (inside the edge margin), ``annotated_cases``: the cases holding an annotated slice. Each case's
    distance is the median, over its inner slices, of the distance to the nearest inner slice of an annotated case
    *other than itself*; ``far`` are the ``k`` open cases farther than every annotated case. Were the annotated
    cases a random draw of the pool's cases (a random start), the ``n + m`` case distances are exchangeable (the
    rank argument of conformal prediction; Vovk, Gammerman & Shafer, "Algorithmic Learning in a Random World",
    2005), and the chance that the ``k`` largest all belong to open cases is ``C(m, k) / C(n + m, k)``: that is
    ``p`` (an open case is compared with every annotated case, an annotated one with one fewer, so the test errs
    towards not firing). The trigger fires below ``alpha``. A site none of whose cases is labelled shows as a
    block of far cases. No test valid for a random draw of annotated cases can do better on a block of ``k`` far
    cases: the chance that such a draw misses a given ``k`` cases is that same ``C(m, k) / C(n + m, k)``, so the
    level is the only lever for a small new site. On tuning-pool starts (``benchmarks/novelty_trigger.py
    --levels``, medal's own 300 starts) it fired at 0.05 in 66% of the new-site protocol's and 5.0% of the original
    images' (every case labelled), at 0.1 in 93% and 12% (RESULTS.md 2026-12-06); a binomial tail on the far count
    fired in 6% of exchangeable synthetic draws at 0.01 (the count's draws share one threshold).

    ``weak_alpha`` (``selection.novelty_weak_alpha``, above ``alpha``; 0 = off): the test also fires where
    ``alpha <= p < weak_alpha``, and the trigger's ``share`` is then half the share (weaker evidence, a smaller bet).

    ``gap_level`` (``selection.novelty_gap``; 0 = off): the test also fires, with the whole share, where ``gap`` (the
    ``GAP_CASES``-th farthest open case's distance over the farthest annotated case's) is above it and at least
    ``GAP_MIN_ANNOTATED`` cases are annotated. The rank test only counts a far block; the gap says how far it lies. A
    9-case new site after a 300 s start sits at p ~ 0.05-0.075 however far it lies, but its gap was 1.5 (median)
    against 0.97 on the ordinary pool: at 1.2 the gap added 1 of 300 fires there and lifted the new-site protocol's
    from 66% to 99% (``benchmarks/novelty_trigger.py --gap-levels``, RESULTS.md 2026-12-06). This is a calibrated
    rule, not an exact test: its level was read off the tuning pool's starts, not derived.
    """
    from scipy.spatial import cKDTree

    owner = np.asarray(owner)
    inner = np.asarray(inner, bool)
    annotated = set(annotated_cases)
    cases = sorted(set(owner[inner].tolist()))
    ann = [c for c in cases if c in annotated]
    opened = [c for c in cases if c not in annotated]
    if len(ann) < 2 or not opened:
        why = _untestable(len(ann), len(opened))
        return NoveltyTrigger(False, 1.0, [], len(ann), len(opened), alpha, why, weak_alpha, 0.0, gap_level)
    zz = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    ref_mask = inner & np.isin(owner, ann)
    every = cKDTree(zz[ref_mask])
    dist = {}
    for c in cases:
        mine = zz[inner & (owner == c)]
        if c in annotated:
            tree = cKDTree(zz[ref_mask & (owner != c)])
        else:
            tree = every
        dist[c] = float(np.median(tree.query(mine)[0]))
    top = max(dist[c] for c in ann)
    far = sorted((c for c in opened if dist[c] > top), key=lambda c: -dist[c])
    n, m = len(ann), len(opened)
    p = _far_tail(n, m, len(far))
    ordered = sorted((dist[c] for c in opened), reverse=True)
    gap = ordered[GAP_CASES - 1] / top if len(ordered) >= GAP_CASES and top > 0 else 0.0
    t = NoveltyTrigger(bool(p < max(alpha, weak_alpha)), p, far, n, m, alpha, "", weak_alpha, float(gap), gap_level)
    t.fired = t.fired or t.by_gap
    return t


def add_novelty(table: RegionTable, dataset, *, skip_annotated_above: float = 0.5, data_cfg=None,
                coldstart_cfg=None) -> RegionTable:
    """``table`` with a ``novelty`` column: for each open slice, how far beyond the open slices' median its distance
    to the nearest annotated slice lies, in the cold start's label-free representation (unit-normalised; the
    encoder ``fg_typical`` clusters with); 0 for other rows, and everywhere while no slice is annotated.

    The part of a round it drives (``selection.novelty_share``) reaches units the model's own value cannot: on a
    site the model has never seen its predicted foreground, and with it the class-stratified value and
    fg_random's weight, is ~0 (RESULTS.md 2026-12-05, the new-site runs; ``benchmarks/site_distance.py``: the
    encoder separates such a site, AUC 0.94). A distance to the labelled set is the core-set view of diversity
    (Sener & Savarese, "Active Learning for Convolutional Neural Networks: A Core-Set Approach", ICLR 2018),
    used here as a share of the budget rather than the whole selection.

    Slices within the cold start's ``edge_margin`` (a share of the volume's extent along the slice axis, 0.2 by
    default) of either end get no novelty, as the cold start chooses none there: a volume's ends are its most
    foreground-free slices, and a far site's ends are as far in the encoder as its anatomy (27% of the novelty
    part held no foreground without the margin, RESULTS.md 2026-12-05 18:28 UTC).
    """
    return _novelty(table, dataset, skip_annotated_above, data_cfg, coldstart_cfg, auto=False)[0]


def add_novelty_auto(table: RegionTable, dataset, *, skip_annotated_above: float = 0.5, data_cfg=None,
                     coldstart_cfg=None, alpha: float = NOVELTY_ALPHA, weak_alpha: float = 0.0,
                     gap_level: float = NOVELTY_GAP) -> tuple[RegionTable, NoveltyTrigger]:
    """``selection.novelty_share: auto``: :func:`add_novelty`'s column where :func:`far_case_test` fires on the
    slices' embeddings (some open cases lie farther from the annotated cases than any annotated case does) below
    ``alpha`` (``selection.novelty_alpha``), zero everywhere otherwise (the selection is then exactly the one without
    a novelty part); and the test's outcome (its ``share``: what the round spends on the part; ``weak_alpha`` and
    ``gap_level``: see :func:`far_case_test`)."""
    return _novelty(table, dataset, skip_annotated_above, data_cfg, coldstart_cfg, auto=True, alpha=alpha,
                    weak_alpha=weak_alpha, gap_level=gap_level)


def _novelty(table, dataset, skip_annotated_above, data_cfg, coldstart_cfg, *, auto: bool,
             alpha: float = NOVELTY_ALPHA, weak_alpha: float = 0.0, gap_level: float = 0.0):
    from medal.coldstart import slice_embeddings
    from medal.config import ColdstartConfig

    novelty = np.zeros(len(table))
    is_slice = table["kind"] == "slice" if len(table) else np.zeros(0, bool)
    done = is_slice & (table["annotated_fraction"] > skip_annotated_above) if len(table) else np.zeros(0, bool)
    trigger = NoveltyTrigger(False, 1.0, [], 0, 0, alpha, why="no slice is annotated yet" if not done.any() else
                             "no slice is left open", weak_alpha=weak_alpha, gap_level=gap_level)
    level = max(alpha, weak_alpha)
    if auto and done.any() and (is_slice & ~done).any():
        # the smallest p the test can return is 1 / C(n + m, m) (every open case far); where even that is not below
        # alpha, the test cannot fire, so the encoder is not trained for it (a few-case pool or a test's phantoms)
        case = np.asarray(table["case_id"])
        n = len(set(case[done].tolist()))
        m = len(set(case[is_slice].tolist()) - set(case[done].tolist()))
        best = min_far_case_p(n, m)
        gap_testable = gap_level > 0 and n >= GAP_MIN_ANNOTATED and m >= GAP_CASES
        if best >= level and not gap_testable:
            why = _untestable(n, m) or (
                f"{n} labelled and {m} unlabelled case(s) are too few for the test: even every unlabelled case "
                f"far gives p = {best:.2g}, not below {level:g}")
            trigger = NoveltyTrigger(False, 1.0, [], n, m, alpha, why=why, weak_alpha=weak_alpha, gap_level=gap_level)
            return RegionTable({**table.columns, "novelty": novelty}), trigger
    if done.any() and (is_slice & ~done).any():
        rows = np.flatnonzero(is_slice)
        z, found = slice_embeddings(dataset, table["case_id"][rows], table["axis"][rows], table["index"][rows],
                                    cfg=coldstart_cfg, data_cfg=data_cfg)
        z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        ref = found & done[rows]
        margin = (coldstart_cfg or ColdstartConfig()).edge_margin
        inside = _inside_extent(table, rows, margin)
        mine = np.flatnonzero(found & ~done[rows] & inside)
        if auto:
            owner = np.asarray(table["case_id"][rows])
            trigger = far_case_test(z, owner, found & inside, set(owner[ref].tolist()), alpha=alpha,
                                    weak_alpha=weak_alpha, gap_level=gap_level)
        if ref.any() and len(mine) and (trigger.fired or not auto):
            from scipy.spatial import cKDTree

            d = cKDTree(z[ref]).query(z[mine])[0]  # exact nearest annotated slice, Euclidean
            novelty[rows[mine]] = np.maximum(d - np.median(d), 0.0)
    return RegionTable({**table.columns, "novelty": novelty}), trigger


def _inside_extent(table: RegionTable, rows: np.ndarray, margin: float) -> np.ndarray:
    """For slice rows ``rows``: True where the slice lies farther than ``margin`` of its volume's extent along its
    slice axis from either end (the extent read from the table: its highest slice index + 1 per case and axis)."""
    if margin <= 0 or not len(rows):
        return np.ones(len(rows), bool)
    case, axis = table["case_id"][rows], np.asarray(table["axis"][rows]).astype(np.int64)
    index = np.asarray(table["index"][rows], dtype=np.float64)
    extent: dict = {}
    for c, a, i in zip(case, axis, index):
        extent[(c, a)] = max(extent.get((c, a), 0.0), i + 1.0)
    pos = (index + 0.5) / np.array([extent[(c, a)] for c, a in zip(case, axis)])
    return (pos >= margin) & (pos <= 1.0 - margin)


def _novelty_part(table, rows, budget, rng, cons, per_case: int = 2) -> list[int]:
    """Slices drawn with probability ~ ``novelty`` (Efraimidis-Spirakis), at most ``per_case`` per case."""
    w = table["novelty"][rows]
    rows, w = rows[w > 0], w[w > 0]
    if not len(rows):
        return []
    keys = np.log(np.maximum(rng.random(len(rows)), 1e-300)) / w
    order, seen = [], {}
    for r in rows[np.argsort(-keys, kind="stable")]:
        c = table["case_id"][r]
        if seen.get(c, 0) < per_case:
            order.append(r)
            seen[c] = seen.get(c, 0) + 1
    return _sequential(order, table, budget, cons)


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


def beta_for_round(cfg, round_index: int) -> float:
    """The power-noise ``beta`` of round ``round_index``: exponential from ``beta_start`` to ``beta_end``."""
    n = max(1, cfg.beta_rounds)
    t = min(max(round_index, 0), n - 1) / (n - 1) if n > 1 else 1.0
    return float(cfg.beta_start * (cfg.beta_end / cfg.beta_start) ** t)


def power_noise(values: np.ndarray, beta: float, rng: np.random.Generator) -> np.ndarray:
    """``v * exp(g)`` with ``g ~ Gumbel(0, 1 / beta)``: power acquisition on positive values (others
    stay as they are); ``log`` of the result is ``log v + g``, as in nnActive's ``power_noising``."""
    v = np.asarray(values, dtype=np.float64)
    g = rng.gumbel(0.0, 1.0 / beta, size=v.shape)
    return np.where(v > 0, v * np.exp(np.minimum(g, 50.0)), v)


def class_shares(table: RegionTable, cfg) -> dict[int, float]:
    """Budget share per foreground class: ``class_quota``, else ``foreground_share`` split equally."""
    classes = sorted(int(k[6:]) for k in table.columns if k.startswith("value_"))
    if cfg.class_quota:
        unknown = sorted(set(cfg.class_quota) - set(classes))
        if unknown:
            raise ValueError(f"selection.class_quota: class(es) {unknown} do not exist; the dataset's foreground "
                             f"classes are {classes}")
        return dict(sorted(cfg.class_quota.items()))
    if cfg.foreground_share > 0 and classes:
        return {c: cfg.foreground_share / len(classes) for c in classes}
    return {}


def select(table: RegionTable, cfg, *, budget_s: float | None = None, strategy: str | None = None,
           round_index: int = 0, novelty_share: float | None = None) -> Selection:
    """Choose units of ``table`` (needs ``score`` and ``cost`` columns) per the selection config.

    ``round_index`` sets the power-noise temperature (``beta_for_round``). ``novelty_share``: the share of the
    novelty part under ``novelty_share: auto`` (the trigger's ``share``; default ``AUTO_NOVELTY_SHARE``).
    """
    for col in ("score", "cost", "case_id", "kind", "axis", "index", "annotated_fraction", "fg_fraction"):
        if col not in table:
            raise ValueError(f"region table lacks column {col!r}")
    if len(table) and (not np.isfinite(table["cost"]).all() or (table["cost"] < 0).any()):
        raise ValueError("region costs must be finite and >= 0")
    if len(table) and not np.isfinite(table["score"]).all():
        raise ValueError("region values (score) must be finite")
    name = strategy or cfg.strategy
    fn = get_strategy(name)
    budget = float(cfg.budget_s if budget_s is None else budget_s)
    rng = np.random.default_rng([cfg.seed, max(round_index, 0)])
    cons = _Constraints(table, cfg.max_per_case, cfg.min_slice_spacing,
                        cfg.max_case_share * budget if cfg.max_case_share else 0.0)
    rows = np.flatnonzero(table["annotated_fraction"] <= cfg.skip_annotated_above) if len(table) else np.zeros(0, int)
    valued = name in VALUE_DRIVEN  # the random baselines stay plain random, whatever the value settings say
    shares = class_shares(table, cfg) if len(table) and valued else {}
    beta = beta_for_round(cfg, round_index) if cfg.noise == "power" and valued else None

    def scored(column: str) -> RegionTable:
        values = table[column]
        if beta is not None:
            values = power_noise(values, beta, rng)
        return RegionTable({**table.columns, "score": values})

    chosen: list[int] = []
    results = []
    # "auto": the novelty column is zero unless add_novelty_auto's trigger fired, and the part is then empty
    auto_share = AUTO_NOVELTY_SHARE if novelty_share is None else novelty_share
    share = auto_share if cfg.novelty_share == "auto" else cfg.novelty_share
    if valued and share > 0 and "novelty" in table and len(rows):
        # the novelty part first (add_novelty): its seconds come off the budget the class parts and the rest share
        sub = cons.view(table)
        chosen += _novelty_part(table, rows, budget * share, rng, sub)
        cons.update(sub)
        if chosen:
            results.append(None)  # no knapsack certificate covers a sampled part
    budget_parts = budget - float(table["cost"][chosen].sum()) if chosen else budget
    order = list(shares)
    rng.shuffle(order)
    for c in order:
        view = scored(f"value_{c}")
        part = rows[view["score"][rows] > 0]
        part = np.setdiff1d(part, np.asarray(chosen, dtype=np.int64))
        sub = cons.view(view)
        picked, res = fn(view, part, budget_parts * shares[c], cfg, rng, sub)
        cons.update(sub)
        chosen += picked
        results.append(res)
    rest = np.setdiff1d(rows, np.asarray(chosen, dtype=np.int64)) if chosen else rows
    left = budget - float(table["cost"][chosen].sum()) if chosen else budget
    view = scored("score")
    sub = cons.view(view)
    picked, res = fn(view, rest, left, cfg, rng, sub)
    chosen += picked
    results.append(res)
    idx = np.asarray(chosen, dtype=np.int64)
    spent = float(table["cost"][idx].sum()) if len(idx) else 0.0
    value = float(table["score"][idx].sum()) if len(idx) else 0.0
    ub = gap = objective = None
    if all(r is not None for r in results):
        ub = float(sum(r.upper_bound for r in results))
        objective = float(sum(r.value for r in results))
        gap = 0.0 if ub <= 0 else max(0.0, (ub - objective) / ub)
    return Selection(idx, spent, value, budget, ub, gap, name, beta=beta,
                     shares={int(c): float(v) for c, v in shares.items()}, objective=objective)
