"""Record in a real browser and ask about the take: Lab 4 and Notebook 7, fake microphone.

Chromium's fake capture device plays notebooks/audio/speech_en.wav; ipywebrtc records it
as WebM/Opus; the take crosses the server's websocket to the kernel, is re-encoded for
DashScope and reaches the emulator, which decodes it. The tests check what a user sees
(the refusal before a take, the status line, the answer and its player, no widget errors),
that the emulator got about as many seconds of audio as were recorded, the upload fallback,
the length cap, a refused microphone, and a take dropped by the server's 10 MiB limit.
The server keeps its default websocket_max_message_size, as a user's would.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from qaudio_magic._codec import decode
from qaudio_magic.emulator import Emulator

from ..conftest import AUDIO
from .conftest import APPS, NotebookPage

RECORD_SECONDS = 3.0


def _kernel_eval(client, expr: str) -> object:
    """Evaluate ``expr`` in the notebook's kernel (a second client shares its namespace)."""
    keep = _Keep()
    reply = client.execute_interactive(
        f"import json as _j; print(_j.dumps({expr}))", timeout=60, output_hook=keep
    )
    assert reply["content"]["status"] == "ok", reply["content"]
    return json.loads(keep.text)


class _Keep:
    def __init__(self) -> None:
        self.text = ""

    def __call__(self, msg: dict) -> None:
        if msg["msg_type"] == "stream":
            self.text += msg["content"]["text"]


@pytest.mark.parametrize("app", APPS)
def test_record_then_ask(open_notebook, jupyter, browser_emulator: Emulator, app: str) -> None:
    name = f"recording_{app}.ipynb"
    nb = open_notebook(
        name,
        [
            "%load_ext qaudio_magic",
            "%qaudio record mic",
            "%%qaudio mic\nTranscribe this and tell me what language it is.",
            "print('DONE')",
        ],
        app,
    )
    nb.run_all()
    # before any take, asking refuses with one clear line (and Run All stops there)
    nb.output("press record first")
    status = nb.panel.locator(".jp-OutputArea-output", has_text="Press Record").first
    status.wait_for(timeout=60_000)
    record = nb.panel.locator("button", has_text="Record").first
    clicked = time.monotonic()
    record.click()
    nb.output("Recording…", timeout=60)
    time.sleep(RECORD_SECONDS)
    nb.panel.locator("button", has_text="Stop").first.click()
    nb.output("Take 1", timeout=60)
    held = time.monotonic() - clicked  # the take was recorded within this span
    assert "opus 48 kHz mono" in nb.output("Take 1").inner_text()

    before = len(browser_emulator.generation_requests())
    nb.panel.locator(".jp-Cell").nth(2).locator(".jp-InputPrompt").click()
    nb.page.get_by_role("menuitem", name="Run", exact=True).first.click()
    nb.page.get_by_text("Run Selected Cell and All Below", exact=True).first.click()
    nb.output("DONE")
    answer = nb.output("Emulated answer")
    assert "1 audio clip" in answer.inner_text()
    assert "Transcribe this" in answer.inner_text()
    cell = nb.panel.locator(".jp-Cell").nth(2)
    assert cell.locator("audio").count() >= 1, "no player next to the answer"
    nb.assert_no_widget_errors()

    requests = browser_emulator.generation_requests()
    assert len(requests) == before + 1
    received = requests[-1].audio[0]
    assert received.error is None and received.duration is not None
    client = jupyter.kernel_client(name)
    try:
        duration, codec, n = _kernel_eval(  # type: ignore[misc]
            client, "[mic.takes[-1].duration, mic.takes[-1].info.codec, len(mic.takes)]"
        )
        assert (codec, n) == ("opus", 1)
        # what was recorded reached the model: same length after re-encoding, and about the
        # time the button was held: at least the seconds slept between Record and Stop (less
        # what the browser takes to start), at most the span from Record's click to the take
        assert abs(received.duration - duration) < 0.1, (received.duration, duration)
        assert RECORD_SECONDS - 1.0 < received.duration <= held, (received.duration, held)
        pcm = decode(received.data)
        assert float(np.sqrt(np.mean(pcm**2))) > 0.01, "the take reached the model as silence"

        # the fallback: a file uploaded in the recorder becomes the next take
        with nb.page.expect_file_chooser() as chooser:
            nb.panel.locator("button", has_text="Upload audio").first.click()
        chooser.value.set_files(str(AUDIO / "en_mp3_64k.mp3"))
        assert "mp3" in nb.output("Take 2 (en_mp3_64k.mp3)", timeout=60).inner_text()
        assert _kernel_eval(client, "[mic.takes[-1].info.codec, len(mic._upload.value)]") == [
            "mp3",
            0,
        ]

        # too long: the kernel stops the take at the cap by itself, and says so
        _kernel_eval(client, "setattr(mic, 'max_seconds', 1.5)")
        clicked = time.monotonic()
        nb.panel.locator("button", has_text="Record").first.click()
        capped = nb.output("Take 3", timeout=60).inner_text()
        held = time.monotonic() - clicked
        assert "stopped at the 1.5 s limit" in capped, capped
        (seconds,) = _kernel_eval(client, "[mic.takes[-1].duration]")  # type: ignore[misc]
        assert 0.8 < seconds <= held, (seconds, held)
    finally:
        client.stop_channels()
    nb.assert_no_widget_errors()

    # saved with the app's defaults, the notebook holds no recording bytes
    path = jupyter.root / name
    saved_before = path.stat().st_mtime
    nb.page.keyboard.press("Control+s")
    deadline = time.monotonic() + 60
    while path.stat().st_mtime == saved_before and time.monotonic() < deadline:
        time.sleep(0.2)
    text = path.read_text()
    assert "DONE" in text and "mic take 1" in text  # the answer says which take it was about
    assert "GkXfo" not in text, "WebM bytes (base64) were saved in the notebook"
    assert len(text) < 30_000, f"saved notebook is {len(text)} bytes"


