import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from medal.data import Volume, check_dataset, load_volume, sample_dataset, save_volume


@pytest.fixture
def broken_dataset(tmp_path):
    """A copy of 10 real sample cases, 9 of them broken in a different way, on disk."""
    src = sample_dataset()
    root = tmp_path / "broken"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    shutil.copy(src / "LICENSE", root / "LICENSE")
    ids = sorted(p.name for p in (src / "imagesTr").iterdir())[:10]
    for name in ids:
        shutil.copy(src / "imagesTr" / name, root / "imagesTr" / name)
        shutil.copy(src / "labelsTr" / name, root / "labelsTr" / name)
    meta = json.loads((src / "dataset.json").read_text())
    meta["training"] = [{"image": f"./imagesTr/{n}", "label": f"./labelsTr/{n}"} for n in ids]
    (root / "dataset.json").write_text(json.dumps(meta))
    img = lambda i: root / "imagesTr" / ids[i]
    lab = lambda i: root / "labelsTr" / ids[i]
    # 0: healthy.  1: truncated image gzip
    data = img(1).read_bytes()
    img(1).write_bytes(data[: len(data) // 3])
    # 2: label on a shifted grid (different affine)
    lv = load_volume(lab(2))
    aff = lv.affine.copy()
    aff[0, 3] += 2.0
    save_volume(Volume(lv.array, aff, header=lv.header), lab(2))
    # 3: label shape mismatch: one row more than the image (a cropped label, a box inside the image, is read)
    lv = load_volume(lab(3))
    save_volume(Volume(np.pad(lv.array, ((0, 0), (0, 1), (0, 0))), lv.affine), lab(3))
    # 4: NaN and Inf intensities
    iv = load_volume(img(4))
    arr = iv.array.astype(np.float32)
    arr[0, 0, :3] = np.nan
    arr[1, 1, 1] = np.inf
    save_volume(iv.with_array(arr), img(4))
    # 5: 4D image
    iv = load_volume(img(5))
    nib.save(nib.Nifti1Image(np.stack([iv.array] * 2, -1), iv.affine), img(5))
    # 6: label value 7 not in dataset.json
    lv = load_volume(lab(6))
    arr = lv.array.copy()
    arr[0, 0, 0] = 7
    save_volume(lv.with_array(arr), lab(6))
    # 7: missing label file
    lab(7).unlink()
    # 8: 2D image
    nib.save(nib.Nifti1Image(np.zeros((30, 40), np.float32), np.eye(4)), img(8))
    # 9: a constant image (an empty export): nothing to segment, a blank slice for the expert
    iv = load_volume(img(9))
    save_volume(iv.with_array(np.zeros_like(iv.array)), img(9))
    return root, ids


def test_check_reports_every_problem_and_keeps_going(broken_dataset):
    root, ids = broken_dataset
    report = check_dataset(root)
    assert not report.ok
    assert len(report.cases) == 10  # went past every bad case
    by_id = {c.case_id: c for c in report.cases}
    cid = [i.replace(".nii.gz", "") for i in ids]
    expect = {
        1: rf"imagesTr/{ids[1]}: file is truncated",
        2: rf"labelsTr/{ids[2]}: affine differs from the image's by up to 2 mm",
        3: rf"labelsTr/{ids[3]}: shape \(\d+, \d+, \d+\) does not match image shape .* \(its voxels would sit at "
           r"\[0:\d+, 0:\d+, 0:\d+\] of the image's grid, partly outside it\)",
        4: rf"imagesTr/{ids[4]}: 3 NaN and 1 Inf intensity values",
        5: rf"imagesTr/{ids[5]}: expected a 3D volume, got 4D with shape",
        6: rf"labelsTr/{ids[6]}: label values \[7\] are not in dataset.json labels \[0, 1, 2\]",
        7: rf"labelsTr/{ids[7]}: file not found",
        8: rf"imagesTr/{ids[8]}: expected a 3D volume, got 2D with shape \(30, 40\)",
        9: rf"imagesTr/{ids[9]}: every voxel has the same intensity \(0\): an empty or failed export\?",
    }
    import re

    assert by_id[cid[0]].ok and by_id[cid[0]].shape is not None
    for i, pattern in expect.items():
        problems = by_id[cid[i]].problems
        assert len(problems) == 1, (i, problems)
        assert re.search(pattern, problems[0]), (i, problems[0])
    assert report.n_problems == 9
    assert "FAILED: 10 cases checked, 9 problem(s)" in report.summary()
    d = json.loads(report.to_json())
    assert d["ok"] is False and d["n_problems"] == 9


def test_check_empty_dataset(tmp_path):
    report = check_dataset(tmp_path)
    assert not report.ok
    assert "empty dataset" in report.problems[0]


def test_check_reports_orphan_label(phantom_dataset):
    save_volume(load_volume(phantom_dataset / "labelsTr" / "phantom_000.nii.gz"),
                phantom_dataset / "labelsTr" / "stray.nii.gz")
    (phantom_dataset / "dataset.json").write_text(
        json.dumps({**json.loads((phantom_dataset / "dataset.json").read_text()), "training": []}))
    report = check_dataset(phantom_dataset)
    assert any("labelsTr/stray.nii.gz: label file has no matching image" in p for p in report.problems)


def test_partial_labels_with_255_check_clean(phantom_dataset):
    lab = load_volume(phantom_dataset / "labelsTr" / "phantom_000.nii.gz")
    arr = lab.array.copy()
    arr[:, :, :2] = 255  # edge slices: background only
    save_volume(lab.with_array(arr), phantom_dataset / "labelsTr" / "phantom_000.nii.gz")
    report = check_dataset(phantom_dataset)
    assert report.ok, report.summary()
    assert report.cases[0].label_values == [0, 1, 2, 255]
    assert not report.cases[0].warnings  # partial labels with classes in them are what 255 is for


def test_a_0_255_mask_is_a_warning_naming_the_file(tmp_path):
    """A binary mask saved as 0/255 reads as 'all foreground not annotated' in medal: the check says so
    (a warning: a partial label of background only is legal) and the dataset still checks ok."""
    src = sample_dataset()
    root = tmp_path / "masks"
    shutil.copytree(src, root)
    name = sorted(p.name for p in (root / "labelsTr").iterdir())[0]
    lv = load_volume(root / "labelsTr" / name)
    save_volume(lv.with_array((lv.array > 0).astype(np.uint8) * 255), root / "labelsTr" / name)
    report = check_dataset(root)
    assert report.ok
    bad = [c for c in report.cases if c.warnings]
    assert [c.label for c in bad] == [f"labelsTr/{name}"] and bad[0].label_values == [0, 255]
    line = [x for x in report.summary().splitlines() if x.startswith("  WARNING")]
    assert len(line) == 1 and f"labelsTr/{name}" in line[0] and "0/255 binary mask" in line[0]
    assert json.loads(report.to_json())["cases"][report.cases.index(bad[0])]["warnings"] == bad[0].warnings


def test_mixed_voxel_spacing_is_noted_not_failed(tmp_path):
    """Two real cases re-declared at 3 mm slices (image and label alike, as a thick-slice scanner writes
    them): still ok, and the summary names the axis, the ratio and the option that resamples."""
    src = sample_dataset()
    root = tmp_path / "thick"
    shutil.copytree(src, root)
    for name in sorted(p.name for p in (root / "imagesTr").iterdir())[:2]:
        for folder in ("imagesTr", "labelsTr"):
            v = load_volume(root / folder / name)
            aff = v.affine.copy()
            aff[:3, 2] *= 3.0
            save_volume(Volume(v.array, aff), root / folder / name)
    report = check_dataset(root)
    assert report.ok, report.summary()
    notes = [x for x in report.summary().splitlines() if "NOTE" in x]
    assert len(notes) == 1 and "up to 3.0x along axis 2" in notes[0]
    assert "data.spacing: median (the default)" in notes[0]
    assert "data.spacing: null would train on each volume's grid" in notes[0]
    assert not [x for x in check_dataset(src).summary().splitlines() if "NOTE" in x]


def test_bundled_sample_checks_clean():
    report = check_dataset(sample_dataset())
    assert report.ok, report.summary()
    assert len(report.cases) == 20
    assert {c.dtype for c in report.cases} == {"uint8", "float32"}


@pytest.mark.slow
def test_shared_hippocampus_checks_clean(shared_hippocampus):
    report = check_dataset(shared_hippocampus)
    assert report.ok, report.summary()
    assert len(report.cases) == 220
    assert all(c.label_values == [0, 1, 2] for c in report.cases)


def test_anisotropic_data_gets_nnunets_strides_suggested(tmp_path):
    """Cases stored as 3 mm slices (real cases, every 3 slices along the last axis averaged): `dataset check` notes
    the anisotropy and suggests nnU-Net's per-axis strides; the sample's isotropic cases get no such note. The rule
    itself: an axis halved while its spacing is under twice the finest."""
    import numpy as np

    from medal.data import Volume, load_dataset, load_volume, sample_dataset, save_volume
    from medal.config import config_from_dict
    from medal.data.check import check_dataset
    from medal.model.plan import suggest_strides

    assert suggest_strides((1, 1, 3), 3) == ((2, 2, 1), 2, 2)
    assert suggest_strides((0.8, 0.8, 5), 3) == ((2, 2, 1), (2, 2, 1), 2)
    assert suggest_strides((1, 1, 1), 3) == (2, 2, 2)
    assert suggest_strides((1, 1, 1), 2, patch=(32, 32, 8), min_feature_map=4) == (2, (2, 2, 1))
    for c in load_dataset(sample_dataset()).cases[:2]:
        img, lab = load_volume(c.image), load_volume(c.label)
        n = img.shape[2] // 3
        aff = img.affine.copy()
        aff[:3, 2] *= 3
        x = img.array[:, :, :3 * n].astype(np.float32).reshape(*img.shape[:2], n, 3).mean(axis=3)
        save_volume(Volume(x, aff), tmp_path / "imagesTr" / f"{c.case_id}_0000.nii.gz")
        save_volume(Volume(np.ascontiguousarray(lab.array[:, :, 1:3 * n:3]), aff), tmp_path / "labelsTr" / f"{c.case_id}.nii.gz")
    report = check_dataset(tmp_path)
    assert (report.plan["strides"], report.plan["patch_mm"]) == ([[2, 2, 1], 2, 2], [32.0, 48.0, 96.0])
    notes = report.notes
    assert any("anisotropic voxels (median spacing (1.0, 1.0, 3.0) mm" in n
               and "model.strides: auto plans [[2, 2, 1], 2, 2]" in n for n in notes), notes
    # 11-12 slices deep: the default 32-deep patch is mostly padding, and a patch that fits the plan is named
    assert any("training.patch_size [32, 48, 32] is larger than the median case on the network's grid ([36, 52, 12] "
               "voxels) along axis 2" in n and "[32, 48, 12] (training.patch_size" in n for n in notes), notes
    # --config: the notes are about the config the run will use (its own strides, its patch)
    cfg = config_from_dict({"model": {"strides": [2, 2, 2]}, "training": {"patch_size": [32, 48, 16]},
                            "uncertainty": {"roi_size": [32, 48, 16]}})
    report = check_dataset(tmp_path, config=cfg)
    notes = report.notes
    assert (report.plan["strides"], report.plan["strides_auto"], report.plan["config"]) == ([2, 2, 2], False, "given")
    assert "strides [2, 2, 2] (model.strides), patch 32 x 48 x 16 voxels (32 x 48 x 48 mm)" in report.summary()
    assert any("the config's model.strides [2, 2, 2] differ from nnU-Net's plan for them, [[2, 2, 1], 2, 2]" in n
               for n in notes), notes
    assert not any("training.patch_size" in n for n in notes), notes
    assert not any("anisotropic" in n or "patch_size" in n for n in check_dataset(sample_dataset()).notes)
