"""Bad audio: one clear line naming the source and the reason; nothing sent; history unchanged."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from qaudio_magic import ask_audio
from qaudio_magic.emulator import Emulator
from qaudio_magic.errors import AudioDecodeError, QAudioError, SourceError
from qaudio_magic.session import Session

INVALID = "not a readable audio file (Invalid data found when processing input)"
BAD_FILES = [
    ("empty.wav", AudioDecodeError, "empty.wav: the source is empty (0 bytes)"),
    (
        "truncated_1KB.mp3",
        AudioDecodeError,
        "truncated_1KB.mp3: only 0.05 s of audio could be decoded (truncated file?)",
    ),
    ("text_renamed.mp3", AudioDecodeError, f"text_renamed.mp3: {INVALID}"),
    (
        "png_renamed.wav",
        AudioDecodeError,
        "png_renamed.wav: no audio stream in this file (it looks like png_pipe)",
    ),
    ("corrupt_header.wav", AudioDecodeError, f"corrupt_header.wav: {INVALID}"),
    ("garbage_magic.wav", AudioDecodeError, f"garbage_magic.wav: {INVALID}"),
]


@pytest.fixture
def one_turn(session: Session, emu: Emulator, audio: Path) -> int:
    """A conversation with one good turn; returns how many requests that took."""
    ask_audio(audio / "speech_en.wav", "First", display=False)
    return len(emu.requests)


def assert_nothing_happened(session: Session, emu: Emulator, before: int) -> None:
    assert len(emu.requests) == before, [r.path for r in emu.requests[before:]]
    assert len(session.conversations.current) == 1


@pytest.mark.parametrize(("name", "cls", "message"), BAD_FILES)
def test_bad_files(
    session: Session, emu: Emulator, media: Path, one_turn: int, name: str, cls, message: str
) -> None:
    with pytest.raises(QAudioError) as err:
        ask_audio(media / "bad" / name, "Q", display=False)
    assert type(err.value) is cls and str(err.value) == message
    assert_nothing_happened(session, emu, one_turn)
    with pytest.raises(QAudioError) as err:  # the same bytes in memory
        ask_audio((media / "bad" / name).read_bytes(), "Q", display=False)
    assert type(err.value) is cls
    assert str(err.value).split(": ", 1)[1] == message.split(": ", 1)[1]  # same reason
    assert_nothing_happened(session, emu, one_turn)


@pytest.mark.parametrize(("name", "cls", "message"), BAD_FILES[:3])
def test_bad_files_in_the_magic_are_one_line(
    ip, emu: Emulator, media: Path, name: str, cls, message: str
) -> None:
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", str(media / "bad" / name), "Q")
    assert str(err.value) == message and "\n" not in str(err.value)
    assert emu.requests == []


def test_missing_path_and_directory(
    session: Session, emu: Emulator, tmp_path: Path, one_turn: int
) -> None:
    missing = tmp_path / "nope.wav"
    with pytest.raises(SourceError) as err:
        ask_audio(str(missing), "Q", display=False)
    assert str(err.value) == f"{missing}: no such file (looked for {missing})"
    with pytest.raises(SourceError) as err:
        ask_audio(tmp_path, "Q", display=False)
    # a directory is a batch of the audio files in it; this one has none
    assert str(err.value).startswith(f"{tmp_path}: no audio files in this directory (looked for ")
    assert_nothing_happened(session, emu, one_turn)


def test_unreadable_file(session: Session, emu: Emulator, audio: Path, one_turn: int) -> None:
    folder = Path("/tmp") / f"qaudio-unreadable-{os.getpid()}"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o755)
    path = folder / "locked.wav"
    path.write_bytes((audio / "speech_en.wav").read_bytes())
    path.chmod(0o000)
    try:
        if os.geteuid() != 0:
            with pytest.raises(SourceError) as err:
                ask_audio(path, "Q", display=False)
            outcome = {"cls": type(err.value).__name__, "msg": str(err.value), "turns": 1}
        else:
            outcome = _as_nobody(lambda: ask_audio(path, "Q", display=False), session)
    finally:
        path.chmod(0o600)
        path.unlink()
        folder.rmdir()
    assert outcome == {
        "cls": "SourceError",
        "msg": f"{path}: cannot read (permission denied)",
        "turns": 1,
    }
    assert_nothing_happened(session, emu, one_turn)


def _as_nobody(call, session: Session) -> dict:
    """Run ``call`` in a forked child that dropped root (root reads any file); its outcome.

    Everything the call needs is imported already (the child can no longer read root's files).
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            try:
                call()
                outcome = {"cls": None, "msg": "no error", "turns": -1}
            except QAudioError as exc:
                outcome = {
                    "cls": type(exc).__name__,
                    "msg": str(exc),
                    "turns": len(session.conversations.current),
                }
            os.write(write, json.dumps(outcome).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0 and data, "the unprivileged child failed"
    return json.loads(data)


def test_url_that_404s(session: Session, emu: Emulator, file_server, one_turn: int) -> None:
    base, _ = file_server
    with pytest.raises(SourceError) as err:
        ask_audio(f"{base}/missing.wav", "Q", display=False)
    assert str(err.value) == f"{base}/missing.wav: cannot fetch it (HTTP 404 File not found)"
    assert_nothing_happened(session, emu, one_turn)


def test_streaming_header_wav_works_and_half_wav_says_so(ip, emu: Emulator, media: Path) -> None:
    answer = ip.run_cell_magic(
        "qaudio", str(media / "bad/streaming_header_sizes_ffffffff.wav"), "Q"
    )
    assert "1 audio clip (5.11 s)" in answer.text and answer.notes == ()
    with capture_output() as cap:
        answer = ip.run_cell_magic("qaudio", str(media / "bad/truncated_half.wav"), "Q")
    assert "1 audio clip (2.55 s)" in answer.text
    note = (
        "truncated_half.wav: the file looks truncated: its header promises 5.1 s, "
        "only 2.6 s could be decoded"
    )
    assert answer.notes == (note,)
    assert f"note: {note}" in cap.outputs[-1].data["text/plain"]


def test_amr_with_dtx_reaches_the_emulator_with_a_note(ip, emu: Emulator, media: Path) -> None:
    with capture_output() as cap:
        answer = ip.run_cell_magic("qaudio", str(media / "formats/en_amrnb_12k2_dtx_sox.amr"), "Q")
    assert "1 audio clip (5.12 s)" in answer.text
    assert "became silence" in cap.outputs[-1].data["text/plain"]


def test_a_number_alone_is_one_line_saying_what_it_got(ip, emu: Emulator) -> None:
    """`%%qaudio 44100` (a sample rate without its samples) names the value, not a traceback."""
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", "44100", "What is this?")
    assert str(err.value).startswith("cannot use 44100 (an int) as audio (give a path, URL,")
    assert "\n" not in str(err.value) and emu.requests == []
