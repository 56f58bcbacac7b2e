"""(Re)training from full or partial labels (255 = not annotated, ignored by the loss)."""

from .loss import masked_dice_ce
from .metrics import dice_per_class, mean_foreground_dice
from .sampling import AnnotatedIndex, crop_patch, sample_patch
from .trainer import (TrainItem, TrainResult, held_out_slices, holdout_mask, mapped_items, prepare_items, split_items,
                      train_model)

__all__ = ["AnnotatedIndex", "TrainItem", "TrainResult", "crop_patch", "dice_per_class", "masked_dice_ce",
           "held_out_slices", "holdout_mask", "mapped_items", "mean_foreground_dice", "prepare_items", "sample_patch",
           "split_items",
           "train_model"]
