"""Finding the cases of a dataset on disk (no volume is opened here).

Two layouts are understood:

* **Medical Segmentation Decathlon / nnU-Net**: ``dataset.json`` (label names, optionally a
  ``training`` list of ``{"image", "label"}`` and a ``test`` list), ``imagesTr/``, ``labelsTr/``,
  ``imagesTs/``. nnU-Net v2's channel suffix (``case_0000.nii.gz``) is stripped from case ids; a case with
  several channel files (``_0000``, ``_0001``, ...) is one case whose image is its ``_0000`` file, the network
  reading every channel (:mod:`medal.data.channels`).
* **Plain folder**: image files directly in the folder, labels optionally in a sibling folder
  (``labels/`` by default, or any folder you name) with the same case ids.

Paths listed in ``dataset.json`` must stay inside the dataset folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import full_suffix
from .errors import DatasetError
from .io import VOLUME_SUFFIXES
from .labels import UNLABELED, LabelMap, parse_label_names

__all__ = ["Case", "Dataset", "load_dataset", "case_id_from_path", "resolve_inside", "scan_label_values"]

_CHANNEL = re.compile(r"_\d{4}$")


@dataclass(frozen=True)
class Case:
    """One case: its id, image path and (optional) label path. Paths may not exist yet."""

    case_id: str
    image: Path
    label: Path | None = None
    split: str = "train"  # "train" (imagesTr) or "test" (imagesTs)


@dataclass(frozen=True)
class Dataset:
    """The cases of one dataset folder and its label names."""

    root: Path
    layout: str  # "msd" or "plain"
    cases: tuple[Case, ...]
    label_names: dict[int, str] = field(default_factory=dict)
    name: str = ""
    orphan_labels: tuple[Path, ...] = ()  # label files with no image
    # dataset.json's channel_names (nnU-Net v2) or modality (the Decathlon): {0: "CT"}, {0: "T2", 1: "ADC"}
    channel_names: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self):
        return iter(self.cases)

    def case(self, case_id: str) -> Case:
        for c in self.cases:
            if c.case_id == case_id:
                return c
        raise KeyError(f"{self.root}: no case {case_id!r}")

    @property
    def labelled(self) -> tuple[Case, ...]:
        return tuple(c for c in self.cases if c.label is not None)

    @functools.cached_property
    def label_map(self) -> LabelMap:
        """Label values and names: declared in ``dataset.json`` (sparse values allowed), or the values
        found in the label files (scanned once, cached; see :func:`scan_label_values`)."""
        if self.label_names:
            names = dict(self.label_names)
            names.setdefault(0, "background")
            return LabelMap(tuple(sorted(names)), names, "dataset.json")
        found = scan_label_values(self)
        if not found:
            return LabelMap.default()
        values = sorted(set(found) | {0})
        if len(values) == 1:
            values.append(1)
        names = {0: "background", **{v: f"label {v}" for v in values if v}}
        n_files = len(self.labelled)
        return LabelMap(tuple(values), names, f"found in {n_files} label file(s) (no labels in dataset.json)")

    @property
    def n_classes(self) -> int:
        return self.label_map.n_classes

    def subset(self, case_ids) -> "Dataset":
        """The same dataset (root, label map) with only the cases ``case_ids``."""
        import dataclasses

        keep = set(case_ids)
        sub = dataclasses.replace(self, cases=tuple(c for c in self.cases if c.case_id in keep))
        sub.__dict__["label_map"] = self.label_map  # a subset's labels do not redefine the classes
        return sub

    def relative(self, path: Path) -> str:
        """``path`` relative to the dataset root when inside it, for messages."""
        return relative_to_root(path, self.root)


def relative_to_root(path, root) -> str:
    """``path`` relative to ``root`` when inside it (``path`` as given otherwise, or without a root), for messages."""
    if root:
        try:
            return str(Path(path).resolve().relative_to(Path(root).resolve()))
        except ValueError:
            pass
    return str(path)


def case_id_from_path(path: Path) -> str:
    """``imagesTr/hippocampus_004_0000.nii.gz`` -> ``hippocampus_004``; ``labelsTr/case_001.seg.nrrd`` (3D Slicer)
    -> ``case_001``."""
    name = Path(path).name
    stem = name[: len(name) - len(full_suffix(path))]
    if name.lower().endswith(".seg.nrrd"):  # 3D Slicer's segmentation file: case_001.seg.nrrd labels case_001
        stem = stem[: -len(".seg")]
    return _CHANNEL.sub("", stem)


#: set to 1 to let dataset.json list links (inside the dataset folder) to files outside it
ALLOW_EXTERNAL_LINKS = "MEDAL_ALLOW_EXTERNAL_LINKS"


def resolve_inside(root: Path, relative: str, *, source: str) -> Path:
    """``root / relative`` as written, refusing paths that escape ``root``.

    The path is judged as written: absolute paths and ``..`` that leave the folder are refused. A
    symbolic link inside the folder (the usual way to lay out nnU-Net raw data without copying) is
    followed when its target lies inside the folder too; a link whose target lies outside is refused
    unless ``MEDAL_ALLOW_EXTERNAL_LINKS=1``. A link loop is a clear error, not a crash.
    """
    if not isinstance(relative, str) or not relative:
        raise DatasetError(f"{source}: expected a relative path string, got {relative!r}", path=root)
    written = os.path.normpath(relative)
    if os.path.isabs(relative) or written == ".." or written.startswith(".." + os.sep):
        raise DatasetError(f"{source}: path {relative!r} escapes the dataset folder {root}", path=root)
    candidate = Path(root).absolute() / written
    try:
        real = candidate.resolve()
        inside = real.is_relative_to(root.resolve())
    except (RuntimeError, OSError) as exc:  # RuntimeError: Python 3.11's "Symlink loop"
        raise DatasetError(f"{source}: path {relative!r} cannot be resolved ({' '.join(str(exc).split())})",
                           path=candidate) from None
    if not inside and os.environ.get(ALLOW_EXTERNAL_LINKS) != "1":
        raise DatasetError(f"{source}: {relative!r} is a link to {real}, outside the dataset folder {root}; "
                           f"set {ALLOW_EXTERNAL_LINKS}=1 to allow links that point outside", path=candidate)
    return candidate


def _volume_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
        and full_suffix(p).lower() in VOLUME_SUFFIXES
    )


def _first_channels(images: list[Path], root: Path) -> list[Path]:
    """``images`` with each multi-channel case (``X_0000``, ``X_0001``, ... files) down to its ``_0000`` file;
    channel numbers with a gap are an error naming the case. Files of one id without a channel suffix stay
    (the duplicate check reports them)."""
    by_case: dict[str, list[tuple[int | None, Path]]] = {}
    for p in images:
        stem = p.name[: len(p.name) - len(full_suffix(p))]
        m = _CHANNEL.search(stem)
        by_case.setdefault(case_id_from_path(p), []).append((int(stem[m.start() + 1:]) if m else None, p))
    out = []
    for cid, files in by_case.items():
        numbers = [k for k, _ in files]
        if len(files) == 1 or None in numbers:
            out += [p for _, p in files]
            continue
        if sorted(numbers) != list(range(len(numbers))):
            names = ", ".join(p.name for _, p in sorted(files))
            raise DatasetError(f"{root}: case {cid!r} has channel files {names}: a case's channels are numbered "
                               "_0000, _0001, ... without a gap", path=root)
        out.append(next(p for k, p in files if k == 0))
    return sorted(out)


def _read_dataset_json(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})", path=path) from exc
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: expected a JSON object, got {type(meta).__name__}", path=path)
    return meta


_BESIDE = re.compile(r"^(.+?)[_.-](seg|segmentation|label|labels|labelmap|mask|gt|groundtruth)$", re.IGNORECASE)


def _labels_beside(files: list[Path]) -> tuple[dict[str, Path], list[Path], tuple[Path, ...]]:
    """Label files kept beside their images in a plain folder (``case1.nii.gz`` + ``case1_seg.nii.gz``, ``_label``,
    ``_mask``, ``_gt``, ...): ``({case id: label}, the other files, label-named files with no image)``. Without
    this a mask would be read as one more image."""
    ids = {case_id_from_path(p) for p in files}
    beside, rest, lone = {}, [], []
    for p in files:
        m = _BESIDE.match(case_id_from_path(p))
        if m is None:
            rest.append(p)
        elif m.group(1) in ids and not _BESIDE.match(m.group(1)):
            beside[m.group(1)] = p
        else:
            lone.append(p)
    return beside, rest, tuple(lone)


def _match_labels(images: list[Path], label_dir: Path | None) -> tuple[dict[str, Path], tuple[Path, ...]]:
    labels = {case_id_from_path(p): p for p in _volume_files(label_dir)} if label_dir else {}
    image_ids = {case_id_from_path(p) for p in images}
    orphans = tuple(p for cid, p in sorted(labels.items()) if cid not in image_ids)
    return labels, orphans


def load_dataset(root, *, labels_dir=None) -> Dataset:
    """Discover the cases under ``root``.

    Parameters
    ----------
    root : path
        A dataset folder (MSD / nnU-Net layout) or a plain folder of images.
    labels_dir : path, optional
        Labels for a plain folder (default: ``root/labels`` if it exists). For the MSD layout this
        replaces ``labelsTr/`` (e.g. a folder of partial labels).

    Raises
    ------
    DatasetError
        ``root`` is missing, ``dataset.json`` is malformed or points outside ``root``, or no case
        was found.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found", path=root)
    meta_path = root / "dataset.json"
    meta = _read_dataset_json(meta_path) if meta_path.is_file() else {}
    label_names: dict[int, str] = {}
    if "labels" in meta:
        try:
            label_names = parse_label_names(meta["labels"], source=str(meta_path))
        except ValueError as exc:
            raise DatasetError(str(exc), path=meta_path) from exc
    override = Path(labels_dir) if labels_dir is not None else None
    if override is not None and not override.is_dir():  # else every case would read as unlabelled
        raise DatasetError(f"{override}: no such labels folder", path=override)

    cases: list[Case] = []
    orphans: tuple[Path, ...] = ()
    if meta.get("training"):
        layout = "msd"
        entries = meta["training"]
        if not isinstance(entries, list):
            raise DatasetError(f"{meta_path}: 'training' must be a list", path=meta_path)
        for n, entry in enumerate(entries):
            where = f"{meta_path}: training[{n}]"
            if not isinstance(entry, dict) or "image" not in entry:
                raise DatasetError(f"{where}: expected {{'image': ..., 'label': ...}}, got {entry!r}", path=meta_path)
            image = resolve_inside(root, entry["image"], source=where)
            cid = case_id_from_path(image)
            if override is not None:
                found = [p for p in _volume_files(override) if case_id_from_path(p) == cid]
                label = found[0] if found else None
            else:
                label = resolve_inside(root, entry["label"], source=where) if entry.get("label") else None
            cases.append(Case(cid, image, label, "train"))
        for n, entry in enumerate(meta.get("test") or []):
            rel = entry.get("image") if isinstance(entry, dict) else entry
            image = resolve_inside(root, rel, source=f"{meta_path}: test[{n}]")
            cases.append(Case(case_id_from_path(image), image, None, "test"))
    elif (root / "imagesTr").is_dir() or (root / "imagesTs").is_dir():
        layout = "msd"
        images = _first_channels(_volume_files(root / "imagesTr"), root)
        labels, orphans = _match_labels(images, override or root / "labelsTr")
        cases += [Case(case_id_from_path(p), p, labels.get(case_id_from_path(p)), "train") for p in images]
        cases += [Case(case_id_from_path(p), p, None, "test")
                  for p in _first_channels(_volume_files(root / "imagesTs"), root)]
    else:
        layout = "plain"
        beside, files, lone = _labels_beside(_volume_files(root))
        images = _first_channels(files, root)
        label_dir = override or (root / "labels" if (root / "labels").is_dir() else None)
        labels, orphans = _match_labels(images, label_dir)
        if override is None:
            for cid, p in beside.items():
                if cid in labels:
                    raise DatasetError(f"{root}: case {cid!r} has two label files, {labels[cid]} and {p.name}; keep "
                                       "one", path=p)
                labels[cid] = p
        orphans = tuple(sorted(orphans + lone))
        cases += [Case(case_id_from_path(p), p, labels.get(case_id_from_path(p)), "train") for p in images]

    seen: dict[str, Path] = {}
    for c in cases:
        if c.case_id in seen:
            a, b = seen[c.case_id].name, c.image.name
            raise DatasetError(f"{root}: case id {c.case_id!r} appears twice ({a} and {b})", path=root)
        seen[c.case_id] = c.image
    if not cases:
        raise DatasetError(
            f"{root}: empty dataset: no images found (expected dataset.json with 'training', "
            f"imagesTr/ or image files with extensions {', '.join(VOLUME_SUFFIXES)})" + (_dicom_hint(root)
                                                                                  or _folders_hint(root)),
            path=root,
        )
    return Dataset(root=root, layout=layout, cases=tuple(cases), label_names=label_names,
                   name=str(meta.get("name", root.name)), orphan_labels=orphans,
                   channel_names=_channel_names(meta))


