"""Grounding: is there anything in the audio where the model says something happens?

Audio-language models write times as free text and they drift or invent them. Every
parsed :class:`~qaudio_magic.segments.Segment` is checked here against the clip's own
signal at 16 kHz:

* a **speech map** of the clip: speech regions from a voice-activity detector (Silero VAD,
  see ``_vad.py``) and sound regions from the frame energy (10 ms frames, a level above
  the clip's own noise floor). Speech edges come from the VAD's 32 ms frames and are then
  moved onto the energy edge within ±0.2 s, so they land within a frame or two of the
  true word boundary. The map is computed once per source, in 30 s blocks cached by the
  source's sha256: a window of a long file (``clip[80:110]``, ``--windows``) only
  analyses the blocks it covers, and the whole-file timeline reuses them;
* a :class:`Grounding` for each segment: ``status`` (``"speech"`` when the range overlaps
  detected speech, ``"sound"`` when it overlaps only non-speech sound, ``"silence"``
  otherwise; ``None`` when the audio could not be read), and ``start``/``end`` snapped to
  the nearest region edges within :data:`TOLERANCE`. A point in time is grounded to the
  region that contains it or starts nearest to it. The model's own times stay in
  ``segment.start``/``.end``; the times it wrote before they were cut to the clip's length
  are kept too (``said_start``/``said_end``), so a chip can say that it was clipped.

Times are relative to the clip the model heard, like the segment's; ``segment.offset``
places both in the source.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ._grounding_result import Grounding, Status
from .segments import Segment, find_segments

if TYPE_CHECKING:
    from .clip import AudioClip

__all__ = [
    "TOLERANCE",
    "Grounding",
    "SpeechMap",
    "ground",
    "ground_segments",
    "map_for_clip",
    "map_for_window",
    "speech_map",
]


RATE = 16_000
HOP = 160  # one analysis frame: 10 ms
TOLERANCE = 0.5  # seconds a model's time may be moved onto a detected edge
_EDGE = 20  # frames (0.2 s) a VAD edge may move onto the energy edge
_ON, _OFF = 0.5, 0.35  # VAD hysteresis (Silero's own defaults: threshold, threshold - 0.15)
_SPEECH_GAP, _SPEECH_MIN = 10, 6  # frames: pauses under 100 ms join, speech under 60 ms goes
_SOUND_GAP, _SOUND_MIN = 5, 3  # frames: gaps under 50 ms join, sounds under 30 ms go
_LOUD_DB = -35.0  # dBFS: always audible, whatever the background
_QUIET_DB = -60.0  # dBFS: never counted as sound
_ABOVE_FLOOR = 12.0  # dB over the clip's noise floor (10th percentile of its frames)
_EDGE_DB = 2.0  # dB over the floor where a word's edge is looked for (onset/offset)
_BLOCK = 30.0  # seconds of source analysed and cached together (a window of a long file)
_PREROLL = 0.512  # seconds of audio the VAD hears before a block (16 of its frames)


# ---------------------------------------------------------------------- frames
@dataclass(frozen=True)
class _Frames:
    """Per-10 ms features: level in dBFS and speech probability (0-1)."""

    db: np.ndarray  # float32
    vad: np.ndarray  # float32

    def __len__(self) -> int:
        return len(self.db)


def _levels(x: np.ndarray) -> np.ndarray:
    n = len(x) // HOP
    if n == 0:
        return np.zeros(0, np.float32)
    power = np.square(x[: n * HOP].reshape(n, HOP), dtype=np.float64).mean(axis=1)
    return (10.0 * np.log10(power + 1e-12)).astype(np.float32)


def _features(x: np.ndarray, preroll: int = 0) -> _Frames:
    """Features of ``x[preroll:]``; the VAD also hears the ``preroll`` samples before it."""
    from ._vad import FRAME, speech_probs

    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
    db = _levels(x[preroll:])
    probs = speech_probs(x)
    centres = preroll + np.arange(len(db)) * HOP + HOP // 2
    idx = np.minimum(centres // FRAME, max(len(probs) - 1, 0))
    vad = probs[idx] if len(probs) else np.zeros(len(db), np.float32)
    return _Frames(db, vad.astype(np.float32))


# ---------------------------------------------------------------------- runs of frames
def _runs(on: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` frame indices of the True runs."""
    if not len(on):
        return []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(np.int8), [0]])))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))


def _tidy(runs: list[tuple[int, int]], gap: int, shortest: int) -> list[tuple[int, int]]:
    joined: list[tuple[int, int]] = []
    for a, b in runs:
        if joined and a - joined[-1][1] < gap:
            joined[-1] = (joined[-1][0], b)
        else:
            joined.append((a, b))
    return [(a, b) for a, b in joined if b - a >= shortest]


