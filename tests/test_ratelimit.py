"""Rate limits: the emulator refuses what DashScope would (RPM, TPM, per model, 429 with the
documented messages), and a batch paced by the client's limiter meets none of them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qaudio_magic import ask_audio
from qaudio_magic.emulator import Emulator
from qaudio_magic.session import Session, Settings

from ._synth import make_clips
from .conftest import ROOT, TEST_KEY

RPM_NATIVE = "Requests rate limit exceeded, please try again later."
TPM_NATIVE = "Allocated quota exceeded, please increase your quota limit."
RPM_COMPAT = "You exceeded your current requests list."


@pytest.fixture
def limited() -> Iterator[Emulator]:
    """An emulator of its own (limits are server-wide state)."""
    with Emulator() as emu:
        yield emu


def _native(emu: Emulator | str, model: str = "qwen-audio-turbo-latest") -> httpx.Response:
    base = emu if isinstance(emu, str) else emu.base_url
    return httpx.post(
        base + "/services/aigc/multimodal-generation/generation",
        json={
            "model": model,
            "input": {"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
        },
        headers={"Authorization": f"Bearer {TEST_KEY}"},
    )


def _compat(emu: Emulator, model: str = "qwen3-omni-flash") -> httpx.Response:
    return httpx.post(
        emu.compatible_base_url + "/chat/completions",
        json={"model": model, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {TEST_KEY}"},
    )


def test_requests_beyond_the_rpm_get_429_per_model(limited: Emulator) -> None:
    # 6 per minute with 100 s' worth allowed at once: 10 at once, then one per 10 s, so
    # the eleventh, sent right after, is refused however slow this machine is.
    limited.set_rate_limit(rpm=6, window=100)
    statuses = [_native(limited).status_code for _ in range(11)]
    assert statuses == [200] * 10 + [429]
    refused = _native(limited)
    assert refused.status_code == 429 and "retry-after" not in refused.headers
    assert refused.json()["code"] == "Throttling.RateQuota"
    assert refused.json()["message"] == RPM_NATIVE
    assert _native(limited, "qwen-audio-turbo-2024-12-04").status_code == 200  # its own limit
    assert limited.rate_limits.refused == 2


def test_compatible_mode_refuses_in_the_openai_envelope(limited: Emulator) -> None:
    limited.set_rate_limit(rpm=6, window=10, model="qwen3-omni-flash")  # 1 at once
    assert _compat(limited).status_code == 200
    refused = _compat(limited)
    assert refused.status_code == 429
    assert refused.json()["error"]["message"] == RPM_COMPAT
    assert _compat(limited, "qwen-omni-turbo").status_code == 200  # no limit set for it
    assert _native(limited).status_code == 200


def test_tokens_are_charged_from_the_answer_s_usage(limited: Emulator) -> None:
    limited.set_rate_limit(tpm=6, window=100)  # 10 tokens' worth; one answer spends more
    first = _native(limited)
    assert first.status_code == 200
    used = sum(v for v in first.json()["usage"].values())
    assert used > 10
    refused = _native(limited)
    assert refused.status_code == 429 and refused.json()["message"] == TPM_NATIVE
    limited.set_rate_limit()  # lifted
    assert _native(limited).status_code == 200


def test_the_command_line_sets_limits() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["--port", "0", "--rpm", "6", "--rate-window", "20"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "qaudio_magic.emulator", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().split()[3]
        assert [_native(base).status_code for _ in range(3)] == [200, 200, 429]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ---------------------------------------------------------------------- the client's pacing
def test_a_batch_paced_by_the_limit_meets_no_429(tmp_path: Path) -> None:
    """The emulator refuses beyond 1,200 requests and 60,000 tokens a minute per second
    (the strictest reading of a documented limit); a batch told that limit is never refused,
    and the same batch unpaced is."""
    clips = make_clips(tmp_path / "clips", 40)
    with Emulator() as emu:
        emu.set_rate_limit(rpm=1200, tpm=60_000, window=1)
        refused = {}
        for setting in ("1200/60000", "off"):
            session = Session(
                Settings(base_url=emu.base_url, rate_limit=setting, cache="off", retries=6)
            )
            session.set_key(TEST_KEY)
            answers = ask_audio(
                clips, "Q", model="qwen3-omni-flash", session=session, progress=False
            )
            session.close()
            refused[setting] = emu.rate_limits.refused
            emu.set_rate_limit(rpm=1200, tpm=60_000, window=1)  # full buckets, count anew
            if setting != "off":
                assert len(answers.answered) == 40 and answers.requests == 40
    assert refused["1200/60000"] == 0
    assert refused["off"] > 0  # the limit bites: pacing is what avoided it


def test_omni_models_are_paced_by_their_documented_limit_by_default() -> None:
    from qaudio_magic._ratelimit import route_limiter

    limiter = route_limiter("dashscope-compatible@test", "qwen3-omni-flash", "auto")
    assert limiter is not None and (limiter.rpm, limiter.tpm) == (60, 100_000)
    shared = route_limiter("dashscope-compatible@test", "qwen3-omni-flash", "auto", share=0.5)
    assert shared is not None and (shared.rpm, shared.tpm) == (30, 50_000)  # 2 Dask workers
    assert route_limiter("openai@test", "openai:Qwen/Qwen2-Audio", "auto") is None  # vLLM
    assert route_limiter("dashscope-compatible@test", "qwen3-omni-flash", "off") is None
