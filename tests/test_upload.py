"""DashScope's temporary upload: the SDK's wire shape, once per clip, reused, expiring, safe."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from qaudio_magic import AudioClip, _codec, _prepare, ask_audio
from qaudio_magic._secret import Secret
from qaudio_magic.backends import _upload
from qaudio_magic.backends._upload import TemporaryUploads, upload_available
from qaudio_magic.emulator import Emulator
from qaudio_magic.emulator.upload import FORM_FIELDS, _parse_form
from qaudio_magic.errors import APIError, ConfigError
from qaudio_magic.session import Session

from .conftest import TEST_KEY

CAPTURES = Path(__file__).parent / "data" / "captures"  # copied from shared/protocol/captures
MODEL = "qwen-audio-turbo-latest"


def capture(name: str) -> dict:
    return json.loads((CAPTURES / name).read_text())


def clip_30s(tmp_path: Path, name: str = "interview.wav", hz: float = 220.0) -> Path:
    t = np.arange(30 * 16_000) / 16_000
    path = tmp_path / name
    path.write_bytes(_codec.wav_bytes((0.3 * np.sin(2 * np.pi * hz * t))[None, :], 16_000))
    return path


def audio_values(emu: Emulator, n: int = -1) -> list[str]:
    messages = emu.generation_requests()[n].json["input"]["messages"]
    return [c["audio"] for m in messages for c in m["content"] if "audio" in c]


def test_the_wire_follows_the_sdk_capture(session: Session, emu: Emulator, audio: Path) -> None:
    policy_capture = capture("v202_02_GET_api_v1_uploads.json")
    form_capture = capture("v202_03_POST_fake-oss.json")
    call_capture = capture(
        "v202_04_POST_api_v1_services_aigc_multimodal-generation_generation.json"
    )
    ask_audio(audio / "speech_en.wav", "What is in this audio?", display=False)
    kinds = [(r.method, r.path) for r in emu.requests]
    assert kinds == [
        ("GET", "/api/v1/uploads"),
        ("POST", "/oss"),
        ("POST", "/api/v1/services/aigc/multimodal-generation/generation"),
    ]
    get_policy, form, call = emu.requests
    # 1. getPolicy: same query, the key, JSON accept
    assert list(get_policy.query) == list(policy_capture["query"]) == ["action", "model"]
    assert get_policy.query == {"action": ["getPolicy"], "model": [MODEL]}
    assert get_policy.headers["authorization"] == f"Bearer {TEST_KEY}"
    assert get_policy.headers["accept"] == dict(policy_capture["headers"])["Accept"]
    # 2. the OSS form: the SDK's fields in its order, no key, Date and Accept like the SDK
    expected = [f["name"] for f in form_capture["multipart_fields"]]
    parts = _parse_form(form.headers["content-type"], form.body)
    assert [name for name, _, _ in parts] == expected == list(FORM_FIELDS)
    fields = {name: value for name, value, _ in parts}
    sdk = {f["name"]: f.get("value") for f in form_capture["multipart_fields"]}
    for name in ("x-oss-object-acl", "x-oss-forbid-overwrite", "success_action_status"):
        assert fields[name].decode() == sdk[name]
    assert fields["x-oss-content-type"] == b"audio/x-wav" == sdk["x-oss-content-type"].encode()
    assert fields["file"] == (audio / "speech_en.wav").read_bytes()
    assert parts[-1][2] == "speech_en.wav"  # the file part is named like the SDK's
    assert fields["key"].decode().endswith("-speech_en.wav")  # the key: unique prefix + name
    assert "authorization" not in form.headers
    assert form.headers["accept"] == dict(form_capture["headers"])["Accept"]
    assert form.headers["date"].endswith(" GMT")
    # 3. the call: oss:// of that key, with the resolve header
    key = fields["key"].decode()
    assert call.headers["x-dashscope-ossresourceresolve"] == "enable"
    assert dict(call_capture["headers"])["X-DashScope-OssResourceResolve"] == "enable"
    assert audio_values(emu) == [f"oss://{key}"]
    assert call.json["input"]["messages"][0]["content"][1] == {"text": "What is in this audio?"}


def test_five_turns_send_the_clip_bytes_once(
    session: Session, emu: Emulator, tmp_path: Path
) -> None:
    path = clip_30s(tmp_path)
    limits = session.backend(MODEL).limits(MODEL)
    prepared = _prepare.prepare(AudioClip.from_source(path), limits).size
    ask_audio(path, "Who speaks?", display=False)
    for question in ("In what mood?", "Any noise?", "Which language?", "Summarise."):
        answer = ask_audio(None, question, display=False)
    assert "4 earlier turns and 1 audio clip in all" in answer.text
    assert len(emu.policy_requests()) == 1 and len(emu.upload_requests()) == 1
    calls = emu.generation_requests()
    assert len(calls) == 5
    urls = {v for i in range(5) for v in audio_values(emu, i)}
    assert len(urls) == 1 and next(iter(urls)).startswith("oss://")
    total = sum(
        len(r.body) + sum(len(k) + len(v) + 4 for k, v in r.headers.items()) for r in emu.requests
    )
    assert total <= 1.1 * prepared + 50_000, (total, prepared)


def test_inline_mode_resends_base64_every_turn(
    session: Session, emu: Emulator, tmp_path: Path
) -> None:
    session.configure(upload="never")
    path = clip_30s(tmp_path)
    ask_audio(path, "Q1", display=False)
    ask_audio(None, "Q2", display=False)
    assert emu.upload_requests() == [] and emu.policy_requests() == []
    assert all(v.startswith("data:;base64,") for v in audio_values(emu))
    assert sum(len(r.body) for r in emu.requests) > 2 * 4 * path.stat().st_size // 3


def test_one_upload_per_clip_window_and_model(
    session: Session, emu: Emulator, tmp_path: Path
) -> None:
    path = clip_30s(tmp_path)
    ask_audio(path, "Q", display=False)
    ask_audio(path.read_bytes(), "Q", display=False, new=True)  # same bytes, other source
    ask_audio(path, "Q", display=False, conversation="other")
    assert len(emu.upload_requests()) == 1
    clip = AudioClip.from_source(path)
    ask_audio(clip[10:20], "Q", display=False, new=True)  # another window
    ask_audio(clip[10:20], "Q", display=False, new=True)
    assert len(emu.upload_requests()) == 2
    ask_audio(path, "Q", display=False, new=True, model="qwen-audio-turbo")  # another model
    assert len(emu.upload_requests()) == 3
    assert [r.query["model"] for r in emu.policy_requests()] == [[MODEL], ["qwen-audio-turbo"]]
    assert len(emu.oss) >= 3


def test_reupload_only_after_the_file_expires(
    session: Session, emu: Emulator, tmp_path: Path, monkeypatch
) -> None:
    path = clip_30s(tmp_path)
    ask_audio(path, "Q", display=False)
    first = audio_values(emu)[0]
    start = time.time()
    monkeypatch.setattr(_upload, "_now", lambda: start + 46.9 * 3600)
    ask_audio(None, "Still there?", display=False)
    assert len(emu.upload_requests()) == 1 and audio_values(emu)[0] == first
    monkeypatch.setattr(_upload, "_now", lambda: start + 47.1 * 3600)  # the 48 h are nearly up
    ask_audio(None, "And now?", display=False)
    assert len(emu.upload_requests()) == 2 and len(emu.policy_requests()) == 2
    assert audio_values(emu)[0] != first and audio_values(emu)[0].startswith("oss://")


def test_same_basename_never_collides(session: Session, emu: Emulator, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = clip_30s(tmp_path / "a", "take.wav", 220.0)
    two = clip_30s(tmp_path / "b", "take.wav", 330.0)
    ask_audio((one, two), "Compare", display=False)  # a tuple: two clips in one turn
    (url_one, url_two) = audio_values(emu)
    assert url_one != url_two and url_one.endswith("-take.wav") and url_two.endswith("-take.wav")
    assert len(emu.policy_requests()) == 1  # one policy serves both uploads
    assert emu.oss[url_one] == one.read_bytes() and emu.oss[url_two] == two.read_bytes()


def test_modes_and_where_uploads_exist(session: Session, emu: Emulator, audio: Path) -> None:
    assert upload_available("https://dashscope.aliyuncs.com/api/v1")
    assert not upload_available("https://dashscope-intl.aliyuncs.com/api/v1")
    assert not upload_available("http://dashscope.aliyuncs.com/api/v1")
    assert upload_available("http://127.0.0.1:8765/api/v1")
    assert upload_available("http://localhost:8765/api/v1")
    session.configure(upload="always", base_url="https://dashscope-intl.aliyuncs.com/api/v1")
    with pytest.raises(ConfigError, match="has no temporary file store"):
        ask_audio(audio / "speech_en.wav", "Q", display=False)
    session.configure(upload="auto")
    backend = session.backend(MODEL)
    assert not backend.uploading
    assert backend.limits(MODEL).max_audio_bytes == 7_000_000  # inline: the documented budget
    assert emu.requests == []


def test_config_trait_reaches_the_backend(ip, emu: Emulator, audio: Path) -> None:
    ip.run_line_magic("config", "QAudioMagic.upload = 'never'")
    ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "Q")
    assert audio_values(emu)[0].startswith("data:;base64,") and emu.upload_requests() == []
    ip.run_line_magic("config", "QAudioMagic.upload = 'auto'")
    ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "Q")
    assert audio_values(emu)[-1].startswith("oss://")


def test_upload_only_to_https_hosts() -> None:
    """A policy naming a plain-http host (not loopback both ends) is refused before any POST."""
    seen: list[httpx.Request] = []

    def service(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        data = {
            "policy": "cG9saWN5",
            "signature": "c2ln",
            "upload_dir": "dashscope-instant/x/2026-01-01/u",
            "upload_host": "http://oss.example.com",
            "oss_access_key_id": "AK",
            "expire_in_seconds": 300,
        }
        return httpx.Response(200, json={"request_id": "r", "data": data})

    for base in ("https://dashscope.aliyuncs.com/api/v1", "http://127.0.0.1:9/api/v1"):
        client = httpx.Client(transport=httpx.MockTransport(service))
        uploads = TemporaryUploads(client, base)
        audio = _prepare.prepare(
            AudioClip.from_bytes(_codec.wav_bytes(np.zeros((1, 8000)), 16_000)),
            __import__("qaudio_magic.models", fromlist=["lookup"]).lookup(MODEL).limits,
        )
        with pytest.raises(
            ConfigError, match=r"refusing to upload audio to http://oss\.example\.com"
        ):
            uploads.url_for(audio, MODEL, Secret("sk-unit-test-key"))
    assert [r.method for r in seen] == ["GET", "GET"]  # only getPolicy; nothing was posted


def test_emulator_checks_the_form(emu: Emulator) -> None:
    policy = httpx.get(
        f"{emu.base_url}/uploads",
        params={"action": "getPolicy", "model": MODEL},
        headers={"Authorization": f"Bearer {TEST_KEY}"},
    ).json()["data"]
    assert policy["upload_host"] == f"{emu.root}/oss"
    form = {
        "OSSAccessKeyId": policy["oss_access_key_id"],
        "Signature": policy["signature"],
        "policy": policy["policy"],
        "key": policy["upload_dir"] + "/x.wav",
        "x-oss-object-acl": "private",
        "x-oss-forbid-overwrite": "true",
        "success_action_status": "200",
        "x-oss-content-type": "audio/x-wav",
    }
    files = {"file": ("x.wav", b"RIFF....WAVE", None)}
    leaked = httpx.post(
        policy["upload_host"], data=form, files=files, headers={"Authorization": "Bearer k"}
    )
    assert leaked.status_code == 400 and "<Code>InvalidArgument</Code>" in leaked.text
    shuffled = httpx.post(policy["upload_host"], data=dict(reversed(form.items())), files=files)
    assert shuffled.status_code == 400 and "differ from the SDK" in shuffled.text
    outside = httpx.post(
        policy["upload_host"], data={**form, "key": "elsewhere/x.wav"}, files=files
    )
    assert outside.status_code == 403 and "<Code>AccessDenied</Code>" in outside.text
    forged = httpx.post(policy["upload_host"], data={**form, "Signature": "AAAA"}, files=files)
    assert forged.status_code == 403 and "SignatureDoesNotMatch" in forged.text
    assert httpx.post(policy["upload_host"], data=form, files=files).status_code == 200
    again = httpx.post(policy["upload_host"], data=form, files=files)
    assert again.status_code == 409 and "FileAlreadyExists" in again.text
    assert emu.oss[f"oss://{form['key']}"] == b"RIFF....WAVE"


def test_oss_urls_need_the_resolve_header(session: Session, emu: Emulator, audio: Path) -> None:
    ask_audio(audio / "speech_en.wav", "Q", display=False)
    body = emu.generation_requests()[-1].body
    headers = {"Authorization": f"Bearer {TEST_KEY}", "Content-Type": "application/json"}
    url = f"{emu.base_url}/services/aigc/multimodal-generation/generation"
    refused = httpx.post(url, content=body, headers=headers)
    assert refused.status_code == 400
    assert refused.json()["message"] == (
        "oss:// URLs need the header X-DashScope-OssResourceResolve: enable."
    )
    ok = httpx.post(
        url, content=body, headers={**headers, "X-DashScope-OssResourceResolve": "enable"}
    )
    assert ok.status_code == 200


def test_a_failed_upload_sends_no_call_and_keeps_the_conversation(
    session: Session, emu: Emulator, audio: Path
) -> None:
    emu.add_fault("status=403;code=AccessDenied;path=/oss;times=2")
    with pytest.raises(APIError) as err:
        ask_audio(audio / "speech_en.wav", "Q", display=False)
    assert str(err.value).startswith("OSS temporary upload error 403 AccessDenied: ")
    assert emu.generation_requests() == []
    assert len(emu.policy_requests()) == 2  # a 403 may be an expired policy: one fresh try
    assert session.conversations.current.turns == ()
    # a server fault on the upload is retried like any other
    session.configure(retries=1)
    emu.add_fault("status=500;path=/oss;times=1;retry_after=0")
    answer = ask_audio(audio / "speech_en.wav", "Q", display=False)
    assert "1 audio clip (5.11 s)" in answer.text and len(session.conversations.current) == 1


def test_unnamed_faults_hit_the_model_call_not_the_upload(
    session: Session, emu: Emulator, audio: Path
) -> None:
    emu.add_fault("status=429;code=Throttling.RateQuota;times=1")
    with pytest.raises(APIError) as err:
        ask_audio(audio / "speech_en.wav", "Q", display=False)
    assert (err.value.status, err.value.code) == (429, "Throttling.RateQuota")
    assert [r.status for r in emu.requests] == [200, 200, 429]  # policy, form, then the call


def test_slow_upload_fault_is_honoured(session: Session, emu: Emulator, audio: Path) -> None:
    emu.add_fault("slow_upload=0.3;times=1")  # slow_upload is about the OSS form alone
    started = time.perf_counter()
    ask_audio(audio / "tone_440hz_3s.wav", "Q", display=False)
    assert time.perf_counter() - started >= 0.3


def test_emulator_enforces_the_service_limits(emu: Emulator, media: Path) -> None:
    """Over 10 MB (base64 or oss://) and undecodable audio: the documented error shapes."""
    url = f"{emu.base_url}/services/aigc/multimodal-generation/generation"
    headers = {"Authorization": f"Bearer {TEST_KEY}", "X-DashScope-OssResourceResolve": "enable"}

    def call(audio: str) -> httpx.Response:
        body = {
            "model": MODEL,
            "parameters": {},
            "input": {"messages": [{"role": "user", "content": [{"audio": audio}]}]},
        }
        return httpx.post(url, json=body, headers=headers, timeout=30)

    big = (media / "long/big_65s_48k_stereo_12.5MB.wav").read_bytes()
    inline = call("data:;base64," + base64.b64encode(big[:8_000_000]).decode())
    assert inline.status_code == 400 and inline.json()["code"] == "InvalidParameter"
    assert "the limit is 10 MB" in inline.json()["message"]
    png = call(
        "data:;base64," + base64.b64encode((media / "bad/png_renamed.wav").read_bytes()).decode()
    )
    assert png.status_code == 400 and png.json()["message"] == "File format is not supported."
    emu.oss_store.put("dashscope-instant/emulator/t/big.wav", big, MODEL, "audio/x-wav")
    stored = call("oss://dashscope-instant/emulator/t/big.wav")
    assert stored.status_code == 400 and "larger than 10 MB" in stored.json()["message"]
    missing = call("oss://dashscope-instant/emulator/t/none.wav")
    assert (
        missing.status_code == 400 and "does not exist or has expired" in missing.json()["message"]
    )
