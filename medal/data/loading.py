"""Loading one case with every check applied (the API counterpart of ``medal dataset check``)."""

from __future__ import annotations

from .dataset import Case, Dataset
from .errors import DatasetError
from .io import Volume, load_volume
from .validate import require_finite, require_label_values, require_same_grid

__all__ = ["load_case"]


def load_case(case: Case, dataset: Dataset | None = None, *, partial: bool = True,
              cache=None) -> tuple[Volume, Volume | None]:
    """Read and validate a case's image and (if any) label.

    Raises :class:`DatasetError` with the same message ``medal dataset check`` prints for the first
    problem found: missing or unreadable file, not 3D, NaN/Inf intensities, label grid mismatch,
    label values not in ``dataset.json`` (255 is accepted as "not annotated" when ``partial``).
    ``cache``: a :class:`~medal.data.cache.VolumeCache` the image is read through (labels are always read).
    """
    rel = dataset.relative if dataset is not None else str
    try:
        image = cache.volume(case.image) if cache is not None else load_volume(case.image)
    except DatasetError as exc:
        raise DatasetError(str(exc).replace(str(case.image), rel(case.image), 1), path=case.image) from None
    require_finite(image, rel(case.image))
    if case.label is None:
        return image, None
    try:
        label = load_volume(case.label)
    except DatasetError as exc:
        raise DatasetError(str(exc).replace(str(case.label), rel(case.label), 1), path=case.label) from None
    require_same_grid(image, label, rel(case.label))
    require_label_values(label, dataset.label_names if dataset is not None else {}, rel(case.label), partial=partial)
    return image, label
