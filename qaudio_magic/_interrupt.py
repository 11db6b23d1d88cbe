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

__all__ = ["Interruptible", "interruptible"]

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
) -> Interruptible[T]:
    """Items of ``run(cancel)``, produced in a worker thread and returned in this one.

    Exceptions of the worker are raised here. Use it with ``contextlib.closing``: closing
    it before the worker finished (Ctrl-C, or the caller stopped early) sets ``cancel``,
    calls ``abort`` to break off blocking I/O, and joins the worker for up to ``grace``
    seconds.
    """
    return Interruptible(run, abort, poll=poll, grace=grace)


class Interruptible(Iterator[T]):
    """The iterator :func:`interruptible` returns.

    A class rather than a generator with ``try/finally``: on CPython 3.11 and 3.12 a
    KeyboardInterrupt that lands on certain jumps of a generator skips its ``finally``
    (a ``continue`` in an ``except`` clause; 3.10 and 3.13 are fine), and the worker would go
    on unnoticed. Here clean-up is an explicit :meth:`close`.
    """

    def __init__(
        self,
        run: Callable[[threading.Event], Iterator[T]],
        abort: Callable[[], None] | None,
        *,
        poll: float,
        grace: float,
    ) -> None:
        self.cancel = threading.Event()
        self._abort = abort
        self._poll = poll
        self._grace = grace
        self._items: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        self._finished = False

        def work() -> None:
            try:
                for item in run(self.cancel):
                    self._items.put((_ITEM, item))
            except BaseException as exc:  # handed to the waiting thread, raised there
                self._items.put((_ERROR, exc))
            else:
                self._items.put((_END, None))

        self._worker = threading.Thread(target=work, name="qaudio-request", daemon=True)
        self._worker.start()

    def __iter__(self) -> Interruptible[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        while True:
            try:
                kind, value = self._items.get(timeout=self._poll)
            except queue.Empty:
                continue  # back to waiting; Ctrl-C is raised here, between two slices
            if kind == _ITEM:
                return value  # type: ignore[no-any-return]
            self._finished = True
            if kind == _ERROR:
                raise value
            raise StopIteration

    def close(self) -> None:
        """Stop the worker if it is still running (Ctrl-C): cancel, abort, join."""
        if self._finished:
            return
        self._finished = True
        self.cancel.set()
        if self._abort is not None:
            self._abort()
        self._worker.join(self._grace)
