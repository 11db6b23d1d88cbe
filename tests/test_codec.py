"""PyAV decoding of every corpus format: durations from decoding, repairs noted, exact windows."""

from __future__ import annotations

import csv
import struct
from pathlib import Path

import numpy as np
import pytest

from qaudio_magic import _codec
from qaudio_magic.errors import AudioDecodeError

# The sox AMR with DTX: PyAV refuses it (MANIFEST: FAIL), we decode it with its SID frames
# turned into silence: 5.12 s like the same sentence encoded without DTX.
DTX = "formats/en_amrnb_12k2_dtx_sox.amr"


def manifest(media: Path) -> dict[str, dict[str, str]]:
    with open(media / "MANIFEST.tsv", newline="") as fh:
        return {row["file"]: row for row in csv.DictReader(fh, delimiter="\t")}


def pyav_seconds(row: dict[str, str]) -> float:
    """The MANIFEST's PyAV column: 'ok 5.106s'."""
    assert row["pyav"].startswith("ok "), row["pyav"]
    return float(row["pyav"].split()[1].rstrip("s"))


def test_every_format_decodes_with_its_real_duration(media_sets: Path) -> None:
    media = media_sets
    rows = manifest(media)
    files = sorted(p for p in (media / "formats").iterdir())
    assert len(files) == 19
    for path in files:
        rel = f"formats/{path.name}"
        info = _codec.probe(path, name=path.name)
        expected = 5.12 if rel == DTX else pyav_seconds(rows[rel])
        assert abs(info.duration - expected) <= 0.1, (rel, info.duration, expected)
        if rel != DTX:
            assert info.sample_rate == int(rows[rel]["sample_rate"]), rel
            assert info.channels == int(rows[rel]["channels"]), rel
            assert info.notes == (), (rel, info.notes)


def test_headers_that_lie_do_not_decide_the_duration(media_sets: Path) -> None:
    rows = manifest(media_sets)
    lying = {  # what the container header says (ffprobe's figure) is off, or missing
        rel: row
        for rel, row in rows.items()
        if rel.startswith("formats/")
        and row["pyav"].startswith("ok ")
        and (row["duration_s"] == "N/A" or abs(float(row["duration_s"]) - pyav_seconds(row)) > 0.05)
    }
    # an ADTS stream's length estimated from its bitrate, a streamed WebM without Duration
    assert {"formats/en_aac_adts.aac", "formats/en_opus_stream.webm"} <= set(lying)
    for rel, row in lying.items():
        info = _codec.probe(media_sets / rel)
        assert abs(info.duration - pyav_seconds(row)) < 0.01, (rel, info.duration, row)
    named = _codec.probe(media_sets / "formats/en_mp3_named_as.wav")
    assert (named.container, named.codec) == ("mp3", "mp3")


def test_amr_with_dtx_decodes_with_a_note(media: Path) -> None:
    info = _codec.probe(media / DTX, name="dtx.amr")
    assert info.codec == "amr_nb" and abs(info.duration - 5.12) < 0.01
    assert info.notes == ("0.34 s of undecodable frames (AMR DTX comfort noise) became silence",)
    pcm = _codec.decode(media / DTX)
    assert abs(len(pcm) / 16_000 - info.duration) < 0.01
    speech = _codec.decode(media / "formats/en_amrnb_12k2.amr")
    assert np.corrcoef(pcm[:16_000], speech[:16_000])[0, 1] > 0.9  # the same sentence


def test_streaming_wav_decodes_and_half_wav_is_noted(media: Path) -> None:
    full = _codec.probe(media / "bad/streaming_header_sizes_ffffffff.wav")
    assert abs(full.duration - 5.106) < 0.01 and full.notes == ()
    half = _codec.probe(media / "bad/truncated_half.wav")
    assert abs(half.duration - 2.5525) < 0.01
    assert half.notes == (
        "the file looks truncated: its header promises 5.1 s, only 2.6 s could be decoded",
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty.wav", "empty.wav: the source is empty (0 bytes)"),
        (
            "truncated_1KB.mp3",
            "truncated_1KB.mp3: only 0.05 s of audio could be decoded (truncated file?)",
        ),
        (
            "text_renamed.mp3",
            "text_renamed.mp3: not a readable audio file (Invalid data found when processing input)",
        ),
        (
            "png_renamed.wav",
            "png_renamed.wav: no audio stream in this file (it looks like png_pipe)",
        ),
        (
            "corrupt_header.wav",
            "corrupt_header.wav: not a readable audio file (Invalid data found when processing input)",
        ),
        (
            "garbage_magic.wav",
            "garbage_magic.wav: not a readable audio file (Invalid data found when processing input)",
        ),
    ],
)
def test_bad_files_fail_with_the_reason(media: Path, name: str, message: str) -> None:
    with pytest.raises(AudioDecodeError) as err:
        _codec.probe(media / "bad" / name, name=name)
    assert str(err.value) == message
    data = (media / "bad" / name).read_bytes()
    with pytest.raises(AudioDecodeError):  # the same from bytes in memory
        _codec.probe(data, name=name)


