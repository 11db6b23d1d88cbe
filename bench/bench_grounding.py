"""Grounding: how well speech is found (precision/recall at 10 ms) and what it costs.

Labelled audio: the shipped words (tests/data/words) placed at known offsets in 30 s of
silence, white noise (10 dB SNR) and brown noise (5 dB SNR), with tone bursts between them
(tests/_labelled.py: six scenes, 3 minutes); plus the corpus's timing clip (shipped in
notebooks/audio). A frame is speech when a detected speech region covers its centre.

Peer: ``webrtcvad`` (``webrtcvad-wheels``, the other detector that ships in its wheel and
needs no system library), at its most aggressive mode, 10 ms frames, with the same
100 ms gap closing; it is installed for the run when missing. Costs are CPU time of this
process (``time.process_time``), the block cache cleared before each run.

    python bench/bench_grounding.py [--quick]
"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from qaudio_magic import _spectrogram, grounding  # noqa: E402
from qaudio_magic.clip import AudioClip  # noqa: E402
from qaudio_magic.segments import find_segments  # noqa: E402
from tests._labelled import RATE, Scene, scenes  # noqa: E402

COST_TARGET = 0.050  # s of CPU to ground a 30 s clip, speech map included
SPECTROGRAM_TARGET = 32 * 1024  # bytes for 30 s
TIMING = ROOT / "notebooks" / "audio" / "words_at_1.5s_and_4.0s.wav"  # the corpus's timing clip


def _webrtc() -> Any:
    if importlib.util.find_spec("webrtcvad") is None:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "webrtcvad-wheels"], check=False
        )
        importlib.invalidate_caches()
    try:
        import webrtcvad

        return webrtcvad
    except ImportError:
        return None


def _peer_frames(webrtcvad: Any, x: np.ndarray) -> np.ndarray:
    vad = webrtcvad.Vad(3)
    pcm = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
    n = len(x) // 160
    on = np.array([vad.is_speech(pcm[i * 320 : (i + 1) * 320], RATE) for i in range(n)])
    runs = grounding._tidy(grounding._runs(on), grounding._SPEECH_GAP, 1)
    out = np.zeros(n, bool)
    for a, b in runs:
        out[a:b] = True
    return out


def _ours_frames(x: np.ndarray) -> np.ndarray:
    smap = grounding.speech_map(x)
    out = np.zeros(len(x) // 160, bool)
    for a, b in smap.speech:
        out[round(a * 100) : round(b * 100)] = True
    return out


def _pr(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    tp = sum(int((d & y).sum()) for d, y in pairs)
    fp = sum(int((d & ~y).sum()) for d, y in pairs)
    fn = sum(int((~d & y).sum()) for d, y in pairs)
    return tp / max(tp + fp, 1), tp / max(tp + fn, 1)


def _labelled() -> list[tuple[str, np.ndarray, np.ndarray]]:
    cases = [(name, s.samples, s.labels()) for name, s in scenes()]
    if TIMING.exists():
        x = AudioClip.from_source(TIMING).decode()
        y = np.zeros(len(x) // 160, bool)
        y[150:185] = y[400:443] = True
        cases.append(("corpus timing clip", x, y))
    return cases


def _cost(path: Path, runs: int) -> tuple[list[float], list[float]]:
    """CPU seconds for the 30 s clip's map (cold cache), and for grounding its segments."""
    answer = "A word at 0:05.2 to 0:05.6, another from 12.1 to 12.5 s, a beep at 20 s."
    maps, grounds = [], []
    for _ in range(runs):
        grounding._BLOCKS.clear()
        clip = AudioClip.from_source(path)
        _ = clip.duration  # the probe is the player's, not grounding's
        t = time.process_time()
        smap = grounding.map_for_clip(clip)
        t1 = time.process_time()
        grounding.ground_segments(find_segments(answer, duration=30.0), smap)
        maps.append(t1 - t)
        grounds.append(time.process_time() - t1)
    return maps, grounds


def _ms(xs: list[float]) -> str:
    q = statistics.quantiles(xs, n=4) if len(xs) >= 4 else [min(xs), 0, max(xs)]
    return (
        f"{statistics.median(xs) * 1e3:.1f} ms (IQR {q[0] * 1e3:.1f}–{q[2] * 1e3:.1f}, n={len(xs)})"
    )


