"""Model output is untrusted: on every surface that shows it, it stays inert text.

The audio itself can steer what a model writes ("print this HTML..."), and script that
runs in a Jupyter page can drive the kernel. So an answer full of script, event
handlers, frames, ``javascript:``/``data:`` links and images is pushed through every
place model text is shown — the live answer view (HTML and plain text), an Answer
displayed again (HTML, plain text, Markdown), batch tables, timelines, ``%qaudio
history``, the player — and each HTML part is parsed: no element or attribute the
payload asked for exists, and every link is http(s). The real-browser counterpart is
``tests/e2e/test_untrusted_browser.py``.
"""

from __future__ import annotations

import re
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from IPython.display import display
from IPython.utils.capture import capture_output
from markdown_it import MarkdownIt

from qaudio_magic._render import render_markdown
from qaudio_magic.answer import Answer
from qaudio_magic.emulator import Emulator
from qaudio_magic.player import Player
from qaudio_magic.session import get_session

PAYLOAD = (
    "Said at 1.5 s. <script>window.__pwned = 1</script> "
    '<img src=x onerror="window.__pwned = 2"> '
    '<iframe src="javascript:window.__pwned = 3"></iframe> '
    "[click me](javascript:window.__pwned=4) "
    "[JaVaScRiPt too](  JAVASCRIPT:window.__pwned=5 ) "
    "<javascript:window.__pwned=6> "
    '<a href="javascript:window.__pwned=7">raw link</a> '
    "[data](data:text/html;base64,PHNjcmlwdD53aW5kb3cuX19wd25lZD04PC9zY3JpcHQ+) "
    "![pixel](https://tracker.example/p.png) "
    "<svg onload=window.__pwned=9></svg> <style>body{display:none}</style> "
    "[fine](https://example.com/ok) and [ref][1].\n\n"
    "[1]: javascript:window.__pwned=10"
)
DANGEROUS_TAGS = {"script", "img", "iframe", "svg", "style", "object", "embed", "form", "input"}


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def assert_inert(html: str, *, text_expected: bool = True) -> None:
    """No dangerous element, no event handler, no link but http(s); the payload as text."""
    parser = _Elements()
    parser.feed(html)
    for tag, attrs in parser.tags:
        if tag == "style" and not attrs:  # our own stylesheet, first in the answer view
            continue
        if tag == "img" and attrs.get("class") == "qaudio-still":
            assert_own_picture(attrs)  # the static waveform picture, our own markup
            continue
        assert tag not in DANGEROUS_TAGS, f"<{tag}> rendered from model output: {attrs}"
        for name, value in attrs.items():
            assert not name.startswith("on"), f"event handler {name}={value!r}"
            if name in ("href", "src", "action", "formaction", "srcdoc"):
                assert (value or "").startswith(("http://", "https://")), f"{name}={value!r}"
    own_styles = sum(1 for t, a in parser.tags if t == "style" and not a)
    assert own_styles <= 1
    if text_expected:  # what the model wrote is shown, as text
        shown = "".join(parser.text)
        assert "<script>window.__pwned = 1</script>" in shown
        assert "onerror" in shown


def assert_own_picture(attrs: dict[str, str | None]) -> None:
    """The waveform picture: a data-URL SVG of shapes and time labels, nothing else — no
    script, no link, no handler, no text the model or a file name could have written."""
    src = attrs.get("src") or ""
    prefix = "data:image/svg+xml,"
    assert src.startswith(prefix), src[:60]
    assert not any(name.startswith("on") for name in attrs)
    parser = _Elements()
    parser.feed(urllib.parse.unquote(src[len(prefix) :]))
    for tag, svg_attrs in parser.tags:
        assert tag in {"svg", "rect", "path", "use", "text"}, tag
        assert not any(n.startswith("on") for n in svg_attrs), svg_attrs
        links = {n: v for n, v in svg_attrs.items() if "href" in n}
        # the one link: <use> mirrors the picture's own waveform path, nothing outside it
        assert links == ({"href": "#w"} if tag == "use" else {}), svg_attrs
    for label in "".join(parser.text).split(" s"):
        assert re.fullmatch(r"[\d.:]*", label.strip()), label


@pytest.fixture
def hostile(emu: Emulator) -> Emulator:
    emu.reply_with(*[PAYLOAD] * 12)
    return emu


def test_answer_view_html_text_and_markdown(ip, hostile: Emulator, audio: Path) -> None:
    with capture_output() as cap:
        answer = ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "Say it")
        follow = ip.run_cell_magic("qaudio", "", "Again")
    assert answer.text == PAYLOAD and follow.text == PAYLOAD
    views = [o for o in cap.outputs if "qaudio" in o.metadata]  # each update, streamed too
    final = [v for v in views if v.metadata["qaudio"].get("status") == "complete"]
    assert len(final) == 2
    for view in views:
        assert_inert(view.data["text/html"], text_expected=view in final)
    for view in final:
        # the saved notebook holds the answer as plain Markdown text, exactly as written
        assert PAYLOAD in view.data["text/plain"]
    # the only link that survives is the http(s) one, opened safely
    assert (
        '<a href="https://example.com/ok" target="_blank" rel="noopener noreferrer nofollow">'
        in final[0].data["text/html"]
    )
    # the same answer displayed again: HTML, text and a Markdown part that stays literal
    data, _ = answer._repr_mimebundle_()
    assert_inert(data["text/html"])
    assert PAYLOAD in data["text/plain"]
    permissive = MarkdownIt("commonmark", {"html": True})  # a renderer that allows raw HTML
    literal = permissive.render(data["text/markdown"])
    assert_inert(literal)
    assert "<a " not in literal  # not even the http(s) link: the Markdown part is literal


