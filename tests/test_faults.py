"""The fault matrix: every emulator fault × streamed, non-streamed, follow-up and batch.

Each case ends either answered (after a retry, where the fault is retryable) or with a
one-line error — carrying the service's code and request id when the service answered —
and the conversation is never corrupted: history after a failure equals history before.
No thread and no connection outlives a case (``_leaks.assert_no_leaks``).

Kept fast: one retry, Retry-After values of 50 ms, timeouts of a fraction of a second
set per case with ``%config``, as a user would. What a timeout must not wait for is held
for a minute (``SLOW``), so no load on the machine can make the answer win the race; and a
stream cut by the total timeout starts at once, 20 times sooner than the cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from qaudio_magic.answer import Answer, Answers, Failure
from qaudio_magic.emulator import Emulator
from qaudio_magic.errors import APIError
from qaudio_magic.session import get_session

from ._leaks import assert_no_leaks, our_threads

MODES = ("stream", "no_stream", "follow_up", "batch")
# what the user sees for an error the service sent: status, code, message, request id
API_LINE = re.compile(r"error \d{3} [\w.]+: .+ \(request id [0-9a-f-]{8,}\)")
RID = re.compile(r"\(request id [0-9a-f-]{8,}\)")


@dataclass(frozen=True)
class Case:
    fault: str
    outcome: str  # "answered" | "error"
    match: str = ""  # the error line must match this
    api: bool = False  # the service answered: code and request id in the line
    settings: dict[str, Any] = field(default_factory=dict)
    # modes where the fault behaves otherwise: mode -> (outcome, match, api)
    otherwise: dict[str, tuple[str, str, bool]] = field(default_factory=dict)
    rid_after_text: bool = False  # a broken stream names the answer's request id

    def expected(self, mode: str) -> tuple[str, str, bool]:
        return self.otherwise.get(mode, (self.outcome, self.match, self.api))


SLOW = 60
ANSWERED = "answered"
ERROR = "error"
NOT_STREAMED = ("no_stream",)
CASES = {
    # slow, but within every timeout
    "latency": Case("latency=0.2;times=1", ANSWERED),
    "ttft": Case("ttft=0.2;times=1", ANSWERED),
    "token_rate": Case("token_rate=300;times=1", ANSWERED),
    "slow_upload": Case("slow_upload=0.3;times=1", ANSWERED),
    # retryable once: answered by the retry
    "429_retry_after": Case(
        "status=429;code=Throttling.RateQuota;retry_after=0.05;times=1", ANSWERED
    ),
    "429_no_retry_after": Case("status=429;times=1", ANSWERED),
    "500": Case("status=500;times=1", ANSWERED),
    "503": Case("status=503;retry_after=0.05;times=1", ANSWERED),
    "reset": Case("reset=1;times=1", ANSWERED),
    "error_frame_before_text": Case("error_after=0;status=503;retry_after=0.05;times=1", ANSWERED),
    "malformed": Case("malformed=1;times=1", ANSWERED),
    # retryable, but it keeps happening: the last error, after the retry
    "429_always": Case(
        "status=429;retry_after=0.05", ERROR, r"429 Throttling\.RateQuota: Requests rate", True
    ),
    "503_always": Case("status=503;retry_after=0.05", ERROR, r"503 ModelUnavailable", True),
    "reset_always": Case("reset=1", ERROR, r"closed the connection mid-answer"),
    "malformed_always": Case("malformed=1", ERROR, r"sent a malformed answer \(not JSON\)"),
    # final: never retried
    "quota": Case(
        "status=429;code=Throttling.AllocationQuota;times=1",
        ERROR,
        r"429 Throttling\.AllocationQuota",
        True,
    ),
    "error_frame_mid_stream": Case(
        "error_after=2;status=400;code=DataInspectionFailed;times=1",
        ERROR,
        r"400 DataInspectionFailed",
        True,
    ),
    "sse_body_as_json": Case(
        "sse_as_json=1;status=400;times=1", ERROR, r"400 InvalidParameter", True
    ),
    "sse_body_as_event_stream": Case(
        "sse_error=1;status=400;times=1", ERROR, r"400 InvalidParameter", True
    ),
    # broken after text: kept as partial text, never retried into duplicate words
    "cut_after_text": Case(
        "cut_after=2;times=1",
        ERROR,
        r"closed the connection mid-answer",
        rid_after_text=True,
        # a cut JSON body has shown nothing (a batch asks for whole answers): asked again
        otherwise={"no_stream": (ANSWERED, "", False), "batch": (ANSWERED, "", False)},
    ),
    # timeouts
    "read_timeout": Case(
        f"latency={SLOW}",
        ERROR,
        r"sent nothing for too long \(read timeout\)",
        settings={"timeout": 0.3},
    ),
    "total_timeout_streaming": Case(
        "token_rate=10",  # about 30 events: 3 s
        ERROR,
        r"the answer took longer than 1 s \(total timeout\)",
        settings={"total_timeout": 1.0},
        rid_after_text=True,
        # a JSON answer has no token rate (a batch asks for whole answers)
        otherwise={"no_stream": (ANSWERED, "", False), "batch": (ANSWERED, "", False)},
    ),
    "total_timeout_waiting": Case(
        f"latency={SLOW}",
        ERROR,
        r"the answer took longer than 0\.5 s \(total timeout\)",
        settings={"total_timeout": 0.5, "timeout": 5},
    ),
    "upload_read_timeout": Case(
        f"slow_upload={SLOW}",
        ERROR,
        r"127\.0\.0\.1:\d+ sent nothing for too long \(read timeout\)",
        settings={"timeout": 0.3},
        otherwise={"follow_up": (ANSWERED, "", False)},  # a follow-up uploads nothing
    ),
}


def _ask(ip: Any, mode: str, audio: Path) -> Any:
    clip = str(audio / "speech_en.wav")
    if mode == "stream":
        return ip.run_cell_magic("qaudio", clip, "What is said?")
    if mode == "no_stream":
        return ip.run_cell_magic("qaudio", f"{clip} --no-stream", "What is said?")
    if mode == "follow_up":
        return ip.run_cell_magic("qaudio", "", "And then?")
    other = str(audio / "tone_440hz_3s.wav")
    return ip.run_cell_magic("qaudio", f"{clip} {other} --batch -j 1 --cache off", "What is it?")


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(CASES))
def test_fault_matrix(ip, emu: Emulator, audio: Path, name: str, mode: str) -> None:
    case = CASES[name]
    ip.run_line_magic("config", "QAudioMagic.retries = 1")
    for key, value in case.settings.items():
        ip.run_line_magic("config", f"QAudioMagic.{key} = {value!r}")
    session = get_session()
    if mode == "follow_up":
        ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "First question")
    conv = session.conversations.current
    history = conv.to_dict()
    threads = our_threads()
    emu.add_fault(case.fault)
    outcome, match, api = case.expected(mode)

    with capture_output() as cap:
        try:
            result = _ask(ip, mode, audio)
            error = None
        except UsageError as exc:
            result, error = None, str(exc)

    if mode == "batch":
        assert error is None, error
        assert isinstance(result, Answers) and len(result) == 2
        _check_batch(result, case, outcome, match, api)
        assert conv.to_dict() == history  # a batch never touches the conversations
    elif outcome == ANSWERED:
        assert error is None, f"{name}/{mode} should have been answered: {error}"
        assert isinstance(result, Answer) and result.text.startswith("Emulated answer")
        assert len(conv) == len(history["turns"]) + 1
    else:
        assert error is not None, f"{name}/{mode} should have failed"
        assert "\n" not in error and re.search(match, error), error
        if api:
            assert API_LINE.search(error), f"no code and request id: {error}"
        if case.rid_after_text:
            assert RID.search(error), f"a stream broken after text names its request id: {error}"
        assert conv.to_dict() == history, "a failed turn changed the conversation"
        shown = cap.outputs[-1].data.get("text/plain", "")
        if "Emulated answer" in shown:  # cut after its text began: kept, marked, once
            assert "⚠ Incomplete" in shown and "The conversation was not changed." in shown
            assert shown.count("Emulated answer") == 1  # the partial text, once
        else:  # nothing had arrived: what was drawn is gone, the one line is all
            assert cap.outputs[-1].data == {} and not case.rid_after_text
            assert "Incomplete" not in cap.stdout
    emu.clear_faults()
    assert_no_leaks(session, emu.port, threads)


def _check_batch(result: Answers, case: Case, outcome: str, match: str, api: bool) -> None:
    first, second = result
    if outcome == ANSWERED:
        assert isinstance(first, Answer), first
    else:
        assert isinstance(first, Failure), first
        line = first.error.one_line()
        assert "\n" not in line and re.search(match, line), line
        if api:
            assert isinstance(first.error, APIError) and first.error.request_id
            assert first.error.code and API_LINE.search(line)
    if result.stopped:  # an account-level error stops the batch: the rest is not asked
        assert outcome == ERROR
        assert isinstance(second, Failure) and "not asked" in str(second.error)
    elif "times=1" in case.fault or outcome == ANSWERED:
        assert isinstance(second, Answer), second
    else:  # the fault is on every request: the second clip meets it too
        assert isinstance(second, Failure), second
        assert re.search(match, second.error.one_line())
