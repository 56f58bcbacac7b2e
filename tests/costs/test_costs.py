import json

import numpy as np
import pytest

from medal.costs import CostModel, append_annotation_log, effort_features, feature_names, fit_cost_model
from medal.regions import slice_units


def _slice_with(squares, shape=(20, 20, 3), axis=2, z=1):
    seg = np.zeros(shape, np.uint8)
    for (y, x, s, c) in squares:
        seg[y:y + s, x:x + s, z] = c
    return seg


def test_features_of_a_hand_built_slice():
    seg = _slice_with([(2, 2, 3, 1), (10, 10, 2, 1), (5, 12, 4, 2)])
    units = slice_units(seg.shape, axis=2)
    f = effort_features(units, seg, axis=2, spacing=(0.5, 0.5, 3.0), n_classes=3)
    # slice 1 holds two class-1 squares (3x3, 2x2) and one class-2 square (4x4), pixels 0.5 mm
    assert f["components_1"].tolist() == [0, 2, 0] and f["components_2"].tolist() == [0, 1, 0]
    assert f["boundary_mm_1"][1] == pytest.approx((12 + 8) * 0.5)
    assert f["boundary_mm_2"][1] == pytest.approx(16 * 0.5)
    assert f["area_mm2_1"][1] == pytest.approx(13 * 0.25)
    assert f["n_slices"].tolist() == [1, 1, 1]


def test_supervoxel_features_count_per_plane_and_respect_unit_borders():
    seg = np.zeros((6, 6, 4), np.uint8)
    seg[1:5, 1:5, 1:3] = 1  # a 4x4 square on two planes
    units = np.ones_like(seg, dtype=np.int32)
    units[:, 3:, :] = 2  # split down the middle: each unit sees a 4x2 rectangle per plane
    f = effort_features(units, seg, axis=2, n_classes=2)
    assert f["n_slices"].tolist() == [4, 4]
    assert f["components_1"].tolist() == [2, 2]  # one piece per plane per unit
    assert f["boundary_mm_1"].tolist() == [24, 24]  # perimeter 12 per plane, the cut counts as outline
    assert f["area_mm2_1"].tolist() == [16, 16]


def test_cost_grows_with_boundary_and_components():
    model = CostModel.default(2)
    units = slice_units((30, 30, 3), axis=2)
    one_small = effort_features(units, _slice_with([(5, 5, 4, 1)], (30, 30, 3)), axis=2)
    one_large = effort_features(units, _slice_with([(5, 5, 12, 1)], (30, 30, 3)), axis=2)
    two_small = effort_features(units, _slice_with([(5, 5, 4, 1), (20, 20, 4, 1)], (30, 30, 3)), axis=2)
    empty = effort_features(units, np.zeros((30, 30, 3), np.uint8), axis=2)
    c = [model.predict(f)[1] for f in (empty, one_small, one_large, two_small)]
    assert c[0] < c[1] < c[2] and c[1] < c[3]
    assert c[0] == pytest.approx(4.0 + 1.5)  # an empty slice still costs a look


def test_calibration_recovers_known_coefficients(tmp_path):
    rng = np.random.default_rng(0)
    truth = {"intercept": 3.0, "n_slices": 2.0, "boundary_mm_1": 0.3, "components_1": 5.0, "area_mm2_1": 0.01,
             "boundary_mm_2": 0.1, "components_2": 1.0, "area_mm2_2": 0.0}
    log = tmp_path / "annotation_log.jsonl"
    for _ in range(300):
        rec = {"n_slices": int(rng.integers(1, 6))}
        for c in (1, 2):
            rec[f"boundary_mm_{c}"] = float(rng.uniform(0, 200))
            rec[f"components_{c}"] = int(rng.integers(0, 5))
            rec[f"area_mm2_{c}"] = float(rng.uniform(0, 2000))
        rec["seconds"] = truth["intercept"] + sum(truth[k] * rec[k] for k in feature_names(3)) + rng.normal(0, 0.5)
        append_annotation_log(log, rec)
    model = fit_cost_model(log, n_classes=3)
    for k, v in truth.items():
        assert model.coefficients[k] == pytest.approx(v, abs=0.05 * max(1.0, v)), k
    assert model.fit["r2"] > 0.99 and model.fit["n_tasks"] == 300
    assert all(v >= 0 for v in model.coefficients.values())
    model.save(tmp_path / "cost.json")
    back = CostModel.load(tmp_path / "cost.json")
    assert back == model


