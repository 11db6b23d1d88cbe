"""One retry policy for single questions and batches.

Rate limits (429 ``Throttling*``), server faults (5xx) and broken connections are retried
with exponential backoff and full jitter, honouring ``Retry-After``. Quota, key, content
and parameter errors are final (:attr:`APIError.retryable`). An answer that already
showed text is never retried: that would print the same words twice, and in a batch it
would hide that the service broke off mid-answer.

Waits go through a :class:`threading.Event` when one is given, so a batch that is
cancelled (Ctrl-C) wakes its sleeping workers at once instead of after the backoff.

One deadline covers the whole question: a backend with a ``total_timeout`` gets
``total_timeout`` seconds for every try, the uploads in them and the waits between them
together (``_net.deadline`` is set around each step of the stream). A retry
whose wait would end past the deadline is not made: the last error is raised instead.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import APIError, Interrupted, QAudioError, TransportError

if TYPE_CHECKING:
    from ._ratelimit import RateLimiter
    from .backends.base import Backend, Event, Request

__all__ = ["RetryPolicy", "with_retries"]


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # tries in all, the first included
    base: float = 0.5  # seconds before the first retry (before jitter)
    cap: float = 20.0  # longest wait between tries
    max_retry_after: float = 60.0  # longer Retry-After values are not waited for

    def delay(self, attempt: int, error: QAudioError, *, text_seen: bool) -> float | None:
        """Seconds to wait before try ``attempt + 1``, or None to give up now."""
        if text_seen or attempt >= self.attempts:
            return None
        if isinstance(error, APIError):
            if not error.retryable:
                return None
            after = error.retry_after
            if after is not None and math.isfinite(after) and after >= 0:  # else: junk
                if after > self.max_retry_after:
                    return None
                # at least what the server asked for; a little spread so that a batch's
                # workers, all told "1 s", do not come back in the same millisecond
                return after * random.uniform(1.0, 1.1)
        elif not isinstance(error, TransportError):
            return None
        return random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))


def with_retries(
    backend: Backend,
    request: Request,
    policy: RetryPolicy,
    *,
    cancel: threading.Event | None = None,
    on_attempt: Callable[[int], None] | None = None,
    limiter: RateLimiter | None = None,
    input_tokens: int = 0,
) -> Generator[Event, None, None]:
    """Events of ``request``, retried per ``policy`` while no text has been produced.

    ``cancel`` (set from another thread) stops between tries and between events with
    :class:`Interrupted`; ``on_attempt`` is told the number of each try as it starts.
    With a ``limiter`` every try waits for its slot under the route's rate limit (counted
    as ``input_tokens`` plus the output it is expected to write) before it is sent.
    Everything ends by the backend's ``total_timeout`` from when the first try is sent,
    retries included (waiting for a first slot is not time spent on the answer).
    """
    from ._net import each_within, sliced_sleep
    from .backends.base import AudioDelta, Completion, ReasoningDelta, TextDelta

    total = getattr(backend, "total_timeout", None)  # HTTP backends; the local one has none
    at: float | None = None
    attempt = 0
    while True:
        attempt += 1
        if cancel is not None and cancel.is_set():
            raise Interrupted("interrupted before the request was sent")
        permit = None
        if limiter is not None:
            try:
                permit = limiter.acquire(input_tokens, wait=_waiter(cancel))
            except InterruptedError:
                raise Interrupted("interrupted while waiting for the rate limit") from None
        if at is None and isinstance(total, (int, float)):
            at = time.monotonic() + total
        if on_attempt is not None:
            on_attempt(attempt)
        seen = False
        events = backend.stream(request)
        try:  # each step of the backend under the question's deadline
            for event in each_within(events, at):
                if cancel is not None and cancel.is_set():
                    raise Interrupted("interrupted mid-answer")
                if isinstance(event, (TextDelta, ReasoningDelta, AudioDelta)):
                    seen = True  # something was shown: asking again would show it twice
                elif limiter is not None and permit is not None and isinstance(event, Completion):
                    used = event.usage.total_tokens if event.usage else None
                    limiter.settle(permit, used or None, event.usage.output_tokens)
                yield event
            return
        except QAudioError as exc:
            if cancel is not None and cancel.is_set():
                raise Interrupted("interrupted") from None
            if limiter is not None and isinstance(exc, APIError) and exc.status == 429:
                limiter.refused(exc.retry_after)
            wait = policy.delay(attempt, exc, text_seen=seen)
            if wait is None or (at is not None and time.monotonic() + wait >= at):
                raise
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
        if cancel is None:
            sliced_sleep(wait)  # the main thread: Ctrl-C lands between two slices
        elif cancel.wait(wait):
            raise Interrupted("interrupted while waiting to retry")


def _waiter(cancel: threading.Event | None) -> Callable[[float], bool]:
    """How to wait for a rate-limit slot: on ``cancel`` in a worker, in Ctrl-C-sized
    slices in the main thread. Returns True when the wait was cancelled."""
    if cancel is not None:
        return cancel.wait

    def sleep(seconds: float) -> bool:
        from ._net import sliced_sleep

        sliced_sleep(seconds)
        return False

    return sleep