@pytest.mark.parametrize(
    "rel", ["long/long_95s_markers.wav", "long/big_65s_48k_stereo_12.5MB.wav", "formats/en.flac"]
)
def test_windows_seek_yet_match_decoding_from_the_start(media: Path, rel: str) -> None:
    start, end = (61.25, 63.5) if rel.startswith("long") else (2.5, 4.0)
    window = _codec.decode(media / rel, start=start, end=end)
    whole = _codec.decode(media / rel)
    expect = whole[round(start * 16_000) : round(end * 16_000)]
    assert len(window) == len(expect) == round((end - start) * 16_000)
    assert np.abs(window - expect).max() < 1e-3


def test_window_of_a_raw_mp3_stream(media: Path) -> None:
    pcm = _codec.decode(media / "long/long_95s_markers_32k.mp3", start=40, end=40.25)
    assert dominant_hz(pcm) == pytest.approx(900, abs=10)  # segment 4's beep


def dominant_hz(pcm: np.ndarray, rate: int = 16_000) -> float:
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    return float(np.argmax(spectrum) * rate / len(pcm))


def test_encoders_round_trip() -> None:
    t = np.arange(16_000) / 16_000
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for fmt in ("wav", "flac", "mp3"):
        data = _codec.encode(tone, 16_000, fmt)
        info = _codec.probe(data)
        assert (info.container, info.sample_rate, info.channels) == (fmt, 16_000, 1)
        assert abs(info.duration - 1.0) < 0.08, fmt
        assert dominant_hz(_codec.decode(data)[2000:10000]) == pytest.approx(440, abs=3)
    wav = _codec.encode(tone, 16_000, "wav")
    assert np.abs(_codec.decode(wav) - tone).max() < 1e-4  # lossless but for 16-bit rounding


def test_format_hint_for_bytes(media: Path) -> None:
    data = (media / "formats/en_aac_adts.aac").read_bytes()
    assert _codec.probe(data, fmt="aac").codec == "aac"
    assert _codec.probe(data, fmt="mp3").codec == "aac"  # a wrong hint falls back to sniffing


