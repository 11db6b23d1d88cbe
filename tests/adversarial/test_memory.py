"""Memory: whatever a server sends, the kernel holds at most 64 MB more while it reads it.

Each case sends without end (or a body claiming 2 GB) as fast as loopback goes, and the
question must end at one of the caps of ``backends/_body.py`` — the cause, named in its
one-line error — with the peak of Python's allocations (``tracemalloc``, which counts
every bytes and str object a reply becomes) under :data:`BOUND` above where it started.
The deadline is 30 s, so a case that ended by timing out instead would show in its error.
"""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from qaudio_magic.session import Session

from .conftest import CHAT, GENERATION, failing_question
from .server import Conn, HostileServer, Request, dashscope_event, gzip_bomb, openai_event

BOUND = 64 * 1024 * 1024
MB = 1 << 20


@pytest.fixture
def peak() -> Iterator[Callable[[], int]]:
    """``peak()``: the most Python allocated above the start of the test, in bytes."""
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    yield lambda: tracemalloc.get_traced_memory()[1] - start
    tracemalloc.stop()


def _endless(
    head: Callable[[Conn], None], piece: bytes, first: bytes = b""
) -> Callable[[Conn, Request], None]:
    def behaviour(conn: Conn, request: Request) -> None:
        head(conn)
        if first:
            conn.send(first)
        conn.forever(piece)

    return behaviour


def _gzipped(head: Callable[[Conn], None], block: bytes) -> Callable[[Conn, Request], None]:
    bomb = gzip_bomb(block)

    def behaviour(conn: Conn, request: Request) -> None:
        head(conn)
        for chunk in bomb.chunks():
            conn.send(chunk)

    return behaviour


def _huge(status: int, encoding: str | None = None) -> Callable[[Conn], None]:
    def head(conn: Conn) -> None:
        headers = {"Content-Type": "application/json", "Content-Length": str(2 * 10**9)}
        if encoding:
            del headers["Content-Length"]
            headers["Content-Encoding"] = encoding
        conn.head(status, headers)

    return head


def _gz_sse(conn: Conn) -> None:
    conn.sse_head({"Content-Encoding": "gzip"})


EVENT = dashscope_event("All work and no play makes Jack a dull boy. " * 4)
EVENTS = EVENT * (MB // len(EVENT))
LINE = b"x" * MB
JSON_START = b'{"output": {"text": "' + b"x" * MB

CASES: dict[str, tuple[str, Callable[[Conn, Request], None], dict[str, Any], str]] = {
    "endless valid events": (
        GENERATION,
        _endless(lambda c: c.sse_head(), EVENTS),
        {},
        "sent an answer over the 1,000,000 characters limit",
    ),
    "one endless SSE line": (
        GENERATION,
        _endless(lambda c: c.sse_head(), LINE, first=b"data:"),
        {},
        "sent an SSE event over the 1 MB limit",
    ),
    "data lines without a blank line": (
        GENERATION,
        _endless(lambda c: c.sse_head(), b"data:" + b"y" * 1000 + b"\n"),
        {},
        "sent an SSE event over the 1 MB limit",
    ),
    "a 2 GB answer body": (
        GENERATION,
        _endless(_huge(200), LINE, first=JSON_START),
        {"stream": False},
        "sent a reply over the 4 MB limit",
    ),
    "a 2 GB error body": (
        GENERATION,
        _endless(_huge(500), LINE, first=b'{"code": "Boom", "message": "'),
        {},
        "DashScope error 500",
    ),
    "gzip bomb: one SSE line": (
        GENERATION,
        _gzipped(_gz_sse, b"data:" + LINE),
        {},
        "sent an SSE event over the 1 MB limit",
    ),
    "gzip bomb: valid events": (
        GENERATION,
        _gzipped(_gz_sse, EVENTS),
        {},
        "sent an answer over the 1,000,000 characters limit",
    ),
    "gzip bomb: a JSON answer": (
        GENERATION,
        _gzipped(_huge(200, "gzip"), JSON_START),
        {"stream": False},
        "sent a reply over the 4 MB limit",
    ),
    "gzip bomb: an error body": (
        GENERATION,
        _gzipped(_huge(500, "gzip"), b'{"code": "Boom", "message": "' + LINE),
        {},
        "DashScope error 500",
    ),
    "compatible route: endless valid chunks": (
        CHAT,
        _endless(lambda c: c.sse_head(), openai_event("All work and no play. " * 8) * 4000),
        {"model": "qwen3-omni-flash"},
        "sent an answer over the 1,000,000 characters limit",
    ),
    "an encoding that is not accepted": (
        GENERATION,
        _endless(lambda c: c.sse_head({"Content-Encoding": "br"}), LINE),
        {},
        "sent a body encoded as 'br'; only gzip and deflate are accepted",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_memory_stays_bounded_whatever_the_reply(
    hostile: HostileServer,
    make_session: Callable[..., Session],
    peak: Callable[[], int],
    case: str,
) -> None:
    path, behaviour, kwargs, expected = CASES[case]
    hostile.route(path, behaviour)
    _, message = failing_question(make_session(total_timeout=30.0), **kwargs)
    assert expected in message
    assert len(message) < 400 and "\n" not in message  # one line, however long the body
    assert peak() < BOUND, f"{peak() / MB:.0f} MB"


def test_an_error_body_is_read_only_as_far_as_needed(
    hostile: HostileServer, make_session: Callable[..., Session]
) -> None:
    """A 500 whose JSON says what went wrong, then 2 GB of padding: the message is
    shown, and the client hangs up having read a few KB, not the 2 GB."""
    body = json.dumps({"code": "Boom", "message": "the real reason", "request_id": "r-1"})

    def behaviour(conn: Conn, request: Request) -> None:
        _huge(500)(conn)
        conn.send(body.encode() + b" " * 100_000)
        conn.forever(b" " * MB)

    hostile.route(GENERATION, behaviour)
    _, message = failing_question(make_session(total_timeout=30.0))
    assert message == "DashScope error 500 Boom: the real reason (request id r-1)"
    hit = hostile.hits_to(GENERATION)[0]
    end = time.monotonic() + 5
    while hit.writing and time.monotonic() < end:
        time.sleep(0.02)
    assert hit.client_left  # it hung up instead of reading on
