"""Finding the cases of a dataset on disk (no volume is opened here).

Two layouts are understood:

* **Medical Segmentation Decathlon / nnU-Net**: ``dataset.json`` (label names, optionally a
  ``training`` list of ``{"image", "label"}`` and a ``test`` list), ``imagesTr/``, ``labelsTr/``,
  ``imagesTs/``. nnU-Net v2's channel suffix (``case_0000.nii.gz``) is stripped from case ids.
* **Plain folder**: image files directly in the folder, labels optionally in a sibling folder
  (``labels/`` by default, or any folder you name) with the same case ids.

Paths listed in ``dataset.json`` must stay inside the dataset folder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import full_suffix
from .errors import DatasetError
from .io import VOLUME_SUFFIXES
from .labels import parse_label_names

__all__ = ["Case", "Dataset", "load_dataset", "case_id_from_path", "resolve_inside"]

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

    def relative(self, path: Path) -> str:
        """``path`` relative to the dataset root when inside it, for messages."""
        try:
            return str(Path(path).resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)


def case_id_from_path(path: Path) -> str:
    """``imagesTr/hippocampus_004_0000.nii.gz`` -> ``hippocampus_004``."""
    name = Path(path).name
    stem = name[: len(name) - len(full_suffix(path))]
    return _CHANNEL.sub("", stem)


def resolve_inside(root: Path, relative: str, *, source: str) -> Path:
    """``root / relative``, refusing anything that escapes ``root`` (``..``, absolute paths, links)."""
    if not isinstance(relative, str) or not relative:
        raise DatasetError(f"{source}: expected a relative path string, got {relative!r}", path=root)
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root.resolve()):
        raise DatasetError(f"{source}: path {relative!r} escapes the dataset folder {root}", path=root)
    return candidate


def _volume_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
        and full_suffix(p).lower() in VOLUME_SUFFIXES
    )


def _read_dataset_json(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})", path=path) from exc
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: expected a JSON object, got {type(meta).__name__}", path=path)
    return meta


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
        images = _volume_files(root / "imagesTr")
        labels, orphans = _match_labels(images, override or root / "labelsTr")
        cases += [Case(case_id_from_path(p), p, labels.get(case_id_from_path(p)), "train") for p in images]
        cases += [Case(case_id_from_path(p), p, None, "test") for p in _volume_files(root / "imagesTs")]
    else:
        layout = "plain"
        images = _volume_files(root)
        label_dir = override or (root / "labels" if (root / "labels").is_dir() else None)
        labels, orphans = _match_labels(images, label_dir)
        cases += [Case(case_id_from_path(p), p, labels.get(case_id_from_path(p)), "train") for p in images]

    seen: dict[str, Path] = {}
    for c in cases:
        if c.case_id in seen:
            raise DatasetError(
                f"{root}: case id {c.case_id!r} appears twice ({seen[c.case_id].name} and {c.image.name})", path=root
            )
        seen[c.case_id] = c.image
    if not cases:
        raise DatasetError(
            f"{root}: empty dataset: no images found (expected dataset.json with 'training', "
            f"imagesTr/ or image files with extensions {', '.join(VOLUME_SUFFIXES)})",
            path=root,
        )
    return Dataset(root=root, layout=layout, cases=tuple(cases), label_names=label_names,
                   name=str(meta.get("name", root.name)), orphan_labels=orphans)
