"""Ctrl-C that works while a request is blocked on the network.

A kernel interrupt is a ``KeyboardInterrupt`` raised in the main thread — but only when
that thread next runs Python code. A thread blocked in ``recv`` (waiting for the first
token, an upload's reply, a connect) does not run Python code: on Windows, where
ipykernel interrupts with ``_thread.interrupt_main()``, and on Linux whenever the SIGINT
is delivered to another of the kernel's threads, the interrupt would wait for the
server. So a question asked from the main thread runs its request in a worker thread
and the main thread waits in short slices (0.1 s), where Ctrl-C always lands. On Ctrl-C
the worker is told to stop (``cancel``: retry back-off waits wake at once), the
request's sockets are shut down (``abort``), and the worker is joined.

Batches run their requests in worker threads already (:mod:`qaudio_magic.batch`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

__all__ = ["interruptible"]

T = TypeVar("T")

_ITEM, _ERROR, _END = 0, 1, 2
POLL = 0.1  # seconds between checks for Ctrl-C while waiting
GRACE = 1.0  # seconds to wait for the worker after Ctrl-C


def interruptible(
    run: Callable[[threading.Event], Iterator[T]],
    abort: Callable[[], None] | None = None,
    *,
    poll: float = POLL,
    grace: float = GRACE,
) -> Iterator[T]:
    """Items of ``run(cancel)``, produced in a worker thread and yielded in this one.

    Exceptions of the worker are raised here. When this generator is left before the
    worker finished (Ctrl-C, or the caller stopped early), ``cancel`` is set, ``abort``
    is called to break off blocking I/O, and the worker is joined for up to ``grace``
    seconds.
    """
    cancel = threading.Event()
    items: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()

    def work() -> None:
        try:
            for item in run(cancel):
                items.put((_ITEM, item))
        except BaseException as exc:  # handed to the waiting thread, raised there
            items.put((_ERROR, exc))
        else:
            items.put((_END, None))

    worker = threading.Thread(target=work, name="qaudio-request", daemon=True)
    worker.start()
    finished = False
    try:
        while True:
            try:
                kind, value = items.get(timeout=poll)
            except queue.Empty:
                continue
            if kind == _ITEM:
                yield value
            elif kind == _ERROR:
                finished = True
                raise value
            else:
                finished = True
                return
    finally:
        if not finished:
            cancel.set()
            if abort is not None:
                abort()
            worker.join(grace)
