"""Choosing the torch device: one function, called by the stage that needs it (never at import)."""

from __future__ import annotations

__all__ = ["resolve_device"]


def resolve_device(name: str = "auto"):
    """``auto`` picks CUDA when available, else the CPU; ``cuda`` without a GPU is an error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available on this machine; use device: auto "
                         "(or cpu) in the config's training / uncertainty section")
    return torch.device(name)
