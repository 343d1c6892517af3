"""An answer gzipped while it is rendered decompresses to the answer, however it was chunked."""

from __future__ import annotations

import gzip

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.compression import GzipStream


@settings(max_examples=50, deadline=None)
@given(st.lists(st.binary(max_size=5000) | st.just(b"pve_up{id=\"qemu/100\"} 1.0\n" * 2000), max_size=8),
       st.sampled_from([1, 6, 9]))
def test_streamed_gzip_is_the_joined_chunks(chunks: list[bytes], level: int) -> None:
    stream = GzipStream(level)
    for chunk in chunks:
        stream.write(chunk)
    zipped = stream.close()
    assert zipped is not None
    assert gzip.decompress(zipped) == b"".join(chunks)
