"""Batches against the emulator over real HTTP: many clips, faults, Ctrl-C, tables, notebook."""

from __future__ import annotations

import _thread
import asyncio
import re
import threading
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from qaudio_magic import Answer, ask_audio
from qaudio_magic.answer import Answers, Failure
from qaudio_magic.emulator import Emulator
from qaudio_magic.errors import Interrupted
from qaudio_magic.session import Session
from qaudio_magic.sources import is_many

from ._synth import make_clips

ROOT = Path(__file__).resolve().parents[1]
SLOW = 30  # seconds the emulator holds an answer that Ctrl-C must not wait for


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches cache by default: keep every test's cache in its own temporary dir."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
def clips(tmp_path: Path) -> list[Path]:
    return make_clips(tmp_path / "clips", 200)


class InFlight:
    """Counts requests in flight inside the backend, to see the concurrency really used."""

    def __init__(self, session: Session) -> None:
        backend = session.backend(session.settings.model)
        original = backend.stream
        self.now = self.peak = 0
        lock = threading.Lock()

        def stream(request):  # type: ignore[no-untyped-def]
            with lock:
                self.now += 1
                self.peak = max(self.peak, self.now)
            try:
                yield from original(request)
            finally:
                with lock:
                    self.now -= 1

        backend.stream = stream  # type: ignore[method-assign]


def test_200_clips_concurrently_with_progress(session: Session, emu: Emulator, clips) -> None:
    emu.add_fault("latency=0.1")
    # the first 16 are held 3 s: all 16 workers are surely in flight together by then
    emu.add_fault("latency=3;times=16")
    session.configure(concurrency=16)
    gauge = InFlight(session)
    seen: list[tuple[int, int]] = []
    answers = ask_audio(
        clips, "Is there a tone?", progress=lambda done, total, r: seen.append((done, total))
    )
    assert isinstance(answers, Answers) and len(answers) == 200
    assert all(isinstance(a, Answer) for a in answers), answers.failed[:3]
    assert len(emu.generation_requests()) == 200
    # each answer belongs to its own clip, in the order given, as a single-turn question
    for path, answer in zip(clips, answers, strict=True):
        assert answer.clips[0].name == path.name
        assert "0 earlier turns and 1 audio clip in all" in answer.text
    # 16 requests in flight at once (how much faster that is: bench/bench_batch.py)
    assert gauge.peak == 16, f"at most {gauge.peak} requests were in flight"
    assert seen == [(i, 200) for i in range(1, 201)]


def test_batch_reuses_the_backends_connections(
    session: Session, emu: Emulator, tmp_path: Path
) -> None:
    paths = make_clips(tmp_path / "c", 24)
    ask_audio(paths[:1], "warm up", progress=False)
    backend = session.backend(session.settings.model)
    pool = backend._client._transport
    answers = ask_audio(paths, "Q", concurrency=4, progress=False)
    assert len(answers.answered) == 24
    assert session.backend(session.settings.model) is backend  # one shared client
    assert 1 <= len(pool.connections) <= 4, "streamed answers did not leave reusable connections"
    assert len(_client_sockets(emu.port)) == len(pool.connections)


def test_default_progress_bar_is_tqdm(
    session: Session, emu: Emulator, tmp_path: Path, capsys
) -> None:
    def monitors() -> set[threading.Thread]:  # another library's tqdm may have started one
        return {t for t in threading.enumerate() if "monitor" in type(t).__name__.lower()}

    paths = make_clips(tmp_path / "few", 5)
    before = monitors()
    ask_audio(paths, "Q")
    err = capsys.readouterr().err
    assert "5/5" in err and "clip" in err
    assert monitors() <= before  # our bar starts no monitor thread
    ask_audio(paths, "Q", display=False)
    assert capsys.readouterr().err == ""


