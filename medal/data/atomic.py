"""Atomic writes: a crash or an exception never leaves a truncated file behind.

Every file medal writes goes through :func:`atomic_path`: the content is written to a temporary
file in the *same folder* (so the final rename never crosses a file system), flushed and fsynced,
then renamed over the target with :func:`os.replace`, and the folder entry is fsynced. If anything
fails before the rename, the temporary file is removed and the old target is untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "full_suffix"]


def full_suffix(path: Path) -> str:
    """The complete extension of ``path`` (``.nii.gz`` for ``a.nii.gz``, ``.json`` for ``t.json``)."""
    name = Path(path).name
    for double in (".nii.gz", ".tar.gz"):
        if name.endswith(double):
            return double
    return Path(name).suffix


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(target, *, overwrite: bool = True):
    """Yield a temporary path next to ``target``; on clean exit it replaces ``target`` atomically.

    The temporary name keeps the target's extension, so writers that choose a format by suffix
    (nibabel, SimpleITK) behave as for the real name. With ``overwrite=False`` an existing target
    raises :class:`FileExistsError` instead of being replaced.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and target.exists():
        raise FileExistsError(f"{target}: exists and overwrite=False")
    suffix = full_suffix(target)
    stem = target.name[: len(target.name) - len(suffix)] if suffix else target.name
    tmp = target.parent / f".{stem}.{secrets.token_hex(4)}.tmp{suffix}"
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{tmp}: the writer did not create the temporary file")
        _fsync_file(tmp)
        if not overwrite and target.exists():
            raise FileExistsError(f"{target}: appeared while writing and overwrite=False")
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(target, data: bytes, *, overwrite: bool = True) -> Path:
    with atomic_path(target, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return Path(target)


def atomic_write_text(target, text: str, *, overwrite: bool = True) -> Path:
    return atomic_write_bytes(target, text.encode("utf-8"), overwrite=overwrite)


def atomic_write_json(target, obj, *, overwrite: bool = True) -> Path:
    return atomic_write_text(target, json.dumps(obj, indent=2, sort_keys=False) + "\n", overwrite=overwrite)
