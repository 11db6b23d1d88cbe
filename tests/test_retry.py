"""One retry policy: what is retried, how long it waits, and what is never retried."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from qaudio_magic import ask_audio
from qaudio_magic._retry import RetryPolicy
from qaudio_magic.emulator import Emulator
from qaudio_magic.errors import APIError, AudioDecodeError, Interrupted, TransportError
from qaudio_magic.session import Session

FINAL = [
    (401, "InvalidApiKey"),
    (403, "AllocationQuota.FreeTierOnly"),
    (429, "Throttling.AllocationQuota"),
    (400, "DataInspectionFailed"),
    (400, "Arrearage"),
    (400, "InvalidParameter"),
    (400, "BadRequest.EmptyInput"),
]
RETRYABLE = [
    (429, "Throttling"),
    (429, "Throttling.RateQuota"),
    (429, "Throttling.BurstRate"),
    (500, "InternalError"),
    (502, None),
    (503, "ModelUnavailable"),
]


# ---------------------------------------------------------------------- the policy
@pytest.mark.parametrize(("status", "code"), FINAL)
def test_final_codes_are_never_retried(status: int, code: str) -> None:
    error = APIError(status, code, "no")
    assert RetryPolicy().delay(1, error, text_seen=False) is None


@pytest.mark.parametrize(("status", "code"), RETRYABLE)
def test_rate_limits_and_server_faults_are_retried(status: int, code: str | None) -> None:
    policy = RetryPolicy(attempts=4, base=0.5, cap=20)
    error = APIError(status, code, "later")
    for attempt in (1, 2, 3):
        wait = policy.delay(attempt, error, text_seen=False)
        assert wait is not None and 0 <= wait <= 0.5 * 2 ** (attempt - 1)
    assert policy.delay(4, error, text_seen=False) is None  # four tries in all


def test_transport_errors_retry_other_errors_do_not() -> None:
    assert RetryPolicy().delay(1, TransportError("reset"), text_seen=False) is not None
    assert RetryPolicy().delay(1, AudioDecodeError("bad"), text_seen=False) is None
    assert RetryPolicy().delay(1, Interrupted("stop"), text_seen=False) is None


def test_nothing_is_retried_once_text_was_seen() -> None:
    for error in (APIError(503, "ModelUnavailable", "x"), TransportError("cut")):
        assert RetryPolicy().delay(1, error, text_seen=True) is None


def test_retry_after_is_honoured_and_capped() -> None:
    policy = RetryPolicy(max_retry_after=60)
    waits = [
        policy.delay(1, APIError(429, "Throttling", "x", retry_after=2.0), text_seen=False)
        for _ in range(50)
    ]
    assert all(w is not None and 2.0 <= w <= 2.2 for w in waits)  # at least what was asked
    assert len(set(waits)) > 1  # with a little jitter between workers
    assert (
        policy.delay(1, APIError(429, "Throttling", "x", retry_after=3600), text_seen=False) is None
    )


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(attempts=20, base=0.5, cap=3.0)
    error = APIError(503, None, "x")
    assert max(policy.delay(8, error, text_seen=False) or 0 for _ in range(200)) <= 3.0
    early = max(policy.delay(1, error, text_seen=False) or 0 for _ in range(200))
    later = max(policy.delay(3, error, text_seen=False) or 0 for _ in range(200))
    assert early <= 0.5 < later <= 2.0


# ---------------------------------------------------------------------- against the emulator
def test_single_question_waits_out_retry_after(
    session: Session, emu: Emulator, audio: Path
) -> None:
    session.configure(retries=3)
    emu.add_fault("status=429;code=Throttling.RateQuota;retry_after=0.2;times=2")
    started = time.perf_counter()
    answer = ask_audio(audio / "speech_en.wav", "Q", display=False)
    waited = time.perf_counter() - started
    assert answer.text.startswith("Emulated answer")
    assert [r.status for r in emu.generation_requests()] == [429, 429, 200]
    assert waited >= 0.4, "Retry-After was not waited for"


def test_connection_reset_is_retried(session: Session, emu: Emulator, audio: Path) -> None:
    session.configure(retries=2)
    emu.add_fault("reset=1;times=1")
    answer = ask_audio(audio / "speech_en.wav", "Q", display=False)
    assert answer.text.startswith("Emulated answer") and len(emu.generation_requests()) == 2


def test_retries_are_bounded(session: Session, emu: Emulator, audio: Path) -> None:
    session.configure(retries=2)
    emu.add_fault("status=503;retry_after=0.01")
    with pytest.raises(APIError, match="503 ModelUnavailable"):
        ask_audio(audio / "speech_en.wav", "Q", display=False)
    assert len(emu.generation_requests()) == 3


@pytest.mark.parametrize(("status", "code"), FINAL[1:])
def test_final_errors_send_one_request(
    session: Session, emu: Emulator, audio: Path, status: int, code: str
) -> None:
    session.configure(retries=3)
    emu.add_fault(f"status={status};code={code};times=1")
    with pytest.raises(APIError) as err:
        ask_audio(audio / "speech_en.wav", "Q", display=False)
    assert err.value.code == code and len(emu.generation_requests()) == 1


def test_invalid_key_sends_one_request(
    session: Session, emu: Emulator, audio: Path, monkeypatch
) -> None:
    session.configure(retries=3)
    monkeypatch.setenv("DASHSCOPE_API_KEY", "invalid-for-retry-test")
    with pytest.raises(APIError, match="InvalidApiKey"):
        ask_audio(audio / "speech_en.wav", "Q", display=False)
    # the first request (the upload policy, for a local clip) fails, and is not retried
    assert len(emu.requests) == 1 and emu.requests[0].status == 401


def test_stream_cut_after_text_is_not_retried_into_duplicate_text(
    ip, emu: Emulator, audio: Path
) -> None:
    ip.run_line_magic("config", "QAudioMagic.retries = 3")
    emu.add_fault("cut_after=4;times=1")
    with capture_output() as cap, pytest.raises(UsageError, match="closed the connection"):
        ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "Q")
    assert len(emu.generation_requests()) == 1
    shown = cap.outputs[-1].data["text/plain"]
    assert shown.count("Emulated answer from") == 1 and "Incomplete" in shown


def test_throttled_mid_stream_after_text_is_final(
    session: Session, emu: Emulator, audio: Path
) -> None:
    session.configure(retries=3)
    emu.add_fault("error_after=3;status=429;code=Throttling.RateQuota;times=1")
    with pytest.raises(APIError, match=r"Throttling\.RateQuota"):
        ask_audio(audio / "speech_en.wav", "Q", display=False)
    assert len(emu.generation_requests()) == 1


def test_batch_and_single_share_the_policy(session: Session, emu: Emulator, audio: Path) -> None:
    session.configure(retries=1)
    emu.add_fault("status=503;retry_after=0.01;times=4")
    answers = ask_audio(
        [audio / "speech_en.wav", audio / "tone_440hz_3s.wav"],
        "Q",
        concurrency=1,
        progress=False,
        cache="off",
    )
    # retries=1 means two tries per item: both items use both and fail the same way
    assert len(emu.generation_requests()) == 4
    assert [f.attempts for f in answers.failed] == [2, 2]