def _channel_names(meta: dict) -> dict[int, str]:
    """``channel_names`` (nnU-Net v2) or ``modality`` (the Decathlon) of a dataset.json: ``{channel: name}``; keys
    that are not channel numbers are left out (the names only choose a normalisation, ``data.normalize: auto``)."""
    raw = meta.get("channel_names", meta.get("modality"))
    out: dict[int, str] = {}
    if isinstance(raw, dict):
        for k, v in raw.items():
            try:
                out[int(k)] = str(v)
            except (TypeError, ValueError):
                continue
    return out


def _dicom_hint(root: Path) -> str:
    """A hint when ``root`` (or a folder one level down) holds DICOM files, which medal does not read."""
    folders = [root] + sorted(p for p in root.iterdir() if p.is_dir())[:50]
    for folder in folders:
        try:
            names = [p.name for p in folder.iterdir()][:2000]
        except OSError:
            continue
        if "DICOMDIR" in names or any(n.lower().endswith((".dcm", ".ima")) for n in names):
            return ("; DICOM files found (e.g. in " + (str(folder) if folder != root else "the folder itself")
                    + f"): convert the series into a dataset folder first: `medal dataset from-dicom {root} NEW_FOLDER`")
    return ""


def _folders_hint(root: Path) -> str:
    """A hint when the subfolders of ``root`` hold volumes: a folder per case (KiTS, BraTS, TotalSegmentator)."""
    from .folders import case_folders

    try:
        folders = case_folders(root)
    except (OSError, DatasetError):
        return ""
    if not folders:
        return ""
    example = next((p for p in sorted(folders[0].rglob("*")) if p.is_file()), folders[0])
    if (root / "dataset_description.json").is_file():
        return _bids_hint(root, folders[0])
    return (f"; its subfolders hold volumes (e.g. {example.relative_to(root)}): a folder per case? lay them out as a "
            f"dataset first: `medal dataset from-folders {root} NEW_FOLDER`")


