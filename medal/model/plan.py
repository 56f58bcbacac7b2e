"""Per-axis down-sampling for anisotropic voxels, by nnU-Net's rule.

nnU-Net plans its U-Net from the data's spacing (Isensee et al., "nnU-Net: a self-configuring method for deep
learning-based biomedical image segmentation", Nature Methods 2021; ``nnunetv2/experiment_planning/
experiment_planners/network_topology.py``, ``get_pool_and_conv_props``): at each stage an axis is halved only while
its current spacing is under twice the finest current spacing (and its feature map is still at least twice the
smallest allowed), so a 1 x 1 x 3 mm grid is first halved in plane, and the thick axis joins once the others have
caught up. :func:`suggest_strides` applies that rule to medal's fixed number of stages; ``medal dataset check``
prints its suggestion for data whose median spacing is anisotropic.
"""

from __future__ import annotations

__all__ = ["suggest_strides"]


def suggest_strides(spacing, n_stages: int, patch=None, min_feature_map: int = 4) -> tuple:
    """``model.strides`` for ``n_stages`` down-sampling stages on voxels of ``spacing`` (one per array axis): per
    stage a per-axis triple (2 where the axis is halved, else 1), or a plain 2 where every axis is. With ``patch``
    (voxels), an axis is not halved below ``2 * min_feature_map``."""
    current = [float(s) for s in spacing]
    size = [int(p) for p in patch] if patch is not None else [10**9] * len(current)
    out = []
    for _ in range(int(n_stages)):
        finest = min(current)
        stride = tuple(2 if current[a] / finest < 2 and size[a] >= 2 * min_feature_map else 1
                       for a in range(len(current)))
        current = [c * s for c, s in zip(current, stride)]
        size = [z // s for z, s in zip(size, stride)]
        out.append(2 if all(s == 2 for s in stride) else stride)
    return tuple(out)
