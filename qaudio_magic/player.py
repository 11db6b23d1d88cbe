"""The waveform player: the clip an answer is about, with its time mentions one click away.

An anywidget ``AnyWidget`` whose ESM and CSS ship in ``static/`` (no CDN; works offline).
What crosses to the browser, and why it stays small:

* **peaks**: min/max pairs as int8, at most ``BINS`` of them (4 KB), computed here in one
  streaming decode pass with bounded memory — never the samples, so a 30-minute clip
  draws as fast as a 3-second one;
* **the audio bytes, once per clip**: they live in a separate model (``_AudioData``)
  shared by every player of the same audio, so re-displaying a player, changing its
  segments or asking about the same clip again sends no audio;
* **segments** as numbers. Chips and highlighted regions are built in the browser from
  those numbers with ``textContent``; model text never becomes markup.

Python gets back ``selection``: the ``(start, end)`` dragged on the waveform, in seconds
of this player's clip; ``selection_clip`` is that window as an :class:`AudioClip`, ready for
``ask_audio``. ``%%qaudio --selection`` asks about the selection made most recently on any
player (see :func:`selected_player`).
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import ipywidgets
import numpy as np
import traitlets

from . import _codec, _evidence
from ._format import clock, seconds, span
from .clip import AudioClip
from .errors import AudioDecodeError, InputError, QAudioError
from .segments import Segment, find_segments

if TYPE_CHECKING:
    from .backends.base import PreparedAudio

__all__ = [
    "BINS",
    "MAX_INLINE_BYTES",
    "Player",
    "browser_mime",
    "compute_peaks",
    "selected_player",
    "timeline",
]

BINS = 2000  # waveform columns sent to the browser (min and max, one byte each)
MAX_INLINE_BYTES = 64 * 1024 * 1024  # audio bigger than this is re-encoded before sending
_STATIC = Path(__file__).parent / "static"

# What the browser gets, decided here only: (container, codec) pairs every current browser
# plays are sent as they are; the rest is re-encoded (16 kHz WAV, or Opus when that is too big).
_BROWSER: dict[tuple[str, str], str] = {
    **{("wav", c): "audio/wav" for c in ("pcm_s16le", "pcm_u8", "pcm_s24le", "pcm_f32le")},
    ("mp3", "mp3"): "audio/mpeg",
    ("mov", "aac"): "audio/mp4",
    ("aac", "aac"): "audio/aac",
    ("flac", "flac"): "audio/flac",
    ("ogg", "vorbis"): "audio/ogg",
    ("ogg", "opus"): "audio/ogg",
    ("matroska", "opus"): "audio/webm",
    ("matroska", "vorbis"): "audio/webm",
}
# The codec inside audio the kernel re-encoded (``Limits.transcode_format``) for a model.
_TRANSCODED = {"wav": "pcm_s16le", "mp3": "mp3", "flac": "flac"}


def browser_mime(container: str, codec: str) -> str | None:
    """The MIME type browsers play ``codec`` in ``container`` as, or None if they cannot."""
    return _BROWSER.get((container, codec))


# ---------------------------------------------------------------------- peaks
class _Envelope:
    """Streaming min/max envelope with bounded memory.

    Starts with 1 ms hops; whenever more than ``4 * bins`` hops pile up, neighbours are
    merged and the hop doubles, so memory stays O(bins) whatever the length. Hops are
    always taken in even numbers so a merge never straddles a boundary.
    """

    _BATCH = 1 << 16  # samples gathered before one vectorised step

    def __init__(self, rate: int, bins: int) -> None:
        self.rate, self.bins = rate, bins
        self.hop = max(1, rate // 1000)
        self.lo: list[np.ndarray] = []
        self.hi: list[np.ndarray] = []
        self.count = 0
        self.pending: list[np.ndarray] = []
        self.npending = 0
        self.samples = 0
        self.scale = 1.0

    def add(self, samples: np.ndarray) -> None:
        samples = samples.reshape(-1)
        self.pending.append(samples)
        self.npending += len(samples)
        self.samples += len(samples)
        if self.npending >= self._BATCH:
            self._step(final=False)

    def _step(self, final: bool) -> None:
        x = np.concatenate(self.pending) if self.pending else np.zeros(0, np.float32)
        n = len(x) // self.hop
        if not final and (self.count + n) % 2:
            n -= 1
        used = n * self.hop
        if n:
            frames = x[:used].reshape(n, self.hop)
            self.lo.append(frames.min(axis=1))
            self.hi.append(frames.max(axis=1))
            self.count += n
        rest = x[used:]
        if final and len(rest):
            self.lo.append(rest.min(keepdims=True))
            self.hi.append(rest.max(keepdims=True))
            self.count += 1
            rest = rest[:0]
        self.pending, self.npending = ([rest] if len(rest) else []), len(rest)
        while not final and self.count > 4 * self.bins and self.count % 2 == 0:
            lo, hi = np.concatenate(self.lo), np.concatenate(self.hi)
            self.lo = [np.minimum(lo[0::2], lo[1::2])]
            self.hi = [np.maximum(hi[0::2], hi[1::2])]
            self.count //= 2
            self.hop *= 2

    def finish(self) -> bytes:
        """Interleaved int8 (min, max) pairs, at most ``bins``, scaled to the loudest."""
        self._step(final=True)
        if not self.count:
            return b""
        lo, hi = np.concatenate(self.lo), np.concatenate(self.hi)
        if len(lo) > self.bins:
            edges = np.linspace(0, len(lo), self.bins + 1).astype(np.int64)[:-1]
            lo, hi = np.minimum.reduceat(lo, edges), np.maximum.reduceat(hi, edges)
        scale = float(max(np.abs(lo).max(), np.abs(hi).max())) or 1.0
        self.scale = scale  # what int8 127 stands for: zoomed detail is drawn on the same scale
        pairs = np.stack([lo, hi], axis=1) / scale * 127.0
        return np.clip(np.round(pairs), -127, 127).astype(np.int8).tobytes()


def compute_peaks(blocks: Iterable[np.ndarray], rate: int, bins: int = BINS) -> tuple[bytes, float]:
    """Peaks of mono PCM ``blocks`` at ``rate``: (int8 min/max pairs, seconds)."""
    peaks, seconds, _ = _peaks_and_scale(blocks, rate, bins)
    return peaks, seconds


def _peaks_and_scale(
    blocks: Iterable[np.ndarray], rate: int, bins: int = BINS
) -> tuple[bytes, float, float]:
    env = _Envelope(rate, bins)
    for block in blocks:
        env.add(block)
    peaks = env.finish()
    return peaks, env.samples / rate, env.scale


def _window_blocks(
    blocks: Iterator[np.ndarray],
    start: float,
    end: float | None,
    *,
    rate: int | None = None,
    log: _codec.DecodeLog | None = None,
) -> Iterator[np.ndarray]:
    """Mono samples of ``[start, end)`` seconds out of a decode stream.

    ``rate``: the stream's sample rate; None reads the native rate from ``log``, which
    the decoder fills in on the first frame.
    """
    pos = 0
    for block in blocks:
        x = block[0]
        r = rate or (log.rate if log is not None else 0)
        first, last = round(start * r), None if end is None else round(end * r)
        lo = max(first - pos, 0)
        hi = len(x) if last is None else min(last - pos, len(x))
        pos += len(x)
        if hi > lo:
            yield x[lo:hi]
        if last is not None and pos >= last:
            break


def _clip_peaks(clip: AudioClip) -> tuple[bytes, float, _codec.DecodeLog, float]:
    """One decode pass over the clip's window at its native rate: peaks, seconds, format,
    and the level int8 127 stands for."""
    log = _codec.DecodeLog()
    stream = _codec.iter_pcm(clip.source(), name=clip.name, rate=None, mono=True, log=log)
    first = next(stream, None)
    if first is None:
        raise AudioDecodeError(f"{clip.name}: no audio could be decoded (empty or corrupt stream)")

    blocks = _window_blocks(_chain(first, stream), clip.start, clip.end, log=log)
    peaks, seconds, scale = _peaks_and_scale(blocks, log.rate)
    return peaks, seconds, log, scale


# ---------------------------------------------------------------------- audio for the browser
class _AudioData(ipywidgets.Widget):  # type: ignore[misc]
    """The audio bytes of one clip, as their own model: sent once, shared by players."""

    value = ipywidgets.trait_types.CByteMemoryView(b"").tag(sync=True)
    mime = traitlets.Unicode("audio/wav").tag(sync=True)
    peaks: tuple[bytes, float, float] | None = None  # kernel-side, once per clip: peaks,
    # seconds, and the level their 127 stands for


_AUDIO: OrderedDict[tuple[object, ...], _AudioData] = OrderedDict()
_AUDIO_ITEMS = 32


def _audio_model(
    key: tuple[object, ...], build: Callable[[], tuple[bytes, str, tuple[bytes, float, float]]]
) -> _AudioData:
    """The shared audio model for ``key``; ``build() -> (bytes, mime, peaks)`` runs once."""
    hit = _AUDIO.get(key)
    if hit is not None and hit.comm is not None and hit.peaks is not None:
        _AUDIO.move_to_end(key)
        return hit
    data, mime, peaks = build()
    model = _AudioData(value=data, mime=mime)
    model.peaks = peaks
    _AUDIO[key] = model
    while len(_AUDIO) > _AUDIO_ITEMS:
        _AUDIO.popitem(last=False)  # still alive in the players that use it
    return model


def _browser_audio(clip: AudioClip, log: _codec.DecodeLog, seconds: float) -> tuple[bytes, str]:
    """Bytes a browser plays for the clip's window: the file itself when possible."""
    mime = browser_mime(log.container, log.codec)
    if mime and not clip.is_windowed:
        size = clip.path.stat().st_size if clip.path is not None else len(clip.payload or b"")
        if size <= MAX_INLINE_BYTES:
            return clip.read_bytes(), mime
    return _reencode(clip, clip.start, clip.end, seconds)


