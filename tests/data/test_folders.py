"""A folder per case -> dataset folder (medal.data.folders), on real sample cases laid out as KiTS, BraTS and
TotalSegmentator lay theirs out."""

import json
import shutil

import numpy as np
import pytest

from medal.data import DatasetError, load_dataset, load_volume, sample_dataset, save_volume
from medal.data.channels import n_channels
from medal.data.check import check_dataset
from medal.data.folders import from_folders, is_label_name
from medal.testing import write_case_folders


@pytest.fixture(scope="module")
def cases():
    return load_dataset(sample_dataset()).cases[:3]


def quiet(_):
    pass


def test_label_like_names():
    assert all(is_label_name(n) for n in ("segmentation.nii.gz", "BraTS2021_00000_seg.nii.gz", "mask.nrrd",
                                          "patient001_frame01_gt.nii.gz", "labels", "segmentations", "Label.mha"))
    assert not any(is_label_name(n) for n in ("imaging.nii.gz", "ct.nii.gz", "BraTS2021_00000_t1ce.nii.gz",
                                              "segment_free_t2.nii.gz", "mri.nii", "flair_seguence.nii.gz"))


def test_kits_layout_is_linked_as_it_is(tmp_path, cases):
    root = tmp_path / "kits"
    for i, c in enumerate(cases):
        (root / f"case_{i:05d}").mkdir(parents=True)
        shutil.copy(c.image, root / f"case_{i:05d}" / "imaging.nii.gz")
        if i < 2:  # the third case is not labelled yet
            shutil.copy(c.label, root / f"case_{i:05d}" / "segmentation.nii.gz")
    (root / "LICENSE").write_text("CC-BY-SA 4.0 (Medical Segmentation Decathlon)")
    res = from_folders(root, tmp_path / "ds", labels=["background", "Anterior", "Posterior"], log=quiet)
    assert res["written"] == ["case_00000", "case_00001", "case_00002"] and not res["skipped"]
    ds = load_dataset(tmp_path / "ds")
    assert [c.case_id for c in ds.cases] == res["written"]
    assert [c.label is not None for c in ds.cases] == [True, True, False]
    assert ds.cases[0].image.is_symlink() and ds.cases[0].image.resolve() == (root / "case_00000" / "imaging.nii.gz")
    assert ds.label_map.names == {0: "background", 1: "Anterior", 2: "Posterior"}
    assert (tmp_path / "ds" / "LICENSE").read_text().startswith("CC-BY-SA")
    assert check_dataset(tmp_path / "ds").ok
    # nothing is written over
    with pytest.raises(DatasetError, match="exists and is not empty"):
        from_folders(root, tmp_path / "ds")
    # dataset check on the case folders themselves says what to run
    with pytest.raises(DatasetError, match=r"its subfolders hold volumes \(e.g. case_00000/imaging.nii.gz\): a folder "
                                           r"per case\? .*`medal dataset from-folders "):
        load_dataset(root)


def test_brats_layout_needs_its_channels_named_and_then_has_them(tmp_path, cases):
    root = write_case_folders(tmp_path / "brats", cases[:2])
    res = from_folders(root, tmp_path / "guess", log=quiet)
    assert res["written"] == [] and len(res["skipped"]) == 2
    assert ("2 images (Case_000_flair.nii.gz, Case_000_t1.nii.gz): name each channel, in order, with "
            "--image PATTERN, e.g. --image '*_flair.nii.gz' --image '*_t1.nii.gz'") in res["skipped"]["Case_000"]
    res = from_folders(root, tmp_path / "ds", images=["*_flair.nii.gz", "*_t1.nii.gz"],
                       channel_names=["FLAIR", "T1"], copy=True, log=quiet)
    assert res["written"] == ["Case_000", "Case_001"] and not res["skipped"]
    ds = load_dataset(tmp_path / "ds")
    assert n_channels(ds.cases[0].image) == 2 and not ds.cases[0].image.is_symlink()  # --copy
    assert ds.channel_names == {0: "FLAIR", 1: "T1"}
    assert np.array_equal(load_volume(ds.cases[1].label).array, load_volume(cases[1].label).array)
    with pytest.raises(DatasetError, match="1 name\\(s\\) for 2 --image pattern"):
        from_folders(root, tmp_path / "x", images=["*_flair.nii.gz", "*_t1.nii.gz"], channel_names=["CT"])


