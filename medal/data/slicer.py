"""3D Slicer's segmentation files (``.seg.nrrd``) as label files.

Slicer stores a segmentation as a NRRD image with its segments described in custom header fields (Slicer developer
guide, "Segmentation labelmap file format (.seg.nrrd)"; the fields read here are those slicerio's
``read_segmentation_info`` reads): ``SegmentN_Name``, ``SegmentN_LabelValue`` (the voxel value of segment N in its
layer) and ``SegmentN_Layer``. Segments that do not overlap share one 3D layer; overlapping ones are saved in
several layers, a 4D file whose first axis is the layer. By default the file is cropped to the extent of its
segments (:func:`medal.data.validate.label_on_grid` places the box back on the image's grid).

medal reads such a file as one label volume in the dataset's values: each segment's voxels get the value
``dataset.json`` gives the label of the same name (case and surrounding spaces ignored), so a Slicer user's
segment numbering (the order segments were created in) does not have to match ``dataset.json``'s. Without label
names in ``dataset.json`` the values stay as Slicer stored them. A segment whose name is not a dataset label, and
segments that overlap (one voxel, two labels), are one-line errors naming the file: medal cannot choose for the
annotator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DatasetError
from .io import Volume, load_volume

__all__ = ["SLICER_SUFFIX", "is_slicer_segmentation", "read_segmentation", "segments_of"]

SLICER_SUFFIX = ".seg.nrrd"


def is_slicer_segmentation(path) -> bool:
    return Path(path).name.lower().endswith(SLICER_SUFFIX)


def segments_of(path) -> list[dict]:
    """The segments a ``.seg.nrrd`` header describes: ``[{"name", "value", "layer"}, ...]`` in file order (empty for
    a NRRD without Slicer's fields)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise DatasetError(f"{path}: cannot read the segmentation's header ({str(exc).strip().splitlines()[-1]})",
                           path=Path(path)) from None
    keys = set(reader.GetMetaDataKeys())
    out = []
    i = 0
    while f"Segment{i}_LabelValue" in keys:
        p = f"Segment{i}_"
        try:
            value = int(reader.GetMetaData(p + "LabelValue"))
            layer = int(reader.GetMetaData(p + "Layer")) if p + "Layer" in keys else 0
        except ValueError:
            raise DatasetError(f"{path}: segment {i}'s LabelValue / Layer is not a number", path=Path(path)) from None
        name = reader.GetMetaData(p + "Name") if p + "Name" in keys else reader.GetMetaData(p + "ID") \
            if p + "ID" in keys else f"Segment_{i + 1}"
        out.append({"name": name, "value": value, "layer": layer})
        i += 1
    return out


def read_segmentation(path, label_names: dict[int, str] | None = None, name: str | None = None) -> Volume:
    """A ``.seg.nrrd`` file as one 3D label :class:`Volume` in the dataset's values (see the module docstring).

    ``label_names``: ``dataset.json``'s ``{value: name}``; ``name``: how messages name the file."""
    path = Path(path)
    name = name or str(path)
    segments = segments_of(path)
    vol = load_volume(path, ndim=None)
    arr = np.asarray(vol.array)
    if not segments:  # a plain NRRD named .seg.nrrd: the values as stored
        if arr.ndim != 3:
            raise DatasetError(f"{name}: expected a 3D label volume, got shape {arr.shape}", path=path)
        return vol
    if arr.size == 1:  # Slicer's mark of a segmentation with no voxel data (every segment empty)
        raise DatasetError(f"{name}: an empty segmentation (Slicer saves one voxel when no segment holds any): "
                           "nothing painted to read", path=path)
    layers = arr if arr.ndim == 4 else arr[..., None]
    if layers.ndim != 4:
        raise DatasetError(f"{name}: expected a 3D segmentation or a 4D one of layers, got shape {arr.shape}",
                           path=path)
    by_name = {str(v).strip().lower(): k for k, v in (label_names or {}).items()}
    target = {}
    for seg in segments:
        if not by_name:
            target[seg["name"]] = seg["value"]
            continue
        key = str(seg["name"]).strip().lower()
        if key not in by_name:
            raise DatasetError(f"{name}: segment {seg['name']!r} is not a label in dataset.json ("
                               + ", ".join(f"{k}={v}" for k, v in sorted(label_names.items()))
                               + "): rename the segment in Slicer, or add the label", path=path)
        target[seg["name"]] = by_name[key]
        if seg["layer"] >= layers.shape[-1]:
            raise DatasetError(f"{name}: segment {seg['name']!r} is in layer {seg['layer']}, the file has "
                               f"{layers.shape[-1]}", path=path)
    dtype = np.uint8 if max(target.values(), default=0) <= 255 else np.uint16
    out = np.zeros(layers.shape[:3], dtype=dtype)
    owner = np.full(layers.shape[:3], -1, dtype=np.int16)
    for i, seg in enumerate(segments):
        mask = layers[..., seg["layer"]] == seg["value"]
        if seg["value"] == 0 or not mask.any():
            continue
        clash = mask & (owner >= 0)
        if clash.any():
            other = segments[int(owner[clash][0])]["name"]
            raise DatasetError(f"{name}: segments {other!r} and {seg['name']!r} overlap in {int(clash.sum())} "
                               "voxel(s); a label file holds one label per voxel: remove the overlap in Slicer",
                               path=path)
        out[mask] = target[seg["name"]]
        owner[mask] = i
    return Volume(out, vol.affine, header=None, path=path)
