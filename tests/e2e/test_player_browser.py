"""The waveform player in a real browser (JupyterLab 4 and Notebook 7).

An emulated answer with times renders chips; clicking one plays exactly that segment
(``currentTime`` read from the page's ``<audio>``); dragging on the waveform selects a
region that reaches ``player.selection`` in the kernel, and ``%%qaudio --selection`` then
asks about just that part.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from qaudio_magic.emulator import Emulator

from .conftest import APPS, JupyterServer

WORDS = "words_at_1.5s_and_4.0s.wav"  # silence, "apple" 1.500–1.851 s, "orange" 4.000–4.426 s
ANSWER = "'apple' 从第1.5秒开始出现,至第1.85秒结束; 'orange' is heard at around 4 s."

RECORD_PLAYBACK = """a => {
  const seen = (window.__qaudio = {});
  a.addEventListener("playing", () => {
    seen.start = a.currentTime; seen.t0 = performance.now();
  }, { once: true });
  a.addEventListener("pause", () => {
    seen.end = a.currentTime; seen.t1 = performance.now();
  }, { once: true });
}"""


def kernel_run(client: Any, code: str, timeout: float = 60) -> str:
    """Run ``code`` in the notebook's kernel through a second client; its printed text."""
    out: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("ERROR " + msg["content"]["ename"] + ": " + msg["content"]["evalue"])

    client.execute_interactive(code, output_hook=hook, timeout=timeout)
    return "".join(out)


@pytest.mark.parametrize("app", APPS)
def test_chips_play_their_segment_and_a_drag_selects(
    open_notebook, jupyter: JupyterServer, browser_emulator: Emulator, app: str
) -> None:
    name = f"player_{app}.ipynb"
    nb = open_notebook(
        name,
        [
            "%load_ext qaudio_magic",
            f"%%qaudio audio/{WORDS}\nWhere are 'apple' and 'orange'?",
            "print('DONE')",
        ],
        app,
    )
    console: list[str] = []
    nb.page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    browser_emulator.reply_with(ANSWER)
    nb.run_all()
    nb.output("DONE")

    player = nb.panel.locator(".qaudio-player")
    assert player.count() == 1
    chips = player.locator(".qaudio-chip")
    chips.first.wait_for(timeout=60_000)
    assert chips.all_inner_texts() == ["1.5–1.85 s", "4 s"]  # icons are SVG, not characters
    assert player.locator(".qaudio-seg").count() == 2
    answer = nb.output("◷ times: 1.5–1.85 s, 4 s")
    assert "从第1.5秒开始出现" in answer.inner_text()

    audio = player.locator("audio")
    assert audio.count() == 1
    audio.evaluate(
        "a => a.readyState >= 1 || new Promise(r => a.addEventListener('loadedmetadata', r))"
    )
    assert audio.evaluate("a => [a.paused, a.autoplay, a.loop, a.currentTime]") == [
        True,
        False,
        False,
        0,
    ], "nothing plays by itself"
    assert audio.evaluate("a => a.duration") == pytest.approx(6.0, abs=0.01)

    # --- a chip plays exactly its segment: from 1.5 s, paused at 1.85 s
    audio.evaluate(RECORD_PLAYBACK)
    chips.nth(0).click()
    nb.page.wait_for_function("() => window.__qaudio && window.__qaudio.end !== undefined")
    seen = nb.page.evaluate("() => window.__qaudio")
    assert seen["start"] == pytest.approx(1.5, abs=0.06)
    assert 1.85 - 0.01 <= seen["end"] <= 1.85 + 0.1
    assert (seen["t1"] - seen["t0"]) / 1000 >= 0.2, "it really played, in real time"
    time.sleep(0.3)
    paused, now = audio.evaluate("a => [a.paused, a.currentTime]")
    assert paused and now == pytest.approx(seen["end"], abs=1e-6), "it stays paused at the end"

    # --- so does a click on the highlighted region of the waveform
    region = player.locator(".qaudio-seg").nth(0)
    audio.evaluate(RECORD_PLAYBACK)
    region.click()
    nb.page.wait_for_function("() => window.__qaudio && window.__qaudio.end !== undefined")
    seen = nb.page.evaluate("() => window.__qaudio")
    assert seen["start"] == pytest.approx(1.5, abs=0.06)
    assert 1.85 - 0.01 <= seen["end"] <= 1.85 + 0.1

    # --- a point in time plays the speech it lands on: 'orange', 4.0–4.43 s
    audio.evaluate(RECORD_PLAYBACK)
    chips.nth(1).click()
    nb.page.wait_for_function(
        "() => window.__qaudio && window.__qaudio.end !== undefined", timeout=60_000
    )
    seen = nb.page.evaluate("() => window.__qaudio")
    assert seen["start"] == pytest.approx(4.0, abs=0.06)
    assert 4.426 - 0.1 <= seen["end"] <= 4.426 + 0.12

    # --- a drag on the waveform selects 1.0–3.0 s, and the kernel sees it
    wave = player.locator(".qaudio-wave")
    box = wave.bounding_box()
    y = box["y"] + box["height"] / 2
    nb.page.mouse.move(box["x"] + box["width"] * 1 / 6, y)
    nb.page.mouse.down()
    nb.page.mouse.move(box["x"] + box["width"] * 3 / 6, y, steps=12)
    nb.page.mouse.up()
    player.locator(".qaudio-chip-sel").wait_for()
    px = 6.0 / box["width"]  # one pixel in seconds

    client = jupyter.kernel_client(name)
    try:
        selection = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            got = kernel_run(
                client,
                "from qaudio_magic.player import selected_player\n"
                "print(selected_player().selection)",
            ).strip()
            if got.startswith("("):
                selection = tuple(float(v) for v in got.strip("()").split(","))
                break
            time.sleep(0.3)
        assert selection is not None, f"the selection never reached the kernel: {got}"
        assert selection == pytest.approx((1.0, 3.0), abs=2 * px)

        before = len(browser_emulator.generation_requests())
        printed = kernel_run(
            client,
            "%%qaudio --selection --new\nWhat is said in this part?\n",
        )
        assert "ERROR" not in printed, printed
        assert len(browser_emulator.generation_requests()) == before + 1
        body = kernel_run(client, "print(_.text)")
        heard = re.search(r"1 audio clip \(([\d.]+) s\)", body)
        assert heard, body
        assert float(heard.group(1)) == pytest.approx(selection[1] - selection[0], abs=0.011)
    finally:
        client.stop_channels()

    nb.assert_no_widget_errors()
    assert not [c for c in console if "qaudio" in c.lower() or "anywidget" in c.lower()], console


