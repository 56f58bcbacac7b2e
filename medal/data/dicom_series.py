"""Reading DICOM series: finding them (GDCM's scanner), checking their geometry from every header, reading the
pixels (SimpleITK for a series of files, highdicom for an enhanced multi-frame file). What the checks refuse and
why is said in :mod:`medal.data.dicom`, the command that uses them."""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DatasetError

__all__ = ["CHANNEL_NAMES", "DicomSeries", "MIN_SLICES", "NON_IMAGE", "SOURCES", "SPLIT_TAGS", "check_geometry",
           "PRIVATE_B_VALUE", "find_series", "keep_locale", "read_multiframe", "read_series", "source_instances",
           "split_volumes"]

#: modality codes (0008,0060) that hold no image to train on
NON_IMAGE = {"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "SR", "PR", "KO", "REG", "DOC", "ECG", "AU",
             "PLAN", "FID", "RWV"}
#: dataset.json channel names for modality codes (nnU-Net's "CT" picks the CT window; the rest z-score)
CHANNEL_NAMES = {"CT": "CT", "MR": "MRI", "PT": "PET", "NM": "NM", "US": "US", "CR": "CR", "DX": "DX"}
SOURCES = "dicom_sources.json"
MIN_SLICES = 3

_TAGS = {"uid": "0020|000e", "modality": "0008|0060", "description": "0008|103e", "number": "0020|0011",
         "position": "0020|0032", "orientation": "0020|0037", "image_type": "0008|0008", "frames": "0028|0008",
         "rows": "0028|0010", "columns": "0028|0011", "instance": "0020|0013", "sop": "0008|0018", "study": "0020|000d",
         "slope": "0028|1053", "intercept": "0028|1052", "frame": "0020|0052"}
#: header fields that tell apart several volumes stored in one series (multi-echo, diffusion b-values, dynamic time
#: points, cardiac phases, repeated acquisitions), tried in this order by :func:`split_volumes`: (field, tag, prefix
#: of the part's name)
SPLIT_TAGS = (("echo_number", "0018|0086", "echo"), ("echo_time", "0018|0081", "te"), ("b_value", "0018|9087", "b"),
              ("temporal_position", "0020|0100", "t"), ("trigger_time", "0018|1060", "trigger"),
              ("acquisition", "0020|0012", "acq"))
_TAGS.update({name: tag for name, tag, _ in SPLIT_TAGS})
#: where scanners that leave DiffusionBValue (0018,9087) empty keep the b-value: (group, private creator, element
#: within the creator's block), read as dcm2niix reads them: Siemens B_value (0019,xx0C), GE SlopInt_6 (0043,xx39,
#: first value, less 1e9 where GE adds it), Philips DiffusionBFactor (2001,xx03)
PRIVATE_B_VALUE = (("0019", "SIEMENS MR HEADER", 0x0C), ("0043", "GEMS_PARM_01", 0x39),
                   ("2001", "Philips Imaging DD 001", 0x03))


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
    part: str = ""  # one of several volumes stored in the series (split_volumes: "echo2", "b1000", ...); "" = all
    study: str = ""  # StudyInstanceUID
    frame: str = ""  # FrameOfReferenceUID: series sharing it share patient coordinates
    # the series read as this one's further input channels (from-dicom --channels), in channel order
    channels: list = field(default_factory=list, repr=False, compare=False)
    headers: list | None = field(default=None, repr=False, compare=False)  # every file's, once read

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
    r.LoadPrivateTagsOn()  # vendors' b-values (PRIVATE_B_VALUE)
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
    if not out["b_value"]:
        out["b_value"] = _private_b_value(r, keys)
    return out


def _private_b_value(reader, keys) -> str:
    """The b-value a vendor's private field holds (:data:`PRIVATE_B_VALUE`), as an integer string where whole; ""
    where none does. A private element counts only inside the block its creator reserved (``(gggg,00xx)`` naming
    the vendor's creator: ``(gggg,xxee)``), so another vendor's use of the same numbers is not read."""
    for group, creator, element in PRIVATE_B_VALUE:
        for block in range(0x10, 0x100):
            owner = f"{group}|00{block:02x}"
            if owner in keys and reader.GetMetaData(owner).strip() == creator:
                tag = f"{group}|{block:02x}{element:02x}"
                if tag not in keys:
                    break
                try:
                    b = float(reader.GetMetaData(tag).strip().split("\\")[0])
                except ValueError:
                    break
                if group == "0043" and b >= 1e9:
                    b -= 1e9  # GE adds 1e9 to the b-value on some software versions
                return str(int(b)) if b == int(b) else f"{b:g}"
    return ""


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
    rest: list[Path] = []
    with keep_locale():
        for folder, dirs, files in os.walk(src):
            dirs.sort()
            if not files:
                continue
            seen = set()
            for uid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder):
                names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid)
                s = found.setdefault(uid, DicomSeries(uid))
                s.files += [Path(n) for n in names]
                seen.update(Path(n).name for n in names)
            rest += [Path(folder) / f for f in sorted(files) if f not in seen]
    structure_sets = _structure_sets(rest)  # GDCM's scanner lists files with pixels only
    out = list(found.values())
    for s in out:
        try:
            h = _header(s.files[0])
            s.modality, s.description, s.number = h["modality"].upper(), h["description"], h["number"]
            s.image_type, s.study, s.frame = h["image_type"], h["study"], h.get("frame", "")
            s.frames = int(h["frames"]) if h["frames"].isdigit() else 1
        except DatasetError:
            pass
    out += [s for uid, s in structure_sets.items() if uid not in found]
    folders = {f: i for i, f in enumerate(dict.fromkeys(s.folders[0] for s in out))}
    number = lambda s: int(s.number) if s.number.lstrip("-").isdigit() else 10**9  # noqa: E731
    return sorted(out, key=lambda s: (folders[s.folders[0]], number(s), s.description, s.uid))


