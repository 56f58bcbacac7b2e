"""Candidate annotation units as integer label volumes: 2D slices and 3D supervoxels.

Both kinds are returned the same way, a label volume of the image's shape in which each voxel holds
its unit's id (1..N; 0 = not in any unit), so every later step (aggregation, costs, masks) treats
slices and supervoxels alike.
"""

from __future__ import annotations

import numpy as np

__all__ = ["AXIS_NAMES", "resolve_axis", "slice_units", "supervoxel_units"]

AXIS_NAMES = {"sagittal": "LR", "coronal": "AP", "axial": "SI"}


def resolve_axis(axis, orientation: str = "RAS") -> int:
    """Array axis for ``axis`` (0, 1, 2, or ``"axial"`` / ``"coronal"`` / ``"sagittal"``) given the
    volume's orientation codes (``Volume.orientation``, e.g. ``"RAS"``, ``"LPI"``)."""
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool):
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
        return int(axis)
    if axis not in AXIS_NAMES:
        raise ValueError(f"axis {axis!r} is not one of 0, 1, 2, {sorted(AXIS_NAMES)}")
    letters = AXIS_NAMES[axis]
    for i, code in enumerate(orientation.upper()):
        if code in letters:
            return i
    raise ValueError(f"orientation {orientation!r} has no {axis} axis")


def slice_units(shape, *, axis: int) -> np.ndarray:
    """Unit ``k + 1`` is slice ``k`` along ``axis``."""
    shape = tuple(int(s) for s in shape)
    ids = np.arange(1, shape[axis] + 1, dtype=np.int32)
    view = [1, 1, 1]
    view[axis] = shape[axis]
    return np.broadcast_to(ids.reshape(view), shape).copy()


def supervoxel_units(image: np.ndarray, *, spacing=(1.0, 1.0, 1.0), size_mm: float = 8.0,
                     compactness: float = 10.0, iterations: int = 5, mask: np.ndarray | None = None,
                     seed: int = 0) -> np.ndarray:
    """3D supervoxels with SimpleITK's SLIC, spacing-aware; ids 1..N, 0 outside ``mask``.

    ``size_mm`` is the side of SLIC's initial grid cell in millimetres (converted to voxels per axis
    with ``spacing``, so anisotropic scans get physically cubic seeds). ``compactness`` is SLIC's
    spatial proximity weight: higher gives more regular, less boundary-following regions. Regions
    are relabelled 1..N consecutively; with a ``mask`` (e.g. a body mask), voxels outside it get 0
    and a supervoxel cut by the mask keeps only its inside part.
    """
    import SimpleITK as sitk

    arr = np.asarray(image, dtype=np.float32)
    if arr.ndim != 3:
        raise ValueError(f"supervoxels need a 3D image, got shape {arr.shape}")
    grid = [max(2, int(round(size_mm / float(s)))) for s in spacing]
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)))  # SimpleITK wants (k, j, i)
    img.SetSpacing([float(s) for s in spacing])
    f = sitk.SLICImageFilter()
    f.SetSuperGridSize(grid)
    f.SetSpatialProximityWeight(float(compactness))
    f.SetMaximumNumberOfIterations(int(iterations))
    f.SetEnforceConnectivity(True)
    f.SetInitializationPerturbation(True)
    labels = sitk.GetArrayFromImage(f.Execute(img)).transpose(2, 1, 0).astype(np.int64) + 1
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != arr.shape:
            raise ValueError(f"mask shape {mask.shape} does not match image shape {arr.shape}")
        labels = np.where(mask, labels, 0)
    _, inverse = np.unique(labels, return_inverse=True)
    out = inverse.reshape(arr.shape).astype(np.int32)
    if mask is None:
        out += 1  # no zero label existed: ids start at 1
    return out
