"""Rate limits as DashScope enforces them: requests and tokens per minute, per model.

CURRENT-MODELS.md §11.10 (RATE): each model, snapshots included, has its own limit
(60 RPM / 100,000 TPM for the omni family), and "the service may enforce RPS = RPM/60
and TPS = TPM/60". Each model here gets two token buckets refilled continuously at
RPM/60 requests and TPM/60 tokens per second, holding at most ``window`` seconds' worth:
``window=60`` lets a minute's requests come in one burst, ``window=1`` enforces the
per-second rates. A request is refused when its model has no request left, or has
spent its tokens (tokens are charged when the answer is made, from the usage the answer
reports, so a long answer can leave a debt that later requests wait out).

Refusals are 429s with the documented messages (§11.12); which ``code`` accompanies the
TPM message is UNVERIFIED, so both use the retryable ``Throttling.RateQuota`` natively,
and OpenAI-style codes on the chat-completions routes. No ``Retry-After`` header: the
service documents none ("recovers within about a minute").

    emu.set_rate_limit(rpm=600, tpm=100_000, window=1)    # every model
    emu.set_rate_limit(rpm=60, model="qwen3-omni-flash")   # one model
    python -m qaudio_magic.emulator --rpm 60 --tpm 100000 --rate-window 1
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .server import Frame, RecordedRequest, Reply

__all__ = ["RateLimit", "RateLimits"]

MODEL_PATHS = (
    "/api/v1/services/aigc/multimodal-generation/generation",
    "/compatible-mode/v1/chat/completions",
    "/v1/chat/completions",
)
_NATIVE = MODEL_PATHS[0]
# (code, message) of each refusal, native and OpenAI-style (§11.12, RATE).
_RPM = ("Throttling.RateQuota", "Requests rate limit exceeded, please try again later.")
_TPM = ("Throttling.RateQuota", "Allocated quota exceeded, please increase your quota limit.")
_RPM_COMPAT = ("limit_requests", "You exceeded your current requests list.")
_TPM_COMPAT = (
    "insufficient_quota",
    "You exceeded your current quota, please check your plan and billing details.",
)


@dataclass(frozen=True)
class RateLimit:
    """Requests and tokens per minute (None: unlimited), over a bucket of ``window`` s."""

    rpm: float | None = None
    tpm: float | None = None
    window: float = 60.0


class _Buckets:
    """One model's request and token buckets."""

    def __init__(self, limit: RateLimit, now: float) -> None:
        self.limit = limit
        self.requests = self._size(limit.rpm)
        self.tokens = self._size(limit.tpm)
        self.at = now

    def _size(self, per_minute: float | None) -> float:
        return max(per_minute * self.limit.window / 60.0, 1.0) if per_minute else 0.0

    def refill(self, now: float) -> None:
        elapsed, self.at = now - self.at, now
        if self.limit.rpm:
            self.requests = min(
                self.requests + elapsed * self.limit.rpm / 60.0, self._size(self.limit.rpm)
            )
        if self.limit.tpm:
            self.tokens = min(
                self.tokens + elapsed * self.limit.tpm / 60.0, self._size(self.limit.tpm)
            )


class RateLimits:
    """The emulator's rate limits: a default for every model, and per-model ones."""

    def __init__(self) -> None:
        self._default: RateLimit | None = None
        self._per_model: dict[str, RateLimit] = {}
        self._buckets: dict[str, _Buckets] = {}
        self._lock = threading.Lock()
        self.refused = 0  # requests refused with a 429 so far

    def set(self, limit: RateLimit | None, model: str | None = None) -> None:
        """Limit ``model`` (every model when None); ``None`` lifts the limit."""
        with self._lock:
            if model is None:
                self._default = limit
                self._per_model.clear()
            elif limit is None:
                self._per_model.pop(model, None)
            else:
                self._per_model[model] = limit
            self._buckets.clear()  # start full
            self.refused = 0

    @property
    def active(self) -> bool:
        return self._default is not None or bool(self._per_model)

    def admit(self, request: RecordedRequest) -> Reply | None:
        """A 429 when ``request`` is over its model's limit; None to let it through."""
        if not self.active or request.path not in MODEL_PATHS:
            return None
        model = _model_of(request)
        with self._lock:
            limit = self._per_model.get(model, self._default)
            if limit is None:
                return None
            now = time.monotonic()
            buckets = self._buckets.get(model)
            if buckets is None or buckets.limit != limit:
                buckets = self._buckets[model] = _Buckets(limit, now)
            buckets.refill(now)
            refusal = None
            if limit.rpm and buckets.requests < 1.0:
                refusal = _RPM if request.path == _NATIVE else _RPM_COMPAT
            elif limit.tpm and buckets.tokens <= 0.0:
                refusal = _TPM if request.path == _NATIVE else _TPM_COMPAT
            else:
                buckets.requests -= 1.0
            if refusal is not None:
                self.refused += 1
        return None if refusal is None else _refused(request.path, *refusal)

    def charged(self, request: RecordedRequest, reply: Reply) -> Reply:
        """``reply``, charging its model the tokens its usage reports (as it is sent)."""
        if not self.active or request.path not in MODEL_PATHS or reply.status != 200:
            return reply
        model = _model_of(request)
        if reply.frames is None:
            self._charge(model, _tokens(reply.body))
            return reply
        reply.frames = self._charging(model, reply.frames)
        return reply

    def _charging(self, model: str, frames: Iterator[Frame]) -> Iterator[Frame]:
        used = 0
        try:
            for frame in frames:
                used = _tokens(frame.data) or used  # cumulative (native) or final (OpenAI)
                yield frame
        finally:
            self._charge(model, used)

    def _charge(self, model: str, tokens: int) -> None:
        with self._lock:
            buckets = self._buckets.get(model)
            if buckets is not None and buckets.limit.tpm:
                buckets.refill(time.monotonic())
                buckets.tokens -= tokens


def _model_of(request: RecordedRequest) -> str:
    body = request.json
    if body is None:
        try:
            body = json.loads(request.body or b"null")
        except ValueError:
            body = None
    return str(body.get("model") or "") if isinstance(body, dict) else ""


def _tokens(data: Any) -> int:
    """Tokens of a native or OpenAI usage block (0 when there is none)."""
    if isinstance(data, str) or not isinstance(data, dict):
        return 0
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return 0
    if isinstance(usage.get("total_tokens"), int):
        return int(usage["total_tokens"])
    return sum(v for k, v in usage.items() if k.endswith("_tokens") and isinstance(v, int))


def _refused(path: str, code: str, message: str) -> Reply:
    rid = str(uuid.uuid4())
    if path == _NATIVE:
        return Reply(429, {"code": code, "message": message, "request_id": rid})
    body = {
        "error": {"code": code, "param": None, "message": message, "type": code},
        "id": f"chatcmpl-{rid}",
        "request_id": rid,
    }
    return Reply(429, body, headers={"X-Request-Id": rid})
