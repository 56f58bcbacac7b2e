"""Label files another tool saved: the image's voxels in another axis order, or cropped to a box (3D Slicer's
default), read onto the image's grid losslessly; anything else refused in one line. Real sample cases."""

import json

import numpy as np
import pytest

from medal.data import (DatasetError, Volume, check_dataset, load_case, load_dataset, load_label, load_volume,
                        sample_dataset, save_volume)
from medal.data.validate import label_on_grid


@pytest.fixture(scope="module")
def case():
    c = load_dataset(sample_dataset()).cases[0]
    return load_volume(c.image), load_volume(c.label)


def permuted(v: Volume) -> Volume:
    """The first two axes swapped and both reversed, the world unchanged (another storage order)."""
    arr = np.ascontiguousarray(np.flip(v.array, (0, 1)).transpose(1, 0, 2))
    idx = np.zeros((4, 4))  # new index (i, j, k) -> old index (n0 - 1 - j, n1 - 1 - i, k)
    idx[0, 1], idx[1, 0], idx[2, 2], idx[3, 3] = -1.0, -1.0, 1.0, 1.0
    idx[0, 3], idx[1, 3] = v.shape[0] - 1, v.shape[1] - 1
    return Volume(arr, v.affine @ idx)


def cropped(v: Volume, box) -> Volume:
    """The voxels ``v.array[box]`` with the origin moved to the box's first voxel (Slicer's cropped export)."""
    start = np.eye(4)
    start[:3, 3] = [s.start for s in box]
    return Volume(np.ascontiguousarray(v.array[box]), v.affine @ start)


