"""Corpus scale: a big batch against an instant server, next to what a power user writes.

One run, one emulator in its own process (``python -m qaudio_magic.emulator``, no latency:
it answers as fast as it can, on its own core), the vLLM stand-in route
(``/v1/chat/completions``, raw base64 ``input_audio``). The same clips go through:

* ours: ``ask_audio(paths, question, model="openai:…", concurrency=64)`` with its
  progress bar and the response cache on (a fresh cache directory each time, so every
  clip is really asked);
* the peer: the ``openai`` SDK's ``AsyncOpenAI`` with an ``asyncio.Semaphore(64)`` around
  ``client.chat.completions.create`` (each clip read and base64-encoded in the task);
* the floor: ``httpx.AsyncClient`` + ``asyncio.gather``, a semaphore, a JSON body made
  by hand, the answer text read out of the reply.

Each sends whole answers (no SSE), as ours does for a batch. Runs are interleaved, the
median is reported; client CPU is this process's CPU time over the run (all threads)
per clip. Targets: ours ≤ 0.7 × the AsyncOpenAI wall time; ≤ 1 ms of client CPU per clip.

``python bench/bench_scale.py [--quick]`` prints the rows.
"""

from __future__ import annotations

import asyncio
import base64
import json
import statistics
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from _common import KEY, emulator_process, row  # noqa: E402

QUESTION = "Is there a tone in this clip?"
SERVED = "Qwen/Qwen2-Audio-7B-Instruct"  # the model name the vLLM stand-in is asked for
CONCURRENCY = 64


def clips(folder: Path, n: int, seconds: float = 1.0) -> list[Path]:
    """``n`` distinct one-second 16 kHz mono WAVs (a tone each), written with the stdlib."""
    rate = 16_000
    t = np.arange(round(rate * seconds)) / rate
    paths = []
    for i in range(n):
        path = folder / f"clip_{i:05d}.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            tone = 0.3 * np.sin(2 * np.pi * (200 + 0.37 * i) * t)
            w.writeframes((tone * 32767).astype("<i2").tobytes())
        paths.append(path)
    return paths


def _measured(run: Callable[[], list[str]], n: int) -> tuple[float, float]:
    """Wall seconds and client CPU seconds per clip of one run; checks every clip answered."""
    cpu = time.process_time()
    started = time.perf_counter()
    texts = run()
    wall = time.perf_counter() - started
    used = time.process_time() - cpu
    if len(texts) != n or not all(texts):
        raise RuntimeError(f"{sum(1 for t in texts if t)} of {n} clips answered")
    return wall, used / n


# ---------------------------------------------------------------------- the three clients
def ours(root: str, paths: list[Path], concurrency: int, cache_dir: Path) -> list[str]:
    from qaudio_magic import ask_audio
    from qaudio_magic.session import Session, Settings, set_session

    session = Session(Settings(openai_base_url=root + "/v1", cache_dir=str(cache_dir)))
    old = set_session(session)
    try:
        answers = ask_audio(
            paths, QUESTION, model="openai:" + SERVED, concurrency=concurrency, cache="on"
        )
    finally:
        session.close()
        set_session(old)
    return answers.texts


def async_openai(root: str, paths: list[Path], concurrency: int) -> list[str]:
    from openai import AsyncOpenAI

    async def main() -> list[str]:
        client = AsyncOpenAI(base_url=root + "/v1", api_key=KEY)
        limit = asyncio.Semaphore(concurrency)

        async def one(path: Path) -> str:
            async with limit:
                b64 = base64.b64encode(path.read_bytes()).decode()
                reply = await client.chat.completions.create(
                    model=SERVED,
                    messages=[
                        {
                            "role": "user",
                            "content": [
                                {
                                    "type": "input_audio",
                                    "input_audio": {"data": b64, "format": "wav"},
                                },
                                {"type": "text", "text": QUESTION},
                            ],
                        }
                    ],
                )
                return reply.choices[0].message.content or ""

        try:
            return list(await asyncio.gather(*(one(p) for p in paths)))
        finally:
            await client.close()

    return asyncio.run(main())