def test_totalsegmentator_masks_are_merged_by_name(tmp_path, cases):
    root = tmp_path / "totalseg"
    for i, c in enumerate(cases):
        folder = root / f"s{i:04d}"
        (folder / "segmentations").mkdir(parents=True)
        shutil.copy(c.image, folder / "ct.nii.gz")
        lab = load_volume(c.label)
        for name, value in (("anterior", 1), ("posterior", 2)):
            mask = (lab.array == value).astype(np.uint8)
            if i == 2 and name == "posterior":
                mask |= lab.array == 1  # overlaps the anterior mask
            save_volume(lab.with_array(mask), folder / "segmentations" / f"{name}.nii.gz")
    res = from_folders(root, tmp_path / "ds", log=quiet)
    assert res["written"] == ["s0000", "s0001"]
    assert "s0002/segmentations/posterior.nii.gz: overlaps an earlier mask of s0002 in" in res["skipped"]["s0002"]
    ds = load_dataset(tmp_path / "ds")
    assert ds.label_map.names == {0: "background", 1: "anterior", 2: "posterior"}  # every mask name, sorted
    for got, want in zip(ds.cases, cases):
        assert np.array_equal(load_volume(got.label).array, load_volume(want.label).array)
    assert not ds.cases[0].label.is_symlink()  # merged: written, not linked
    # --labels keeps the structures named (by file name, case ignored) and says what it left out
    logged = []
    res = from_folders(root, tmp_path / "ds2", label="segmentations/*.nii.gz", labels=["background", "Posterior"],
                       log=logged.append)
    assert res["left_out"] == ["anterior"] and "NOTE: masks not in --labels left out: anterior" in logged
    assert res["written"] == ["s0000", "s0001", "s0002"]  # without the anterior mask the third case has no overlap
    lab = load_volume(load_dataset(tmp_path / "ds2").cases[0].label).array
    assert np.array_equal(lab, (load_volume(cases[0].label).array == 2).astype(np.uint8))
    assert json.loads((tmp_path / "ds2" / "dataset.json").read_text())["labels"] == {"0": "background",
                                                                                    "1": "Posterior"}


def test_acdc_layout_pairs_each_frame_with_its_gt(tmp_path, cases):
    """ACDC keeps two labelled frames per patient folder (``_frame01`` + ``_frame01_gt``, ``_frame12`` alike) beside
    an unlabelled 4D cine: each pair is a case named by its image; the cine is left out, said once."""
    root = tmp_path / "acdc"
    for p in range(2):
        folder = root / f"patient{p + 1:03d}"
        folder.mkdir(parents=True)
        for f, c in zip(("01", "12"), cases[2 * p: 2 * p + 2] if p == 0 else cases[1:3]):
            shutil.copy(c.image, folder / f"{folder.name}_frame{f}.nii.gz")
            shutil.copy(c.label, folder / f"{folder.name}_frame{f}_gt.nii.gz")
        shutil.copy(cases[0].image, folder / f"{folder.name}_4d.nii.gz")
    logged = []
    res = from_folders(root, tmp_path / "ds", log=logged.append)
    assert res["written"] == ["patient001_frame01", "patient001_frame12", "patient002_frame01", "patient002_frame12"]
    assert "NOTE: patient001: patient001_4d.nii.gz left out (no label beside it)" in logged
    ds = load_dataset(tmp_path / "ds")
    assert [c.case_id for c in ds.cases] == res["written"] and all(c.label is not None for c in ds.cases)
    assert ds.case("patient001_frame12").label.resolve() == root / "patient001" / "patient001_frame12_gt.nii.gz"


