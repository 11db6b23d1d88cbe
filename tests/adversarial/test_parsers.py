"""The SSE parser and the body reader against hostile byte streams, without a server:
bounded lines and events, linear work however the bytes are cut, bounded inflating."""

from __future__ import annotations

import random
import time
import zlib

import httpx
import pytest

from qaudio_magic.backends._body import PIECE, decoded_chunks
from qaudio_magic.backends._sse import EventTooLarge, iter_sse, parse_events

LIMIT = 100_000


def _cut(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_events_survive_any_chunking_byte_by_byte() -> None:
    rng = random.Random(7)
    lines = ["id:1", "event:result", ":HTTP_STATUS/200", ": keep-alive", 'data:{"a":1}',
             'data: {"b":"é中"}', "data:", "retry:100", "x"]  # fmt: skip
    for _ in range(200):
        eol = rng.choice(["\n", "\r\n", "\r"])
        blocks = [[rng.choice(lines) for _ in range(rng.randint(0, 4))] for _ in range(3)]
        body = "".join(eol.join(b) + eol + eol for b in blocks)
        for size in (1, 2, 3, 7):
            assert list(iter_sse(_cut(body.encode(), size))) == parse_events(body), (body, size)


@pytest.mark.parametrize(
    "stream",
    [
        pytest.param(lambda: (b"data:" + b"x" * 999 for _ in range(10**6)), id="one endless line"),
        pytest.param(
            lambda: (b"data:" + b"y" * 99 + b"\n" for _ in range(10**6)), id="no blank line"
        ),
        pytest.param(lambda: (b"z" for _ in range(10**7)), id="a line a byte at a time"),
        pytest.param(lambda: (b"d\n" for _ in range(10**7)), id="tiny lines, no blank line"),
    ],
)
def test_a_line_or_event_past_the_limit_is_refused(stream) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(EventTooLarge):
        for _ in iter_sse(stream(), limit=LIMIT):
            pass


def test_work_is_linear_in_the_bytes_however_they_are_cut() -> None:
    """A 4 MB event in 100-byte chunks (under a raised limit) is joined once when it is
    complete. Re-joining and re-scanning the unfinished part per chunk, as before, would
    copy ~80 GB here; linear work takes well under 0.2 s, so 1 s of CPU is a 5x margin
    that still catches quadratic work."""
    big = 20_000_000
    data = b"data:" + b"x" * 4_000_000 + b"\n\n"
    lines = (b"data:" + b"y" * 90 + b"\n") * 40_000 + b"\n"
    started = time.process_time()
    events = list(iter_sse(_cut(data, 100), limit=big))
    assert len(events) == 1 and len(events[0].data) == 4_000_000
    events = list(iter_sse(_cut(lines, 100), limit=big))
    assert len(events) == 1 and events[0].data.count("\n") == 39_999
    assert time.process_time() - started < 1.0


def test_inflating_is_done_in_bounded_pieces() -> None:
    """1 MB of gzip that inflates to 1 GB comes out in pieces of at most PIECE bytes, so
    a cap downstream stops it before memory grows (httpx would inflate a chunk whole)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\0" * (1 << 20)
    first = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    segment = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)

    class Network(httpx.SyncByteStream):
        def __iter__(self):  # type: ignore[no-untyped-def]
            yield first
            for _ in range(16):
                yield segment * 64  # a 64 KB network chunk worth ~64 MB

    response = httpx.Response(200, headers={"Content-Encoding": "gzip"}, stream=Network())
    total = 0
    for piece in decoded_chunks(response, "h"):
        assert len(piece) <= PIECE
        total += len(piece)
        if total > 50 * PIECE:
            break
    assert total > 50 * PIECE  # it did inflate, piece by piece
