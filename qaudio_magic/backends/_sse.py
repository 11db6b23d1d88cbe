"""Server-sent events as DashScope and OpenAI-compatible servers write them.

DashScope frames have no space after the colon and carry each event's HTTP status in a
comment (``:HTTP_STATUS/429``); OpenAI-style servers write ``data: {...}`` and end with
``data: [DONE]``. One parser serves both: it follows the SSE spec (one optional space
after the colon, blank line ends an event) and also reads the status comment.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = ["SSEEvent", "iter_events", "looks_like_sse", "parse_events"]


@dataclass(frozen=True)
class SSEEvent:
    data: str
    event: str | None = None
    id: str | None = None
    status: int | None = None  # from a ``:HTTP_STATUS/NNN`` comment


def iter_events(lines: Iterable[str]) -> Iterator[SSEEvent]:
    """Yield one event per blank-line-terminated block of ``lines`` (line ends stripped)."""
    data: list[str] = []
    event = ident = None
    status: int | None = None
    seen = False
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if seen and data:
                yield SSEEvent("\n".join(data), event, ident, status)
            data, event, status, seen = [], None, None, False
            continue
        seen = True
        if line.startswith(":"):
            comment = line[1:].strip()
            if comment.upper().startswith("HTTP_STATUS/"):
                try:
                    status = int(comment.split("/", 1)[1])
                except ValueError:
                    pass
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id":
            ident = value
        elif name == "status":  # some proxies write it as a field
            try:
                status = int(value)
            except ValueError:
                pass
    if seen and data:  # a last event without its blank line (connection closed)
        yield SSEEvent("\n".join(data), event, ident, status)


def parse_events(body: str) -> list[SSEEvent]:
    """All events of a complete SSE body."""
    return list(iter_events(body.splitlines()))


def looks_like_sse(body: str) -> bool:
    """True when a body is SSE frames whatever its Content-Type claims."""
    head = body.lstrip()[:200]
    return head.startswith(("id:", "event:", "data:", ":HTTP_STATUS"))
