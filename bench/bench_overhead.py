"""Row 1: per-question client overhead, ours vs the official SDK, streamed and not.

The emulator answers at once (no latency knobs); every client sends the same clip about
the same question to it, in interleaved rounds so drift on a shared machine hits all
alike. The floor is a bare keep-alive ``httpx`` POST of the very body we send; a client's
overhead is the median of its per-round difference to that floor. Audio preparation is
excluded: our clip is prepared once (cached), the SDK gets the same ``data:`` URL ready-made.
"""

from __future__ import annotations

import base64
import gc
import json
import random
import time
from collections.abc import Callable
from typing import Any

from _common import KEY, MODEL, SPEECH_MP3, Stats, emulator, load_sdk, row, timed

QUESTION = "What is said in this clip, and in what language?"
GENERATION = "/services/aigc/multimodal-generation/generation"


def rows(quick: bool) -> list[dict[str, Any]]:
    from qaudio_magic import AudioClip, ask_audio
    from qaudio_magic.session import Session
    from qaudio_magic.settings import Settings

    rounds, warmup = (20, 3) if quick else (300, 10)
    with emulator() as emu:
        session = Session(Settings(base_url=emu.base_url, retries=0))
        session.set_key(KEY)
        clip = AudioClip.from_source(SPEECH_MP3)
        sdk, why = load_sdk(emu.base_url)
        data_url = "data:;base64," + base64.b64encode(SPEECH_MP3.read_bytes()).decode()
        messages: list[dict[str, Any]] = []  # the SDK's, filled from what we send

        def ours(stream: bool) -> Callable[[], str]:
            def ask() -> str:
                answer = ask_audio(
                    clip,
                    QUESTION,
                    display=False,
                    stream=stream,
                    session=session,
                    new=True,
                    conversation="bench",
                )
                return answer.text

            return ask

        def sdk_call(stream: bool) -> Callable[[], str]:
            def call() -> str:
                mmc = sdk.MultiModalConversation
                if not stream:
                    r = mmc.call(model=MODEL, messages=messages, api_key=KEY)
                    if r.status_code != 200:
                        raise RuntimeError(f"SDK call failed: {r.code} {r.message}")
                    return str(r.output.choices[0].message.content[0]["text"])
                text = ""
                for r in mmc.call(
                    model=MODEL,
                    messages=messages,
                    api_key=KEY,
                    stream=True,
                    incremental_output=True,
                ):
                    if r.status_code != 200:
                        raise RuntimeError(f"SDK call failed: {r.code} {r.message}")
                    content = r.output.choices[0].message.content
                    text += "".join(c.get("text", "") for c in content)
                return text

            return call

        # The floor replays exactly what our client sent.
        import httpx

        bare = httpx.Client(trust_env=False)
        floors: dict[bool, Callable[[], object]] = {}
        for stream in (False, True):
            emu.clear()
            expected = ours(stream)()
            sent = emu.generation_requests()[-1]
            if not messages:  # the SDK sends the very audio value we sent, when inline
                audio = json.loads(sent.body)["input"]["messages"][-1]["content"][0]["audio"]
                audio = audio if audio.startswith("data:") else data_url
                messages.append({"role": "user", "content": [{"audio": audio}, {"text": QUESTION}]})
            headers = {k: v for k, v in sent.headers.items() if k not in ("host", "content-length")}
            url = emu.base_url + GENERATION
            body = sent.body

            def floor(url: str = url, body: bytes = body, headers: dict = headers) -> object:
                if "x-dashscope-sse" in headers:
                    with bare.stream("POST", url, content=body, headers=headers) as r:
                        return sum(len(c) for c in r.iter_raw())
                return bare.post(url, content=body, headers=headers).content

            floors[stream] = floor
            if sdk is not None:  # same answer, or we would be timing an error path
                got = sdk_call(stream)()
                if got != expected:
                    raise RuntimeError(f"SDK answer differs: {got[:60]!r} vs {expected[:60]!r}")

        variants: dict[str, Callable[[], object]] = {
            "ours": ours(False),
            "ours_stream": ours(True),
            "floor": floors[False],
            "floor_stream": floors[True],
        }
        if sdk is not None:
            variants["sdk"] = sdk_call(False)
            variants["sdk_stream"] = sdk_call(True)
        for fn in variants.values():
            for _ in range(warmup):
                fn()
        samples: dict[str, list[float]] = {k: [] for k in variants}
        cpu: dict[str, list[float]] = {k: [] for k in variants}  # this thread's CPU time
        order = list(variants)
        rng = random.Random(0)
        gc.collect()
        for _ in range(rounds):
            rng.shuffle(order)
            for name in order:
                c = time.thread_time()
                samples[name].append(timed(variants[name]))
                cpu[name].append(time.thread_time() - c)
        bare.close()
        session.close()

    out = []
    for stream in (False, True):
        s = "_stream" if stream else ""
        floor = Stats.of(samples["floor" + s])
        mine = _over(samples["ours" + s], samples["floor" + s])
        mine_cpu = _over(cpu["ours" + s], cpu["floor" + s])
        label = "streamed" if stream else "non-streamed"
        name = f"1. Per-question client overhead, {label} (instant emulator)"
        target = "≤ 0.5 × the SDK's overhead and ≤ 1 ms"
        note = (
            f"overhead = median per-round difference to the floor, a bare keep-alive httpx POST "
            f"of the same body: {floor.ms()}; ours total {Stats.of(samples['ours' + s]).ms()}; "
            f"clip {SPEECH_MP3.name} ({SPEECH_MP3.stat().st_size / 1e3:.0f} KB) prepared once; "
            f"client-thread CPU time over the floor's ({Stats.of(cpu['floor' + s]).ms()}): "
            f"ours {mine_cpu.median * 1e3:+.2f} ms"
        )
        if sdk is None:
            out.append(row(name, _plus(mine), f"peer unavailable: {why}", "", target, None, note))
            continue
        theirs = _over(samples["sdk" + s], samples["floor" + s])
        theirs_cpu = _over(cpu["sdk" + s], cpu["floor" + s])
        note += (
            f", SDK {theirs_cpu.median * 1e3:+.2f} ms; "
            f"SDK total {Stats.of(samples['sdk' + s]).ms()}"
        )
        ratio = f"{mine.median / theirs.median:.2f}×" if theirs.median > 0 else "n/a"
        # On a busy machine the wall-clock spread can swamp differences of a fraction of a
        # millisecond; then the verdict comes from client-thread CPU time, which neighbours
        # do not inflate, and the note says so.
        if _resolved(mine, theirs):
            met: bool | None = _within(mine, theirs)
        elif _resolved(mine_cpu, theirs_cpu):
            met = _within(mine_cpu, theirs_cpu)
            note = "wall clock too noisy (busy machine): verdict from CPU time; " + note
        else:
            met = None
            note = "TOO NOISY TO JUDGE (busy machine; rerun when idle); " + note
        call = "MultiModalConversation.call" + (
            "(stream=True, incremental_output=True)" if stream else ""
        )
        out.append(
            row(name, _plus(mine), f"{_plus(theirs)} (SDK {call})", ratio, target, met, note)
        )
    return out


def _resolved(mine: Stats, theirs: Stats) -> bool:
    """Are both medians known well enough to compare against half the SDK's overhead?"""
    return theirs.median > 0 and max(mine.se, theirs.se) <= 0.25 * theirs.median


def _within(mine: Stats, theirs: Stats) -> bool:
    return mine.median <= 0.5 * theirs.median and mine.median <= 0.001


def _over(client: list[float], floor: list[float]) -> Stats:
    return Stats.of([c - f for c, f in zip(client, floor, strict=True)])


def _plus(s: Stats) -> str:
    return f"{s.median * 1e3:+.2f} ms (IQR {s.p25 * 1e3:+.2f}…{s.p75 * 1e3:+.2f}, n={s.n})"
