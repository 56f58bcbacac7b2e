"""Per-channel normalisation (medal/data/intensity.py): `auto` reads dataset.json's channel names, a CT channel gets
one dataset-wide window from the training labels' foreground, kept in the checkpoint. Built from real sample
cases; the CT dataset is the sample's scans declared CT (what matters is the window, not what made the voxels)."""

import json

import numpy as np
import pytest
import torch

from medal.config import DataConfig
from medal.data import UNLABELED, load_dataset, load_volume, sample_dataset, save_volume
from medal.data.channels import network_input
from medal.data.intensity import channel_schemes, checkpoint_intensity, training_intensity
from medal.data.normalize import ct_normalize, normalize_intensity, scheme_for_channel


def _ct_dataset(root, cases, channel_names=None):
    """``cases`` copied as a Decathlon folder whose dataset.json calls the channel CT; the second case's
    intensities shifted by +200 so no two cases share a range (per-volume statistics would hide that)."""
    from medal.testing import copy_cases

    return load_dataset(copy_cases(root, cases, meta={"modality": channel_names or {"0": "CT"}},
                                   image_of=lambda i, v: v.with_array(v.array.astype(np.float32) + (200.0 if i == 1 else 0.0))))


@pytest.fixture(scope="module")
def cases():
    return load_dataset(sample_dataset()).cases[:3]


def test_auto_follows_nnunets_channel_names_and_leaves_the_mri_sample_as_it_was(cases):
    assert [scheme_for_channel(n) for n in ("CT", "ct", "noNorm", "rescale_0_1", "MRI", "T2", None)] == [
        "ct", "ct", "none", "minmax", "zscore", "zscore", "zscore"]
    sample = load_dataset(sample_dataset())
    assert sample.channel_names == {0: "MRI"}
    assert channel_schemes(DataConfig(), sample, 1) == ("zscore",)
    assert channel_schemes(DataConfig(normalize="ct"), sample, 2) == ("ct", "ct")
    assert channel_schemes(DataConfig(normalize=("ct", "zscore")), sample, 2) == ("ct", "zscore")
    with pytest.raises(ValueError, match=r"data\.normalize: 2 scheme\(s\) for cases of 1 channel\(s\)"):
        channel_schemes(DataConfig(normalize=("ct", "zscore")), sample, 1)
    spec = training_intensity(DataConfig(), sample)
    assert spec == ({"scheme": "zscore"},)
    image = load_volume(cases[0].image)
    np.testing.assert_array_equal(network_input(image, DataConfig(), intensity=spec),
                                  normalize_intensity(image.array, method="zscore"))  # bit for bit
    np.testing.assert_array_equal(network_input(image, DataConfig()), normalize_intensity(image.array, method="zscore"))


def test_a_ct_channel_gets_one_window_from_the_training_foreground(tmp_path, cases):
    ds = _ct_dataset(tmp_path / "ct", cases)
    assert channel_schemes(DataConfig(), ds, 1) == ("ct",)
    from medal.data import check_dataset

    summary = check_dataset(ds.root).summary().splitlines()
    assert "  channel names: 0=CT (one window for the whole dataset) under data.normalize: auto" in summary
    assert any(x.startswith("  NOTE: channel 0 is named CT, but no case holds air") for x in summary)  # MR values
    said = []
    (spec,) = training_intensity(DataConfig(), ds, log=said.append)
    assert spec["scheme"] == "ct" and spec["source"] == "foreground" and spec["cases"] == 3
    images = [load_volume(c.image).array for c in ds.cases]
    fgs = [img[load_volume(c.label).array > 0] for img, c in zip(images, ds.cases)]
    balanced = np.mean([f.mean() for f in fgs])  # nnU-Net draws the same number of voxels from every case
    spread = np.concatenate(fgs).std()
    assert abs(spec["mean"] - balanced) < 0.05 * spread and 0.5 * spread < spec["std"] < 2 * spread
    assert min(f.min() for f in fgs) <= spec["lo"] < spec["mean"] < spec["hi"] <= max(f.max() for f in fgs)
    assert said and said[0].startswith("channel 0: CT window [") and "from the foreground of 3 training case(s)" in said[0]
    # one window for every case: the same intensity means the same input wherever it is
    xs = [network_input(load_volume(c.image), DataConfig(), intensity=(spec,)) for c in ds.cases]
    np.testing.assert_array_equal(xs[0], ct_normalize(images[0], spec))
    for img, x in zip(images[:2], xs[:2]):  # a value inside the window: the same input in both cases
        inside = (img > spec["lo"]) & (img < spec["hi"])
        np.testing.assert_allclose(x[inside], (img[inside] - spec["mean"]) / spec["std"], rtol=1e-4, atol=1e-4)
    # per-volume statistics map intensity to input differently in each case (the +200 shift moves the mean)
    slopes = [np.polyfit(img.ravel()[::50], normalize_intensity(img).ravel()[::50], 1) for img in images[:2]]
    assert not np.allclose(slopes[0], slopes[1], rtol=0.01)
    # partial labels: the window comes from what is painted (one slice of one case)
    lab_dir = tmp_path / "labels"
    truth = load_volume(ds.cases[1].label)
    part = np.full(truth.shape, UNLABELED, np.uint8)
    part[:, :, 14] = truth.array[:, :, 14]
    save_volume(truth.with_array(part), lab_dir / f"{ds.cases[1].case_id}.nii.gz")
    (one,) = training_intensity(DataConfig(), ds, labels_dir=lab_dir)
    painted = images[1][:, :, 14][truth.array[:, :, 14] > 0]
    assert one["cases"] == 1 and one["source"] == "foreground" and abs(one["mean"] - painted.mean()) < 0.05 * painted.std()
    # only background painted so far: every voxel of the painted cases stands in, and says so
    part[:, :, 14] = np.where(truth.array[:, :, 14] > 0, UNLABELED, 0)
    save_volume(truth.with_array(part), lab_dir / f"{ds.cases[1].case_id}.nii.gz")
    (bg,) = training_intensity(DataConfig(), ds, labels_dir=lab_dir)
    assert bg["source"] == "all voxels" and bg["cases"] == 1


