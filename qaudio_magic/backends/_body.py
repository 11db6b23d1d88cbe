"""Reading a server's reply with a cap on what it can make the kernel hold.

A server is not trusted to be small: a 2 GB JSON body, a 2 GB error page, or 4 MB of
gzip that inflates to 4 GB must not reach memory. httpx's decoders inflate each network
chunk whole (``zlib.decompressobj().decompress(chunk)`` with no ``max_length``: a 64 KB
chunk of a gzip bomb becomes 64 MB at once, and ``br``/``zstd`` do worse), so bodies are
read raw here and inflated in pieces of at most :data:`PIECE` bytes, the caller stopping
at its cap. Only ``gzip`` and ``deflate`` are asked for (``Accept-Encoding``) and
accepted; a body in any other encoding is refused in one line.

Caps, all of decoded bytes:

* :data:`MAX_BODY` — a whole non-streamed answer. The longest answer any supported model
  writes is 16,384 tokens, well under 1 MB of JSON even with every character escaped;
* :data:`MAX_ERROR_BODY` — an error reply is read this far and no further (its message
  is cut to a line anyway);
* :data:`MAX_EVENT` — one SSE line or event (``_sse.py``);
* :data:`MAX_ANSWER_CHARS` — the text of one streamed answer, however many events carry it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .._secret import scrub
from ..errors import TransportError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ACCEPT_ENCODING",
    "MAX_ANSWER_CHARS",
    "MAX_BODY",
    "MAX_ERROR_BODY",
    "MAX_EVENT",
    "PIECE",
    "decoded_chunks",
    "read_body",
    "read_error_body",
    "too_large",
]

ACCEPT_ENCODING = "gzip, deflate"
PIECE = 64 * 1024  # the most one inflate step may produce
MAX_BODY = 4_000_000
MAX_ERROR_BODY = 64_000
MAX_EVENT = 1_000_000
MAX_ANSWER_CHARS = 1_000_000


def _size(size: int, unit: str) -> str:
    if unit != "bytes":
        return f"{size:,} {unit}"
    return f"{size / 1e6:g} MB" if size >= 1_000_000 else f"{size / 1e3:g} KB"


def too_large(host: str, what: str, limit: int, *, unit: str = "bytes") -> TransportError:
    """The one-line error for a reply over one of the caps."""
    return TransportError(
        f"{host} sent {what} over the {_size(limit, unit)} limit; stopped reading"
    )


def decoded_chunks(response: httpx.Response, host: str) -> Iterator[bytes]:
    """The body of a streamed ``response``, inflated in pieces of at most :data:`PIECE`."""
    if response.is_stream_consumed:  # built in memory (a mock transport): already whole
        yield response.content
        return
    header = response.headers.get("content-encoding", "")
    codings = [c.strip().lower() for c in header.split(",") if c.strip().lower() != "identity"]
    codings = [c for c in codings if c]
    if not codings:
        yield from response.iter_raw()
        return
    if len(codings) > 1 or codings[0] not in ("gzip", "x-gzip", "deflate"):
        raise TransportError(
            f"{host} sent a body encoded as {scrub(header)[:40]!r}; only gzip and deflate are accepted"
        )
    yield from _inflate(response.iter_raw(), codings[0] != "deflate", host)


def _inflate(raw: Iterator[bytes], gzip: bool, host: str) -> Iterator[bytes]:
    # deflate is meant to be zlib-wrapped, but servers also send it raw (as httpx allows)
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 16 if gzip else zlib.MAX_WBITS)
    first = True
    try:
        for chunk in raw:
            data = chunk
            if first and not gzip and data:
                first = False
                try:
                    probe = zlib.decompressobj(zlib.MAX_WBITS)
                    probe.decompress(data[:2])
                except zlib.error:
                    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            while data and not inflater.eof:
                out = inflater.decompress(data, PIECE)
                data = inflater.unconsumed_tail
                if out:
                    yield out
        if not inflater.eof:
            out = inflater.decompress(b"", PIECE)
            while out:
                yield out
                out = inflater.decompress(inflater.unconsumed_tail, PIECE)
    except zlib.error as exc:
        raise TransportError(f"{host} sent a corrupt compressed body ({exc})") from None


def read_body(response: httpx.Response, host: str, limit: int = MAX_BODY) -> bytes:
    """The whole (decoded) body, or a one-line error past ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    for chunk in decoded_chunks(response, host):
        size += len(chunk)
        if size > limit:
            raise too_large(host, "a reply", limit)
        parts.append(chunk)
    return b"".join(parts)


def read_error_body(response: httpx.Response, host: str, limit: int = MAX_ERROR_BODY) -> bytes:
    """At most ``limit`` bytes of an error reply: what is past them is never read."""
    parts: list[bytes] = []
    size = 0
    try:
        for chunk in decoded_chunks(response, host):
            parts.append(chunk[: limit - size])
            size += len(parts[-1])
            if size >= limit:
                break
    except TransportError:  # an undecodable error body: report the status without it
        pass
    return b"".join(parts)
