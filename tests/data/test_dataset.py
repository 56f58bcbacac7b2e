import json

import nibabel as nib
import numpy as np
import pytest

from medal.data import DatasetError, Volume, load_case, load_dataset, sample_dataset, save_volume
from medal.data.labels import UNLABELED, annotated_mask, empty_partial_labels, parse_label_names


def test_sample_dataset_discovery():
    ds = load_dataset(sample_dataset())
    assert ds.layout == "msd"
    assert len(ds) == 20 and len(ds.labelled) == 20
    assert ds.label_names == {0: "background", 1: "Anterior", 2: "Posterior"}
    case = ds.case("hippocampus_004")
    assert case.image.name == case.label.name == "hippocampus_004.nii.gz"
    assert (sample_dataset() / "LICENSE").read_text().startswith("Attribution-ShareAlike 4.0")
    assert "Medical Segmentation Decathlon" in (sample_dataset() / "README.md").read_text()


def test_nnunet_layout_without_training_list(tmp_path):
    vol = Volume(np.zeros((4, 5, 6), np.float32), np.eye(4))
    lab = Volume(np.zeros((4, 5, 6), np.uint8), np.eye(4))
    for cid in ("a", "b"):
        save_volume(vol, tmp_path / "imagesTr" / f"{cid}_0000.nii.gz")
    save_volume(lab, tmp_path / "labelsTr" / "a.nii.gz")
    save_volume(vol, tmp_path / "imagesTs" / "c_0000.nii.gz")
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "organ": 1}}))
    ds = load_dataset(tmp_path)
    assert [(c.case_id, c.label is not None, c.split) for c in ds] == [
        ("a", True, "train"), ("b", False, "train"), ("c", False, "test")]
    assert ds.label_names == {0: "background", 1: "organ"}


def test_multi_channel_nnunet_cases_read_as_one_case_each_and_a_folder_of_one_channel_too(tmp_path):
    """nnU-Net v2 writes one file per channel (case_0000, case_0001): one case each, its image the _0000
    file, its channels found beside it (not 'case id appears twice'); a folder of links to one channel reads
    as one-channel cases."""
    from medal.data.channels import channel_files

    vol = Volume(np.zeros((4, 5, 6), np.float32), np.eye(4))
    raw = tmp_path / "raw"
    for cid in ("a", "b"):
        for ch in ("0000", "0001"):
            save_volume(vol, raw / "imagesTr" / f"{cid}_{ch}.nii.gz")
    ds = load_dataset(raw)
    assert [(c.case_id, c.image.name) for c in ds.cases] == [("a", "a_0000.nii.gz"), ("b", "b_0000.nii.gz")]
    assert [p.name for p in channel_files(ds.cases[1].image)] == ["b_0000.nii.gz", "b_0001.nii.gz"]
    one = tmp_path / "t1"
    (one / "imagesTr").mkdir(parents=True)
    for cid in ("a", "b"):
        (one / "imagesTr" / f"{cid}_0000.nii.gz").symlink_to(raw / "imagesTr" / f"{cid}_0000.nii.gz")
    assert [c.case_id for c in load_dataset(one).cases] == ["a", "b"]
    assert len(channel_files(load_dataset(one).cases[0].image)) == 1
    save_volume(vol, raw / "imagesTr" / "a.nii.gz")  # not channels: the plain message
    with pytest.raises(DatasetError, match=r"case id 'a' appears twice"):
        load_dataset(raw / "imagesTr")


def test_a_folder_of_dicom_slices_says_to_convert_them(tmp_path):
    """DICOM is not read: a folder of real DICOM slices (written by SimpleITK from a real case) gets an
    error that names the series and how to convert it, not only 'no images found'."""
    import SimpleITK as sitk

    from medal.data import load_volume

    arr = load_volume(sample_dataset() / "imagesTr" / "hippocampus_004.nii.gz").array
    series = tmp_path / "patient" / "series_1"
    series.mkdir(parents=True)
    from medal.data.dicom import keep_locale

    for k in range(3):
        sl = sitk.GetImageFromArray(np.ascontiguousarray(arr[:, :, k].astype(np.int16)))
        with keep_locale():  # GDCM's writer leaves the C locale set (ASCII text I/O for later tests)
            sitk.WriteImage(sl, str(series / f"IM{k:04d}.dcm"))
    assert sitk.ReadImage(str(series / "IM0000.dcm")).GetSize() == (arr.shape[1], arr.shape[0], 1)
    for root, where in ((tmp_path / "patient", str(series)), (series, "the folder itself")):
        with pytest.raises(DatasetError, match="empty dataset") as err:
            load_dataset(root)
        assert (f"DICOM files found (e.g. in {where}): convert the series into a dataset folder first: "
                f"`medal dataset from-dicom {root} NEW_FOLDER`") in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty dataset") as err:
        load_dataset(tmp_path / "empty")
    assert "DICOM" not in str(err.value)


