"""Decode, probe, resample and encode audio with PyAV (bundled FFmpeg, no system ffmpeg).

Durations come from decoding, never from headers: headers lie for ADTS AAC, streamed
WebM and truncated MP3. Decoding goes packet by packet so that one undecodable packet
(AMR comfort-noise frames written with DTX, which FFmpeg does not implement) becomes
silence with a note instead of failing the whole clip. A header that promises more audio
than the file holds (an interrupted download or recording) is reported as a note.

Windows deep inside long files are reached by seeking where the container has an index
or exact timestamps (WAV, FLAC, MP4, Ogg, Matroska); raw streams (MP3, ADTS, AMR) are
decoded from the start, which is cheap for them and exact.

The work one source can cost is bounded: a file is untrusted (ten hours of Opus silence
fit in 10 MB and took 13 s to decode just to be measured). :func:`probe` decodes the first
:data:`DECODE_TO_MEASURE` seconds; past them it takes the rest of the length from the
timestamps at the end of the file (one seek), which is where the container allows it —
every container FFmpeg can seek in. Where it cannot, decoding goes on up to
:data:`MAX_DECODED` seconds and the source is then refused, as is any source measured
at more than :data:`MAX_SOURCE_SECONDS` (timestamps can be forged too).
"""

from __future__ import annotations

import io
import os
import re
import struct
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from .errors import AudioDecodeError, SourceError

__all__ = ["AudioInfo", "DecodeLog", "decode", "encode", "iter_pcm", "probe"]

Source = Union[bytes, Path]  # noqa: UP007 - a runtime alias, 3.10 safe  # encoded bytes in memory, or a file on disk (read lazily)

TARGET_RATE = 16_000
_SEEKABLE = ("wav", "w64", "flac", "mov", "ogg", "matroska", "aiff")  # exact timestamps
_SEEK_FROM = 5.0  # seconds: below this, decoding from the start costs nothing
_PREROLL = 0.5  # seconds decoded before a seek target, so lapped codecs (AAC, Opus) settle
_PCM_BYTES = re.compile(r"pcm_[suf](8|16|24|32|64)")
DECODE_TO_MEASURE = 600.0  # seconds measured by decoding; the rest of a longer file by timestamps
MAX_DECODED = 4 * 3600.0  # seconds decoded to measure a file that cannot seek, at most
MAX_SOURCE_SECONDS = 24 * 3600.0  # longer sources are refused


@dataclass(frozen=True, slots=True)  # slots: a big batch keeps one per row
class AudioInfo:
    """Facts measured by decoding a source."""

    duration: float
    sample_rate: int
    channels: int
    codec: str
    container: str
    notes: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        """Short human description, e.g. ``'5.1 s · mp3 22.05 kHz mono'``."""
        layout = {1: "mono", 2: "stereo"}.get(self.channels, f"{self.channels} ch")
        khz = f"{self.sample_rate / 1000:g} kHz"
        return f"{self.duration:.1f} s · {self.codec} {khz} {layout}"


@dataclass
class DecodeLog:
    """What a decode pass learnt on the way: native format and repairs made."""

    rate: int = 0
    channels: int = 0
    codec: str = ""
    container: str = ""
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- opening
def _open(src: Source, name: str, fmt: str | None = None) -> Any:
    """An open PyAV container; ``fmt`` is a demuxer hint tried before sniffing."""
    import av  # deferred: keeps `%load_ext` light

    if isinstance(src, (bytes, bytearray)) and not src:
        raise AudioDecodeError(f"{name}: the source is empty (0 bytes)")
    if isinstance(src, Path):
        try:
            if src.stat().st_size == 0:
                raise AudioDecodeError(f"{name}: the source is empty (0 bytes)")
        except OSError as exc:
            raise SourceError(f"{name}: cannot read ({exc.strerror or exc})") from None
    last: BaseException | None = None
    hints: tuple[str | None, ...] = (fmt, None) if fmt else (None,)
    options = {}
    if fmt is None and _head(src, 12)[8:12] == b"WAVE":
        # FFmpeg's stream probing reads ~20 ms of a PCM WAV looking for S/PDIF data;
        # the RIFF header already says everything, so skip straight to it.
        hints, options = ("wav", None), {"probesize": "32"}
    for hint in hints:
        try:
            opts = options if hint == "wav" else {}
            if isinstance(src, Path):
                return av.open(str(src), mode="r", format=hint, options=opts)
            return av.open(io.BytesIO(src), mode="r", format=hint, options=opts)
        except PermissionError as exc:
            raise SourceError(
                f"{name}: cannot read ({exc.strerror or 'permission denied'})"
            ) from None
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            last = exc
    assert last is not None
    raise AudioDecodeError(f"{name}: not a readable audio file ({_reason(last)})") from None


