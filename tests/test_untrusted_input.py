"""Untrusted input beyond bad files: absurd sizes, absurd counts, hostile redirects, odd names.

(Bad files — empty, truncated, renamed, corrupt, unreadable, 404 — are in
``test_bad_inputs.py``.) Each case fails fast with one line naming the source and the
reason, sends nothing and leaves the conversation as it was — or, where the input is
fine, simply works.
"""

from __future__ import annotations

import os
import shutil
import time
import tracemalloc
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError

from qaudio_magic import _codec, ask_audio
from qaudio_magic.answer import Answer, Answers, Failure
from qaudio_magic.clip import MAX_SOURCE_BYTES
from qaudio_magic.emulator import Emulator
from qaudio_magic.errors import AudioTooLargeError, InputError, SourceError
from qaudio_magic.session import Session, get_session

from .conftest import FolderServer, serve_folders

QUICK = 2.0  # seconds: "refused from its size", not after reading it


# ---------------------------------------------------------------------- absurd sizes
@pytest.fixture
def huge(tmp_path: Path) -> Path:
    """A 2 GB sparse file: it takes no disk, but reading it would take 2 GB of memory."""
    path = tmp_path / "huge.wav"
    path.write_bytes(b"RIFF")
    os.truncate(path, 2 * 1024**3)
    assert path.stat().st_size > MAX_SOURCE_BYTES
    return path


def test_a_2gb_file_is_refused_from_its_size(session: Session, emu: Emulator, huge: Path) -> None:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(AudioTooLargeError) as err:
            ask_audio(huge, "Q", display=False)
        took = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(err.value) == f"{huge}: 2.1 GB is over the 1.1 GB limit for one source"
    assert took < QUICK and peak < 5_000_000, f"{took:.2f} s, {peak / 1e6:.1f} MB"
    assert emu.requests == [] and len(session.conversations.current) == 0
    # the same through file://, and as one item of a batch (the others are answered)
    with pytest.raises(AudioTooLargeError):
        ask_audio(huge.as_uri(), "Q", display=False)
    good = huge.parent / "good.wav"
    shutil.copy(Path(__file__).parents[1] / "notebooks" / "audio" / "tone_440hz_3s.wav", good)
    answers = ask_audio([good, huge], "Q", progress=False)  # one failed row, not a lost batch
    assert isinstance(answers[1].error, AudioTooLargeError) and answers[0].text
    assert len(emu.generation_requests()) == 1  # the good one only


def test_a_2gb_file_in_the_magic_is_one_line(ip, emu: Emulator, huge: Path) -> None:
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", str(huge), "Q")
    assert str(err.value) == f"{huge}: 2.1 GB is over the 1.1 GB limit for one source"
    assert emu.requests == []


