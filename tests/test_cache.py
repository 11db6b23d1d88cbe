"""The response cache: what it keys on, re-runs that send nothing, offline replay, no secrets."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from qaudio_magic import Answer, ask_audio
from qaudio_magic.cache import ResponseCache, default_dir, resolve_mode
from qaudio_magic.emulator import Emulator
from qaudio_magic.errors import CacheMissError, InputError
from qaudio_magic.session import Session, Settings, get_session

from ._synth import make_clips
from .conftest import TEST_KEY


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache_home = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_home))
    return cache_home


def entries(session: Session) -> list[str]:
    return sorted(session.response_cache().keys())


def test_default_directory_follows_xdg(_private_cache: Path, session: Session) -> None:
    assert default_dir() == _private_cache / "qaudio_magic"
    assert session.response_cache().directory == _private_cache / "qaudio_magic" / "responses"
    session.configure(cache_dir=str(_private_cache / "elsewhere"))
    assert session.response_cache().directory == _private_cache / "elsewhere" / "responses"


def test_modes() -> None:
    assert resolve_mode("auto", batch=False).active is False
    assert resolve_mode("auto", batch=True).read and resolve_mode("auto", batch=True).write
    assert resolve_mode("refresh", batch=True).read is False
    replay = resolve_mode("replay", batch=False)
    assert replay.replay and replay.read and not replay.write
    with pytest.raises(InputError, match="unknown cache mode 'sometimes'"):
        resolve_mode("sometimes", batch=True)


def test_rerun_sends_nothing_and_deleted_entries_are_resent(
    session: Session, emu: Emulator, tmp_path: Path
) -> None:
    clips = make_clips(tmp_path / "clips", 30)
    first = ask_audio(clips, "Is there a tone?", progress=False)
    assert len(emu.generation_requests()) == 30 and first.cached == 0
    assert len(entries(session)) == 30

    emu.clear()
    again = ask_audio(clips, "Is there a tone?", progress=False)
    assert emu.requests == [], "a re-run reached the service"
    assert again.cached == 30 and again.requests == 0
    assert [a.text for a in again] == [a.text for a in first]
    assert [a.request_id for a in again] == [a.request_id for a in first]
    assert again.to_pandas()["cached"].all()
    assert "30 answered (30 from cache)" in again._repr_mimebundle_()[0]["text/plain"]

    gone = random.Random(6).sample(entries(session), 7)
    store = session.response_cache()
    for key in gone:
        assert store.delete(key)
    emu.clear()
    third = ask_audio(clips, "Is there a tone?", progress=False)
    assert len(emu.generation_requests()) == 7
    assert third.cached == 23 and len(third.answered) == 30
    resent = {a.clips[0].name for a in third if not a.cached}
    assert len(resent) == 7


def test_rerun_after_failures_sends_only_the_unanswered(
    session: Session, emu: Emulator, tmp_path: Path
) -> None:
    clips = make_clips(tmp_path / "clips", 20)
    emu.add_fault("status=400;code=DataInspectionFailed;times=3")
    first = ask_audio(clips, "Q", progress=False)
    assert len(first.failed) == 3
    failed = {f.clips[0].name for f in first.failed}
    emu.clear()
    again = ask_audio(clips, "Q", progress=False)
    assert len(emu.generation_requests()) == 3 and len(again.answered) == 20
    assert {a.clips[0].name for a in again if not a.cached} == failed


def test_single_questions_are_not_cached_unless_asked(
    session: Session, emu: Emulator, audio: Path
) -> None:
    wav = audio / "speech_en.wav"
    ask_audio(wav, "Q", display=False, new=True)
    ask_audio(wav, "Q", display=False, new=True)
    assert len(emu.generation_requests()) == 2 and entries(session) == []
    session.configure(cache="on")
    first = ask_audio(wav, "Q", display=False, new=True)
    second = ask_audio(wav, "Q", display=False, new=True)
    assert len(emu.generation_requests()) == 3
    assert not first.cached and second.cached and second.text == first.text
    assert "(cached)" in second.footer() and second.metadata()["cached"] is True


def test_key_covers_everything_that_decides_the_answer(
    session: Session, emu: Emulator, audio: Path, tmp_path: Path
) -> None:
    session.configure(cache="on")
    wav = audio / "speech_en.wav"

    def ask(source=wav, question="Q", **kw):  # type: ignore[no-untyped-def]
        return ask_audio(source, question, display=False, new=True, **kw).cached

    assert not ask()
    assert ask()
    assert not ask(question="Another question")
    assert not ask(model="qwen-audio-turbo")
    assert not ask(temperature=0.3)
    assert ask(temperature=0.3)
    assert not ask(system="Answer in French.")
    assert not ask(source=audio / "tone_440hz_3s.wav")
    from qaudio_magic import AudioClip

    assert not ask(source=AudioClip.from_source(wav)[1:4])  # another window of the same audio
    copy = tmp_path / "renamed.wav"
    shutil.copy(wav, copy)
    assert ask(source=copy)  # same bytes elsewhere: the same audio
    # history is part of the key: the same follow-up after a different first turn misses
    ask_audio(wav, "First", display=False, new=True)
    ask_audio(None, "Follow-up", display=False)
    ask_audio(wav, "Other first", display=False, new=True)
    assert not ask_audio(None, "Follow-up", display=False).cached
    assert ask_audio(wav, "First", display=False, new=True).cached
    assert ask_audio(None, "Follow-up", display=False).cached


def test_cache_files_hold_no_key_no_audio_no_paths(
    session: Session, emu: Emulator, audio: Path
) -> None:
    ask_audio([audio / "speech_en.wav", audio / "tone_440hz_3s.wav"], "Q", progress=False)
    store = session.response_cache()
    assert len(entries(session)) == 2
    files = [p for p in store.directory.rglob("*") if p.is_file()]  # the database, its WAL
    assert files and all(p.stat().st_mode & 0o077 == 0 for p in files)  # private
    for path in files:
        raw = path.read_bytes()
        assert TEST_KEY.encode() not in raw and b"Bearer" not in raw and b"base64" not in raw
        assert str(audio).encode() not in raw
    with sqlite3.connect(store.path) as db:
        rows = db.execute("SELECT entry FROM answers").fetchall()
    for (raw,) in rows:
        entry = json.loads(raw)
        assert entry["request"]["messages"][0]["content"][0]["audio"]  # a sha256
        assert entry["answer"]["text"].startswith("Emulated answer")


def test_entries_of_the_file_per_answer_layout_are_still_read(
    session: Session, emu: Emulator, audio: Path, tmp_path: Path
) -> None:
    wav = audio / "speech_en.wav"
    first = ask_audio([wav], "Q", progress=False)
    (key,) = entries(session)
    with sqlite3.connect(session.response_cache().path) as db:
        (raw,) = db.execute("SELECT entry FROM answers").fetchone()
    # a cache directory as version 0.1 left it: one JSON file per answer
    session.configure(cache_dir=str(tmp_path / "old-cache"))
    store = session.response_cache()
    legacy = store.directory / key[:2] / f"{key}.json"
    legacy.parent.mkdir(parents=True)
    legacy.write_text(raw)
    emu.clear()
    again = ask_audio([wav], "Q", progress=False)
    assert emu.requests == [] and again.cached == 1 and again[0].text == first[0].text
    assert store.stats()[0] == 1 and list(store.keys()) == [key]
    assert store.delete(key) and not legacy.exists()


def test_a_killed_batch_keeps_every_answer_it_had(emu: Emulator, tmp_path: Path) -> None:
    """Answers are committed as the batch collects them (those that arrived together in
    one transaction), always before the progress bar counts them: a process killed
    (SIGKILL) mid-batch leaves every answer it had counted; the next run asks the rest."""
    clips = make_clips(tmp_path / "clips", 40)
    cache = tmp_path / "killed-cache"
    code = (
        "import sys, os\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})\n"
        "from qaudio_magic import ask_audio\n"
        "from qaudio_magic.session import Session, Settings, set_session\n"
        f"s = Session(Settings(base_url={emu.base_url!r}, cache_dir={str(cache)!r}))\n"
        f"s.set_key({TEST_KEY!r}); set_session(s)\n"
        "def progress(done, total, result):\n"
        "    if done == 25: os.kill(os.getpid(), 9)\n"
        f"ask_audio({[str(c) for c in clips]!r}, 'Q', concurrency=2, progress=progress)\n"
    )
    killed = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    assert killed.returncode == -9
    asked_before = len(emu.generation_requests())
    # 25 answers counted; more were asked while the batch stored the answers it had
    # collected (a commit takes a while on a busy machine) and two were in flight: how many
    # is a matter of timing, what was stored is not
    assert asked_before >= 25
    session = Session(Settings(base_url=emu.base_url, cache_dir=str(cache)))
    session.set_key(TEST_KEY)
    stored = session.response_cache().stats()[0]
    assert 25 <= stored <= asked_before  # all 25 counted answers, before the bar saw them
    emu.clear()
    answers = ask_audio(clips, "Q", session=session, progress=False)
    assert len(answers.answered) == 40 and answers.cached == stored
    # Only the rest was asked: one clip per missing answer, none of the stored ones. A
    # request the killed process had on the wire may reach the emulator's log only now (a
    # busy machine reads it after the kill); it is for a clip whose answer never came.
    asked = [r.audio[0].sha256 for r in emu.generation_requests()]
    assert len(set(asked)) == 40 - stored and len(asked) <= 40 - stored + 2, asked


def test_offline_replay_answers_from_cache_and_names_what_is_missing(
    session: Session, emu: Emulator, tmp_path: Path, monkeypatch
) -> None:
    clips = make_clips(tmp_path / "clips", 6)
    ask_audio(clips[:4], "Q", progress=False)
    emu.clear()
    monkeypatch.delenv("DASHSCOPE_API_KEY")  # replay needs no key
    session.configure(cache="replay")
    answers = ask_audio(clips, "Q", progress=False)
    assert emu.requests == []
    assert len(answers.answered) == 4 and len(answers.failed) == 2
    missing = answers.failed[0].error
    assert isinstance(missing, CacheMissError)
    assert str(missing).startswith(
        'not in the response cache (offline replay): clip_004.wav · 0.4 s · qwen-audio-turbo-latest · "Q" [key '
    )
    with pytest.raises(CacheMissError, match=r"clip_000\.wav .* \"New question\""):
        ask_audio(clips[0], "New question", display=False)
    assert emu.requests == []


def test_refresh_asks_again_and_overwrites(session: Session, emu: Emulator, tmp_path: Path) -> None:
    clips = make_clips(tmp_path / "clips", 3)
    ask_audio(clips, "Q", progress=False)
    emu.reply_with("fresh one", "fresh two", "fresh three")
    refreshed = ask_audio(clips, "Q", progress=False, cache="refresh", concurrency=1)
    assert refreshed.cached == 0 and len(emu.generation_requests()) == 6
    emu.clear()
    after = ask_audio(clips, "Q", progress=False)
    assert emu.requests == [] and [a.text for a in after] == [
        "fresh one",
        "fresh two",
        "fresh three",
    ]


def test_unreadable_entry_counts_as_missing(session: Session, emu: Emulator, audio: Path) -> None:
    ask_audio([audio / "speech_en.wav"], "Q", progress=False)
    store = session.response_cache()
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE answers SET entry = '{ half written'")
    emu.clear()
    answers = ask_audio([audio / "speech_en.wav"], "Q", progress=False)
    assert len(emu.generation_requests()) == 1 and isinstance(answers[0], Answer)


def test_magic_config_and_subcommands(ip, emu: Emulator, audio: Path, _private_cache: Path) -> None:
    wav = audio / "speech_en.wav"
    ip.run_line_magic("config", "QAudioMagic.cache = 'on'")
    ip.run_cell_magic("qaudio", f"{wav} --new", "Q")
    answer = ip.run_cell_magic("qaudio", f"{wav} --new", "Q")
    assert answer.cached and len(emu.generation_requests()) == 1
    assert ip.run_cell_magic("qaudio", f"{wav} --new --cache off", "Q").cached is False
    with capture_output() as cap:
        ip.run_line_magic("qaudio", "cache")
    assert str(_private_cache / "qaudio_magic" / "responses") in cap.stdout
    assert "1 answer," in cap.stdout and "mode 'on'" in cap.stdout
    with capture_output() as cap:
        ip.run_line_magic("qaudio", "usage")
    assert "The response cache answered 1 question, saving" in cap.stdout
    with capture_output() as cap:
        ip.run_line_magic("qaudio", "cache clear")
    assert "Deleted 1 cached answer" in cap.stdout
    ip.run_line_magic("config", "QAudioMagic.cache = 'replay'")
    with pytest.raises(
        UsageError, match=r"^not in the response cache \(offline replay\): speech_en"
    ):
        ip.run_cell_magic("qaudio", f"{wav} --new", "Q")
    ip.run_line_magic("config", "QAudioMagic.cache = 'sometimes'")  # refused by the trait
    assert get_session().settings.cache == "replay"
    with capture_output() as cap:
        ip.run_line_magic("config", "QAudioMagic")
    assert "cache" in cap.stdout and TEST_KEY not in cap.stdout


def test_cache_store_roundtrip(tmp_path: Path) -> None:
    from qaudio_magic.backends.base import Usage

    store = ResponseCache(tmp_path)
    usage = Usage(input_tokens=3, output_tokens=4, audio_tokens=25)
    store.put(
        "ab" * 32,
        {"v": 1},
        text="hello",
        model="m",
        usage=usage,
        request_id="r1",
        finish_reason="stop",
        latency=0.5,
        clips=["x.wav"],
    )
    hit = store.get("ab" * 32)
    assert hit is not None and hit.text == "hello" and hit.usage == usage
    assert store.stats()[0] == 1 and list(store.keys()) == ["ab" * 32]
    assert store.delete("ab" * 32) and store.get("ab" * 32) is None


def _stored_elsewhere(store: ResponseCache) -> set[str]:
    """The keys another connection (another process, say) sees committed in the file."""
    with sqlite3.connect(f"file:{store.path}?mode=ro", uri=True) as other:
        return {row[0] for row in other.execute("SELECT key FROM answers")}


def _put(store: ResponseCache, key: str, text: str) -> None:
    store.put(
        key,
        {"v": 1},
        text=text,
        model="m",
        usage=None,
        request_id=None,
        finish_reason="stop",
        latency=0.1,
        clips=[],
    )


def test_gathered_answers_are_found_at_once_and_committed_together(tmp_path: Path) -> None:
    store = ResponseCache(tmp_path)
    _put(store, "00" * 32, "before")  # outside a batch: committed at once
    assert _stored_elsewhere(store) == {"00" * 32}
    with store.gathered() as flush:
        _put(store, "aa" * 32, "one")
        _put(store, "bb" * 32, "two")
        assert _stored_elsewhere(store) == {"00" * 32}  # waiting for the flush...
        hit = store.get("aa" * 32)  # ...but found all the same
        assert hit is not None and hit.text == "one"
        flush()
        assert _stored_elsewhere(store) == {"00" * 32, "aa" * 32, "bb" * 32}
        _put(store, "cc" * 32, "three")
        assert store.stats()[0] == 4  # counting writes what waits first
        _put(store, "dd" * 32, "four")
    assert _stored_elsewhere(store) == {k * 32 for k in ("00", "aa", "bb", "cc", "dd")}
    assert store.get("dd" * 32).text == "four"  # type: ignore[union-attr]


def test_every_answer_the_bar_counts_is_already_in_the_cache_file(
    session: Session, emu: Emulator, tmp_path: Path
) -> None:
    """A batch writes the answers it collected together, before counting them: what the
    progress bar has counted survives the kernel dying right then."""
    clips = make_clips(tmp_path / "clips", 24)
    store = session.response_cache()
    committed: list[int] = []

    def progress(done: int, total: int, result: object) -> None:
        committed.append(len(_stored_elsewhere(store)) if store.path.exists() else 0)

    answers = ask_audio(clips, "Q", concurrency=4, progress=progress)
    assert len(answers.answered) == 24
    assert all(stored >= done for done, stored in enumerate(committed, start=1)), committed
    assert _stored_elsewhere(store) == set(store.keys()) and len(committed) == 24
