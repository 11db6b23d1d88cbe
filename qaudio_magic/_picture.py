"""The static waveform picture: what a saved notebook shows where the live player was.

A player is a widget; a notebook opened without its kernel (JupyterLab, GitHub, nbviewer,
``nbconvert --to html``) cannot draw it. So every answer's plain output also carries a
small picture of the waveform with the times the answer mentions marked — an SVG of about
1 KB drawn from the peaks the player already computed (no second decode, no audio bytes).
The waveform is its upper envelope as one relative path, mirrored below the centre line
by a ``<use>``: a saved notebook grows by the picture on every answer, so bytes count.

It goes into the answer's HTML as ``<img src="data:image/svg+xml,...">`` (percent-encoded,
so the saved notebook shows readable shapes, not an opaque blob): JupyterLab's sanitizer
(untrusted notebooks) removes inline ``<svg>`` but keeps ``data:`` images, which cannot
run script. Where a live player renders in the same output area, a CSS rule of
the answer hides the picture (:data:`HIDE_WHEN_LIVE`), so a running notebook shows the
player alone.
"""

from __future__ import annotations

import html
import urllib.parse
from collections.abc import Sequence

import numpy as np

from ._format import clock

__all__ = ["HIDE_WHEN_LIVE", "picture_html", "waveform_svg"]

WIDTH, HEIGHT, AXIS = 600, 44, 11  # the drawing, and the strip under it for the time labels
COLUMNS = 120  # waveform columns drawn, 5 px each (the player's 2,000 min/max pairs, merged)
_WAVE, _MARK, _BACK, _TEXT = "#4a7bd0", "#ffaa00", "#f2f2f2", "#666"

# A live player (its root is .qaudio-player) in the same output area: the picture is not needed.
HIDE_WHEN_LIVE = (
    ".jp-OutputArea:has(.qaudio-player) .qaudio-still,"
    ".output:has(.qaudio-player) .qaudio-still{display:none}"
)


def _columns(peaks: bytes, columns: int) -> np.ndarray:
    """The int8 (min, max) pairs merged to at most ``columns`` pairs, as floats in [-1, 1]."""
    raw = np.frombuffer(peaks, dtype=np.int8)[: len(peaks) // 2 * 2].reshape(-1, 2)
    pairs: np.ndarray = raw.astype(np.float32) / 127.0
    if len(pairs) > columns:
        edges = np.linspace(0, len(pairs), columns + 1).astype(np.int64)[:-1]
        lo = np.minimum.reduceat(pairs[:, 0], edges)
        hi = np.maximum.reduceat(pairs[:, 1], edges)
        pairs = np.stack([lo, hi], axis=1)
    return pairs


def _length(duration: float) -> str:
    """The clip's length as its label says it: ``6.0 s``, ``1:35``."""
    return f"{duration:.1f} s" if duration < 60 else clock(duration)


def _n(value: float) -> str:
    """A coordinate with at most one decimal and no trailing zero (the SVG stays small)."""
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _envelope(pairs: np.ndarray, step: float, half: float, mid: float) -> str:
    """The upper half of the waveform as a closed path: a point per column where the height
    changes, as relative moves (``l5-3 5 2 15 0``), back along the centre line."""
    heights = np.rint(np.abs(pairs).max(axis=1) * half).astype(np.int64)
    moves, flat = "", 0
    for rise in (-np.diff(heights)).tolist():
        if not rise:  # a flat stretch is one move, a flat end none (H): silence is cheap
            flat += 1
            continue
        if flat:
            moves += f" {_n(step * flat)} 0"
            flat = 0
        moves += f" {_n(step)}{'' if rise < 0 else ' '}{rise}"
    head, tail = f"M0 {mid:.0f}V{mid - heights[0]:.0f}", f"H{WIDTH}V{mid:.0f}Z"
    return head + (f"l{moves[1:]}" if moves else "") + tail


def waveform_svg(
    peaks: bytes,
    duration: float,
    marks: Sequence[tuple[float, float | None]] = (),
    *,
    columns: int = COLUMNS,
) -> str:
    """An SVG of the waveform (``peaks``: int8 min/max pairs over ``duration`` seconds)
    with ``marks`` — (start, end) seconds, end None for a point — shaded."""
    pairs = _columns(peaks, columns)
    n = max(len(pairs), 1)
    mid, half = HEIGHT / 2, HEIGHT / 2 - 1
    step = WIDTH / n
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT + AXIS}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT + AXIS}" font-family="sans-serif" font-size="9">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" rx="3" fill="{_BACK}"/>',
    ]
    points = []  # drawn over the waveform (a 2 px line under a loud onset would vanish)
    if duration > 0:
        for start, end in marks:
            x = start / duration * WIDTH
            if end is None:
                points.append(f'<rect x="{x:.1f}" width="2" height="{HEIGHT}" fill="{_MARK}"/>')
                continue
            w = max((min(end, duration) - start) / duration * WIDTH, 2.0)
            out.append(
                f'<rect x="{x:.1f}" width="{w:.1f}" height="{HEIGHT}" fill="{_MARK}" '
                'fill-opacity="0.45"/>'
            )
    out.append(f'<path d="M0 {mid:.0f}H{WIDTH}" stroke="{_WAVE}" stroke-width="0.5"/>')
    if len(pairs):
        out.append(f'<path id="w" d="{_envelope(pairs, step, half, mid)}" fill="{_WAVE}"/>')
        out.append(f'<use href="#w" transform="matrix(1 0 0 -1 0 {HEIGHT})"/>')
    out.extend(points)
    base = HEIGHT + AXIS - 2
    out.append(f'<text x="1" y="{base}" fill="{_TEXT}">0 s</text>')
    out.append(
        f'<text x="{WIDTH - 1}" y="{base}" fill="{_TEXT}" text-anchor="end">'
        f"{html.escape(_length(duration))}</text>"
    )
    out.append("</svg>")
    return "".join(out)


def picture_html(
    peaks: bytes,
    duration: float,
    marks: Sequence[tuple[float, float | None]],
    label: str,
    times: Sequence[str] = (),
) -> str:
    """The picture as an ``<img>`` with a data URL, described in its ``alt`` text."""
    svg = waveform_svg(peaks, duration, marks).replace('"', "'")
    data = urllib.parse.quote(svg, safe=" '=:/,.-")
    alt = f"waveform of {label}" + (f"; marked: {', '.join(times)}" if times else "")
    return (
        f'<img class="qaudio-still" src="data:image/svg+xml,{data}" '
        f'alt="{html.escape(alt)}" title="{html.escape(alt)}" width="{WIDTH}" '
        f'height="{HEIGHT + AXIS}" style="max-width:100%;height:auto">'
    )
