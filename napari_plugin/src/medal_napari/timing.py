"""Active annotation time: wall-clock seconds between activity events, idle gaps left out."""

from __future__ import annotations

import time
from typing import Callable

__all__ = ["ActiveTimer"]


class ActiveTimer:
    """Sum of the gaps between consecutive activity events that are at most ``idle_s`` long.

    Every paint stroke, mouse move over the canvas, slice change or key press calls :meth:`touch`.
    A gap longer than ``idle_s`` (the expert left, or was on the phone) counts nothing; a shorter gap
    (looking at the image between strokes) counts in full.
    """

    def __init__(self, idle_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        if idle_s <= 0:
            raise ValueError(f"idle_s must be > 0, got {idle_s}")
        self.idle_s = float(idle_s)
        self.clock = clock
        self.seconds = 0.0
        self._last: float | None = None

    @property
    def running(self) -> bool:
        return self._last is not None

    def start(self, seconds: float = 0.0) -> None:
        """Start (or restart) counting from ``seconds`` already spent."""
        self.seconds = float(seconds)
        self._last = self.clock()

    def touch(self) -> None:
        if self._last is None:
            return
        now = self.clock()
        gap = now - self._last
        if 0 < gap <= self.idle_s:
            self.seconds += gap
        self._last = now

    def stop(self) -> float:
        """Count up to now (if not idle) and stop; returns the total."""
        self.touch()
        self._last = None
        return self.seconds
