"""Output: model text cannot break the time parser or anything shown after the answer.

The hostile server answers with times no clip has (``99999999999`` seconds, a 400-digit
number, a 5,000-digit minute count) and with 30,000 time mentions, about a URL clip whose
length is unknown; the answer must come back with only plausible segments, at most
``MAX_SEGMENTS`` of them, and render without raising.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from qaudio_magic import ask_audio
from qaudio_magic.segments import MAX_SEGMENTS, find_segments
from qaudio_magic.session import Session

from .conftest import CLIP, GENERATION
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


# ---------------------------------------------------------------------- control characters
HOSTILE = (
    "Title\x1b]0;pwned\x07 then\x1b[2J\x1b[H a link \x1b]8;;http://evil.example\x1b\\click"
    "\x1b]8;;\x1b\\ a bell\x07, a line\rover it, C1\x9b31m red\x1b[0m.\nKept:\ttab."
    " File \u202eexe.txt\u202c, \u2067isolated\u2069; Hebrew \u05e9\u05dc\u05d5\u05dd\u200f kept."
)
CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _pieces(text: str, size: int) -> Callable[[Conn, Request], None]:
    def behaviour(conn: Conn, request: Request) -> None:
        conn.sse_head()
        chunks = [text[i : i + size] for i in range(0, len(text), size)]
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            conn.send(dashscope_event(chunk, "stop" if last else "null", "rid\x1b[31m-1"))

    return behaviour


def _error(conn: Conn, request: Request) -> None:
    body = {"code": "Bad\x1b[5m", "message": "no\x1b]0;title\x07 way\x1b[2J", "request_id": "r"}
    conn.json(400, body)


def test_control_characters_reach_no_surface(
    ip, hostile: HostileServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An answer full of ANSI/OSC sequences (window title, clear screen, an OSC-8 link, BEL,
    CR, a C1 CSI, bidi overrides that would show ``txt.exe`` as ``exe.txt``): the terminal, ``%qaudio history``, the batch table, the notebook
    outputs, the export and the errors show them as symbols (␛, ␇, ␍, �), never raw."""
    hostile.route(GENERATION, _pieces(HOSTILE, 7))
    hostile.route("/bad/api/v1" + GENERATION, _error)
    for setting in (f"base_url = '{hostile.base_url}'", "upload = 'never'", "retries = 0"):
        ip.run_line_magic("config", f"QAudioMagic.{setting}")
    seen: list[str] = []
    answer = ip.run_cell_magic("qaudio", str(CLIP), "Q")  # a terminal: printed as it arrives
    terminal = capsys.readouterr().out
    with capture_output() as cap:  # a notebook
        ip.run_cell_magic("qaudio", str(CLIP), "Again")
        ip.run_line_magic("qaudio", "history")
        ip.run_line_magic("qaudio", f"export {tmp_path / 'conv.json'}")
    seen += [str(o.data) for o in cap.outputs] + [cap.stdout]
    batch = ip.run_cell_magic("qaudio", f"{CLIP} {CLIP} --batch --cache off", "Q")
    seen += [str(batch._repr_mimebundle_()), repr(batch), str(batch.to_pandas().to_dict())]
    ip.run_line_magic("config", f"QAudioMagic.base_url = '{hostile.url}/bad/api/v1'")
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", str(CLIP), "Fail")
    seen += [str(err.value), capsys.readouterr().out]
    seen += [answer.text, str(answer.request_id), (tmp_path / "conv.json").read_text()]

    assert "Title␛]0;pwned␇ then␛[2J␛[H" in terminal and "a line␍over it" in terminal
    assert "C1�31m" in answer.text and "\nKept:\ttab." in answer.text  # newline, tab kept
    assert "File �exe.txt�, �isolated�; Hebrew \u05e9\u05dc\u05d5\u05dd\u200f kept" in answer.text
    assert str(err.value) == "DashScope error 400 Bad␛[5m: no␛]0;title␇ way␛[2J (request id r)"
    for text in [terminal, *seen]:
        assert not CONTROLS.search(text.replace("\n", "").replace("\t", "")), repr(text)[:300]


def test_a_million_characters_in_small_pieces_render_in_bounded_time(
    ip, hostile: HostileServer
) -> None:
    """An answer of 1,000,000 characters of links, in 14-character pieces (71,000 deltas),
    in a notebook. Rendering that much Markdown takes seconds, so a re-render every 50 ms
    became a re-render per piece, each costlier than the last: it never finished. Now
    pieces are appended, a render waits at least 4x as long as the last one took, and
    Markdown past 100,000 characters is shown as escaped text: a handful of renders."""
    text = "[a](http://x) " * 71_428
    hostile.route(GENERATION, _pieces(text, 14))
    for setting in (f"base_url = '{hostile.base_url}'", "upload = 'never'", "retries = 0"):
        ip.run_line_magic("config", f"QAudioMagic.{setting}")
    started = time.process_time()
    with capture_output() as cap:
        answer = ip.run_cell_magic("qaudio", str(CLIP), "Q")
    took = time.process_time() - started
    assert answer.text == text
    renders = [o for o in cap.outputs if "text/html" in o.data]
    assert len(renders) < 100  # not one per piece (71,000)
    assert renders[-1].metadata["qaudio"]["status"] == "complete"
    assert took < 20.0  # ~1.5 s of CPU here; per-piece re-rendering never finished
