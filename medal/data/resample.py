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

Before resampling, ``data.orientation`` (``RAS`` by default) flips and permutes each case's array axes to one
anatomical order (nibabel's ``io_orientation`` / ``ornt_transform``: the closest axis order, no oblique
resampling), so cases written by different converters look alike to the network, as MONAI's ``Orientationd``
does; :class:`NetworkGrid` holds both steps for one case and their inverse.

The spacing a model was trained at is stored in its checkpoint (``meta.spacing``) and scoring uses that
one, so a model is never run at a spacing it did not learn. A case within :data:`SPACING_TOLERANCE`
of the target is used as it is, bit for bit. Unlike nnU-Net there is no separate out-of-plane rule for
very anisotropic cases (nnU-Net resamples such an axis by nearest neighbour).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DatasetError
from .io import volume_affine

__all__ = ["MIXED_RATIO", "PATCH_RATIO", "SPACING_TOLERANCE", "NetworkGrid", "checkpoint_orientation",
           "checkpoint_spacing", "median_network_shape", "median_spacing", "mixed_orientation_note",
           "mixed_spacing_note", "network_grid", "network_shape", "orientation_transform", "patch_padding_note",
           "planning_spacing", "resolve_spacing", "storage_orders", "to_case_grid", "to_network_grid",
           "training_orientation", "training_spacing"]

#: relative difference in every axis below which a case is not resampled
SPACING_TOLERANCE = 0.02


def _header_spacings(dataset, orientation=None) -> list[tuple[float, ...]]:
    """Each readable image's voxel spacing, from its header (a bad file is reported where it is read for
    training or scoring, not here), along the axes of ``orientation`` (axis codes) when set."""
    out = []
    first_error = None
    for case in dataset.cases:
        try:
            affine = volume_affine(case.image)
        except DatasetError as exc:
            first_error = first_error or exc
            continue
        s = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
        ornt = orientation_transform(affine, orientation)
        if ornt is not None:
            s = s[np.argsort(ornt[:, 0])]
        out.append(tuple(float(v) for v in s))
    if not out and first_error is not None:  # say why: the first unreadable image (a stale dataset.json, say)
        raise DatasetError(f"{dataset.root}: no readable image among {len(dataset.cases)} case(s), the first: "
                           f"{first_error}; run `medal dataset check {dataset.root}`", path=dataset.root)
    return out


def resolve_spacing(data_cfg, dataset) -> tuple[float, float, float] | None:
    """The target spacing ``data.spacing`` asks for: ``None`` (no resampling), the given mm per array
    axis, or ``"median"``: the per-axis median over the dataset's images, read from their headers."""
    spec = getattr(data_cfg, "spacing", None)
    if spec is None:
        return None
    if spec != "median":
        return tuple(float(s) for s in spec)
    median = median_spacing(dataset, getattr(data_cfg, "orientation", None))
    if median is None:
        raise DatasetError(f"{dataset.root}: data.spacing 'median': no readable 3D image to take the median of")
    return median


def median_spacing(dataset, orientation=None) -> tuple[float, float, float] | None:
    """The per-axis median voxel spacing over the dataset's images (along ``orientation``'s axes), from their
    headers; ``None`` when no image is readable."""
    spacings = _header_spacings(dataset, orientation)
    if not spacings:
        return None
    return tuple(round(float(v), 6) for v in np.median(np.asarray(spacings, dtype=np.float64), axis=0))


def planning_spacing(data_cfg, dataset, spacing) -> tuple[float, float, float] | None:
    """The voxel spacing ``model.strides: auto`` plans the network for: the training ``spacing`` when the cases are
    resampled to one, else (``data.spacing: null``, each case's own grid) the median over the headers."""
    if spacing is not None:
        return tuple(spacing)
    try:
        return median_spacing(dataset, getattr(data_cfg, "orientation", None))
    except DatasetError:
        return None


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


#: how many times the median case's extent (voxels of the network's grid) a patch axis may be before a run says so
PATCH_RATIO = 1.5


