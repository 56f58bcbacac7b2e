"""Checks shared by the loading API and ``medal dataset check``: one message per problem.

Each function raises :class:`DatasetError` whose message names the file; ``check_dataset`` calls
them one by one and collects the messages, loaders call them and let the first one propagate.
"""

from __future__ import annotations

import numpy as np

from .errors import DatasetError
from .io import Volume
from .labels import UNLABELED

__all__ = ["require_finite", "require_same_grid", "require_label_values", "AFFINE_ATOL"]

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


def _other_axis_order(image: Volume, label: Volume) -> str:
    """A hint when ``label`` is ``image``'s grid stored in another axis order (flipped or permuted axes, as another
    tool may save it), else ``""``."""
    try:
        from nibabel.orientations import axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

        ornt = ornt_transform(io_orientation(label.affine), axcodes2ornt(tuple(image.orientation)))
        shape = tuple(label.shape[int(i)] for i in np.argsort(ornt[:, 0]))
        affine = label.affine @ inv_ornt_aff(ornt, label.shape)
    except Exception:  # noqa: BLE001 - a degenerate affine: no hint, the message stands
        return ""
    if shape != tuple(image.shape) or not np.allclose(affine, image.affine, atol=AFFINE_ATOL, rtol=0):
        return ""
    return (f" -- it is the image's grid stored in another axis order (label {label.orientation}, image "
            f"{image.orientation}): save the label in the image's order, e.g. nibabel's "
            f"img.as_reoriented(ornt_transform(io_orientation(img.affine), axcodes2ornt({image.orientation!r})))")


def require_same_grid(image: Volume, label: Volume, label_name: str) -> None:
    if label.shape != image.shape:
        raise DatasetError(f"{label_name}: shape {label.shape} does not match image shape {image.shape}"
                           + _other_axis_order(image, label), path=label.path)
    if not np.allclose(label.affine, image.affine, atol=AFFINE_ATOL, rtol=0):
        diff = float(np.abs(label.affine - image.affine).max())
        raise DatasetError(
            f"{label_name}: affine differs from the image's by up to {diff:.4g} mm "
            f"(label {np.round(label.affine, 4).tolist()} vs image {np.round(image.affine, 4).tolist()})"
            + _other_axis_order(image, label),
            path=label.path,
        )


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
