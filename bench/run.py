"""Benchmarks: one command rewrites bench/RESULTS.md (``--quick``: a small run that proves it works).

Rows are measured side by side in one run, on 127.0.0.1, and reported as medians with spreads.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LOAD_EXT = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
ip.run_line_magic("load_ext", "qaudio_magic")
dt = time.perf_counter() - t
rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": dt, "mb": (rss1 - rss0) / 1024}}))
"""


def load_ext(runs: int) -> dict[str, float]:
    """`%load_ext qaudio_magic` in a fresh interpreter: time and memory added."""
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", LOAD_EXT.format(root=str(ROOT))],
            capture_output=True,
            text=True,
            check=True,
        )
        samples.append(json.loads(out.stdout.strip().splitlines()[-1]))
    secs = [s["seconds"] for s in samples]
    mbs = [s["mb"] for s in samples]
    return {
        "median_ms": statistics.median(secs) * 1000,
        "min_ms": min(secs) * 1000,
        "max_ms": max(secs) * 1000,
        "median_mb": statistics.median(mbs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few repetitions; prove it runs")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args()
    runs = 3 if args.quick else 15
    row = load_ext(runs)
    ok = row["median_ms"] <= 150 and row["median_mb"] <= 30
    lines = [
        "# Benchmark results",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')} · {platform.machine()} · Python {platform.python_version()}"
        f" · {'quick' if args.quick else 'full'} run ({runs} runs)",
        "",
        "| row | median | spread | target | met |",
        "| --- | --- | --- | --- | --- |",
        f"| `%load_ext qaudio_magic` time | {row['median_ms']:.0f} ms | {row['min_ms']:.0f}–{row['max_ms']:.0f} ms"
        f" | ≤ 150 ms, ≤ 30 MB ({row['median_mb']:.1f} MB) | {'yes' if ok else 'NO'} |",
    ]
    if args.quick:
        print("\n".join(lines))
    else:
        args.out.write_text("\n".join(lines) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