# ---------------------------------------------------------------------- absurd counts
def test_a_thousand_sources_in_one_cell_are_refused_before_decoding(
    ip, emu: Emulator, audio: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thousand clips cannot fit one question (each costs at least 25 of 6,144 input
    tokens): refused from the count, before any file is decoded or anything is sent.

    (IPython itself first expands ``$var``/``{expr}`` in the magic line, in time that
    grows with the square of its length: about 4 s for these 30 KB, before our code runs.
    The README points to a glob, a directory or a list variable for many files.)"""
    clips = tuple([audio / "speech_en.wav"] * 1000)
    decoded: list[str] = []

    def counted(name: str) -> Callable[..., Any]:
        real = getattr(_codec, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            decoded.append(name)
            return real(*args, **kwargs)

        return call

    for name in ("probe", "decode"):
        monkeypatch.setattr(_codec, name, counted(name))
    with pytest.raises(InputError, match=r"^1000 clips in one question"):
        ask_audio(clips, "Which of these?", display=False)
    assert decoded == []  # refused from the count alone
    line = " ".join(str(c) for c in clips[:300])  # in a cell, as one line (shorter: see above)
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", line, "Which of these?")
    assert str(err.value) == (
        "300 clips in one question: qwen-audio-turbo-latest takes at most 245 (each clip "
        "costs at least 25 of its 6144 input tokens) — to ask about each clip separately, "
        "add --batch (ask_audio([...]) in Python)"
    )
    assert emu.requests == [] and len(get_session().conversations.current) == 0
    # many missing files: the first one is named, at once
    missing = " ".join(f"nope_{i}.wav" for i in range(300))
    with pytest.raises(UsageError, match=r"^nope_0\.wav: no such file"):
        ip.run_cell_magic("qaudio", missing, "Q")


def test_a_thousand_sources_as_a_batch_are_answered(ip, emu: Emulator, audio: Path) -> None:
    """As a batch the same thousand are a thousand questions: sent a few at a time, and
    here — the same clip each time — mostly answered from the response cache."""
    ip.user_ns["clips"] = [audio / "tone_440hz_3s.wav"] * 1000  # a list variable: a batch
    answers = ip.run_cell_magic("qaudio", "clips -j 4", "What is it?")
    assert isinstance(answers, Answers) and len(answers) == 1000
    assert len(answers.answered) == 1000
    assert len(emu.generation_requests()) + answers.cached == 1000
    assert answers.cached > 900


# ---------------------------------------------------------------------- hostile redirects
@pytest.fixture
def redirects(audio: Path) -> Iterator[tuple[str, str, FolderServer]]:
    """(base URL, the other host's base URL, the first server): two loopback servers, one
    named localhost; ``/r/NAME`` redirects as below."""
    with serve_folders(audio, "127.0.0.1", "localhost") as (first, other):
        first.routes.update(
            {
                "/r/file.wav": "file:///etc/passwd",
                "/r/ftp.wav": "ftp://127.0.0.1/speech_en.wav",
                "/r/data.wav": "data:;base64,UklGRg==",
                "/r/js.wav": "javascript:alert(1)",
                "/r/loop.wav": "/r/loop.wav",
                "/r/hop.wav": "/r/hop2.wav",
                "/r/hop2.wav": f"{other.url}/speech_en.wav",  # another host, after a relative hop
            }
        )
        yield first.url, other.url, first


@pytest.mark.parametrize("window", ["", "--start 0 --end 2"], ids=["checked", "downloaded"])
@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("file", "file:///etc/passwd"),
        ("ftp", "ftp://127.0.0.1/speech_en.wav"),
        ("data", "data:;base64,UklGRg=="),
        ("js", "javascript:alert(1)"),
    ],
)
def test_redirects_to_other_schemes_are_refused(
    ip, emu: Emulator, redirects: tuple[str, str, FolderServer], name: str, target: str, window: str
) -> None:
    base, _, _ = redirects
    url = f"{base}/r/{name}.wav"
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", f"{url} {window}", "Q")
    assert str(err.value) == (
        f"{url}: redirects to {target}, refused: only http(s) redirects are followed"
    )
    assert emu.requests == [] and len(get_session().conversations.current) == 0


@pytest.mark.parametrize("window", ["", "--start 0 --end 2"], ids=["checked", "downloaded"])
def test_redirect_loops_end(
    ip, emu: Emulator, redirects: tuple[str, str, FolderServer], window: str
) -> None:
    base, _, _ = redirects
    with pytest.raises(UsageError, match=r"/r/loop\.wav: more than 5 redirects$"):
        ip.run_cell_magic("qaudio", f"{base}/r/loop.wav {window}", "Q")
    assert emu.requests == []


def test_a_redirect_to_another_host_is_followed_without_credentials(
    ip, emu: Emulator, redirects: tuple[str, str, FolderServer]
) -> None:
    base, other, server = redirects
    url = f"{base}/r/hop.wav"
    answer = ip.run_cell_magic("qaudio", url, "Checked through two hops")
    assert isinstance(answer, Answer)
    # the service is given the URL the user gave; the kernel only checked it
    assert emu.generation_requests()[-1].json["input"]["messages"][-1]["content"][0] == {
        "audio": url
    }
    window = ip.run_cell_magic("qaudio", f"{url} --start 0 --end 2", "Downloaded, a window")
    assert "1 audio clip (2.00 s)" in window.text
    hosts = [(m, h.get("Host", "")) for m, _, h in server.seen]
    assert ("HEAD", other.removeprefix("http://")) in hosts
    assert ("GET", other.removeprefix("http://")) in hosts
    for _, _, headers in server.seen:
        assert not {"Authorization", "Cookie"} & set(headers), headers


# ---------------------------------------------------------------------- odd names
ODD = "my clip+1 é 中文 (take #2).wav"


@pytest.fixture
def odd(tmp_path: Path, audio: Path) -> Path:
    path = tmp_path / "odd dir+é" / ODD
    path.parent.mkdir()
    shutil.copy(audio / "speech_en.wav", path)
    return path


def test_odd_names_through_the_magic_with_quotes(ip, emu: Emulator, odd: Path) -> None:
    answer = ip.run_cell_magic("qaudio", f'"{odd}"', "Q")
    assert answer.clips[0].name == ODD and "1 audio clip (5.11 s)" in answer.text
    (upload,) = emu.upload_requests()  # the object key is safe ASCII, the bytes intact
    assert b'filename="my_clip_1_' in upload.body
    answer = ip.run_cell_magic("qaudio", f"'{odd}' --start 1 --end 3", "A window")
    assert "1 audio clip (2.00 s)" in answer.text


def test_odd_names_as_percent_encoded_file_urls(session: Session, emu: Emulator, odd: Path) -> None:
    encoded = odd.as_uri()  # file:///…/odd%20dir%2B%C3%A9/my%20clip%2B1%20%C3%A9%20…
    assert "%20" in encoded and "%C3%A9" in encoded
    for url in (
        encoded,
        "file://localhost" + urllib.parse.quote(str(odd)),
        "file://" + urllib.parse.quote(str(odd), safe="/+"),  # a literal + stays a +
    ):
        answer = ask_audio(url, "Q", display=False, new=True)
        assert answer.clips[0].name == ODD, url
    with pytest.raises(SourceError, match=r"a file:// URL of another host \(fileserver\)"):
        ask_audio("file://fileserver" + urllib.parse.quote(str(odd)), "Q", display=False)


def test_odd_names_in_a_batch_directory(ip, emu: Emulator, odd: Path, audio: Path) -> None:
    shutil.copy(audio / "tone_440hz_3s.wav", odd.parent / "ton +ü.wav")
    answers = ip.run_cell_magic("qaudio", f'"{odd.parent}" --cache off', "Q")
    assert [a.clips[0].name for a in answers] == [ODD, "ton +ü.wav"]
    assert all(isinstance(a, Answer) for a in answers)
    assert not [a for a in answers if isinstance(a, Failure)]


def test_a_batch_item_with_too_many_clips_fails_alone(
    session: Session, emu: Emulator, audio: Path
) -> None:
    tone = audio / "tone_440hz_3s.wav"
    answers = ask_audio([tuple([tone] * 300), tone], "Q", progress=False)
    assert isinstance(answers[0], Failure) and isinstance(answers[1], Answer)
    assert str(answers[0].error).startswith("300 clips in one question")
    assert len(emu.generation_requests()) == 1
