"""Corpus-sized batches against the emulator: 64 in flight on connections of their own,
sources read lazily, rows without audio, a re-run after Ctrl-C that asks only the rest."""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from qaudio_magic import Answer, ask_audio
from qaudio_magic.answer import Failure
from qaudio_magic.emulator import Emulator
from qaudio_magic.session import Session

from ._synth import make_clips, tone


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def _sockets(port: int) -> set[int]:
    """Local ports of this process's open connections to the emulator."""
    return {
        c.laddr.port
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    }


def test_64_in_flight_each_on_a_connection_of_its_own(
    session: Session, emu: Emulator, tmp_path: Path
) -> None:
    session.configure(upload="never")  # no temporary uploads on the shared pool: only the batch's
    clips = make_clips(tmp_path / "c", 256)
    ask_audio(clips[0], "warm up", display=False)  # the shared pool: one kept-alive connection
    shared = _sockets(emu.port)
    emu.add_fault("latency=0.2")  # each worker has several items to do, one at a time
    peak = [0]

    def progress(done: int, total: int, result: object) -> None:
        if done % 8 == 0:  # a look every 8 answers is enough to catch the peak
            peak[0] = max(peak[0], len(_sockets(emu.port) - shared))

    answers = ask_audio(clips, "Q", concurrency=64, progress=progress, cache="off")
    assert len(answers.answered) == 256
    assert peak[0] == 64  # one connection per worker, kept alive for all of its items
    assert _sockets(emu.port) == shared  # and closed with the batch; the shared pool stays


def _wav(i: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(tone(200 + 3 * i, 0.3).tobytes())
    return buf.getvalue()


def test_a_generator_is_read_as_workers_are_free_and_rows_keep_no_audio(
    session: Session, emu: Emulator
) -> None:
    ahead = [0]  # most items made but not yet sent, seen as each new one is made

    def corpus() -> Iterator[object]:
        for i in range(300):
            ahead[0] = max(ahead[0], i - len(emu.generation_requests()))
            yield _wav(i) if i != 150 else "missing/file.wav"  # one bad item

    answers = ask_audio(corpus(), "Q", concurrency=8)
    assert ahead[0] <= 8 + 1  # never read ahead of the 8 workers (the bad item is never sent)
    assert len(answers) == 300 and len(answers.answered) == 299
    bad = answers[150]
    assert isinstance(bad, Failure) and "missing/file.wav: no such file" in str(bad.error)
    first = answers[0]
    assert isinstance(first, Answer)
    clip = first.clips[0]
    assert clip.payload is None  # the row keeps no audio bytes
    assert clip.duration == pytest.approx(0.3) and len(clip.sha256) == 64  # but its facts
    assert answers.to_pandas().shape[0] == 300


def test_a_rerun_after_ctrl_c_asks_only_what_did_not_finish(
    session: Session, emu: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clips = make_clips(tmp_path / "c", 60)
    emu.add_fault("latency=30")  # after the first 30, answers are held: Ctrl-C comes first
    emu.add_fault("latency=0.001;times=30")

    def stop_at_30(done: int, total: int, result: object) -> None:
        if done == 30:
            raise KeyboardInterrupt

    first = ask_audio(clips, "Q", concurrency=4, progress=stop_at_30)
    assert first.interrupted
    finished = len(first.answered)
    assert finished == 30  # the held ones were broken off, not waited for
    emu.clear_faults()
    emu.clear()
    capsys.readouterr()

    again = ask_audio(clips, "Q", concurrency=4)  # with the default tqdm bar
    assert len(again.answered) == 60 and again.cached == finished
    assert len(emu.generation_requests()) == 60 - finished
    bar = capsys.readouterr().err
    assert f"{finished} of 60 from cache" in bar
    assert f"60 answered ({finished} from cache)" in again.summary()
