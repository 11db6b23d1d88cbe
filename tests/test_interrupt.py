"""Ctrl-C stops a question wherever it is blocked.

A kernel interrupt is simulated as ipykernel does on Windows — ``_thread.interrupt_main()``
from another thread, which wakes no blocked system call — and as a real SIGINT. Either
way: the question stops while the emulator still holds back what it was waiting for (the
emulator's request log says the reply was never completed), its connection is closed
(counted by psutil), the conversation is unchanged, the partial text stays on screen
marked interrupted, and the next question works. How soon Ctrl-C takes effect (about a
tenth of a second) is a speed figure: ``bench/bench_safety.py`` measures it.
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
from qaudio_magic.emulator import Emulator, RecordedRequest
from qaudio_magic.errors import Interrupted
from qaudio_magic.session import get_session

from ._leaks import assert_no_leaks, client_sockets, our_threads

SLOW = 30  # seconds the emulator holds back the answer (or Retry-After, or the upload)
# Not a speed figure: the question would have taken SLOW seconds had Ctrl-C not stopped
# it; a loaded machine takes well under a second (bench/bench_safety.py measures it).
WITHIN = SLOW / 3


def _sigint() -> None:
    os.kill(os.getpid(), signal.SIGINT)


HOW: dict[str, Callable[[], None]] = {"interrupt_main": _thread.interrupt_main, "sigint": _sigint}


class CtrlC:
    """Presses Ctrl-C once ``ready()`` holds: when the question is where the test wants it
    (the emulator holds the request, the partial text is on screen), however long the
    machine took to get there."""

    def __init__(self, how: str, ready: Callable[[], bool]) -> None:
        self.pressed: float | None = None
        self.on_cue = False
        self._how, self._ready = how, ready
        self._thread = threading.Thread(target=self._run, name="test-ctrl-c", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 60
        while not self._ready():
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        else:
            self.on_cue = True
        self.pressed = time.perf_counter()
        HOW[self._how]()  # pressed anyway after a minute, so a broken test ends

    def took(self) -> float:
        """Seconds from the press to now; the press must have come on its cue."""
        self._thread.join()
        assert self.on_cue, "the question never got where Ctrl-C was to be pressed"
        assert self.pressed is not None
        return time.perf_counter() - self.pressed


def _held(requests: Callable[[], list[RecordedRequest]], n: int = 1) -> Callable[[], bool]:
    """Ready when ``n`` such requests reached the emulator (which then holds them)."""
    return lambda: len(requests()) >= n


def _refused(requests: Callable[[], list[RecordedRequest]], n: int = 1) -> Callable[[], bool]:
    """Ready when ``n`` such requests were answered (with an error): the client backs off."""
    return lambda: sum(r.done.is_set() for r in requests()) >= n


def _shown(cap: Any, text: str) -> Callable[[], bool]:
    """Ready when the latest display update holds ``text``."""

    def ready() -> bool:
        outputs = cap.outputs
        return bool(outputs) and text in outputs[-1].data.get("text/plain", "")

    return ready


# where the question is when Ctrl-C comes: (fault, magic line extra, partial text expected)
WHERE = {
    "streaming": ("ttft=0.05;token_rate=1", "", True),
    "waiting_for_first_byte": (f"latency={SLOW}", "", False),
    "not_streamed": (f"latency={SLOW}", "--no-stream", False),
    "uploading": (f"slow_upload={SLOW}", "", False),
    "retry_backoff": (f"status=429;retry_after={SLOW}", "", False),
    "compatible_mode_stream": ("ttft=0.05;token_rate=1", "-m qwen3-omni-flash", True),
}


def _cue(where: str, emu: Emulator, cap: Any, extra: str) -> Callable[[], bool]:
    """When to press Ctrl-C in ``test_ctrl_c_stops_a_question``'s second question."""
    calls = emu.chat_requests if extra.startswith("-m qwen3") else emu.generation_requests
    if WHERE[where][2]:
        return _shown(cap, "Emulated answer")  # partial text on screen
    if where == "uploading":
        return _held(emu.upload_requests, len(emu.upload_requests()) + 1)
    if where == "retry_backoff":  # the 429 came back: the client waits out Retry-After
        return _refused(calls, len(calls()) + 1)
    return _held(calls, len(calls()) + 1)


@pytest.mark.timeout(120)
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
    before = len(emu.requests)
    with capture_output() as cap, pytest.raises(UsageError) as err:
        ctrl_c = CtrlC(how, _cue(where, emu, cap, extra))
        ip.run_cell_magic("qaudio", f"{clip} {extra}", "What is said?")
    took = ctrl_c.took()
    sent = emu.requests[before:]
    assert took < WITHIN, f"Ctrl-C took {took:.2f} s to stop the question"
    if where == "retry_backoff":  # stopped while waiting out Retry-After: no retry was sent
        assert [r.status for r in sent if r.path.endswith("/generation")] == [429]
    else:  # stopped before the emulator let go: what it held back was never completed
        assert sent and not sent[-1].completed, [(r.path, r.completed) for r in sent]
    assert conv.to_dict() == history
    if partial:
        assert str(err.value) == (
            "interrupted: the partial answer is kept on screen; the conversation was not changed"
        )
        shown = cap.outputs[-1].data["text/plain"]
        assert "⏹ Interrupted: partial answer shown; the conversation was not changed." in shown
        assert "Emulated answer" in shown and "What is said?" in shown
    else:  # nothing had arrived: what was drawn is gone, the error's one line is all
        assert str(err.value) == (
            "interrupted before the answer began; the conversation was not changed"
        )
        assert cap.outputs[-1].data == {} and "Interrupted" not in cap.stdout
    emu.clear_faults()
    assert_no_leaks(session, emu.port, threads)
    # the session goes on: the next question gets a fresh connection
    answer = ip.run_cell_magic("qaudio", f"{clip} {extra}", "Again?")
    assert isinstance(answer, Answer) and len(conv) == len(history["turns"]) + 1


