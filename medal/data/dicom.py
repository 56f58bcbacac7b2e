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
* two images at one position (echoes, phases or time points stored in one series);
* images of different sizes or orientations in one series;
* fewer than 3 slices (a localizer or a single 2D image), or ``ImageType`` marking a ``LOCALIZER``;
* non-image objects (``RTSTRUCT`` contours, ``SR``, ...).

Enhanced multi-frame images (Enhanced CT / MR, Legacy Converted Enhanced: one file holding every slice) are read
with highdicom from their per-frame positions (:func:`read_multiframe`), under the same evenly-spaced condition.
Each such series is skipped with one line saying why, and the others are converted (the command exits 1 when any
was skipped). ``--series`` keeps only series whose description matches a pattern (``*T2*``), ``--modality`` only
one modality: an MRI study's T1 and T2 are different inputs, not more cases of one. Integer-valued images are
stored as ``int16`` where they fit (CT in HU), others as ``float32``.

**Labels as DICOM SEG.** A SEG object (what OHIF, 3D Slicer's QuantitativeReporting or a PACS annotation tool
saves) found anywhere under SRC becomes ``labelsTr/<case>.nii.gz`` of the series it derives from (its Referenced
Series; the ``--series`` / ``--modality`` filters choose image series only, the SEGs of the kept ones come along).
Frames are matched to the series' slices by the instances they derive from (:func:`read_dicom_seg`, highdicom),
and each segment gets the value dataset.json gives its label (``--labels``, or an earlier conversion's), by name
and not by segment number (tools number segments in creation order); with no label names anywhere, the segment
labels found are numbered in order of first appearance. Several SEGs of one series (one per structure) are merged
where they agree. Overlapping segments, a segment named after no label, or frames that do not match the series are
one line naming the file; a ``labelsTr`` file not written from a SEG here (an expert's) is never replaced.

**Back to DICOM.** :func:`export_seg` (``medal dataset export-seg``) writes a case's labels or a model's prediction
as a DICOM SEG on the series the case came from (``dicom_sources.json``), so a PACS or a DICOM viewer shows them on
the original images; from-dicom reads such a SEG back voxel for voxel.

Converting into a folder that holds an earlier conversion (its ``dicom_sources.json``) goes on where it stopped:
a series already written there is not read again, nor a SEG already read; a folder holding anything else is
refused.
"""

from __future__ import annotations

import fnmatch
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DatasetError

__all__ = ["DicomSeries", "case_names", "check_geometry", "export_seg", "find_series", "from_dicom", "plan",
           "read_dicom_seg", "read_dicom_seg_volume", "read_multiframe",
           "read_series", "source_instances"]

#: modality codes (0008,0060) that hold no image to train on
NON_IMAGE = {"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "SR", "PR", "KO", "REG", "DOC", "ECG", "AU",
             "PLAN", "FID", "RWV"}
#: dataset.json channel names for modality codes (nnU-Net's "CT" picks the CT window; the rest z-score)
CHANNEL_NAMES = {"CT": "CT", "MR": "MRI", "PT": "PET", "NM": "NM", "US": "US", "CR": "CR", "DX": "DX"}
SOURCES = "dicom_sources.json"
MIN_SLICES = 3

_TAGS = {"uid": "0020|000e", "modality": "0008|0060", "description": "0008|103e", "number": "0020|0011",
         "position": "0020|0032", "orientation": "0020|0037", "image_type": "0008|0008", "frames": "0028|0008",
         "rows": "0028|0010", "columns": "0028|0011", "instance": "0020|0013", "sop": "0008|0018",
         "slope": "0028|1053", "intercept": "0028|1052"}


@dataclass
class DicomSeries:
    """One series: its UID, files (in the order GDCM found them) and header fields of its first file."""

    uid: str
    files: list[Path] = field(default_factory=list)
    modality: str = ""
    description: str = ""
    number: str = ""
    image_type: str = ""
    frames: int = 1  # frames in the first file (an enhanced multi-frame image holds its slices in one file)

    def obvious_skip(self) -> str:
        """Why the series will not be converted, where its first header says so already ("" otherwise)."""
        if self.modality == "RTSTRUCT" or self.modality in NON_IMAGE:
            return f"a {self.modality} object"
        if "LOCALIZER" in self.image_type.upper().split("\\"):
            return "a localizer"
        if len(self.files) < MIN_SLICES and not (len(self.files) == 1 and self.frames > 1):
            return f"{len(self.files)} image(s), not a volume"
        return ""

    @property
    def folders(self) -> list[Path]:
        return sorted({f.parent for f in self.files})


@contextmanager
def keep_locale():
    """Run GDCM without leaving its locale behind: its DICOM writer (and possibly other paths) calls
    ``setlocale(LC_ALL, "C")`` for number formatting, after which Python's preferred encoding in the calling process
    is ASCII (``subprocess.run(text=True)``, ``open()`` without an encoding). ITK's warnings are off meanwhile: the
    series scanner warns on stderr for every folder that holds no DICOM, and every check it would warn about
    (uneven slices) is made here and said in medal's words."""
    import locale

    import SimpleITK as sitk

    saved = locale.setlocale(locale.LC_ALL)
    warn = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)  # "No Series were found" for every folder without DICOM
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(warn)
        if locale.setlocale(locale.LC_ALL) != saved:
            locale.setlocale(locale.LC_ALL, saved)


def _reader():
    import SimpleITK as sitk

    r = sitk.ImageFileReader()
    r.SetImageIO("GDCMImageIO")
    return r


def _header(path: Path) -> dict[str, str]:
    """The tags of :data:`_TAGS` in ``path``'s header ("" where absent)."""
    r = _reader()
    r.SetFileName(str(path))
    try:
        with keep_locale():
            r.ReadImageInformation()
    except RuntimeError as exc:
        raise DatasetError(f"{path}: not a readable DICOM image ({_first_line(exc)})", path=path) from None
    keys = set(r.GetMetaDataKeys())
    out = {k: (r.GetMetaData(t).strip() if t in keys else "") for k, t in _TAGS.items()}
    out["size"] = tuple(int(s) for s in r.GetSize())
    return out


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # ITK's messages start with file:line and the exception class: its last line is the description
    return lines[-1] if lines else type(exc).__name__


def find_series(src) -> list[DicomSeries]:
    """Every DICOM series under ``src`` (all folders), in order of first folder, then series number."""
    import SimpleITK as sitk

    src = Path(src)
    if not src.is_dir():
        raise DatasetError(f"{src}: not a folder", path=src)
    found: dict[str, DicomSeries] = {}
    with keep_locale():
        for folder, dirs, files in os.walk(src):
            dirs.sort()
            if not files:
                continue
            for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder):
                names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid)
                s = found.setdefault(uid, DicomSeries(uid))
                s.files += [Path(n) for n in names]
    out = list(found.values())
    for s in out:
        try:
            h = _header(s.files[0])
            s.modality, s.description, s.number = h["modality"].upper(), h["description"], h["number"]
            s.image_type = h["image_type"]
            s.frames = int(h["frames"]) if h["frames"].isdigit() else 1
        except DatasetError:
            pass
    folders = {f: i for i, f in enumerate(dict.fromkeys(s.folders[0] for s in out))}
    number = lambda s: int(s.number) if s.number.lstrip("-").isdigit() else 10**9  # noqa: E731
    return sorted(out, key=lambda s: (folders[s.folders[0]], number(s), s.description, s.uid))