def rows(quick: bool) -> list[dict[str, Any]]:
    import tempfile

    out: list[dict[str, Any]] = []
    webrtcvad = _webrtc()
    cases = _labelled()
    grounding.speech_map(np.zeros(RATE, np.float32))  # load the model outside the timings
    ours = [(_ours_frames(x)[: len(y)], y) for _, x, y in cases]
    peer = [(_peer_frames(webrtcvad, x)[: len(y)], y) for _, x, y in cases] if webrtcvad else []
    p, r = _pr(ours)
    pp, pr = _pr(peer) if peer else (0.0, 0.0)
    seconds = sum(len(x) for _, x, _ in cases) / RATE
    note = f"{len(cases)} clips, {seconds:.0f} s; words in silence / white 10 dB / brown 5 dB"
    out.append(
        {
            "row": "speech detection at 10 ms: precision",
            "ours": f"{p:.3f}",
            "peer": f"{pp:.3f}" if peer else "webrtcvad not installed",
            "target": "> 0.85",
            "met": p > 0.85,
            "note": note,
        }
    )
    out.append(
        {
            "row": "speech detection at 10 ms: recall",
            "ours": f"{r:.3f}",
            "peer": f"{pr:.3f}" if peer else "",
            "target": "> 0.9",
            "met": r > 0.9,
            "note": note,
        }
    )
    for label, pick in (("in silence", "silence"), ("in noise", "dB")):
        sub = [o for o, (n, _, _) in zip(ours, cases, strict=True) if pick in n]
        psub = [o for o, (n, _, _) in zip(peer, cases, strict=True) if pick in n]
        a, b = _pr(sub)
        c, d = _pr(psub) if psub else (0.0, 0.0)
        out.append(
            {
                "row": f"speech detection at 10 ms, words {label}: precision / recall",
                "ours": f"{a:.3f} / {b:.3f}",
                "peer": f"{c:.3f} / {d:.3f}" if psub else "",
                "note": "per background",
            }
        )
    # tones are not speech: what share of tone frames each detector calls speech
    tones = Scene(30.0)
    for i in range(10):
        tones.beep(1.0 + 2.8 * i, 0.8, [440.0, 880.0, 1000.0, 261.6][i % 4])
    labels = tones.labels("sound")
    ours_t = float(_ours_frames(tones.samples)[labels].mean())
    peer_t = float(_peer_frames(webrtcvad, tones.samples)[labels].mean()) if webrtcvad else None
    out.append(
        {
            "row": "tone frames called speech",
            "ours": f"{ours_t:.3f}",
            "peer": "" if peer_t is None else f"{peer_t:.3f}",
            "target": "< 0.05",
            "met": ours_t < 0.05,
            "note": "10 tone bursts of 0.8 s: what tells 'speech' from 'sound'",
        }
    )
    runs = 5 if quick else 20
    with tempfile.TemporaryDirectory() as tmp:
        path = scenes()[2][1].wav(Path(tmp) / "scene30.wav")  # 30 s, words in white noise
        maps, grounds = _cost(path, runs)
        total = [m + g for m, g in zip(maps, grounds, strict=True)]
        x = AudioClip.from_source(path).decode()
        peer_cpu = []
        if webrtcvad:
            for _ in range(runs):
                t = time.process_time()
                _peer_frames(webrtcvad, x)
                peer_cpu.append(time.process_time() - t)
        out.append(
            {
                "row": "grounding a 30 s clip: kernel CPU (speech map + segments)",
                "ours": _ms(total),
                "peer": _ms(peer_cpu) if peer_cpu else "",
                "target": f"< {COST_TARGET * 1e3:.0f} ms",
                "met": statistics.median(total) < COST_TARGET,
                "note": f"of which grounding 3 segments on the cached map: {_ms(grounds)}; "
                "decode included; peer: webrtcvad frames only, no decode",
            }
        )
        t = time.process_time()
        clip = AudioClip.from_source(path)
        levels, top = _spectrogram.spectrogram(clip.decode, 0.0, 30.0)
        data, mime = _spectrogram.encode(_spectrogram.render(levels, top))
        cpu = time.process_time() - t
        out.append(
            {
                "row": "spectrogram image of 30 s",
                "ours": f"{len(data) / 1024:.1f} KB ({mime}, {cpu * 1e3:.0f} ms CPU)",
                "target": f"≤ {SPECTROGRAM_TARGET // 1024} KB",
                "met": len(data) <= SPECTROGRAM_TARGET,
                "note": f"{levels.shape[1]}×{levels.shape[0]} log-frequency, 50 Hz–8 kHz",
            }
        )
    return out


if __name__ == "__main__":
    for r in rows("--quick" in sys.argv):
        print(" | ".join(str(r.get(k, "")) for k in ("row", "ours", "peer", "target", "met")))
