"""The emulator's HTTP layer: a loopback HTTP/1.1 server with keep-alive and chunked SSE.

Routes return a :class:`Reply` (JSON or a stream of SSE frames); this layer applies the
faults (latency, resets, error statuses, cut or broken streams) so every route gets
them for free, and records each request for tests to inspect.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.client import HTTPMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from .faults import Fault, FaultPlan, default_error

__all__ = ["EmulatorServer", "Frame", "RecordedRequest", "Reply"]


@dataclass
class ReceivedAudio:
    """One audio item as the emulator received and decoded it."""

    kind: str  # "data" | "url" | "oss"
    size: int  # encoded bytes
    sha256: str
    duration: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    codec: str | None = None
    error: str | None = None
    data: bytes | None = field(default=None, repr=False)


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes = field(repr=False)
    json: Any = field(default=None, repr=False)
    audio: list[ReceivedAudio] = field(default_factory=list)
    status: int | None = None  # what the emulator answered
    # What the emulator did, for tests to check order and causality without a clock of
    # their own: the fault it applied (``Fault()``: none), when (``time.monotonic()``) the
    # response head and each streamed event left, whether the whole reply was written,
    # and an event set once the emulator is through with the request, however it ended.
    fault: Fault = field(default_factory=Fault)
    head_at: float | None = None
    events_at: list[float] = field(default_factory=list)
    completed: bool = False
    done: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)


@dataclass
class Frame:
    """One SSE event: ``data`` is JSON-encoded unless already text."""

    data: Any
    event: str = "result"
    status: int = 200


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-able, bytes or str (non-stream)
    frames: Iterator[Frame] | None = None  # SSE stream
    headers: dict[str, str] = field(default_factory=dict)
    sse_style: str = "dashscope"  # "dashscope" (id/event/:HTTP_STATUS) or "openai" (data: ...)


Route = Callable[["RecordedRequest", Fault], Reply]


class RateLimiting(Protocol):
    """What the server asks of its rate limits (``ratelimit.RateLimits``)."""

    def admit(self, request: RecordedRequest) -> Reply | None: ...

    def charged(self, request: RecordedRequest, reply: Reply) -> Reply: ...


class _Headers(HTTPMessage):
    """Request headers, parsed by http.server as usual, except that a multipart
    Content-Type is not taken as a promise of MIME parts: the email parser behind
    ``http.client.parse_headers`` compiles a regular expression for every new boundary
    (~130 µs an upload, and each one evicts an entry from ``re``'s cache). The emulator
    reads headers as a dict (:attr:`RecordedRequest.headers`), never as MIME structure.
    """

    def get_content_maintype(self) -> str:
        return "text"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    MessageClass = _Headers
    # Headers and body go out as separate writes; with Nagle on, the body waits for the
    # client's delayed ACK (~40 ms on Linux loopback) and every reply looks slow.
    disable_nagle_algorithm = True
    server: EmulatorServer

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        received = time.monotonic()
        headers = {k.lower(): v for k, v in self.headers.items()}
        record = RecordedRequest(self.command, split.path, parse_qs(split.query), headers, body)
        fault = self.server.faults.pick(split.path, headers.get("x-emulator-fault"))
        record.fault = fault
        self.server.record(record)
        try:
            self._answer(record, fault, split.path, received)
        finally:
            record.done.set()

    def _answer(self, record: RecordedRequest, fault: Fault, path: str, received: float) -> None:
        if fault.reset:
            time.sleep(fault.latency)
            self._reset()
            return
        route = self.server.route_for(self.command, path)
        if route is None:
            reply = Reply(
                404,
                {
                    "code": "NotFound",
                    "message": f"no route {path}",
                    "request_id": str(uuid.uuid4()),
                },
            )
        elif (refusal := self.server.over_rate_limit(record)) is not None:
            reply = refusal
        elif fault.is_error:
            code, message = default_error(fault.status)
            reply = Reply(
                fault.status,
                {
                    "code": fault.code or code,
                    "message": fault.message or message,
                    "request_id": str(uuid.uuid4()),
                },
            )
            if fault.retry_after:
                reply.headers["Retry-After"] = fault.retry_after
        else:
            try:
                reply = route(record, fault)
            except Exception as exc:
                reply = Reply(
                    500,
                    {
                        "code": "InternalError",
                        "message": f"emulator bug: {exc!r}",
                        "request_id": str(uuid.uuid4()),
                    },
                )
            if reply.frames is None and reply.status == 200 and fault.error_after >= 0:
                # a whole-JSON answer cannot break off mid-way: it carries the error instead
                code, message = default_error(fault.status or 400)
                rid = reply.body.get("request_id") if isinstance(reply.body, dict) else None
                reply = Reply(
                    fault.status or 400,
                    {
                        "code": fault.code or code,
                        "message": fault.message or message,
                        "request_id": rid or str(uuid.uuid4()),
                    },
                )
        record.status = reply.status
        if self.server.rate_limits is not None:
            reply = self.server.rate_limits.charged(record, reply)
        # `latency` is the time before the response starts: the work above is part of it,
        # as a real service's own work is part of the latency its clients see.
        time.sleep(max(0.0, fault.latency - (time.monotonic() - received)))
        try:
            record.completed = self._send(reply, fault, record)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # ------------------------------------------------------------------ writing
    def _reset(self) -> None:
        try:
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
        except OSError:
            pass
        self.close_connection = True
        self.connection.close()

    def _send(self, reply: Reply, fault: Fault, record: RecordedRequest) -> bool:
        """Write the reply; False when a fault broke it off on purpose."""
        if reply.frames is None:
            return self._send_body(reply, fault, record)
        if fault.sse_as_json or fault.sse_error:
            return self._send_sse_error(reply, fault, record)
        self.send_response(reply.status)
        self.send_header("Content-Type", "text/event-stream;charset=UTF-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        for k, v in reply.headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.flush()
        record.head_at = time.monotonic()
        if fault.ttft:
            time.sleep(fault.ttft)
        # Frames made back to back (no token rate, no fault mid-stream) leave in one write:
        # the same bytes and chunks, without a syscall (and a GIL hand-off) per token.
        together = not fault.token_rate and fault.cut_after < 0 and fault.error_after < 0
        pending: list[bytes] = []
        n = 0
        rid = None
        for frame in reply.frames:
            if isinstance(frame.data, dict):
                rid = frame.data.get("request_id", rid)
            if fault.cut_after >= 0 and n >= fault.cut_after:
                self._reset()
                return False
            if fault.error_after >= 0 and n >= fault.error_after:
                code, message = default_error(fault.status or 400)
                frame = Frame(
                    {
                        "code": fault.code or code,
                        "message": fault.message or message,
                        "request_id": rid,
                    },
                    "error",
                    fault.status or 400,
                )
                self._chunk(self._frame_bytes(reply, frame, n + 1, fault))
                record.events_at.append(time.monotonic())
                break
            if n and fault.token_rate:
                time.sleep(1.0 / fault.token_rate)
            if together:
                pending.append(_chunked(self._frame_bytes(reply, frame, n + 1, fault)))
            else:
                self._chunk(self._frame_bytes(reply, frame, n + 1, fault))
                record.events_at.append(time.monotonic())
            n += 1
        pending.append(b"0\r\n\r\n")
        self.wfile.write(b"".join(pending))
        self.wfile.flush()
        if together:
            record.events_at.extend([time.monotonic()] * n)
        return True

    def _frame_bytes(self, reply: Reply, frame: Frame, n: int, fault: Fault) -> bytes:
        data = (
            frame.data
            if isinstance(frame.data, str)
            else json.dumps(frame.data, ensure_ascii=False)
        )
        if fault.malformed:
            data = data[: max(len(data) // 2, 1)] + "#garbage"
        if reply.sse_style == "openai":
            if frame.event == "error":  # DashScope compatible mode still sends these mid-stream
                return f"id:{n}\nevent:error\n:HTTP_STATUS/{frame.status}\ndata:{data}\n\n".encode()
            return f"data: {data}\n\n".encode()
        return f"id:{n}\nevent:{frame.event}\n:HTTP_STATUS/{frame.status}\ndata:{data}\n\n".encode()

    def _chunk(self, payload: bytes) -> None:
        self.wfile.write(_chunked(payload))
        self.wfile.flush()

    def _send_body(self, reply: Reply, fault: Fault, record: RecordedRequest) -> bool:
        if fault.sse_as_json or fault.sse_error:
            return self._send_sse_error(reply, fault, record)
        if isinstance(reply.body, bytes):
            payload, ctype = (
                reply.body,
                reply.headers.pop("Content-Type", "application/octet-stream"),
            )
        elif isinstance(reply.body, str):
            payload, ctype = reply.body.encode(), reply.headers.pop("Content-Type", "text/plain")
        else:
            payload = json.dumps(reply.body, ensure_ascii=False).encode()
            ctype = "application/json;charset=UTF-8"
            if fault.malformed:
                payload = payload[: max(len(payload) // 2, 1)] + b"#garbage"
        self.send_response(reply.status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        for k, v in reply.headers.items():
            self.send_header(k, v)
        self.end_headers()
        record.head_at = time.monotonic()
        if fault.cut_after >= 0:  # a body cut off half-way: the connection drops mid-answer
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self._reset()
            return False
        self.wfile.write(payload)
        self.wfile.flush()
        return True

    def _send_sse_error(self, reply: Reply, fault: Fault, record: RecordedRequest) -> bool:
        """A 4xx whose body is SSE frames, labelled JSON (seen in the wild) or event-stream."""
        status = fault.status or 400
        code, message = default_error(status)
        frame = Frame(
            {
                "code": fault.code or code,
                "message": fault.message or message,
                "request_id": str(uuid.uuid4()),
            },
            "error",
            status,
        )
        payload = self._frame_bytes(reply, frame, 1, Fault())
        self.send_response(status)
        ctype = "application/json" if fault.sse_as_json else "text/event-stream"
        self.send_header("Content-Type", f"{ctype};charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        record.head_at = time.monotonic()
        self.wfile.write(payload)
        self.wfile.flush()
        return True


def _chunked(payload: bytes) -> bytes:
    """One chunk of a ``Transfer-Encoding: chunked`` body."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _weight(request: RecordedRequest) -> int:
    """Bytes a recorded request holds, about: its body, the JSON parsed from it, decoded audio."""
    return 3 * len(request.body) + 1_000


class EmulatorServer(ThreadingHTTPServer):
    """Loopback-only HTTP server with pluggable routes, faults and a request log."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64  # socketserver's 5 drops the SYNs of a batch opening 16 connections

    def __init__(
        self,
        port: int = 0,
        *,
        faults: FaultPlan | None = None,
        verbose: bool = False,
        keep: int = 10_000,
        keep_bytes: int = 64_000_000,
    ) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.faults = faults or FaultPlan()
        self.verbose = verbose
        self.routes: list[tuple[str, str, Route]] = []
        self.requests: list[RecordedRequest] = []
        self._keep = keep  # requests kept for tests to inspect, newest last...
        self._keep_bytes = keep_bytes  # ...and at most about this many bytes of them, so
        # an emulator serving inline audio for hours does not grow without bound
        self._kept_bytes = 0
        self._lock = threading.Lock()
        self.rate_limits: RateLimiting | None = None  # set by the Emulator (ratelimit.py)

    def over_rate_limit(self, request: RecordedRequest) -> Reply | None:
        """The 429 that ``request`` gets for being over its model's rate limit, if any."""
        return self.rate_limits.admit(request) if self.rate_limits is not None else None

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Connections broken on purpose (reset faults) or by clients are not news."""
        if self.verbose:
            super().handle_error(request, client_address)

    def add_route(self, method: str, prefix: str, route: Route) -> None:
        self.routes.append((method, prefix, route))

    def route_for(self, method: str, path: str) -> Route | None:
        for m, prefix, route in self.routes:
            if m == method and (
                path == prefix or (prefix.endswith("/") and path.startswith(prefix))
            ):
                return route
        return None

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            if not self.requests:  # cleared by a test
                self._kept_bytes = 0
            self.requests.append(request)
            self._kept_bytes += _weight(request)
            drop = 0
            while len(self.requests) - drop > 1 and (
                len(self.requests) - drop > self._keep or self._kept_bytes > self._keep_bytes
            ):
                self._kept_bytes -= _weight(self.requests[drop])
                drop += 1
            if drop:
                del self.requests[:drop]

    @property
    def port(self) -> int:
        return int(self.server_address[1])
