import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medal.data import UNLABELED, load_volume, sample_dataset
from medal.regions import aggregate, region_table, resolve_axis, slice_units, supervoxel_units


def _loop_aggregate(units, values, n, how, q):  # the slow reference, a loop over regions
    out = np.zeros(n)
    for r in range(1, n + 1):
        v = values[units == r]
        if v.size == 0:
            continue
        if how == "sum":
            out[r - 1] = v.sum()
        elif how == "mean":
            out[r - 1] = v.mean()
        elif how == "max":
            out[r - 1] = v.max()
        else:
            k = max(1, int(np.ceil(q * v.size)))
            out[r - 1] = np.sort(v)[-k:].mean()
    return out


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(["sum", "mean", "max", "topq"]), st.floats(0.05, 1.0))
def test_vectorised_aggregation_equals_loop(seed, how, q):
    rng = np.random.default_rng(seed)
    units = rng.integers(0, 7, size=(5, 6, 4))
    values = rng.random((5, 6, 4))
    np.testing.assert_allclose(aggregate(units, values, 8, how=how, q=q), _loop_aggregate(units, values, 8, how, q),
                               rtol=1e-10, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2), st.tuples(st.integers(2, 9), st.integers(2, 9), st.integers(2, 9)))
def test_slices_partition_the_volume(axis, shape):
    units = slice_units(shape, axis=axis)
    assert units.min() == 1 and units.max() == shape[axis]
    t = region_table(units, case_id="c", kind="slice", axis=axis, score=np.ones(shape))
    assert t["n_voxels"].sum() == np.prod(shape)  # every voxel in exactly one unit
    assert list(t["index"]) == list(range(shape[axis]))
    assert (t["bbox_hi_%d" % axis] - t["bbox_lo_%d" % axis] == 1).all()


@pytest.mark.parametrize("mask", [False, True])
def test_supervoxels_partition_a_real_volume(mask):
    img = load_volume(sample_dataset() / "imagesTr" / "hippocampus_004.nii.gz")
    x = img.array.astype(np.float32)
    m = x > np.percentile(x, 30) if mask else None
    units = supervoxel_units(x, spacing=img.spacing, size_mm=6.0, mask=m)
    assert units.shape == x.shape and units.dtype == np.int32
    ids = np.unique(units)
    if mask:
        assert (units[~m] == 0).all() and (units[m] > 0).all()
        ids = ids[ids > 0]
    else:
        assert units.min() == 1
    np.testing.assert_array_equal(ids, np.arange(1, ids.max() + 1))  # consecutive ids
    assert 50 < len(ids) < 1000
    t = region_table(units, case_id="c", kind="supervoxel", axis=2, score=np.ones(x.shape))
    assert t["n_voxels"].sum() == (m.sum() if mask else x.size)


def test_supervoxel_grid_is_spacing_aware():
    rng = np.random.default_rng(0)
    # the same 40 mm cube, sampled at 1 mm and with 4 mm slices
    iso = supervoxel_units(rng.normal(size=(40, 40, 40)).astype(np.float32), spacing=(1, 1, 1), size_mm=5.0,
                           compactness=100).max()
    thick = rng.normal(size=(40, 40, 10)).astype(np.float32)
    aniso = supervoxel_units(thick, spacing=(1, 1, 4), size_mm=5.0, compactness=100).max()
    naive = supervoxel_units(thick, spacing=(1, 1, 1), size_mm=5.0, compactness=100).max()
    assert abs(np.log(aniso / iso)) < abs(np.log(naive / iso)) / 2  # physical, not voxel, seed spacing


def test_region_table_columns_against_reference():
    units = np.zeros((4, 5, 6), np.int32)
    units[:2, :3, :] = 1
    units[2:, :, 2:5] = 2
    score = np.arange(units.size, dtype=float).reshape(units.shape)
    pred = np.zeros(units.shape, np.uint8)
    pred[0, 0, :] = 2
    labels = np.full(units.shape, UNLABELED, np.uint8)
    labels[2:, :, 2] = 0
    t = region_table(units, case_id="c", kind="supervoxel", axis=2, score=score, prediction=pred, labels=labels,
                     n_classes=3, how="mean")
    assert list(t["supervoxel"]) == [1, 2]
    assert [t[f"bbox_lo_{d}"][0] for d in range(3)] == [0, 0, 0]
    assert [t[f"bbox_hi_{d}"][1] for d in range(3)] == [4, 5, 5]
    np.testing.assert_allclose(t["score"], [score[units == 1].mean(), score[units == 2].mean()])
    np.testing.assert_allclose(t["fg_fraction"], [6 / 36, 0])
    np.testing.assert_allclose(t["n_pred_2"], [6, 0])
    np.testing.assert_allclose(t["annotated_fraction"], [0, 1 / 3])
    assert t["region_id"][0] == "c:sv:1"


def test_resolve_axis():
    assert resolve_axis("axial", "RAS") == 2 and resolve_axis("sagittal", "RAS") == 0
    assert resolve_axis("axial", "SPL") == 0 and resolve_axis("coronal", "LIP") == 2
    assert resolve_axis(1) == 1
    with pytest.raises(ValueError, match="not one of"):
        resolve_axis("oblique")