def _sent_audio(prepared: PreparedAudio) -> tuple[bytes, str]:
    """Bytes a browser plays for what was sent: as sent when browsers play it, else
    re-encoded. Either way it is the window the model heard, not the whole source."""
    if prepared.data is not None:
        if prepared.transcoded:
            codec = _TRANSCODED.get(prepared.format, "")
        else:
            codec = prepared.clip.info.codec if prepared.clip.info else ""
        mime = browser_mime(prepared.format, codec)
        if mime:
            return prepared.data, mime
    seconds = prepared.seconds or 0.0
    return _reencode(prepared.clip, prepared.start, prepared.end, seconds, pcm=prepared.pcm)


def _reencode(
    clip: AudioClip, start: float, end: float | None, seconds: float, pcm: np.ndarray | None = None
) -> tuple[bytes, str]:
    """16 kHz mono WAV (exact, fast) or, when that would be too big, Opus in WebM.

    ``pcm``: the window's 16 kHz samples when they are already decoded.
    """
    rate = _codec.TARGET_RATE
    if seconds * rate * 2 + 44 <= MAX_INLINE_BYTES:
        if pcm is None:
            pcm = _codec.decode(clip.source(), start=start, end=end, name=clip.name)
        return _codec.encode(pcm, rate, "wav"), "audio/wav"
    return _opus(clip, start, end), "audio/webm"


