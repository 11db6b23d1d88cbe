"""What a person sees of an answer, live and saved (issue 14).

Live in JupyterLab: the player sits above its answer for a first question and a follow-up
alike, the follow-up's header names the conversation and what else was sent, and the
static waveform picture stays hidden (the live player shows it). Saved and reopened
without widget state, and exported with ``nbconvert --to html``: the picture shows where
the player was, with the answer's times marked.

``QAUDIO_SCREENS=DIR`` keeps the screenshots there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbconvert import HTMLExporter

from qaudio_magic.emulator import Emulator

from ..conftest import ROOT, TEST_KEY
from ..test_notebooks import execute, kernel_env

WORDS = "audio/words_at_1.5s_and_4.0s.wav"
APPLE = "'apple' 从第1.5秒开始出现,至第1.85秒结束。"
ORANGE = "'orange' 从第4.0秒开始出现,至第4.43秒结束。"


def _shot(page: Any, name: str, element: Any = None) -> None:
    folder = os.environ.get("QAUDIO_SCREENS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        (element or page).screenshot(path=str(Path(folder) / name))


def _visible_pictures(scope: Any) -> list[Any]:
    pictures = scope.locator("img.qaudio-still")
    return [pictures.nth(i) for i in range(pictures.count()) if pictures.nth(i).is_visible()]


def test_live_players_sit_above_their_answers_and_the_picture_stays_hidden(
    open_notebook, browser_emulator: Emulator
) -> None:
    browser_emulator.reply_with(APPLE, ORANGE)
    nb = open_notebook(
        "static_live.ipynb",
        [
            "%load_ext qaudio_magic",
            f"%%qaudio {WORDS}\nWhere is 'apple'?",
            "%%qaudio\nAnd 'orange'?",
            "print('DONE')",
        ],
        "lab",
    )
    nb.run_all()
    nb.output("DONE")
    follow = nb.output("orange' 从第4.0秒")
    assert "conversation default, turn 2 · also sent: words_at_1.5s_and_4.0s.wav (6.0 s)" in (
        follow.inner_text()
    )
    cells = nb.panel.locator(".jp-CodeCell")
    for i in (1, 2):  # the question, the follow-up: player first, then the answer
        outputs = cells.nth(i).locator(".jp-OutputArea-output")
        outputs.nth(1).locator(".qaudio-answer").wait_for()
        assert outputs.nth(0).locator(".qaudio-player").count() == 1
        assert outputs.nth(0).locator(".qaudio-chip").count() >= 1  # the times, as chips
        assert cells.nth(i).locator("img.qaudio-still").count() == 1  # in the output...
        assert _visible_pictures(cells.nth(i)) == []  # ...but the live player shows it
    nb.assert_no_widget_errors()
    _shot(nb.page, "lab_live.png")
    cells.nth(2).scroll_into_view_if_needed()
    _shot(nb.page, "lab_live_follow_up.png", cells.nth(2))


def test_saved_notebook_and_its_html_show_a_picture_per_answer(
    jupyter, browser: Any, browser_emulator: Emulator, tmp_path: Path
) -> None:
    """Executed headless (no widget state saved, as JupyterLab saves by default), then
    opened in JupyterLab without running it, and exported with nbconvert."""
    browser_emulator.reply_with(APPLE, ORANGE)
    src = jupyter.write_notebook(
        "static_saved.ipynb",
        [
            "%load_ext qaudio_magic",
            f"%%qaudio {WORDS}\nWhere is 'apple'?",
            "%%qaudio\nAnd 'orange'?",
        ],
    )
    env = kernel_env(DASHSCOPE_API_KEY=TEST_KEY, DASHSCOPE_HTTP_BASE_URL=browser_emulator.base_url)
    nb = execute(src, env)
    nbformat.write(nb, src)

    page = browser.new_page()
    try:
        page.goto(f"{jupyter.url}/lab/tree/static_saved.ipynb?reset")
        panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        panel.locator(".qaudio-answer").nth(1).wait_for(timeout=60_000)
        shown = _visible_pictures(panel)
        assert len(shown) == 2, "one picture per answer where the players cannot render"
        for picture in shown:
            assert picture.evaluate("img => img.complete && img.naturalWidth > 0")
        alts = [p.get_attribute("alt") for p in shown]
        assert alts == [
            "waveform of words_at_1.5s_and_4.0s.wav · 6.0 s; marked: 1.5–1.85 s",
            "waveform of words_at_1.5s_and_4.0s.wav · 6.0 s; marked: 4–4.43 s",
        ]
        _shot(page, "lab_saved_reopened.png")
    finally:
        page.close()
        jupyter.shutdown_kernels()

    html, _ = HTMLExporter().from_notebook_node(nb)
    out = tmp_path / "static_saved.html"
    out.write_text(html)
    page = browser.new_page()
    try:
        page.goto(out.as_uri())
        shown = _visible_pictures(page)
        assert len(shown) == 2
        assert all(p.evaluate("img => img.complete && img.naturalWidth > 0") for p in shown)
        _shot(page, "nbconvert_saved.png")
    finally:
        page.close()


@pytest.mark.timeout(300)
def test_the_quickstart_as_html(browser: Any, browser_emulator: Emulator, tmp_path: Path) -> None:
    env = kernel_env(DASHSCOPE_API_KEY=TEST_KEY, DASHSCOPE_HTTP_BASE_URL=browser_emulator.base_url)
    nb = execute(ROOT / "notebooks" / "quickstart.ipynb", env)
    html, _ = HTMLExporter().from_notebook_node(nb)
    out = tmp_path / "quickstart.html"
    out.write_text(html)
    page = browser.new_page()
    try:
        page.goto(out.as_uri())
        answers = page.locator(".qaudio-answer")
        shown = _visible_pictures(page)
        assert answers.count() >= 5 and len(shown) == answers.count()
        assert all(p.evaluate("img => img.complete && img.naturalWidth > 0") for p in shown)
        _shot(page, "nbconvert_quickstart.png")
        first = answers.first
        first.scroll_into_view_if_needed()
        _shot(page, "nbconvert_quickstart_first_answer.png", first)
    finally:
        page.close()


def test_an_error_before_sending_shows_its_one_line_and_nothing_else(
    open_notebook, browser_emulator: Emulator
) -> None:
    """Issue 14 (7): no key — no player left on the page, no "…", no "⚠ Incomplete"."""
    before = len(browser_emulator.requests)
    nb = open_notebook(
        "static_error.ipynb",
        [
            "%load_ext qaudio_magic\nimport os\nos.environ.pop('DASHSCOPE_API_KEY', None)",
            f"%%qaudio {WORDS}\nWhere is 'apple'?",
        ],
        "lab",
    )
    nb.run_all()
    cell = nb.panel.locator(".jp-CodeCell").nth(1)
    cell.locator(".jp-OutputArea-output", has_text="UsageError").wait_for(timeout=60_000)
    nb.wait_kernel_idle()
    shown = [t.strip() for t in cell.locator(".jp-OutputArea-output").all_inner_texts()]
    assert [t for t in shown if t] == [
        "UsageError: no DashScope API key — set DASHSCOPE_API_KEY, run %qaudio key, or "
        "%qaudio emulator to try offline"
    ]
    assert cell.locator(".qaudio-player, .qaudio-answer").count() == 0
    assert len(browser_emulator.requests) == before
    _shot(nb.page, "lab_error_before_sending.png", cell)
