"""Online cost calibration and costs expected under the predictive distribution."""

import json

import numpy as np
import pytest

from medal.costs import (CostCalibration, CostModel, append_annotation_log, calibration_pairs, drop_small_pieces,
                         effort_features,
                         expected_effort_features, fit_calibration, fit_scale, level_segmentation)
from medal.regions import slice_units
from medal.tasks import Task, write_tasks


def _round(tmp_path, name, predicted, charged, features=None):
    rd = tmp_path / name
    rd.mkdir()
    tasks = [Task(task_id=f"t{i:04d}", case_id="c", image="img.nii.gz", kind="slice", axis=2, index=i, supervoxel=-1,
                  bbox=[[0, 0, i], [4, 4, i + 1]], score=1.0, predicted_cost_s=float(p), strategy="knapsack",
                  model_cost_s=float(p), features=None if features is None else features[i])
             for i, p in enumerate(predicted)]
    (tmp_path / "img.nii.gz").touch()
    write_tasks(rd / "tasks.json", tasks, dataset_root=tmp_path)
    for i, s in enumerate(charged):
        if s is not None:
            append_annotation_log(rd / "annotation_log.jsonl", {"task_id": f"t{i:04d}", "seconds": float(s)})
    return rd


def test_calibration_recovers_a_known_multiplicative_bias(tmp_path):
    """The expert spends 1.7x what was predicted, round after round: the correction carries over from
    one round to the next, so the fitted scale (1.7) is used and removes the bias on new predictions."""
    rng = np.random.default_rng(0)
    p0, p1 = rng.uniform(5, 60, 40), rng.uniform(5, 60, 40)
    rounds = [_round(tmp_path, "round_000", p0, 1.7 * p0), _round(tmp_path, "round_001", p1, 1.7 * p1)]
    cal = fit_calibration(calibration_pairs(rounds), method="scale", floor=5.0)
    assert cal.method == "scale" and cal.n_tasks == 80 and cal.rounds == ("round_000", "round_001")
    assert cal.scale == pytest.approx(1.7, rel=1e-6) and cal.offset == pytest.approx(0.0, abs=1e-6)
    new = rng.uniform(5, 60, 10)
    np.testing.assert_allclose(cal.apply(new), 1.7 * new)
    assert cal.apply(np.array([0.5]))[0] == 5.0  # the floor: navigating to a unit and checking it
    one = fit_calibration(calibration_pairs(rounds[:1]), method="scale")  # one round: half-way
    assert one.scale == pytest.approx(np.sqrt(1.7), rel=1e-6) and one.method.startswith("scale (half-way")


def test_a_log_line_cut_by_a_crash_hides_no_other_task(tmp_path):
    """A crash mid-write leaves half a line without a newline: the next record starts on its own line,
    calibration and the round's spending keep every whole record, and a log a person names (strict,
    as `medal costs fit` reads it) still says which line is bad."""
    from medal.costs import read_annotation_log
    from medal.loop import round_spending

    p = np.linspace(10, 60, 12)
    rd = _round(tmp_path, "round_000", p, [2.0 * x for x in p[:6]] + [None] * 6)
    log = rd / "annotation_log.jsonl"
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"task_id": "t0006", "seconds": 2.0 * p[6]})[:15])  # the crash
    for i in range(6, 12):
        append_annotation_log(log, {"task_id": f"t{i:04d}", "seconds": 2.0 * p[i]})
    assert log.read_text().splitlines()[6] == '{"task_id": "t0'
    cut: list[int] = []
    assert [r["task_id"] for r in read_annotation_log(log, strict=False, bad=cut)] == [f"t{i:04d}" for i in range(12)]
    assert cut == [7]
    with pytest.raises(ValueError, match=r"annotation_log\.jsonl:7: not valid JSON"):
        read_annotation_log(log)
    cal = fit_calibration(calibration_pairs([rd]), method="scale")
    assert cal.n_tasks == 12 and cal.scale == pytest.approx(np.sqrt(2.0), rel=1e-6)  # one round: half-way
    spent = round_spending(rd)
    assert spent["logged"] == 12 and spent["charged_s"] == pytest.approx(2.0 * p.sum())


