"""The recorder in the kernel, without a browser: messages arrive as the front end sends them.

``front_end`` hands a widget the exact comm message a browser sends (state plus binary
buffers, which arrive as memoryviews), so the recorder's own code path runs. The take is
notebooks/audio/en_opus_stream.webm: WebM/Opus written like a browser's MediaRecorder, with
no duration in its header. The real-browser run is tests/e2e/test_recording_browser.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from qaudio_magic import AudioClip, InputError, Recorder, ask_audio
from qaudio_magic.emulator import Emulator
from qaudio_magic.recorder import MESSAGE_LIMIT_BYTES

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def front_end(
    widget: Any, state: dict[str, Any], buffers: dict[tuple, bytes] | None = None
) -> None:
    """Deliver an update the way the browser does: binary parts as memoryview buffers."""
    paths = [list(p) for p in (buffers or {})]
    msg = {
        "content": {"data": {"method": "update", "state": state, "buffer_paths": paths}},
        "buffers": [memoryview(b) for b in (buffers or {}).values()],
    }
    widget._handle_msg(msg)


def browser_take(rec: Recorder, data: bytes) -> None:
    """What ipywebrtc's front end sends when a recording stops: a blob URL, then the bytes."""
    front_end(rec._webrtc, {"_data_src": "blob:http://127.0.0.1/take"})
    front_end(rec._player, {}, {("value",): data})


def browser_upload(rec: Recorder, path: Path, mime: str = "") -> None:
    data = path.read_bytes()
    item = {"name": path.name, "type": mime, "size": len(data), "last_modified": 0}
    front_end(rec._upload, {"value": [item]}, {("value", 0, "content"): data})


