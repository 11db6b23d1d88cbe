"""The API backends' HTTP transport: HTTP/1.1 through h11, on sockets that wait in slices.

Why not httpx's own transport (httpcore's pool): a batch's 64 worker threads each send
through a connection of their own, and every request through httpcore cost ~0.3–0.45 ms of
CPU against ~0.15 ms for the same bytes through h11 directly (``bench/bench_scale.py``
measures the whole batch). The difference is not HTTP: it is a pool that scans its
connections under a lock at every request and response, trace hooks, request and
response models validated again, and a system call that sets the socket's timeout before
every read and write — each system call lets go of the GIL, which 64 threads then pass
around. h11 (httpcore's own HTTP/1.1 engine) still parses and validates every byte; this
module keeps only what the backends use: plain and TLS connections to the origins they
are given (no proxies, no HTTP/2), kept alive per origin, and
:meth:`WireTransport.abort`, which shuts every socket down from another thread.

Sockets are httpcore's sliced streams (``_net.py``): Ctrl-C and the question's absolute
deadline are seen within a slice, exactly as before.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import h11
import httpcore
import httpx

from ._net import SlicedBackend, SlicedStream, ready

__all__ = ["WireTransport"]

# DEBUG records quote response heads, as httpcore's do (scrubbed of keys: _secret.py)
log = logging.getLogger("qaudio_magic.wire")

READ_BYTES = 64 * 1024  # what one recv asks for (httpcore's figure)
MAX_HEAD = 100 * 1024  # the longest response head accepted (httpcore's figure)
KEEPALIVE_EXPIRY = 5.0  # seconds an idle connection is kept (httpx's default)
_COALESCE = 256 * 1024  # a body up to this size leaves in one write with its head

_Origin = tuple[bytes, bytes, int]  # scheme, host, port

_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (h11.RemoteProtocolError, httpx.RemoteProtocolError),
    (h11.LocalProtocolError, httpx.LocalProtocolError),
)


@contextlib.contextmanager
def _as_httpx() -> Iterator[None]:
    """httpcore's and h11's exceptions as the httpx ones the backends handle."""
    try:
        yield
    except Exception as exc:
        for theirs, ours in _ERRORS:
            if isinstance(exc, theirs):
                raise ours(str(exc) or type(exc).__name__) from exc
        raise


class _Connection:
    """One socket and its h11 state machine; used by one request at a time."""

    def __init__(self, stream: SlicedStream, origin: _Origin) -> None:
        self.stream = stream
        self.origin = origin
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        self.idle_since = 0.0
        self.closed = False

    @property
    def socket(self) -> Any:
        return self.stream.get_extra_info("socket")

    def is_idle(self) -> bool:
        return self.idle_since > 0.0 and not self.closed

    def is_closed(self) -> bool:
        return self.closed

    def stale(self, now: float) -> bool:
        """Idle too long, or the server spoke while it was idle (closed it, most often)."""
        if now - self.idle_since > KEEPALIVE_EXPIRY:
            return True
        try:
            return ready(self.socket)
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self.stream.close()

    def shutdown(self) -> None:
        """Wake a thread blocked on this socket (closing it would not)."""
        sock = self.socket
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(2)  # SHUT_RDWR

    # ------------------------------------------------------------------ one exchange
    def send_request(self, request: httpx.Request, timeout: float | None) -> None:
        head = self.h11.send(
            h11.Request(
                method=request.method, target=request.url.raw_path, headers=request.headers.raw
            )
        )
        pending = [head or b""]
        size = len(pending[0])
        for chunk in _chunks(request.stream):
            data = self.h11.send(h11.Data(data=chunk)) or b""
            if size + len(data) > _COALESCE:
                self._write(pending, timeout)
                pending, size = [], 0
            pending.append(data)
            size += len(data)
        pending.append(self.h11.send(h11.EndOfMessage()) or b"")
        self._write(pending, timeout)

    def _write(self, pieces: list[bytes], timeout: float | None) -> None:
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if data:
            self.stream.write(data, timeout)

    def next_event(self, timeout: float | None) -> Any:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.h11.receive_data(self.stream.read(READ_BYTES, timeout))

    def response_head(self, timeout: float | None) -> h11.Response:
        while True:
            event = self.next_event(timeout)
            if isinstance(event, h11.Response):
                return event
            if isinstance(event, h11.InformationalResponse):
                continue  # 100 Continue and the like: the real answer follows
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")

    def reusable(self) -> bool:
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE


class _Body(httpx.SyncByteStream):
    """A response body read from its connection as the caller iterates; closing it
    returns a fully read connection to the pool and drops any other."""

    def __init__(self, pool: WireTransport, conn: _Connection, timeout: float | None) -> None:
        self._pool = pool
        self._conn = conn
        self._timeout = timeout
        self._complete = False
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx():
            while not self._complete:
                event = self._conn.next_event(self._timeout)
                if isinstance(event, h11.Data):
                    yield bytes(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    self._complete = True
                else:
                    raise httpx.RemoteProtocolError(
                        "peer closed connection without sending complete message body"
                    )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        conn = self._conn
        if self._complete and conn.reusable():
            conn.h11.start_next_cycle()
            self._pool._check_in(conn)
        else:
            self._pool._drop(conn)


def _chunks(stream: Any) -> Iterator[bytes]:
    """The non-empty pieces of a request's body (``request.stream``, a sync byte stream)."""
    return (bytes(c) for c in stream if c)


