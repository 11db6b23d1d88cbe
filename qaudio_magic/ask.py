"""ask_audio(): the one orchestrator — resolve, prepare, stream, show, record the turn.

The magic only parses a cell into an ``ask_audio`` call; nothing else talks to backends.
Every check that can fail on the user's input runs before anything is sent, and the turn
is recorded only after the answer completed: a failure leaves the conversation as it was.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from ._prepare import PreparedAudio, prepare
from ._retry import RetryPolicy
from .answer import Answer
from .backends.base import (
    AudioPart,
    Backend,
    Completion,
    Event,
    Limits,
    Message,
    Request,
    TextDelta,
    TextPart,
    audio_tokens,
)
from .clip import resolve_sources
from .conversation import Conversation, Turn, estimate_text_tokens
from .errors import InputError, Interrupted, QAudioError
from .segments import find_segments
from .session import Session, get_session
from .view import AnswerView, display_mode

__all__ = ["ask_audio"]


def ask_audio(
    sources: object = None,
    question: str | None = None,
    *,
    model: str | None = None,
    conversation: str | None = None,
    system: str | None = None,
    stream: bool | None = None,
    display: bool | None = None,
    new: bool = False,
    session: Session | None = None,
    **params: Any,
) -> Answer:
    """Ask ``question`` about the audio in ``sources``; continue the conversation if none.

    ``sources``: a path, URL (http(s), ``oss://``, ``data:``), bytes, ``pathlib.Path``,
    ``ipywidgets.Audio``, AudioClip, or a list of them (several clips in one turn). None
    asks a follow-up. An empty ``question`` with audio is voice chat: the audio is the
    message. ``display=None`` renders when running inside IPython. Extra keyword
    arguments (``temperature``, ``top_p``, ``max_tokens``, ``seed`` ...) go to the model.
    """
    sess = session or get_session()
    settings = sess.settings
    model = model or settings.model
    stream = settings.stream if stream is None else stream
    question = (question or "").strip() or None

    clips = resolve_sources(sources)
    if not clips and question is None:
        raise InputError("nothing to ask: give audio, a question, or both")
    if new:
        conv = sess.conversations.new(conversation, system=system or settings.system or None)
    else:
        conv = sess.conversations.get(conversation)
        if system is not None:
            conv.system = system or None
        elif conv.system is None and not conv.turns and settings.system:
            conv.system = settings.system
    backend = sess.backend(model)
    limits = backend.limits(model)
    prepared = [prepare(c, limits) for c in clips]  # decode errors surface here, nothing sent
    messages, notes = _messages(conv, prepared, question, limits, settings.max_history_turns)
    notes = [*(_cut_note(p, limits) for p in prepared if p.cut_seconds), *notes]
    request = Request(model=model, messages=tuple(messages), params=params, stream=stream)

    mode = display_mode() if display is None else ("rich" if display else None)
    if display and mode is None:
        mode = "plain"
    view = AnswerView(prepared, question=question, notes=notes, mode=mode) if mode else None
    if view is not None:
        view.start()

    started = time.perf_counter()
    first: float | None = None
    completion: Completion | None = None
    text_parts: list[str] = []
    try:
        for event in _with_retries(backend, request, RetryPolicy(attempts=settings.retries + 1)):
            if isinstance(event, TextDelta):
                if first is None:
                    first = time.perf_counter() - started
                text_parts.append(event.text)
                if view is not None:
                    view.add(event.text)
            else:
                completion = event
    except KeyboardInterrupt:
        if view is not None:
            view.fail("⏹ Interrupted: partial answer shown; the conversation was not changed.")
        raise Interrupted(
            "interrupted: the partial answer is kept on screen; the conversation was not changed"
        ) from None
    except QAudioError as exc:
        if view is not None:
            view.fail(f"⚠ Incomplete: {exc.one_line()} The conversation was not changed.")
        raise
    assert completion is not None
    latency = time.perf_counter() - started
    text = "".join(text_parts)
    ref = _time_reference(prepared, messages)
    segments = find_segments(text, duration=ref.seconds, offset=ref.start) if ref else []

    turn = Turn(
        clips=tuple(clips),
        question=question,
        answer=text,
        model=model,
        usage=completion.usage,
        request_id=completion.request_id,
    )
    conv.append(turn)
    answer = Answer(
        text=text,
        model=model,
        usage=completion.usage,
        request_id=completion.request_id,
        clips=tuple(clips),
        latency=latency,
        question=question,
        conversation=conv.name,
        first_text_latency=first,
        audio_seconds=sum(a.seconds or 0.0 for m in messages for a in m.audio),
        estimated_audio_tokens=sum(
            audio_tokens(a.seconds or 30.0, limits) for m in messages for a in m.audio
        ),
        notes=tuple(notes),
        finish_reason=completion.finish_reason,
        segments=tuple(segments),
    )
    if view is not None:
        view.finish(answer.footer(), answer.metadata(), segments=answer.segments, reference=ref)
        if view.mode == "rich":
            answer._shown_in = _execution_count()
    return answer


# ---------------------------------------------------------------------- history
def _messages(
    conv: Conversation,
    prepared: Sequence[PreparedAudio],
    question: str | None,
    limits: Limits,
    max_turns: int,
) -> tuple[list[Message], list[str]]:
    """System + the history that fits the input budget + the new user message."""

    def audio_cost(items: Sequence[PreparedAudio]) -> int:
        return sum(
            audio_tokens(p.seconds if p.seconds is not None else 30.0, limits) for p in items
        )

    def turn_cost(turn: Turn) -> int:
        items = [prepare(c, limits) for c in turn.clips]
        return (
            audio_cost(items)
            + estimate_text_tokens(turn.question)
            + estimate_text_tokens(turn.answer)
        )

    fixed = (
        audio_cost(prepared) + estimate_text_tokens(question) + estimate_text_tokens(conv.system)
    )
    if fixed > limits.max_input_tokens:
        raise InputError(
            f"this question alone needs about {fixed} input tokens; the model takes "
            f"{limits.max_input_tokens} (send fewer or shorter clips)"
        )
    history, dropped = conv.history(limits.max_input_tokens - fixed, turn_cost, max_turns=max_turns)
    notes: list[str] = []
    if dropped:
        notes.append(
            f"{dropped} earlier turn{'s' if dropped > 1 else ''} of '{conv.name}' not sent: "
            f"over the {limits.max_input_tokens}-token input budget or max_history_turns"
        )
    messages: list[Message] = []
    if conv.system:
        messages.append(Message("system", (TextPart(conv.system),)))
    for turn in history:
        items = [prepare(c, limits) for c in turn.clips]
        messages.append(_user(items, turn.question))
        messages.append(Message("assistant", (TextPart(turn.answer),)))
    messages.append(_user(prepared, question))
    return messages, notes


def _user(items: Sequence[PreparedAudio], question: str | None) -> Message:
    parts: list[AudioPart | TextPart] = [AudioPart(p) for p in items]
    if question:
        parts.append(TextPart(question))
    return Message("user", tuple(parts))


def _time_reference(
    prepared: Sequence[PreparedAudio], messages: Sequence[Message]
) -> PreparedAudio | None:
    """The audio an answer's times refer to: the turn's only clip; for a follow-up, the
    last clip sent in the history. None when several clips make the times ambiguous."""
    if prepared:
        return prepared[0] if len(prepared) == 1 else None
    for message in reversed(messages):
        if message.role == "user" and message.audio:
            return message.audio[0] if len(message.audio) == 1 else None
    return None


def _cut_note(p: PreparedAudio, limits: Limits) -> str:
    total = (p.seconds or 0.0) + p.cut_seconds
    return (
        f"{p.clip.name} is {total:.1f} s long: only {limits.max_audio_seconds:g} s "
        f"({p.start:g}–{p.start + (p.seconds or 0):g} s) were sent, {p.cut_seconds:.1f} s dropped. "
        "Use --start/--end to choose the part."
    )


# ---------------------------------------------------------------------- streaming
def _with_retries(backend: Backend, request: Request, policy: RetryPolicy) -> Iterator[Event]:
    """Events of ``request``, retried per ``policy`` while no text has been shown."""
    attempt = 0
    while True:
        attempt += 1
        seen = False
        events = backend.stream(request)
        try:
            for event in events:
                if isinstance(event, TextDelta):
                    seen = True
                yield event
            return
        except QAudioError as exc:
            wait = policy.delay(attempt, exc, text_seen=seen)
            if wait is None:
                raise
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
        time.sleep(wait)


def _execution_count() -> int | None:
    from IPython import get_ipython

    shell = get_ipython()
    return shell.execution_count if shell is not None else None
