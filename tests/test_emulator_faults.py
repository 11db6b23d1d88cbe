"""Every emulator fault knob works on every route that has it, however it is given.

Knobs × routes (native streamed and whole-JSON, DashScope compatible mode, the vLLM
stand-in streamed and whole-JSON, the OSS upload form) × delivery (``Emulator.add_fault``
and the ``X-Emulator-Fault`` header), observed on the raw wire with httpx; plus the
command line, run as a user runs it (``python -m qaudio_magic.emulator --status 429``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

import httpx
import pytest

from qaudio_magic import ask_audio
from qaudio_magic.emulator import Emulator, RecordedRequest
from qaudio_magic.emulator.faults import (
    Fault,
    FaultPlan,
    add_arguments,
    fault_from_arguments,
    parse_fault,
)
from qaudio_magic.errors import APIError, TransportError
from qaudio_magic.session import Session, set_session
from qaudio_magic.settings import Settings

from .conftest import ROOT, TEST_KEY

STREAMED = ("native", "compatible", "vllm")
WHOLE = ("native_json", "vllm_json")
ROUTES = STREAMED + WHOLE


@dataclass
class Seen:
    """One exchange as the client saw it."""

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    head_after: float = 0.0  # seconds until the response head
    events: list[tuple[float, str]] = field(default_factory=list)  # (seconds, event text)
    body: str = ""
    broken: str | None = None  # the httpx error that ended it


def _request(emu: Emulator, route: str) -> tuple[str, dict[str, object], dict[str, str]]:
    auth = {"Authorization": f"Bearer {TEST_KEY}"}
    if route.startswith("native"):
        body = {
            "model": "qwen-audio-turbo-latest",
            "parameters": {"incremental_output": True},
            "input": {"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
        }
        sse = {"X-DashScope-SSE": "enable"} if route == "native" else {}
        url = emu.base_url + "/services/aigc/multimodal-generation/generation"
        return url, body, {**auth, **sse}
    model = "qwen3-omni-flash" if route == "compatible" else "Qwen/Qwen2-Audio-7B-Instruct"
    base = emu.compatible_base_url if route == "compatible" else emu.openai_base_url
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    if route in STREAMED:
        body["stream"] = True
    return base + "/chat/completions", body, auth


def call(emu: Emulator, route: str, header: str | None = None) -> Seen:
    """One exchange; ``head_after`` is measured by the client, a lower bound on the delay
    the emulator added (the clock starts before the request is sent)."""
    url, body, headers = _request(emu, route)
    if header:
        headers = {**headers, "X-Emulator-Fault": header}
    seen = Seen()
    started = time.perf_counter()
    try:
        with (
            httpx.Client(timeout=10) as client,
            client.stream("POST", url, json=body, headers=headers) as response,
        ):
            seen.status = response.status_code
            seen.headers = dict(response.headers)
            seen.head_after = time.perf_counter() - started
            block: list[str] = []
            for line in response.iter_lines():
                seen.body += line + "\n"
                if line:
                    block.append(line)
                elif block:
                    seen.events.append((time.perf_counter() - started, "\n".join(block)))
                    block = []
    except httpx.HTTPError as exc:
        seen.broken = type(exc).__name__
    return seen


def served(emu: Emulator) -> RecordedRequest:
    """The last request, once the emulator is through with it (its log is complete)."""
    sent = emu.requests[-1]
    assert sent.done.wait(10)
    return sent


def _data(event: str) -> str:
    return "\n".join(
        line.partition(":")[2].strip() for line in event.splitlines() if line.startswith("data")
    )


def _json_ok(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------------- what each knob does
Check = Callable[[Seen, str, RecordedRequest], None]


# Delays are checked as lower bounds (a loaded machine only adds time) and, where the
# order of what the emulator sent matters, on the emulator's own log of when the head and
# each event left: the client cannot tell two events sent 40 ms apart from two that
# arrive together because it was busy.
def _latency(seen: Seen, route: str, sent: RecordedRequest) -> None:
    assert seen.status == 200 and seen.head_after >= 0.2
    assert sent.fault.latency == 0.2 and sent.completed


def _ttft(seen: Seen, route: str, sent: RecordedRequest) -> None:
    assert seen.status == 200 and seen.events and seen.events[0][0] >= 0.2
    assert sent.head_at is not None and sent.events_at[0] - sent.head_at >= 0.2  # head first


def _token_rate(seen: Seen, route: str, sent: RecordedRequest) -> None:
    assert len(seen.events) > 5 and len(sent.events_at) == len(seen.events)
    assert all(b - a >= 1 / 25 for a, b in itertools.pairwise(sent.events_at))
    assert seen.events[-1][0] >= (len(seen.events) - 1) / 25  # paced, as the client saw it


def _status(code: int, retry_after: str | None) -> Check:
    def check(seen: Seen, route: str, sent: RecordedRequest) -> None:
        assert seen.status == code
        assert seen.headers.get("retry-after") == retry_after
        payload = json.loads(seen.body)
        assert payload.get("request_id") and payload.get("code")

    return check


def _reset(seen: Seen, route: str, sent: RecordedRequest) -> None:
    assert seen.status is None and seen.broken in ("RemoteProtocolError", "ReadError")


def _cut_after(seen: Seen, route: str, sent: RecordedRequest) -> None:
    assert seen.status == 200 and seen.broken is not None
    if route in STREAMED:
        assert len(seen.events) == 2  # then the connection dropped
    else:
        assert not _json_ok(seen.body.strip())  # half a JSON body


def _error_after(seen: Seen, route: str, sent: RecordedRequest) -> None:
    if route in STREAMED:
        assert len(seen.events) == 2
        last = seen.events[-1][1]
        assert "event:error" in last and ":HTTP_STATUS/400" in last
        assert json.loads(_data(last))["code"] == "DataInspectionFailed"
    else:  # a whole answer carries the error instead
        assert seen.status == 400 and json.loads(seen.body)["code"] == "DataInspectionFailed"


def _malformed(seen: Seen, route: str, sent: RecordedRequest) -> None:
    assert seen.status == 200
    if route in STREAMED:
        assert seen.events and not _json_ok(_data(seen.events[0][1]))
    else:
        assert not _json_ok(seen.body.strip())


def _sse_body(ctype: str) -> Check:
    def check(seen: Seen, route: str, sent: RecordedRequest) -> None:
        assert seen.status == 400 and seen.headers["content-type"].startswith(ctype)
        assert seen.body.startswith("id:1\nevent:error\n:HTTP_STATUS/400\ndata:")

    return check


KNOBS: dict[str, tuple[str, Check, tuple[str, ...]]] = {
    "latency": ("latency=0.2", _latency, ROUTES),
    "ttft": ("ttft=0.2", _ttft, STREAMED),
    "token_rate": ("token_rate=25", _token_rate, STREAMED),
    "429_retry_after": ("status=429;retry_after=1", _status(429, "1"), ROUTES),
    "429_no_retry_after": ("status=429", _status(429, None), ROUTES),
    "500": ("status=500", _status(500, None), ROUTES),
    "503": ("status=503;retry_after=2", _status(503, "2"), ROUTES),
    "reset": ("reset=1", _reset, ROUTES),
    "cut_after": ("cut_after=2", _cut_after, ROUTES),
    "error_after": ("error_after=1;status=400;code=DataInspectionFailed", _error_after, ROUTES),
    "malformed": ("malformed=1", _malformed, ROUTES),
    "sse_as_json": ("sse_as_json=1;status=400", _sse_body("application/json"), ROUTES),
    "sse_error": ("sse_error=1;status=400", _sse_body("text/event-stream"), ROUTES),
}
CASES = [
    pytest.param(knob, route, id=f"{knob}-{route}")
    for knob, (_, _, routes) in KNOBS.items()
    for route in routes
]


@pytest.mark.parametrize(("knob", "route"), CASES)
def test_knob_by_api_then_normal(emu: Emulator, knob: str, route: str) -> None:
    spec, check, _ = KNOBS[knob]
    emu.add_fault(spec + ";times=1")
    check(call(emu, route), route, served(emu))
    normal = call(emu, route)  # times=1: the next request is served normally
    assert normal.status == 200 and normal.broken is None
    assert served(emu).fault == Fault() and served(emu).completed


@pytest.mark.parametrize(("knob", "route"), CASES)
def test_knob_by_header(emu: Emulator, knob: str, route: str) -> None:
    spec, check, _ = KNOBS[knob]
    check(call(emu, route, header=spec), route, served(emu))
    assert call(emu, route).status == 200  # the header applies to its own request only
    assert emu.requests[-1].fault == Fault()


def test_faults_without_a_path_spare_the_upload_and_slow_upload_slows_the_form(
    session: Session, emu: Emulator, audio: Path
) -> None:
    emu.add_fault("status=503;times=1")
    emu.add_fault("slow_upload=0.3;times=1")
    started = time.perf_counter()
    with pytest.raises(APIError, match="503"):
        ask_audio(audio / "speech_en.wav", "Q", display=False)
    assert time.perf_counter() - started >= 0.3
    # the policy and the form were served (slowly), the model call failed
    assert [(r.path, r.status) for r in emu.requests] == [
        ("/api/v1/uploads", 200),
        ("/oss", 200),
        ("/api/v1/services/aigc/multimodal-generation/generation", 503),
    ]
    emu.add_fault("status=500;path=/oss;times=1")  # naming the form reaches it
    session.configure(retries=1)
    emu.clear()
    ask_audio(audio / "tone_440hz_3s.wav", "Q", display=False)
    assert [r.status for r in emu.upload_requests()] == [500, 200]


def test_rate_with_a_seed_is_repeatable() -> None:
    def run() -> list[bool]:
        plan = FaultPlan()
        plan.add(parse_fault("status=500;rate=0.3;seed=11"))
        return [plan.pick("/v1/chat/completions", None).status == 500 for _ in range(200)]

    first = run()
    assert first == run() and 30 < sum(first) < 90  # the same requests fail, about 30%
    # header faults draw too
    plan = FaultPlan()
    hits = [plan.pick("/x", "reset;rate=0.5").reset for _ in range(200)]
    assert 60 < sum(hits) < 140


# ---------------------------------------------------------------------- the command line
def test_every_knob_has_a_flag() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    argv = [
        "--latency", "0.1", "--ttft", "0.2", "--token-rate", "30", "--status", "503",
        "--code", "ModelUnavailable", "--message", "busy", "--retry-after", "2", "--reset",
        "--cut-after", "3", "--error-after", "4", "--malformed", "--sse-as-json",
        "--sse-error", "--slow-upload", "1.5", "--rate", "0.5", "--times", "2", "--seed", "7",
        "--path", "/v1/",
    ]  # fmt: skip
    (fault,) = fault_from_arguments(parser.parse_args(argv))
    assert fault == Fault(
        latency=0.1, ttft=0.2, token_rate=30, status=503, code="ModelUnavailable",
        message="busy", retry_after="2", reset=True, cut_after=3, error_after=4,
        malformed=True, sse_as_json=True, sse_error=True, slow_upload=1.5, rate=0.5,
        times=2, seed=7, path="/v1/",
    )  # fmt: skip
    assert all(f.name == "seed" or getattr(fault, f.name) != f.default for f in fields(Fault))
    faults = fault_from_arguments(
        parser.parse_args(["--fault", "status=429;times=1", "--fault", "reset;rate=0.1"])
    )
    assert faults == [parse_fault("status=429;times=1"), Fault(reset=True, rate=0.1)]
    assert fault_from_arguments(parser.parse_args([])) == []


@pytest.fixture
def cli_emulator(request: pytest.FixtureRequest) -> Iterator[str]:
    """``python -m qaudio_magic.emulator --port 0 ARGS``; yields its native base URL."""
    args = request.param
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "qaudio_magic.emulator", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("qaudio emulator on http://127.0.0.1:"), line
        yield line.split()[3]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize(
    "cli_emulator",
    [["--status", "429", "--times", "1", "--fault", "status=503;retry_after=0.05;times=1"]],
    indirect=True,
)
def test_cli_flags_and_fault_specs(cli_emulator: str, audio: Path) -> None:
    url = cli_emulator + "/services/aigc/multimodal-generation/generation"
    body = {
        "model": "qwen-audio-turbo-latest",
        "input": {"messages": [{"role": "user", "content": [{"text": "hi"}]}]},
    }
    headers = {"Authorization": f"Bearer {TEST_KEY}"}
    first, second, third = (httpx.post(url, json=body, headers=headers) for _ in range(3))
    assert first.status_code == 429 and "retry-after" not in first.headers  # times=1 honoured
    assert second.status_code == 503 and second.headers["retry-after"] == "0.05"
    assert third.status_code == 200


@pytest.mark.parametrize(
    "cli_emulator",
    [["--slow-upload", "0.4", "--times", "1", "--fault", "reset;times=1"]],
    indirect=True,
)
def test_cli_emulator_serves_a_session_through_its_faults(cli_emulator: str, audio: Path) -> None:
    """A session against the command-line emulator: a slow upload, then a reset call."""
    session = Session(Settings(base_url=cli_emulator, retries=0))
    session.set_key(TEST_KEY)
    old = set_session(session)
    try:
        started = time.perf_counter()
        with pytest.raises(TransportError, match="closed the connection"):
            ask_audio(audio / "speech_en.wav", "Q", display=False)
        assert time.perf_counter() - started >= 0.4  # the upload before it was slow
        answer = ask_audio(audio / "speech_en.wav", "Q", display=False)  # both were times=1
        assert "1 audio clip (5.11 s)" in answer.text
    finally:
        session.close()
        set_session(old)


def _raw_upload(
    emu: Emulator, name: str, header: str | None = None
) -> tuple[httpx.Response, float]:
    """A policy, then the OSS form POST of a few bytes (optionally with a fault header)."""
    policy = httpx.get(
        f"{emu.base_url}/uploads",
        params={"action": "getPolicy", "model": "qwen-audio-turbo-latest"},
        headers={"Authorization": f"Bearer {TEST_KEY}"},
    ).json()["data"]
    form = {
        "OSSAccessKeyId": policy["oss_access_key_id"],
        "Signature": policy["signature"],
        "policy": policy["policy"],
        "key": f"{policy['upload_dir']}/{name}",
        "x-oss-object-acl": "private",
        "x-oss-forbid-overwrite": "true",
        "success_action_status": "200",
        "x-oss-content-type": "audio/x-wav",
    }
    started = time.perf_counter()
    response = httpx.post(
        policy["upload_host"],
        data=form,
        files={"file": (name, b"RIFF....WAVE", None)},
        headers={"X-Emulator-Fault": header} if header else {},
    )
    return response, time.perf_counter() - started


@pytest.mark.parametrize("delivery", ["api", "header"])
def test_slow_upload_and_upload_faults_on_the_oss_form(emu: Emulator, delivery: str) -> None:
    def upload(spec: str, name: str) -> tuple[httpx.Response, float]:
        if delivery == "api":
            emu.add_fault(spec + ";times=1")
            return _raw_upload(emu, name)
        return _raw_upload(emu, name, header=spec)

    response, took = upload("slow_upload=0.3", "a.wav")
    assert response.status_code == 200 and took >= 0.3
    spec = "status=503;retry_after=1" + (";path=/oss" if delivery == "api" else "")
    response, _ = upload(spec, "b.wav")
    assert response.status_code == 503 and response.headers["retry-after"] == "1"
    response, _ = _raw_upload(emu, "c.wav")  # and then a normal upload, not slowed
    assert response.status_code == 200 and emu.requests[-1].fault == Fault()
