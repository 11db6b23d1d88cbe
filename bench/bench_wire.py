"""Row 3: bytes sent over a five-turn conversation about one 30 s local clip.

Three clients hold the same conversation (one clip, five questions, each turn sending the
history) with the emulator: ours (``ask_audio`` with the path, then four follow-ups), the
official SDK given the clip as a ``file://`` path (it uploads local files through
getPolicy + an OSS form POST on every call), and a naive client that inlines the clip as
base64 in every request. Bytes are counted from the emulator's request log: request
line, headers and body of every request, uploads included. Deterministic, so quick and
full runs measure the same thing once.
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path
from typing import Any

from _common import KEY, MODEL, clip_30s, emulator, fmt_bytes, load_sdk, request_bytes, row

QUESTIONS = (
    "What is said in this recording?",
    "Who is speaking: gender, approximate age, accent?",
    "What is the speaker's mood?",
    "At what second does the second sentence start?",
    "Summarise the recording in one sentence.",
)
GENERATION = "/services/aigc/multimodal-generation/generation"


def rows(quick: bool) -> list[dict[str, Any]]:
    from qaudio_magic import AudioClip, ask_audio
    from qaudio_magic._prepare import prepare
    from qaudio_magic.models import lookup
    from qaudio_magic.session import Session
    from qaudio_magic.settings import Settings

    with tempfile.TemporaryDirectory() as tmp, emulator() as emu:
        path = clip_30s(Path(tmp))
        prepared = prepare(AudioClip.from_source(path), lookup(MODEL).limits).size
        budget = 1.1 * prepared + 50_000

        emu.clear()
        session = Session(Settings(base_url=emu.base_url, retries=0))
        session.set_key(KEY)
        for i, question in enumerate(QUESTIONS):
            ask_audio(
                path if i == 0 else None,
                question,
                display=False,
                session=session,
                conversation="wire",
                new=i == 0,
            )
        session.close()
        ours, ours_log = _total(emu)

        emu.clear()
        sdk_bytes, sdk_log, sdk_why = _sdk(emu, path)
        emu.clear()
        naive, naive_log = _naive(emu, path)

    name = "3. Bytes sent, 5-turn conversation about one 30 s local clip"
    target = f"≤ 1.1 × prepared clip + 50 KB = {fmt_bytes(budget)}"
    naive_text = f"naive inline base64 each turn: {fmt_bytes(naive)} ({naive / prepared:.2f}×)"
    if sdk_bytes is None:
        peer = f"official SDK (file://): peer unavailable: {sdk_why}; {naive_text}"
        ratio = f"{ours / naive:.2f}× naive"
    else:
        peer = f"official SDK (file://): {fmt_bytes(sdk_bytes)} ({sdk_bytes / prepared:.2f}×); {naive_text}"
        ratio = f"{ours / sdk_bytes:.2f}× SDK, {ours / naive:.2f}× naive"
    note = (
        f"clip: 30 s 16 kHz mono WAV, {fmt_bytes(prepared)} prepared; counted from the "
        f"emulator's request log (request line + headers + body). Ours: {ours_log}; "
        + (f"SDK: {sdk_log}; " if sdk_log else "")
        + f"naive: {naive_log}"
    )
    return [
        row(
            name,
            f"{fmt_bytes(ours)} ({ours / prepared:.2f}× the prepared clip)",
            peer,
            ratio,
            target,
            ours <= budget,
            note,
        )
    ]


def _total(emu: Any) -> tuple[int, str]:
    """Bytes of every request in the log, and a one-line account of them."""
    requests = emu.requests
    total = sum(request_bytes(r) for r in requests)
    generation = sum(1 for r in requests if r.path.endswith(GENERATION))
    other = len(requests) - generation
    return total, f"{generation} generation requests, {other} other (uploads, policies)"


def _sdk(emu: Any, path: Path) -> tuple[int | None, str, str]:
    sdk, why = load_sdk(emu.base_url)
    if sdk is None:
        return None, "", why
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"audio": f"file://{path}"}, {"text": QUESTIONS[0]}]}
    ]
    for i in range(len(QUESTIONS)):
        try:
            r = sdk.MultiModalConversation.call(model=MODEL, messages=messages, api_key=KEY)
        except Exception as exc:  # the SDK raises on upload failures
            return None, "", _one_line(exc)
        if r.status_code != 200:
            return None, "", f"HTTP {r.status_code} {r.code}: {r.message}"
        answer = r.output.choices[0].message.content[0]["text"]
        messages.append({"role": "assistant", "content": [{"text": answer}]})
        if i + 1 < len(QUESTIONS):
            messages.append({"role": "user", "content": [{"text": QUESTIONS[i + 1]}]})
    total, log = _total(emu)
    return total, log, ""


def _naive(emu: Any, path: Path) -> tuple[int, str]:
    """The documented JSON by hand, the clip inline as base64 in the first user message."""
    import httpx

    url = emu.base_url + GENERATION
    audio = "data:audio/wav;base64," + base64.b64encode(path.read_bytes()).decode()
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [{"audio": audio}, {"text": QUESTIONS[0]}]}
    ]
    with httpx.Client(trust_env=False, timeout=60) as client:
        for i in range(len(QUESTIONS)):
            body = {"model": MODEL, "input": {"messages": messages}, "parameters": {}}
            r = client.post(url, json=body, headers={"Authorization": f"Bearer {KEY}"})
            r.raise_for_status()
            answer = r.json()["output"]["choices"][0]["message"]["content"][0]["text"]
            messages.append({"role": "assistant", "content": [{"text": answer}]})
            if i + 1 < len(QUESTIONS):
                messages.append({"role": "user", "content": [{"text": QUESTIONS[i + 1]}]})
    return _total(emu)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:160]}"
