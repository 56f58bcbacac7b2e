"""Multi-channel cases: several co-registered scans of one patient as the network's input channels.

nnU-Net v2 stores a case's channels (MRI sequences such as T2 and ADC, or CT with a second window) as one file
per channel: ``imagesTr/prostate_00_0000.nii.gz``, ``prostate_00_0001.nii.gz``, ... (Isensee et al., nnU-Net,
Nature Methods 2021; the dataset format of ``nnunetv2``, ``documentation/dataset_format.md``). medal reads the
same layout: the ``_0000`` file is the case's image, for everything an expert looks at (the napari layers, the
tasks, supervoxels, the cold start's slice descriptors), and the network sees every channel, each normalised on
its own (as nnU-Net normalises each channel with its own scheme), stacked as ``(C, Z, Y, X)``.

A case with one channel (no ``_0001`` beside its ``_0000`` file, or no channel suffix at all) is read exactly as
before: a ``(Z, Y, X)`` array. The channel files of a case must lie on the image's grid (same shape, same affine
within 1e-3 mm): co-registration is the user's, as in nnU-Net; a file off the grid is a one-line error naming it.
The Medical Segmentation Decathlon's 4D files (channels along a fourth axis) are split into this layout by
``medal dataset split-channels``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .atomic import full_suffix
from .errors import DatasetError
from .io import Volume, load_volume

__all__ = ["channel_files", "network_input", "n_channels", "same_channel_grid", "split_channels"]

_FIRST = re.compile(r"_0000$")
#: the most channel files looked for beside a ``_0000`` file
MAX_CHANNELS = 64


def channel_files(path) -> tuple[Path, ...]:
    """Every channel file of the case whose image is ``path``: ``path`` itself, then ``_0001``, ``_0002``, ...
    beside it while they exist (same folder, same file type). A path without the ``_0000`` suffix is one
    channel."""
    path = Path(path)
    suffix = full_suffix(path)
    stem = path.name[: len(path.name) - len(suffix)]
    if not _FIRST.search(stem):
        return (path,)
    base = stem[:-4]
    out = [path]
    for k in range(1, MAX_CHANNELS):
        nxt = path.with_name(f"{base}{k:04d}{suffix}")
        if not nxt.is_file():
            break
        out.append(nxt)
    return tuple(out)


def n_channels(path) -> int:
    """How many input channels the case whose image is ``path`` has (file names only)."""
    return len(channel_files(path))


def same_channel_grid(ref: Volume, other: Volume, name: str) -> None:
    """A :class:`DatasetError` naming ``name`` unless channel ``other`` lies on image ``ref``'s grid."""
    if other.shape != ref.shape:
        raise DatasetError(f"{name}: channel shape {tuple(other.shape)} differs from the case's _0000 image "
                           f"{tuple(ref.shape)}; a case's channels must be co-registered on one grid", path=other.path)
    if not np.allclose(other.affine, ref.affine, atol=1e-3):
        raise DatasetError(f"{name}: channel affine differs from the case's _0000 image (spacing or position); "
                           "a case's channels must be co-registered on one grid", path=other.path)


def network_input(image: Volume, data_cfg, *, path=None, name=None, cache=None, intensity=None) -> np.ndarray:
    """What the network sees of a case: its image normalised with ``data_cfg`` (``(Z, Y, X)`` float32), or, when
    the image is a ``_0000`` file with more channel files beside it, every channel normalised on its own and
    stacked ``(C, Z, Y, X)``.

    ``path``: the image's file (default ``image.path``); ``name``: how messages name a file (a callable, e.g.
    the dataset's :meth:`~medal.data.Dataset.relative`); ``cache``: a :class:`~medal.data.cache.VolumeCache`;
    ``intensity``: the per-channel normalisation the network was trained with (:mod:`medal.data.intensity`: a CT
    channel's dataset-wide window), ``None`` for each volume's own statistics with ``data_cfg.normalize``.
    A channel file that is unreadable, holds NaN/Inf or lies off the image's grid raises :class:`DatasetError`
    naming it.
    """
    from .validate import require_finite

    name = name or str
    path = Path(path) if path is not None else (Path(image.path) if image.path is not None else None)

    from .intensity import normalize_channel

    def spec(k):  # a model of another channel count is refused where it meets the input (check_input_channels)
        return intensity[k] if intensity is not None and k < len(intensity) else None

    def norm(arr, k):
        return normalize_channel(arr, spec(k), data_cfg)

    first = cache.normalized(path, data_cfg, spec(0)) if cache is not None and path is not None else norm(image.array, 0)
    files = channel_files(path) if path is not None else ()
    if len(files) <= 1:
        return first
    out = np.empty((len(files), *first.shape), dtype=np.float32)
    out[0] = first
    for k, f in enumerate(files[1:], start=1):
        try:
            vol = cache.volume(f) if cache is not None else load_volume(f)
        except DatasetError as exc:
            raise DatasetError(str(exc).replace(str(f), name(f), 1), path=f) from None
        require_finite(vol, name(f))
        same_channel_grid(image, vol, name(f))
        out[k] = cache.normalized(f, data_cfg, spec(k)) if cache is not None else norm(vol.array, k)
    return out


