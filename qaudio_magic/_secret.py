"""API keys that cannot leak by accident, even when a server echoes them back.

A :class:`Secret` has no readable ``repr``/``str``; the raw value is reachable only
through :meth:`Secret.reveal`, which the HTTP layer calls when building the
``Authorization`` header. Every secret ever created is remembered so that
:func:`scrub` can remove it from any text: error messages, logs, and everything a server
sends (answers, request ids, error bodies), before it reaches any surface.

A server may echo the key whole, or cut (an error text cut to 300 characters), or split
across streamed pieces. So :func:`scrub` removes the key, and also any run of at least
:data:`MIN_RUN` characters that is a prefix of it (what a cut leaves); texts are scrubbed
before they are cut; :class:`StreamScrubber` holds back the end of a streamed piece while
it could be the start of a key. Once a
key exists, our transport's, httpx's and httpcore's log records are scrubbed too (their
DEBUG records quote response headers).
"""

from __future__ import annotations

import logging
import threading
from typing import NamedTuple

__all__ = ["MIN_RUN", "Secret", "StreamScrubber", "scrub"]

MIN_RUN = 8  # a prefix of a key this long is scrubbed like the key itself
_REDACTED = "***"
_LOGGERS = (
    "qaudio_magic.wire",
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


class _Key(NamedTuple):
    value: str
    head: str  # its first MIN_RUN characters (the whole key when shorter)
    start: str  # its first character


_keys: tuple[_Key, ...] = ()  # replaced whole under the lock; read without it
_lock = threading.Lock()


class Secret:
    """An API key; shows as ``Secret('***')`` everywhere."""

    __slots__ = ("__value",)

    def __init__(self, value: str) -> None:
        value = value.strip()
        if not value:
            raise ValueError("empty API key")
        self.__value = value
        if len(value) >= 4:  # never scrub 1-3 character strings out of every message
            _remember(value)

    def reveal(self) -> str:
        """The raw key, for the one place that must send it."""
        return self.__value

    def __repr__(self) -> str:
        return f"Secret('{_REDACTED}')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.reveal() == self.__value

    def __hash__(self) -> int:
        return hash(self.__value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Secret cannot be pickled")


def _remember(value: str) -> None:
    global _keys
    with _lock:
        if any(k.value == value for k in _keys):
            return
        first = not _keys
        # longest first: a key that contains another is scrubbed whole
        _keys = tuple(
            sorted(
                (*_keys, _Key(value, value[:MIN_RUN], value[0])),
                key=lambda k: -len(k.value),
            )
        )
    if first:
        for name in _LOGGERS:
            logging.getLogger(name).addFilter(_LOG_FILTER)


def scrub(text: str) -> str:
    """``text`` with every known key, and every long prefix of one, as ``***``."""
    keys = _keys
    if not keys or not text:
        return text
    for key in keys:
        if key.value in text:
            text = text.replace(key.value, _REDACTED)
        if len(key.value) > MIN_RUN and key.head in text:
            text = _prefixes(text, key.value, key.head)
    return text


def _prefixes(text: str, key: str, head: str) -> str:
    """Replace each run that starts with ``head`` and goes on as ``key`` does."""
    out: list[str] = []
    pos = 0
    while (at := text.find(head, pos)) >= 0:
        end = at + len(head)
        while end < len(text) and end - at < len(key) and text[end] == key[end - at]:
            end += 1
        out += [text[pos:at], _REDACTED]
        pos = end
    out.append(text[pos:])
    return "".join(out)


class StreamScrubber:
    """Scrubs a text that arrives in pieces, so a key split across pieces is caught.

    :meth:`feed` returns what can be shown now; the end of a piece that could be the
    start of a key (even its first character) waits for the next piece.
    :meth:`flush` returns what is left when the text is complete.
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = ""

    def feed(self, piece: str) -> str:
        keys = _keys
        if not keys:
            return piece
        text = self._held + piece if self._held else piece
        keep = 0
        for key in keys:  # the longest end of `text` that is a proper prefix of a key
            lo = max(0, len(text) - len(key.value) + 1)
            while (at := text.find(key.start, lo)) >= 0:
                if key.value.startswith(text[at:]):
                    keep = max(keep, len(text) - at)
                    break
                lo = at + 1
        if keep:
            self._held = text[-keep:]
            return scrub(text[:-keep])
        self._held = ""
        return scrub(text)

    def flush(self) -> str:
        held, self._held = self._held, ""
        return scrub(held)


class _ScrubLogs(logging.Filter):
    """Scrubs keys from the records of the loggers it is attached to."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _keys:
            message = record.getMessage()
            clean = scrub(message)
            if clean != message:
                record.msg, record.args = clean, None
        return True


_LOG_FILTER = _ScrubLogs()
