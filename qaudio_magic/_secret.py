"""API keys that cannot leak by accident.

A :class:`Secret` has no readable ``repr``/``str``; the raw value is reachable only
through :meth:`Secret.reveal`, which the HTTP layer calls when building the
``Authorization`` header. Every secret ever created is remembered so that
:func:`scrub` can remove it from any text (error messages, logs, exported history).
"""

from __future__ import annotations

import threading

__all__ = ["Secret", "scrub"]

_known: set[str] = set()
_lock = threading.Lock()
_REDACTED = "***"


class Secret:
    """An API key; shows as ``Secret('***')`` everywhere."""

    __slots__ = ("__value",)

    def __init__(self, value: str) -> None:
        value = value.strip()
        if not value:
            raise ValueError("empty API key")
        self.__value = value
        if len(value) >= 4:  # never scrub 1-3 character strings out of every message
            with _lock:
                _known.add(value)

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


def scrub(text: str) -> str:
    """Replace every known secret in ``text`` with ``***``."""
    with _lock:
        known = tuple(_known)
    for value in known:
        if value in text:
            text = text.replace(value, _REDACTED)
    return text
