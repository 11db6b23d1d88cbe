"""What the player shows beside the waveform: speech band, spectrogram, zoomed detail.

Kept apart from ``player.py`` (which owns the widget and the audio bytes) because each
piece here is a pure function of a clip window: the speech map comes from
``grounding.map_for_clip`` (cached per source, so the band is free once an answer was
grounded), the spectrogram from ``_spectrogram``, and the detail of a zoomed view is
decoded on request for just the visible span, so even a 1-hour file zooms to 50 ms per
100 px without ever sending more than a view's worth of numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _spectrogram
from .clip import AudioClip
from .errors import QAudioError
from .grounding import map_for_window

__all__ = [
    "EAGER_SPECTROGRAM_SECONDS",
    "MAX_DETAIL_SECONDS",
    "Detail",
    "bands",
    "detail",
    "spectrogram",
]

EAGER_SPECTROGRAM_SECONDS = 120.0  # longer clips get their picture when first asked for
MAX_DETAIL_SECONDS = 600.0  # a zoomed view wider than this uses the overview
MAX_DETAIL_BINS = 4000


def bands(
    clip: AudioClip | None, start: float, seconds: float
) -> tuple[list[list[float]], list[list[float]]]:
    """Speech and sound regions of ``[start, start + seconds)`` of the clip's source, in
    seconds from ``start``; empty when the audio can't be read."""
    if clip is None:
        return [], []
    smap = map_for_window(clip, start, seconds)
    if smap is None:
        return [], []
    return [list(r) for r in smap.speech], [list(r) for r in smap.sound]


def spectrogram(clip: AudioClip, start: float, seconds: float) -> tuple[bytes, str, float]:
    """The whole-window picture: (image bytes, mime, the level drawn white in dB)."""
    levels, top = _spectrogram.spectrogram(clip.decode, start, seconds)
    data, mime = _spectrogram.encode(_spectrogram.render(levels, top))
    return data, mime, top


@dataclass(frozen=True)
class Detail:
    """Finer peaks and picture of ``[start, end)`` (player seconds) for a zoomed view."""

    start: float
    end: float
    peaks: bytes  # int8 (min, max) pairs on the overview's scale
    image: bytes
    mime: str


def detail(
    clip: AudioClip,
    offset: float,
    start: float,
    end: float,
    bins: int,
    *,
    scale: float,
    top_db: float | None,
) -> Detail | None:
    """Decode just ``[start, end)`` (seconds of the player, whose 0 is ``offset`` in the
    source) into ``bins`` peak pairs scaled like the overview, and a spectrogram slice."""
    start, end = max(float(start), 0.0), float(end)
    if clip.is_remote or not end > start or end - start > MAX_DETAIL_SECONDS:
        return None
    bins = int(min(max(int(bins), 1), MAX_DETAIL_BINS))
    try:
        x = clip.decode(offset + start, offset + end)
    except (QAudioError, OSError, ValueError):
        return None
    if not len(x):
        return None
    bins = min(bins, len(x))
    edges = np.linspace(0, len(x), bins + 1).astype(np.int64)[:-1]
    lo, hi = np.minimum.reduceat(x, edges), np.maximum.reduceat(x, edges)
    pairs = np.stack([lo, hi], axis=1) / (scale or 1.0) * 127.0
    peaks = np.clip(np.round(pairs), -127, 127).astype(np.int8).tobytes()
    width = max(1, min(bins // 2, 1600))
    levels, _ = _spectrogram.spectrogram(
        lambda a, b: x[round((a - offset - start) * 16_000) : round((b - offset - start) * 16_000)],
        offset + start,
        len(x) / 16_000,
        width=width,
    )
    image, mime = _spectrogram.encode(_spectrogram.render(levels, top_db))
    return Detail(start, start + len(x) / 16_000, peaks, image, mime)