def foreground_box(arr, margin=2):
    idx = np.argwhere(arr > 0)
    lo, hi = np.maximum(idx.min(0) - margin, 0), np.minimum(idx.max(0) + 1 + margin, arr.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def test_a_label_in_another_axis_order_or_cropped_is_read_voxel_for_voxel(case):
    image, label = case
    same, how = label_on_grid(label, image.shape, image.affine, "lab.nii.gz")
    assert same is label and how == ""
    turned, how = label_on_grid(permuted(label), image.shape, image.affine, "lab.nii.gz")
    np.testing.assert_array_equal(turned.array, label.array)
    np.testing.assert_allclose(turned.affine, image.affine)
    assert how.startswith("stored in PL") and "axis order (the image's: " in how
    box = foreground_box(label.array)
    assert all(0 < s.start and s.stop < n for s, n in zip(box, label.shape))  # cropped on every side
    small = cropped(label, box)
    back, how = label_on_grid(small, image.shape, image.affine, "lab.nii.gz")
    np.testing.assert_array_equal(back.array, label.array)  # outside the box the truth is background
    first = box[0].start
    assert how.startswith(f"cropped to voxels [{first}:{box[0].stop}, ") and how.endswith("read as background (0)")
    both, how = label_on_grid(permuted(small), image.shape, image.affine, "lab.nii.gz")
    np.testing.assert_array_equal(both.array, label.array)
    assert "axis order" in how and "; cropped to voxels" in how
    # a partial annotation cropped to what was painted: the rest was not looked at
    part, how = label_on_grid(small, image.shape, image.affine, "ann.nii.gz", outside=255)
    inside = np.zeros(label.shape, bool)
    inside[box] = True
    assert (part.array[~inside] == 255).all() and (part.array[inside] == label.array[inside]).all()
    assert how.endswith("read as not annotated (255)")


def test_a_label_that_is_not_the_images_voxels_is_refused_in_one_line(case):
    image, label = case

    def refused(lab, match):
        with pytest.raises(DatasetError, match=match) as err:
            label_on_grid(lab, image.shape, image.affine, "lab.nii.gz")
        assert "\n" not in str(err.value)

    shift = np.eye(4)
    shift[0, 3] = 0.5  # half a voxel: resampling would invent boundaries
    refused(Volume(label.array, label.affine @ shift), r"lab\.nii\.gz: affine differs from the image's by up to 0\.5 mm .* \(the image's "
                                                         r"voxel size and axes, but its voxels sit 0\.5 mm off")
    shift[0, 3] = 2.0  # whole voxels, full size: the box would stick out of the image
    refused(Volume(label.array, label.affine @ shift),
            r"lab\.nii\.gz: affine differs .* \(its voxels would sit at \[2:\d+, 0:\d+, 0:\d+\] of the image's grid, "
            r"partly outside it\)")
    thick = label.affine.copy()
    thick[:3, 2] *= 2  # another voxel size
    refused(Volume(np.ascontiguousarray(label.array[:, :, ::2]), thick), r"lab\.nii\.gz: shape .* does not match")
    refused(Volume(label.array[..., None], label.affine), r"lab\.nii\.gz: shape .* does not match")


def test_check_training_and_the_oracle_read_such_labels_as_the_originals(tmp_path):
    """A dataset whose label files came out of another tool (one cropped, one in another axis order): the check
    passes with a NOTE, training items, the simulation's usable cases and the oracle's full annotation cost are
    those of the original files."""
    from medal.config import DataConfig
    from medal.costs import CostModel
    from medal.simulation.oracle import full_annotation_cost
    from medal.simulation.simulate import usable_cases
    from medal.training.trainer import prepare_items

    source = load_dataset(sample_dataset())
    cases = source.cases[:3]
    ids = [c.case_id for c in cases]
    edits = {ids[0]: lambda v: cropped(v, foreground_box(v.array)), ids[1]: permuted}
    from medal.testing import copy_cases

    ds = load_dataset(copy_cases(tmp_path / "ds", cases, label_of=lambda i, v: edits.get(ids[i], lambda x: x)(v)))
    assert load_volume(ds.case(ids[0]).label).shape != load_volume(cases[0].label).shape  # stored cropped

    rep = check_dataset(ds.root)
    assert rep.ok, rep.summary()
    notes = [x for x in rep.summary().splitlines() if "NOTE" in x]
    assert len(notes) == 1 and "NOTE: 2 label file(s) are not voxel for voxel on their image's grid" in notes[0]
    assert f"e.g. labelsTr/{ids[0]}.nii.gz: cropped to voxels [" in notes[0]
    assert {c.case_id: bool(c.label_stored) for c in rep.cases} == {ids[0]: True, ids[1]: True, ids[2]: False}

    for cid, orig in zip(ids, cases):
        _, lab = load_case(ds.case(cid), ds)
        np.testing.assert_array_equal(lab.array, load_volume(orig.label).array)
    mine = prepare_items(ds, DataConfig())
    theirs = {i.case_id: i for i in prepare_items(source, DataConfig(), case_ids=set(ids))}
    assert [i.case_id for i in mine] == ids
    for item in mine:
        np.testing.assert_array_equal(item.label, theirs[item.case_id].label)
    ok, _, skipped = usable_cases(ds, ids)
    assert ok == ids and skipped == {}
    model = CostModel.default(ds.n_classes)
    full = full_annotation_cost(ds, ids, axis_name="axial", cost_model=model)
    assert full > 0 and full == pytest.approx(full_annotation_cost(source, ids, axis_name="axial", cost_model=model))


def test_slicer_seg_nrrd_labels_are_read_by_segment_name_cropped_or_in_layers(tmp_path):
    """Ground truth saved from 3D Slicer as ``case.seg.nrrd`` (segments named like dataset.json's labels but numbered
    in another order, cropped to their extent, LPS space; once with the two segments in separate layers) reads as
    the original label; an overlap or a segment dataset.json does not name is one line naming the file, and the
    check goes on past it."""
    from medal.data import check_dataset
    from medal.testing import write_slicer_segmentation

    source = load_dataset(sample_dataset())
    cases = source.cases[:4]
    from medal.testing import copy_cases

    root = copy_cases(tmp_path / "slicer", cases, label_of=lambda i, v: None)  # labels written below, as Slicer does
    swapped = [("Posterior", 2, 1), ("Anterior", 1, 2)]  # Slicer's numbering: the order they were created in
    for i, c in enumerate(cases):
        lab = load_volume(c.label)
        dst = root / "labelsTr" / f"{c.case_id}.seg.nrrd"
        if i == 0:
            write_slicer_segmentation(dst, lab, swapped)
        elif i == 1:
            write_slicer_segmentation(dst, lab, [("Anterior", 1, 1), ("Posterior", 2, 1)], layers={"Posterior": 1})
        elif i == 2:
            write_slicer_segmentation(dst, lab, [("Anterior", 1, 1), ("Tumour", 2, 2)])
        else:
            both = Volume(np.where(lab.array == 2, 1, lab.array).astype(np.uint8), lab.affine)
            write_slicer_segmentation(dst, both, [("Anterior", 1, 1), ("Posterior", 1, 1)],
                                      layers={"Posterior": 1})  # the same voxels in both segments
    ds = load_dataset(root)
    assert [c.label.name for c in ds.cases] == [f"{c.case_id}.seg.nrrd" for c in cases]  # paired by case id
    for i in (0, 1):
        _, lab = load_case(ds.cases[i], ds)
        np.testing.assert_array_equal(lab.array, load_volume(cases[i].label).array)
    with pytest.raises(DatasetError, match=rf"^labelsTr/{cases[2].case_id}\.seg\.nrrd: segment 'Tumour' is not a "
                                           r"label in dataset\.json \(0=background, 1=Anterior, 2=Posterior\)"):
        load_case(ds.cases[2], ds)
    with pytest.raises(DatasetError, match=rf"^labelsTr/{cases[3].case_id}\.seg\.nrrd: segments 'Anterior' and "
                                           r"'Posterior' overlap in \d+ voxel\(s\)"):
        load_case(ds.cases[3], ds)
    rep = check_dataset(root)
    assert [len(c.problems) for c in rep.cases] == [0, 0, 1, 1]
    assert "segment 'Tumour' is not a label" in rep.cases[2].problems[0]
    assert rep.cases[0].label_values == [0, 1, 2] and "cropped to voxels" in rep.cases[0].label_stored
    # without label names in dataset.json the values stay as Slicer stored them
    (root / "dataset.json").write_text(json.dumps({"name": "plain"}))
    _, lab = load_case(load_dataset(root).cases[0], None)
    truth = load_volume(cases[0].label).array
    np.testing.assert_array_equal(lab.array, np.select([truth == 1, truth == 2], [2, 1], 0))


def test_a_folder_of_partial_labels_saved_cropped_trains_only_on_what_was_painted(tmp_path):
    """`medal train --labels DIR` with a partial label another tool saved cropped to the painted slices: the voxels
    outside the box are not annotated (255), never background, so training learns only what the expert painted."""
    from medal.config import DataConfig
    from medal.training.trainer import prepare_items

    ds = load_dataset(sample_dataset())
    case = ds.cases[0]
    truth = load_volume(case.label)
    box = (slice(0, truth.shape[0]), slice(0, truth.shape[1]), slice(12, 15))  # three whole slices painted
    save_volume(cropped(truth, box), tmp_path / "labels" / f"{case.case_id}.nii.gz")
    (item,) = prepare_items(ds, DataConfig(), labels_dir=tmp_path / "labels", case_ids={case.case_id})
    inside = np.zeros(truth.shape, bool)
    inside[box] = True
    np.testing.assert_array_equal(item.label[inside], truth.array[inside])
    assert (item.label[~inside] == 255).all()