def test_retryable_faults_on_10_percent_all_answered(
    session: Session, emu: Emulator, clips
) -> None:
    session.configure(retries=6, concurrency=8)
    emu.add_fault("status=429;code=Throttling.RateQuota;retry_after=0.05;rate=0.05")
    emu.add_fault("status=503;rate=0.0526")  # of the 95% left: 5% of all requests
    answers = ask_audio(clips, "Q")
    assert len(answers.answered) == 200, [f.error.one_line() for f in answers.failed]
    statuses = [r.status for r in emu.generation_requests()]
    throttled, unavailable = statuses.count(429), statuses.count(503)
    assert throttled > 0 and unavailable > 0
    assert len(statuses) == 200 + throttled + unavailable  # every failure was retried once more
    assert answers.requests == len(statuses)


def test_non_retryable_errors_are_final_and_the_rest_succeed(
    session: Session, emu: Emulator, clips
) -> None:
    session.configure(retries=3, concurrency=8)
    emu.add_fault("status=400;code=DataInspectionFailed;times=4")
    emu.add_fault("status=400;code=InvalidParameter;times=3")
    answers = ask_audio(clips, "Q")
    assert len(emu.generation_requests()) == 200, "a non-retryable error was retried"
    failed = answers.failed
    assert len(failed) == 7 and len(answers.answered) == 193
    codes = sorted(f.error.code for f in failed)
    assert codes == ["DataInspectionFailed"] * 4 + ["InvalidParameter"] * 3
    assert all(f.attempts == 1 for f in failed)
    frame = answers.to_pandas()
    assert frame["error"].notna().sum() == 7
    assert frame.loc[frame["error"].notna(), "answer"].isna().all()


def test_account_level_error_stops_sending(
    session: Session, emu: Emulator, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", "invalid-key-test")
    paths = make_clips(tmp_path / "c", 40)
    answers = ask_audio(paths, "Q", concurrency=2, progress=False)
    assert len(emu.generation_requests()) <= 2, "kept sending with a bad key"
    assert not answers.answered and answers.stopped and "InvalidApiKey" in answers.stopped
    not_asked = [f for f in answers.failed if f.attempts == 0]
    assert len(not_asked) >= 38 and "not asked" in str(not_asked[0].error)
    assert not_asked[-1].clips[0].name == "clip_039.wav"


def _client_sockets(port: int) -> list:
    return [
        c
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status != psutil.CONN_TIME_WAIT
    ]


def _batch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("qaudio-batch")]


def test_ctrl_c_from_progress_keeps_finished_and_stops_in_flight(
    session: Session, emu: Emulator, tmp_path: Path
) -> None:
    paths = make_clips(tmp_path / "c", 40)
    emu.add_fault(f"latency={SLOW}")  # everything after the first 8 would take SLOW s
    emu.add_fault("latency=0.01;times=8")

    def progress(done: int, total: int, result) -> None:
        if done == 8:
            raise KeyboardInterrupt

    started = time.perf_counter()
    answers = ask_audio(paths, "Q", concurrency=4, progress=progress)
    took = time.perf_counter() - started
    assert answers.interrupted
    assert took < SLOW / 3, f"Ctrl-C took {took:.1f} s: in-flight requests were waited for"
    held = [r for r in emu.generation_requests() if r.fault.latency == SLOW]
    assert not any(r.completed for r in held)  # those in flight (if any) were not waited for
    assert len(answers) == 40
    # the 8 that finished are kept (which 8 arrived first is up to the worker threads)
    finished = [a for a in answers if isinstance(a, Answer)]
    rest = [a for a in answers if not isinstance(a, Answer)]
    assert len(finished) == 8 and len(rest) == 32
    assert all(isinstance(f, Failure) and isinstance(f.error, Interrupted) for f in rest)
    assert answers[-1].clips[0].name == "clip_039.wav"  # never started, still named
    assert not _batch_threads()
    assert not _client_sockets(emu.port), "a connection of the batch is still open"
    assert "interrupted" in answers._repr_mimebundle_()[0]["text/plain"]
    # the session works afterwards (a fresh connection pool)
    emu.clear_faults()
    assert isinstance(ask_audio(paths[0], "again?", display=False), Answer)


