"""Annotation-effort features of each unit, from a segmentation (predicted, or the truth in simulation).

An expert paints a 3D unit slice by slice along the annotation axis, so every feature is measured on
the 2D cross-sections of ``unit ∩ class`` in the planes normal to ``axis``:

* ``n_slices``: planes the unit spans (each must be visited and checked);
* ``boundary_mm_c``: length of the outline of class ``c`` inside the unit, in mm (what is traced);
* ``components_c``: 2D connected pieces of class ``c`` inside the unit (each a separate stroke);
* ``area_mm2_c``: area of class ``c`` inside the unit, in mm² (what is filled).

All computed for every unit at once with ``np.bincount`` over voxel/edge unit ids.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ANNOTATION_MODES", "EXPECTED_LEVELS", "correction_features", "drop_small_pieces", "effort_features",
           "expected_correction_features", "expected_effort_features", "feature_names", "level_segmentation",
           "cheaper_features"]

#: how an expert annotates a unit: ``draw`` it from an empty unit, or ``correct`` the model's prediction
#: shown in it (the napari plugin's ``--from-prediction``; MONAI Label's edit-the-prediction workflow)
ANNOTATION_MODES = ("draw", "correct")


def feature_names(n_classes: int) -> list[str]:
    names = ["n_slices"]
    for c in range(1, n_classes):
        names += [f"boundary_mm_{c}", f"components_{c}", f"area_mm2_{c}"]
    return names


def _pixel_sides(units: np.ndarray, masks, *, axis: int, spacing):
    """Every in-plane pixel side of the volume, one in-plane direction at a time: yields ``(a_u, b_u,
    edge_len, [(a_m, b_m) per mask])``, the unit ids and mask values on the two sides of each side (the
    volume padded by one, so sides on its border count) and the side's length in mm."""
    spacing = np.asarray(spacing, dtype=float)
    inplane = [d for d in range(3) if d != axis]
    for d in inplane:
        other = inplane[0] if d == inplane[1] else inplane[1]
        pad = [(1, 1) if k == d else (0, 0) for k in range(3)]
        lo, hi = range(0, units.shape[d] + 1), range(1, units.shape[d] + 2)
        pu = np.pad(units, pad)
        pms = [np.pad(m, pad) for m in masks]
        yield (np.take(pu, lo, axis=d), np.take(pu, hi, axis=d), float(spacing[other]),
               [(np.take(pm, lo, axis=d), np.take(pm, hi, axis=d)) for pm in pms])


def _outline_sides(a_in: np.ndarray, b_in: np.ndarray, same: np.ndarray):
    """Which pixel sides are outline of a mask, and for which of their two pixels: a mask pixel whose
    neighbour across the side is not in the mask within the same unit (``same``: both pixels in one unit)."""
    return a_in & ~(b_in & same), b_in & ~(a_in & same)


