"""One formatter for each thing shown to people: times, spans, counts, sizes, tables.

Every surface (answer header and footer, players, batch tables, history, dry runs,
errors) labels a time the same way, so a window reads ``80–110 s`` or ``1:20–1:50``
wherever it appears, never one in one place and the other elsewhere. This module imports
nothing from the package: anything may use it.

Text from outside (a model's answer, a server's error, a file's name) reaches a terminal
or a notebook through :func:`printable`: its control characters — ANSI and OSC escape
sequences that would set a window title, clear the screen or plant a hyperlink, a BEL, a
carriage return that overwrites the line — are shown as their visible Unicode symbols
(``ESC`` → ``␛``, ``BEL`` → ``␇``, ``CR`` → ``␍``, ``DEL`` → ``␡``; C1 controls →
``�``). Newlines and tabs stay; a CRLF line end becomes a newline.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

__all__ = [
    "a_kind",
    "clock",
    "num",
    "plural",
    "printable",
    "seconds",
    "short",
    "size",
    "span",
    "table_bundle",
    "text_table",
    "width",
]


# C0/C1 controls, and the bidi embeddings, overrides and isolates (U+202A–E, U+2066–9) that
# make text display in another order than it reads ("Trojan Source"); the LRM/RLM marks
# that right-to-left text uses are kept.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_PICTURES = {c: 0x2400 + c for c in range(0x20) if c not in (0x09, 0x0A)}
_PICTURES |= {0x7F: 0x2421} | dict.fromkeys(range(0x80, 0xA0), 0xFFFD)
_PICTURES |= dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A)], 0xFFFD)


def printable(text: str) -> str:
    """``text`` with its control characters shown as visible symbols (newlines and tabs
    kept; bidi overrides as �): what a terminal or a notebook shows of text it did not
    write itself."""
    if _CONTROL.search(text) is None:
        return text
    return text.replace("\r\n", "\n").translate(_PICTURES)


def num(value: float) -> str:
    """``1.5`` → ``'1.5'``, ``2.0`` → ``'2'``: at most two decimals, no trailing zeros."""
    return f"{round(value, 2):.2f}".rstrip("0").rstrip(".")


def clock(value: float) -> str:
    """``75`` → ``'1:15'``, ``62.5`` → ``'1:02.5'``, ``3690`` → ``'1:01:30'``."""
    minutes, secs = divmod(round(value, 2), 60)
    hours, minutes = divmod(int(minutes), 60)
    text = f"{int(secs):02d}" + (num(secs % 1)[1:] if secs % 1 else "")
    return f"{hours}:{minutes:02d}:{text}" if hours else f"{minutes}:{text}"


def seconds(value: float) -> str:
    """A point in time: ``'1.53 s'`` under a minute, ``'1:20'`` / ``'1:02:03.5'`` above."""
    return f"{num(value)} s" if round(value, 2) < 60 else clock(value)


def span(start: float, end: float | None) -> str:
    """A stretch of time: ``'1.53–1.87 s'`` under a minute, ``'1:20–1:50'`` above;
    ``end`` None reads ``'…–end'``."""
    if end is None:
        return f"{seconds(start)}–end"
    if round(max(start, end), 2) < 60:
        return f"{num(start)}–{num(end)} s"
    return f"{clock(start)}–{clock(end)}"


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``'1 turn'``, ``'2 turns'``, ``'1,204 clips'``."""
    return f"{count:,} {noun if count == 1 else (many or noun + 's')}"


def a_kind(value: object) -> str:
    """``'an int'``, ``'a DataFrame'``: the type of ``value`` with its article, for errors."""
    kind = type(value).__name__
    return f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}"


def short(text: str, limit: int) -> str:
    """``text`` on one line, printable, cut to ``limit`` characters with an ellipsis."""
    text = printable(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def size(n: int) -> str:
    """Bytes for people: ``'512 B'``, ``'340 KB'``, ``'12.5 MB'``."""
    if n < 10_000:
        return f"{n} B"
    if n < 10_000_000:
        return f"{n / 1e3:.0f} KB"
    return f"{n / 1e6:.1f} MB"


def width(text: str) -> int:
    """Columns ``text`` takes in a terminal: wide (CJK) characters count two."""
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


def _pad(text: str, columns: int) -> str:
    return text + " " * (columns - width(text))


def text_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, lines: Sequence[str] = ()
) -> str:
    """An aligned plain-text table (CJK-aware), after ``lines`` (a title, notes); every
    cell printable."""
    header = [printable(h) for h in header]
    rows = [[printable(c) for c in r] for r in rows]
    lines = [printable(line) for line in lines]
    widths = [max([width(h), *(width(r[i]) for r in rows)]) for i, h in enumerate(header)]
    out = list(lines)
    out.append("  ".join(_pad(h, w) for h, w in zip(header, widths, strict=True)).rstrip())
    out += ["  ".join(_pad(c, w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(out)


def table_bundle(
    title: str,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    notes: Sequence[str] = (),
    metadata: dict[str, Any] | None = None,
) -> tuple[dict[str, str], dict[str, Any]]:
    """A compact table as escaped HTML with an aligned plain-text fallback.

    Cells may hold model output: they are escaped, never rendered as Markdown or HTML,
    and made printable.
    """
    title, notes = printable(title), [printable(n) for n in notes]
    header = [printable(h) for h in header]
    rows = [[printable(c) for c in r] for r in rows]
    plain = text_table(header, rows, lines=[*title.splitlines(), *(f"note: {n}" for n in notes)])
    esc = html.escape
    head = "".join(f"<th style='text-align:left'>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left'>{esc(c)}</td>" for c in r) + "</tr>"
        for r in rows
    )
    lines = title.splitlines()
    parts = [
        '<div class="qaudio-table">',
        f"<b>{esc(lines[0])}</b>" if lines else "",
        *(f"<div><i>{esc(line)}</i></div>" for line in lines[1:]),
        *(f"<div style='color:var(--jp-warn-color0,#a60)'>{esc(n)}</div>" for n in notes),
        f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>",
    ]
    return {"text/plain": plain, "text/html": "".join(parts)}, {"qaudio": metadata or {}}