def test_a_bias_that_does_not_carry_over_is_not_applied(tmp_path):
    """A weak first model over-draws structure (charged 0.75x predicted); the next model does not (1.0x).
    Round 0's correction would overshoot round 1's, so none is applied."""
    rng = np.random.default_rng(1)
    p0, p1 = rng.uniform(5, 60, 50), rng.uniform(5, 60, 50)
    rounds = [_round(tmp_path, "round_000", p0, 0.75 * p0), _round(tmp_path, "round_001", p1, 1.0 * p1)]
    cal = fit_calibration(calibration_pairs(rounds), method="scale")
    assert cal.method == "none" and "did not carry over" in cal.rounds[0]
    np.testing.assert_allclose(cal.apply(p1), p1)


def test_calibration_with_noise_offset_and_recency(tmp_path):
    rng = np.random.default_rng(1)
    p0, p1, p2 = (rng.uniform(5, 60, 60) for _ in range(3))
    r0 = _round(tmp_path, "round_000", p0, 3.0 * p0)  # an early round with a much worse model
    r1 = _round(tmp_path, "round_001", p1, 0.8 * p1 + 4 + rng.normal(0, 1, 60))
    r2 = _round(tmp_path, "round_002", p2, 0.8 * p2 + 4 + rng.normal(0, 1, 60))
    cal = fit_calibration(calibration_pairs([r0, r1, r2]), method="scale", decay=0.01)
    assert cal.scale == pytest.approx(0.8, abs=0.08) and cal.offset == pytest.approx(4, abs=3)
    even = fit_calibration(calibration_pairs([r0, r1, r2]), method="scale", decay=1.0)
    assert even.method == "none" or even.scale > 1.2  # without decay the old round pulls it up (or it is declined)


def test_calibration_needs_enough_tasks_and_skips_unlogged_ones(tmp_path):
    rd = _round(tmp_path, "round_000", [10, 20, 30], [15, None, 45])
    pairs = calibration_pairs([rd, tmp_path / "missing_round"])
    assert [p["task_id"] for p in pairs] == ["t0000", "t0002"]
    cal = fit_calibration(pairs, min_tasks=10, floor=2.0)
    assert cal.method.startswith("ratio") and cal.scale == pytest.approx(np.sqrt(60 / 40))  # ratio of totals, half-way
    assert cal.apply(np.array([1.0]))[0] == 2.0  # ... still above the floor
    none = fit_calibration([], floor=2.0)
    assert none.method == "none" and none.apply(np.array([7.0]))[0] == 7.0
    with pytest.raises(ValueError, match="unknown cost calibration 'magic'"):
        fit_calibration(pairs, method="magic")


def test_feature_refit_calibration(tmp_path):
    rng = np.random.default_rng(2)
    n = 60
    feats = [{"n_slices": 1.0, "boundary_mm_1": float(b), "components_1": float(c), "area_mm2_1": float(a)}
             for b, c, a in zip(rng.uniform(0, 80, n), rng.integers(0, 4, n), rng.uniform(0, 500, n))]
    truth = CostModel({"intercept": 3.0, "n_slices": 2.0, "boundary_mm_1": 0.5, "components_1": 1.0,
                       "area_mm2_1": 0.01}, 2)
    secs = truth.predict({k: np.array([f[k] for f in feats]) for k in feats[0]})
    half = n // 2
    rd = _round(tmp_path, "round_000", np.full(half, 10.0), secs[:half], features=feats[:half])
    rd2 = _round(tmp_path, "round_001", np.full(n - half, 10.0), secs[half:], features=feats[half:])
    cal = fit_calibration(calibration_pairs([rd, rd2]), method="features", n_classes=2)
    assert cal.method == "features"
    assert cal.coefficients["boundary_mm_1"] == pytest.approx(0.5, rel=1e-3)
    got = cal.apply(np.full(n, 10.0), {k: np.array([f[k] for f in feats]) for k in feats[0]})
    np.testing.assert_allclose(got, secs, rtol=1e-4)
    few = fit_calibration(calibration_pairs([rd])[:12], method="features", n_classes=2)
    assert few.method.startswith("scale")  # too few tasks for 5 coefficients: the two-parameter fit


