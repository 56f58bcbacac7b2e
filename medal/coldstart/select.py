"""Cold start: choose the first slices to annotate with no labels and no segmentation model.

Representations (``coldstart.representation``): ``thumbnails`` (small thumbnails + intensity
histogram, PCA; :mod:`medal.coldstart.represent`) or ``encoder`` (a contrastive encoder trained on
the pool itself; :mod:`medal.coldstart.encoder`).

Methods (``coldstart.method``), each spending the budget in predicted seconds with at most
``max_per_case`` slices per volume:

``typiclust``
    TypiClust (Hacohen et al., "Active Learning on a Budget", ICML 2022): k-means into as many
    clusters as the budget affords slices; from each, its most *typical* slice (densest neighbourhood:
    inverse mean distance to its ``neighbours`` nearest neighbours), chosen by a knapsack on
    typicality x cluster share and predicted seconds.
``probcover``
    ProbCover (Yehuda et al., "Active Learning Through a Covering Lens", NeurIPS 2022): greedy maximum
    coverage of the delta-ball graph (every slice within ``delta`` of a chosen slice is covered), by
    coverage gained per predicted second. ProbCover is known to be sensitive to ``delta``; it is set
    by the paper's label-free rule: the largest radius at which at least ``purity`` (0.95) of the
    balls stay inside one k-means cluster of the representation (k = the slices the budget affords).

``edge_margin``: slices within this share of a volume's extent from either end (along the slice axis)
are never chosen, though they still shape the clusters and the coverage: in region-of-interest crops
such as the hippocampus set the end slices hold little anatomy (on its tuning pool: 1% of the first
and 0% of the last tenth of the slices hold hippocampus, 98-100% of the middle 60%).

Predicted seconds without a model: a per-slice prior from the image itself (:func:`slice_cost_prior`:
the intercept and per-slice seconds of the cost model plus an outline term from the slice's strong
edges), scaled by a pilot: the expert paints and times the first few chosen slices (``medal
coldstart --pilot N``, then ``--pilot-log``), and the prior is multiplied by what they took over what it
predicted, so the rest of the selection spends the budget in true seconds. Three slices say little
about a mean of slices that take 5 to 40 s, so ``medal simulate`` (``coldstart.pilot_batches``) and an
expert (``--pilot-log LOG --pilot N``) can time further batches, each re-scaling the prior on every
slice timed so far, before the rest is chosen. The rest is painted in order with a clock: a slice whose
predicted seconds exceed what is left of the budget is skipped (``medal simulate`` does this with the
oracle's true seconds), so a start misses its budget by about one slice's prediction error rather than
by the error over the whole rest (on the tuning split, without the clock, one seed of five charged 337 s
of a 300 s budget).

``edge_share``: this share of the budget goes to slices *outside* the edge margin, chosen by the same
method among them before the rest (so the per-volume cap cannot squeeze them out) and spread evenly through
the picks. The share is of the whole budget: with a pilot and timed batches (``keep``) what kept slices already
spent there is deducted, so the share is neither starved (batches take the front of each selection) nor bought
again at every stage (before this, the 0.2 screen below bought its share of what was left at each stage).
Meant to buy the negatives a random start gets (on the hippocampus tuning pool a third of its
slices are background only; a cold start with the margin buys none), but on a tuning screen (RESULTS.md) the
ends' typical slices still held hippocampus in 98% of picks (the outer fifth reaches into the structure),
and the first model was worse (0.604 vs 0.640). 0 = off. ``ends_margin``: the ends' share is chosen only among
slices within this share of either end (an explicit label-free background proxy: on the tuning pool 1% of
the first and 0% of the last tenth hold hippocampus); 0 = every slice outside the edge margin.

``position_weight``: the slice's relative position along its volume's slice axis is appended to the
representation as one more feature whose variance is this share of the representation's total variance.
A label-free anatomy prior: in region-of-interest crops the structures change along the axis (on the
hippocampus tuning pool, anterior hippocampus lies in the first half of the axial extent, posterior in
the second), while appearance-typical slices gather where the biggest structure is; with the position in
the features, clusters (TypiClust) and balls (ProbCover) split along the axis too. 0 = off: on a tuning
screen (RESULTS.md) weight 1 neither raised the first model's Dice nor moved TypiClust's picks, whose
value (typicality x cluster share) still favours the large clusters of the middle.

``plane_quota`` (TypiClust, over several planes): an equal share of the budget per plane, each plane's
slices clustered and bought on their own, picks ordered round-robin over the planes (as ``position_strata``,
:func:`_choose_stratified`). Without it the planes are one pool bought by value, and on the hippocampus crops
the pool's TypiClust buys one plane about three times as often as another (e.g. 7 / 4 / 2 slices of 13 along
array axes 1 / 2 / 0). Off by default: on a tuning screen (RESULTS.md) the quota bought fewer, dearer slices in fewer
volumes for the same seconds and a lower first model (-0.010 Dice, 2/5 seeds).

``position_strata`` (TypiClust): the budget is split equally over this many bands of relative position
along the slice axis (inside the edge margin); each band is clustered and bought on its own, picks are
ordered round-robin over the bands (:func:`_choose_stratified`). 0 = off: on a tuning screen (RESULTS.md)
3 bands spread the picks evenly along the axis but held no more anterior hippocampus, fewer slices, and a
lower first model (0.614 vs 0.640).

``min_gap`` (pooled TypiClust): slices of one volume and plane at least this share of its extent apart. Two
clusters can each have their most typical slice in one volume, one slice apart (seen in 1 of 5 tuning seeds of
the default and 2 of 5 with three encoders: nearly the same image bought twice out of 13-15); with the gap, the
less valuable cluster is represented by its most typical slice clear of the other (:func:`_spaced`). 0 = off:
on a tuning screen (RESULTS.md) a gap of 0.1 changed 5 of 10 seeds' starts and was worse in 4 of them (-0.005).

``encoders`` (representation ``encoder``): that many contrastive encoders, trained under different seeds
(the first is the one-encoder default's), each embedding standardised, placed side by side and scaled
by 1/sqrt(n), so a squared distance, hence k-means and the k-NN typicality, is the mean over encoders. Why: on
the tuning split the first model's Dice moved by up to 0.066 in one seed with a small setting change, i.e. which
11-15 slices come out typical depends on one encoder's seed; averaging the geometry over encoders is the ensemble
answer to that variance (as deep ensembles average over initialisations, Lakshminarayanan et al., NeurIPS 2017).
1 by default: three encoders gave a lower first model on tuning seeds 0-4 (-0.024 Dice, better in 1/5; RESULTS.md).

Defaults (``representation: encoder``, ``method: typiclust``, ``edge_margin: 0.2``) were chosen on the
tuning split with ``benchmarks/coldstart.py`` (RESULTS.md).
"""

