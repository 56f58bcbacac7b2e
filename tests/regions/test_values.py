"""Unit values: each equals a plain loop reference; confident background is worth ~0."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medal.regions import region_table, slice_units, supervoxel_units
from medal.regions.values import VALUES, boundary_band, get_value, value_needs


def _maps(seed, shape=(5, 6, 4), n_classes=3):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n_classes, *shape)) * 3
    p = np.exp(logits) / np.exp(logits).sum(0)
    h = -(p * np.log(p)).sum(0)
    return {"probs": p, "entropy": h.astype(np.float32), "bald": (rng.random(shape) * h).astype(np.float32),
            "prediction": p.argmax(0).astype(np.uint8)}


def _loop(units, n, fn):
    """Reference: visit every voxel, add fn(voxel index) to its unit."""
    out = np.zeros(n)
    for idx in np.ndindex(units.shape):
        u = units[idx]
        if u > 0:
            out[u - 1] += fn(idx)
    return out


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([0, 1, 2]))
def test_class_entropy_matches_loop(seed, axis):
    m = _maps(seed)
    units = slice_units(m["entropy"].shape, axis=axis)
    n = int(units.max())
    v = get_value("class_entropy")(units, n, m, n_classes=3)
    p, h = m["probs"], m["entropy"]
    np.testing.assert_allclose(v.value, _loop(units, n, lambda i: h[i] * (1 - p[(0, *i)])), rtol=1e-6)
    for c in (1, 2):
        np.testing.assert_allclose(v.per_class[c - 1], _loop(units, n, lambda i: h[i] * p[(c, *i)]), rtol=1e-6)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 3))
def test_expected_errors_matches_loop(seed, band):
    m = _maps(seed)
    units = slice_units(m["entropy"].shape, axis=2)
    n = int(units.max())
    v = get_value("expected_errors")(units, n, m, n_classes=3, band=band)
    pred = m["probs"].argmax(0)
    # reference band: voxels within `band` city-block steps of a voxel whose 6-neighbour differs
    edge = np.zeros(pred.shape, bool)
    for i in np.ndindex(pred.shape):
        for d in range(3):
            for s in (-1, 1):
                j = list(i)
                j[d] += s
                if 0 <= j[d] < pred.shape[d] and pred[tuple(j)] != pred[i]:
                    edge[i] = True
    near = np.zeros(pred.shape, bool)
    pts = np.argwhere(edge)
    for i in np.ndindex(pred.shape):
        near[i] = len(pts) > 0 and np.abs(pts - np.array(i)).sum(1).min() <= band - 1
    np.testing.assert_array_equal(boundary_band(pred, band), near)
    err = 1 - m["probs"].max(0)
    np.testing.assert_allclose(v.value, _loop(units, n, lambda i: err[i] * near[i]), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(v.per_class[1], _loop(units, n, lambda i: err[i] * near[i] * m["probs"][(2, *i)]),
                               rtol=1e-6, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.05, 1.0))
def test_bald_topq_matches_loop(seed, q):
    m = _maps(seed)
    units = slice_units(m["bald"].shape, axis=0)
    n = int(units.max())
    v = get_value("bald_topq")(units, n, m, n_classes=3, top_q=q)
    ref = []
    for u in range(1, n + 1):
        vals = np.sort(m["bald"][units == u].astype(np.float64))[::-1]
        k = max(1, int(np.ceil(q * len(vals))))
        ref.append(vals[:k].sum())
    np.testing.assert_allclose(v.value, ref, rtol=1e-6)


def test_entropy_value_is_the_old_score_and_stratifies_by_probability():
    m = _maps(3)
    units = slice_units(m["entropy"].shape, axis=1)
    n = int(units.max())
    v = get_value("entropy")(units, n, m, n_classes=3, measure="entropy", aggregate="sum")
    np.testing.assert_allclose(v.value, _loop(units, n, lambda i: m["entropy"][i]), rtol=1e-6)
    np.testing.assert_allclose(v.per_class[0], _loop(units, n, lambda i: m["entropy"][i] * m["probs"][(1, *i)]),
                               rtol=1e-5)
    # a score folder from before probabilities were stored: stratified by the predicted label
    old = {k: m[k] for k in ("entropy", "prediction")}
    v2 = get_value("entropy")(units, n, old, n_classes=3, measure="entropy", aggregate="sum")
    np.testing.assert_allclose(v2.per_class[1], _loop(units, n, lambda i: m["entropy"][i] * (m["prediction"][i] == 2)),
                               rtol=1e-5)


def test_confident_background_is_worth_almost_nothing():
    """A slice the model calls background with p=0.999 is worth ~0 under class_entropy; a slice of
    uncertain structure is worth far more. Under the old entropy sum the background slice, with its
    thin uncertain rim, would still have been competitive per voxel."""
    shape = (20, 20, 4)
    p = np.zeros((3, *shape))
    p[0], p[1], p[2] = 0.999, 0.0005, 0.0005  # confident background everywhere
    p[:, 5:15, 5:15, 2] = [[[0.3]], [[0.4]], [[0.3]]]  # slice 2: uncertain structure
    m = {"probs": p, "prediction": p.argmax(0)}
    units = slice_units(shape, axis=2)
    v = get_value("class_entropy")(units, 4, m, n_classes=3)
    assert v.value[[0, 1, 3]].max() < 1e-3 * v.value[2]
    assert v.value[[0, 1, 3]].max() < 0.01
    assert (v.per_class[:, [0, 1, 3]] < 0.01).all() and (v.per_class[:, 2] > 10).all()
    e = get_value("expected_errors")(units, 4, m, n_classes=3)
    assert e.value[[0, 1, 3]].max() < 0.01 * e.value[2]


def test_values_on_supervoxels_and_region_table_columns():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(12, 14, 10)).astype(np.float32)
    units = supervoxel_units(img, size_mm=4)
    m = _maps(5, shape=img.shape)
    n = int(units.max())
    v = get_value("class_entropy")(units, n, m, n_classes=3)
    t = region_table(units, case_id="c", kind="supervoxel", axis=2, values=v, prediction=m["prediction"], n_classes=3)
    assert len(t) == n
    np.testing.assert_allclose(t["score"], v.value[t["supervoxel"] - 1])
    np.testing.assert_allclose(t["value_2"], v.per_class[1][t["supervoxel"] - 1])
    with pytest.raises(ValueError, match="exactly one of score"):
        region_table(units, case_id="c", kind="supervoxel", axis=2, n_classes=3)


def test_registry_and_needs():
    with pytest.raises(KeyError, match=r"unknown unit value 'best'; valid: \['bald_topq'"):
        get_value("best")
    assert value_needs("entropy", measure="bald") == ("bald",)
    assert value_needs("class_entropy") == ("probs", "entropy")
    m = _maps(0)
    del m["probs"]
    with pytest.raises(ValueError, match="mean class probabilities"):
        VALUES["class_entropy"](slice_units((5, 6, 4), axis=2), 4, m, n_classes=3)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([0, 1, 2]))
def test_oracle_errors_matches_loop_and_is_zero_where_the_model_is_right(seed, axis):
    m = _maps(seed)
    rng = np.random.default_rng(seed + 1)
    truth = np.where(rng.random(m["prediction"].shape) < 0.3, rng.integers(0, 3, m["prediction"].shape),
                     m["prediction"]).astype(np.uint8)
    units = slice_units(truth.shape, axis=axis)
    n = int(units.max())
    pred = m["prediction"]
    v = get_value("oracle_errors")(units, n, {**m, "truth": truth}, n_classes=3)
    np.testing.assert_array_equal(v.value, _loop(units, n, lambda i: float(pred[i] != truth[i])))
    for c in (1, 2):
        np.testing.assert_array_equal(
            v.per_class[c - 1], _loop(units, n, lambda i: float(pred[i] != truth[i] and c in (pred[i], truth[i]))))
    right = get_value("oracle_errors")(units, n, {**m, "truth": pred.copy()}, n_classes=3)
    assert not right.value.any() and not right.per_class.any()
    assert value_needs("oracle_errors") == ("truth",)
    with pytest.raises(ValueError, match="only by `medal simulate`"):
        get_value("oracle_errors")(units, n, m, n_classes=3)