def httpx_gather(root: str, paths: list[Path], concurrency: int) -> list[str]:
    import httpx

    async def main() -> list[str]:
        limit = asyncio.Semaphore(concurrency)
        # httpx's default pool: with as many keep-alive connections as requests in flight,
        # httpcore's pool spends ~4 ms a request matching requests to connections
        async with httpx.AsyncClient(base_url=root, timeout=60) as client:

            async def one(path: Path) -> str:
                async with limit:
                    b64 = base64.b64encode(path.read_bytes()).decode()
                    body = {
                        "model": SERVED,
                        "messages": [
                            {
                                "role": "user",
                                "content": [
                                    {
                                        "type": "input_audio",
                                        "input_audio": {"data": b64, "format": "wav"},
                                    },
                                    {"type": "text", "text": QUESTION},
                                ],
                            }
                        ],
                    }
                    reply = await client.post(
                        "/v1/chat/completions",
                        content=json.dumps(body),
                        headers={
                            "Authorization": f"Bearer {KEY}",
                            "Content-Type": "application/json",
                        },
                    )
                    reply.raise_for_status()
                    return str(reply.json()["choices"][0]["message"]["content"])

            return list(await asyncio.gather(*(one(p) for p in paths)))

    return asyncio.run(main())


# ---------------------------------------------------------------------- rows
def _spread(xs: list[float], unit: str = "s", scale: float = 1.0, digits: int = 2) -> str:
    med = statistics.median(xs) * scale
    if len(xs) == 1:
        return f"{med:.{digits}f} {unit}"
    return f"{med:.{digits}f} {unit} ({min(xs) * scale:.{digits}f}–{max(xs) * scale:.{digits}f})"


def throughput_rows(quick: bool) -> list[dict[str, Any]]:
    n, runs = (300, 1) if quick else (2000, 3)
    walls: dict[str, list[float]] = {"ours": [], "openai": [], "httpx": []}
    cpus: dict[str, list[float]] = {"ours": [], "openai": [], "httpx": []}
    with tempfile.TemporaryDirectory() as tmp, emulator_process() as (root, _pid):
        paths = clips(Path(tmp), n)
        warm = paths[:20]  # imports and first connections, outside the clock
        ours(root, warm, 8, Path(tmp) / "warm-cache")
        async_openai(root, warm, 8)
        httpx_gather(root, warm, 8)
        for i in range(runs):
            cache = Path(tmp) / f"cache-{i}"
            runners: dict[str, Callable[[], list[str]]] = {
                "ours": lambda: ours(root, paths, CONCURRENCY, cache),  # noqa: B023
                "openai": lambda: async_openai(root, paths, CONCURRENCY),
                "httpx": lambda: httpx_gather(root, paths, CONCURRENCY),
            }
            for name, run in runners.items():
                wall, cpu = _measured(run, n)
                walls[name].append(wall)
                cpus[name].append(cpu)
    med = {k: statistics.median(v) for k, v in walls.items()}
    cpu_med = {k: statistics.median(v) for k, v in cpus.items()}
    ratio = med["ours"] / med["openai"]
    label = f"{n:,} one-second clips, concurrency {CONCURRENCY} (instant server)"
    note = (
        f"emulator in its own process, vLLM stand-in route, whole answers; ours with a progress "
        f"bar and the cache on (fresh cache each run); clips/s: ours {n / med['ours']:.0f}, "
        f"AsyncOpenAI {n / med['openai']:.0f}, httpx floor {n / med['httpx']:.0f}; "
        f"floor (httpx.AsyncClient + gather): {_spread(walls['httpx'])}, "
        f"CPU {cpu_med['httpx'] * 1e3:.2f} ms per clip"
    )
    return [
        row(
            f"{label}: wall time",
            _spread(walls["ours"]),
            f"AsyncOpenAI + Semaphore({CONCURRENCY}) {_spread(walls['openai'])}",
            f"{ratio:.2f}×",
            "≤ 0.7 × AsyncOpenAI",
            ratio <= 0.7,
            note,
        ),
        row(
            f"{label}: client CPU per clip",
            _spread(cpus["ours"], "ms", 1e3),
            f"AsyncOpenAI {_spread(cpus['openai'], 'ms', 1e3)}",
            f"{cpu_med['ours'] / cpu_med['openai']:.2f}×",
            "≤ 1 ms",
            cpu_med["ours"] <= 1e-3,
            "CPU time of the client process over the run (all threads, kernel time included) "
            "÷ clips",
        ),
    ]


