"""Client-side pacing under a route's rate limits, so a big batch meets no 429s.

DashScope limits each model per account in requests and tokens per minute (60 RPM /
100,000 TPM for the omni family, CURRENT-MODELS.md §11.10) and may enforce them per
second (RPS = RPM/60, TPS = TPM/60). Retrying 429s would work, slowly and noisily: a
batch of 64 workers would spend most requests on refusals and most retries on backoff.
So requests are *spaced* instead: each one reserves the next free slot, one request
interval (60/RPM) after the previous, and one token interval per token it is expected
to cost (60/TPM each) — the generic cell rate algorithm with no burst, which stays under
the limit whether the service counts per minute or per second.

Tokens are known only once the answer is complete, so a request reserves an estimate
(its input tokens plus the mean output seen so far on this route) and :meth:`settle`
moves the schedule by the difference when the usage arrives. A 429 that comes anyway
(other clients of the same account) pushes the schedule back, so the retries that
follow do not hammer. Reservations are made under a lock and kept in arrival order, so
waiting workers leave one by one instead of all at once.

Limiters are shared per (route, model) in the process: the account's limit does not
care which batch or cell a request comes from. Several processes sharing one account
(Dask workers) each take a ``share`` of it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Permit", "RateLimiter", "limiter_for", "route_limiter"]

MARGIN = 0.05  # pace 5% under the limit: clocks, jitter and network delays differ
FIRST_OUTPUT_GUESS = 256  # output tokens assumed before any answer on the route is seen
PUSH_BACK = 1.0  # seconds the schedule moves on a 429 that came despite the pacing


@dataclass(frozen=True)
class Permit:
    """One reservation: when it was granted and the tokens it was counted for."""

    at: float
    tokens: int


class RateLimiter:
    """Spaces requests under ``rpm`` requests and ``tpm`` tokens per minute (None: no limit)."""

    def __init__(
        self,
        rpm: float | None,
        tpm: float | None,
        *,
        margin: float = MARGIN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (rpm is not None and rpm <= 0) or (tpm is not None and tpm <= 0):
            raise ValueError(f"rate limits must be positive (rpm={rpm}, tpm={tpm})")
        self.rpm, self.tpm = rpm, tpm
        self._per_request = 60.0 / rpm * (1 + margin) if rpm else 0.0
        self._per_token = 60.0 / tpm * (1 + margin) if tpm else 0.0
        self._clock = clock
        self._lock = threading.Lock()
        self._requests_free = 0.0  # earliest time the next request may go
        self._tokens_free = 0.0  # earliest time the token budget allows another request
        self._outputs = 0  # answers seen, for the mean output length
        self._output_tokens = 0
        self.waited = 0.0  # seconds requests spent waiting for their slot, in all
        self.pushed_back = 0  # 429s that came despite the pacing

    def __repr__(self) -> str:
        return f"RateLimiter(rpm={self.rpm}, tpm={self.tpm})"

    @property
    def expected_output(self) -> int:
        """Output tokens a request is assumed to cost before its answer is known."""
        if not self._outputs:
            return FIRST_OUTPUT_GUESS
        return round(self._output_tokens / self._outputs)

    def reserve(self, input_tokens: int) -> tuple[Permit, float]:
        """Reserve the next slot for a request of ``input_tokens``: its permit, and the
        seconds to wait before sending (0 when it may go now)."""
        with self._lock:
            now = self._clock()
            cost = max(input_tokens, 0) + self.expected_output if self._per_token else 0
            start = max(now, self._requests_free, self._tokens_free)
            self._requests_free = start + self._per_request
            self._tokens_free = max(self._tokens_free, start) + cost * self._per_token
            self.waited += start - now
        return Permit(start, cost), start - now

    def acquire(self, input_tokens: int, *, wait: Callable[[float], bool] | None = None) -> Permit:
        """Reserve a slot and wait for it. ``wait(seconds)`` sleeps and returns True when
        the wait was cut short (cancelled): then :class:`InterruptedError` is raised."""
        permit, delay = self.reserve(input_tokens)
        if delay > 0:
            if wait is None:
                time.sleep(delay)
            elif wait(delay):
                raise InterruptedError("cancelled while waiting for the rate limit")
        return permit

    def settle(self, permit: Permit, used_tokens: int | None, output_tokens: int | None) -> None:
        """The answer is complete: count its real tokens instead of the estimate."""
        with self._lock:
            if output_tokens is not None and output_tokens >= 0:
                self._outputs += 1
                self._output_tokens += output_tokens
            if self._per_token and used_tokens is not None:
                self._tokens_free += (used_tokens - permit.tokens) * self._per_token

    def refused(self, retry_after: float | None = None) -> None:
        """The service said 429 anyway: nobody sends for a while."""
        with self._lock:
            later = self._clock() + (retry_after if retry_after is not None else PUSH_BACK)
            self._requests_free = max(self._requests_free, later)
            self.pushed_back += 1


_limiters: dict[tuple[str, str], RateLimiter] = {}
_limiters_lock = threading.Lock()


def limiter_for(
    route: str, model: str, rpm: float | None, tpm: float | None, *, share: float = 1.0
) -> RateLimiter | None:
    """The process's limiter for ``model`` on ``route`` (``route@host``), or None when
    the model has no limit. ``share`` is this process's part of the account's limit."""
    if not rpm and not tpm:
        return None
    rpm = rpm * share if rpm else None
    tpm = tpm * share if tpm else None
    with _limiters_lock:
        limiter = _limiters.get((route, model))
        if limiter is None or (limiter.rpm, limiter.tpm) != (rpm, tpm):
            limiter = _limiters[(route, model)] = RateLimiter(rpm, tpm)
        return limiter


def route_limiter(
    route: str, model: str, setting: str, *, share: float = 1.0
) -> RateLimiter | None:
    """The limiter for ``model`` on ``route`` under the ``rate_limit`` setting: ``auto``
    (the model registry's documented limits, if any), ``off``, or ``RPM[/TPM]``."""
    rpm: float | None
    tpm: float | None
    if setting == "off":
        return None
    if setting == "auto":
        from .models import lookup

        documented = lookup(model).rate_limit
        if documented is None:
            return None
        rpm, tpm = documented.rpm, documented.tpm
    else:
        from .settings import parse_rate_limit

        parsed = parse_rate_limit(setting)
        if parsed is None:
            return None
        rpm, tpm = parsed
    return limiter_for(route, model, rpm, tpm, share=share)
