"""Inline audio (base64 in the JSON body), encoded once per prepared clip.

Where there is no temporary upload (DashScope intl, compatible mode, vLLM) every request
carries its clips as base64, and a conversation re-sends every earlier clip on every
turn. For a 30 s WAV that is ~2 ms of base64 plus ~2.5 ms for ``json.dumps`` to scan and
copy the 1.3 MB string, per clip and per request. Here :func:`base64_text` makes each
clip's text once (keyed by its bytes object, which the prepare cache keeps; LRU, bounded
in bytes), and :func:`dumps` serialises a body around those strings and splices their
bytes in, as the JSON encoder would have written them (base64 needs no escaping) — for a
short clip sent once too: a batch of one-second clips saves ~45 µs a request.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
from collections import OrderedDict
from typing import Any

__all__ = ["base64_text", "dumps"]

_BUDGET = 16_000_000  # characters of base64 kept, as text and as bytes (a 30 s WAV: 1.3 M)
# Shorter texts are not kept: encoding them again costs tens of microseconds, and a batch of
# short clips, each sent once, would otherwise fill the budget (~40 MB) with clips never
# sent again.
_SMALLEST_KEPT = 128_000
_SAFE_PREFIX = re.compile(r"[A-Za-z0-9;:,/+=.-]*")  # JSON writes these characters as they are
_TOKEN = "qaudio-inline-" + secrets.token_hex(16)  # stands in for a base64 text while dumping


class _Inline(str):
    """A base64 text that carries its own UTF-8 bytes, so :func:`dumps` splices them into
    the body instead of having the JSON encoder scan and copy every character again."""

    fragment: bytes


_lock = threading.Lock()
_texts: OrderedDict[tuple[int, str], tuple[bytes, _Inline]] = OrderedDict()  # (id(data), prefix)
_size = 0


def base64_text(data: bytes, prefix: str = "") -> str:
    """``prefix + base64(data)``; the same string object for the same (large) ``data``."""
    global _size
    key = (id(data), prefix)
    with _lock:
        hit = _texts.get(key)
        if hit is not None and hit[0] is data:
            _texts.move_to_end(key)
            return hit[1]
    if not _SAFE_PREFIX.fullmatch(prefix):
        raise ValueError(f"prefix {prefix!r} would need JSON escaping")
    fragment = prefix.encode("ascii") + base64.b64encode(data)
    text = _Inline(fragment.decode("ascii"))
    text.fragment = fragment
    if not _SMALLEST_KEPT <= len(text) <= _BUDGET // 2:  # not worth keeping, or too large
        return text
    with _lock:
        old = _texts.pop(key, None)
        if old is not None:  # a freed bytes object's id, reused: drop the stale entry
            _size -= len(old[1])
        _texts[key] = (data, text)  # holding data keeps id(data) from being reused
        _size += len(text)
        while _size > _BUDGET:
            _, (_, gone) = _texts.popitem(last=False)
            _size -= len(gone)
    return text


def dumps(body: Any) -> bytes:
    """``json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()``, without
    passing the strings made by :func:`base64_text` through the encoder."""
    found: list[bytes] = []
    skeleton = _swap(body, found)
    if not found:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    encoded = json.dumps(skeleton, ensure_ascii=False, separators=(",", ":")).encode()
    pieces = encoded.split(_TOKEN.encode())
    if len(pieces) != len(found) + 1:  # cannot happen unless a text holds the token
        return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    out = [pieces[0]]
    for fragment, piece in zip(found, pieces[1:], strict=True):
        out += [fragment, piece]
    return b"".join(out)


def _swap(value: Any, found: list[bytes]) -> Any:
    """A copy of ``value`` with each base64 text replaced by the token, found in the order
    JSON writes them (the body is small but for those strings)."""
    if type(value) is _Inline:
        found.append(value.fragment)
        return _TOKEN
    if isinstance(value, dict):
        return {k: _swap(v, found) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_swap(v, found) for v in value]
    return value
