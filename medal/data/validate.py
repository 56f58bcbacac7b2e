"""Checks shared by the loading API and ``medal dataset check``: one message per problem.

Each function raises :class:`DatasetError` whose message names the file; ``check_dataset`` calls
them one by one and collects the messages, loaders call them and let the first one propagate.
"""

from __future__ import annotations

import numpy as np

from .errors import DatasetError
from .io import Volume
from .labels import UNLABELED

__all__ = ["require_finite", "require_same_grid", "label_on_grid", "require_label_values", "AFFINE_ATOL"]

#: Largest allowed difference (mm) between image and label affines.
AFFINE_ATOL = 1e-3


def require_finite(image: Volume, name: str) -> None:
    """Intensities a model can read: no NaN or Inf, and not one value everywhere (a constant volume is an
    empty or failed export: nothing to segment, and an expert shown it would see a blank slice)."""
    arr = image.array
    if np.issubdtype(arr.dtype, np.floating):
        finite = np.isfinite(arr)
        if not finite.all():
            n_nan = int(np.isnan(arr).sum())
            n_inf = int(finite.size - finite.sum()) - n_nan
            raise DatasetError(f"{name}: {n_nan} NaN and {n_inf} Inf intensity values", path=image.path)
    if arr.size and arr.min() == arr.max():
        raise DatasetError(f"{name}: every voxel has the same intensity ({arr.flat[0].item():g}): an empty or failed "
                           "export?", path=image.path)


def _placement(label: Volume, shape, affine):
    """Where ``label``'s voxels sit on the grid ``(shape, affine)``: ``(ornt, offset)`` when the label holds that
    grid's voxels in another axis order (flipped or permuted axes) and/or a box of them (cropped, as 3D Slicer saves
    a segmentation by default), each voxel on one of the grid's, else None. ``ornt`` is nibabel's orientation
    transform from the label's axes to the grid's, ``offset`` the box's first voxel on the grid (any sign). The grid's
    voxel size and axes shifted by part of a voxel: that shift in mm."""
    try:
        from nibabel.orientations import inv_ornt_aff, io_orientation, ornt_transform

        ornt = ornt_transform(io_orientation(label.affine), io_orientation(affine))
        turned = label.affine @ inv_ornt_aff(ornt, label.shape)
        t = np.linalg.solve(affine, turned)[:3, 3]
    except Exception:  # noqa: BLE001 - a degenerate affine: not a placement
        return None
    offset = np.round(t).astype(int)
    expected = np.array(affine, dtype=np.float64)
    expected[:3, 3] = affine[:3, :3] @ offset + affine[:3, 3]
    if not np.allclose(turned, expected, atol=AFFINE_ATOL, rtol=0):
        if np.allclose(turned[:3, :3], affine[:3, :3], atol=AFFINE_ATOL, rtol=0):  # same voxels, shifted
            return float(np.abs(turned[:3, 3] - expected[:3, 3]).max())
        return None
    return ornt, tuple(int(o) for o in offset)


def _grid_error(label: Volume, shape, affine, label_name: str, extra: str = "") -> DatasetError:
    if label.shape != tuple(shape):
        return DatasetError(f"{label_name}: shape {label.shape} does not match image shape {tuple(shape)}" + extra,
                            path=label.path)
    diff = float(np.abs(label.affine - affine).max())
    return DatasetError(f"{label_name}: affine differs from the image's by up to {diff:.4g} mm (label "
                        f"{np.round(label.affine, 4).tolist()} vs image {np.round(affine, 4).tolist()})" + extra,
                        path=label.path)


def require_same_grid(image: Volume, other: Volume, name: str) -> None:
    """``other`` holds one voxel per voxel of ``image``, in the same order (a channel file, a prediction; label files
    go through :func:`label_on_grid`, which also reads them in another axis order or cropped)."""
    if other.shape != image.shape or not np.allclose(other.affine, image.affine, atol=AFFINE_ATOL, rtol=0):
        raise _grid_error(other, image.shape, image.affine, name)


