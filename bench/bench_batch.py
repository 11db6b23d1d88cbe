"""Batch wall time against the emulator with a fixed latency, and memory for long audio.

Rows: a batch of clips at concurrency 1, 4 (the default) and 16 next to a sequential loop
over the official ``dashscope`` SDK pointed at the same emulator; a cached re-run; and the
peak memory of cutting a long WAV into 30 s windows next to decoding it whole. Target for
a batch: wall ≤ 1.25 × clips × latency ÷ concurrency.

``python bench/bench_batch.py [--quick]`` prints the rows.
"""

from __future__ import annotations

import base64
import json
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from _common import emulator_process  # noqa: E402

MODEL = "qwen-audio-turbo-latest"
QUESTION = "Is there a tone in this clip?"


def _clips(folder: Path, n: int) -> list[Path]:
    rate, seconds = 16_000, 0.4
    t = np.arange(round(rate * seconds)) / rate
    paths = []
    for i in range(n):
        path = folder / f"clip_{i:03d}.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes((0.3 * np.sin(2 * np.pi * (200 + 7 * i) * t) * 32767).astype("<i2"))
        paths.append(path)
    return paths


class _Cpu:
    """CPU time this process and the emulator's spend from now on (all threads, kernel
    time included): with little to spare on a small machine, it decides the fast rows."""

    def __init__(self, emulator_pid: int) -> None:
        self.own = time.process_time()
        try:
            import psutil

            self.emulator: Any = psutil.Process(emulator_pid)
            times = self.emulator.cpu_times()
            self.emu = times.user + times.system
        except Exception:  # psutil missing: the note says so
            self.emulator = None

    def per_item(self, items: int) -> tuple[str, str]:
        own = f"{(time.process_time() - self.own) / items * 1e3:.1f} ms"
        if self.emulator is None:
            return own, "? (no psutil)"
        times = self.emulator.cpu_times()
        return own, f"{(times.user + times.system - self.emu) / items * 1e3:.1f} ms"


def _ours(
    base_url: str, paths: list[Path], concurrency: int, cache: str = "off"
) -> tuple[float, int]:
    """Wall time of one batch, and the requests it sent (retries included)."""
    from qaudio_magic import ask_audio
    from qaudio_magic.session import Session, set_session
    from qaudio_magic.settings import Settings

    session = Session(
        Settings(
            base_url=base_url, concurrency=concurrency, cache_dir=str(paths[0].parent / "cache")
        )
    )
    session.set_key("sk-bench-0000")
    old = set_session(session)
    try:
        started = time.perf_counter()
        answers = ask_audio(paths, QUESTION, progress=False, cache=cache)
        wall = time.perf_counter() - started
    finally:
        session.close()
        set_session(old)
    if len(answers.answered) != len(paths):
        raise RuntimeError(f"batch failed: {answers.failed[:1]}")
    return wall, answers.requests


def _sdk_loop(base_url: str, paths: list[Path]) -> float:
    import dashscope
    from dashscope import MultiModalConversation

    dashscope.base_http_api_url = base_url
    started = time.perf_counter()
    for path in paths:
        audio = "data:;base64," + base64.b64encode(path.read_bytes()).decode()
        response = MultiModalConversation.call(
            model=MODEL,
            messages=[{"role": "user", "content": [{"audio": audio}, {"text": QUESTION}]}],
            api_key="sk-bench-0000",
        )
        if response.status_code != 200:
            raise RuntimeError(f"SDK call failed: {response.code} {response.message}")
    return time.perf_counter() - started


def _spread(samples: list[float]) -> str:
    med = statistics.median(samples)
    if len(samples) == 1:
        return f"{med:.2f} s"
    return f"{med:.2f} s ({min(samples):.2f}–{max(samples):.2f})"


WINDOWS = r"""
import json, resource, sys, time, wave
sys.path.insert(0, {root!r})
def peak_mb():  # VmHWM: this address space's peak (ru_maxrss would carry the parent's over exec)
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
from pathlib import Path
from qaudio_magic import AudioClip, _codec
from qaudio_magic.models import lookup
from qaudio_magic.windows import WindowReader, plan_windows
path = Path({path!r})
clip = AudioClip.from_source(path)
duration = clip.duration
base = peak_mb()
started = time.perf_counter()
if {whole!r}:
    n = len(_codec.decode(path))
else:
    n = sum(1 for _ in WindowReader(clip, plan_windows(duration, 30), lookup("qwen-audio-turbo-latest").limits))
took = time.perf_counter() - started
print(json.dumps({{"mb": peak_mb() - base, "seconds": took, "n": n}}))
"""


