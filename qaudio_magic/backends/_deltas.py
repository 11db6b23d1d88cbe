"""What a chat-completions message or delta holds besides answer text: reasoning, spoken
audio, speech-recognition annotations (CURRENT-MODELS §11.4.2, §11.5, §11.6, §11.9, §11.13).

* Reasoning arrives in ``reasoning_content`` (DashScope) or ``reasoning`` (vLLM with a
  reasoning parser). A vLLM server started without one writes it inline as a leading
  ``<think>…</think>`` in ``content``; :class:`ThinkSplitter` takes it out (vLLM only:
  DashScope always separates it).
* Spoken audio arrives as base64 in ``delta.audio.data``: headerless 16-bit mono PCM at
  24 kHz (the docs' decoders); :class:`PCMReader` decodes it, drops a ``RIFF`` header
  should one ever come (UNVERIFIED that it never does), keeps samples whole across
  chunks, tolerates audio deltas with only a ``transcript``, and stops at a bound.
* ``annotations: [{"type": "audio_info", "language", "emotion"}]`` (Qwen3-ASR).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from typing import Any

from .base import Annotation, AudioDelta, Completion, Event, ReasoningDelta, TextDelta

__all__ = [
    "MAX_SPEECH_BYTES",
    "PCMReader",
    "ThinkSplitter",
    "annotation_of",
    "reasoning_of",
    "whole",
]

SPEECH_RATE = 24_000
MAX_SPEECH_BYTES = 30 * 60 * SPEECH_RATE * 2  # 30 minutes of spoken answer, then no more
_OPEN, _CLOSE = "<think>", "</think>"


def reasoning_of(part: dict[str, Any]) -> str:
    """The reasoning text of a message or delta (empty when none)."""
    for key in ("reasoning_content", "reasoning"):
        value = part.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def annotation_of(part: dict[str, Any]) -> Annotation | None:
    """The ``audio_info`` annotation of a message or delta, if it has one."""
    items = part.get("annotations")
    if not isinstance(items, list):
        return None
    for item in items:
        if isinstance(item, dict) and item.get("type", "audio_info") == "audio_info":
            language, emotion = item.get("language"), item.get("emotion")
            return Annotation(
                str(language) if language is not None else None,
                str(emotion) if emotion is not None else None,
            )
    return None


class PCMReader:
    """Spoken audio from ``audio`` objects: whole 16-bit samples, no header, bounded."""

    def __init__(self) -> None:
        self._rest = b""
        self._first = True
        self.size = 0

    def feed(self, audio: Any) -> AudioDelta | None:
        if not isinstance(audio, dict):
            return None
        data = audio.get("data")
        if not isinstance(data, str) or not data:
            return None  # e.g. a delta carrying only a "transcript"
        try:
            raw = base64.b64decode(data, validate=False)
        except (binascii.Error, ValueError):
            return None  # a broken piece of audio must not cost the answer its text
        if self._first:
            self._first = False
            raw = _strip_riff(raw)
        raw, self._rest = self._rest + raw, b""
        if len(raw) % 2:
            raw, self._rest = raw[:-1], raw[-1:]
        room = MAX_SPEECH_BYTES - self.size
        raw = raw[: max(room, 0) // 2 * 2]
        if not raw:
            return None
        self.size += len(raw)
        return AudioDelta(raw, SPEECH_RATE)


def _strip_riff(raw: bytes) -> bytes:
    """PCM after a WAV header, when the data starts with one; else the data as it is."""
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        return raw
    pos = 12
    while pos + 8 <= len(raw):
        size = int.from_bytes(raw[pos + 4 : pos + 8], "little")
        if raw[pos : pos + 4] == b"data":
            return raw[pos + 8 :]
        pos += 8 + size + (size & 1)
    return b""


class ThinkSplitter:
    """Answer text with a leading ``<think>…</think>`` turned into reasoning (vLLM)."""

    def __init__(self, active: bool = True) -> None:
        self._state = "start" if active else "text"
        self._buf = ""

    def off(self) -> None:
        """The server separates reasoning itself: pass text through."""
        if self._state == "start" and not self._buf:
            self._state = "text"

    def feed(self, text: str) -> list[Event]:
        if self._state == "after":  # the blank lines between </think> and the answer
            text = text.lstrip()
            if not text:
                return []
            self._state = "text"
        if self._state == "text":
            return [TextDelta(text)] if text else []
        self._buf += text
        if self._state == "start":
            head = self._buf.lstrip()
            if _OPEN.startswith(head):  # "", "<", "<thi" ...: not decided yet
                return []
            if not head.startswith(_OPEN):
                self._state, out, self._buf = "text", self._buf, ""
                return [TextDelta(out)]
            self._state, self._buf = "think", head[len(_OPEN) :]
        end = self._buf.find(_CLOSE)
        if end < 0:
            keep = next(
                (n for n in range(min(len(_CLOSE) - 1, len(self._buf)), 0, -1)
                 if _CLOSE.startswith(self._buf[-n:])),
                0,
            )  # fmt: skip
            out, self._buf = self._buf[: len(self._buf) - keep], self._buf[len(self._buf) - keep :]
            return [ReasoningDelta(out)] if out else []
        thought, rest = self._buf[:end], self._buf[end + len(_CLOSE) :].lstrip()
        self._state, self._buf = ("text" if rest else "after"), ""
        events: list[Event] = [ReasoningDelta(thought)] if thought else []
        return events + ([TextDelta(rest)] if rest else [])

    def flush(self) -> list[Event]:
        out, self._buf = self._buf, ""
        if not out:
            return []
        return [ReasoningDelta(out)] if self._state == "think" else [TextDelta(out)]


def whole(events: Iterator[Event]) -> Iterator[Event]:
    """The answer in one piece of each kind once complete (``--no-stream`` on a model that
    only streams): reasoning, text, audio, annotation, then the Completion."""
    thought: list[str] = []
    parts: list[str] = []
    pcm: list[bytes] = []
    rate = SPEECH_RATE
    note: Annotation | None = None
    try:
        for event in events:
            if isinstance(event, TextDelta):
                parts.append(event.text)
            elif isinstance(event, ReasoningDelta):
                thought.append(event.text)
            elif isinstance(event, AudioDelta):
                pcm.append(event.pcm)
                rate = event.rate
            elif isinstance(event, Annotation):
                note = event
            elif isinstance(event, Completion):
                if thought:
                    yield ReasoningDelta("".join(thought))
                if parts:
                    yield TextDelta("".join(parts))
                if pcm:
                    yield AudioDelta(b"".join(pcm), rate)
                if note is not None:
                    yield note
                yield event
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
