"""DICOM series -> dataset folder (medal.data.dicom), on real sample cases written as DICOM series by GDCM."""

import gzip
import json
import locale
import re
import shutil

import numpy as np
import pytest
from nibabel.orientations import apply_orientation, inv_ornt_aff

from medal.data import DatasetError, Volume, load_dataset, load_volume, sample_dataset
from medal.data.dicom import find_series, from_dicom, plan, read_dicom_seg, source_instances
from medal.data.normalize import scheme_for_channel
from medal.data.validate import label_on_grid
from medal.testing import write_dicom_rtstruct, write_dicom_seg, write_dicom_series

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
    write_dicom_series(src / "report", cases[2], modality="SR")
    logged = []
    res = from_dicom(src, tmp_path / "ds", log=logged.append)
    assert res["written"] == ["good"]
    why = {k.split(" ")[0]: v for k, v in res["skipped"].items()}
    assert set(why) == {"gap", "tilt", "echoes", "scout", "report"}
    assert "slices not evenly spaced (1 to 2 mm apart: a missing slice?)" in why["gap"]
    assert "slices sheared in their plane (up to 0.4 mm per slice: CT gantry tilt?)" in why["tilt"]
    n = 2 * cases[2].shape[2]
    assert f"{n} images at {n // 2} positions: several volumes in one series" in why["echoes"]
    assert "a localizer (ImageType ORIGINAL\\PRIMARY\\LOCALIZER)" in why["scout"]
    assert "a DICOM SR object, not an image series" in why["report"]
    assert all("\n" not in v for v in why.values())
    assert sum(line.startswith("SKIPPED ") for line in logged) == 5