def test_ctrl_c_signal_while_all_requests_wait(
    session: Session, emu: Emulator, tmp_path: Path
) -> None:
    paths = make_clips(tmp_path / "c", 12)
    emu.add_fault(f"latency={SLOW}")

    pressed: list[float] = []

    before = len(emu.generation_requests())

    def press_once_four_wait() -> None:
        deadline = time.monotonic() + 60
        while len(emu.generation_requests()) < before + 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        pressed.append(time.perf_counter())
        _thread.interrupt_main()

    presser = threading.Thread(target=press_once_four_wait)
    presser.start()
    answers = ask_audio(paths, "Q", concurrency=4, progress=False)
    took = time.perf_counter() - pressed[0]
    presser.join()
    assert answers.interrupted and not answers.answered
    assert took < SLOW / 3, f"Ctrl-C took {took:.1f} s"  # the emulator held each SLOW s
    assert len(emu.generation_requests()) == before + 4  # nothing was started after Ctrl-C
    assert not any(r.completed for r in emu.generation_requests()[before:])
    assert not _batch_threads()
    assert not _client_sockets(emu.port)


def test_stream_broken_after_text_is_a_failure_with_partial_text_not_a_retry(
    session: Session, emu: Emulator, tmp_path: Path
) -> None:
    session.configure(retries=3)
    paths = make_clips(tmp_path / "c", 6)
    emu.add_fault("cut_after=3;times=2")
    answers = ask_audio(paths, "Q", concurrency=1, progress=False, stream=True)
    assert len(emu.generation_requests()) == 6, "a stream that had shown text was retried"
    broken = answers.failed
    assert len(broken) == 2
    assert all(f.text.startswith("Emulated answer from") for f in broken)
    assert all(
        "closed the connection" in str(f.error) or "ended the stream" in str(f.error)
        for f in broken
    )
    # by default a batch asks for whole answers: one cut half-way showed nothing, so it
    # is asked again, and every clip gets its answer
    emu.clear()
    emu.add_fault("cut_after=3;times=2")
    whole = ask_audio(paths, "Q", concurrency=1, progress=False, cache="off")
    assert len(whole.answered) == 6 and len(emu.generation_requests()) == 8
    assert all("x-dashscope-sse" not in r.headers for r in emu.generation_requests())


# ---------------------------------------------------------------------- which sources
def test_dispatch_rule(audio: Path, tmp_path: Path) -> None:
    wav = audio / "speech_en.wav"
    assert is_many([wav]) and is_many(str(audio / "*.wav")) and is_many(audio)
    assert is_many(pd.Series([wav])) and is_many(p for p in [wav])
    assert not is_many(wav) and not is_many(str(wav)) and not is_many((wav, wav))
    assert not is_many("https://example.com/a.wav?sig=*x*") and not is_many(b"RIFF")
    odd = tmp_path / "take[1].wav"
    odd.write_bytes(wav.read_bytes())
    assert not is_many(str(odd))  # an existing file is a file, whatever its name


def test_tuple_or_batch_false_is_one_turn(session: Session, emu: Emulator, audio: Path) -> None:
    two = [audio / "speech_en.wav", audio / "tone_440hz_3s.wav"]
    one = ask_audio(tuple(two), "Compare", display=False)
    assert isinstance(one, Answer) and "2 audio clips" in one.text
    same = ask_audio(two, "Compare", batch=False, display=False)
    assert isinstance(same, Answer) and "2 audio clips" in same.text
    nested = ask_audio([tuple(two), two[0]], "Compare", progress=False)
    assert isinstance(nested, Answers) and len(nested) == 2
    assert "2 audio clips" in nested[0].text and "1 audio clip " in nested[1].text
    batch_of_one = ask_audio(two[0], "Q", batch=True, progress=False)
    assert isinstance(batch_of_one, Answers) and len(batch_of_one) == 1