def _structure_sets(paths: list[Path]) -> dict[str, DicomSeries]:
    """The RTSTRUCT series among ``paths`` (files GDCM's series scanner did not list: it lists images only), by
    series UID. Files that are not DICOM are passed over (pydicom refuses them at their missing preamble)."""
    import pydicom

    out: dict[str, DicomSeries] = {}
    tags = ["Modality", "SeriesInstanceUID", "SeriesDescription", "SeriesNumber"]
    for path in paths:
        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=tags)
        except Exception:  # noqa: BLE001 - not DICOM, or damaged: not an RTSTRUCT we can read either way
            continue
        if str(getattr(ds, "Modality", "")).upper() != "RTSTRUCT":
            continue
        uid = str(getattr(ds, "SeriesInstanceUID", "")) or f"file:{path}"
        s = out.setdefault(uid, DicomSeries(uid, modality="RTSTRUCT", description=str(getattr(ds, "SeriesDescription", "")),
                                            number=str(getattr(ds, "SeriesNumber", "") or "")))
        s.files.append(path)
    return out


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


def _headers(series: DicomSeries) -> list[dict]:
    if series.headers is None:
        series.headers = [_header(p) for p in series.files]
    return series.headers


def split_volumes(series: DicomSeries) -> list[DicomSeries]:
    """``series`` as the volumes it holds: itself, or, where several of its images share a position (echoes,
    b-values, time points or phases stored in one series), one :class:`DicomSeries` per value of the first field of
    :data:`SPLIT_TAGS` that every image has and that leaves each part one image per position, in order of that
    value (``part``: ``echo1``, ``echo2``; ``b0``, ``b1000``; ...), as dcm2niix splits them. A series no field
    splits is returned whole (:func:`check_geometry` then says it holds several volumes); so are non-image objects,
    localizers and single files."""
    if series.obvious_skip() or len(series.files) < 2 * MIN_SLICES:
        return [series]
    try:
        headers = _headers(series)
    except DatasetError:
        return [series]  # read_series names the unreadable file
    where = [h["position"].replace(" ", "") for h in headers]
    try:
        where = [tuple(np.round(np.asarray([float(v) for v in w.split("\\")]), 2)) for w in where]
    except ValueError:
        return [series]
    if len(set(where)) == len(where):
        return [series]
    for name, _, prefix in SPLIT_TAGS:
        values = [h.get(name, "") for h in headers]
        if any(not v for v in values):
            continue
        groups: dict[str, list[int]] = {}
        for i, v in enumerate(values):
            groups.setdefault(v, []).append(i)
        if len(groups) < 2 or any(len({where[i] for i in idx}) != len(idx) for idx in groups.values()):
            continue

        def order(v):
            try:
                return (0, float(v), v)
            except ValueError:
                return (1, 0.0, v)

        return [DicomSeries(series.uid, [series.files[i] for i in groups[v]], series.modality, series.description,
                            series.number, series.image_type, series.frames, part=f"{prefix}{v}", study=series.study,
                            frame=series.frame, headers=[headers[i] for i in groups[v]])
                for v in sorted(groups, key=order)]
    return [series]


def read_series(series: DicomSeries, name: str | None = None):
    """The :class:`~medal.data.io.Volume` of ``series`` (rescale applied; ``int16`` where integral and in range),
    after :func:`check_geometry`. ``name`` names the series in errors (default: its first folder)."""
    import SimpleITK as sitk

    from .io import _volume_from_sitk

    name = name or str(series.folders[0])
    if series.modality == "RTSTRUCT":
        raise DatasetError(f"{name}: an RTSTRUCT (contours): labels of an image series (from-dicom reads them "
                           "beside it), not an image", path=series.files[0])
    if series.modality in NON_IMAGE:
        raise DatasetError(f"{name}: a DICOM {series.modality} object, not an image series", path=series.files[0])
    headers = _headers(series)
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


def source_instances(series: DicomSeries) -> list[str]:
    """The SOP Instance UIDs of ``series``' files in slice order (the third axis of :func:`read_series`' volume)."""
    headers = _headers(series)
    order, _ = check_geometry(headers, series.files, str(series.folders[0]))
    return [headers[i]["sop"] for i in order]
