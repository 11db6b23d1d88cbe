"""Ctrl-C stops a question within about a second, wherever it is blocked.

A kernel interrupt is simulated as ipykernel does on Windows — ``_thread.interrupt_main()``
from another thread, which wakes no blocked system call — and as a real SIGINT. Either
way: the request stops within about a second (the emulator would have gone on for 10 s),
its connection is closed (counted by psutil), the conversation is unchanged, the partial
text stays on screen marked interrupted, and the next question works.
"""

from __future__ import annotations

import _thread
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from qaudio_magic.answer import Answer, Answers, Failure
from qaudio_magic.emulator import Emulator
from qaudio_magic.errors import Interrupted
from qaudio_magic.session import get_session

from ._leaks import assert_no_leaks, client_sockets, our_threads

PRESS_AFTER = 0.6  # seconds into the question
WITHIN = 1.5  # "about a second", with room for a loaded CI machine


def _sigint() -> None:
    os.kill(os.getpid(), signal.SIGINT)


HOW: dict[str, Callable[[], None]] = {"interrupt_main": _thread.interrupt_main, "sigint": _sigint}


def _press_ctrl_c(how: str, after: float = PRESS_AFTER) -> tuple[threading.Timer, list[float]]:
    pressed: list[float] = []

    def press() -> None:
        pressed.append(time.perf_counter())
        HOW[how]()

    timer = threading.Timer(after, press)
    timer.start()
    return timer, pressed


# where the question is when Ctrl-C comes: (fault, magic line extra, partial text expected)
WHERE = {
    "streaming": ("ttft=0.05;token_rate=8", "", True),
    "waiting_for_first_byte": ("latency=10", "", False),
    "not_streamed": ("latency=10", "--no-stream", False),
    "uploading": ("slow_upload=10", "", False),
    "retry_backoff": ("status=429;retry_after=10", "", False),
    "compatible_mode_stream": ("ttft=0.05;token_rate=8", "-m qwen3-omni-flash", True),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", list(HOW))
@pytest.mark.parametrize("where", list(WHERE))
def test_ctrl_c_stops_a_question(ip, emu: Emulator, audio: Path, where: str, how: str) -> None:
    fault, extra, partial = WHERE[where]
    ip.run_line_magic("config", "QAudioMagic.retries = 3")
    session = get_session()
    clip = audio / "speech_en.wav"
    ip.run_cell_magic("qaudio", f"{audio / 'tone_440hz_3s.wav'} {extra}", "An earlier turn")
    conv = session.conversations.current
    history = conv.to_dict()
    threads = our_threads()
    emu.add_fault(fault)
    timer, pressed = _press_ctrl_c(how)
    with capture_output() as cap, pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", f"{clip} {extra}", "What is said?")
    took = time.perf_counter() - pressed[0]
    timer.join()
    assert took < WITHIN, f"Ctrl-C took {took:.2f} s to stop the question"
    assert str(err.value) == (
        "interrupted: the partial answer is kept on screen; the conversation was not changed"
    )
    assert conv.to_dict() == history
    shown = cap.outputs[-1].data["text/plain"]
    assert "⏹ Interrupted: partial answer shown; the conversation was not changed." in shown
    if partial:
        assert "Emulated answer" in shown and "What is said?" in shown
    emu.clear_faults()
    assert_no_leaks(session, emu.port, threads)
    # the session goes on: the next question gets a fresh connection
    answer = ip.run_cell_magic("qaudio", f"{clip} {extra}", "Again?")
    assert isinstance(answer, Answer) and len(conv) == len(history["turns"]) + 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", list(HOW))
@pytest.mark.parametrize(
    "fault", ["latency=10", "status=503;retry_after=10", "slow_upload=10", "ttft=0.05;token_rate=5"]
)
def test_ctrl_c_stops_a_batch(
    ip, emu: Emulator, tmp_path: Path, audio: Path, fault: str, how: str
) -> None:
    ip.run_line_magic("config", "QAudioMagic.retries = 3")
    session = get_session()
    clips = []
    for i in range(6):
        path = tmp_path / f"clip_{i}.wav"
        path.write_bytes((audio / "tone_440hz_3s.wav").read_bytes() + bytes(i))  # distinct sha256
        clips.append(path)
    ip.user_ns["clips"] = clips
    threads = our_threads()
    emu.add_fault(fault)
    timer, pressed = _press_ctrl_c(how)
    with capture_output():
        answers = ip.run_cell_magic("qaudio", "clips -j 3 --cache off", "What is it?")
    took = time.perf_counter() - pressed[0]
    timer.join()
    assert took < WITHIN, f"Ctrl-C took {took:.2f} s to stop the batch"
    assert isinstance(answers, Answers) and answers.interrupted and len(answers) == 6
    assert all(isinstance(r, Failure) and isinstance(r.error, Interrupted) for r in answers)
    table = answers._repr_mimebundle_()[0]["text/plain"]
    assert "interrupted (Ctrl-C)" in table
    if "token_rate" in fault:  # partial text of the answers in flight is kept in the table
        assert any(r.text.startswith("Emulated") for r in answers)
    emu.clear_faults()
    assert_no_leaks(session, emu.port, threads)
    assert not client_sockets(emu.port)  # an interrupted batch drops its connection pool


def test_a_question_that_ends_normally_keeps_its_connection(ip, emu: Emulator, audio: Path) -> None:
    """The Ctrl-C machinery must not cost keep-alive: a finished question aborts nothing."""
    session = get_session()
    ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "One")
    before = {c.laddr.port for c in client_sockets(emu.port)}
    ip.run_cell_magic("qaudio", "", "Two")
    ip.run_cell_magic("qaudio", "--no-stream", "Three")
    assert {c.laddr.port for c in client_sockets(emu.port)} == before and len(before) == 1
    assert len(session.conversations.current) == 3


def test_interrupted_python_call_raises_interrupted(
    session: Any, emu: Emulator, audio: Path
) -> None:
    from qaudio_magic import ask_audio

    emu.add_fault("latency=10")
    timer, pressed = _press_ctrl_c("interrupt_main")
    with pytest.raises(Interrupted):
        ask_audio(audio / "speech_en.wav", "Q", display=False)
    assert time.perf_counter() - pressed[0] < WITHIN
    timer.join()
    assert len(session.conversations.current) == 0
