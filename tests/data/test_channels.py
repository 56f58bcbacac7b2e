"""Multi-channel cases (medal/data/channels.py): nnU-Net's _0000/_0001 files and the Decathlon's 4D images,
built from real sample cases (channel 1 = the scan inverted, smoothed and rescaled: medal.testing.second_channel)."""

import json

import numpy as np
import pytest

from medal.config import DataConfig
from medal.data import DatasetError, Volume, check_dataset, load_dataset, load_volume, sample_dataset, save_volume
from medal.data.channels import channel_files, network_input, split_channels
from medal.data.normalize import normalize_intensity
from medal.testing import second_channel, write_multichannel_dataset


@pytest.fixture(scope="module")
def source():
    return load_dataset(sample_dataset()).cases[:3]


@pytest.fixture
def split(tmp_path, source):
    return write_multichannel_dataset(tmp_path / "split", source)


def test_a_cases_channel_files_are_one_case_whose_image_is_its_0000_file(split, source):
    ds = load_dataset(split)
    assert [c.case_id for c in ds.cases] == [c.case_id for c in source]
    for c in ds.cases:
        assert c.image.name == f"{c.case_id}_0000.nii.gz" and c.label.name == f"{c.case_id}.nii.gz"
        assert [f.name for f in channel_files(c.image)] == [f"{c.case_id}_0000.nii.gz", f"{c.case_id}_0001.nii.gz"]
    # one channel: the file alone, as before
    assert channel_files(source[0].image) == (source[0].image,)
    # a gap in the numbers is one error naming the case
    cid = ds.cases[0].case_id
    (split / "imagesTr" / f"{cid}_0001.nii.gz").rename(split / "imagesTr" / f"{cid}_0002.nii.gz")
    with pytest.raises(DatasetError, match=rf"case '{cid}' has channel files {cid}_0000.nii.gz, {cid}_0002.nii.gz: "
                                           "a case's channels are numbered _0000, _0001, ... without a gap"):
        load_dataset(split)


def test_the_network_sees_every_channel_normalised_on_its_own(split, source):
    cfg = DataConfig()
    case = load_dataset(split).cases[0]
    image = load_volume(case.image)
    x = network_input(image, cfg)
    raw = load_volume(source[0].image).array
    assert x.shape == (2, *image.shape) and x.dtype == np.float32
    want0 = normalize_intensity(raw.astype(np.float32), method="zscore", clip_percentiles=cfg.clip_percentiles)
    want1 = normalize_intensity(second_channel(raw), method="zscore", clip_percentiles=cfg.clip_percentiles)
    np.testing.assert_allclose(x[0], want0, atol=1e-5)
    np.testing.assert_allclose(x[1], want1, atol=1e-4)
    assert abs(float(x[1].mean())) < 0.05 and abs(float(x[1].std()) - 1) < 0.05  # its own scale, not channel 0's
    assert np.corrcoef(x[0].ravel(), x[1].ravel())[0, 1] < -0.5  # and its own contrast
    # one channel: exactly the normalised image, as before
    single = load_volume(source[0].image)
    np.testing.assert_array_equal(network_input(single, cfg), normalize_intensity(
        single.array, method="zscore", clip_percentiles=cfg.clip_percentiles))
    # the cache hands out the same arrays
    from medal.data import VolumeCache

    np.testing.assert_array_equal(network_input(image, cfg, path=case.image, cache=VolumeCache()), x)


def test_a_channel_off_the_grid_or_with_nan_is_one_error_naming_its_file(split):
    ds = load_dataset(split)
    case = ds.cases[0]
    second = split / "imagesTr" / f"{case.case_id}_0001.nii.gz"
    v = load_volume(second)
    moved = v.affine.copy()
    moved[0, 3] += 2.0
    save_volume(Volume(v.array, moved), second)
    with pytest.raises(DatasetError, match=rf"imagesTr/{case.case_id}_0001.nii.gz: channel affine differs"):
        network_input(load_volume(case.image), DataConfig(), name=ds.relative)
    save_volume(Volume(v.array[:-1], v.affine), second)
    with pytest.raises(DatasetError, match=r"_0001.nii.gz: channel shape .* differs from the case's _0000 image"):
        network_input(load_volume(case.image), DataConfig())
    bad = v.array.copy()
    bad[0, 0, 0] = np.nan
    save_volume(Volume(bad, v.affine), second)
    with pytest.raises(DatasetError, match=r"_0001.nii.gz.*NaN"):
        network_input(load_volume(case.image), DataConfig())


