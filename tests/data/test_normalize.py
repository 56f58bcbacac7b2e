import numpy as np
import pytest

from medal.data import load_volume, normalize_intensity, sample_dataset


def test_zscore_makes_uint8_and_float_scans_comparable():
    root = sample_dataset() / "imagesTr"
    outs = {}
    for f in sorted(root.iterdir()):
        vol = load_volume(f)
        outs.setdefault(str(vol.array.dtype), normalize_intensity(vol.array))
    assert set(outs) == {"uint8", "float32"}
    for out in outs.values():
        assert out.dtype == np.float32
        assert abs(float(out.mean())) < 0.05
        assert float(out.std()) == pytest.approx(1.0, abs=0.05)


def test_minmax_range_and_input_untouched():
    x = np.random.default_rng(0).normal(100, 20, (10, 10, 10))
    before = x.copy()
    y = normalize_intensity(x, method="minmax", clip_percentiles=(1, 99))
    assert y.min() == 0.0 and y.max() == pytest.approx(1.0)
    np.testing.assert_array_equal(x, before)


def test_mask_statistics_and_constant_volume():
    x = np.zeros((4, 4, 4))
    x[:2] = 10.0
    mask = x > 5
    y = normalize_intensity(x, method="zscore", mask=mask)
    assert np.all(y[mask] == 0)  # constant inside the mask: mean removed, std taken as 1
    assert np.isfinite(normalize_intensity(np.ones((3, 3, 3)))).all()


def test_bad_options():
    with pytest.raises(ValueError, match=r"unknown normalisation 'max'.*minmax"):
        normalize_intensity(np.zeros((2, 2, 2)), method="max")
    with pytest.raises(ValueError, match="clip_percentiles"):
        normalize_intensity(np.zeros((2, 2, 2)), clip_percentiles=(50, 10))
    with pytest.raises(ValueError, match="mask shape"):
        normalize_intensity(np.zeros((2, 2, 2)), mask=np.zeros((2, 2), bool))
