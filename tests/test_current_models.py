"""Today's Qwen audio models end to end against the emulator over real HTTP.

Each test types what a user would (``%%qaudio`` cells through the ``ip`` fixture, or
``ask_audio``) and checks what the user sees and what reached the emulator.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from IPython.core.error import UsageError

from qaudio_magic.emulator import Emulator
from qaudio_magic.emulator.native import GENERATION

from ._synth import write_long_wav
from .conftest import AUDIO

SPEECH = AUDIO / "speech_en.wav"  # 5.11 s
TONE = AUDIO / "tone_440hz_3s.wav"  # 3.00 s


def _contents(request) -> list[list[str]]:
    """Each message of a chat request as the kinds of its parts."""
    out = []
    for message in request.json["messages"]:
        content = message["content"]
        if isinstance(content, str):
            out.append([f"{message['role']}:text"])
        else:
            out.append([f"{message['role']}:{part['type']}" for part in content])
    return out


@pytest.fixture(scope="module")
def hour(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 minutes of 8 kHz speech-band tones: a 57.6 MB WAV, far over the inline budget."""
    return write_long_wav(tmp_path_factory.mktemp("long") / "interview.wav", 3600)


def test_a_60_minute_file_reaches_qwen35_whole_at_7_tokens_per_second(
    ip, emu: Emulator, hour: Path
) -> None:
    answer = ip.run_cell_magic("qaudio", f"{hour} -m qwen3.5-omni-plus", "Summarise it.")
    (request,) = emu.chat_requests()
    item = request.json["messages"][0]["content"][0]["input_audio"]
    assert item["data"].startswith("oss://")  # a temporary upload, not 77 MB of base64
    (received,) = request.audio
    assert received.duration == 3600.0 and received.size == hour.stat().st_size
    assert "1 audio clip (3600.00 s)" in answer.text  # heard whole: no "only the first"
    assert answer.estimated_audio_tokens == 25_200  # 7 tokens per second
    assert answer.usage.audio_tokens == 25_200  # what the (emulated) service billed
    assert not any("only" in note and "is sent" in note for note in answer.notes)


def test_over_the_models_limit_the_cut_rule_applies_with_its_limit(
    ip, emu: Emulator, hour: Path
) -> None:
    answer = ip.run_cell_magic("qaudio", f"{hour} -m qwen3-omni-flash", "Summarise it.")
    (received,) = emu.chat_requests()[0].audio
    assert received.duration == 1200.0  # 20 min (150 s was the video limit)
    assert any("only 1200 s" in note for note in answer.notes)
    assert answer.estimated_audio_tokens == 15_000  # 12.5 tokens per second


def test_two_clips_go_in_one_message_to_35_and_in_two_to_3_flash(ip, emu: Emulator) -> None:
    ip.run_cell_magic("qaudio", f"{SPEECH} {TONE} -m qwen3.5-omni-plus", "Which is longer?")
    ip.run_cell_magic("qaudio", f"{SPEECH} {TONE} -m qwen3-omni-flash --new", "Which is longer?")
    to_35, to_3 = emu.chat_requests()
    assert _contents(to_35) == [["user:input_audio", "user:input_audio", "user:text"]]
    assert _contents(to_3) == [["user:input_audio"], ["user:input_audio", "user:text"]]
    assert to_35.json["modalities"] == ["text"]


def test_the_captioner_request_has_no_text(ip, emu: Emulator) -> None:
    model = "qwen3-omni-30b-a3b-captioner"
    ip.run_line_magic("config", "QAudioMagic.system = 'You are terse.'")
    answer = ip.run_cell_magic("qaudio", f"{TONE} -m {model}", "What do you hear?")
    (request,) = emu.chat_requests()
    assert _contents(request) == [["user:input_audio"]]  # no question, no system message
    assert "modalities" not in request.json
    assert answer.text.startswith(f"Emulated caption from {model}")


def test_asr_options_and_context_reach_qwen3_asr(ip, emu: Emulator) -> None:
    ip.run_line_magic("config", "QAudioMagic.system = 'Names: Bailian, DashScope.'")
    answer = ip.run_cell_magic(
        "qaudio", f"{SPEECH} -m qwen3-asr-flash -p language=en enable_itn=true", "Transcribe"
    )
    (request,) = [r for r in emu.requests if r.path == GENERATION]  # the native route
    body = request.json
    assert body["parameters"]["asr_options"] == {"language": "en", "enable_itn": True}
    assert "language" not in body["parameters"]
    assert body["input"]["messages"] == [
        {"role": "system", "content": [{"text": "Names: Bailian, DashScope."}]},
        {
            "role": "user",
            "content": [{"audio": body["input"]["messages"][1]["content"][0]["audio"]}],
        },
    ]  # context as a system message; the user message holds the audio only
    assert "x-dashscope-sse" not in request.headers  # asked without streaming
    assert "ITN on" in answer.text and 'context "Names: Bailian, DashScope."' in answer.text


def test_errors_of_these_models_come_with_a_hint(ip, emu: Emulator) -> None:
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", f"{TONE} -m qwen3.5-omni-plus -p enable_thinking=true", "Q")
    assert "qwen3.5-omni-plus does not think: remove -p enable_thinking" in str(err.value)
    six = AUDIO / "words_at_1.5s_and_4.0s.wav"
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic(
            "qaudio",
            f"{six} -m qwen3-omni-flash -p enable_thinking=true -p reasoning_effort=low",
            "Q",
        )
    assert "qwen3-omni-flash switches thinking with -p enable_thinking=true" in str(err.value)