def label_on_grid(label: Volume, shape, affine, label_name: str, *, outside: int = 0) -> tuple[Volume, str]:
    """``label`` on the image grid ``(shape, affine)``, and how it was stored (``""`` when already on it).

    A label file saved by another tool may hold the image's voxels in another axis order (flipped or permuted
    axes: the same voxels in the same places) or only a box of them: 3D Slicer crops a segmentation to the extent
    of its segments by default, moving the origin so every voxel stays where it was
    (https://discourse.slicer.org/t/the-resolutions-of-segment-and-mri-are-different/9394). Both are read back
    losslessly: the axes reordered (nibabel's ``io_orientation`` / ``apply_orientation``), the box placed in a
    volume of ``outside``: 0 (background) for a dataset's label, where the tool saved only the extent of its
    segments; 255 (not annotated) for an expert's partial annotation, where the rest was not looked at.

    Anything else (another voxel size, a shift by part of a voxel, a box reaching outside the image, a rotation)
    raises :class:`DatasetError` naming ``label_name``: resampling a label would invent boundaries.
    """
    shape = tuple(int(n) for n in shape)
    affine = np.asarray(affine, dtype=np.float64)
    if label.shape == shape and np.allclose(label.affine, affine, atol=AFFINE_ATOL, rtol=0):
        return label, ""
    placed = _placement(label, shape, affine) if label.array.ndim == 3 and len(shape) == 3 else None
    if placed is None:
        raise _grid_error(label, shape, affine, label_name)
    if isinstance(placed, float):
        raise _grid_error(label, shape, affine, label_name, f" (the image's voxel size and axes, but its voxels sit "
                                                            f"{placed:.3g} mm off the image's)")
    ornt, offset = placed
    from nibabel.orientations import apply_orientation

    turned = not np.array_equal(ornt, np.column_stack([np.arange(3), np.ones(3)]))
    arr = np.ascontiguousarray(apply_orientation(label.array, ornt)) if turned else label.array
    stop = [o + n for o, n in zip(offset, arr.shape)]
    box = ", ".join(f"{o}:{e}" for o, e in zip(offset, stop))
    if min(offset) < 0 or any(e > n for e, n in zip(stop, shape)):
        raise _grid_error(label, shape, affine, label_name,
                          f" (its voxels would sit at [{box}] of the image's grid, partly outside it)")
    how = []
    if turned:
        import nibabel as nib

        how.append(f"stored in {label.orientation} axis order (the image's: {''.join(nib.aff2axcodes(affine))})")
    if arr.shape != shape:
        full = np.full(shape, outside, dtype=np.promote_types(arr.dtype, np.min_scalar_type(outside)))
        full[tuple(slice(o, e) for o, e in zip(offset, stop))] = arr
        arr = full
        rest = {0: "background (0)", UNLABELED: f"not annotated ({UNLABELED})"}.get(outside, str(outside))
        how.append(f"cropped to voxels [{box}] of the image's {shape}, the rest read as {rest}")
    return Volume(arr, affine, header=None, path=label.path), "; ".join(how)


def require_label_values(label: Volume, allowed: dict[int, str], label_name: str, *, partial: bool = True) -> np.ndarray:
    """Check label values are integers named in ``allowed`` (plus 255 when ``partial``); return them."""
    arr = label.array
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            raise DatasetError(f"{label_name}: label volume holds non-integer values (dtype {arr.dtype})", path=label.path)
    elif not np.issubdtype(arr.dtype, np.integer):
        raise DatasetError(f"{label_name}: label dtype {arr.dtype} is not an integer type", path=label.path)
    values = np.unique(arr)
    if allowed:
        ok = set(allowed) | ({UNLABELED} if partial else set())
        bad = [v for v in values.tolist() if v not in ok]
        if bad:
            raise DatasetError(
                f"{label_name}: label values {[int(b) if float(b).is_integer() else b for b in bad]} "
                f"are not in dataset.json labels {sorted(allowed)}"
                + (f" (or {UNLABELED} = not annotated)" if partial else ""),
                path=label.path,
            )
    elif (values < 0).any():
        raise DatasetError(f"{label_name}: negative label values {values[values < 0].tolist()}", path=label.path)
    return values.astype(np.int64)
