"""Wire conformance: for the same inputs, our request has the official SDK's shape.

The captures (tests/data/captures, copied from shared/protocol/captures) are what the real
`dashscope` 2.0.2 SDK sent. We compare what matters to the service: method, path, the
headers that carry meaning, body key order, parameters and content items.
"""

from __future__ import annotations

import base64
import io
import json
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qaudio_magic import ask_audio
from qaudio_magic.emulator import Emulator

from .conftest import TEST_KEY

CAPTURES = Path(__file__).parent / "data" / "captures"
MEANINGFUL = {
    "accept",
    "authorization",
    "content-type",
    "x-dashscope-sse",
    "x-accel-buffering",
    "x-dashscope-ossresourceresolve",
    "x-dashscope-workspace",
}


@pytest.fixture(autouse=True)
def _offline_url_check(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The captures use example.com: never let a live HEAD request decide these tests."""
    checked: list[str] = []

    def check(url: str, limits: object) -> tuple[str, ...]:
        checked.append(url)
        return ()

    monkeypatch.setattr("qaudio_magic._prepare.check_url", check)
    return checked


def capture(prefix: str) -> dict[str, Any]:
    (path,) = CAPTURES.glob(f"{prefix}_*.json")
    return json.loads(path.read_text())


def sdk_headers(cap: dict[str, Any]) -> dict[str, str]:
    return {k.lower(): v for k, v in cap["headers"] if k.lower() in MEANINGFUL}


def our_headers(emu: Emulator) -> dict[str, str]:
    request = emu.generation_requests()[-1]
    return {k: v for k, v in request.headers.items() if k in MEANINGFUL}


def redact(headers: dict[str, str]) -> dict[str, str]:
    return {k: ("Bearer <REDACTED>" if k == "authorization" else v) for k, v in headers.items()}


def tone_wav(seconds: float = 1.0, rate: int = 16000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    pcm = (np.sin(2 * np.pi * 440 * t) * 12000).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def test_url_with_parameters_matches_capture_01(session, emu: Emulator) -> None:
    cap = capture("v202_01")
    ask_audio(
        "https://example.com/sample.wav",
        "What is in this audio?",
        stream=False,
        display=False,
        temperature=0.7,
        top_p=0.8,
        max_tokens=256,
        seed=1234,
        result_format="message",
    )
    ours = emu.generation_requests()[-1]
    assert (ours.method, ours.path) == (cap["method"], cap["path"])
    assert redact(our_headers(emu)) == sdk_headers(cap)
    assert our_headers(emu)["authorization"] == f"Bearer {TEST_KEY}"
    assert list(ours.json) == list(cap["json_body"]) == ["model", "parameters", "input"]
    assert ours.json == cap["json_body"]


def test_inline_audio_matches_capture_08(session, emu: Emulator, tmp_path: Path) -> None:
    cap = capture("v202_08")
    session.configure(upload="never")  # capture 08 is the SDK sending a data: URL inline
    wav = tmp_path / "tone_1s.wav"
    wav.write_bytes(tone_wav())
    ask_audio(wav, "What is in this audio?", stream=False, display=False)
    ours = emu.generation_requests()[-1]
    assert redact(our_headers(emu)) == sdk_headers(cap)
    theirs_item, ours_item = (
        body["input"]["messages"][0]["content"] for body in (cap["json_body"], ours.json)
    )
    assert [list(i) for i in ours_item] == [list(i) for i in theirs_item] == [["audio"], ["text"]]
    prefix = "data:;base64,"
    assert theirs_item[0]["audio"].startswith(prefix) and ours_item[0]["audio"].startswith(prefix)
    # the capture is truncated but records the total: the same 1 s 16 kHz WAV, sent as is
    total = int(theirs_item[0]["audio"].split("<")[1].split()[0])
    assert len(ours_item[0]["audio"]) == total
    assert base64.b64decode(ours_item[0]["audio"][len(prefix) :]) == wav.read_bytes()
    assert ours.json["parameters"] == cap["json_body"]["parameters"] == {}


def test_streaming_matches_capture_09(session, emu: Emulator) -> None:
    cap = capture("v202_09")
    ask_audio("https://example.com/sample.wav", "What is in this audio?", display=False)
    ours = emu.generation_requests()[-1]
    assert redact(our_headers(emu)) == sdk_headers(cap)
    assert ours.json == cap["json_body"]
    assert "stream" not in json.dumps(ours.json)  # the header is the only stream signal


def test_multi_turn_with_workspace_matches_capture_11(session, emu: Emulator) -> None:
    cap = capture("v202_11")
    session.configure(headers={"X-DashScope-WorkSpace": "ws-fake-123"})
    emu.reply_with("A short sine tone.")
    ask_audio(
        "https://example.com/sample.wav",
        "What is in this audio?",
        stream=False,
        display=False,
        system="You are a helpful assistant.",
    )
    ask_audio(None, "What frequency?", stream=False, display=False)
    ours = emu.generation_requests()[-1]
    assert redact(our_headers(emu)) == sdk_headers(cap)
    assert ours.json == cap["json_body"]


def test_oss_url_sets_resolve_header_like_capture_04(session, emu: Emulator) -> None:
    cap = capture("v202_04")
    url = cap["json_body"]["input"]["messages"][0]["content"][0]["audio"]
    emu.oss[url] = tone_wav()
    answer = ask_audio(url, "What is in this audio?", stream=False, display=False)
    assert redact(our_headers(emu)) == sdk_headers(cap)
    assert emu.generation_requests()[-1].json == cap["json_body"]
    assert "1 audio clip (1.00 s)" in answer.text


@pytest.mark.parametrize("stream", [True, False])
def test_emulator_requires_resolve_header_for_oss(session, emu: Emulator, stream: bool) -> None:
    """The emulator is faithful: without the header an oss:// URL is refused."""
    import httpx

    body = {
        "model": "qwen-audio-turbo-latest",
        "parameters": {},
        "input": {"messages": [{"role": "user", "content": [{"audio": "oss://x/y.wav"}]}]},
    }
    headers = {"Authorization": f"Bearer {TEST_KEY}"}
    if stream:
        headers["X-DashScope-SSE"] = "enable"
    r = httpx.post(
        emu.base_url + "/services/aigc/multimodal-generation/generation", json=body, headers=headers
    )
    assert r.status_code == 400 and r.json()["code"] == "InvalidParameter"
    assert "X-DashScope-OssResourceResolve" in r.json()["message"]
