"""AudioClip sources: arrays, IPython and ipywidgets Audio, bytes, URLs, windows, identity."""

from __future__ import annotations

from pathlib import Path

import IPython.display
import ipywidgets
import numpy as np
import pytest

from qaudio_magic import AudioClip
from qaudio_magic.clip import parse_time
from qaudio_magic.errors import AudioDecodeError, InputError, SourceError
from qaudio_magic.sources import resolve_sources


def tone(seconds: float, rate: int, hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def peak_hz(pcm: np.ndarray, rate: int = 16_000) -> float:
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    return float(np.argmax(spectrum) * rate / len(pcm))


@pytest.mark.parametrize(
    ("make", "rate", "channels"),
    [
        (lambda: tone(2.0, 22_050), 22_050, 1),  # librosa.load: float32 mono
        (lambda: np.stack([tone(2.0, 48_000), -tone(2.0, 48_000) * 0.5]), 48_000, 2),  # (ch, n)
        (lambda: np.stack([tone(2.0, 44_100)] * 2, axis=1), 44_100, 2),  # soundfile: (n, ch)
        (lambda: (tone(2.0, 8_000) * 32767).astype(np.int16), 8_000, 1),
        (lambda: (tone(2.0, 16_000) * 2**31).astype(np.int32), 16_000, 1),
        (lambda: ((tone(2.0, 16_000) + 1) * 127.5).astype(np.uint8), 16_000, 1),
        (lambda: tone(2.0, 16_000).astype(np.float64) * 3.0, 16_000, 1),  # louder than full scale
        (lambda: tone(2.0, 16_000).tolist(), 16_000, 1),  # a plain list of floats
    ],
)
def test_array_and_rate_tuples(make, rate: int, channels: int) -> None:
    samples = make()
    (clip,) = resolve_sources((samples, rate))
    assert clip.kind == "array"
    info = clip.info
    assert (info.sample_rate, info.channels) == (rate, channels)
    assert abs(info.duration - 2.0) < 1e-3
    assert peak_hz(clip.decode(0.5, 1.5)) == pytest.approx(440, abs=2)
    assert np.abs(clip.decode()).max() <= 1.0


def test_from_array_float_amplitude_kept_and_list_of_pairs() -> None:
    clip = AudioClip.from_array(tone(1.0, 16_000), 16_000, name="take1")
    assert clip.name == "take1"
    pcm = clip.decode()
    assert np.abs(pcm).max() == pytest.approx(0.5, abs=1e-3)
    clips = resolve_sources([(tone(1.0, 16_000), 16_000), (tone(0.5, 8_000), 8_000.0)])
    assert [round(c.duration or 0, 2) for c in clips] == [1.0, 0.5]
    assert clips[0].sha256 == AudioClip.from_array(tone(1.0, 16_000), 16_000).sha256


def test_two_paths_in_a_tuple_stay_two_sources(audio: Path) -> None:
    clips = resolve_sources((audio / "speech_en.wav", str(audio / "tone_440hz_3s.wav")))
    assert [c.name for c in clips] == ["speech_en.wav", "tone_440hz_3s.wav"]


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (tone(1.0, 16_000), "ndarray samples need their sample rate: pass (array, rate)"),
        ((tone(1.0, 16_000), 0), "array: the sample rate must be a positive number, got 0"),
        ((tone(1.0, 16_000), 16_000.5), "array: 16000.5 Hz is not a usable sample rate"),
        ((np.zeros((2, 2, 2)), 16_000), "array: samples must be 1-D or 2-D, got shape (2, 2, 2)"),
        ((np.array([0.0, np.nan]), 16_000), "array: the samples contain NaN or infinite values"),
        ((np.array([], dtype=np.float32), 16_000), "array: expected non-empty numeric samples"),
        (object(), "cannot use an object as audio"),
        (44100, "cannot use 44100 (an int) as audio"),
    ],
)
def test_bad_arrays_are_explained(source: object, message: str) -> None:
    with pytest.raises(InputError) as err:
        resolve_sources(source)
    assert str(err.value).startswith(message)