def _floats(text: str, n: int, what: str, path: Path) -> np.ndarray:
    try:
        v = np.array([float(x) for x in text.replace(" ", "").split("\\") if x != ""], dtype=np.float64)
    except ValueError:
        v = np.zeros(0)
    if v.size != n:
        raise DatasetError(f"{path}: no valid {what} in its header (got {text!r})", path=path)
    return v


def check_geometry(headers: list[dict], paths: list[Path], name: str) -> tuple[list[int], float]:
    """The order of ``paths`` along the slice normal and the slice spacing, or a :class:`DatasetError` naming
    ``name`` when the files do not make one evenly spaced, unsheared volume (see the module docstring)."""
    if len(headers) < MIN_SLICES:
        raise DatasetError(f"{name}: only {len(headers)} image(s), not a volume (a localizer or a 2D image?)",
                           path=paths[0])
    if "LOCALIZER" in headers[0]["image_type"].upper().split("\\"):
        raise DatasetError(f"{name}: a localizer (ImageType {headers[0]['image_type']}), not a volume", path=paths[0])
    sizes = {h["size"][:2] for h in headers}
    if len(sizes) > 1:
        raise DatasetError(f"{name}: images of different sizes in one series ({sorted(sizes)})", path=paths[0])
    iop = [_floats(h["orientation"], 6, "image orientation (0020,0037)", p) for h, p in zip(headers, paths)]
    if max(np.abs(o - iop[0]).max() for o in iop) > 1e-4:
        raise DatasetError(f"{name}: images of different orientations in one series", path=paths[0])
    row, col = iop[0][:3], iop[0][3:]
    normal = np.cross(row, col)
    pos = np.stack([_floats(h["position"], 3, "image position (0020,0032)", p) for h, p in zip(headers, paths)])
    along = pos @ normal
    order = np.argsort(along, kind="stable")
    along, pos = along[order], pos[order]
    steps = np.diff(along)
    if np.any(np.abs(steps) < 1e-3):
        n_pos = len(np.unique(np.round(along, 3)))
        raise DatasetError(f"{name}: {len(headers)} images at {n_pos} positions: several volumes in one series "
                           "(echoes, phases or time points?); split them first, e.g. with dcm2niix", path=paths[0])
    spacing = float(np.median(steps))
    if np.abs(steps - spacing).max() > max(0.01, 0.01 * spacing):
        raise DatasetError(f"{name}: slices not evenly spaced ({steps.min():.3g} to {steps.max():.3g} mm apart: a "
                           "missing slice?)", path=paths[0])
    shear = np.diff(pos, axis=0) - np.outer(steps, normal)  # in-plane move of each slice's origin
    if np.abs(shear).max() > max(0.01, 0.01 * spacing):
        raise DatasetError(f"{name}: slices sheared in their plane (up to {np.abs(shear).max():.3g} mm per slice: "
                           "CT gantry tilt?); resample it first, e.g. with dcm2niix", path=paths[0])
    return [int(i) for i in order], spacing


