"""Every notebook in notebooks/ runs headless (nbclient) against the emulator.

Saved like JupyterLab saves by default (no widget state), the executed notebook must show
the answers as plain outputs and hold no audio bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from qaudio_magic.emulator import Emulator

from .conftest import ROOT, TEST_KEY

OPENAI_KEY = "sk-openai-fake-notebook-41d2e8"

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# Base64 openings of audio containers: RIFF/WAVE, ID3/MP3 frames, Ogg, WebM/Matroska, fLaC, MP4.
AUDIO_SIGNATURES = (
    "UklGR",
    "SUQz",
    "//uQ",
    "//NI",
    "T2dnU",
    "GkXfo",
    "ZkxhQ",
    "AAAAGGZ0eXA",
    "AAAAIGZ0eXA",
)


def execute(path: Path, env: dict[str, str]) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        store_widget_state=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute(env=env)
    return nb


def kernel_env(**extra: str) -> dict[str, str]:
    """The test process's environment without keys; the cache dir is the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASHSCOPE_", "OPENAI_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def texts(nb: nbformat.NotebookNode, mimetypes: tuple[str, ...] | None = None) -> str:
    """Every output of ``nb`` as text (streams plus ``mimetypes`` of rich outputs, or all)."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            data = out.get("data", {})
            parts.extend(str(v) for k, v in data.items() if mimetypes is None or k in mimetypes)
    return "\n".join(parts)


def assert_no_audio_bytes(nb: nbformat.NotebookNode) -> None:
    dumped = nbformat.writes(nb)
    for sig in AUDIO_SIGNATURES:
        assert sig not in dumped, f"audio bytes ({sig}...) saved in the notebook"
    assert "data:audio" not in dumped and "data:;base64" not in dumped


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_against_emulator(path: Path, emu: Emulator, tmp_path: Path) -> None:
    env = kernel_env(
        DASHSCOPE_API_KEY=TEST_KEY,
        DASHSCOPE_HTTP_BASE_URL=emu.base_url,
        OPENAI_BASE_URL=emu.openai_base_url,  # the emulator's vLLM stand-in, for -m openai:
        OPENAI_API_KEY=OPENAI_KEY,
    )
    nb = execute(path, env)
    out = texts(nb)
    assert "Traceback" not in out
    assert "Emulated answer" in out, "no answer reached the notebook's outputs"
    assert_no_audio_bytes(nb)
    saved = nbformat.writes(nb)  # the .ipynb as it would be saved: no key, anywhere
    assert TEST_KEY not in saved and OPENAI_KEY not in saved
    nbformat.write(nb, tmp_path / path.name)
    if path.stem == "label_a_corpus":
        _label_a_corpus_shows_its_steps(nb)


def _label_a_corpus_shows_its_steps(nb: nbformat.NotebookNode) -> None:
    """Typed columns, a typed single answer, labels scored, a dry run, a three-model grid,
    the score per model as a chart or a table, and WER — each step's output is there."""
    out = texts(nb, ("text/plain",))
    for needle in (
        "kind         category",  # frame[list(Clip)].dtypes
        "speakers        Int64",
        "dog_barks     boolean",
        "raw: {",  # the single typed answer: fields, then the raw text
        "Score(accuracy qwen-audio-turbo-latest=",
        "Dry run: nothing sent. 6 items × 3 models = 18 requests",
        "Grid — 6 clips × 3 models",
        "Grid — 4 clips × 2 models",  # the --compare magic
        "kind_accuracy",
        "reference_units",
    ):
        assert needle in out, needle
    chart = any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert chart or "matplotlib is not installed: the scores per model as a table" in out
    html = texts(nb, ("text/html",))
    assert '<table class="qaudio-data">' in html and "<summary>raw answer</summary>" in html


def test_quickstart_without_key_says_so_and_uses_the_emulator() -> None:
    nb = execute(ROOT / "notebooks" / "quickstart.ipynb", kernel_env())
    out = texts(nb)
    assert "No DASHSCOPE_API_KEY set: using the built-in emulator at http://127.0.0.1:" in out
    # first question, follow-up, second clip, ask_audio — all answered, in the right order
    for needle in (
        "1 audio clip (4.26 s); the conversation has 0 earlier turns",
        "no audio; the conversation has 1 earlier turn",
        "1 audio clip (3.00 s); the conversation has 2 earlier turns",
        'question: "What is said here?"',
    ):
        assert needle in out
    # the saved outputs say which clip each answer is about, as plain text
    plain = [
        o["data"]["text/plain"]
        for c in nb.cells
        for o in c.get("outputs", [])
        if "data" in o and "qaudio" in o.get("metadata", {})
    ]
    assert any(p.startswith("[speech_zh_cmn.wav · 4.3 s]") for p in plain)
    assert_no_audio_bytes(nb)
    size = len(nbformat.writes(nb).encode())
    assert size < 60_000, f"saved quickstart is {size} bytes"


def test_quickstart_with_a_key_talks_to_the_configured_service(emu: Emulator) -> None:
    nb = execute(
        ROOT / "notebooks" / "quickstart.ipynb",
        kernel_env(DASHSCOPE_API_KEY=TEST_KEY, DASHSCOPE_HTTP_BASE_URL=emu.base_url),
    )
    assert f"Using DashScope at {emu.base_url} with the key from $DASHSCOPE_API_KEY." in texts(nb)
    requests = emu.generation_requests()
    assert len(requests) >= 4
    assert all(
        r.headers["authorization"] == f"Bearer {TEST_KEY}" for r in emu.generation_requests()
    )
    # provenance metadata on each answer: model, request id, clip sha256 — no bytes
    metas = [
        o["metadata"]["qaudio"]
        for c in nb.cells
        for o in c.get("outputs", [])
        if "qaudio" in o.get("metadata", {}) and o["metadata"]["qaudio"].get("status") == "complete"
    ]
    assert len(metas) == len(requests)  # one complete answer output per question sent
    assert all(m["request_id"] and m["model"] == "qwen-audio-turbo-latest" for m in metas)
    assert all(len(c["sha256"]) == 64 for m in metas for c in m["clips"])
