import numpy as np
import pytest

from medal.coldstart import coldstart_select, kmeans, slice_descriptors, typicality
from medal.config import ColdstartConfig
from medal.data import load_dataset, sample_dataset
from medal.tasks import read_tasks


def test_coldstart_tasks_within_budget_and_spread_over_cases(tmp_path):
    ds = load_dataset(sample_dataset())
    tasks = coldstart_select(ds, tmp_path, budget_s=300.0, cfg=ColdstartConfig())
    tl = read_tasks(tmp_path / "tasks.json")
    assert [t.task_id for t in tl.tasks] == [t.task_id for t in tasks]
    assert 0 < sum(t.predicted_cost_s for t in tl.tasks) <= 300.0
    assert len({t.case_id for t in tl.tasks}) >= 3  # diverse: several cases, not one
    assert all(t.kind == "slice" and t.axis == 2 and t.strategy == "coldstart" for t in tl.tasks)
    per_case = {}
    for t in tl.tasks:
        per_case.setdefault(t.case_id, []).append(t.index)
    assert all(len(set(v)) == len(v) for v in per_case.values())
    with pytest.raises(FileExistsError):
        coldstart_select(ds, tmp_path, budget_s=300.0, cfg=ColdstartConfig())


def test_typical_points_sit_in_dense_regions_and_kmeans_separates_blobs():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.1, (50, 2))
    b = rng.normal(5, 0.1, (50, 2))
    outlier = np.array([[20.0, 20.0]])
    x = np.concatenate([a, b, outlier])
    lab = kmeans(x[:100], 2, seed=0)
    assert len(set(lab[:50])) == 1 and len(set(lab[50:100])) == 1 and lab[0] != lab[50]
    typ = typicality(x, neighbours=5)
    assert typ[-1] < typ[:100].min()


def test_descriptors_shape():
    d = slice_descriptors(np.random.default_rng(0).normal(size=(20, 30, 7)), axis=2, thumbnail=8)
    assert d.shape == (7, 8 * 8 + 16) and np.isfinite(d).all()