def wait_for(check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll until ``check()`` holds; the timeout only ends a test that is already failing."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def webm(audio: Path) -> bytes:
    path = audio / "en_opus_stream.webm"
    with av.open(str(path)) as container:  # the point of this fixture: no duration in the header
        assert container.duration is None and container.streams.audio[0].duration is None
    return path.read_bytes()


def test_record_a_take_and_ask_about_it(ip, emu: Emulator, webm: bytes) -> None:
    with capture_output() as cap:
        ip.run_line_magic("qaudio", "record mic")
    mic = ip.user_ns["mic"]
    assert isinstance(mic, Recorder)
    assert WIDGET_VIEW in cap.outputs[0].data
    assert "Press Record" in mic.status
    assert mic._player.autoplay is False and mic._player.loop is False

    mic._button.click()  # what a click in the browser runs in the kernel
    assert mic._webrtc.recording is True, "the browser was not told to record"
    assert "Recording…" in mic.status and mic._button.description == "Stop"
    with pytest.raises(UsageError, match="mic: still recording — press Stop first"):
        ip.run_cell_magic("qaudio", "mic", "Too early")
    mic._button.click()
    assert mic._webrtc.recording is False
    assert "receiving the take" in mic.status
    with pytest.raises(UsageError, match="still on its way from the browser"):
        ip.run_cell_magic("qaudio", "mic", "Still too early")
    assert emu.generation_requests() == []
    browser_take(mic, webm)
    assert "Take 1: 5.1 s · opus 48 kHz mono" in mic.status
    assert "mic now means this take" in mic.status and mic._button.description == "Record"

    answer = ip.run_cell_magic("qaudio", "mic", "Transcribe this and tell me what language it is.")
    assert "1 audio clip (5.11 s)" in answer.text
    received = emu.generation_requests()[-1].audio[0]
    assert received.codec == "pcm_s16le", "DashScope does not take WebM: it must be re-encoded"
    assert received.duration == pytest.approx(5.11, abs=0.02)
    take = mic.takes[0]
    assert (take.kind, take.name) == ("recording", "mic take 1")
    assert answer.clips[0].sha256 == take.sha256

    # a second take: `mic` now means it, the first one stays in mic.takes
    mic.start()
    mic.stop()
    browser_take(mic, webm)
    assert len(mic.takes) == 2 and "Take 2" in mic.status and "1 earlier in mic.takes" in mic.status
    assert AudioClip.from_source(mic) is mic.takes[1]
    answer = ask_audio(mic, "And this one?", new=True)
    assert answer.clips[0] is mic.takes[1]


def test_no_take_yet_refuses_before_sending(ip, emu: Emulator) -> None:
    ip.run_line_magic("qaudio", "record mic")
    with pytest.raises(UsageError, match="mic: no take yet — press record first"):
        ip.run_cell_magic("qaudio", "mic", "What is said?")
    with pytest.raises(InputError, match="press record first"):
        ask_audio(ip.user_ns["mic"], "What is said?")
    assert emu.generation_requests() == []


def test_upload_is_a_take_too(ip, emu: Emulator, audio: Path) -> None:
    ip.run_line_magic("qaudio", "record mic")
    mic = ip.user_ns["mic"]
    browser_upload(mic, audio / "en_mp3_64k.mp3", "audio/mpeg")
    assert "Take 1 (en_mp3_64k.mp3):" in mic.status and "mp3" in mic.status
    assert mic._upload.value == (), "uploaded bytes must leave the widget state"
    shown = mic.take_player  # the same waveform player as every clip's
    assert shown.clip.read_bytes() == (audio / "en_mp3_64k.mp3").read_bytes()
    assert shown.audio.mime == "audio/mpeg" and shown.duration == pytest.approx(5.2, abs=0.2)
    assert bytes(mic._player.value) == b"", "the take's bytes live in one model only"
    answer = ip.run_cell_magic("qaudio", "mic", "What is said?")
    assert "1 audio clip" in answer.text and answer.clips[0].kind == "recording"

    # a file that holds no audio: one clear line, and `mic` keeps meaning the good take
    bad = audio.parent / "quickstart.ipynb"
    browser_upload(mic, bad, "application/json")
    assert "⚠" in mic.status and "not a readable audio file" in mic.status
    assert len(mic.takes) == 1 and AudioClip.from_source(mic) is mic.takes[0]


def test_upload_when_the_microphone_is_refused(ip, audio: Path) -> None:
    """Nothing arrives after Stop (permission denied, VS Code): say why, offer the upload."""
    mic = Recorder("mic", arrival_timeout=0.1)
    mic.start()
    mic.stop()
    wait_for(lambda: "no recording arrived" in mic.status)
    assert "microphone may be blocked" in mic.status and "VS Code" in mic.status
    assert "Upload an audio file below" in mic.status
    with pytest.raises(InputError, match=r"press record first.*microphone may be blocked"):
        mic._as_audio_clip_()
    browser_upload(mic, audio / "en_opus_stream.webm")  # no MIME type from the browser
    assert "Take 1 (en_opus_stream.webm): 5.1 s" in mic.status
    # another try that brings nothing: `mic` keeps its take, and the player shows it again
    mic.start()
    assert mic.take_player is None and mic._meter.active, "the level meter runs while recording"
    mic.stop()
    assert not mic._meter.active
    wait_for(lambda: "no recording arrived" in mic.status)
    assert "mic still means take 1" in mic.status
    assert mic.take_player.clip.read_bytes() == mic.takes[0].read_bytes()
    assert mic.take_player.audio.mime == "audio/webm"


def test_too_long_take_stops_itself_and_says_so(webm: bytes) -> None:
    mic = Recorder("mic", max_seconds=0.3)
    mic.start()
    wait_for(lambda: not mic.recording)
    assert mic._webrtc.recording is False, "the browser was not told to stop"
    assert "Stopped at the 0.3 s limit" in mic.status
    browser_take(mic, webm)
    assert "stopped at the 0.3 s limit" in mic.status and len(mic.takes) == 1


def test_lost_take_over_the_message_limit_is_reported(webm: bytes) -> None:
    """The browser recorded (blob URL arrived) but the bytes never came: say so, not nothing."""
    # the blob URL must be seen before the kernel gives up waiting: a second leaves room
    # for any machine between two lines of this test
    mic = Recorder("mic", arrival_timeout=1.0)
    mic.start()
    mic.stop()
    front_end(mic._webrtc, {"_data_src": "blob:http://127.0.0.1/take"})
    wait_for(lambda: "never reached the kernel" in mic.status)
    assert "10 MiB message limit" in mic.status and "websocket_max_message_size" in mic.status
    with pytest.raises(InputError, match="never reached the kernel"):
        mic._as_audio_clip_()
    front_end(mic._player, {}, {("value",): webm})  # a slow take that does arrive after all
    assert "Take 1" in mic.status and len(mic.takes) == 1


def test_cap_follows_the_measured_bit_rate(audio: Path) -> None:
    """A browser recording at a high bit rate gets a shorter cap, under the message limit."""
    mic = Recorder("mic")
    assert "at most 5:00 a take" in mic.status
    wav = (audio / "speech_en.wav").read_bytes()  # 16-bit PCM: 32 kB per second
    mic.start()
    mic.stop()
    browser_take(mic, wav)
    cap = mic._cap()
    assert cap < 300 and cap * len(wav) / mic.takes[0].duration < MESSAGE_LIMIT_BYTES
    mic.start()
    assert f"stops by itself at {int(cap) // 60}:{int(cap) % 60:02d}" in mic.status
    mic.stop()


def test_vscode_is_told_to_upload(ip) -> None:
    ip.user_ns["__vsc_ipynb_file__"] = "/tmp/x.ipynb"  # what VS Code puts in its kernels
    try:
        mic = Recorder("mic")
    finally:
        del ip.user_ns["__vsc_ipynb_file__"]
    assert "VS Code notebooks cannot use the microphone" in mic.status
    assert "upload an audio file below" in mic.status


def test_saved_output_holds_no_audio(ip, webm: bytes) -> None:
    with capture_output() as cap:
        ip.run_line_magic("qaudio", "record mic")
    mic = ip.user_ns["mic"]
    browser_take(mic, webm)
    bundle = mic._repr_mimebundle_()
    assert set(bundle) == {"text/plain", WIDGET_VIEW}
    assert "Recorder('mic'" in bundle["text/plain"]
    shown = repr([o.data for o in cap.outputs]) + repr(bundle)
    assert len(shown) < 1000, "recording bytes leaked into the cell's outputs"
    # the take crossed the socket once: the kernel does not echo it back to the browser
    assert mic._player.trait_metadata("value", "echo_update") is False


def test_record_subcommand_arguments(ip) -> None:
    ip.run_line_magic("qaudio", "record voice --max 45")
    voice = ip.user_ns["voice"]
    assert voice.max_seconds == 45 and "at most 45 s a take" in voice.status
    voice.add(Path(__file__).parents[1] / "notebooks" / "audio" / "speech_en.wav")
    with capture_output():
        ip.run_line_magic("qaudio", "record voice")  # re-running the cell keeps the takes
    assert ip.user_ns["voice"] is voice and len(voice.takes) == 1
    for bad in ("record 1x", "record a b", "record mic --max 0", "record mic --max x"):
        with pytest.raises(UsageError, match="usage: %qaudio record"):
            ip.run_line_magic("qaudio", bad)
    with capture_output() as cap:
        ip.run_line_magic("qaudio", "help")
    assert "%qaudio record [NAME]" in cap.stdout


@pytest.mark.slow
@pytest.mark.parametrize("store_widget_state", [False, True])
def test_recording_notebook_runs_and_saves_small(audio: Path, store_widget_state: bool) -> None:
    """notebooks/recording.ipynb runs headless; saved, it holds audio only if widget state is on."""
    import base64
    import os

    import nbformat
    from nbclient import NotebookClient

    root = audio.parents[1]
    nb = nbformat.read(root / "notebooks" / "recording.ipynb", as_version=4)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        store_widget_state=store_widget_state,
        resources={"metadata": {"path": str(root / "notebooks")}},
    )
    client.km = client.create_kernel_manager()
    client.km.kernel_spec  # noqa: B018 - resolve the spec before starting
    client.execute(env=env)
    text = nbformat.writes(nb)
    assert "This message has 1 audio clip (5.11 s)" in text
    assert "Take 1 (en_opus_stream.webm): 5.1 s" in text
    take = base64.b64encode((audio / "en_opus_stream.webm").read_bytes()).decode()
    if store_widget_state:  # what the README says: the recorder's current take, once
        assert text.count(take[:2000]) == 1
    else:
        assert take[:100] not in text and "GkXfo" not in text
        assert len(text) < 30_000


