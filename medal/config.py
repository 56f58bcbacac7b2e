"""Configuration: the only module that reads YAML.

A config file has one section per pipeline stage; each section becomes a frozen dataclass that checks
its values in ``__post_init__``. Unknown keys and wrong types are errors naming the key and the file.
Each stage function receives only its own section (``cfg.data``, ...), never the whole file.

``configs/default.yaml`` documents every key with its default.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ConfigError", "DataConfig", "ModelConfig", "TrainingConfig", "UncertaintyConfig", "RegionsConfig", "CostsConfig",
           "SelectionConfig", "SimulationConfig", "ColdstartConfig", "ReportConfig", "MedalConfig", "load_config", "config_from_dict", "config_to_dict", "config_hash",
           "variant_config"]


class ConfigError(ValueError):
    """A config file is malformed: unknown key, wrong type or invalid value (the message names both)."""


@dataclass(frozen=True)
class DataConfig:
    """``data:`` how volumes are prepared before they reach a model."""

    # how the network's input is normalised, per channel (medal/data/normalize.py): "auto" (the default, as nnU-Net)
    # = from dataset.json's channel_names / modality: "CT" -> ct (one window from the dataset's foreground
    # intensities, kept in the checkpoint), anything else -> zscore; or one of zscore | minmax | none (per volume)
    # | ct for every channel; or a list, one per channel
    normalize: str | tuple[str, ...] = "auto"
    clip_percentiles: tuple[float, float] = (0.5, 99.5)
    # the voxel spacing (mm per array axis) the network sees (medal/data/resample.py): "median" (the default, as
    # nnU-Net) = the dataset's median spacing; None = each case's own grid; or [a, b, c]. Labels, units, tasks
    # stay on each case's own grid either way; a case within 2% of the target is used as it is.
    spacing: str | tuple[float, float, float] | None = "median"
    # the anatomical axis codes of the network's array axes ("RAS": axis 0 towards the patient's Right, 1 Anterior,
    # 2 Superior), reached by flipping and permuting each case's axes (lossless); None = each case's storage order.
    # RAS by default (benchmarks/mixed_orientation.py: +0.02 Dice on a dataset of two storage orders)
    orientation: str | None = "RAS"

    def __post_init__(self):
        from medal.data.normalize import SCHEMES

        if isinstance(self.normalize, tuple):
            if not self.normalize:
                raise ConfigError("data.normalize: an empty list; name one scheme per channel, or 'auto'")
            for k, scheme in enumerate(self.normalize):
                if scheme not in SCHEMES:
                    raise ConfigError(f"data.normalize[{k}]: {scheme!r} is not one of {sorted(SCHEMES)}")
        elif self.normalize not in SCHEMES + ("auto",):
            raise ConfigError(f"data.normalize: {self.normalize!r} is not one of {sorted(SCHEMES + ('auto',))} "
                              "or a list of those, one per channel")
        lo, hi = self.clip_percentiles
        if not 0 <= lo < hi <= 100:
            raise ConfigError(f"data.clip_percentiles: need 0 <= low < high <= 100, got {list(self.clip_percentiles)}")
        if isinstance(self.spacing, str) and self.spacing != "median":
            raise ConfigError(f"data.spacing: {self.spacing!r} is not 'median', a list of 3 spacings in mm, or null")
        if self.orientation is not None:
            codes = str(self.orientation).upper()
            pairs = [set("RL"), set("AP"), set("SI")]
            if len(codes) != 3 or sorted(next((i for i, p in enumerate(pairs) if c in p), 9) for c in codes) != [0, 1, 2]:
                raise ConfigError(f"data.orientation: {self.orientation!r} is not 3 axis codes, one of R/L, A/P and "
                                  "S/I each (e.g. RAS, LPS), or null")
            object.__setattr__(self, "orientation", codes)
        if isinstance(self.spacing, tuple) and not all(0 < s < 1000 for s in self.spacing):
            raise ConfigError(f"data.spacing: need 3 spacings in mm above 0, got {list(self.spacing)}")


#: Where MC dropout sits in the network (see ``medal/model/unet.py``).
DROPOUT_PLACEMENTS = ("head", "decoder", "monai")


def _axes(stride) -> tuple[int, int, int]:
    """A stride as a per-axis triple (an int strides every axis alike)."""
    return tuple(int(v) for v in stride) if isinstance(stride, (tuple, list)) else (int(stride),) * 3


@dataclass(frozen=True)
class ModelConfig:
    """``model:`` the 3D U-Net (built from MONAI blocks) and where its dropout sits."""

    channels: tuple[int, ...] = (16, 32, 64, 128)
    # one per down-sampling stage: 2 halves every axis; a triple strides each array axis on its own ([2, 2, 1]: halve
    # in plane, keep the slices of a thick-slice CT stored slice-last, as NIfTI usually is; data.orientation fixes
    # the axis order), as nnU-Net's plans pool an anisotropic axis later than the others. "auto" (the default):
    # planned when a network is first trained, from the spacing it trains at, by nnU-Net's rule
    # (medal/model/plan.py; 2 on every axis for isotropic voxels); the checkpoint stores the planned strides
    strides: str | tuple[int | tuple[int, int, int], ...] = "auto"
    num_res_units: int = 1
    norm: str = "instance"  # instance | batch
    dropout: float = 0.2
    # head:    Dropout3d only in the decoder's full-resolution head (1x1x1 convs); everything before
    #          it runs once per volume, only the head runs T times (medal's default, cheapest MC).
    # decoder: Dropout3d on the bottleneck and before every decoder stage; the encoder runs once.
    # monai:   MONAI's UNet with element-wise dropout in every unit (no caching; costs ~T passes).
    placement: str = "head"
    head_channels: int = 32

    def __post_init__(self):
        if len(self.channels) < 2 or any(c < 1 for c in self.channels):
            raise ConfigError(f"model.channels: need at least 2 positive values, got {list(self.channels)}")
        if isinstance(self.strides, str):
            if self.strides != "auto":
                raise ConfigError(f"model.strides: expected 'auto' or a list of strides, got {self.strides!r}")
        elif len(self.strides) != len(self.channels) - 1 or any(min(_axes(s)) < 1 for s in self.strides):
            raise ConfigError(
                f"model.strides: need {len(self.channels) - 1} positive values or per-axis triples (one fewer than "
                f"channels), got {[list(s) if isinstance(s, tuple) else s for s in self.strides]}"
            )
        if self.num_res_units < 0:
            raise ConfigError(f"model.num_res_units: must be >= 0, got {self.num_res_units}")
        if self.norm not in ("instance", "batch"):
            raise ConfigError(f"model.norm: {self.norm!r} is not one of ['batch', 'instance']")
        if not 0.0 < self.dropout < 1.0:
            raise ConfigError(f"model.dropout: must lie in (0, 1) for MC dropout, got {self.dropout}")
        if self.placement not in DROPOUT_PLACEMENTS:
            raise ConfigError(f"model.placement: {self.placement!r} is not one of {list(DROPOUT_PLACEMENTS)}")
        if self.head_channels < 1:
            raise ConfigError(f"model.head_channels: must be >= 1, got {self.head_channels}")

    @property
    def divisors(self) -> tuple[int, int, int]:
        """Per axis, what spatial sizes fed to the net must be multiples of: the product of the strides (for
        ``"auto"``, the most any plan can need: 2 per stage on every axis)."""
        out = [1, 1, 1]
        for s in (2,) * (len(self.channels) - 1) if self.strides == "auto" else self.strides:
            out = [o * a for o, a in zip(out, _axes(s))]
        return tuple(out)

    @property
    def divisor(self) -> int:
        """The largest of :attr:`divisors` (every axis a multiple of it is a valid size)."""
        return max(self.divisors)

    def planned(self, spacing=None, patch=None) -> "ModelConfig":
        """This config with ``strides: auto`` planned for voxels of ``spacing`` (mm per array axis of the network's
        grid; ``None``: isotropic) and a training patch of ``patch`` voxels, by nnU-Net's rule
        (:func:`medal.model.plan.suggest_strides`); a config with strides given is returned as it is."""
        if self.strides != "auto":
            return self
        from medal.model.plan import suggest_strides

        n = len(self.channels) - 1
        return dataclasses.replace(self, strides=suggest_strides(spacing if spacing is not None else (1.0, 1.0, 1.0),
                                                                 n, patch=patch))


@dataclass(frozen=True)
class TrainingConfig:
    """``training:`` learning from full or partial labels (255 = not annotated, ignored by the loss)."""

    patch_size: tuple[int, int, int] = (32, 48, 32)
    batch_size: int = 4
    max_epochs: int = 30
    iterations_per_epoch: int = 25
    learning_rate: float = 3e-3
    weight_decay: float = 1e-5
    dice_weight: float = 1.0  # loss = ce_weight * masked CE + dice_weight * masked soft Dice
    ce_weight: float = 1.0
    foreground_fraction: float = 0.5  # share of patches centred on an annotated foreground voxel
    val_fraction: float = 0.2  # share of labelled cases held out for validation (at least one)
    # share of annotated axial slices `medal round` never trains on: the held-out set each round's
    # report measures Dice on (chosen by a hash of case and slice, so a slice stays held out)
    holdout: float = 0.1
    patience: int = 8  # stop after this many epochs without a better validation Dice
    # a validation case with more voxels than this is validated, each epoch, on fixed windows around its annotated
    # voxels (val_window_voxels of them in all, half centred on foreground; counts weighted by 1 / each voxel's
    # chance to be in a window: trainer.validation_weights) rather than whole: a whole CT's
    # sliding window costs several epochs of training (nnU-Net validates on patches during training too);
    # 0 = every case whole. Hippocampus cases (~70k voxels) are always validated whole.
    val_whole_max_voxels: int = 2_000_000
    val_window_voxels: int = 1_000_000
    # the normalised images and labels of a round's training cases stay in RAM up to this many GB (per process);
    # each case beyond it is written to scratch_dir and read by memory map, as nnU-Net reads its preprocessed
    # cases, so CTs that would not fit in RAM together still train (same patches, same weights). null = always
    # in RAM; 0 = every case by memory map.
    items_in_memory_gb: float | None = 8.0
    scratch_dir: str | None = None  # where those cases go (removed as soon as mapped); null = $TMPDIR or /tmp
    # the per-round schedule of `medal round` / `medal simulate`: round 0 trains max_epochs from scratch;
    # a later round starts from the previous round's weights (warm_start) for warm_epochs (0 = max_epochs),
    # or from scratch for max_epochs
    warm_start: bool = True
    warm_epochs: int = 0
    # a committee at no extra cost: keep this many snapshots of the weights, evenly spaced over the
    # second half of the run (the last one is the final model); 0 = none (uncertainty.source: committee needs >= 2)
    snapshots: int = 0
    # temperature scaling: fit the temperature of the logits on the validation cases' annotated voxels
    # (needs val_fraction > 0); stored in the checkpoint and applied before every uncertainty measure
    calibrate: bool = True
    # learning from unannotated voxels too (medal/training/semi.py): none | pseudo_label | mean_teacher
    semi_supervised: str = "pseudo_label"
    pseudo_threshold: float = 0.9  # pseudo_label: teacher probability above which a voxel is a target
    unlabeled_weight: float = 1.0  # weight of the unsupervised term once ramped up
    rampup: float = 0.3  # share of a round's steps over which that weight ramps up
    ema_decay: float = 0.99  # the EMA teacher's decay per step
    # pseudo_label only (other modes ignore it, as they ignore pseudo_threshold): pseudo-labels only
    # within this many voxels of an expert's annotation, of a class the expert painted within
    # pseudo_margin voxels further (annotated slices propagated to their neighbours,
    # medal/training/semi.py); 0 = anywhere the teacher is confident
    pseudo_propagation: float = 0.0
    pseudo_margin: float = 1.0
    # mean_teacher: patch axes (0, 1, 2: the array's) along which the student's noisy copy may also be
    # flipped; none by default: a flip moves anatomy where another class lives (anterior/posterior
    # hippocampus), and on the tuning split flips along every axis cost 0.24 AUBC (RESULTS.md)
    consistency_flip_axes: tuple[int, ...] = ()
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    num_threads: int = 0  # torch CPU threads; 0 keeps torch's default
    # fp32 | bf16: the forward pass and the loss under bfloat16 autocast (weights, optimiser and
    # checkpoints stay fp32; no loss scaling needed). For GPUs with bf16 tensor cores (Ampere and later,
    # as nnU-Net trains in mixed precision); on a CPU it runs but is slower, and on an H200 medal's small
    # models gain nothing from it (0.89-0.97x fp32, benchmarks/training_speed.py): for larger patches/models
    precision: str = "fp32"

    def __post_init__(self):
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"training.precision: expected fp32 or bf16, got {self.precision!r}")
        if any(p < 4 for p in self.patch_size):
            raise ConfigError(f"training.patch_size: each side must be >= 4, got {list(self.patch_size)}")
        if self.items_in_memory_gb is not None and self.items_in_memory_gb < 0:
            raise ConfigError(f"training.items_in_memory_gb: must be >= 0 (0 = every case by memory map) or null "
                              f"(always in RAM), got {self.items_in_memory_gb}")
        if self.val_whole_max_voxels < 0 or self.val_window_voxels < 1:
            raise ConfigError("training.val_whole_max_voxels: must be >= 0 (0 = every case whole), "
                              "training.val_window_voxels >= 1")
        for name in ("batch_size", "max_epochs", "iterations_per_epoch", "patience"):
            if getattr(self, name) < 1:
                raise ConfigError(f"training.{name}: must be >= 1, got {getattr(self, name)}")
        from medal.training.semi import SEMI_SUPERVISED

        if self.semi_supervised not in SEMI_SUPERVISED:
            raise ConfigError(f"training.semi_supervised: {self.semi_supervised!r} is not one of {list(SEMI_SUPERVISED)}")
        if not 0.0 < self.pseudo_threshold <= 1.0:
            raise ConfigError(f"training.pseudo_threshold: must lie in (0, 1], got {self.pseudo_threshold}")
        if self.unlabeled_weight < 0 or not 0.0 <= self.rampup <= 1.0 or not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError("training: unlabeled_weight >= 0, rampup in [0, 1] and ema_decay in [0, 1)")
        if self.pseudo_propagation < 0 or self.pseudo_margin < 0:
            raise ConfigError("training.pseudo_propagation and training.pseudo_margin: must be >= 0 (voxels)")
        if any(a not in (0, 1, 2) for a in self.consistency_flip_axes):
            raise ConfigError(f"training.consistency_flip_axes: patch axes 0, 1 or 2, got {list(self.consistency_flip_axes)}")
        if self.snapshots < 0 or self.snapshots == 1:
            raise ConfigError(f"training.snapshots: 0 (none) or >= 2 members, got {self.snapshots}")
        if self.warm_epochs < 0:
            raise ConfigError(f"training.warm_epochs: must be >= 0 (0 = max_epochs), got {self.warm_epochs}")
        if self.learning_rate <= 0:
            raise ConfigError(f"training.learning_rate: must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0 or self.dice_weight < 0 or self.ce_weight < 0 or self.dice_weight + self.ce_weight == 0:
            raise ConfigError("training: weight_decay, dice_weight, ce_weight must be >= 0 and the loss weights not both 0")
        if not 0.0 <= self.foreground_fraction <= 1.0:
            raise ConfigError(f"training.foreground_fraction: must lie in [0, 1], got {self.foreground_fraction}")
        if not 0.0 <= self.holdout < 0.5:
            raise ConfigError(f"training.holdout: must lie in [0, 0.5), got {self.holdout}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"training.val_fraction: must lie in [0, 1), got {self.val_fraction}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"training.device: expected auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.num_threads < 0:
            raise ConfigError(f"training.num_threads: must be >= 0 (0 = torch's default), got {self.num_threads}")
        for name in ("learning_rate", "weight_decay", "dice_weight", "ce_weight"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"training.{name}: must be a finite number, got {getattr(self, name)}")


@dataclass(frozen=True)
class UncertaintyConfig:
    """``uncertainty:`` MC-dropout scoring."""

    # where the samples come from: mc_dropout | committee | tta | committee_dropout | tta_dropout
    source: str = "mc_dropout"
    mc_samples: int = 20
    measures: tuple[str, ...] = ("entropy", "bald")
    tta_axes: tuple[int, ...] = (0, 1, 2)  # tta: flips along these array axes (every combination)
    tta_jitter: float = 0.0  # tta: std of a random intensity scale and shift per augmentation (0 = flips only)
    temperature_scaling: bool = True  # divide logits by the checkpoint's fitted temperature (if it has one)
    sample_batch: int = 10  # stochastic passes run together (memory vs speed); never grows with mc_samples
    roi_size: tuple[int, int, int] = (32, 48, 32)  # sliding window; keep it = training.patch_size (InstanceNorm sees what it saw in training)
    overlap: float = 0.25
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        from medal.uncertainty.measures import MEASURES
        from medal.uncertainty.sources import SOURCES

        if self.source not in SOURCES:
            raise ConfigError(f"uncertainty.source: {self.source!r} is not one of {sorted(SOURCES)}")
        if not self.tta_axes or any(a not in (0, 1, 2) for a in self.tta_axes) or len(set(self.tta_axes)) != len(self.tta_axes):
            raise ConfigError(f"uncertainty.tta_axes: distinct axes among 0, 1, 2, got {list(self.tta_axes)}")
        if not 0 <= self.tta_jitter < 1:
            raise ConfigError(f"uncertainty.tta_jitter: must lie in [0, 1), got {self.tta_jitter}")
        if self.mc_samples < 2:
            raise ConfigError(f"uncertainty.mc_samples: need >= 2 samples, got {self.mc_samples}")
        unknown = [m for m in self.measures if m not in MEASURES]
        if unknown or not self.measures:
            raise ConfigError(f"uncertainty.measures: {unknown or '[]'} not valid; choose from {sorted(MEASURES)}")
        if self.sample_batch < 1:
            raise ConfigError(f"uncertainty.sample_batch: must be >= 1, got {self.sample_batch}")
        if not 0.0 <= self.overlap < 1.0:
            raise ConfigError(f"uncertainty.overlap: must lie in [0, 1), got {self.overlap}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"uncertainty.device: expected auto, cpu, cuda or cuda:N, got {self.device!r}")


@dataclass(frozen=True)
class RegionsConfig:
    """``regions:`` candidate annotation units and how their score is aggregated."""

    kind: str = "slice"  # slice | supervoxel
    # axial | coronal | sagittal | 0 | 1 | 2, or a list of them (slices in several orientations; the
    # first is the painting plane of supervoxels)
    axis: str | tuple[str, ...] = "axial"
    value: str = "class_entropy"  # what a unit is worth: class_entropy | expected_errors | bald_topq | entropy
    # (| oracle_errors: the true errors, a `medal simulate` diagnostic only)
    measure: str = "entropy"  # score volume the 'entropy' value aggregates
    aggregate: str = "sum"  # sum | mean | max | topq (the 'entropy' value)
    top_q: float = 0.1  # topq aggregation and bald_topq: share of a unit's voxels
    band: int = 2  # expected_errors: voxels either side of a predicted boundary
    supervoxel_size_mm: float = 8.0
    compactness: float = 10.0
    slic_iterations: int = 5

    @property
    def axes(self) -> tuple[str, ...]:
        return (self.axis,) if isinstance(self.axis, str) else tuple(self.axis)

    def __post_init__(self):
        from medal.regions.table import AGGREGATIONS
        from medal.regions.values import VALUES
        from medal.uncertainty.measures import MEASURES

        if self.kind not in ("slice", "supervoxel"):
            raise ConfigError(f"regions.kind: {self.kind!r} is not one of ['slice', 'supervoxel']")
        bad = [a for a in self.axes if a not in ("axial", "coronal", "sagittal", "0", "1", "2")]
        if bad or not self.axes or len(set(self.axes)) != len(self.axes):
            raise ConfigError(f"regions.axis: {self.axis!r}: each of axial, coronal, sagittal, 0, 1, 2, at most once")
        if self.value not in VALUES:
            raise ConfigError(f"regions.value: {self.value!r} is not one of {sorted(VALUES)}")
        if self.band < 1:
            raise ConfigError(f"regions.band: must be >= 1 voxel, got {self.band}")
        if self.measure not in MEASURES:
            raise ConfigError(f"regions.measure: {self.measure!r} is not one of {sorted(MEASURES)}")
        if self.aggregate not in AGGREGATIONS:
            raise ConfigError(f"regions.aggregate: {self.aggregate!r} is not one of {list(AGGREGATIONS)}")
        if not 0 < self.top_q <= 1:
            raise ConfigError(f"regions.top_q: must lie in (0, 1], got {self.top_q}")
        for name in ("supervoxel_size_mm", "compactness"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"regions.{name}: must be a finite number > 0, got {v}")
        if self.slic_iterations < 1:
            raise ConfigError(f"regions.slic_iterations: must be >= 1, got {self.slic_iterations}")


@dataclass(frozen=True)
class CostsConfig:
    """``costs:`` the annotation-cost model (seconds per unit)."""

    model: str = ""  # JSON written by `medal costs fit`; empty = documented default coefficients
    # how the expert annotates a task: draw (from an empty unit) | correct (the model's prediction, shown
    # in the unit, is edited: the napari plugin's --from-prediction); prices the units accordingly
    annotation: str = "draw"
    prediction: str = "expected"  # expected (over the predictive distribution) | argmax (the label map)
    calibration: str = "scale"  # online, from earlier rounds' logged seconds: scale | features | none
    calibration_decay: float = 0.5  # weight of a round's tasks per round of age
    calibration_min_tasks: int = 10  # fewer logged tasks than this: no calibration yet
    min_seconds: float = 5.0  # floor: navigating to a unit and checking it
    # prediction: expected: the foreground probability levels the features are averaged over
    levels: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    # predicted pieces smaller than this (mm², in the annotation plane) are not counted: sampling specks
    # of an early model, not strokes an expert draws; 0 = every piece counts
    min_piece_mm2: float = 0.0

    def __post_init__(self):
        from medal.costs.calibration import CALIBRATIONS

        if not self.levels or any(not (isinstance(v, (int, float)) and 0.0 < v < 1.0) for v in self.levels):
            raise ConfigError(f"costs.levels: expected a non-empty list of probabilities in (0, 1), got {list(self.levels)}")
        if not (math.isfinite(self.min_piece_mm2) and self.min_piece_mm2 >= 0):
            raise ConfigError(f"costs.min_piece_mm2: must be a finite number >= 0, got {self.min_piece_mm2}")

        if self.model and not self.model.endswith(".json"):
            raise ConfigError(f"costs.model: expected a .json cost model file, got {self.model!r}")
        from medal.costs.features import ANNOTATION_MODES

        if self.annotation not in ANNOTATION_MODES:
            raise ConfigError(f"costs.annotation: {self.annotation!r} is not one of {list(ANNOTATION_MODES)}")
        if self.prediction not in ("expected", "argmax"):
            raise ConfigError(f"costs.prediction: {self.prediction!r} is not one of ['argmax', 'expected']")
        if self.calibration not in CALIBRATIONS:
            raise ConfigError(f"costs.calibration: {self.calibration!r} is not one of {list(CALIBRATIONS)}")
        if not 0 < self.calibration_decay <= 1:
            raise ConfigError(f"costs.calibration_decay: must lie in (0, 1], got {self.calibration_decay}")
        if self.calibration_min_tasks < 2:
            raise ConfigError(f"costs.calibration_min_tasks: must be >= 2, got {self.calibration_min_tasks}")
        if not (math.isfinite(self.min_seconds) and self.min_seconds >= 0):
            raise ConfigError(f"costs.min_seconds: must be a finite number >= 0, got {self.min_seconds}")


@dataclass(frozen=True)
class SelectionConfig:
    """``selection:`` which units to ask the expert for, within a budget of seconds."""

    strategy: str = "knapsack"  # random | fg_random | fg_value | fg_typical | badge | fg_badge | topk | knapsack | knapsack+diversity
    budget_s: float = 600.0
    max_per_case: int = 0  # 0 = no limit
    min_slice_spacing: int = 0  # chosen slices of one case and axis differ by at least this; 0 = off
    skip_annotated_above: float = 0.5  # units already annotated beyond this fraction are not offered
    max_case_share: float = 0.0  # at most this share of the budget's seconds per case; 0 = off
    class_quota: dict[int, float] = field(default_factory=dict)  # class -> share of budget chosen by its value
    foreground_share: float = 0.66  # without class_quota: this share split equally over the foreground classes
    noise: str = "power"  # none | power (stochastic batches: values * exp(Gumbel(0, 1/beta)))
    beta_start: float = 1.0  # power noise beta of round 0 ...
    beta_end: float = 1.0  # ... growing exponentially to this (1: beta 1 every round, RESULTS.md 2026-12-03) ...
    beta_rounds: int = 4  # ... reached at round beta_rounds - 1
    fallback: str = "supervoxel"  # no slice fits the budget: supervoxel | none (then it is an error)
    qc_share: float = 0.0  # label quality control: this share of the budget re-asks earlier finished tasks
    diversity_spacing: int = 3  # knapsack+diversity: min_slice_spacing at least this
    diversity_max_per_case: int = 4  # knapsack+diversity: max_per_case when max_per_case is 0
    resolution: int = 10000  # knapsack cost units per budget
    value_power: float = 0.5  # fg_value: weight (0.05 + fg fraction) * (value / mean value) ** this
    # a time-boxed session: after the budget's tasks, a reserve queue of this many budgets' predicted
    # seconds (same strategy, other units) for an expert who finishes early; the expert stops when the
    # round's logged seconds reach the budget (medal simulate: simulation.timed). 0 = no reserve.
    # 4 by default: an early model over-predicts the first round's seconds up to 3.5x; with 4 budgets queued
    # every first round spent its budget, with 1 or 2 not (tuning split, RESULTS.md 2026-12-04)
    reserve: float = 4.0
    # TCM (Doucet et al. 2024): the first this many selection rounds use fg_typical (TypiClust on the cold start's
    # encoder), the later ones `strategy`; 0 = `strategy` in every round (1 was level with fg_random on a tuning screen)
    typical_rounds: int = 0
    # novelty part (knapsack strategies; slices only): this share of the budget goes first to slices far from every
    # annotated slice in the cold start's encoder space (a new site, a new scanner), drawn with probability ~ how far
    # beyond the median distance they lie, at most 2 per case; the rest as usual. 0 = off. "auto": 0.2 in a round
    # where some unlabelled cases lie farther from the labelled cases than any labelled case does (a conformal test,
    # medal.selection.strategies.far_case_test), 0 otherwise; the round's tasks.json and summary say which and why.
    # "auto" is the default since 2026-12-06 (benchmarks/RESULTS.md: the price of a fire x its rate on an ordinary
    # pool against its gain where a site is new)
    novelty_share: float | str = "auto"
    # novelty_share: auto -- the level of far_case_test: the part turns on where p is below it. Higher turns it on for
    # smaller new sites and in more rounds where no site is new. 0.05 (benchmarks/novelty_trigger.py --levels,
    # medal's own starts on the tuning pool: fires on 66% of the new-site protocol's, 5% of the ordinary pool's; at
    # 0.1: 93% and 12%). 0.1 was the default from 2026-12-06 08:54 to 11:12 UTC: a fire at p in [0.05, 0.1) was then
    # measured (22 seeds, RESULTS.md 2026-12-06 10:59 UTC plan) at -0.0046 AUBC, and the price rule sent it back
    novelty_alpha: float = 0.05
    # novelty_share: auto -- a second, weaker level above novelty_alpha (0 = off): where novelty_alpha <= p <
    # novelty_weak_alpha the part turns on with half the share (weaker evidence, a smaller bet). Off by default: it
    # kept 91% of the full share's new-site gain (3 seeds) but was no cheaper on an ordinary pool (4 seeds; RESULTS.md
    # 2026-12-06 11:54 and 12:33 UTC)
    novelty_weak_alpha: float = 0.0
    # novelty_share: auto -- the trigger also fires (whole share) where the 3rd-farthest unlabelled case lies more than
    # this many times as far as the farthest labelled case (far_case_test's gap; 0 = off): a block far beyond the
    # labelled ones, which the rank test only counts. 1.2 (since 2026-12-06): on the tuning pool's starts it added 1 of
    # 300 fires where no site is new (5.0% -> 5.3%) and lifted the new-site protocol's from 66% to 99% (RESULTS.md)
    novelty_gap: float = 1.2
    # badge / fg_badge: k-means++ draws with probability ~ squared gradient distance x fg_random's weight (0.05 +
    # predicted foreground fraction) instead of the distance alone (BADGE)
    badge_fg_weight: bool = False
    # badge / fg_badge: none = BADGE's gradient embedding (every voxel alike); foreground = each voxel's term weighted by
    # its predicted foreground probability (ClaSP-style), so a slice's background weighs less
    badge_weighting: str = "none"
    seed: int = 0

    def __post_init__(self):
        from medal.selection.strategies import STRATEGIES

        if self.strategy not in STRATEGIES:
            raise ConfigError(f"selection.strategy: {self.strategy!r} is not one of {sorted(STRATEGIES)}")
        from medal.uncertainty.embedding import WEIGHTINGS

        if self.badge_weighting not in WEIGHTINGS:
            raise ConfigError(f"selection.badge_weighting: {self.badge_weighting!r} is not one of {list(WEIGHTINGS)}")
        if not (math.isfinite(self.budget_s) and self.budget_s > 0):
            raise ConfigError(f"selection.budget_s: must be a finite number > 0 seconds, got {self.budget_s}")
        if not 0 <= self.max_case_share <= 1:
            raise ConfigError(f"selection.max_case_share: must lie in [0, 1], got {self.max_case_share}")
        if not 0 <= self.foreground_share <= 1:
            raise ConfigError(f"selection.foreground_share: must lie in [0, 1], got {self.foreground_share}")
        if not 0 <= self.qc_share <= 0.5:
            raise ConfigError(f"selection.qc_share: must lie in [0, 0.5], got {self.qc_share}")
        if self.fallback not in ("supervoxel", "none"):
            raise ConfigError(f"selection.fallback: {self.fallback!r} is not one of ['none', 'supervoxel']")
        if self.noise not in ("none", "power"):
            raise ConfigError(f"selection.noise: {self.noise!r} is not one of ['none', 'power']")
        if not (0 < self.beta_start < math.inf and 0 < self.beta_end < math.inf) or self.beta_rounds < 1:
            raise ConfigError("selection: beta_start and beta_end must be finite and > 0, beta_rounds >= 1")
        for name in ("max_per_case", "min_slice_spacing", "diversity_spacing", "diversity_max_per_case"):
            if getattr(self, name) < 0:
                raise ConfigError(f"selection.{name}: must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.skip_annotated_above <= 1:
            raise ConfigError(f"selection.skip_annotated_above: must lie in [0, 1], got {self.skip_annotated_above}")
        if any(c < 1 for c in self.class_quota) or any(not 0 < v <= 1 for v in self.class_quota.values()) \
                or sum(self.class_quota.values()) > 1 + 1e-9:
            raise ConfigError(f"selection.class_quota: classes >= 1 with shares in (0, 1] summing to <= 1, "
                              f"got {self.class_quota}")
        if not (math.isfinite(self.reserve) and 0 <= self.reserve <= 10):
            raise ConfigError(f"selection.reserve: must lie in [0, 10] budgets, got {self.reserve}")
        if isinstance(self.typical_rounds, bool) or not isinstance(self.typical_rounds, int) or self.typical_rounds < 0:
            raise ConfigError(f"selection.typical_rounds: must be a whole number >= 0, got {self.typical_rounds!r}")
        if self.novelty_share != "auto" and not (isinstance(self.novelty_share, (int, float))
                                                 and not isinstance(self.novelty_share, bool)
                                                 and 0 <= self.novelty_share <= 0.5):
            raise ConfigError(f"selection.novelty_share: must lie in [0, 0.5] or be 'auto', got {self.novelty_share!r}")
        if isinstance(self.novelty_alpha, bool) or not isinstance(self.novelty_alpha, (int, float)) \
                or not 0 < self.novelty_alpha <= 0.5:
            raise ConfigError(f"selection.novelty_alpha: must lie in (0, 0.5], got {self.novelty_alpha!r}")
        if isinstance(self.novelty_gap, bool) or not isinstance(self.novelty_gap, (int, float)) \
                or not (self.novelty_gap == 0 or 1 < self.novelty_gap <= 10):
            raise ConfigError(f"selection.novelty_gap: must be 0 (off) or lie in (1, 10], got {self.novelty_gap!r}")
        if isinstance(self.novelty_weak_alpha, bool) or not isinstance(self.novelty_weak_alpha, (int, float)) \
                or not (self.novelty_weak_alpha == 0 or self.novelty_alpha < self.novelty_weak_alpha <= 0.5):
            raise ConfigError(f"selection.novelty_weak_alpha: must be 0 (off) or lie in (novelty_alpha, 0.5], "
                              f"got {self.novelty_weak_alpha!r} with novelty_alpha {self.novelty_alpha!r}")
        if not (math.isfinite(self.value_power) and self.value_power >= 0):
            raise ConfigError(f"selection.value_power: must be a finite number >= 0, got {self.value_power}")
        if self.resolution < 10:
            raise ConfigError(f"selection.resolution: must be >= 10, got {self.resolution}")


def _check_planes(value, key: str) -> None:
    """A plane setting that may be empty (""): otherwise what ``regions.axis`` takes, its error under ``key``."""
    if value in ("", ()):
        return
    try:
        RegionsConfig(axis=value)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("regions.axis", key)) from None


@dataclass(frozen=True)
class SimulationConfig:
    """``simulation:`` label-efficiency experiments with the ground truth as the oracle."""

    # a selection strategy (random, fg_random, topk, knapsack, knapsack+diversity), "default" (this
    # config's own selection section), or the name of one of `variants`
    strategies: tuple[str, ...] = ("random", "fg_random", "topk", "knapsack")
    # name -> overrides of other sections, e.g. {"medal": {"selection": {"strategy": "knapsack", "noise": "power"}}}
    variants: dict[str, typing.Any] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0, 1, 2)
    rounds: int = 3  # selection rounds after the initial labels (the model is trained rounds + 1 times; 0 = initial only)
    initial: str = "random"  # random | coldstart: how the first labels are chosen (same for every strategy)
    initial_budget_s: float = 300.0
    # unit kind of random first labels: "" = regions.kind of each row; slice | supervoxel = that kind for
    # every row (e.g. supervoxel rounds after a start of random slices, as after `medal coldstart`)
    initial_kind: str = ""
    # slice plane(s) of the first labels (random or cold start), as regions.axis takes them: "" = coldstart.axis
    # for a cold start, else the row's regions.axis; e.g. [axial, coronal, sagittal] then axial rounds
    initial_axis: str | tuple[str, ...] = ""
    split_file: str = ""  # JSON with "test" case ids; empty = a seeded test_fraction of the cases
    # JSON {case id: group}, e.g. each case's site or scanner: results.csv gets a dice_group_NAME column per group
    # (mean Dice over that group's test cases), so a rare group's curve is not hidden in the mean; "" = none
    groups: str = ""
    # the first labels (random or cold start) come only from pool cases of these groups of `groups`, e.g. the
    # sites a group had labelled before a new scanner's cases joined the pool; () = from the whole pool
    initial_groups: tuple[str, ...] = ()
    test_fraction: float = 0.2
    max_pool: int = 0  # use at most this many non-test cases (0 = all): smaller CPU runs
    workers: int = 1  # (strategy, seed) runs side by side, each with cores / workers torch threads
    # the oracle works like an expert with a clock: tasks in their order until the round's budget of true
    # seconds is reached (the task in hand is finished), the rest left undone; with selection.reserve
    # the queue is long enough when the predicted seconds were too high. false: every task is painted
    # (the reserve too; the benchmark configs' untimed protocol pins false and selection.reserve 0)
    timed: bool = True
    # the model's seeds (training, MC dropout) are seed + this; the first labels and the selection keep the seed:
    # the same starts and selections trained again under other training seeds, to tell selection from training
    # noise (benchmarks/coldstart.py --training-offsets). 0 = one seed for all
    training_seed_offset: int = 0

    def __post_init__(self):
        from medal.selection.strategies import STRATEGIES

        clash = sorted(set(self.variants) & (set(STRATEGIES) | {"default"}))
        if clash:
            raise ConfigError(f"simulation.variants: {clash} would hide a strategy of that name; rename the variant")
        bad = [s for s in self.strategies if s not in STRATEGIES and s != "default" and s not in self.variants]
        if bad or not self.strategies:
            raise ConfigError(f"simulation.strategies: {bad or '[]'} not valid; choose from {sorted(STRATEGIES)}, "
                              f"'default' or a variant {sorted(self.variants)}")
        for name, over in self.variants.items():
            if not isinstance(over, dict) or not all(isinstance(v, dict) for v in over.values()):
                raise ConfigError(f"simulation.variants.{name}: expected a mapping of sections to overrides, got {over!r}")
            if "simulation" in over:
                raise ConfigError(f"simulation.variants.{name}: a variant cannot override the simulation section")
        if not self.seeds:
            raise ConfigError("simulation.seeds: need at least one seed")
        if self.rounds < 0:
            raise ConfigError(f"simulation.rounds: must be >= 0, got {self.rounds}")
        if self.initial not in ("random", "coldstart"):
            raise ConfigError(f"simulation.initial: {self.initial!r} is not one of ['random', 'coldstart']")
        if self.initial_kind not in ("", "slice", "supervoxel"):
            raise ConfigError(f"simulation.initial_kind: {self.initial_kind!r} is not one of ['', 'slice', 'supervoxel']")
        _check_planes(self.initial_axis, "simulation.initial_axis")
        if self.initial_groups and not self.groups:
            raise ConfigError("simulation.initial_groups: needs simulation.groups (the JSON that names each case's group)")
        if not all(isinstance(g, str) and g for g in self.initial_groups):
            raise ConfigError(f"simulation.initial_groups: group names (strings), got {list(self.initial_groups)!r}")
        if not (math.isfinite(self.initial_budget_s) and self.initial_budget_s > 0):
            raise ConfigError(f"simulation.initial_budget_s: must be a finite number > 0, got {self.initial_budget_s}")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"simulation.test_fraction: must lie in (0, 1), got {self.test_fraction}")
        if self.max_pool < 0:
            raise ConfigError(f"simulation.max_pool: must be >= 0, got {self.max_pool}")
        if self.workers < 1:
            raise ConfigError(f"simulation.workers: must be >= 1, got {self.workers}")
        if isinstance(self.training_seed_offset, bool) or not isinstance(self.training_seed_offset, int) \
                or self.training_seed_offset < 0:
            raise ConfigError(f"simulation.training_seed_offset: must be a whole number >= 0, got "
                              f"{self.training_seed_offset!r}")


@dataclass(frozen=True)
class ColdstartConfig:
    """``coldstart:`` one-shot selection with no labels and no segmentation model."""

    # defaults chosen on the tuning split (benchmarks/coldstart.py, RESULTS.md): the encoder with TypiClust away
    # from the volume ends beat thumbnails in every screen; over three planes (axis) its first model beat the axial
    # random start in 10/10 seeds and its AUBC over three rounds in 3/3 (test split, once: 4/6 and 5/6)
    representation: str = "encoder"  # encoder (contrastive, trained on the pool, cached) | thumbnails (+ histogram, PCA)
    method: str = "typiclust"  # typiclust | probcover
    max_per_case: int = 2  # at most this many slices per volume (0 = no cap)
    edge_margin: float = 0.2  # slices within this share of a volume's extent from either end are not chosen
    # the slice's relative position along the slice axis as one more feature of the representation, with this
    # share of its total variance (0 = off); a tuning screen found no gain and no change in where picks fall
    position_weight: float = 0.0
    # TypiClust: an equal share of the budget per band of relative slice position (this many bands inside the
    # edge margin; 0 or 1 = off), picks ordered round-robin over the bands; a tuning screen found no gain
    position_strata: int = 0
    # TypiClust over several planes (axis): an equal share of the budget per plane, each plane clustered on its own,
    # picks ordered round-robin over the planes (false: the planes are one pool, bought by value); a tuning screen
    # found it worse (fewer, dearer slices for the same seconds)
    plane_quota: bool = False
    # this share of the budget for slices outside the edge margin (the volume ends), chosen by the same method among
    # them; meant to add background-only negatives, but on a tuning screen its picks held anatomy and did worse; 0 = off
    edge_share: float = 0.0
    # the ends' share (edge_share) is chosen among slices within this share of either end only (0 = every slice
    # outside edge_margin): an explicit label-free background proxy, as the outer tenth of a crop rarely holds anatomy
    ends_margin: float = 0.0
    # slice plane(s) to choose from, as regions.axis takes them ("" = regions.axis): three planes are one pool (one
    # encoder, one per-volume cap), then the rounds go on in regions.axis. Chosen on the tuning split: over three
    # planes the first model beat the axial random start in 10/10 seeds (+0.12 Dice) and a three-plane random start
    # in 10/10 (RESULTS.md); on region-of-interest crops, where the middle slices of every plane cross the anatomy
    axis: str | tuple[str, ...] = ("axial", "coronal", "sagittal")
    pilot: int = 3  # slices painted and timed first to scale the cost prior (medal simulate; medal coldstart --pilot)
    # a reserve queue after the budget's slices, this many budgets of predicted seconds more (0 = none): painted only
    # while the expert's logged seconds are under the budget, so a start whose slices were over-predicted still
    # spends its budget (as selection.reserve does for a round); medal simulate paints it with the pilot's clock
    reserve: float = 0.5
    pilot_batches: int = 3  # medal simulate: then this many batches, each a third of the budget left, timed and re-scaling
    thumbnail: int = 16  # each slice is resampled to thumbnail x thumbnail pixels
    components: int = 16  # PCA dimensions of the thumbnail representation
    neighbours: int = 10  # k of the k-NN typicality (20, TypiClust's reference K, screened worse on tuning)
    encoder_steps: int = 300  # training steps of the contrastive encoder
    # encoders trained under different seeds, their standardised embeddings side by side (an ensemble: clusters and
    # typicality from the mean squared distance over encoders); 3 screened worse on tuning (-0.024, 1/5 seeds)
    encoders: int = 1
    # TypiClust: slices of one volume and plane at least this share of its extent apart (a cluster whose most
    # typical slice sits next to one already held is represented by its next most typical); 0 = off (0.1 worse on tuning)
    min_gap: float = 0.0
    seed: int = 0

    def __post_init__(self):
        from medal.coldstart.select import METHODS, REPRESENTATIONS

        if self.representation not in REPRESENTATIONS:
            raise ConfigError(f"coldstart.representation: {self.representation!r} is not one of {list(REPRESENTATIONS)}")
        if self.method not in METHODS:
            raise ConfigError(f"coldstart.method: {self.method!r} is not one of {list(METHODS)}")
        if self.thumbnail < 4 or self.components < 1 or self.neighbours < 1 or self.encoder_steps < 1:
            raise ConfigError("coldstart: thumbnail >= 4, components >= 1, neighbours >= 1, encoder_steps >= 1")
        if not (0 <= self.position_weight < float("inf")):
            raise ConfigError(f"coldstart.position_weight: must be a finite number >= 0, got {self.position_weight}")
        if isinstance(self.position_strata, bool) or not isinstance(self.position_strata, int) or self.position_strata < 0:
            raise ConfigError(f"coldstart.position_strata: must be a whole number >= 0, got {self.position_strata!r}")
        if self.position_strata > 1 and self.method != "typiclust":
            raise ConfigError(f"coldstart.position_strata: applies to method typiclust only, not {self.method!r}")
        _check_planes(self.axis, "coldstart.axis")
        if not isinstance(self.plane_quota, bool):
            raise ConfigError(f"coldstart.plane_quota: must be true or false, got {self.plane_quota!r}")
        if self.plane_quota and self.method != "typiclust":
            raise ConfigError(f"coldstart.plane_quota: applies to method typiclust only, not {self.method!r}")
        if not 0 <= self.edge_margin < 0.5:
            raise ConfigError(f"coldstart.edge_margin: must lie in [0, 0.5), got {self.edge_margin}")
        if not (isinstance(self.edge_share, (int, float)) and math.isfinite(self.edge_share) and 0 <= self.edge_share < 1):
            raise ConfigError(f"coldstart.edge_share: must lie in [0, 1), got {self.edge_share!r}")
        if self.edge_share > 0 and self.edge_margin <= 0:
            raise ConfigError("coldstart.edge_share: needs coldstart.edge_margin > 0 (its slices are those outside the margin)")
        if not (isinstance(self.ends_margin, (int, float)) and math.isfinite(self.ends_margin)
                and 0 <= self.ends_margin <= self.edge_margin):
            raise ConfigError(f"coldstart.ends_margin: must lie in [0, coldstart.edge_margin = {self.edge_margin}], "
                              f"got {self.ends_margin!r}")
        if self.ends_margin > 0 and self.edge_share <= 0:
            raise ConfigError("coldstart.ends_margin: only applies with coldstart.edge_share > 0")
        if self.max_per_case < 0 or self.pilot < 0 or self.pilot_batches < 0:
            raise ConfigError("coldstart: max_per_case, pilot and pilot_batches must be >= 0")
        if not (isinstance(self.min_gap, (int, float)) and math.isfinite(self.min_gap) and 0 <= self.min_gap < 0.5):
            raise ConfigError(f"coldstart.min_gap: must lie in [0, 0.5), got {self.min_gap!r}")
        if self.min_gap > 0 and (self.method != "typiclust" or self.position_strata > 1 or self.plane_quota):
            raise ConfigError("coldstart.min_gap: applies to pooled TypiClust only (method typiclust, no position_strata "
                              "or plane_quota)")
        if isinstance(self.encoders, bool) or not isinstance(self.encoders, int) or not 1 <= self.encoders <= 16:
            raise ConfigError(f"coldstart.encoders: must be a whole number in [1, 16], got {self.encoders!r}")
        if not (isinstance(self.reserve, (int, float)) and math.isfinite(self.reserve) and 0 <= self.reserve <= 10):
            raise ConfigError(f"coldstart.reserve: must lie in [0, 10] budgets, got {self.reserve!r}")


@dataclass(frozen=True)
class ReportConfig:
    """``report:`` the round report's stopping rules and label-quality flags (medal/report/stopping.py)."""

    min_gain: float = 0.01  # a round gaining less held-out Dice than this counts as no gain
    plateau_rounds: int = 2  # ... for this many rounds in a row: a plateau
    max_pool_entropy: float = 0.02  # mean entropy of the unannotated pool below this: a confident model
    min_agreement: float = 0.92  # pool predictions this alike (Dice) round to round for plateau_rounds rounds: stable,
    # the gate of "consider stopping" and "stop" (benchmarks/stopping.py); 0 = off, every rule counts on its own
    agreement_window_s: float = 600.0  # compare with the predictions of the round ~this many logged seconds of
    # labels before (the same amount of new labels whatever the round size; benchmarks/stopping.py); 0 = the round before
    total_budget_s: float = 0.0  # seconds the project can spend in all; 0 = no limit
    flag_confidence: float = 0.95  # a finished task is flagged when the model, this sure, ...
    flag_share: float = 0.2  # ... disagrees with more than this share of its voxels

    def __post_init__(self):
        if not 0 < self.min_gain < 1 or self.plateau_rounds < 1:
            raise ConfigError("report: min_gain must lie in (0, 1) and plateau_rounds be >= 1")
        if self.max_pool_entropy < 0 or self.total_budget_s < 0:
            raise ConfigError("report: max_pool_entropy and total_budget_s must be >= 0")
        if not 0 <= self.min_agreement <= 1:
            raise ConfigError(f"report: min_agreement must lie in [0, 1] (0 = off), got {self.min_agreement}")
        if not (isinstance(self.agreement_window_s, (int, float)) and math.isfinite(self.agreement_window_s)
                and self.agreement_window_s >= 0):
            raise ConfigError("report: agreement_window_s must be seconds >= 0 (0 = the round before), "
                              f"got {self.agreement_window_s!r}")
        if not 0.5 <= self.flag_confidence < 1 or not 0 < self.flag_share < 1:
            raise ConfigError("report: flag_confidence must lie in [0.5, 1) and flag_share in (0, 1)")


