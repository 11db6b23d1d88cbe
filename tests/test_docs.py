"""The README's and ``%%qaudio?``'s examples paste into a notebook as they are (issue 14, 9).

A cell magic must be a cell's first line and its whole body is the question, so an example
block holds one cell, and no comment sits in a question or on a magic line (IPython hands
both to the magic: a ``# follow-up`` note would be sent to the model, or read as a SOURCE).
Every example's magic line parses with the magic's own option parser.
"""

from __future__ import annotations

import re
import shlex

import pytest
from IPython.core.error import UsageError

from .conftest import ROOT

README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```[\w-]*\n(.*?)```", README, re.S)
SYNOPSIS = "[SOURCE ...]"  # the usage line of "The cell magic", not an example


def _magic_blocks() -> list[str]:
    return [b for b in BLOCKS if re.search(r"^%%?qaudio\b", b, re.M) and SYNOPSIS not in b]


def _cells_of_help(doc: str) -> list[list[str]]:
    """The example cells of the magic's help: a ``%%qaudio`` line and the lines under it."""
    cells: list[list[str]] = []
    lines = [line.strip() for line in doc.splitlines()]
    for i, line in enumerate(lines):
        if line.startswith("%%qaudio"):
            cell = [line]
            for more in lines[i + 1 :]:
                if not more:
                    break
                cell.append(more)
            cells.append(cell)
    return cells


def _check_cell(lines: list[str], where: str) -> None:
    first = lines[0]
    assert first.startswith("%%qaudio"), f"{where}: a cell magic must be the first line"
    assert not any(line.startswith("%%") for line in lines[1:]), f"{where}: two cells in one"
    for line in lines:
        assert not re.search(r"(^|\s)#", line), f"{where}: a comment would be sent: {line!r}"


def _parse(ip, magic_line: str, where: str) -> None:
    words = shlex.split(magic_line)
    try:
        ip.find_cell_magic("qaudio").__self__.qaudio.parser.parse_args(words)
    except UsageError as exc:  # an option the magic does not know
        pytest.fail(f"{where}: {magic_line!r}: {exc}")


def test_readme_examples_paste_as_they_are(ip) -> None:
    blocks = _magic_blocks()
    assert len(blocks) >= 8
    for block in blocks:
        lines = [line for line in block.splitlines() if line.strip()]
        where = f"README block starting {lines[0]!r}"
        if any(line.startswith("%%") for line in lines):
            _check_cell(lines, where)
            _parse(ip, lines[0].removeprefix("%%qaudio"), where)
        for line in lines:  # a line magic takes the rest of its line, comments included
            if line.startswith("%qaudio"):
                assert "#" not in line, f"{where}: {line!r}"


def test_the_top_example_is_one_cell_per_block() -> None:
    top = README.split("## Install")[0]
    blocks = re.findall(r"```python\n(.*?)```", top, re.S)
    assert [b.splitlines()[0] for b in blocks] == [
        "%load_ext qaudio_magic",
        "%%qaudio recordings/p01.wav",
        "%%qaudio",
        'answer = ask_audio("recordings/p01.wav", "What is said?")',
    ]
    assert blocks[2] == '%%qaudio\n"阿里" appears where in the clip?\n'


def test_the_magic_help_examples_paste_as_they_are(ip) -> None:
    doc = ip.find_cell_magic("qaudio").__doc__ or ""
    cells = _cells_of_help(doc)
    assert len(cells) >= 5
    for cell in cells:
        _check_cell(cell, f"%%qaudio? example {cell[0]!r}")
        _parse(ip, cell[0].removeprefix("%%qaudio"), "%%qaudio?")