from __future__ import annotations

import math
from itertools import zip_longest
from pathlib import Path

import numpy as np

from medal.config import ColdstartConfig, DataConfig
from medal.data import Dataset, DatasetError, load_volume
from medal.data.intensity import normalize_channel
from medal.data.validate import require_finite
from medal.regions import resolve_axis
from medal.selection import knapsack
from medal.tasks import Task, write_tasks

from .represent import pca, slice_descriptors

__all__ = ["METHODS", "REPRESENTATIONS", "coldstart_select", "kmeans", "probcover", "probcover_radius",
           "slice_cost_prior", "slice_clusters", "slice_embeddings", "pilot_scale", "position_strata", "typicality", "with_position"]

METHODS = ("typiclust", "probcover")
REPRESENTATIONS = ("thumbnails", "encoder")
ENSEMBLE_SEED_STRIDE = 100_003  # coldstart.encoders: encoder j of a run seeded s trains with seed s + j x this
#: the prior's outline term: this share of a slice's strong-edge length is taken to be traced (hand-set;
#: the pilot's scale corrects the level)
EDGE_SHARE = 0.05


def kmeans(x: np.ndarray, k: int, *, seed: int = 0, iterations: int = 50, block: int = 256) -> np.ndarray:
    """Cluster labels of ``x`` (k-means++ seeding, Lloyd iterations).

    Distances are taken ``block`` rows at a time (memory ``block x k x dim`` instead of ``n x k x dim``: 13 GB for
    25,000 slices and 1,000 clusters) and each centre is the mean of its members found from one stable sort; every
    number is computed as the unblocked form computed it, so the labels are the same bit for bit (25-40% faster)."""
    rng = np.random.default_rng(seed)
    n = len(x)
    k = max(1, min(k, n))
    centres = [x[rng.integers(n)]]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(n, 1 / n)
        centres.append(x[rng.choice(n, p=p)])
        d2 = np.minimum(d2, ((x - centres[-1]) ** 2).sum(1))
    c = np.stack(centres)
    labels = np.zeros(n, dtype=np.int64)
    new = np.empty(n, dtype=np.int64)
    for it in range(iterations):
        for s in range(0, n, block):
            new[s:s + block] = ((x[s:s + block, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        if (new == labels).all() and it > 0:
            break
        labels = new.copy()
        order = np.argsort(labels, kind="stable")  # members of each cluster in index order, as a mask gives them
        bounds = np.searchsorted(labels[order], np.arange(k + 1))
        for j in range(k):
            if bounds[j + 1] > bounds[j]:
                c[j] = x[order[bounds[j]:bounds[j + 1]]].mean(0)
    return labels


def typicality(x: np.ndarray, *, neighbours: int = 10) -> np.ndarray:
    """Inverse mean distance to the ``neighbours`` nearest other points."""
    from scipy.spatial import cKDTree

    k = min(neighbours + 1, len(x))
    if k < 2:
        return np.ones(len(x))
    dist, _ = cKDTree(x).query(x, k=k)
    return 1.0 / (dist[:, 1:].mean(1) + 1e-12)


def probcover_radius(x: np.ndarray, k: int, *, purity: float = 0.95, seed: int = 0) -> float:
    """ProbCover's label-free radius: the largest ``delta`` (among quantiles of the pairwise distances)
    at which at least ``purity`` of the delta-balls hold points of a single k-means cluster."""
    from scipy.spatial import cKDTree

    labels = kmeans(x, k, seed=seed)
    tree = cKDTree(x)
    rng = np.random.default_rng(seed)
    sample = x[rng.choice(len(x), size=min(len(x), 2000), replace=False)]
    dists = np.linalg.norm(sample[:, None] - sample[None], axis=-1)
    candidates = np.quantile(dists[np.triu_indices(len(sample), 1)], np.linspace(0.002, 0.2, 30))
    best = float(candidates[0])
    for delta in candidates:
        balls = tree.query_ball_point(x, r=float(delta))
        pure = np.mean([len(set(labels[b])) == 1 for b in balls])
        if pure >= purity:
            best = float(delta)
        else:
            break
    return best


def probcover(x: np.ndarray, costs: np.ndarray, budget_s: float, *, delta: float, owner=None, max_per_case: int = 0,
              exclude=(), allowed=None) -> list[int]:
    """Greedy budgeted max coverage of the delta-ball graph: coverage gained per second, within budget
    (only ``allowed`` points are chosen; every point counts as covered or not)."""
    from scipy.spatial import cKDTree

    balls = cKDTree(x).query_ball_point(x, r=delta)
    covered = np.zeros(len(x), bool)
    for i in exclude:
        covered[balls[i]] = True
    chosen, left, per_case = [], budget_s, {}
    available = np.ones(len(x), bool) if allowed is None else np.array(allowed, bool)
    available[list(exclude)] = False
    while True:
        gain = np.array([(~covered[b]).sum() if available[i] and costs[i] <= left else 0 for i, b in enumerate(balls)],
                        dtype=float)
        if owner is not None and max_per_case:
            full = np.array([per_case.get(o, 0) >= max_per_case for o in owner])
            gain[full] = 0
        if gain.max() <= 0:
            break
        i = int(np.argmax(gain / np.maximum(costs, 1e-9)))
        chosen.append(i)
        covered[balls[i]] = True
        available[i] = False
        left -= costs[i]
        if owner is not None:
            per_case[owner[i]] = per_case.get(owner[i], 0) + 1
    return chosen


def slice_cost_prior(x: np.ndarray, *, axis: int, spacing) -> np.ndarray:
    """Seconds per slice predicted from the image alone: the cost model's default intercept and
    per-slice seconds, plus its seconds per mm of outline times ``EDGE_SHARE`` of the slice's
    strong-edge length (in-plane gradient above its 90th percentile, inside tissue)."""
    from scipy import ndimage

    from medal.costs import DEFAULT_COEFFICIENTS

    v = np.moveaxis(np.asarray(x, np.float32), axis, 0)
    inplane = [s for d, s in enumerate(spacing) if d != axis]
    side = float(np.mean(inplane))
    gy = ndimage.sobel(v, axis=1) / float(inplane[0])
    gx = ndimage.sobel(v, axis=2) / float(inplane[1])
    grad = np.hypot(gy, gx)
    tissue = v > np.percentile(v, 25)
    strong = (grad > np.percentile(grad, 90)) & tissue
    edge_mm = strong.sum(axis=(1, 2)) * side
    c = DEFAULT_COEFFICIENTS
    return c["intercept"] + c["n_slices"] + c["boundary_mm"] * EDGE_SHARE * edge_mm


def pilot_scale(prior_s, spent_s) -> float:
    """How much longer the pilot slices took than their prior: the ratio of totals (1 with no pilot)."""
    prior, spent = float(np.sum(prior_s)), float(np.sum(spent_s))
    return spent / prior if prior > 0 and spent > 0 else 1.0


def _pilot_from_log(log, owner, index, axes, prior, keep=()) -> tuple[float, int]:
    """Pilot scale from a timing log: its rows name their slice (case_id, axis, index, as the napari
    plugin and the oracle write them) or a task of ``keep`` (task_id, for logs without the slice)."""
    from medal.costs import read_annotation_log

    where = {(o, int(a), int(k)): i for i, (o, a, k) in enumerate(zip(owner, axes, index))}
    by_task = {t.task_id: (t.case_id, int(t.axis), int(t.index)) for t in keep}
    priors, spent = [], []
    for rec in read_annotation_log(log):
        if "axis" in rec and "index" in rec:
            slot = (str(rec.get("case_id")), int(rec["axis"]), int(rec["index"]))
        else:
            slot = by_task.get(str(rec.get("task_id")))
        i = where.get(slot) if slot is not None else None
        if i is not None:
            priors.append(prior[i])
            spent.append(float(rec["seconds"]))
    if not priors:
        raise ValueError(f"{log}: no timed slice of this pool in the pilot log (case_id, axis, index, seconds)")
    return pilot_scale(priors, spent), len(priors)


def _axis_names(axis) -> tuple[str, ...]:
    """``axis`` as a tuple of names: one orientation (``"axial"``, ``"2"``, 2) or several (a list)."""
    names = (axis,) if isinstance(axis, (str, int)) else tuple(axis)
    names = tuple(str(a) for a in names)
    if not names or len(set(names)) != len(names):
        raise ValueError(f"axis: {axis!r}: one orientation or a list of distinct ones")
    return names


def _describe(dataset, cases, cfg, data_cfg, axis):
    """Every slice of every readable case, along each orientation in ``axis``: the arrays are listed once per
    (case, orientation), ``good`` names the case of each, so a case's slices of three planes compete together.

    With ``data.orientation`` set, each listed array is the case flipped and permuted to that axis order (the
    network's, :mod:`medal.data.resample`), then flipped back along its slice axis only: its slices come in the
    case's own index order (what tasks, pilot logs and kept tasks name) while every slice's in-plane layout is the
    same for every case, whatever order its file stores (the thumbnails and the encoder see anatomy, not storage
    order). ``shapes[case_id]`` holds ``(shape, path, flipped)``: which of the case's axes run against the
    network's, so a relative slice position is anatomical too.

    A case of several channel files (``_0000``, ``_0001``, ...: T2 and ADC, say) lists its image (channel 0) in
    ``volumes``, as a one-channel case, and all its channels ``(C, ...)``, the same way, in ``stacks`` (``None`` for a
    one-channel pool); a case whose channel count differs from the pool's first case, or whose further channel
    lies on another grid, is skipped with the reason."""
    from medal.data.channels import channel_files, same_channel_grid
    from medal.data.resample import network_grid

    volumes, vol_axes, good, owner, index, axes, shapes, skipped, spacing = [], [], [], [], [], [], {}, {}, {}
    stacks, n_channels = [], None
    names = _axis_names(axis)
    for case in cases:
        files = channel_files(case.image)
        try:
            if n_channels is not None and len(files) != n_channels:
                raise DatasetError(f"{dataset.relative(case.image)}: {len(files)} channel file(s), the pool's first "
                                   f"case has {n_channels}", path=case.image)
            img = load_volume(case.image)
            require_finite(img, dataset.relative(case.image))
            further = []
            for f in files[1:]:
                ch = load_volume(f)
                require_finite(ch, dataset.relative(f))
                same_channel_grid(img, ch, dataset.relative(f))
                further.append(ch.array)
        except DatasetError as exc:  # reported (the paths as the other messages give them); the other cases go on
            message = str(exc)
            for f in files:
                message = message.replace(str(f), dataset.relative(f))
            skipped[case.case_id] = message
            continue
        n_channels = len(files)
        x = normalize_channel(img.array, None, data_cfg)  # no model yet: each volume's own statistics
        grid = network_grid(img.shape, img.affine, None, getattr(data_cfg, "orientation", None))
        ornt, xr = grid.ornt, grid.to_network(x)
        xs = np.stack([xr] + [grid.to_network(normalize_channel(a, None, data_cfg, channel=k))
                              for k, a in enumerate(further, start=1)]) if further else None
        flipped = tuple(bool(ornt is not None and ornt[a, 1] == -1) for a in range(3))
        for ax in dict.fromkeys(resolve_axis(int(a) if a.isdigit() else a, img.orientation) for a in names):
            nax = int(ornt[ax, 0]) if ornt is not None else ax
            volumes.append(np.flip(xr, nax) if flipped[ax] else xr)  # slice k along nax = the case's slice k
            stacks.append(None if xs is None else np.flip(xs, nax + 1) if flipped[ax] else xs)
            vol_axes.append(nax)
            good.append(case)
            n = img.shape[ax]
            owner += [case.case_id] * n
            index += list(range(n))
            axes += [ax] * n
        shapes[case.case_id] = (img.shape, dataset.relative(case.image), flipped)
        sp = np.asarray(img.spacing, dtype=np.float64)  # along the listed arrays' axes
        spacing[case.case_id] = tuple(float(v) for v in (sp[np.argsort(ornt[:, 0])] if ornt is not None else sp))
    return volumes, vol_axes, good, owner, index, axes, shapes, skipped, spacing, \
        (stacks if n_channels and n_channels > 1 else None)


def _reoriented(cases, orientation) -> bool:
    """Whether ``data.orientation`` flips or permutes any of ``cases`` (headers only)."""
    from medal.data.io import volume_affine
    from medal.data.resample import orientation_transform

    return bool(orientation) and any(orientation_transform(volume_affine(c.image), orientation) is not None
                                     for c in cases)


def _representation(volumes, vol_axes, cases, cfg, orientation=None, stacks=None) -> tuple[np.ndarray, str]:
    """The slices' representation and a line saying what it is; ``stacks`` (:func:`_describe`): every channel of
    a multi-channel pool, one encoder input channel each (thumbnails and histograms: side by side)."""
    n_ch = 1 if stacks is None else int(stacks[0].shape[0])
    with_ch = f", {n_ch} channels" if n_ch > 1 else ""
    if cfg.representation == "encoder":
        import os

        from medal.data.channels import channel_files

        from .encoder import THREADS, encode_slices, encoder_key, slice_stack

        slices = slice_stack(volumes if stacks is None else stacks, vol_axes)
        files = [c.image for c in cases] if stacks is None else [f for c in cases for f in channel_files(c.image)]
        cache = Path(os.environ.get("MEDAL_CACHE_DIR") or Path.home() / ".cache" / "medal") / "coldstart"
        parts, keys = [], []
        turned = _reoriented(cases, orientation)
        for j in range(cfg.encoders):
            # the first encoder is the one-encoder default (same seed, same cache key); the others are seeded far
            # from it, so the ensembles of neighbouring run seeds share no encoder
            seed = cfg.seed + ENSEMBLE_SEED_STRIDE * j
            # "threads": encoders cached before training ran on a fixed thread count are not reused
            settings = {"steps": cfg.encoder_steps, "seed": seed, "size": slices.shape[-1], "threads": THREADS}
            if any(int(a) != 2 for a in vol_axes):
                # the encoder is trained on the slices of these axes: another orientation is another encoder
                settings["axes"] = [int(a) for a in vol_axes]
            if turned:
                # the slices were taken in data.orientation's order: an encoder trained on storage-order slices
                # (or another order) is another encoder
                settings["orientation"] = orientation
            if n_ch > 1:  # an encoder of every channel (a one-channel pool's key is as it always was)
                settings["channels"] = n_ch
            key = encoder_key(files, settings)
            z = encode_slices(slices, key=key, cache_dir=cache, steps=cfg.encoder_steps, seed=seed)
            parts.append((z - z.mean(0)) / np.maximum(z.std(0), 1e-8))
            keys.append(key)
        # side by side, scaled so a squared distance is the mean over encoders of each one's squared distance
        z = np.concatenate(parts, axis=1) / np.sqrt(len(parts))
        if len(keys) == 1:
            return z, (f"contrastive slice encoder trained on the pool ({cfg.encoder_steps} steps{with_ch}, "
                       f"key {keys[0]})")
        return z, (f"{len(keys)} contrastive slice encoders trained on the pool under different seeds "
                   f"({cfg.encoder_steps} steps each{with_ch}, keys {', '.join(keys)})")
    per_volume = [[x] for x in volumes] if stacks is None else stacks
    feats = np.concatenate([np.concatenate([slice_descriptors(c, axis=a, thumbnail=cfg.thumbnail) for c in xs], axis=1)
                            for xs, a in zip(per_volume, vol_axes)])
    return pca(feats, cfg.components), (f"{cfg.thumbnail}x{cfg.thumbnail} thumbnails + histogram{with_ch}, "
                                        f"PCA {cfg.components}")


def coldstart_select(dataset: Dataset, round_dir, *, budget_s: float, cfg: ColdstartConfig,
                     data_cfg: DataConfig | None = None, pool=None, axis=None, overwrite: bool = False,
                     pilot: int = 0, pilot_log=None, keep=()):
    """Write ``round_dir/tasks.json`` with typical, diverse slices of the pool within ``budget_s``.

    ``axis``: the slice orientation (``"axial"``, ``"coronal"``, ``"sagittal"`` or an array axis), or a list of
    them (``regions.axis``): the slices of every listed plane are one pool, embedded by one encoder, clustered
    together and bought under one per-volume cap, so a start can hold axial, coronal and sagittal slices.
    ``None``: ``cfg.axis`` (``coldstart.axis``), else axial.

    ``pilot``: write only the first ``pilot`` slices of the selection (to be painted and timed first).
    ``pilot_log``: an annotation log of those timed slices: the prior is scaled by it, they are kept
    (``keep``: tasks to keep at the front as they are), and the rest of the budget is chosen.
    ``cfg.reserve`` (not with ``pilot``): a reserve queue of that many budgets more is written after the
    budget's slices (``meta["reserve_tasks"]``, as a round's ``selection.reserve``), to be painted only
    while the logged seconds are under the budget; the budget's slices are the same with or without it.
    """
    data_cfg = data_cfg or DataConfig()
    if axis is None or axis in ("", ()):
        axis = cfg.axis if cfg.axis not in ("", ()) else "axial"
    round_dir = Path(round_dir)
    if not (isinstance(budget_s, (int, float)) and math.isfinite(budget_s) and budget_s > 0):
        raise ValueError(f"budget: expected a finite number of seconds > 0, got {budget_s!r}")
    if (round_dir / "tasks.json").exists() and not overwrite:
        raise FileExistsError(f"{round_dir / 'tasks.json'}: exists; pass --overwrite (overwrite=True) to replace it")
    cases = [c for c in dataset.cases if pool is None or c.case_id in set(pool)]
    if not cases:
        raise ValueError(f"{dataset.root}: no case in the pool to select from")
    volumes, vol_axes, good, owner, index, axes, shapes, skipped, spacing, stacks = _describe(dataset, cases, cfg,
                                                                                             data_cfg, axis)
    if not volumes:
        raise ValueError(f"{dataset.root}: no readable case in the pool to select from ("
                         + "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:3]) + ")")
    z, rep_text = _representation(volumes, vol_axes, good, cfg, orientation=data_cfg.orientation, stacks=stacks)
    if cfg.position_weight > 0:
        z = with_position(z, owner, index, axes, shapes, cfg.position_weight)
        rep_text += f" + relative slice position (weight {cfg.position_weight:g})"
    prior = np.concatenate([slice_cost_prior(x, axis=a, spacing=spacing[c.case_id])
                            for x, a, c in zip(volumes, vol_axes, good)])
    scale, n_pilot = (1.0, 0)
    if pilot_log is not None:
        scale, n_pilot = _pilot_from_log(pilot_log, owner, index, axes, prior, keep)
    costs = prior * scale
    where = {(o, int(a), int(k)): i for i, (o, a, k) in enumerate(zip(owner, axes, index))}
    kept = [where[(t.case_id, t.axis, t.index)] for t in keep if (t.case_id, t.axis, t.index) in where]
    left = budget_s - sum(float(t.predicted_cost_s) for t in keep)  # the timed slices may have spent it all
    allowed = _inside_margin(owner, index, axes, shapes, cfg.edge_margin)
    place = ((np.unique([f"{o}\0{a}" for o, a in zip(owner, axes)], return_inverse=True)[1],
              _relative_position(owner, index, axes, shapes)) if cfg.min_gap > 0 else None)
    n_units = max(1, int(max(left, 0.0) // max(float(np.mean(costs[allowed])), 1e-9)))
    strata = _strata(owner, index, axes, shapes, cfg)
    ends = _ends(owner, index, axes, shapes, cfg, allowed)
    # the ends' share is of the whole budget, less what kept slices (a timed pilot and batches) already spent there:
    # a share of what is left at each stage would be starved, as a batch takes only the front of the picks
    spent_ends = sum(float(t.predicted_cost_s) for t in keep
                     if (t.case_id, t.axis, t.index) in where and ends[where[(t.case_id, t.axis, t.index)]])
    end_budget = min(left, budget_s * cfg.edge_share - spent_ends)
    if ends.any() and left > 0 and end_budget > 0:
        # the volume ends' share first (so the per-volume cap cannot squeeze it out), the rest of the budget after
        n_end = max(1, int(end_budget // max(float(np.mean(costs[ends])), 1e-9)))
        end_chosen, end_value = _choose(z, costs, end_budget, cfg, owner, n_end, kept, ends, place=place)
        main_budget = left - float(costs[end_chosen].sum())
        n_main = max(1, int(main_budget // max(float(np.mean(costs[allowed])), 1e-9)))
        chosen, value = _choose(z, costs, main_budget, cfg, owner, n_main, kept + list(end_chosen), allowed, strata,
                                place)
        chosen, value = _interleave(chosen, end_chosen), np.where(ends, end_value, value)
    else:
        chosen, value = (_choose(z, costs, left, cfg, owner, n_units, kept, allowed, strata, place) if left > 0
                         else ([], np.zeros(len(z))))
    if pilot:
        chosen = chosen[:pilot]
    reserve, reserve_value = [], value
    if cfg.reserve > 0 and not pilot:
        # the reserve queue: the same rule over the slices not chosen (the chosen ones held as kept, so
        # clusters they cover and the per-volume cap count them), for reserve x budget more predicted seconds
        extra = cfg.reserve * budget_s
        n_extra = max(1, int(extra // max(float(np.mean(costs[allowed])), 1e-9)))
        reserve, reserve_value = _choose(z, costs, extra, cfg, owner, n_extra, kept + list(chosen), allowed, strata,
                                         place)
    tasks = list(keep)
    for i, v in [(i, value[i]) for i in chosen] + [(i, reserve_value[i]) for i in reserve]:
        shape, rel = shapes[owner[i]][:2]
        lo, hi = [0, 0, 0], list(shape)
        lo[axes[i]], hi[axes[i]] = index[i], index[i] + 1
        tasks.append(Task(task_id=f"t{len(tasks):04d}", case_id=owner[i], image=rel, kind="slice", axis=int(axes[i]),
                          index=int(index[i]), supervoxel=-1, bbox=[lo, hi], score=float(v),
                          predicted_cost_s=float(costs[i]), strategy="coldstart"))
    main = tasks[:len(tasks) - len(reserve)]
    prior_text = (f"image prior (cost model intercept + per slice + {EDGE_SHARE} of the strong-edge length) x "
                  + (f"{scale:.2f} from a pilot of {n_pilot} timed slice(s)" if n_pilot else "1 (no pilot yet)"))
    write_tasks(round_dir / "tasks.json", tasks, dataset_root=dataset.root, meta={
        "strategy": "coldstart", "method": cfg.method, "budget_s": float(budget_s),
        "predicted_s": float(sum(t.predicted_cost_s for t in main)), "representation": rep_text,
        "cost_prior": {"text": prior_text, "scale": scale, "pilot_tasks": n_pilot},
        "pilot": bool(pilot), "skipped": skipped,
        "reserve_tasks": len(reserve), "reserve_s": float(sum(t.predicted_cost_s for t in tasks[len(main):]))})
    return tasks


def slice_embeddings(dataset: Dataset, case_ids, axes, index, *, cfg: ColdstartConfig | None = None,
                     data_cfg: DataConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The cold start's representation (``cfg``, by default the contrastive encoder, trained once on every slice of
    the cases named and cached) of the slices asked (``case_ids[i]``, ``axes[i]``, ``index[i]``): ``(z, found)``,
    ``z`` one row per slice asked (zeros where not found), ``found`` False for a slice of an unreadable case."""
    cfg = cfg or ColdstartConfig()
    data_cfg = data_cfg or DataConfig()
    case_ids, axes, index = list(case_ids), [int(a) for a in axes], [int(i) for i in index]
    want = set(case_ids)
    cases = [c for c in dataset.cases if c.case_id in want]
    names = sorted({str(a) for a in axes})
    found = np.zeros(len(case_ids), bool)
    volumes, vol_axes, good, owner, idx, ax, _, _, _, stacks = _describe(dataset, cases, cfg, data_cfg, names)
    if not volumes:
        return np.zeros((len(case_ids), 0)), found
    z, _ = _representation(volumes, vol_axes, good, cfg, orientation=data_cfg.orientation, stacks=stacks)
    where = {(o, int(a), int(i)): n for n, (o, a, i) in enumerate(zip(owner, ax, idx))}
    rows = np.array([where.get(key, -1) for key in zip(case_ids, axes, index)], dtype=np.int64)
    found = rows >= 0
    out = np.zeros((len(case_ids), z.shape[1]))
    out[found] = z[rows[found]]
    return out, found


def slice_clusters(dataset: Dataset, case_ids, axes, index, *, k: int, cfg: ColdstartConfig | None = None,
                   data_cfg: DataConfig | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TypiClust's view of given slices, for selection rounds (``selection.strategy: fg_typical``).

    Every slice of the cases named (along the array axes named) is embedded by the cold start's representation
    (:func:`slice_embeddings`); the slices asked (``case_ids[i]``, ``axes[i]``, ``index[i]``) are clustered into
    ``k`` k-means clusters. Returns, for each slice asked, its cluster, its typicality among the slices asked
    (inverse mean distance to its nearest neighbours) and its cluster's size; ``-1``, 0, 0 for a slice of an
    unreadable case."""
    cfg = cfg or ColdstartConfig()
    z, found = slice_embeddings(dataset, case_ids, axes, index, cfg=cfg, data_cfg=data_cfg)
    cluster = np.full(len(found), -1, np.int64)
    typ, size = np.zeros(len(found)), np.zeros(len(found))
    if not found.any():
        return cluster, typ, size
    mine = np.flatnonzero(found)
    labels = kmeans(z[mine], k, seed=cfg.seed)
    cluster[mine], typ[mine] = labels, typicality(z[mine], neighbours=cfg.neighbours)
    size[mine] = np.bincount(labels)[labels]
    return cluster, typ, size


def _relative_position(owner, index, axes, shapes) -> np.ndarray:
    """Each slice's centre as a share of its volume's extent along its slice axis (0-1), counted in the network's
    direction where ``shapes`` says a case's axis runs against it (``data.orientation``)."""
    n = np.array([shapes[o][0][a] for o, a in zip(owner, axes)], dtype=np.float64)
    pos = (np.asarray(index, dtype=np.float64) + 0.5) / n
    flip = np.array([len(shapes[o]) > 2 and bool(shapes[o][2][a]) for o, a in zip(owner, axes)], dtype=bool)
    return np.where(flip, 1.0 - pos, pos)


def with_position(z, owner, index, axes, shapes, weight: float) -> np.ndarray:
    """``z`` with one more column: each slice's relative position along its volume's slice axis,
    standardised and scaled so that its variance is ``weight`` x the total variance of ``z``."""
    pos = _relative_position(owner, index, axes, shapes)
    spread = pos.std()
    if spread <= 0:
        return z
    total = float(np.var(z, axis=0).sum())
    col = (pos - pos.mean()) / spread * math.sqrt(weight * total)
    return np.concatenate([z, col[:, None].astype(z.dtype)], axis=1)


def _interleave(a, b) -> list[int]:
    """``a`` and ``b`` merged, each in its own order, ``b`` spread evenly through ``a``, each at the middle of its
    share of the list (so a pilot of the first few slices, a batch of the first third, and an expert who stops
    early get their share of both)."""
    keyed = [((i + 0.5) / len(a), 1, x) for i, x in enumerate(a)] + [((j + 0.5) / len(b), 0, x) for j, x in enumerate(b)]
    return [int(x) for _, _, x in sorted(keyed)]


def _ends(owner, index, axes, shapes, cfg, allowed) -> np.ndarray:
    """The slices the ends' share (``cfg.edge_share``) is chosen among: outside the edge margin, and within
    ``cfg.ends_margin`` of either end when that is set; none when ``edge_share`` is 0."""
    if cfg.edge_share <= 0:
        return np.zeros(len(allowed), bool)
    ends = ~allowed
    if cfg.ends_margin > 0:
        pos = _relative_position(owner, index, axes, shapes)
        ends &= (pos < cfg.ends_margin) | (pos > 1.0 - cfg.ends_margin)
    return ends


def _inside_margin(owner, index, axes, shapes, margin: float) -> np.ndarray:
    """Slices farther than ``margin`` of their volume's extent (along the slice axis) from either end."""
    pos = _relative_position(owner, index, axes, shapes)
    inside = (pos >= margin) & (pos <= 1.0 - margin)
    return inside if inside.any() else np.ones(len(pos), bool)


def position_strata(owner, index, axes, shapes, n: int, margin: float = 0.0) -> np.ndarray:
    """Each slice's stratum (0 .. ``n`` - 1): ``n`` equal bands of relative position along its volume's slice
    axis between ``margin`` and 1 - ``margin`` (slices outside the margin fall in the end strata)."""
    pos = _relative_position(owner, index, axes, shapes)
    width = max(1.0 - 2.0 * margin, 1e-9)
    return np.clip(np.floor((pos - margin) / width * n), 0, n - 1).astype(np.int64)


def _strata(owner, index, axes, shapes, cfg) -> np.ndarray | None:
    """Each slice's quota stratum: its band of relative position (``position_strata``), within its plane when
    ``plane_quota`` is set and the pool holds more than one plane; ``None`` when neither applies."""
    pos = (position_strata(owner, index, axes, shapes, cfg.position_strata, cfg.edge_margin)
           if cfg.position_strata > 1 else None)
    planes = np.unique(np.asarray(axes))
    if not cfg.plane_quota or len(planes) < 2:
        return pos
    plane = np.searchsorted(planes, np.asarray(axes)).astype(np.int64)
    return plane if pos is None else plane * cfg.position_strata + pos


def _choose(z, costs, budget_s, cfg, owner, n_units, kept, allowed=None, strata=None,
            place=None) -> tuple[list[int], np.ndarray]:
    """Indices chosen within ``budget_s`` (best first) and every slice's value; only ``allowed`` slices
    are chosen, while every slice shapes the clusters, typicality and coverage. ``strata`` (TypiClust): an
    equal share of the budget per position stratum (:func:`_choose_stratified`). ``place`` (TypiClust with
    ``cfg.min_gap``): each slice's plane id (volume and axis) and relative position along that axis."""
    allowed = np.ones(len(z), bool) if allowed is None else np.asarray(allowed, bool)
    owner = np.asarray(owner)
    cap = cfg.max_per_case
    counts: dict = {}
    for i in kept:
        counts[owner[i]] = counts.get(owner[i], 0) + 1
    if cfg.method == "probcover":
        delta = probcover_radius(z, min(n_units, 50), seed=cfg.seed)
        chosen = probcover(z, costs, budget_s, delta=delta, owner=owner, max_per_case=cap, exclude=kept,
                           allowed=allowed)
        value = np.zeros(len(z))
        value[chosen] = np.arange(len(chosen), 0, -1)
        return chosen, value
    typ = typicality(z, neighbours=cfg.neighbours)
    if strata is not None:
        return _choose_stratified(z, typ, costs, budget_s, cfg, owner, kept, allowed, np.asarray(strata), counts)
    reps, values = _candidates(z, typ, costs, budget_s, cfg, owner, n_units + len(kept), counts, kept, allowed,
                               place)
    res = knapsack(values, costs[reps], budget_s)
    chosen = reps[res.indices]
    chosen = chosen[np.argsort(-values[res.indices], kind="stable")]
    value = np.zeros(len(z))
    value[reps] = values
    return chosen.tolist(), value


def _candidates(z, typ, costs, budget_s, cfg, owner, k, counts, kept, allowed,
                place=None) -> tuple[np.ndarray, np.ndarray]:
    """TypiClust's representatives of ``k`` clusters, with more, smaller clusters while their predicted
    seconds fall short of ``budget_s`` (the per-volume cap, and clusters holding a kept slice, can leave
    fewer representatives than the budget affords)."""
    for _ in range(6):
        reps, values = _typical_representatives(z, typ, k, cfg, owner, counts, kept, allowed, place)
        if float(costs[reps].sum()) >= budget_s or k >= len(z):
            break
        k = min(len(z), int(math.ceil(k * 1.25)))
    return reps, values


def _choose_stratified(z, typ, costs, budget_s, cfg, owner, kept, allowed, strata, counts):
    """TypiClust with a budget quota per position stratum: the budget (with the kept slices' seconds) is
    split equally over the strata; each stratum's allowed slices are clustered on their own and its share
    bought by its own exact knapsack (less what its kept slices spent); seconds a stratum cannot use go to
    one last knapsack over every stratum's remaining representatives. Picks are ordered round-robin over
    the strata (each best first), so a pilot of the first few slices, and an expert who stops early,
    still cover the axis.

    Why: on the hippocampus tuning pool TypiClust's picks gathered at mean relative position 0.55-0.62,
    where the posterior class lies, and the first model lost on the anterior class; a label-free quota
    along the axis is the stratified-sampling answer (as the class quotas of ClaSP PE, Lüth et al., the nnActive follow-up, but
    with position standing in for the unknown class).
    """
    n = int(strata.max()) + 1 if len(strata) else 1
    kept = list(kept)
    total = budget_s + float(costs[kept].sum()) if kept else budget_s
    counts = dict(counts)
    picked, spare_reps, spare_vals = [], [], []
    value = np.zeros(len(z))
    for s in range(n):
        idx = np.flatnonzero(allowed & (strata == s))
        if not len(idx):
            continue
        local = {int(g): n_ for n_, g in enumerate(idx)}
        kept_s = [local[i] for i in kept if i in local]
        share = total / n - float(costs[[idx[i] for i in kept_s]].sum())
        if share <= 0:
            picked.append([])
            continue
        k = max(1, int(share // max(float(np.mean(costs[idx])), 1e-9))) + len(kept_s)
        reps, values = _candidates(z[idx], typ[idx], costs[idx], share, cfg, owner[idx], min(k, len(idx)), counts,
                                   kept_s, np.ones(len(idx), bool))
        res = knapsack(values, costs[idx][reps], share)
        order = res.indices[np.argsort(-values[res.indices], kind="stable")]
        chosen = idx[reps[order]]
        picked.append(chosen.tolist())
        for i in chosen:
            counts[owner[i]] = counts.get(owner[i], 0) + 1
        value[idx[reps]] = values
        rest = np.setdiff1d(np.arange(len(reps)), res.indices)
        spare_reps += idx[reps[rest]].tolist()
        spare_vals += values[rest].tolist()
    chosen = [i for group in zip_longest(*picked) for i in group if i is not None]
    left = budget_s - float(costs[chosen].sum()) if chosen else budget_s
    if left > 0 and spare_reps:
        spare = [(i, v) for i, v in zip(spare_reps, spare_vals)
                 if not cfg.max_per_case or counts.get(owner[i], 0) < cfg.max_per_case]
        if spare:
            ids = np.array([i for i, _ in spare], dtype=np.int64)
            vals = np.array([v for _, v in spare])
            res = knapsack(vals, costs[ids], left)
            extra = []
            for j in res.indices[np.argsort(-vals[res.indices], kind="stable")]:
                i = int(ids[j])
                if not cfg.max_per_case or counts.get(owner[i], 0) < cfg.max_per_case:
                    extra.append(i)
                    counts[owner[i]] = counts.get(owner[i], 0) + 1
            chosen += extra
    return chosen, value


def _spaced(reps, values, clusters, order, typ, place, kept, gap) -> tuple[np.ndarray, np.ndarray]:
    """Representatives no two of which (nor one and a kept slice) lie in one volume's plane closer than ``gap``
    (share of the extent): clusters by value, each taking its most typical allowed slice clear of those held."""
    plane, rel = place
    share = np.bincount(clusters) / len(clusters)  # each cluster's share of the slices
    held: dict = {}
    for i in kept:
        held.setdefault(int(plane[i]), []).append(float(rel[i]))
    members = {}
    for i in order:  # allowed slices, by cluster, most typical first
        members.setdefault(int(clusters[i]), []).append(int(i))
    out, vals = [], []
    for j in np.argsort(-values, kind="stable"):
        for m in members[int(clusters[reps[j]])]:
            if all(abs(rel[m] - r) >= gap for r in held.get(int(plane[m]), ())):
                out.append(m)
                vals.append(typ[m] / typ.max() * share[clusters[m]])
                held.setdefault(int(plane[m]), []).append(float(rel[m]))
                break
    return np.array(out, dtype=np.int64), np.array(vals, dtype=np.float64)


def _typical_representatives(z, typ, k, cfg, owner, counts, kept, allowed,
                             place=None) -> tuple[np.ndarray, np.ndarray]:
    """TypiClust's candidates: the most typical allowed slice of each of ``k`` k-means clusters not
    holding a kept slice, valued by typicality x cluster share; reduced to a set honouring the
    per-volume cap. With ``cfg.min_gap`` and ``place``: a cluster whose most typical slice lies within the
    gap of a slice of the same volume and plane already held (kept, or a more valuable cluster's) is
    represented by its most typical slice that does not."""
    clusters = kmeans(z, k, seed=cfg.seed)
    taken = set(clusters[kept].tolist())
    order = np.lexsort((-typ, clusters))
    order = order[allowed[order]]
    first = np.ones(len(order), bool)
    first[1:] = clusters[order][1:] != clusters[order][:-1]
    reps = np.array([i for i in order[first] if clusters[i] not in taken], dtype=np.int64)
    share = np.bincount(clusters)[clusters[reps]] / len(clusters)
    values = typ[reps] / typ.max() * share
    if place is not None and cfg.min_gap > 0 and len(reps):
        reps, values = _spaced(reps, values, clusters, order, typ, place, kept, cfg.min_gap)
    if cfg.max_per_case:  # a set whose every subset honours the per-volume cap: the most valuable first, per case
        counts = dict(counts)
        keep = []
        for i in reps[np.argsort(-values, kind="stable")]:
            if counts.get(owner[i], 0) < cfg.max_per_case:
                keep.append(i)
                counts[owner[i]] = counts.get(owner[i], 0) + 1
        pos = {r: n for n, r in enumerate(reps)}
        reps = np.array(keep, dtype=np.int64)
        values = values[[pos[r] for r in reps]] if len(reps) else values[:0]
    return reps, values
