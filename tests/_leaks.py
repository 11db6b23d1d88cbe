"""What a finished (or failed, or interrupted) question must not leave behind.

No thread of ours may outlive it, and every TCP connection to the emulator that is still
open must be an idle keep-alive connection of a backend's pool, ready for the next
question — never one abandoned mid-answer. Sockets are counted by the operating system
(psutil), not by what httpx believes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

import psutil

from qaudio_magic.session import Session


def client_sockets(port: int) -> list[Any]:
    """This process's TCP connections to ``port`` that are not closed yet."""
    return [
        c
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status != psutil.CONN_TIME_WAIT
    ]


def our_threads() -> set[threading.Thread]:
    """Live threads, less the emulator's (its server and per-connection handlers)."""
    return {
        t
        for t in threading.enumerate()
        if t.name != "qaudio-emulator" and "process_request_thread" not in t.name
    }


def _pooled(session: Session) -> list[Any]:
    conns = []
    for backend in list(session._backends.values()):
        transport = getattr(getattr(backend, "_client", None), "_transport", None)
        conns += list(getattr(transport, "connections", None) or [])
    return conns


def _local_port(connection: Any) -> int | None:
    sock = connection.socket
    try:
        return sock.getsockname()[1] if sock is not None else None
    except OSError:
        return None


def assert_no_leaks(
    session: Session,
    port: int,
    threads_before: set[threading.Thread],
    *,
    settle: float = 10.0,
    sockets_before: Iterable[Any] = (),
) -> None:
    """No new thread alive; each open socket to ``port`` is an idle pooled connection
    (or one of ``sockets_before``, the test's own).

    Waits up to ``settle`` seconds for threads that are on their way out (a worker that
    was told to stop finishes its last line after the caller returned).
    """
    known = {s.laddr.port for s in sockets_before}
    deadline = time.monotonic() + settle
    while True:
        extra = {t for t in our_threads() - threads_before if t.is_alive()}
        idle = {_local_port(c) for c in _pooled(session) if c.is_idle() and not c.is_closed()}
        socks = client_sockets(port)
        stray = [s for s in socks if s.laddr.port not in idle | known]
        if (not extra and not stray) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not extra, f"threads left running: {[t.name for t in extra]}"
    assert not stray, f"connections left open (not idle in a pool): {stray}"