def _head(src: Source, n: int) -> bytes:
    if isinstance(src, Path):
        with open(src, "rb") as fh:
            return fh.read(n)
    return bytes(src[:n])


def _reason(exc: BaseException) -> str:
    text = str(exc)
    # PyAV messages look like "[Errno 1094995529] Invalid data found ...: '<file>'"
    if "]" in text and text.startswith("[Errno"):
        text = text.split("]", 1)[1]
    return text.split(":")[0].strip() or type(exc).__name__


def _audio_stream(container: Any, name: str) -> Any:
    streams = list(container.streams.audio)
    if not streams:
        kind = container.format.name if container.format else "unknown"
        raise AudioDecodeError(f"{name}: no audio stream in this file (it looks like {kind})")
    return streams[0]


def _codec_name(codec: str) -> str:
    return {"mp3float": "mp3", "amrnb": "amr_nb", "amrwb": "amr_wb"}.get(codec, codec)


def _describe(container: Any, stream: Any, log: DecodeLog) -> None:
    ctx = stream.codec_context
    log.codec = _codec_name(ctx.name)
    log.container = container.format.name.split(",")[0] if container.format else "?"
    log.rate, log.channels = ctx.sample_rate or 0, ctx.channels


def _frames(container: Any, stream: Any, name: str) -> Iterator[Any]:
    """Decoded frames in order; a ``float`` stands for that many seconds of undecodable packets."""
    import av

    ctx = stream.codec_context
    for packet in container.demux(stream):
        try:
            frames = ctx.decode(packet)
        except (av.error.PatchWelcomeError, av.error.InvalidDataError) as exc:
            if not (packet.size and packet.duration and packet.time_base):
                raise AudioDecodeError(f"{name}: undecodable audio ({_reason(exc)})") from None
            yield float(packet.duration * packet.time_base)
            continue
        yield from frames


def _gap_note(seconds: float) -> str:
    return f"{seconds:.2f} s of undecodable frames (AMR DTX comfort noise) became silence"


# --------------------------------------------------------------------------- decoding
class _SeekMissed(Exception):
    """The seek landed after the target (or without timestamps): decode from the start."""


def iter_pcm(
    src: Source,
    *,
    name: str = "audio",
    rate: int | None = TARGET_RATE,
    mono: bool = True,
    log: DecodeLog | None = None,
    start: float = 0.0,
    fmt: str | None = None,
) -> Iterator[np.ndarray]:
    """Yield float32 PCM blocks, shape ``(channels, n)``, resampled to ``rate`` (None: native).

    Blocks begin at ``start`` seconds of the source (seeking where that is exact). ``log``
    receives the native format and what was repaired on the way.
    """
    log = log if log is not None else DecodeLog()
    if start >= _SEEK_FROM:
        try:
            yield from _pcm(src, name, rate, mono, log, start, fmt, seek=True)
            return
        except _SeekMissed:
            log.notes.clear()
    yield from _pcm(src, name, rate, mono, log, start, fmt, seek=False)


