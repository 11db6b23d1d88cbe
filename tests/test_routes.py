"""The model name picks the route; one conversation runs the same over every HTTP route.

Two clips, three turns, typed as a user would, against DashScope native, DashScope
compatible mode (Qwen-Omni) and a generic OpenAI-compatible server (the vLLM stand-in),
each request checked for its route's audio encoding and message rules.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from qaudio_magic.emulator import Emulator
from qaudio_magic.emulator.compat import COMPATIBLE_CHAT, OPENAI_CHAT
from qaudio_magic.emulator.native import GENERATION
from qaudio_magic.models import lookup, served_name

from .conftest import ROOT, TEST_KEY

OPENAI_TEST_KEY = "sk-vllm-test-5e6f7a8b9c0d"
VLLM_MODEL = "Qwen/Qwen2-Audio-7B-Instruct"


@pytest.mark.parametrize(
    ("name", "route", "stream_only"),
    [
        ("qwen-audio-turbo-latest", "dashscope", False),
        ("qwen-audio-turbo", "dashscope", False),
        ("qwen2-audio-instruct", "dashscope", False),
        ("some-future-audio-model", "dashscope", False),
        ("qwen3-omni-flash", "dashscope-compatible", True),
        ("qwen3-omni-flash-2025-12-01", "dashscope-compatible", True),
        ("qwen-omni-turbo", "dashscope-compatible", True),
        ("qwen3.5-omni-plus", "dashscope-compatible", True),
        ("openai:Qwen/Qwen2-Audio-7B-Instruct", "openai", False),
        ("local:Qwen/Qwen2-Audio-7B-Instruct", "local", False),
        ("local:/models/qwen2-audio", "local", False),
    ],
)
def test_model_name_selects_route(name: str, route: str, stream_only: bool) -> None:
    spec = lookup(name)
    assert (spec.route, spec.stream_only, spec.name) == (route, stream_only, name)
    assert spec.limits.wants_pcm is (route == "local")


def test_served_name_and_family_limits() -> None:
    assert served_name("openai:Qwen/Qwen2-Audio-7B-Instruct") == VLLM_MODEL
    assert served_name("local:~/m") == "~/m"
    assert served_name("qwen3-omni-flash") == "qwen3-omni-flash"
    snapshot = lookup("qwen3-omni-flash-2025-12-01")
    assert snapshot.limits == lookup("qwen3-omni-flash").limits
    assert snapshot.limits.audio_tokens_per_second == 12.5
    assert lookup("qwen-audio-turbo").limits.context_tokens == 8_000


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _converse(ip, audio: Path, model: str, extra: str = "") -> list:
    a, b = audio / "speech_en.wav", audio / "tone_440hz_3s.wav"
    return [
        ip.run_cell_magic("qaudio", f"{a} {b} -m {model} --new {extra}", "Compare them."),
        ip.run_cell_magic("qaudio", f"-m {model} {extra}", "Which one is longer?"),
        ip.run_cell_magic("qaudio", f"-m {model} {extra}", "Thanks. One line to sum up?"),
    ]


def _check_answers(answers: list, model: str, *, audio_tokens: int | None = 128 + 75) -> None:
    first, second, third = answers
    assert f"Emulated answer from {served_name(model)}" in first.text
    assert "2 audio clips (5.11 s; 3.00 s)" in first.text
    assert 'question: "Compare them."' in first.text
    assert "1 earlier turn and 2 audio clips in all" in second.text
    assert "2 earlier turns and 2 audio clips in all" in third.text
    for answer in answers:  # as the service reports them, and as the client estimates them
        assert answer.estimated_audio_tokens == (audio_tokens or 128 + 75)
        if audio_tokens:
            assert answer.usage.audio_tokens == audio_tokens
        else:  # vLLM reports one prompt count, audio included
            assert answer.usage.audio_tokens is None and answer.usage.input_tokens > 128 + 75
        assert answer.usage.output_tokens and answer.request_id


def _received(emu: Emulator, path: str, audio: Path) -> None:
    """Every request carried both clips, byte-identical (both are PCM WAV, sent as-is)."""
    digests = [hashlib.sha256(p.read_bytes()).hexdigest() for p in _clips(audio)]
    requests = [r for r in emu.requests if r.path == path]
    assert len(requests) == 3 and all(r.status == 200 for r in requests)
    for request in requests:
        assert [a.sha256 for a in request.audio] == digests
        assert [round(a.duration, 2) for a in request.audio] == [5.11, 3.0]


def _clips(audio: Path) -> list[Path]:
    return [audio / "speech_en.wav", audio / "tone_440hz_3s.wav"]


def test_native_dashscope_route(ip, emu: Emulator, audio: Path) -> None:
    answers = _converse(ip, audio, "qwen-audio-turbo-latest")
    _check_answers(answers, "qwen-audio-turbo-latest")
    _received(emu, GENERATION, audio)
    request = emu.generation_requests()[-1]
    assert request.headers["authorization"] == f"Bearer {TEST_KEY}"
    assert request.headers["x-dashscope-sse"] == "enable" and "stream" not in request.json
    messages = request.json["input"]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    a, b = _clips(audio)
    # local clips go once through DashScope's temporary upload; every turn names the oss:// URL
    first, second, question = messages[0]["content"]
    assert question == {"text": "Compare them."}
    assert emu.oss[first["audio"]] == a.read_bytes() and emu.oss[second["audio"]] == b.read_bytes()
    assert len(emu.upload_requests()) == 2
    assert messages[1]["content"] == [{"text": answers[0].text}]
    assert messages[3]["content"] == [{"text": answers[1].text}]
    assert messages[4]["content"] == [{"text": "Thanks. One line to sum up?"}]


def test_dashscope_compatible_mode_route(ip, emu: Emulator, audio: Path) -> None:
    answers = _converse(ip, audio, "qwen3-omni-flash")
    _check_answers(answers, "qwen3-omni-flash", audio_tokens=64 + 38)  # 12.5 tokens/s
    _received(emu, COMPATIBLE_CHAT, audio)
    request = [r for r in emu.requests if r.path == COMPATIBLE_CHAT][-1]
    assert request.headers["authorization"] == f"Bearer {TEST_KEY}"  # the same DashScope key
    body = request.json
    assert body["model"] == "qwen3-omni-flash"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["modalities"] == ["text"]
    messages = body["messages"]
    # one non-text item per user message: the two-clip turn became two user messages
    assert [m["role"] for m in messages] == [
        "user",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    a, b = _clips(audio)
    assert messages[0]["content"] == [
        {"type": "input_audio", "input_audio": {"data": "data:;base64," + _b64(a), "format": "wav"}}
    ]
    assert messages[1]["content"] == [
        {
            "type": "input_audio",
            "input_audio": {"data": "data:;base64," + _b64(b), "format": "wav"},
        },
        {"type": "text", "text": "Compare them."},
    ]
    assert messages[2] == {"role": "assistant", "content": answers[0].text}  # text only
    assert messages[4] == {"role": "assistant", "content": answers[1].text}
    assert messages[5] == {"role": "user", "content": "Thanks. One line to sum up?"}
    assert not emu.generation_requests(), "an omni model must not reach the native endpoint"


def test_generic_openai_route(ip, emu: Emulator, audio: Path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_TEST_KEY)
    ip.run_line_magic("config", f"QAudioMagic.openai_base_url = '{emu.openai_base_url}'")
    answers = _converse(ip, audio, f"openai:{VLLM_MODEL}")
    _check_answers(answers, f"openai:{VLLM_MODEL}", audio_tokens=None)
    _received(emu, OPENAI_CHAT, audio)
    request = [r for r in emu.requests if r.path == OPENAI_CHAT][-1]
    assert request.headers["authorization"] == f"Bearer {OPENAI_TEST_KEY}"
    body = request.json
    assert body["model"] == VLLM_MODEL and "modalities" not in body
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    messages = body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    a, b = _clips(audio)
    assert messages[0]["content"] == [  # raw base64 + format; several clips in one message
        {"type": "input_audio", "input_audio": {"data": _b64(a), "format": "wav"}},
        {"type": "input_audio", "input_audio": {"data": _b64(b), "format": "wav"}},
        {"type": "text", "text": "Compare them."},
    ]
    assert messages[1] == {"role": "assistant", "content": answers[0].text}
    assert TEST_KEY not in str(request.headers), "the DashScope key must not go to other servers"


def test_base_url_option_is_per_question(ip, emu: Emulator, audio: Path, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    model = f"openai:{VLLM_MODEL}"
    answer = ip.run_cell_magic(
        "qaudio", f"{audio / 'speech_en.wav'} -m {model} --base-url {emu.openai_base_url}", "Q"
    )
    assert "1 audio clip (5.11 s)" in answer.text
    request = emu.requests[-1]
    assert (
        request.path == OPENAI_CHAT and "authorization" not in request.headers
    )  # no key: none sent
    before = len(emu.requests)
    with pytest.raises(UsageError) as err:  # not remembered for the next cell
        ip.run_cell_magic("qaudio", f"-m {model}", "Follow-up without --base-url")
    assert str(err.value) == (
        "openai:MODEL needs the server's base URL — pass --base-url http://HOST:8000/v1, or "
        "%config QAudioMagic.openai_base_url = '…', or set OPENAI_BASE_URL"
    )
    assert len(emu.requests) == before
    with pytest.raises(UsageError, match="--base-url is for -m openai:NAME models"):
        ip.run_cell_magic("qaudio", f"-m qwen3-omni-flash --base-url {emu.openai_base_url}", "Q")


def test_openai_env_variables(ip, emu: Emulator, audio: Path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", emu.openai_base_url + "/")
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_TEST_KEY)
    ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} -m openai:{VLLM_MODEL}", "Q")
    assert emu.requests[-1].path == OPENAI_CHAT
    assert emu.requests[-1].headers["authorization"] == f"Bearer {OPENAI_TEST_KEY}"


def test_openai_key_subcommand_is_hidden(ip, emu: Emulator, audio: Path, monkeypatch) -> None:
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "sk-typed-openai-key-4321")
    with capture_output() as cap:
        ip.run_line_magic("qaudio", "key --openai")
        ip.run_line_magic("config", "QAudioMagic")
    assert "sk-typed-openai-key-4321" not in cap.stdout
    assert "OpenAI-compatible server key set" in cap.stdout
    ip.run_cell_magic(
        "qaudio",
        f"{audio / 'speech_en.wav'} -m openai:{VLLM_MODEL} --base-url {emu.openai_base_url}",
        "Q",
    )
    assert emu.requests[-1].headers["authorization"] == "Bearer sk-typed-openai-key-4321"
    ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'}", "Q")  # DashScope keeps its own key
    assert emu.requests[-1].headers["authorization"] == f"Bearer {TEST_KEY}"
    with capture_output() as cap:
        ip.run_line_magic("qaudio", "key --openai --clear")
    assert "$OPENAI_API_KEY is used if set" in cap.stdout
    with pytest.raises(UsageError, match=r"usage: %qaudio key \[--openai\] \[--clear\]"):
        ip.run_line_magic("qaudio", "key --bogus")


def test_models_lists_routes_and_limits(ip) -> None:
    ip.run_line_magic("config", "QAudioMagic.model = 'openai:my-served-model'")
    with capture_output() as cap:
        ip.run_line_magic("qaudio", "models")
    table = cap.outputs[0].data["text/plain"]
    rows = {
        line.split()[0] if not line.startswith("*") else line.split()[1]: line
        for line in table.splitlines()[3:]
    }
    assert "dashscope-compatible" in rows["qwen3-omni-flash"]
    assert (
        "49,152" in rows["qwen3-omni-flash"]  # CURRENT-MODELS §11.10 (non-thinking)
        and "20 min, 100 MB, 12.5 tok/s" in rows["qwen3-omni-flash"]  # §11.3.2
    )
    assert (
        "8,192" in rows["qwen-audio-turbo-latest"]
        and "30 s, 10 MB, 25 tok/s" in rows["qwen-audio-turbo-latest"]
    )
    assert "6,144 / 2,048" in rows["qwen-audio-turbo-latest"]
    assert rows["openai:my-served-model"].split()[:3] == ["*", "openai:my-served-model", "openai"]
    assert "PCM in memory" in rows["local:PATH_OR_HUB_ID"]
    assert "DashScope compatible mode" in table.splitlines()[0]
    assert ">qwen-omni-turbo</td>" in cap.outputs[0].data["text/html"]


def test_backends_notebook_runs_against_emulator(tmp_path: Path) -> None:
    """notebooks/backends.ipynb, executed headless as CI runs it (emulator, no key)."""
    pytest.importorskip("nbclient")
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DASHSCOPE_API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL")
    }
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    out = tmp_path / "backends.ipynb"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "run_notebook.py"),
            str(ROOT / "notebooks" / "backends.ipynb"),
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    shown = result.stdout
    assert "Emulated answer from qwen-audio-turbo-latest" in shown
    assert "Emulated answer from qwen3-omni-flash" in shown
    assert "Emulated answer from Qwen/Qwen2-Audio-7B-Instruct" in shown
    assert "1 earlier turn and 2 audio clips in all" in shown
    assert "Emulated answer from qwen3.5-omni-plus" in shown
    assert "25200" not in shown or "temporary upload" in shown
    assert "reasoning: Emulated reasoning from qwen3.8-omni-flash" in shown
    assert "answer:    Emulated answer from qwen3.8-omni-flash" in shown
    assert "Emulated caption from qwen3-omni-30b-a3b-captioner" in shown
    assert "Emulated transcript from qwen3-asr-flash" in shown and "    en neutral\n" in shown
    assert "spoken answer (Tina)" in shown
    assert "Traceback" not in shown