def test_close_drops_every_widget(webm: bytes) -> None:
    """What ``mic.close()`` promises in the README: no widget (hence no take) left to save."""
    mic = Recorder("mic")
    browser_take(mic, webm)
    mic.start()  # closing mid-take stops it; `mic` keeps meaning the last take that arrived
    parts = [mic._player, mic._upload, mic._button, mic._status, mic._webrtc, mic._stream]
    assert all(w.comm is not None for w in parts)
    mic.close()
    assert all(w.comm is None for w in parts) and not mic.recording
    assert mic._as_audio_clip_() is mic.takes[0], "the takes stay usable from Python"


@pytest.mark.parametrize(
    ("fmt", "file", "codec"),
    [("ogg", "en_opus.opus", "opus"), ("mp4", "en_aac_fragmented.mp4", "aac")],
)
def test_other_browsers_containers(
    session, emu: Emulator, media: Path, fmt: str, file: str, codec: str
) -> None:
    """Firefox can record Ogg/Opus, Safari fragmented MP4/AAC: same path, same result."""
    mic = Recorder("mic", format=fmt)
    mic.start()
    assert mic._webrtc.format == fmt and mic._player.format == fmt
    mic.stop()
    browser_take(mic, (media / "formats" / file).read_bytes())
    assert mic.takes[0].info.codec == codec
    answer = ask_audio(mic, "What is said?")
    assert answer.clips[0] is mic.takes[0]
    assert emu.generation_requests()[-1].audio[0].duration == pytest.approx(5.1, abs=0.1)
