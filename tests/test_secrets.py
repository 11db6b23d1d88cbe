"""The API key never shows: outputs, reprs, %config, errors, logs, exports, saved notebooks."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from qaudio_magic._secret import Secret, scrub
from qaudio_magic.emulator import Emulator
from qaudio_magic.session import get_session

from .conftest import TEST_KEY


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


def test_saved_notebook_never_holds_the_key(emu: Emulator) -> None:
    import nbformat

    from .test_notebooks import ROOT, execute, kernel_env

    nb = execute(
        ROOT / "notebooks" / "quickstart.ipynb",
        kernel_env(DASHSCOPE_API_KEY=TEST_KEY, DASHSCOPE_HTTP_BASE_URL=emu.base_url),
    )
    saved = nbformat.writes(nb)
    assert "Emulated answer" in saved and TEST_KEY not in saved
