"""Benchmarks against the official SDK and our targets: one command, one results table.

    python bench/run.py            # full run (a few minutes): rewrites bench/RESULTS.md
    python bench/run.py --quick    # a few repetitions: proves every row still runs (CI)

Rows come from every ``bench/bench_*.py`` module, each exposing
``rows(quick: bool) -> list[dict]`` with keys ``row, ours, peer, ratio, target, met, note``.
Each module runs in a fresh interpreter (memory and import measurements stay clean, and a
module that crashes or hangs becomes a row saying so instead of stopping the run). All
traffic goes to an in-process emulator on 127.0.0.1. Missing benchmark dependencies (the
official ``dashscope`` SDK, psutil, nbclient) are installed from the ``bench`` extra.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
KEYS = ("row", "ours", "peer", "ratio", "target", "met", "note")
# Issue order of the rows; modules not listed run after these, by name.
ORDER = ("overhead", "ttft", "wire", "batch", "scale", "prepare", "load_ext", "notebook", "peaks")
# import name -> why the benchmark needs it (all come with `pip install -e .[bench]`)
NEEDS = {
    "dashscope": "the official SDK, the peer",
    "openai": "AsyncOpenAI, the peer of a big batch",
    "dask": "the Dask rows",
    "distributed": "the Dask rows",
    "psutil": "memory measurements",
    "nbclient": "executing notebooks",
    "nbformat": "saved-notebook sizes",
    "ipykernel": "a kernel for nbclient",
    "httpx": "qaudio_magic",
    "av": "qaudio_magic",
    "numpy": "qaudio_magic",
    "IPython": "qaudio_magic",
    "ipywidgets": "qaudio_magic",
    "markdown_it": "qaudio_magic",
}
PACKAGES = (
    "dashscope",
    "openai",
    "dask",
    "requests",
    "httpx",
    "av",
    "numpy",
    "ipython",
    "ipywidgets",
    "nbclient",
    "psutil",
)


# ---------------------------------------------------------------------- setup
def ensure_dependencies() -> None:
    """Install the ``bench`` extra (and the package's own dependencies) when any is missing."""
    missing = [m for m in NEEDS if importlib.util.find_spec(m) is None]
    if not missing:
        return
    print(f"bench: installing .[bench] for {', '.join(missing)} ...", flush=True)
    cmd = [sys.executable, "-m", "pip", "install", "-q", "-e", f"{ROOT}[bench]"]
    if subprocess.run(cmd, check=False).returncode != 0:
        print("bench: pip install failed; rows that need those packages will say so", flush=True)
    importlib.invalidate_caches()


def modules(only: list[str]) -> list[Path]:
    found = sorted(BENCH.glob("bench_*.py"))
    if only:
        found = [p for p in found if any(o in p.stem for o in only)]

    def key(p: Path) -> tuple[int, str]:
        topic = p.stem.removeprefix("bench_")
        return (ORDER.index(topic) if topic in ORDER else len(ORDER), topic)

    return sorted(found, key=key)


# ---------------------------------------------------------------------- running
def run_module(path: Path, quick: bool, timeout: float) -> tuple[list[dict[str, Any]], float]:
    """The module's rows, computed in a fresh interpreter; an error becomes one row."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(ROOT), str(BENCH), os.environ.get("PYTHONPATH")])
        ),
    }
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, str(Path(__file__)), "--child", str(path), "--json", str(out)]
        if quick:
            cmd.append("--quick")
        try:
            proc = subprocess.run(
                cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return [error_row(path, f"timed out after {timeout:.0f} s")], timeout
        elapsed = time.perf_counter() - started
        if proc.returncode != 0 or not out.exists():
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            return [error_row(path, lines[-1] if lines else f"exit {proc.returncode}")], elapsed
        return json.loads(out.read_text()), elapsed


def child(path: Path, out: Path, quick: bool) -> int:
    """Inside the fresh interpreter: import one module, call rows(), write them as JSON."""
    sys.path[:0] = [str(BENCH), str(ROOT)]
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = module.rows(quick)
    if not isinstance(result, list) or not result:
        raise TypeError(f"rows() returned {type(result).__name__}, not a non-empty list")
    out.write_text(json.dumps([normalise(r, path) for r in result], ensure_ascii=False))
    return 0


def normalise(r: object, path: Path) -> dict[str, Any]:
    if not isinstance(r, dict) or not r.get("row"):
        raise TypeError(f"{path.name}: a row must be a dict with a 'row' name, got {r!r:.80}")
    clean = {k: ("" if r.get(k) is None else str(r.get(k))) for k in KEYS if k != "met"}
    met = r.get("met")
    clean["met"] = met if isinstance(met, bool) else None
    return clean


def error_row(path: Path, why: str) -> dict[str, Any]:
    return {
        "row": f"{path.stem}: did not run",
        "ours": "error",
        "peer": "",
        "ratio": "",
        "target": "",
        "met": None,
        "note": why[:300],
        "error": True,
    }


# ---------------------------------------------------------------------- report
def machine() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = f"{os.cpu_count()} logical cores"
    ram = "?"
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
        if physical:
            cores += f" ({physical} physical)"
        ram = f"{psutil.virtual_memory().total / 2**30:.1f} GiB"
    except ImportError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    sys.path.insert(0, str(ROOT))
    from qaudio_magic import __version__

    return [
        f"- CPU: {cpu}, {cores}; RAM {ram}; load average at start {load}",
        f"- OS: {platform.platform()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}); "
        f"qaudio_magic {__version__} ({git_revision()})",
        f"- Packages: {', '.join(versions)}",
    ]


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "qaudio_magic", "bench"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return f"git {rev}{' + uncommitted changes' if dirty else ''}"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def report(rows: list[dict[str, Any]], quick: bool, seconds: float, header: list[str]) -> str:
    verdict = {True: "yes", False: "**MISSED**", None: "—"}
    judged = [r for r in rows if r["met"] is not None]
    missed = [r["row"] for r in judged if r["met"] is False]
    errors = [r["row"] for r in rows if r.get("error")]
    lines = [
        "# Benchmark results",
        "",
        f"Written by `python bench/run.py{' --quick' if quick else ''}` on "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')} in {seconds:.0f} s "
        f"({'quick' if quick else 'full'} run). Medians with interquartile ranges (IQR); "
        "ratio = ours ÷ peer (below 1: ours takes less time, bytes or memory). "
        "Every client talks to the same in-process emulator on 127.0.0.1.",
        "",
        f"**{sum(1 for r in judged if r['met'])} of {len(judged)} targets met.**"
        + (f" Missed: {'; '.join(missed)}." if missed else "")
        + (f" Did not run: {'; '.join(errors)}." if errors else ""),
        "",
        "## Machine",
        "",
        *header,
        "",
        "## Results",
        "",
        "| row | ours | peer | ratio | target | met |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {cell(r['row'])} | {cell(r['ours'])} | {cell(r['peer'])} | {cell(r['ratio'])} "
            f"| {cell(r['target'])} | {verdict[r['met']]} |"
        )
    lines += ["", "## Notes", ""]
    lines += [f"- **{cell(r['row'])}**: {cell(r['note'])}" for r in rows if r["note"]]
    lines += ["", "How each row is measured: [README.md](README.md).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="few repetitions; prove it runs")
    parser.add_argument(
        "--out", type=Path, help="results file (default: bench/RESULTS.md on a full run only)"
    )
    parser.add_argument("--only", nargs="*", default=[], help="run modules whose name has these")
    parser.add_argument("--no-install", action="store_true", help="do not pip-install missing deps")
    parser.add_argument("--timeout", type=float, help="seconds per module (quick 300, full 1800)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.json, args.quick)

    if not args.no_install:
        ensure_dependencies()
    header = machine()
    timeout = args.timeout or (300.0 if args.quick else 1800.0)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for path in modules(args.only):
        print(f"bench: {path.stem} ...", end=" ", flush=True)
        got, seconds = run_module(path, args.quick, timeout)
        rows.extend(got)
        status = "ERROR: " + got[0]["note"] if got[0].get("error") else f"{len(got)} rows"
        print(f"{status} ({seconds:.1f} s)", flush=True)
    if hasattr(os, "getloadavg"):
        header[0] += f", at end {', '.join(f'{x:.2f}' for x in os.getloadavg())}"
    text = report(rows, args.quick, time.perf_counter() - started, header)
    out = args.out or (None if args.quick else BENCH / "RESULTS.md")
    print()
    print(text)
    if out is not None:
        out.write_text(text)
        print(f"bench: wrote {out}")
    return 1 if any(r.get("error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
