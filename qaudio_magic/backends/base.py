"""What every backend shares: limits, the request it receives, the events it yields.

A backend turns a :class:`Request` into a stream of :class:`TextDelta` events ending in
one :class:`Completion`. It alone knows its wire format and how it wants audio encoded;
callers above it only see these types.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from .._prepare import PreparedAudio

__all__ = [
    "AudioPart",
    "Backend",
    "Completion",
    "Event",
    "Limits",
    "Message",
    "Request",
    "TextDelta",
    "TextPart",
    "Usage",
    "audio_tokens",
]


@dataclass(frozen=True)
class Limits:
    """What a model accepts; drives audio preparation and the history budget."""

    context_tokens: int = 8_192
    max_input_tokens: int = 6_144
    max_output_tokens: int = 2_048
    max_audio_seconds: float | None = 30.0  # only this much of each clip is heard
    max_audio_bytes: int = 10_000_000  # per file, and per base64 string
    audio_tokens_per_second: float = 25.0
    min_audio_tokens: int = 25
    # (container, codec) pairs the service takes as they are; others are re-encoded.
    accepted: frozenset[tuple[str, str]] = frozenset()
    transcode_format: str = "wav"  # what re-encoded audio becomes (16 kHz mono)
    wants_pcm: bool = False  # local models take decoded samples, not files


def audio_tokens(seconds: float, limits: Limits | None = None) -> int:
    """Audio tokens billed for ``seconds`` of audio: 25 per second, at least 25."""
    lim = limits or Limits()
    if lim.max_audio_seconds is not None:
        seconds = min(seconds, lim.max_audio_seconds)
    return max(lim.min_audio_tokens, math.ceil(seconds * lim.audio_tokens_per_second - 1e-9))


@dataclass(frozen=True)
class AudioPart:
    audio: PreparedAudio


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    parts: tuple[AudioPart | TextPart, ...]

    @property
    def text(self) -> str:
        return "".join(p.text for p in self.parts if isinstance(p, TextPart))

    @property
    def audio(self) -> tuple[PreparedAudio, ...]:
        return tuple(p.audio for p in self.parts if isinstance(p, AudioPart))


@dataclass(frozen=True)
class Request:
    """One model call: the full message list (history included) and sampling parameters."""

    model: str
    messages: tuple[Message, ...]
    params: dict[str, Any] = field(default_factory=dict)
    stream: bool = True


@dataclass(frozen=True)
class Usage:
    """Token counts as the service reports them (None where it reports nothing)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    audio_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        return sum(v or 0 for v in (self.input_tokens, self.output_tokens, self.audio_tokens))

    def as_dict(self) -> dict[str, int | None]:
        return {
            "audio_tokens": self.audio_tokens,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
        }


@dataclass(frozen=True)
class TextDelta:
    """A new piece of answer text."""

    text: str


@dataclass(frozen=True)
class Completion:
    """End of a successful answer."""

    usage: Usage
    request_id: str | None = None
    finish_reason: str | None = None


Event = TextDelta | Completion


class Backend(Protocol):
    """A route to a model family. Implementations: dashscope, openai_compat, local.

    HTTP backends also have ``abort()``, which breaks off their requests in flight from
    another thread (an interrupted batch calls it); their sockets wait in slices so that
    Ctrl-C in the main thread stops a request by itself (``_net.py``).
    """

    route: str

    def limits(self, model: str) -> Limits:
        """Limits of ``model`` on this route."""
        ...

    def stream(self, request: Request) -> Iterator[Event]:
        """Send ``request`` and yield its answer; raise QAudioError subclasses on failure.

        Closing the iterator early (Ctrl-C) must close the connection.
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...
