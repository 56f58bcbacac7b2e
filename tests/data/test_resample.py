"""data.spacing: the network's grid and back (medal/data/resample.py), on real sample cases."""

import numpy as np
import pytest

from medal.config import DataConfig
from medal.data import UNLABELED, Volume, load_dataset, load_volume, sample_dataset, save_volume, volume_spacing
from medal.data.resample import (checkpoint_spacing, network_shape, resolve_spacing, to_case_grid, to_network_grid)


@pytest.fixture(scope="module")
def case():
    c = load_dataset(sample_dataset()).cases[0]
    return load_volume(c.image), load_volume(c.label)


def thick(v: Volume, k: int = 3, *, label: bool = False) -> Volume:
    """Every k-th slice along the last axis, declared k times as thick (a thick-slice scanner's file)."""
    aff = v.affine.copy()
    aff[:3, 2] *= k
    return Volume(np.ascontiguousarray(v.array[:, :, ::k]), aff)


def test_a_case_at_the_target_spacing_is_used_as_it_is(case):
    image, _ = case
    assert network_shape(image.shape, image.spacing, None) is None
    assert network_shape(image.shape, image.spacing, tuple(s * 1.01 for s in image.spacing)) is None
    assert to_network_grid(image.array, image.spacing, image.spacing) is image.array
    probs = np.random.default_rng(0).random((3, *image.shape)).astype(np.float32)
    assert to_case_grid(probs, image.shape) is probs


def test_a_thick_case_goes_to_the_target_grid_and_back(case):
    image, label = case
    ti, tl = thick(image), thick(label)
    target = image.spacing
    shape = network_shape(ti.shape, ti.spacing, target)
    assert shape == (ti.shape[0], ti.shape[1], 3 * ti.shape[2])
    x = to_network_grid(ti.array.astype(np.float32), ti.spacing, target)
    assert x.shape == shape and x.dtype == np.float32
    assert ti.array.min() <= x.min() and x.max() <= ti.array.max()  # trilinear: no overshoot
    # a partial label: 255 where not annotated; nearest neighbour keeps the values and the dtype
    part = tl.array.copy()
    part[:, :, 1::2] = UNLABELED
    y = to_network_grid(part, tl.spacing, target, labels=True)
    assert y.shape == shape and y.dtype == part.dtype
    assert set(np.unique(y).tolist()) == set(np.unique(part).tolist())
    # every network-grid slice copies one of the case's slices (the nearest)
    for k in range(shape[2]):
        src = min(int((k + 0.5) / 3), part.shape[2] - 1)
        assert np.array_equal(y[:, :, k], part[:, :, src])
    # back: the case's own shape; one-hot maps of the label come back to the label where it is unambiguous
    onehot = np.stack([(label.array == c) for c in range(3)]).astype(np.float32)
    down = to_network_grid(onehot[0], image.spacing, ti.spacing).shape
    assert down == ti.shape
    back = to_case_grid(onehot, label.shape)
    assert back is onehot
    up = to_case_grid(np.stack([to_network_grid(o, image.spacing, ti.spacing) for o in onehot]), label.shape)
    assert up.shape == (3, *label.shape)
    agree = (up.argmax(0) == label.array).mean()
    assert agree > 0.97, agree


def test_median_spacing_is_read_from_the_headers(tmp_path, case):
    image, label = case
    root = tmp_path / "ds"
    cases = load_dataset(sample_dataset()).cases[:5]
    for i, c in enumerate(cases):
        v, lab = load_volume(c.image), load_volume(c.label)
        if i < 2:
            v, lab = thick(v), thick(lab)
        save_volume(v, root / "imagesTr" / f"{c.case_id}.nii.gz")
        save_volume(lab, root / "labelsTr" / f"{c.case_id}.nii.gz")
    ds = load_dataset(root)
    assert volume_spacing(ds.cases[0].image) == pytest.approx(load_volume(ds.cases[0].image).spacing)
    spacings = sorted(volume_spacing(c.image)[2] for c in ds.cases)
    assert spacings[-1] == pytest.approx(3 * spacings[0])
    got = resolve_spacing(DataConfig(spacing="median"), ds)
    assert got == pytest.approx(tuple(np.median([volume_spacing(c.image) for c in ds.cases], axis=0)))
    assert got[2] == pytest.approx(spacings[2])  # 3 of 5 at the original spacing
    assert resolve_spacing(DataConfig(spacing=(1.0, 1.0, 2.0)), ds) == (1.0, 1.0, 2.0)
    assert resolve_spacing(DataConfig(spacing=None), ds) is None
    assert DataConfig().spacing == "median"
    assert checkpoint_spacing({"meta": {"spacing": [1, 1, 2]}}) == (1.0, 1.0, 2.0)
    assert checkpoint_spacing({"meta": {}}) is None and checkpoint_spacing(None) is None


def test_a_warm_start_keeps_the_spacing_its_model_learnt(tmp_path, tiny_model_cfg):
    """With ``median``, cases added since the last round must not move the spacing under a trained model;
    an explicit spacing is the config's; a model trained on its own grids records none."""
    from medal.data.resample import training_spacing
    from medal.model import build_model, save_checkpoint

    ds = load_dataset(sample_dataset())
    net = build_model(tiny_model_cfg, out_channels=3)
    learnt = tmp_path / "learnt.pt"
    save_checkpoint(learnt, net, tiny_model_cfg, in_channels=1, out_channels=3, meta={"spacing": [1.0, 1.0, 2.5]})
    plain = tmp_path / "plain.pt"
    save_checkpoint(plain, net, tiny_model_cfg, in_channels=1, out_channels=3)
    median = resolve_spacing(DataConfig(spacing="median"), ds)
    assert training_spacing(DataConfig(spacing="median"), ds, learnt) == (1.0, 1.0, 2.5)
    assert training_spacing(DataConfig(spacing="median"), ds, plain) == median
    assert training_spacing(DataConfig(spacing="median"), ds, None) == median
    assert training_spacing(DataConfig(spacing=(2.0, 2.0, 2.0)), ds, learnt) == (2.0, 2.0, 2.0)
    assert training_spacing(DataConfig(spacing=None), ds, learnt) is None


def test_spacing_is_checked_at_load_and_goes_with_every_strategy():
    from medal.config import ConfigError, config_from_dict

    # badge's gradient embeddings are brought back to each case's slices (medal/uncertainty/embedding.py)
    c = config_from_dict({"data": {"spacing": "median"}, "selection": {"strategy": "badge"},
                          "simulation": {"strategies": ["fg_badge", "default"]}})
    assert c.data.spacing == "median" and c.selection.strategy == "badge"
    with pytest.raises(ConfigError, match=r"data.spacing: 'mean' is not 'median'"):
        config_from_dict({"data": {"spacing": "mean"}})
    with pytest.raises(ConfigError, match=r"data.spacing: need 3 spacings in mm above 0"):
        config_from_dict({"data": {"spacing": [1, 0, 1]}})
    assert config_from_dict({"data": {"spacing": [1, 1, 3]}}).data.spacing == (1.0, 1.0, 3.0)
