"""One voxel spacing for the network, each case's own grid for everything else (``data.spacing``).

Cases scanned at different voxel sizes show the same anatomy over different numbers of voxels, and a
network trained on their raw grids must learn every scale at once. nnU-Net resamples every case to one
target spacing, the dataset's median by default, before training, and resamples its predictions back to
each case's own grid (Isensee et al., "nnU-Net: a self-configuring method for deep learning-based
biomedical image segmentation", Nature Methods 18, 2021; ``nnunetv2/preprocessing/resampling``). medal
does the same for the network only:

- training: the normalised image is resampled trilinearly, the (partial) label by nearest neighbour, so
  255 ("not annotated") stays 255 and no class value is invented;
- scoring and evaluation: the image is resampled to the network's spacing, and the mean probabilities
  and every score volume come back to the case's own grid trilinearly (the prediction is their argmax);
- units, costs, tasks, the napari layers, the painted labels and every file medal writes stay on each
  case's own grid.

The spacing a model was trained at is stored in its checkpoint (``meta.spacing``) and scoring uses that
one, so a model is never run at a spacing it did not learn. A case within :data:`SPACING_TOLERANCE`
of the target is used as it is, bit for bit. Unlike nnU-Net there is no separate out-of-plane rule for
very anisotropic cases (nnU-Net resamples such an axis by nearest neighbour).
"""

from __future__ import annotations

import numpy as np

from .errors import DatasetError
from .io import volume_spacing

__all__ = ["MIXED_RATIO", "SPACING_TOLERANCE", "checkpoint_spacing", "mixed_spacing_note", "network_shape", "resolve_spacing", "to_case_grid",
           "to_network_grid", "training_spacing"]

#: relative difference in every axis below which a case is not resampled
SPACING_TOLERANCE = 0.02


def _header_spacings(dataset) -> list[tuple[float, ...]]:
    """Each readable 3D image's voxel spacing, from its header (a bad file is reported where it is read
    for training or scoring, not here)."""
    out = []
    for case in dataset.cases:
        try:
            s = volume_spacing(case.image)
        except DatasetError:
            continue
        if len(s) == 3:
            out.append(s)
    return out


def resolve_spacing(data_cfg, dataset) -> tuple[float, float, float] | None:
    """The target spacing ``data.spacing`` asks for: ``None`` (no resampling), the given mm per array
    axis, or ``"median"``: the per-axis median over the dataset's images, read from their headers."""
    spec = getattr(data_cfg, "spacing", None)
    if spec is None:
        return None
    if spec != "median":
        return tuple(float(s) for s in spec)
    spacings = _header_spacings(dataset)
    if not spacings:
        raise DatasetError(f"{dataset.root}: data.spacing 'median': no readable 3D image to take the median of")
    return tuple(round(float(v), 6) for v in np.median(np.asarray(spacings, dtype=np.float64), axis=0))


#: the ratio of the largest to the smallest spacing along an axis from which a run with ``data.spacing: null``
#: says so (``medal dataset check`` uses the same ratio)
MIXED_RATIO = 1.5


def mixed_spacing_note(data_cfg, dataset) -> str | None:
    """A one-line NOTE for a run on each case's own grid (``data.spacing: null``) over cases whose voxel
    spacing differs :data:`MIXED_RATIO` times or more along an axis; ``None`` otherwise. Headers only."""
    if getattr(data_cfg, "spacing", None) is not None:
        return None
    spacings = _header_spacings(dataset)
    if len(spacings) < 2:
        return None
    arr = np.asarray(spacings, dtype=np.float64)
    ratio = arr.max(0) / np.maximum(arr.min(0), 1e-9)
    if ratio.max() < MIXED_RATIO:
        return None
    return (f"NOTE: voxel spacing differs across the cases up to {ratio.max():.1f}x along axis {int(ratio.argmax())} "
            "and data.spacing is null (each case's own grid); data.spacing: median trains and predicts at one "
            "spacing, measured better on such data (README, 'Mixed spacing')")


def training_spacing(data_cfg, dataset, init=None) -> tuple[float, float, float] | None:
    """The spacing a network trains at: :func:`resolve_spacing`, except that with ``"median"`` a warm start
    from checkpoint ``init`` keeps the spacing its model learnt (cases added to the dataset since then
    would otherwise move the median under a trained network)."""
    if getattr(data_cfg, "spacing", None) == "median" and init is not None:
        from medal.model import load_checkpoint

        learnt = checkpoint_spacing(load_checkpoint(init)[2])
        if learnt is not None:
            return learnt
    return resolve_spacing(data_cfg, dataset)


def checkpoint_spacing(payload: dict | None) -> tuple[float, float, float] | None:
    """The spacing a checkpoint's model was trained at (``None``: each case's own grid)."""
    spacing = ((payload or {}).get("meta") or {}).get("spacing")
    return tuple(float(s) for s in spacing) if spacing else None


def network_shape(shape, spacing, target) -> tuple[int, ...] | None:
    """The grid shape of a case of ``shape`` and ``spacing`` at ``target`` spacing, or ``None`` when the
    case is used as it is (no target, or every axis within :data:`SPACING_TOLERANCE`)."""
    if target is None:
        return None
    spacing = np.asarray(spacing, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if spacing.shape != (3,) or target.shape != (3,):
        raise ValueError(f"need 3 spacings, got {spacing.tolist()} and {target.tolist()}")
    if np.all(np.abs(spacing / target - 1) <= SPACING_TOLERANCE):
        return None
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target))


def _interpolate(array: np.ndarray, shape, *, nearest: bool) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    lead = array.shape[:-3]
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).reshape(1, -1, *array.shape[-3:])
    if nearest:
        out = F.interpolate(t, size=tuple(shape), mode="nearest-exact")
    else:
        out = F.interpolate(t, size=tuple(shape), mode="trilinear", align_corners=False)
    return out.reshape(*lead, *shape).numpy()


def to_network_grid(array: np.ndarray, spacing, target, *, labels: bool = False) -> np.ndarray:
    """``array`` (``(Z, Y, X)`` of a case with voxel ``spacing``, or ``(C, Z, Y, X)``: each channel alike) on
    the ``target`` spacing's grid: trilinear for an image (float32), nearest neighbour for a label map (its
    dtype and values kept). Returned unchanged when :func:`network_shape` says no resampling is needed."""
    shape = network_shape(array.shape[-3:], spacing, target)
    if shape is None:
        return array
    if labels:
        return _interpolate(array, shape, nearest=True).astype(array.dtype)
    return _interpolate(array, shape, nearest=False)


def to_case_grid(array: np.ndarray, shape) -> np.ndarray:
    """Network-grid maps (``(..., z, y, x)``: probabilities, score volumes) back on a case's grid of
    ``shape`` (trilinear; unchanged when the shape already matches)."""
    shape = tuple(int(s) for s in shape)
    if tuple(array.shape[-3:]) == shape:
        return array
    return _interpolate(array, shape, nearest=False)
