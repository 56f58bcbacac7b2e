"""MC dropout: the context manager that makes only dropout layers stochastic."""

from __future__ import annotations

import contextlib

from torch import nn

__all__ = ["mc_dropout", "dropout_layers", "DROPOUT_TYPES"]

DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def dropout_layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, DROPOUT_TYPES) and m.p > 0]


@contextlib.contextmanager
def mc_dropout(net: nn.Module):
    """Eval mode everywhere (BatchNorm / InstanceNorm use their running statistics), dropout on.

    Every module's ``training`` flag is restored on exit, whatever it was. A network without any
    active dropout layer raises ``ValueError``: it would give T identical samples and zero
    uncertainty without saying so.
    """
    drops = dropout_layers(net)
    if not drops:
        raise ValueError(f"{type(net).__name__} has no dropout layer with p > 0: MC dropout needs one")
    saved = [(m, m.training) for m in net.modules()]
    try:
        net.eval()
        for m in drops:
            m.train()
        yield net
    finally:
        for m, flag in saved:
            m.training = flag
