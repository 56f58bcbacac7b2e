"""Label conventions, in one place.

* Labels are small non-negative integers; ``dataset.json`` names them (``{"0": "background", ...}``
  in the Medical Segmentation Decathlon layout, ``{"background": 0, ...}`` in nnU-Net v2's).
* **Partial labels** mark voxels nobody has annotated yet with :data:`UNLABELED` (255). Losses,
  metrics and cost models ignore them; everything else is a real label an expert (or the oracle)
  gave.
"""

from __future__ import annotations

import numpy as np

__all__ = ["UNLABELED", "LABEL_DTYPE", "parse_label_names", "empty_partial_labels", "annotated_mask"]

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
