"""Sockets that Ctrl-C can stop: every blocking wait is cut into 0.1 s slices.

A kernel interrupt is a ``KeyboardInterrupt`` raised in the main thread — but only when
that thread next runs Python code. A thread blocked in ``recv`` (waiting for a first
token, an upload's reply) or in ``connect`` does not: on Windows, where ipykernel
interrupts with ``_thread.interrupt_main()``, and on Linux whenever the SIGINT lands on
another of the kernel's threads, Ctrl-C would wait for the server or the timeout. So
httpcore's socket I/O is replaced by the same calls with short socket timeouts, looped
until the real timeout: between two slices Python runs, and a pending Ctrl-C is raised
right there — at an I/O point, where httpcore closes the connection on any exception.

Why not run requests on a worker thread and wait in slices on the main thread? That
works too, but costs a thread hand-off per streamed chunk (about 0.5 ms per question on
loopback, measured with ``bench/bench_overhead.py``); slicing costs nothing while data
flows.

The same slices keep the **total deadline** of a question whatever the server does. httpx's
``read`` timeout restarts with every ``recv``, so headers or a body trickled a byte at a
time, or keep-alive comments, would never trip it. :func:`deadline` sets an absolute
deadline (a context variable, so each thread of a batch has its own) that every connect,
read and write below checks before each slice, whether or not bytes keep coming; past it
they raise httpcore's timeout, which closes the connection. It is set only around
blocking calls (never across a ``yield``), by the backends and by the retry loop.

Loops here never ``continue`` from inside an ``except`` clause: on CPython 3.11 and 3.12 a
KeyboardInterrupt raised at that jump skips enclosing ``finally`` blocks (3.10 and 3.13
are fine), and a skipped clean-up would leave a connection open.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import select
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpcore
import httpx
from httpcore._backends.sync import SyncBackend, SyncStream

__all__ = [
    "SLICE",
    "SlicedBackend",
    "SlicedStream",
    "current_deadline",
    "deadline",
    "each_within",
    "interruptible_transport",
    "is_loopback",
    "ready",
    "sliced_sleep",
]

SLICE = 0.1  # seconds: the longest Ctrl-C waits for a blocked socket
_IN_PROGRESS = {errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EALREADY, 10035}  # 10035: Windows
_AT: ContextVar[float | None] = ContextVar("qaudio_deadline", default=None)
T = TypeVar("T")


def current_deadline() -> float | None:
    """The absolute deadline (``time.monotonic()``) in force here, if any."""
    return _AT.get()


@contextmanager
def deadline(at: float | None) -> Iterator[None]:
    """Every socket wait in this block ends by ``at`` (``time.monotonic()``) at the latest.

    Nested blocks keep the earlier deadline. Do not ``yield`` inside the block: the
    deadline would stay set in the consumer's context.
    """
    outer = _AT.get()
    token = _AT.set(at if outer is None else outer if at is None else min(at, outer))
    try:
        yield
    finally:
        _AT.reset(token)


def each_within(items: Iterable[T], at: float | None) -> Iterator[T]:
    """``items``, each one fetched under :func:`deadline` ``(at)`` (a streamed body), or
    under an earlier deadline set around the loop that consumes them."""
    it = iter(items)
    end = object()
    while True:  # inline, not `with deadline(at)`: this runs once per chunk or event
        outer = _AT.get()
        token = _AT.set(at if outer is None or (at is not None and at < outer) else outer)
        try:
            item = next(it, end)
        finally:
            _AT.reset(token)
        if item is end:
            return
        yield item  # type: ignore[misc]


def _left(deadline: float | None) -> float:
    """The next slice: SLICE, or less when a deadline is closer (0 when one passed)."""
    at = _AT.get()
    if at is not None and (deadline is None or at < deadline):
        deadline = at
    if deadline is None:
        return SLICE
    return max(min(SLICE, deadline - time.monotonic()), 0.0)


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def sliced_sleep(seconds: float) -> None:
    """``time.sleep`` that Ctrl-C interrupts within a slice, however it is delivered."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, SLICE))


def _wait_at_most(sock: socket.socket, wait: float) -> None:
    """``sock.settimeout(wait)`` unless it is set so already (a full slice, nearly always):
    setting it is a system call that lets go of the GIL, which 64 batch threads then
    pass around, once per read and write."""
    if sock.gettimeout() != wait:
        sock.settimeout(wait)


