"""What an answer keeps of the last one: each family's bytes, reused while it is unchanged.

One `KeptTexts` per target (exporter.target), so targets scraped in turn do not push each
other's out; a kept part's deflate data is kept beside it (exporter.compression.KeptSegments).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import NamedTuple


class Part(NamedTuple):
    """One family's text format, as bytes. `kept`: the same object as the last scrape's
    (KeptTexts), handed out again while the family stays the same, so it may serve as a cache
    key by identity (exporter.compression.KeptSegments)."""

    text: bytes
    kept: bool


class KeptTexts:
    """A target's last encoded families, each under a key that buckets it (its head, its size),
    with what it is made of: its rows, or a state family's blocks (from the `_StateBlocks` caches,
    so an unchanged family's list holds the very same strings and compares in one pass of
    identity checks). A family made of the same again gets the same bytes object."""

    # About 30 families per answer; each entry holds its family's text (some 0.5 MB at 10,000
    # guests) until the family is encoded again.
    SIZE = 64

    def __init__(self, size: int = SIZE) -> None:
        self._size = size
        self._texts: OrderedDict[Hashable, tuple[object, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def encoded(self, key: Hashable, made_of: object, render: Callable[[], str]) -> Part:
        """The family's bytes; `kept` when they are the last scrape's own, unchanged (so their
        gzip may be kept too). A family that changed is written afresh, and not marked kept:
        deflated with the rest of the answer, not on its own."""
        with self._lock:
            last = self._texts.get(key)
            if last is not None and last[0] == made_of:
                self._texts.move_to_end(key)
                return Part(last[1], kept=True)
        text = render().encode("utf-8")
        with self._lock:
            self._texts[key] = (made_of, text)
            self._texts.move_to_end(key)
            while len(self._texts) > self._size:
                self._texts.popitem(last=False)
        return Part(text, kept=False)