def read_series(series: DicomSeries, name: str | None = None):
    """The :class:`~medal.data.io.Volume` of ``series`` (rescale applied; ``int16`` where integral and in range),
    after :func:`check_geometry`. ``name`` names the series in errors (default: its first folder)."""
    import SimpleITK as sitk

    from .io import _volume_from_sitk

    name = name or str(series.folders[0])
    if series.modality == "RTSTRUCT":
        raise DatasetError(f"{name}: an RTSTRUCT (contours), not read: export the structures as a DICOM SEG (e.g. "
                           "3D Slicer with SlicerRT) beside the series, or as label files", path=series.files[0])
    if series.modality in NON_IMAGE:
        raise DatasetError(f"{name}: a DICOM {series.modality} object, not an image series", path=series.files[0])
    headers = [_header(p) for p in series.files]
    if _multiframe(headers):
        return _grey_values(read_multiframe(series.files[0], name))
    order, spacing = check_geometry(headers, series.files, name)
    files = [str(series.files[i]) for i in order]
    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileNames(files)
    if _needs_float(headers):
        # the output type follows the first file: a later slice's fractional slope (PET stores one per slice)
        # would be cut to integers without a word
        reader.SetOutputPixelType(sitk.sitkFloat64)
    try:
        with keep_locale():
            img = reader.Execute()
    except RuntimeError as exc:
        raise DatasetError(f"{name}: could not be read ({_first_line(exc)})", path=series.files[0]) from None
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise DatasetError(f"{name}: not a grey-value volume ({img.GetDimension()}D, "
                           f"{img.GetNumberOfComponentsPerPixel()} component(s) per voxel)", path=series.files[0])
    if abs(img.GetSpacing()[2] - spacing) > max(0.01, 0.01 * spacing):  # the reader must agree with the headers
        raise DatasetError(f"{name}: slice spacing {img.GetSpacing()[2]:.4g} mm read, {spacing:.4g} mm in the "
                           "headers", path=series.files[0])
    return _grey_values(_volume_from_sitk(img, None))


def _grey_values(vol):
    """``vol`` stored as ``int16`` where its values are integers in range, else ``float32`` (integers kept)."""
    arr = vol.array
    if np.issubdtype(arr.dtype, np.integer) or (np.isfinite(arr).all() and np.array_equal(arr, np.round(arr))):
        if arr.size and arr.min() >= np.iinfo(np.int16).min and arr.max() <= np.iinfo(np.int16).max:
            arr = arr.astype(np.int16)
        elif not np.issubdtype(arr.dtype, np.integer):
            arr = arr.astype(np.float32)
    else:
        arr = arr.astype(np.float32)
    return vol.with_array(arr)