def test_glob_directory_and_series(session: Session, emu: Emulator, tmp_path: Path) -> None:
    paths = make_clips(tmp_path / "d", 4)
    (tmp_path / "d" / "notes.txt").write_text("not audio")
    by_glob = ask_audio(str(tmp_path / "d" / "*.wav"), "Q", progress=False)
    by_dir = ask_audio(tmp_path / "d", "Q", progress=False)
    assert [a.clips[0].name for a in by_glob] == [p.name for p in paths]
    assert [a.clips[0].name for a in by_dir] == [p.name for p in paths]  # .txt left out
    by_dict = ask_audio({"x": paths[0], "y": paths[1]}, "Q", progress=False).to_pandas()
    assert list(by_dict.index) == ["x", "y"] and by_dict["answer"].notna().all()
    series = pd.Series([str(p) for p in paths], index=["a", "b", "c", "d"])
    frame = ask_audio(series, "Q", progress=False).to_pandas()
    assert list(frame.index) == ["a", "b", "c", "d"]
    assert list(frame.columns[:8]) == [
        "source",
        "window",
        "answer",
        "model",
        "tokens",
        "latency",
        "error",
        "cached",
    ]
    assert frame["source"].tolist() == [str(p) for p in paths]
    assert frame["tokens"].gt(0).all() and frame["answer"].str.startswith("Emulated").all()


def test_bad_sources_fail_before_sending(
    session: Session, emu: Emulator, tmp_path: Path, audio: Path
) -> None:
    from qaudio_magic.errors import InputError, SourceError

    with pytest.raises(SourceError, match="no files match"):  # no files at all
        ask_audio(str(tmp_path / "nothing" / "*.wav"), "Q")
    with pytest.raises(SourceError, match="no files match"):  # the pattern, not --new
        ask_audio(str(tmp_path / "nothing" / "*.wav"), "Q", new=True)
    with pytest.raises(InputError, match="overlap applies to windows"):
        ask_audio(audio / "speech_en.wav", "Q", overlap=5)
    with pytest.raises(InputError, match="concurrency"):
        ask_audio([audio / "speech_en.wav"], "Q", concurrency=99)
    assert emu.requests == []


def test_undecodable_clip_is_one_failed_row(session: Session, emu: Emulator, audio: Path) -> None:
    answers = ask_audio(
        [audio / "speech_en.wav", b"not audio at all", audio / "tone_440hz_3s.wav"],
        "Q",
        progress=False,
    )
    assert [type(a).__name__ for a in answers] == ["Answer", "Failure", "Answer"]
    assert "not a readable audio file" in str(answers[1].error)
    assert len(emu.generation_requests()) == 2


def test_shared_context_conversation_and_system(
    session: Session, emu: Emulator, audio: Path
) -> None:
    ask_audio(audio / "speech_en.wav", "Context question", conversation="ctx", display=False)
    answers = ask_audio(
        [audio / "tone_440hz_3s.wav"] * 2,
        "Q",
        conversation="ctx",
        system="Be brief.",
        cache="off",
        progress=False,
    )
    sent = emu.generation_requests()[-1].json["input"]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[0]["content"] == [{"text": "Be brief."}]
    assert "1 earlier turn" in answers[0].text
    assert len(session.conversations.get("ctx")) == 1  # the context is read, never appended to


def test_works_inside_a_running_event_loop(session: Session, emu: Emulator, audio: Path) -> None:
    async def cell() -> Answers:  # what a notebook cell runs in: a loop is already running
        return ask_audio(
            [audio / "speech_en.wav", audio / "tone_440hz_3s.wav"], "Q", progress=False
        )

    answers = asyncio.run(cell())
    assert len(answers.answered) == 2


