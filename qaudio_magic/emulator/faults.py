"""Fault knobs: what the emulator should do wrong, and when.

One syntax everywhere — ``key=value`` pairs joined by ``;`` — in the ``X-Emulator-Fault``
request header, the ``--fault`` command-line flag, and :meth:`Emulator.add_fault`::

    status=429;code=Throttling.RateQuota;retry_after=1     an error response (429 with Retry-After)
    status=429                                              ... without Retry-After; 500, 503 alike
    latency=0.2;ttft=0.5;token_rate=20                      slow answers
    reset=1                                                 drop the connection before replying
    cut_after=3                                             close the stream after 3 events
                                                            (a JSON body: after half of it)
    error_after=2;code=DataInspectionFailed;status=400      an ``event:error`` frame mid-stream
                                                            (a JSON answer: that error instead)
    malformed=1                                             a body that is not JSON
    sse_as_json=1;status=400                                an SSE error body labelled JSON
    sse_error=1;status=400                                  an SSE error body labelled event-stream
    slow_upload=2                                           the OSS form POST takes 2 s
    rate=0.1;seed=7                                         apply to 10% of requests (random)
    times=2                                                 apply to the next 2 requests only
    path=/oss                                               only requests whose path contains this

Faults without ``path`` hit the model endpoints (native and chat completions); the
temporary-upload endpoints take only faults that name them, and ``slow_upload``.

The command line takes each knob as a flag too (``--status 429 --retry-after 1``, see
:func:`add_arguments`), and any number of ``--fault SPEC``; each is its own fault, so
``--fault 'status=503;times=2' --fault 'reset=1;rate=0.1;seed=3'`` fails the first two
requests and then one in ten at random.
"""

from __future__ import annotations

import argparse
import random
import threading
from dataclasses import dataclass, fields, replace

__all__ = ["Fault", "FaultPlan", "add_arguments", "fault_from_arguments", "parse_fault"]

_OSS_FORM = "/oss"  # see upload.py
_UPLOAD_PATHS = ("/api/v1/uploads", _OSS_FORM)


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
    """A Fault from ``key=value;key=value`` (unknown keys raise ValueError; a bare
    ``reset`` means ``reset=1``)."""
    kinds = {f.name: f.type for f in fields(Fault)}
    values: dict[str, object] = {}
    for item in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if key not in kinds:
            raise ValueError(f"unknown fault knob {key!r}")
        kind = str(kinds[key])
        if "bool" in kind:
            values[key] = not sep or raw.strip().lower() not in ("0", "false", "no", "")
        elif ("int" in kind and "None" in kind) or kind == "int":
            values[key] = int(raw)
        elif kind == "float":
            values[key] = float(raw)
        else:
            values[key] = raw.strip()
    return Fault(**values)  # type: ignore[arg-type]


class FaultPlan:
    """Faults for the whole server: standing ones (every request) and queued ones
    (``times``, ``rate`` or ``path``: checked in order, the first that applies wins).

    Each fault with a ``seed`` draws from its own random generator, so a run with
    ``rate=0.1;seed=7`` fails the same requests every time.
    """

    def __init__(self, standing: Fault | None = None) -> None:
        self.standing: Fault | None = None
        self._queued: list[_Queued] = []
        self._lock = threading.Lock()
        self._rng = random.Random(0)
        if standing is not None:
            self.add(standing)

    def add(self, fault: Fault) -> None:
        with self._lock:
            if fault.times or fault.rate < 1.0 or fault.path:
                rng = random.Random(fault.seed) if fault.seed is not None else self._rng
                self._queued.append(_Queued(fault, fault.times or -1, rng))
            else:
                self.standing = fault if self.standing is None else self.standing.merged(fault)

    def clear(self) -> None:
        with self._lock:
            self._queued.clear()
            self.standing = None

    def pick(self, path: str, header: str | None) -> Fault:
        """The fault that applies to one request (Fault() when none).

        A fault in the ``X-Emulator-Fault`` header applies to that request alone
        (its ``rate`` still draws; ``times`` means nothing there).
        """
        fault = Fault()
        with self._lock:
            if self.standing is not None and self._applies(self.standing, path, self._rng):
                fault = fault.merged(self.standing)
            for entry in self._queued:
                if entry.remaining == 0 or not self._applies(entry.fault, path, entry.rng):
                    continue
                if entry.remaining > 0:
                    entry.remaining -= 1
                fault = fault.merged(entry.fault)
                break
            if header:
                extra = parse_fault(header)
                rng = random.Random(extra.seed) if extra.seed is not None else self._rng
                if extra.rate >= 1.0 or rng.random() < extra.rate:
                    fault = fault.merged(extra)
        return fault

    @staticmethod
    def _applies(fault: Fault, path: str, rng: random.Random) -> bool:
        if fault.path and fault.path not in path:
            return False
        if not fault.path:
            # The temporary upload (getPolicy, OSS form) takes only faults that name it
            # (path=/oss), so "the next request fails" still means the model call;
            # slow_upload is about the OSS form alone.
            if fault.slow_upload:
                return path == _OSS_FORM
            if path in _UPLOAD_PATHS:
                return False
        return fault.rate >= 1.0 or rng.random() < fault.rate


@dataclass
class _Queued:
    fault: Fault
    remaining: int  # -1: unlimited
    rng: random.Random


# ---------------------------------------------------------------------- command line
_HELP = {
    "latency": "seconds before each reply starts",
    "ttft": "seconds before the first streamed event",
    "token_rate": "streamed events per second",
    "status": "answer with this HTTP status (429, 500, 503 ...)",
    "code": "error code in the body (default: the status's usual one)",
    "message": "error message in the body",
    "retry_after": "Retry-After header value (omit for a 429 without one)",
    "reset": "reset the connection before replying",
    "cut_after": "close a stream after N events (a JSON body: after half of it)",
    "error_after": "send event:error after N events (with --status/--code)",
    "malformed": "bodies and frames that are not JSON",
    "sse_as_json": "an SSE error body labelled application/json (with --status)",
    "sse_error": "an SSE error body labelled text/event-stream (with --status)",
    "slow_upload": "seconds the OSS form upload takes",
    "rate": "share of requests the flags above apply to (0-1)",
    "times": "apply the flags above to the next N requests only",
    "seed": "random seed for --rate",
    "path": "apply only to request paths containing this",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One command-line flag per knob (``--retry-after``), generated from :class:`Fault`."""
    group = parser.add_argument_group(
        "faults", "misbehave on purpose; the flags together make one fault (see --fault for more)"
    )
    for f in fields(Fault):
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type)
        if "bool" in kind:
            group.add_argument(flag, action="store_true", help=_HELP.get(f.name))
        else:
            cast = float if kind == "float" else int if "int" in kind else str
            group.add_argument(flag, type=cast, default=None, help=_HELP.get(f.name))
    group.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="a fault as 'key=value;...' (e.g. 'status=429;retry_after=1;rate=0.1'); repeatable",
    )


def fault_from_arguments(args: argparse.Namespace) -> list[Fault]:
    """The faults the flags of :func:`add_arguments` ask for (the flags' one, then each --fault)."""
    spec = []
    for f in fields(Fault):
        value = getattr(args, f.name, None)
        if value is None or value is False:
            continue
        spec.append(f"{f.name}={1 if value is True else value}")
    faults = [parse_fault(";".join(spec))] if spec else []
    return faults + [parse_fault(text) for text in args.fault]
