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

import pytest

from qaudio_magic.session import Session

from .cases import GENERATION, MEMORY_CASES, huge
from .conftest import failing_question
from .server import Conn, HostileServer, Request

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


@pytest.mark.parametrize("case", list(MEMORY_CASES))
def test_memory_stays_bounded_whatever_the_reply(
    hostile: HostileServer,
    make_session: Callable[..., Session],
    peak: Callable[[], int],
    case: str,
) -> None:
    path, behaviour, kwargs, expected = MEMORY_CASES[case]
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
        huge(500)(conn)
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