def _long_wav(path: Path, seconds: int) -> Path:
    rate = 16_000
    t = np.arange(60 * rate) / rate
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        for minute in range(seconds // 60):
            w.writeframes((0.2 * np.sin(2 * np.pi * (300 + minute) * t) * 32767).astype("<i2"))
    return path


def _windows_memory(path: Path, whole: bool) -> dict[str, float]:
    """Run in a fresh interpreter so the RSS growth is this pass's alone."""
    code = WINDOWS.format(root=str(ROOT), path=str(path), whole=whole)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def rows(quick: bool) -> list[dict[str, Any]]:
    from qaudio_magic.emulator import Emulator

    n, latency, runs = (40, 0.05, 1) if quick else (200, 0.1, 3)
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = _clips(Path(tmp), n)
        with emulator_process("--latency", str(latency)) as (root, pid):
            base_url = root + "/api/v1"
            _ours(base_url, paths[:4], 4)  # warm up imports
            sdk = [_sdk_loop(base_url, paths) for _ in range(runs)]
            sdk_med = statistics.median(sdk)
            for concurrency in (1, 4, 16):
                cpu = _Cpu(pid)
                walls = [_ours(base_url, paths, concurrency)[0] for _ in range(runs)]
                client_ms, emulator_ms = cpu.per_item(runs * n)
                med = statistics.median(walls)
                target = 1.25 * n * latency / concurrency
                out.append(
                    {
                        "row": f"batch of {n} clips, concurrency {concurrency}"
                        + (" (default)" if concurrency == 4 else ""),
                        "ours": _spread(walls),
                        "peer": f"dashscope SDK loop {_spread(sdk)}",
                        "ratio": f"{sdk_med / med:.1f}× faster",
                        "target": f"≤ {target:.2f} s (1.25 × {n} × {latency:g} s ÷ {concurrency})",
                        "met": med <= target,
                        "note": f"emulator (own process) latency {latency:g} s per request; cache off; "
                        f"CPU per clip: client {client_ms}, emulator {emulator_ms} "
                        f"(both processes share the machine's cores)",
                    }
                )
        with Emulator() as local:  # in-process, to count what reaches it
            _ours(local.base_url, paths, 4, cache="on")  # fill the cache
            local.clear()
            rerun = [_ours(local.base_url, paths, 4, cache="on")[0] for _ in range(runs)]
            sent = len(local.generation_requests())
        out.append(
            {
                "row": f"re-run of the same {n}-clip batch (response cache)",
                "ours": f"{_spread(rerun)}, {sent} requests",
                "peer": "",
                "ratio": "",
                "target": "0 requests",
                "met": sent == 0,
                "note": "answers from the on-disk cache; requests counted at the emulator",
            }
        )
        minutes = 10 if quick else 60
        long = _long_wav(Path(tmp) / "long.wav", minutes * 60)
        windowed = _windows_memory(long, whole=False)
        whole = _windows_memory(long, whole=True)
        out.append(
            {
                "row": f"{minutes} min WAV (16 kHz) cut into 30 s windows: peak memory",
                "ours": f"+{windowed['mb']:.0f} MB RSS, {windowed['seconds']:.1f} s, "
                f"{int(windowed['n'])} windows",
                "peer": f"decoding it whole: +{whole['mb']:.0f} MB, {whole['seconds']:.1f} s",
                "ratio": f"{whole['mb'] / max(windowed['mb'], 1):.0f}× less memory",
                "target": "≤ 50 MB whatever the length",
                "met": windowed["mb"] <= 50,
                "note": "peak RSS growth (VmHWM) in a fresh interpreter: one streaming decode + WAV encode per window",
            }
        )
    return out


if __name__ == "__main__":
    for row in rows(quick="--quick" in sys.argv):
        print(json.dumps(row, ensure_ascii=False))
