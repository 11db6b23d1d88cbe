"""The emulator serves today's Qwen audio models with their documented rules.

Raw HTTP against the emulator, as any OpenAI-style client (or the official SDK) would
send it, so the emulator itself is checked against CURRENT-MODELS.md; the client's use
of each rule is tested in ``test_current_models.py``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from qaudio_magic.emulator import Emulator
from qaudio_magic.emulator.native import GENERATION

from ._synth import write_long_wav
from .conftest import AUDIO, TEST_KEY

SPEECH = AUDIO / "speech_en.wav"  # 5.11 s
TONE = AUDIO / "tone_440hz_3s.wav"


def _data_url(path: Path) -> str:
    return "data:;base64," + base64.b64encode(path.read_bytes()).decode()


def _audio(path: Path) -> dict[str, Any]:
    return {"type": "input_audio", "input_audio": {"data": _data_url(path), "format": "wav"}}


def _post(emu: Emulator, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        emu.compatible_base_url + "/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {TEST_KEY}"},
        timeout=30,
    )


def _stream(emu: Emulator, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = _post(emu, {"stream": True, "stream_options": {"include_usage": True}, **body})
    assert response.status_code == 200, response.text
    chunks = []
    for line in response.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            chunks.append(json.loads(line[6:]))
    assert response.text.rstrip().endswith("data: [DONE]")
    return chunks


def _deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in chunks if c["choices"]]


def _refused(emu: Emulator, body: dict[str, Any], match: str) -> None:
    response = _post(emu, body)
    assert response.status_code == 400, response.text
    assert match in response.json()["error"]["message"]


def _user(*parts: dict[str, Any], text: str | None = "What is it?") -> list[dict[str, Any]]:
    content = [*parts, *([{"type": "text", "text": text}] if text else [])]
    return [{"role": "user", "content": content}]


def test_stream_only_models_refuse_non_stream_and_others_do_not(emu: Emulator) -> None:
    for model in ("qwen3.5-omni-plus", "qwen3-omni-flash", "qwen-omni-turbo"):
        _refused(emu, {"model": model, "messages": _user(_audio(TONE))}, "only support stream")
    ok = _post(
        emu, {"model": "qwen3-omni-30b-a3b-captioner", "messages": _user(_audio(TONE), text=None)}
    )
    assert ok.status_code == 200 and ok.json()["object"] == "chat.completion"


def test_two_clips_in_one_message_for_35_but_not_for_3_flash(emu: Emulator) -> None:
    two = _user(_audio(SPEECH), _audio(TONE), text="Which is longer?")
    deltas = _deltas(_stream(emu, {"model": "qwen3.5-omni-plus", "messages": two}))
    text = "".join(d.get("content") or "" for d in deltas)
    assert "2 audio clips (5.11 s; 3.00 s)" in text  # heard whole: 3 h per clip
    response = _post(emu, {"model": "qwen3-omni-flash", "stream": True, "messages": two})
    assert response.status_code == 400
    assert "at most one audio" in response.json()["error"]["message"]


def test_38_thinks_first_and_its_effort_can_be_turned_down(emu: Emulator) -> None:
    chunks = _stream(emu, {"model": "qwen3.8-omni-flash", "messages": _user(_audio(SPEECH))})
    deltas = _deltas(chunks)
    kinds = ["reasoning" if d.get("reasoning_content") else "text" for d in deltas
             if d.get("reasoning_content") or d.get("content")]  # fmt: skip
    assert kinds[0] == "reasoning" and "reasoning" not in kinds[kinds.index("text") :]
    reasoning = "".join(d.get("reasoning_content") or "" for d in deltas)
    assert reasoning.startswith("Emulated reasoning from qwen3.8-omni-flash")
    details = chunks[-1]["usage"]["completion_tokens_details"]
    assert details["reasoning_tokens"] > 0 and details["text_tokens"] > 0
    quiet = _stream(
        emu,
        {
            "model": "qwen3.8-omni-flash",
            "reasoning_effort": "none",
            "messages": _user(_audio(SPEECH)),
        },
    )
    assert not any(d.get("reasoning_content") for d in _deltas(quiet))


def test_thinking_rules(emu: Emulator) -> None:
    body = {"stream": True, "messages": _user(_audio(SPEECH))}
    _refused(
        emu, {**body, "model": "qwen3.5-omni-plus", "enable_thinking": True}, "enable_thinking"
    )
    speak = {"modalities": ["text", "audio"], "audio": {"voice": "Cherry", "format": "wav"}}
    _refused(
        emu, {**body, **speak, "model": "qwen3-omni-flash", "enable_thinking": True}, "thinking"
    )
    _refused(emu, {**body, **speak, "model": "qwen3.8-omni-flash"}, "does not support audio output")
    flash = _stream(emu, {"model": "qwen3-omni-flash", "enable_thinking": True, **body})
    assert any(d.get("reasoning_content") for d in _deltas(flash))
    response = _post(emu, {"model": "qwen3-omni-30b-a3b-captioner", "enable_thinking": True,
                           "messages": _user(_audio(TONE), text=None)})  # fmt: skip
    assert response.status_code == 400


def test_a_spoken_answer_is_24_khz_pcm_in_audio_deltas(emu: Emulator) -> None:
    body = {
        "model": "qwen3.5-omni-plus",
        "modalities": ["text", "audio"],
        "audio": {"voice": "Tina", "format": "wav"},
        "messages": _user(_audio(SPEECH)),
    }
    chunks = _stream(emu, body)
    audio = [d["audio"] for d in _deltas(chunks) if "audio" in d]
    pcm = b"".join(base64.b64decode(a["data"]) for a in audio if "data" in a)
    assert not pcm.startswith(b"RIFF")  # headerless PCM, as the docs' decoders assume
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    seconds = len(samples) / 24_000
    assert 2.0 < seconds <= 20.0
    assert np.abs(samples).max() > 5_000  # not silence
    spectrum = np.abs(np.fft.rfft(samples))
    peak = np.fft.rfftfreq(len(samples), 1 / 24_000)[spectrum.argmax()]
    assert 80 < peak < 4_000  # a voice-like band, at the 24 kHz rate
    assert all(a["id"].startswith("audio_") for a in audio)
    assert any("transcript" in a and "data" not in a for a in audio)  # tolerated by clients
    details = chunks[-1]["usage"]["completion_tokens_details"]
    assert details["audio_tokens"] == pytest.approx(seconds * 12.5, abs=1)
    # voices are checked where the list is complete
    _refused(emu, {**body, "stream": True, "model": "qwen3-omni-flash",
                   "audio": {"voice": "Tina", "format": "wav"}}, "voice")  # fmt: skip
    _refused(emu, {**body, "stream": True, "audio": {"voice": "Tina", "format": "mp3"}}, "wav")


def test_the_captioner_takes_one_clip_and_no_text(emu: Emulator) -> None:
    model = "qwen3-omni-30b-a3b-captioner"
    _refused(emu, {"model": model, "messages": _user(_audio(TONE))}, "does not accept text")
    turns = [*_user(_audio(TONE), text=None), {"role": "assistant", "content": "x"},
             *_user(_audio(TONE), text=None)]  # fmt: skip
    _refused(emu, {"model": model, "messages": turns}, "single user message")
    _refused(
        emu, {"model": model, "messages": _user(_audio(TONE), _audio(SPEECH), text=None)}, "one"
    )
    answer = _post(emu, {"model": model, "messages": _user(_audio(TONE), text=None)}).json()
    assert answer["choices"][0]["message"]["content"].startswith(f"Emulated caption from {model}")


def test_asr_compatible_mode_annotates_language_and_emotion(emu: Emulator) -> None:
    body = {
        "model": "qwen3-asr-flash",
        "messages": [
            {"role": "system", "content": "Names: Bailian, DashScope."},
            *_user(_audio(SPEECH), text=None),
        ],
        "asr_options": {"language": "zh", "enable_itn": True},
    }
    message = _post(emu, body).json()["choices"][0]["message"]
    assert message["annotations"] == [
        {"type": "audio_info", "language": "zh", "emotion": "neutral"}
    ]
    assert "language forced to zh" in message["content"] and "ITN on" in message["content"]
    assert 'context "Names: Bailian, DashScope."' in message["content"]
    _refused(emu, {**body, "stream_options": {"include_usage": True}}, "stream_options")
    _refused(emu, {**body, "messages": _user(_audio(SPEECH))}, "audio only")
    _refused(emu, {**body, "asr_options": {"speed": 2}}, "speed")


def test_asr_native_route_with_context_and_usage_seconds(emu: Emulator) -> None:
    body = {
        "model": "qwen3-asr-flash",
        "input": {"messages": [
            {"role": "system", "content": [{"text": "Names: Qwen."}]},
            {"role": "user", "content": [{"audio": _data_url(SPEECH)}]},
        ]},
        "parameters": {"asr_options": {"enable_itn": False}},
    }  # fmt: skip
    response = httpx.post(
        emu.root + GENERATION, json=body, headers={"Authorization": f"Bearer {TEST_KEY}"}
    )
    payload = response.json()
    message = payload["output"]["choices"][0]["message"]
    assert message["annotations"][0] == {
        "type": "audio_info",
        "language": "en",
        "emotion": "neutral",
    }
    assert 'context "Names: Qwen."' in message["content"][0]["text"]
    assert payload["usage"]["seconds"] == 5


def test_audio_over_a_models_limit_is_refused(emu: Emulator, tmp_path: Path) -> None:
    six = write_long_wav(tmp_path / "six.wav", 360, rate=8_000)  # 5.8 MB: fits inline
    response = _post(emu, {"model": "qwen3-asr-flash", "messages": _user(_audio(six), text=None)})
    assert response.status_code == 400
    assert "at most 300 s" in response.json()["error"]["message"]
    four = write_long_wav(tmp_path / "four.wav", 240, rate=8_000)
    _refused(emu, {"model": "qwen-omni-turbo", "stream": True, "messages": _user(_audio(four))},
             "at most 180 s")  # fmt: skip
    ok = _stream(emu, {"model": "qwen3-omni-flash", "messages": _user(_audio(four))})
    assert "240.00 s" in "".join(d.get("content") or "" for d in _deltas(ok))


def test_omni_models_are_not_served_natively(emu: Emulator) -> None:
    body = {"model": "qwen3.5-omni-plus", "input": {"messages": [
        {"role": "user", "content": [{"audio": _data_url(TONE)}, {"text": "Q"}]}]}}  # fmt: skip
    response = httpx.post(
        emu.root + GENERATION, json=body, headers={"Authorization": f"Bearer {TEST_KEY}"}
    )
    assert response.status_code == 400 and "OpenAI compatible" in response.json()["message"]