def _pcm(
    src: Source,
    name: str,
    rate: int | None,
    mono: bool,
    log: DecodeLog,
    start: float,
    fmt: str | None,
    *,
    seek: bool,
) -> Iterator[np.ndarray]:
    import av

    container = _open(src, name, fmt)
    try:
        stream = _audio_stream(container, name)
        _describe(container, stream, log)
        if seek:
            if log.container not in _SEEKABLE:
                raise _SeekMissed
            target = max(start - _PREROLL, 0.0)
            container.seek(int(target / stream.time_base), stream=stream, backward=True)
        origin = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
        resampler = None
        to_skip: int | None = None if seek else round(start * (rate or 0))
        skipped = 0.0
        for item in _frames(container, stream, name):
            if isinstance(item, float):
                skipped += item
                if resampler is None and to_skip is None:
                    raise _SeekMissed
                width = 1 if mono else max(log.channels, 1)
                blocks = [np.zeros((width, round(item * (rate or log.rate))), dtype=np.float32)]
            else:
                if resampler is None:
                    log.rate, log.channels = item.sample_rate, item.layout.nb_channels
                    out_rate = rate or item.sample_rate
                    resampler = av.AudioResampler(
                        format="flt", layout="mono" if mono else item.layout.name, rate=out_rate
                    )
                    if to_skip is None:  # after a seek: where did we land?
                        if item.pts is None:
                            raise _SeekMissed
                        landed = float(item.pts * item.time_base) - origin
                        if landed > start + 1e-3:
                            raise _SeekMissed
                        to_skip = round((start - landed) * out_rate)
                    elif rate is None:
                        to_skip = round(start * out_rate)
                blocks = [_packed(out) for out in resampler.resample(item)]
            for block in blocks:
                if to_skip:
                    cut = min(to_skip, block.shape[1])
                    block, to_skip = block[:, cut:], to_skip - cut
                if block.shape[1]:
                    yield block
        if resampler is not None:
            for out in resampler.resample(None):
                block = _packed(out)
                if to_skip:
                    cut = min(to_skip, block.shape[1])
                    block, to_skip = block[:, cut:], to_skip - cut
                if block.shape[1]:
                    yield block
        if skipped:
            log.notes.append(_gap_note(skipped))
    except av.error.FFmpegError as exc:
        raise AudioDecodeError(f"{name}: undecodable audio ({_reason(exc)})") from None
    finally:
        container.close()


def _packed(frame: Any) -> np.ndarray:
    channels = frame.layout.nb_channels
    data = frame.to_ndarray().reshape(-1)
    return data.reshape(-1, channels).T.astype(np.float32, copy=False)


def probe(src: Source, *, name: str = "audio", fmt: str | None = None) -> AudioInfo:
    """Decode the whole source once and report what it really holds.

    Samples are counted, not converted: PCM is measured from the data bytes the file
    really holds (not the size its header claims), everything else from decoded frames,
    so a 10-minute WAV takes well under a millisecond.
    """
    if fmt in (None, "wav"):
        plain = _plain_wav(src)
        if plain is not None:  # the RIFF header says it all: no FFmpeg needed
            seconds, claimed, log = plain
            return _checked(name, seconds, 0.0, claimed, log)
    import av

    log = DecodeLog()
    seconds = 0.0
    gaps = 0.0
    container = _open(src, name, fmt)
    try:
        stream = _audio_stream(container, name)
        _describe(container, stream, log)
        width = _pcm_width(log.codec, log.channels)
        layout = _wav_data(src) if width and log.container == "wav" else None
        if layout is not None:  # PCM in RIFF: the samples are the data bytes actually present
            offset, declared, _ = layout
            present = _length(src) - offset
            usable = present if declared is None else min(declared, present)
            seconds = usable // width / max(log.rate, 1)
        elif width:
            total = sum(p.size for p in container.demux(stream) if p.size)
            seconds = total / width / max(log.rate, 1)
        else:
            first = True
            end: float | None = None  # where the last decoded frame ends, in the stream's time
            for item in _frames(container, stream, name):
                if isinstance(item, float):
                    gaps += item
                    continue
                if first:
                    log.rate, log.channels, first = item.sample_rate, item.layout.nb_channels, False
                seconds += item.samples / item.sample_rate
                if item.pts is not None and item.time_base:
                    end = float(item.pts * item.time_base) + item.samples / item.sample_rate
                if seconds + gaps >= DECODE_TO_MEASURE:
                    rest = _seconds_after(container, stream, end)
                    if rest is not None:
                        seconds += rest
                        log.notes.append(
                            f"the length past the first {DECODE_TO_MEASURE / 60:g} min was "
                            "read from timestamps, not decoded"
                        )
                        break
                    if seconds + gaps >= MAX_DECODED:
                        raise AudioDecodeError(
                            f"{name}: over {MAX_DECODED / 3600:g} h of audio that can only be "
                            "measured by decoding all of it; cut it into shorter files first"
                        )
        claimed = container.duration / 1e6 if container.duration else None
    except av.error.FFmpegError as exc:
        raise AudioDecodeError(f"{name}: undecodable audio ({_reason(exc)})") from None
    finally:
        container.close()
    if log.container == "wav":
        layout = _wav_data(src)
        if layout is not None:
            _, declared, byte_rate = layout
            claimed = declared / byte_rate if declared is not None and byte_rate else None
    return _checked(name, seconds, gaps, claimed, log)


