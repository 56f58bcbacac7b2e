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

__all__ = ["read_rtstruct", "rtstruct_targets"]

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

