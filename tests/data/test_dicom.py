"""DICOM series -> dataset folder (medal.data.dicom), on real sample cases written as DICOM series by GDCM."""

import gzip
import json
import locale

import numpy as np
import pytest
from nibabel.orientations import apply_orientation, inv_ornt_aff

from medal.data import DatasetError, Volume, load_dataset, load_volume, sample_dataset
from medal.data.dicom import from_dicom, plan
from medal.data.normalize import scheme_for_channel
from medal.data.validate import label_on_grid
from medal.testing import write_dicom_series

LPS = np.diag([-1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def cases():
    """Three real cases, rounded to integers (DICOM stores integers), the second stored sagittal-first and
    flipped (another slice direction than the first)."""
    out = []
    for i, c in enumerate(load_dataset(sample_dataset()).cases[:3]):
        v = load_volume(c.image)
        v = Volume(np.round(v.array).astype(np.int16), v.affine)
        if i == 1:
            ornt = np.array([[2, -1], [0, 1], [1, -1]])
            v = Volume(np.ascontiguousarray(apply_orientation(v.array, ornt)), v.affine @ inv_ornt_aff(ornt, v.shape))
        out.append(v)
    return out


def same_voxels(path, volume) -> bool:
    """Whether the NIfTI at ``path`` holds ``volume``'s voxels at the same places in the world (any axis order)."""
    got = load_volume(path)
    placed, _ = label_on_grid(got, volume.shape, volume.affine, str(path))
    return got.array.dtype == np.int16 and np.array_equal(placed.array, volume.array)


def lps_positions(volume, shear=(0.0, 0.0, 0.0)):
    """ImagePositionPatient of each slice along the third axis, each moved ``k * shear`` mm (LPS)."""
    a = volume.affine
    return [LPS @ (a[:3, :3] @ (0, 0, k) + a[:3, 3]) + k * np.asarray(shear) for k in range(volume.shape[2])]


def test_series_in_nested_folders_become_cases_with_their_voxels_and_geometry(tmp_path, cases):
    encoding = locale.getpreferredencoding(False)
    src = tmp_path / "export"
    packed = write_dicom_series(src / "patient1" / "study" / "t1", cases[0], description="T1 MPRAGE",
                                compressor="JPEG2000")  # compressed pixel data, as PACS exports often are
    plain = write_dicom_series(src / "patient2", cases[1], description="T1 sag", series_number=3)
    assert packed[0].stat().st_size < plain[0].stat().st_size
    write_dicom_series(src / "patient2", Volume(cases[1].array[:, :, :2], cases[1].affine), description="localizer",
                       series_number=1, shuffle=None)
    (src / "README.txt").write_text("export notes, not DICOM")
    res = from_dicom(src, tmp_path / "ds", labels=["background", "Anterior", "Posterior"], log=lambda s: None)
    assert sorted(res["written"]) == ["patient1_study_t1", "patient2_s3"]
    assert list(res["skipped"].values()) == ["patient2 (series 1 'localizer'): only 2 image(s), not a volume "
                                             "(a localizer or a 2D image?)"]
    out = tmp_path / "ds"
    assert same_voxels(out / "imagesTr" / "patient1_study_t1_0000.nii.gz", cases[0])
    assert same_voxels(out / "imagesTr" / "patient2_s3_0000.nii.gz", cases[1])  # stored as the scanner sliced it
    ds = load_dataset(out)
    assert [c.case_id for c in ds.cases] == ["patient1_study_t1", "patient2_s3"]
    assert ds.channel_names == {0: "MRI"} and ds.label_map.names == {0: "background", 1: "Anterior", 2: "Posterior"}
    sources = json.loads((out / "dicom_sources.json").read_text())["cases"]
    assert sources["patient2_s3"]["folder"] == "patient2" and sources["patient2_s3"]["description"] == "T1 sag"
    assert sources["patient1_study_t1"]["images"] == cases[0].shape[2]
    # GDCM sets the C locale when it writes (ASCII text I/O for the rest of the process): put back each time
    assert locale.getpreferredencoding(False) == encoding
    # no patient identifier leaves the export: not in the images, dataset.json or the sources file
    for f in out.rglob("*"):
        if f.is_file():
            data = gzip.decompress(f.read_bytes()) if f.name.endswith(".gz") else f.read_bytes()
            assert b"MEDAL^TEST" not in data and b"MEDALTEST01" not in data, f


def test_ct_in_hounsfield_units_gets_the_ct_window(tmp_path, cases):
    hu = cases[0].with_array((cases[0].array - 1024).astype(np.int16))  # air at -1024 as CT stores it
    write_dicom_series(tmp_path / "ct", hu, modality="CT", description="abdomen", rescale_intercept=-1024)
    res = from_dicom(tmp_path / "ct", tmp_path / "ds", log=lambda s: None)
    (name,) = res["written"]
    assert same_voxels(tmp_path / "ds" / "imagesTr" / f"{name}_0000.nii.gz", hu)
    ds = load_dataset(tmp_path / "ds")
    assert ds.channel_names == {0: "CT"} and scheme_for_channel("CT") == "ct"


def test_series_that_are_not_one_even_volume_are_skipped_with_the_reason(tmp_path, cases):
    src = tmp_path / "export"
    write_dicom_series(src / "good", cases[0])
    files = write_dicom_series(src / "gap", cases[2], shuffle=None)
    files[len(files) // 2].unlink()  # a slice lost in transfer
    write_dicom_series(src / "tilt", cases[2], positions=lps_positions(cases[2], shear=(0.0, 0.4, 0.0)))
    write_dicom_series(src / "echoes", cases[2], series_uid="2.25.1234", series_number=1)
    write_dicom_series(src / "echoes", cases[2], series_uid="2.25.1234", series_number=2)
    write_dicom_series(src / "scout", cases[2], image_type="ORIGINAL\\PRIMARY\\LOCALIZER")
    write_dicom_series(src / "seg", cases[2], modality="SEG")
    logged = []
    res = from_dicom(src, tmp_path / "ds", log=logged.append)
    assert res["written"] == ["good"]
    why = {k.split(" ")[0]: v for k, v in res["skipped"].items()}
    assert set(why) == {"gap", "tilt", "echoes", "scout", "seg"}
    assert "slices not evenly spaced (1 to 2 mm apart: a missing slice?)" in why["gap"]
    assert "slices sheared in their plane (up to 0.4 mm per slice: CT gantry tilt?)" in why["tilt"]
    n = 2 * cases[2].shape[2]
    assert f"{n} images at {n // 2} positions: several volumes in one series" in why["echoes"]
    assert "a localizer (ImageType ORIGINAL\\PRIMARY\\LOCALIZER)" in why["scout"]
    assert "a DICOM SEG object, not an image series" in why["seg"]
    assert all("\n" not in v for v in why.values())
    assert sum(line.startswith("SKIPPED ") for line in logged) == 5


def test_filters_and_resuming_an_interrupted_conversion(tmp_path, cases):
    src = tmp_path / "export"
    write_dicom_series(src / "p1", cases[0], description="T2 axial", series_number=2)
    write_dicom_series(src / "p1", cases[2], description="T1 axial", series_number=1)
    keep, names = plan(src, series="*t2*")
    assert names == ["p1"] and keep[0].description == "T2 axial"
    with pytest.raises(DatasetError, match=r"no series matches .*found: MR 'T1 axial'; MR 'T2 axial'"):
        plan(src, modality="CT")
    first = from_dicom(src, tmp_path / "ds", series="*T2*", log=lambda s: None)
    assert first["written"] == ["p1"]
    before = (tmp_path / "ds" / "imagesTr" / "p1_0000.nii.gz").stat().st_mtime_ns
    # a second run over every series: the converted one is kept (not read again), the new one gets its own id
    again = from_dicom(src, tmp_path / "ds", log=lambda s: None)
    assert again["kept"] == ["p1"] and again["written"] == ["p1_s1"]
    assert (tmp_path / "ds" / "imagesTr" / "p1_0000.nii.gz").stat().st_mtime_ns == before
    assert same_voxels(tmp_path / "ds" / "imagesTr" / "p1_s1_0000.nii.gz", cases[2])
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["numTraining"] == 2
    # a folder holding anything but an earlier conversion is never written into
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="exists, is not empty and holds no dicom_sources.json"):
        from_dicom(src, other)
    with pytest.raises(DatasetError, match="inside the DICOM folder"):
        from_dicom(src, src / "out")
