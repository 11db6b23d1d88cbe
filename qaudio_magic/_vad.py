"""Silero VAD (v6, "sequence" ONNX export) on CPU through onnxruntime: speech probabilities.

Why this detector (figures in the README, rows in ``bench/``): of the candidates that ship
inside their wheel and run without torch it is the only one that never called a tone,
music or noise "speech" on the labelled set, which is what tells ``"speech"`` from
``"sound"``; and the sequence export runs a whole block of 32 ms frames in one ONNX call,
bit-exact with the streaming model, at about 1 ms of CPU per second of audio.

The 1.2 MB model file comes from the ``silero-vad`` 6.2.3 wheel (MIT, see
``_data/LICENSE.silero``); onnxruntime is imported on first use, never at ``%load_ext``.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FRAME", "RATE", "speech_probs"]

RATE = 16_000
FRAME = 512  # samples per probability (32 ms)
_CONTEXT = 64  # samples of the previous frame the model sees before each frame
_BLOCK = 512  # frames per ONNX call (16 s): bounded memory, few Python round trips
_MODEL = Path(__file__).parent / "_data" / "silero_vad_16k_sequence.onnx"

_lock = threading.Lock()
_session: Any = None


def _load() -> Any:
    """One ONNX session per process, single-threaded: the kernel's CPUs belong to the user."""
    global _session
    if _session is None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        _session = ort.InferenceSession(
            str(_MODEL), sess_options=options, providers=["CPUExecutionProvider"]
        )
    return _session


def speech_probs(samples: np.ndarray) -> np.ndarray:
    """Speech probability of each 32 ms frame of 16 kHz mono ``samples`` (last one padded)."""
    x = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
    n = -(-len(x) // FRAME)
    if n == 0:
        return np.zeros(0, np.float32)
    frames = np.zeros((n, FRAME), np.float32)
    frames.reshape(-1)[: len(x)] = x
    context = np.zeros((n, _CONTEXT), np.float32)
    context[1:] = frames[:-1, -_CONTEXT:]
    batch = np.concatenate([context, frames], axis=1)
    out: list[np.ndarray] = []
    with _lock:  # one session, one recurrent state at a time
        session = _load()
        h = np.zeros((1, 1, 128), np.float32)
        c = np.zeros((1, 1, 128), np.float32)
        for first in range(0, n, _BLOCK):
            probs, h, c = session.run(
                ["speech_probs", "hn", "cn"],
                {"input": batch[first : first + _BLOCK], "h": h, "c": c},
            )
            out.append(np.asarray(probs, np.float32).reshape(-1))
    return np.concatenate(out)
