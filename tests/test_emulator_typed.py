"""The emulator's side of typed questions, over raw HTTP: what it answers when a request
asks for JSON (a schema in ``response_format`` or in the prompt), and what it refuses.

Our client never sends what the service refuses, so those rules are checked here with
hand-made requests; the client's own behaviour is in test_typed.py.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from qaudio_magic.emulator import Emulator
from qaudio_magic.emulator.compat import COMPATIBLE_CHAT, OPENAI_CHAT
from qaudio_magic.emulator.native import GENERATION
from qaudio_magic.emulator.typed import JSON_WORD_REFUSAL
from qaudio_magic.schema import Schema

from .conftest import TEST_KEY

SHORT = {"gender": ["male", "female", "unknown"], "age": int, "emotion": str, "dog_barks": bool}
HEADERS = {"Authorization": f"Bearer {TEST_KEY}"}


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def native(emu: Emulator, clip: Path, text: str, model: str = "qwen-audio-turbo-latest") -> str:
    body = {
        "model": model,
        "input": {
            "messages": [
                {
                    "role": "user",
                    "content": [{"audio": "data:;base64," + _b64(clip)}, {"text": text}],
                }
            ]
        },
    }
    response = httpx.post(emu.root + GENERATION, json=body, headers=HEADERS)
    assert response.status_code == 200, response.text
    return str(response.json()["output"]["choices"][0]["message"]["content"][0]["text"])


def vllm(emu: Emulator, clip: Path, text: str, **extra: Any) -> httpx.Response:
    body = {
        "model": "Qwen/Qwen2-Audio-7B-Instruct",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "input_audio", "input_audio": {"data": _b64(clip), "format": "wav"}},
                    {"type": "text", "text": text},
                ],
            }
        ],
        **extra,
    }
    return httpx.post(emu.root + OPENAI_CHAT, json=body)


def compatible(emu: Emulator, clip: Path, text: str, **extra: Any) -> httpx.Response:
    body = {
        "model": "qwen-omni-turbo",
        "stream": True,
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "input_audio",
                        "input_audio": {"data": "data:;base64," + _b64(clip), "format": "wav"},
                    },
                    {"type": "text", "text": text},
                ],
            }
        ],
        **extra,
    }
    return httpx.post(emu.root + COMPATIBLE_CHAT, json=body, headers=HEADERS)


def test_schema_in_the_prompt_gets_valid_deterministic_json(emu: Emulator, audio: Path) -> None:
    schema = Schema.of(SHORT)
    clip = audio / "speech_en.wav"
    text = native(emu, clip, schema.prompt("Who is speaking?"))
    data = schema.parse(text)  # raises unless valid
    assert json.loads(text) == data  # plain JSON, no fences or prose
    assert data["emotion"] == "emulated emotion"  # free text says it is emulated
    assert native(emu, clip, schema.prompt("Who is speaking?")) == text  # deterministic
    # another clip or another model answers differently (fixed hashes: checked once, stable)
    other = [
        native(emu, audio / "tone_440hz_3s.wav", schema.prompt("Who?")),
        native(emu, clip, schema.prompt("Who?"), model="qwen-audio-turbo-2024-12-04"),
    ]
    assert all(schema.parse(o) != data for o in other)


def test_vllm_stand_in_answers_the_response_format_schema(emu: Emulator, audio: Path) -> None:
    wire = {
        "type": "object",
        "properties": {
            "speakers": {"type": "integer", "minimum": 1, "maximum": 3},
            "language": {"enum": ["en", "zh", "fr"]},
            "words": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
            "loudness": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["speakers", "language"],
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "clip", "schema": wire, "strict": True}}
    # the prompt holds no schema: the answer follows response_format alone
    response = vllm(emu, audio / "speech_en.wav", "Describe the clip.", response_format=fmt)
    assert response.status_code == 200, response.text
    data = Schema.of(wire).parse(response.json()["choices"][0]["message"]["content"])
    assert 1 <= data["speakers"] <= 3 and data["language"] in ("en", "zh", "fr")
    assert 0 <= data["loudness"] <= 1 and 1 <= len(data["words"]) <= 3


def test_dashscope_json_mode_needs_the_word_json(emu: Emulator, audio: Path) -> None:
    clip = audio / "speech_en.wav"
    refused = compatible(emu, clip, "Who speaks?", response_format={"type": "json_object"})
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == JSON_WORD_REFUSAL
    ok = compatible(
        emu, clip, "Who speaks? Answer in JSON.", response_format={"type": "json_object"}
    )
    assert ok.status_code == 200
    chunks = [json.loads(line[6:]) for line in ok.text.splitlines() if line.startswith("data: {")]
    answer = json.loads("".join(c["choices"][0]["delta"].get("content", "") for c in chunks))
    assert answer["answer"].startswith("Emulated answer from qwen-omni-turbo")
    # vLLM has no such rule
    assert vllm(emu, clip, "Who?", response_format={"type": "json_object"}).status_code == 200


def test_a_repair_turn_is_answered_against_the_earlier_schema(emu: Emulator, audio: Path) -> None:
    schema = Schema.of(SHORT)
    clip = "data:;base64," + _b64(audio / "speech_en.wav")
    body = {
        "model": "qwen-audio-turbo-latest",
        "input": {
            "messages": [
                {"role": "user", "content": [{"audio": clip}, {"text": schema.prompt("Who?")}]},
                {"role": "assistant", "content": [{"text": "a man, I think"}]},
                {"role": "user", "content": [{"text": schema.repair_message("no JSON")}]},
            ]
        },
    }
    response = httpx.post(emu.root + GENERATION, json=body, headers=HEADERS)
    schema.parse(response.json()["output"]["choices"][0]["message"]["content"][0]["text"])


@pytest.mark.parametrize("route", ["native", "vllm"])
def test_scripted_replies_come_first(emu: Emulator, audio: Path, route: str) -> None:
    """A test can still make a typed question get a malformed answer."""
    schema = Schema.of(SHORT)
    emu.reply_with('{"gender": "robot"')
    clip = audio / "speech_en.wav"
    if route == "native":
        text = native(emu, clip, schema.prompt("Who?"))
    else:
        fmt = schema.response_format()
        text = vllm(emu, clip, "Who?", response_format=fmt).json()["choices"][0]["message"][
            "content"
        ]
    assert text == '{"gender": "robot"'


def test_prose_questions_still_get_prose(emu: Emulator, audio: Path) -> None:
    text = native(emu, audio / "speech_en.wav", 'What is {"said"} here?')
    assert text.startswith("Emulated answer from qwen-audio-turbo-latest")
