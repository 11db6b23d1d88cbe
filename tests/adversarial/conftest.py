"""Fixtures of the adversarial suite: a hostile server, and a session pointed at it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from qaudio_magic import ask_audio
from qaudio_magic.errors import QAudioError
from qaudio_magic.session import Session, Settings, set_session

from ..conftest import AUDIO, TEST_KEY
from .cases import CHAT, GENERATION
from .server import HostileServer

__all__ = ["CHAT", "CLIP", "GENERATION", "OVERSHOOT", "failing_question"]

CLIP = AUDIO / "speech_en.wav"


OVERSHOOT = 1.0  # the promise: a question ends within total_timeout + 1 s


@pytest.fixture(scope="session", autouse=True)
def _warm() -> None:
    """Decode the clip once, so no case's timing includes importing PyAV and numpy."""
    from qaudio_magic import AudioClip
    from qaudio_magic._prepare import prepare
    from qaudio_magic.models import lookup

    prepare(AudioClip.from_source(CLIP), lookup("qwen-audio-turbo-latest").limits)


@pytest.fixture
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


@pytest.fixture
def make_session(hostile: HostileServer) -> Iterator[Callable[..., Session]]:
    """``make_session(total_timeout=1.5, ...)``: a session on the hostile server, keyed,
    set as the process's session (so ``%%qaudio`` uses it too), closed afterwards."""
    made: list[Session] = []
    old = None

    def make(**settings: Any) -> Session:
        nonlocal old
        defaults: dict[str, Any] = {"base_url": hostile.base_url, "retries": 0, "upload": "never"}
        sess = Session(Settings(**{**defaults, **settings}))
        sess.set_key(TEST_KEY)
        made.append(sess)
        prev = set_session(sess)
        if old is None:
            old = prev
        return sess

    yield make
    for sess in made:
        sess.close()
    if old is not None:
        set_session(old)


def failing_question(session: Session, clip: Path = CLIP, **kwargs: Any) -> tuple[float, str]:
    """Ask as a user would; the question must fail. Returns (seconds it took, its one line)."""
    started = time.monotonic()
    with pytest.raises(QAudioError) as err:
        ask_audio(str(clip), "What is said?", session=session, display=False, **kwargs)
    return time.monotonic() - started, str(err.value)
