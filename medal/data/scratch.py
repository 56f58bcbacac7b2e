"""Arrays kept on disk and read through a memory map: training cases that would not all fit in RAM.

nnU-Net trains from preprocessed cases it opens with ``np.load(path, mmap_mode="r")``
(``nnunetv2/training/dataloading/nnunet_dataset.py``, ``nnUNetDataset.load_case``): a patch reads only its
own pages, the kernel keeps the pages in use cached, and under memory pressure it drops clean file pages
instead of swapping or killing the process. medal does the same for the normalised images and labels of a
round's training cases beyond ``training.items_in_memory_gb`` (:func:`medal.training.trainer.prepare_items`).

The file is removed as soon as it is mapped (POSIX keeps the data until the map is closed), so an
interrupted round leaves nothing behind and no later run can read a stale case.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["ScratchError", "mapped_copy", "scratch_folder"]


class ScratchError(ValueError):
    """The scratch folder cannot hold a case (missing permission, disk full); the message names the folder."""


def scratch_folder(configured=None) -> Path:
    """``training.scratch_dir`` when set, else the system's temporary folder (``$TMPDIR``, ``/tmp``)."""
    return Path(configured).expanduser() if configured else Path(tempfile.gettempdir())


def mapped_copy(array: np.ndarray, folder) -> np.memmap:
    """``array`` written to ``folder`` and opened read-only by memory map (same dtype, shape and values).

    Raises :class:`ScratchError` (one line naming ``folder``) when it cannot be written.
    """
    folder = Path(folder)
    name = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="medal-case-", suffix=".npy", dir=folder)
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
        return np.load(name, mmap_mode="r", allow_pickle=False)
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise ScratchError(f"{folder}: cannot keep a training case there by memory map ({why}); set "
                           "training.scratch_dir to a folder with room, or raise training.items_in_memory_gb") from None
    finally:
        if name is not None:
            try:
                os.unlink(name)  # the map keeps the data alive until it is closed
            except OSError:  # pragma: no cover - Windows cannot remove a mapped file: leave it for the OS
                pass
