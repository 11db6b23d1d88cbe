"""The API key never shows: outputs, reprs, %config, errors, logs, exports, saved notebooks.

The last test drives every feature with distinctive fake keys — DashScope's, an
``openai:`` server's, and one typed in with ``%qaudio key`` — and then searches every
artifact; the keys may appear only in the Authorization header the API hosts received.
"""

from __future__ import annotations

import logging
import pickle
import re
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.display import display
from IPython.utils.capture import capture_output

from qaudio_magic._secret import Secret, scrub
from qaudio_magic.emulator import Emulator
from qaudio_magic.errors import QAudioError
from qaudio_magic.session import get_session

from .conftest import TEST_KEY, serve_folders


def test_a_whole_session_never_shows_the_key(
    ip, emu: Emulator, audio: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    with capture_output() as cap:
        a1 = ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "What is said?")
        a2 = ip.run_cell_magic("qaudio", "--no-stream", "Follow-up")
        for fault in (
            "status=429;times=1",
            "status=500;times=1",
            "error_after=1;status=400;times=1",
            "reset=1;times=1",
            "sse_as_json=1;status=400;times=1",
        ):
            emu.add_fault(fault)
            with pytest.raises(UsageError) as err:
                ip.run_cell_magic("qaudio", "", "Again")
            seen.append(str(err.value))
        with pytest.raises(UsageError) as err:
            ip.run_cell_magic("qaudio", str(tmp_path / "missing.wav"), "Q")
        seen.append(str(err.value))
        ip.run_line_magic("config", "QAudioMagic")
        ip.run_line_magic("qaudio", "history")
        ip.run_line_magic("qaudio", "list")
        ip.run_line_magic("qaudio", f"export {tmp_path / 'conv.json'}")
    sess = get_session()
    seen += [cap.stdout, cap.stderr, caplog.text, (tmp_path / "conv.json").read_text()]
    seen += [
        repr(x) for x in (a1, a2, sess, sess.settings, sess.api_key(), sess.conversations.current)
    ]
    seen += [
        str(sess.api_key()),
        repr(vars(sess)),
        repr(sess.backend("qwen-audio-turbo-latest").__dict__),
    ]
    seen += [str(o.data) + str(o.metadata) for o in cap.outputs]
    seen += [str(a1._repr_mimebundle_()), str(a1.metadata())]
    blob = "\n".join(seen)
    assert "Emulated answer" in blob and "request id" in blob  # the scan saw real material
    assert TEST_KEY not in blob
    # ...while the service did receive it, in the Authorization header only
    assert emu.requests[0].headers["authorization"] == f"Bearer {TEST_KEY}"
    assert all(TEST_KEY not in r.body.decode("utf-8", "replace") for r in emu.requests)


def test_secret_object() -> None:
    s = Secret("sk-abcdef-123456")
    assert "sk-abcdef" not in repr(s) and "sk-abcdef" not in str(s) and "sk-abcdef" not in f"{s}"
    assert s.reveal() == "sk-abcdef-123456"
    assert scrub("oops sk-abcdef-123456 leaked") == "oops *** leaked"
    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_errors_are_scrubbed_even_if_a_key_lands_in_a_message() -> None:
    from qaudio_magic.errors import APIError, TransportError

    Secret("sk-zzz-987654321")
    assert "sk-zzz" not in str(TransportError("proxy said sk-zzz-987654321 is bad"))
    assert "sk-zzz" not in str(APIError(401, "InvalidApiKey", "key sk-zzz-987654321 invalid", "r1"))


# Saved notebooks: every notebook in notebooks/ runs with distinctive fake keys in
# tests/test_notebooks.py::test_notebook_runs_against_emulator, which searches the saved
# .ipynb for them.


# ---------------------------------------------------------------------- every feature
OPENAI_KEY = "sk-openai-fake-3c9d1e5b7a20"
TYPED_KEY = "sk-typed-fake-77aa41c0de93"
KEYS = (TEST_KEY, OPENAI_KEY, TYPED_KEY)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def url_servers(audio: Path) -> Iterator[tuple[str, str, list[tuple[str, str, dict[str, str]]]]]:
    """Two loopback file servers (127.0.0.1 and localhost): URL sources, and ``/hop.wav``
    redirecting to the other host; yields both base URLs and the first one's request log."""
    with serve_folders(audio, "127.0.0.1", "localhost") as (first, other):
        first.routes["/hop.wav"] = other.url + "/speech_en.wav"
        yield first.url, other.url, first.seen