def _checked(
    name: str,
    seconds: float,
    gaps: float,
    claimed: float | None,
    log: DecodeLog,
) -> AudioInfo:
    """The facts of a probe, once it is known the source holds enough audio."""
    duration = seconds + gaps
    if duration > MAX_SOURCE_SECONDS:
        raise AudioDecodeError(
            f"{name}: {duration / 3600:,.0f} h of audio is over the "
            f"{MAX_SOURCE_SECONDS / 3600:g} h limit for one source"
        )
    if seconds == 0 or log.rate == 0:
        raise AudioDecodeError(f"{name}: no audio could be decoded (empty or corrupt stream)")
    if duration < 0.1:
        raise AudioDecodeError(
            f"{name}: only {duration:.2f} s of audio could be decoded (truncated file?)"
        )
    notes = list(log.notes)
    if gaps:
        notes.append(_gap_note(gaps))
    if claimed and claimed - duration > max(0.5, 0.1 * claimed):
        notes.append(
            f"the file looks truncated: its header promises {claimed:.1f} s, "
            f"only {duration:.1f} s could be decoded"
        )
    return AudioInfo(duration, log.rate, log.channels, log.codec, log.container, tuple(notes))


def _seconds_after(container: Any, stream: Any, end: float | None) -> float | None:
    """Seconds of the stream after ``end`` (stream time), from the timestamps of its last
    packets, reached with one seek; None where the container cannot tell that way."""
    import av

    if end is None or not stream.time_base:
        return None
    try:
        container.seek(1 << 62, stream=stream, backward=True)
        last = None
        for count, packet in enumerate(container.demux(stream)):
            if packet.pts is not None and packet.size:
                stop = packet.pts + (packet.duration or 0)
                last = stop if last is None else max(last, stop)
            if count > 10_000:  # a seek that landed far from the end: give up
                return None
    except (av.error.FFmpegError, OSError, ValueError, OverflowError):
        return None
    if last is None:
        return None
    rest = float(last * stream.time_base) - end
    return rest if rest >= 0 else None


def _pcm_width(codec: str, channels: int) -> int:
    """Bytes per sample frame of an uncompressed PCM codec (0: not plain PCM)."""
    if codec in ("pcm_mulaw", "pcm_alaw"):
        return channels
    match = _PCM_BYTES.match(codec)
    return int(match.group(1)) // 8 * channels if match and channels else 0


def _length(src: Source) -> int:
    return src.stat().st_size if isinstance(src, Path) else len(src)


def _wav_data(src: Source) -> tuple[int, int | None, int] | None:
    """RIFF/WAVE layout: (data offset, declared data size or None if open-ended, byte rate).

    Streaming writers leave the size 0 or 0xFFFFFFFF; None then means "to the end of file".
    """
    head = _head(src, 1 << 16)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
        if chunk == b"fmt " and pos + 16 <= len(head):
            byte_rate = struct.unpack("<I", head[pos + 16 : pos + 20])[0]
        elif chunk == b"data":
            return pos + 8, None if size in (0, 0xFFFFFFFF) else size, byte_rate
        pos += 8 + size + (size & 1)
    return None


