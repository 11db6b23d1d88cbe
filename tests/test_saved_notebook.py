"""What a saved notebook shows without its kernel: a waveform picture per answer.

Players are widgets, which a notebook opened without its kernel (GitHub, nbviewer,
``nbconvert --to html``, JupyterLab without widget state) cannot draw. Each answer's own
output therefore carries a small picture of the waveform with the times it mentions
marked: drawn from the player's peaks, a few KB, no audio bytes.
"""

from __future__ import annotations

import re
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import numpy as np
import pytest
from IPython.utils.capture import capture_output
from nbconvert import HTMLExporter

from qaudio_magic._picture import WIDTH, picture_html, waveform_svg
from qaudio_magic.emulator import Emulator
from qaudio_magic.player import Player

from .conftest import ROOT, TEST_KEY
from .test_notebooks import assert_no_audio_bytes, execute, kernel_env

WORDS = "words_at_1.5s_and_4.0s.wav"
PICTURE_MAX = 2_000  # bytes of one picture in the saved notebook (each answer carries one)


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img" and ("class", "qaudio-still") in attrs:
            self.images.append(dict(attrs))


def pictures(html: str) -> list[dict[str, str | None]]:
    parser = _Images()
    parser.feed(html)
    return parser.images


def svg_of(image: dict[str, str | None]) -> str:
    src = image["src"] or ""
    assert src.startswith("data:image/svg+xml,")
    return urllib.parse.unquote(src.removeprefix("data:image/svg+xml,"))


def marks_of(svg: str) -> list[tuple[float, float]]:
    """(x, width) of each shaded mark, in the picture's 0..WIDTH coordinates."""
    return [
        (float(x), float(w))
        for x, w in re.findall(
            r"<rect x='([\d.]+)' width='([\d.]+)' height='\d+' fill='#ffaa00'", svg
        )
    ]


def envelope(svg: str) -> list[tuple[float, int]]:
    """(x, height above the centre line) of each point of the drawn waveform: the path
    ``M0 mid V top l dx dy dx dy ... H width V mid Z``, mirrored below by a ``<use>``."""
    found = re.search(r"<path id='w' d='M0 (\d+)V(\d+)(?:l([-\d. ]+))?H", svg)
    assert found, svg
    mid, y = int(found[1]), int(found[2])
    numbers = [float(v) for v in re.findall(r"-?[\d.]+", found[3] or "")]
    points, x = [(0.0, mid - y)], 0.0
    for dx, dy in zip(numbers[::2], numbers[1::2], strict=True):
        x, y = x + dx, y + int(dy)
        points.append((x, mid - y))
    assert "<use href='#w' transform='matrix(1 0 0 -1 0 44)'/>" in svg  # the lower half
    return points


def test_the_picture_marks_the_times_where_they_are(audio: Path) -> None:
    player = Player(audio / WORDS, segments=[(1.5, 1.85), (4.0, None)])
    html = picture_html(player.peaks, player.duration, [(1.5, 1.85), (4.0, None)], "w.wav")
    assert len(html) < PICTURE_MAX
    svg = svg_of(pictures(html)[0])
    (x1, w1), (x2, w2) = marks_of(svg)
    seconds = WIDTH / player.duration  # 6 s across the width
    assert abs(x1 - 1.5 * seconds) < 1 and abs(w1 - 0.35 * seconds) < 1
    assert abs(x2 - 4.0 * seconds) < 1 and w2 == 2  # a point: a thin line
    # the waveform is drawn from the peaks: loud where the words are, flat in the silence
    points = envelope(svg)
    xs, hs = [x for x, _ in points] + [WIDTH], [h for _, h in points] + [points[-1][1]]

    def height(t: float) -> float:  # the drawn line between its points
        return float(np.interp(t * seconds, xs, hs))

    loud = max(height(t / 100) for t in range(150, 186))
    quiet = max(height(t / 100) for t in range(20, 121))
    assert loud > 5 * max(quiet, 1)
    assert ">0 s<" in svg and ">6.0 s<" in svg  # the time axis' ends


def test_an_empty_clip_still_draws() -> None:
    assert "<svg" in waveform_svg(b"", 0.0, [(1.0, 2.0)])  # no peaks, no length: no marks


def test_each_answer_carries_its_picture_with_the_times_marked(
    ip, emu: Emulator, audio: Path
) -> None:
    emu.reply_with("'apple' 从第1.5秒开始出现,至第1.85秒结束。")
    with capture_output() as cap:
        answer = ip.run_cell_magic("qaudio", str(audio / WORDS), "Where is 'apple'?")
    final = cap.outputs[-1]
    (image,) = pictures(final.data["text/html"])
    assert image["alt"] == f"waveform of {WORDS} · 6.0 s; marked: 1.5–1.85 s"
    assert len(marks_of(svg_of(image))) == 1
    streaming = [
        o for o in cap.outputs if o.metadata.get("qaudio", {}).get("status") == "streaming"
    ]
    assert streaming and not any(pictures(o.data["text/html"]) for o in streaming)  # drawn once
    # the Answer displayed again (Out[n], another cell) carries it too
    data, _ = answer._repr_mimebundle_()
    assert pictures(data["text/html"]) == [image]
    # a follow-up: the picture of the clip its times refer to
    emu.reply_with("'orange' 从第4.0秒开始出现,至第4.43秒结束。")
    with capture_output() as cap:
        ip.run_cell_magic("qaudio", "", "And 'orange'?")
    (image,) = pictures(cap.outputs[-1].data["text/html"])
    assert image["alt"] == f"waveform of {WORDS} · 6.0 s; marked: 4–4.43 s"


@pytest.mark.timeout(300)
def test_the_quickstart_as_html_shows_a_waveform_picture_per_answer(
    emu: Emulator, tmp_path: Path
) -> None:
    """Issue 14, done when: the nbconvert HTML of the quickstart shows a picture per answer."""
    env = kernel_env(DASHSCOPE_API_KEY=TEST_KEY, DASHSCOPE_HTTP_BASE_URL=emu.base_url)
    nb = execute(ROOT / "notebooks" / "quickstart.ipynb", env)
    answers = [
        out
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if out.get("metadata", {}).get("qaudio", {}).get("status") == "complete"
        and "clips" in out["metadata"]["qaudio"]
    ]
    assert len(answers) >= 5  # each %%qaudio cell and the ask_audio() call
    for out in answers:
        images = pictures(out["data"]["text/html"])
        assert len(images) == 1, out["data"]["text/plain"][:200]
        assert len(images[0]["src"] or "") < PICTURE_MAX
    assert_no_audio_bytes(nb)
    html, _ = HTMLExporter().from_notebook_node(nb)
    (tmp_path / "quickstart.html").write_text(html)
    shown = pictures(html)
    assert len(shown) == len(answers)
    assert all(image["alt"] and image["alt"].startswith("waveform of ") for image in shown)
    assert "speech_zh_cmn.wav" in shown[0]["alt"]
    saved = nbformat.writes(nb)
    assert TEST_KEY not in saved
