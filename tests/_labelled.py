"""Labelled audio made in code: real spoken words placed at known offsets.

The words (tests/data/words, one word per file, first to last sample) are put into
silence, white or brown noise at a chosen signal-to-noise ratio, beside tone bursts, so
the true speech and sound boundaries are known to the sample. Used by the grounding
tests and by bench/bench_grounding.py; needs only numpy and the stdlib.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests._synth import write_wav

RATE = 16_000
WORDS = Path(__file__).resolve().parent / "data" / "words"
NAMES = ("apple", "orange", "hello", "yes")


def word(name: str) -> np.ndarray:
    """One shipped word as float32 samples at 16 kHz."""
    with wave.open(str(WORDS / f"{name}.wav"), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768


def tone(seconds: float, hz: float = 440.0, level: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    x = level * np.sin(2 * np.pi * hz * t)
    fade = min(len(x) // 2, RATE // 100)  # 10 ms fades: no click
    if fade:
        ramp = np.linspace(0, 1, fade)
        x[:fade] *= ramp
        x[-fade:] *= ramp[::-1]
    return x.astype(np.float32)


@dataclass
class Scene:
    """Samples plus what is where: ``(start, end, kind, name)`` in seconds."""

    seconds: float
    samples: np.ndarray = field(init=False)
    parts: list[tuple[float, float, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.samples = np.zeros(round(self.seconds * RATE), np.float32)

    def put(self, at: float, x: np.ndarray, kind: str, name: str) -> tuple[float, float]:
        i = round(at * RATE)
        self.samples[i : i + len(x)] += x[: len(self.samples) - i]
        span = (i / RATE, (i + len(x)) / RATE)
        self.parts.append((*span, kind, name))
        return span

    def say(self, at: float, name: str) -> tuple[float, float]:
        return self.put(at, word(name), "speech", name)

    def beep(self, at: float, seconds: float, hz: float = 440.0) -> tuple[float, float]:
        return self.put(at, tone(seconds, hz), "sound", f"tone {hz:g} Hz")

    def noise(self, snr_db: float, colour: str = "white", seed: int = 7) -> None:
        """Add noise at ``snr_db`` below the mean power of the speech placed so far."""
        rng = np.random.default_rng(seed)
        n = rng.standard_normal(len(self.samples))
        if colour == "brown":
            n = np.cumsum(n)
            n -= np.convolve(n, np.ones(4001) / 4001, "same")
        speech = [
            self.samples[round(a * RATE) : round(b * RATE)]
            for a, b, k, _ in self.parts
            if k == "speech"
        ]
        power = float(np.mean(np.concatenate(speech) ** 2)) if speech else 1e-4
        n *= np.sqrt(power / 10 ** (snr_db / 10) / np.mean(n**2))
        self.samples = (self.samples + n).astype(np.float32)

    def labels(self, kind: str = "speech", hop: int = 160) -> np.ndarray:
        """True where ``kind`` is, per ``hop``-sample frame (10 ms by default)."""
        y = np.zeros(len(self.samples) // hop, bool)
        for a, b, k, _ in self.parts:
            if k == kind:
                y[round(a * RATE / hop) : round(b * RATE / hop)] = True
        return y

    def wav(self, path: Path) -> Path:
        return write_wav(path, (np.clip(self.samples, -1, 1) * 32767).astype("<i2"), RATE)


def scenes(seed: int = 7) -> list[tuple[str, Scene]]:
    """The labelled set of the benchmark: words at random offsets in silence and noise."""
    rng = np.random.default_rng(seed)
    out: list[tuple[str, Scene]] = []
    for background in ("silence", "white 10 dB", "brown 5 dB"):
        for k in range(2):
            s = Scene(30.0)
            t = 0.5 + rng.uniform(0, 0.5)
            while t < 28.5:
                name = NAMES[int(rng.integers(len(NAMES)))]
                if rng.uniform() < 0.2:
                    s.beep(t, float(rng.uniform(0.2, 0.6)), float(rng.choice([440, 880, 1000])))
                else:
                    s.say(t, name)
                t = s.parts[-1][1] + float(rng.uniform(0.4, 1.5))
            if background != "silence":
                colour, snr = background.split()[0], float(background.split()[1])
                s.noise(snr, colour, seed=seed + k)
            out.append((f"{background} #{k + 1}", s))
    return out
