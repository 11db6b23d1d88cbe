"""Decode, probe, resample and encode audio with PyAV (bundled FFmpeg, no system ffmpeg).

Durations come from decoding, never from headers: headers lie for ADTS AAC, streamed
WebM and truncated MP3. Decoding goes packet by packet so that one undecodable packet
(AMR comfort-noise frames written with DTX, which FFmpeg does not implement) becomes
silence with a note instead of failing the whole clip.
"""

from __future__ import annotations

import io
import os
import wave
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import numpy as np

from .errors import AudioDecodeError

__all__ = ["AudioInfo", "DecodeLog", "decode", "encode", "iter_pcm", "probe"]

Source = Union[bytes, Path]  # noqa: UP007 - a runtime alias, 3.10 safe  # encoded bytes in memory, or a file on disk (read lazily)

TARGET_RATE = 16_000


@dataclass(frozen=True)
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


def _open(src: Source, name: str):  # type: ignore[no-untyped-def]
    import av  # deferred: keeps `%load_ext` light

    try:
        if isinstance(src, Path):
            return av.open(str(src), mode="r")
        if not src:
            raise AudioDecodeError(f"{name}: the source is empty (0 bytes)")
        return av.open(io.BytesIO(src), mode="r")
    except AudioDecodeError:
        raise
    except (av.error.FFmpegError, OSError) as exc:
        raise AudioDecodeError(f"{name}: not a readable audio file ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    text = str(exc)
    # PyAV messages look like "[Errno 1094995529] Invalid data found ...: '<file>'"
    if "]" in text and text.startswith("[Errno"):
        text = text.split("]", 1)[1]
    return text.split(":")[0].strip() or type(exc).__name__


def _audio_stream(container, name: str):  # type: ignore[no-untyped-def]
    streams = list(container.streams.audio)
    if not streams:
        kind = container.format.name if container.format else "unknown"
        raise AudioDecodeError(f"{name}: no audio stream in this file (it looks like {kind})")
    return streams[0]


def iter_pcm(
    src: Source,
    *,
    name: str = "audio",
    rate: int | None = TARGET_RATE,
    mono: bool = True,
    log: DecodeLog | None = None,
) -> Iterator[np.ndarray]:
    """Yield float32 PCM blocks, shape ``(channels, n)``, resampled to ``rate`` (None: native).

    ``log`` receives the native format and what was repaired on the way (undecodable
    packets replaced by silence).
    """
    import av

    log = log if log is not None else DecodeLog()
    container = _open(src, name)
    try:
        stream = _audio_stream(container, name)
        ctx = stream.codec_context
        log.codec = _codec_name(ctx.name)
        log.container = container.format.name.split(",")[0] if container.format else "?"
        log.rate, log.channels = ctx.sample_rate or 0, ctx.channels
        resampler = None
        skipped = 0.0
        for packet in container.demux(stream):
            try:
                frames = ctx.decode(packet)
            except (av.error.PatchWelcomeError, av.error.InvalidDataError) as exc:
                if not (packet.size and packet.duration and packet.time_base):
                    raise AudioDecodeError(f"{name}: undecodable audio ({_reason(exc)})") from None
                gap = float(packet.duration * packet.time_base)
                skipped += gap
                width = 1 if mono else max(log.channels, 1)
                yield np.zeros((width, round(gap * (rate or log.rate))), dtype=np.float32)
                continue
            for frame in frames:
                if resampler is None:
                    log.rate, log.channels = frame.sample_rate, frame.layout.nb_channels
                    resampler = av.AudioResampler(
                        format="flt",
                        layout="mono" if mono else frame.layout.name,
                        rate=rate or frame.sample_rate,
                    )
                for out in resampler.resample(frame):
                    yield _packed(out)
        if resampler is not None:
            for out in resampler.resample(None):
                yield _packed(out)
        if skipped:
            log.notes.append(
                f"{skipped:.2f} s of undecodable frames (AMR DTX comfort noise) became silence"
            )
    except av.error.FFmpegError as exc:
        raise AudioDecodeError(f"{name}: undecodable audio ({_reason(exc)})") from None
    finally:
        container.close()


def _packed(frame) -> np.ndarray:  # type: ignore[no-untyped-def]
    channels = frame.layout.nb_channels
    data = frame.to_ndarray().reshape(-1)
    return data.reshape(-1, channels).T.astype(np.float32, copy=False)


def probe(src: Source, *, name: str = "audio") -> AudioInfo:
    """Decode the whole source once at its native rate and report what it really holds."""
    log = DecodeLog()
    samples = sum(b.shape[1] for b in iter_pcm(src, name=name, rate=None, mono=False, log=log))
    if samples == 0 or log.rate == 0:
        raise AudioDecodeError(f"{name}: no audio could be decoded (empty or corrupt stream)")
    duration = samples / log.rate
    if duration < 0.1:
        raise AudioDecodeError(
            f"{name}: only {duration:.2f} s of audio could be decoded (truncated file?)"
        )
    return AudioInfo(duration, log.rate, log.channels, log.codec, log.container, tuple(log.notes))


def _codec_name(codec: str) -> str:
    return {"mp3float": "mp3", "amrnb": "amr_nb", "amrwb": "amr_wb"}.get(codec, codec)


def decode(
    src: Source,
    *,
    start: float = 0.0,
    end: float | None = None,
    rate: int = TARGET_RATE,
    name: str = "audio",
) -> np.ndarray:
    """Mono float32 samples at ``rate`` for ``[start, end)`` seconds of the source."""
    first = round(start * rate)
    last = None if end is None else round(end * rate)
    pieces: list[np.ndarray] = []
    pos = 0
    for block in iter_pcm(src, name=name, rate=rate, mono=True):
        n = block.shape[1]
        lo, hi = max(first - pos, 0), n if last is None else min(last - pos, n)
        if hi > lo:
            pieces.append(block[0, lo:hi])
        pos += n
        if last is not None and pos >= last:
            break
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def encode(pcm: np.ndarray, rate: int, fmt: str = "wav") -> bytes:
    """Encode mono float32 samples as ``wav`` (16-bit PCM), ``mp3`` or ``flac``."""
    pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
    if fmt == "wav":
        return _encode_wav(pcm, rate)
    return _encode_av(pcm, rate, fmt)


def _encode_wav(pcm: np.ndarray, rate: int) -> bytes:
    ints = (np.clip(pcm, -1.0, 1.0) * 32767.0).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(ints.tobytes())
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
