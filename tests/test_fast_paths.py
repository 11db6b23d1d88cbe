"""Caches on hot paths (see bench/ row 1 and 4) give the same answers as the slow paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from qaudio_magic import ask_audio
from qaudio_magic.backends import _http
from qaudio_magic.emulator import Emulator, _reply


def test_tls_context_is_made_once_per_ca_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the CA bundle took 20–40 ms per new client; it is shared now, but a
    different SSL_CERT_FILE still gets its own context."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)

    def context(client: object) -> object:
        return client._transport.ssl_context  # type: ignore[attr-defined]

    a, b = _http.make_client(_http.Timeouts()), _http.make_client(_http.Timeouts())
    assert context(a) is context(b)
    import certifi

    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
    c = _http.make_client(_http.Timeouts())
    assert context(c) is not context(a)
    for client in (a, b, c):
        client.close()


def test_emulator_probes_the_same_bytes_once(
    session, emu: Emulator, audio: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A follow-up resends the clip: the emulator reports it as before without decoding it
    again; a clip that does not decode is still refused every time."""
    from qaudio_magic import _codec

    calls: list[int] = []
    real = _codec.probe

    def counting(src: object, **kwargs: object) -> object:
        if kwargs.get("name") == "audio":  # the emulator's probes (the client names its clips)
            calls.append(1)
        return real(src, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_codec, "probe", counting)
    monkeypatch.setattr(_reply, "_PROBED", type(_reply._PROBED)())
    ask_audio(audio / "speech_en.wav", "Q1", display=False)
    ask_audio(None, "Q2", display=False)
    first, second = (r.audio for r in emu.generation_requests()[-2:])
    assert len(calls) == 1
    assert second[0].duration == first[0].duration and second[0].sha256 == first[0].sha256
    assert (second[0].sample_rate, second[0].codec) == (first[0].sample_rate, first[0].codec)

    for _ in range(2):
        with pytest.raises(_reply.ItemError, match="not supported"):
            _reply.decode_item("data:;base64,bm90IGF1ZGlv")  # "not audio"
    assert len(calls) == 2  # decoded once, refused twice


def test_inline_body_is_what_json_dumps_writes() -> None:
    """Cached base64 is spliced into the body; the bytes must be json.dumps' own."""
    import json
    import os

    from qaudio_magic.backends import _inline

    data, other = os.urandom(100_000), os.urandom(10)
    url = _inline.base64_text(data, "data:;base64,")
    raw = _inline.base64_text(other)
    assert _inline.base64_text(data, "data:;base64,") is url  # made once
    assert _inline.base64_text(other) == raw  # too short to be worth keeping: made again
    body = {
        "model": "qwen-audio-turbo-latest",
        "parameters": {"seed": 1, "stop": ["é", '"\\'], "x": None, "y": 1.5, "z": True},
        "input": {
            "messages": [
                {"role": "system", "content": [{"text": "说中文 \u2028 \n"}]},
                {"role": "user", "content": [{"audio": url}, {"text": "Q1"}]},
                {"role": "assistant", "content": [{"text": "A1"}]},
                {"role": "user", "content": ({"audio": url}, {"audio": raw}, {"text": "Q2"})},
            ]
        },
    }
    expected = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    assert _inline.dumps(body) == expected
    assert _inline.dumps({"a": "plain", "b": [1, 2]}) == b'{"a":"plain","b":[1,2]}'
    with pytest.raises(ValueError, match="escaping"):
        _inline.base64_text(data, 'data:"')


def test_inline_audio_is_encoded_once_per_clip_and_window(
    session, emu: Emulator, audio: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without uploads every turn re-sends the history inline: each clip's base64 is made
    once, and a different window of the clip is a different clip on the wire."""
    import base64
    import hashlib

    from qaudio_magic import AudioClip
    from qaudio_magic.backends import _inline

    encoded: list[int] = []
    real = base64.b64encode

    def counting(data: bytes) -> bytes:
        encoded.append(len(data))
        return real(data)

    monkeypatch.setattr(_inline.base64, "b64encode", counting)
    session.configure(upload="never")
    clip = AudioClip.from_source(audio / "speech_en.wav")
    ask_audio(clip, "Q1", display=False)
    ask_audio(None, "Q2", display=False)
    ask_audio(clip[1:2], "Q3", display=False)
    turns = emu.generation_requests()[-3:]
    sent = [[a.sha256 for a in r.audio] for r in turns]
    assert all(a.kind == "data" for r in turns for a in r.audio)
    whole, window = sent[0][0], sent[2][-1]
    assert sent[1] == [whole] and sent[2] == [whole, window] and window != whole
    # the clip at most once (not at all if this process sent it before), its window once;
    # the history is reused
    assert 1 <= len(encoded) <= 2 and encoded.count(len(turns[2].audio[-1].data or b"")) == 1
    assert turns[2].audio[-1].duration == pytest.approx(1.0, abs=0.01)
    assert hashlib.sha256(turns[2].audio[0].data or b"").hexdigest() == whole


@pytest.mark.parametrize("knobs", ["", "token_rate=1000"])
def test_emulator_keeps_one_chunk_per_frame_however_it_writes(emu: Emulator, knobs: str) -> None:
    """An instant answer leaves in one write now; on the wire it is still one HTTP chunk
    per SSE frame, as with a token rate (and as DashScope sends it)."""
    import base64

    import httpx

    if knobs:
        emu.add_fault(knobs + ";times=1")
    wav = (Path(__file__).parents[1] / "notebooks" / "audio" / "speech_en.wav").read_bytes()
    body = {
        "model": "qwen-audio-turbo-latest",
        "parameters": {"incremental_output": True},
        "input": {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"audio": "data:;base64," + base64.b64encode(wav).decode()},
                        {"text": "Q"},
                    ],
                }
            ]
        },
    }
    headers = {"Authorization": "Bearer sk-test", "X-DashScope-SSE": "enable"}
    url = emu.base_url + "/services/aigc/multimodal-generation/generation"
    with (
        httpx.Client(trust_env=False) as client,
        client.stream("POST", url, json=body, headers=headers) as response,
    ):
        chunks = list(response.iter_raw())
    frames = [c for c in chunks if c.startswith(b"id:")]
    assert len(frames) == len(chunks) > 10 and all(c.endswith(b"\n\n") for c in chunks)
    assert b'"finish_reason": "stop"' in chunks[-1]


def test_emulator_latency_includes_its_own_work(
    session, emu: Emulator, audio: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``latency`` is the time before the response starts (faults.py): the emulator's
    work on the request (here made slower than the latency on purpose) is part of it, not
    added to it: once the work is done, the response starts without a further wait."""
    import time

    from qaudio_magic.emulator import native

    real = native.compose
    worked: list[float] = []

    def slow(*args: object) -> str:
        time.sleep(0.6)
        worked.append(time.monotonic())
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(native, "compose", slow)
    ask_audio(audio / "speech_en.wav", "warm up", display=False)  # upload and decode first
    emu.add_fault("latency=0.5;times=1")
    started = time.perf_counter()
    ask_audio(audio / "speech_en.wav", "Q", display=False, new=True)
    assert time.perf_counter() - started >= 0.6
    head_at = emu.generation_requests()[-1].head_at
    assert head_at is not None
    # added, the latency would wait 0.5 s more after the work (a sleep: never less); the
    # emulator's own few milliseconds from work to head stay far below that on any machine
    assert head_at - worked[-1] < 0.25, f"{head_at - worked[-1]:.2f} s between work and head"
