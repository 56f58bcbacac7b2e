import gzip

import nibabel as nib
import numpy as np
import pytest

from medal.data import DatasetError, Volume, load_volume, save_volume, sample_dataset


def _oblique_affine():
    theta = 0.3
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([0.8, 1.25, 2.5])
    aff[:3, 3] = [-12.5, 40.0, 7.25]
    return aff


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32, np.float64])
def test_round_trip_keeps_data_dtype_affine(tmp_path, suffix, dtype):
    rng = np.random.default_rng(1)
    arr = (rng.random((7, 9, 5)) * 100).astype(dtype)
    vol = Volume(arr, _oblique_affine())
    first = tmp_path / f"a{suffix}"
    save_volume(vol, first)
    back = load_volume(first)
    assert back.array.dtype == arr.dtype
    np.testing.assert_array_equal(back.array, arr)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-6)
    np.testing.assert_allclose(back.spacing, (0.8, 1.25, 2.5), atol=1e-6)
    # a second round trip is exact to the bit
    second = tmp_path / f"b{suffix}"
    save_volume(back, second)
    again = load_volume(second)
    np.testing.assert_array_equal(again.array, back.array)
    np.testing.assert_array_equal(again.affine, back.affine)


def test_nifti_and_nrrd_agree_on_array_order_and_geometry(tmp_path):
    arr = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    vol = Volume(arr, _oblique_affine())
    save_volume(vol, tmp_path / "x.nii.gz")
    save_volume(vol, tmp_path / "x.nrrd")
    a, b = load_volume(tmp_path / "x.nii.gz"), load_volume(tmp_path / "x.nrrd")
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_allclose(a.affine, b.affine, atol=1e-6)
    assert a.orientation == b.orientation


def test_real_case_round_trip_keeps_header(tmp_path):
    src = sample_dataset() / "imagesTr" / "hippocampus_004.nii.gz"
    vol = load_volume(src)
    save_volume(vol, tmp_path / "copy.nii.gz")
    back = load_volume(tmp_path / "copy.nii.gz")
    np.testing.assert_array_equal(back.array, vol.array)
    np.testing.assert_array_equal(back.affine, vol.affine)
    orig, new = nib.load(src).header, nib.load(tmp_path / "copy.nii.gz").header
    for key in ("qform_code", "sform_code", "xyzt_units", "descrip", "intent_code"):
        np.testing.assert_array_equal(new[key], orig[key])
    np.testing.assert_array_equal(new["pixdim"][:4], orig["pixdim"][:4])  # [4:] are unused dims
    assert back.orientation == "RAS"


def test_with_array_keeps_affine_and_writes_new_dtype(tmp_path):
    vol = load_volume(sample_dataset() / "imagesTr" / "hippocampus_004.nii.gz")
    score = vol.with_array(np.random.default_rng(0).random(vol.shape).astype(np.float32))
    save_volume(score, tmp_path / "score.nii.gz")
    back = load_volume(tmp_path / "score.nii.gz")
    assert back.array.dtype == np.float32
    np.testing.assert_array_equal(back.array, score.array)
    np.testing.assert_array_equal(back.affine, vol.affine)
    with pytest.raises(ValueError, match="does not match volume grid"):
        vol.with_array(np.zeros((2, 2, 2)))


def test_scaled_nifti_loads_real_values(tmp_path):
    img = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.eye(4))
    img.header.set_slope_inter(0.5, 10)
    nib.save(img, tmp_path / "scaled.nii")
    vol = load_volume(tmp_path / "scaled.nii")
    assert vol.array.dtype == np.float32
    assert vol.array[0, 0, 1] == pytest.approx(10.5)


def test_truncated_gzip_is_a_clear_error(tmp_path):
    good = sample_dataset() / "imagesTr" / "hippocampus_004.nii.gz"
    bad = tmp_path / "trunc.nii.gz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DatasetError, match=r"trunc\.nii\.gz: file is truncated"):
        load_volume(bad)


def test_garbage_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "junk.nii.gz"
    bad.write_bytes(gzip.compress(b"this is not a nifti file" * 3))
    with pytest.raises(DatasetError, match=r"junk\.nii\.gz: .*(truncated|cannot be read)"):
        load_volume(bad)


def test_missing_and_unsupported(tmp_path):
    with pytest.raises(DatasetError, match=r"nothere\.nii\.gz: file not found"):
        load_volume(tmp_path / "nothere.nii.gz")
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"x\.png: unsupported file type '\.png'"):
        load_volume(tmp_path / "x.png")
    with pytest.raises(ValueError, match="single-file formats"):
        save_volume(Volume(np.zeros((2, 2, 2)), np.eye(4)), tmp_path / "x.mhd")


def test_2d_and_4d_are_rejected_but_trailing_singleton_is_dropped(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((5, 6), np.float32), np.eye(4)), tmp_path / "flat.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((5, 6, 7, 3), np.float32), np.eye(4)), tmp_path / "time.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((5, 6, 7, 1), np.float32), np.eye(4)), tmp_path / "single.nii.gz")
    with pytest.raises(DatasetError, match=r"flat\.nii\.gz: expected a 3D volume, got 2D with shape \(5, 6\)"):
        load_volume(tmp_path / "flat.nii.gz")
    with pytest.raises(DatasetError, match=r"time\.nii\.gz: expected a 3D volume, got 4D with shape \(5, 6, 7, 3\) "
                                           r"\(a multi-channel image\? `medal dataset split-channels`"):
        load_volume(tmp_path / "time.nii.gz")
    assert load_volume(tmp_path / "single.nii.gz").shape == (5, 6, 7)
    assert load_volume(tmp_path / "time.nii.gz", ndim=None).shape == (5, 6, 7, 3)


def test_save_refuses_overwrite_when_asked(tmp_path):
    vol = Volume(np.ones((3, 3, 3), np.uint8), np.eye(4))
    save_volume(vol, tmp_path / "lab.nii.gz")
    with pytest.raises(FileExistsError, match="lab.nii.gz"):
        save_volume(vol.with_array(np.zeros((3, 3, 3), np.uint8)), tmp_path / "lab.nii.gz", overwrite=False)
    assert load_volume(tmp_path / "lab.nii.gz").array.max() == 1