def test_fit_scale_is_non_negative():
    a, b = fit_scale([10, 20, 30], [5, 5, 5])
    assert a >= 0 and b == pytest.approx(5.0, abs=1e-6)
    with pytest.raises(ValueError):
        fit_scale([1, 2], [1])


def test_calibration_round_trips_through_json():
    cal = CostCalibration(scale=1.3, offset=2.0, floor=5.0, method="scale", n_tasks=12, rounds=("round_000",))
    again = json.loads(json.dumps(cal.to_json()))
    from medal.costs import load_calibration

    assert load_calibration(again) == cal and load_calibration(None) == CostCalibration()


def test_expected_features_weigh_uncertain_foreground_by_its_probability():
    shape = (12, 12, 3)
    p = np.zeros((2, *shape))
    p[0] = 1.0
    p[:, 2:6, 2:6, 1] = [[[0.0]], [[1.0]]]  # a certain 4x4 square
    p[:, 7:11, 7:11, 1] = [[[0.6]], [[0.4]]]  # an unsure 4x4 square (called background by the argmax)
    units = slice_units(shape, axis=2)
    exp = expected_effort_features(units, p, axis=2, n_classes=2)
    hard = effort_features(units, p.argmax(0), axis=2, n_classes=2)
    # expected area: 16 (certain) + 0.4 of 16 (level grid 0.1..0.9: called at levels 0.1 and 0.3)
    assert exp["area_mm2_1"][1] == pytest.approx(16 + 16 * 2 / 5)
    assert hard["area_mm2_1"][1] == 16
    assert exp["components_1"][1] == pytest.approx(1 + 2 / 5)
    np.testing.assert_array_equal(level_segmentation(p, 0.5)[..., 1], p.argmax(0)[..., 1])
    with pytest.raises(ValueError, match="C >= 2"):
        level_segmentation(p[:1], 0.5)


def test_a_degenerate_fit_falls_back_to_the_ratio_of_totals(tmp_path):
    """Seconds logged for a real first round (hippocampus tuning run, random slices, seed 0): a weak
    model over-drew hippocampus on empty slices (predicted 190 s, spent 5.5 s), so NNLS puts all the
    weight on the offset (a = 0, b = 14.8). Applied as it is, every unit of the next round would cost
    the same 7.4 s (half-way) and the "600 s" round bought 81 slices that took 1,468 s. The ratio of
    totals keeps the model's ranking; one round's correction stays within MAX_ONE_ROUND_FACTOR."""
    from medal.costs.calibration import MAX_ONE_ROUND_FACTOR

    pred = [17.2, 28.6, 30.5, 26.7, 26.5, 25.4, 22.3, 16.8, 10.4, 54.9, 190.3, 48.7, 6.1, 9.2, 69.4, 9.2, 7.5]
    spent = [17.2, 28.7, 27.8, 20.9, 18.0, 29.9, 16.8, 14.8, 5.5, 5.5, 5.5, 32.8, 5.5, 5.5, 5.5, 5.5, 5.5]
    a, b = fit_scale(pred, spent)
    assert a == pytest.approx(0.0, abs=1e-6) and b > 10  # the degenerate two-parameter fit
    cal = fit_calibration(calibration_pairs([_round(tmp_path, "round_000", pred, spent)]), method="scale", floor=5.0)
    assert cal.method.startswith("ratio (two-parameter fit degenerate)") and cal.offset == 0.0
    ratio = sum(spent) / sum(pred)
    assert cal.scale == pytest.approx(max(np.sqrt(ratio), 1 / MAX_ONE_ROUND_FACTOR))
    new = np.array([10.0, 40.0, 120.0])
    out = cal.apply(new)
    assert out[0] < out[1] < out[2]  # the model's ranking of units survives the correction


