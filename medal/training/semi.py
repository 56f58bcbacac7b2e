"""Learning from the voxels nobody annotated: semi-supervised training modes, one registry.

After a few rounds most of every pool volume is still ``255`` (not annotated) and the supervised loss
ignores it. These modes add an unsupervised term on exactly those voxels; an expert's voxel is never
touched by it (the supervised loss alone speaks for annotated voxels).

``none``
    Supervised loss only (medal's behaviour before).
``pseudo_label``
    Self-training: a teacher's confident predictions (max probability above ``pseudo_threshold``)
    become cross-entropy targets on unannotated voxels (Lee, "Pseudo-Label", ICML workshop 2013;
    for active learning in medical segmentation, Nath et al., "Diminishing uncertainty within the
    training pool", IEEE TMI 2021). The teacher is an exponential moving average of the student,
    started from the warm-start weights, i.e. from the previous round's model (the confident
    predictions of the previous round's model, refined as training goes).
``mean_teacher``
    Consistency: the student, on a noisy and flipped copy of the patch, is pulled towards the EMA
    teacher's prediction on the clean patch (mean squared error of the class probabilities) on
    unannotated voxels (Tarvainen & Valpola, "Mean teachers are better role models", NeurIPS 2017).

Propagation (``pseudo_propagation: D``, pseudo_label only): the teacher's confident class is a target
only within ``D`` voxels of an expert's annotation, and only where the expert painted that class nearby:
at a voxel whose nearest annotated voxel lies ``d <= D`` away, class ``c`` is allowed when an annotated
voxel of class ``c`` lies within ``d + pseudo_margin``. Across slices this carries each annotated slice
to its neighbours with the model's prediction constrained by that slice, without registration: ``d``
slices away, a structure may reach about ``sqrt(2 d m + m^2)`` voxels in-plane beyond (or stop that far
inside) its painted outline (``m`` the margin), anatomy nobody painted nearby is never pseudo-labelled,
and far from any annotation the teacher is not trusted at all. The idea follows STAR (Ma et al.,
"Spatial Aggregation for Semi-supervised Active Learning in 3D Medical Image Segmentation", MICCAI 2025:
pseudo-labels for unlabelled slices from their adjacent labelled slices) and incremental 2D
self-labelling (Anderson, Habib, Steel & Obara: confident pseudo-labels grown slice by slice from an
annotated slice), without their learned propagation: distances are in voxels (Euclidean, spacing
ignored), and the same rule serves supervoxel labels.

The unsupervised weight ramps up as ``unlabeled_weight * exp(-5 (1 - t)^2)`` over the first
``rampup`` share of the steps (Laine & Aila 2017). With ``pseudo_threshold: 1.0`` no voxel is
confident enough and ``pseudo_label`` trains exactly as ``none``.
"""

from __future__ import annotations

import copy

import numpy as np

from medal.data.labels import UNLABELED

__all__ = ["SEMI_SUPERVISED", "EMATeacher", "propagation_mask", "pseudo_targets", "rampup", "unlabeled_loss",
           "get_mode"]

SEMI_SUPERVISED = ("none", "pseudo_label", "mean_teacher")


def get_mode(name: str) -> str:
    if name not in SEMI_SUPERVISED:
        raise KeyError(f"unknown semi-supervised mode {name!r}; valid: {list(SEMI_SUPERVISED)}")
    return name