# ---------------------------------------------------------------------- rate limits
def rate_limited_rows(quick: bool) -> list[dict[str, Any]]:
    """A batch against an emulator enforcing a rate limit per second (the strictest reading
    of the documented limits), paced by ours, next to the same batch unpaced."""
    from qaudio_magic import ask_audio
    from qaudio_magic.session import Session, Settings, set_session

    if quick:  # a custom limit, so the quick run stays short
        n, model, rpm, tpm, limit = 40, "qwen3-omni-flash", 1200, 60_000, "1200/60000"
    else:  # the documented figures of the omni family (CURRENT-MODELS.md §11.10)
        n, model, rpm, tpm, limit = 40, "qwen3-omni-flash", 60, 100_000, "auto"
    flags = ("--rpm", str(rpm), "--tpm", str(tpm), "--rate-window", "1")
    out: dict[str, tuple[int, int, int, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = clips(Path(tmp), n)
        for label, setting in (("paced", limit), ("unpaced", "off")):
            with emulator_process(*flags) as (root, _pid):
                session = Session(
                    Settings(base_url=root + "/api/v1", rate_limit=setting, cache="off")
                )
                session.set_key(KEY)
                old = set_session(session)
                try:
                    started = time.perf_counter()
                    answers = ask_audio(paths, QUESTION, model=model, progress=False)
                    wall = time.perf_counter() - started
                finally:
                    session.close()
                    set_session(old)
            refused = answers.requests - (len(answers) - len(answers.failed))
            out[label] = (refused, len(answers.answered), answers.requests, wall)
    paced, unpaced = out["paced"], out["unpaced"]
    return [
        row(
            f"rate-limited batch: {n} clips, {model} at {rpm} RPM / {tpm:,} TPM: 429s",
            f"{paced[0]} refused, {paced[1]}/{n} answered, {paced[3]:.1f} s",
            f"unpaced (rate_limit='off'): {unpaced[0]} refused, {unpaced[1]}/{n} answered "
            f"in {unpaced[2]} requests, {unpaced[3]:.1f} s",
            "",
            "0 refused, every clip answered",
            paced[0] == 0 and paced[1] == n,
            "the emulator (own process) refuses beyond RPM/60 requests and TPM/60 tokens per "
            f"second, per model (--rate-window 1); ours paced by {limit!r} "
            "(auto: the model registry's documented limits); refused = requests − answers",
        )
    ]


# ---------------------------------------------------------------------- memory
MEMORY = r"""
import json, sys, time, wave, io
sys.path.insert(0, {root!r})
import numpy as np
def vm(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
from qaudio_magic import ask_audio
from qaudio_magic.session import Session, Settings, set_session
rate = 16_000
t = np.arange(rate) / rate
def clip(i):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(rate)
        w.writeframes((0.3 * np.sin(2 * np.pi * (200 + (i % 5000) * 0.37) * t) * 32767).astype("<i2").tobytes())
    return buf.getvalue()
session = Session(Settings(openai_base_url={base!r}, cache_dir={cache!r}))
set_session(session)
model = "openai:{served}"
ask_audio([clip(-1 - i) for i in range(200)], "warm up", model=model, concurrency={conc}, progress=False)
base = vm("VmRSS:")
started = time.perf_counter()
answers = ask_audio((clip(i) for i in range({n})), "Is there a tone?", model=model,
                    concurrency={conc}, progress=True)
took = time.perf_counter() - started
print(json.dumps({{"grew": vm("VmHWM:") - base, "seconds": took, "n": len(answers),
                   "answered": len(answers.answered)}}))
"""


def memory_rows(quick: bool) -> list[dict[str, Any]]:
    """A batch of N synthetic one-second clips made on the fly (a generator of WAV bytes):
    peak RSS growth of a fresh interpreter over the batch."""
    import subprocess

    n = 2_000 if quick else 100_000
    with tempfile.TemporaryDirectory() as tmp, emulator_process() as (root, _pid):
        code = MEMORY.format(
            root=str(ROOT), base=root + "/v1", cache=tmp, served=SERVED, conc=CONCURRENCY, n=n
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
    got = json.loads(done.stdout.strip().splitlines()[-1])
    grew = got["grew"]
    return [
        row(
            f"{n:,}-item batch (synthetic one-second clips): peak memory",
            f"+{grew:.0f} MB RSS, {got['seconds']:.0f} s, {got['answered']:,}/{n:,} answered",
            f"the audio alone: {n * 32_044 / 1e6:,.0f} MB",
            "",
            "≤ 200 MB" if n >= 100_000 else f"≤ {200 * n / 100_000 + 50:.0f} MB",
            grew <= (200 if n >= 100_000 else 200 * n / 100_000 + 50),
            "VmHWM after − VmRSS before, fresh interpreter after a warm-up batch; sources a "
            f"generator of WAV bytes made on demand; concurrency {CONCURRENCY}, progress bar, "
            "cache on; emulator in its own process",
        )
    ]


# ---------------------------------------------------------------------- Dask
def dask_rows(quick: bool) -> list[dict[str, Any]]:
    """Clips per second through ask_audio(dask Series) on a LocalCluster of 1 and 2
    worker processes (one thread each), against the emulator in its own process."""
    try:
        import dask.dataframe as dd
        import distributed
        import pandas as pd
    except ImportError as exc:
        return [row("Dask LocalCluster, 1 vs 2 workers", "peer unavailable", note=str(exc))]
    from qaudio_magic import ask_audio
    from qaudio_magic.session import Session, Settings, set_session

    n = 100 if quick else 1_000
    rates: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp, emulator_process() as (root, _pid):
        paths = [str(p) for p in clips(Path(tmp), n)]
        for workers in (1, 2):
            session = Session(
                Settings(openai_base_url=root + "/v1", cache_dir=f"{tmp}/cache-{workers}")
            )
            old = set_session(session)
            try:
                with (
                    distributed.LocalCluster(
                        n_workers=workers,
                        threads_per_worker=1,
                        host="127.0.0.1",
                        dashboard_address="127.0.0.1:0",
                    ) as cluster,
                    distributed.Client(cluster),
                ):
                    ddf = dd.from_pandas(pd.DataFrame({"path": paths}), npartitions=8)
                    lazy = ask_audio(
                        ddf["path"], QUESTION, model="openai:" + SERVED, concurrency=32
                    )
                    started = time.perf_counter()
                    frame = lazy.compute()
                    rates[workers] = n / (time.perf_counter() - started)
            finally:
                session.close()
                set_session(old)
            if frame["error"].notna().any():
                raise RuntimeError(f"Dask run with {workers} workers: failed rows")
    return [
        row(
            f"Dask LocalCluster: {n:,} clips, 1 vs 2 worker processes",
            f"2 workers: {rates[2]:.0f} clips/s",
            f"1 worker: {rates[1]:.0f} clips/s",
            f"{rates[2] / rates[1]:.2f}× the clips/s",
            "",
            None,
            "ask_audio(ddf['path'], …) with 8 partitions, concurrency 32 per worker, cache on; "
            "both workers and the emulator share this machine's cores, so a second worker adds "
            "what the cores have left",
        )
    ]


def rows(quick: bool) -> list[dict[str, Any]]:
    return throughput_rows(quick) + rate_limited_rows(quick) + memory_rows(quick) + dask_rows(quick)


if __name__ == "__main__":
    for r in rows(quick="--quick" in sys.argv):
        print(json.dumps(r, ensure_ascii=False))