def split_channels(src, dst, *, log=print) -> dict:
    """Rewrite a dataset whose images hold their channels along a fourth axis (the Medical Segmentation
    Decathlon's 4D NIfTI files, e.g. Task01 BrainTumour, Task05 Prostate) into ``dst`` in nnU-Net v2's layout:
    ``imagesTr/<case>_0000.nii.gz``, ``_0001``, ... (one 3D file per channel, the image's affine), labels copied to
    ``labelsTr/``, ``dataset.json`` without its file lists (``modality`` kept and given as ``channel_names``) and
    every other top-level file (a LICENSE) copied. A 3D image becomes its case's ``_0000`` file. A case that cannot
    be read is skipped and reported (``{"written": [...], "skipped": {case_id: message}}``); ``dst`` must not exist
    or be empty."""
    import json
    import shutil

    from .dataset import load_dataset
    from .io import save_volume

    src, dst = Path(src), Path(dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise DatasetError(f"{dst}: exists and is not empty; give split-channels a new folder", path=dst)
    ds = load_dataset(src)
    written, skipped = [], {}
    for case in ds.cases:
        folder = "imagesTr" if case.split == "train" else "imagesTs"
        try:
            vol = load_volume(case.image, ndim=None)
            arr = vol.array
            if arr.ndim == 3:
                arr = arr[..., None]
            if arr.ndim != 4:
                raise DatasetError(f"{ds.relative(case.image)}: expected a 3D or 4D image, got shape "
                                   f"{tuple(vol.array.shape)}", path=case.image)
            if case.label is not None and not Path(case.label).is_file():
                raise DatasetError(f"{ds.relative(case.label)}: file not found", path=case.label)
            for k in range(arr.shape[-1]):
                save_volume(Volume(np.ascontiguousarray(arr[..., k]), vol.affine),
                            dst / folder / f"{case.case_id}_{k:04d}.nii.gz")
            if case.label is not None:
                (dst / "labelsTr").mkdir(parents=True, exist_ok=True)
                shutil.copyfile(case.label, dst / "labelsTr" / f"{case.case_id}{full_suffix(case.label)}")
            written.append(case.case_id)
            log(f"{case.case_id}: {arr.shape[-1]} channel(s)")
        except DatasetError as exc:
            skipped[case.case_id] = str(exc).replace(str(case.image), ds.relative(case.image), 1)
            log(f"SKIPPED {case.case_id}: {skipped[case.case_id]}")
    meta_path = src / "dataset.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        for key in ("training", "test", "numTraining", "numTest"):
            meta.pop(key, None)
        if "modality" in meta and "channel_names" not in meta:
            meta["channel_names"] = meta["modality"]
        meta["file_ending"] = ".nii.gz"
        meta["numTraining"] = sum(1 for c in ds.cases if c.split == "train" and c.case_id in written)
        dst.mkdir(parents=True, exist_ok=True)
        (dst / "dataset.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    for p in sorted(src.iterdir()):  # LICENSE, README...: the data's terms travel with it
        if p.is_file() and p.name != "dataset.json":
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, dst / p.name)
    return {"written": written, "skipped": skipped}