@pytest.fixture
def split() -> Iterator[Emulator]:
    """An emulator whose OSS upload host is a separate server, as on the real service."""
    with Emulator(separate_upload_host=True) as emu:
        yield emu


def _exception_texts(shell: Any, exc: BaseException) -> list[str]:
    """Every way an exception gets shown: str, repr, the plain traceback (with its chain),
    IPython's verbose traceback (which prints the variables of each frame), and the
    httpx exception inside it, with its request."""
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    shell.run_line_magic("xmode", "Verbose")
    stb = shell.InteractiveTB.structured_traceback(type(exc), exc, exc.__traceback__)
    texts.append(ANSI.sub("", shell.InteractiveTB.stb2text(stb)))
    shell.run_line_magic("xmode", "Context")
    inner = exc.__context__ or exc.__cause__
    while inner is not None:
        texts += [str(inner), repr(inner), "".join(traceback.format_exception(inner))]
        request = getattr(inner, "_request", None)
        if request is not None:
            texts += [repr(request), repr(request.headers), str(request.headers)]
        inner = inner.__context__
    return texts


@pytest.mark.timeout(120)
def test_every_feature_never_shows_any_key(
    ip,
    split: Emulator,
    audio: Path,
    tmp_path: Path,
    url_servers: tuple[str, str, list[tuple[str, str, dict[str, str]]]],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A session with distinctive fake keys uses every feature; then every artifact is
    searched. The keys are found only in the Authorization header of requests to the
    configured API hosts — never at the upload host, a URL source, or elsewhere."""
    caplog.set_level(logging.DEBUG)  # httpx, httpcore and ours, everything they say
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    url, _, url_seen = url_servers
    emu = split
    speech, tone = audio / "speech_en.wav", audio / "tone_440hz_3s.wav"
    for line in (
        f"QAudioMagic.base_url = '{emu.base_url}'",
        f"QAudioMagic.openai_base_url = '{emu.openai_base_url}'",
        f"QAudioMagic.cache_dir = '{tmp_path / 'cache'}'",
        "QAudioMagic.retries = 0",
    ):
        ip.run_line_magic("config", line)
    seen: list[str] = []
    errors: list[BaseException] = []
    from qaudio_magic import ask_audio
    from qaudio_magic.player import Player

    with capture_output() as cap:
        a1 = ip.run_cell_magic("qaudio", str(speech), "What is said?")  # upload, then ask
        a2 = ip.run_cell_magic("qaudio", "--no-stream", "Follow-up")
        plan = ip.run_cell_magic("qaudio", f"{tone} --dry-run", "Dry run")
        voice = ip.run_line_magic("qaudio", str(tone))  # voice chat: the audio alone
        for fault in (
            "status=429;times=1",
            "status=500;times=1",
            "error_after=1;status=400;times=1",
            "reset=1;times=1",
            "cut_after=2;times=1",
            "sse_as_json=1;status=400;times=1",
            "malformed=1;times=1",
        ):
            emu.add_fault(fault)
            with pytest.raises(UsageError) as err:
                ip.run_cell_magic("qaudio", "", "Again")
            seen.append(str(err.value))
            emu.add_fault(fault)
            with pytest.raises(QAudioError) as caught:
                ask_audio(None, "Again, from Python", display=False)
            errors.append(caught.value)
        with pytest.raises(UsageError) as err:  # a failed upload's error
            emu.add_fault("status=403;code=AccessDenied;path=/oss;times=2")
            ip.run_cell_magic("qaudio", str(audio / "en_mp3_64k.mp3"), "Q")
        seen.append(str(err.value))
        # URL sources: checked (HEAD), downloaded for a window (GET), one redirecting elsewhere
        ip.run_cell_magic("qaudio", f"{url}/speech_en.wav", "From a URL")
        ip.run_cell_magic("qaudio", f"{url}/hop.wav --start 0 --end 2", "A window of a URL")
        # batches with the response cache, twice (the second from the cache); windows
        batch = ip.run_cell_magic("qaudio", f"{speech} {tone} --batch --cache on", "Batch")
        ip.run_cell_magic("qaudio", f"{speech} {tone} --batch --cache on", "Batch")
        timeline = ip.run_cell_magic("qaudio", f"{speech} --windows 2 --cache off", "Windows")
        # the other routes: Qwen-Omni with the DashScope key, openai: with its own key
        omni = ip.run_cell_magic("qaudio", f"{speech} -m qwen3-omni-flash", "Omni")
        vllm = ip.run_cell_magic(
            "qaudio", f"{speech} -m openai:Qwen/Qwen2-Audio-7B-Instruct", "vLLM"
        )
        # the recorder (a take from a file), a player, a key typed in with %qaudio key
        ip.run_line_magic("qaudio", "record mic")
        ip.user_ns["mic"].add(tone)
        ip.run_cell_magic("qaudio", "mic", "The take")
        player = Player(speech, text=a1.text)
        monkeypatch.setattr("getpass.getpass", lambda prompt="": TYPED_KEY)
        ip.run_line_magic("qaudio", "key")
        typed = ip.run_cell_magic("qaudio", str(tone), "With the typed key")
        emu.add_fault("status=401;code=InvalidApiKey;times=1")
        with pytest.raises(QAudioError) as caught:
            ask_audio(str(speech), "Rejected key", display=False)
        errors.append(caught.value)
        # everything a user can list or save
        for line in (
            "history",
            "list",
            "models",
            "usage",
            "cache",
            f"export {tmp_path / 'conv.json'}",
        ):
            ip.run_line_magic("qaudio", line)
        ip.run_line_magic("config", "QAudioMagic")
        display(a1, batch, timeline, plan, player)

    sess = get_session()
    for exc in errors:
        seen += _exception_texts(ip, exc)
    seen += [cap.stdout, cap.stderr, caplog.text]
    seen += [str(o.data) + str(o.metadata) for o in cap.outputs]
    seen += [
        repr(x)
        for x in (
            a1,
            a2,
            plan,
            voice,
            batch,
            timeline,
            omni,
            vllm,
            typed,
            sess,
            sess.settings,
            player,
        )
    ]
    seen += [str(sess.api_key()), str(sess.openai_key()), repr(vars(sess))]
    seen += [repr(b.__dict__) + repr(vars(b._client)) for b in sess._backends.values()]
    seen += [str(batch.to_pandas().to_dict()), str(timeline.to_pandas().to_dict())]
    seen += [str(player.get_state()), str(ip.user_ns["mic"]._repr_mimebundle_())]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    seen += [p.read_bytes().decode("utf-8", "replace") for p in files]
    blob = "\n".join(seen)

    # the search saw real material...
    assert "Emulated answer" in blob and "(request id " in blob and "HTTP Request: POST" in blob
    assert "connect_tcp" in blob  # httpcore's DEBUG log was captured
    assert any("responses" in p.parts for p in files)  # cache entries were written
    assert (tmp_path / "conv.json").exists()
    # ...and found no key
    for key in KEYS:
        assert key not in blob, f"{key} leaked"

    # on the wire: keys only in the Authorization header of the configured API host
    upload_port = str(emu.upload_server.port) if emu.upload_server else "?"
    api_paths = ("/api/v1/", "/compatible-mode/v1/")
    for r in emu.requests:
        auth = r.headers.get("authorization")
        rest = repr({k: v for k, v in r.headers.items() if k != "authorization"}) + r.body.decode(
            "utf-8", "replace"
        )
        assert not any(key in rest for key in KEYS), f"a key outside Authorization: {r.path}"
        if r.headers["host"].endswith(f":{upload_port}"):
            assert auth is None, "the API key was sent to the upload host"
        elif r.path.startswith("/v1/"):
            assert auth == f"Bearer {OPENAI_KEY}"  # openai: has its own key
        else:
            assert r.path.startswith(api_paths)
            assert auth in (f"Bearer {TEST_KEY}", f"Bearer {TYPED_KEY}")
    assert [r.headers["host"] for r in emu.upload_requests()], "nothing was uploaded"
    assert all(r.headers["host"].endswith(f":{upload_port}") for r in emu.upload_requests())
    # URL sources and the host a redirect led to saw no key, no Authorization at all
    assert {m for m, _, _ in url_seen} == {"HEAD", "GET"}
    assert any(h.get("Host", "").startswith("localhost:") for _, _, h in url_seen)
    for _, _, headers in url_seen:
        assert "Authorization" not in headers and not any(k in str(headers) for k in KEYS)