# ---------------------------------------------------------------------- the magic and views
def test_magic_glob_cell_shows_table(ip, emu: Emulator, tmp_path: Path) -> None:
    paths = make_clips(tmp_path / "m", 3)
    ip.user_ns["more"] = [str(p) for p in paths]
    ip.run_cell(f"%%qaudio {tmp_path / 'm'}/*.wav -j 2\nIs there a <b>dog</b>?", store_history=True)
    out = ip.user_ns["_"]
    assert isinstance(out, Answers) and len(out) == 3
    shown, _ = out._repr_mimebundle_()
    assert "Batch — 3 clips · 3 answered" in shown["text/plain"]
    assert "clip_002.wav" in shown["text/plain"]
    assert "&lt;b&gt;dog&lt;/b&gt;" in shown["text/html"] and "<b>dog</b>" not in shown["text/html"]
    from_var = ip.run_cell_magic("qaudio", "more", "Q")
    assert isinstance(from_var, Answers) and len(from_var) == 3
    explicit = ip.run_cell_magic("qaudio", f"{paths[0]} {paths[1]} --batch", "Q")
    assert isinstance(explicit, Answers) and len(explicit) == 2
    one_turn = ip.run_cell_magic("qaudio", f"{paths[0]} {paths[1]}", "Q")
    assert isinstance(one_turn, Answer) and "2 audio clips" in one_turn.text


def test_model_output_is_escaped_in_the_table(session: Session, emu: Emulator, audio: Path) -> None:
    emu.reply_with('<img src=x onerror="alert(1)"> **bold**')
    answers = ask_audio([audio / "speech_en.wav"], "Q", progress=False, cache="off")
    data, md = answers._repr_mimebundle_()
    assert "<img" not in data["text/html"] and "&lt;img src=x" in data["text/html"]
    assert md["qaudio"]["items"][0]["request_id"] == answers[0].request_id


def test_usage_meter_counts_reported_usage(ip, emu: Emulator, tmp_path: Path) -> None:
    paths = make_clips(tmp_path / "u", 5)
    answers = ip.run_cell_magic("qaudio", f"{tmp_path / 'u'}/*.wav", "Q")
    reported = sum(a.usage.total_tokens for a in answers)
    with capture_output() as cap:
        ip.run_line_magic("qaudio", "usage")
    table = cap.outputs[0].data["text/plain"]
    row = next(line for line in table.splitlines() if line.startswith("qwen-audio-turbo-latest"))
    cells = row.split()
    assert cells[1] == "5" and float(cells[2]) == pytest.approx(5 * 0.4, abs=0.05)
    assert cells[6] == f"{reported:,}"
    assert f"Spent {reported:,} tokens" in cap.stdout
    assert len(paths) == 5


# ---------------------------------------------------------------------- notebook
def test_batch_notebook_runs_against_the_emulator(tmp_path: Path) -> None:
    text = run_notebook(ROOT / "notebooks" / "batch.ipynb", tmp_path)
    assert re.search(r"Batch — (\d+) clips · \1 answered · ", text)  # the glob cell
    wavs = len(list((ROOT / "notebooks" / "audio").glob("*.wav")))
    assert f"{wavs} answered ({wavs} from cache) · 1 failed" in text  # the re-run
    assert "requests sent this time: 0" in text
    assert "not a readable audio file" in text  # the broken item is a row, not a crash
    assert "CacheMissError: not in the response cache (offline replay): speech_en.wav" in text
    assert "Spent" in text and "saving" in text
    assert "audio kept by the rows: 0" in text  # a generator's rows hold no audio
    assert "DataFrame ['source', 'window', 'answer', 'model'] ..." in text  # Dask, lazy
    assert re.search(rf"{wavs} rows, {wavs} answered", text)  # ... then computed


def run_notebook(path: Path, tmp_path: Path) -> str:
    """Execute ``path`` in a fresh kernel with the built-in emulator; outputs as plain text."""
    from .test_notebooks import execute, kernel_env, texts

    nb = execute(path, kernel_env(XDG_CACHE_HOME=str(tmp_path / "nb-cache")))
    return texts(nb, ("text/plain",))


