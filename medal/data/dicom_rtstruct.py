"""DICOM RT Structure Sets in: the contours a treatment planning system (Eclipse, RayStation, MIM, ...) or 3D Slicer
(SlicerRT) saved, as label values on the image series they were drawn on. Used by ``medal dataset from-dicom``
(:mod:`medal.data.dicom`).

An RTSTRUCT holds, per region of interest (ROI, ``StructureSetROISequence``: number and name), polygons in patient
coordinates (LPS mm), one or more per image slice (``ROIContourSequence``, DICOM PS3.3 C.8.8.6 "ROI Contour Module";
``ContourGeometricType`` ``CLOSED_PLANAR``). They become voxels the way RT toolkits rasterise them (rt-utils,
``image_helper.get_slice_mask_from_slice_contour_data``; plastimatch's ``rtss`` to image): each polygon, mapped
into the image's voxel index space, must lie in one slice plane of the image and fills the voxels whose centres lie
inside it; the polygons of one ROI on one slice combine by parity (a polygon inside another is a hole: C.8.8.6.3's
inner contours, and the "keyhole" single polygon needs no special case). Open contours and points (``POINT``,
``OPEN_PLANAR``: markers, not areas) hold no voxels.

RT structure sets name far more ROIs than a segmentation dataset has labels (``BODY``, ``PTV``, couch, ...), and
those overlap by design: an ROI named after one of dataset.json's labels (case ignored) takes that label's value,
any other ROI is left out and listed. Two kept ROIs that share a voxel, a polygon that is oblique to the slices or
lies between them, or none of a file's ROIs named after a label are one line naming the file."""

from __future__ import annotations

import numpy as np

from .dicom_series import _first_line
from .errors import DatasetError

__all__ = ["read_rtstruct", "rtstruct_targets", "slice_polygons", "structure_set"]

#: how far (in voxels) a polygon may lie off one slice plane of the image, and its points off a common plane
PLANE_TOLERANCE = 0.1


def _read(path, name: str):
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds on a damaged file
        raise DatasetError(f"{name}: not a readable DICOM file ({_first_line(exc)})", path=path) from None
    if "StructureSetROISequence" not in ds or "ROIContourSequence" not in ds:
        raise DatasetError(f"{name}: not an RT Structure Set (no StructureSetROISequence / ROIContourSequence)",
                           path=path)
    return ds


def rtstruct_targets(path, name: str | None = None) -> tuple[set[str], list[str], str, set[str]]:
    """The series UIDs an RTSTRUCT refers to (``ReferencedFrameOfReferenceSequence`` > ``RTReferencedStudySequence``
    > ``RTReferencedSeriesSequence``), its ROI names in ROI order, its SOP Instance UID, and the SOP Instance UIDs
    its contours name (``ContourImageSequence``: how a file that lists no series still says which images it is on).
    A :class:`DatasetError` (naming it ``name``, default its path) for a file that is no RT Structure Set."""
    ds = _read(path, name or str(path))
    uids = {str(se.SeriesInstanceUID)
            for fr in getattr(ds, "ReferencedFrameOfReferenceSequence", [])
            for st in getattr(fr, "RTReferencedStudySequence", [])
            for se in getattr(st, "RTReferencedSeriesSequence", []) if "SeriesInstanceUID" in se}
    names = [str(getattr(r, "ROIName", f"ROI {r.ROINumber}"))
             for r in sorted(ds.StructureSetROISequence, key=lambda r: int(r.ROINumber))]
    images = {str(ref.ReferencedSOPInstanceUID)
              for item in ds.ROIContourSequence for c in getattr(item, "ContourSequence", [])
              for ref in getattr(c, "ContourImageSequence", []) if "ReferencedSOPInstanceUID" in ref}
    return uids, names, str(ds.SOPInstanceUID), images


