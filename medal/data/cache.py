"""An in-process cache of images and their normalised arrays, for loops that read the same scans again.

A simulation (and a long ``medal round`` session) reads every pool image each round to train, to
score and to evaluate; the images never change. :class:`VolumeCache` keeps each image's
:class:`~medal.data.io.Volume` and its normalised array, keyed by the file's resolved path, size and
modification time, so a file that *did* change is read again. Least recently used entries go first
once ``max_bytes`` is exceeded. Arrays handed out are shared, not copied: callers must not modify
them (the pipeline never does; its functions do not modify their inputs).
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .io import Volume, load_volume

__all__ = ["VolumeCache"]


class VolumeCache:
    """``cache.volume(path)`` and ``cache.normalized(path, data_cfg)``; see the module docstring."""

    def __init__(self, max_bytes: float = 2e9):
        self.max_bytes = float(max_bytes)
        self._items: OrderedDict = OrderedDict()
        self._bytes = 0
        self.hits = self.misses = 0

    @staticmethod
    def _stamp(path) -> tuple:
        p = Path(path).resolve()
        st = os.stat(p)
        return str(p), st.st_size, st.st_mtime_ns

    def _get(self, key, make):
        if key in self._items:
            self._items.move_to_end(key)
            self.hits += 1
            return self._items[key][0]
        self.misses += 1
        value = make()
        size = (value.array if isinstance(value, Volume) else value).nbytes
        self._items[key] = (value, size)
        self._bytes += size
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, (_, freed) = self._items.popitem(last=False)
            self._bytes -= freed
        return value

    def volume(self, path) -> Volume:
        """The volume at ``path`` (read once while the file is unchanged)."""
        return self._get(("volume", *self._stamp(path)), lambda: load_volume(path))

    def normalized(self, path, data_cfg, spec: dict | None = None) -> np.ndarray:
        """The image at ``path`` normalised as :func:`medal.data.intensity.normalize_channel` does with ``spec`` (a
        channel's resolved normalisation; ``None``: per volume with ``data_cfg.normalize``), float32."""
        from .intensity import normalize_channel

        def make():
            return normalize_channel(self.volume(path).array, spec, data_cfg)

        key = json.dumps(spec, sort_keys=True) if spec is not None else None
        return self._get(("normalized", *self._stamp(path), str(data_cfg.normalize), tuple(data_cfg.clip_percentiles),
                          key), make)
