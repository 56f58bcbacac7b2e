"""DICOM SEG in and out: a SEG object as label values on the image series it derives from, and labels or a
model's prediction as a SEG on that series (highdicom: Herrmann et al., "Highdicom: a Python library for
standardized encoding of image annotations and machine learning model outputs in pathology and radiology",
J Digit Imaging 2022). Used by ``medal dataset from-dicom`` and ``medal dataset export-seg``
(:mod:`medal.data.dicom`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .dicom_series import (SOURCES, DicomSeries, _first_line, _from_highdicom, _headers, _to_highdicom,
                           check_geometry, find_series, split_volumes)
from .errors import DatasetError

__all__ = ["CODE_KEYS", "export_seg", "read_dicom_seg", "read_dicom_seg_volume", "read_segment_codes",
           "rt_observation", "segment_codes"]

_SIDES = {"left": "Left", "lt": "Left", "l": "Left", "right": "Right", "rt": "Right", "r": "Right"}
_SPELLING = {"tumour": "neoplasm", "tumor": "neoplasm", "tumours": "neoplasm", "tumors": "neoplasm",
             "oedema": "edema", "haemorrhage": "hemorrhage", "oesophagus": "esophagus", "lesions": "lesion",
             "kidneys": "kidney", "lungs": "lung"}
_ALIASES = {"UrinaryBladder": "Bladder", "Tumour": "Neoplasm", "Gtv": "Neoplasm"}  # GTV: gross tumour volume
_CODE_SETS: dict = {}


def _code_set(name: str) -> set:
    if name not in _CODE_SETS:
        from pydicom.sr.codedict import codes

        _CODE_SETS[name] = {k for k in dir(getattr(codes, name)) if k[:1].isupper()}
    return _CODE_SETS[name]


def segment_codes(name: str):
    """``(category, type, laterality or None)`` SNOMED CT codes for a segment named ``name``, as DICOM SEG's
    Segmented Property Category / Type (and Type Modifier) want them: the words of the name (``liver``,
    ``kidney_left``, ``LeftKidney``, ``tumour``) looked up among the concepts of DICOM's Segmentation Property Types
    (PS3.16 CID 7151; British spellings and tumour -> Neoplasm folded), the category Morphologically Abnormal
    Structure for a lesion type (CID 7159: neoplasm, cyst, edema, necrosis, ...), Tissue for a tissue (CID 7166),
    else Anatomical Structure; ``left`` / ``right`` become the laterality. A name matching no concept
    (``Anterior``) keeps the generic Anatomical Structure, as before: viewers show the SegmentLabel either way,
    and from-dicom reads segments back by that label."""
    import re

    from pydicom.sr.codedict import codes

    words = [w.lower() for w in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])", str(name))]
    side = None
    rest = []
    for w in words:
        if w in _SIDES and side is None and len(words) > 1:
            side = getattr(codes.SCT, _SIDES[w])
            continue
        rest.append(_SPELLING.get(w, w))
    key = "".join(w.capitalize() for w in rest)
    key = _ALIASES.get(key, key)
    if key in _code_set("cid7159"):
        return codes.SCT.MorphologicallyAbnormalStructure, getattr(codes.cid7159, key), side
    if key in _code_set("cid7166"):
        return codes.SCT.Tissue, getattr(codes.cid7166, key), side
    if key in _code_set("cid7151"):
        return codes.SCT.AnatomicalStructure, getattr(codes.cid7151, key), side
    return codes.SCT.AnatomicalStructure, codes.SCT.AnatomicalStructure, None


#: the keys of a segment's codes in a ``--codes`` file (dcmqi's segmentation metadata names them so)
CODE_KEYS = {"SegmentedPropertyCategoryCodeSequence": "category", "SegmentedPropertyTypeCodeSequence": "type",
             "SegmentedPropertyTypeModifierCodeSequence": "modifier"}


def read_segment_codes(path, label_names: dict[int, str]) -> dict[int, tuple]:
    """The segment codes a JSON file gives, per label value: ``{label: {"SegmentedPropertyTypeCodeSequence":
    {"CodeValue": ..., "CodingSchemeDesignator": ..., "CodeMeaning": ...}, ...}}`` with a label given by its value
    (``"1"``) or its name (``"liver"``, case ignored), the type required, the category (default Anatomical
    Structure) and a type modifier (laterality) optional, each item as dcmqi's segmentation metadata writes it.
    Returns ``{value: (category, type, modifier or None)}`` as :func:`segment_codes` does; a label the file does
    not name keeps the codes its name gives. Anything else is one line naming the file and the key."""
    import json

    from pydicom.sr.coding import Code
    from pydicom.sr.codedict import codes

    path = Path(path)
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read the codes file ({exc.strerror or exc})", path=path) from None
    except ValueError as exc:
        raise DatasetError(f"{path}: not valid JSON ({_first_line(exc)})", path=path) from None
    if not isinstance(spec, dict):
        raise DatasetError(f"{path}: expected an object of labels, got {type(spec).__name__}", path=path)
    by_name = {str(n).lower(): v for v, n in label_names.items() if v}
    out: dict[int, tuple] = {}
    for key, item in spec.items():
        value = int(key) if str(key).isdigit() and int(key) in label_names and int(key) else by_name.get(
            str(key).lower())
        if value is None:
            raise DatasetError(f"{path}: {key!r} is no label of the dataset (its labels: "
                               + ", ".join(f"{v} {n}" for v, n in sorted(label_names.items()) if v) + ")", path=path)
        if value in out:
            raise DatasetError(f"{path}: label {value} is given twice (by value and by name)", path=path)
        if not isinstance(item, dict) or not set(item) <= set(CODE_KEYS):
            extra = sorted(set(item) - set(CODE_KEYS)) if isinstance(item, dict) else item
            raise DatasetError(f"{path}: {key}: expected an object with {', '.join(CODE_KEYS)}, got {extra!r}",
                               path=path)
        got = {}
        for k, role in CODE_KEYS.items():
            c = item.get(k)
            if isinstance(c, list) and len(c) == 1:  # a sequence of one item, as DICOM JSON writes it
                c = c[0]
            if c is None:
                continue
            fields = ("CodeValue", "CodingSchemeDesignator", "CodeMeaning")
            if not isinstance(c, dict) or any(not isinstance(c.get(f), str) or not c.get(f).strip() for f in fields):
                raise DatasetError(f"{path}: {key}.{k}: needs CodeValue, CodingSchemeDesignator and CodeMeaning "
                                   f"as text, got {c!r}", path=path)
            got[role] = Code(c["CodeValue"].strip(), c["CodingSchemeDesignator"].strip(), c["CodeMeaning"].strip())
        if "type" not in got:
            raise DatasetError(f"{path}: {key}: SegmentedPropertyTypeCodeSequence is required", path=path)
        out[value] = (got.get("category", codes.SCT.AnatomicalStructure), got["type"], got.get("modifier"))
    return out


def read_dicom_seg(path, source_uids: list[str], label_names: dict[int, str], name: str) -> np.ndarray:
    """The DICOM SEG object at ``path`` as label values on its image series' slices, shape ``(columns, rows,
    slices)`` as :func:`read_series` orders the image's voxels.

    Read with highdicom (Herrmann et al., "Highdicom: a Python library for standardized encoding of image
    annotations and machine learning model outputs in pathology and radiology", J Digit Imaging 2022): the frames
    are matched to the image's slices by the SOP Instance UIDs they derive from (``source_uids``, in slice order;
    slices with no frame hold no segment, as SEG writers omit empty frames). Each segment gets the value
    ``label_names`` gives its label (``SegmentLabel``, case ignored); a FRACTIONAL segment counts where it is above
    0.5. Overlapping segments or a segment named after no label are one line naming the file."""
    import highdicom as hd

    try:
        seg = hd.seg.segread(str(path))
    except Exception as exc:  # noqa: BLE001 - pydicom / highdicom raise many kinds on a damaged file
        raise DatasetError(f"{name}: not a readable DICOM SEG ({_first_line(exc)})", path=path) from None
    segments, by_name = _segments(seg, label_names, name, path)
    try:
        px = seg.get_pixels_by_source_instance(source_uids, segment_numbers=[n for n, _ in segments],
                                               combine_segments=False, assert_missing_frames_are_empty=True)
    except (ValueError, KeyError, RuntimeError, AttributeError) as exc:
        raise DatasetError(f"{name}: its frames do not match the image series' slices ({_first_line(exc)})",
                           path=path) from None
    if px.ndim != 4 or px.shape[0] != len(source_uids):
        raise DatasetError(f"{name}: unexpected SEG pixel array {px.shape}", path=path)
    out = np.zeros(px.shape[:3], np.uint8)
    owner = np.full(px.shape[:3], -1, np.int16)
    for j, (_, label) in enumerate(segments):
        mask = px[..., j] > (0.5 if np.issubdtype(px.dtype, np.floating) else 0)
        clash = mask & (owner >= 0)
        if clash.any():
            raise DatasetError(f"{name}: segments {segments[int(owner[clash][0])][1]!r} and {label!r} overlap in "
                               f"{int(clash.sum())} voxel(s); a label file holds one label per voxel", path=path)
        out[mask] = by_name[label.strip().lower()]
        owner[mask] = j
    return np.ascontiguousarray(np.transpose(out, (2, 1, 0)))


def _segments(seg, label_names: dict[int, str], name: str, path) -> tuple[list[tuple[int, str]], dict[str, int]]:
    """A SEG's ``[(segment number, label)]`` and ``{label lowercased: value}``; a label dataset.json lacks is an
    error naming the file."""
    segments = [(int(d.SegmentNumber), str(getattr(d, "SegmentLabel", f"segment {d.SegmentNumber}")))
                for d in seg.SegmentSequence]
    by_name = {v.strip().lower(): k for k, v in label_names.items() if k != 0}
    for _, label in segments:
        if label.strip().lower() not in by_name:
            raise DatasetError(f"{name}: segment {label!r} is not a label in dataset.json ("
                               + ", ".join(f"{k}={v}" for k, v in sorted(label_names.items()))
                               + "): give its name in --labels", path=path)
    return segments, by_name


def read_dicom_seg_volume(path, image, label_names: dict[int, str], name: str) -> np.ndarray:
    """A DICOM SEG on an enhanced multi-frame image, as label values on ``image``'s grid: read by geometry (the
    frames' plane positions, highdicom's ``get_volume``) and placed on the image's voxels as any label file is
    (:func:`medal.data.validate.label_on_grid`: another axis order, or only the frames that hold a segment)."""
    import highdicom as hd

    from .io import Volume
    from .validate import label_on_grid

    try:
        seg = hd.seg.segread(str(path))
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(f"{name}: not a readable DICOM SEG ({_first_line(exc)})", path=path) from None
    segments, by_name = _segments(seg, label_names, name, path)
    try:
        vol = seg.get_volume(combine_segments=True, relabel=False)
    except Exception as exc:  # noqa: BLE001 - highdicom raises on overlaps and irregular frames alike
        text = _first_line(exc)
        what = "segments overlap" if "overlap" in text.lower() else "its frames make no regular volume"
        raise DatasetError(f"{name}: {what} ({text})", path=path) from None
    numbers = _from_highdicom(vol)
    lut = np.zeros(int(max([n for n, _ in segments] + [0])) + 1, np.uint8)
    for n, label in segments:
        lut[n] = by_name[label.strip().lower()]
    values = Volume(lut[numbers.array.astype(np.int64)], numbers.affine)
    placed, _ = label_on_grid(values, image.shape, image.affine, name, outside=0)
    return np.asarray(placed.array, np.uint8)


def _seg_targets(path) -> tuple[set[str], list[str], str, set[str]]:
    """The series UIDs a SEG file derives from, its segment labels in segment order, its SOP Instance UID, and the
    SOP Instance UIDs of the images it lists under them (ReferencedInstanceSequence; empty where it lists none)."""
    import pydicom

    ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    series = getattr(ds, "ReferencedSeriesSequence", [])
    uids = {str(s.SeriesInstanceUID) for s in series}
    images = {str(r.ReferencedSOPInstanceUID) for s in series for r in getattr(s, "ReferencedInstanceSequence", [])}
    labels = [str(getattr(d, "SegmentLabel", f"segment {d.SegmentNumber}"))
              for d in sorted(getattr(ds, "SegmentSequence", []), key=lambda d: int(d.SegmentNumber))]
    return uids, labels, str(ds.SOPInstanceUID), images


def _source_datasets(series: DicomSeries) -> list:
    """The pydicom datasets (no pixel data) of ``series``' files in slice order (:func:`source_instances`')."""
    import pydicom

    headers = _headers(series)
    order, _ = check_geometry(headers, series.files, str(series.folders[0]))
    return [pydicom.dcmread(str(series.files[i]), stop_before_pixels=True) for i in order]


def _label_file(folder: Path, case: str) -> Path | None:
    """``folder/<case>.nii.gz`` (a labels folder) or ``folder/<case>/prediction.nii.gz`` (``medal score``'s)."""
    for p in (folder / f"{case}.nii.gz", folder / case / "prediction.nii.gz", folder / "scores" / case / "prediction.nii.gz"):
        if p.is_file():
            return p
    return None


def export_seg(dataset_root, labels, out, *, dicom_root=None, automatic: bool = False, rtstruct: bool = False,
               codes=None, log=print) -> dict:
    """Each case of a dataset ``from-dicom`` made, whose label or prediction is in ``labels``, as a DICOM SEG object
    ``out/<case>.dcm`` on its source series, for a PACS or a DICOM viewer (OHIF, 3D Slicer): one segment per label
    value present (named by dataset.json), frames derived from the series' instances (highdicom; empty frames
    omitted). 255 (not annotated) is in no segment. ``automatic``: a model's prediction (SegmentAlgorithmType
    AUTOMATIC, algorithm "medal"), else an expert's labels (MANUAL). ``dicom_root``: where the export lies now, if
    it moved since the conversion (``dicom_sources.json`` holds the folders relative to it). ``rtstruct``: an RT
    Structure Set instead (one ROI per label value, closed contours around its voxels on each slice:
    :func:`~medal.data.dicom_rtstruct.slice_polygons`), for a treatment planning system; series of single-slice
    files only. ``codes``: a JSON file of segment codes per label (:func:`read_segment_codes`), for the labels whose
    names give no concept or the wrong one (in an RT structure set, the ROI's identification code).

    Returns ``{"written": [case ids], "skipped": {case: message}}``; a case without a label file is not listed."""
    import json

    from .dataset import load_dataset
    from .io import load_volume
    from .loading import load_label

    dataset_root, labels, out = Path(dataset_root), Path(labels), Path(out)
    sources_path = dataset_root / SOURCES
    if not sources_path.is_file():
        raise DatasetError(f"{dataset_root}: no {SOURCES}: export-seg writes SEGs for datasets `medal dataset "
                           "from-dicom` made (it needs each case's source series)", path=dataset_root)
    try:
        sources = json.loads(sources_path.read_text(encoding="utf-8"))
    except ValueError:
        raise DatasetError(f"{sources_path}: not valid JSON", path=sources_path) from None
    root = Path(dicom_root) if dicom_root is not None else Path(sources.get("source", ""))
    if not root.is_dir():
        raise DatasetError(f"{root}: the DICOM export is not there; give its folder with --dicom", path=root)
    ds = load_dataset(dataset_root)
    names = ds.label_map.names
    coded = read_segment_codes(codes, names) if codes is not None else {}
    written, skipped = [], {}
    series_by_folder: dict[str, list[DicomSeries]] = {}
    for case in ds.cases:
        path = _label_file(labels, case.case_id)
        entry = sources.get("cases", {}).get(case.case_id)
        if path is None or not isinstance(entry, dict):
            continue
        try:
            folder = root / entry["folder"]
            if entry["folder"] not in series_by_folder:
                series_by_folder[entry["folder"]] = find_series(folder) if folder.is_dir() else []
            part = entry.get("part", "")  # one volume of a series holding several (split_volumes)
            match = [p for s in series_by_folder[entry["folder"]] if s.uid == entry["series_uid"]
                     for p in (split_volumes(s) if part else [s]) if p.part == part]
            if not match:
                raise DatasetError(f"{case.case_id}: its series {entry['series_uid']} is not in {folder} any more",
                                   path=folder)
            image = load_volume(case.image)
            lab, _ = load_label(path, image, str(path), outside=0)
            arr = np.asarray(lab.array).copy()
            arr[arr == 255] = 0  # not annotated: in no segment
            values = [int(v) for v in np.unique(arr) if v]
            if not values:
                raise DatasetError(f"{path}: no label value but background: nothing to put in a "
                                   f"{'structure set' if rtstruct else 'SEG'}", path=path)
            write = _write_rtstruct if rtstruct else _write_seg
            write(match[0], image.with_array(arr), values, names, automatic, out / f"{case.case_id}.dcm", case.case_id,
                  coded)
        except DatasetError as exc:
            skipped[case.case_id] = str(exc)
            log(f"SKIPPED {exc}")
            continue
        except (ValueError, AttributeError, KeyError) as exc:  # highdicom's checks of the source series
            skipped[case.case_id] = (f"{case.case_id}: no {'structure set' if rtstruct else 'SEG'} could be made "
                                     f"on its series ({_first_line(exc)})")
            log(f"SKIPPED {skipped[case.case_id]}")
            continue
        written.append(case.case_id)
        log(f"{case.case_id}: {out / (case.case_id + '.dcm')} ("
            + ", ".join(f"{names.get(v, v)}" for v in values) + ")")
    return {"written": written, "skipped": skipped}


def _write_seg(series: DicomSeries, labels, values, names, automatic: bool, path: Path, case: str,
               coded: dict | None = None) -> None:
    """``labels`` (a Volume on the case's image) as a SEG on ``series``: one segment per value in ``values``, coded
    as ``coded`` gives (:func:`read_segment_codes`) or as its name does (:func:`segment_codes`)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from medal import __version__

    from .atomic import atomic_path

    arr = np.asarray(labels.array)
    if len(series.files) == 1 and series.frames > 1:  # an enhanced multi-frame image: frames placed by geometry
        import pydicom

        sources_ds = [pydicom.dcmread(str(series.files[0]))]
        numbers = np.zeros(arr.shape, np.uint8)
        for i, v in enumerate(values):
            numbers[arr == v] = i + 1
        masks = _to_highdicom(labels.with_array(numbers), sources_ds[0].FrameOfReferenceUID)
    else:
        sources_ds = _source_datasets(series)
        frames = np.transpose(arr, (2, 1, 0))  # (slice, row, column) in the series' slice order
        masks = np.stack([frames == v for v in values], axis=-1).astype(np.uint8)
    algorithm = (hd.AlgorithmIdentificationSequence(name="medal", version=__version__,
                                                    family=codes.cid7162.ArtificialIntelligence)
                 if automatic else None)
    descriptions = []
    for i, v in enumerate(values):
        label = str(names.get(v, f"label {v}"))
        category, kind, side = (coded or {}).get(v) or segment_codes(label)
        d = hd.seg.SegmentDescription(
            segment_number=i + 1, segment_label=label, segmented_property_category=category,
            segmented_property_type=kind,
            algorithm_type=(hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC if automatic
                            else hd.seg.SegmentAlgorithmTypeValues.MANUAL),
            algorithm_identification=algorithm)
        if side is not None:  # (0062,0011) inside the type's item: "Kidney" modified by "Left"
            d.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [hd.sr.CodedConcept(
                side.value, side.scheme_designator, side.meaning)]
        descriptions.append(d)
    seg = hd.seg.Segmentation(
        source_images=sources_ds, pixel_array=masks, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=9000,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="medal",
        manufacturer_model_name="medal", software_versions=__version__, device_serial_number="0",
        series_description=("medal prediction" if automatic else "medal labels"))
    with atomic_path(path) as tmp:
        seg.save_as(str(tmp))


#: RT ROI Interpreted Types (PS3.3 C.8.8.8, defined terms) a label's name says outright (``GTV``, ``ptv_high``)
_RT_TYPES = {"gtv": "GTV", "ctv": "CTV", "ptv": "PTV", "external": "EXTERNAL", "body": "EXTERNAL"}


def rt_observation(name: str, coded=None) -> tuple:
    """``(RTROIInterpretedType, code or None)`` for an RT structure set's ROI named ``name``: a planning volume or
    the body outline its name says (``GTV``, ``CTV_1``, ``PTV high``, ``External``, ``body``), ORGAN for an
    anatomical concept (:func:`segment_codes`: Kidney, Liver, Hippocampus), else empty (unknown: a lesion is not
    a planning volume until a planner says so); the code is ``coded`` (a :func:`read_segment_codes` entry) or the
    concept the name gives, ``None`` for a name that is no concept."""
    import re

    from pydicom.sr.codedict import codes

    words = [w.lower() for w in re.findall(r"[A-Za-z]+", str(name))]
    kind = next((_RT_TYPES[w] for w in words if w in _RT_TYPES), None)
    category, concept, _ = coded if coded is not None else segment_codes(name)
    generic = concept == codes.SCT.AnatomicalStructure
    if kind is None:
        kind = "ORGAN" if category == codes.SCT.AnatomicalStructure and not generic else ""
    return kind, None if generic else concept


def _write_rtstruct(series: DicomSeries, labels, values, names, automatic: bool, path: Path, case: str,
                    coded: dict | None = None) -> None:
    """``labels`` (a Volume on the case's image) as an RT Structure Set on ``series``: one ROI per value, typed and
    coded by :func:`rt_observation`."""
    from .atomic import atomic_path
    from .dicom_rtstruct import slice_polygons, structure_set

    if len(series.files) == 1 and series.frames > 1:
        raise DatasetError(f"{case}: its series is one enhanced multi-frame file; an RT structure set names one "
                           "image per slice: export it as a SEG (without --rtstruct)", path=series.files[0])
    arr = np.asarray(labels.array)
    rois = [(str(names.get(v, f"label {v}")), slice_polygons(arr == v, labels.affine)) for v in values]
    ds = structure_set(_source_datasets(series), rois, automatic=automatic,
                       description="medal prediction" if automatic else "medal labels",
                       observations=[rt_observation(name, (coded or {}).get(v)) for (name, _), v in zip(rois, values)])
    with atomic_path(path) as tmp:
        ds.save_as(str(tmp), enforce_file_format=True)