def _opus(clip: AudioClip, start: float, end: float | None) -> bytes:
    """Streamed Opus encode (24 kb/s): bounded memory for clips of any length."""
    import io

    import av

    blocks = _codec.iter_pcm(clip.source(), name=clip.name, rate=_codec.TARGET_RATE)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="webm") as out:
        stream = out.add_stream("libopus", rate=_codec.TARGET_RATE, layout="mono")
        stream.bit_rate = 24_000
        for x in _window_blocks(blocks, start, end, rate=_codec.TARGET_RATE):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(x[None, :]), format="flt", layout="mono"
            )
            frame.sample_rate = _codec.TARGET_RATE
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


@dataclass
class _Media:
    """Everything a player shows about its audio, computed once."""

    clip: AudioClip | None
    audio: _AudioData | None
    src: str
    peaks: bytes
    duration: float
    offset: float  # where the player's 0 s lies in the source
    label: str
    note: str = ""
    scale: float = 1.0  # the level the peaks' 127 stands for


def _media_for_clip(clip: AudioClip) -> _Media:
    if clip.is_remote:
        return _remote_media(clip, clip.location or "", clip.start, clip.duration)

    def build() -> tuple[bytes, str, tuple[bytes, float, float]]:
        peaks, seconds, log, scale = _clip_peaks(clip)
        data, mime = _browser_audio(clip, log, seconds)
        return data, mime, (peaks, seconds, scale)

    audio = _audio_model(("clip", clip.sha256, clip.start, clip.end), build)
    peaks, seconds, scale = audio.peaks or (b"", 0.0, 1.0)
    return _Media(
        clip, audio, "", peaks, seconds, clip.start, _clip_label(clip, seconds), scale=scale
    )


