"""Today's models in a real browser: the thinking block stays as the user left it while the
reasoning streams, and a spoken answer gets a player that does not play by itself."""

from __future__ import annotations

import pytest

from qaudio_magic.emulator import Emulator

from .conftest import APPS

# Reasoning and answer stream at 10 pieces a second: the block is there long enough to open.
SLOW = '%config QAudioMagic.headers = {"X-Emulator-Fault": "token_rate=10"}'


@pytest.mark.parametrize("app", APPS)
def test_thinking_block_opens_and_stays_open(
    open_notebook, browser_emulator: Emulator, app: str
) -> None:
    nb = open_notebook(
        f"thinking_{app}.ipynb",
        [
            "%load_ext qaudio_magic",
            SLOW,
            "%%qaudio audio/speech_en.wav -m qwen3.8-omni-flash\nWhat is said here?",
            "print('DONE')",
        ],
        app,
    )
    nb.run_all()
    title = nb.panel.get_by_text("💭 thinking…", exact=False).first
    title.wait_for(timeout=60_000)
    title.click()  # the user opens the block while the reasoning still streams
    nb.output("DONE", timeout=120)
    block = nb.panel.locator(".qaudio-reasoning").first  # the accordion's content
    block.wait_for(timeout=30_000)
    assert block.is_visible()  # still open after every update and the final one
    assert "Emulated reasoning" in block.inner_text()
    assert nb.panel.get_by_text("💭 thought (", exact=False).first.is_visible()
    answer = nb.output("Emulated answer from qwen3.8-omni-flash")
    assert "Emulated reasoning" not in answer.locator(".qaudio-body").inner_text()
    box = block.bounding_box()
    assert box is not None and box["y"] < answer.bounding_box()["y"]  # above the answer
    nb.assert_no_widget_errors()


@pytest.mark.parametrize("app", APPS)
def test_spoken_answer_player_does_not_autoplay(
    open_notebook, browser_emulator: Emulator, app: str
) -> None:
    nb = open_notebook(
        f"spoken_{app}.ipynb",
        [
            "%load_ext qaudio_magic",
            "%%qaudio audio/speech_en.wav -m qwen3.5-omni-plus --speak\nAnswer aloud.",
            "print('DONE')",
        ],
        app,
    )
    nb.run_all()
    nb.output("DONE", timeout=120)
    nb.output("spoken answer (Tina)")
    audio = nb.panel.locator("audio")
    assert audio.count() == 2  # the clip asked about, and the spoken answer
    for i in range(2):
        assert audio.nth(i).evaluate("a => a.autoplay") is False
        assert audio.nth(i).evaluate("a => a.paused") is True
    nb.assert_no_widget_errors()