def _stepped_tone(seconds: int, rate: int) -> np.ndarray:
    """A tone whose pitch is 300 + 50·k Hz during second k (the pitch tells the time), with
    a 2 ms click at k + 0.25 s (the click tells the time to the millisecond)."""
    t = np.arange(seconds * rate) / rate
    pcm = 0.3 * np.sin(2 * np.pi * np.cumsum(300 + 50 * np.floor(t)) / rate)
    for k in range(seconds):
        at = round((k + 0.25) * rate)
        pcm[at : at + rate // 500] = 0.95
    return pcm.astype(np.float32)


def _encode(container: str, codec: str, pcm: np.ndarray, rate: int) -> bytes:
    import io

    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        kind, data = ("s16", (pcm * 32767).astype(np.int16)) if codec == "flac" else ("flt", pcm)
        for i in range(0, len(data), 3840):
            frame = av.AudioFrame.from_ndarray(data[None, i : i + 3840], format=kind, layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("container", "codec"),
    [("flac", "flac"), ("ogg", "libopus"), ("webm", "libopus"), ("mp4", "aac")],
)
def test_seeking_windows_in_indexed_containers(container: str, codec: str) -> None:
    data = _encode(container, codec, _stepped_tone(20, 48_000), 48_000)
    window = _codec.decode(data, start=12.0, end=13.0)  # reached by seeking
    assert len(window) == 16_000
    assert dominant_hz(window[5_000:15_000]) == pytest.approx(900, abs=2)  # second 12
    whole = _codec.decode(data)
    click = int(np.argmax(window)) / 16_000
    assert click == pytest.approx(int(np.argmax(whole[192_000:208_000])) / 16_000, abs=0.001)
    # at 0.25 s; AAC keeps its 1024-sample encoder priming (21 ms) when, as here, the MP4
    # has no edit list — in both paths alike
    assert click == pytest.approx(0.25, abs=0.025 if codec == "aac" else 0.003)
    if codec == "flac":  # lossless: the very samples of a decode from the start
        assert np.array_equal(window, whole[192_000:208_000])


def _riff(fmt_chunk: bytes, data: bytes, declared: int | None = None, extra: bytes = b"") -> bytes:

    size = len(data) if declared is None else declared
    body = (
        b"WAVEfmt "
        + struct.pack("<I", len(fmt_chunk))
        + fmt_chunk
        + extra
        + b"data"
        + struct.pack("<I", size)
        + data
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _fmt(
    tag: int, channels: int, rate: int, bits: int, sub: tuple[int, int] | None = None
) -> bytes:

    block = channels * bits // 8
    head = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    if sub is None:
        return head
    guid = struct.pack("<H", sub[1]) + bytes.fromhex("000000001000800000aa00389b71")
    return head + struct.pack("<HHI", 22, sub[0], 0) + guid


@pytest.mark.parametrize(
    ("wav", "expected"),
    [
        (_riff(_fmt(1, 1, 16_000, 16), b"\0\1" * 16_000), (1.0, 16_000, 1, "pcm_s16le", ())),
        (_riff(_fmt(1, 1, 8_000, 8), b"\x80" * 8_000), (1.0, 8_000, 1, "pcm_u8", ())),
        (_riff(_fmt(1, 2, 48_000, 24), bytes(6 * 4_800)), (0.1, 48_000, 2, "pcm_s24le", ())),
        (_riff(_fmt(1, 1, 16_000, 32), bytes(64_000)), (1.0, 16_000, 1, "pcm_s32le", ())),
        (_riff(_fmt(3, 1, 16_000, 32), bytes(64_000)), (1.0, 16_000, 1, "pcm_f32le", ())),
        (_riff(_fmt(3, 1, 16_000, 64), bytes(128_000)), (1.0, 16_000, 1, "pcm_f64le", ())),
        (
            _riff(_fmt(0xFFFE, 2, 44_100, 16, (16, 1)), bytes(4 * 44_100)),
            (1.0, 44_100, 2, "pcm_s16le", ()),
        ),
        (
            _riff(_fmt(0xFFFE, 1, 16_000, 32, (32, 3)), bytes(64_000)),
            (1.0, 16_000, 1, "pcm_f32le", ()),
        ),
        (  # a LIST chunk before the data
            _riff(_fmt(1, 1, 16_000, 16), bytes(32_000), extra=b"LIST\4\0\0\0INFO"),
            (1.0, 16_000, 1, "pcm_s16le", ()),
        ),
        (  # streaming writers: sizes left open
            _riff(_fmt(1, 1, 16_000, 16), bytes(32_000), declared=0xFFFFFFFF),
            (1.0, 16_000, 1, "pcm_s16le", ()),
        ),
        (
            _riff(_fmt(1, 1, 16_000, 16), bytes(16_000), declared=64_000),
            (
                0.5,
                16_000,
                1,
                "pcm_s16le",
                (
                    "the file looks truncated: its header promises 2.0 s, only 0.5 s could be decoded",
                ),
            ),
        ),
        (  # 24 valid bits in 32: not plain, FFmpeg decides (and says what it says)
            _riff(_fmt(0xFFFE, 1, 16_000, 32, (24, 1)), bytes(64_000)),
            (1.3333125, 16_000, 1, "pcm_f24le", ()),
        ),
    ],
)
def test_plain_wav_facts_match_ffmpeg(wav: bytes, expected: tuple) -> None:
    """A PCM WAV is measured from its header (no FFmpeg): the same facts FFmpeg gives."""
    info = _codec.probe(wav, name="t.wav")
    assert (info.duration, info.sample_rate, info.channels, info.codec, info.notes) == expected
    assert info.container == "wav"
    if info.codec != "pcm_f24le":  # and it decodes to that many seconds
        assert abs(len(_codec.decode(wav)) / 16_000 - info.duration) < 1e-3


def test_a_wav_too_short_or_empty_still_fails_with_the_reason() -> None:
    with pytest.raises(AudioDecodeError, match=r"t.wav: only 0.05 s of audio"):
        _codec.probe(_riff(_fmt(1, 1, 16_000, 16), bytes(1_600)), name="t.wav")
    with pytest.raises(AudioDecodeError, match=r"t.wav: no audio could be decoded"):
        _codec.probe(_riff(_fmt(1, 1, 16_000, 16), b""), name="t.wav")
