"""The virtual clock: real time scaled, plus whatever tests set or advance."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class VirtualClock:
    def __init__(self, start: float | None = None, scale: float = 1.0,
                 real: Callable[[], float] = time.monotonic) -> None:
        self._real = real
        self._lock = threading.Lock()
        self._base = time.time() if start is None else float(start)
        self._real_base = real()
        self._scale = float(scale)
        self.origin = self._base  # the simulation start: `trending` profiles grow from here

    def now(self) -> float:
        with self._lock:
            return self._base + (self._real() - self._real_base) * self._scale

    @property
    def scale(self) -> float:
        return self._scale

    def _rebase(self, value: float) -> None:
        self._base = value
        self._real_base = self._real()

    def set(self, epoch: float) -> float:
        with self._lock:
            self._rebase(float(epoch))
            return self._base

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._rebase(self._base + (self._real() - self._real_base) * self._scale + float(seconds))
            return self._base

    def set_scale(self, scale: float) -> None:
        with self._lock:
            self._rebase(self._base + (self._real() - self._real_base) * self._scale)
            self._scale = float(scale)