# What Chromium answers when the user (or a headless browser nobody answers) refuses the
# microphone, and what VS Code answers every widget: seen by hand here with a Chromium
# launched without --use-fake-ui-for-media-stream. The shared browser grants the microphone
# and one pytest process can drive only one Playwright, so the page gets that refusal itself.
REFUSE_MICROPHONE = """
navigator.mediaDevices.getUserMedia = () =>
    Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
"""


def test_refused_microphone_says_so_and_upload_still_works(jupyter, browser) -> None:
    name = "recording_refused.ipynb"
    jupyter.write_notebook(
        name,
        [
            "%load_ext qaudio_magic",
            "from qaudio_magic import Recorder\nmic = Recorder('mic', arrival_timeout=2)\nmic",
        ],
    )
    page = browser.new_page()
    try:
        page.add_init_script(REFUSE_MICROPHONE)
        page.goto(f"{jupyter.url}/lab/tree/{name}?reset")
        nb = NotebookPage(page, jupyter, name, "lab")
        nb.panel.locator(".jp-Cell").first.wait_for(timeout=60_000)
        nb.wait_kernel_idle()
        nb.run_all()
        nb.panel.locator("button", has_text="Record").first.click()
        nb.output("Recording…", timeout=60)
        time.sleep(0.5)
        nb.panel.locator("button", has_text="Stop").first.click()
        warning = nb.output("no recording arrived from the browser", timeout=60).inner_text()
        assert "microphone may be blocked" in warning and "Upload" in warning
        with page.expect_file_chooser() as chooser:
            nb.panel.locator("button", has_text="Upload audio").first.click()
        chooser.value.set_files(str(AUDIO / "en_opus_stream.webm"))
        assert "5.1 s" in nb.output("Take 1 (en_opus_stream.webm)", timeout=60).inner_text()
        nb.assert_no_widget_errors()
    finally:
        page.close()
        jupyter.shutdown_kernels()


# ipywebrtc's own onstop code (jupyter-webrtc 0.6.0, AudioRecorderModel.updateRecord): a blob
# URL, then the take's bytes, each saved to the kernel. Here the take is 11 MiB, over the
# server's default websocket_max_message_size, which drops it without any error.
DELIVER_HUGE_TAKE = """() => {
    const recorder = window.last_audio_recorder;
    recorder.set('_data_src', 'blob:http://127.0.0.1/huge-take');
    recorder.save_changes();
    const audio = recorder.get('audio');
    audio.set('value', new DataView(new Uint8Array(11 * 1024 * 1024).buffer));
    audio.save_changes();
}"""


def test_take_over_the_message_limit_is_not_lost_silently(jupyter, browser) -> None:
    name = "recording_huge.ipynb"
    jupyter.write_notebook(
        name,
        [
            "%load_ext qaudio_magic",
            "from qaudio_magic import Recorder\nmic = Recorder('mic', arrival_timeout=10)\nmic",
        ],
    )
    page = browser.new_page()
    try:
        page.add_init_script(REFUSE_MICROPHONE)  # the real recorder stays silent here
        page.goto(f"{jupyter.url}/lab/tree/{name}?reset")
        nb = NotebookPage(page, jupyter, name, "lab")
        nb.panel.locator(".jp-Cell").first.wait_for(timeout=60_000)
        nb.wait_kernel_idle()
        nb.run_all()
        nb.panel.locator("button", has_text="Record").first.click()
        nb.output("Recording…", timeout=60)
        nb.panel.locator("button", has_text="Stop").first.click()
        nb.output("receiving the take", timeout=60)
        page.evaluate(DELIVER_HUGE_TAKE)
        warning = nb.output("never reached the kernel", timeout=60).inner_text()
        assert "10 MiB message limit" in warning and "upload a file" in warning
        nb.assert_no_widget_errors()
    finally:
        page.close()
        jupyter.shutdown_kernels()
