"""Long audio in windows: planning, one streaming decode, absolute times, bounded memory."""

from __future__ import annotations

import io
import re
import tracemalloc
import wave
from pathlib import Path

import numpy as np
import pytest

from qaudio_magic import Answer, AudioClip, ask_audio
from qaudio_magic.answer import Answers
from qaudio_magic.emulator import Emulator
from qaudio_magic.errors import InputError
from qaudio_magic.models import lookup
from qaudio_magic.session import Session
from qaudio_magic.windows import WindowReader, check_windows, plan_windows

from ._synth import dominant_hz, tone, write_long_wav, write_wav
from .test_batch import ROOT, run_notebook

LIMITS = lookup("qwen-audio-turbo-latest").limits


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def received_pcm(request) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The samples of the one WAV a request carried, as the emulator received them."""
    with wave.open(io.BytesIO(request.audio[0].data)) as w:
        rate = w.getframerate()
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert rate == 16_000
    return frames.astype(np.float32) / 32767


# ---------------------------------------------------------------------- planning
def test_plan_consecutive_and_overlapping() -> None:
    assert plan_windows(95, 30) == [(0, 30), (30, 60), (60, 90), (90, 95)]
    assert plan_windows(90, 30) == [(0, 30), (30, 60), (60, 90)]
    assert plan_windows(95, 30, 5) == [(0, 30), (25, 55), (50, 80), (75, 95)]
    assert plan_windows(12, 30) == [(0, 12)]
    assert plan_windows(60, 30, start=30) == [(30, 60), (60, 90)]
    assert plan_windows(90.05, 30) == [(0, 30), (30, 60), (60, 90)]  # a 0.05 s tail is left out
    hour = plan_windows(3600, 30)
    assert len(hour) == 120 and hour[3] == (90, 120) and hour[-1] == (3570, 3600)


def test_window_settings_are_checked_before_anything_is_sent(
    session: Session, emu: Emulator, audio: Path
) -> None:
    with pytest.raises(InputError, match="windows of 60 s are longer than the 30 s"):
        check_windows(60, 0, LIMITS, "qwen-audio-turbo-latest")
    with pytest.raises(InputError, match="overlap must be"):
        check_windows(30, 30, LIMITS, "m")
    with pytest.raises(InputError, match="positive"):
        check_windows(0, 0, LIMITS, "m")
    with pytest.raises(InputError, match="windows need the audio in the kernel"):
        ask_audio("https://example.com/talk.mp3", "Q", windows=30)
    with pytest.raises(InputError, match="longer than the 30 s"):
        ask_audio(audio / "speech_en.wav", "Q", windows=45)
    assert emu.requests == []


# ---------------------------------------------------------------------- end to end
def test_95_s_clip_in_30_s_windows_with_absolute_times(
    session: Session, emu: Emulator, media: Path
) -> None:
    source = media / "long" / "long_95s_markers.wav"
    answers = ask_audio(source, "Which marker is spoken?", windows=30, progress=False)
    assert isinstance(answers, Answers) and len(answers) == 4
    assert [a.clips[0].window for a in answers] == [(0, 30), (30, 60), (60, 90), (90, 95)]
    requests = emu.generation_requests()
    assert sorted(round(r.audio[0].duration, 2) for r in requests) == [5.0, 30.0, 30.0, 30.0]
    heard = [re.search(r"1 audio clip \(([\d.]+ s)\)", a.text).group(1) for a in answers]
    assert heard == ["30.00 s"] * 3 + ["5.00 s"]
    # the audio sent for each window is that stretch of the recording: each 10 s segment
    # k starts with a beep of 500 + 100·k Hz, so window 3 (60–90 s) starts at 1100 Hz
    beeps: dict[int, list[float]] = {}
    for request in requests:
        pcm = received_pcm(request)
        beeps.setdefault(round(len(pcm) / 16_000), []).append(dominant_hz(pcm[:1600]))
    assert sorted(beeps[30]) == [500.0, 800.0, 1100.0] and beeps[5] == [1400.0]
    frame = answers.to_pandas()
    assert frame["window"].tolist() == ["0–30 s", "0:30–1:00", "1:00–1:30", "1:30–1:35"]
    assert frame["start"].tolist() == [0, 30, 60, 90] and frame["end"].tolist() == [30, 60, 90, 95]


def test_magic_windows_with_overlap_shows_a_timeline(ip, emu: Emulator, media: Path) -> None:
    source = media / "long" / "long_95s_markers_32k.mp3"
    answers = ip.run_cell_magic("qaudio", f"{source} --windows 30 --overlap 5", "What is said?")
    assert [a.clips[0].window for a in answers] == [(0, 30), (25, 55), (50, 80), (75, 95)]
    text = answers._repr_mimebundle_()[0]["text/plain"]
    assert text.startswith("Timeline — 4 windows · 4 answered")
    lines = text.splitlines()
    assert lines[2].split()[:3] == ["#", "time", "answer"]
    assert [re.match(r"\d+\s+(.+?)\s{2}", line).group(1) for line in lines[3:]] == [
        "0–30 s",
        "25–55 s",
        "0:50–1:20",
        "1:15–1:35",
    ]
    assert len(emu.generation_requests()) == 4


def test_windows_of_a_slice_keep_the_recordings_times(
    session: Session, emu: Emulator, media: Path
) -> None:
    clip = AudioClip.from_source(media / "long" / "long_95s_markers.wav")
    answers = ask_audio(clip[30:90], "Q", windows=30, progress=False)
    assert [a.clips[0].window for a in answers] == [(30, 60), (60, 90)]
    beeps = sorted(dominant_hz(received_pcm(r)[:1600]) for r in emu.generation_requests())
    assert beeps == [800.0, 1100.0]


def test_windowed_answers_are_cached_per_window(
    session: Session, emu: Emulator, media: Path
) -> None:
    source = media / "long" / "long_95s_markers.wav"
    first = ask_audio(source, "Q", windows=30, progress=False)
    emu.clear()
    again = ask_audio(source, "Q", windows=30, progress=False)
    assert emu.requests == [] and again.cached == 4
    assert [a.text for a in again] == [a.text for a in first]
    overlapped = ask_audio(source, "Q", windows=30, overlap=5, progress=False)
    assert overlapped.cached == 1  # only 0–30 is the same window
    assert len(emu.generation_requests()) == 3


def test_a_short_clip_is_one_window(session: Session, emu: Emulator, audio: Path) -> None:
    answers = ask_audio(audio / "speech_en.wav", "Q", windows=30, progress=False)
    assert len(answers) == 1 and isinstance(answers[0], Answer)
    assert answers[0].clips[0].window == (0, pytest.approx(5.106, abs=0.01))


# ---------------------------------------------------------------------- an hour, bounded
@pytest.mark.slow
def test_one_hour_file_in_30_s_windows_streams(tmp_path: Path) -> None:
    """120 windows at the right offsets, each holding its own stretch of audio, from one
    decode pass that never holds much more than one window (8 kHz keeps the file light)."""
    path = write_long_wav(tmp_path / "hour.wav", 3600, rate=8_000)
    clip = AudioClip.from_source(path)
    assert clip.duration == pytest.approx(3600)
    plan = plan_windows(clip.duration, 30)
    reader = WindowReader(clip, plan, LIMITS)
    starts = []
    for k, prepared in enumerate(reader):
        assert prepared.clip.window == (30 * k, 30 * k + 30)
        assert prepared.seconds == pytest.approx(30)
        if k % 17 == 0:  # spot checks: minute m is a tone of 300 + 10·m Hz
            with wave.open(io.BytesIO(prepared.data)) as w:
                pcm = np.frombuffer(w.readframes(8000), dtype="<i2").astype(np.float32)
            assert dominant_hz(pcm[:8000]) == pytest.approx(300 + 10 * (k // 2), abs=2)
        starts.append(prepared.start)
    assert len(starts) == 120 and starts[3] == 90 and starts[-1] == 3570
    assert reader.peak_samples <= 31 * 16_000, "more than about one window was held at once"


def _peak_while_windowing(path: Path) -> int:
    clip = AudioClip.from_source(path)
    plan = plan_windows(clip.duration or 0, 30)
    tracemalloc.start()
    try:
        for _ in WindowReader(clip, plan, LIMITS):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_windowing_memory_does_not_grow_with_length(tmp_path: Path) -> None:
    short = write_long_wav(tmp_path / "two.wav", 120, rate=16_000)
    long = write_long_wav(tmp_path / "six.wav", 360, rate=16_000)
    whole_long = 360 * 16_000 * 4  # the six minutes decoded at once, float32
    peak_short, peak_long = _peak_while_windowing(short), _peak_while_windowing(long)
    assert peak_long < whole_long / 2, f"peak {peak_long / 1e6:.1f} MB"
    assert peak_long < peak_short * 1.3, (peak_short, peak_long)


def test_a_source_shorter_than_its_plan_ends_with_short_windows(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "t.wav", tone(440, 40.0))
    clip = AudioClip.from_source(path)
    prepared = list(WindowReader(clip, [(0, 30), (30, 60)], LIMITS))
    assert [p.clip.window for p in prepared] == [(0, 30), (30, 40)]


# ---------------------------------------------------------------------- notebook
def test_long_audio_notebook_runs_against_the_emulator(tmp_path: Path) -> None:
    text = run_notebook(ROOT / "notebooks" / "long_audio.ipynb", tmp_path)
    assert "Timeline — 4 windows · 4 answered" in text
    assert "1:30–1:35" in text and "1:15–1:35" in text  # consecutive, then overlapping
    assert "0:30–1:00" in text  # the slice keeps the recording's times
    assert "20 windows · 20 answered" in text and "9:30–10:00" in text