def _needs_float(headers: list[dict]) -> bool:
    """Whether the files' rescale slopes / intercepts differ or are fractional (real values are not integers)."""
    pairs = set()
    for h in headers:
        try:
            pairs.add((float(h["slope"] or 1), float(h["intercept"] or 0)))
        except ValueError:
            return True
    return len(pairs) > 1 or any(a != round(a) or b != round(b) for a, b in pairs)


def _multiframe(headers: list[dict]) -> bool:
    return len(headers) == 1 and headers[0]["frames"] not in ("", "0", "1")


def _from_highdicom(vol):
    """A highdicom ``Volume`` (``(slice, row, column)`` array, LPS affine) as a :class:`~medal.data.io.Volume`."""
    from .io import _LPS_TO_RAS, Volume

    swap = np.zeros((4, 4))
    swap[0, 2] = swap[1, 1] = swap[2, 0] = swap[3, 3] = 1.0  # (column, row, slice) -> (slice, row, column)
    arr = np.asarray(vol.array)
    if arr.ndim != 3:
        raise DatasetError(f"not a grey-value volume (array of shape {arr.shape})")
    return Volume(np.ascontiguousarray(np.transpose(arr, (2, 1, 0))), _LPS_TO_RAS @ np.asarray(vol.affine) @ swap)


def _to_highdicom(vol, frame_of_reference_uid: str):
    """A :class:`~medal.data.io.Volume` as a highdicom ``Volume`` in the patient coordinate system (the inverse of
    :func:`_from_highdicom`)."""
    import highdicom as hd

    from .io import _LPS_TO_RAS

    swap = np.zeros((4, 4))
    swap[0, 2] = swap[1, 1] = swap[2, 0] = swap[3, 3] = 1.0
    return hd.Volume(np.ascontiguousarray(np.transpose(np.asarray(vol.array), (2, 1, 0))),
                     _LPS_TO_RAS @ np.asarray(vol.affine) @ swap, coordinate_system="PATIENT",
                     frame_of_reference_uid=frame_of_reference_uid)


def read_multiframe(path, name: str):
    """An enhanced multi-frame DICOM image (one file, one frame per slice: Enhanced CT / MR, or Legacy Converted
    Enhanced) as a :class:`~medal.data.io.Volume`, read with highdicom from its per-frame functional groups (plane
    position and orientation of each frame, rescale applied): the frames must make one evenly spaced stack."""
    import highdicom as hd

    try:
        img = hd.imread(str(path))
        vol = img.get_volume(apply_real_world_transform=False, apply_voi_transform=False)
        return _from_highdicom(vol)
    except DatasetError as exc:
        raise DatasetError(f"{name}: {exc}", path=path) from None
    except Exception as exc:  # noqa: BLE001 - highdicom / pydicom raise many kinds on frames that are no volume
        raise DatasetError(f"{name}: the frames of this multi-frame file do not make one evenly spaced volume "
                           f"({_first_line(exc)})", path=path) from None


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9-]+", "_", text).strip("_")
    return s or "series"


def case_names(series: list[DicomSeries], src: Path) -> list[str]:
    """A case id per series: its folder under ``src`` (``a/b`` -> ``a_b``), with ``_s<series number>`` where one
    folder holds several kept series; distinct ignoring case (file systems that ignore it). The files are
    ``<id>_0000.nii.gz``, so an id ending in digits (``patient_0001``) is read back as itself."""
    src = Path(src)
    per_folder: dict[Path, int] = {}
    for s in series:
        per_folder[s.folders[0]] = per_folder.get(s.folders[0], 0) + 1
    out, used = [], set()
    for k, s in enumerate(series):
        rel = s.folders[0].relative_to(src)
        base = _slug("_".join(rel.parts) if rel.parts else src.resolve().name)
        if per_folder[s.folders[0]] > 1:
            base += f"_s{_slug(s.number) if s.number else k}"
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


def plan(src, *, series: str | None = None, modality: str | None = None, found=None):
    """The image series under ``src`` that ``series`` (a pattern on the description, case ignored) and ``modality``
    keep, the case id each would get, and every DICOM SEG series (labels, kept whatever the filters: they apply to
    the image series they refer to). A :class:`DatasetError` when no image series is found or none matches."""
    src = Path(src)
    found = find_series(src) if found is None else found
    segs = [s for s in found if s.modality == "SEG"]
    images = [s for s in found if s.modality != "SEG"]
    if not images:
        raise DatasetError(f"{src}: no DICOM image series found (in it or any folder under it)", path=src)
    keep = [s for s in images if _matches(s, series, modality)]
    if not keep:
        kinds = sorted({f"{s.modality or '?'} {s.description!r}" for s in images})
        given = ", ".join(f"--{k} {v!r}" for k, v in (("series", series), ("modality", modality)) if v)
        raise DatasetError(f"{src}: no series matches {given}; found: " + "; ".join(kinds[:12]), path=src)
    return keep, case_names(keep, src), segs


