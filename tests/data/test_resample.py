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
    # the axis order: a warm start keeps its model's (none recorded: each case's storage order, as every model
    # written before data.orientation was), so weights are never fine-tuned on flipped inputs
    from medal.data.resample import training_orientation

    lps = tmp_path / "lps.pt"
    save_checkpoint(lps, net, tiny_model_cfg, in_channels=1, out_channels=3, meta={"orientation": "LPS"})
    assert training_orientation(DataConfig(), None) == "RAS"
    assert training_orientation(DataConfig(orientation=None), None) is None
    assert training_orientation(DataConfig(), lps) == "LPS"
    assert training_orientation(DataConfig(), plain) is None


def test_spacing_is_checked_at_load_and_goes_with_every_strategy():
    from medal.config import ConfigError, config_from_dict

    # badge's gradient embeddings are brought back to each case's slices (medal/uncertainty/embedding.py)
    c = config_from_dict({"data": {"spacing": "median"}, "selection": {"strategy": "badge"},
                          "simulation": {"strategies": ["fg_badge", "default"]}})
    assert c.data.spacing == "median" and c.selection.strategy == "badge"
    assert config_from_dict({"data": {"orientation": "lps"}}).data.orientation == "LPS"
    for bad in ("RRS", "RA", "XYZ"):
        with pytest.raises(ConfigError, match=rf"data.orientation: '{bad}' is not 3 axis codes"):
            config_from_dict({"data": {"orientation": bad}})
    with pytest.raises(ConfigError, match=r"data.spacing: 'mean' is not 'median'"):
        config_from_dict({"data": {"spacing": "mean"}})
    with pytest.raises(ConfigError, match=r"data.spacing: need 3 spacings in mm above 0"):
        config_from_dict({"data": {"spacing": [1, 0, 1]}})
    assert config_from_dict({"data": {"spacing": [1, 1, 3]}}).data.spacing == (1.0, 1.0, 3.0)


def permuted(v: Volume, *, label: bool = False) -> Volume:
    """The same scan stored with its first two axes swapped and both reversed (world unchanged), as a scanner
    writing another storage order would."""
    arr = np.ascontiguousarray(np.flip(v.array, (0, 1)).transpose(1, 0, 2))
    n0, n1 = v.shape[0], v.shape[1]
    idx = np.zeros((4, 4))  # new index (i, j, k) -> old index (n0 - 1 - j, n1 - 1 - i, k)
    idx[0, 1], idx[1, 0], idx[2, 2], idx[3, 3] = -1.0, -1.0, 1.0, 1.0
    idx[0, 3], idx[1, 3] = n0 - 1, n1 - 1
    return Volume(arr, v.affine @ idx)


def test_data_orientation_flips_and_permutes_a_case_losslessly_and_back(case):
    from medal.data.resample import network_grid

    image, label = case
    p_img, p_lab = permuted(image), permuted(label)
    assert p_img.orientation != image.orientation
    np.testing.assert_allclose(p_img.affine @ [3, 5, 7, 1], image.affine @ [image.shape[0] - 1 - 5,
                                                                           image.shape[1] - 1 - 3, 7, 1])
    grid = network_grid(p_img.shape, p_img.affine, None, image.orientation)
    assert not grid.identity and grid.shape is None and grid.reoriented == image.shape
    np.testing.assert_array_equal(grid.to_network(p_img.array), image.array)
    np.testing.assert_array_equal(grid.to_network(p_lab.array, labels=True), label.array)
    probs = np.random.default_rng(1).random((3, *image.shape)).astype(np.float32)
    np.testing.assert_array_equal(network_grid(p_img.shape, p_img.affine, None, image.orientation)
                                  .to_case(probs), np.flip(probs, (1, 2)).transpose(0, 2, 1, 3))
    # a case stored in the target orientation is used as it is; no target: as it is too
    assert network_grid(image.shape, image.affine, None, image.orientation).identity
    assert network_grid(p_img.shape, p_img.affine, None, None).identity
    # with a spacing: reoriented first, then resampled along the network's axes, and back
    t = thick(image)
    pt = permuted(t)
    g = network_grid(pt.shape, pt.affine, image.spacing, image.orientation)
    assert g.reoriented == t.shape and g.shape == (t.shape[0], t.shape[1], 3 * t.shape[2])
    x = g.to_network(pt.array.astype(np.float32))
    np.testing.assert_allclose(x, to_network_grid(t.array.astype(np.float32), t.spacing, image.spacing))
    assert g.to_case(x).shape == pt.shape