def _drop_small_pieces_loop(seg, axis, spacing, min_mm2):
    """Reference: plane by plane, class by class, scipy's 2D 4-connected labelling."""
    from scipy import ndimage

    inplane = [d for d in range(3) if d != axis]
    min_px = min_mm2 / (spacing[inplane[0]] * spacing[inplane[1]])
    out = seg.copy()
    for k in range(seg.shape[axis]):
        plane = np.take(seg, k, axis=axis)
        keep = plane.copy()
        for c in np.unique(plane):
            if c == 0:
                continue
            lab, n = ndimage.label(plane == c)
            for i in range(1, n + 1):
                if (lab == i).sum() < min_px:
                    keep[lab == i] = 0
        idx = [slice(None)] * 3
        idx[axis] = k
        out[tuple(idx)] = keep
    return out


@pytest.mark.parametrize("axis,spacing,min_mm2", [(0, (1.0, 1.0, 1.0), 4.0), (2, (3.0, 0.5, 0.5), 4.0),
                                                  (1, (0.7, 2.0, 0.7), 2.0), (2, (1.0, 1.0, 1.0), 0.0)])
def test_drop_small_pieces_equals_a_plane_by_plane_loop(axis, spacing, min_mm2):
    rng = np.random.default_rng(3)
    seg = (rng.random((9, 11, 10)) < 0.35).astype(np.uint8) * rng.integers(1, 3, (9, 11, 10)).astype(np.uint8)
    before = seg.copy()
    got = drop_small_pieces(seg, axis=axis, spacing=spacing, min_mm2=min_mm2)
    np.testing.assert_array_equal(got, _drop_small_pieces_loop(seg, axis, spacing, min_mm2))
    np.testing.assert_array_equal(seg, before)  # the input is left as it is
    if min_mm2:
        assert (got > 0).sum() < (seg > 0).sum()


def test_specks_of_a_weak_model_do_not_add_pieces_to_the_predicted_seconds():
    """A certain 4x4 structure plus a sprinkle of one-voxel specks at p = 0.6 in every plane: counted,
    the specks add a piece (2 s) and an outline each; with min_piece_mm2 the features are those of the
    structure alone, and a column of specks through several planes is not one piece."""
    shape = (12, 12, 3)
    p = np.zeros((2, *shape), np.float32)
    p[0] = 1.0
    p[0, 2:6, 2:6, :], p[1, 2:6, 2:6, :] = 0.0, 1.0
    for y, x in [(8, 8), (10, 2), (1, 10), (9, 5)]:
        p[0, y, x, :], p[1, y, x, :] = 0.4, 0.6
    units = slice_units(shape, axis=2)
    kw = dict(axis=2, n_classes=2, levels=(0.5, 0.7, 0.9))
    noisy = expected_effort_features(units, p, **kw)
    clean = expected_effort_features(units, p, min_piece_mm2=4.0, **kw)
    structure_only = effort_features(units, (p[1] > 0.99).astype(np.uint8), axis=2, n_classes=2)
    assert noisy["components_1"][0] == pytest.approx(1 + 4 / 3)
    for k in ("components_1", "boundary_mm_1", "area_mm2_1"):
        np.testing.assert_allclose(clean[k], structure_only[k])
    model = CostModel.default(2)
    assert (model.predict(clean) < model.predict(noisy)).all()


def test_cost_levels_and_min_piece_are_checked_at_load():
    from medal.config import ConfigError, config_from_dict

    assert config_from_dict({"costs": {"levels": [0.5, 0.9], "min_piece_mm2": 4}}).costs.levels == (0.5, 0.9)
    with pytest.raises(ConfigError, match="costs.levels"):
        config_from_dict({"costs": {"levels": [0.5, 1.0]}})
    with pytest.raises(ConfigError, match="costs.min_piece_mm2"):
        config_from_dict({"costs": {"min_piece_mm2": -1}})
