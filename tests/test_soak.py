"""Soak: 500 streamed questions with about 10% injected faults; nothing accumulates.

Rate limits, server errors, resets, streams cut after text and malformed frames are
mixed in at fixed seeds (reproducible). Every question must end answered or with a
one-line error, the conversation must hold exactly the answered turns, and at the end
memory (RSS), open file descriptors, threads and connections must be where they were
after a warm-up. Bounded in time: past its budget the soak stops by itself and checks
what it did.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path

import psutil
import pytest

from qaudio_magic import ask_audio
from qaudio_magic.emulator import Emulator
from qaudio_magic.errors import QAudioError
from qaudio_magic.session import Session

from ._leaks import assert_no_leaks, our_threads

QUESTIONS = 500
WARM_UP = 60
BUDGET = 120.0  # seconds; the soak stops early past this
RSS_SLACK = 8_000_000  # bytes allowed to grow after the warm-up (allocator noise)
FD_SLACK = 3
FAULTS = (  # each with its own seed; together about 10% of requests
    "status=429;code=Throttling.RateQuota;retry_after=0.01;rate=0.025;seed=1",
    "status=503;retry_after=0.01;rate=0.025;seed=2",
    "reset=1;rate=0.02;seed=3",
    "cut_after=3;rate=0.02;seed=4",
    "malformed=1;rate=0.01;seed=5",
)


def _rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_soak_500_streamed_questions_with_faults(
    session: Session, emu: Emulator, audio: Path
) -> None:
    session.configure(retries=2)
    clips = [audio / "speech_en.wav", audio / "tone_440hz_3s.wav", audio / "en_mp3_64k.mp3"]
    for fault in FAULTS:
        emu.add_fault(fault)
    conv = session.conversations.current
    started = time.monotonic()
    answered = failed = turns = requests = injected = 0
    errors: dict[str, int] = {}
    baseline: tuple[int, int, set] | None = None
    done = 0
    for i in range(QUESTIONS):
        if time.monotonic() - started > BUDGET:
            break
        if i % 5 == 0:  # a new conversation now and then, so history stays bounded
            conv.clear()
            turns = 0
        source = clips[i % len(clips)] if i % 5 == 0 else None  # then follow-ups
        try:
            answer = ask_audio(source, f"Question {i}", display=False)
        except QAudioError as exc:
            line = str(exc)
            assert "\n" not in line and line, line
            failed += 1
            kind = type(exc).__name__
            errors[kind] = errors.get(kind, 0) + 1
        else:
            assert answer.text.startswith("Emulated answer")
            answered += 1
            turns += 1
        assert len(conv) == turns  # failures never touched the conversation
        done = i + 1
        # the emulator's request log lives in this process too: count it, then empty it,
        # so that what is measured is the client
        log = emu.generation_requests()
        requests += len(log)
        injected += sum(1 for r in log if r.status != 200)
        emu.clear()
        if done == WARM_UP:
            baseline = (_rss(), psutil.Process().num_fds(), our_threads())
    elapsed = time.monotonic() - started
    assert baseline is not None and done >= 200, f"only {done} questions in {elapsed:.0f} s"
    print(
        f"\nsoak: {done} questions in {elapsed:.1f} s, {answered} answered, {failed} failed "
        f"{errors}, {requests} requests, {injected} answered with an error status"
    )
    assert answered > 0.9 * done  # retries absorb most faults
    assert failed > 0 and requests > done  # faults did happen, and were retried
    rss, fds, threads = baseline
    emu.clear_faults()
    assert_no_leaks(session, emu.port, threads)
    grown, fds_now = _rss() - rss, psutil.Process().num_fds()
    print(f"soak: RSS {grown / 1e6:+.1f} MB, fds {fds} -> {fds_now} after the warm-up")
    assert grown < RSS_SLACK, f"RSS grew {grown / 1e6:.1f} MB after the warm-up"
    assert fds_now <= fds + FD_SLACK