def effort_features(units: np.ndarray, segmentation: np.ndarray, *, axis: int, spacing=(1.0, 1.0, 1.0),
                    n_classes: int = 2, ids: np.ndarray | None = None, diagonal: bool = False) -> dict[str, np.ndarray]:
    """Features (see module docstring) for unit ids ``ids`` (default: 1..max). ``diagonal``: pieces join
    across in-plane corners too (8-connected, not 4-connected)."""
    from skimage.measure import label as cc_label

    units = np.asarray(units)
    seg = np.asarray(segmentation)
    if units.shape != seg.shape:
        raise ValueError(f"units shape {units.shape} does not match segmentation shape {seg.shape}")
    n = int(units.max()) if units.size else 0
    ids = np.arange(1, n + 1) if ids is None else np.asarray(ids)
    lab = units.ravel()
    spacing = np.asarray(spacing, dtype=float)
    inplane = [d for d in range(3) if d != axis]
    pixel_area = float(spacing[inplane[0]] * spacing[inplane[1]])

    # planes spanned: distinct (unit, plane) pairs, marked in a (unit, plane) table (not sorted: np.unique over
    # every voxel took a quarter of a CT-sized case's selection)
    n_planes = units.shape[axis]
    plane = np.broadcast_to(np.arange(n_planes).reshape([-1 if d == axis else 1 for d in range(3)]),
                            units.shape).ravel()
    spans = np.zeros((n + 1) * n_planes, bool)
    spans[lab.astype(np.int64) * n_planes + plane] = True
    out = {"n_slices": spans.reshape(n + 1, n_planes).sum(axis=1)[ids].astype(float)}
    out["n_slices"][np.asarray(ids) == 0] = 0.0  # unit 0 (outside every unit) spans nothing

    for c in range(1, n_classes):
        mask = seg == c
        inside = mask & (units > 0)
        out[f"area_mm2_{c}"] = np.bincount(lab, weights=mask.ravel().astype(float), minlength=n + 1)[ids] * pixel_area
        # outline: in-plane pixel sides where class-c-inside-unit meets anything else; each side counts for the
        # unit of its class-c voxel, with the length of the pixel side it crosses (one class at a time, so
        # memory stays a few copies of the volume however many classes there are)
        boundary = np.zeros(n + 1)
        for a_u, b_u, edge_len, ((a_in, b_in),) in _pixel_sides(units, [inside], axis=axis, spacing=spacing):
            side_a, side_b = _outline_sides(a_in, b_in, a_u == b_u)
            boundary += np.bincount(a_u[side_a], minlength=n + 1) * edge_len
            boundary += np.bincount(b_u[side_b], minlength=n + 1) * edge_len
        out[f"boundary_mm_{c}"] = boundary[ids]
        # 2D components: equal-value connectivity on a key that differs across units and planes
        key = np.where(inside, lab.reshape(units.shape).astype(np.int64) * units.shape[axis]
                       + plane.reshape(units.shape) + 1, 0)
        # (the key differs between planes, so even a 3D corner-connectivity joins pieces within a plane only)
        comp, m = cc_label(key, background=0, connectivity=2 if diagonal else 1, return_num=True)
        # each piece lies in one unit (the key holds the unit id): any of its voxels names it
        owners = np.zeros(m + 1, np.int64)
        owners[comp.ravel()] = lab
        out[f"components_{c}"] = np.bincount(owners[1:], minlength=n + 1)[ids].astype(float)
    return out


#: probability levels the expected features average over (a uniform grid on (0, 1))
EXPECTED_LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9)


def level_segmentation(probs: np.ndarray, level: float) -> np.ndarray:
    """The segmentation where foreground is called at probability ``level``: each voxel whose
    foreground probability ``1 - p_0`` exceeds ``level`` gets its most likely foreground class."""
    p = np.asarray(probs)
    if p.shape[0] < 2:
        raise ValueError(f"probs must be (C >= 2, Z, Y, X), got shape {p.shape}")
    fg_class = p[1:].argmax(axis=0) + 1
    return np.where(1.0 - p[0] > level, fg_class, 0).astype(np.uint8)


def drop_small_pieces(segmentation: np.ndarray, *, axis: int, spacing=(1.0, 1.0, 1.0),
                      min_mm2: float = 0.0) -> np.ndarray:
    """``segmentation`` with every 2D piece (4-connected, in the planes normal to ``axis``, per class)
    smaller than ``min_mm2`` set to background, in a copy (the input is left as it is); with
    ``min_mm2 <= 0`` the input itself, uncopied.

    Meant for *predicted* segmentations only: an early model's level sets are sprinkled with specks
    of a few voxels that nobody would draw, and each counted as a separate piece (2 s) with its own
    outline. On the tuning split's pool (RESULTS.md, 2026-11-22) the round-0 model predicted
    background slices at 10x their true seconds; dropping pieces under 4 mm² and averaging over
    the levels 0.5/0.7/0.9 raised the rank correlation of predicted and true slice seconds from
    0.26-0.33 to 0.44-0.45 (0.67 -> 0.88 a round later).
    """
    from scipy import ndimage

    seg = np.asarray(segmentation)
    if min_mm2 <= 0:
        return seg
    spacing = np.asarray(spacing, dtype=float)
    inplane = [d for d in range(3) if d != axis]
    min_px = min_mm2 / float(spacing[inplane[0]] * spacing[inplane[1]])
    structure = ndimage.generate_binary_structure(3, 1)
    for k in (0, 2):  # in-plane 4-connectivity only: pieces never join across planes
        structure[tuple(k if d == axis else 1 for d in range(3))] = False
    out = seg.copy()
    for c in np.unique(seg):
        if c == 0:
            continue
        lab, n = ndimage.label(seg == c, structure=structure)
        if not n:
            continue
        small = np.bincount(lab.ravel(), minlength=n + 1) < min_px
        small[0] = False
        out[small[lab]] = 0
    return out


