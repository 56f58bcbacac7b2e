"""A folder per case in, a dataset folder out: ``medal dataset from-folders ROOT DST``.

Many public and in-house datasets keep each case in its own folder, named by the case, holding files named by
their role: KiTS (``case_00000/imaging.nii.gz`` + ``segmentation.nii.gz``), BraTS
(``BraTS2021_00000/BraTS2021_00000_flair.nii.gz``, ``_t1``, ``_t1ce``, ``_t2``, ``_seg``), TotalSegmentator
(``s0001/ct.nii.gz`` + ``segmentations/<structure>.nii.gz``, one binary mask per structure). medal reads
nnU-Net v2's layout, so this command lays such a folder out as one, without copying the scans: ``DST/imagesTr/
<case>_0000.nii.gz`` (``_0001``, ... per channel) and ``DST/labelsTr/<case>.nii.gz`` are symbolic links to the
files (``--copy`` copies them), the case id being the folder's name. nnU-Net asks for a conversion script per
dataset (its ``dataset_conversion/`` folder); here the roles are patterns:

``--image PATTERN`` (once per channel, in channel order) and ``--label PATTERN``: globs matched inside each case
folder (``'*_flair.nii.gz'``, ``'segmentations/*.nii.gz'``). Without them each folder's volumes are sorted by
name: a file whose name says ``seg``, ``segmentation``, ``label``, ``mask`` or ``gt`` is the label, the other is the
image; a folder with several images is one line asking for ``--image`` patterns (with suggestions built from the
names found), since channel order cannot be guessed.

A folder holding several images each with its label beside it by name (ACDC: ``patient001_frame01.nii.gz`` +
``patient001_frame01_gt.nii.gz``, ``frame12`` alike) holds several cases, one per pair, named by the image; an
image with no label beside it there (ACDC's 4D cine) is left out, said once.

A label pattern matching several files in a case is a set of binary masks, one per structure, named by its file
(TotalSegmentator): they are merged into one label file (written, not linked), each mask getting the value of its
name in ``--labels`` (case ignored; masks of structures not listed are left out, said once) or, without
``--labels``, its position among every mask name found in the dataset (sorted). Masks that overlap, hold values
other than 0 and 1, or lie on another grid than the case's first mask are one line naming the file.

Case folders deeper down and labels in a parallel tree, as a BIDS dataset keeps them
(``sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz``, manual labels in ``derivatives/<pipeline>/sub-01/ses-1/anat/
..._dseg.nii.gz``; Gorgolewski et al., "The brain imaging data structure", Sci Data 2016): ``--case-depth 2``
takes the folders two levels down as cases (``sub-01_ses-1``), ``--label-root derivatives/manual`` matches
``--label`` under the label tree's copy of each case's path, where a case without a label is laid out unlabelled
(the pool to select from). A BIDS dataset's ``derivatives``, ``sourcedata`` and ``code`` folders are not subjects.

A case folder that fails (no image matching a pattern, two files matching one) is skipped with the reason; the
others are laid out (the command exits 1 when any was skipped). ``dataset.json`` gets the label names and, with
``--channel-names`` (``CT``, ``T2``, ...), the channel names that ``data.normalize: auto`` reads.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
from pathlib import Path

import numpy as np

from .atomic import full_suffix
from .errors import DatasetError
from .io import VOLUME_SUFFIXES

__all__ = ["BIDS_NOT_SUBJECTS", "case_folders", "case_id", "from_folders", "guess_images", "guess_labels",
           "guess_roles", "is_label_name"]

_LABEL_WORDS = re.compile(r"(^|[^a-z])(seg|segs|segmentation|segmentations|label|labels|labelmap|mask|masks|gt|"
                          r"groundtruth|ground_truth|annotation|annotations)($|[^a-z])")


def is_label_name(path) -> bool:
    """Whether a file or folder name says it holds labels (``segmentation.nii.gz``, ``BraTS_001_seg.nii.gz``,
    ``mask.nrrd``, ``patient1_gt.nii.gz``)."""
    name = Path(path).name.lower()
    stem = name[: len(name) - len(full_suffix(Path(name)))] if full_suffix(Path(name)) else name
    return bool(_LABEL_WORDS.search(stem))


def _volumes(folder: Path, depth: int = 2) -> list[Path]:
    """Volume files in ``folder`` and its subfolders down to ``depth`` levels, relative to it, sorted."""
    out = []
    for base, dirs, files in os.walk(folder):
        rel = Path(base).relative_to(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if len(rel.parts) + 1 < depth else []
        out += [rel / f for f in files if not f.startswith(".") and full_suffix(Path(f)).lower() in VOLUME_SUFFIXES]
    return sorted(out)


#: a BIDS dataset's top-level folders that hold no subject (BIDS 1.9, "File name structure")
BIDS_NOT_SUBJECTS = ("derivatives", "sourcedata", "code", "stimuli", "phenotype")


def case_folders(root, depth: int = 1, exclude=()) -> list[Path]:
    """The folders ``depth`` levels under ``root`` (1: its subfolders; 2: ``sub-01/ses-1``) holding at least one
    volume file (in them or up to three levels down: ``sub-01/ses-1/anat/``), sorted. Top-level folders named in
    ``exclude`` are passed over, and in a BIDS dataset (``dataset_description.json`` at the top) also
    :data:`BIDS_NOT_SUBJECTS`."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder", path=root)
    if depth < 1:
        raise DatasetError(f"--case-depth: {depth}; 1 (each subfolder a case) or more", path=root)
    skip = set(exclude) | (set(BIDS_NOT_SUBJECTS) if (root / "dataset_description.json").is_file() else set())
    level = [d for d in sorted(root.iterdir()) if d.is_dir() and not d.name.startswith(".") and d.name not in skip]
    for _ in range(depth - 1):
        level = [d for f in level for d in sorted(f.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    return [d for d in level if _volumes(d, depth=4)]


def case_id(root: Path, folder: Path) -> str:
    """A case folder's id: its path under ``root``, ``_``-joined (``sub-01/ses-1`` -> ``sub-01_ses-1``)."""
    return "_".join(folder.relative_to(root).parts)


def _suggest(names: list[str], case: str) -> list[str]:
    """Patterns for image files ``names`` of case folder ``case``: the part after the case name (``*_flair.nii.gz``)
    or the name itself."""
    out = []
    for n in names:
        tail = n[len(case):] if n.startswith(case) and len(n) > len(case) else None
        out.append(f"'*{tail}'" if tail else f"'{n}'")
    return out


def guess_roles(folder: Path) -> tuple[list[Path], list[Path]]:
    """``([image], labels)`` of a case folder from the names of its volumes (see the module docstring), or a
    :class:`DatasetError` saying how to name them."""
    images = guess_images(folder)
    return images, guess_labels(folder, images)


def guess_images(folder: Path, exclude=()) -> list[Path]:
    """``[the image]`` of a case folder: its one top-level volume whose name is not label-like (``exclude``: files
    a label pattern took); several are an error suggesting ``--image`` patterns."""
    top = [p for p in _volumes(folder, depth=1) if p not in set(exclude)]
    images = [p for p in top if not is_label_name(p)]
    if not images:
        raise DatasetError(f"{folder}: no image file (only label-like names: "
                           + (", ".join(p.name for p in top) or "none") + "); name it with --image PATTERN",
                           path=folder)
    if len(images) > 1:
        names = [p.name for p in images]
        raise DatasetError(f"{folder}: {len(images)} images ({', '.join(names)}): name each channel, in order, with "
                           "--image PATTERN, e.g. " + " ".join(f"--image {s}" for s in _suggest(names, folder.name)),
                           path=folder)
    return images


def guess_labels(folder: Path, images: list[Path]) -> list[Path]:
    """The label of a case folder: its one label-like top-level volume, else the masks of its one label-like
    subfolder (TotalSegmentator's ``segmentations/``), else none; two label-like files are an error naming them."""
    top = [p for p in _volumes(folder, depth=1) if p not in images and is_label_name(p)]
    if len(top) > 1:
        raise DatasetError(f"{folder}: {len(top)} label-like files ({', '.join(p.name for p in top)}): name the "
                           "label with --label PATTERN", path=folder)
    if top:
        return top
    masks = [d for d in sorted(folder.iterdir()) if d.is_dir() and is_label_name(d) and _volumes(d, depth=1)]
    return [Path(masks[0].name) / p for p in _volumes(masks[0], depth=1)] if len(masks) == 1 else []


def _pairs(folder: Path) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """Images paired with a label beside them by name in one folder (``patient001_frame01.nii.gz`` +
    ``patient001_frame01_gt.nii.gz``), and the images left without one."""
    from .dataset import _BESIDE

    top = _volumes(folder, depth=1)
    images = {_mask_name(p): p for p in top if not is_label_name(p)}
    pairs = []
    for p in top:
        m = _BESIDE.match(_mask_name(p))
        if m is not None and m.group(1) in images:
            pairs.append((images.pop(m.group(1)), p))
    return sorted(pairs), sorted(images.values())


def _match(folder: Path, pattern: str) -> list[Path]:
    pat = pattern.replace("\\", "/")
    depth = pat.count("/") + 1
    return [p for p in _volumes(folder, depth=depth) if fnmatch.fnmatch(p.as_posix(), pat)]


def _place(src: Path, dst: Path, copy: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        shutil.copyfile(src, dst)
    else:
        os.symlink(src.resolve(), dst)


def _mask_name(path: Path) -> str:
    name = path.name
    return name[: len(name) - len(full_suffix(path))]


def _merge_masks(case: str, folder: Path, masks: list[Path], values: dict[str, int], out: Path):
    """The binary ``masks`` of one case as one label volume written to ``out``; the names kept."""
    from .io import load_volume, save_volume
    from .validate import require_same_grid

    first = None
    label = None
    for rel in masks:
        name = _mask_name(rel)
        value = values.get(name.lower())
        if value is None:
            continue
        vol = load_volume(folder / rel)
        if first is None:
            first = vol
            label = np.zeros(vol.shape, np.uint8)
        else:
            require_same_grid(first, vol, str(folder / rel))
        found = np.unique(vol.array)
        if not set(found.tolist()) <= {0, 1}:
            raise DatasetError(f"{folder / rel}: a mask holds 0 and 1 only, this one {found[:6].tolist()}",
                               path=folder / rel)
        m = vol.array == 1
        clash = m & (label != 0)
        if clash.any():
            raise DatasetError(f"{folder / rel}: overlaps an earlier mask of {case} in {int(clash.sum())} voxel(s); a "
                               "label file holds one label per voxel", path=folder / rel)
        label[m] = value
    if first is None:
        raise DatasetError(f"{folder}: none of its masks ({', '.join(_mask_name(m) for m in masks)}) is a label in "
                           "--labels", path=folder)
    save_volume(first.with_array(label), out)


def from_folders(root, dst, *, images: list[str] | None = None, label: str | None = None, labels=None,
                 channel_names=None, copy: bool = False, case_depth: int = 1, label_root=None, log=print) -> dict:
    """Lay the case folders of ``root`` out in ``dst`` (see the module docstring). Returns ``{"written": [case
    ids], "skipped": {case: message}, "left_out": [mask names not in labels]}``.

    ``case_depth``: how many levels under ``root`` the case folders are (2 for a BIDS dataset with sessions,
    ``sub-01/ses-1``: case ``sub-01_ses-1``). ``label_root``: a folder (relative to ``root``, or absolute) holding
    the labels in a tree parallel to the cases' (BIDS ``derivatives/<pipeline>``, or ``labels/`` beside
    ``images/``): ``label`` is matched in ``label_root/<the case folder's path under root>``, and a case with
    no label there is laid out unlabelled (the active-learning pool), said once."""
    from .atomic import atomic_write_json

    root, dst = Path(root), Path(dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise DatasetError(f"{dst}: exists and is not empty; give from-folders a new folder", path=dst)
    if dst.resolve() == root.resolve() or root.resolve() in dst.resolve().parents:
        raise DatasetError(f"{dst}: inside {root}; give from-folders a folder elsewhere", path=dst)
    lab_root = None
    if label_root is not None:
        if not label:
            raise DatasetError("--label-root: give --label too (the label files' pattern under it)", path=root)
        lab_root = Path(label_root) if Path(label_root).is_absolute() else root / label_root
        if not lab_root.is_dir():
            raise DatasetError(f"{lab_root}: --label-root is not a folder", path=lab_root)
    inside = lab_root.resolve().relative_to(root.resolve()).parts[:1] if lab_root is not None and \
        root.resolve() in lab_root.resolve().parents else ()
    folders = case_folders(root, case_depth, exclude=inside)
    if not folders:
        raise DatasetError(f"{root}: no subfolder holds a volume file ({', '.join(VOLUME_SUFFIXES)})", path=root)
    if channel_names and images and len(channel_names) != len(images):
        raise DatasetError(f"--channel-names: {len(channel_names)} name(s) for {len(images)} --image pattern(s)",
                           path=root)
    roles: dict[str, tuple[Path, list[Path], list[Path]]] = {}  # case id -> (folder, images, labels)
    skipped: dict[str, str] = {}
    unlabelled: list[str] = []
    for folder in folders:
        cid = case_id(root, folder)
        if not images and not label:
            pairs, alone = _pairs(folder)
            if len(pairs) > 1:  # several cases in one folder (ACDC: each frame with its _gt): each pair a case
                for image, lab in pairs:
                    roles[_mask_name(image)] = (folder, [image], [lab])
                if alone:
                    log(f"NOTE: {folder.name}: {', '.join(p.name for p in alone)} left out (no label beside it)")
                continue
        try:
            if lab_root is not None:  # the parallel tree: absolute paths (folder / absolute = absolute)
                there = lab_root / folder.relative_to(root)
                labs = [there / p for p in _match(there, label)] if there.is_dir() else []
                if not labs:
                    unlabelled.append(cid)
            else:
                labs = _match(folder, label) if label else None
            if label and not labs and lab_root is None:
                raise DatasetError(f"{folder}: no file matches --label {label!r}", path=folder)
            if images:
                found = []
                for pat in images:
                    hits = _match(folder, pat)
                    if len(hits) != 1:
                        raise DatasetError(f"{folder}: {len(hits)} files match --image {pat!r}"
                                           + (f" ({', '.join(h.as_posix() for h in hits)})" if hits else ""),
                                           path=folder)
                    found += hits
            else:
                found = guess_images(folder, exclude=labs or ())
            if labs is None:
                labs = guess_labels(folder, found)
            if set(found) & set(labs):
                raise DatasetError(f"{folder}: {', '.join(p.as_posix() for p in set(found) & set(labs))} matches "
                                   "both an image and the label pattern", path=folder)
            roles[cid] = (folder, found, labs)
        except DatasetError as exc:
            skipped[cid] = str(exc)
            log(f"SKIPPED {exc}")
    if unlabelled and roles:
        log(f"NOTE: no file matches --label {label!r} under {lab_root} for {len(unlabelled)} case(s), laid out "
            f"unlabelled: {', '.join(unlabelled[:10])}" + (f" and {len(unlabelled) - 10} more" if len(unlabelled) > 10
                                                           else ""))
    n_channels = {len(r[1]) for r in roles.values()}
    if len(n_channels) > 1:
        raise DatasetError(f"{root}: case folders with different numbers of images ({sorted(n_channels)}); name the "
                           "channels with --image PATTERN", path=root)
    mask_sets = {k: r[2] for k, r in roles.items() if len(r[2]) > 1}
    names = {0: "background"}
    left_out: list[str] = []
    if labels:
        names = {v: str(n) for v, n in enumerate(labels)}
    values = {n.lower(): v for v, n in names.items() if v}
    if mask_sets:
        every = sorted({_mask_name(m) for ms in mask_sets.values() for m in ms}, key=str.lower)
        if not labels:
            names = {0: "background", **{i + 1: n for i, n in enumerate(every)}}
            values = {n.lower(): v for v, n in names.items() if v}
        left_out = [n for n in every if n.lower() not in values]
        if left_out:
            log(f"NOTE: masks not in --labels left out: {', '.join(left_out[:20])}"
                + (f" and {len(left_out) - 20} more" if len(left_out) > 20 else ""))
    written = []
    for case, (folder, found, labs) in roles.items():
        try:
            if len(labs) > 1:
                _merge_masks(case, folder, labs, values, dst / "labelsTr" / f"{case}.nii.gz")
            elif labs:
                _place(folder / labs[0], dst / "labelsTr" / f"{case}{full_suffix(labs[0])}", copy)
        except DatasetError as exc:
            skipped[case] = str(exc)
            log(f"SKIPPED {exc}")
            continue
        for k, rel in enumerate(found):
            _place(folder / rel, dst / "imagesTr" / f"{case}_{k:04d}{full_suffix(rel)}", copy)
        written.append(case)
        shown = [p.relative_to(root) if p.is_absolute() and root in p.parents else p for p in labs]
        log(f"{case}: " + ", ".join(p.as_posix() for p in found)
            + (f" + {len(labs)} masks" if len(labs) > 1 else f" + {shown[0].as_posix()}" if labs else " (no label)"))
    if written:
        meta = {"name": root.resolve().name,
                "description": f"laid out from the case folders of {root.resolve()} by medal dataset from-folders",
                "file_ending": full_suffix(roles[written[0]][1][0]), "numTraining": len(written)}
        if len(names) > 1:
            meta["labels"] = {str(v): n for v, n in sorted(names.items())}
        if channel_names:
            meta["channel_names"] = {str(k): str(n) for k, n in enumerate(channel_names)}
        for p in sorted(root.iterdir()):  # LICENSE, README: the data's terms travel with it
            if p.is_file() and p.name.upper().startswith(("LICENSE", "LICENCE", "README")):
                shutil.copyfile(p, dst / p.name)
        atomic_write_json(dst / "dataset.json", meta)
    return {"written": written, "skipped": skipped, "left_out": left_out}
