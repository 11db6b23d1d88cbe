"""Turn an AudioClip into the audio a backend will send, within that backend's limits.

Original bytes go out untouched when the service accepts their format, the clip is not
windowed and nothing must be cut; otherwise the window is decoded, downmixed to 16 kHz
mono and re-encoded as ``Limits.transcode_format``. What was cut to respect the model's
30 s is recorded so the view can say so: never a silent cut.

Why 16-bit WAV for re-encoded audio (measured on 30 s of speech, 16 kHz mono): WAV takes
about 1.5 ms to write and is lossless (960 KB); FLAC is lossless and 5× smaller (180 KB)
but costs about 10 ms and is not on DashScope's documented format list; MP3 (libmp3lame,
48 kb/s) is as small but costs about 118 ms and adds artefacts the model then hears.
Because local audio is uploaded once and referenced by ``oss://`` URL on later turns (see
``backends/_upload``), size matters once per clip, not once per turn, so the fastest
lossless format the service documents wins.

URL sources stay URLs: the service fetches them. The kernel only asks the server whether
the file exists (a HEAD request, :func:`qaudio_magic.sources.check_url`), so a 404 fails
here, before anything is sent; a URL is downloaded (capped, :func:`~qaudio_magic.sources.fetch`)
only when bytes are needed: a window of it, or a backend that takes decoded samples.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import replace
from typing import TYPE_CHECKING

from ._format import span
from .backends.base import PreparedAudio
from .clip import AudioClip, one_look
from .errors import AudioTooLargeError
from .sources import check_url, fetch

if TYPE_CHECKING:
    from .backends.base import Limits

__all__ = ["CUT_SLACK", "prepare"]

# Encoders pad: a "30 s" MP3 decodes to 30.01-30.05 s. Up to this much over the model's
# limit a clip still counts as within it (the service drops those milliseconds of padding);
# beyond it the clip is cut here and the view says so.
CUT_SLACK = 0.1

_cache: OrderedDict[tuple[object, ...], PreparedAudio] = OrderedDict()
_cache_lock = threading.Lock()
_CACHE_ITEMS = 64


def prepare(clip: AudioClip, limits: Limits) -> PreparedAudio:
    """Audio for ``clip`` within ``limits``; cached so history turns are not re-encoded.
    A file is looked at once here (its digest, facts and bytes all check it)."""
    with one_look():
        key = (clip.sha256, clip.start, clip.end, clip.format_hint, limits)
        with _cache_lock:
            hit = _cache.get(key)
            if hit is not None:
                _cache.move_to_end(key)
                return hit if hit.clip is clip else replace(hit, clip=clip)
        prepared = _prepare(clip, limits)
    with _cache_lock:
        _cache[key] = prepared
        while len(_cache) > _CACHE_ITEMS:
            _cache.popitem(last=False)
    return prepared


def _prepare(clip: AudioClip, limits: Limits) -> PreparedAudio:
    from . import _codec

    if clip.is_remote:
        if clip.kind == "url" and (clip.is_windowed or limits.wants_pcm):
            # bytes are needed: download (capped), then prepare them like a local file
            return replace(_prepare(fetch(clip), limits), clip=clip)
        by_url = limits.max_url_bytes or limits.max_audio_bytes
        notes = check_url(clip.location or "", by_url) if clip.kind == "url" else ()
        fmt = _guess_format(clip.name)
        return PreparedAudio(clip, None, clip.location, fmt, clip.start, None, notes=notes)
    info = clip.info
    assert info is not None
    start = clip.start
    seconds = clip.duration or 0.0
    cut = 0.0
    if limits.max_audio_seconds is not None and seconds > limits.max_audio_seconds + CUT_SLACK:
        cut = seconds - limits.max_audio_seconds
        seconds = limits.max_audio_seconds
    notes = tuple(f"{clip.name}: {note}" for note in info.notes)
    if cut:
        notes = (_cut_note(clip.name, start, seconds, cut, limits), *notes)
    whole = not clip.is_windowed and cut == 0.0
    accepted = (info.container, info.codec) in limits.accepted
    if limits.wants_pcm:
        pcm = clip.decode(start, start + seconds)
        return PreparedAudio(
            clip, None, None, "pcm", start, len(pcm) / _codec.TARGET_RATE, cut, True, pcm, notes
        )
    if whole and accepted:
        data = clip.read_bytes()
        if len(data) <= limits.max_audio_bytes:
            return PreparedAudio(
                clip, data, None, info.container, start, seconds, cut, False, notes=notes
            )
    pcm = clip.decode(start, start + seconds)
    data = _codec.encode(pcm, _codec.TARGET_RATE, limits.transcode_format)
    if len(data) > limits.max_audio_bytes:
        raise AudioTooLargeError(
            f"{clip.name}: {len(data) / 1e6:.1f} MB after re-encoding is over the "
            f"{limits.max_audio_bytes / 1e6:.0f} MB limit (send a shorter window)"
        )
    sent = len(pcm) / _codec.TARGET_RATE
    return PreparedAudio(
        clip, data, None, limits.transcode_format, start, sent, cut, True, notes=notes
    )


def _guess_format(name: str) -> str:
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return {"m4a": "mov", "mp4": "mov", "3gp": "mov", "webm": "matroska", "opus": "ogg"}.get(
        ext, ext or "wav"
    )


def _cut_note(name: str, start: float, sent: float, cut: float, limits: Limits) -> str:
    """Never a silent cut: what the model hears of a clip over its limit, and how to choose."""
    return (
        f"{name} is {sent + cut:.1f} s long: only {limits.max_audio_seconds:g} s "
        f"({span(start, start + sent)}) is sent, {cut:.1f} s dropped. "
        "Use --start/--end (or clip[a:b]) to choose the part."
    )
