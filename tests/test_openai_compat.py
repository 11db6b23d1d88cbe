"""The OpenAI-style backend against the emulator: Qwen-Omni on DashScope's compatible mode,
and an OpenAI-compatible server standing in for vLLM.

Most tests type cells as a user would; the emulator's own rules (what the real services
refuse) are checked with raw HTTP, since our client never sends what they refuse.
"""

from __future__ import annotations

import base64
import shutil
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from qaudio_magic.backends._http import Timeouts, error_from_response
from qaudio_magic.backends._sse import parse_events
from qaudio_magic.backends.base import Completion, Message, Request, TextDelta, TextPart, Usage
from qaudio_magic.backends.openai_compat import OpenAICompatBackend
from qaudio_magic.emulator import Emulator
from qaudio_magic.emulator.compat import COMPATIBLE_CHAT, OPENAI_CHAT, STREAM_ONLY
from qaudio_magic.errors import APIError, TransportError
from qaudio_magic.session import get_session

from .conftest import TEST_KEY

OMNI = "qwen3-omni-flash"
VLLM = "openai:Qwen/Qwen2-Audio-7B-Instruct"


def chat(emu: Emulator, path: str = COMPATIBLE_CHAT) -> list:
    return [r for r in emu.requests if r.path == path]


@pytest.fixture
def vllm(ip, emu: Emulator) -> Emulator:
    """The shell's openai:MODEL route pointed at the emulator's vLLM stand-in."""
    ip.run_line_magic("config", f"QAudioMagic.openai_base_url = '{emu.openai_base_url}'")
    return emu


# ---------------------------------------------------------------------- stream-only models
def test_no_stream_on_omni_still_streams_on_the_wire(ip, emu: Emulator, audio: Path) -> None:
    answer = ip.run_cell_magic(
        "qaudio", f"{audio / 'speech_en.wav'} -m {OMNI} --no-stream", "Whole answer, please."
    )
    request = chat(emu)[-1]
    assert request.json["stream"] is True and request.headers["accept"] == "text/event-stream"
    assert request.status == 200 and len(emu.requests) == 1  # no refused non-stream attempt
    assert answer.text.startswith("Emulated answer from qwen3-omni-flash")
    assert answer.text.endswith('question: "Whole answer, please.".')
    # and the backend hands the answer over in one piece, as --no-stream promises
    backend = get_session().backend(OMNI)
    events = list(
        backend.stream(Request(OMNI, (Message("user", (TextPart("Hi"),)),), stream=False))
    )
    assert [type(e) for e in events] == [TextDelta, Completion]
    assert chat(emu)[-1].json["stream"] is True


def test_emulator_refuses_non_stream_omni_with_documented_400(emu: Emulator) -> None:
    body = {"model": OMNI, "messages": [{"role": "user", "content": "Hi"}]}
    response = httpx.post(
        emu.compatible_base_url + "/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {TEST_KEY}"},
    )
    assert response.status_code == 400
    payload = response.json()
    assert payload["error"]["message"] == STREAM_ONLY
    assert payload["error"]["code"] == "invalid_parameter_error"
    assert payload["id"].startswith("chatcmpl-") and payload["request_id"]
    error = error_from_response(
        400, response.headers, response.content, service="DashScope compatible mode"
    )
    assert str(error) == (
        "DashScope compatible mode error 400 invalid_parameter_error: This model only support "
        f"stream mode, please enable the stream parameter. (request id {payload['request_id']})"
    )
    assert not error.retryable


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (  # raw base64: DashScope wants a URL or a full data URL
            [{"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}],
            "The provided URL does not appear to be valid.",
        ),
        (
            [{"type": "audio_url", "audio_url": {"url": "https://example.com/a.wav"}}],
            "audio_url is not supported",
        ),
        (
            [
                {"type": "input_audio", "input_audio": {"data": "https://example.com/a.wav"}},
                {"type": "input_audio", "input_audio": {"data": "https://example.com/b.wav"}},
            ],
            "at most one audio, image or video",
        ),
    ],
)
def test_emulator_compatible_mode_refusals(emu: Emulator, content: list, message: str) -> None:
    response = httpx.post(
        emu.compatible_base_url + "/chat/completions",
        json={"model": OMNI, "stream": True, "messages": [{"role": "user", "content": content}]},
        headers={"Authorization": f"Bearer {TEST_KEY}"},
    )
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_emulator_compatible_mode_assistant_is_text_only(emu: Emulator) -> None:
    audio = {"type": "input_audio", "input_audio": {"data": "https://example.com/a.wav"}}
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [audio]},
        {"role": "user", "content": "Again"},
    ]
    response = httpx.post(
        emu.compatible_base_url + "/chat/completions",
        json={"model": OMNI, "stream": True, "messages": messages},
        headers={"Authorization": f"Bearer {TEST_KEY}"},
    )
    assert response.status_code == 400
    assert "assistant messages must be text only" in response.json()["error"]["message"]