def test_plain_folder_with_labels_and_override(tmp_path):
    vol = Volume(np.zeros((4, 5, 6), np.float32), np.eye(4))
    save_volume(vol, tmp_path / "scans" / "p1.nrrd")
    save_volume(vol, tmp_path / "scans" / "p2.nii.gz")
    save_volume(Volume(np.zeros((4, 5, 6), np.uint8), np.eye(4)), tmp_path / "scans" / "labels" / "p2.nii.gz")
    ds = load_dataset(tmp_path / "scans")
    assert ds.layout == "plain"
    assert {c.case_id: c.label is not None for c in ds} == {"p1": False, "p2": True}
    save_volume(Volume(np.zeros((4, 5, 6), np.uint8), np.eye(4)), tmp_path / "partial" / "p1.nii.gz")
    ds2 = load_dataset(tmp_path / "scans", labels_dir=tmp_path / "partial")
    assert {c.case_id: c.label is not None for c in ds2} == {"p1": True, "p2": False}


def test_empty_and_missing_dataset(tmp_path):
    with pytest.raises(DatasetError, match="empty dataset: no images found"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="dataset folder not found"):
        load_dataset(tmp_path / "nope")


def test_malformed_dataset_json(tmp_path):
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"dataset\.json: not valid JSON"):
        load_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"0": "bg"}, "training": [{"image": "../../etc/passwd"}]}))
    with pytest.raises(DatasetError, match=r"training\[0\]: path '../../etc/passwd' escapes the dataset folder"):
        load_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": {"bg": "zero"}}))
    with pytest.raises(DatasetError, match="neither"):
        load_dataset(tmp_path)


def test_load_case_validates(phantom_dataset):
    ds = load_dataset(phantom_dataset)
    image, label = load_case(ds.cases[0], ds)
    assert image.shape == label.shape == (24, 28, 20)
    assert set(np.unique(label.array)) == {0, 1, 2}
    # corrupt the label grid and the loader raises the same message as the check
    bad = np.pad(label.array, ((0, 1), (0, 0), (0, 0)))  # one slab more than the image
    save_volume(Volume(bad, label.affine), ds.cases[1].label)
    with pytest.raises(DatasetError, match=r"labelsTr/phantom_001.nii.gz: shape \(25, 28, 20\) does not match image shape \(24, 28, 20\)"):
        load_case(ds.cases[1], ds)


def test_label_conventions():
    assert parse_label_names({"0": "background", "1": "a"}) == {0: "background", 1: "a"}
    assert parse_label_names({"background": 0, "a": 1}) == {0: "background", 1: "a"}
    with pytest.raises(ValueError, match="0..254"):
        parse_label_names({"255": "oops"})
    empty = empty_partial_labels((2, 3, 4))
    assert empty.dtype == np.uint8 and np.all(empty == UNLABELED)
    empty[0, 0, 0] = 1
    assert annotated_mask(empty).sum() == 1


def test_plain_folder_with_labels_beside_their_images(tmp_path):
    """``case.nii.gz`` + ``case_seg.nii.gz`` in one folder (real sample cases): the masks are the cases' labels, not
    more images; a mask with no image is an orphan; a second label in labels/ is an error; --labels wins."""
    import shutil

    src = load_dataset(sample_dataset()).cases[:3]
    root = tmp_path / "flat"
    root.mkdir()
    for c, suffix in zip(src, ("_seg", "-mask", "_GT")):
        shutil.copy(c.image, root / c.image.name)
        shutil.copy(c.label, root / c.image.name.replace(".nii.gz", f"{suffix}.nii.gz"))
    shutil.copy(src[0].label, root / "lost_seg.nii.gz")
    ds = load_dataset(root)
    assert [c.case_id for c in ds.cases] == [c.case_id for c in src]
    assert [c.label.name for c in ds.cases] == [c.image.name.replace(".nii.gz", f"{s}.nii.gz")
                                                for c, s in zip(src, ("_seg", "-mask", "_GT"))]
    assert [p.name for p in ds.orphan_labels] == ["lost_seg.nii.gz"]
    (root / "labels").mkdir()
    shutil.copy(src[1].label, root / "labels" / src[1].label.name)
    with pytest.raises(DatasetError, match=f"case '{src[1].case_id}' has two label files"):
        load_dataset(root)
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(src[2].label, partial / src[2].label.name)
    ds = load_dataset(root, labels_dir=partial)  # labels given explicitly: only those
    assert [c.label is not None for c in ds.cases] == [False, False, True]