def _media_for_prepared(prepared: PreparedAudio) -> _Media:
    """What was sent (the window, cut to the model's limit) is what the player plays.

    The bytes come from :func:`_sent_audio`; the peaks from decoding exactly those bytes.
    Both are kept with the shared audio model, so asking about the same clip again decodes
    and sends nothing.
    """
    clip = prepared.clip
    label = prepared.label
    if prepared.data is None and prepared.pcm is None:
        return _remote_media(clip, prepared.url or "", prepared.start, prepared.seconds, label)

    def build() -> tuple[bytes, str, tuple[bytes, float, float]]:
        data, mime = _sent_audio(prepared)
        log = _codec.DecodeLog()
        blocks = _codec.iter_pcm(data, name=clip.name, rate=None, log=log)
        first = next(blocks, None)
        if first is None:
            raise AudioDecodeError(f"{clip.name}: no audio could be decoded")
        return data, mime, _peaks_and_scale(_chain(first, blocks), log.rate)

    key = ("sent", clip.sha256, prepared.start, prepared.seconds, prepared.format)
    audio = _audio_model(key, build)
    peaks, seconds, scale = audio.peaks or (b"", 0.0, 1.0)
    return _Media(
        clip, audio, "", peaks, prepared.seconds or seconds, prepared.start, label, scale=scale
    )


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def _remote_media(
    clip: AudioClip, url: str, start: float, seconds: float | None, label: str | None = None
) -> _Media:
    playable = url.lower().startswith(("http://", "https://"))
    note = "" if playable else "this audio cannot be played in the browser (not an http(s) URL)"
    return _Media(
        clip, None, url if playable else "", b"", seconds or 0.0, start, label or clip.label(), note
    )


def _clip_label(clip: AudioClip, seconds: float) -> str:
    """Like ``clip.label()`` but from the decoded length (no second decode for a probe)."""
    text = clip.name
    if clip.is_windowed:
        text += f" [{span(clip.start, clip.start + seconds)}]"
    return f"{text} · {seconds:.1f} s"


# ---------------------------------------------------------------------- the widget
_selected: list[weakref.ref[Player]] = []


