"""The HTTP plumbing shared by the DashScope and OpenAI-compatible backends.

One :class:`httpx.Client` per backend, reused for keep-alive. Transport failures become
:class:`~qaudio_magic.errors.TransportError` with a one-line, key-free message; error
bodies are read as JSON or, whatever the Content-Type says, as SSE frames.

The key is attached by :class:`BearerAuth` as the request leaves, so no header dict of
ours ever holds it (a ``%xmode Verbose`` traceback prints the locals of every frame), and
httpx masks it in the request's repr. Requests go through ``_wire.WireTransport``, whose
sockets wait in slices (``_net.py``) so Ctrl-C stops a request at once;
:meth:`HTTPBackend.abort` shuts the sockets down from another thread, which is how an
interrupted batch stops its workers.

What a server sends is not trusted: every request is streamed, its body read with the
caps of ``_body.py`` and under the question's absolute deadline (``_net.deadline``), and
everything taken from it (headers, error texts) is scrubbed of keys before it is kept or
cut. :class:`HTTPBackend` is where the backends get this: :meth:`HTTPBackend.send`,
:meth:`HTTPBackend.error_of` and :func:`question_deadline`.
"""

from __future__ import annotations

import email.utils
import functools
import json
import math
import os
import socket
import ssl
import threading
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import httpx

from .._format import printable
from .._net import current_deadline, deadline
from .._secret import Secret, StreamScrubber, scrub
from .._version import __version__
from .._wire import WireTransport
from ..errors import APIError, TransportError
from ._body import ACCEPT_ENCODING, read_error_body
from ._sse import looks_like_sse, parse_events
from .base import Annotation, Completion, Event, ReasoningDelta, TextDelta

__all__ = [
    "BearerAuth",
    "Timeouts",
    "clean_id",
    "error_from_response",
    "make_client",
    "make_transport",
    "question_deadline",
    "request_id_of",
    "retry_after",
    "scrubbed",
    "too_late",
    "transport_error",
]

USER_AGENT = f"qaudio_magic/{__version__} httpx/{httpx.__version__}"
AFTER_ANSWER = 1.0  # seconds: how long what follows a complete answer is read for


@dataclass(frozen=True)
class Timeouts:
    """Connect, first byte (and gap between chunks), and the whole answer, in seconds.

    The defaults suit a 30 s clip uploaded over a slow link: a 10 MB base64 body at
    1 Mbit/s needs about 80 s to send.
    """

    connect: float = 10.0
    read: float = 60.0
    write: float = 120.0
    total: float = 600.0

    def httpx(self, left: float | None = None) -> httpx.Timeout:
        """httpx's timeouts; with ``left`` (seconds until the total deadline), no single
        wait may outlast the deadline either."""
        cap = max(left, 0.001) if left is not None else None

        def capped(value: float) -> float:
            return min(value, cap) if cap is not None else value

        return httpx.Timeout(
            connect=capped(self.connect),
            read=capped(self.read),
            write=capped(self.write),
            pool=capped(self.connect),
        )


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer <key>``, added only as the request is sent."""

    def __init__(self, key: Secret) -> None:
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._key.reveal()}"
        yield request

    def __repr__(self) -> str:
        return "BearerAuth(Secret('***'))"


class HTTPBackend:
    """What the HTTP backends share: a base URL, timeouts, extra headers and one
    keep-alive client, closed by ``close`` and broken off (Ctrl-C) by ``abort``.

    A batch worker thread may send through a client of its own instead
    (:meth:`own_connection`): one keep-alive connection that no other thread touches, so
    64 workers never wait on one another's pool lock (bench_scale).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeouts: Timeouts | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeouts = timeouts or Timeouts()
        self._headers = dict(headers or {})
        transport = make_transport()
        self._shared = (make_client(self.timeouts, transport=transport), transport)
        self._own = threading.local()  # .connection: this worker thread's own (client, transport)
        self._workers: set[tuple[httpx.Client, WireTransport]] = set()  # own_connection's
        self._workers_lock = threading.Lock()
        self._urls: dict[str, httpx.URL] = {}
        self.host = urlsplit(self.base_url).netloc or self.base_url

    def _connection(self) -> tuple[httpx.Client, WireTransport]:
        """The client (and its transport) this thread sends through: its own
        (:meth:`own_connection`), or the shared one."""
        own: tuple[httpx.Client, WireTransport] | None = getattr(self._own, "connection", None)
        return own if own is not None else self._shared

    @property
    def _client(self) -> httpx.Client:
        return self._connection()[0]

    @contextmanager
    def own_connection(self) -> Iterator[None]:
        """Inside the block, this thread's requests go through a client of its own (one
        keep-alive connection), closed at the end; for a batch's worker threads."""
        transport = make_transport(max_connections=1)
        own = (make_client(self.timeouts, transport=transport), transport)
        with self._workers_lock:
            self._workers.add(own)
        self._own.connection = own
        try:
            yield
        finally:
            self._own.connection = None
            with self._workers_lock:
                self._workers.discard(own)
            own[0].close()

    def _connections(self) -> list[tuple[httpx.Client, WireTransport]]:
        with self._workers_lock:
            return [self._shared, *self._workers]

    def close(self) -> None:
        for client, _ in self._connections():
            client.close()

    def abort(self) -> None:
        """Break off requests in flight from another thread (Ctrl-C): shut their sockets
        down. Closing a socket would leave a thread blocked in ``recv`` waiting for the
        server; ``shutdown`` wakes it at once, and the request fails with a transport error
        that drops the connection. Idle keep-alive connections go too."""
        for _, transport in self._connections():
            transport.abort()

    @property
    def total_timeout(self) -> float:
        """Seconds one whole question may take (uploads and retries included)."""
        return self.timeouts.total

    @contextmanager
    def send(
        self,
        method: str,
        url: str,
        *,
        at: float,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        auth: httpx.Auth | None = None,
    ) -> Iterator[httpx.Response]:
        """A streamed request whose connecting, sending and headers end by ``at``; the
        response is closed on leaving (its connection dropped unless fully read)."""
        client, transport = self._connection()
        merged = client.headers.copy()
        if headers:
            merged.update(headers)
        request = httpx.Request(
            method,
            self._url(url),
            content=content,
            headers=merged,
            extensions={"timeout": self.timeouts.httpx(at - time.monotonic()).as_dict()},
        )
        if auth is not None:  # BearerAuth: the key goes into the request as it leaves
            request = next(auth.sync_auth_flow(request))
        # Straight to the client's transport: what Client.send adds on top (redirects,
        # which are never followed; cookies, which no API here sets; event hooks, none)
        # cost ~40% of a request's CPU, the URL parsed anew each time included.
        with deadline(at):
            response = transport.handle_request(request)
        response.request = request
        try:
            yield response
        finally:
            response.close()

    def _url(self, url: str) -> httpx.URL:
        """``url`` parsed once per backend (the same few endpoints every request)."""
        parsed = self._urls.get(url)
        if parsed is None:
            if len(self._urls) > 64:
                self._urls.clear()
            parsed = self._urls[url] = httpx.URL(url)
        return parsed

    def error_of(self, response: httpx.Response, *, at: float, service: str) -> APIError:
        """The APIError of a non-2xx ``response``, reading at most a few KB of it by ``at``."""
        try:
            with deadline(at):
                body = read_error_body(response, self.host)
        except httpx.HTTPError:  # the error body trickled or broke: the status still tells
            body = b""
        return error_from_response(response.status_code, response.headers, body, service=service)


