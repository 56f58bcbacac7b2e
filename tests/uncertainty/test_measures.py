import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medal.uncertainty.measures import (MEASURES, MCAccumulator, check_probs, expected_entropy, get_measure,
                                        least_confidence, margin, mutual_information, predictive_entropy, variance)


def _random_probs(rng, t=6, c=3, shape=(4, 5, 3)):
    logits = rng.normal(size=(t, c, *shape)) * 2
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_uniform_prediction_has_entropy_log_c():
    for c in (2, 3, 5):
        probs = np.full((4, c, 2, 3, 2), 1.0 / c)
        np.testing.assert_allclose(predictive_entropy(probs), np.log(c), rtol=1e-5)
        np.testing.assert_allclose(least_confidence(probs), 1 - 1 / c, rtol=1e-5)


def test_identical_samples_have_zero_bald_and_variance():
    one = _random_probs(np.random.default_rng(0), t=1)
    probs = np.repeat(one, 8, axis=0)
    np.testing.assert_allclose(mutual_information(probs), 0.0, atol=1e-6)
    np.testing.assert_allclose(variance(probs), 0.0, atol=1e-7)
    np.testing.assert_allclose(predictive_entropy(probs), expected_entropy(probs), atol=1e-6)


def test_disagreeing_confident_samples_have_high_bald():
    probs = np.zeros((2, 2, 1, 1, 1))
    probs[0, 0] = probs[1, 1] = 1.0  # each sample certain, but of different classes
    assert mutual_information(probs)[0, 0, 0] == pytest.approx(np.log(2), rel=1e-4)
    assert expected_entropy(probs)[0, 0, 0] == pytest.approx(0.0, abs=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 8), st.integers(2, 5))
def test_bald_between_zero_and_predictive_entropy(seed, t, c):
    probs = _random_probs(np.random.default_rng(seed), t=t, c=c)
    bald, pe = mutual_information(probs), predictive_entropy(probs)
    assert (bald >= 0).all()
    assert (bald <= pe + 1e-6).all()
    assert (pe <= np.log(c) + 1e-6).all()


def test_binary_entropy_peaks_at_half():
    p = np.linspace(0.01, 0.99, 99).reshape(1, 1, 99, 1, 1)
    h = predictive_entropy(p)[:, 0, 0]
    assert int(np.argmax(h)) == 49  # p = 0.5
    assert h[49] == pytest.approx(np.log(2), rel=1e-6)
    np.testing.assert_allclose(h, h[::-1], rtol=1e-6)  # symmetric in p <-> 1-p
    # sigmoid output and the equivalent two-class softmax agree on every measure
    two = np.concatenate([1 - p, p], axis=1)
    for name in ("entropy", "expected_entropy", "bald", "margin", "least_confidence"):
        np.testing.assert_allclose(MEASURES[name](p), MEASURES[name](two), atol=1e-6, err_msg=name)


def test_margin_and_least_confidence_order():
    confident = np.array([0.9, 0.05, 0.05]).reshape(1, 3, 1, 1, 1)
    unsure = np.array([0.4, 0.35, 0.25]).reshape(1, 3, 1, 1, 1)
    assert margin(unsure) > margin(confident)
    assert least_confidence(unsure) > least_confidence(confident)


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_streaming_equals_batch(name):
    probs = _random_probs(np.random.default_rng(3), t=9)
    acc = MCAccumulator()
    for t in range(0, 9, 2):  # one and two samples at a time
        acc.update(probs[t:t + 2] if t % 4 == 0 else probs[t])
        if t % 4:
            acc.update(probs[t + 1])
    assert acc.n == 9
    np.testing.assert_allclose(acc.measures([name])[name], get_measure(name)(probs), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(acc.mean_probs(), probs.mean(0), rtol=1e-6)


def test_measures_return_float32_zyx_and_input_untouched():
    probs = _random_probs(np.random.default_rng(1))
    before = probs.copy()
    for fn in MEASURES.values():
        out = fn(probs)
        assert out.shape == (4, 5, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(probs, before)


def test_check_probs_rejects_bad_input():
    with pytest.raises(ValueError, match=r"expected MC samples shaped \(T, C, Z, Y, X\), got 4 axes"):
        check_probs(np.ones((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="logits"):
        check_probs(np.full((2, 2, 1, 1, 1), 3.0))
    with pytest.raises(ValueError, match="sum to 1"):
        check_probs(np.full((2, 3, 1, 1, 1), 0.2))
    with pytest.raises(ValueError, match="NaN"):
        check_probs(np.full((2, 1, 1, 1, 1), np.nan))
    with pytest.raises(KeyError, match=r"unknown uncertainty measure 'bold'; valid: \['bald'"):
        get_measure("bold")
    with pytest.raises(ValueError, match="does not match earlier samples"):
        acc = MCAccumulator()
        acc.update(np.full((2, 2, 2, 2), 0.5))
        acc.update(np.full((2, 3, 2, 2), 0.5))


@pytest.mark.parametrize("c", [1, 3])
def test_measures_in_slabs_equal_the_whole_volumes_bit_for_bit(monkeypatch, c):
    """MCResult.measures works a slab of the last axis at a time (a CT's whole-volume float64 temporaries were
    ~20 GB); every measure is per voxel, so the slabs must give the whole volume's values exactly, votes too."""
    from medal.uncertainty import inference
    from medal.uncertainty.inference import MCResult
    from medal.uncertainty.measures import measures_from_moments

    rng = np.random.default_rng(c)
    probs = _random_probs(rng, t=7, c=max(c, 2), shape=(9, 8, 11)).astype(np.float32)
    if c == 1:
        probs = probs[:, 1:]
    p, p2 = probs.mean(0), (probs ** 2).mean(0)
    h = np.stack([predictive_entropy(q[None]) for q in probs]).mean(0).astype(np.float32)
    vote = rng.dirichlet(np.ones(max(c, 2)), size=(9, 8, 11)).transpose(3, 0, 1, 2).astype(np.float32)[-c:]
    whole = measures_from_moments(p.astype(np.float64), p2.astype(np.float64), h.astype(np.float64),
                                  vote.astype(np.float64))
    names = ["entropy", "bald", "variance", "margin", "least_confidence", "expected_entropy", "vote_entropy"]
    for slab in (1, 7 * 72, 10 ** 9):  # one plane per slab, 7 planes per slab (the last one short), one slab
        monkeypatch.setattr(inference, "SLAB_VOXELS", slab)
        got = MCResult(p, p2, h, 7, mean_vote=vote).measures(names + ["mutual_information"])
        for n in names:
            assert got[n].dtype == np.float32 and got[n].shape == (9, 8, 11)
            assert np.array_equal(got[n], whole[n]), (slab, n)
        assert np.array_equal(got["mutual_information"], whole["bald"])
    with pytest.raises(ValueError, match="need the samples' votes"):
        MCResult(p, p2, h, 7).measures(["vote_entropy"])
