"""gzip of an answer while it is still being rendered.

The text of a 10,000-guest scrape is about 20 MB; gzip level 1 of it takes about as long as
fetching /cluster/resources. zlib lets go of the GIL while it deflates, so on a second core the
families already rendered are compressed while the rest are rendered and the node calls answer.
"""

from __future__ import annotations

import queue
import threading
import zlib

_GZIP_WRAPPER = 16 + zlib.MAX_WBITS  # zlib's wbits for a gzip header and trailer


class GzipStream:
    """A gzip member compressed on its own thread from the chunks `write` is given, in order."""

    def __init__(self, level: int) -> None:
        self._compressor = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WRAPPER)
        self._chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._out: list[bytes] = []
        self._complete = False
        self._thread = threading.Thread(target=self._run, name="gzip", daemon=True)
        self._thread.start()

    def write(self, chunk: bytes) -> None:
        self._chunks.put(chunk)

    def _run(self) -> None:
        # Should zlib raise (out of memory), the thread ends with the error logged by threading
        # and the stream stays incomplete: close() says so rather than hand out a broken member.
        while (chunk := self._chunks.get()) is not None:
            self._out.append(self._compressor.compress(chunk))
        self._out.append(self._compressor.flush())
        self._complete = True

    def close(self) -> bytes | None:
        """The whole gzip member once every chunk is in; None if compressing failed."""
        self._chunks.put(None)
        self._thread.join()
        return b"".join(self._out) if self._complete else None
