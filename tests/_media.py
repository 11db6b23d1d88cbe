"""The audio the tests need, made from code: every container and codec a user may bring,
broken files, long recordings with markers.

Anyone who clones the repository has it: it is built from the clips shipped in
``notebooks/audio`` (an espeak-ng sentence, its MP3, a streamed WebM/Opus, a 95 s MP3 with
markers) with PyAV and numpy, in a temporary folder laid out like the shared corpus
(``formats/``, ``bad/``, ``long/``, ``speech/``) and described by a ``MANIFEST.tsv`` with the
corpus's columns, the PyAV column from a plain decode of each file. Two files no encoder
in PyAV can write — GSM 6.10 in a WAV, AMR-NB with DTX as sox writes it — are copied from
the shared corpus into ``tests/data/audio`` (16 KB together).
"""

from __future__ import annotations

import csv
import io
import struct
import wave
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "notebooks" / "audio"
DATA = Path(__file__).resolve().parent / "data" / "audio"
RATE = 16_000
SEGMENT = 10  # seconds: each segment k of the long recording starts with a beep
BEEP = 0.25  # seconds, at 500 + 100·k Hz

FORMATS = (  # name, muxer, codec, sample rate, channels, muxer options
    ("en.flac", "flac", "flac", 16_000, 1, {}),
    ("en_aac.3gp", "3gp", "aac", 16_000, 1, {}),
    ("en_aac.m4a", "ipod", "aac", 22_050, 1, {}),
    ("en_aac_adts.aac", "adts", "aac", 22_050, 1, {}),
    (  # what Safari's MediaRecorder writes
        "en_aac_fragmented.mp4",
        "mp4",
        "aac",
        48_000,
        1,
        {"movflags": "frag_keyframe+empty_moov+default_base_moof"},
    ),
    ("en_amrnb.3gp", "3gp", "libopencore_amrnb", 8_000, 1, {}),
    ("en_amrnb_12k2.amr", "amr", "libopencore_amrnb", 8_000, 1, {}),
    ("en_f32_16k_mono.wav", "wav", "pcm_f32le", 16_000, 1, {}),
    ("en_mulaw_8k_mono.wav", "wav", "pcm_mulaw", 8_000, 1, {}),
    ("en_opus.opus", "ogg", "libopus", 48_000, 1, {}),
    ("en_opus.webm", "webm", "libopus", 48_000, 1, {}),
    ("en_vorbis.ogg", "ogg", "vorbis", 44_100, 2, {}),  # FFmpeg's own Vorbis: stereo only
)
COPIED = {  # name in formats/ -> where it comes from
    "en_mp3_64k.mp3": SHIPPED / "en_mp3_64k.mp3",
    "en_mp3_named_as.wav": SHIPPED / "en_mp3_64k.mp3",  # MP3 bytes under a .wav name
    "en_opus_stream.webm": SHIPPED / "en_opus_stream.webm",  # no Duration, no Cues
    "en_gsm_ms_8k_mono.wav": DATA / "en_gsm_ms_8k_mono.wav",
    "en_amrnb_12k2_dtx_sox.amr": DATA / "en_amrnb_12k2_dtx_sox.amr",
}


