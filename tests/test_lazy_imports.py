"""`%load_ext qaudio_magic` stays light: heavy libraries load on first use, not at load.

Timing is a benchmark row (bench/run.py); this checks the behaviour behind it in a fresh
interpreter, so nothing imported by other tests can hide a regression.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("av", "numpy", "httpx", "ipywidgets", "markdown_it")

SCRIPT = """
import json, sys
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
before = set(sys.modules)
ip.run_line_magic("load_ext", "qaudio_magic")
ns_ok = callable(ip.user_ns.get("ask_audio"))
loaded = sorted({m.split(".")[0] for m in set(sys.modules) - before})
after_ext = loaded
ip.run_cell("%%qaudio?")  # help for the magic needs nothing heavy either
loaded_help = sorted({m.split(".")[0] for m in set(sys.modules) - before})
print(json.dumps({"ns_ok": ns_ok, "after_ext": after_ext, "after_help": loaded_help}))
"""


def _run(script: str) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_load_ext_defers_heavy_imports() -> None:
    result = _run(SCRIPT)
    assert result["ns_ok"], "ask_audio was not put in the namespace"
    for stage in ("after_ext", "after_help"):
        loaded = set(result[stage])  # type: ignore[arg-type]
        assert "qaudio_magic" in loaded
        assert not loaded & set(HEAVY), f"{stage}: {sorted(loaded & set(HEAVY))} imported"


def test_first_question_loads_what_it_needs(audio: Path) -> None:
    """The deferred imports really happen on use: a question against the emulator works."""
    script = f"""
import json, os, sys
from qaudio_magic.emulator import Emulator
with Emulator() as emu:
    os.environ["DASHSCOPE_HTTP_BASE_URL"] = emu.base_url
    os.environ["DASHSCOPE_API_KEY"] = "sk-lazy-test"
    from IPython.core.interactiveshell import InteractiveShell
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "qaudio_magic")
    answer = ip.user_ns["ask_audio"]({str(audio / "en_mp3_64k.mp3")!r}, "What is said?", display=False)
    print(json.dumps({{"text": answer.text, "loaded": sorted(m for m in {list(HEAVY)!r} if m in sys.modules)}}))
"""
    result = _run(script)
    assert "emulat" in str(result["text"]).lower()
    # an MP3 is probed by FFmpeg (a plain WAV needs only its header: no PyAV)
    assert {"av", "numpy", "httpx"} <= set(result["loaded"])  # type: ignore[arg-type]
