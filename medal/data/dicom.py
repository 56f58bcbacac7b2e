"""DICOM series in, a dataset folder out: ``medal dataset from-dicom SRC DST``.

Scanners and PACS exports hand out DICOM: one file per slice, grouped into series by their Series Instance UID,
several series (a localizer, T1, T2, ...) per study, in folders named however the export named them. medal
trains on volumes, so each image series becomes one case, ``DST/imagesTr/<case>_0000.nii.gz`` (nnU-Net v2's
layout), with ``DST/dataset.json`` naming the channel by the series' modality (``CT`` -> ``"CT"``, which
``data.normalize: auto`` gives the CT window; ``MR`` -> ``"MRI"``) and ``DST/dicom_sources.json`` saying which
folder and series each case came from. No patient identifier is copied: NIfTI holds voxels and geometry only, and
the sources file names folders, series UIDs, numbers and descriptions.

Series are found with GDCM's scanner (SimpleITK's ``ImageSeriesReader.GetGDCMSeriesIDs``, every folder under
SRC; files of one series in several folders are one series) and read with SimpleITK, which applies the rescale
slope and intercept (CT in Hounsfield units). The geometry is checked from every file's header before anything
is read, because a reader that stacks slices in one direction at one spacing turns these into a wrong volume
without a word (the cases dcm2niix warns about: Li et al., "The first step for neuroimaging data analysis: DICOM
to NIfTI conversion", J Neurosci Methods 2016):

* slices not evenly spaced (a missing slice; spacing varying by more than 1% of its median, at least 0.01 mm);
* slices sheared along the image plane (CT gantry tilt: each slice's origin moves in its own plane);
* two images at one position that no header field tells apart (below);
* images of different sizes or orientations in one series;
* fewer than 3 slices (a localizer or a single 2D image), or ``ImageType`` marking a ``LOCALIZER``;
* non-image objects (``SR``, ``RTPLAN``, ...; SEG and RTSTRUCT objects are read as labels, below).

Several volumes stored in one series (multi-echo MR, diffusion b-values, dynamic time points, cardiac phases:
images at the same positions) are split as dcm2niix splits them, by the first of EchoNumbers, EchoTime,
DiffusionBValue (where it is empty, the b-value Siemens, GE or Philips keep in a private field:
:data:`~medal.data.dicom_series.PRIVATE_B_VALUE`), TemporalPositionIdentifier, TriggerTime and AcquisitionNumber
that every image has and that leaves each volume one image per position
(:func:`~medal.data.dicom_series.split_volumes`): each volume is its own case, ``<case>_echo1``, ``<case>_echo2``
(``b1000``, ``t3``, ...), its ``part`` recorded in the sources file. A SEG or RTSTRUCT on such a series labels
the volume whose images it names (its referenced instances, the slices its contours lie on); one naming images of
several volumes, or none, is one line.

Enhanced multi-frame images (Enhanced CT / MR, Legacy Converted Enhanced: one file holding every slice) are read
with highdicom from their per-frame positions (:func:`read_multiframe`), under the same evenly-spaced condition.
Each such series is skipped with one line saying why, and the others are converted (the command exits 1 when any
was skipped). ``--series`` keeps only series whose description matches a pattern (``*T2*``), ``--part`` only the
volumes of a split series whose part matches (``b1000``), ``--modality`` only one modality: an MRI study's T1 and
T2 are different inputs, not more cases of one. Integer-valued images are stored as ``int16`` where they fit (CT in
HU), others as ``float32``.

**Sequences as channels.** ``--channels PATTERN ...`` (:func:`group_channels`) makes one case per study
(StudyInstanceUID) whose input channels are the series matching each pattern, in order (``'*t2*' '*adc*'
'b1400'``: a pattern matches a description, or the part of a split series), as nnU-Net's multi-channel cases
(``_0000``, ``_0001``, ...; Isensee et al. 2021) and PI-CAI's T2 / ADC / high-b inputs (Saha et al. 2024). The
first channel is the image experts see, label and get SEGs on; another channel on a different grid is resampled
onto it in patient coordinates (SimpleITK, linear, its lowest value outside its field of view), as PI-CAI's
``picai_prep`` resamples ADC and high-b onto T2 (``Sample.resample_to_first_scan``; B-spline there, linear here: no
overshoot); one lying wholly outside it is an error. A study where a pattern matches no series, or several, is
one line; a SEG or RTSTRUCT drawn on a further channel's series (a lesion outlined on ADC) is read on that series
and placed on the first channel's grid by nearest neighbour. The patterns are recorded in ``dicom_sources.json``:
going on with other ``--channels`` (or none) is refused.

**Labels as DICOM SEG.** A SEG object (what OHIF, 3D Slicer's QuantitativeReporting or a PACS annotation tool
saves) found anywhere under SRC becomes ``labelsTr/<case>.nii.gz`` of the series it derives from (its Referenced
Series; the ``--series`` / ``--modality`` filters choose image series only, the SEGs of the kept ones come along).
Frames are matched to the series' slices by the instances they derive from (:func:`read_dicom_seg`, highdicom),
and each segment gets the value dataset.json gives its label (``--labels``, or an earlier conversion's), by name
and not by segment number (tools number segments in creation order); with no label names anywhere, the segment
labels found are numbered in order of first appearance. Several SEGs of one series (one per structure) are merged
where they agree. Overlapping segments, a segment named after no label, or frames that do not match the series are
one line naming the file; a ``labelsTr`` file not written from a SEG here (an expert's) is never replaced.

**Labels as RT Structure Sets.** An RTSTRUCT (the contours of a treatment planning system, or 3D Slicer's
SlicerRT) found anywhere under SRC becomes the labels of the series it refers to (its referenced series, else the
images its contours name) in the same way (:mod:`medal.data.dicom_rtstruct`): its closed polygons fill the voxels
whose centres they enclose, slice by slice, a polygon inside another being a hole. Only the ROIs named after a
label are kept (``--labels background GTV``; the others, ``BODY``, ``PTV``, ..., which overlap by design, are
listed as left out); without label names anywhere, every ROI is numbered in order of first appearance, so a
structure set with overlapping ROIs needs ``--labels``. Kept ROIs that overlap, and polygons oblique to the slices
or between them, are one line naming the file.

**Back to DICOM.** :func:`export_seg` (``medal dataset export-seg``) writes a case's labels or a model's prediction
as a DICOM SEG on the series the case came from (``dicom_sources.json``), so a PACS or a DICOM viewer shows them on
the original images; from-dicom reads such a SEG back voxel for voxel. With ``rtstruct=True`` (``--rtstruct``) it
writes an RT Structure Set instead, for a treatment planning system, which from-dicom reads back alike.

Converting into a folder that holds an earlier conversion (its ``dicom_sources.json``) goes on where it stopped:
a series already written there is not read again, nor a SEG already read; a folder holding anything else is
refused.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import numpy as np

from .dicom_rtstruct import read_rtstruct, rtstruct_targets
from .dicom_seg import _seg_targets, export_seg, read_dicom_seg, read_dicom_seg_volume
from .dicom_series import (CHANNEL_NAMES, SOURCES, DicomSeries, _first_line, check_geometry, find_series,
                           keep_locale, read_multiframe, read_series, source_instances, split_volumes)
from .errors import DatasetError
from .io import load_volume

__all__ = ["LABEL_MODALITIES", "DicomSeries", "case_names", "check_geometry", "export_seg", "find_series", "from_dicom",
           "keep_locale", "plan", "read_dicom_seg", "read_dicom_seg_volume", "read_multiframe", "read_rtstruct",
           "read_series", "rtstruct_targets", "source_instances", "split_volumes"]

#: series read as labels of an image series, not as images
LABEL_MODALITIES = ("SEG", "RTSTRUCT")


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9-]+", "_", text).strip("_")
    return s or "series"


def case_names(series: list[DicomSeries], src: Path) -> list[str]:
    """A case id per series: its folder under ``src`` (``a/b`` -> ``a_b``), with ``_s<series number>`` where one
    folder holds several kept series, and ``_<part>`` for one of several volumes of a series (``_echo2``,
    :func:`split_volumes`); distinct ignoring case (file systems that ignore it). The files are
    ``<id>_0000.nii.gz``, so an id ending in digits (``patient_0001``) is read back as itself."""
    src = Path(src)
    per_folder: dict[Path, set] = {}
    for s in series:
        per_folder.setdefault(s.folders[0], set()).add(s.uid)
    out, used = [], set()
    for k, s in enumerate(series):
        rel = s.folders[0].relative_to(src)
        base = _slug("_".join(rel.parts) if rel.parts else src.resolve().name)
        if len(per_folder[s.folders[0]]) > 1:
            base += f"_s{_slug(s.number) if s.number else k}"
        if s.part:
            base += f"_{_slug(s.part)}"
        name, n = base, 2
        while name.lower() in used:
            name, n = f"{base}_{n}", n + 1
        used.add(name.lower())
        out.append(name)
    return out


def _matches(s: DicomSeries, pattern: str | None, modality: str | None) -> bool:
    if modality and s.modality != modality.upper():
        return False
    if pattern:
        return fnmatch.fnmatch(s.description.lower(), pattern.lower())
    return True


def _pattern_texts(s: DicomSeries) -> list[str]:
    """What a ``--channels`` pattern is matched against: the description, and for one volume of a split series
    its part and ``<description> <part>``."""
    return [s.description] + ([s.part, f"{s.description} {s.part}"] if s.part else [])


def _series_text(s: DicomSeries) -> str:
    return repr(s.description) + (f" ({s.part})" if s.part else "")


def _other_frame(first: DicomSeries, other: DicomSeries) -> bool:
    """Whether two series say they lie in different frames of reference (FrameOfReferenceUID; PS3.3 C.7.4.1):
    their patient coordinates are then not known to match. A series without the field says nothing."""
    return bool(first.frame and other.frame and first.frame != other.frame)


def group_channels(series: list[DicomSeries], patterns, src, skipped: dict | None = None) -> list[DicomSeries]:
    """``--channels``: per study (StudyInstanceUID; its folder where a series has none), the series matching
    ``patterns[0]`` with the series matching each further pattern as its ``channels``, in order (a pattern matches
    a series' description, case ignored, or for one volume of a split series its part: ``b1000``). Returns the
    first channels' series; a study where a pattern matches no series or several is left out, one line in
    ``skipped`` (keyed by its folder) naming the pattern and the series there."""
    src = Path(src)
    studies: dict[str, list[DicomSeries]] = {}
    for s in series:
        studies.setdefault(s.study or f"folder:{s.folders[0]}", []).append(s)
    out = []
    for study, members in studies.items():
        chosen, problem = [], ""
        for k, pattern in enumerate(patterns):
            hits = [s for s in members if not s.obvious_skip()
                    and any(fnmatch.fnmatch(t.lower(), pattern.lower()) for t in _pattern_texts(s))]
            if len(hits) != 1:
                found = ", ".join(_series_text(s) for s in members) or "none"
                problem = (f"{'no series matches' if not hits else f'{len(hits)} series match'} --channels pattern "
                           f"{k + 1} {pattern!r} (series of this study: {found})")
                break
            if hits[0] in chosen:
                problem = (f"series {_series_text(hits[0])} matches --channels patterns "
                           f"{chosen.index(hits[0]) + 1} and {k + 1}")
                break
            chosen.append(hits[0])
        if problem:
            where = _where(members[0], src)
            msg = f"{where}: study {study.removeprefix('folder:')}: {problem}; left out"
            if skipped is not None:
                skipped[f"{where} (study)"] = msg
            continue
        first = chosen[0]
        first.channels = chosen[1:]
        out.append(first)
    return out


def plan(src, *, series: str | None = None, modality: str | None = None, found=None, channels=None,
         skipped: dict | None = None, part: str | None = None):
    """The image series under ``src`` that ``series`` (a pattern on the description, case ignored) and ``modality``
    keep, the case id each would get, and every DICOM SEG and RTSTRUCT series (labels, kept whatever the filters:
    they apply to the image series they refer to). ``part``: of series holding several volumes (echoes,
    b-values, time points: :func:`split_volumes`), keep the volumes whose part name matches (``b1000``, ``echo2``;
    series holding one volume are left out). With ``channels`` (patterns, :func:`group_channels`): one case
    per study, the series of its first channel with the others as its ``channels``; a study left out is a line in
    ``skipped``. A :class:`DatasetError` when no image series is found or none matches."""
    src = Path(src)
    found = find_series(src) if found is None else found
    segs = [s for s in found if s.modality in LABEL_MODALITIES]
    images = [s for s in found if s.modality not in LABEL_MODALITIES]
    if not images:
        raise DatasetError(f"{src}: no DICOM image series found (in it or any folder under it)", path=src)
    keep = [s for s in images if _matches(s, series, modality)]
    if not keep:
        kinds = sorted({f"{s.modality or '?'} {s.description!r}" for s in images})
        given = ", ".join(f"--{k} {v!r}" for k, v in (("series", series), ("modality", modality)) if v)
        raise DatasetError(f"{src}: no series matches {given}; found: " + "; ".join(kinds[:12]), path=src)
    keep = [p for s in keep for p in split_volumes(s)]
    if part:
        parts = sorted({s.part for s in keep if s.part})
        keep = [s for s in keep if s.part and fnmatch.fnmatch(s.part.lower(), part.lower())]
        if not keep:
            raise DatasetError(f"{src}: no volume matches --part {part!r}; " + (
                f"the kept series hold: {', '.join(parts[:20])}" if parts else
                "no kept series holds several volumes (echoes, b-values, time points)"), path=src)
    if channels:
        keep = group_channels(keep, list(channels), src, skipped)
        if not keep:
            raise DatasetError(f"{src}: no study has one series per --channels pattern "
                               f"({', '.join(repr(p) for p in channels)})" + (
                                   "; " + next(iter(skipped.values())) if skipped else ""), path=src)
    return keep, case_names(keep, src), segs


def from_dicom(src, dst, *, series: str | None = None, modality: str | None = None, labels=None, channels=None,
               part: str | None = None, log=print) -> dict:
    """Convert every image series under ``src`` into the dataset folder ``dst`` (see the module docstring), and
    every DICOM SEG or RTSTRUCT object referring to one of them into its ``labelsTr/<case>.nii.gz``.

    Returns ``{"written": [case ids], "labelled": [case ids], "skipped": {series or SEG: message}, "kept": [case
    ids already there]}``. ``labels``: label names, background first, written to ``dataset.json`` (``["background",
    "liver"]`` -> ``{"0": "background", "1": "liver"}``); without them and without labels in an earlier conversion's
    ``dataset.json``, the SEG objects' segment labels (RTSTRUCTs' ROI names) are numbered in order of first
    appearance."""
    import json

    from .atomic import atomic_write_json
    from .io import save_volume

    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise DatasetError(f"{dst}: inside the DICOM folder {src}; give from-dicom a folder elsewhere", path=dst)
    sources_path = dst / SOURCES
    done: dict = {}
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        if not sources_path.is_file():
            raise DatasetError(f"{dst}: exists, is not empty and holds no {SOURCES} (not an earlier conversion); "
                               "give from-dicom a new folder", path=dst)
        try:
            done = json.loads(sources_path.read_text(encoding="utf-8")).get("cases", {})
        except (ValueError, AttributeError):
            raise DatasetError(f"{sources_path}: not valid JSON; give from-dicom a new folder", path=sources_path) from None
    channels = [str(p) for p in channels] if channels else None
    try:
        before = json.loads(sources_path.read_text(encoding="utf-8")).get("channels") if done else None
    except ValueError:
        before = None
    if done and before != channels:
        raise DatasetError(f"{dst}: converted " + (f"with --channels {' '.join(repr(p) for p in before)}" if before
                                                   else "without --channels")
                           + "; give the same --channels to go on, or a new folder", path=dst)
    written, kept, labelled, skipped = [], [], [], {}
    keep, names, segs = plan(src, series=series, modality=modality, channels=channels, skipped=skipped, part=part)
    for why in skipped.values():
        log(f"SKIPPED {why}")
    by_uid = {(v.get("series_uid"), v.get("part", "")): k for k, v in done.items() if isinstance(v, dict)}
    cases = dict(done)
    # (series uid, part) -> series, of every case in dst after this run (part: one of several volumes of a series)
    converted: dict[tuple[str, str], DicomSeries] = {}
    save = lambda: atomic_write_json(sources_path, {"source": str(src.resolve()), "cases": cases,  # noqa: E731
                                                    **({"channels": channels} if channels else {})})
    for s, name in zip(keep, names):
        where = _where(s, src)
        label = f"{where} (series {s.number or '?'} {s.description!r}" + (f", {s.part})" if s.part else ")")
        key = (s.uid, s.part)
        if key in by_uid and all((dst / "imagesTr" / f"{by_uid[key]}_{k:04d}.nii.gz").is_file()
                                 for k in range(1 + len(s.channels))):
            kept.append(by_uid[key])
            converted[key] = s
            continue
        if name in cases:  # an id taken by another series in an earlier conversion
            base, n = name, 2
            while name in cases:
                name, n = f"{base}_{n}", n + 1
        try:
            vol = read_series(s, label)
            others = [_channel_on_grid(c, vol, f"{_where(c, src)} (series {c.number or '?'} {_series_text(c)}, "
                                             f"channel {k + 1} of {label})") for k, c in enumerate(s.channels, 1)]
        except DatasetError as exc:
            skipped[label] = str(exc)
            log(f"SKIPPED {exc}")
            continue
        # the first channel last: a re-run keeps a case once its _0000 is there
        for k, (other, _) in enumerate(others, 1):
            save_volume(other, dst / "imagesTr" / f"{name}_{k:04d}.nii.gz")
        save_volume(vol, dst / "imagesTr" / f"{name}_0000.nii.gz")
        n_images = s.frames if len(s.files) == 1 and s.frames > 1 else len(s.files)
        cases[name] = {"folder": where, "series_uid": s.uid, "series_number": s.number,
                       "description": s.description, "modality": s.modality, "images": n_images,
                       "shape": list(vol.shape), "spacing": [round(v, 6) for v in vol.spacing]}
        if s.part:
            cases[name]["part"] = s.part
        if s.channels:
            cases[name]["channels"] = [
                {"series_uid": c.uid, "series_number": c.number, "description": c.description, "modality": c.modality,
                 **({"part": c.part} if c.part else {}), "resampled": moved,
                 **({"other_frame_of_reference": True} if _other_frame(s, c) else {})}
                for c, (_, moved) in zip(s.channels, others)]
            for k, c in enumerate(s.channels, 1):
                if _other_frame(s, c):
                    log(f"NOTE: {name}: channel {k} {_series_text(c)} lies in another frame of reference than channel "
                        f"0 {_series_text(s)} (FrameOfReferenceUID): its patient coordinates need not match (the "
                        "patient may have moved between them) and medal does not register images; it was placed by "
                        "its coordinates as they are: check that the channels line up")
        converted[key] = s
        save()
        written.append(name)
        log(f"{name}: {label}, " + (f"{n_images} frames in one file" if n_images != len(s.files) else
                                    f"{n_images} images") + f" -> shape {vol.shape}, spacing "
            + "x".join(f"{v:.3g}" for v in vol.spacing) + " mm"
            + "".join(f"; channel {k} {_series_text(c)}" + (" resampled onto it" if moved else "")
                      for k, (c, (_, moved)) in enumerate(zip(s.channels, others), 1)))
    if not (written or kept):
        return {"written": written, "labelled": labelled, "skipped": skipped, "kept": kept}
    label_names = _label_names(dst, labels, segs)
    case_of = {(v["series_uid"], v.get("part", "")): k for k, v in cases.items()
               if isinstance(v, dict) and (v.get("series_uid"), v.get("part", "")) in converted}
    instances: dict[tuple[str, str], list[str]] = {}
    for s in segs:
        rt = s.modality == "RTSTRUCT"
        for path in s.files:
            where = f"{_where(s, src)}/{path.name} ({s.modality} {s.description!r})"
            try:
                images = set()
                if rt:
                    refs, _, sop, images = rtstruct_targets(path, where)
                else:
                    refs, _, sop, images = _seg_targets(path)
                keys = {k for k in converted if k[0] in refs}
                if images and (not refs or len(keys) > 1):
                    # no series listed (an RTSTRUCT may list none), or one split into several volumes: the volume
                    # whose slices its contours are drawn on / its frames derive from
                    candidates = keys or set(converted)
                    for k in candidates:
                        if k not in instances:
                            instances[k] = source_instances(converted[k])
                    keys = {k for k in candidates if images & set(instances[k])}
                    refs = refs or {k[0] for k in keys}
            except DatasetError as exc:
                skipped[where] = str(exc)
                log(f"SKIPPED {skipped[where]}")
                continue
            except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds on a damaged file
                skipped[where] = f"{where}: not a readable DICOM {s.modality} ({_first_line(exc)})"
                log(f"SKIPPED {skipped[where]}")
                continue
            targets = sorted({case_of[k] for k in keys if k in case_of})
            drawn_on = None  # labels drawn on a further channel's series: (that series, its channel number)
            if not targets:
                on = [(k, i, c) for k in converted if k in case_of for i, c in enumerate(converted[k].channels, 1)
                      if c.uid in refs]
                if len(on) == 1:
                    targets, drawn_on = [case_of[on[0][0]]], (on[0][2], on[0][1])
            if len(targets) != 1:
                if not any(u in {c.uid for k in keep for c in [k, *k.channels]} for u in refs) and (series or modality):
                    continue  # labels of a series the filters left out
                split = len({k[0] for k in keys}) == 1 and len(targets) > 1
                other = sorted(f"channel {i} of {case_of[k]}" for k in converted if k in case_of
                               for i, c in enumerate(converted[k].channels, 1) if c.uid in refs)
                if other and not targets:
                    skipped[where] = (f"{where}: labels the series of several channels ({', '.join(other)}); "
                                      "one SEG or RTSTRUCT per series")
                elif split:
                    skipped[where] = (f"{where}: refers to series {next(iter(refs))}, split here into "
                                      f"{', '.join(targets)} (several volumes in one series), and names no image of "
                                      "one of them alone")
                else:
                    skipped[where] = (f"{where}: refers to {'no converted series' if not targets else 'several series'}"
                                      f" ({', '.join(sorted(refs)) or 'no referenced series'})")
                log(f"SKIPPED {skipped[where]}")
                continue
            case = targets[0]
            entry = cases[case]
            if sop in entry.get("labels_from", []):
                continue  # read in an earlier run
            out_path = dst / "labelsTr" / f"{case}.nii.gz"
            try:
                if out_path.is_file() and not entry.get("labels_from"):
                    raise DatasetError(f"{where}: {out_path} exists and was not written from a SEG or RTSTRUCT "
                                       "here (an expert's labels?); left as it is", path=out_path)
                uid = (entry["series_uid"], entry.get("part", ""))
                image = _image_grid(dst, case)
                if drawn_on is not None:
                    arr = _labels_on_channel(path, rt, drawn_on, image, label_names, where, case, log)
                elif rt:
                    arr, left_out = read_rtstruct(path, image, label_names, where)
                    if left_out:
                        log(f"{case}: {where}: ROIs left out (not named after a label): {', '.join(left_out)}")
                elif len(converted[uid].files) == 1 and converted[uid].frames > 1:  # enhanced multi-frame image
                    arr = read_dicom_seg_volume(path, image, label_names, where)
                else:
                    if uid not in instances:
                        instances[uid] = source_instances(converted[uid])
                    arr = read_dicom_seg(path, instances[uid], label_names, where)
                if arr.shape != image.shape:
                    raise DatasetError(f"{where}: {arr.shape} voxels, its image {image.shape}", path=path)
                if out_path.is_file():  # a further SEG of this case (one per structure, say): merged where it agrees
                    old = load_volume(out_path).array
                    clash = (old != 0) & (arr != 0) & (old != arr)
                    if clash.any():
                        raise DatasetError(f"{where}: labels {int(clash.sum())} voxel(s) differently from the labels "
                                           "read before for this case; left out", path=path)
                    arr = np.where(arr != 0, arr, old).astype(np.uint8)
            except DatasetError as exc:
                skipped[where] = str(exc)
                log(f"SKIPPED {exc}")
                continue
            save_volume(image.with_array(arr), out_path)
            entry["labels_from"] = entry.get("labels_from", []) + [sop]
            save()
            labelled.append(case)
            values = sorted(int(v) for v in np.unique(arr) if v)
            log(f"{case}: labels from {where}: " + (", ".join(f"{label_names[v]}={v}" for v in values) or "empty"))
    _write_meta(dst, cases, label_names, log)
    return {"written": written, "labelled": sorted(set(labelled)), "skipped": skipped, "kept": kept}


def _labels_on_channel(path, rt: bool, drawn_on, image, label_names, where: str, case: str, log) -> np.ndarray:
    """Labels a SEG or RTSTRUCT at ``path`` draws on a case's further channel (``drawn_on``: its series and number),
    read on that series' own grid, then placed on the case's first channel (``image``) by nearest neighbour in
    patient coordinates, as picai_prep places labels with the scans it resamples onto the first one."""
    series, k = drawn_on
    grid = read_series(series, where)
    if rt:
        arr, left_out = read_rtstruct(path, grid, label_names, where)
        if left_out:
            log(f"{case}: {where}: ROIs left out (not named after a label): {', '.join(left_out)}")
    elif len(series.files) == 1 and series.frames > 1:
        arr = read_dicom_seg_volume(path, grid, label_names, where)
    else:
        arr = read_dicom_seg(path, source_instances(series), label_names, where)
    if arr.shape == image.shape and np.allclose(grid.affine, image.affine, atol=1e-3):
        return arr
    log(f"{case}: {where}: drawn on channel {k} ({series.description!r}), placed on the first channel's grid")
    return np.asarray(_onto(grid.with_array(np.asarray(arr, np.uint8)), image, labels=True).array, np.uint8)


def _onto(vol, ref, *, labels: bool, outside: float = 0.0):
    """``vol`` resampled onto ``ref``'s grid in patient coordinates (SimpleITK): nearest neighbour for ``labels``
    (uint8), else linear (float32), ``outside`` beyond its field of view."""
    import SimpleITK as sitk

    from .io import _itk_image, _volume_from_sitk

    kind, pixel = (sitk.sitkNearestNeighbor, sitk.sitkUInt8) if labels else (sitk.sitkLinear, sitk.sitkFloat32)
    return _volume_from_sitk(sitk.Resample(_itk_image(vol), _itk_image(ref), sitk.Transform(), kind, outside, pixel),
                             None)


def _channel_on_grid(series: DicomSeries, ref, name: str):
    """``(volume, resampled)``: ``series`` read, on ``ref``'s grid (the case's first channel): as it is where it
    lies on that grid already (same shape, affine within 1e-3 mm), else resampled onto it with linear interpolation
    in patient coordinates (SimpleITK), its lowest value outside its field of view: nnU-Net asks a case's channels
    to share one grid, and PI-CAI's ``picai_prep`` resamples ADC and high-b onto T2 alike
    (``resample_to_first_scan``)."""
    vol = read_series(series, name)
    if vol.shape == ref.shape and np.allclose(vol.affine, ref.affine, atol=1e-3):
        return vol, False
    arr = np.asarray(vol.array, dtype=np.float32)
    if not np.asarray(_onto(vol.with_array(np.ones(arr.shape, np.uint8)), ref, labels=True).array).any():
        raise DatasetError(f"{name}: lies outside the first channel's volume (another position or patient?)",
                           path=series.files[0])
    # outside its field of view: its lowest value (air in CT, background in MR), not a 0 that may be tissue
    return _onto(vol.with_array(arr), ref, labels=False, outside=float(arr.min())), True


def _where(s: DicomSeries, src: Path) -> str:
    return str(s.folders[0].relative_to(src)) if s.folders[0] != src else "."


def _image_grid(dst: Path, case: str):
    return load_volume(dst / "imagesTr" / f"{case}_0000.nii.gz")


def _label_names(dst: Path, labels, segs) -> dict[int, str]:
    """``{value: name}``: ``labels`` given, else an earlier conversion's ``dataset.json`` labels, else the SEG
    files' segment labels and RTSTRUCT files' ROI names numbered in order of first appearance (background 0)."""
    import json

    from .labels import parse_label_names

    if labels:
        return {v: str(n) for v, n in enumerate(labels)}
    meta_path = dst / "dataset.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if isinstance(meta.get("labels"), dict) and meta["labels"]:
                return parse_label_names(meta["labels"], source=str(meta_path))
        except ValueError:
            pass
    names: dict[int, str] = {0: "background"}
    seen = {"background"}
    for s in segs:
        for path in s.files:
            try:
                found = rtstruct_targets(path)[1] if s.modality == "RTSTRUCT" else _seg_targets(path)[1]
            except Exception:  # noqa: BLE001 - reported where the file is read
                continue
            for n in found:
                if n.strip().lower() not in seen:
                    seen.add(n.strip().lower())
                    names[len(names)] = n
    return names


def _channel_entry(case: dict, k: int) -> dict:
    """What ``dicom_sources.json`` says of a case's channel ``k`` (0: the case's own series)."""
    if k == 0:
        return case
    more = case.get("channels") or []
    return more[k - 1] if k - 1 < len(more) and isinstance(more[k - 1], dict) else {}


def _write_meta(dst: Path, cases: dict, label_names: dict[int, str], log) -> None:
    import json

    from .atomic import atomic_write_json

    meta_path = dst / "dataset.json"
    meta = {}
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except ValueError:
            meta = {}
    n_channels = max((1 + len(c.get("channels", [])) for c in cases.values() if isinstance(c, dict)), default=1)
    names = {}
    for k in range(n_channels):
        mods = sorted({_channel_entry(c, k).get("modality", "") for c in cases.values() if isinstance(c, dict)} - {""})
        if len(mods) == 1:
            names[str(k)] = CHANNEL_NAMES.get(mods[0], mods[0])
        else:
            names[str(k)] = "mixed (" + ", ".join(mods) + ")" if mods else "unknown"
            if len(mods) > 1:
                log(f"WARNING: series of {len(mods)} modalities ({', '.join(mods)}) as channel {k} of one dataset: "
                    "one network input for all of them; keep one with --modality (or --channels)")
    meta.setdefault("name", dst.resolve().name)
    meta.setdefault("description", "converted from DICOM by medal dataset from-dicom (sources: dicom_sources.json)")
    meta["channel_names"] = names
    if len(label_names) > 1:
        meta["labels"] = {str(v): str(n) for v, n in sorted(label_names.items())}
    meta["file_ending"] = ".nii.gz"
    meta["numTraining"] = len(cases)
    atomic_write_json(meta_path, meta)
