"""Cases kept in memory between tasks, and the next case read in a background thread."""

from __future__ import annotations

import concurrent.futures as cf
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .store import CaseData, CaseLabels

__all__ = ["CaseCache", "Cached", "file_stamps"]


@dataclass
class Cached:
    data: CaseData
    labels: CaseLabels | None = None  # re-read when the files' stamps changed (another session wrote them)
    working: np.ndarray | None = None  # the array the labels layer paints into
    stamps: tuple | None = None
    completing: object | None = None  # a future: the overlays still being read for a case shown early


def file_stamps(paths) -> tuple:
    out = []
    for p in paths:
        try:
            st = p.stat()
            out.append((st.st_mtime_ns, st.st_size))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


#: cases with at least this many voxels are shown before their overlays are read
QUICK_VOXELS = 8_000_000


class CaseCache:
    """Least-recently-used cache of ``size`` cases; ``prefetch`` loads one in a worker thread."""

    def __init__(self, load: Callable[[str], CaseData], size: int = 3, prefetch: bool = True,
                 quick: Callable[[str], CaseData] | None = None, complete: Callable[[CaseData], CaseData] | None = None):
        """``quick`` and ``complete``: a case not cached nor prefetched is loaded with ``quick`` (the image
        alone) and ``complete`` then runs in the worker thread (``Cached.completing``): the expert sees the
        image while the overlays are still being read."""
        self.load, self.quick, self.complete = load, quick, complete
        self.size = max(int(size), 1)
        self._entries: OrderedDict[str, Cached] = OrderedDict()
        self._pool = cf.ThreadPoolExecutor(1, thread_name_prefix="medal-prefetch") if prefetch else None
        self._pending: dict[str, cf.Future] = {}

    def __contains__(self, case_id: str) -> bool:
        return case_id in self._entries

    def get(self, case_id: str, *, keep: str | None = None) -> Cached:
        """The case (loaded now, or by the prefetcher); ``keep`` is never evicted (the case on screen)."""
        if case_id in self._entries:
            self._entries.move_to_end(case_id)
            return self._entries[case_id]
        fut = self._pending.pop(case_id, None)
        if fut is None and self.quick is not None and self.complete is not None and self._pool is not None:
            entry = Cached(self.quick(case_id))
            if entry.data.image.array.size < QUICK_VOXELS:  # small: the overlays take no time, read them now
                self.complete(entry.data)
            else:
                entry.completing = self._pool.submit(self.complete, entry.data)
        else:
            entry = Cached(fut.result() if fut is not None else self.load(case_id))
        self._entries[case_id] = entry
        for old in [k for k in self._entries if k not in (keep, case_id)][: max(len(self._entries) - self.size, 0)]:
            self._entries.pop(old)
        return entry

    def prefetch(self, case_id: str) -> None:
        if self._pool is None or case_id in self._entries or case_id in self._pending:
            return
        self._pending[case_id] = self._pool.submit(self.load, case_id)

    def close(self) -> None:
        """Stop the prefetcher and free the cached volumes."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._entries.clear()
        self._pending.clear()
