"""SlabNifti: a label volume saved as one gzip member per slab, re-saving only what changed."""

import gzip

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from medal.data import UNLABELED, Volume, load_volume, sample_dataset, save_volume
from medal.data.slabs import SlabNifti


@pytest.fixture
def reference():
    return load_volume(sorted((sample_dataset() / "imagesTr").glob("*.nii.gz"))[0])


def test_reads_back_like_a_normal_nifti_in_nibabel_and_simpleitk(reference, tmp_path):
    rng = np.random.default_rng(0)
    labels = np.where(rng.random(reference.shape) < 0.1, rng.integers(0, 3, reference.shape), UNLABELED)
    slab = SlabNifti(reference, labels.astype(np.uint8), slab=3)
    slab.write(tmp_path / "a.nii.gz")
    save_volume(reference.with_array(labels.astype(np.uint8)), tmp_path / "b.nii.gz")
    a, b = load_volume(tmp_path / "a.nii.gz"), load_volume(tmp_path / "b.nii.gz")
    np.testing.assert_array_equal(a.array, labels)
    assert a.array.dtype == np.uint8
    np.testing.assert_array_equal(a.affine, reference.affine)
    assert a.header["qform_code"] == b.header["qform_code"] and a.header["sform_code"] == b.header["sform_code"]
    ia, ib = sitk.ReadImage(str(tmp_path / "a.nii.gz")), sitk.ReadImage(str(tmp_path / "b.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ia), sitk.GetArrayFromImage(ib))
    assert ia.GetOrigin() == ib.GetOrigin() and ia.GetSpacing() == ib.GetSpacing()
    np.testing.assert_allclose(ia.GetDirection(), ib.GetDirection())
    # really several gzip members (one header + one per slab)
    raw = (tmp_path / "a.nii.gz").read_bytes()
    assert raw.count(b"\x1f\x8b\x08") >= 1 + -(-reference.shape[2] // 3)
    assert len(gzip.decompress(raw)) == 352 + labels.size


def test_only_changed_slabs_are_recompressed_and_assign_counts_changes(reference, tmp_path):
    slab = SlabNifti(reference, slab=2)
    slab.write(tmp_path / "l.nii.gz")
    assert not slab.dirty
    before = list(slab._members)
    k = reference.shape[2] // 2
    idx = (slice(None), slice(None), slice(k, k + 1))
    assert slab.assign(idx, np.uint8(1)) == reference.shape[0] * reference.shape[1]
    assert slab.assign(idx, np.uint8(1)) == 0  # nothing changed the second time
    changed = [i for i, m in enumerate(slab._members) if m is None]
    assert changed == [k // 2]
    slab.write(tmp_path / "l.nii.gz")
    assert [i for i, (m, o) in enumerate(zip(slab._members, before)) if m is not o] == [k // 2]
    out = load_volume(tmp_path / "l.nii.gz").array
    assert (out[:, :, k] == 1).all() and (np.delete(out, k, axis=2) == UNLABELED).all()
    # masked assignment only touches the mask
    where = np.zeros(reference.shape[:2] + (1,), bool)
    where[0, 0, 0] = True
    assert slab.assign(idx, np.uint8(2), where=where) == 1
    assert slab.array[0, 0, k] == 2 and slab.array[1, 0, k] == 1


def test_dirty_differs_reads_only_the_changed_slabs(reference):
    slab = SlabNifti(reference, np.full(reference.shape, UNLABELED, np.uint8), slab=4)
    assert slab.dirty and not slab.dirty_differs(UNLABELED)  # new: every slab changed, none annotated
    slab.to_bytes()
    slab.array[0, 0, 9] = 1  # behind its back: a clean slab is not read
    assert not slab.dirty and not slab.dirty_differs(UNLABELED)
    k = reference.shape[2] - 1
    slab.assign((slice(None), slice(None), slice(k, k + 1)), np.uint8(2), where=np.ones(reference.shape[:2] + (1,), bool))
    assert slab.dirty_differs(UNLABELED)


def test_keeps_oblique_affine_and_rejects_bad_input(tmp_path):
    aff = np.array([[0.9, 0.1, 0, 5], [-0.1, 0.9, 0, -3], [0, 0, 2.5, 7], [0, 0, 0, 1]])
    ref = Volume(np.zeros((6, 5, 4), np.int16), aff)
    s = SlabNifti(ref)
    s.write(tmp_path / "o.nii.gz")
    img = nib.load(str(tmp_path / "o.nii.gz"))
    np.testing.assert_allclose(img.affine, aff, atol=1e-6)
    with pytest.raises(ValueError, match="does not match the grid"):
        SlabNifti(ref, np.zeros((6, 5, 3)))
    with pytest.raises(ValueError, match=".nii.gz"):
        s.write(tmp_path / "o.nrrd")


def test_new_volume_is_allocated_lazily_and_writes_the_same_bytes(reference, tmp_path):
    lazy = SlabNifti(reference, slab=4)
    eager = SlabNifti(reference, np.full(reference.shape, UNLABELED, np.uint8), slab=4)
    assert lazy._array is None and lazy.shape == reference.shape[:3]
    assert lazy.dirty and not lazy.dirty_differs(UNLABELED) and lazy.dirty_differs(0)
    assert lazy.to_bytes() == eager.to_bytes()  # constant slabs compressed once, same file
    assert lazy._array is None
    region = np.ones(reference.shape[:2] + (1,), bool)
    assert lazy.assign((slice(None), slice(None), slice(0, 1)), np.uint8(UNLABELED), where=region) == 0
    assert lazy._array is None  # clearing an untouched volume allocates nothing
    # a direct write through .array (not assign) is never lost: once handed out, the array is what is saved
    lazy.array[1, 2, 3] = 7
    lazy.mark_dirty(3, 4)
    path = lazy.write(tmp_path / "l.nii.gz")
    out = load_volume(path).array
    assert out[1, 2, 3] == 7 and int((out != UNLABELED).sum()) == 1