def _hysteresis(p: np.ndarray) -> np.ndarray:
    """On at ``_ON``, off below ``_OFF``: a frame in between keeps the last decision."""
    decided = (p >= _ON) | (p < _OFF)
    last = np.maximum.accumulate(np.where(decided, np.arange(len(p)), -1)) if len(p) else p
    return np.where(last >= 0, (p >= _ON)[np.maximum(last, 0).astype(np.int64)], False)


def _floor(db: np.ndarray) -> float:
    return float(np.percentile(db, 10)) if len(db) else -120.0


def _threshold(floor: float) -> float:
    """Level of "sound": well over the floor, or loud whatever the background."""
    return min(_LOUD_DB, max(floor + _ABOVE_FLOOR, _QUIET_DB))


def _refine(speech: list[tuple[int, int]], sound: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Move each VAD edge onto the energy edge (onset, offset) it is near, within ``_EDGE``.

    The VAD decides *whether* there is speech, in 32 ms frames with some hang-over; the
    level just over the noise floor says *where* a word starts and ends, to 10 ms.
    """
    out: list[tuple[int, int]] = []
    for a, b in speech:
        touching = [(c, d) for c, d in sound if c < b + _EDGE and d > a - _EDGE]
        inside = [(c, d) for c, d in touching if c < b and d > a] or touching
        if inside:
            first, last = inside[0][0], inside[-1][1]
            a = first if abs(first - a) <= _EDGE else a
            b = last if abs(last - b) <= _EDGE else b
        if b > a:
            if out and a <= out[-1][1]:
                out[-1] = (out[-1][0], max(b, out[-1][1]))
            else:
                out.append((a, b))
    return out


# ---------------------------------------------------------------------- the map
@dataclass(frozen=True)
class SpeechMap:
    """Where a clip has speech and sound: ``(start, end)`` seconds from the clip's start.

    ``sound`` holds every audible stretch, speech included; a range that overlaps only
    ``sound`` is a non-speech sound (an event, music).
    """

    duration: float
    speech: tuple[tuple[float, float], ...]
    sound: tuple[tuple[float, float], ...]

    def ground(self, segment: Segment) -> Grounding:
        return ground(segment, self)

    def as_dict(self) -> dict[str, object]:
        """Numbers for the player (no audio, no text)."""
        return {
            "duration": round(self.duration, 3),
            "speech": [[round(a, 3), round(b, 3)] for a, b in self.speech],
            "sound": [[round(a, 3), round(b, 3)] for a, b in self.sound],
        }


def _map_of(frames: _Frames, duration: float) -> SpeechMap:
    floor = _floor(frames.db)
    sound = _tidy(_runs(frames.db > _threshold(floor)), _SOUND_GAP, _SOUND_MIN)
    edges = _tidy(_runs(frames.db > max(floor + _EDGE_DB, _QUIET_DB)), _SOUND_GAP, _SOUND_MIN)
    speech = _tidy(_runs(_hysteresis(frames.vad)), _SPEECH_GAP, _SPEECH_MIN)
    speech = _refine(speech, edges)
    sec = HOP / RATE

    def seconds(runs: list[tuple[int, int]]) -> tuple[tuple[float, float], ...]:
        return tuple((round(a * sec, 3), round(min(b * sec, duration), 3)) for a, b in runs)

    return SpeechMap(duration, seconds(speech), seconds(sound))


def speech_map(samples: np.ndarray, rate: int = RATE) -> SpeechMap:
    """The speech map of mono samples at 16 kHz (other rates are resampled by PyAV)."""
    x = np.asarray(samples, dtype=np.float32).reshape(-1)
    if rate != RATE:
        from . import _codec

        x = _codec.decode(_codec.wav_bytes(x[None, :], rate))
    return _map_of(_features(x), len(x) / RATE)


# ---------------------------------------------------------------------- clips, cached
_cache_lock = threading.Lock()
_BLOCKS: OrderedDict[tuple[str, int], _Frames] = OrderedDict()
_MAX_BLOCKS = 1024  # 8.5 hours of sources at 8 bytes per 10 ms: 25 MB at most


def _block(clip: AudioClip, k: int) -> _Frames:
    key = (clip.sha256, k)
    with _cache_lock:
        hit = _BLOCKS.get(key)
        if hit is not None:
            _BLOCKS.move_to_end(key)
            return hit
    start = k * _BLOCK
    pre = min(_PREROLL, start)
    x = clip.decode(start - pre, start + _BLOCK)
    frames = _features(x, preroll=round(pre * RATE))
    with _cache_lock:
        _BLOCKS[key] = frames
        while len(_BLOCKS) > _MAX_BLOCKS:
            _BLOCKS.popitem(last=False)
    return frames


def map_for_clip(clip: AudioClip) -> SpeechMap | None:
    """The clip's speech map (its window, in its own time), or None when it can't be read.

    Remote clips (URLs the service fetched itself) have no bytes here: None. Blocks
    already analysed for the same source are reused, whatever the window.
    """
    from .errors import QAudioError

    if clip.is_remote:
        return None
    try:
        duration = clip.duration
    except (QAudioError, OSError, ValueError):
        return None
    if duration is None or duration <= 0:
        return None
    return map_for_window(clip, clip.start, duration)


def map_for_window(clip: AudioClip, start: float, seconds: float) -> SpeechMap | None:
    """The map of ``[start, start + seconds)`` of the clip's *source*, in seconds from
    ``start`` (a player's view of what was sent); None when it can't be read."""
    from .errors import QAudioError

    if clip.is_remote or seconds <= 0:
        return None
    end = start + seconds
    first, last = int(start // _BLOCK), int(np.ceil(end / _BLOCK))
    try:
        blocks = [_block(clip, k) for k in range(first, max(last, first + 1))]
    except (QAudioError, OSError, ValueError):
        return None
    db = np.concatenate([b.db for b in blocks])
    vad = np.concatenate([b.vad for b in blocks])
    lo = round((start - first * _BLOCK) * RATE / HOP)
    hi = lo + round(seconds * RATE / HOP)
    return _map_of(_Frames(db[lo:hi], vad[lo:hi]), seconds)


def _overlaps(
    regions: Iterable[tuple[float, float]], a: float, b: float
) -> list[tuple[float, float]]:
    return [(c, d) for c, d in regions if c < b and d > a]


def _nearest(value: float, candidates: Iterable[float]) -> float:
    best = min(candidates, key=lambda c: abs(c - value), default=None)
    return best if best is not None and abs(best - value) <= TOLERANCE else value


def _said(segment: Segment, duration: float) -> tuple[float, float | None, float | None]:
    """The model's own times (before the cut to the clip) and the clip end if it cut them."""
    raw = find_segments(segment.text)  # no duration: nothing dropped or cut
    if len(raw) == 1 and raw[0].start == segment.start and raw[0].end is not None:
        end = raw[0].end
        if segment.end is not None and end > segment.end + 1e-6:
            return segment.start, end, round(duration, 3)
    return segment.start, segment.end, None


def _ground_point(t: float, smap: SpeechMap) -> tuple[Status, float, float | None]:
    """The region holding ``t``, else the one starting nearest to it within tolerance."""
    regions: list[tuple[float, float, Status]] = [(a, b, "speech") for a, b in smap.speech]
    regions += [(a, b, "sound") for a, b in smap.sound if not _overlaps(smap.speech, a, b)]
    inside = [r for r in regions if r[0] <= t < r[1]]
    near = [r for r in regions if abs(r[0] - t) <= TOLERANCE]
    pick = inside or sorted(near, key=lambda r: (abs(r[0] - t), r[2] != "speech"))
    if not pick:
        return "silence", t, None
    a, b, kind = pick[0]
    return kind, a, b


def ground(segment: Segment, smap: SpeechMap | None) -> Grounding:
    """Check one segment (clip-relative times) against the clip's speech map."""
    said_start, said_end, clip_end = _said(segment, smap.duration if smap else 0.0)
    if smap is None:
        return Grounding(None, None, None, said_start, said_end)
    if segment.end is None:
        return Grounding(*_ground_point(segment.start, smap), said_start, said_end)
    s, e = segment.start, segment.end
    status: Status = (
        "speech"
        if _overlaps(smap.speech, s, e)
        else "sound"
        if _overlaps(smap.sound, s, e)
        else "silence"
    )
    if status == "silence":
        return Grounding("silence", s, e, said_start, said_end, clip_end)
    near = _overlaps(
        smap.speech if status == "speech" else smap.sound, s - TOLERANCE, e + TOLERANCE
    )
    a = _nearest(s, [r[0] for r in near])
    b = _nearest(e, [r[1] for r in near])
    if b <= a:
        a, b = s, e
    return Grounding(status, a, b, said_start, said_end, clip_end)


def ground_segments(segments: Sequence[Segment], smap: SpeechMap | None) -> tuple[Segment, ...]:
    """The segments with ``grounding`` filled in (new objects; the inputs are unchanged)."""
    return tuple(replace(s, grounding=ground(s, smap)) for s in segments)
