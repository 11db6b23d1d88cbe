"""Hostile model output in a real JupyterLab 4: rendered as inert text, no code runs.

The emulator answers with ``<script>``, ``<img onerror>``, ``<iframe>``, ``<svg onload>``
and ``javascript:`` links that would each set ``window.__pwned``. JupyterLab runs script
and event handlers in HTML outputs a live kernel produces — the positive control below
(an ``<img onerror>`` the notebook itself displays as HTML) proves the hook would fire —
so only our escaping stands between the model and the page.
"""

from __future__ import annotations

import pytest

from qaudio_magic.emulator import Emulator

from ..test_untrusted_output import PAYLOAD

CELLS = [
    "%load_ext qaudio_magic",
    # positive control: HTML the notebook itself displays does run in this page
    "from IPython.display import HTML\nHTML(\"<img src=x onerror='window.__control = 1'>\")",
    "%%qaudio audio/speech_en.wav\nSay it",
    "%%qaudio\nAgain",
    "%%qaudio audio/speech_en.wav audio/tone_440hz_3s.wav --batch --cache off\nEach",
    "%qaudio history",
    "answer = ask_audio('audio/tone_440hz_3s.wav', 'Once more', display=False)\nanswer",
    "print('DONE')",
]
ANSWERS = 5  # single, follow-up, two batch items, ask_audio


@pytest.fixture
def hostile(browser_emulator: Emulator) -> Emulator:
    browser_emulator.clear_replies()
    browser_emulator.reply_with(*[PAYLOAD] * ANSWERS)
    yield browser_emulator
    browser_emulator.clear_replies()


def test_hostile_answer_is_inert_in_jupyterlab(open_notebook, hostile: Emulator) -> None:
    nb = open_notebook("untrusted_lab.ipynb", CELLS, "lab")
    nb.run_all()
    nb.output("DONE", timeout=90)
    page, panel = nb.page, nb.panel
    page.wait_for_function("window.__control === 1", timeout=60_000)  # the hook works
    page.wait_for_timeout(500)  # let any image error or frame load that could happen, happen

    assert page.evaluate("typeof window.__pwned") == "undefined", "model output ran code"
    answers = panel.locator(".qaudio-answer")
    assert answers.count() >= 3  # single, follow-up, the Answer displayed again
    tables = panel.locator(".qaudio-table")
    assert tables.count() == 2  # the batch table and `%qaudio history`
    for root in (answers, tables):
        for i in range(root.count()):
            box = root.nth(i)
            for tag in ("script", "iframe", "img", "svg", "object", "embed", "form"):
                found = box.locator(tag)
                if tag == "img":  # our own static waveform picture (a data: SVG) is allowed
                    found = box.locator("img:not(.qaudio-still)")
                    for own in box.locator("img.qaudio-still").all():
                        src = own.get_attribute("src") or ""
                        assert src.startswith("data:image/svg+xml,"), src[:80]
                        assert own.evaluate("img => img.getAttributeNames()") == [
                            "class", "src", "alt", "title", "width", "height", "style"
                        ]  # fmt: skip
                assert found.count() == 0, f"<{tag}> from the model in the page"
            for link in box.locator("a").all():
                assert (link.get_attribute("href") or "").startswith(("http://", "https://"))
    assert panel.locator("a[href^='javascript' i], a[href^='data' i]").count() == 0
    # the payload is on the page as text a reader can see
    text = answers.first.inner_text()
    assert "<script>window.__pwned = 1</script>" in text
    assert '<img src=x onerror="window.__pwned = 2">' in text
    assert "[click me](javascript:window.__pwned=4)" in text
    assert "<script>window.__pwned = 1</script>" in tables.first.inner_text()
    history = nb.output("Conversation 'default'")
    assert history.locator("script, img, iframe, svg").count() == 0
    assert "<script>" in history.inner_text()
    # clicking where a link would be does nothing either
    answers.first.get_by_text("[click me](javascript:window.__pwned=4)", exact=False).click()
    page.wait_for_timeout(200)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    nb.assert_no_widget_errors()
    assert len(hostile.generation_requests()) >= ANSWERS