def scrubbed(events: Iterator[Event]) -> Iterator[Event]:
    """``events`` with keys scrubbed from the answer's text and reasoning, even when split
    across deltas (a piece that could begin a key waits for the next), and from request
    ids and annotations; their control characters shown as symbols (``printable``), so
    no terminal control code a server sends is kept, shown or stored."""
    text, thought = StreamScrubber(), StreamScrubber()
    try:
        for event in events:
            if isinstance(event, TextDelta):
                clean = printable(text.feed(event.text))
                if clean:
                    yield event if clean is event.text else TextDelta(clean)
            elif isinstance(event, ReasoningDelta):
                clean = printable(thought.feed(event.text))
                if clean:
                    yield event if clean is event.text else ReasoningDelta(clean)
            elif isinstance(event, Annotation):
                yield Annotation(clean_id(event.language), clean_id(event.emotion))
            elif isinstance(event, Completion):
                rest = printable(thought.flush())
                if rest:
                    yield ReasoningDelta(rest)
                rest = printable(text.flush())
                if rest:
                    yield TextDelta(rest)
                yield replace(event, request_id=clean_id(event.request_id))
            else:
                yield event
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()


def question_deadline(total: float) -> float:
    """The absolute deadline of a question that may take ``total`` seconds from now, or the
    earlier one already set around it (by the retry loop: retries share one deadline)."""
    at = time.monotonic() + total
    outer = current_deadline()
    return at if outer is None or at < outer else outer


def make_transport(*, max_connections: int = 16) -> WireTransport:
    """The connection pool of a client (``_wire.py``): verified TLS, no proxies from the
    environment, at most ``max_connections`` idle connections kept.

    TCP_NODELAY: a large body leaves in several writes, and on a kept-alive connection
    Nagle would hold its tail for the server's delayed ACK (~40 ms). Its sockets wait in
    slices (``_net.py``), so Ctrl-C stops it.
    """
    return WireTransport(
        ssl_context=_tls_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")),
        max_idle=max_connections,
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )


def make_client(
    timeouts: Timeouts,
    *,
    max_connections: int = 16,
    transport: WireTransport | None = None,
) -> httpx.Client:
    """A keep-alive client (on ``transport``, else a new one); redirects are not followed
    (a key must not travel elsewhere)."""
    return httpx.Client(
        timeout=timeouts.httpx(),
        transport=transport or make_transport(max_connections=max_connections),
        # only what _body.py inflates in bounded pieces: never br or zstd
        headers={"user-agent": USER_AGENT, "accept-encoding": ACCEPT_ENCODING},
        follow_redirects=False,
        trust_env=False,
    )


