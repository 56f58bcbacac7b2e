"""3D U-Nets built from MONAI blocks, split into a deterministic part and a stochastic part.

Every network here has ``deterministic(x) -> state`` and ``stochastic(state) -> logits`` with
``forward(x) == stochastic(deterministic(x))``. Under MC dropout only ``stochastic`` changes between
samples, so :func:`medal.uncertainty.inference.mc_predict` runs ``deterministic`` once per window and
``stochastic`` T times. Where dropout sits decides how much that saves (``ModelConfig.placement``):

``head`` (default)
    A residual U-Net (MONAI ``ResidualUnit`` encoder and decoder) without dropout, ending in a
    full-resolution feature map; then the head ``Dropout3d -> 1x1x1 conv -> PReLU -> Dropout3d ->
    1x1x1 conv``. Channel-wise dropout drops whole feature maps, so samples differ coherently, not
    voxel by voxel. The repeated part costs a few hundred multiply-adds per voxel.
``decoder``
    The same U-Net with ``Dropout3d`` on the bottleneck output and before every decoder stage; the
    encoder runs once, the whole decoder T times.
``monai``
    MONAI's ``UNet(dropout=p)``: element-wise dropout inside every unit, including the last one
    before the output convolution. Nothing can be cached; kept to compare with.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from monai.networks.nets import UNet
from torch import nn
from torch.nn import functional as F

from medal.config import ModelConfig

__all__ = ["MedalUNet", "MonaiUNetMC", "build_model"]

_NORM = {"instance": "INSTANCE", "batch": "BATCH"}


def _unit(cin: int, cout: int, stride: int, cfg: ModelConfig) -> nn.Module:
    norm = _NORM[cfg.norm]
    if cfg.num_res_units > 0:
        return ResidualUnit(3, cin, cout, strides=stride, kernel_size=3, subunits=cfg.num_res_units,
                            act="PRELU", norm=norm)
    return Convolution(3, cin, cout, strides=stride, kernel_size=3, act="PRELU", norm=norm)


class MedalUNet(nn.Module):
    """Residual 3D U-Net with MC dropout confined to the decoder (``decoder``) or its head (``head``)."""

    def __init__(self, cfg: ModelConfig, *, in_channels: int, out_channels: int):
        super().__init__()
        if cfg.placement not in ("head", "decoder"):
            raise ValueError(f"MedalUNet supports placement 'head' or 'decoder', got {cfg.placement!r}")
        self.placement = cfg.placement
        self.in_channels = int(in_channels)
        ch, st = cfg.channels, cfg.strides
        self.encoder = nn.ModuleList(
            [_unit(in_channels, ch[0], 1, cfg)] + [_unit(ch[i], ch[i + 1], st[i], cfg) for i in range(len(st))]
        )
        self.up = nn.ModuleList(
            Convolution(3, ch[i + 1], ch[i], strides=st[i], kernel_size=3, is_transposed=True, act="PRELU",
                        norm=_NORM[cfg.norm])
            for i in range(len(st))
        )
        self.decode = nn.ModuleList(_unit(2 * ch[i], ch[i], 1, cfg) for i in range(len(st)))
        p = cfg.dropout if cfg.placement == "decoder" else 0.0
        self.decoder_dropout = nn.ModuleList(nn.Dropout3d(p) for _ in range(len(st) + 1)) if p else None
        hp = cfg.dropout if cfg.placement == "head" else 0.0
        # head: deterministic 1x1x1 conv + PReLU, then the stochastic Dropout3d -> 1x1x1 conv
        self.head_hidden = nn.Sequential(nn.Conv3d(ch[0], cfg.head_channels, 1), nn.PReLU())
        self.head_dropout = nn.Dropout3d(hp) if hp else nn.Identity()
        self.head_out = nn.Conv3d(cfg.head_channels, out_channels, 1)

    def _encode(self, x):
        skips = []
        for unit in self.encoder:
            x = unit(x)
            skips.append(x)
        return skips

    def _decode(self, skips):
        x = skips[-1]
        if self.decoder_dropout is not None:
            x = self.decoder_dropout[-1](x)
        for i in reversed(range(len(self.up))):
            x = torch.cat([self.up[i](x), skips[i]], dim=1)
            if self.decoder_dropout is not None:
                x = self.decoder_dropout[i](x)
            x = self.decode[i](x)
        return self.head_hidden(x)

    def deterministic(self, x):
        skips = self._encode(x)
        return self._decode(skips) if self.placement == "head" else skips

    def stochastic(self, state):
        h = state if self.placement == "head" else self._decode(state)
        return self.head_out(self.head_dropout(h))

    def forward(self, x):
        return self.stochastic(self.deterministic(x))

    def sample_logits(self, state, n: int):
        """``n`` stochastic samples of the logits for a batch-1 ``state``: ``(n, C, Z, Y, X)``.

        With ``head`` placement, channel dropout followed by a 1x1x1 conv equals the conv with the
        dropped input channels' weights zeroed, so the ``n`` samples are one convolution with
        ``n * C`` output channels over the cached features: no ``(n, hidden, Z, Y, X)`` tensor is
        ever built. The masks are drawn exactly as ``Dropout3d`` draws them.
        """
        drop = self.head_dropout
        if self.placement != "head" or not isinstance(drop, nn.Dropout3d):
            return self.stochastic(expand_state(state, n))
        weight, bias = self.head_out.weight, self.head_out.bias  # (C, H, 1, 1, 1), (C,)
        c, hidden = weight.shape[:2]
        if not drop.training:
            return self.head_out(state).expand(n, *(-1 for _ in range(state.ndim - 1)))
        keep = torch.bernoulli(torch.full((n, 1, hidden), 1.0 - drop.p, device=weight.device, dtype=weight.dtype))
        w = (keep / (1.0 - drop.p)) * weight.reshape(1, c, hidden)  # (n, C, H)
        out = F.conv3d(state, w.reshape(n * c, hidden, 1, 1, 1), bias.repeat(n))
        return out.reshape(n, c, *state.shape[2:])


class MonaiUNetMC(nn.Module):
    """MONAI's ``UNet`` with its own dropout placement; the whole net is stochastic."""

    def __init__(self, cfg: ModelConfig, *, in_channels: int, out_channels: int):
        super().__init__()
        self.placement = "monai"
        self.in_channels = int(in_channels)
        self.net = UNet(3, in_channels, out_channels, channels=cfg.channels, strides=cfg.strides,
                        num_res_units=cfg.num_res_units, norm=_NORM[cfg.norm], dropout=cfg.dropout)

    def deterministic(self, x):
        return x

    def stochastic(self, state):
        return self.net(state)

    def forward(self, x):
        return self.net(x)

    def sample_logits(self, state, n: int):
        return self.stochastic(expand_state(state, n))


def build_model(cfg: ModelConfig, *, in_channels: int = 1, out_channels: int) -> nn.Module:
    """The network ``cfg`` describes, for ``out_channels`` classes (background included). ``model.strides: auto``
    not yet planned for a spacing (:meth:`~medal.config.ModelConfig.planned`) is planned for isotropic voxels; the
    config the network was built from is its ``model_cfg`` attribute (what :func:`~medal.model.save_checkpoint`
    stores)."""
    if out_channels < 1:
        raise ValueError(f"out_channels must be >= 1, got {out_channels}")
    cfg = cfg.planned()
    cls = MonaiUNetMC if cfg.placement == "monai" else MedalUNet
    net = cls(cfg, in_channels=in_channels, out_channels=out_channels)
    net.model_cfg = cfg
    return net


def expand_state(state, n: int):
    """Repeat a batch-1 deterministic state ``n`` times along the batch axis (no copy)."""
    if isinstance(state, (list, tuple)):
        return type(state)(s.expand(n, *s.shape[1:]) for s in state)
    return state.expand(n, *state.shape[1:])
