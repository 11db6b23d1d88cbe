"""The HTTP plumbing shared by the DashScope and OpenAI-compatible backends.

One :class:`httpx.Client` per backend, reused for keep-alive. Transport failures become
:class:`~qaudio_magic.errors.TransportError` with a one-line, key-free message; error
bodies are read as JSON or, whatever the Content-Type says, as SSE frames.

The key is attached by :class:`BearerAuth` as the request leaves, so no header dict of
ours ever holds it (a ``%xmode Verbose`` traceback prints the locals of every frame), and
httpx masks it in the request's repr. Sockets wait in slices (:func:`interruptible_transport`)
so Ctrl-C stops a request at once; :func:`abort_connections` shuts down a client's sockets
from another thread, which is how an interrupted batch stops its workers.
"""

from __future__ import annotations

import email.utils
import functools
import json
import os
import socket
import ssl
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from .._net import interruptible_transport
from .._secret import Secret
from .._version import __version__
from ..errors import APIError, TransportError
from ._sse import looks_like_sse, parse_events

__all__ = [
    "BearerAuth",
    "Timeouts",
    "abort_connections",
    "error_from_response",
    "make_client",
    "retry_after",
    "too_late",
    "transport_error",
]

USER_AGENT = f"qaudio_magic/{__version__} httpx/{httpx.__version__}"


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


def abort_connections(client: httpx.Client) -> None:
    """Shut down every socket of ``client``'s connection pool, waking blocked readers.

    httpx has no public way to abort a request from another thread, and closing a socket
    leaves a thread blocked in ``recv`` waiting until the server answers; ``shutdown``
    wakes it at once, and the request fails with a transport error that closes the
    connection. Idle keep-alive connections go too (the pool drops them on next use).
    The path to the sockets (client → transport → httpcore pool → connection → network
    stream) is walked defensively: httpx or httpcore may reshape their internals.
    """
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    for connection in list(getattr(pool, "connections", None) or []):
        inner = getattr(connection, "_connection", None)
        stream = getattr(inner, "_network_stream", None)
        get_info = getattr(stream, "get_extra_info", None)
        sock = get_info("socket") if callable(get_info) else None
        if isinstance(sock, socket.socket):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class HTTPBackend:
    """What the HTTP backends share: a base URL, timeouts, extra headers and one
    keep-alive client, closed by ``close`` and broken off (Ctrl-C) by ``abort``."""

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
        self._client = make_client(self.timeouts)
        self.host = urlsplit(self.base_url).netloc or self.base_url

    def close(self) -> None:
        self._client.close()

    def abort(self) -> None:
        """Break off requests in flight from another thread (Ctrl-C): shut their sockets."""
        abort_connections(self._client)


def make_client(timeouts: Timeouts, *, max_connections: int = 16) -> httpx.Client:
    """A keep-alive client; redirects are not followed (a key must not travel elsewhere).

    TCP_NODELAY: headers and body leave as separate writes, and on a kept-alive
    connection Nagle would hold the body's tail for the server's delayed ACK (~40 ms).
    Its sockets wait in slices (:func:`interruptible_transport`), so Ctrl-C stops it.
    """
    transport = interruptible_transport(
        verify=_tls_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )
    return httpx.Client(
        timeout=timeouts.httpx(),
        transport=transport,
        headers={"user-agent": USER_AGENT},
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
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def retry_after(headers: httpx.Headers) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    parsed = email.utils.parsedate_to_datetime(value)
    if parsed is None:
        return None
    return max(parsed.timestamp() - time.time(), 0.0)


def error_from_response(
    status: int, headers: httpx.Headers, body: bytes, *, service: str
) -> APIError:
    """An APIError from a non-2xx response, reading JSON or SSE-framed bodies alike."""
    text = body.decode("utf-8", "replace")
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
        request_id=headers.get("x-request-id") or headers.get("x-dashscope-request-id"),
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
    message = source.get("message") or source.get("msg") or fallback.strip()[:300] or "(no message)"
    rid = payload.get("request_id") or payload.get("id") if err else payload.get("request_id")
    return APIError(
        status,
        str(code) if code else None,
        str(message),
        rid or request_id,
        retry_after=retry_after,
        service=service,
    )


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
