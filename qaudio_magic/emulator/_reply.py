"""What the emulator hears and says: decoding received audio, composing the answer.

The answer is deterministic and states plainly that it is emulated and what arrived
(clip count, decoded durations, the question, earlier turns), so tests and users can
check what was sent by reading it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import threading
import urllib.request
from collections import OrderedDict
from collections.abc import Callable

from .._net import is_loopback
from .server import ReceivedAudio

__all__ = ["compose", "decode_item", "estimate_tokens", "split_tokens"]

MAX_AUDIO_BYTES = 10_000_000
MAX_FETCH_BYTES = 200_000_000  # the emulator holds what it fetches in memory: keep it bounded
HEARD_SECONDS = 30.0


class ItemError(Exception):
    """A content item the real service would reject: (status, code, message)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def decode_item(
    value: str,
    *,
    oss_lookup: Callable[[str], bytes | None] | None = None,
    oss_allowed: bool = True,
    max_bytes: int = MAX_AUDIO_BYTES,
) -> ReceivedAudio:
    """Fetch or unpack one audio reference and decode it, as the service would.

    ``max_bytes`` caps a file fetched by URL or uploaded (the model's limit, at most
    :data:`MAX_FETCH_BYTES` here); a base64 string is always held to 10 MB.
    """
    max_bytes = min(max_bytes, MAX_FETCH_BYTES)
    if value.startswith("data:"):
        body = value.partition(",")[2]
        if len(body) > MAX_AUDIO_BYTES:
            raise ItemError(
                400,
                "InvalidParameter",
                f"The base64 audio is {len(body)} bytes; the limit is 10 MB.",
            )
        try:
            data = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise ItemError(
                400, "InvalidParameter", "The audio data URL is not valid base64."
            ) from None
        return _decoded("data", data, MAX_AUDIO_BYTES)
    if value.startswith("oss://"):
        if not oss_allowed:
            raise ItemError(
                400,
                "InvalidParameter",
                "oss:// URLs need the header X-DashScope-OssResourceResolve: enable.",
            )
        found = oss_lookup(value) if oss_lookup else None
        if found is None:
            raise ItemError(
                400, "InvalidParameter", f"The oss resource {value} does not exist or has expired."
            )
        return _decoded("oss", found, max_bytes)
    if value.startswith(("http://", "https://")):
        if not is_loopback(value):
            return ReceivedAudio(
                "url",
                0,
                hashlib.sha256(value.encode()).hexdigest(),
                error="not fetched: the emulator is offline",
            )
        try:
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(value, timeout=5) as response:
                data = response.read(max_bytes + 1)
        except OSError as exc:
            raise ItemError(
                415,
                "BadRequest.InputDownloadFailed",
                f"Failed to download the audio from {value}: {exc}",
            ) from None
        return _decoded("url", data, max_bytes)
    raise ItemError(400, "InvalidParameter", "The provided URL does not appear to be valid.")


def _decoded(kind: str, data: bytes, max_bytes: int) -> ReceivedAudio:
    if len(data) > max_bytes:
        raise ItemError(
            400, "InvalidParameter", f"The audio file is larger than {max_bytes / 1e6:g} MB."
        )
    item = ReceivedAudio(kind, len(data), hashlib.sha256(data).hexdigest(), data=data)
    info = _probe(item.sha256, data)
    if info is None:
        raise ItemError(400, "InvalidParameter", "File format is not supported.")
    item.duration, item.sample_rate, item.channels, item.codec = info
    return item


# What decoding found, by the bytes' sha256: a conversation resends its clips every turn
# and a batch's retries resend theirs, and PyAV costs ~0.2 ms even for a short clip.
# The same bytes always decode the same, so every request is still checked as before.
Probed = tuple[float | None, int | None, int | None, str | None]  # duration, rate, channels, codec
_PROBED: OrderedDict[str, Probed | None] = OrderedDict()
_PROBED_ITEMS = 512
_probed_lock = threading.Lock()


def _probe(sha256: str, data: bytes) -> Probed | None:
    """What ``data`` (whose sha256 is given) holds, or None when it does not decode."""
    from .._codec import probe
    from ..errors import AudioDecodeError

    with _probed_lock:
        if sha256 in _PROBED:
            _PROBED.move_to_end(sha256)
            return _PROBED[sha256]
    try:
        info = probe(data, name="audio")
        found = (info.duration, info.sample_rate, info.channels, info.codec)
    except AudioDecodeError:
        found = None
    with _probed_lock:
        _PROBED[sha256] = found
        while len(_PROBED) > _PROBED_ITEMS:
            _PROBED.popitem(last=False)
    return found


def audio_tokens(items: list[ReceivedAudio]) -> int:
    """25 tokens per heard second, at least 25 per clip."""
    total = 0
    for item in items:
        heard = min(item.duration or HEARD_SECONDS, HEARD_SECONDS)
        total += max(25, round(heard * 25))
    return total


def estimate_tokens(text: str) -> int:
    wide = sum(1 for ch in text if ord(ch) > 0x2E80)
    return wide + -(-(len(text) - wide) // 4)


def compose(
    model: str,
    clips: list[ReceivedAudio],
    question: str | None,
    earlier_turns: int,
    all_clips: int,
    heard: float | None = HEARD_SECONDS,
) -> str:
    """The emulated answer: says it is emulated and what it received (and heard: only
    the first ``heard`` seconds of each clip; None for all of it)."""
    if clips:
        parts = []
        for item in clips:
            if item.duration is None:
                parts.append(item.error or "unknown length")
            elif heard is None or item.duration <= heard:
                parts.append(f"{item.duration:.2f} s")
            else:
                parts.append(f"{item.duration:.2f} s, only the first {heard:g} s heard")
        audio = f"{len(clips)} audio clip{'s' if len(clips) > 1 else ''} ({'; '.join(parts)})"
    else:
        audio = "no audio"
    return _compose_rest(model, audio, question, earlier_turns, all_clips)


def _compose_rest(
    model: str, audio: str, question: str | None, earlier_turns: int, all_clips: int
) -> str:
    turns = f"{earlier_turns} earlier turn{'s' if earlier_turns != 1 else ''}"
    asked = f'question: "{question}"' if question else "no question text (voice chat)"
    return (
        f"Emulated answer from {model} (not a real model). This message has {audio}; "
        f"the conversation has {turns} and {all_clips} audio clip{'s' if all_clips != 1 else ''} "
        f"in all; {asked}."
    )


_TOKEN = re.compile(r"\s*\S+", re.S)


def split_tokens(text: str) -> list[str]:
    """Stream pieces: words with their leading space (CJK text: a few characters each)."""
    pieces: list[str] = []
    for word in _TOKEN.findall(text):
        if len(word) > 8 and all(ord(c) > 0x2E80 for c in word.strip()):
            pieces.extend(word[i : i + 4] for i in range(0, len(word), 4))
        else:
            pieces.append(word)
    return pieces or [text]