class SlicedStream(SyncStream):
    """httpcore's blocking stream, waiting in slices."""

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        deadline = _deadline(timeout)
        while True:
            wait = _left(deadline)
            if wait <= 0:
                raise httpcore.ReadTimeout("timed out")
            data = self._read_slice(max_bytes, wait)
            if data is not None:
                return data

    def _read_slice(self, max_bytes: int, wait: float) -> bytes | None:
        """Bytes, or None when this slice passed without any."""
        try:
            _wait_at_most(self._sock, wait)
            return self._sock.recv(max_bytes)
        except TimeoutError:
            return None
        except OSError as exc:
            raise httpcore.ReadError(exc) from exc

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        deadline = _deadline(timeout)  # a write stall: no byte accepted for `timeout`
        view = memoryview(buffer)
        while view:
            wait = _left(deadline)
            if wait <= 0:
                raise httpcore.WriteTimeout("timed out")
            sent = self._write_slice(view, wait)
            if sent:
                view = view[sent:]
                deadline = _deadline(timeout)

    def _write_slice(self, view: memoryview, wait: float) -> int:
        try:
            _wait_at_most(self._sock, wait)
            return self._sock.send(view)
        except TimeoutError:
            return 0
        except OSError as exc:
            raise httpcore.WriteError(exc) from exc

    def start_tls(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        stream = super().start_tls(*args, **kwargs)
        if type(stream) is SyncStream:  # keep slicing over TLS (not TLS-in-TLS proxies)
            return SlicedStream(stream._sock)
        return stream


class SlicedBackend(SyncBackend):
    """httpcore's sync network backend, connecting and waiting in slices."""

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        deadline = _deadline(timeout)
        source = None if local_address is None else (local_address, 0)
        try:
            sock = _connect(host, port, deadline, source)
        except TimeoutError:
            raise httpcore.ConnectTimeout("timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(exc) from exc
        for option in socket_options or ():
            sock.setsockopt(*option)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return SlicedStream(sock)


def ready(sock: socket.socket, *, write: bool = False, wait: float = 0.0) -> bool:
    """Whether ``sock`` can be read (or written) within ``wait`` seconds. poll() where the
    platform has it: select() refuses descriptors past 1024, which a long session with many
    files open reaches."""
    fd = sock.fileno()
    if fd < 0:
        raise OSError(errno.EBADF, "the socket is closed")
    if hasattr(select, "poll"):
        waiting = select.poll()
        waiting.register(fd, select.POLLOUT if write else select.POLLIN)
        return bool(waiting.poll(wait * 1000))
    readable, writable, _ = select.select([] if write else [fd], [fd] if write else [], [], wait)
    return bool(writable if write else readable)


def _connect(
    host: str, port: int, deadline: float | None, source: tuple[str, int] | None
) -> socket.socket:
    """``socket.create_connection`` with the wait for each address cut into slices."""
    error: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            if source is not None:
                sock.bind(source)
            sock.setblocking(False)
            code = sock.connect_ex(address)
            while code in _IN_PROGRESS:
                wait = _left(deadline)
                if wait <= 0:
                    raise TimeoutError("timed out")
                writable = ready(sock, write=True, wait=wait)
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) if writable else -1
                code = errno.EINPROGRESS if code == -1 else code
            if code:
                raise OSError(code, os.strerror(code))
            sock.setblocking(True)
            return sock
        except OSError as exc:  # (socket.timeout too): try the next address, or raise
            sock.close()
            error = exc
            if isinstance(exc, socket.timeout):
                raise
    raise error or OSError(f"cannot resolve {host}")


def interruptible_transport(**kwargs: Any) -> httpx.HTTPTransport:
    """httpx's transport, its sockets waiting in 0.1 s slices so that Ctrl-C stops a
    request within a slice however it is delivered (see the module docstring).

    httpx takes no network backend, so it is set on the httpcore pool it builds; should
    that pool ever look different, the transport is returned as httpx made it.
    """
    transport = httpx.HTTPTransport(**kwargs)
    pool = getattr(transport, "_pool", None)
    if pool is not None and hasattr(pool, "_network_backend"):
        pool._network_backend = SlicedBackend()
    return transport


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine (the emulator, a test server)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
