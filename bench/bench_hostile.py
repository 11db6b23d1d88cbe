"""Row 9: hostile servers — the worst case over total_timeout, and the worst memory.

The adversarial suite's own servers and cases (``tests/adversarial/cases.py``) on
127.0.0.1. Time: every case that can end only at the total deadline (headers or bodies
trickled, keep-alive comments, uploads trickled, a silent server with retries), asked with
``total_timeout`` 2 s; the row is the worst of ``took − total_timeout``. Memory: every
case that sends without end (endless events, lines and bodies, 2 GB bodies, gzip bombs);
the row is the growth of the process's peak resident memory (``ru_maxrss``) over all of
them. Peer: the official SDK on one case of each: headers trickled (it is given twice our
deadline, then left behind) and a 50 MB error body (it reads bodies whole).
"""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Callable
from typing import Any

from _common import KEY, MODEL, SPEECH_WAV, load_sdk, row

from tests.adversarial.cases import (
    GENERATION,
    MEMORY_CASES,
    TIME_CASES,
    UPLOADS,
    policy,
    silent,
    trickled_json,
)
from tests.adversarial.server import Conn, HostileServer, Request

TOTAL = 2.0
PROMISE = 1.0  # seconds over total_timeout
BOUND = 64  # MB of peak memory growth


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


def _ask(base_url: str, **kwargs: Any) -> tuple[float, str]:
    from qaudio_magic import ask_audio
    from qaudio_magic.session import Session, Settings

    settings = {"retries": 0, "upload": "never", **kwargs.pop("settings", {})}
    session = Session(Settings(base_url=base_url, **settings))
    session.set_key(KEY)
    started = time.monotonic()
    try:
        ask_audio(str(SPEECH_WAV), "Q", session=session, display=False, **kwargs)
        outcome = "answered"
    except Exception as exc:
        outcome = str(exc)
    took = time.monotonic() - started
    session.close()
    return took, outcome


def _time_cases(rounds: int) -> tuple[float, str, int]:
    """The worst ``took - TOTAL`` over every time case, its name, and how many were asked."""
    Setup = Callable[[HostileServer], dict[str, Any]]

    def routed(path: str, behaviour: Any, kwargs: dict[str, Any]) -> Setup:
        def setup(server: HostileServer) -> dict[str, Any]:
            server.route(path, behaviour)
            return dict(kwargs)

        return setup

    def oss_trickled(server: HostileServer) -> dict[str, Any]:
        server.route(UPLOADS, policy(server))
        server.route("/oss", trickled_json)
        return {"settings": {"upload": "always"}}

    cases: dict[str, Setup] = {n: routed(p, b, k) for n, (p, b, k, _) in TIME_CASES.items()}
    cases["getPolicy trickled"] = routed(UPLOADS, trickled_json, {"settings": {"upload": "always"}})
    cases["OSS form reply trickled"] = oss_trickled
    cases["silent server, 3 retries"] = routed(
        GENERATION, silent, {"settings": {"timeout": 0.4, "retries": 3}}
    )
    worst, which, n = -1.0, "", 0
    for _ in range(rounds):
        for name, setup in cases.items():
            with HostileServer() as server:
                kwargs = setup(server)
                kwargs["settings"] = {"total_timeout": TOTAL, **kwargs.get("settings", {})}
                took, _ = _ask(server.base_url, **kwargs)
            n += 1
            if took - TOTAL > worst:
                worst, which = took - TOTAL, name
    return worst, which, n


def _sdk_time(limit: float) -> str:
    with HostileServer() as server:
        server.route(GENERATION, TIME_CASES["headers trickled at 20 B/s"][1])
        sdk, why = load_sdk(server.base_url)
        if sdk is None:
            return f"peer unavailable: {why}"
        done = threading.Event()

        def call() -> None:
            try:
                sdk.MultiModalConversation.call(
                    model=MODEL,
                    messages=[{"role": "user", "content": [{"text": "Q"}]}],
                    api_key=KEY,
                )
            except Exception:
                pass
            done.set()

        started = time.monotonic()
        threading.Thread(target=call, daemon=True).start()
        if done.wait(limit):
            return f"+{time.monotonic() - started - TOTAL:.2f} s (SDK, headers trickled)"
        return f"still waiting after {limit:g} s (SDK, headers trickled; left behind)"


def _sdk_memory() -> str:
    body = b'{"code": "Boom", "message": "' + b"x" * (50 << 20) + b'"}'

    def error(conn: Conn, request: Request) -> None:
        conn.reply(500, body, {"Content-Type": "application/json"})

    with HostileServer() as server:
        server.route(GENERATION, error)
        sdk, why = load_sdk(server.base_url)
        if sdk is None:
            return f"peer unavailable: {why}"
        before = _peak_mb()
        try:
            sdk.MultiModalConversation.call(
                model=MODEL, messages=[{"role": "user", "content": [{"text": "Q"}]}], api_key=KEY
            )
        except Exception:
            pass
        return f"≥ +{_peak_mb() - before:.0f} MB (SDK, a 50 MB error body)"


def rows(quick: bool) -> list[dict[str, Any]]:
    from qaudio_magic.backends._body import MAX_ANSWER_CHARS, MAX_BODY, MAX_EVENT

    # warm up (imports, the clip's preparation) against a well-behaved hostile server
    def answer(conn: Conn, request: Request) -> None:
        from tests.adversarial.server import dashscope_event

        conn.sse_head()
        conn.send(dashscope_event("warm", "stop"))

    with HostileServer() as server:
        server.route(GENERATION, answer)
        _ask(server.base_url)

    worst, which, n = _time_cases(1 if quick else 3)
    peer_time = _sdk_time(2 * TOTAL + 2)

    base = _peak_mb()
    failures = []
    for name, (path, behaviour, kwargs, expected) in MEMORY_CASES.items():
        with HostileServer() as server:
            server.route(path, behaviour)
            _, outcome = _ask(server.base_url, settings={"total_timeout": 30.0}, **kwargs)
        if expected not in outcome:
            failures.append(f"{name}: {outcome[:80]}")
    grown = _peak_mb() - base
    peer_memory = _sdk_memory()

    return [
        row(
            "9. Hostile servers: worst-case time over total_timeout",
            f"+{worst:.2f} s ({which})",
            peer_time,
            "",
            f"≤ +{PROMISE:g} s",
            worst <= PROMISE,
            f"{n} questions, total_timeout {TOTAL:g} s, read timeout 60 s: trickled headers "
            "and bodies (streamed or not, both routes), keep-alive comments, a trickled "
            "upload policy and OSS reply, a silent server with 3 retries",
        ),
        row(
            "9. Hostile servers: worst-case memory (peak RSS growth)",
            f"+{grown:.1f} MB",
            peer_memory,
            "",
            f"≤ {BOUND} MB",
            grown <= BOUND and not failures,
            f"{len(MEMORY_CASES)} endless or 2 GB replies incl. gzip bombs; caps: event "
            f"{MAX_EVENT / 1e6:g} MB, body {MAX_BODY / 1e6:g} MB, answer {MAX_ANSWER_CHARS:,} "
            "characters" + (f"; NOT ENDED BY A CAP: {'; '.join(failures)}" if failures else ""),
        ),
    ]
