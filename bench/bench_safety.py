"""Row 8: Ctrl-C and the soak — how fast an interrupt stops a question, and what a long
faulty session leaves behind.

Ctrl-C is delivered as ipykernel does on Windows, ``_thread.interrupt_main()`` from
another thread, which wakes no blocked system call: the emulator holds the reply back
(``latency``) and the interrupt comes 0.3 s into the question. Ours waits on sockets in
0.1 s slices; the SDK (``requests``) blocks in ``recv`` until the reply arrives. The
soak asks streamed questions with about 10% injected faults (seeded) and compares
resident memory and open file descriptors after a warm-up with those at the end (the
emulator's request log, in this process too, is emptied as it goes).
"""

from __future__ import annotations

import _thread
import base64
import gc
import threading
import time
from typing import Any

from _common import KEY, MODEL, SPEECH_MP3, SPEECH_WAV, Stats, emulator, load_sdk, row

PRESS_AFTER = 0.3
HOLD = 3.0  # seconds the emulator holds each reply back
FAULTS = (
    "status=429;code=Throttling.RateQuota;retry_after=0.01;rate=0.025;seed=1",
    "status=503;retry_after=0.01;rate=0.025;seed=2",
    "reset=1;rate=0.02;seed=3",
    "cut_after=3;rate=0.02;seed=4",
    "malformed=1;rate=0.01;seed=5",
)


def _stop_time(call: Any, after: float = PRESS_AFTER) -> float:
    """Seconds from Ctrl-C to ``call`` giving up (KeyboardInterrupt or our Interrupted)."""
    from qaudio_magic.errors import Interrupted

    pressed: list[float] = []

    def press() -> None:
        pressed.append(time.perf_counter())
        _thread.interrupt_main()

    timer = threading.Timer(after, press)
    timer.start()
    try:
        call()
    except (KeyboardInterrupt, Interrupted):
        pass
    ended = time.perf_counter()
    timer.join()
    return ended - pressed[0] if pressed else float("nan")


def _read_timeout_row(session: Any, tries: int) -> dict[str, Any]:
    """How soon a read timeout fires after it is due (the tests check only that it fires,
    before the held reply: a loaded machine must not fail them)."""
    from qaudio_magic import ask_audio
    from qaudio_magic.errors import QAudioError

    timeout = 0.3
    session.configure(timeout=timeout)
    late = []
    for _ in range(tries):
        started = time.perf_counter()
        try:
            ask_audio(None, "Q", display=False, session=session)
        except QAudioError:
            pass
        late.append(time.perf_counter() - started - timeout)
    session.configure(timeout=60)
    stats = Stats.of(late)
    return row(
        "8. A read timeout fires on time: past the configured 0.3 s",
        stats.ms(0),
        "",
        "",
        "≤ 200 ms",
        stats.median <= 0.2,
        f"the emulator holds the reply back {HOLD:g} s; the wait is cut in 0.1 s slices",
    )


def rows(quick: bool) -> list[dict[str, Any]]:
    import psutil

    from qaudio_magic import ask_audio
    from qaudio_magic.session import Session
    from qaudio_magic.settings import Settings

    tries, sdk_tries, soak = (3, 1, 100) if quick else (10, 3, 500)
    out = []
    with emulator() as emu:
        session = Session(Settings(base_url=emu.base_url, retries=0))
        session.set_key(KEY)
        ask_audio(SPEECH_MP3, "warm", display=False, session=session)
        emu.add_fault(f"latency={HOLD}")
        ours = Stats.of(  # pressed at staggered moments: slices are 0.1 s long
            [
                _stop_time(
                    lambda: ask_audio(None, "Q", display=False, session=session),
                    PRESS_AFTER + 0.1 * i / tries,
                )
                for i in range(tries)
            ]
        )
        sdk, why = load_sdk(emu.base_url)
        peer = ""
        ratio = ""
        if sdk is not None:
            data_url = "data:;base64," + base64.b64encode(SPEECH_MP3.read_bytes()).decode()
            messages = [{"role": "user", "content": [{"audio": data_url}, {"text": "Q"}]}]
            theirs = Stats.of(
                [
                    _stop_time(
                        lambda: sdk.MultiModalConversation.call(
                            model=MODEL, messages=messages, api_key=KEY
                        )
                    )
                    for _ in range(sdk_tries)
                ]
            )
            peer = f"{theirs.ms(0)} (SDK MultiModalConversation.call)"
            ratio = f"{ours.median / theirs.median:.2f}×"
        else:
            peer = f"peer unavailable: {why}"
        out.append(_read_timeout_row(session, tries))
        emu.clear_faults()
        out.append(
            row(
                "8. Ctrl-C while waiting for the reply: time to stop",
                ours.ms(0),
                peer,
                ratio,
                "≤ 1 s",
                ours.median <= 1.0,
                f"interrupt_main() {PRESS_AFTER} s into a question whose reply is held back "
                f"{HOLD:g} s; the SDK stops only when the reply arrives",
            )
        )

        # ---------------------------------------------------------------- soak
        session.configure(retries=2)
        for fault in FAULTS:
            emu.add_fault(fault)
        clips = [SPEECH_WAV, SPEECH_MP3]
        conv = session.conversations.current
        process = psutil.Process()
        base = (0, 0)
        answered = 0
        started = time.perf_counter()
        for i in range(soak):
            if i % 5 == 0:
                conv.clear()
            try:
                ask_audio(
                    clips[i % 2] if i % 5 == 0 else None, f"Q{i}", display=False, session=session
                )
                answered += 1
            except Exception:
                pass
            emu.clear()
            if i + 1 == soak // 5:
                gc.collect()
                base = (process.memory_info().rss, process.num_fds())
        elapsed = time.perf_counter() - started
        gc.collect()
        grown = process.memory_info().rss - base[0]
        fds = process.num_fds() - base[1]
        session.close()
        out.append(
            row(
                f"8. Soak: {soak} streamed questions, ~10% injected faults: growth after warm-up",
                f"RSS {grown / 1e6:+.1f} MB, fds {fds:+d}",
                "",
                "",
                "≤ 8 MB, fds +0",
                grown <= 8e6 and fds <= 0,
                f"{answered}/{soak} answered (retries=2), {elapsed:.1f} s; warm-up = first "
                f"{soak // 5}; faults: 429, 503, reset, stream cut after text, malformed",
            )
        )
    return out