class WireTransport(httpx.BaseTransport):
    """Keep-alive HTTP/1.1 connections per origin (at most ``max_idle`` idle each),
    TLS verified with ``ssl_context``; each request has a connection to itself."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        max_idle: int = 16,
        socket_options: Iterable[Any] = (),
    ) -> None:
        self.ssl_context = ssl_context
        self._max_idle = max_idle
        self._options = list(socket_options)
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._lock = threading.Lock()
        self._backend = SlicedBackend()
        self._closed = False  # after close(), no connection is kept (a late request's either)

    @property
    def connections(self) -> list[_Connection]:
        """Every open connection, idle or busy (for tests and diagnostics)."""
        with self._lock:
            return [*self._busy, *(c for idle in self._idle.values() for c in idle)]

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout") or {}
        url = request.url
        scheme = url.raw_scheme
        port = url.port or (443 if scheme == b"https" else 80)
        origin = (scheme, url.raw_host, port)
        with _as_httpx():
            conn = self._check_out(origin, timeouts.get("connect"))
            try:
                conn.send_request(request, timeouts.get("write"))
                head = conn.response_head(timeouts.get("read"))
            except BaseException:
                self._drop(conn)
                raise
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s %s -> %d %r %r",
                request.method,
                url,
                head.status_code,
                head.reason,
                head.headers.raw_items(),
            )
        return httpx.Response(
            head.status_code,
            headers=head.headers.raw_items(),
            stream=_Body(self, conn, timeouts.get("read")),
            extensions={"http_version": b"HTTP/" + head.http_version, "reason_phrase": head.reason},
        )

    def _check_out(self, origin: _Origin, connect_timeout: float | None) -> _Connection:
        now = time.monotonic()
        while True:
            with self._lock:
                idle = self._idle.get(origin)
                conn = idle.pop() if idle else None  # the newest: least likely to expire
                if conn is not None:
                    self._busy.add(conn)
            if conn is None:
                break
            if not conn.stale(now):  # looked at outside the lock: it is a system call
                conn.idle_since = 0.0
                return conn
            self._drop(conn)
        conn = self._open(origin, connect_timeout)
        with self._lock:
            self._busy.add(conn)
        return conn

    def _open(self, origin: _Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        name = host.decode("ascii")
        stream = self._backend.connect_tcp(name, port, timeout, socket_options=self._options)
        if scheme == b"https":
            try:
                stream = stream.start_tls(self.ssl_context, server_hostname=name, timeout=timeout)
            except BaseException:
                stream.close()
                raise
        assert isinstance(stream, SlicedStream)
        return _Connection(stream, origin)

    def _check_in(self, conn: _Connection) -> None:
        with self._lock:
            self._busy.discard(conn)
            idle = self._idle.setdefault(conn.origin, [])
            keep = not conn.closed and not self._closed and len(idle) < self._max_idle
            if keep:
                conn.idle_since = time.monotonic()
                idle.append(conn)
        if not keep:
            conn.close()

    def _drop(self, conn: _Connection) -> None:
        with self._lock:
            self._busy.discard(conn)
            idle = self._idle.get(conn.origin)
            if idle and conn in idle:
                idle.remove(conn)
        conn.close()

    def abort(self) -> None:
        """Shut every socket down, waking threads blocked on them; each request in flight
        fails with a transport error and its connection is dropped."""
        for conn in self.connections:
            conn.shutdown()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns = [*self._busy, *(c for idle in self._idle.values() for c in idle)]
            self._idle.clear()
        for conn in conns:
            conn.close()
