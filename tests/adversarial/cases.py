"""The hostile servers' scripts, shared by the tests and ``bench/bench_hostile.py``.

A case is ``(path, behaviour, ask_audio arguments, expected error)``: the path its
behaviour answers (the native endpoint, or the OpenAI-compatible one), the behaviour,
what the question passes, and a piece of the one-line error it must end with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .server import Conn, HostileServer, Request, dashscope_event, gzip_bomb, openai_event

GENERATION = "/services/aigc/multimodal-generation/generation"
CHAT = "/compatible-mode/v1/chat/completions"
UPLOADS = "/api/v1/uploads"
MB = 1 << 20

Behaviour = Callable[[Conn, Request], None]
Case = tuple[str, Behaviour, dict[str, Any], str]


# ---------------------------------------------------------------------- time
def trickled_headers(conn: Conn, request: Request) -> None:
    conn.trickle(b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 10_000, every=0.05)


def trickled_sse_line(conn: Conn, request: Request) -> None:
    conn.sse_head()
    conn.trickle(b"data:" + b"x" * 10_000, every=0.05)


def trickled_json(conn: Conn, request: Request) -> None:
    conn.head(200, {"Content-Type": "application/json", "Content-Length": "1000000"})
    conn.trickle(b'{"output": {"text": "' + b"x" * 10_000, every=0.05)


def keep_alives(every: float) -> Callable[[Conn, Request], None]:
    def behaviour(conn: Conn, request: Request) -> None:
        conn.sse_head()
        conn.forever(b":keep-alive\n\n", every=every)

    return behaviour


def silent(conn: Conn, request: Request) -> None:
    conn.pause(60)


TIME_CASES: dict[str, Case] = {
    "headers trickled at 20 B/s": (GENERATION, trickled_headers, {}, ""),
    "headers trickled, not streamed": (GENERATION, trickled_headers, {"stream": False}, ""),
    "SSE line trickled without a newline": (GENERATION, trickled_sse_line, {}, ""),
    "JSON body trickled, not streamed": (GENERATION, trickled_json, {"stream": False}, ""),
    "keep-alive comments every 10 ms": (GENERATION, keep_alives(0.01), {}, ""),
    "keep-alive comments at full speed": (GENERATION, keep_alives(0.0), {}, ""),
    "compatible route: SSE line trickled": (
        CHAT,
        trickled_sse_line,
        {"model": "qwen3-omni-flash"},
        "",
    ),
}
"""Each ends only at the total deadline: (path, behaviour, ask_audio arguments, "")."""


def policy(server: HostileServer) -> Behaviour:
    """A well-formed getPolicy reply naming ``server``'s ``/oss`` as the upload host."""

    def behaviour(conn: Conn, request: Request) -> None:
        data = {
            "policy": "cG9saWN5",
            "signature": "c2ln",
            "upload_dir": "dashscope-instant/x/2026-01-01/u",
            "upload_host": server.url + "/oss",
            "oss_access_key_id": "AK",
            "expire_in_seconds": 300,
        }
        conn.json(200, {"request_id": "p", "data": data})

    return behaviour


# ---------------------------------------------------------------------- memory
def endless(
    head: Callable[[Conn], None], piece: bytes, first: bytes = b""
) -> Callable[[Conn, Request], None]:
    def behaviour(conn: Conn, request: Request) -> None:
        head(conn)
        if first:
            conn.send(first)
        conn.forever(piece)

    return behaviour


def gzipped(head: Callable[[Conn], None], block: bytes) -> Callable[[Conn, Request], None]:
    bomb = gzip_bomb(block)

    def behaviour(conn: Conn, request: Request) -> None:
        head(conn)
        for chunk in bomb.chunks():
            conn.send(chunk)

    return behaviour


def huge(status: int, encoding: str | None = None) -> Callable[[Conn], None]:
    def head(conn: Conn) -> None:
        headers = {"Content-Type": "application/json", "Content-Length": str(2 * 10**9)}
        if encoding:
            del headers["Content-Length"]
            headers["Content-Encoding"] = encoding
        conn.head(status, headers)

    return head


def gz_sse(conn: Conn) -> None:
    conn.sse_head({"Content-Encoding": "gzip"})


EVENT = dashscope_event("All work and no play makes Jack a dull boy. " * 4)
EVENTS = EVENT * (MB // len(EVENT))
LINE = b"x" * MB
JSON_START = b'{"output": {"text": "' + b"x" * MB

MEMORY_CASES: dict[str, Case] = {
    "endless valid events": (
        GENERATION,
        endless(lambda c: c.sse_head(), EVENTS),
        {},
        "sent an answer over the 1,000,000 characters limit",
    ),
    "one endless SSE line": (
        GENERATION,
        endless(lambda c: c.sse_head(), LINE, first=b"data:"),
        {},
        "sent an SSE event over the 1 MB limit",
    ),
    "data lines without a blank line": (
        GENERATION,
        endless(lambda c: c.sse_head(), b"data:" + b"y" * 1000 + b"\n"),
        {},
        "sent an SSE event over the 1 MB limit",
    ),
    "a 2 GB answer body": (
        GENERATION,
        endless(huge(200), LINE, first=JSON_START),
        {"stream": False},
        "sent a reply over the 4 MB limit",
    ),
    "a 2 GB error body": (
        GENERATION,
        endless(huge(500), LINE, first=b'{"code": "Boom", "message": "'),
        {},
        "DashScope error 500",
    ),
    "gzip bomb: one SSE line": (
        GENERATION,
        gzipped(gz_sse, b"data:" + LINE),
        {},
        "sent an SSE event over the 1 MB limit",
    ),
    "gzip bomb: valid events": (
        GENERATION,
        gzipped(gz_sse, EVENTS),
        {},
        "sent an answer over the 1,000,000 characters limit",
    ),
    "gzip bomb: a JSON answer": (
        GENERATION,
        gzipped(huge(200, "gzip"), JSON_START),
        {"stream": False},
        "sent a reply over the 4 MB limit",
    ),
    "gzip bomb: an error body": (
        GENERATION,
        gzipped(huge(500, "gzip"), b'{"code": "Boom", "message": "' + LINE),
        {},
        "DashScope error 500",
    ),
    "compatible route: endless valid chunks": (
        CHAT,
        endless(lambda c: c.sse_head(), openai_event("All work and no play. " * 8) * 4000),
        {"model": "qwen3-omni-flash"},
        "sent an answer over the 1,000,000 characters limit",
    ),
    "an encoding that is not accepted": (
        GENERATION,
        endless(lambda c: c.sse_head({"Content-Encoding": "br"}), LINE),
        {},
        "sent a body encoded as 'br'; only gzip and deflate are accepted",
    ),
}