def test_a_bids_dataset_with_sessions_and_labels_in_derivatives(tmp_path, cases):
    """BIDS: sub-XX/ses-Y/anat/<name>_T1w.nii.gz, manual labels in derivatives/manual/<same path>/<name>_dseg.nii.gz
    for some sessions. --case-depth 2 makes a case per session (sub-01_ses-1), --label-root matches --label in the
    label tree's copy of its path; a session without labels there is laid out unlabelled (said once); derivatives/
    and code/ are not subjects; without --label, --label-root is one line."""
    root = tmp_path / "bids"
    (root / "code").mkdir(parents=True)
    shutil.copy(cases[0].image, root / "code" / "template.nii.gz")  # a volume, but not a subject
    (root / "dataset_description.json").write_text(json.dumps({"Name": "hippocampus", "BIDSVersion": "1.9.0"}))
    sessions = [("sub-01", "ses-1", 0, True), ("sub-02", "ses-1", 1, True), ("sub-02", "ses-2", 2, False)]
    for sub, ses, k, labelled in sessions:
        anat = root / sub / ses / "anat"
        anat.mkdir(parents=True)
        shutil.copy(cases[k].image, anat / f"{sub}_{ses}_T1w.nii.gz")
        if labelled:
            der = root / "derivatives" / "manual" / sub / ses / "anat"
            der.mkdir(parents=True)
            shutil.copy(cases[k].label, der / f"{sub}_{ses}_dseg.nii.gz")
    # medal pointed at the BIDS folder says the command, with the case depth, image pattern and label tree filled in
    with pytest.raises(DatasetError, match=r"a BIDS dataset \(dataset_description.json\): lay it out as a dataset first: "
                                           r"`medal dataset from-folders .* NEW_FOLDER --case-depth 2 --image "
                                           r"'anat/\*_T1w.nii.gz' --label-root derivatives/manual --label 'LABEL_PATTERN'`"):
        load_dataset(root)
    logged = []
    res = from_folders(root, tmp_path / "ds", images=["anat/*_T1w.nii.gz"], label="anat/*_dseg.nii.gz",
                       label_root="derivatives/manual", case_depth=2, labels=["background", "Anterior", "Posterior"],
                       log=logged.append)
    names = ["sub-01_ses-1", "sub-02_ses-1", "sub-02_ses-2"]
    assert res["written"] == names and not res["skipped"]
    assert any(line.startswith("NOTE: no file matches --label 'anat/*_dseg.nii.gz'") and line.endswith(
        "for 1 case(s), laid out unlabelled: sub-02_ses-2") for line in logged), logged
    assert "sub-01_ses-1: anat/sub-01_ses-1_T1w.nii.gz + derivatives/manual/sub-01/ses-1/anat/sub-01_ses-1_dseg.nii.gz" \
        in logged
    ds = load_dataset(tmp_path / "ds")
    assert [c.case_id for c in ds.cases] == names and [c.label is not None for c in ds.cases] == [True, True, False]
    assert ds.cases[1].label.resolve() == root / "derivatives/manual/sub-02/ses-1/anat/sub-02_ses-1_dseg.nii.gz"
    assert np.array_equal(load_volume(ds.cases[1].label).array, load_volume(cases[1].label).array)
    assert check_dataset(tmp_path / "ds").ok
    with pytest.raises(DatasetError, match="--label-root: give --label too"):
        from_folders(root, tmp_path / "ds2", label_root="derivatives/manual", case_depth=2, log=quiet)
    # one level down, each subject a case: sub-02 holds two sessions' T1w, one line
    res = from_folders(root, tmp_path / "ds3", images=["*/anat/*_T1w.nii.gz"], log=quiet)
    assert res["written"] == ["sub-01"] and "2 files match --image '*/anat/*_T1w.nii.gz'" in res["skipped"]["sub-02"]
