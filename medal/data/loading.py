"""Loading one case with every check applied (the API counterpart of ``medal dataset check``)."""

from __future__ import annotations

from pathlib import Path

from .dataset import Case, Dataset
from .errors import DatasetError
from .io import Volume, load_volume, volume_affine, volume_shape
from .validate import label_on_grid, require_finite, require_label_values

__all__ = ["load_case", "load_label", "image_grid", "label_file_in", "read_label_file"]


def label_file_in(folder, case_id: str) -> Path | None:
    """The label file of ``case_id`` in a folder of labels named by case id (a run's ``labels/``, ``--labels``):
    ``<case_id>.nii.gz``, ``.nrrd``, ``.seg.nrrd``, ...; hidden files (a save in progress) are not labels."""
    found = sorted(p for p in Path(folder).glob(f"{case_id}.*") if not p.name.startswith("."))
    return found[0] if found else None


def read_label_file(path, label_names: dict | None = None, name: str | None = None) -> Volume:
    """A label file's voxels as stored on its own grid: a volume file, or a 3D Slicer ``.seg.nrrd`` whose segments
    take the values ``label_names`` (``dataset.json``) gives their names (:mod:`medal.data.slicer`)."""
    from .slicer import is_slicer_segmentation, read_segmentation

    if is_slicer_segmentation(path):
        return read_segmentation(path, label_names, name)
    return load_volume(path)


def image_grid(path) -> tuple[tuple[int, ...], object]:
    """``(shape, affine)`` of an image file from its header alone: the grid its labels are read onto."""
    return tuple(volume_shape(path)[:3]), volume_affine(path)


def load_label(path, grid, name: str | None = None, *, outside: int = 0, cache=None,
               label_names: dict | None = None) -> tuple[Volume, str]:
    """Read a label file onto its image's grid (:func:`~medal.data.validate.label_on_grid`): ``(label, how)``.

    ``grid``: the image as a :class:`Volume`, an image file, or ``(shape, affine)``. ``how`` is ``""`` for a label
    stored on the image's grid, else what was done (another axis order, a cropped box). ``outside``: what a
    cropped label's missing voxels hold: 0 (background) for a dataset's label, 255 (not annotated) for an
    expert's annotation. ``label_names``: ``dataset.json``'s, which a Slicer ``.seg.nrrd``'s segment names are
    matched to. Every label read in medal (training, check, simulation oracle and evaluation, ingest)
    goes through here, so a label saved by another tool means the same everywhere. Raises
    :class:`DatasetError` naming ``name`` (default: the path) when it cannot be placed on the grid.
    """
    name = str(path) if name is None else name
    if isinstance(grid, Volume):
        shape, affine = grid.shape, grid.affine
    elif isinstance(grid, (str, Path)):
        shape, affine = image_grid(grid)
    else:
        shape, affine = grid
    try:
        from .slicer import is_slicer_segmentation

        if cache is not None and not is_slicer_segmentation(path):
            label = cache.volume(path)
        else:
            label = read_label_file(path, label_names, name)
    except DatasetError as exc:
        raise DatasetError(str(exc).replace(str(path), name, 1), path=Path(path)) from None
    return label_on_grid(label, shape, affine, name, outside=outside)


def load_case(case: Case, dataset: Dataset | None = None, *, partial: bool = True,
              cache=None, outside: int = 0) -> tuple[Volume, Volume | None]:
    """Read and validate a case's image and (if any) label.

    Raises :class:`DatasetError` with the same message ``medal dataset check`` prints for the first
    problem found: missing or unreadable file, not 3D, NaN/Inf intensities, label grid mismatch,
    label values not in ``dataset.json`` (255 is accepted as "not annotated" when ``partial``).
    ``cache``: a :class:`~medal.data.cache.VolumeCache` the image is read through (labels are always read).
    A label stored in another axis order or cropped is read onto the image's grid (:func:`load_label`), a cropped
    one's missing voxels as ``outside`` (0, background, for a dataset's labels; 255 for partial annotations).
    """
    rel = dataset.relative if dataset is not None else str
    try:
        image = cache.volume(case.image) if cache is not None else load_volume(case.image)
    except DatasetError as exc:
        raise DatasetError(str(exc).replace(str(case.image), rel(case.image), 1), path=case.image) from None
    require_finite(image, rel(case.image))
    if case.label is None:
        return image, None
    label, _ = load_label(case.label, image, rel(case.label), outside=outside,
                          label_names=dataset.label_names if dataset is not None else None)
    require_label_values(label, dataset.label_names if dataset is not None else {}, rel(case.label), partial=partial)
    return image, label