# Plain PCM in RIFF/WAVE: format tag (1 integer, 3 float) and bits -> FFmpeg's codec name.
_WAV_CODECS = {
    (1, 8): "pcm_u8",
    (1, 16): "pcm_s16le",
    (1, 24): "pcm_s24le",
    (1, 32): "pcm_s32le",
    (3, 32): "pcm_f32le",
    (3, 64): "pcm_f64le",
}
_EXTENSIBLE = 0xFFFE
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def _plain_wav(src: Source) -> tuple[float, float | None, DecodeLog] | None:
    """Seconds, claimed seconds and format of a plain PCM WAV, from its header alone.

    Opening a file with FFmpeg costs ~150 µs, most of a short clip's preparation; a PCM
    WAV's duration is its data bytes over the byte rate, which the header gives. Anything
    unusual (compressed or extensible sub-formats, inconsistent block sizes) returns None
    and goes through FFmpeg as before, so the facts are the same either way.
    """
    head = _head(src, 1 << 16)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    layout: tuple[int, int, int, int] | None = None  # codec key, channels, rate, block
    while pos + 8 <= len(head):
        chunk, size = head[pos : pos + 4], struct.unpack_from("<I", head, pos + 4)[0]
        body = head[pos + 8 : pos + 8 + size]
        if chunk == b"fmt ":
            if size < 16 or len(body) < 16 or layout is not None:
                return None
            tag, channels, rate, byte_rate, block, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _EXTENSIBLE:  # the sub-format GUID names PCM or float
                if size < 40 or len(body) < 40 or body[26:40] != _GUID_TAIL:
                    return None
                valid, sub = struct.unpack_from("<H", body, 18)[0], body[24:26]
                if valid != bits or sub not in (b"\x01\x00", b"\x03\x00"):
                    return None
                tag = sub[0]
            if (
                (tag, bits) not in _WAV_CODECS
                or not 1 <= channels <= 8
                or not 1_000 <= rate <= 768_000
                or block != channels * bits // 8
                or byte_rate != rate * block
            ):
                return None
            layout = (tag, bits, channels, rate)
        elif chunk == b"data":
            if layout is None:
                return None
            tag, bits, channels, rate = layout
            width = channels * bits // 8
            present = _length(src) - (pos + 8)
            declared = None if size in (0, 0xFFFFFFFF) else size
            usable = present if declared is None else min(declared, present)
            claimed = declared / (rate * width) if declared is not None else None
            log = DecodeLog(rate, channels, _WAV_CODECS[(tag, bits)], "wav")
            return usable // width / rate, claimed, log
        pos += 8 + size + (size & 1)
    return None


def decode(
    src: Source,
    *,
    start: float = 0.0,
    end: float | None = None,
    rate: int = TARGET_RATE,
    name: str = "audio",
    fmt: str | None = None,
) -> np.ndarray:
    """Mono float32 samples at ``rate`` for ``[start, end)`` seconds of the source."""
    need = None if end is None else max(round((end - start) * rate), 0)
    pieces: list[np.ndarray] = []
    have = 0
    for block in iter_pcm(src, name=name, rate=rate, mono=True, start=start, fmt=fmt):
        if need is not None and have + block.shape[1] >= need:
            pieces.append(block[0, : need - have])
            have = need
            break
        pieces.append(block[0])
        have += block.shape[1]
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


# --------------------------------------------------------------------------- encoding
def encode(pcm: np.ndarray, rate: int, fmt: str = "wav") -> bytes:
    """Encode mono float32 samples as ``wav`` (16-bit PCM), ``mp3`` or ``flac``."""
    pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
    if fmt == "wav":
        return wav_bytes(pcm[None, :], rate)
    return _encode_av(pcm, rate, fmt)


def wav_bytes(pcm: np.ndarray, rate: int) -> bytes:
    """16-bit PCM WAV of float samples shaped ``(channels, n)`` in [-1, 1]."""
    channels = pcm.shape[0]
    ints = (np.clip(pcm, -1.0, 1.0) * 32767.0).round().astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(np.ascontiguousarray(ints.T).tobytes())
    return buf.getvalue()


_AV_CODECS = {"mp3": ("mp3", "libmp3lame", 48_000), "flac": ("flac", "flac", None)}


def _encode_av(pcm: np.ndarray, rate: int, fmt: str) -> bytes:
    import av

    try:
        container_fmt, codec, bit_rate = _AV_CODECS[fmt]
    except KeyError:
        raise ValueError(f"unsupported output format {fmt!r}") from None
    ints = (np.clip(pcm, -1.0, 1.0) * 32767.0).astype(np.int16)
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container_fmt) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        if bit_rate:
            stream.bit_rate = bit_rate
        step = 1152 * 8
        for i in range(0, max(len(ints), 1), step):
            frame = av.AudioFrame.from_ndarray(
                ints[None, i : i + step], format="s16", layout="mono"
            )
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def file_size(path: Path) -> int:
    """Size in bytes without reading the file (so a 2 GB file is refused at once)."""
    return os.stat(path).st_size
