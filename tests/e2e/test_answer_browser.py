"""The answer view in a real browser: player and streamed answer render, no widget errors."""

from __future__ import annotations

import pytest

from qaudio_magic.emulator import Emulator

from .conftest import APPS


@pytest.mark.parametrize("app", APPS)
def test_answer_and_player_render(open_notebook, browser_emulator: Emulator, app: str) -> None:
    nb = open_notebook(
        f"answer_{app}.ipynb",
        [
            "%load_ext qaudio_magic",
            "%%qaudio audio/speech_en.wav\nWhat is said here?",
            "%%qaudio\nAnd a follow-up?",
            "print('DONE')",
        ],
        app,
    )
    before = len(browser_emulator.generation_requests())
    nb.run_all()
    nb.output("DONE")
    answer = nb.output("1 audio clip (5.11 s)")
    assert "What is said here?" in answer.inner_text()
    follow = nb.output("1 earlier turn")
    assert "And a follow-up?" in follow.inner_text()
    audio = nb.panel.locator("audio")
    assert audio.count() == 2  # the question's player, and the follow-up's (above it too)
    for i in range(2):
        assert audio.nth(i).evaluate("a => a.autoplay") is False
        assert audio.nth(i).evaluate("a => a.loop") is False
    nb.assert_no_widget_errors()
    assert len(browser_emulator.generation_requests()) == before + 2
