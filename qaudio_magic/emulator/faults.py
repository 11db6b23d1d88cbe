"""Fault knobs: what the emulator should do wrong, and when.

One syntax everywhere — ``key=value`` pairs joined by ``;`` — in the ``X-Emulator-Fault``
request header, the ``--fault`` command-line flag, and :meth:`Emulator.add_fault`::

    status=429;code=Throttling.RateQuota;retry_after=1     an error response
    latency=0.2;ttft=0.5;token_rate=20                      slow answers
    reset=1                                                 drop the connection before replying
    cut_after=3                                             close the stream after 3 events
    error_after=2;code=DataInspectionFailed;status=400      an ``event:error`` frame mid-stream
    malformed=1                                             a body that is not JSON
    sse_as_json=1;status=400                                an SSE error body labelled JSON
    sse_error=1;status=400                                  an SSE error body labelled event-stream
    slow_upload=2                                           the OSS form POST takes 2 s
    rate=0.1;seed=7                                         apply to 10% of requests (random)
    times=2                                                 apply to the next 2 requests only
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, fields, replace

__all__ = ["Fault", "FaultPlan", "parse_fault"]


@dataclass(frozen=True)
class Fault:
    latency: float = 0.0  # seconds before the response starts
    ttft: float = 0.0  # seconds before the first streamed event
    token_rate: float = 0.0  # streamed events per second (0: as fast as possible)
    status: int = 0  # error response with this HTTP status
    code: str = ""
    message: str = ""
    retry_after: str = ""  # value of the Retry-After header, if any
    reset: bool = False
    cut_after: int = -1  # close a stream after this many events
    error_after: int = -1  # send event:error after this many events
    malformed: bool = False
    sse_as_json: bool = False
    sse_error: bool = False
    slow_upload: float = 0.0
    rate: float = 1.0
    times: int = 0  # 0: unlimited
    seed: int | None = None
    path: str = ""  # only requests whose path contains this

    def merged(self, other: Fault) -> Fault:
        """``other``'s non-default values over this one's."""
        defaults = Fault()
        changes = {
            f.name: getattr(other, f.name)
            for f in fields(Fault)
            if getattr(other, f.name) != getattr(defaults, f.name)
        }
        return replace(self, **changes)

    @property
    def is_error(self) -> bool:
        return (
            bool(self.status) and self.error_after < 0 and not (self.sse_as_json or self.sse_error)
        )


_DEFAULT_CODES = {
    400: ("InvalidParameter", "Emulated bad request."),
    401: ("InvalidApiKey", "Invalid API-key provided."),
    403: ("AllocationQuota.FreeTierOnly", "The free tier of the model has been exhausted."),
    404: ("ModelNotFound", "Model not exist."),
    429: ("Throttling.RateQuota", "Requests rate limit exceeded, please try again later."),
    500: ("InternalError", "An internal error has occured, please try again later."),
    503: ("ModelUnavailable", "Model is unavailable, please try again later."),
}


def default_error(status: int) -> tuple[str, str]:
    return _DEFAULT_CODES.get(status, (f"HTTP{status}", "Emulated error."))


def parse_fault(text: str) -> Fault:
    """A Fault from ``key=value;key=value`` (unknown keys raise ValueError)."""
    kinds = {f.name: f.type for f in fields(Fault)}
    values: dict[str, object] = {}
    for item in filter(None, (p.strip() for p in text.split(";"))):
        key, _, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if key not in kinds:
            raise ValueError(f"unknown fault knob {key!r}")
        kind = str(kinds[key])
        if "bool" in kind:
            values[key] = raw.strip().lower() not in ("0", "false", "no", "")
        elif ("int" in kind and "None" in kind) or kind == "int":
            values[key] = int(raw)
        elif kind == "float":
            values[key] = float(raw)
        else:
            values[key] = raw.strip()
    return Fault(**values)  # type: ignore[arg-type]


class FaultPlan:
    """Faults for the whole server: standing ones (CLI) and queued ones (tests)."""

    def __init__(self, standing: Fault | None = None) -> None:
        self.standing = standing
        self._queued: list[list[object]] = []  # [fault, remaining]
        self._lock = threading.Lock()
        self._rng = random.Random(standing.seed if standing and standing.seed is not None else 0)

    def add(self, fault: Fault) -> None:
        with self._lock:
            if fault.times or fault.rate < 1.0 or fault.path:
                self._queued.append([fault, fault.times or -1])
            else:
                self.standing = fault if self.standing is None else self.standing.merged(fault)

    def clear(self) -> None:
        with self._lock:
            self._queued.clear()
            self.standing = None

    def pick(self, path: str, header: str | None) -> Fault:
        """The fault that applies to one request (Fault() when none)."""
        fault = Fault()
        with self._lock:
            if self.standing is not None and self._applies(self.standing, path):
                fault = fault.merged(self.standing)
            for entry in self._queued:
                queued, remaining = entry
                assert isinstance(queued, Fault)
                if remaining == 0 or not self._applies(queued, path):
                    continue
                if isinstance(remaining, int) and remaining > 0:
                    entry[1] = remaining - 1
                fault = fault.merged(queued)
                break
        if header:
            fault = fault.merged(parse_fault(header))
        return fault

    def _applies(self, fault: Fault, path: str) -> bool:
        if fault.path and fault.path not in path:
            return False
        return fault.rate >= 1.0 or self._rng.random() < fault.rate
