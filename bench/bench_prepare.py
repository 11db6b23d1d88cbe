"""Audio preparation: what ``prepare()`` costs next to the ``ffmpeg`` command line.

Inputs are made here (numpy + PyAV), so the benchmark needs no corpus:

* a 30 s 44.1 kHz stereo MP3 (128 kb/s). DashScope takes MP3 as it is, so ``prepare``
  decodes it once to measure its real duration and sends the original bytes; a second
  row forces the full path (decode, downmix, resample to 16 kHz, encode WAV) with a
  ``[0:30]`` window, which is what ``ffmpeg -i x.mp3 -ac 1 -ar 16000 out.wav`` does;
* a 10-minute 44.1 kHz stereo WAV (106 MB) and its window 300–330 s: ``prepare`` hashes
  the file (sha256 is a clip's identity), measures it (PCM: from the data bytes present),
  seeks, and encodes 30 s of 16 kHz mono WAV, next to
  ``ffmpeg -ss 300 -t 30 -i x.wav -ac 1 -ar 16000 out.wav``.

Each ``prepare`` starts from a fresh clip with the preparation cache emptied, so nothing
is reused between repetitions. Target (issue 9): the 30 s MP3 in ≤ 100 ms and faster
than the ffmpeg command line.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from qaudio_magic import _prepare  # noqa: E402
from qaudio_magic import clip as _clip  # noqa: E402
from qaudio_magic.clip import AudioClip  # noqa: E402
from qaudio_magic.models import lookup  # noqa: E402

RATE = 44_100


def _signal(seconds: float, seed: int) -> np.ndarray:
    """Speech-like stereo test audio: gliding tones with syllable-rate bursts and some noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * RATE)) / RATE
    pitch = 140 + 40 * np.sin(2 * np.pi * 0.3 * t)
    voice = np.sin(2 * np.pi * np.cumsum(pitch) / RATE) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))
    left = 0.4 * voice + 0.02 * rng.standard_normal(t.size)
    return np.stack([left, 0.8 * left]).astype(np.float32)


def make_mp3(path: Path, seconds: float = 30.0) -> None:
    import av

    pcm = (np.clip(_signal(seconds, 1), -1, 1) * 32767).astype(np.int16)
    with av.open(str(path), mode="w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=RATE, layout="stereo")
        stream.bit_rate = 128_000
        for i in range(0, pcm.shape[1], 1152 * 16):
            block = np.ascontiguousarray(pcm[:, i : i + 1152 * 16].T).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(block, format="s16", layout="stereo")
            frame.sample_rate = RATE
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def make_wav(path: Path, minutes: float = 10.0) -> None:
    """Written a minute at a time, so the generator itself stays small."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        for minute in range(int(minutes)):
            block = (np.clip(_signal(60.0, minute), -1, 1) * 32767).astype("<i2")
            w.writeframes(np.ascontiguousarray(block.T).tobytes())


def _median(samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    return f"{statistics.median(ms):.1f} ms ({min(ms):.1f}–{max(ms):.1f})"


def _time(call: Callable[[], object], runs: int) -> list[float]:
    call()  # warm up: imports, page cache
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        out.append(time.perf_counter() - started)
    return out


def _ours(
    path: Path, window: tuple[float, float] | None, *, cold: bool = True
) -> Callable[[], object]:
    limits = lookup("qwen-audio-turbo-latest").limits

    def run() -> object:
        _prepare._cache.clear()
        if cold:  # nothing known about the file: it is hashed (its identity) and measured
            _clip._FACTS.clear()
        clip = AudioClip.from_source(path)
        return _prepare.prepare(clip if window is None else clip[window[0] : window[1]], limits)

    return run


def _ffmpeg(args: list[str], out: Path) -> Callable[[], object] | None:
    exe = shutil.which("ffmpeg")
    if exe is None:
        return None
    cmd = [exe, "-nostdin", "-v", "error", "-y", *args, "-ac", "1", "-ar", "16000", str(out)]
    return lambda: subprocess.run(cmd, check=True, capture_output=True)


def rows(quick: bool) -> list[dict]:
    runs = 3 if quick else 15
    out: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="qaudio-bench-") as tmp:
        folder = Path(tmp)
        mp3, wav, dest = folder / "talk_30s.mp3", folder / "interview_10min.wav", folder / "o.wav"
        make_mp3(mp3)
        make_wav(wav)
        warm = statistics.median(_time(_ours(wav, (300.0, 330.0), cold=False), runs))
        cases = [
            (
                "prepare a 30 s 44.1 kHz stereo MP3 (sent as is after a full decode)",
                _ours(mp3, None),
                _ffmpeg(["-i", str(mp3)], dest),
                "≤ 100 ms and faster than the ffmpeg CLI",
                100.0,
            ),
            (
                "re-encode that MP3 to 16 kHz mono WAV ([0:30] window)",
                _ours(mp3, (0.0, 30.0)),
                _ffmpeg(["-i", str(mp3)], dest),
                "faster than the ffmpeg CLI",
                None,
            ),
            (
                "10-minute 44.1 kHz stereo WAV, window 300–330 s → 16 kHz mono WAV",
                _ours(wav, (300.0, 330.0)),
                _ffmpeg(["-ss", "300", "-t", "30", "-i", str(wav)], dest),
                "",
                None,
            ),
        ]
        notes = [
            "",
            "",
            "cold: includes sha256 of the whole 106 MB file (the clip's identity, needed "
            f"once per file); another window of a file already seen: {warm * 1000:.1f} ms",
        ]
        for (name, ours, peer, target, limit_ms), note in zip(cases, notes, strict=True):
            mine = _time(ours, runs)
            theirs = _time(peer, runs) if peer is not None else []
            m = statistics.median(mine)
            p = statistics.median(theirs) if theirs else None
            met: bool | None = None  # no target, or no peer to compare with
            if target and p is not None:
                met = m < p and (limit_ms is None or m * 1000 <= limit_ms)
            out.append(
                {
                    "row": name,
                    "ours": _median(mine),
                    "peer": f"ffmpeg CLI {_median(theirs)}" if theirs else "",
                    "ratio": f"{p / m:.1f}× (ffmpeg ÷ ours)" if p else "",
                    "target": target,
                    "met": met,
                    "note": note if p is not None else "ffmpeg not installed: no peer",
                }
            )
    return out


if __name__ == "__main__":
    for row in rows(quick="--quick" in sys.argv):
        print(row)
