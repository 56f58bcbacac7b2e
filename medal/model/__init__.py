"""MONAI 3D U-Nets with configurable MC-dropout placement, and their checkpoints."""

from .checkpoint import (CheckpointError, check_checkpoint_labels, file_hash, load_checkpoint, load_committee,
                         save_checkpoint)
from .unet import MedalUNet, MonaiUNetMC, build_model, expand_state

__all__ = ["CheckpointError", "check_checkpoint_labels", "MedalUNet", "MonaiUNetMC", "build_model", "expand_state", "file_hash",
           "load_checkpoint", "load_committee", "save_checkpoint"]