def test_bad_logs_and_models(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"seconds": 3}\nnot json\n')
    with pytest.raises(ValueError, match=r"log\.jsonl:2: not valid JSON"):
        fit_cost_model(log, n_classes=2)
    log.write_text("\n".join(json.dumps({"seconds": 3, "n_slices": 1}) for _ in range(10)))
    with pytest.raises(ValueError, match="lacks features"):
        fit_cost_model(log, n_classes=2)
    (tmp_path / "m.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not a medal cost model"):
        CostModel.load(tmp_path / "m.json")
    with pytest.raises(ValueError, match=">= 0"):
        CostModel({**CostModel.default(2).coefficients, "n_slices": -1.0}, 2)


def _loop_changes(units, target, start, c, uid, axis=2):
    """Reference: the class-c pixels to change in unit ``uid`` and their 8-connected pieces, plane by plane."""
    from scipy import ndimage

    area = comps = 0
    for z in range(units.shape[axis]):
        u = np.take(units, z, axis=axis) == uid
        ch = u & ((np.take(target, z, axis=axis) == c) != (np.take(start, z, axis=axis) == c))
        area += int(ch.sum())
        comps += ndimage.label(ch, structure=np.ones((3, 3)))[1]  # 8-connected: a diagonal band is one stroke
    return area, comps


def test_correction_features_price_only_what_changes():
    from medal.costs import correction_features

    truth = np.zeros((12, 14, 4), np.uint8)
    truth[2:8, 3:9, :] = 1
    truth[8:11, 9:13, 1:3] = 2
    units = slice_units(truth.shape, axis=2)
    # a prediction right everywhere: only the checking is left, the drawing features are all zero
    f = correction_features(units, truth, truth, axis=2, n_classes=3)
    assert f["n_slices"].tolist() == [1, 1, 1, 1]
    assert all(not f[k].any() for k in feature_names(3) if k != "n_slices")
    assert CostModel.default(3).predict(f) == pytest.approx([5.5] * 4)  # intercept + one slice checked
    # from an empty start the correction is the drawing itself
    empty = np.zeros_like(truth)
    drawn = effort_features(units, truth, axis=2, n_classes=3)
    for k, v in correction_features(units, truth, empty, axis=2, n_classes=3).items():
        np.testing.assert_allclose(v, drawn[k])
    # hand-built corrections on one plane, 0.5 mm pixels across the rows, 1 mm along them
    sq = np.zeros((12, 14, 1), np.uint8)
    sq[2:8, 3:9, 0] = 1  # a 6x6 square: outline 6 * 0.5 * 2 + 6 * 1.0 * 2 = 18 mm
    one = slice_units(sq.shape, axis=2)
    g = dict(axis=2, spacing=(1.0, 0.5, 3.0), n_classes=2)
    assert effort_features(one, sq, **g)["boundary_mm_1"][0] == pytest.approx(18.0)
    shifted = np.roll(sq, 1, axis=1)  # the outline one pixel off along a row: one column missed, one too many
    f = correction_features(one, sq, shifted, **g)
    # traced once: the two sides across the shift (2 x 6 x 1.0 mm) and the top and bottom of the missed column
    # (2 x 0.5); the band between the two outlines is not traced along both its sides (that would be 26 mm)
    assert f["boundary_mm_1"][0] == pytest.approx(13.0) and f["components_1"][0] == 2 and f["area_mm2_1"][0] == 6.0
    two = sq.copy()
    two[9:11, 10:12, 0] = 1  # the structure has a second 2x2 piece the prediction missed: traced all round
    f = correction_features(one, two, sq, **g)
    assert f["boundary_mm_1"][0] == pytest.approx(6.0) and f["components_1"][0] == 1 and f["area_mm2_1"][0] == 2.0
    holed = sq.copy()
    holed[3:5, 4:6, 0] = 0  # a 2x2 hole in the prediction: one stroke fills it, no outline of the truth to trace
    f = correction_features(one, sq, holed, **g)
    assert f["boundary_mm_1"][0] == 0 and f["components_1"][0] == 1 and f["area_mm2_1"][0] == 2.0
    false = sq.copy()
    false[9:11, 10:12, 0] = 1  # a false 2x2 piece: one stroke to erase it, nothing to trace
    f = correction_features(one, sq, false, **g)
    assert f["boundary_mm_1"][0] == 0 and f["components_1"][0] == 1 and f["area_mm2_1"][0] == 2.0
    # pieces and areas of a noisy prediction (speckles, a cut outline, a wrong class): the loop reference, per class
    # and unit, for slices and for units spanning several planes
    rng = np.random.default_rng(3)
    start = truth.copy()
    start[rng.random(truth.shape) < 0.08] = 1
    start[2:8, 3, :] = 0
    start[8:10, 9:11, 1] = 1
    blocks = np.where(np.arange(truth.shape[0])[:, None, None] < 6, 1, 2) * np.ones(truth.shape, np.int32)
    for u, n in ((units, 4), (blocks, 2)):
        f = correction_features(u, truth, start, axis=2, n_classes=3)
        for c in (1, 2):
            for uid in range(1, n + 1):
                assert (f[f"area_mm2_{c}"][uid - 1], f[f"components_{c}"][uid - 1]) == \
                    pytest.approx(_loop_changes(u, truth, start, c, uid))
        # never more outline to trace than drawing it all, and the wrong class counts for class 2 too
        full = effort_features(u, truth, axis=2, n_classes=3)
        assert (f["boundary_mm_1"] <= full["boundary_mm_1"] + 1e-9).all() and f["area_mm2_2"].sum() == 4


