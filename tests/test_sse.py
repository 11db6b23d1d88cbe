"""SSE parsing and streamed answers: captured frames, cumulative text, errors however framed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qaudio_magic import APIError, TransportError, ask_audio
from qaudio_magic.backends._sse import SSEEvent, iter_events, iter_sse, looks_like_sse, parse_events
from qaudio_magic.emulator import Emulator

CAPTURES = Path(__file__).parent / "data" / "captures"
MAX_TOKENS_MESSAGE = (
    "<400> InternalError.Algo.InvalidParameter: Range of max_tokens should be [1, 2048]"
)


def test_parses_captured_incremental_frames() -> None:
    events = parse_events((CAPTURES / "emulated_sse_incremental.txt").read_text())
    assert [(e.id, e.event, e.status) for e in events] == [
        ("1", "result", 200),
        ("2", "result", 200),
        ("3", "result", 200),
    ]
    texts = [
        json.loads(e.data)["output"]["choices"][0]["message"]["content"][0]["text"] for e in events
    ]
    assert "".join(texts) == "A short sine tone."
    finish = [json.loads(e.data)["output"]["choices"][0]["finish_reason"] for e in events]
    assert finish == ["null", "null", "stop"]


def test_parses_captured_midstream_error_with_its_status_comment() -> None:
    events = parse_events((CAPTURES / "emulated_sse_midstream_error.txt").read_text())
    last = events[-1]
    assert (last.event, last.status) == ("error", 400)
    assert json.loads(last.data)["code"] == "DataInspectionFailed"


def test_parser_follows_the_sse_spec_too() -> None:
    lines = [
        ": keep-alive comment\r\n",
        'data: {"a":\r\n',
        "data: 1}\r\n",
        "\r\n",
        "event:error\n",
        ":HTTP_STATUS/429\n",
        'data:{"code":"Throttling"}\n',  # no blank line at EOF
    ]
    events = list(iter_events(lines))
    assert events[0].data == '{"a":\n1}' and events[0].status is None
    assert (events[1].event, events[1].status) == ("error", 429)
    assert looks_like_sse("id:1\nevent:error\n") and not looks_like_sse('{"code": "x"}')


def test_byte_stream_parser_agrees_with_the_line_parser_however_chunked() -> None:
    """The streaming parser reads raw bytes; cut anywhere (mid-line, mid-CRLF, mid-UTF-8
    character) it must give the events the line-by-line parser gives for the whole body."""
    import random

    lines = ["id:1", "id: 7", "event:result", "event: error", ":HTTP_STATUS/200",
             ":HTTP_STATUS/429", ": keep-alive", 'data:{"a":1}', 'data: {"b":"é中"}', "data:",
             "retry:100", "status:503", "data: [DONE]", "x"]  # fmt: skip
    rng = random.Random(5)
    for _ in range(1500):
        eol = rng.choice(["\n", "\r\n", "\r"])
        blocks = [[rng.choice(lines) for _ in range(rng.randint(0, 5))] for _ in range(4)]
        body = "".join(eol.join(b) + eol + eol for b in blocks)
        if rng.random() < 0.3:
            body = body.rstrip("\r\n")  # the connection closed without the blank line
        data = body.encode()
        cuts = sorted(rng.sample(range(1, len(data)), min(6, len(data) - 1))) if data else []
        chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        assert list(iter_sse(chunks)) == parse_events(body), body


def test_only_cr_and_lf_end_lines() -> None:
    """U+2028 and form feeds may occur inside a JSON string (``ensure_ascii=False``);
    str.splitlines would cut the frame there and lose the token."""
    text = "a\u2028b\x0cc\x1cd"
    frame = f'id:1\nevent:result\n:HTTP_STATUS/200\ndata:{{"text":"{text}"}}\n\n'.encode()
    expected = [SSEEvent(f'{{"text":"{text}"}}', "result", "1", 200)]
    assert list(iter_sse([frame[:20], frame[20:]])) == expected
    assert parse_events(frame.decode()) == expected


def test_cumulative_stream_is_turned_into_deltas(session, emu: Emulator, audio: Path) -> None:
    """With incremental_output=false every frame repeats the text so far; deltas must not."""
    from qaudio_magic.backends.base import Request, TextDelta

    whole = ask_audio(audio / "speech_en.wav", "Q", stream=False, display=False).text
    backend = session.backend("qwen-audio-turbo-latest")
    request = emu.generation_requests()[-1].json
    session.conversations.current.clear()
    answer = ask_audio(audio / "speech_en.wav", "Q", display=False, incremental_output=False)
    assert emu.generation_requests()[-1].json["parameters"]["incremental_output"] is False
    assert answer.text == whole
    # and each delta is new text only: their count equals the frames, their sum the answer
    from qaudio_magic._prepare import prepare
    from qaudio_magic.backends.base import AudioPart, Message, TextPart
    from qaudio_magic.clip import AudioClip

    clip = prepare(AudioClip.from_source(audio / "speech_en.wav"), backend.limits(request["model"]))
    events = list(
        backend.stream(
            Request(
                request["model"],
                (Message("user", (AudioPart(clip), TextPart("Q"))),),
                {"incremental_output": False},
            )
        )
    )
    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 3 and "".join(deltas) == whole


def test_midstream_429_keeps_its_real_status(session, emu: Emulator, audio: Path) -> None:
    emu.add_fault("error_after=2;status=429;code=Throttling.RateQuota;times=1")
    with pytest.raises(APIError) as err:
        ask_audio(audio / "speech_en.wav", "Q", display=False)
    assert (err.value.status, err.value.code) == (429, "Throttling.RateQuota")  # the SDK says 400
    assert err.value.request_id


@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.parametrize("label", ["sse_as_json", "sse_error"])
def test_400_with_sse_body_whatever_the_content_type(
    session, emu: Emulator, audio: Path, stream: bool, label: str
) -> None:
    emu.add_fault(f"{label}=1;status=400;message={MAX_TOKENS_MESSAGE};times=1")
    with pytest.raises(APIError) as err:
        ask_audio(audio / "speech_en.wav", "Q", display=False, stream=stream)
    assert err.value.status == 400 and err.value.code == "InvalidParameter"
    assert err.value.api_message == MAX_TOKENS_MESSAGE and err.value.request_id


def test_stream_cut_short_is_an_error_not_a_short_answer(
    session, emu: Emulator, audio: Path
) -> None:
    emu.add_fault("cut_after=3;times=1")
    with pytest.raises(TransportError, match=r"closed the connection|ended the stream"):
        ask_audio(audio / "speech_en.wav", "Q", display=False)
    assert len(session.conversations.current) == 0


def test_malformed_frame(session, emu: Emulator, audio: Path) -> None:
    emu.add_fault("malformed=1;times=1")
    with pytest.raises(TransportError, match="malformed answer"):
        ask_audio(audio / "speech_en.wav", "Q", display=False)
