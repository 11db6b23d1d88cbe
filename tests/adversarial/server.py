"""One hostile HTTP server on 127.0.0.1, scripted per path.

A test routes a path to a *behaviour*, a function given the connection and the request
it read; the behaviour writes whatever bytes it likes, as slowly or as fast as it likes,
with the helpers of :class:`Conn`. Writing stops by itself when the client goes away,
when the server is stopped, or after :data:`LIFETIME` seconds or :data:`MAX_BYTES` bytes
on one connection, so no case can run on forever. Every request is logged with what was
sent back and whether the client left first (the causal evidence a time test checks).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

__all__ = [
    "Conn",
    "Hit",
    "HostileServer",
    "Request",
    "dashscope_event",
    "gzip_bomb",
    "openai_event",
]

LIFETIME = 30.0  # seconds one connection may be written to
MAX_BYTES = 4_000_000_000  # bytes one connection may be sent (what is "endless" here)


@dataclass
class Request:
    method: str
    path: str  # without the query
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class Hit:
    """One request and what became of its connection."""

    request: Request
    started: float  # time.monotonic()
    ended: float = 0.0
    sent: int = 0  # bytes written
    client_left: bool = False  # the client closed while we were still writing
    writing: bool = True


class ClientGone(Exception):
    """The client closed the connection (or the server is stopping)."""


class Conn:
    """The server's side of one connection, with pacing helpers."""

    def __init__(self, sock: socket.socket, hit: Hit, stop: threading.Event) -> None:
        self._sock = sock
        self.hit = hit
        self._stop = stop
        self._end = time.monotonic() + LIFETIME

    def alive(self) -> bool:
        return not self._stop.is_set() and time.monotonic() < self._end

    def send(self, data: bytes) -> None:
        """Write ``data`` now; raises ClientGone when the client left or time is up."""
        if not self.alive() or self.hit.sent >= MAX_BYTES:
            raise ClientGone
        try:
            self._sock.sendall(data)
        except OSError:
            self.hit.client_left = True
            raise ClientGone from None
        self.hit.sent += len(data)

    def pause(self, seconds: float) -> None:
        if self._stop.wait(seconds):
            raise ClientGone

    def trickle(self, data: bytes, *, every: float = 0.05, size: int = 1) -> None:
        """``data``, ``size`` bytes every ``every`` seconds."""
        for i in range(0, len(data), size):
            self.send(data[i : i + size])
            self.pause(every)

    def forever(self, piece: bytes, *, every: float = 0.0) -> None:
        """``piece`` again and again, until the client leaves (or the limits)."""
        while True:
            self.send(piece)
            if every:
                self.pause(every)

    def head(self, status: int = 200, headers: dict[str, str] | None = None) -> None:
        """A status line and headers (``Connection: close``; no length unless given)."""
        lines = [f"HTTP/1.1 {status} X"]
        for name, value in {"Connection": "close", **(headers or {})}.items():
            lines.append(f"{name}: {value}")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        """A whole ordinary reply."""
        self.head(status, {"Content-Length": str(len(body)), **(headers or {})})
        self.send(body)

    def json(self, status: int, value: object, headers: dict[str, str] | None = None) -> None:
        self.reply(
            status,
            json.dumps(value).encode(),
            {"Content-Type": "application/json", **(headers or {})},
        )

    def sse_head(self, headers: dict[str, str] | None = None) -> None:
        """Headers of an endless (close-delimited) event stream."""
        self.head(200, {"Content-Type": "text/event-stream", **(headers or {})})


Behaviour = Callable[[Conn, Request], None]


class HostileServer:
    """``with HostileServer() as s: s.route("/api/v1/services/...", behaviour)``."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_url = self.url + "/api/v1"
        self.routes: dict[str, Behaviour] = {}
        self.hits: list[Hit] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, name="hostile-server", daemon=True)

    def route(self, path: str, behaviour: Behaviour) -> None:
        """Requests whose path ends with ``path`` get ``behaviour`` (the longest such
        ``path`` wins)."""
        self.routes[path] = behaviour

    def __enter__(self) -> HostileServer:
        self._accepter.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._accepter.join(5)
        for t in self._threads:
            t.join(5)
        self._listener.close()

    def hits_to(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.request.path.endswith(path)]

    # ------------------------------------------------------------------ internals
    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            t = threading.Thread(target=self._serve, args=(sock,), name="hostile-conn", daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            sock.settimeout(LIFETIME)
            try:
                request = _read_request(sock)
            except (OSError, ValueError):
                return
            hit = Hit(request, time.monotonic())
            self.hits.append(hit)
            matching = [p for p in self.routes if request.path.endswith(p)]
            behaviour = self.routes[max(matching, key=len)] if matching else _not_found
            try:
                behaviour(Conn(sock, hit, self._stop), request)
            except ClientGone:
                pass
            except OSError:
                hit.client_left = True
            finally:
                hit.writing = False
                hit.ended = time.monotonic()


def _not_found(conn: Conn, request: Request) -> None:
    conn.json(404, {"code": "NotFound", "message": f"no route for {request.path}"})


def _read_request(sock: socket.socket) -> Request:
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more or len(data) > 1_000_000:
            raise ValueError("no request")
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    while len(body) < length:
        more = sock.recv(1 << 20)
        if not more:
            break
        body += more
    path, _, query = target.partition("?")
    return Request(method, path, query, headers, body)


# ---------------------------------------------------------------------- payloads
def dashscope_event(text: str, finish: str = "null", request_id: str = "hostile-1") -> bytes:
    """One native DashScope SSE frame."""
    data = {
        "output": {
            "choices": [
                {
                    "message": {"role": "assistant", "content": [{"text": text}]},
                    "finish_reason": finish,
                }
            ]
        },
        "usage": {"input_tokens": 10, "output_tokens": 1},
        "request_id": request_id,
    }
    return f"id:1\nevent:result\n:HTTP_STATUS/200\ndata:{json.dumps(data)}\n\n".encode()


def openai_event(text: str | None, finish: str | None = None) -> bytes:
    """One ``chat.completion.chunk`` SSE frame."""
    delta = {"content": text} if text is not None else {}
    data = {
        "id": "chatcmpl-hostile",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(data)}\n\n".encode()


@dataclass
class GzipBomb:
    """A gzip stream of ``block`` repeated without end, cheap to make: after a full
    flush the compressor starts afresh, so every later block compresses to the same bytes."""

    head: bytes
    segment: bytes
    block_size: int
    ratio: float = field(init=False)

    def __post_init__(self) -> None:
        self.ratio = self.block_size / len(self.segment)

    def chunks(self) -> Iterator[bytes]:
        yield self.head
        while True:
            yield self.segment


def gzip_bomb(block: bytes) -> GzipBomb:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    segment = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(block) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert again == segment  # the premise: each block after the first is the same bytes
    assert zlib.decompressobj(31).decompress(head + segment) == block * 2
    return GzipBomb(head, segment, len(block))