def test_markdown_rendering_rules() -> None:
    html = render_markdown(PAYLOAD)
    assert_inert(html)
    # links: only the http(s) ones; an image is never loaded, at most a plain link to it
    parser = _Elements()
    parser.feed(html)
    hrefs = [a["href"] for t, a in parser.tags if t == "a"]
    assert hrefs == ["https://tracker.example/p.png", "https://example.com/ok"]
    assert "[click me](javascript:window.__pwned=4)" in "".join(parser.text)


def test_batch_timeline_and_history_tables(ip, hostile: Emulator, audio: Path) -> None:
    speech, tone = audio / "speech_en.wav", audio / "tone_440hz_3s.wav"
    with capture_output() as cap:
        batch = ip.run_cell_magic("qaudio", f"{speech} {tone} --batch --cache off", "Q")
        timeline = ip.run_cell_magic("qaudio", f"{speech} --windows 2.5 --cache off", "Q")
        ip.run_cell_magic("qaudio", str(speech), "For the history")
        ip.run_line_magic("qaudio", "history")
    assert batch.texts == [PAYLOAD, PAYLOAD] and set(timeline.texts) == {PAYLOAD}
    for table in (batch, timeline):
        data, _ = table._repr_mimebundle_()
        assert_inert(data["text/html"], text_expected=False)
        assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in data["text/html"]
        assert "<script>window.__pwned = 1</script>" in data["text/plain"]
    history = cap.outputs[-1].data
    assert "Conversation 'default'" in history["text/plain"]
    assert_inert(history["text/html"], text_expected=False)
    assert "&lt;script&gt;" in history["text/html"]
    frame = batch.to_pandas()
    assert frame["answer"].tolist() == [PAYLOAD, PAYLOAD]  # data stays data
    assert_inert(frame.to_html(), text_expected=False)  # pandas escapes it too


def test_player_chips_and_labels(ip, hostile: Emulator, audio: Path, tmp_path: Path) -> None:
    odd = tmp_path / '<img src=x onerror="window.__pwned=11">.wav'
    odd.write_bytes((audio / "speech_en.wav").read_bytes())
    with capture_output() as cap:
        answer = ip.run_cell_magic("qaudio", f"'{odd}'", "Q")
    # chips come from the parsed number, never from the model's words
    assert [s.label() for s in answer.segments] == ["1.5 s"]
    player = Player(odd, text=answer.text)
    assert [s["label"] for s in player.segments] == ["1.5 s"]
    assert all("<" not in s["text"] for s in player.segments)
    # the file name with markup shows escaped in every HTML part of the cell
    for out in cap.outputs:
        if "text/html" in out.data:
            assert_inert(out.data["text/html"], text_expected=False)
    assert "onerror" in player.label and "text/plain" in player._repr_mimebundle_()[0]
    # the player's script writes every text with textContent or an attribute
    js = (Path(__import__("qaudio_magic").__file__).parent / "static" / "player.js").read_text()
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "outerHTML" not in js


def test_recorder_status_escapes_a_hostile_file_name(tmp_path: Path, audio: Path) -> None:
    from qaudio_magic.recorder import Recorder

    odd = tmp_path / '<img src=x onerror="window.__pwned=12">.wav'
    odd.write_bytes((audio / "tone_440hz_3s.wav").read_bytes())
    mic = Recorder("mic")
    mic.add(odd)
    status = mic._status.value  # an ipywidgets.HTML: the browser renders it as HTML
    assert_inert(status, text_expected=False)
    assert "&lt;img src=x" in status and "<code>mic</code>" in status
    mic.close()


def test_errors_that_quote_the_service_are_escaped(ip, emu: Emulator, audio: Path) -> None:
    """A hostile error message from the server is text in the view and in batch tables."""
    emu.add_fault("status=400;code=InvalidParameter;message=<img src=x onerror=alert(1)>;times=3")
    with capture_output() as cap:
        try:
            ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "Q")
        except Exception:
            pass
        batch = ip.run_cell_magic(
            "qaudio", f"{audio / 'speech_en.wav'} {audio / 'tone_440hz_3s.wav'} --batch", "Q"
        )
    for out in cap.outputs:
        if "text/html" in out.data:
            assert_inert(out.data["text/html"], text_expected=False)
    assert_inert(batch._repr_mimebundle_()[0]["text/html"], text_expected=False)
    assert "&lt;img src=x onerror=alert(1)&gt;" in batch._repr_mimebundle_()[0]["text/html"]


def _display_again(answer: Answer) -> dict[str, Any]:
    with capture_output() as cap:
        display(answer)
    return cap.outputs[-1].data if cap.outputs else {}


def test_an_answer_displayed_in_a_later_cell(ip, hostile: Emulator, audio: Path) -> None:
    answer = ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "Q")
    ip.execution_count += 1  # a later cell: the answer is displayed again, in full
    data = _display_again(answer)
    assert_inert(data["text/html"])
    assert set(data) >= {"text/html", "text/plain", "text/markdown"}
    assert get_session().conversations.current.turns[-1].answer == PAYLOAD
