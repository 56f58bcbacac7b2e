"""Cold start: choose the first slices to annotate with no labels and no segmentation model.

TypiClust (Hacohen et al., ICML 2022): cluster the label-free representations into as many clusters
as the budget affords units, and from each cluster take its most *typical* unit (the one with the
densest neighbourhood: inverse mean distance to its k nearest neighbours), so the picks are both
representative and diverse. The choice within budget is the 0-1 knapsack on (typicality x cluster
share, prior cost); with no prediction to estimate effort from, every slice gets the same prior cost
(``coldstart.prior_cost_s``), and the tasks record it as their predicted cost.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medal.config import ColdstartConfig, DataConfig
from medal.data import Dataset, DatasetError, load_volume, normalize_intensity
from medal.data.validate import require_finite
from medal.regions import resolve_axis
from medal.selection import knapsack
from medal.tasks import Task, write_tasks

from .represent import pca, slice_descriptors

__all__ = ["kmeans", "typicality", "coldstart_select"]


def kmeans(x: np.ndarray, k: int, *, seed: int = 0, iterations: int = 50) -> np.ndarray:
    """Cluster labels of ``x`` (k-means++ seeding, Lloyd iterations)."""
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
    for _ in range(iterations):
        dist = ((x[:, None, :] - c[None]) ** 2).sum(-1)
        new = dist.argmin(1)
        if (new == labels).all() and _ > 0:
            break
        labels = new
        for j in range(k):
            if (labels == j).any():
                c[j] = x[labels == j].mean(0)
    return labels


def typicality(x: np.ndarray, *, neighbours: int = 10) -> np.ndarray:
    """Inverse mean distance to the ``neighbours`` nearest other points."""
    from scipy.spatial import cKDTree

    k = min(neighbours + 1, len(x))
    if k < 2:
        return np.ones(len(x))
    dist, _ = cKDTree(x).query(x, k=k)
    return 1.0 / (dist[:, 1:].mean(1) + 1e-12)


def coldstart_select(dataset: Dataset, round_dir, *, budget_s: float, cfg: ColdstartConfig,
                     data_cfg: DataConfig | None = None, pool=None, axis: str = "axial", overwrite: bool = False):
    """Write ``round_dir/tasks.json`` with typical, diverse slices of the pool within ``budget_s``."""
    import math

    data_cfg = data_cfg or DataConfig()
    round_dir = Path(round_dir)
    if not (isinstance(budget_s, (int, float)) and math.isfinite(budget_s) and budget_s > 0):
        raise ValueError(f"budget: expected a finite number of seconds > 0, got {budget_s!r}")
    if (round_dir / "tasks.json").exists() and not overwrite:
        raise FileExistsError(f"{round_dir / 'tasks.json'}: exists; pass --overwrite (overwrite=True) to replace it")
    cases = [c for c in dataset.cases if pool is None or c.case_id in set(pool)]
    if not cases:
        raise ValueError(f"{dataset.root}: no case in the pool to select from")
    feats, owner, index, axes, shapes, skipped = [], [], [], [], {}, {}
    for case in cases:
        try:
            img = load_volume(case.image)
            require_finite(img, dataset.relative(case.image))
        except DatasetError as exc:
            skipped[case.case_id] = str(exc)  # reported; the other cases go on
            continue
        ax = resolve_axis(int(axis) if axis.isdigit() else axis, img.orientation)
        x = normalize_intensity(img.array, method=data_cfg.normalize, clip_percentiles=data_cfg.clip_percentiles)
        d = slice_descriptors(x, axis=ax, thumbnail=cfg.thumbnail)
        feats.append(d)
        owner += [case.case_id] * len(d)
        index += list(range(len(d)))
        axes += [ax] * len(d)
        shapes[case.case_id] = (img.shape, dataset.relative(case.image))
    if not feats:
        raise ValueError(f"{dataset.root}: no readable case in the pool to select from ("
                         + "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:3]) + ")")
    z = pca(np.concatenate(feats), cfg.components)
    n_units = max(1, int(budget_s // cfg.prior_cost_s))
    clusters = kmeans(z, n_units, seed=cfg.seed)
    typ = typicality(z, neighbours=cfg.neighbours)
    # one candidate per cluster: its most typical unit, worth its typicality times the cluster's share
    order = np.lexsort((-typ, clusters))
    first = np.ones(len(order), bool)
    first[1:] = clusters[order][1:] != clusters[order][:-1]
    reps = order[first]
    share = np.bincount(clusters)[clusters[reps]] / len(clusters)
    values = typ[reps] / typ.max() * share
    res = knapsack(values, np.full(len(reps), cfg.prior_cost_s), budget_s)
    chosen = reps[res.indices]
    chosen = chosen[np.argsort(-values[res.indices], kind="stable")]
    tasks = []
    for n, i in enumerate(chosen):
        shape, rel = shapes[owner[i]]
        lo, hi = [0, 0, 0], list(shape)
        lo[axes[i]], hi[axes[i]] = index[i], index[i] + 1
        tasks.append(Task(task_id=f"t{n:04d}", case_id=owner[i], image=rel, kind="slice", axis=int(axes[i]),
                          index=int(index[i]), supervoxel=-1, bbox=[lo, hi], score=float(typ[i]),
                          predicted_cost_s=float(cfg.prior_cost_s), strategy="coldstart"))
    write_tasks(round_dir / "tasks.json", tasks, dataset_root=dataset.root, meta={
        "strategy": "coldstart", "budget_s": float(budget_s), "predicted_s": float(len(tasks) * cfg.prior_cost_s),
        "value": float(res.value), "upper_bound": res.upper_bound, "gap": res.gap, "clusters": int(clusters.max() + 1),
        "representation": f"{cfg.thumbnail}x{cfg.thumbnail} thumbnails + histogram, PCA {cfg.components}",
        "skipped": skipped})
    return tasks