def test_emulator_vllm_takes_audio_url_and_raw_base64(emu: Emulator, audio: Path) -> None:
    b64 = base64.b64encode((audio / "speech_en.wav").read_bytes()).decode()
    content = [
        {"type": "audio_url", "audio_url": {"url": "data:audio/wav;base64," + b64}},
        {"type": "input_audio", "input_audio": {"data": b64, "format": "wav"}},
        {"type": "text", "text": "Two?"},
    ]
    url = emu.openai_base_url + "/chat/completions"
    ok = httpx.post(url, json={"model": "m", "messages": [{"role": "user", "content": content}]})
    assert ok.status_code == 200, ok.text
    assert "2 audio clips (5.11 s; 5.11 s)" in ok.json()["choices"][0]["message"]["content"]
    prefixed = [{"type": "input_audio", "input_audio": {"data": "data:;base64," + b64}}]
    bad = httpx.post(url, json={"model": "m", "messages": [{"role": "user", "content": prefixed}]})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == 400
    assert "raw base64" in bad.json()["error"]["message"]


# ---------------------------------------------------------------------- audio encoding
def test_url_sources_go_as_urls(ip, vllm: Emulator, audio: Path, file_server) -> None:
    base, root = file_server
    shutil.copy(audio / "speech_en.wav", root)
    url = f"{base}/speech_en.wav"
    omni = ip.run_cell_magic("qaudio", f"{url} -m {OMNI} --new", "From a URL?")
    part = chat(vllm)[-1].json["messages"][0]["content"][0]
    assert part == {"type": "input_audio", "input_audio": {"data": url, "format": "wav"}}
    assert "1 audio clip (5.11 s)" in omni.text  # the emulator fetched and decoded it
    served = ip.run_cell_magic("qaudio", f"{url} -m {VLLM} --new", "From a URL?")
    part = chat(vllm, OPENAI_CHAT)[-1].json["messages"][0]["content"][0]
    assert part == {"type": "audio_url", "audio_url": {"url": url}}
    assert "1 audio clip (5.11 s)" in served.text


def test_transcoded_audio_is_wav_on_both_routes(ip, vllm: Emulator, audio: Path) -> None:
    """WebM/Opus is not taken as-is: it goes as 16 kHz mono WAV, encoded per route."""
    clip = audio / "en_opus_stream.webm"
    ip.run_cell_magic("qaudio", f"{clip} -m {OMNI} --new", "Q")
    item = chat(vllm)[-1].json["messages"][0]["content"][0]["input_audio"]
    assert item["format"] == "wav" and item["data"].startswith("data:;base64,UklGR")
    ip.run_cell_magic("qaudio", f"{clip} -m {VLLM} --new", "Q")
    item = chat(vllm, OPENAI_CHAT)[-1].json["messages"][0]["content"][0]["input_audio"]
    assert item["format"] == "wav" and item["data"].startswith("UklGR")
    received = chat(vllm, OPENAI_CHAT)[-1].audio[0]
    assert (received.sample_rate, received.channels, received.codec) == (16000, 1, "pcm_s16le")


def test_mp3_goes_as_is_with_its_format(ip, vllm: Emulator, audio: Path) -> None:
    clip = audio / "en_mp3_64k.mp3"
    raw = base64.b64encode(clip.read_bytes()).decode()
    ip.run_cell_magic("qaudio", f"{clip} -m {OMNI} --new", "Q")
    item = chat(vllm)[-1].json["messages"][0]["content"][0]["input_audio"]
    assert item == {"data": "data:;base64," + raw, "format": "mp3"}
    ip.run_cell_magic("qaudio", f"{clip} -m {VLLM} --new", "Q")
    item = chat(vllm, OPENAI_CHAT)[-1].json["messages"][0]["content"][0]["input_audio"]
    assert item == {"data": raw, "format": "mp3"}