@dataclass(frozen=True)
class MedalConfig:
    """The whole file: one section per stage."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    uncertainty: UncertaintyConfig = field(default_factory=UncertaintyConfig)
    regions: RegionsConfig = field(default_factory=RegionsConfig)
    costs: CostsConfig = field(default_factory=CostsConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    coldstart: ColdstartConfig = field(default_factory=ColdstartConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def __post_init__(self):
        div = self.model.divisors
        for key, size in (("training.patch_size", self.training.patch_size),
                          ("uncertainty.roi_size", self.uncertainty.roi_size)):
            if any(int(v) % d for v, d in zip(size, div)):
                raise ConfigError(f"{key}: {list(size)} must be a multiple of {list(div)} per axis (the product of "
                                  "model.strides)")
        if getattr(self.simulation, "_checked_on_base", False):
            return  # a variant's config (or one replaced from it): the variants are overrides of the base, checked there
        for name in self.simulation.variants:
            variant_config(self, name)  # every variant must be a valid config: fail at load, not mid-run


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) and k != "class_quota" else v
    return out


def variant_config(cfg: "MedalConfig", name: str) -> "MedalConfig":
    """The config a simulation row runs with: ``default`` (``cfg`` itself), a variant of
    ``simulation.variants`` (its overrides merged into ``cfg``), or a strategy name (``cfg`` with that
    ``selection.strategy``)."""
    if name == "default":
        return cfg
    if name in cfg.simulation.variants:
        base = config_to_dict(cfg)
        base.pop("simulation")
        merged = _merge(base, cfg.simulation.variants[name])
        try:
            built = config_from_dict(merged, source=f"simulation.variants.{name}")
        except ConfigError as exc:
            raise ConfigError(str(exc).replace(f"simulation.variants.{name}: ", f"simulation.variants.{name}.", 1)) from None
        # the simulation section, already checked against the base, marked so that a config replaced from this one
        # (a run's seeds, say) does not check the other variants on top of this variant: they override the base,
        # and two variants may set keys that only clash when stacked (novelty_alpha 0.1 vs novelty_weak_alpha 0.1)
        sim = copy.copy(cfg.simulation)
        object.__setattr__(sim, "_checked_on_base", True)
        object.__setattr__(built, "simulation", sim)
        return built
    return dataclasses.replace(cfg, selection=dataclasses.replace(cfg.selection, strategy=name))


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value, tp, where: str):
    """Check ``value`` against the annotation ``tp``; return it converted (lists -> tuples)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is typing.Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        kt, vt = args or (typing.Any, typing.Any)
        return {_coerce(k, kt, _key(where, k)): _coerce(v, vt, _key(where, k)) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {type(value).__name__} {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise TypeError(f"{where}: unsupported annotation {tp!r}")  # a bug in medal, not in the file


def _key(where: str, k) -> str:
    return f"{where} {k}" if where.endswith(":") else f"{where}.{k}"


def _build(cls, mapping, where: str):
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where.rstrip(':')}: expected a mapping of keys, got {type(mapping).__name__} {mapping!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(mapping) - set(names))
    if unknown:
        raise ConfigError(f"{where.rstrip(':')}: unknown key(s) {unknown}; valid keys: {names}")
    kwargs = {k: _coerce(v, hints[k], _key(where, k)) for k, v in mapping.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        source = where.split(":")[0] if ":" in where else ""
        if source and not str(exc).startswith(source):
            raise ConfigError(f"{source}: {exc}") from None
        raise


def config_from_dict(mapping: dict, *, source: str = "<config>") -> MedalConfig:
    """Build a :class:`MedalConfig` from a plain mapping; ``source`` names it in errors."""
    return _build(MedalConfig, mapping, f"{source}:")


def load_config(path=None) -> MedalConfig:
    """Read a YAML config; ``None`` gives the defaults. Errors name the file and the key."""
    if path is None:
        return MedalConfig()
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {exc.start}: {exc.reason}); save the config as UTF-8") from None
    try:
        mapping = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    return config_from_dict(mapping or {}, source=str(path))


def config_to_dict(cfg) -> dict:
    """Plain JSON-able dict (tuples become lists) for manifests; a mapping of sections is accepted too."""
    if isinstance(cfg, dict):
        return json.loads(json.dumps({k: config_to_dict(v) if dataclasses.is_dataclass(v) else v
                                      for k, v in cfg.items()}))
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def config_hash(cfg) -> str:
    """Stable SHA-256 of a config section (or the whole config)."""
    return hashlib.sha256(json.dumps(config_to_dict(cfg), sort_keys=True).encode()).hexdigest()
