"""``medal dataset check``: every case, every problem, each naming its file.

The check never stops at the first bad case. It reports per case the shape, spacing, dtype and
label values, and a list of problems; the dataset is ``ok`` when no case and no dataset-level check
found one.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .channels import channel_files, same_channel_grid
from .dataset import Dataset, load_dataset
from .errors import DatasetError
from .io import load_volume
from .labels import UNLABELED
from .loading import read_label_file
from .resample import MIXED_RATIO
from .validate import label_on_grid, require_finite, require_label_values

__all__ = ["CaseReport", "DatasetReport", "check_dataset"]

#: the summary notes mixed voxel spacing from this ratio of the largest to the smallest spacing along an axis
#: (the same ratio from which `medal round`, `train` and `simulate` say so: resample.MIXED_RATIO)
SPACING_RATIO_NOTE = MIXED_RATIO


@dataclass
class CaseReport:
    case_id: str
    image: str
    label: str | None
    split: str
    shape: tuple[int, ...] | None = None
    spacing: tuple[float, ...] | None = None
    orientation: str | None = None
    dtype: str | None = None
    intensity_range: tuple[float, float] | None = None
    label_values: list[int] | None = None
    channels: int = 1  # channel files (_0000, _0001, ...): the network's input channels
    label_stored: str = ""  # how the label file sits on the image's grid when not voxel for voxel (validate.label_on_grid)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # reported, not failing: the data may be meant so

    @property
    def ok(self) -> bool:
        return not self.problems


def _network_plan(ds, cfg) -> dict:
    """What a run with ``cfg`` would build for ``ds`` (headers only): the network's voxel spacing
    (``data.spacing`` resolved), axis order, strides (``auto`` planned for that spacing and the patch) and the
    patch in voxels and mm; ``{}`` when no image is readable."""
    from medal.config import config_to_dict

    from .resample import median_network_shape, planning_spacing, resolve_spacing

    try:
        spacing = resolve_spacing(cfg.data, ds)
        planned = cfg.model.planned(planning_spacing(cfg.data, ds, spacing), patch=cfg.training.patch_size)
    except DatasetError:
        return {}
    median = median_network_shape(cfg.data, ds, spacing)
    setting = cfg.data.spacing if isinstance(cfg.data.spacing, str) or cfg.data.spacing is None \
        else list(cfg.data.spacing)
    patch = [int(v) for v in cfg.training.patch_size]
    return {"spacing": list(spacing) if spacing is not None else None, "spacing_setting": setting,
            "orientation": cfg.data.orientation, "strides": config_to_dict(planned)["strides"],
            "strides_auto": cfg.model.strides == "auto", "patch_size": patch,
            "patch_mm": [round(p * v, 3) for p, v in zip(patch, spacing)] if spacing is not None else None,
            "median_case": [int(round(v)) for v in median] if median is not None else None}


def _anisotropy_note(ds, report, cfg) -> None:
    """A note when the median spacing (along the network's axes, ``cfg.data.orientation``) is anisotropic: the
    strides ``model.strides: auto`` plans for it by nnU-Net's rule (:func:`medal.model.plan.suggest_strides`), or
    how the config's own strides differ from them."""
    from medal.config import config_to_dict

    from .resample import median_spacing

    orientation = cfg.data.orientation
    try:
        median = median_spacing(ds, orientation)
    except DatasetError:
        return
    if median is None or max(median) / max(min(median), 1e-9) < 2:
        return
    auto = dataclasses.replace(cfg.model, strides="auto")
    sugg = config_to_dict(auto.planned(median, patch=cfg.training.patch_size))["strides"]
    where = (f"anisotropic voxels (median spacing {tuple(round(v, 3) for v in median)} mm along the network's "
             f"{orientation or 'storage-order'} axes): ")
    evidence = "(+0.009 Dice on 3x thick hippocampus slices, benchmarks/anisotropic_strides.py)"
    if cfg.model.strides == "auto":
        report.notes.append(where + f"model.strides: auto plans {sugg} for them, pooling the thick axis later as "
                            f"nnU-Net does {evidence}")
    elif config_to_dict(cfg.model)["strides"] != sugg:
        report.notes.append(where + f"the config's model.strides {config_to_dict(cfg.model)['strides']} differ "
                            f"from nnU-Net's plan for them, {sugg} (model.strides: auto) {evidence}")


@dataclass
class DatasetReport:
    root: str
    layout: str | None
    name: str | None
    label_names: dict[int, str]
    cases: list[CaseReport]
    problems: list[str] = field(default_factory=list)
    channel_names: dict[int, str] = field(default_factory=dict)  # dataset.json channel_names / modality
    notes: list[str] = field(default_factory=list)  # about the whole dataset, not failing
    plan: dict = field(default_factory=dict)  # the network a run with the config would build (_network_plan)

    @property
    def ok(self) -> bool:
        return not self.problems and all(c.ok for c in self.cases)

    @property
    def n_problems(self) -> int:
        return len(self.problems) + sum(len(c.problems) for c in self.cases)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        d["n_problems"] = self.n_problems
        d["label_names"] = {str(k): v for k, v in self.label_names.items()}
        d["channel_names"] = {str(k): v for k, v in self.channel_names.items()}
        for c, r in zip(d["cases"], self.cases):
            c["ok"] = r.ok
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def summary(self) -> str:
        """A short human summary: counts, shapes, spacings, labels, then every problem."""
        lines = [f"dataset {self.name or ''} at {self.root} ({self.layout or 'unknown'} layout)"]
        n_lab = sum(c.label is not None for c in self.cases)
        lines.append(f"  cases: {len(self.cases)} ({n_lab} labelled, {len(self.cases) - n_lab} unlabelled)")
        good = [c for c in self.cases if c.shape is not None]
        if good:
            shapes = np.array([c.shape for c in good])
            spac = np.array([c.spacing for c in good])
            lines.append(f"  shape: min {tuple(shapes.min(0).tolist())}, max {tuple(shapes.max(0).tolist())}")
            lines.append(f"  spacing (mm): min {tuple(np.round(spac.min(0), 3).tolist())}, "
                         f"max {tuple(np.round(spac.max(0), 3).tolist())}")
            ratio = spac.max(0) / np.maximum(spac.min(0), 1e-9)
            if ratio.max() >= SPACING_RATIO_NOTE:
                lines.append(f"  NOTE: voxel spacing differs across cases, up to {ratio.max():.1f}x along axis "
                             f"{int(ratio.argmax())}: with data.spacing: median (the default) the network trains and "
                             "predicts at the median spacing, labels and tasks stay on each case's grid; "
                             "data.spacing: null would train on each volume's grid as it is, the same anatomy "
                             "over different numbers of voxels (README, 'Mixed spacing')")
            channels = sorted({c.channels for c in good})
            if channels != [1]:
                lines.append(f"  channels: {', '.join(map(str, channels))} per case (files _0000 ... "
                             f"_{max(channels) - 1:04d}): the network reads every channel, each normalised on its "
                             "own; experts see _0000")
            if self.channel_names:
                from .normalize import scheme_for_channel

                how = {"ct": "one window for the whole dataset", "zscore": "z-score per volume",
                       "minmax": "0..1 per volume", "none": "as stored"}
                lines.append("  channel names: " + ", ".join(
                    f"{k}={v} ({how[scheme_for_channel(v)]})" for k, v in sorted(self.channel_names.items()))
                    + " under data.normalize: auto")
            dtypes = sorted({c.dtype for c in good})
            orients = sorted({c.orientation for c in good})
            lines.append(f"  image dtypes: {', '.join(dtypes)}; orientations: {', '.join(orients)}")
            if len(orients) > 1:
                lines.append(f"  NOTE: the cases are stored in {len(orients)} axis orders: with data.orientation: RAS "
                             "(the default) the network sees every case in one order, tasks and labels stay in each "
                             "case's own; data.orientation: null would show it each storage order as it is "
                             "(README, 'Mixed orientation')")
        stored = [c for c in self.cases if c.label_stored]
        if stored:
            lines.append(f"  NOTE: {len(stored)} label file(s) are not voxel for voxel on their image's grid and are "
                         f"read onto it losslessly, e.g. {stored[0].label}: {stored[0].label_stored}")
        if self.label_names:
            lines.append("  labels: " + ", ".join(f"{k}={v}" for k, v in self.label_names.items()))
            values = sorted(self.label_names)
            if values != list(range(len(values))):
                lines.append(f"  sparse label values: trained as classes 0..{len(values) - 1}, written back as "
                             f"{', '.join(map(str, values))}")
        elif n_lab:
            found = sorted({v for c in self.cases for v in (c.label_values or [])
                            if v != UNLABELED and float(v).is_integer()})
            lines.append("  labels: no names (no dataset.json 'labels'); label values found in the label files: "
                         + ", ".join(map(str, found)) + " (each a class; name them in dataset.json)")
        if self.plan:
            pl = self.plan
            grid = (" x ".join(f"{v:g}" for v in pl["spacing"]) + " mm voxels" if pl["spacing"] is not None
                    else "each case's own voxels")
            patch = " x ".join(map(str, pl["patch_size"])) + " voxels" + (
                " (" + " x ".join(f"{v:g}" for v in pl["patch_mm"]) + " mm)" if pl.get("patch_mm") else "")
            share = ""
            if pl.get("median_case"):
                frac = float(np.prod([min(p, m) / max(m, 1) for p, m in zip(pl["patch_size"], pl["median_case"])]))
                share = (f", {100 * frac:.0f}% of the median case (" + " x ".join(map(str, pl["median_case"]))
                         + " voxels)")
            lines.append(f"  network: {grid} (data.spacing: {pl['spacing_setting']}), "
                         f"{pl['orientation'] or 'storage-order'} axes, strides {pl['strides']} "
                         f"({'planned: model.strides auto' if pl['strides_auto'] else 'model.strides'}), "
                         f"patch {patch}{share}" + ("; the default config (--config names yours)"
                                                    if pl.get("config") == "defaults" else ""))
        for n in self.notes:
            lines.append(f"  NOTE: {n}")
        for p in self.problems:
            lines.append(f"  PROBLEM {p}")
        for c in self.cases:
            for p in c.problems:
                lines.append(f"  PROBLEM [{c.case_id}] {p}")
        for c in self.cases:
            for w in c.warnings:
                lines.append(f"  WARNING [{c.case_id}] {w}")
        lines.append(f"{'OK' if self.ok else 'FAILED'}: {len(self.cases)} cases checked, {self.n_problems} problem(s)")
        return "\n".join(lines)


def _check_case(ds: Dataset, case) -> CaseReport:
    rel_img = ds.relative(case.image)
    rel_lab = ds.relative(case.label) if case.label is not None else None
    rep = CaseReport(case.case_id, rel_img, rel_lab, case.split)

    def attempt(fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except DatasetError as exc:
            rep.problems.append(str(exc).replace(str(exc.path), ds.relative(exc.path), 1) if exc.path else str(exc))
            return None

    image = attempt(load_volume, case.image)
    if image is not None:
        rep.shape = image.shape
        rep.spacing = tuple(round(s, 6) for s in image.spacing)
        rep.orientation = image.orientation
        rep.dtype = str(image.array.dtype)
        attempt(require_finite, image, rel_img)
        finite = image.array[np.isfinite(image.array)] if image.array.dtype.kind == "f" else image.array
        if finite.size:
            rep.intensity_range = (float(finite.min()), float(finite.max()))
    files = channel_files(case.image)
    rep.channels = len(files)
    for f in files[1:]:  # every further channel: readable, finite, on the image's grid
        vol = attempt(load_volume, f)
        if vol is not None:
            attempt(require_finite, vol, ds.relative(f))
            if image is not None:
                attempt(same_channel_grid, image, vol, ds.relative(f))
    if case.label is None:
        return rep
    label = attempt(read_label_file, case.label, ds.label_names, rel_lab)
    if label is None:
        return rep
    values = attempt(require_label_values, label, ds.label_names, rel_lab)
    if values is not None:
        rep.label_values = [int(v) for v in values]
        if UNLABELED in rep.label_values and set(rep.label_values) <= {0, UNLABELED}:
            rep.warnings.append(f"{rel_lab}: holds only 0 and {UNLABELED}; medal reads {UNLABELED} as 'not annotated', "
                                "so if this is a 0/255 binary mask its foreground is ignored (write it as 1)")
    else:
        rep.label_values = [v.item() for v in np.unique(label.array)][:32]
    if image is not None:
        placed = attempt(label_on_grid, label, image.shape, image.affine, rel_lab)
        if placed is not None:
            rep.label_stored = placed[1]
    return rep


def check_dataset(root, *, labels_dir=None, progress=None, config=None) -> DatasetReport:
    """Check every case under ``root``; never raises for problems in the data, reports them.

    ``progress`` is an optional callable wrapping the case iterable (e.g. ``tqdm``). ``config`` (a
    :class:`~medal.config.MedalConfig`; default the defaults): the settings the notes about the network's plan
    (strides for anisotropic voxels, a patch larger than the cases) are for.
    """
    from medal.config import MedalConfig

    from .resample import patch_padding_note

    cfg = config if config is not None else MedalConfig()
    root = Path(root)
    try:
        ds = load_dataset(root, labels_dir=labels_dir)
    except DatasetError as exc:
        return DatasetReport(str(root), None, None, {}, [], [str(exc)])
    report = DatasetReport(str(root), ds.layout, ds.name, dict(ds.label_names), [],
                           channel_names=dict(ds.channel_names))
    for p in ds.orphan_labels:
        report.problems.append(f"{ds.relative(p)}: label file has no matching image")
    report.plan = _network_plan(ds, cfg)
    if report.plan:
        report.plan["config"] = "given" if config is not None else "defaults"
    _anisotropy_note(ds, report, cfg)
    padding = patch_padding_note(cfg, ds)
    if padding:
        report.notes.append(padding.removeprefix("NOTE: "))
    cases = progress(ds.cases) if progress is not None else ds.cases
    for case in cases:
        report.cases.append(_check_case(ds, case))
    counts: dict[int, list[str]] = {}
    for c in report.cases:
        counts.setdefault(c.channels, []).append(c.case_id)
    if len(counts) > 1:
        report.problems.append("cases have different numbers of channel files (_0000, _0001, ...): " + ", ".join(
            f"{n} channel(s) in {len(ids)} case(s) (e.g. {ids[0]})" for n, ids in sorted(counts.items()))
            + "; the network needs the same input channels in every case")
    _hounsfield(report)
    return report


#: below this an image holds air in Hounsfield units (about -1000); raw CT values (HU + 1024) never go below 0
AIR_HU = -500.0


def _hounsfield(report: DatasetReport) -> None:
    """A dataset that names its scans CT gets one intensity window for all of them (``data.normalize: auto``): say
    when its values do not look like Hounsfield units (no air below -500 anywhere), or when some cases do and others
    hold raw scanner values (nothing below 0: a converter that skipped the rescale intercept)."""
    from .normalize import scheme_for_channel

    if scheme_for_channel(report.channel_names.get(0)) != "ct":
        return
    lows = [(c, c.intensity_range[0]) for c in report.cases if c.intensity_range is not None]
    if not lows:
        return
    air = [c for c, lo in lows if lo < AIR_HU]
    raw = [(c, lo) for c, lo in lows if lo >= 0]
    if not air:
        report.notes.append(f"channel 0 is named CT, but no case holds air (an intensity below {AIR_HU:g}; air is "
                            "about -1000 HU): if these are not Hounsfield units, the one CT window is taken from the "
                            "values as they are; name the channel otherwise in dataset.json for a per-volume z-score")
        return
    for c, lo in raw:
        c.warnings.append(f"{c.image}: no intensity below 0 (min {lo:g}) while {len(air)} other case(s) reach air "
                          f"below {AIR_HU:g} HU: raw scanner values (HU + 1024)? one CT window cannot fit both; "
                          "convert it applying its rescale slope and intercept (dcm2niix does)")
