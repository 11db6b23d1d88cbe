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

from .._secret import scrub
from ._body import MAX_EVENT, decoded_chunks, too_large

if TYPE_CHECKING:
    import httpx

_PIECE_COST = 64  # bytes: what holding one more str/bytes piece costs beyond its characters

__all__ = [
    "MAX_EVENT",
    "EventTooLarge",
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


def response_events(response: httpx.Response, host: str) -> Iterator[SSEEvent]:
    """The events of a streamed ``response``, each line and event within :data:`MAX_EVENT`
    bytes (else a one-line error naming ``host``), the data of each scrubbed of keys."""
    try:
        for event in iter_sse(decoded_chunks(response, host)):
            data = scrub(event.data)
            yield event if data is event.data else event._replace(data=data)
    except EventTooLarge as exc:
        raise too_large(host, "an SSE event", exc.limit) from None


class EventTooLarge(ValueError):
    """An SSE line or event grew past the parser's limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"an SSE event over {limit} bytes")
        self.limit = limit


def iter_sse(chunks: Iterable[bytes], limit: int = MAX_EVENT) -> Iterator[SSEEvent]:
    """The events of an SSE byte stream, however it is cut into chunks.

    Bytes are decoded only up to their last line end (``\\n`` never occurs inside a
    UTF-8 sequence); a chunk ending in ``\\r`` keeps it back, as the ``\\n`` of that
    CRLF may open the next chunk. Work is linear in the bytes received however they are
    cut: an unfinished line waits as a list of byte pieces and an unfinished event as a
    list of text pieces, joined once when complete. Past ``limit`` bytes (each piece
    counted :data:`_PIECE_COST` more, for what holding it costs) :class:`EventTooLarge`
    is raised.
    """
    pending: list[bytes] = []  # pieces of the unfinished last line
    pending_held = 0  # their bytes, plus the cost of each piece
    block: list[str] = []  # complete lines (each ending in \n) of an unfinished event
    block_held = 0
    carry_cr = False
    ident: str | None = None
    for chunk in chunks:
        if carry_cr:
            chunk, carry_cr = b"\r" + chunk, False
        if b"\r" in chunk:
            if chunk[-1:] == b"\r":
                chunk, carry_cr = chunk[:-1], True
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        cut = chunk.rfind(b"\n") + 1
        if not cut:  # no line end: the piece waits for the rest of its line
            if chunk:
                pending.append(chunk)
                pending_held += len(chunk) + _PIECE_COST
                if pending_held + block_held > limit:
                    raise EventTooLarge(limit)
            continue
        if pending:
            pending.append(chunk[:cut])
            lines = b"".join(pending)
            pending.clear()
        else:
            lines = chunk[:cut] if cut < len(chunk) else chunk
        rest = chunk[cut:]
        if rest:
            pending.append(rest)
        pending_held = len(rest) + _PIECE_COST if rest else 0
        text = lines.decode("utf-8", "replace")
        pos, size = 0, len(text)
        if block:  # an event begun in an earlier chunk
            end = -1 if text[0] == "\n" else text.find("\n\n")
            if end == -1 and text[0] != "\n":  # still unfinished
                block.append(text)
                block_held += size + _PIECE_COST
                pos = size
            else:
                if end >= 0:
                    block.append(text[: end + 1])
                pos = end + 2  # 1 when the blank line opens this chunk
                found, ident = _block("".join(block).split("\n"), ident)
                block, block_held = [], 0
                if found is not None:
                    yield found
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
            if end < 0:  # the start of an event that ends in a later chunk
                block = [text[pos:]]
                block_held = size - pos + _PIECE_COST
                break
            found, ident = _block(text[pos:end].split("\n"), ident)
            if found is not None:
                yield found
            pos = end + 2
        if pending_held + block_held > limit:
            raise EventTooLarge(limit)
    tail = "".join(block)
    if pending:
        tail += b"".join(pending).decode("utf-8", "replace").rstrip("\r").replace("\r", "\n")
    if tail.strip("\n"):  # a last event without its blank line (connection closed)
        found, ident = _block(tail.split("\n"), ident)
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