THIRTY_MINUTES = """
import numpy as np
from pathlib import Path
from qaudio_magic import _codec
from qaudio_magic.player import Player
speech = _codec.decode(Path("audio/speech_en.wav"))
minute = _codec.encode(np.resize(speech, 60 * 16_000), 16_000, "mp3")
Path("long_30min.mp3").write_bytes(minute * 30)  # MP3 frames concatenate: 30 minutes
long = Player("long_30min.mp3", segments=[(1500.0, 1501.5)])
long
"""


def test_a_thirty_minute_clip_stays_usable(open_notebook, jupyter: JupyterServer) -> None:
    """A 30-minute MP3 (10.8 MB, sent once): waveform drawn, a chip at 25:00 plays its part."""
    nb = open_notebook("player_long.ipynb", [THIRTY_MINUTES, "print('DONE')"], "lab")
    nb.run_all()
    nb.output("DONE", timeout=120)
    player = nb.panel.locator(".qaudio-player")
    chip = player.locator(".qaudio-chip")
    chip.wait_for(timeout=60_000)
    assert chip.inner_text() == "25:00–25:01.5"
    audio = player.locator("audio")
    audio.evaluate(
        "a => a.readyState >= 1 || new Promise(r => a.addEventListener('loadedmetadata', r))"
    )
    # each concatenated 60 s MP3 brings its encoder delay and padding: ~1803.7 s in all
    assert 1800.0 <= audio.evaluate("a => a.duration") <= 1806.0
    drawn = player.locator("canvas").evaluate(
        "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"
    )
    assert drawn > 1000, "the waveform was drawn from the peaks"

    # zoomed as deep as it goes (50 ms per 100 px) at 25:00, the kernel sends finer peaks
    wave = player.locator(".qaudio-wave")
    audio.evaluate("a => { a.currentTime = 1500.2; }")
    wave.focus()
    for _ in range(20):
        nb.page.keyboard.press("+")
    a, b = (float(v) for v in player.evaluate("r => [r.dataset.viewStart, r.dataset.viewEnd]"))
    px = wave.evaluate("w => w.clientWidth")
    assert b - a == pytest.approx(0.05 * px / 100, abs=0.002) and a < 1500.2 < b
    nb.page.wait_for_function(
        "r => r.dataset.detail && r.dataset.detail.length > 0",
        arg=player.element_handle(),
        timeout=30_000,
    )
    lo, hi = (float(v) for v in player.evaluate("r => r.dataset.detail.split('-')"))
    assert lo <= a and hi >= b, "the detail covers the view"
    audio.evaluate(RECORD_PLAYBACK)
    chip.click()
    nb.page.wait_for_function(
        "() => window.__qaudio && window.__qaudio.end !== undefined", timeout=60_000
    )
    seen = nb.page.evaluate("() => window.__qaudio")
    assert seen["start"] == pytest.approx(1500.0, abs=0.1)
    assert 1501.5 - 0.01 <= seen["end"] <= 1501.5 + 0.15
    nb.assert_no_widget_errors()
