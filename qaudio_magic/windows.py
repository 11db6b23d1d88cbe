"""Long audio as consecutive windows: plan them, then cut them in one streaming pass.

Qwen-Audio hears only the first 30 s of a clip, so a 20-minute interview is asked about
window by window (``windows=30``, optionally overlapping). Windows carry absolute times:
window 3 of 30 s is 60–90 s of the source, and its clip is ``source[60:90]``.

Memory stays bounded whatever the length: :class:`WindowReader` decodes the source once,
front to back (:func:`qaudio_magic._codec.iter_pcm` streams packet by packet), keeps only
the samples of the window being filled (plus the overlap), and hands out each window as
encoded audio as soon as it is complete. An hour-long file never exists as one array.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

import numpy as np

from . import _codec
from ._prepare import PreparedAudio
from .backends.base import Limits
from .clip import AudioClip
from .errors import AudioTooLargeError, InputError

__all__ = ["MIN_WINDOW", "WindowReader", "check_windows", "plan_windows", "window_clip"]

MIN_WINDOW = 0.1  # seconds; a shorter tail holds nothing a model can hear (and fails decoding)


def check_windows(size: float, overlap: float, limits: Limits, model: str) -> None:
    """Refuse window settings that cannot work, before anything is decoded or sent."""
    if not size or size <= 0:
        raise InputError(f"windows must be a positive number of seconds, got {size!r}")
    if overlap < 0 or overlap >= size:
        raise InputError(
            f"overlap must be at least 0 and shorter than the {size:g} s window, got {overlap:g}"
        )
    heard = limits.max_audio_seconds
    if heard is not None and size > heard + 1e-9:
        raise InputError(
            f"windows of {size:g} s are longer than the {heard:g} s {model} hears; "
            f"use windows of {heard:g} s or less"
        )


def plan_windows(
    duration: float, size: float, overlap: float = 0.0, *, start: float = 0.0
) -> list[tuple[float, float]]:
    """Windows ``(start, end)`` in seconds covering ``duration`` seconds from ``start``.

    Consecutive windows begin ``size - overlap`` apart; the last one ends with the audio
    (it may be shorter). A tail under :data:`MIN_WINDOW` is left out.
    """
    if size <= 0 or not 0 <= overlap < size:
        raise ValueError("need size > 0 and 0 <= overlap < size")
    step = size - overlap
    out: list[tuple[float, float]] = []
    k = 0
    while True:
        lo = round(k * step, 6)
        if lo >= duration - 1e-9:
            break
        hi = round(min(lo + size, duration), 6)
        if hi - lo < MIN_WINDOW and out:
            break
        out.append((round(start + lo, 6), round(start + hi, 6)))
        if hi >= duration - 1e-9:
            break
        k += 1
    return out


def window_clip(clip: AudioClip, start: float, end: float) -> AudioClip:
    """``clip`` limited to ``[start, end)`` absolute seconds, sharing the facts already measured.

    A windowed clip is a new value; copying the decoded facts and the digest keeps an
    hour-long source from being probed and hashed again for each of its 120 windows.
    """
    return clip.with_window(start, end)


class _Samples:
    """A queue of PCM blocks addressed by absolute sample index."""

    def __init__(self) -> None:
        self.blocks: deque[np.ndarray] = deque()
        self.start = 0  # absolute index of blocks[0][0]
        self.end = 0  # absolute index after the last sample held

    def push(self, block: np.ndarray) -> None:
        self.blocks.append(block)
        self.end += len(block)

    def drop_before(self, index: int) -> None:
        while self.blocks and self.start + len(self.blocks[0]) <= index:
            self.start += len(self.blocks.popleft())

    def take(self, lo: int, hi: int) -> np.ndarray:
        parts = []
        pos = self.start
        for block in self.blocks:
            a, b = max(lo - pos, 0), min(hi - pos, len(block))
            if b > a:
                parts.append(block[a:b])
            pos += len(block)
            if pos >= hi:
                break
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


class WindowReader:
    """Decode ``clip`` once and yield each window of ``plan`` as audio ready to send."""

    def __init__(self, clip: AudioClip, plan: list[tuple[float, float]], limits: Limits) -> None:
        if clip.is_remote:
            raise InputError(
                f"{clip.name}: windows need the audio in the kernel; a URL is passed to the "
                "service unread (download it first)"
            )
        self.clip = clip
        self.plan = plan
        self.limits = limits
        self.rate = _codec.TARGET_RATE
        self.peak_samples = 0  # most samples held at once (for the memory benchmark)

    def __len__(self) -> int:
        return len(self.plan)

    def __iter__(self) -> Iterator[PreparedAudio]:
        rate = self.rate
        bounds = [(round(a * rate), round(b * rate)) for a, b in self.plan]
        if not bounds:
            return
        held = _Samples()
        i = 0
        for block in _codec.iter_pcm(self.clip.source(), name=self.clip.name, rate=rate, mono=True):
            held.push(block[0])
            self.peak_samples = max(self.peak_samples, held.end - held.start)
            while i < len(bounds) and bounds[i][1] <= held.end:
                yield self._window(i, held.take(*bounds[i]))
                i += 1
                held.drop_before(bounds[i][0] if i < len(bounds) else held.end)
            if i < len(bounds):
                held.drop_before(bounds[i][0])  # skip audio before the next window
            else:
                return
        # the source ended early (its decoded length is what counts): short last windows
        for k in range(i, len(bounds)):
            pcm = held.take(*bounds[k])
            if len(pcm) >= MIN_WINDOW * rate:
                yield self._window(k, pcm)

    def _window(self, k: int, pcm: np.ndarray) -> PreparedAudio:
        start, end = self.plan[k]
        seconds = len(pcm) / self.rate
        if abs(start + seconds - end) > 1.0 / self.rate:  # the source ended before the plan
            end = round(start + seconds, 6)
        clip = window_clip(self.clip, start, end)
        if self.limits.wants_pcm:
            return PreparedAudio(clip, None, None, "pcm", start, seconds, 0.0, True, pcm)
        data = _codec.encode(pcm, self.rate, self.limits.transcode_format)
        if len(data) > self.limits.max_audio_bytes:
            raise AudioTooLargeError(
                f"{clip.label()}: {len(data) / 1e6:.1f} MB after encoding is over the "
                f"{self.limits.max_audio_bytes / 1e6:.0f} MB limit (use shorter windows)"
            )
        return PreparedAudio(
            clip, data, None, self.limits.transcode_format, start, seconds, 0.0, True
        )