def _batch_cue(fault: str, emu: Emulator) -> Callable[[], bool]:
    """When to press Ctrl-C in a batch of 6 at 3 in flight (counting from now: a request
    of an earlier test that reached the emulator late must not set it off)."""
    calls, uploads = len(emu.generation_requests()), len(emu.upload_requests())
    if fault.startswith("latency"):
        return _held(emu.generation_requests, calls + 3)
    if fault.startswith("status"):
        return _refused(emu.generation_requests, calls + 3)
    if fault.startswith("slow_upload"):
        return _held(emu.upload_requests, uploads + 1)
    # a third event sent: the first left two seconds before, so its text reached the table
    return lambda: any(len(r.events_at) >= 3 for r in emu.generation_requests()[calls:])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", list(HOW))
@pytest.mark.parametrize(
    "fault",
    [f"latency={SLOW}", f"status=503;retry_after={SLOW}", f"slow_upload={SLOW}", "token_rate=1"],
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
    ctrl_c = CtrlC(how, _batch_cue(fault, emu))
    streamed = " --stream" if "token_rate" in fault else ""  # tokens over time: a stream
    with capture_output():
        answers = ip.run_cell_magic("qaudio", f"clips -j 3 --cache off{streamed}", "What is it?")
    took = ctrl_c.took()
    assert took < WITHIN, f"Ctrl-C took {took:.2f} s to stop the batch"
    assert not any(r.completed for r in emu.generation_requests() if r.status == 200)
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

    emu.add_fault(f"latency={SLOW}")
    ctrl_c = CtrlC(
        "interrupt_main", _held(emu.generation_requests, len(emu.generation_requests()) + 1)
    )
    with pytest.raises(Interrupted):
        ask_audio(audio / "speech_en.wav", "Q", display=False)
    assert ctrl_c.took() < WITHIN
    assert not emu.generation_requests()[-1].completed  # the emulator still held the answer
    assert len(session.conversations.current) == 0


@pytest.mark.parametrize("how", list(HOW))
def test_ctrl_c_while_the_finished_answer_is_read_leaves_no_turn_behind(
    ip, emu: Emulator, audio: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """Issue 14 (8): the whole answer arrived and its times are being parsed when Ctrl-C
    comes. The turn is recorded only once everything about it is done, so the interrupt
    is reported like any other: one line, the text kept on screen, the conversation as
    it was."""
    import qaudio_magic.turn as turn_mod

    session = get_session()
    ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "An earlier turn")
    conv = session.conversations.current
    history = conv.to_dict()
    parse = turn_mod.find_segments
    pressed = threading.Event()

    def find_segments(*args: Any, **kwargs: Any) -> Any:
        pressed.set()
        HOW[how]()  # Ctrl-C lands while the times are parsed
        for _ in range(1_000_000):  # the interrupt is taken at the next bytecode
            pass
        return parse(*args, **kwargs)

    monkeypatch.setattr(turn_mod, "find_segments", find_segments)
    emu.reply_with("The word is at 1.5 s.")
    with capture_output() as cap, pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", "", "Where is the word?")
    assert pressed.is_set()
    assert str(err.value) == (
        "interrupted while the answer was being read: the answer is kept on screen; "
        "the conversation was not changed"
    )
    assert conv.to_dict() == history
    shown = cap.outputs[-1].data["text/plain"]
    assert "The word is at 1.5 s." in shown
    assert shown.count("⏹ Interrupted") == 1 and "Incomplete" not in shown
    monkeypatch.setattr(turn_mod, "find_segments", parse)
    ip.run_cell_magic("qaudio", "", "Where is the word?")
    assert len(conv) == len(history["turns"]) + 1  # the next question is recorded as usual


@pytest.mark.parametrize("when", ["before", "after"])
def test_ctrl_c_while_the_batch_starts_its_workers(
    ip, emu: Emulator, tmp_path: Path, audio: Path, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """Ctrl-C as the third worker starts (seen under load: the first worker was uploading
    already): before it ran, or once it runs but before ``start()`` returned. Every row is
    still there, no worker is left behind, and no RuntimeError reaches the user."""
    clips = []
    for i in range(6):
        path = tmp_path / f"clip_{i}.wav"
        path.write_bytes((audio / "tone_440hz_3s.wav").read_bytes() + bytes(i))
        clips.append(path)
    ip.user_ns["clips"] = clips
    session, threads = get_session(), our_threads()
    emu.add_fault(f"latency={SLOW}")
    start = threading.Thread.start

    def interrupted_start(thread: threading.Thread) -> None:
        if thread.name == "qaudio-batch-2":
            if when == "after":
                start(thread)
            raise KeyboardInterrupt
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", interrupted_start)
    with capture_output():
        answers = ip.run_cell_magic("qaudio", "clips -j 3 --cache off", "What is it?")
    monkeypatch.undo()
    assert isinstance(answers, Answers) and answers.interrupted and len(answers) == 6
    assert all(isinstance(r, Failure) and isinstance(r.error, Interrupted) for r in answers)
    assert not any(t.name.startswith("qaudio-batch") for t in threading.enumerate())
    emu.clear_faults()
    assert_no_leaks(session, emu.port, threads)
