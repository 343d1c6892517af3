"""An answer gzipped while it is rendered decompresses to the answer, however it was chunked,
and whichever parts were spliced in from an earlier answer's deflate data."""

from __future__ import annotations

import gzip
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.compression import GzipStream, KeptSegments

STATE_LINES = b'pve_ha_state{id="qemu/100",state="started"} 1.0\n' * 2000
CHUNKS = st.lists(st.tuples(st.binary(max_size=3000) | st.just(STATE_LINES), st.booleans()), max_size=6)


def streamed(chunks: list[tuple[bytes, bool]], level: int, kept: KeptSegments | None) -> bytes:
    stream = GzipStream(level, kept)
    for text, is_kept in chunks:
        stream.write(text, is_kept)
    zipped = stream.close()
    assert zipped is not None
    return zipped


@settings(max_examples=60, deadline=None)
@given(st.lists(CHUNKS, min_size=1, max_size=3), st.sampled_from([1, 6, 9]))
def test_streamed_gzip_is_the_joined_chunks(answers: list[list[tuple[bytes, bool]]], level: int) -> None:
    # Answers one after another on one target, as scrapes are: a kept part seen before (the same
    # object) is spliced in from the deflate data kept of it, one not seen is deflated afresh.
    kept = KeptSegments()
    shared = {text: text for answer in answers for text, _ in answer}  # equal texts as one object
    for answer in answers:
        chunks = [(shared[text], is_kept) for text, is_kept in answer]
        zipped = streamed(chunks, level, kept)
        expected = b"".join(text for text, _ in chunks)
        assert gzip.decompress(zipped) == expected
        # One gzip member (not several concatenated), read by zlib's own gzip reader as well.
        reader = zlib.decompressobj(16 + zlib.MAX_WBITS)
        assert reader.decompress(zipped) == expected and reader.eof and not reader.unused_data
