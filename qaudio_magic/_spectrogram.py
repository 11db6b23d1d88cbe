"""A small log-frequency spectrogram image of a clip, computed with numpy, for the player.

Only the columns the picture shows are analysed: one 32 ms Hann-windowed FFT at the centre
of each column, so the cost follows the picture's width, not the clip's length, and long
clips stream through in 30 s pieces with bounded memory. Rows are spaced evenly in
log-frequency from 50 Hz to 8 kHz (where speech formants and most events sit) and levels
map 80 dB of range onto 0-255; the browser colours the grey image. Encoded as WebP
(lossy, quality 70) by the FFmpeg that PyAV bundles: about 9 KB for 1200 × 128 of 30 s of
speech, under the 32 KB the player may send for a 30 s clip; PNG when WebP is missing.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np

__all__ = ["HEIGHT", "WIDTH", "columns", "encode", "render", "spectrogram"]

RATE = 16_000
N_FFT = 512
WIDTH = 1200  # columns of the whole-clip picture
HEIGHT = 128  # log-frequency rows
LOW_HZ, HIGH_HZ = 50.0, 8000.0
RANGE_DB = 80.0
_PIECE = 30 * RATE  # samples decoded at a time for long clips


def _rows(height: int) -> tuple[np.ndarray, np.ndarray]:
    """FFT bin ranges ``[lo, hi)`` of each row, top row highest."""
    edges = np.geomspace(LOW_HZ, HIGH_HZ, height + 1) * N_FFT / RATE
    lo = np.floor(edges[:-1]).astype(np.int64)
    hi = np.maximum(np.ceil(edges[1:]).astype(np.int64), lo + 1)
    return lo[::-1], np.minimum(hi, N_FFT // 2 + 1)[::-1]


def columns(x: np.ndarray, centres: np.ndarray, height: int = HEIGHT) -> np.ndarray:
    """Level in dB of each row at each centre sample of ``x``: shape ``(height, len)``."""
    x = np.asarray(x, np.float32).reshape(-1)
    half = N_FFT // 2
    padded = np.pad(x, (half, half))
    idx = np.asarray(centres, np.int64)[:, None] + np.arange(N_FFT)[None, :]
    frames = padded[np.clip(idx, 0, len(padded) - 1)] * np.hanning(N_FFT).astype(np.float32)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (n, bins)
    lo, hi = _rows(height)
    cum = np.concatenate([np.zeros((len(power), 1)), np.cumsum(power, axis=1)], axis=1)
    band = (cum[:, hi] - cum[:, lo]) / (hi - lo)  # mean power per row
    return (10 * np.log10(band.T + 1e-12)).astype(np.float32)


def render(levels: np.ndarray, top_db: float | None = None) -> np.ndarray:
    """dB levels -> uint8 image; ``top_db``: the level drawn white (default: the loudest)."""
    top = float(levels.max()) if top_db is None else top_db
    scaled = (levels - (top - RANGE_DB)) / RANGE_DB * 255
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def encode(image: np.ndarray) -> tuple[bytes, str]:
    """A grey image as (bytes, mime): WebP when the bundled FFmpeg has it, else PNG."""
    import av

    height, width = image.shape
    for codec, fmt, mime, opts in (
        ("libwebp", "webp", "image/webp", {"quality": "70"}),
        ("png", "image2", "image/png", {}),
    ):
        try:
            buf = io.BytesIO()
            with av.open(buf, "w", format=fmt if fmt != "image2" else "image2pipe") as out:
                stream = out.add_stream(codec, options=opts)
                stream.width, stream.height = width, height
                stream.pix_fmt = "yuv420p" if codec == "libwebp" else "gray"
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="gray")
                for packet in stream.encode(frame.reformat(format=stream.pix_fmt)):
                    out.mux(packet)
                for packet in stream.encode(None):
                    out.mux(packet)
            return buf.getvalue(), mime
        except (av.error.FFmpegError, ValueError):  # pragma: no cover - codec missing
            continue
    raise RuntimeError("no image encoder available")  # pragma: no cover


def spectrogram(
    read: Callable[[float, float], np.ndarray],
    start: float,
    seconds: float,
    width: int = WIDTH,
    height: int = HEIGHT,
    top_db: float | None = None,
) -> tuple[np.ndarray, float]:
    """Levels of ``width`` columns over ``[start, start + seconds)``, and the loudest level.

    ``read(a, b)`` returns 16 kHz mono samples of ``[a, b)`` seconds (a clip's ``decode``);
    it is called on 30 s pieces with a frame's worth of overlap, never on the whole.
    """
    total = max(round(seconds * RATE), 1)
    width = max(1, min(width, total // 16 or 1))
    centres = ((np.arange(width) + 0.5) * total / width).astype(np.int64)
    out = np.full((height, width), -120.0, np.float32)
    half = N_FFT // 2
    for first in range(0, total, _PIECE):
        last = min(first + _PIECE, total)
        pick = np.flatnonzero((centres >= first) & (centres < last))
        if not len(pick):
            continue
        a = max(first - half, 0)
        x = read(start + a / RATE, start + min(last + half, total) / RATE)
        out[:, pick] = columns(x, centres[pick] - a, height)
    return out, float(out.max()) if top_db is None else top_db
