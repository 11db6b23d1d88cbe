"""Secrets: a server that echoes the key back cannot make it show anywhere.

The server reads the key from the Authorization header and sends it back everywhere it
can: response headers (request id, an extra header httpcore's DEBUG log quotes), the
answer text (split across streamed deltas), the payload's request id, and an error
message long enough that cutting it to a line would leave a prefix of the key. Then
every artifact is searched: the answer and its displays, ``%qaudio history`` and
``export``, the response cache, one-line errors, a batch table, httpx/httpcore DEBUG
logs, and ``%xmode Verbose`` tracebacks of ``ask_audio`` (which print frame variables).
"""

from __future__ import annotations

import json
import logging
import re
import traceback
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from qaudio_magic import ask_audio
from qaudio_magic._secret import MIN_RUN
from qaudio_magic.errors import QAudioError

from ..conftest import TEST_KEY
from .conftest import CHAT, CLIP, GENERATION
from .server import Conn, HostileServer, Request, dashscope_event, openai_event

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _key(request: Request) -> str:
    return request.headers.get("authorization", "").removeprefix("Bearer ")


def echo_answer(conn: Conn, request: Request) -> None:
    key = _key(request)
    conn.sse_head({"X-Request-Id": key, "X-Echo": f"your key is {key}"})
    pieces = ["Your key is ", key[:1], key[1:9], key[9:], " — and ", key[:12], " was its start."]
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        conn.send(dashscope_event(piece, "stop" if last else "null", request_id=key))


def echo_openai(conn: Conn, request: Request) -> None:
    key = _key(request)
    conn.sse_head({"X-Request-Id": key})
    for piece in ("Key: ", key[:5], key[5:], "."):
        conn.send(openai_event(piece))
    conn.send(openai_event(None, "stop") + b"data: [DONE]\n\n")


def echo_error(conn: Conn, request: Request) -> None:
    key = _key(request)
    message = "x" * (300 - 20) + key + " is not a valid key"  # a cut at 300 ends mid-key
    body = {"code": "InvalidParameter", "message": message, "request_id": key}
    conn.json(400, body, {"X-Request-Id": key, "X-Echo": key})


def echo_midstream_error(conn: Conn, request: Request) -> None:
    key = _key(request)
    conn.sse_head({"X-Request-Id": key})
    frame = {"code": "DataInspectionFailed", "message": "y" * 290 + key, "request_id": key}
    conn.send(f"id:1\nevent:error\n:HTTP_STATUS/400\ndata:{json.dumps(frame)}\n\n".encode())


def _exception_texts(shell: Any, exc: BaseException) -> list[str]:
    """str, repr, the plain traceback and IPython's verbose one (frame variables)."""
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    shell.run_line_magic("xmode", "Verbose")
    try:
        stb = shell.InteractiveTB.structured_traceback(type(exc), exc, exc.__traceback__)
        texts.append(ANSI.sub("", shell.InteractiveTB.stb2text(stb)))
    finally:
        shell.run_line_magic("xmode", "Context")
    return texts


def _no_key_in(blob: str) -> None:
    assert TEST_KEY not in blob
    assert TEST_KEY[:MIN_RUN] not in blob, "a prefix of the key leaked"
    assert TEST_KEY[-MIN_RUN:] not in blob, "a suffix of the key leaked"


def test_a_server_echoing_the_key_cannot_make_it_show(
    ip, hostile: HostileServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx and httpcore quote response headers here
    hostile.route(GENERATION, echo_answer)
    hostile.route(CHAT, echo_openai)
    hostile.route("/bad/api/v1" + GENERATION, echo_error)
    hostile.route("/midstream/api/v1" + GENERATION, echo_midstream_error)
    for line in (
        f"base_url = '{hostile.base_url}'",
        f"cache_dir = '{tmp_path / 'cache'}'",
        "upload = 'never'",
        "retries = 0",
    ):
        ip.run_line_magic("config", f"QAudioMagic.{line}")
    seen: list[str] = []
    errors: list[BaseException] = []
    with capture_output() as cap:
        a1 = ip.run_cell_magic("qaudio", f"{CLIP} --cache on", "What is my key?")
        a2 = ask_audio(str(CLIP), "Again, from Python", display=False, cache="on")
        a3 = ip.run_cell_magic("qaudio", f"{CLIP} -m qwen3-omni-flash", "And here?")
        for path in ("bad", "midstream"):
            ip.run_line_magic("config", f"QAudioMagic.base_url = '{hostile.url}/{path}/api/v1'")
            with pytest.raises(UsageError) as err:
                ip.run_cell_magic("qaudio", str(CLIP), "Fail")
            seen.append(str(err.value))
            with pytest.raises(QAudioError) as caught:
                ask_audio(str(CLIP), "Fail from Python", display=False)
            errors.append(caught.value)
        batch = ask_audio([str(CLIP), str(CLIP)], "A batch that fails", display=False, cache="off")
        ip.run_line_magic("qaudio", "history")
        ip.run_line_magic("qaudio", f"export {tmp_path / 'conv.json'}")

    for exc in errors:
        seen += _exception_texts(ip, exc)
    seen += [cap.stdout, cap.stderr, caplog.text]
    seen += [str(o.data) + str(o.metadata) for o in cap.outputs]
    for answer in (a1, a2, a3):
        seen += [answer.text, str(answer.request_id), repr(answer), str(answer._repr_mimebundle_())]
        seen.append(str(answer.metadata()))
    seen += [repr(batch), str(batch._repr_mimebundle_()), str(batch.to_pandas().to_dict())]
    seen += [p.read_bytes().decode("utf-8", "replace") for p in tmp_path.rglob("*") if p.is_file()]
    blob = "\n".join(seen)

    # the search saw the echoes, scrubbed...
    assert re.fullmatch(r"Your key is (\*\*\*)+ — and \*\*\* was its start\.", a1.text)
    assert re.fullmatch(r"Key: (\*\*\*)+\.", a3.text)
    assert "InvalidParameter" in blob and "DataInspectionFailed" in blob
    assert "x-echo" in caplog.text.lower()  # the transport logged the echoing header
    assert any(p.name == "answers.sqlite3" for p in (tmp_path / "cache").rglob("*"))  # cached
    assert len(batch.failed) == 2
    # ...and no key, no long prefix or suffix of it, anywhere
    _no_key_in(blob)