def test_ipython_display_audio(audio: Path) -> None:
    wav = audio / "speech_en.wav"
    from_file = AudioClip.from_source(IPython.display.Audio(filename=str(wav)))
    assert (from_file.kind, from_file.name) == ("path", "speech_en.wav")
    from_data = AudioClip.from_source(IPython.display.Audio(data=wav.read_bytes()))
    assert from_data.kind == "bytes" and from_data.sha256 == from_file.sha256
    from_array = AudioClip.from_source(IPython.display.Audio(tone(1.0, 16_000), rate=16_000))
    assert abs(from_array.info.duration - 1.0) < 1e-3
    from_url = AudioClip.from_source(
        IPython.display.Audio(url="https://example.org/a/b.mp3", embed=False)
    )
    assert (from_url.kind, from_url.location, from_url.name) == (
        "url",
        "https://example.org/a/b.mp3",
        "b.mp3",
    )
    assert from_url.info is None  # nothing downloaded


def test_ipywidgets_audio_bytes_and_url(audio: Path) -> None:
    data = (audio / "en_mp3_64k.mp3").read_bytes()
    clip = AudioClip.from_source(ipywidgets.Audio(value=data, format="mp3"))
    assert clip.kind == "widget" and clip.info.codec == "mp3"
    url = AudioClip.from_source(ipywidgets.Audio.from_url("https://example.org/x.wav"))
    assert (url.kind, url.location) == ("url", "https://example.org/x.wav")
    with pytest.raises(SourceError, match="the widget holds no audio yet"):
        AudioClip.from_source(ipywidgets.Audio())


def test_bytes_with_and_without_a_format(media: Path) -> None:
    data = (media / "formats/en_amrnb_12k2.amr").read_bytes()
    sniffed = AudioClip.from_source(data)
    hinted = AudioClip.from_bytes(data, format="amr", name="phone.amr")
    assert sniffed.info.codec == hinted.info.codec == "amr_nb"
    assert hinted.name == "phone.amr" and sniffed.sha256 == hinted.sha256
    with pytest.raises(AudioDecodeError, match="the source is empty"):
        AudioClip.from_bytes(b"")


def test_windows_by_slice_and_time_text(media: Path) -> None:
    clip = AudioClip.from_source(media / "long/long_95s_markers.wav")
    part = clip[80:110]
    assert part.window == (80.0, 110.0) and part.duration == pytest.approx(15.0)
    inner = part["0:05":"0:10"]  # relative to the window, m:ss allowed
    assert inner.window == (85.0, 90.0)
    assert clip.window_of("1:20", "1:50").window == (80.0, 110.0)
    assert "[1:20–1:50]" in clip.window_of("1:20", "1:50").label()
    assert [parse_time(t) for t in ("90", "1:30", "1:30.5", "0:01:30", 42, "12s")] == [
        90.0,
        90.0,
        90.5,
        90.0,
        42.0,
        12.0,
    ]
    with pytest.raises(InputError, match=r"window starts at 100 s but the clip is only 95\.0 s"):
        clip[100:120]
    with pytest.raises(InputError, match="empty or negative window"):
        clip[50:40]
    with pytest.raises(InputError, match="not a time: 'soon'"):
        clip.window_of("soon", None)


def test_sha256_identifies_the_source_bytes(audio: Path) -> None:
    wav = audio / "speech_en.wav"
    by_path = AudioClip.from_source(wav)
    assert by_path.sha256 == AudioClip.from_source(wav.read_bytes()).sha256
    assert by_path.sha256 != AudioClip.from_source(audio / "tone_440hz_3s.wav").sha256
    assert by_path[1:2].sha256 == by_path.sha256  # a window is of the same source


def test_cpu_tensor_samples_need_no_torch_code() -> None:
    torch = pytest.importorskip("torch", reason="torch is optional; numpy arrays cover the path")
    samples = torch.from_numpy(tone(1.0, 16_000))
    (clip,) = resolve_sources((samples, 16_000))
    assert abs(clip.info.duration - 1.0) < 1e-3
    assert peak_hz(clip.decode(0.2, 0.8)) == pytest.approx(440, abs=2)