def _bids_hint(root: Path, subject: Path) -> str:
    """The from-folders command for a BIDS dataset: a case per session where subjects hold ``ses-*`` folders, the
    first volume's suffix as the image pattern, the first derivatives pipeline as the label tree."""
    from .io import VOLUME_SUFFIXES

    sessions = sorted(p for p in subject.iterdir() if p.is_dir() and p.name.startswith("ses-"))
    case = sessions[0] if sessions else subject
    volumes = sorted(p for p in case.rglob("*") if p.is_file() and p.name.lower().endswith(VOLUME_SUFFIXES))
    cmd = f"medal dataset from-folders {root} NEW_FOLDER" + (" --case-depth 2" if sessions else "")
    if volumes:
        rel = volumes[0].relative_to(case)
        cmd += f" --image '{(rel.parent / ('*_' + rel.name.split('_')[-1])).as_posix()}'"
    derivatives = root / "derivatives"
    pipelines = sorted(d.name for d in derivatives.iterdir() if d.is_dir()) if derivatives.is_dir() else []
    if pipelines:
        cmd += f" --label-root derivatives/{pipelines[0]} --label 'LABEL_PATTERN'"
    return f"; a BIDS dataset (dataset_description.json): lay it out as a dataset first: `{cmd}`"


def _cache_dir() -> Path:
    return Path(os.environ.get("MEDAL_CACHE_DIR") or Path.home() / ".cache" / "medal")


