"""Terminal IPython, as a person uses it: the real ``ipython`` reading cells from its input.

An answer streams once and is not printed again by the display hook (``Out[n]`` shows
its one-line repr, and ``_``/``Out[n]`` still hold the Answer); an error before anything
was sent prints its one line and nothing else.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from qaudio_magic.emulator import Emulator

from .conftest import AUDIO, ROOT, TEST_KEY

LONG = AUDIO / "long" / "long_95s_markers_32k.mp3"  # 95 s: only 0–30 s is sent


def _ipython(cells: list[str], env: dict[str, str], cwd: Path) -> str:
    """Run ``cells`` in a terminal IPython (a cell magic ends with two blank lines)."""
    stdin = "".join(
        cell.rstrip("\n") + ("\n\n\n" if cell.startswith("%%") else "\n") for cell in cells
    )
    done = subprocess.run(
        [sys.executable, "-m", "IPython", "--simple-prompt", "--colors=NoColor", "--no-banner",
         "--HistoryManager.enabled=False"],
        input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        cwd=cwd, timeout=120,
    )  # fmt: skip
    return done.stdout


def _env(emu: Emulator, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASHSCOPE_", "OPENAI_"))}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["DASHSCOPE_HTTP_BASE_URL"] = emu.base_url
    env.update(extra)
    return env


def test_terminal_prints_each_answer_once(emu: Emulator, tmp_path: Path) -> None:
    emu.reply_with(
        "The first marker is at 10 s, and this sentence runs on past sixty characters (7f3a)."
    )
    out = _ipython(
        [
            "%load_ext qaudio_magic",
            f"%%qaudio {LONG}\nWhat is said?",
            "type(Out[2]).__name__, Out[2].request_id == _.request_id",
        ],
        _env(emu, DASHSCOPE_API_KEY=TEST_KEY),
        tmp_path,
    )
    assert out.count("sixty characters (7f3a).") == 1, out  # streamed, not printed again
    assert out.count("⏱ times: 10 s") == 1 and out.count("-- qwen-audio-turbo-latest") == 1
    # the header names what was sent, once: the window, not the file's 95 s
    assert out.count("long_95s_markers_32k.mp3 [0–30 s] · 30.0 s") == 1, out
    assert "95.0 s ≈" not in out and "· 95.0 s" not in out
    assert "Out[2]: Answer('The first marker is at 10 s, and" in out  # its one-line repr
    assert "Out[3]: ('Answer', True)" in out  # _ and Out[n] hold the Answer
    assert "Traceback" not in out


def test_terminal_error_before_sending_is_one_line_and_nothing_else(
    emu: Emulator, tmp_path: Path
) -> None:
    out = _ipython(
        ["%load_ext qaudio_magic", f"%%qaudio {AUDIO / 'speech_en.wav'}\nAnything?"],
        _env(emu),  # no key
        tmp_path,
    )
    cell = out.split("In [2]:", 1)[1].split("In [3]:", 1)[0]
    lines = [line.replace("...:", "").strip() for line in cell.strip().splitlines()]
    assert [line for line in lines if line] == [
        "UsageError: no DashScope API key — set DASHSCOPE_API_KEY, run %qaudio key, or "
        "%qaudio emulator to try offline"
    ], out
    assert emu.requests == []
