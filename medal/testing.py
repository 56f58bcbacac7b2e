"""Synthetic phantoms for unit tests (real data lives in ``../shared`` and the bundled sample).

Phantoms are small 3D volumes with two labelled ellipsoids (labels 1 and 2) in noisy background,
written as a tiny dataset in the Medical Segmentation Decathlon layout with real NIfTI files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["make_phantom", "write_phantom_dataset", "write_sparse_label_dataset", "PHANTOM_LABELS", "SPARSE_LABELS",
           "write_dicom_series", "write_dicom_seg",
           "write_case_folders"]

PHANTOM_LABELS = {0: "background", 1: "inner", 2: "outer"}


def make_phantom(shape=(24, 28, 20), *, seed: int = 0, noise: float = 0.1, dtype=np.float32):
    """A synthetic image and its label map, both of ``shape``.

    Label 1 is an ellipsoid, label 2 a second one beside it; intensities are 1.0 and 0.6 on a
    background of 0.1, plus Gaussian noise. Deterministic for a given ``seed``.
    """
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"))
    label = np.zeros(shape, dtype=np.uint8)
    centre = np.array(shape) * rng.uniform(0.35, 0.45, size=3)
    radii = np.array(shape) * rng.uniform(0.12, 0.2, size=3)
    inside1 = (((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) <= 1
    centre2 = centre + np.array(shape) * 0.25
    inside2 = (((grid - centre2[:, None, None, None]) / (radii[:, None, None, None] * 0.8)) ** 2).sum(0) <= 1
    label[inside2] = 2
    label[inside1] = 1
    image = np.where(label == 1, 1.0, np.where(label == 2, 0.6, 0.1)).astype(np.float32)
    image += rng.normal(0, noise, size=shape).astype(np.float32)
    if np.issubdtype(np.dtype(dtype), np.integer):
        image = np.clip(image * 200, 0, np.iinfo(dtype).max)
    return image.astype(dtype), label


def write_phantom_dataset(root, *, n_cases: int = 3, shape=(24, 28, 20), spacing=(1.0, 1.0, 1.0),
                          seed: int = 0, with_labels: bool = True) -> Path:
    """Write ``n_cases`` phantoms as ``root/{dataset.json, imagesTr, labelsTr}`` and return ``root``."""
    from medal.data.io import Volume, save_volume

    root = Path(root)
    affine = np.diag([*map(float, spacing), 1.0])
    affine[:3, 3] = [-10.0, 5.0, 2.5]
    training = []
    for i in range(n_cases):
        case_id = f"phantom_{i:03d}"
        image, label = make_phantom(shape, seed=seed + i)
        save_volume(Volume(image, affine), root / "imagesTr" / f"{case_id}.nii.gz")
        entry = {"image": f"./imagesTr/{case_id}.nii.gz"}
        if with_labels:
            save_volume(Volume(label, affine), root / "labelsTr" / f"{case_id}.nii.gz")
            entry["label"] = f"./labelsTr/{case_id}.nii.gz"
        training.append(entry)
    meta = {
        "name": "Phantom",
        "description": "synthetic ellipsoid phantoms (medal.testing)",
        "tensorImageSize": "3D",
        "modality": {"0": "synthetic"},
        "labels": {str(k): v for k, v in PHANTOM_LABELS.items()},
        "numTraining": n_cases,
        "training": training,
    }
    (root / "dataset.json").write_text(json.dumps(meta, indent=1))
    return root


#: sparse label values of :func:`write_sparse_label_dataset` (6 classes, values as a CT atlas might use)
SPARSE_LABELS = {0: "background", 3: "rim", 17: "anterior", 42: "posterior", 99: "bright", 117: "dark"}


def write_sparse_label_dataset(root, source_cases, *, layout: str = "msd") -> Path:
    """A multi-class dataset with sparse label values, built from real cases.

    Each source case (a :class:`medal.data.Case` with a hippocampus label) keeps its image; its label
    becomes six classes with the values of :data:`SPARSE_LABELS`: anterior -> 17, posterior -> 42, a
    two-voxel rim around both -> 3, and the brightest / darkest 3% of the remaining image -> 99 / 117.
    ``layout="msd"`` writes ``dataset.json`` naming them; ``"plain"`` writes a plain folder of images
    with ``labels/`` and no ``dataset.json`` (the values must then be found by scanning).
    """
    from scipy import ndimage

    from medal.data import load_volume, save_volume

    root = Path(root)
    img_dir, lab_dir = (root / "imagesTr", root / "labelsTr") if layout == "msd" else (root, root / "labels")
    for case in source_cases:
        image, label = load_volume(case.image), load_volume(case.label)
        x = image.array.astype(np.float32)
        fg = label.array > 0
        rim = ndimage.binary_dilation(fg, iterations=2) & ~fg
        rest = ~(fg | rim)
        hi, lo = np.percentile(x[rest], [97, 3])
        out = np.zeros(label.shape, np.uint8)
        out[rest & (x >= hi)] = 99
        out[rest & (x <= lo)] = 117
        out[rim] = 3
        out[label.array == 1] = 17
        out[label.array == 2] = 42
        save_volume(image, img_dir / f"{case.case_id}.nii.gz")
        save_volume(label.with_array(out), lab_dir / f"{case.case_id}.nii.gz")
    if layout == "msd":
        (root / "dataset.json").write_text(json.dumps({"name": "sparse", "labels": {str(k): v for k, v in SPARSE_LABELS.items()}}))
    return root


def second_channel(image: np.ndarray) -> np.ndarray:
    """A second "sequence" of a real scan, for multi-channel tests: the intensities inverted, smoothed and put
    on another scale (1000 - 3 x, Gaussian sigma 1), so the two channels disagree in contrast and range as a
    T1 and a T2 do. Co-registered with ``image`` by construction."""
    from scipy import ndimage

    return (1000.0 - 3.0 * ndimage.gaussian_filter(np.asarray(image, dtype=np.float32), 1.0)).astype(np.float32)


def write_multichannel_dataset(root, source_cases, *, layout: str = "split") -> Path:
    """A two-channel dataset built from real cases: channel 0 the case's image, channel 1 its
    :func:`second_channel`; labels as they are.

    ``layout="split"``: nnU-Net v2's ``imagesTr/<case>_0000.nii.gz`` and ``_0001`` with ``dataset.json``'s
    ``channel_names``; ``"4d"``: the Decathlon's one 4D file per case (channels along the fourth axis) listed in
    ``dataset.json``'s ``training`` with a ``modality`` entry.
    """
    from medal.data import Volume, load_volume, save_volume

    root = Path(root)
    training = []
    for case in source_cases:
        image, label = load_volume(case.image), load_volume(case.label)
        x = image.array.astype(np.float32)
        x1 = second_channel(x)
        if layout == "split":
            save_volume(Volume(x, image.affine), root / "imagesTr" / f"{case.case_id}_0000.nii.gz")
            save_volume(Volume(x1, image.affine), root / "imagesTr" / f"{case.case_id}_0001.nii.gz")
        elif layout == "4d":
            save_volume(Volume(np.stack([x, x1], axis=-1), image.affine), root / "imagesTr" / f"{case.case_id}.nii.gz")
        else:
            raise ValueError(f"layout {layout!r}: 'split' or '4d'")
        save_volume(label, root / "labelsTr" / f"{case.case_id}.nii.gz")
        training.append({"image": f"./imagesTr/{case.case_id}.nii.gz", "label": f"./labelsTr/{case.case_id}.nii.gz"})
    meta = {"name": "two channels (derived)", "labels": {"0": "background", "1": "Anterior", "2": "Posterior"}}
    if layout == "split":
        meta["channel_names"] = {"0": "MRI", "1": "MRI inverted (derived)"}
    else:
        meta.update(modality={"0": "MRI", "1": "MRI inverted (derived)"}, training=training)
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))
    return root


def write_slicer_segmentation(path, label, segments, *, layers=None) -> Path:
    """A 3D Slicer ``.seg.nrrd`` file written byte for byte as Slicer writes one (Slicer's developer guide,
    "Segmentation labelmap file format"; the fields slicerio reads): the label's voxels cropped to the extent of its
    segments (the origin moved there), LPS space, one ``SegmentN_`` block per segment with its ``Name``,
    ``LabelValue`` and ``Layer``.

    ``label``: a :class:`~medal.data.Volume` of label values; ``segments``: ``[(name, value in label, value in the
    file), ...]``; ``layers``: ``{name: layer}`` to store segments in separate layers (a 4D file whose first axis is
    the layer, as Slicer saves overlapping segments); default one layer (a 3D file).
    """
    import gzip as _gzip

    path = Path(path)
    arr = np.asarray(label.array)
    fg = np.isin(arr, [v for _, v, _ in segments])
    idx = np.argwhere(fg)
    lo, hi = idx.min(0), idx.max(0) + 1
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    crop = arr[box]
    n_layers = 1 + max((layers or {}).values(), default=0)
    out = np.zeros((n_layers, *crop.shape), np.uint8)
    for name, value, stored in segments:
        out[(layers or {}).get(name, 0)][crop == value] = stored
    affine = np.asarray(label.affine, dtype=np.float64)
    origin = affine[:3, :3] @ lo + affine[:3, 3]
    flip = np.array([-1.0, -1.0, 1.0])  # RAS -> LPS
    dirs = [tuple(flip * affine[:3, i]) for i in range(3)]
    fmt = lambda v: "(" + ",".join(f"{x:.10g}" for x in v) + ")"  # noqa: E731
    spatial = " ".join(fmt(d) for d in dirs)
    lines = ["NRRD0004", "# Complete NRRD file format specification at:",
             "# http://teem.sourceforge.net/nrrd/format.html", "type: unsigned char"]
    if n_layers > 1:
        lines += ["dimension: 4", "space: left-posterior-superior",
                  "sizes: " + " ".join(map(str, (n_layers, *crop.shape))),
                  "space directions: none " + spatial, "kinds: list domain domain domain"]
    else:
        lines += ["dimension: 3", "space: left-posterior-superior", "sizes: " + " ".join(map(str, crop.shape)),
                  "space directions: " + spatial, "kinds: domain domain domain"]
    lines += ["encoding: gzip", "space origin: " + fmt(flip * origin)]
    extent = " ".join(f"0 {n - 1}" for n in crop.shape)
    for i, (name, _, stored) in enumerate(segments):
        p = f"Segment{i}_"
        lines += [f"{p}Color:=0.5 0.5 0.5", f"{p}ColorAutoGenerated:=1", f"{p}Extent:={extent}",
                  f"{p}ID:=Segment_{i + 1}", f"{p}LabelValue:={stored}", f"{p}Layer:={(layers or {}).get(name, 0)}",
                  f"{p}Name:={name}", f"{p}NameAutoGenerated:=0", f"{p}Tags:=Segmentation.Status:inprogress|"]
    lines += ["Segmentation_ContainedRepresentationNames:=Binary labelmap|",
              "Segmentation_ConversionParameters:=", "Segmentation_MasterRepresentation:=Binary labelmap",
              "Segmentation_ReferenceImageExtentOffset:=" + " ".join(map(str, lo.tolist()))]
    # NRRD: the first axis varies fastest -> Fortran order of (layer, i, j, k)
    data = np.asfortranarray(out if n_layers > 1 else out[0]).tobytes(order="F")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(lines) + "\n\n").encode() + _gzip.compress(data))
    return path


def copy_cases(root, cases, *, image_of=None, label_of=None, meta: dict | None = None, source=None) -> Path:
    """Real ``cases`` of the dataset at ``source`` (default: the bundled sample) as a Decathlon folder ``root``: its
    ``dataset.json`` without the file lists, updated with ``meta``, and its LICENSE (the data's licence travels
    with it); each case's image as ``image_of(i, volume)`` returns it (default: copied as is) and its label as
    ``label_of(i, volume)`` returns it (default: copied as is; ``None``: no label file, write it yourself)."""
    import shutil

    from medal.data import load_volume, sample_dataset, save_volume

    root, source = Path(root), Path(source) if source is not None else sample_dataset()
    info = json.loads((source / "dataset.json").read_text())
    for key in ("training", "test"):
        info.pop(key, None)
    info.update(meta or {})
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text(json.dumps(info))
    shutil.copy(source / "LICENSE", root / "LICENSE")
    for i, c in enumerate(cases):
        if image_of is None:
            shutil.copy(c.image, root / "imagesTr" / c.image.name)
        else:
            save_volume(image_of(i, load_volume(c.image)), root / "imagesTr" / c.image.name)
        lab = load_volume(c.label) if label_of is not None else None
        out = label_of(i, lab) if label_of is not None else None
        if label_of is None:
            shutil.copy(c.label, root / "labelsTr" / c.label.name)
        elif out is not None:
            save_volume(out, root / "labelsTr" / c.image.name)
    return root


def write_dicom_series(folder, volume, *, modality: str = "MR", description: str = "T1", series_number: int = 1,
                       series_uid: str | None = None, rescale_intercept: float | None = None, positions=None,
                       image_type: str = "ORIGINAL\\PRIMARY\\AXIAL", shuffle: int | None = 0,
                       compressor: str | None = None, extra_tags: dict | None = None,
                       first_instance: int = 1) -> list[Path]:
    """``volume`` (a :class:`~medal.data.Volume` of integer values) as a DICOM series in ``folder``, one file per
    slice along its third array axis, as a scanner export stores it: ImagePositionPatient / ImageOrientationPatient
    in LPS, PixelSpacing, InstanceNumber, Modality, SeriesDescription, SeriesNumber, Series and Study Instance
    UIDs (``2.25.`` UUID-derived, from ``series_uid`` or the folder), a made-up PatientName ``MEDAL^TEST``.
    SimpleITK / GDCM write the files (``SimpleITK`` Examples/DicomSeriesFromArray).

    ``rescale_intercept``: stored with this RescaleIntercept (slope 1), as CT stores HU (-1024); ``positions``: the
    ImagePositionPatient (LPS mm) of each slice instead of the volume's (to make a missing slice or a gantry tilt);
    ``shuffle``: file names in a random order of this seed (exports rarely name files in slice order); ``None``:
    in slice order; ``compressor``: GDCM's pixel data compression (``"JPEG2000"``, ``"JPEG"``: lossless for
    integers, as PACS exports often store them); ``extra_tags``: further header fields (``{"0018|0086": "2"}``:
    EchoNumbers); ``first_instance``: the InstanceNumber of the first slice (and of its file name and SOP UID), so
    several volumes written with one ``series_uid`` (the echoes of one series) do not collide. Returns the files
    written."""
    import uuid

    import SimpleITK as sitk

    from medal.data.io import _itk_image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(volume.array)
    if not np.array_equal(arr, np.round(arr)):
        raise ValueError("write_dicom_series stores integers: round the volume first")
    img = _itk_image(volume.with_array(arr.astype(np.int16)))
    uid = series_uid or f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, str(folder.resolve()) + description).int}"
    study = (extra_tags or {}).get("0020|000d") or f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, uid + 'study').int}"
    # the series of one study share a frame of reference, as one session's do (extra_tags may set another)
    frame = f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, study + 'frame').int}"
    d = img.GetDirection()
    tags = [("0008|0060", modality), ("0008|103e", description), ("0020|0011", str(series_number)),
            ("0020|000e", uid), ("0020|000d", study), ("0020|0052", frame),
            ("0008|0008", image_type), ("0010|0010", "MEDAL^TEST"),
            ("0010|0020", "MEDALTEST01"), ("0008|0021", "20261207"), ("0008|0031", "120000"),
            ("0018|0050", f"{img.GetSpacing()[2]:.10g}"),
            ("0020|0037", "\\".join(f"{v:.10g}" for v in (d[0], d[3], d[6], d[1], d[4], d[7])))]
    if rescale_intercept is not None:
        tags += [("0028|1052", f"{rescale_intercept:g}"), ("0028|1053", "1")]
    tags += list((extra_tags or {}).items())
    n = img.GetDepth()
    order = np.random.default_rng(shuffle).permutation(n) if shuffle is not None else np.arange(n)
    from medal.data.dicom import keep_locale

    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    if compressor:
        writer.SetUseCompression(True)
        writer.SetCompressor(compressor)
    out = []
    with keep_locale():  # GDCM's writer sets the C locale (ASCII for Python's text I/O) and leaves it
        _write_slices(writer, img, tags, positions, order, uid, series_number, folder, out, first_instance)
    return out


def _write_slices(writer, img, tags, positions, order, uid, series_number, folder, out, first: int = 1) -> None:
    for k in range(img.GetDepth()):
        s = img[:, :, k]
        for key, value in tags:
            s.SetMetaData(key, value)
        pos = positions[k] if positions is not None else img.TransformIndexToPhysicalPoint((0, 0, k))
        s.SetMetaData("0020|0032", "\\".join(f"{v:.10g}" for v in pos))
        s.SetMetaData("0020|0013", str(k + first))
        s.SetMetaData("0008|0018", f"{uid}.{k + first}")
        path = folder / f"IM{series_number}_{int(order[k]) + first - 1:04d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(s)
        out.append(path)


def write_dicom_seg(path, series_files, label, segments, *, overlap_with: str | None = None) -> Path:
    """A DICOM SEG object (BINARY) at ``path`` for the series ``write_dicom_series`` wrote as ``series_files``, made
    by highdicom as annotation tools make one: frames derived from the series' instances, empty frames omitted.

    ``label``: a :class:`~medal.data.Volume` on the series' volume (``volume.array``'s voxel order);
    ``segments``: ``[(SegmentLabel, value in label), ...]``, numbered 1, 2, ... in that order;
    ``overlap_with``: also mark the voxels of this segment as the last segment's (an overlapping SEG)."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    sources = sorted((pydicom.dcmread(str(f)) for f in series_files), key=lambda d: int(d.InstanceNumber))
    arr = np.transpose(np.asarray(label.array), (2, 1, 0))  # (slice, row, column)
    masks = np.stack([arr == v for _, v in segments], axis=-1).astype(np.uint8)
    if overlap_with is not None:
        masks[..., -1] |= masks[..., [n for n, _ in segments].index(overlap_with)]
    descriptions = [hd.seg.SegmentDescription(segment_number=i + 1, segment_label=name,
                                              segmented_property_category=codes.SCT.Tissue,
                                              segmented_property_type=codes.SCT.Tissue,
                                              algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
                    for i, (name, _) in enumerate(segments)]
    seg = hd.seg.Segmentation(source_images=sources, pixel_array=masks,
                              segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                              segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=100,
                              sop_instance_uid=hd.UID(), instance_number=1, manufacturer="medal tests",
                              manufacturer_model_name="write_dicom_seg", software_versions="1",
                              device_serial_number="0", series_description="Segmentation")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(str(path))
    return path


def write_dicom_rtstruct(path, series_files, label, rois, *, extra: dict | None = None, hole: tuple | None = None,
                         shift_mm: float = 0.0) -> Path:
    """A DICOM RT Structure Set at ``path`` for the series ``write_dicom_series`` wrote as ``series_files``, as a
    planning system stores contours: per ROI and slice, closed planar polygons in patient coordinates (LPS mm)
    around the label's voxels (:func:`medal.data.dicom_rtstruct.slice_polygons`), each with a ContourImageSequence
    naming its slice's SOP instance; the series and frame of reference referenced.

    ``label``: a :class:`~medal.data.Volume` on the series' volume; ``rois``: ``[(ROIName, value in label), ...]``;
    ``extra``: ``{ROIName: boolean array}`` further ROIs (a BODY contour, overlapping the others);
    ``hole``: ``(ROIName, (i, j, k))``: also draw, for this ROI, a one-voxel square around that voxel as a further
    contour on its slice (a hole, by DICOM's inner-contour rule, where the voxel is inside the ROI's contour);
    ``shift_mm``: move every contour this far along the slice normal (off the image's slices)."""
    import pydicom

    from medal.data.dicom_rtstruct import slice_polygons, structure_set

    sources = sorted((pydicom.dcmread(str(f), stop_before_pixels=True) for f in series_files),
                     key=lambda d: int(d.InstanceNumber))
    arr = np.asarray(label.array)
    to_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ label.affine  # voxel index -> LPS mm
    shift = shift_mm * to_lps[:3, 2] / np.linalg.norm(to_lps[:3, 2])
    masks = [(name, arr == v) for name, v in rois] + list((extra or {}).items())
    out = []
    for name, mask in masks:
        polygons = [(k, xyz + shift) for k, xyz in slice_polygons(mask, label.affine)]
        if hole is not None and hole[0] == name:
            i, j, k = hole[1]
            square = np.array([[i - 0.5, j - 0.5, k, 1], [i - 0.5, j + 0.5, k, 1], [i + 0.5, j + 0.5, k, 1],
                               [i + 0.5, j - 0.5, k, 1]])
            polygons.append((k, (square @ to_lps.T)[:, :3]))
        out.append((name, polygons))
    ds = structure_set(sources, out, label="medal tests", description="RTSTRUCT", series_number=200)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def write_case_folders(root, cases, channels=("flair", "t1")) -> Path:
    """Real ``cases`` laid out as BraTS lays its cases out: ``root/<id>/<id>_<channel>.nii.gz`` per channel (the
    first the image as is, the others :func:`second_channel` of it) and ``<id>_seg.nii.gz``, ids ``Case_000``, ...
    (the layout ``medal dataset from-folders`` reads)."""
    import shutil

    from medal.data import load_volume, save_volume

    root = Path(root)
    for i, c in enumerate(cases):
        cid = f"Case_{i:03d}"
        (root / cid).mkdir(parents=True)
        img = load_volume(c.image)
        for k, name in enumerate(channels):
            channel = img if k == 0 else img.with_array(second_channel(img.array))
            save_volume(channel, root / cid / f"{cid}_{name}.nii.gz")
        shutil.copy(c.label, root / cid / f"{cid}_seg.nii.gz")
    return root