def test_dataset_check_counts_channels_and_reports_a_case_without_them(split):
    rep = check_dataset(split)
    assert rep.ok, rep.summary()
    assert "channels: 2 per case (files _0000 ... _0001)" in rep.summary()
    assert {c.channels for c in rep.cases} == {2}
    ds = load_dataset(split)
    (split / "imagesTr" / f"{ds.cases[1].case_id}_0001.nii.gz").unlink()
    v = load_volume(ds.cases[2].image)
    save_volume(Volume(v.array[:, :, :-2], v.affine), split / "imagesTr" / f"{ds.cases[2].case_id}_0001.nii.gz")
    rep = check_dataset(split)
    assert not rep.ok
    assert any("different numbers of channel files" in p and f"1 channel(s) in 1 case(s) (e.g. {ds.cases[1].case_id})"
               in p for p in rep.problems), rep.problems
    probs = [p for c in rep.cases if c.case_id == ds.cases[2].case_id for p in c.problems]
    assert len(probs) == 1 and "_0001.nii.gz: channel shape" in probs[0]


def test_split_channels_turns_4d_files_into_one_file_per_channel(tmp_path, source, split):
    src = write_multichannel_dataset(tmp_path / "msd", source, layout="4d")
    (src / "LICENSE").write_text("CC-BY-SA 4.0\n")
    with pytest.raises(DatasetError, match="expected a 3D volume, got 4D"):
        load_volume(load_dataset(src).cases[0].image)
    # one case's file cut short: skipped and reported, the others written
    bad = src / "imagesTr" / f"{source[2].case_id}.nii.gz"
    bad.write_bytes(bad.read_bytes()[:200])
    out = split_channels(src, tmp_path / "out", log=lambda *a: None)
    assert out["written"] == [c.case_id for c in source[:2]]
    assert list(out["skipped"]) == [source[2].case_id] and "imagesTr/" in out["skipped"][source[2].case_id]
    ds = load_dataset(tmp_path / "out")
    assert [c.case_id for c in ds.cases] == out["written"]
    for c in ds.cases:  # the same arrays as the split layout written directly
        for k in range(2):
            a = load_volume(tmp_path / "out" / "imagesTr" / f"{c.case_id}_{k:04d}.nii.gz")
            b = load_volume(split / "imagesTr" / f"{c.case_id}_{k:04d}.nii.gz")
            np.testing.assert_array_equal(a.array, b.array)
            np.testing.assert_allclose(a.affine, b.affine)
        np.testing.assert_array_equal(load_volume(c.label).array, load_volume(split / "labelsTr" / c.label.name).array)
    meta = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert "training" not in meta and meta["channel_names"] == {"0": "MRI", "1": "MRI inverted (derived)"}
    assert meta["numTraining"] == 2 and meta["labels"]["1"] == "Anterior"
    assert (tmp_path / "out" / "LICENSE").read_text() == "CC-BY-SA 4.0\n"
    with pytest.raises(DatasetError, match="exists and is not empty"):
        split_channels(src, tmp_path / "out")


def test_training_reads_every_channel_and_refuses_mixed_counts_or_a_model_of_other_channels(split, tmp_path):
    import torch

    from medal.config import ModelConfig, TrainingConfig
    from medal.training import TrainItem, prepare_items, train_model

    ds = load_dataset(split)
    items = prepare_items(ds, DataConfig())
    assert [i.image.shape[0] for i in items] == [2, 2, 2] and items[0].image.shape[1:] == items[0].label.shape
    mcfg = ModelConfig(channels=(8, 16), strides=(2,), num_res_units=1, head_channels=8)
    tcfg = TrainingConfig(patch_size=(16, 16, 16), batch_size=2, max_epochs=1, iterations_per_epoch=2, num_threads=1)
    res = train_model(items, [], n_classes=3, model_cfg=mcfg, train_cfg=tcfg, progress=False,
                      checkpoint=tmp_path / "two.pt")
    assert torch.load(tmp_path / "two.pt", weights_only=True)["in_channels"] == 2 and res.net.in_channels == 2
    one = TrainItem("one", items[0].image[0], items[0].label)
    with pytest.raises(ValueError, match=r"different numbers of input channels: 1 \(one, \.\.\.\), 2 \("):
        train_model(items + [one], [], n_classes=3, model_cfg=mcfg, train_cfg=tcfg, progress=False)
    with pytest.raises(ValueError, match=r"two\.pt: the model takes 2 input channel\(s\), the cases have 1"):
        train_model([one], [], n_classes=3, model_cfg=mcfg, train_cfg=tcfg, progress=False, init=tmp_path / "two.pt")


def test_each_channel_goes_to_the_network_spacing_as_a_single_image_would(split):
    from medal.data.resample import to_network_grid

    case = load_dataset(split).cases[0]
    x = network_input(load_volume(case.image), DataConfig())
    got = to_network_grid(x, (1.0, 1.0, 3.0), (1.0, 1.0, 1.0))
    assert got.shape == (2, x.shape[1], x.shape[2], 3 * x.shape[3])
    for k in range(2):
        np.testing.assert_array_equal(got[k], to_network_grid(x[k], (1.0, 1.0, 3.0), (1.0, 1.0, 1.0)))
