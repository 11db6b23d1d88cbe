"""What every backend shares: limits, prepared audio, the request, the events it yields.

A backend turns a :class:`Request` into a stream of :class:`TextDelta` events ending in
one :class:`Completion`; thinking models add :class:`ReasoningDelta` events (before the
answer), spoken answers :class:`AudioDelta` events, speech recognition an
:class:`Annotation`. It alone knows its wire format and how it wants audio encoded;
callers above it only see these types.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .._format import span

if TYPE_CHECKING:  # numpy loads with the first decode, not at `%load_ext`
    import numpy as np

    from ..clip import AudioClip

__all__ = [
    "Annotation",
    "AudioDelta",
    "AudioPart",
    "Backend",
    "Completion",
    "Event",
    "Limits",
    "Message",
    "PreparedAudio",
    "ReasoningDelta",
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
    max_url_bytes: int | None = None  # a file the service fetches by URL (None: as above)
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


_MIME = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "aac": "audio/aac",
    "amr": "audio/amr",
    "mov": "audio/mp4",
    "flac": "audio/flac",
    "ogg": "audio/ogg",
    "matroska": "audio/webm",
}
# File extension for what is sent: the service may go by it (an MP3 named .wav is renamed).
_EXT = {"mov": "m4a", "matroska": "webm"}
_MOV_EXTS = ("m4a", "mp4", "3gp", "3gpp", "3g2")


@dataclass(frozen=True, eq=False)
class PreparedAudio:
    """Audio ready for one backend: bytes (or a URL passed through) plus what they hold."""

    clip: AudioClip
    data: bytes | None  # encoded audio to send; None when ``url`` is passed through
    url: str | None
    format: str  # short container name: wav, mp3, aac, amr, mov ...
    start: float  # window sent, in seconds of the source
    seconds: float | None  # duration sent (None: remote, unknown)
    cut_seconds: float = 0.0  # audio beyond the model's limit that was not sent
    transcoded: bool = False
    pcm: np.ndarray | None = None  # 16 kHz mono samples, for backends that want PCM
    notes: tuple[str, ...] = field(default=())  # decoding repairs, truncation, URL caveats

    @property
    def mime(self) -> str:
        return _MIME.get(self.format, "application/octet-stream")

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else 0

    @property
    def sha256(self) -> str:
        """Identity of the bytes sent (of the URL for pass-through)."""
        if self.data is None:
            return hashlib.sha256((self.url or "").encode()).hexdigest()
        return hashlib.sha256(self.data).hexdigest()

    @property
    def end(self) -> float | None:
        return None if self.seconds is None else self.start + self.seconds

    @property
    def label(self) -> str:
        """What was sent, for people: ``p01.wav [80–110 s] · 30.0 s``."""
        text = self.clip.name
        if self.seconds is not None:
            if self.clip.is_windowed or self.cut_seconds:
                text += f" [{span(self.start, self.start + self.seconds)}]"
            text += f" · {self.seconds:.1f} s"
        return text

    @property
    def filename(self) -> str:
        """A safe file name for what is sent: the clip's stem, its window, the real extension."""
        stem, _, ext = self.clip.name.rpartition(".")
        if not stem:
            stem, ext = self.clip.name, ""
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:60] or "audio"
        if self.clip.is_windowed or self.cut_seconds:
            stem += f"_{self.start:g}-{self.start + (self.seconds or 0):g}s"
        if self.format == "mov" and ext.lower() in _MOV_EXTS:
            real = ext.lower()
        else:
            real = _EXT.get(self.format, self.format)
        return f"{stem}.{real}"


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


@dataclass(frozen=True, slots=True)  # slots: a big batch keeps one per row
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


@dataclass(frozen=True)
class ReasoningDelta:
    """A new piece of the model's reasoning (thinking models). Shown apart from the
    answer, never part of its text, never sent back in the history."""

    text: str


@dataclass(frozen=True)
class AudioDelta:
    """A new piece of a spoken answer: 16-bit little-endian mono PCM at ``rate`` Hz."""

    pcm: bytes
    rate: int = 24_000


@dataclass(frozen=True)
class Annotation:
    """What a speech-recognition model reports about the audio it transcribed."""

    language: str | None = None
    emotion: str | None = None


Event = TextDelta | ReasoningDelta | AudioDelta | Annotation | Completion


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