def expected_effort_features(units: np.ndarray, probs: np.ndarray, *, axis: int, spacing=(1.0, 1.0, 1.0),
                             n_classes: int = 2, ids: np.ndarray | None = None,
                             levels=EXPECTED_LEVELS, min_piece_mm2: float = 0.0) -> dict[str, np.ndarray]:
    """Effort features expected under the model's predictive distribution, not the argmax alone.

    The mean over ``levels`` of the features of :func:`level_segmentation`: the foreground region
    drawn at every probability threshold, as a level-set sample of a spatially coherent segmentation.
    With a uniform grid the expected area is the sum of the foreground probabilities (what a
    Bernoulli model of each voxel gives), and an outline the model is unsure of counts in proportion
    to its probability instead of all or nothing, so a weak model's over-called foreground no longer
    inflates the predicted seconds at full weight. ``min_piece_mm2``: pieces smaller than this are
    dropped from each level set first (:func:`drop_small_pieces`).
    """
    out: dict[str, np.ndarray] = {}
    for level in levels:
        seg = drop_small_pieces(level_segmentation(probs, level), axis=axis, spacing=spacing, min_mm2=min_piece_mm2)
        f = effort_features(units, seg, axis=axis, spacing=spacing, n_classes=n_classes, ids=ids)
        for k, v in f.items():
            out[k] = out.get(k, 0.0) + v / len(levels)
    return out


def _new_outline(units: np.ndarray, target: np.ndarray, start: np.ndarray, *, axis: int, spacing, n: int) -> np.ndarray:
    """Per unit (index 0..n), the length in mm of the outline of ``target`` (a boolean class mask) that
    ``start`` does not already have: the in-plane pixel sides where target's membership changes (or a
    target pixel meets another unit, as :func:`effort_features` counts the cut) but start's does not."""
    inside = units > 0
    out = np.zeros(n + 1)
    for a_u, b_u, edge_len, ((a_t, b_t), (a_s, b_s)) in _pixel_sides(units, [target & inside, start & inside],
                                                                       axis=axis, spacing=spacing):
        same = a_u == b_u
        had_a, had_b = _outline_sides(a_s, b_s, same)
        had = had_a | had_b  # start already has an outline on this side
        new_a, new_b = _outline_sides(a_t, b_t, same)
        out += np.bincount(a_u[new_a & ~had], minlength=n + 1) * edge_len
        out += np.bincount(b_u[new_b & ~had], minlength=n + 1) * edge_len
    return out


