"""Input: hostile files fail fast, or are measured without decoding them whole.

Ten hours of Opus silence fit in a few MB; measuring one used to decode all of it (8 s
of CPU with 60 ms frames, 13 s with 20 ms ones). Now the first 10 minutes are decoded
and the rest of the length comes from the timestamps at the file's end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qaudio_magic import ask_audio
from qaudio_magic.errors import AudioDecodeError
from qaudio_magic.session import Session

from .files import opus_silence


@pytest.fixture(scope="module")
def ten_hours(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    folder = tmp_path_factory.mktemp("hostile-files")
    files = {}
    for name, container in (("ten_hours.opus", "ogg"), ("ten_hours.webm", "webm")):
        files[container] = folder / name
        files[container].write_bytes(opus_silence(10, container))
    yield files


@pytest.mark.parametrize("container", ["ogg", "webm"])
def test_ten_hours_of_opus_are_measured_without_decoding_them(
    session: Session, ten_hours: dict[str, Path], container: str
) -> None:
    path = ten_hours[container]
    assert path.stat().st_size < 10_000_000
    started = time.process_time()
    plan = ask_audio(str(path), "What is this?", dry_run=True, display=False)
    took = time.process_time() - started
    text = str(plan)
    assert "10:00:" in text or "36036" in text or "36,036" in text, text
    assert "read from timestamps" in text  # measured the cheap way: the cause
    assert took < 2.0  # ~0.3 s (decoding the first 10 min, then the 30 s sent); was 8 s


def test_forged_timestamps_cannot_claim_a_month(session: Session, tmp_path: Path) -> None:
    path = tmp_path / "forged.opus"
    path.write_bytes(opus_silence(1, stretch=1000))  # one hour claiming 1000
    with pytest.raises(
        AudioDecodeError,
        match=r"^forged\.opus: 834 h of audio is over the 24 h limit for one source$",
    ):
        ask_audio(str(path), "Q", dry_run=True, display=False)