def test_audio_over_the_inline_budget_is_uploaded(ip, emu: Emulator, tmp_path: Path) -> None:
    big = tmp_path / "big_stereo.wav"  # 45 s of 44.1 kHz stereo PCM: 7.9 MB
    with wave.open(str(big), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44_100)
        w.writeframes(np.zeros(45 * 44_100 * 2, dtype=np.int16).tobytes())
    ip.run_cell_magic("qaudio", f"{big} -m {OMNI}", "Q")  # the endpoint has the store
    request = chat(emu, COMPATIBLE_CHAT)[-1]
    item = request.json["messages"][0]["content"][0]["input_audio"]
    assert item["data"].startswith("oss://") and len(emu.upload_requests()) == 1
    assert request.headers["x-dashscope-ossresourceresolve"] == "enable"
    (received,) = request.audio  # sent as it is, whole
    assert (received.sample_rate, received.channels, received.duration) == (44_100, 2, 45.0)


def test_oss_url_is_refused_for_other_servers(ip, vllm: Emulator) -> None:
    with pytest.raises(UsageError, match="an oss:// URL is readable by DashScope only"):
        ip.run_cell_magic("qaudio", f"oss://bucket/dir/a.wav -m {VLLM}", "Q")
    assert chat(vllm, OPENAI_CHAT) == []


# ---------------------------------------------------------------------- parameters
def test_params_reach_the_body_and_max_tokens_cuts(ip, emu: Emulator, audio: Path) -> None:
    answer = ip.run_cell_magic(
        "qaudio",
        f"{audio / 'speech_en.wav'} -m {OMNI} -p max_tokens=3 temperature=0.2 top_p=0.8 "
        "enable_thinking=false",
        "Short.",
    )
    body = chat(emu)[-1].json
    assert {k: body[k] for k in ("max_tokens", "temperature", "top_p", "enable_thinking")} == {
        "max_tokens": 3,
        "temperature": 0.2,
        "top_p": 0.8,
        "enable_thinking": False,
    }
    assert answer.finish_reason == "length" and answer.usage.output_tokens == 3
    assert answer.text == "Emulated answer from"


def test_no_stream_on_a_server_that_allows_it(ip, vllm: Emulator, audio: Path) -> None:
    answer = ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} -m {VLLM} --no-stream", "Q")
    request = chat(vllm, OPENAI_CHAT)[-1]
    assert "stream" not in request.json and request.headers["accept"] == "application/json"
    assert "1 audio clip (5.11 s)" in answer.text and answer.finish_reason == "stop"
    assert answer.usage.output_tokens == len(answer.text.split())


# ---------------------------------------------------------------------- errors
def test_missing_dashscope_key_fails_before_sending(ip, emu: Emulator, audio: Path, monkeypatch):
    monkeypatch.delenv("DASHSCOPE_API_KEY")
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} -m {OMNI}", "Q")
    assert str(err.value).startswith(
        "no DashScope API key (Qwen-Omni uses the same key as Qwen-Audio) — set DASHSCOPE_API_KEY"
    )
    assert emu.requests == []


def test_invalid_key_is_one_line_with_hint(ip, emu: Emulator, audio: Path, monkeypatch) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", "invalid-omni-key-1234")
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} -m {OMNI}", "Q")
    text = str(err.value)
    assert text.startswith(
        "DashScope compatible mode error 401 invalid_api_key: Incorrect API key provided. "
        "(request id "
    )
    assert "— set DASHSCOPE_API_KEY or run %qaudio key; API keys are per region: " in text
    assert text.endswith("(cn-beijing, ap-southeast-1, …)")
    assert "invalid-omni-key-1234" not in text and "\n" not in text


def test_invalid_openai_key_hint(ip, vllm: Emulator, audio: Path, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "invalid-vllm-key-5678")
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} -m {VLLM}", "Q")
    text = str(err.value)
    assert text.startswith(
        f"OpenAI-compatible server 127.0.0.1:{vllm.port} error 401 Unauthorized: Incorrect API key"
    )
    assert text.endswith("— set OPENAI_API_KEY or run %qaudio key --openai")
    assert "invalid-vllm-key-5678" not in text


