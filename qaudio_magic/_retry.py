"""One retry policy for single questions and batches.

Rate limits (429 ``Throttling*``), server faults (5xx) and broken connections are retried
with exponential backoff and full jitter, honouring ``Retry-After``. Quota, key, content
and parameter errors are final. An answer that already showed text is never retried:
that would print the same words twice.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import APIError, QAudioError, TransportError

__all__ = ["RetryPolicy"]


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
            if error.retry_after is not None:
                if error.retry_after > self.max_retry_after:
                    return None
                return error.retry_after
        elif not isinstance(error, TransportError):
            return None
        return random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))
