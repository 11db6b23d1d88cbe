"""Server-sent events as DashScope and OpenAI-compatible servers write them.

DashScope frames have no space after the colon and carry each event's HTTP status in a
comment (``:HTTP_STATUS/429``); OpenAI-style servers write ``data: {...}`` and end with
``data: [DONE]``. One parser serves both: it follows the SSE spec (one optional space
after the colon, blank line ends an event, the last ``id`` carries over) and also reads
the status comment.

A streamed answer is one event per token, so this is the hot path of a question.
:func:`response_events` therefore reads the raw bytes itself — one ``decode`` per network
chunk instead of httpx's stacked text decoder, text chunker and line decoder generators —
and takes the usual frame shapes (``id``, ``event``, ``:HTTP_STATUS``, one ``data`` line,
in that order) with one regular-expression match; any other block goes through the
line-by-line parser. Lines end at CRLF, LF or CR only, as the spec says: ``splitlines``
would also break a JSON string at U+2028 or a form feed, which a model may well write.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import httpx

__all__ = [
    "SSEEvent",
    "iter_events",
    "iter_sse",
    "looks_like_sse",
    "parse_events",
    "response_events",
]


class SSEEvent(NamedTuple):  # a tuple: cheaper to build than a frozen dataclass
    data: str
    event: str | None = None
    id: str | None = None
    status: int | None = None  # from a ``:HTTP_STATUS/NNN`` comment


# One whole block in the usual shape; group order: id, event, status, data.
_FRAME = re.compile(
    r"(?:id: ?([^\n]*)\n)?(?:event: ?([^\n]*)\n)?(?::HTTP_STATUS/(\d+)\n)?data: ?([^\n]*)\n\n"
)


def response_events(response: httpx.Response) -> Iterator[SSEEvent]:
    """The events of a streamed ``response`` (raw bytes unless it is content-encoded)."""
    encoded = response.headers.get("content-encoding", "identity").lower() != "identity"
    return iter_sse(response.iter_bytes() if encoded else response.iter_raw())


def iter_sse(chunks: Iterable[bytes]) -> Iterator[SSEEvent]:
    """The events of an SSE byte stream, however it is cut into chunks.

    Bytes are decoded only up to their last line end (``\\n`` never occurs inside a
    UTF-8 sequence); a chunk ending in ``\\r`` keeps it back, as the ``\\n`` of that
    CRLF may open the next chunk.
    """
    raw = b""  # bytes after the last complete line
    text = ""  # complete lines not yet parsed (normalised to \n)
    ident: str | None = None
    for chunk in chunks:
        if raw:
            chunk, raw = raw + chunk, b""
        if b"\r" in chunk:
            if chunk[-1:] == b"\r":
                chunk, raw = chunk[:-1], b"\r"
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if not chunk.endswith(b"\n"):  # keep a partial last line for the next chunk
            cut = chunk.rfind(b"\n") + 1
            chunk, raw = chunk[:cut], chunk[cut:] + raw
            if not chunk:
                continue
        piece = chunk.decode("utf-8", "replace")
        text = text + piece if text else piece
        pos, size = 0, len(text)
        while pos < size:
            m = _FRAME.match(text, pos)
            if m is not None:
                i, event, status, data = m.groups()
                if i is not None:
                    ident = i
                yield SSEEvent(data, event, ident, int(status) if status else None)
                pos = m.end()
                continue
            end = text.find("\n\n", pos)
            if end < 0:
                break
            found, ident = _block(text[pos:end].split("\n"), ident)
            if found is not None:
                yield found
            pos = end + 2
        text = text[pos:] if pos < size else ""
    rest = text + raw.rstrip(b"\r").decode("utf-8", "replace").replace("\r", "\n")
    if rest.strip("\n"):  # a last event without its blank line (connection closed)
        found, ident = _block(rest.split("\n"), ident)
        if found is not None:
            yield found


def iter_events(lines: Iterable[str]) -> Iterator[SSEEvent]:
    """Yield one event per blank-line-terminated block of ``lines`` (line ends stripped)."""
    block: list[str] = []
    ident: str | None = None
    for raw in lines:
        line = raw.rstrip("\r\n")
        if line:
            block.append(line)
            continue
        if block:
            found, ident = _block(block, ident)
            block = []
            if found is not None:
                yield found
    if block:  # a last event without its blank line (connection closed)
        found, ident = _block(block, ident)
        if found is not None:
            yield found


def _block(lines: Iterable[str], ident: str | None) -> tuple[SSEEvent | None, str | None]:
    """The event of one block of lines (None without data), and the id that carries on."""
    data: list[str] = []
    event: str | None = None
    status: int | None = None
    for line in lines:
        if not line:
            continue
        if line[0] == ":":
            comment = line[1:].strip()
            if comment[:12].upper() == "HTTP_STATUS/":
                try:
                    status = int(comment[12:])
                except ValueError:
                    pass
            continue
        name, _, value = line.partition(":")
        if value[:1] == " ":
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
    if not data:
        return None, ident
    return SSEEvent("\n".join(data), event, ident, status), ident


def parse_events(body: str) -> list[SSEEvent]:
    """All events of a complete SSE body."""
    return list(iter_events(body.replace("\r\n", "\n").replace("\r", "\n").split("\n")))


def looks_like_sse(body: str) -> bool:
    """True when a body is SSE frames whatever its Content-Type claims."""
    head = body.lstrip()[:200]
    return head.startswith(("id:", "event:", "data:", ":HTTP_STATUS"))
