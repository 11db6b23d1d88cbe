"""Synthetic audio for batch and window tests, written with numpy + wave (no big arrays)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np


def tone(freq: float, seconds: float, rate: int = 16_000) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype("<i2")


def write_wav(path: Path, samples: np.ndarray, rate: int = 16_000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def make_clips(folder: Path, n: int, seconds: float = 0.4) -> list[Path]:
    """``n`` distinct short clips (a different tone each, so each has its own sha256)."""
    folder.mkdir(parents=True, exist_ok=True)
    return [write_wav(folder / f"clip_{i:03d}.wav", tone(200 + 7 * i, seconds)) for i in range(n)]


def write_long_wav(path: Path, seconds: int, rate: int = 8_000) -> Path:
    """A long WAV streamed minute by minute: minute m is a tone of 300 + 10·m Hz."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        for minute in range(-(-seconds // 60)):
            length = min(60, seconds - 60 * minute)
            w.writeframes(tone(300 + 10 * minute, length, rate).tobytes())
    return path


def dominant_hz(samples: np.ndarray, rate: int = 16_000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])
