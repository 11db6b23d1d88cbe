"""Row 7: how much a saved notebook grows per answer cell, with default settings.

One notebook is executed headless with nbclient against the emulator, widget state not
stored (JupyterLab's default ``saveState: false``): a ``%load_ext`` cell, N ``%%qaudio``
answer cells about a 30 s clip (each with its player), and N cells showing the same clip
with ``IPython.display.Audio`` (what a researcher would otherwise use; it embeds the audio
as base64). Growth per cell = (bytes of the saved notebook − bytes without those cells) ÷ N.
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _common import KEY, ROOT, clip_30s, emulator, fmt_bytes, row

QUESTIONS = (
    "What is said in this recording?",
    "Who is speaking?",
    "What is the speaker's mood?",
    "Is there background noise?",
    "Summarise the recording in one sentence.",
    "Which language is spoken?",
    "How fast does the speaker talk?",
    "Is the recording clean enough for transcription?",
    "Does the speaker sound like a native speaker?",
    "What would be a good title for this clip?",
)


def rows(quick: bool) -> list[dict[str, Any]]:
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError as exc:
        return [_row("not measured", f"peer unavailable: {exc}", None, "install nbclient")]
    n = 2 if quick else len(QUESTIONS)
    with tempfile.TemporaryDirectory() as tmp, emulator() as emu:
        clip = clip_30s(Path(tmp))
        clip_bytes = clip.stat().st_size
        nb = nbformat.v4.new_notebook()
        nb.cells.append(nbformat.v4.new_code_cell("%load_ext qaudio_magic"))
        ours = [
            nbformat.v4.new_code_cell(f"%%qaudio --new {clip.name}\n{q}") for q in QUESTIONS[:n]
        ]
        peer = [
            nbformat.v4.new_code_cell(
                f"from IPython.display import Audio\nAudio(filename={clip.name!r})"
            )
            for _ in range(n)
        ]
        nb.cells.extend(ours + peer)
        with _env(DASHSCOPE_HTTP_BASE_URL=emu.base_url, DASHSCOPE_API_KEY=KEY):
            NotebookClient(
                nb,
                timeout=120,
                kernel_name="python3",
                store_widget_state=False,
                resources={"metadata": {"path": tmp}},
            ).execute()
        answered = len(emu.generation_requests())
        full = len(nbformat.writes(nb).encode())

        def without(cells: list[Any]) -> int:
            copy = nbformat.from_dict(nb)
            ids = {id(c) for c in cells}
            copy.cells = [
                c for c, orig in zip(copy.cells, nb.cells, strict=True) if id(orig) not in ids
            ]
            return len(nbformat.writes(copy).encode())

        ours_growth = (full - without(ours)) / n
        peer_growth = (full - without(peer)) / n
        # Any embedded copy of the clip would contain this run of its base64.
        probe = base64.b64encode(clip.read_bytes()[3000:3300]).decode()[8:72]
        has_audio = probe in nbformat.writes(nbformat.v4.new_notebook(cells=ours))
        if probe not in nbformat.writes(nbformat.v4.new_notebook(cells=peer)):
            raise RuntimeError("the audio probe misses the embedded clip: the check is broken")
        errors = [
            o.get("ename")
            for c in nb.cells
            for o in c.get("outputs", [])
            if o.get("output_type") == "error"
        ]
    if errors or answered != n:
        raise RuntimeError(f"notebook did not run cleanly: errors {errors}, {answered}/{n} answers")
    note = (
        f"{n} cells of each kind, clip {fmt_bytes(clip_bytes)}; nbclient with "
        f"store_widget_state=False; our cells hold {'AUDIO BYTES' if has_audio else 'no audio bytes'}"
        " (question, answer, clip name and footer as text/plain + text/html; the player as a "
        "widget view reference; since issue 14 a static waveform picture, an SVG of about 1 KB, "
        "so the answer still shows its audio where widgets cannot render)"
    )
    return [
        _row(
            f"{fmt_bytes(ours_growth)} per `%%qaudio` cell",
            f"{fmt_bytes(peer_growth)} per `IPython.display.Audio` cell",
            ours_growth / peer_growth,
            note,
            ours_growth <= 5000,
        )
    ]


def _row(
    ours: str, peer: str, ratio: float | None, note: str, met: bool | None = None
) -> dict[str, Any]:
    return row(
        "7. Saved-notebook growth per answer cell (default settings, 30 s clip)",
        ours,
        peer,
        f"{ratio:.4f}×" if ratio is not None else "",
        "≤ 5 KB per answer cell (4 KB + the static waveform picture)",
        met,
        note,
    )


@contextmanager
def _env(**values: str) -> Iterator[None]:
    """Environment for the kernel: this checkout importable, the emulator as the service."""
    values["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
