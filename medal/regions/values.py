"""What a unit is worth: value functions from score maps to one value per unit, overall and per class.

A value function takes the unit-id volume, the number of units and the case's score maps (pure
arrays: ``probs`` the mean class probabilities ``(C, Z, Y, X)``, ``entropy``, ``bald``, ...,
``prediction``), and returns :class:`UnitValues`: ``value`` (what the selection maximises) and
``per_class`` (``(C - 1, n_units)``: the unit's value for each foreground class, what class quotas
rank by). Every function is a sum over the unit's voxels, so values add up like costs do and a
unit's value scales with what the expert would correct in it.

``entropy``
    The configured measure (``regions.measure``) aggregated with ``regions.aggregate``: medal's old
    score, kept for comparison. Per class: the measure weighted by ``p_c``.
``class_entropy`` (ClaSP PE)
    Per foreground class ``c``: the sum over the unit of ``H(x) * p_c(x)``, predictive entropy
    weighted by the mean probability of ``c``; overall: ``H(x) * (1 - p_0(x))``, the same for all
    foreground together. A unit the model confidently calls background is worth ~0 (``p_0 ~ 1``),
    however thin-but-uncertain it is elsewhere. The class-stratified predictive entropy of Lüth,
    Traub et al., "Finally Outshining the Random Baseline: A Simple and Effective Solution for
    Active Learning in 3D Biomedical Imaging" (TMLR 2025, arXiv:2601.13677; nnActive's
    ``Probs.class_pred_entropy`` computes the same ``PE * p_c`` maps).
``expected_errors``
    The expected number of misclassified voxels, ``1 - max_c p_c(x)``, summed over a band of
    ``band`` voxels around the predicted boundaries (where a correction is painted); zero in the
    interior of confident regions and far from any predicted structure. Per class: weighted by ``p_c``.
``bald_topq``
    The sum of the highest ``top_q`` share of BALD (mutual information) values in the unit: the
    epistemic part only, concentrated where the model disagrees with itself. Per class: BALD
    weighted by ``p_c``, summed over the same voxels.
``oracle_errors`` (simulation only: a diagnostic, never a real round's choice)
    The voxels the current model really gets wrong, ``prediction != truth``, summed over the unit,
    where ``truth`` is the ground truth as class indices (``truth.nii.gz`` in the case's score folder,
    written only by ``medal simulate`` for rows that ask for this value). Per class: the errors where
    the truth or the prediction is ``c``. What a perfect uncertainty estimate would point at: with the
    default's knapsack, quota and sampling around it, an upper bound for error-seeking values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ORACLE_VALUES", "VALUES", "UnitValues", "get_value", "unit_sums", "value_needs"]


@dataclass(frozen=True)
class UnitValues:
    value: np.ndarray  # (n_units,)
    per_class: np.ndarray  # (C - 1, n_units)


def unit_sums(units: np.ndarray, voxel_values: np.ndarray, n_units: int) -> np.ndarray:
    """Sum of ``voxel_values`` over each unit 1..n_units (0 = no unit), vectorised."""
    lab = np.asarray(units).ravel()
    return np.bincount(lab, weights=np.asarray(voxel_values, dtype=np.float64).ravel(),
                       minlength=n_units + 1)[1:n_units + 1]


def _probs(maps: dict, name: str) -> np.ndarray:
    if "probs" not in maps:
        raise ValueError(f"value {name!r} needs the mean class probabilities (probs.nii.gz, written by "
                         "`medal score` since medal 0.2); re-score the pool")
    return np.asarray(maps["probs"], dtype=np.float64)


def _per_class(units, voxel_values, maps: dict, n_units: int, n_classes: int) -> np.ndarray:
    """Per foreground class: the sum over each unit of ``voxel_values * p_c`` (mean probability of
    class ``c``), or of ``voxel_values * [prediction == c]`` for score folders without ``probs``."""
    out = np.zeros((n_classes - 1, n_units))
    probs = maps.get("probs")
    for c in range(1, n_classes):
        weight = np.asarray(probs[c], np.float64) if probs is not None else (np.asarray(maps["prediction"]) == c)
        out[c - 1] = unit_sums(units, voxel_values * weight, n_units)
    return out


def _entropy(units, n_units, maps, *, n_classes, measure="entropy", aggregate="sum", top_q=0.1, **_) -> UnitValues:
    from medal.regions.table import aggregate as agg

    if measure not in maps:
        raise ValueError(f"value 'entropy' needs the {measure!r} score volume")
    m = np.asarray(maps[measure], dtype=np.float64)
    return UnitValues(agg(units, m, n_units, how=aggregate, q=top_q), _per_class(units, m, maps, n_units, n_classes))


def _entropy_of(probs: np.ndarray) -> np.ndarray:
    return -(probs * np.log(np.clip(probs, 1e-12, 1.0))).sum(axis=0)


def _class_entropy(units, n_units, maps, *, n_classes, **_) -> UnitValues:
    p = _probs(maps, "class_entropy")
    h = np.asarray(maps["entropy"], np.float64) if "entropy" in maps else _entropy_of(p)
    return UnitValues(unit_sums(units, h * (1.0 - p[0]), n_units), _per_class(units, h, maps, n_units, n_classes))


def boundary_band(prediction: np.ndarray, width: int) -> np.ndarray:
    """Voxels within ``width`` voxels (city-block, 3D) of a boundary between two predicted labels."""
    from scipy import ndimage

    pred = np.asarray(prediction)
    edge = np.zeros(pred.shape, bool)
    for ax in range(pred.ndim):
        diff = np.diff(pred, axis=ax) != 0
        lo = [slice(None)] * pred.ndim
        hi = [slice(None)] * pred.ndim
        lo[ax], hi[ax] = slice(0, -1), slice(1, None)
        edge[tuple(lo)] |= diff
        edge[tuple(hi)] |= diff
    if width > 1 and edge.any():
        edge = ndimage.binary_dilation(edge, iterations=width - 1)
    return edge


def _expected_errors(units, n_units, maps, *, n_classes, band=2, **_) -> UnitValues:
    p = _probs(maps, "expected_errors")
    err = np.where(boundary_band(p.argmax(axis=0), band), 1.0 - p.max(axis=0), 0.0)
    return UnitValues(unit_sums(units, err, n_units), _per_class(units, err, maps, n_units, n_classes))


def _bald_topq(units, n_units, maps, *, n_classes, top_q=0.1, **_) -> UnitValues:
    from medal.regions.table import aggregate as agg

    for key in ("bald", "mutual_information"):
        if key in maps:
            b = np.asarray(maps[key], np.float64)
            break
    else:
        raise ValueError("value 'bald_topq' needs the 'bald' score volume (uncertainty.measures)")
    counts = np.bincount(np.asarray(units).ravel(), minlength=n_units + 1)[1:n_units + 1]
    k = np.where(counts > 0, np.maximum(1, np.ceil(top_q * counts)), 0)
    value = agg(units, b, n_units, how="topq", q=top_q) * k
    return UnitValues(value, _per_class(units, b, maps, n_units, n_classes))


def _oracle_errors(units, n_units, maps, *, n_classes, **_) -> UnitValues:
    if "truth" not in maps:
        raise ValueError("value 'oracle_errors' needs the ground truth (truth.nii.gz): a simulation diagnostic, "
                         "written only by `medal simulate`")
    truth, pred = np.asarray(maps["truth"]), np.asarray(maps["prediction"])
    if truth.shape != pred.shape:
        raise ValueError(f"value 'oracle_errors': truth {truth.shape} and prediction {pred.shape} differ in shape")
    err = (truth != pred).astype(np.float64)
    per_class = np.zeros((n_classes - 1, n_units))
    for c in range(1, n_classes):
        per_class[c - 1] = unit_sums(units, err * ((truth == c) | (pred == c)), n_units)
    return UnitValues(unit_sums(units, err, n_units), per_class)


#: name -> function(units, n_units, maps, *, n_classes, **params) -> UnitValues
VALUES = {
    "entropy": _entropy,
    "class_entropy": _class_entropy,
    "expected_errors": _expected_errors,
    "bald_topq": _bald_topq,
    "oracle_errors": _oracle_errors,
}

#: values that read the ground truth: ``medal simulate`` only (it writes ``truth.nii.gz`` for them)
ORACLE_VALUES = ("oracle_errors",)

#: the score volumes each value reads (besides ``prediction``, always there)
_NEEDS = {"entropy": ("{measure}",), "class_entropy": ("probs", "entropy"), "expected_errors": ("probs",),
          "bald_topq": ("bald",), "oracle_errors": ("truth",)}


def value_needs(name: str, *, measure: str = "entropy") -> tuple[str, ...]:
    """Score volumes (file stems) the value ``name`` reads."""
    get_value(name)
    return tuple(n.format(measure=measure) for n in _NEEDS[name])


def get_value(name: str):
    """The value function called ``name``; an unknown name raises listing the valid ones."""
    try:
        return VALUES[name]
    except KeyError:
        raise KeyError(f"unknown unit value {name!r}; valid: {sorted(VALUES)}") from None
