"""Progress of a long step (backfill, planning, apply), shared by every pvebalance program.

On a terminal it is a bar drawn by tqdm when the optional `progress` extra is installed;
otherwise (a pipe, a log file, no tqdm) it is a plain line now and then:

    backfill: 120/289 steps (42%), 12s elapsed, about 17s left - 2026-11-21 14:05 UTC

A step may sit in one long call (the pure planner on a big cluster), so a heartbeat thread
redraws the bar, or writes the current line again, every `every` seconds while it runs.
Steps that are usually quick pass `quiet_for`: nothing appears unless they outlast it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

try:  # the optional nicety: without it, lines
    from tqdm import tqdm as _Bar
except ImportError:  # pragma: no cover - depends on the extras installed
    _Bar = None


def duration(seconds: float) -> str:
    """`45s`, `3m07s`, `2h05m`: how long a step took or has left."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """`update()` as the step advances, `close()` (or leave the `with` block) when it ends."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        unit: str = "",
        *,
        stream: TextIO | None = None,
        every: float = 5.0,
        quiet_for: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.done = 0
        self.note = ""
        self._stream = stream if stream is not None else sys.stderr
        self._every, self._quiet_for, self._clock = every, quiet_for, clock
        self._started = clock()
        self._printed_at: float | None = None  # lines: when the last line went out
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._bar: Any = None
        if _Bar is not None and _isatty(self._stream):
            self._bar = _Bar(total=total, desc=label, unit=f" {unit}" if unit else "it", file=self._stream,
                             delay=quiet_for, leave=True, dynamic_ncols=True)
        threading.Thread(target=self._heartbeat, name=f"progress-{label}", daemon=True).start()

    def update(self, done: int | None = None, note: str | None = None, total: int | None = None) -> None:
        """Set how much is done (of `total`) and/or what is happening now."""
        with self._lock:
            if total is not None:
                self.total = total
                if self._bar is not None:
                    self._bar.total = total
            if done is not None:
                self.done = done
            if note is not None:
                self.note = note
            if self._bar is not None:
                self._bar.n = self.done
                self._bar.set_postfix_str(self.note, refresh=True)
            else:
                self._maybe_line()

    def say(self, text: str) -> None:
        """A line that stays (an outcome), printed above the bar when there is one."""
        with self._lock:
            if self._bar is not None:
                self._bar.write(text, file=self._stream)
            else:
                print(text, file=self._stream, flush=True)

    def close(self, note: str = "done") -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with self._lock:
            self.note = note
            if self._bar is not None:
                self._bar.set_postfix_str(note, refresh=False)
                self._bar.close()
            elif self._clock() - self._started >= self._quiet_for:
                self._line()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close("done" if kind is None else "stopped")

    # -- lines ----------------------------------------------------------------------------
    def _heartbeat(self) -> None:
        while not self._closed.wait(self._every):
            with self._lock:
                if self._closed.is_set():
                    return
                if self._bar is not None:
                    self._bar.refresh()
                else:
                    self._maybe_line()

    def _maybe_line(self) -> None:
        now = self._clock()
        if now - self._started < self._quiet_for or (self.total and self.done >= self.total):
            return  # too early to show, or complete: close() says so
        if self._printed_at is None or now - self._printed_at >= self._every:
            self._line()

    def _line(self) -> None:
        elapsed = self._clock() - self._started
        parts = [f"{self.done}/{self.total} {self.unit}".rstrip()] if self.total else []
        if self.total:
            parts[0] += f" ({self.done / self.total:.0%})"
        parts.append(f"{duration(elapsed)} elapsed")
        if self.total and 0 < self.done < self.total and elapsed >= 1:  # before that a guess, not an estimate
            parts.append(f"about {duration(elapsed / self.done * (self.total - self.done))} left")
        text = f"{self.label}: {', '.join(parts)}" + (f" - {self.note}" if self.note else "")
        print(text, file=self._stream, flush=True)
        self._printed_at = self._clock()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