def scan_label_values(dataset: Dataset) -> list[int]:
    """Every label value in the dataset's label files (255, "not annotated", left out).

    Each file is read once: its values are cached under ``$MEDAL_CACHE_DIR`` (``~/.cache/medal``)
    keyed by its resolved path, size and modification time, so a changed file is read again and an
    unreadable one is skipped here (``medal dataset check`` reports it).
    """
    import numpy as np

    key = hashlib.sha256(str(dataset.root.resolve()).encode()).hexdigest()[:16]
    cache_path = _cache_dir() / "label_values" / f"{key}.json"
    try:
        cache = json.loads(cache_path.read_text())
    except (OSError, ValueError):
        cache = {}
    values: set[int] = set()
    changed = False
    for case in dataset.labelled:
        try:
            st = os.stat(case.label)
        except OSError:
            continue
        ident = str(Path(case.label).resolve())
        stamp = [st.st_size, st.st_mtime_ns]
        hit = cache.get(ident)
        if hit and hit.get("stamp") == stamp:
            found = hit["values"]
        else:
            try:
                from .loading import read_label_file

                arr = read_label_file(case.label).array
            except DatasetError:
                continue
            if not np.issubdtype(arr.dtype, np.integer) and not np.all(np.isfinite(arr) & (arr == np.round(arr))):
                continue
            found = [int(v) for v in np.unique(arr).tolist()]
            cache[ident] = {"stamp": stamp, "values": found}
            changed = True
        values.update(v for v in found if v != UNLABELED)
    if changed:
        try:
            from .atomic import atomic_write_json

            atomic_write_json(cache_path, cache)
        except OSError:
            pass  # a read-only home: scan again next time
    return sorted(values)