def test_one_missing_and_one_undecodable_file_are_two_failed_rows(
    ip, emu: Emulator, audio: Path, tmp_path: Path, capsys
) -> None:
    """Issue 14 (4, 5), done when: a batch with one missing and one undecodable file shows
    every row, with its reason, and a notes column; .to_pandas() and the progress bar too."""
    long = audio / "long" / "long_95s_markers_32k.mp3"  # only 0–30 s is sent: a note
    fake = tmp_path / "notes.wav"
    fake.write_text("these are my notes, not audio\n" * 20)  # a .txt renamed .wav
    missing = tmp_path / "typo.wav"
    good = audio / "speech_en.wav"
    ip.run_cell(f"%%qaudio {good} {missing} {fake} {long} --batch\nWhat is said?")
    answers = ip.user_ns["_"]  # shown by the display hook: the table rendered without error
    assert isinstance(answers, Answers) and len(answers) == 4
    assert [type(r).__name__ for r in answers] == ["Answer", "Failure", "Failure", "Answer"]
    assert f"{missing}: no such file" in answers[1].error.one_line()
    assert answers[1].clips == () and answers[1].source == str(missing)
    assert "notes.wav" in answers[2].error.one_line()
    assert len(emu.generation_requests()) == 2  # the good ones were asked
    assert "4/4" in capsys.readouterr().err  # the progress bar counted every item
    data, metadata = answers._repr_mimebundle_()
    lines = data["text/plain"].splitlines()
    assert lines[0].startswith("Batch — 4 clips · 2 answered · 2 failed")
    assert lines[2].split()[-1] == "notes"
    assert "typo.wav" in lines[4] and "no such file" in lines[4]
    assert "notes.wav" in lines[5] and "⚠" in lines[5]
    assert "only 30 s (0–30 s) is sent" in lines[6]
    assert [i["error"] is not None for i in metadata["qaudio"]["items"]] == [0, 1, 1, 0]
    frame = answers.to_pandas()
    assert frame["source"].tolist() == [str(good), str(missing), str(fake), str(long)]
    assert frame["error"].notna().tolist() == [False, True, True, False]
    assert frame["notes"].notna().tolist() == [False, False, False, True]
    # a pattern that matches nothing among other sources is one row too
    more = ask_audio([good, str(tmp_path / "none" / "*.wav")], "Q", progress=False)
    assert isinstance(more[1], Failure) and "no files match this pattern" in str(more[1].error)
    assert more.to_pandas()["source"][1] == str(tmp_path / "none" / "*.wav")
    lazy = ask_audio((p for p in [good, missing]), "Q", progress=False)  # read as it goes
    assert isinstance(lazy[1], Failure) and lazy.to_pandas()["source"][1] == str(missing)


def test_windows_of_a_missing_file_are_a_failed_row(
    session: Session, emu: Emulator, audio: Path, tmp_path: Path
) -> None:
    answers = ask_audio(
        [audio / "tone_440hz_3s.wav", tmp_path / "gone.wav"], "Q", windows=1.5, progress=False
    )
    assert [type(r).__name__ for r in answers] == ["Answer", "Answer", "Failure"]
    assert "gone.wav: no such file" in str(answers[2].error)
    assert "gone.wav" in answers._repr_mimebundle_()[0]["text/plain"].splitlines()[-1]


def test_a_batch_without_a_key_is_one_line_before_anything(
    ip, emu: Emulator, audio: Path, monkeypatch, capsys
) -> None:
    """No key and no cache to answer from: every item is impossible, so the batch is one
    line before any progress bar. With the cache on, what it holds is still answered."""
    speech, tone = audio / "speech_en.wav", audio / "tone_440hz_3s.wav"
    ip.run_cell_magic("qaudio", f"{speech} --batch", "Q")  # now in the response cache
    capsys.readouterr()
    emu.clear()
    monkeypatch.delenv("DASHSCOPE_API_KEY")
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", f"{speech} {tone} --batch --cache off", "Q")
    assert str(err.value).startswith("no DashScope API key — set DASHSCOPE_API_KEY")
    assert capsys.readouterr().err == ""  # no progress bar was drawn
    answers = ip.run_cell_magic("qaudio", f"{speech} {tone} --batch", "Q")
    assert answers[0].cached and isinstance(answers[1], Failure)
    assert "no DashScope API key" in str(answers[1].error)
    assert emu.requests == []
