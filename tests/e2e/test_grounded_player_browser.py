"""The grounded player in a real browser (JupyterLab 4 and Notebook 7).

An emulated answer names a spoken word a little off its true place and a range of
silence: the word's chip plays the *snapped* range (``currentTime`` of the page's
``<audio>``), the silent one is hollow and says "nothing audible here". The spectrogram
toggle shows an image; zoom (button and keyboard) changes the visible span and fetches
finer detail from the kernel; starting one player pauses the other. The ``--windows``
timeline shows each window's answer with its times as absolute, clickable file times.

Screenshots go to ``$QAUDIO_SCREENS`` when it is set (they are looked at by people).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from qaudio_magic.emulator import Emulator

from .conftest import APPS

WORDS = "words_at_1.5s_and_4.0s.wav"  # silence, "apple" 1.500–1.851 s, "orange" 4.000–4.426 s
ANSWER = "'apple' is heard from 1.56 to 1.93 seconds; a dog barks from 2.5 to 3.2 s."
LONG = "long/long_95s_markers_32k.mp3"  # a beep at 10k s, then "Marker k …" at 10k + 0.75 s
RECORD_PLAYBACK = """a => {
  const seen = (window.__qaudio = {});
  a.addEventListener("playing", () => { seen.start = a.currentTime; }, { once: true });
  a.addEventListener("pause", () => { seen.end = a.currentTime; }, { once: true });
}"""
WAIT_META = "a => a.readyState >= 1 || new Promise(r => a.addEventListener('loadedmetadata', r))"


def _shot(locator: Any, name: str) -> None:
    folder = os.environ.get("QAUDIO_SCREENS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        locator.screenshot(path=str(Path(folder) / f"{name}.png"))


def _hide_toasts(page: Any) -> None:
    page.add_style_tag(content=".Toastify, .jp-toast-container { display: none !important; }")


def _view(player: Any) -> tuple[float, float]:
    a, b = player.evaluate("r => [r.dataset.viewStart, r.dataset.viewEnd]")
    return float(a), float(b)


@pytest.mark.parametrize("app", APPS)
def test_grounded_chips_spectrogram_zoom_and_one_player_at_a_time(
    open_notebook, browser_emulator: Emulator, app: str
) -> None:
    nb = open_notebook(
        f"grounded_{app}.ipynb",
        [
            "%load_ext qaudio_magic",
            f"%%qaudio audio/{WORDS}\nWhere is 'apple'? ({time.time()})",
            "from qaudio_magic.player import Player\nother = Player('audio/speech_en.wav')\nother",
            "print('DONE')",
        ],
        app,
    )
    _hide_toasts(nb.page)
    browser_emulator.reply_with(ANSWER)
    nb.run_all()
    nb.output("DONE")
    players = nb.panel.locator(".qaudio-player")
    assert players.count() == 2
    first, second = players.nth(0), players.nth(1)
    chips = first.locator(".qaudio-chip")
    chips.first.wait_for(timeout=15_000)
    assert chips.all_inner_texts() == ["1.56–1.93 s", "2.5–3.2 s"]
    assert first.locator(".qaudio-band-speech").count() == 2, "the speech band shows both words"

    # --- the grounded chip: tooltip gives both ranges, click plays the snapped one
    word = chips.nth(0)
    assert word.get_attribute("data-status") == "speech"
    title = word.get_attribute("title")
    assert "model said 1.56–1.93 s; speech at 1.5–1.8" in title, title
    snapped = float(word.get_attribute("data-start")), float(word.get_attribute("data-end"))
    assert snapped[0] == pytest.approx(1.5, abs=0.1) and snapped[1] == pytest.approx(1.851, abs=0.1)
    audio = first.locator("audio")
    audio.evaluate(WAIT_META)
    audio.evaluate(RECORD_PLAYBACK)
    word.click()
    nb.page.wait_for_function("() => window.__qaudio && window.__qaudio.end !== undefined")
    seen = nb.page.evaluate("() => window.__qaudio")
    assert seen["start"] == pytest.approx(snapped[0], abs=0.06), "starts where the word starts"
    assert snapped[1] - 0.01 <= seen["end"] <= snapped[1] + 0.1, "stops where the word ends"

    # --- the range in silence: hollow, says so, plays the model's own range
    silent = chips.nth(1)
    assert silent.get_attribute("data-status") == "silence"
    assert "qaudio-chip-silence" in (silent.get_attribute("class") or "")
    assert "nothing audible here" in silent.get_attribute("title")
    assert (silent.get_attribute("data-start"), silent.get_attribute("data-end")) == ("2.5", "3.2")
    _shot(first, f"{app}_grounded_chips")

    # --- spectrogram toggle: an image with the same regions over it
    toggle = first.locator(".qaudio-view")
    assert toggle.get_attribute("aria-pressed") == "false"
    toggle.click()
    assert toggle.get_attribute("aria-pressed") == "true"
    spec = first.locator("img.qaudio-spec").first
    nb.page.wait_for_function(
        "img => img.complete && img.naturalWidth > 100 && img.getBoundingClientRect().width > 100",
        arg=spec.element_handle(),
    )
    assert first.locator(".qaudio-seg").count() == 2
    _shot(first, f"{app}_spectrogram")

    # --- zoom: the "+" button halves the visible span, "+" on the keyboard too, "0" fits
    whole = _view(first)
    assert whole == pytest.approx((0.0, 6.0), abs=0.01)
    first.locator(".qaudio-zoom-in").click()
    a, b = _view(first)
    assert b - a == pytest.approx(3.0, abs=0.01)
    wave = first.locator(".qaudio-wave")
    wave.focus()
    nb.page.keyboard.press("+")
    a, b = _view(first)
    assert b - a == pytest.approx(1.5, abs=0.01)
    for _ in range(6):  # as deep as it goes: 50 ms per 100 px
        nb.page.keyboard.press("+")
    a, b = _view(first)
    px = wave.evaluate("w => w.clientWidth")
    assert b - a == pytest.approx(0.05 * px / 100, abs=0.002)
    ticks = first.locator(".qaudio-tick-label").all_inner_texts()
    assert any("." in t for t in ticks), f"the ruler shows sub-second ticks when zoomed: {ticks}"
    nb.page.wait_for_function(
        "img => img.style.display !== 'none' && img.naturalWidth > 0",
        arg=first.locator("img.qaudio-spec-detail").element_handle(),
        timeout=15_000,
    )
    _shot(first, f"{app}_zoomed_spectrogram")
    toggle.click()  # back to the waveform, still zoomed
    _shot(first, f"{app}_zoomed_waveform")
    wave.press("0")
    assert _view(first) == pytest.approx((0.0, 6.0), abs=0.01)

    # --- keyboard: space plays and pauses; arrows seek
    wave.press("Home")
    wave.press("ArrowRight")
    assert audio.evaluate("a => a.currentTime") == pytest.approx(0.3, abs=0.01)
    wave.press(" ")
    nb.page.wait_for_function("a => !a.paused", arg=audio.element_handle())
    wave.press(" ")
    nb.page.wait_for_function("a => a.paused", arg=audio.element_handle())
    for node in (first.locator(".qaudio-play"), toggle, first.locator(".qaudio-speed")):
        assert node.get_attribute("aria-label")

    # --- speed
    first.locator(".qaudio-speed").select_option("1.5")
    assert audio.evaluate("a => a.playbackRate") == 1.5

    # --- one player at a time: starting the second pauses the first
    other = second.locator("audio")
    other.evaluate(WAIT_META)
    first.locator(".qaudio-play").click()
    nb.page.wait_for_function("a => !a.paused", arg=audio.element_handle())
    second.locator(".qaudio-play").click()
    nb.page.wait_for_function("a => !a.paused", arg=other.element_handle())
    nb.page.wait_for_function("a => a.paused", arg=audio.element_handle())
    assert audio.evaluate("a => a.paused") and not other.evaluate("a => a.paused")
    assert first.locator(".qaudio-play").get_attribute("aria-label") == "Play"
    assert second.locator(".qaudio-play").get_attribute("aria-label") == "Pause"
    _shot(nb.panel, f"{app}_two_players")
    second.locator(".qaudio-play").click()

    # --- icons are inline SVG, never an emoji character
    assert first.locator(".qaudio-play svg").count() == 1
    assert not any(ch in first.inner_text() for ch in "▶⏸⏯✕⚠")
    nb.assert_no_widget_errors()


@pytest.mark.parametrize("app", APPS)
def test_windows_timeline_shows_absolute_clickable_times(
    open_notebook, browser_emulator: Emulator, app: str
) -> None:
    nb = open_notebook(
        f"timeline_{app}.ipynb",
        [
            "%load_ext qaudio_magic",
            # a question of its own each run: no answer comes from the response cache
            f"%%qaudio audio/{LONG} --windows 30\nWhere does the marker start? ({time.time()})",
            "print('DONE')",
        ],
        app,
    )
    _hide_toasts(nb.page)
    # the same words for every window (which window gets which reply is up to the pool)
    browser_emulator.reply_with(*["The voice names the marker from 0:00.75 to 0:02."] * 4)
    nb.run_all()
    nb.output("DONE", timeout=120)
    timeline = nb.panel.locator(".qaudio-player", has=nb.page.locator(".qaudio-rows"))
    timeline.wait_for(timeout=30_000)
    assert timeline.count() == 1, "one player for the whole file"
    rows = timeline.locator(".qaudio-row")
    assert rows.count() == 4
    assert timeline.locator(".qaudio-win").count() == 4
    heads = timeline.locator(".qaudio-row-head").all_inner_texts()
    assert heads == ["0:00–0:30", "0:30–1:00", "1:00–1:30", "1:30–1:35"]
    # window 2 said "0:00.75 to 0:02" (relative to it): shown as the file's 0:30.75–0:32
    chip = rows.nth(1).locator(".qaudio-chip-inline").first
    assert chip.inner_text() == "0:30.75–0:32"
    assert "in the file" in chip.get_attribute("title")
    start = float(chip.get_attribute("data-start"))
    assert start == pytest.approx(30.75, abs=0.3), "grounded in absolute file time"
    audio = timeline.locator("audio")
    audio.evaluate(WAIT_META)
    audio.evaluate(RECORD_PLAYBACK)
    chip.click()
    nb.page.wait_for_function("() => window.__qaudio && window.__qaudio.start !== undefined")
    assert nb.page.evaluate("() => window.__qaudio.start") == pytest.approx(start, abs=0.06)
    timeline.locator(".qaudio-play").click()  # pause
    _shot(timeline, f"{app}_windows_timeline")
    nb.assert_no_widget_errors()
