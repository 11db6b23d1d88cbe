"""Model text to safe HTML, and the plain/HTML bundle of one answer.

Model output is untrusted (the audio itself can steer it), so Markdown is rendered with
raw HTML disabled, links limited to http(s) and opened with ``rel=noopener``, and
images turned off (no tracking pixels). The plain-text part of a bundle is the model's
Markdown as written, its control characters shown as symbols (``_format.printable``); a
saved notebook therefore holds the answer as plain text. Past :data:`MARKDOWN_LIMIT`
characters (far more than any model writes in one answer) the rest is shown as escaped
plain text: rendering Markdown costs microseconds per character, and a hostile answer is
up to a million characters long.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any

from markdown_it import MarkdownIt

from ._format import printable

__all__ = [
    "bundle",
    "data_lines",
    "reasoning_html",
    "render_markdown",
    "thinking_bundle",
    "thinking_title",
]

_SAFE_SCHEMES = ("http://", "https://")
MARKDOWN_LIMIT = 100_000  # characters of an answer rendered as Markdown; the rest as text


def _make_md() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    md.disable("image")
    md.validateLink = lambda url: url.strip().lower().startswith(_SAFE_SCHEMES)  # type: ignore[method-assign]

    def link_open(renderer: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        tokens[idx].attrSet("target", "_blank")
        tokens[idx].attrSet("rel", "noopener noreferrer nofollow")
        return renderer.renderToken(tokens, idx, options, env)

    md.add_render_rule("link_open", link_open)
    return md


_MD = _make_md()


def render_markdown(text: str) -> str:
    """Untrusted Markdown to inert HTML (past MARKDOWN_LIMIT characters, escaped text)."""
    if len(text) <= MARKDOWN_LIMIT:
        return _MD.render(text)
    rest = html.escape(text[MARKDOWN_LIMIT:])
    return _MD.render(text[:MARKDOWN_LIMIT]) + f"<pre style='white-space:pre-wrap'>{rest}</pre>"


_THINKING_STYLE = (
    ".qaudio-thinking summary{color:var(--jp-ui-font-color2,#666);font-size:0.85em;cursor:pointer}"
    ".qaudio-thinking .qaudio-reasoning{white-space:pre-wrap;color:var(--jp-ui-font-color2,#666);"
    "font-size:0.85em;margin:0.3em 0 0.3em 1em}"
)
_PICTURE_STYLE = (
    ".qaudio-answer .qaudio-still{display:block;margin:2px 0 4px}"
    # the static waveform picture is for saved notebooks: hidden where a live player renders
    ".jp-OutputArea:has(.qaudio-player) .qaudio-still,"
    ".output:has(.qaudio-player) .qaudio-still{display:none}"
)


def _style(*, thinking: bool = False, picture: bool = False) -> str:
    """The answer's ``<style>``, with the rules for a thinking block or a picture only when
    the output has one: every byte is saved again with every answer cell."""
    return (
        "<style>.qaudio-answer .qaudio-meta{color:var(--jp-ui-font-color2,#666);font-size:0.85em}"
        ".qaudio-answer .qaudio-note{color:var(--jp-warn-color0,#a60);font-size:0.85em}"
        ".qaudio-answer .qaudio-body p:last-child{margin-bottom:0.3em}"
        + (_THINKING_STYLE if thinking else "")
        + (_PICTURE_STYLE if picture else "")
        + "</style>"
    )


def reasoning_html(reasoning: str) -> str:
    """Reasoning as escaped plain text (never rendered as Markdown or HTML)."""
    return (
        '<div class="qaudio-reasoning" style="white-space:pre-wrap;font-size:0.85em;'
        f'color:var(--jp-ui-font-color2,#666)">{html.escape(reasoning)}</div>'
    )


def thinking_title(reasoning: str, *, streaming: bool) -> str:
    """``💭 thinking… (N words)`` while it streams, ``💭 thought (N words)`` after."""
    return _thinking_title(reasoning, streaming=streaming)


def _thinking_title(reasoning: str, *, streaming: bool) -> str:
    words = len(reasoning.split())
    return f"💭 thinking… ({words} words)" if streaming else f"💭 thought ({words} words)"


def _thinking_html(reasoning: str, *, streaming: bool, open: bool = False) -> str:
    """A collapsed block with the reasoning as escaped plain text (never rendered)."""
    return (
        f'<details class="qaudio-thinking"{" open" if open else ""}>'
        f"<summary>{html.escape(_thinking_title(reasoning, streaming=streaming))}</summary>"
        f'<div class="qaudio-reasoning">{html.escape(reasoning)}</div></details>'
    )


def thinking_bundle(
    reasoning: str, *, streaming: bool, open: bool = False
) -> tuple[dict[str, str], dict[str, Any]]:
    """The "thinking…" block shown above an answer: collapsed (``open``: as the user left
    it); its plain text says where the reasoning is rather than repeating it."""
    data = {
        "text/html": '<div class="qaudio-answer">'
        + _style(thinking=True)
        + _thinking_html(reasoning, streaming=streaming, open=open)
        + "</div>",
        "text/plain": _thinking_title(reasoning, streaming=streaming)
        + " — the answer's .reasoning holds it",
    }
    return data, {"qaudio": {"status": "thinking" if streaming else "thought"}}


def bundle(
    text: str,
    *,
    clips_line: str,
    question: str | None,
    notes: Sequence[str],
    footer: str,
    status: str | None = None,
    metadata: dict[str, Any] | None = None,
    segments: Sequence[str] = (),
    data: Mapping[str, Any] | None = None,
    reasoning: str = "",
    context: str | None = None,
    pictures: Sequence[str] = (),
) -> tuple[dict[str, str], dict[str, Any]]:
    """Mime bundle (text/html + text/plain) and metadata for one answer.

    ``segments``: labels of the times the answer mentions (made from parsed numbers, e.g.
    ``1.53–1.87 s``), listed as text so they survive where the player cannot render.
    ``data``: a typed answer's fields, shown as a small escaped table with the model's
    raw text folded under it (``<details>``) instead of rendered.
    ``reasoning``: a thinking model's reasoning, as a collapsed block above the answer.
    ``context``: the conversation line of a follow-up (which turn, which clips are sent
    again). ``pictures``: static waveform pictures (``_picture.picture_html``, our own
    markup, never model text) for saved notebooks.
    """
    text, clips_line, notes = printable(text), printable(clips_line), [printable(n) for n in notes]
    question, footer = printable(question or "") or None, printable(footer)
    status, reasoning = printable(status or "") or None, printable(reasoning)
    esc = html.escape
    parts = [
        '<div class="qaudio-answer">',
        _style(thinking=bool(reasoning), picture=bool(pictures)),
    ]
    # text symbols every UI font has (DejaVu, Noto, Segoe...): no emoji font needed
    head = f"♪ {esc(clips_line)}" if clips_line else "↪ follow-up"
    if question:
        head += f" — <i>{esc(_clip_text(question, 160))}</i>"
    parts.append(f'<div class="qaudio-meta">{head}</div>')
    if context:
        parts.append(f'<div class="qaudio-meta">{_bits(context)}</div>')
    parts.extend(pictures)
    parts.extend(f'<div class="qaudio-note">{esc(n)}</div>' for n in notes)
    if reasoning:
        parts.append(_thinking_html(reasoning, streaming=False))
    if data is not None:
        body = _data_html(data) + (
            f"<details><summary>raw answer</summary><pre>{esc(text)}</pre></details>"
        )
    else:
        body = render_markdown(text) if text else "<p><i>…</i></p>"
    parts.append(f'<div class="qaudio-body">{body}</div>')
    if status:
        parts.append(f'<div class="qaudio-note">{esc(status)}</div>')
    if segments:
        parts.append(f'<div class="qaudio-meta">◷ times: {esc(", ".join(segments))}</div>')
    if footer:
        parts.append(f'<div class="qaudio-meta">{_bits(footer)}</div>')
    parts.append("</div>")

    plain = [f"[{clips_line}]" if clips_line else "[follow-up]"]
    if question:
        plain[0] += f" {question}"
    if context:
        plain.append(context)
    plain.extend(f"note: {n}" for n in notes)
    if reasoning:
        plain.append(_thinking_title(reasoning, streaming=False) + " — see .reasoning")
    if data is not None:
        plain.extend(data_lines(data))
        plain.append(f"raw: {text}")
    else:
        plain.append(text or "…")
    if status:
        plain.append(status)
    if segments:
        plain.append(f"⏱ times: {', '.join(segments)}")
    if footer:
        plain.append(f"-- {footer}")
    data = {"text/html": "".join(parts), "text/plain": "\n".join(plain)}
    return data, {"qaudio": metadata or {}}


def _bits(line: str) -> str:
    """A ``·``-separated line, escaped, wrapping only between its parts (a request id or a
    clip name never breaks in the middle). Inline style: JupyterLab keeps it in untrusted
    notebooks, where it drops ``<style>``."""
    return " · ".join(
        f'<span style="white-space:nowrap">{html.escape(bit)}</span>' for bit in line.split(" · ")
    )


def _clip_text(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def data_lines(data: Mapping[str, Any]) -> list[str]:
    """A typed answer as ``field: value`` lines (JSON for anything but strings)."""
    return [f"{key}: {_cell(value)}" for key, value in data.items()]


def _data_html(data: Mapping[str, Any]) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><th style='text-align:left'>{esc(str(k))}</th>"
        f"<td style='text-align:left'>{esc(_clip_text(_cell(v), 300))}</td></tr>"
        for k, v in data.items()
    )
    return f'<table class="qaudio-data">{rows}</table>'
