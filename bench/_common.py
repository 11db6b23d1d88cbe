"""Shared pieces of the benchmark modules: statistics, test clips, the emulator, the SDK peer.

Every module measures against the same in-process emulator (``qaudio_magic.emulator``) on
127.0.0.1, so ratios compare clients, not networks. Spreads are interquartile ranges:
on a shared machine min/max mostly measure the neighbours.
"""

from __future__ import annotations

import math
import statistics
import subprocess
import sys
import time
import urllib.parse
import wave
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

AUDIO = ROOT / "notebooks" / "audio"  # small clips shipped with the repo
SPEECH_WAV = AUDIO / "speech_en.wav"  # 5.1 s, 16 kHz mono PCM
SPEECH_MP3 = AUDIO / "en_mp3_64k.mp3"  # the same speech as a 41 KB MP3
MODEL = "qwen-audio-turbo-latest"
KEY = "sk-bench-0000"

__all__ = [
    "AUDIO",
    "KEY",
    "MODEL",
    "ROOT",
    "SPEECH_MP3",
    "SPEECH_WAV",
    "Stats",
    "clip_30s",
    "emulator",
    "emulator_process",
    "fmt_bytes",
    "load_sdk",
    "request_bytes",
    "row",
]


# ---------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class Stats:
    """Median and interquartile range of a sample."""

    median: float
    p25: float
    p75: float
    n: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> Stats:
        xs = sorted(samples)
        if not xs:
            raise ValueError("no samples")
        if len(xs) < 4:
            return cls(statistics.median(xs), xs[0], xs[-1], len(xs))
        q = statistics.quantiles(xs, n=4, method="inclusive")
        return cls(statistics.median(xs), q[0], q[2], len(xs))

    def ms(self, digits: int = 2) -> str:
        """``'8.41 ms (IQR 8.12–8.90, n=200)'``."""
        f = f"{{:.{digits}f}}"
        return (
            f"{f.format(self.median * 1e3)} ms "
            f"(IQR {f.format(self.p25 * 1e3)}–{f.format(self.p75 * 1e3)}, n={self.n})"
        )

    @property
    def se(self) -> float:
        """Standard error of the median, estimated from the IQR (normal approximation)."""
        return 1.2533 * (self.p75 - self.p25) / 1.349 / math.sqrt(self.n)


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def fmt_bytes(n: float) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f} MB"
    if n >= 1e3:
        return f"{n / 1e3:.1f} KB"
    return f"{n:.0f} B"


def row(
    name: str,
    ours: str,
    peer: str = "",
    ratio: str = "",
    target: str = "",
    met: bool | None = None,
    note: str = "",
) -> dict[str, Any]:
    """One results-table row, in the interface every bench module returns."""
    return {
        "row": name,
        "ours": ours,
        "peer": peer,
        "ratio": ratio,
        "target": target,
        "met": met,
        "note": note,
    }


# ---------------------------------------------------------------------- clips
def clip_30s(directory: Path, seconds: float = 30.0) -> Path:
    """A 30 s, 16 kHz mono 16-bit WAV of real speech (the shipped clip, repeated).

    Built with the stdlib so the clip does not depend on the code under test.
    """
    with wave.open(str(SPEECH_WAV), "rb") as src:
        params = src.getparams()
        frames = src.readframes(src.getnframes())
    want = int(seconds * params.framerate) * params.sampwidth * params.nchannels
    data = (frames * (want // len(frames) + 1))[:want]
    path = directory / f"speech_{seconds:g}s.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(params.nchannels)
        out.setsampwidth(params.sampwidth)
        out.setframerate(params.framerate)
        out.writeframes(data)
    return path


# ---------------------------------------------------------------------- emulator
@contextmanager
def emulator(**kwargs: Any) -> Iterator[Any]:
    """The in-process emulator on a free loopback port."""
    from qaudio_magic.emulator import Emulator

    with Emulator(**kwargs) as emu:
        quiet_resets(emu.server)
        yield emu


@contextmanager
def emulator_process(*args: str) -> Iterator[tuple[str, int]]:
    """The emulator in its own process, as a real service would be: its work does not
    compete with the client under test for this interpreter's GIL. Yields its root URL
    (``http://127.0.0.1:PORT``) and process id; ``args`` are command-line flags."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "qaudio_magic.emulator", "--port", "0", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "qaudio emulator on http://127.0.0.1:PORT/api/v1 ..."
        base = line.split(" on ", 1)[1].split()[0]
        yield base.removesuffix("/api/v1"), proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def quiet_resets(server: Any) -> None:
    """Do not print tracebacks for clients that drop idle keep-alive connections.

    The SDK opens a connection per call and lets the old one go; socketserver would print
    a ``ConnectionResetError`` traceback for each, burying the results.
    """
    original = server.handle_error

    def handle_error(request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            original(request, client_address)

    server.handle_error = handle_error


def request_bytes(request: Any) -> int:
    """Bytes of one HTTP request as the emulator received it: request line, headers, body.

    Rebuilt from the emulator's request log, so uploads to any route of the emulator
    count too; header bytes are exact up to the case of names.
    """
    target = request.path
    if request.query:
        target += "?" + urllib.parse.urlencode(request.query, doseq=True)
    line = f"{request.method} {target} HTTP/1.1\r\n"
    headers = sum(len(k) + len(v) + 4 for k, v in request.headers.items()) + 2
    return len(line.encode()) + headers + len(request.body)


# ---------------------------------------------------------------------- the SDK peer
def load_sdk(base_url: str) -> tuple[Any, str]:
    """The official ``dashscope`` SDK pointed at ``base_url``, or (None, why not)."""
    try:
        import dashscope
    except ImportError as exc:
        return None, f"dashscope not installed ({exc})"
    dashscope.base_http_api_url = base_url
    dashscope.api_key = KEY
    return dashscope, ""


def sdk_version() -> str:
    try:
        from importlib.metadata import version

        return version("dashscope")
    except Exception:
        return "?"