def test_median_spacing_is_taken_along_the_networks_axes(tmp_path, case):
    """Five cases, two thick along their last axis and two of the thin ones stored with axes swapped: the median
    in each case's own axis order mixes axes; in the network's orientation it is the thin cases' spacing."""
    from medal.config import DataConfig

    root = tmp_path / "ds"
    cases = load_dataset(sample_dataset()).cases[:5]
    for i, c in enumerate(cases):
        v = load_volume(c.image)
        aff = v.affine.copy()
        aff[:3, 0] *= 2.0  # 2 mm along the first axis, 1 mm otherwise
        v = Volume(v.array, aff)
        if i < 3:
            v = permuted(v)
        save_volume(v, root / "imagesTr" / f"{c.case_id}.nii.gz")
    ds = load_dataset(root)
    own = resolve_spacing(DataConfig(spacing="median", orientation=None), ds)
    assert own[1] == pytest.approx(2.0) and own[0] == pytest.approx(1.0)  # 3 of 5 stored swapped
    ras = resolve_spacing(DataConfig(spacing="median", orientation=load_volume(cases[0].image).orientation), ds)
    assert ras == pytest.approx((2.0, 1.0, 1.0))


def test_a_run_over_mixed_storage_orders_says_so_while_orientation_is_null(tmp_path):
    from medal.config import DataConfig
    from medal.data.resample import mixed_orientation_note, storage_orders

    root = tmp_path / "ds"
    for i, c in enumerate(load_dataset(sample_dataset()).cases[:3]):
        v = load_volume(c.image)
        save_volume(permuted(v) if i == 0 else v, root / "imagesTr" / f"{c.case_id}.nii.gz")
    ds = load_dataset(root)
    orders = storage_orders(ds)
    assert sorted(orders.values()) == [1, 2] and "RAS" in orders
    note = mixed_orientation_note(DataConfig(orientation=None), ds)
    assert note.startswith("NOTE: the cases are stored in 2 x RAS, 1 x ") and "data.orientation: RAS" in note
    assert mixed_orientation_note(DataConfig(orientation="RAS"), ds) is None
    assert DataConfig().orientation == "RAS"  # the default: nothing to say
    from medal.data import check_dataset

    notes = [x for x in check_dataset(root).summary().splitlines() if "NOTE" in x]
    assert len(notes) == 1 and "stored in 2 axis orders: with data.orientation: RAS (the default)" in notes[0]
    assert mixed_orientation_note(DataConfig(orientation=None), load_dataset(sample_dataset())) is None


def test_a_dataset_json_naming_missing_images_says_which_and_not_that_they_are_truncated(tmp_path):
    """A dataset.json whose ``training`` list names files that are not there (copied from another dataset) once
    stopped ``medal round`` with "no readable 3D image", the files' header read calling each missing .nii.gz
    truncated."""
    import json
    import shutil

    from medal.data import DatasetError
    from medal.data.io import volume_affine

    root = tmp_path / "ds"
    shutil.copytree(sample_dataset() / "imagesTr", root / "imagesTr")
    meta = json.loads((sample_dataset() / "dataset.json").read_text())
    meta["training"] = [{"image": "./imagesTr/other_001.nii.gz", "label": "./labelsTr/other_001.nii.gz"}]
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"other_001.nii.gz: file not found$"):
        volume_affine(root / "imagesTr" / "other_001.nii.gz")
    ds = load_dataset(root)
    with pytest.raises(DatasetError) as err:
        resolve_spacing(DataConfig(spacing="median"), ds)
    assert str(err.value) == (f"{root}: no readable image among 1 case(s), the first: {root}/imagesTr/other_001.nii.gz:"
                              f" file not found; run `medal dataset check {root}`")
