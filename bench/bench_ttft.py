"""Row 2: time until the first answer text is on screen, vs until the whole answer is.

The emulator streams a fixed answer with a fixed time to first token and token
rate. Ours runs in an IPython shell whose display publisher records when each display
update is published, so "on screen" means: the first update of the answer display that
holds answer text (what a notebook frontend receives), compared with the moment the
emulator emitted its first token (stamped in-process on the same clock). The SDK's
default call is not streamed: its first text is the whole answer. The emulator applies
``ttft``/``token_rate`` to streams only, so a non-streamed reply is delayed by the same
generation time with the ``latency`` knob, as a real server answers when generation ends.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

from _common import KEY, MODEL, SPEECH_MP3, Stats, emulator, load_sdk, row

TTFT = 0.2  # seconds to the first token
RATE = 50.0  # tokens per second after it
ANSWER = (
    "Emulated: a man says, in clear English, that the weather will be sunny tomorrow "
    "with light winds from the north and a high near twenty degrees in the afternoon."
)
QUESTION = "What is said?"
GENERATION = "/api/v1/services/aigc/multimodal-generation/generation"


def rows(quick: bool) -> list[dict[str, Any]]:
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell

    from qaudio_magic import AudioClip, ask_audio
    from qaudio_magic.emulator._reply import split_tokens
    from qaudio_magic.session import Session
    from qaudio_magic.settings import Settings

    class Capture(DisplayPublisher):
        """Records when each display (or display update) is published, and its text."""

        events: list[tuple[float, str]]

        def publish(self, data: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            self.events.append((time.perf_counter(), str(data.get("text/plain", ""))))

    reps = 2 if quick else 15
    tokens = len(split_tokens(ANSWER))
    generation = TTFT + (tokens - 1) / RATE
    first_word = ANSWER.split()[0]

    shell = InteractiveShell.instance()
    capture = Capture(shell=shell)
    capture.events = []
    shell.display_pub = capture

    on_screen: list[float] = []  # display of the first text - server's first token
    arrival: list[float] = []  # Answer.first_text_latency: text reached ask_audio
    first_after_ask: list[float] = []
    full: list[float] = []
    sdk_full: list[float] = []
    with emulator() as emu:
        stamps = _stamp_first_frames(emu)
        session = Session(Settings(base_url=emu.base_url, retries=0))
        session.set_key(KEY)
        clip = AudioClip.from_source(SPEECH_MP3)
        sdk, why = load_sdk(emu.base_url)
        data_url = "data:;base64," + base64.b64encode(SPEECH_MP3.read_bytes()).decode()
        for i in range(reps + 1):  # round 0 warms both clients up, with no delays
            if i == 1:
                emu.add_fault(f"ttft={TTFT};token_rate={RATE}")
            emu.reply_with(ANSWER)
            capture.events.clear()
            stamps.clear()
            t0 = time.perf_counter()
            answer = ask_audio(
                clip, QUESTION, stream=True, session=session, new=True, conversation="ttft"
            )
            t_end = time.perf_counter()
            if answer.text != ANSWER:
                raise RuntimeError(f"unexpected answer {answer.text[:60]!r}")
            shown = next(t for t, text in capture.events if t >= t0 and first_word in text)
            if i:
                on_screen.append(shown - stamps[0])
                arrival.append(answer.first_text_latency or float("nan"))
                first_after_ask.append(shown - t0)
                full.append(t_end - t0)
            if sdk is not None:
                emu.reply_with(ANSWER)
                if i:
                    emu.add_fault(f"latency={generation};times=1")
                t0 = time.perf_counter()
                r = sdk.MultiModalConversation.call(
                    model=MODEL,
                    messages=[
                        {"role": "user", "content": [{"audio": data_url}, {"text": QUESTION}]}
                    ],
                    api_key=KEY,
                )
                text = (
                    r.output.choices[0].message.content[0]["text"] if r.status_code == 200 else ""
                )
                if i:
                    sdk_full.append(time.perf_counter() - t0)
                if text != ANSWER:
                    raise RuntimeError(f"SDK call failed: {r.code} {r.message}")
        session.close()

    screen, ask1, done = Stats.of(on_screen), Stats.of(first_after_ask), Stats.of(full)
    name = (
        f"2. First answer text on screen (ttft {TTFT:g} s, {RATE:g} tok/s, {tokens}-token answer)"
    )
    ours = (
        f"{screen.median * 1e3:.1f} ms after the server's first token "
        f"(IQR {screen.p25 * 1e3:.1f}–{screen.p75 * 1e3:.1f}, n={screen.n}); "
        f"{ask1.median:.3f} s after asking; full answer {done.median:.3f} s"
    )
    target = "first text on screen ≤ 30 ms after the server's first token"
    note = (
        "'on screen' = first display update holding answer text, captured by an IPython "
        "display publisher; Answer.first_text_latency (text reached ask_audio, before "
        f"rendering): {Stats.of(arrival).median:.3f} s; SDK reply delayed by the same "
        f"generation time ({generation:.2f} s) with the latency knob"
    )
    met = screen.median <= 0.030
    if sdk is None:
        return [row(name, ours, f"peer unavailable: {why}", "", target, met, note)]
    theirs = Stats.of(sdk_full)
    return [
        row(
            name,
            ours,
            f"first text = full answer {theirs.median:.3f} s after asking "
            f"(IQR {theirs.p25:.3f}–{theirs.p75:.3f}; SDK default non-streamed call)",
            f"{ask1.median / theirs.median:.2f}× (time to first text)",
            target,
            met,
            note,
        )
    ]


def _stamp_first_frames(emu: Any) -> list[float]:
    """Wrap the generation route so each streamed reply notes when its first frame left."""
    stamps: list[float] = []
    routes = emu.server.routes
    for i, (method, prefix, route) in enumerate(routes):
        if prefix != GENERATION:
            continue

        def wrapped(request: Any, fault: Any, _route: Any = route) -> Any:
            reply = _route(request, fault)
            if reply.frames is not None:
                reply.frames = _first_stamped(reply.frames, stamps)
            return reply

        routes[i] = (method, prefix, wrapped)
    return stamps


def _first_stamped(frames: Iterator[Any], stamps: list[float]) -> Iterator[Any]:
    first = True
    for frame in frames:
        if first:  # pulled right before the server writes it (after the ttft sleep)
            stamps.append(time.perf_counter())
            first = False
        yield frame