def source_instances(series: DicomSeries) -> list[str]:
    """The SOP Instance UIDs of ``series``' files in slice order (the third axis of :func:`read_series`' volume)."""
    headers = [_header(p) for p in series.files]
    order, _ = check_geometry(headers, series.files, str(series.folders[0]))
    return [headers[i]["sop"] for i in order]


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


def _seg_targets(path) -> tuple[set[str], list[str], str]:
    """The series UIDs a SEG file derives from, its segment labels in segment order, its SOP Instance UID."""
    import pydicom

    ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    uids = {str(s.SeriesInstanceUID) for s in getattr(ds, "ReferencedSeriesSequence", [])}
    labels = [str(getattr(d, "SegmentLabel", f"segment {d.SegmentNumber}"))
              for d in sorted(getattr(ds, "SegmentSequence", []), key=lambda d: int(d.SegmentNumber))]
    return uids, labels, str(ds.SOPInstanceUID)


def from_dicom(src, dst, *, series: str | None = None, modality: str | None = None, labels=None,
               log=print) -> dict:
    """Convert every image series under ``src`` into the dataset folder ``dst`` (see the module docstring), and
    every DICOM SEG object referring to one of them into its ``labelsTr/<case>.nii.gz``.

    Returns ``{"written": [case ids], "labelled": [case ids], "skipped": {series or SEG: message}, "kept": [case
    ids already there]}``. ``labels``: label names, background first, written to ``dataset.json`` (``["background",
    "liver"]`` -> ``{"0": "background", "1": "liver"}``); without them and without labels in an earlier conversion's
    ``dataset.json``, the SEG objects' segment labels are numbered in order of first appearance."""
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
    keep, names, segs = plan(src, series=series, modality=modality)
    by_uid = {v.get("series_uid"): k for k, v in done.items() if isinstance(v, dict)}
    written, kept, labelled, skipped = [], [], [], {}
    cases = dict(done)
    converted: dict[str, DicomSeries] = {}  # series uid -> series, of every case in dst after this run
    save = lambda: atomic_write_json(sources_path, {"source": str(src.resolve()), "cases": cases})  # noqa: E731
    for s, name in zip(keep, names):
        where = _where(s, src)
        label = f"{where} (series {s.number or '?'} {s.description!r})"
        if s.uid in by_uid and (dst / "imagesTr" / f"{by_uid[s.uid]}_0000.nii.gz").is_file():
            kept.append(by_uid[s.uid])
            converted[s.uid] = s
            continue
        if name in cases:  # an id taken by another series in an earlier conversion
            base, n = name, 2
            while name in cases:
                name, n = f"{base}_{n}", n + 1
        try:
            vol = read_series(s, label)
        except DatasetError as exc:
            skipped[label] = str(exc)
            log(f"SKIPPED {exc}")
            continue
        save_volume(vol, dst / "imagesTr" / f"{name}_0000.nii.gz")
        n_images = s.frames if len(s.files) == 1 and s.frames > 1 else len(s.files)
        cases[name] = {"folder": where, "series_uid": s.uid, "series_number": s.number,
                       "description": s.description, "modality": s.modality, "images": n_images,
                       "shape": list(vol.shape), "spacing": [round(v, 6) for v in vol.spacing]}
        converted[s.uid] = s
        save()
        written.append(name)
        log(f"{name}: {label}, " + (f"{n_images} frames in one file" if n_images != len(s.files) else
                                    f"{n_images} images") + f" -> shape {vol.shape}, spacing "
            + "x".join(f"{v:.3g}" for v in vol.spacing) + " mm")
    if not (written or kept):
        return {"written": written, "labelled": labelled, "skipped": skipped, "kept": kept}
    label_names = _label_names(dst, labels, segs)
    case_of = {v["series_uid"]: k for k, v in cases.items() if isinstance(v, dict) and v.get("series_uid") in converted}
    instances: dict[str, list[str]] = {}
    for s in segs:
        for path in s.files:
            where = f"{_where(s, src)}/{path.name} (SEG {s.description!r})"
            try:
                refs, _, sop = _seg_targets(path)
            except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds on a damaged file
                skipped[where] = f"{where}: not a readable DICOM SEG ({_first_line(exc)})"
                log(f"SKIPPED {skipped[where]}")
                continue
            targets = sorted({case_of[u] for u in refs if u in case_of})
            if len(targets) != 1:
                if not any(u in {c.uid for c in keep} for u in refs) and (series or modality):
                    continue  # labels of a series the filters left out
                skipped[where] = (f"{where}: refers to {'no converted series' if not targets else 'several series'} "
                                  f"({', '.join(sorted(refs)) or 'no ReferencedSeriesSequence'})")
                log(f"SKIPPED {skipped[where]}")
                continue
            case = targets[0]
            entry = cases[case]
            if sop in entry.get("labels_from", []):
                continue  # read in an earlier run
            out_path = dst / "labelsTr" / f"{case}.nii.gz"
            try:
                if out_path.is_file() and not entry.get("labels_from"):
                    raise DatasetError(f"{where}: {out_path} exists and was not written from a SEG here (an "
                                       "expert's labels?); left as it is", path=out_path)
                uid = entry["series_uid"]
                image = _image_grid(dst, case)
                if len(converted[uid].files) == 1 and converted[uid].frames > 1:  # enhanced multi-frame image
                    arr = read_dicom_seg_volume(path, image, label_names, where)
                else:
                    if uid not in instances:
                        instances[uid] = source_instances(converted[uid])
                    arr = read_dicom_seg(path, instances[uid], label_names, where)
                if arr.shape != image.shape:
                    raise DatasetError(f"{where}: {arr.shape} voxels, its image {image.shape}", path=path)
                if out_path.is_file():  # a further SEG of this case (one per structure, say): merged where it agrees
                    old = _load(out_path).array
                    clash = (old != 0) & (arr != 0) & (old != arr)
                    if clash.any():
                        raise DatasetError(f"{where}: labels {int(clash.sum())} voxel(s) differently from the SEG "
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


def _where(s: DicomSeries, src: Path) -> str:
    return str(s.folders[0].relative_to(src)) if s.folders[0] != src else "."


def _load(path):
    from .io import load_volume

    return load_volume(path)


def _image_grid(dst: Path, case: str):
    return _load(dst / "imagesTr" / f"{case}_0000.nii.gz")


def _label_names(dst: Path, labels, segs) -> dict[int, str]:
    """``{value: name}``: ``labels`` given, else an earlier conversion's ``dataset.json`` labels, else the SEG
    files' segment labels numbered in order of first appearance (background 0)."""
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
                _, found, _ = _seg_targets(path)
            except Exception:  # noqa: BLE001 - reported where the file is read
                continue
            for n in found:
                if n.strip().lower() not in seen:
                    seen.add(n.strip().lower())
                    names[len(names)] = n
    return names


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
    mods = sorted({c.get("modality", "") for c in cases.values()} - {""})
    if len(mods) == 1:
        channel = CHANNEL_NAMES.get(mods[0], mods[0])
    else:
        channel = "mixed (" + ", ".join(mods) + ")" if mods else "unknown"
        if len(mods) > 1:
            log(f"WARNING: series of {len(mods)} modalities ({', '.join(mods)}) in one dataset: one network input "
                "for all of them; keep one with --modality")
    meta.setdefault("name", dst.resolve().name)
    meta.setdefault("description", "converted from DICOM by medal dataset from-dicom (sources: dicom_sources.json)")
    meta["channel_names"] = {"0": channel}
    if len(label_names) > 1:
        meta["labels"] = {str(v): str(n) for v, n in sorted(label_names.items())}
    meta["file_ending"] = ".nii.gz"
    meta["numTraining"] = len(cases)
    atomic_write_json(meta_path, meta)


def _source_datasets(series: DicomSeries) -> list:
    """The pydicom datasets (no pixel data) of ``series``' files in slice order (:func:`source_instances`')."""
    import pydicom

    headers = [_header(p) for p in series.files]
    order, _ = check_geometry(headers, series.files, str(series.folders[0]))
    return [pydicom.dcmread(str(series.files[i]), stop_before_pixels=True) for i in order]


def _label_file(folder: Path, case: str) -> Path | None:
    """``folder/<case>.nii.gz`` (a labels folder) or ``folder/<case>/prediction.nii.gz`` (``medal score``'s)."""
    for p in (folder / f"{case}.nii.gz", folder / case / "prediction.nii.gz", folder / "scores" / case / "prediction.nii.gz"):
        if p.is_file():
            return p
    return None


def export_seg(dataset_root, labels, out, *, dicom_root=None, automatic: bool = False, log=print) -> dict:
    """Each case of a dataset ``from-dicom`` made, whose label or prediction is in ``labels``, as a DICOM SEG object
    ``out/<case>.dcm`` on its source series, for a PACS or a DICOM viewer (OHIF, 3D Slicer): one segment per label
    value present (named by dataset.json), frames derived from the series' instances (highdicom; empty frames
    omitted). 255 (not annotated) is in no segment. ``automatic``: a model's prediction (SegmentAlgorithmType
    AUTOMATIC, algorithm "medal"), else an expert's labels (MANUAL). ``dicom_root``: where the export lies now, if
    it moved since the conversion (``dicom_sources.json`` holds the folders relative to it).

    Returns ``{"written": [case ids], "skipped": {case: message}}``; a case without a label file is not listed."""
    import json

    import highdicom as hd
    from pydicom.sr.codedict import codes

    from medal import __version__

    from .atomic import atomic_path
    from .dataset import load_dataset
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
            match = [s for s in series_by_folder[entry["folder"]] if s.uid == entry["series_uid"]]
            if not match:
                raise DatasetError(f"{case.case_id}: its series {entry['series_uid']} is not in {folder} any more",
                                   path=folder)
            image = _load(case.image)
            lab, _ = load_label(path, image, str(path), outside=0)
            arr = np.asarray(lab.array).copy()
            arr[arr == 255] = 0  # not annotated: in no segment
            values = [int(v) for v in np.unique(arr) if v]
            if not values:
                raise DatasetError(f"{path}: no label value but background: nothing to put in a SEG", path=path)
            if len(match[0].files) == 1 and match[0].frames > 1:  # an enhanced multi-frame image: by geometry
                import pydicom

                sources_ds = [pydicom.dcmread(str(match[0].files[0]))]
                numbers = np.zeros(arr.shape, np.uint8)
                for i, v in enumerate(values):
                    numbers[arr == v] = i + 1
                masks = _to_highdicom(image.with_array(numbers), sources_ds[0].FrameOfReferenceUID)
            else:
                sources_ds = _source_datasets(match[0])
                frames = np.transpose(arr, (2, 1, 0))  # (slice, row, column) in the series' slice order
                masks = np.stack([frames == v for v in values], axis=-1).astype(np.uint8)
            algorithm = (hd.AlgorithmIdentificationSequence(name="medal", version=__version__,
                                                            family=codes.cid7162.ArtificialIntelligence)
                         if automatic else None)
            descriptions = [hd.seg.SegmentDescription(
                segment_number=i + 1, segment_label=str(names.get(v, f"label {v}")),
                segmented_property_category=codes.SCT.AnatomicalStructure,
                segmented_property_type=codes.SCT.AnatomicalStructure,
                algorithm_type=(hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC if automatic
                                else hd.seg.SegmentAlgorithmTypeValues.MANUAL),
                algorithm_identification=algorithm) for i, v in enumerate(values)]
            seg = hd.seg.Segmentation(
                source_images=sources_ds, pixel_array=masks, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=9000,
                sop_instance_uid=hd.UID(), instance_number=1, manufacturer="medal",
                manufacturer_model_name="medal", software_versions=__version__, device_serial_number="0",
                series_description=("medal prediction" if automatic else "medal labels"))
            with atomic_path(out / f"{case.case_id}.dcm") as tmp:
                seg.save_as(str(tmp))
        except DatasetError as exc:
            skipped[case.case_id] = str(exc)
            log(f"SKIPPED {exc}")
            continue
        except (ValueError, AttributeError, KeyError) as exc:  # highdicom's checks of the source series
            skipped[case.case_id] = f"{case.case_id}: no SEG could be made on its series ({_first_line(exc)})"
            log(f"SKIPPED {skipped[case.case_id]}")
            continue
        written.append(case.case_id)
        log(f"{case.case_id}: {out / (case.case_id + '.dcm')} ("
            + ", ".join(f"{names.get(v, v)}" for v in values) + ")")
    return {"written": written, "skipped": skipped}