def median_network_shape(data_cfg, dataset, target="resolve") -> tuple[float, float, float] | None:
    """The median case's extent in voxels of the network's grid (each case's header shape scaled from its spacing to
    ``target``, by default ``data.spacing`` resolved (pass it when resolved already: a pass over every header), in
    ``data.orientation``'s axis order; headers only), or ``None`` when no case is a readable volume."""
    from .io import volume_shape

    if isinstance(target, str):
        try:
            target = resolve_spacing(data_cfg, dataset)
        except DatasetError:
            return None
    orientation = getattr(data_cfg, "orientation", None)
    extents = []
    for case in dataset.cases:
        try:
            affine, shape = volume_affine(case.image), volume_shape(case.image)[:3]
        except DatasetError:
            continue
        if len(shape) != 3:  # not a volume: `dataset check` says so for that case
            continue
        sp = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
        ornt = orientation_transform(affine, orientation)
        if ornt is not None:
            order = np.argsort(ornt[:, 0])
            sp, shape = sp[order], tuple(shape[a] for a in order)
        extents.append([n * s / t for n, s, t in zip(shape, sp, target if target is not None else sp)])
    if not extents:
        return None
    return tuple(float(v) for v in np.median(np.asarray(extents), axis=0))


def patch_padding_note(cfg, dataset) -> str | None:
    """A one-line NOTE when ``training.patch_size`` is more than :data:`PATCH_RATIO` times the median case along an
    axis of the network's grid (:func:`median_network_shape`): every patch is then mostly padding along it, and a
    patch cut to the case costs less for the same Dice (``benchmarks/anisotropic_strides.py``: 3 mm slices, 10-15
    deep, a 32-deep patch against a 16-deep one: Dice 0.8417 vs 0.8409, 1.6x the time). nnU-Net clips its patch to
    the median shape for the same reason. ``None`` otherwise."""
    try:
        target = resolve_spacing(cfg.data, dataset)
    except DatasetError:
        return None
    median = median_network_shape(cfg.data, dataset, target)
    if median is None:
        return None
    patch = [int(v) for v in cfg.training.patch_size]
    over = [a for a in range(3) if patch[a] > PATCH_RATIO * median[a]]
    if not over:
        return None
    div = cfg.model.planned(planning_spacing(cfg.data, dataset, target), patch=patch).divisors
    fit = [int(np.ceil(median[a] / div[a]) * div[a]) if a in over else patch[a] for a in range(3)]
    return (f"NOTE: training.patch_size {patch} is larger than the median case on the network's grid "
            f"({[int(round(v)) for v in median]} voxels) along axis {', '.join(map(str, over))}: every patch is "
            f"mostly padding there; {fit} (training.patch_size and uncertainty.roi_size) trains on the same "
            "voxels for less (README, 'Mixed spacing')")


def storage_orders(dataset) -> dict[str, int]:
    """How many readable images are stored in each orientation (axis codes, e.g. ``{"RAS": 40, "PLS": 20}``),
    from their headers."""
    import nibabel as nib

    counts: dict[str, int] = {}
    for case in dataset.cases:
        try:
            codes = "".join(str(c) for c in nib.aff2axcodes(volume_affine(case.image)))
        except (DatasetError, ValueError):
            continue
        counts[codes] = counts.get(codes, 0) + 1
    return counts


def mixed_orientation_note(data_cfg, dataset) -> str | None:
    """A one-line NOTE for a run in each case's storage order (``data.orientation: null``) over cases stored in
    more than one orientation; ``None`` otherwise. Headers only."""
    if getattr(data_cfg, "orientation", None):
        return None
    counts = storage_orders(dataset)
    if len(counts) < 2:
        return None
    common = max(counts, key=counts.get)
    return ("NOTE: the cases are stored in " + ", ".join(f"{n} x {c}" for c, n in sorted(counts.items(),
                                                                                     key=lambda kv: -kv[1]))
            + " axis orders and data.orientation is null (each case's storage order); data.orientation: "
            f"{common} shows the network every case in one order (README, 'Mixed orientation')")


def training_orientation(data_cfg, init=None) -> str | None:
    """The axis order a network trains in: ``data.orientation``, except that a warm start from checkpoint ``init``
    keeps the order its model learnt (``None`` for a model trained in each case's storage order, as every model
    written before ``data.orientation`` existed was): weights are never fine-tuned on flipped inputs."""
    if init is not None:
        from medal.model import load_checkpoint

        return checkpoint_orientation(load_checkpoint(init)[2])
    return getattr(data_cfg, "orientation", None)


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


def checkpoint_orientation(payload: dict | None) -> str | None:
    """The axis codes a checkpoint's model was trained in (``data.orientation``; ``None``: each case's own)."""
    return ((payload or {}).get("meta") or {}).get("orientation") or None


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
    return _resample(array, network_shape(array.shape[-3:], spacing, target), labels=labels)