class Player(anywidget.AnyWidget):  # type: ignore[misc]
    """A waveform player for one clip, with clickable segments and a draggable selection.

    ``Player(source, segments=..., text=...)``: ``source`` is anything ``ask_audio``
    takes (path, bytes, AudioClip ...); ``segments`` are :class:`Segment` objects or
    ``(start, end)`` pairs in seconds of the clip (``end`` None: a point); ``text``
    (an answer) is searched for time mentions instead. It never autoplays.
    """

    _esm = _STATIC / "player.js"
    _css = _STATIC / "player.css"

    peaks = traitlets.Bytes(b"").tag(sync=True)
    duration = traitlets.Float(0.0).tag(sync=True)
    audio = traitlets.Instance(_AudioData, allow_none=True).tag(
        sync=True, **ipywidgets.widget_serialization
    )
    src = traitlets.Unicode("").tag(sync=True)
    label = traitlets.Unicode("").tag(sync=True)
    note = traitlets.Unicode("").tag(sync=True)
    segments: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)
    selection = traitlets.Any(None, allow_none=True).tag(sync=True)
    point_seconds = traitlets.Float(2.0, help="how long a click on a point in time plays").tag(
        sync=True
    )
    # evidence (``_evidence.py``): detected speech / sound, and a grey spectrogram image
    speech: traitlets.List[list[float]] = traitlets.List().tag(sync=True)
    sound: traitlets.List[list[float]] = traitlets.List().tag(sync=True)
    spectrogram = traitlets.Bytes(b"").tag(sync=True)
    spectrogram_mime = traitlets.Unicode("image/webp").tag(sync=True)
    lazy = traitlets.Bool(False).tag(sync=True)  # the browser asks for the evidence once shown
    detail = traitlets.Bool(False).tag(sync=True)  # the kernel serves zoomed detail
    origin = traitlets.Float(0.0).tag(sync=True)  # source seconds at the player's 0 (ruler)
    # a --windows timeline: one dict per window (start, end, label, status, text, error)
    windows: traitlets.List[dict[str, Any]] = traitlets.List().tag(sync=True)

    def __init__(
        self,
        source: object = None,
        *,
        segments: Iterable[Segment | Sequence[float | None] | dict[str, Any]] = (),
        text: str | None = None,
        _media: _Media | None = None,
        **kwargs: Any,
    ) -> None:
        media = _media
        if media is None and source is not None:
            media = _media_for_clip(AudioClip.from_source(source))
        self.clip: AudioClip | None = media.clip if media else None
        self.offset = media.offset if media else 0.0
        self._scale = media.scale if media else 1.0
        self.fallback = ""  # plain text shown instead of the widget (a timeline's table)
        self._loading = False
        self._top_db: float | None = None
        local = media is not None and media.clip is not None and media.audio is not None
        if media is not None:
            kwargs.update(
                audio=media.audio,
                src=media.src,
                peaks=media.peaks,
                duration=media.duration,
                label=media.label,
                note=media.note,
                detail=local,
            )
        super().__init__(**kwargs)
        if text is not None:
            found = find_segments(text, duration=self.duration or None, offset=self.offset)
            if local and self.clip is not None and found:  # checked against the audio
                from .grounding import ground_segments, map_for_window

                smap = map_for_window(self.clip, self.offset, self.duration)
                found = list(ground_segments(found, smap))
            segments = found
        self.segments = list(segments)  # type: ignore[arg-type]
        self.on_msg(self._on_browser)
        if local:
            if self.duration <= _evidence.EAGER_SPECTROGRAM_SECONDS:
                self._load_evidence()
            else:
                self.lazy = True  # a long clip: computed when a browser shows the player

    # ------------------------------------------------------------------ evidence
    def _load_evidence(self) -> None:
        """Speech band and spectrogram of the player's clip (cached per source)."""
        if self.clip is None or self.spectrogram:
            return
        self.speech, self.sound = _evidence.bands(self.clip, self.offset, self.duration)
        try:
            data, mime, self._top_db = _evidence.spectrogram(self.clip, self.offset, self.duration)
        except (QAudioError, OSError, ValueError):
            return
        self.spectrogram_mime = mime
        self.spectrogram = data
        self.lazy = False

    def _on_browser(self, _widget: Any, content: Any, _buffers: Any) -> None:
        """Requests from the browser: the evidence of a long clip, detail of a zoomed view."""
        if not isinstance(content, dict) or self.clip is None:
            return
        kind = content.get("type")
        if kind == "evidence" and self.lazy and not self._loading:
            # a long clip: minutes of audio to analyse, off the kernel's main thread so
            # cells (and zoom requests) keep running meanwhile; the traits sync when done
            self._loading = True
            threading.Thread(target=self._load_evidence, daemon=True).start()
        elif kind == "detail":
            try:
                start, end = float(content["start"]), float(content["end"])
                bins, ident = int(content["bins"]), int(content["id"])
            except (KeyError, TypeError, ValueError):
                return
            got = _evidence.detail(
                self.clip,
                self.offset,
                start,
                min(end, self.duration),
                bins,
                scale=self._scale,
                top_db=self._top_db,
            )
            if got is not None:
                reply = {"type": "detail", "id": ident, "start": got.start, "end": got.end}
                self.send({**reply, "mime": got.mime}, [got.peaks, got.image])

    @classmethod
    def from_prepared(cls, audio: PreparedAudio, **kwargs: Any) -> Player:
        """The player of an answer view: plays exactly what was sent to the model."""
        return cls(_media=_media_for_prepared(audio), **kwargs)

    # ------------------------------------------------------------------ traits
    @traitlets.validate("segments")
    def _valid_segments(self, proposal: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for item in proposal["value"]:
            seg = _as_segment(item, self.offset)
            if self.duration and seg.start >= self.duration:
                continue  # beyond the clip: never shown as a link
            if self.duration and seg.end is not None and seg.end > self.duration:
                seg = replace(seg, end=self.duration)
            entry: dict[str, Any] = {
                "start": seg.start,
                "end": seg.end,
                "label": seg.label(),
                "text": seg.text,
            }
            if isinstance(item, dict):  # a timeline's: label and window already decided
                entry.update(
                    {k: item[k] for k in ("label", "text", "window", "grounding") if k in item}
                )
            elif seg.grounding is not None:
                entry["grounding"] = seg.grounding.as_dict()
            out.append(entry)
        return out

    @traitlets.validate("selection")
    def _valid_selection(self, proposal: Any) -> tuple[float, float] | None:
        value = proposal["value"]
        if value is None or (isinstance(value, (list, tuple)) and not value):
            return None
        try:
            lo, hi = sorted(float(v) for v in value)
        except (TypeError, ValueError):
            raise traitlets.TraitError(
                f"selection must be (start, end) in seconds, got {value!r}"
            ) from None
        lo = max(lo, 0.0)
        if self.duration:
            hi = min(hi, self.duration)
        if hi - lo < 0.01:
            return None
        return (round(lo, 3), round(hi, 3))

    @traitlets.observe("selection")
    def _remember_selection(self, change: Any) -> None:
        _selected[:] = [r for r in _selected if r() is not None and r() is not self]
        if change["new"] is not None:
            _selected.append(weakref.ref(self))

    # ------------------------------------------------------------------ python side
    @property
    def selection_clip(self) -> AudioClip:
        """The selected region as a clip (a window of this player's clip)."""
        if self.selection is None:
            raise InputError(f"{self.label}: nothing selected (drag on the waveform to select)")
        if self.clip is None or self.clip.is_remote:
            raise InputError(f"{self.label}: a selection of remote audio cannot be cut here")
        lo, hi = self.selection
        # The selection is already within the decoded length, so the window is built
        # directly: ``clip.window_of`` would decode a long source again just to check it.
        return replace(self.clip, start=self.offset + lo, end=self.offset + hi)

    def _as_audio_clip_(self) -> AudioClip:
        """A player used as a source stands for its whole clip (``selection_clip``: the part)."""
        if self.clip is None:
            raise InputError("this player holds no audio")
        return self.clip

    def plain_text(self) -> str:
        """What a notebook shows where the widget cannot render (terminal, GitHub)."""
        text = f"▶ {self.label} (audio player; run the cell to listen)"
        if self.fallback:  # a timeline: its table says the rest
            return f"{text}\n{self.fallback}"
        if self.segments:
            text += "\n⏱ times: " + ", ".join(s["label"] for s in self.segments)
        return text

    def _repr_mimebundle_(self, **kwargs: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is None:
            return None
        data, metadata = bundle
        data = {**data, "text/plain": self.plain_text()}
        return data, metadata

    def __repr__(self) -> str:
        bits = [repr(self.label), f"{self.duration:.1f} s"]
        if self.segments:
            bits.append(f"segments=[{', '.join(s['label'] for s in self.segments)}]")
        if self.selection is not None:
            bits.append(f"selection={self.selection}")
        return f"Player({', '.join(bits)})"


def timeline(results: Sequence[Any]) -> Player | None:
    """One player of the whole file a ``--windows`` batch covered, each window a region and
    its answer under it, the times in the answers shown and played in absolute file time.

    ``results``: the batch's Answer / Failure items (one window clip each, one source).
    None when they do not come from one local source.
    """
    from .errors import Interrupted

    clips = [r.clips[0] for r in results if len(r.clips) == 1]
    if not clips or len(clips) != len(results) or len({c.sha256 for c in clips}) != 1:
        return None
    first = clips[0]
    if first.is_remote:
        return None
    start = min(c.start for c in clips)
    ends = [c.end for c in clips]
    end = None if any(e is None for e in ends) else max(e for e in ends if e is not None)
    total = first.source_duration
    if end is not None and total is not None and end >= total - 0.01:
        end = None  # the windows reach the end: the player is of the file, not a window of it
    whole = replace(first, start=start, end=end)
    player = Player(whole)
    player.origin = player.offset
    rows: list[dict[str, Any]] = []
    segments: list[dict[str, Any]] = []
    for k, (r, clip) in enumerate(zip(results, clips, strict=True)):
        a = clip.start - player.offset
        b = (clip.end if clip.end is not None else player.offset + player.duration) - player.offset
        row: dict[str, Any] = {
            "start": a,
            "end": b,
            "label": f"{clock(clip.start)}–{clock(b + player.offset)}",
        }
        error = getattr(r, "error", None)  # a Failure has one, an Answer not
        if error is None:
            row.update(status="done", text=r.text)
            for seg in r.segments:
                segments.append(_absolute(seg, player.offset, k))
        else:
            cancelled = isinstance(error, Interrupted)
            row.update(
                status="cancelled" if cancelled else "failed",
                text=r.text,
                error="" if cancelled else error.one_line(),
            )
        rows.append(row)
    player.windows = rows
    player.segments = segments
    return player


def _absolute(seg: Segment, origin: float, window: int) -> dict[str, Any]:
    """A window's segment on the timeline player (whose 0 is ``origin`` in the source)."""
    lo, hi = seg.abs_start, seg.abs_end
    entry: dict[str, Any] = {
        "start": lo - origin,
        "end": None if hi is None else hi - origin,
        "label": clock(lo) if hi is None else f"{clock(lo)}–{clock(hi)}",
        "text": seg.text,
        "window": window,
    }
    g = seg.grounding
    if g is not None:
        shift = seg.offset - origin
        moved = {
            k: (v + shift if v is not None else None)
            for k, v in (("start", g.start), ("end", g.end))
        }
        entry["grounding"] = {**g.as_dict(), **moved}
    return entry


def _as_segment(item: object, offset: float) -> Segment:
    if isinstance(item, Segment):
        return item
    if isinstance(item, dict):
        start, end = item.get("start"), item.get("end")
    elif isinstance(item, (list, tuple)) and len(item) in (1, 2):
        start, end = item[0], item[1] if len(item) == 2 else None
    else:
        raise traitlets.TraitError(f"a segment is (start, end) in seconds, got {item!r}")
    try:
        lo = float(start)  # type: ignore[arg-type]
        hi = None if end is None else float(end)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise traitlets.TraitError(f"a segment is (start, end) in seconds, got {item!r}") from None
    if lo < 0 or (hi is not None and hi <= lo):
        raise traitlets.TraitError(f"a segment must have 0 <= start < end, got {item!r}")
    return Segment(lo, hi, seconds(lo) if hi is None else span(lo, hi), offset)


def selected_player() -> Player:
    """The player whose selection was made most recently and still stands.

    This is what ``%%qaudio --selection`` asks about: drag on any waveform, then run the
    cell. Clearing a selection falls back to the previous player that still has one.
    """
    for ref in reversed(_selected):
        player = ref()
        if player is not None and player.selection is not None:
            return player
    raise InputError("--selection: no player has a selection; drag on a waveform first")
