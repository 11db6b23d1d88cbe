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
        return client._transport._pool._ssl_context  # type: ignore[attr-defined]

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