class EMATeacher:
    """An exponential moving average of a network's weights: ``teacher = decay * teacher + (1 - decay) * student``
    after every optimiser step (buffers copied as they are). Always in eval mode, never trained."""

    def __init__(self, student, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.decay = decay
        self.net = copy.deepcopy(student).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    def update(self, student) -> None:
        import torch

        with torch.no_grad():
            for t, s in zip(self.net.parameters(), student.parameters()):
                t.mul_(self.decay).add_(s.detach(), alpha=1.0 - self.decay)
            for t, s in zip(self.net.buffers(), student.buffers()):
                t.copy_(s)

    def probs(self, x):
        import torch

        self.net.eval()
        with torch.no_grad():
            return torch.softmax(self.net(x), dim=1)


def propagation_mask(label: np.ndarray, max_distance: float, margin: float = 1.0) -> np.ndarray:
    """Which classes a pseudo-label may take at each voxel of a partial ``label`` (``255`` = not
    annotated), as a bit mask (bit ``c`` set: class ``c`` allowed; 0: no pseudo-label at all).

    A voxel whose nearest annotated voxel is ``d`` away (Euclidean, in voxels) allows class ``c`` when
    ``d <= max_distance`` and an annotated voxel of class ``c`` lies within ``d + margin``. Annotated
    voxels get 0: they belong to the supervised loss. The dtype holds one bit per class present
    (uint8 up to 8 classes, ..., uint64 up to 64)."""
    from scipy import ndimage

    label = np.asarray(label)
    annotated = label != UNLABELED
    classes = np.unique(label[annotated])
    top = int(classes.max()) if classes.size else 0
    if top >= 64:
        raise ValueError(f"pseudo-label propagation handles class indices up to 63, got {top}")
    dtype = next(t for t in (np.uint8, np.uint16, np.uint32, np.uint64) if np.iinfo(t).bits > top)
    out = np.zeros(label.shape, dtype)
    if not classes.size:
        return out
    d_ann = ndimage.distance_transform_edt(~annotated)
    near = (d_ann <= max_distance) & ~annotated
    for c in classes:
        d_c = ndimage.distance_transform_edt(label != c)
        out[near & (d_c <= d_ann + margin)] |= dtype(1) << dtype(int(c))
    return out


def pseudo_targets(labels, teacher_probs, threshold: float, allowed=None):
    """Targets for the unannotated voxels of ``labels (B, Z, Y, X)``: the teacher's class where its
    probability exceeds ``threshold``, ``255`` (ignored) elsewhere, and ``255`` on every annotated voxel:
    those belong to the supervised loss, so a pseudo-label can never stand in for an expert's.
    ``allowed`` (integer, the shape of ``labels``): a :func:`propagation_mask`; a class whose bit is
    not set at a voxel is no target there."""
    import torch

    conf, cls = teacher_probs.max(dim=1)
    keep = (labels == UNLABELED) & (conf > threshold)
    if allowed is not None:
        keep &= torch.bitwise_and(torch.bitwise_right_shift(allowed.long(), cls.long()), 1).bool()
    return torch.where(keep, cls, torch.full_like(cls, UNLABELED))


def rampup(step: int, total: int, share: float) -> float:
    """``exp(-5 (1 - t)^2)`` for ``t = step / (share * total)`` capped at 1; 1 with no ramp."""
    length = share * total
    if length <= 0:
        return 1.0
    t = min(1.0, step / length)
    return float(np.exp(-5.0 * (1.0 - t) ** 2))


def unlabeled_loss(mode: str, student_logits, teacher_probs, labels, *, threshold: float = 0.9, allowed=None):
    """The unsupervised term on unannotated voxels (a tensor), or None when there is nothing to learn from.
    ``allowed``: pseudo_label's :func:`propagation_mask` of the patch (None: anywhere)."""
    import torch
    from torch.nn import functional as F

    free = labels == UNLABELED
    if mode == "pseudo_label":
        targets = pseudo_targets(labels, teacher_probs, threshold, allowed)
        if not bool((targets != UNLABELED).any()):
            return None
        return F.cross_entropy(student_logits, targets.long(), ignore_index=UNLABELED)
    if mode == "mean_teacher":
        if not bool(free.any()):
            return None
        diff = (torch.softmax(student_logits, dim=1) - teacher_probs) ** 2
        return diff.sum(dim=1)[free].mean()
    return None
