"""Turn an AudioClip into the audio a backend will send, within that backend's limits.

Original bytes go out untouched when the service accepts their format, the clip is
not windowed and nothing must be cut; otherwise the window is decoded, downmixed to
16 kHz mono and re-encoded. What was cut to respect the model's 30 s is recorded so the
view can say so: never a silent cut.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import AudioTooLargeError

if TYPE_CHECKING:  # numpy and PyAV load on the first decode, not at `%load_ext`
    import numpy as np

    from .backends.base import Limits
    from .clip import AudioClip

__all__ = ["PreparedAudio", "prepare"]

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


_cache: OrderedDict[tuple[object, ...], PreparedAudio] = OrderedDict()
_cache_lock = threading.Lock()
_CACHE_ITEMS = 64


def prepare(clip: AudioClip, limits: Limits) -> PreparedAudio:
    """Audio for ``clip`` within ``limits``; cached so history turns are not re-encoded."""
    key = (clip.sha256, clip.start, clip.end, limits)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit if hit.clip is clip else _with_clip(hit, clip)
    prepared = _prepare(clip, limits)
    with _cache_lock:
        _cache[key] = prepared
        while len(_cache) > _CACHE_ITEMS:
            _cache.popitem(last=False)
    return prepared


def _with_clip(hit: PreparedAudio, clip: AudioClip) -> PreparedAudio:
    from dataclasses import replace

    return replace(hit, clip=clip)


def _prepare(clip: AudioClip, limits: Limits) -> PreparedAudio:
    from . import _codec

    if clip.is_remote:
        return PreparedAudio(
            clip, None, clip.location, _guess_format(clip.name), clip.start, clip.duration
        )
    info = clip.info
    assert info is not None
    start = clip.start
    seconds = clip.duration or 0.0
    cut = 0.0
    if limits.max_audio_seconds is not None and seconds > limits.max_audio_seconds:
        cut = seconds - limits.max_audio_seconds
        seconds = limits.max_audio_seconds
    whole = not clip.is_windowed and cut == 0.0
    accepted = (info.container, info.codec) in limits.accepted
    if limits.wants_pcm:
        pcm = _codec.decode(clip._src(), start=start, end=start + seconds, name=clip.name)
        return PreparedAudio(clip, None, None, "pcm", start, seconds, cut, True, pcm)
    if whole and accepted:
        data = clip.read_bytes()
        if len(data) <= limits.max_audio_bytes:
            return PreparedAudio(clip, data, None, info.container, start, seconds, cut, False)
    pcm = _codec.decode(clip._src(), start=start, end=start + seconds, name=clip.name)
    data = _codec.encode(pcm, _codec.TARGET_RATE, limits.transcode_format)
    if len(data) > limits.max_audio_bytes:
        raise AudioTooLargeError(
            f"{clip.name}: {len(data) / 1e6:.1f} MB after re-encoding is over the "
            f"{limits.max_audio_bytes / 1e6:.0f} MB limit"
        )
    return PreparedAudio(
        clip, data, None, limits.transcode_format, start, len(pcm) / 16_000, cut, True
    )


def _guess_format(name: str) -> str:
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return {"m4a": "mov", "mp4": "mov", "3gp": "mov", "webm": "matroska", "opus": "ogg"}.get(
        ext, ext or "wav"
    )
