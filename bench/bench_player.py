"""The waveform player on a 30-minute clip: peaks time, peak memory, bytes on the wire.

Each measurement runs in a fresh interpreter (Linux): the high-water mark of resident
memory is reset after imports and warm-up (``/proc/self/clear_refs``), so ``VmHWM`` minus
``VmRSS`` before the call is the memory the call itself needed. Clips are made once per machine in
the temp directory: 30 minutes of the shipped English speech, tiled, as 16 kHz mono WAV
(57.6 MB) and as MP3 (48 kb/s, MP3 frames of a 60 s encode concatenated: 10.8 MB).

The peer is what a notebook does without a streaming envelope: decode the whole clip to
one array (``_codec.decode``, 16 kHz mono float32), then take min/max per column.

    python bench/bench_player.py [--quick]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MINUTES = 30
TIME_TARGET = 10.0  # seconds for the peaks of a 30-minute clip
MEMORY_TARGET = 64.0  # MB added while computing them
WIRE_TARGET = 8_192  # bytes of peaks sent to the browser

PROBE = r"""
import json, sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
import numpy as np
from qaudio_magic import _codec, player
from qaudio_magic.clip import AudioClip
path = Path({path!r})
def status_mb(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(field)) / 1024
# warm the decoder on a tiny file so library loading is not counted
list(_codec.iter_pcm(Path({warm!r})))
try:  # reset the high-water mark, so the peak below is this call's alone
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
before = status_mb("VmRSS:")
t = time.perf_counter()
if {what!r} == "peaks":
    peaks, seconds, _, _ = player._clip_peaks(AudioClip.from_source(path))
    wire = len(peaks)
elif {what!r} == "player":
    p = player.Player(path)
    peaks, seconds, wire = p.peaks, p.duration, len(p.peaks) + len(bytes(p.audio.value))
else:  # the peer: one array, then min/max per column
    pcm = _codec.decode(path)
    cols = np.array_split(pcm, player.BINS)
    peaks = np.array([[c.min(), c.max()] for c in cols], dtype=np.float32).tobytes()
    seconds, wire = len(pcm) / _codec.TARGET_RATE, len(peaks)
dt = time.perf_counter() - t
peak = status_mb("VmHWM:")
print(json.dumps({{"seconds": dt, "mb": max(peak - before, 0.0), "audio_s": seconds, "wire": wire}}))
"""


def _clips() -> dict[str, Path]:
    """30-minute WAV and MP3 (made once, kept in the temp directory)."""
    import numpy as np

    from qaudio_magic import _codec

    home = Path(tempfile.gettempdir()) / "qaudio_bench_player"
    home.mkdir(exist_ok=True)
    wav, mp3 = home / f"speech_{MINUTES}min.wav", home / f"speech_{MINUTES}min.mp3"
    speech = _codec.decode(ROOT / "notebooks" / "audio" / "speech_en.wav")
    rate = _codec.TARGET_RATE
    if not wav.exists():
        n = MINUTES * 60 * rate
        wav.write_bytes(_codec.encode(np.resize(speech, n), rate, "wav"))
    if not mp3.exists():
        minute = _codec.encode(np.resize(speech, 60 * rate), rate, "mp3")
        mp3.write_bytes(minute * MINUTES)
    return {"WAV 16 kHz mono": wav, "MP3 48 kb/s": mp3}


def _run(what: str, path: Path) -> dict[str, Any]:
    code = PROBE.format(
        root=str(ROOT),
        path=str(path),
        what=what,
        warm=str(ROOT / "notebooks" / "audio" / "tone_440hz_3s.wav"),
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _spread(xs: list[float], unit: str, fmt: str = "{:.2f}") -> str:
    med = statistics.median(xs)
    if len(xs) == 1:
        return f"{fmt.format(med)} {unit} (n=1)"
    return f"{fmt.format(med)} {unit} ({fmt.format(min(xs))}–{fmt.format(max(xs))}, n={len(xs)})"


def rows(quick: bool) -> list[dict[str, Any]]:
    runs = 1 if quick else 5
    out: list[dict[str, Any]] = []
    for kind, path in _clips().items():
        size = f"{path.stat().st_size / 1e6:.1f} MB"
        ours = [_run("peaks", path) for _ in range(runs)]
        peer = [_run("peer", path) for _ in range(runs)]
        t_ours, t_peer = [r["seconds"] for r in ours], [r["seconds"] for r in peer]
        m_ours, m_peer = [r["mb"] for r in ours], [r["mb"] for r in peer]
        audio_min = ours[0]["audio_s"] / 60
        name = f"player peaks, {audio_min:.0f}-min {kind} ({size})"
        out.append(
            {
                "row": f"{name}: time",
                "ours": _spread(t_ours, "s"),
                "peer": _spread(t_peer, "s"),
                "ratio": f"{statistics.median(t_ours) / statistics.median(t_peer):.2f}×",
                "target": f"< {TIME_TARGET:g} s",
                "met": statistics.median(t_ours) < TIME_TARGET,
                "note": "one streaming decode at the native rate; peer: decode to one array, then min/max",
            }
        )
        out.append(
            {
                "row": f"{name}: peak memory added",
                "ours": _spread(m_ours, "MB", "{:.0f}"),
                "peer": _spread(m_peer, "MB", "{:.0f}"),
                "ratio": f"{statistics.median(m_ours) / max(statistics.median(m_peer), 1e-9):.2f}×",
                "target": f"< {MEMORY_TARGET:g} MB",
                "met": statistics.median(m_ours) < MEMORY_TARGET,
                "note": "VmHWM minus VmRSS before, fresh interpreter; the envelope is O(bins)",
            }
        )
        wire = ours[0]["wire"]
        out.append(
            {
                "row": f"{name}: peaks sent to the browser",
                "ours": f"{wire:,} bytes",
                "peer": f"{int(ours[0]['audio_s'] * 16_000 * 2):,} bytes of 16 kHz samples",
                "ratio": "",
                "target": f"≤ {WIRE_TARGET:,} bytes",
                "met": wire <= WIRE_TARGET,
                "note": "2000 int8 (min, max) pairs; the audio itself goes once, as its own model",
            }
        )
    mp3 = _clips()["MP3 48 kb/s"]
    ready = [_run("player", mp3) for _ in range(runs)]
    out.append(
        {
            "row": f"Player(...) ready, {MINUTES}-min MP3 (peaks + audio bytes for the browser)",
            "ours": _spread([r["seconds"] for r in ready], "s"),
            "peer": "",
            "ratio": "",
            "target": f"< {TIME_TARGET:g} s",
            "met": statistics.median(r["seconds"] for r in ready) < TIME_TARGET,
            "note": f"the MP3 is sent as it is ({ready[0]['wire'] / 1e6:.1f} MB, once per clip)",
        }
    )
    return out


if __name__ == "__main__":
    for r in rows(quick="--quick" in sys.argv):
        print(json.dumps(r, ensure_ascii=False))