@functools.lru_cache(maxsize=4)
def _tls_context(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    """httpx's verifying TLS context (certifi, or ``SSL_CERT_FILE``/``SSL_CERT_DIR``: the
    arguments key the cache), made once: loading the CA bundle takes 20–40 ms, which every
    new client — a session, a batch's first request — would pay again. Contexts are safe
    to share between clients and threads."""
    return httpx.create_ssl_context()


def transport_error(
    exc: httpx.HTTPError,
    host: str,
    *,
    request_id: str | None = None,
    deadline: float | None = None,
    total: float | None = None,
) -> TransportError:
    """A one-line error for a failed connection, read or write (with the request id of
    an answer that had begun, when there is one).

    A timeout at the total ``deadline`` (each wait is capped by it) is reported as the
    total timeout, not as the read timeout it technically was.
    """
    if (
        deadline is not None
        and isinstance(exc, httpx.TimeoutException)
        and time.monotonic() >= deadline - 0.05
    ):
        return too_late(host, total, request_id)
    error = _transport_error(exc, host)
    if request_id:
        error = TransportError(f"{error} (request id {request_id})")
        error.request_id = request_id
    return error


def too_late(host: str, total: float | None, request_id: str | None) -> TransportError:
    """The whole answer outlasted the total timeout."""
    text = f"{host}: the answer took longer than " + (
        f"{total:g} s (total timeout)" if total is not None else "the total timeout"
    )
    error = TransportError(text + (f" (request id {request_id})" if request_id else ""))
    error.request_id = request_id
    return error


def _transport_error(exc: httpx.HTTPError, host: str) -> TransportError:
    if isinstance(exc, httpx.ConnectTimeout):
        text = f"cannot connect to {host}: timed out"
    elif isinstance(exc, httpx.ConnectError):
        text = f"cannot connect to {host}: {_short(exc)}"
    elif isinstance(exc, httpx.ReadTimeout):
        text = f"{host} sent nothing for too long (read timeout)"
    elif isinstance(exc, httpx.WriteTimeout):
        text = f"sending to {host} took too long (write timeout)"
    elif isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        text = f"{host} closed the connection mid-answer ({_short(exc)})"
    else:
        text = f"network error talking to {host}: {_short(exc)}"
    return TransportError(text)


def _short(exc: BaseException) -> str:
    text = scrub(str(exc).strip()) or type(exc).__name__  # scrub, then cut
    return text.splitlines()[0][:200]


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); None for
    anything else (``soon``, ``nan``, a negative or absurd number), so the retry falls
    back to its usual back-off instead of failing."""
    value = (headers.get("retry-after") or "").strip()
    if not value or len(value) > 64:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
            seconds = parsed.timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError, OSError):
            return None
        seconds = max(seconds, 0.0)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def request_id_of(headers: httpx.Headers) -> str | None:
    """The request id a server put in its headers, scrubbed and kept to one short line."""
    value = headers.get("x-request-id") or headers.get("x-dashscope-request-id")
    return clean_id(value)


def clean_id(value: object) -> str | None:
    """A request id from a server: scrubbed of keys, one printable line, at most 100
    characters."""
    if value is None or value == "":
        return None
    text = printable(" ".join(scrub(str(value)).split()))
    return text[:100] or None


def error_from_response(
    status: int, headers: httpx.Headers, body: bytes, *, service: str
) -> APIError:
    """An APIError from a non-2xx response, reading JSON or SSE-framed bodies alike."""
    text = scrub(body.decode("utf-8", "replace"))
    payload: dict[str, Any] = {}
    frame_status = None
    if looks_like_sse(text):
        events = parse_events(text)
        if events:
            frame_status = events[-1].status
            payload = _json_object(events[-1].data)
    else:
        payload = _json_object(text)
    return error_from_payload(
        frame_status or status,
        payload,
        fallback=text,
        request_id=request_id_of(headers),
        retry_after=retry_after(headers),
        service=service,
    )


def error_from_payload(
    status: int,
    payload: dict[str, Any],
    *,
    fallback: str = "",
    request_id: str | None = None,
    retry_after: float | None = None,
    service: str,
) -> APIError:
    """An APIError from DashScope (``code``/``message``) or OpenAI (``error{}``) JSON."""
    err = payload.get("error") if isinstance(payload.get("error"), dict) else None
    source = err or payload
    code = source.get("code")
    if not isinstance(code, str) or not code:  # vLLM puts the HTTP status in "code"
        code = source.get("type")
    message = source.get("message") or source.get("msg") or fallback.strip() or "(no message)"
    rid = payload.get("request_id") or payload.get("id") if err else payload.get("request_id")
    return APIError(
        status,
        _cut(str(code), 80) if code else None,
        _cut(str(message), MAX_MESSAGE),  # scrubbed, then cut
        clean_id(rid) or request_id,
        retry_after=retry_after,
        service=service,
    )


MAX_MESSAGE = 300  # characters of a service's error message shown


def _cut(text: str, limit: int) -> str:
    text = " ".join(scrub(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