@pytest.mark.parametrize("tag, parts", [("0018|0086", ["echo1", "echo2"]), ("0020|0100", ["t1", "t2"])])
def test_several_volumes_in_one_series_become_one_case_each(tmp_path, cases, truths, tag, parts):
    """Two echoes (or two time points) stored in one series, interleaved at the same positions, as a multi-echo or
    dynamic MR exports them: one case per EchoNumbers (TemporalPositionIdentifier) value, each with its own voxels;
    a SEG and an RTSTRUCT made on the second volume's images label that case, by the instances they name; one that
    names images of both volumes is one line; a re-run keeps both; export-seg writes on the first volume's
    instances only."""
    import pydicom

    from medal.data import save_volume
    from medal.data.dicom import export_seg

    src = tmp_path / "export"
    n = cases[0].shape[2]
    second = cases[0].with_array((cases[0].array // 2 + 7).astype(np.int16))  # another contrast, same grid
    files = [write_dicom_series(src / "mr", vol, series_uid="2.25.4242", description="ME", extra_tags={tag: str(k)},
                                first_instance=1 + (k - 1) * n, shuffle=k)
             for k, vol in ((1, cases[0]), (2, second))]
    keep, names, _ = plan(src)
    assert names == [f"mr_{p}" for p in parts] and [s.part for s in keep] == parts
    assert plan(src, part=parts[1].upper())[1] == [f"mr_{parts[1]}"]  # --part: one volume of the series
    # --channels: the volumes of one series as the channels of one case (echoes as channels)
    (first,), names_c, _ = plan(src, channels=parts)
    assert names_c == [f"mr_{parts[0]}"] and [c.part for c in first.channels] == [parts[1]]
    with pytest.raises(DatasetError, match=rf"no volume matches --part 'b0'; the kept series hold: {parts[0]}, {parts[1]}"):
        plan(src, part="b0")
    write_dicom_rtstruct(src / "rt.dcm", files[1], truths[0], [("Anterior", 1), ("Posterior", 2)])
    write_dicom_seg(src / "seg.dcm", files[1], truths[0], [("Anterior", 1)])  # one structure per SEG: merged
    write_dicom_seg(src / "both.dcm", files[0][: n // 2] + files[1][n // 2:], truths[0], [("Anterior", 1)])
    res = from_dicom(src, tmp_path / "ds", labels=["background", "Anterior", "Posterior"], log=lambda s: None)
    assert res["written"] == names and res["labelled"] == [names[1]]
    assert same_voxels(tmp_path / "ds" / "imagesTr" / f"{names[0]}_0000.nii.gz", cases[0])
    assert same_voxels(tmp_path / "ds" / "imagesTr" / f"{names[1]}_0000.nii.gz", second)
    assert same_labels(tmp_path / "ds" / "labelsTr" / f"{names[1]}.nii.gz", truths[0])
    assert not (tmp_path / "ds" / "labelsTr" / f"{names[0]}.nii.gz").exists()
    (why,) = res["skipped"].values()
    assert f"refers to series 2.25.4242, split here into {names[0]}, {names[1]}" in why and "\n" not in why
    sources = json.loads((tmp_path / "ds" / "dicom_sources.json").read_text())["cases"]
    assert [sources[c]["part"] for c in names] == parts and sources[names[0]]["images"] == n
    assert from_dicom(src, tmp_path / "ds", log=lambda s: None)["kept"] == names
    # back to DICOM: a SEG on the first volume's instances only
    labels = tmp_path / "labels"
    labels.mkdir()
    img = load_volume(tmp_path / "ds" / "imagesTr" / f"{names[0]}_0000.nii.gz")
    save_volume(img.with_array(label_on_grid(truths[0], img.shape, img.affine, "t")[0].array), labels / f"{names[0]}.nii.gz")
    assert export_seg(tmp_path / "ds", labels, tmp_path / "seg", log=lambda s: None)["written"] == [names[0]]
    seg = pydicom.dcmread(str(tmp_path / "seg" / f"{names[0]}.dcm"))
    refs = {r.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for r in s.ReferencedInstanceSequence}
    assert refs and refs <= {str(pydicom.dcmread(str(f)).SOPInstanceUID) for f in files[0]}


@pytest.mark.parametrize("vendor, creator, tag, values", [
    ("siemens", ("0019|0011", "SIEMENS MR HEADER"), "0019|110c", ("0", "1000")),  # the creator's block need not be 10
    ("ge", ("0043|0010", "GEMS_PARM_01"), "0043|1039", ("1000000000\\8\\0\\0", "1000\\8\\0\\0")),  # GE's +1e9
    ("philips", ("2001|0010", "Philips Imaging DD 001"), "2001|1003", ("0", "1000")),
    ("elsewhere", ("0019|0010", "SIEMENS MR HEADER"), "0019|100c", ("0", "1000")),  # creator renamed below
])
def test_a_diffusion_series_is_split_by_the_b_value_a_vendor_keeps_in_a_private_field(tmp_path, cases, vendor,
                                                                                    creator, tag, values):
    """b-values in Siemens, GE and Philips private fields (DiffusionBValue empty, as those scanners export) split a
    diffusion series into b0 and b1000 cases, each with its own voxels; the same element under another private
    creator is not a b-value (the series stays whole and is skipped as several volumes in one series)."""
    src = tmp_path / "export"
    n = cases[0].shape[2]
    high_b = cases[0].with_array((cases[0].array // 3 + 5).astype(np.int16))
    for k, (vol, value) in enumerate(((cases[0], values[0]), (high_b, values[1]))):
        write_dicom_series(src / "dwi", vol, series_uid="2.25.9087", description="DWI", first_instance=1 + k * n,
                           extra_tags={creator[0]: creator[1], tag: value}, shuffle=k + 1)
    if vendor == "elsewhere":
        import pydicom

        for f in (src / "dwi").iterdir():
            ds = pydicom.dcmread(str(f))
            ds[0x0019, 0x0010].value = "SOMEONE ELSE"
            ds.save_as(str(f))
    keep, names, _ = plan(src)
    if vendor == "elsewhere":
        assert len(keep) == 1 and keep[0].part == "" and names == ["dwi"]
        res = from_dicom(src, tmp_path / "ds", log=lambda s: None)
        (why,) = res["skipped"].values()
        assert res["written"] == [] and "several volumes in one series" in why, res
        return
    assert [s.part for s in keep] == ["b0", "b1000"] and names == ["dwi_b0", "dwi_b1000"]
    res = from_dicom(src, tmp_path / "ds", log=lambda s: None)
    assert res["written"] == names
    assert same_voxels(tmp_path / "ds" / "imagesTr" / "dwi_b0_0000.nii.gz", cases[0])
    assert same_voxels(tmp_path / "ds" / "imagesTr" / "dwi_b1000_0000.nii.gz", high_b)


def test_series_of_one_study_become_the_channels_of_one_case(tmp_path, cases, truths):
    """--channels '*t2*' '*adc*': per study, the T2 series is the case's image (_0000) and the ADC series its
    second channel (_0001), as it is where it lies on the T2 grid, else resampled onto it in patient coordinates
    (here: every second voxel in plane, twice the spacing: its voxels must land on the T2 voxels they were); a study
    without an ADC is one line; a SEG on the T2 labels the case, one drawn on the ADC too (merged where they agree;
    on the coarse ADC placed on the T2 grid by nearest neighbour); dataset.json names both channels and the dataset
    reads as two-channel cases; a re-run needs the same --channels."""
    from medal.data import DatasetError
    from medal.data.channels import n_channels

    src = tmp_path / "export"
    t2 = cases[0]
    adc_same = t2.with_array((t2.array // 2 + 3).astype(np.int16))
    aff = t2.affine.copy()
    aff[:3, :2] *= 2  # every second voxel along the first two axes: another grid, the same anatomy
    adc_coarse = Volume(np.ascontiguousarray(t2.array[::2, ::2, :] // 3 + 11).astype(np.int16), aff)
    study = lambda n: {"0020|000d": f"2.25.77{n}"}  # noqa: E731
    t2_files = write_dicom_series(src / "p1" / "t2", t2, description="T2 TSE AX", series_number=1, extra_tags=study(1))
    # p1's ADC says it lies in another frame of reference (the patient may have moved): converted, and said so
    adc_files = write_dicom_series(src / "p1" / "adc", adc_same, description="ep2d_diff ADC", series_number=2,
                                   extra_tags={**study(1), "0020|0052": "2.25.7799"})
    write_dicom_series(src / "p2" / "t2", t2, description="t2_tse_ax", series_number=1, extra_tags=study(2),
                       series_uid="2.25.7702")
    coarse_files = write_dicom_series(src / "p2" / "adc", adc_coarse, description="ADC map", series_number=2,
                                      extra_tags=study(2))
    truth_coarse = Volume(np.ascontiguousarray(truths[0].array[::2, ::2, :]), aff)
    write_dicom_seg(src / "p2" / "seg_adc.dcm", coarse_files, truth_coarse, [("Anterior", 1), ("Posterior", 2)])
    write_dicom_series(src / "p3" / "t2", t2, description="T2 AX", series_number=1, extra_tags=study(3),
                       series_uid="2.25.7703")
    write_dicom_seg(src / "p1" / "seg_t2.dcm", t2_files, truths[0], [("Anterior", 1), ("Posterior", 2)])
    write_dicom_seg(src / "p1" / "seg_adc.dcm", adc_files, truths[0], [("Anterior", 1)])
    skipped = {}
    keep, names, _ = plan(src, channels=["*t2*", "*adc*"], skipped=skipped)
    assert names == ["p1_t2", "p2_t2"] and [[c.description for c in s.channels] for s in keep] == [
        ["ep2d_diff ADC"], ["ADC map"]]
    (why,) = skipped.values()
    assert why.startswith("p3/t2: study 2.25.773: no series matches --channels pattern 2 '*adc*'") and "'T2 AX'" in why
    said = []
    res = from_dicom(src, tmp_path / "ds", labels=["background", "Anterior", "Posterior"],
                     channels=["*t2*", "*adc*"], log=said.append)
    assert res["written"] == names and res["labelled"] == names
    frames = [s for s in said if "another frame of reference" in s]
    assert len(frames) == 1 and frames[0].startswith("NOTE: p1_t2: channel 1 'ep2d_diff ADC'"), said
    assert list(res["skipped"]) == ["p3/t2 (study)"] and res["skipped"]["p3/t2 (study)"] == why
    assert same_labels(tmp_path / "ds" / "labelsTr" / "p1_t2.nii.gz", truths[0])
    images = tmp_path / "ds" / "imagesTr"
    assert same_voxels(images / "p1_t2_0000.nii.gz", t2) and same_voxels(images / "p1_t2_0001.nii.gz", adc_same)
    assert same_voxels(images / "p2_t2_0000.nii.gz", t2)
    first, moved = load_volume(images / "p2_t2_0000.nii.gz"), load_volume(images / "p2_t2_0001.nii.gz")
    assert moved.shape == first.shape and np.allclose(moved.affine, first.affine)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in adc_coarse.shape], indexing="ij"), -1).reshape(-1, 3)
    world = ijk @ aff[:3, :3].T + aff[:3, 3]
    at = np.linalg.solve(first.affine[:3, :3], (world - first.affine[:3, 3]).T).T
    assert np.allclose(at, np.round(at), atol=1e-3)
    at = np.round(at).astype(int)
    np.testing.assert_allclose(moved.array[tuple(at.T)], adc_coarse.array.reshape(-1), atol=1e-3)
    placed = load_volume(tmp_path / "ds" / "labelsTr" / "p2_t2.nii.gz")
    assert placed.shape == first.shape and np.array_equal(placed.array[tuple(at.T)], truth_coarse.array.reshape(-1))
    sources = json.loads((tmp_path / "ds" / "dicom_sources.json").read_text())
    assert sources["channels"] == ["*t2*", "*adc*"]
    assert [c["resampled"] for c in sources["cases"]["p1_t2"]["channels"]] == [False]
    assert sources["cases"]["p1_t2"]["channels"][0]["other_frame_of_reference"] is True
    assert "other_frame_of_reference" not in sources["cases"]["p2_t2"]["channels"][0]
    assert [c["description"] for c in sources["cases"]["p2_t2"]["channels"]] == ["ADC map"]
    assert sources["cases"]["p2_t2"]["channels"][0]["resampled"] is True
    meta = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "MRI", "1": "MRI"}
    ds = load_dataset(tmp_path / "ds")
    assert [c.case_id for c in ds.cases] == names and all(n_channels(c.image) == 2 for c in ds.cases)
    assert from_dicom(src, tmp_path / "ds", channels=["*t2*", "*adc*"], log=lambda s: None)["kept"] == names
    with pytest.raises(DatasetError, match=r"converted with --channels '\*t2\*' '\*adc\*'; give the same --channels"):
        from_dicom(src, tmp_path / "ds", log=lambda s: None)
    with pytest.raises(DatasetError, match="no study has one series per --channels pattern"):
        plan(src, channels=["*t2*", "*flair*"])


def test_filters_and_resuming_an_interrupted_conversion(tmp_path, cases):
    src = tmp_path / "export"
    write_dicom_series(src / "p1", cases[0], description="T2 axial", series_number=2)
    write_dicom_series(src / "p1", cases[2], description="T1 axial", series_number=1)
    keep, names, segs = plan(src, series="*t2*")
    assert names == ["p1"] and keep[0].description == "T2 axial" and segs == []
    with pytest.raises(DatasetError, match=r"no series matches --modality 'CT'; found: MR 'T1 axial'; MR 'T2 axial'"):
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


@pytest.fixture(scope="module")
def truths():
    """The real labels of the three cases, on the same grids as ``cases`` (the second one reordered alike)."""
    out = []
    for i, c in enumerate(load_dataset(sample_dataset()).cases[:3]):
        v = load_volume(c.label)
        if i == 1:
            ornt = np.array([[2, -1], [0, 1], [1, -1]])
            v = Volume(np.ascontiguousarray(apply_orientation(v.array, ornt)), v.affine @ inv_ornt_aff(ornt, v.shape))
        out.append(v)
    return out


def same_labels(path, truth, mapping=None) -> bool:
    """Whether the label file at ``path`` holds ``truth`` (values renamed by ``mapping``) voxel for voxel in the
    world."""
    got = load_volume(path)
    placed, _ = label_on_grid(got, truth.shape, truth.affine, str(path))
    want = truth.array if mapping is None else np.vectorize(lambda v: mapping.get(int(v), int(v)))(truth.array)
    return np.array_equal(placed.array, want)


def test_dicom_seg_objects_become_the_label_files_of_their_series(tmp_path, cases, truths):
    src = tmp_path / "export"
    files = [write_dicom_series(src / f"p{i}" / "mr", cases[i], description="T1") for i in (0, 1)]
    # a tool numbering the segments its own way (Posterior first); the second case's structures in two SEG files
    write_dicom_seg(src / "p0" / "seg" / "seg.dcm", files[0], truths[0], [("Posterior", 2), ("Anterior", 1)])
    write_dicom_seg(src / "p1" / "seg" / "ant.dcm", files[1], truths[1], [("anterior", 1)])
    write_dicom_seg(src / "p1" / "seg2" / "post.dcm", files[1], truths[1], [("Posterior", 2)])
    keep, names, segs = plan(src, series="T1")  # the filters choose image series; SEGs come along
    assert names == ["p0_mr", "p1_mr"] and len(segs) == 3
    res = from_dicom(src, tmp_path / "ds", labels=["background", "Anterior", "Posterior"], series="T1",
                     log=lambda s: None)
    assert res["written"] == ["p0_mr", "p1_mr"] and res["labelled"] == ["p0_mr", "p1_mr"] and not res["skipped"]
    out = tmp_path / "ds"
    assert same_labels(out / "labelsTr" / "p0_mr.nii.gz", truths[0])  # values by name, not by segment number
    assert same_labels(out / "labelsTr" / "p1_mr.nii.gz", truths[1])  # both files merged
    ds = load_dataset(out)
    assert [c.label is not None for c in ds.cases] == [True, True]
    assert ds.label_map.names == {0: "background", 1: "Anterior", 2: "Posterior"}
    # without --labels: the segment labels, numbered in order of first appearance
    res = from_dicom(src, tmp_path / "ds2", log=lambda s: None)
    assert json.loads((tmp_path / "ds2" / "dataset.json").read_text())["labels"] == {
        "0": "background", "1": "Posterior", "2": "Anterior"}
    assert same_labels(tmp_path / "ds2" / "labelsTr" / "p0_mr.nii.gz", truths[0], {1: 2, 2: 1})
    # a second run reads nothing again
    again = from_dicom(src, tmp_path / "ds2", log=lambda s: None)
    assert again["labelled"] == [] and again["kept"] == ["p0_mr", "p1_mr"] and not again["skipped"]


def test_a_seg_that_cannot_be_read_as_labels_leaves_the_rest_and_an_experts_file_alone(tmp_path, cases, truths):
    src = tmp_path / "export"
    files = [write_dicom_series(src / f"p{i}" / "mr", cases[i]) for i in range(3)]
    write_dicom_seg(src / "p0" / "seg" / "overlap.dcm", files[0], truths[0], [("Anterior", 1), ("Posterior", 2)],
                    overlap_with="Anterior")
    write_dicom_seg(src / "p1" / "seg" / "other.dcm", files[1], truths[1], [("Anterior", 1), ("Tumour", 2)])
    first = from_dicom(src, tmp_path / "ds", labels=["background", "Anterior", "Posterior"], log=lambda s: None)
    why = {k.split("/")[0]: v for k, v in first["skipped"].items()}
    assert set(why) == {"p0", "p1"} and first["labelled"] == []
    assert "segments 'Anterior' and 'Posterior' overlap in" in why["p0"]
    assert "segment 'Tumour' is not a label in dataset.json (0=background, 1=Anterior, 2=Posterior)" in why["p1"]
    # the expert labels the third case by hand; a SEG of that case arriving later does not replace the file
    mine = tmp_path / "ds" / "labelsTr" / "p2_mr.nii.gz"
    mine.parent.mkdir(exist_ok=True)
    mine.write_bytes(gzip.compress(b"not even a volume: must survive"))
    write_dicom_seg(src / "p2" / "seg" / "seg.dcm", files[2], truths[2], [("Anterior", 1), ("Posterior", 2)])
    again = from_dicom(src, tmp_path / "ds", log=lambda s: None)
    assert "exists and was not written from a SEG or RTSTRUCT here (an expert's labels?); left as it is" in \
        again["skipped"]["p2/seg/seg.dcm (SEG 'Segmentation')"]
    assert gzip.decompress(mine.read_bytes()) == b"not even a volume: must survive"


def test_rtstruct_contours_become_the_label_files_of_their_series(tmp_path, cases, truths):
    """Contours as a planning system stores them (polygons in patient mm per slice, a BODY ROI around everything,
    a second contour cutting a hole) fill exactly the voxels of the real labels they were drawn from; a structure
    set that names no series is placed by the images its contours name."""
    import pydicom
    from scipy.ndimage import binary_erosion

    src = tmp_path / "export"
    files = [write_dicom_series(src / f"p{i}" / "ct", cases[i], modality="CT") for i in (0, 1)]
    inner = np.argwhere(binary_erosion(truths[0].array == 1, np.ones((3, 3, 1))))
    hole = tuple(int(v) for v in inner[len(inner) // 2])
    body = np.zeros(truths[0].shape, bool)
    body[2:-2, 2:-2, :] = True
    write_dicom_rtstruct(src / "p0" / "rt" / "rs.dcm", files[0], truths[0], [("Posterior", 2), ("Anterior", 1)],
                         extra={"BODY": body}, hole=("Anterior", hole))
    rs = write_dicom_rtstruct(src / "p1" / "rs1.dcm", files[1], truths[1], [("anterior", 1), ("POSTERIOR", 2)])
    ds = pydicom.dcmread(str(rs))
    del ds.ReferencedFrameOfReferenceSequence
    ds.save_as(str(rs))
    keep, names, labels = plan(src)
    assert names == ["p0_ct", "p1_ct"] and sorted(s.modality for s in labels) == ["RTSTRUCT", "RTSTRUCT"]
    logged = []
    res = from_dicom(src, tmp_path / "ds", labels=["background", "Anterior", "Posterior"], log=logged.append)
    assert res["labelled"] == ["p0_ct", "p1_ct"] and not res["skipped"], res
    want = truths[0].array.copy()
    assert want[hole] == 1
    want[hole] = 0  # the inner contour's voxel
    assert same_labels(tmp_path / "ds" / "labelsTr" / "p0_ct.nii.gz", truths[0].with_array(want))
    assert same_labels(tmp_path / "ds" / "labelsTr" / "p1_ct.nii.gz", truths[1])
    assert "p0_ct: p0/rt/rs.dcm (RTSTRUCT 'RTSTRUCT'): ROIs left out (not named after a label): BODY" in logged
    assert "p0_ct: labels from p0/rt/rs.dcm (RTSTRUCT 'RTSTRUCT'): Anterior=1, Posterior=2" in logged
    again = from_dicom(src, tmp_path / "ds", log=lambda s: None)
    assert again["labelled"] == [] and again["kept"] == ["p0_ct", "p1_ct"] and not again["skipped"]


def test_an_rtstruct_that_cannot_be_read_as_labels_is_named_and_the_rest_converted(tmp_path, cases, truths):
    import pydicom

    src = tmp_path / "export"
    files = [write_dicom_series(src / f"p{i}" / "mr", cases[i]) for i in range(3)]
    body = np.ones(truths[0].shape, bool)
    rs = write_dicom_rtstruct(src / "p0" / "rs.dcm", files[0], truths[0], [("Anterior", 1), ("Posterior", 2)],
                              extra={"BODY": body})
    half = 0.5 * float(np.linalg.norm(cases[1].affine[:3, 2]))
    write_dicom_rtstruct(src / "p1" / "rs.dcm", files[1], truths[1], [("Anterior", 1)], shift_mm=half)
    write_dicom_rtstruct(src / "p2" / "rs.dcm", files[2], truths[2], [("GTV", 1)])
    broken = pydicom.dcmread(str(rs))
    del broken.ROIContourSequence
    broken.save_as(str(src / "p0" / "broken.dcm"))
    # without label names every ROI is numbered, and BODY holds the others' voxels
    res = from_dicom(src, tmp_path / "ds", log=lambda s: None)
    assert res["written"] == ["p0_mr", "p1_mr", "p2_mr"] and res["labelled"] == ["p2_mr"]
    why = {k.split(" ")[0]: v for k, v in res["skipped"].items()}
    assert set(why) == {"p0/rs.dcm", "p0/broken.dcm", "p1/rs.dcm"}
    assert "and 'BODY' overlap in" in why["p0/rs.dcm"] and "(keep one of them with --labels)" in why["p0/rs.dcm"]
    assert "not an RT Structure Set (no StructureSetROISequence / ROIContourSequence)" in why["p0/broken.dcm"]
    assert "ROI 'Anterior' has a contour between two slices" in why["p1/rs.dcm"]
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["labels"] == {
        "0": "background", "1": "Anterior", "2": "Posterior", "3": "BODY", "4": "GTV"}
    # with label names: BODY is left out; a structure set naming no label is one line
    res = from_dicom(src, tmp_path / "ds2", labels=["background", "Anterior", "Posterior"], log=lambda s: None)
    assert res["labelled"] == ["p0_mr"] and same_labels(tmp_path / "ds2" / "labelsTr" / "p0_mr.nii.gz", truths[0])
    assert "none of its ROIs (GTV) is named after a label (dataset.json / --labels: Anterior, Posterior)" in \
        res["skipped"]["p2/rs.dcm (RTSTRUCT 'RTSTRUCT')"]
    assert all("\n" not in v for v in res["skipped"].values())


def test_labels_and_predictions_go_back_to_dicom_as_seg_on_their_series(tmp_path, cases, truths):
    """export-seg on a from-dicom dataset: each label file becomes a SEG on its source series that a DICOM reader
    (highdicom, and from-dicom itself) reads back voxel for voxel; 255 is in no segment; a prediction is AUTOMATIC."""
    import highdicom as hd
    import pydicom

    from medal.data import save_volume
    from medal.data.dicom import export_seg

    src = tmp_path / "export"
    for i in (0, 1):
        write_dicom_series(src / f"p{i}", cases[i])
    from_dicom(src, tmp_path / "ds", labels=["background", "Anterior", "Posterior"], log=lambda s: None)
    run = tmp_path / "run" / "labels"
    run.mkdir(parents=True)
    # case p0: the truth as labels, in the converted image's grid; half of it "not annotated" (255)
    img0 = load_volume(tmp_path / "ds" / "imagesTr" / "p0_0000.nii.gz")
    lab0, _ = label_on_grid(truths[0], img0.shape, img0.affine, "truth")
    part = lab0.array.copy()
    part[: part.shape[0] // 2] = 255
    save_volume(img0.with_array(part), run / "p0.nii.gz")
    # case p1: as medal score writes a prediction, stored in the truth's own axis order (placed on the grid)
    (tmp_path / "run" / "scores" / "p1").mkdir(parents=True)
    save_volume(truths[1], tmp_path / "run" / "scores" / "p1" / "prediction.nii.gz")
    res = export_seg(tmp_path / "ds", run, tmp_path / "seg", log=lambda s: None)
    assert res == {"written": ["p0"], "skipped": {}}
    res = export_seg(tmp_path / "ds", tmp_path / "run" / "scores", tmp_path / "pred", automatic=True,
                     log=lambda s: None)
    assert res == {"written": ["p1"], "skipped": {}}
    seg = hd.seg.segread(str(tmp_path / "seg" / "p0.dcm"))
    assert [d.SegmentLabel for d in seg.SegmentSequence] == ["Anterior", "Posterior"]
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "MANUAL"
    # no SNOMED concept named "Anterior": the generic type, as before
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "91723000"
    pred = hd.seg.segread(str(tmp_path / "pred" / "p1.dcm"))
    assert pred.SegmentSequence[0].SegmentAlgorithmType == "AUTOMATIC"
    assert pred.SegmentSequence[0].SegmentAlgorithmName == "medal"
    # labels named after concepts get their SNOMED codes (a tumour a neoplasm, a left kidney a kidney modified by
    # Left) and still read back by name
    meta_path = tmp_path / "ds" / "dataset.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "labels": {"0": "background", "1": "tumour", "2": "kidney_left"}}))
    assert export_seg(tmp_path / "ds", run, tmp_path / "coded", log=lambda s: None)["written"] == ["p0"]
    coded = pydicom.dcmread(str(tmp_path / "coded" / "p0.dcm"))
    first, second = coded.SegmentSequence
    assert (first.SegmentedPropertyCategoryCodeSequence[0].CodeValue,
            first.SegmentedPropertyTypeCodeSequence[0].CodeValue) == ("49755003", "108369006")
    kidney = second.SegmentedPropertyTypeCodeSequence[0]
    assert (kidney.CodeValue, kidney.CodeMeaning) == ("64033007", "Kidney")
    assert kidney.SegmentedPropertyTypeModifierCodeSequence[0].CodeValue == "7771000"  # Left
    src_series = {s.uid: s for s in find_series(src)}
    uid0 = json.loads((tmp_path / "ds" / "dicom_sources.json").read_text())["cases"]["p0"]["series_uid"]
    again = read_dicom_seg(tmp_path / "coded" / "p0.dcm", source_instances(src_series[uid0]),
                           {0: "background", 1: "tumour", 2: "kidney_left"}, "p0")
    assert np.array_equal(again, np.where(part == 255, 0, part))
    meta_path.write_text(json.dumps(meta))
    # a codes file for what names cannot say (dcmqi's keys; by name or value; a sequence of one item too), the
    # category defaulting to Anatomical Structure; segments still read back by label
    sct = "SCT"
    codes = tmp_path / "codes.json"
    codes.write_text(json.dumps({
        "anterior": {"SegmentedPropertyTypeCodeSequence": {"CodeValue": "5366008", "CodingSchemeDesignator": sct,
                                                           "CodeMeaning": "Hippocampus"},
                     "SegmentedPropertyTypeModifierCodeSequence": [{"CodeValue": "7771000",
                                                                    "CodingSchemeDesignator": sct,
                                                                    "CodeMeaning": "Left"}]},
        "2": {"SegmentedPropertyCategoryCodeSequence": {"CodeValue": "85756007", "CodingSchemeDesignator": sct,
                                                        "CodeMeaning": "Tissue"},
              "SegmentedPropertyTypeCodeSequence": {"CodeValue": "HC-P", "CodingSchemeDesignator": "99MEDAL",
                                                    "CodeMeaning": "Posterior hippocampus"}}}))
    assert export_seg(tmp_path / "ds", run, tmp_path / "own", codes=codes, log=lambda s: None)["written"] == ["p0"]
    first, second = pydicom.dcmread(str(tmp_path / "own" / "p0.dcm")).SegmentSequence
    t1 = first.SegmentedPropertyTypeCodeSequence[0]
    assert (first.SegmentLabel, first.SegmentedPropertyCategoryCodeSequence[0].CodeValue, t1.CodeValue,
            t1.SegmentedPropertyTypeModifierCodeSequence[0].CodeMeaning) == ("Anterior", "91723000", "5366008", "Left")
    t2 = second.SegmentedPropertyTypeCodeSequence[0]
    assert (second.SegmentLabel, second.SegmentedPropertyCategoryCodeSequence[0].CodeMeaning, t2.CodeValue,
            t2.CodingSchemeDesignator) == ("Posterior", "Tissue", "HC-P", "99MEDAL")
    src_series = {s.uid: s for s in find_series(src)}
    uid0 = json.loads((tmp_path / "ds" / "dicom_sources.json").read_text())["cases"]["p0"]["series_uid"]
    again = read_dicom_seg(tmp_path / "own" / "p0.dcm", source_instances(src_series[uid0]),
                           {0: "background", 1: "Anterior", 2: "Posterior"}, "p0")
    assert np.array_equal(again, np.where(part == 255, 0, part))
    ok = '{"SegmentedPropertyTypeCodeSequence": {"CodeValue": "1", "CodingSchemeDesignator": "L", "CodeMeaning": "x"}}'
    for spec, message in (("{", "not valid JSON"), ('["x"]', "expected an object of labels"),
                          ('{"Middle": {}}', "'Middle' is no label of the dataset (its labels: 1 Anterior, "
                                             "2 Posterior)"),
                          ('{"0": {}}', "'0' is no label"),
                          ('{"1": %s, "Anterior": %s}' % (ok, ok), "label 1 is given twice"),
                          ('{"1": {"SegmentedPropertyCategoryCodeSequence": {"CodeValue": "1", '
                           '"CodingSchemeDesignator": "SCT", "CodeMeaning": "x"}}}', "1: SegmentedPropertyTypeCode"
                                                                                    "Sequence is required"),
                          ('{"1": {"SegmentedPropertyTypeCodeSequence": {"CodeValue": "1", '
                           '"CodingSchemeDesignator": "SCT"}}}', "1.SegmentedPropertyTypeCodeSequence: needs "
                                                                 "CodeValue, CodingSchemeDesignator and CodeMeaning"),
                          ('{"1": {"TypeCode": {}}}', "1: expected an object with SegmentedPropertyCategory")):
        codes.write_text(spec)
        with pytest.raises(DatasetError, match=re.escape(f"{codes}: {message}")):
            export_seg(tmp_path / "ds", run, tmp_path / "bad", codes=codes, log=lambda s: None)
    assert not (tmp_path / "bad").exists()
    # in an RT structure set the codes identify the ROIs (RT ROI Identification Code Sequence), an anatomical one
    # an ORGAN; a name that is no concept stays untyped and uncoded
    codes.write_text(json.dumps({"1": {"SegmentedPropertyTypeCodeSequence": {
        "CodeValue": "5366008", "CodingSchemeDesignator": sct, "CodeMeaning": "Hippocampus"}}}))
    assert export_seg(tmp_path / "ds", run, tmp_path / "rtc", codes=codes, rtstruct=True,
                      log=lambda s: None)["written"] == ["p0"]
    obs = pydicom.dcmread(str(tmp_path / "rtc" / "p0.dcm")).RTROIObservationsSequence
    assert [o.RTROIInterpretedType for o in obs] == ["ORGAN", ""]
    assert obs[0].RTROIIdentificationCodeSequence[0].CodeValue == "5366008"
    assert "RTROIIdentificationCodeSequence" not in obs[1]
    # read back as from-dicom reads a SEG: the same voxels (255 -> background)
    src_series = {s.uid: s for s in find_series(src)}
    uid0 = json.loads((tmp_path / "ds" / "dicom_sources.json").read_text())["cases"]["p0"]["series_uid"]
    back = read_dicom_seg(tmp_path / "seg" / "p0.dcm", source_instances(src_series[uid0]),
                          {0: "background", 1: "Anterior", 2: "Posterior"}, "p0")
    assert np.array_equal(back, np.where(part == 255, 0, part))
    # and a SEG beside the export closes the loop: from-dicom reads it as the case's labels
    shutil.copy(tmp_path / "pred" / "p1.dcm", src / "p1" / "pred_seg.dcm")
    res = from_dicom(src, tmp_path / "ds2", log=lambda s: None)
    assert res["labelled"] == ["p1"]
    assert same_labels(tmp_path / "ds2" / "labelsTr" / "p1.nii.gz", truths[1])
    # as RT structure sets (for a planning system): contours that from-dicom reads back to the same voxels
    res = export_seg(tmp_path / "ds", run, tmp_path / "rt", rtstruct=True, log=lambda s: None)
    assert res == {"written": ["p0"], "skipped": {}}
    res = export_seg(tmp_path / "ds", tmp_path / "run" / "scores", tmp_path / "rtpred", rtstruct=True, automatic=True,
                     log=lambda s: None)
    assert res == {"written": ["p1"], "skipped": {}}
    rs = pydicom.dcmread(str(tmp_path / "rtpred" / "p1.dcm"))
    assert rs.Modality == "RTSTRUCT" and [r.ROIName for r in rs.StructureSetROISequence] == ["Anterior", "Posterior"]
    assert {r.ROIGenerationAlgorithm for r in rs.StructureSetROISequence} == {"AUTOMATIC"}
    for f in ("rt/p0.dcm", "rtpred/p1.dcm"):
        shutil.copy(tmp_path / f, src / f.split("/")[1].replace(".dcm", "") / "rs.dcm")
    res = from_dicom(src, tmp_path / "ds3", log=lambda s: None)
    assert res["labelled"] == ["p0", "p1"] and not res["skipped"], res
    img = load_volume(tmp_path / "ds3" / "imagesTr" / "p0_0000.nii.gz")
    assert np.array_equal(load_volume(tmp_path / "ds3" / "labelsTr" / "p0.nii.gz").array, np.where(part == 255, 0, part))
    assert img.shape == part.shape
    assert same_labels(tmp_path / "ds3" / "labelsTr" / "p1.nii.gz", truths[1])
    # a dataset not made from DICOM is one line
    with pytest.raises(DatasetError, match="no dicom_sources.json: export-seg writes SEGs for datasets"):
        export_seg(sample_dataset(), run, tmp_path / "x")


def test_an_enhanced_multi_frame_image_and_its_seg_round_trip(tmp_path, cases, truths):
    """One file holding every slice (Legacy Converted Enhanced MR, made by highdicom from a written series of the
    reordered real case): from-dicom reads it by its frames' positions; export-seg writes a SEG on it by geometry,
    and from-dicom reads that back onto the image's voxels."""
    import highdicom as hd
    import pydicom

    from medal.data.dicom import export_seg

    single = write_dicom_series(tmp_path / "single", cases[1], shuffle=None)
    legacy = [pydicom.dcmread(str(f)) for f in single]
    enhanced = hd.legacy.LegacyConvertedEnhancedMRImage(legacy_datasets=legacy, series_instance_uid=hd.UID(),
                                                         series_number=7, sop_instance_uid=hd.UID(), instance_number=1)
    src = tmp_path / "export"
    (src / "mf").mkdir(parents=True)
    enhanced.save_as(str(src / "mf" / "enhanced.dcm"))
    res = from_dicom(src, tmp_path / "ds", labels=["background", "Anterior", "Posterior"], log=lambda s: None)
    assert res["written"] == ["mf"] and not res["skipped"]
    assert same_voxels(tmp_path / "ds" / "imagesTr" / "mf_0000.nii.gz", cases[1])
    image = load_volume(tmp_path / "ds" / "imagesTr" / "mf_0000.nii.gz")
    lab, _ = label_on_grid(truths[1], image.shape, image.affine, "truth")
    (tmp_path / "labels").mkdir()
    from medal.data import save_volume

    save_volume(image.with_array(lab.array), tmp_path / "labels" / "mf.nii.gz")
    assert export_seg(tmp_path / "ds", tmp_path / "labels", tmp_path / "seg", log=lambda s: None)["written"] == ["mf"]
    shutil.copy(tmp_path / "seg" / "mf.dcm", src / "mf" / "seg.dcm")
    res = from_dicom(src, tmp_path / "ds2", log=lambda s: None)
    assert res["labelled"] == ["mf"] and not res["skipped"]
    assert same_labels(tmp_path / "ds2" / "labelsTr" / "mf.nii.gz", truths[1])


def test_a_slope_per_slice_keeps_its_fractional_values(tmp_path, cases):
    """PET (and some MR) stores a rescale slope per slice: a slice whose slope is fractional keeps its real values
    (the reader's output type would otherwise follow the first slice's integers and cut them)."""
    import pydicom

    files = write_dicom_series(tmp_path / "pet" / "s", cases[0], shuffle=None, modality="PT", rescale_intercept=0)
    n = len(files)
    for k in range(n // 2, n):
        ds = pydicom.dcmread(str(files[k]))
        stored = np.round(ds.pixel_array.astype(np.float64) / 0.3).astype(ds.pixel_array.dtype)
        ds.PixelData = stored.tobytes()
        ds.RescaleSlope = "0.3"
        ds.save_as(str(files[k]))
    res = from_dicom(tmp_path / "pet", tmp_path / "ds", log=lambda s: None)
    got = load_volume(tmp_path / "ds" / "imagesTr" / f"{res['written'][0]}_0000.nii.gz")
    want = cases[0].array.astype(np.float64)
    want[:, :, n // 2:] = np.round(want[:, :, n // 2:] / 0.3) * 0.3
    assert got.array.dtype == np.float32 and np.allclose(got.array, want, atol=1e-3)
    assert load_dataset(tmp_path / "ds").channel_names == {0: "PET"}


@pytest.mark.parametrize("name, kind, code", [
    ("GTV", "GTV", "Neoplasm"), ("PTV_high", "PTV", None), ("CTV1", "CTV", None), ("External", "EXTERNAL", None),
    ("liver", "ORGAN", "Liver"), ("kidney_left", "ORGAN", "Kidney"), ("tumour", "", "Neoplasm"),
    ("Anterior", "", None)])
def test_rt_structure_types_and_codes_from_label_names(name, kind, code):
    """An RT structure set's ROI gets the interpreted type its name says (planning volumes, the body outline), ORGAN
    for an anatomical concept, else none (a lesion is not a planning volume until a planner says so), and the
    concept's code."""
    from medal.data.dicom_seg import rt_observation

    got_kind, got_code = rt_observation(name)
    assert (got_kind, got_code.meaning if got_code is not None else None) == (kind, code)


@pytest.mark.parametrize("name, category, kind, side", [
    ("liver", "Anatomical Structure", "Liver", None), ("LeftKidney", "Anatomical Structure", "Kidney", "Left"),
    ("kidney_r", "Anatomical Structure", "Kidney", "Right"), ("Tumour", "Morphologically Abnormal Structure",
                                                             "Neoplasm", None),
    ("oedema", "Morphologically Abnormal Structure", "Edema", None), ("hippocampus", "Anatomical Structure",
                                                                     "Hippocampus", None),
    ("urinary bladder", "Anatomical Structure", "Bladder", None),
    ("Anterior", "Anatomical Structure", "Anatomical Structure", None), ("left", "Anatomical Structure",
                                                                        "Anatomical Structure", None)])
def test_segment_codes_from_label_names(name, category, kind, side):
    """A label's name gives its SEG segment the SNOMED category and type (CID 7151 / 7159 / 7166), laterality as a
    modifier; a name that is no concept keeps the generic Anatomical Structure."""
    from medal.data.dicom_seg import segment_codes

    c, t, s = segment_codes(name)
    assert (c.meaning, t.meaning, s.meaning if s is not None else None) == (category, kind, side)
