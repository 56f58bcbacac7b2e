"""Masked Dice + cross-entropy: voxels labelled 255 contribute nothing to the loss or its gradient."""

from __future__ import annotations

from medal.data.labels import UNLABELED

__all__ = ["masked_dice_ce"]


def masked_dice_ce(logits, target, *, dice_weight: float = 1.0, ce_weight: float = 1.0, smooth: float = 1e-5):
    """Loss for ``logits (B, C, Z, Y, X)`` and integer ``target (B, Z, Y, X)`` with 255 = ignore.

    Cross-entropy is averaged over annotated voxels; the soft Dice of the foreground classes is taken
    over the batch's annotated voxels only. A batch without any annotated voxel gives a zero loss
    that is still connected to the graph.
    """
    import torch
    from torch.nn import functional as F

    target = target.long()
    mask = target != UNLABELED
    if not bool(mask.any()):
        return logits.sum() * 0.0
    loss = logits.new_zeros(())
    if ce_weight:
        loss = loss + ce_weight * F.cross_entropy(logits, target, ignore_index=UNLABELED)
    if dice_weight and logits.shape[1] > 1:
        n = logits.shape[1]
        probs = torch.softmax(logits, dim=1) * mask[:, None]
        onehot = F.one_hot(torch.where(mask, target, 0), n).permute(0, 4, 1, 2, 3).to(probs.dtype) * mask[:, None]
        dims = (0, 2, 3, 4)
        inter = (probs * onehot).sum(dims)
        denom = probs.sum(dims) + onehot.sum(dims)
        dice = (2 * inter + smooth) / (denom + smooth)
        loss = loss + dice_weight * (1 - dice[1:].mean())
    return loss