def _resample(array: np.ndarray, shape, *, labels: bool) -> np.ndarray:
    """``array`` on a grid of ``shape`` (``None``: as it is): trilinear, or nearest neighbour keeping the dtype."""
    if shape is None:
        return array
    if labels:
        return _interpolate(array, shape, nearest=True).astype(array.dtype)
    return _interpolate(array, shape, nearest=False)


def orientation_transform(affine, target: str | None) -> np.ndarray | None:
    """nibabel's orientation transform from the array axes of a case with ``affine`` to ``target`` axis codes
    (``"RAS"``: array axis 0 points Right, 1 Anterior, 2 Superior), as ``(3, 2)`` rows of (new axis, flip); ``None``
    when no target is set or the case is stored that way already."""
    if not target:
        return None
    from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

    t = ornt_transform(io_orientation(np.asarray(affine, dtype=np.float64)), axcodes2ornt(tuple(target)))
    if np.array_equal(t[:, 0], [0, 1, 2]) and np.all(t[:, 1] == 1):
        return None
    return t


def _reorient(array: np.ndarray, ornt) -> np.ndarray:
    """``array``'s last three axes flipped and permuted by orientation transform ``ornt`` (nibabel's
    ``apply_orientation``, on the trailing axes so a channel or class axis in front is kept)."""
    if ornt is None:
        return array
    lead = array.ndim - 3
    out = array
    for i, (_, flip) in enumerate(ornt):
        if flip == -1:
            out = np.flip(out, axis=lead + i)
    order = np.argsort(ornt[:, 0])
    return np.ascontiguousarray(np.transpose(out, list(range(lead)) + [lead + int(a) for a in order]))


def _inverse(ornt) -> np.ndarray | None:
    if ornt is None:
        return None
    inv = np.empty_like(ornt)
    for i, (axis, flip) in enumerate(ornt):
        inv[int(axis)] = (i, flip)
    return inv


@dataclass(frozen=True)
class NetworkGrid:
    """How one case goes to the network's grid and back: reoriented to ``data.orientation`` (a lossless flip and
    permutation of the array axes), then resampled to ``data.spacing`` (see the module docstring)."""

    case_shape: tuple[int, int, int]
    ornt: np.ndarray | None = None  # the case's axes -> the network's (None: the same)
    shape: tuple[int, int, int] | None = None  # the network's grid (None: the reoriented case's, no resampling)
    reoriented: tuple[int, int, int] | None = None  # the case's shape after reorientation

    @property
    def identity(self) -> bool:
        return self.ornt is None and self.shape is None

    def to_network(self, array: np.ndarray, *, labels: bool = False) -> np.ndarray:
        """A case array (``(Z, Y, X)`` or ``(C, Z, Y, X)``) on the network's grid: trilinear for an image,
        nearest neighbour for labels (dtype and values kept); unchanged when the case is used as it is."""
        return _resample(_reorient(array, self.ornt), self.shape, labels=labels)

    def to_case(self, array: np.ndarray) -> np.ndarray:
        """Network-grid maps (``(..., z, y, x)``) back on the case's own grid (trilinear, then the inverse flip
        and permutation)."""
        if self.shape is not None:
            array = to_case_grid(array, self.reoriented)
        return _reorient(array, _inverse(self.ornt))


def network_grid(shape, affine, spacing=None, orientation=None) -> NetworkGrid:
    """The :class:`NetworkGrid` of a case of array ``shape`` and ``affine`` for a network trained at ``spacing``
    (mm per axis of the network's grid, or ``None``) and ``orientation`` (axis codes, or ``None``)."""
    shape = tuple(int(s) for s in shape[-3:])
    affine = np.asarray(affine, dtype=np.float64)
    vox = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    ornt = orientation_transform(affine, orientation)
    rshape, rvox = list(shape), list(vox)
    if ornt is not None:
        for i, (axis, _) in enumerate(ornt):
            rshape[int(axis)], rvox[int(axis)] = shape[i], vox[i]
    return NetworkGrid(shape, ornt, network_shape(rshape, rvox, spacing), tuple(rshape))


def to_case_grid(array: np.ndarray, shape) -> np.ndarray:
    """Network-grid maps (``(..., z, y, x)``: probabilities, score volumes) back on a case's grid of
    ``shape`` (trilinear; unchanged when the shape already matches)."""
    shape = tuple(int(s) for s in shape)
    if tuple(array.shape[-3:]) == shape:
        return array
    return _interpolate(array, shape, nearest=False)
