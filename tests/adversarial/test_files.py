"""Input: hostile files fail fast, or are measured without decoding them whole.

Anything that is not a regular file (a FIFO named ``x.wav``, ``/dev/zero``,
``/dev/urandom``) is refused at once, in one line, before it is opened for reading.

Ten hours of Opus silence fit in a few MB; measuring one used to decode all of it (8 s
of CPU with 60 ms frames, 13 s with 20 ms ones). Now the first 10 minutes are decoded
and the rest of the length comes from the timestamps at the file's end.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.error import UsageError

from qaudio_magic import ask_audio
from qaudio_magic.errors import AudioDecodeError, SourceError
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


@pytest.fixture
def not_files(tmp_path: Path) -> dict[str, str]:
    fifo = tmp_path / "x.wav"
    os.mkfifo(fifo)
    return {
        "a FIFO named x.wav": str(fifo),
        "/dev/zero": "/dev/zero",
        "/dev/urandom": "/dev/urandom",
    }


@pytest.mark.parametrize("which", ["a FIFO named x.wav", "/dev/zero", "/dev/urandom"])
def test_what_is_not_a_regular_file_is_refused_at_once(
    ip, not_files: dict[str, str], which: str
) -> None:
    """A FIFO used to hang in open() for ever (Ctrl-C could not stop it); the devices were
    hashed for ever at 100% CPU. Now each is one line, at once (CPU time well under 1 s)."""
    path = not_files[which]
    kind = "a named pipe" if which.startswith("a FIFO") else "a character device"
    expected = f"{path}: is {kind}, not an audio file (only files and URLs are read)"
    started = time.process_time()
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", path, "What is this?")
    assert str(err.value) == expected
    with pytest.raises(SourceError) as caught:
        ask_audio(path, "And from Python?", display=False)
    assert str(caught.value) == expected
    assert time.process_time() - started < 1.0  # nothing was read or hashed


def test_a_fifo_in_a_batch_is_skipped_or_refused_up_front(ip, tmp_path: Path) -> None:
    """A folder lists regular files only, so the FIFO in it is not an item; named in a
    list, it is refused without being opened: its own failed row, as a missing file in a
    list is (the other items are answered)."""
    from ..conftest import AUDIO

    folder = tmp_path / "clips"
    folder.mkdir()
    good = folder / "good.wav"
    good.write_bytes((AUDIO / "speech_en.wav").read_bytes())
    os.mkfifo(folder / "stuck.wav")
    answers = ip.run_cell_magic("qaudio", f"{folder} --batch --cache off", "Q")
    assert len(answers) == 1 and len(answers.answered) == 1
    listed = ask_audio(
        [str(good), str(folder / "stuck.wav")], "Q", display=False, cache="off", progress=False
    )
    assert len(listed.answered) == 1 and isinstance(listed[1].error, SourceError)
    assert "stuck.wav: is a named pipe, not an audio file" in str(listed[1].error)