def test_midstream_error_frame_keeps_conversation(ip, emu: Emulator, audio: Path) -> None:
    first = ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} -m {OMNI}", "First")
    conversation = get_session().conversations.get(first.conversation)
    turns = conversation.turns
    emu.add_fault("error_after=4;status=429;code=Throttling.RateQuota;times=1")
    with capture_output() as cap, pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", f"-m {OMNI}", "Second")
    assert str(err.value).startswith(
        "DashScope compatible mode error 429 Throttling.RateQuota: Requests rate limit exceeded"
    )
    assert conversation.turns == turns
    shown = cap.outputs[-1].data["text/plain"]
    assert "Incomplete" in shown and "Emulated answer from" in shown  # partial text kept


def test_rate_limit_before_any_text_is_retried(ip, emu: Emulator, audio: Path) -> None:
    ip.run_line_magic("config", "QAudioMagic.retries = 2")
    emu.add_fault("status=429;retry_after=0;times=1;path=/compatible-mode/")
    answer = ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} -m {OMNI}", "Q")
    assert [r.status for r in chat(emu)] == [429, 200]
    assert "1 audio clip (5.11 s)" in answer.text


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("cut_after=3", r"closed the connection mid-answer|ended the stream before"),
        ("malformed=1", r"sent a malformed answer \(not JSON\)"),
    ],
)
def test_broken_streams_are_transport_errors(
    ip, emu: Emulator, audio: Path, fault: str, message: str
) -> None:
    emu.add_fault(fault + ";times=1")
    with pytest.raises(UsageError, match=message):
        ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} -m {OMNI}", "Q")
    assert len(get_session().conversations.current) == 0


def test_vllm_audio_limit_has_a_hint(ip, vllm: Emulator, audio: Path, monkeypatch) -> None:
    monkeypatch.setattr(vllm.vllm, "audio_limit", 1)
    ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} -m {VLLM}", "One clip is fine")
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", f"{audio / 'tone_440hz_3s.wav'} -m {VLLM}", "Two are not")
    text = str(err.value)
    assert "error 400 BadRequestError: At most 1 audio(s) may be provided in one prompt." in text
    assert "start vLLM with --limit-mm-per-prompt '{\"audio\": N}'" in text
    assert len(get_session().conversations.current) == 1


# ---------------------------------------------------------------------- parsing
def _backend() -> OpenAICompatBackend:
    return OpenAICompatBackend(
        "http://127.0.0.1:9/v1",
        lambda: None,
        route="openai",
        dialect="openai",
        service="OpenAI-compatible server test",
        key_required=False,
        timeouts=Timeouts(),
    )


def _parse(text: str) -> list:
    return list(_backend()._chunks(parse_events(text), None, float("inf")))


def test_chunks_usage_from_the_final_empty_choices_chunk() -> None:
    events = _parse(
        'data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
        'data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"你好"}}]}\n\n'
        'data: {"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":", world"},'
        '"finish_reason":"stop"}]}\n\n'
        'data: {"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":90,"completion_tokens":4,'
        '"total_tokens":94,"prompt_tokens_details":{"audio_tokens":64,"text_tokens":26}}}\n\n'
        "data: [DONE]\n\n"
    )
    assert events == [
        TextDelta("你好"),
        TextDelta(", world"),
        Completion(Usage(input_tokens=26, output_tokens=4, audio_tokens=64), "chatcmpl-1", "stop"),
    ]


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (  # DashScope, mid-stream in compatible mode
            'id:3\nevent:error\n:HTTP_STATUS/429\ndata:{"code":"Throttling.RateQuota",'
            '"message":"Requests rate limit exceeded","request_id":"r-1"}\n\n',
            (429, "Throttling.RateQuota", "r-1"),
        ),
        (  # vLLM: the status in "code"
            'data: {"error":{"message":"boom","type":"BadRequestError","param":null,"code":400}}\n\n',
            (400, "BadRequestError", None),
        ),
        (  # older vLLM ErrorResponse
            'data: {"object":"error","message":"engine dead","type":"InternalServerError",'
            '"param":null,"code":500}\n\n',
            (500, "InternalServerError", None),
        ),
    ],
)
def test_chunks_error_frames(frame: str, expected: tuple) -> None:
    head = 'data: {"choices":[{"index":0,"delta":{"content":"partial"}}]}\n\n'
    with pytest.raises(APIError) as err:
        _parse(head + frame)
    assert (err.value.status, err.value.code, err.value.request_id) == expected


def test_chunks_without_end_are_incomplete() -> None:
    with pytest.raises(TransportError, match="ended the stream before the answer was complete"):
        _parse('data: {"choices":[{"index":0,"delta":{"content":"half"}}]}\n\n')
