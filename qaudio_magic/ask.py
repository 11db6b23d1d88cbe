"""ask_audio(): the one orchestrator — resolve, prepare, stream, show, record the turn.

The magic only parses a cell into an ``ask_audio`` call; nothing else talks to backends.
Every check that can fail on the user's input runs before anything is sent, and the turn
is recorded only after the answer completed: a failure leaves the conversation as it was.

Many clips (a list, a glob pattern, a directory, a pandas Series) or ``windows=`` make a
batch, run by :mod:`qaudio_magic.batch`; both paths send through :func:`_complete`, which
owns the response cache, the retry policy and the usage meter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._prepare import PlannedAudio, PreparedAudio, SendPlan, prepare
from ._retry import RetryPolicy, with_retries
from .backends.base import (
    AudioPart,
    Backend,
    Completion,
    Limits,
    Message,
    Request,
    TextDelta,
    TextPart,
    Usage,
    audio_tokens,
)
from .cache import (
    CacheMissError,
    CacheMode,
    describe_request,
    key_of,
    request_material,
    resolve_mode,
    route_of,
)
from .clip import AudioClip, resolve_sources
from .conversation import Conversation, Turn, estimate_text_tokens
from .errors import InputError, Interrupted, QAudioError
from .segments import find_segments
from .session import Session, get_session

if TYPE_CHECKING:  # markdown-it and the view load on the first question, not at `%load_ext`
    from .answer import Answer
    from .batch import Answers, Progress

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
    batch: bool | None = None,
    windows: float | None = None,
    overlap: float = 0.0,
    concurrency: int | None = None,
    cache: str | None = None,
    progress: bool | Progress = True,
    dry_run: bool = False,
    **params: Any,
) -> Answer | Answers | SendPlan:
    """Ask ``question`` about the audio in ``sources``; continue the conversation if none.

    ``sources``: a path, URL (http(s), ``oss://``, ``data:``), bytes, ``pathlib.Path``,
    ``ipywidgets.Audio`` or AudioClip asks one question and returns an :class:`Answer`;
    a tuple of them is several clips in one turn. None asks a follow-up. An empty
    ``question`` with audio is voice chat: the audio is the message.

    A batch — a list, a glob pattern (``"clips/*.wav"``), a directory, a pandas Series,
    any other iterable, or ``batch=True`` — asks about each item in its own single-turn
    conversation, ``concurrency`` at a time, and returns :class:`Answers` (an item that
    is itself a tuple or list is several clips in that item's turn; ``batch=False``
    sends a list as clips of one turn). ``windows=30`` (with optional ``overlap``
    seconds) asks about each 30 s window of a long clip. ``cache``: ``auto`` (on for
    batches, off for single questions), ``on``, ``off``, ``refresh``, ``replay``.
    ``display=None`` renders when running inside IPython. Extra keyword arguments
    (``temperature``, ``top_p``, ``max_tokens``, ``seed`` ...) go to the model.

    A batch shows a ``tqdm.auto`` bar (``progress=False``: none; a callable is called as
    ``progress(done, total, result)`` after each item) and runs ``concurrency`` requests
    at once (default ``%config QAudioMagic.concurrency``). Ctrl-C returns what finished.
    """
    from .view import AnswerView, display_mode

    sess = session or get_session()
    settings = sess.settings
    from .batch import is_many

    if overlap and windows is None:
        raise InputError("overlap applies to windows: give windows=SECONDS too")
    if windows is not None or batch or (batch is None and is_many(sources)):
        if dry_run:
            raise InputError("--dry-run shows one question; for a batch, dry-run one of its clips")
        from .batch import run_batch

        if display is False and progress is True:
            progress = False

        return run_batch(
            sources,
            question,
            session=sess,
            model=model,
            conversation=conversation,
            system=system,
            stream=stream,
            new=new,
            windows=windows,
            overlap=overlap,
            concurrency=concurrency,
            cache=cache,
            progress=progress,
            params=params,
        )
    model = model or settings.model
    stream = settings.stream if stream is None else stream
    question = (question or "").strip() or None
    cache_mode = resolve_mode(cache if cache is not None else settings.cache, batch=False)

    clips = resolve_sources(sources)
    if not clips and question is None:
        raise InputError("nothing to ask: give audio, a question, or both")
    if new:  # registered (and made current) only once its first turn succeeds
        conv = sess.conversations.draft(conversation, system=system or settings.system or None)
    else:
        conv = sess.conversations.get(conversation)
        if system is not None:
            conv.system = system or None
        elif conv.system is None and not conv.turns and settings.system:
            conv.system = settings.system
    backend = sess.backend(model)
    limits = backend.limits(model)
    _check_clip_count(len(clips), model, limits)  # before decoding a thousand files
    prepared = [prepare(c, limits) for c in clips]  # decode errors surface here, nothing sent
    messages, notes = _messages(conv, prepared, question, limits, settings.max_history_turns)
    notes = [
        *(_cut_note(p, limits) for p in prepared if p.cut_seconds),
        *(n for p in prepared for n in p.notes),
        *notes,
    ]
    request = Request(model=model, messages=tuple(messages), params=params, stream=stream)
    if dry_run:
        return _plan(backend, request, conv.name, question, limits, len(prepared), notes)

    mode = display_mode() if display is None else ("rich" if display else None)
    if display and mode is None:
        mode = "plain"
    view = AnswerView(prepared, question=question, notes=notes, mode=mode) if mode else None
    if view is not None:
        view.start()

    try:
        outcome = _complete(
            sess, backend, request, cache_mode, on_text=view.add if view is not None else None
        )
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
    turn = Turn(
        clips=tuple(clips),
        question=question,
        answer=outcome.text,
        model=model,
        usage=outcome.usage,
        request_id=outcome.request_id,
    )
    conv.append(turn)
    if new:
        sess.conversations.adopt(conv)
    answer = _answer(outcome, request, tuple(clips), question, conv.name, limits, notes, prepared)
    if view is not None:
        ref = _time_reference(prepared, request.messages)
        view.finish(answer.footer(), answer.metadata(), segments=answer.segments, reference=ref)
        if view.mode == "rich":
            answer._shown_in = _execution_count()
    return answer


def _check_clip_count(count: int, model: str, limits: Limits) -> None:
    """Refuse a turn with more clips than the model's input could ever hold.

    Every clip costs at least ``min_audio_tokens``, so this is known from the count alone,
    before any file is decoded (a cell with a thousand sources fails at once).
    """
    most = limits.max_input_tokens // max(limits.min_audio_tokens, 1)
    if count > most:
        raise InputError(
            f"{count} clips in one question: {model} takes at most {most} (each clip costs "
            f"at least {limits.min_audio_tokens} of its {limits.max_input_tokens} input tokens)",
            hint="to ask about each clip separately, add --batch (ask_audio([...]) in Python)",
        )


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
        f"({p.start:g}–{p.start + (p.seconds or 0):g} s) is sent, {p.cut_seconds:.1f} s dropped. "
        "Use --start/--end (or clip[a:b]) to choose the part."
    )


def _plan(
    backend: Backend,
    request: Request,
    conversation: str,
    question: str | None,
    limits: Limits,
    new_clips: int,
    notes: Sequence[str],
) -> SendPlan:
    """What ``request`` would send; asks the backend (no network) when it can tell."""
    planner = getattr(backend, "plan", None)
    if planner is not None:
        routes, body_bytes = planner(request)
    else:  # a backend without a planner: bytes are assumed to go inline as base64
        routes = [(a, *_default_route(a)) for m in request.messages for a in m.audio]
        body_bytes = 500 + sum(wire for _, _, wire in routes)
    first_new = len(routes) - new_clips
    items = tuple(
        PlannedAudio(
            audio,
            route,
            wire,
            audio_tokens(audio.seconds if audio.seconds is not None else 30.0, limits),
            history=i < first_new,
        )
        for i, (audio, route, wire) in enumerate(routes)
    )
    upload_bytes = sum(i.wire_bytes for i in items if i.route == "upload")
    return SendPlan(
        request.model, conversation, question, items, body_bytes, upload_bytes, tuple(notes)
    )


def _default_route(audio: PreparedAudio) -> tuple[str, int]:
    if audio.url is not None:
        return "url", len(audio.url)
    if audio.pcm is not None:
        return "pcm", 0
    return "inline", 4 * -(-audio.size // 3)


# ---------------------------------------------------------------------- sending
@dataclass(frozen=True)
class _Outcome:
    """A finished answer, from the service or the cache."""

    text: str
    usage: Usage | None
    request_id: str | None
    finish_reason: str | None
    latency: float
    first_text: float | None = None
    cached: bool = False
    attempts: int = 0  # requests sent (0 for a cached answer)


def _complete(
    sess: Session,
    backend: Backend,
    request: Request,
    mode: CacheMode,
    *,
    on_text: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
    on_attempt: Callable[[int], None] | None = None,
) -> _Outcome:
    """Answer ``request``: from the cache when ``mode`` allows, else from the backend with
    retries (then stored). Records usage either way; raises QAudioError subclasses."""
    started = time.perf_counter()
    seconds = _audio_seconds(request)
    store = key = material = None
    if mode.active:
        store = sess.response_cache()
        material = request_material(route_of(backend), request)
        key = key_of(material)
        hit = store.get(key) if mode.read else None
        if hit is not None:
            if on_text is not None and hit.text:
                on_text(hit.text)
            sess.usage.record(request.model, hit.usage, seconds, cached=True)
            return _Outcome(
                hit.text,
                hit.usage,
                hit.request_id,
                hit.finish_reason,
                time.perf_counter() - started,
                cached=True,
            )
        if mode.replay:
            raise CacheMissError(
                f"not in the response cache (offline replay): {describe_request(request)} "
                f"[key {key[:12]}]",
                hint="%config QAudioMagic.cache = 'on' asks the service for what is missing",
            )
    first: float | None = None
    completion: Completion | None = None
    parts: list[str] = []
    tries = [0]

    def attempt(n: int) -> None:
        tries[0] = n
        if on_attempt is not None:
            on_attempt(n)

    policy = RetryPolicy(attempts=sess.settings.retries + 1)
    events = with_retries(backend, request, policy, cancel=cancel, on_attempt=attempt)
    with closing(events):  # Ctrl-C: the stream is closed, and with it the connection
        for event in events:
            if isinstance(event, TextDelta):
                if first is None:
                    first = time.perf_counter() - started
                parts.append(event.text)
                if on_text is not None:
                    on_text(event.text)
            else:
                completion = event
    assert completion is not None
    outcome = _Outcome(
        "".join(parts),
        completion.usage,
        completion.request_id,
        completion.finish_reason,
        time.perf_counter() - started,
        first,
        attempts=tries[0],
    )
    sess.usage.record(request.model, completion.usage, seconds, cached=False)
    if store is not None and mode.write and key is not None and material is not None:
        store.put(
            key,
            material,
            text=outcome.text,
            model=request.model,
            usage=outcome.usage,
            request_id=outcome.request_id,
            finish_reason=outcome.finish_reason,
            latency=outcome.latency,
            clips=[a.clip.label() for m in request.messages for a in m.audio],
        )
    return outcome


def _audio_seconds(request: Request) -> float:
    return sum(a.seconds or 0.0 for m in request.messages for a in m.audio)


def _answer(
    outcome: _Outcome,
    request: Request,
    clips: tuple[AudioClip, ...],
    question: str | None,
    conversation: str | None,
    limits: Limits,
    notes: Sequence[str],
    prepared: Sequence[PreparedAudio] = (),
) -> Answer:
    """The Answer for ``outcome``, with the times it mentions as segments of its clip."""
    from .answer import Answer

    ref = _time_reference(prepared, request.messages)
    segments = find_segments(outcome.text, duration=ref.seconds, offset=ref.start) if ref else []
    return Answer(
        text=outcome.text,
        model=request.model,
        usage=outcome.usage,
        request_id=outcome.request_id,
        clips=clips,
        latency=outcome.latency,
        question=question,
        conversation=conversation,
        first_text_latency=outcome.first_text,
        audio_seconds=_audio_seconds(request),
        estimated_audio_tokens=sum(
            audio_tokens(a.seconds or 30.0, limits) for m in request.messages for a in m.audio
        ),
        notes=tuple(notes),
        finish_reason=outcome.finish_reason,
        cached=outcome.cached,
        segments=tuple(segments),
    )


def _execution_count() -> int | None:
    from IPython import get_ipython

    shell = get_ipython()
    return shell.execution_count if shell is not None else None