def read_rtstruct(path, image, label_names: dict[int, str], name: str) -> tuple[np.ndarray, list[str]]:
    """The RT Structure Set at ``path`` as label values on ``image`` (a :class:`~medal.data.io.Volume`, the series
    it was drawn on as ``from-dicom`` converted it; its affine maps voxels to RAS mm): ``(uint8 array of
    image.shape, [names of the ROIs left out])``. See the module docstring for the rules."""
    from skimage.draw import polygon

    ds = _read(path, name)
    by_name = {str(n).strip().lower(): v for v, n in label_names.items() if v}
    rois = {int(r.ROINumber): str(getattr(r, "ROIName", f"ROI {r.ROINumber}")) for r in ds.StructureSetROISequence}
    kept = {num: by_name[n.strip().lower()] for num, n in rois.items() if n.strip().lower() in by_name}
    left_out = [n for num, n in sorted(rois.items()) if num not in kept]
    if rois and not kept:
        wanted = ", ".join(n for v, n in sorted(label_names.items()) if v) or "none"
        raise DatasetError(f"{name}: none of its ROIs ({', '.join(rois.values())}) is named after a label "
                           f"(dataset.json / --labels: {wanted})", path=path)
    shape = tuple(image.shape)
    ras_to_ijk = np.linalg.inv(np.asarray(image.affine, dtype=np.float64))
    lps_to_ijk = ras_to_ijk @ np.diag([-1.0, -1.0, 1.0, 1.0])
    out = np.zeros(shape, np.uint8)
    owner = np.zeros(shape, np.int32)  # ROI number holding each voxel (0: none)
    for item in ds.ROIContourSequence:
        num = int(getattr(item, "ReferencedROINumber", -1))
        if num not in kept:
            continue
        roi = rois[num]
        mask = np.zeros(shape, bool)
        for c in getattr(item, "ContourSequence", []):
            if str(getattr(c, "ContourGeometricType", "CLOSED_PLANAR")).upper() != "CLOSED_PLANAR":
                continue
            pts = np.asarray([float(v) for v in getattr(c, "ContourData", [])], dtype=np.float64)
            if pts.size < 9 or pts.size % 3:
                continue  # fewer than three points: no area
            ijk = np.c_[pts.reshape(-1, 3), np.ones(pts.size // 3)] @ lps_to_ijk.T
            spread = np.ptp(ijk[:, :3], axis=0)
            axis = int(np.argmin(spread))
            if spread[axis] > PLANE_TOLERANCE:
                raise DatasetError(f"{name}: ROI {roi!r} has a contour that is not in a slice plane of its image "
                                   f"(oblique to the slices by {spread[axis]:.2g} voxels)", path=path)
            depth = float(ijk[:, axis].mean())
            k = int(round(depth))
            if abs(depth - k) > PLANE_TOLERANCE or not 0 <= k < shape[axis]:
                mm = np.asarray(pts[2::3]).mean()
                where = "outside the image" if not -0.5 <= depth <= shape[axis] - 0.5 else "between two slices"
                raise DatasetError(f"{name}: ROI {roi!r} has a contour {where} (z {mm:.2f} mm, voxel {depth:.2f} "
                                   f"along axis {axis})", path=path)
            a, b = (d for d in range(3) if d != axis)
            rr, cc = polygon(ijk[:, a], ijk[:, b], shape=(shape[a], shape[b]))
            index = [slice(None)] * 3
            index[axis] = k
            plane = mask[tuple(index)]
            plane[rr, cc] ^= True  # parity: a polygon inside another is a hole
        clash = mask & (owner > 0)
        if clash.any():
            other = rois[int(owner[clash][0])]
            raise DatasetError(f"{name}: ROIs {other!r} and {roi!r} overlap in {int(clash.sum())} voxel(s); a label "
                               "file holds one label per voxel (keep one of them with --labels)", path=path)
        out[mask] = kept[num]
        owner[mask] = num
    return out, left_out



#: ROI display colours, in label order (RGB)
_COLOURS = [(255, 0, 0), (0, 160, 255), (0, 200, 0), (255, 200, 0), (200, 0, 255), (0, 220, 200), (255, 120, 0),
            (160, 80, 40)]


def slice_polygons(mask, affine) -> list[tuple[int, np.ndarray]]:
    """The closed polygons around ``mask``'s voxels on each slice along its third axis (the series' slices, as
    :func:`~medal.data.dicom.read_series` orders them), as ``[(slice index, (n, 3) LPS mm points)]``:
    ``skimage.measure.find_contours`` at 0.5, so every edge passes midway between a voxel inside and one outside
    and no voxel centre lies on one; holes and islands are further polygons, which :func:`read_rtstruct`'s parity
    rule reads back voxel for voxel. ``affine``: voxel index -> RAS mm (a :class:`~medal.data.io.Volume`'s)."""
    from skimage.measure import find_contours

    mask = np.asarray(mask, bool)
    to_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(affine, dtype=np.float64)
    out = []
    for k in np.flatnonzero(mask.any(axis=(0, 1))):
        for c in find_contours(np.pad(mask[:, :, k], 1).astype(np.float32), 0.5):
            ijk = np.c_[c - 1.0, np.full(len(c), float(k)), np.ones(len(c))]
            out.append((int(k), (ijk @ to_lps.T)[:, :3]))
    return out


def structure_set(sources, rois, *, label: str = "medal", description: str = "medal labels",
                  automatic: bool = False, series_number: int = 9001, observations=None):
    """An RT Structure Set (a pydicom ``Dataset``) on the image series whose slices' datasets ``sources`` are, in
    slice order (patient and study copied from them, as any object of that study carries them): ``rois`` =
    ``[(ROIName, [(slice index, (n, 3) LPS mm points), ...]), ...]``, numbered 1, 2, ... in that order, each polygon
    CLOSED_PLANAR with its slice's instance in its ContourImageSequence; the series and frame of reference listed in
    ReferencedFrameOfReferenceSequence (DICOM PS3.3 A.19, RT Structure Set IOD). ``automatic``: ROIs made by a model
    (ROIGenerationAlgorithm AUTOMATIC), else MANUAL. ``observations``: per ROI ``(RTROIInterpretedType, code or
    None)``, the code (a ``pydicom.sr.coding.Code``) written as its RT ROI Identification Code Sequence (PS3.3
    C.8.8.8); without it every type is empty (unknown), as before."""
    import datetime

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    from medal import __version__

    first = sources[0]
    now = datetime.datetime.now()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"  # RT Structure Set Storage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = getattr(first, "SpecificCharacterSet", "ISO_IR 192")
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    for key in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate",
                "StudyTime", "StudyID", "AccessionNumber", "ReferringPhysicianName"):
        setattr(ds, key, getattr(first, key, ""))
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "RTSTRUCT", generate_uid(), series_number
    ds.SeriesDescription, ds.InstanceNumber = description, 1
    ds.Manufacturer, ds.ManufacturerModelName, ds.SoftwareVersions = "medal", "medal", __version__
    ds.FrameOfReferenceUID = first.FrameOfReferenceUID
    ds.StructureSetLabel = label[:16]
    ds.StructureSetDate, ds.StructureSetTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    series_ref = Dataset()
    series_ref.SeriesInstanceUID = first.SeriesInstanceUID
    series_ref.ContourImageSequence = Sequence([_image_ref(d) for d in sources])
    study_ref = Dataset()
    study_ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (retired; as TPSs write)
    study_ref.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study_ref.RTReferencedSeriesSequence = Sequence([series_ref])
    frame_ref = Dataset()
    frame_ref.FrameOfReferenceUID = first.FrameOfReferenceUID
    frame_ref.RTReferencedStudySequence = Sequence([study_ref])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame_ref])
    ds.StructureSetROISequence, ds.ROIContourSequence, ds.RTROIObservationsSequence = Sequence(), Sequence(), Sequence()
    for number, (name, polygons) in enumerate(rois, start=1):
        roi = Dataset()
        roi.ROINumber, roi.ReferencedFrameOfReferenceUID, roi.ROIName = number, first.FrameOfReferenceUID, name
        roi.ROIGenerationAlgorithm = "AUTOMATIC" if automatic else "MANUAL"
        ds.StructureSetROISequence.append(roi)
        item = Dataset()
        item.ReferencedROINumber = number
        item.ROIDisplayColor = list(_COLOURS[(number - 1) % len(_COLOURS)])
        item.ContourSequence = Sequence()
        for k, xyz in polygons:
            c = Dataset()
            c.ContourImageSequence = Sequence([_image_ref(sources[k])])
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(xyz)
            c.ContourData = [float(f"{v:.4f}") for v in np.asarray(xyz, dtype=np.float64).ravel()]
            item.ContourSequence.append(c)
        ds.ROIContourSequence.append(item)
        obs = Dataset()
        obs.ObservationNumber, obs.ReferencedROINumber = number, number
        kind, code = observations[number - 1] if observations is not None else ("", None)
        obs.RTROIInterpretedType, obs.ROIInterpreter = kind, ""
        if code is not None:
            ident = Dataset()
            ident.CodeValue, ident.CodingSchemeDesignator, ident.CodeMeaning = \
                code.value, code.scheme_designator, code.meaning
            obs.RTROIIdentificationCodeSequence = Sequence([ident])
        ds.RTROIObservationsSequence.append(obs)
    return ds


def _image_ref(source):
    from pydicom.dataset import Dataset

    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = source.SOPClassUID, source.SOPInstanceUID
    return ref