def correction_features(units: np.ndarray, target: np.ndarray, start: np.ndarray, *, axis: int,
                        spacing=(1.0, 1.0, 1.0), n_classes: int = 2,
                        ids: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Effort features of turning the segmentation ``start`` into ``target`` inside each unit: what an
    expert does who is shown the model's prediction (``start``) in a unit and corrects it.

    Same names as :func:`effort_features`. ``n_slices`` is unchanged (every plane is still visited and
    checked). ``components_c`` / ``area_mm2_c`` are the pieces and area of the region whose class-``c``
    membership must change, ``(target == c) != (start == c)``: each piece (8-connected in its plane: a
    one-pixel band along a diagonal outline is one stroke, not one per step) is a stroke, painted in or
    erased with a click or a scribble. ``boundary_mm_c`` is the outline to trace: the part of the
    target's class-``c`` outline that the start does not already have. So a missed piece is traced all
    round, an outline one pixel off is traced once (not along both sides of the band between), and a
    false piece costs its stroke but no tracing. A voxel of the wrong foreground class counts for both
    classes (erase one, paint the other). Where ``start`` already equals ``target`` only the checking is
    left: ``intercept + per_slice * n_slices`` under :class:`~medal.costs.CostModel`. An empty ``start``
    gives :func:`effort_features` of ``target``.

    Correcting a shown prediction instead of drawing is the query of active label correction (Kim,
    Hwang, Kwak and Ok, "Active Label Correction for Semantic Segmentation with Foundation Models",
    ICML 2024, arXiv:2403.10820: a correction query is cheaper for the annotator than labelling from
    nothing); here the work is the wrongly predicted part. The per-feature coefficients are the
    drawing ones (a stroke is a stroke): hand-set, to be calibrated from logged correction times.
    """
    units, target, start = np.asarray(units), np.asarray(target), np.asarray(start)
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2 (background and a structure), got {n_classes}")
    if target.shape != start.shape:
        raise ValueError(f"target shape {target.shape} does not match start shape {start.shape}")
    n = int(units.max()) if units.size else 0
    ids = np.arange(1, n + 1) if ids is None else np.asarray(ids)
    out: dict[str, np.ndarray] = {}
    for c in range(1, n_classes):
        t, s = target == c, start == c
        f = effort_features(units, (t != s).astype(np.uint8), axis=axis, spacing=spacing, n_classes=2, ids=ids,
                            diagonal=True)
        out.setdefault("n_slices", f["n_slices"])  # the planes spanned: the same for every class
        out[f"boundary_mm_{c}"] = _new_outline(units, t, s, axis=axis, spacing=spacing, n=n)[ids]
        out[f"components_{c}"] = f["components_1"]
        out[f"area_mm2_{c}"] = f["area_mm2_1"]
    return out


def expected_correction_features(units: np.ndarray, probs: np.ndarray, start: np.ndarray, *, axis: int,
                                 spacing=(1.0, 1.0, 1.0), n_classes: int = 2, ids: np.ndarray | None = None,
                                 levels=EXPECTED_LEVELS, min_piece_mm2: float = 0.0) -> dict[str, np.ndarray]:
    """:func:`correction_features` of ``start`` (the prediction the expert is shown) expected under the
    model's predictive distribution: the mean over ``levels`` with each :func:`level_segmentation` as
    the target, as :func:`expected_effort_features` does for drawing. A confident unit's level sets all
    equal its prediction, so its expected correction is the checking alone; an unsure outline costs in
    proportion to how far its level sets spread."""
    out: dict[str, np.ndarray] = {}
    for level in levels:
        seg = drop_small_pieces(level_segmentation(probs, level), axis=axis, spacing=spacing, min_mm2=min_piece_mm2)
        f = correction_features(units, seg, start, axis=axis, spacing=spacing, n_classes=n_classes, ids=ids)
        for k, v in f.items():
            out[k] = out.get(k, 0.0) + v / len(levels)
    return out


def cheaper_features(cost_model, *options: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per unit, the features of whichever option ``cost_model`` prices lowest (ties: the first).

    A correcting expert shown a prediction that is worse than nothing (a weak model's speckle all over a
    unit) clears it and draws instead: correcting costs ``min(correct, draw)``, and the features kept
    are the ones of the way taken, so calibration refits on what was priced."""
    costs = np.stack([cost_model.predict(o) for o in options])
    pick = costs.argmin(axis=0)
    return {k: np.choose(pick, [np.asarray(o[k], dtype=float) for o in options]) for k in options[0]}
