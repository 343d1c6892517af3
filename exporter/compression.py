"""gzip of an answer while it is still being rendered, reusing what did not change.

The text of a 10,000-guest scrape is about 20 MB; gzip level 1 of it takes about as long as
fetching /cluster/resources. zlib lets go of the GIL while it deflates, so on a second core the
families already rendered are compressed while the rest are rendered and the node calls answer.

Half of those bytes are the 0/1 state series (pve_ha_state, pve_lock_state), which stay the
same while no guest changes state, and more are sizes, vCPUs and info series, which rarely
change; a family's text is then the very same bytes object as last time (`kept`,
exporter.kept.KeptTexts).
Such a part is deflated once on its own and spliced into later answers: the live compressor
ends its data with a full flush (byte-aligned, no reference back across it), the part's own
deflate data follows (made from a fresh compressor, ending with a full flush too), and the live
compressor carries on. The answer stays one gzip member, whose CRC and size cover every byte.
"""

from __future__ import annotations

import queue
import struct
import threading
import zlib

_RAW = -zlib.MAX_WBITS  # zlib's wbits for deflate data without a header
# RFC 1952: magic, deflate, no flags, no mtime, no extra flags, OS unknown.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


class KeptSegments:
    """A target's deflated kept parts by the part's bytes object, as long as its
    answers use them: each answer keeps what it used and drops the rest."""

    def __init__(self) -> None:
        self._segments: dict[int, tuple[bytes, int, bytes]] = {}  # id(text) -> (text, level, deflated)
        self._used: dict[int, tuple[bytes, int, bytes]] = {}

    def segment(self, text: bytes, level: int) -> bytes:
        """`text` deflated on its own, ending with a full flush so data may follow."""
        entry = self._segments.get(id(text))
        if entry is None or entry[0] is not text or entry[1] != level:  # holding `text` keeps its id unique
            compressor = zlib.compressobj(level, zlib.DEFLATED, _RAW)
            entry = (text, level, compressor.compress(text) + compressor.flush(zlib.Z_FULL_FLUSH))
        self._used[id(text)] = entry
        return entry[2]

    def answered(self) -> None:
        """An answer is complete: keep what it used, for the next one."""
        self._segments, self._used = self._used, {}


class GzipStream:
    """A gzip member compressed on its own thread from the parts `write` is given, in order.

    A target's collections run one at a time, so its `kept` segments serve one stream at a time.
    """

    def __init__(self, level: int, kept: KeptSegments | None = None) -> None:
        self._level = level
        self._kept = kept
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, _RAW)
        self._parts: queue.SimpleQueue[tuple[bytes, bool] | None] = queue.SimpleQueue()
        self._out: list[bytes] = [_GZIP_HEADER]
        self._complete = False
        self._thread = threading.Thread(target=self._run, name="gzip", daemon=True)
        self._thread.start()

    def write(self, text: bytes, kept: bool = False) -> None:
        """Compress `text` next; `kept`: the same bytes object comes again while it is unchanged, so
        its deflate data may be kept (KeptSegments) and spliced in."""
        self._parts.put((text, kept))

    def _run(self) -> None:
        # Should zlib raise (out of memory), the thread ends with the error logged by threading
        # and the stream stays incomplete: close() says so rather than hand out a broken member.
        crc, size = 0, 0
        while (part := self._parts.get()) is not None:
            text, kept = part
            crc = zlib.crc32(text, crc)
            size += len(text)
            if kept and self._kept is not None:
                self._out.append(self._compressor.flush(zlib.Z_FULL_FLUSH))
                self._out.append(self._kept.segment(text, self._level))
            else:
                self._out.append(self._compressor.compress(text))
        self._out.append(self._compressor.flush())
        self._out.append(struct.pack("<II", crc, size & 0xFFFFFFFF))
        self._complete = True

    def close(self) -> bytes | None:
        """The whole gzip member once every part is in; None if compressing failed."""
        self._parts.put(None)
        self._thread.join()
        if self._kept is not None:
            self._kept.answered()
        return b"".join(self._out) if self._complete else None