def speech() -> np.ndarray:
    """The shipped English sentence: 16 kHz mono float32, 5.106 s."""
    with wave.open(str(SHIPPED / "speech_en.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2)
        raw = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    return (raw / 32768).astype(np.float32)


def wav_s16(samples: np.ndarray, rate: int) -> bytes:
    """A 16-bit PCM WAV of float samples, shape (n,) or (channels, n)."""
    frames = np.atleast_2d(samples)
    pcm = (np.clip(frames, -1, 1) * 32767).astype("<i2").T.tobytes()
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(frames.shape[0])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return out.getvalue()


def wav_s24_extensible(samples: np.ndarray, rate: int) -> bytes:
    """A 24-bit WAVE_FORMAT_EXTENSIBLE WAV (what pro recorders write), by hand."""
    frames = np.atleast_2d(samples)
    channels = frames.shape[0]
    ints = (np.clip(frames, -1, 1) * (2**23 - 1)).astype("<i4").T.reshape(-1)
    data = ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    pcm_guid = struct.pack("<IHH8s", 1, 0x0000, 0x0010, b"\x80\x00\x00\xaa\x00\x38\x9b\x71")
    fmt = struct.pack(
        "<HHIIHHHHI16s", 0xFFFE, channels, rate, rate * channels * 3, channels * 3, 24, 22, 24,
        (1 << channels) - 1, pcm_guid,
    )  # fmt: skip
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def resample(samples: np.ndarray, rate: int, to: int) -> np.ndarray:
    """Linear interpolation: enough for test signals whose content is tones and speech."""
    n = round(len(samples) * to / rate)
    return np.interp(np.arange(n) * rate / to, np.arange(len(samples)), samples).astype(np.float32)


def encode(
    samples: np.ndarray, muxer: str, codec: str, rate: int, channels: int, **options: str
) -> bytes:
    """``samples`` (16 kHz mono) encoded with PyAV into ``muxer``; a non-seekable writer
    would leave the header's duration out, a BytesIO lets the muxer finish it."""
    layout = "mono" if channels == 1 else "stereo"
    out = io.BytesIO()
    with av.open(out, "w", format=muxer, options=options) as container:
        stream: Any = container.add_stream(codec, rate=rate, layout=layout)
        if codec == "libopencore_amrnb":
            stream.bit_rate = 12_200
        if codec == "vorbis":
            stream.codec_context.options = {"strict": "experimental"}
        pcm = resample(samples, RATE, rate)
        planes = np.repeat(pcm[None, :], channels, axis=0)
        step = 4096
        for i in range(0, planes.shape[1], step):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(planes[:, i : i + step]), format="fltp", layout=layout
            )
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def long_markers(seconds: int = 95) -> np.ndarray:
    """``seconds`` at 16 kHz: each 10 s segment k starts with a 0.25 s beep of
    500 + 100·k Hz, then the shipped sentence, then silence (like the corpus's)."""
    pcm = np.zeros(seconds * RATE, np.float32)
    sentence = speech()
    t = np.arange(round(BEEP * RATE)) / RATE
    for k in range(-(-seconds // SEGMENT)):
        at = k * SEGMENT * RATE
        beep = (0.5 * np.sin(2 * np.pi * (500 + 100 * k) * t)).astype(np.float32)
        pcm[at : at + len(beep)] = beep[: len(pcm) - at]
        start = at + round(0.5 * RATE)
        pcm[start : start + len(sentence)] = sentence[: max(0, len(pcm) - start)]
    return pcm


def png_bytes() -> bytes:
    """A 1×1 PNG: a real image file, no audio in it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + chunk(b"IEND", b"")
    )


def bad_files(good_wav: bytes, mp3: bytes) -> dict[str, bytes]:
    """Files that are not (all) audio, named as if they were."""
    zeroed = bytearray(good_wav)
    zeroed[12:36] = bytes(24)  # the whole fmt chunk
    garbage = b"JUNK" + good_wav[4:]
    streaming = bytearray(good_wav)
    streaming[4:8] = b"\xff\xff\xff\xff"  # RIFF size, as a recorder that never seeks back
    data_at = good_wav.index(b"data")
    streaming[data_at + 4 : data_at + 8] = b"\xff\xff\xff\xff"
    return {
        "empty.wav": b"",
        "truncated_1KB.mp3": mp3[:1024],
        "text_renamed.mp3": b"These are notes about a meeting, not audio.\n",
        "png_renamed.wav": png_bytes(),
        "corrupt_header.wav": bytes(zeroed),
        "garbage_magic.wav": garbage,
        "streaming_header_sizes_ffffffff.wav": bytes(streaming),
        "truncated_half.wav": good_wav[: len(good_wav) // 2],
    }


def pyav_facts(path: Path) -> dict[str, str]:
    """The MANIFEST columns for one file, from PyAV alone (independent of qaudio_magic)."""
    try:
        with av.open(str(path)) as container:
            audio = container.streams.audio
            if not audio:
                return {
                    "duration_s": "N/A",
                    "pyav": f"FAIL: no audio stream ({container.format.name})",
                }
            stream = audio[0]
            header = "N/A" if container.duration is None else f"{container.duration / 1e6:.6f}"
            samples = sum(frame.samples for frame in container.decode(stream))
            rate = stream.codec_context.sample_rate
            return {
                "sample_rate": str(rate),
                "channels": str(stream.codec_context.channels),
                "duration_s": header,
                "pyav": f"ok {samples / rate:.3f}s",
            }
    except av.FFmpegError as exc:
        return {"duration_s": "-", "pyav": f"FAIL: {type(exc).__name__}"}


def make_media(root: Path) -> Path:
    """Write the whole set under ``root``; returns ``root``."""
    sentence = speech()
    good_wav = wav_s16(sentence, RATE)
    mp3 = (SHIPPED / "en_mp3_64k.mp3").read_bytes()
    files: dict[str, bytes | Callable[[], bytes]] = {
        "formats/en_pcm16_16k_mono.wav": good_wav,
        "formats/en_pcm16_44k1_stereo.wav": lambda: wav_s16(
            np.repeat(resample(sentence, RATE, 44_100)[None, :], 2, axis=0), 44_100
        ),
        "speech/speech_en_single_word_yes.wav": wav_s16(sentence[: round(0.3785 * RATE)], RATE),
        "long/long_95s_markers.wav": lambda: wav_s16(long_markers(95), RATE),
        "long/long_95s_markers_32k.mp3": (
            SHIPPED / "long" / "long_95s_markers_32k.mp3"
        ).read_bytes(),
        "long/big_65s_48k_stereo_12.5MB.wav": lambda: wav_s16(
            np.repeat(np.repeat(long_markers(65), 3)[None, :], 2, axis=0), 48_000
        ),  # 12.48 MB: over the service's 10 MB
        "long/b64edge_29s_48k_stereo_s24_8.4MB.wav": lambda: wav_s24_extensible(
            np.repeat(np.repeat(long_markers(29), 3)[None, :], 2, axis=0), 48_000
        ),  # 8.35 MB: under 10 MB raw, over it as base64
    }
    for name, muxer, codec, rate, channels, options in FORMATS:
        files[f"formats/{name}"] = lambda m=muxer, c=codec, r=rate, ch=channels, o=options: encode(
            sentence, m, c, r, ch, **o
        )
    for name, source in COPIED.items():
        files[f"formats/{name}"] = source.read_bytes()
    for name, data in bad_files(good_wav, mp3).items():
        files[f"bad/{name}"] = data
    rows = []
    for rel, content in sorted(files.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content() if callable(content) else content)
        rows.append({"file": rel, **pyav_facts(path)})
    with open(root / "MANIFEST.tsv", "w", newline="") as fh:
        columns = ["file", "sample_rate", "channels", "duration_s", "pyav"]
        writer = csv.DictWriter(fh, columns, delimiter="\t", restval="-")
        writer.writeheader()
        writer.writerows(rows)
    return root