def test_expected_correction_of_a_confident_unit_is_the_check_alone():
    from medal.costs import expected_correction_features

    truth = np.zeros((10, 10, 3), np.uint8)
    truth[2:7, 2:7, :] = 1
    units = slice_units(truth.shape, axis=2)
    probs = np.stack([truth == 0, truth == 1]).astype(np.float32) * 0.98 + 0.01  # confident and right
    f = expected_correction_features(units, probs, truth, axis=2, n_classes=2)
    assert not f["boundary_mm_1"].any() and not f["area_mm2_1"].any() and f["n_slices"].tolist() == [1, 1, 1]
    # unsure on the middle slice (p = 0.6 in a ring around the square): the expected correction grows there only
    ring = np.zeros_like(truth, bool)
    ring[1:8, 1:8, 1] = True
    ring[2:7, 2:7, 1] = False
    probs[1, ring], probs[0, ring] = 0.6, 0.4
    f = expected_correction_features(units, probs, truth, axis=2, n_classes=2)
    assert f["area_mm2_1"][1] > 0 and f["area_mm2_1"][0] == 0 == f["area_mm2_1"][2]
    # levels 0.1-0.5 of the five call the ring foreground, so 3/5 of its 24 pixels are expected to change
    assert f["area_mm2_1"][1] == pytest.approx(24 * 3 / 5)


@pytest.mark.parametrize("axis", [0, 2])
def test_slices_spanned_and_pieces_equal_a_loop_over_units_and_planes(axis):
    """n_slices and components_c (counted without sorting every voxel since 2026-12-07) against a loop: per unit,
    the planes it appears in, and per plane the 4-connected pieces of class c inside it; units of irregular
    shape, a region outside every unit (0), ids asked in another order."""
    from scipy import ndimage

    rng = np.random.default_rng(axis)
    shape = (9, 11, 7)
    units = (ndimage.zoom(rng.integers(1, 6, size=(3, 3, 3)), [s / 3 for s in shape], order=0)[:9, :11, :7]
             * (rng.random(shape) > 0.1)).astype(np.int32)
    seg = ndimage.median_filter(rng.integers(0, 3, size=shape), size=2).astype(np.uint8)
    ids = np.array([5, 2, 1, 3, 4])
    f = effort_features(units, seg, axis=axis, n_classes=3, ids=ids)
    for k, u in enumerate(ids):
        planes = [np.take(units, p, axis=axis) == u for p in range(shape[axis])]
        assert f["n_slices"][k] == sum(bool(m.any()) for m in planes)
        for c in (1, 2):
            pieces = sum(ndimage.label(m & (np.take(seg, p, axis=axis) == c))[1] for p, m in enumerate(planes))
            assert f[f"components_{c}"][k] == pieces, (u, c)