def _paint(run, ds, case_ids, slice_k=15):
    """One painted axial slice of each of ``case_ids`` in the run's labels (the rest not annotated)."""
    from medal.loop import labels_dir

    for cid in case_ids:
        truth = load_volume(ds.case(cid).label)
        part = np.full(truth.shape, UNLABELED, np.uint8)
        part[:, :, slice_k] = truth.array[:, :, slice_k]
        save_volume(truth.with_array(part), labels_dir(run) / f"{cid}.nii.gz")


def test_a_round_keeps_its_ct_window_in_the_checkpoint_once_settled(tmp_path):
    """The window goes into the checkpoint and every scoring of it uses it (a round's scores, `medal score`). Taken
    from the first painted case only, it is provisional: the next warm-started round, with two cases painted,
    retakes it. Taken from five, it is settled: a sixth case painted does not move it."""
    from medal.config import config_from_dict
    from medal.data.intensity import SETTLED_CASES
    from medal.loop import labels_dir, run_round
    from tests.test_loop import TINY

    assert SETTLED_CASES == 5
    ds = _ct_dataset(tmp_path / "ct", load_dataset(sample_dataset()).cases[:6])
    pool = [c.case_id for c in ds.cases]
    cfg = config_from_dict(TINY)
    run = tmp_path / "run"
    _paint(run, ds, pool[:1])
    run_round(run, ds, cfg, index=0, pool=pool)
    from medal.report.run_report import write_run_report

    md = write_run_report(run, ds, cfg).read_text()
    assert "- CT window (data.normalize; clip and z-score, from the painted foreground): round_000 channel 0 [" in md
    assert "from 1 case(s) (provisional)" in md
    (first,) = checkpoint_intensity(torch.load(run / "round_000" / "model.pt", weights_only=True))
    assert first["scheme"] == "ct" and first["cases"] == 1 and first["source"] == "foreground"
    progress = json.loads((run / "round_000" / "progress.json").read_text())
    assert progress["train"]["intensity"] == [first]
    assert (run / "round_000" / "scores" / pool[2] / "prediction.nii.gz").is_file()
    _paint(run, ds, pool[1:2])
    run_round(run, ds, cfg, index=1, pool=pool, stop_after="train")
    (second,) = checkpoint_intensity(torch.load(run / "round_001" / "model.pt", weights_only=True))
    assert second["cases"] == 2 and second["mean"] != first["mean"]  # provisional: retaken
    # `medal score` on its own scores with the checkpoint's window
    from medal.cli import main

    out = tmp_path / "scored"
    assert main(["score", str(ds.root), "--checkpoint", str(run / "round_001" / "model.pt"), "--out", str(out),
                 "--cases", pool[2]]) == 0
    assert (out / "scores" / pool[2] / "prediction.nii.gz").is_file()
    # settled: five painted cases, then a sixth
    run = tmp_path / "settled"
    _paint(run, ds, pool[:5])
    run_round(run, ds, cfg, index=0, pool=pool, stop_after="train")
    (five,) = checkpoint_intensity(torch.load(run / "round_000" / "model.pt", weights_only=True))
    assert five["cases"] == 5
    _paint(run, ds, pool[5:])
    (fresh,) = training_intensity(cfg.data, ds, labels_dir=labels_dir(run), case_ids=set(pool))
    assert fresh["cases"] == 6 and fresh["mean"] != five["mean"]  # a fresh window would move ...
    run_round(run, ds, cfg, index=1, pool=pool, stop_after="train")
    assert checkpoint_intensity(torch.load(run / "round_001" / "model.pt", weights_only=True)) == (five,)  # ... it stays
    # a checkpoint from before windows were kept: each volume's own statistics, as then
    assert checkpoint_intensity({"meta": {"spacing": [1.0, 1.0, 1.0]}}) is None


