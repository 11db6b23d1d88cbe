"""Row 6: ``%load_ext qaudio_magic`` time and memory, in a fresh interpreter each time.

The IPython shell exists before the clock starts (a kernel already has one); what is
measured is the extension alone: wall time of the magic and resident memory added
(RSS after − RSS before). The peer is ``import dashscope`` measured the same way, the
first thing a notebook using the official SDK does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from _common import ROOT, Stats, row

HEAVY = ("av", "numpy", "httpx", "ipywidgets", "markdown_it")

PROBE = r"""
import json, os, sys, time
def rss():
    try:
        import psutil
        return psutil.Process().memory_info().rss
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
before = set(sys.modules)
r0 = rss()
t = time.perf_counter()
{action}
dt = time.perf_counter() - t
r1 = rss()
heavy = sorted(m for m in {heavy!r} if m in sys.modules and m not in before)
print(json.dumps({{"seconds": dt, "bytes": r1 - r0, "heavy": heavy}}))
"""

OURS = 'ip.run_line_magic("load_ext", "qaudio_magic")'
PEER = "import dashscope"


def _sample(action: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(action=action, heavy=HEAVY)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def rows(quick: bool) -> list[dict[str, Any]]:
    runs = 2 if quick else 20
    ours: list[dict[str, Any]] = []
    peer: list[dict[str, Any]] = []
    why = ""
    for _ in range(runs):  # interleaved, so both see the same machine
        ours.append(_sample(OURS))
        if not why:
            try:
                peer.append(_sample(PEER))
            except subprocess.CalledProcessError as exc:
                why = (exc.stderr.strip().splitlines() or ["import failed"])[-1]
    t = Stats.of([s["seconds"] for s in ours])
    mb = Stats.of([s["bytes"] / 1e6 for s in ours])
    heavy = sorted({m for s in ours for m in s["heavy"]})
    note = "heavy modules loaded: " + (", ".join(heavy) if heavy else "none of " + ", ".join(HEAVY))
    time_row = row(
        "6. `%load_ext qaudio_magic`: time",
        t.ms(1),
        "",
        "",
        "≤ 150 ms",
        t.median <= 0.150,
        note,
    )
    mem_row = row(
        "6. `%load_ext qaudio_magic`: memory added (RSS)",
        f"{mb.median:.1f} MB (IQR {mb.p25:.1f}–{mb.p75:.1f}, n={mb.n})",
        "",
        "",
        "≤ 30 MB",
        mb.median <= 30,
        "RSS after − before, in a fresh interpreter with the IPython shell already made",
    )
    if why:
        time_row["peer"] = mem_row["peer"] = f"peer unavailable: {why}"
    else:
        pt = Stats.of([s["seconds"] for s in peer])
        pmb = Stats.of([s["bytes"] / 1e6 for s in peer])
        time_row["peer"] = f"`import dashscope` {pt.ms(0)}"
        time_row["ratio"] = f"{t.median / pt.median:.2f}×"
        mem_row["peer"] = f"`import dashscope` {pmb.median:.1f} MB"
        mem_row["ratio"] = f"{mb.median / pmb.median:.2f}×" if pmb.median > 0 else ""
    return [time_row, mem_row]
