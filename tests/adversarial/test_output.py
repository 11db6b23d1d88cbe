"""Output: model text cannot break the time parser or anything shown after the answer.

The hostile server answers with times no clip has (``99999999999`` seconds, a 400-digit
number, a 5,000-digit minute count) and with 30,000 time mentions, about a URL clip whose
length is unknown; the answer must come back with only plausible segments, at most
``MAX_SEGMENTS`` of them, and render without raising.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from qaudio_magic import ask_audio
from qaudio_magic.segments import MAX_SEGMENTS, find_segments
from qaudio_magic.session import Session

from .conftest import GENERATION
from .server import Conn, HostileServer, Request, dashscope_event

ABSURD = (
    "It starts at 99999999999 seconds, then at "
    + "9" * 400
    + " seconds, and "
    + "7" * 5000
    + " min 3 s in; the real one is at 1.5 s."
)


def _answer(text: str) -> Callable[[Conn, Request], None]:
    def behaviour(conn: Conn, request: Request) -> None:
        conn.sse_head()
        conn.send(dashscope_event(text, "stop"))

    return behaviour


def _url_clip(conn: Conn, request: Request) -> None:
    conn.head(200, {"Content-Type": "audio/wav", "Content-Length": "160044"})


def test_absurd_times_about_a_url_clip_are_dropped(
    hostile: HostileServer, make_session: Callable[..., Session]
) -> None:
    hostile.route(GENERATION, _answer(ABSURD))
    hostile.route("/clip.wav", _url_clip)
    answer = ask_audio(f"{hostile.url}/clip.wav", "When?", session=make_session(), display=False)
    assert [s.as_tuple() for s in answer.segments] == [(1.5, None)]
    assert [s.label() for s in answer.segments] == ["1.5 s"]
    assert "1.5 s" in str(answer._repr_mimebundle_())  # renders, chips and all


def test_thirty_thousand_mentions(
    hostile: HostileServer, make_session: Callable[..., Session]
) -> None:
    """Quadratic de-duplication took 74 s here; it is a set now, and the parser reads
    at most MAX_MENTIONS mentions (~0.1 s of CPU; the bound has a 10x margin)."""
    text = " ".join(f"at {i % 5000}.5 s" for i in range(30_000))
    hostile.route(GENERATION, _answer(text))
    hostile.route("/clip.wav", _url_clip)
    started = time.process_time()
    answer = ask_audio(f"{hostile.url}/clip.wav", "When?", session=make_session(), display=False)
    assert len(answer.segments) == MAX_SEGMENTS
    assert [s.start for s in answer.segments[:3]] == [0.5, 1.5, 2.5]  # the first mentioned
    assert time.process_time() - started < 2.0


def test_times_beyond_a_known_clip_or_a_day_are_dropped() -> None:
    assert find_segments("at 3 s and at 2 days, 200000 seconds", duration=None) == find_segments(
        "at 3 s"
    )
    assert [s.as_tuple() for s in find_segments("at 3 s and at 90000 s", duration=None)] == [
        (3.0, None)
    ]
    assert [s.as_tuple() for s in find_segments("from 2 to 9 s, at 12 s", duration=5.0)] == [
        (2.0, 5.0)
    ]