def test_one_scheme_per_channel_a_ct_window_for_one_and_a_z_score_for_the_other(tmp_path, cases):
    from medal.data.channels import channel_files
    from medal.testing import write_multichannel_dataset

    ds = load_dataset(write_multichannel_dataset(tmp_path / "two", cases))
    cfg = DataConfig(normalize=("ct", "zscore"))
    ct, z = training_intensity(cfg, ds)
    assert ct["scheme"] == "ct" and ct["cases"] == 3 and z == {"scheme": "zscore"}
    case = ds.cases[0]
    image = load_volume(case.image)
    x = network_input(image, cfg, intensity=(ct, z))
    second = load_volume(channel_files(case.image)[1]).array
    np.testing.assert_array_equal(x[0], ct_normalize(image.array, ct))
    np.testing.assert_array_equal(x[1], normalize_intensity(second, method="zscore"))
    with pytest.raises(ValueError, match=r"data\.normalize: 1 scheme\(s\) for cases of 2 channel\(s\)"):
        training_intensity(DataConfig(normalize=("ct",)), ds)


def test_supervoxels_are_cut_on_the_contrast_the_network_reads(tmp_path, cases):
    """A round's supervoxels follow the model's CT window (soft-tissue contrast spread out), not each volume's
    air-to-bone z-score; with a z-scored channel (the MRI sample) they are what they were."""
    import dataclasses

    from medal.config import MedalConfig
    from medal.costs import CostModel
    from medal.selection.api import candidate_table

    ds = _ct_dataset(tmp_path / "ct", cases)
    scores = tmp_path / "scores"
    cid = ds.cases[0].case_id
    image = load_volume(ds.cases[0].image)
    (scores / cid).mkdir(parents=True)
    save_volume(image.with_array(np.zeros(image.shape, np.uint8)), scores / cid / "prediction.nii.gz")
    save_volume(image.with_array(np.ones(image.shape, np.float32)), scores / cid / "entropy.nii.gz")
    regions = dataclasses.replace(MedalConfig().regions, kind="supervoxel", value="entropy", measure="entropy")
    (spec,) = training_intensity(DataConfig(), ds)

    def units(intensity):
        _, per_case, skipped = candidate_table(ds, scores, regions_cfg=regions, cost_model=CostModel.default(3),
                                               data_cfg=DataConfig(), intensity=intensity)
        assert not skipped
        return per_case[cid].units

    own = units(None)
    np.testing.assert_array_equal(units(({"scheme": "zscore"},)), own)
    windowed = units((spec,))
    assert windowed.max() > 1 and not np.array_equal(windowed, own)


def test_check_warns_of_raw_scanner_values_beside_hounsfield_units(tmp_path, cases):
    """Two cases in Hounsfield units (air near -1000) and one as raw scanner values (HU + 1024, nothing below 0, a
    converter that skipped the rescale intercept): one window cannot fit both, and the check names the raw case
    (a warning: exit 0)."""
    from medal.data import check_dataset

    ds = _ct_dataset(tmp_path / "ct", cases)
    for c in ds.cases[:2]:
        img = load_volume(c.image)
        save_volume(img.with_array(img.array.astype(np.float32) - 1024.0), c.image)
    rep = check_dataset(ds.root)
    assert rep.ok and not rep.notes
    assert [len(c.warnings) for c in rep.cases] == [0, 0, 1]
    assert rep.cases[2].warnings[0].startswith(f"imagesTr/{ds.cases[2].case_id}.nii.gz: no intensity below 0 (min 0) "
                                               "while 2 other case(s) reach air below -500 HU")
