"""Label conventions, in one place.

* Labels are small non-negative integers; ``dataset.json`` names them (``{"0": "background", ...}``
  in the Medical Segmentation Decathlon layout, ``{"background": 0, ...}`` in nnU-Net v2's).
* **Partial labels** mark voxels nobody has annotated yet with :data:`UNLABELED` (255). Losses,
  metrics and cost models ignore them; everything else is a real label an expert (or the oracle)
  gave.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["UNLABELED", "LABEL_DTYPE", "LabelMap", "parse_label_names", "empty_partial_labels", "annotated_mask"]

#: Value of a voxel that has not been annotated in a partial label volume.
UNLABELED = 255
#: dtype of label volumes medal writes.
LABEL_DTYPE = np.uint8


def parse_label_names(labels: dict, *, source: str = "dataset.json") -> dict[int, str]:
    """Read ``dataset.json``'s ``labels`` in either layout into ``{value: name}``.

    Raises ``ValueError`` naming ``source`` when a value is not a usable integer label.
    """
    if not isinstance(labels, dict):
        raise ValueError(f"{source}: 'labels' must be a mapping, got {type(labels).__name__}")
    out: dict[int, str] = {}
    for key, value in labels.items():
        if isinstance(key, str) and key.strip().lstrip("-").isdigit():  # MSD: {"1": "Anterior"}
            number, name = int(key), value
        elif isinstance(value, int) and not isinstance(value, bool):  # nnU-Net v2: {"Anterior": 1}
            number, name = value, key
        else:
            raise ValueError(
                f"{source}: label {key!r}: {value!r} is neither '\"<int>\": name' nor 'name: <int>' "
                "(region-based nnU-Net labels are not supported)"
            )
        if not 0 <= number < UNLABELED:
            raise ValueError(f"{source}: label value {number} must lie in 0..{UNLABELED - 1} ({UNLABELED} marks 'not annotated')")
        out[number] = str(name)
    return dict(sorted(out.items()))


def empty_partial_labels(shape) -> np.ndarray:
    """A label volume of ``shape`` in which nothing is annotated yet."""
    return np.full(tuple(shape), UNLABELED, dtype=LABEL_DTYPE)


def annotated_mask(labels: np.ndarray) -> np.ndarray:
    """Boolean mask of the voxels that carry a real label."""
    return np.asarray(labels) != UNLABELED


@dataclass(frozen=True)
class LabelMap:
    """A dataset's label values and the contiguous class indices a network trains on.

    ``values`` are the label values as they appear in the files (sorted, background ``0`` first;
    sparse values such as ``0, 17, 42, 117`` are fine); class index ``i`` stands for ``values[i]``.
    Training, scoring and selection work in indices; everything written for people or other tools
    (predictions, annotations, the oracle's labels) is in the dataset's own values.
    """

    values: tuple[int, ...]
    names: dict[int, str] = field(default_factory=dict)  # value -> name
    source: str = "dataset.json"

    def __post_init__(self):
        v = tuple(int(x) for x in self.values)
        if len(v) < 2 or v[0] != 0 or list(v) != sorted(set(v)) or v[-1] >= UNLABELED:
            raise ValueError(f"label values must be sorted, distinct, start with 0 (background) and stay below "
                             f"{UNLABELED}, got {list(self.values)}")
        object.__setattr__(self, "values", v)

    @property
    def n_classes(self) -> int:
        return len(self.values)

    @property
    def identity(self) -> bool:
        return self.values == tuple(range(len(self.values)))

    def name(self, value: int) -> str:
        return self.names.get(int(value), str(value))

    def _lut(self) -> np.ndarray:
        lut = np.full(UNLABELED + 1, -1, dtype=np.int16)
        lut[list(self.values)] = np.arange(len(self.values))
        lut[UNLABELED] = UNLABELED
        return lut

    def to_index(self, labels: np.ndarray, *, where: str = "labels") -> np.ndarray:
        """Label values -> class indices (uint8); ``255`` (not annotated) stays ``255``.

        A value the map does not hold raises ``ValueError`` naming ``where`` and the values."""
        arr = np.asarray(labels)
        if self.identity and arr.dtype == np.uint8:
            bad = np.unique(arr[(arr >= len(self.values)) & (arr != UNLABELED)])
            if bad.size:
                raise ValueError(f"{where}: label values {bad.tolist()} are not among the dataset's {list(self.values)}")
            return arr
        flat = np.asarray(arr, dtype=np.int64)
        out_of_range = (flat < 0) | (flat > UNLABELED)
        lut = self._lut()
        idx = np.where(out_of_range, -1, lut[np.clip(flat, 0, UNLABELED)])
        if (idx < 0).any():
            bad = np.unique(flat[idx < 0]).tolist()
            raise ValueError(f"{where}: label values {bad} are not among the dataset's {list(self.values)}")
        return idx.astype(np.uint8)

    def to_values(self, index: np.ndarray) -> np.ndarray:
        """Class indices -> label values (uint8); ``255`` stays ``255``."""
        idx = np.asarray(index)
        if self.identity:
            return idx.astype(np.uint8, copy=False)
        lut = np.full(UNLABELED + 1, UNLABELED, dtype=np.uint8)
        lut[: len(self.values)] = self.values
        return lut[np.clip(idx.astype(np.int64), 0, UNLABELED)]

    def to_json(self) -> dict:
        return {"values": list(self.values), "names": {str(k): v for k, v in self.names.items()}, "source": self.source}

    @classmethod
    def default(cls) -> "LabelMap":
        """Background and one foreground class: a dataset with no labels and no declared names."""
        return cls((0, 1), {0: "background", 1: "foreground"}, "default (no labels found)")
