"""One turn, for single questions and batch items alike: build the request, send it, make
the Answer.

:func:`plan_turn` decides everything that can fail on the user's input before anything is
sent (clip count, audio preparation, the history that fits the model's input budget) and
collects the notes the user must see; :func:`send` answers the request from the response
cache or from the backend (with the retry policy), recording usage either way;
:func:`answer_for` turns the outcome into an :class:`~qaudio_magic.answer.Answer` with the
times it mentions. ``ask_audio`` and the batch engine call the same three, so a batch row
and a single answer can never disagree about what was sent or noted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._format import span
from ._prepare import prepare
from ._ratelimit import RateLimiter, route_limiter
from ._retry import RetryPolicy, with_retries
from .backends.base import (
    Annotation,
    AudioDelta,
    AudioPart,
    Backend,
    Completion,
    Limits,
    Message,
    PreparedAudio,
    ReasoningDelta,
    Request,
    TextDelta,
    TextPart,
    Usage,
    audio_tokens,
)
from .cache import (
    CacheMode,
    ResponseCache,
    describe_request,
    key_of,
    request_material,
    route_of,
)
from .clip import AudioClip
from .conversation import Conversation, History, Turn, estimate_text_tokens
from .errors import CacheMissError, InputError
from .model_rules import longer_audio_note, shape_request
from .models import lookup
from .segments import find_segments

if TYPE_CHECKING:
    from .answer import Answer
    from .dryrun import SendPlan
    from .grounding import SpeechMap
    from .session import Session

__all__ = [
    "Outcome",
    "TurnPlan",
    "answer_for",
    "input_tokens",
    "pacing",
    "plan_turn",
    "record",
    "send",
    "spoken_clip",
]


@dataclass(frozen=True)
class TurnPlan:
    """A turn ready to send: the request and what the user must be told about it."""

    request: Request
    clips: tuple[AudioClip, ...]
    prepared: tuple[PreparedAudio, ...]  # this turn's clips, as sent
    question: str | None
    notes: tuple[str, ...]
    limits: Limits
    conversation: Conversation
    thinking: bool = False  # the model will reason first (shown apart from the answer)
    voice: str | None = None  # a spoken answer was asked for, in this voice
    # "conversation default, turn 3 · also sent: a.wav (7.0 s)": the answer's header line
    # for a turn that continues a conversation (None for its first turn)
    context: str | None = None
    # new audio joins a conversation whose earlier, other audio is sent again with it
    mixes_clips: bool = False

    @property
    def reference(self) -> PreparedAudio | None:
        """The audio the answer's times refer to: the turn's only clip; for a follow-up,
        the last clip sent in the history. None when several clips make times ambiguous."""
        if self.prepared:
            return self.prepared[0] if len(self.prepared) == 1 else None
        for message in reversed(self.request.messages):
            if message.role == "user" and message.audio:
                return message.audio[0] if len(message.audio) == 1 else None
        return None

    def dry_run(self, backend: Backend) -> SendPlan:
        """What this turn would send (``--dry-run``); sends nothing."""
        from .dryrun import plan_request

        return plan_request(
            backend,
            self.request,
            self.conversation.name,
            self.question,
            self.limits,
            len(self.prepared),
            self.notes,
        )


def plan_turn(
    conversation: Conversation,
    clips: Sequence[AudioClip],
    question: str | None,
    *,
    model: str,
    limits: Limits,
    max_history_turns: int,
    params: dict[str, Any],
    stream: bool,
    prepared: Sequence[PreparedAudio] | None = None,
    speak: bool | str = False,
) -> TurnPlan:
    """Prepare the clips (decode errors surface here) and choose the history to send.

    ``prepared``: the clips already cut (windows of a long file arrive that way).
    ``speak``: ask for a spoken answer (True: the model's default voice, or a voice name).
    The model's own rules (models.py) apply here: see :mod:`qaudio_magic.model_rules`.
    """
    spec = lookup(model)
    asked = shape_request(spec, question, params, speak)  # refusals before any decoding
    check_clip_count(len(clips), model, limits)  # before decoding a thousand files
    ready = tuple(prepared) if prepared is not None else tuple(prepare(c, limits) for c in clips)
    single = spec.single_turn or spec.transcribes  # the captioner, speech recognition
    messages, history = _messages(
        conversation, ready, asked.question, limits, max_history_turns, single=single
    )
    longer = longer_audio_note(spec, ready)
    dropped = history.note(limits.max_input_tokens)
    notes = (
        *asked.notes,
        *(n for p in ready for n in p.notes),
        *((longer,) if longer else ()),
        *((dropped,) if dropped else ()),
    )
    request = Request(model=model, messages=tuple(messages), params=asked.params, stream=stream)
    earlier = _sent_again(history, limits)
    context = None
    if len(conversation) and not single:
        context = f"conversation {conversation.name}, turn {len(conversation) + 1}"
        if earlier:
            context += f" · also sent: {_names(earlier)}"
    own = {_identity(p) for p in ready}
    return TurnPlan(
        request,
        tuple(clips),
        ready,
        asked.question,
        notes,
        limits,
        conversation,
        thinking=asked.thinking,
        voice=asked.voice,
        context=context,
        mixes_clips=bool(ready) and any(_identity(p) not in own for p in earlier),
    )


def _identity(p: PreparedAudio) -> tuple[object, ...]:
    return (p.clip.sha256 if not p.clip.is_remote else p.url, p.start, p.seconds)


def _sent_again(history: History, limits: Limits) -> list[PreparedAudio]:
    """The earlier clips sent again with this turn, each once, in order."""
    seen: dict[tuple[object, ...], PreparedAudio] = {}
    for turn in history.turns:
        for clip in turn.clips:
            p = prepare(clip, limits)
            seen.setdefault(_identity(p), p)
    return list(seen.values())


def _names(items: Sequence[PreparedAudio], most: int = 3) -> str:
    """``a.wav (7.0 s), b.wav [80–110 s] (30.0 s)``: what was sent, for people."""

    def one(p: PreparedAudio) -> str:
        text = p.clip.name
        if p.seconds is not None:
            if p.clip.is_windowed or p.cut_seconds:
                text += f" [{span(p.start, p.start + p.seconds)}]"
            text += f" ({p.seconds:.1f} s)"
        return text

    shown = ", ".join(one(p) for p in items[:most])
    return shown + (f" +{len(items) - most} more" if len(items) > most else "")


def check_clip_count(count: int, model: str, limits: Limits) -> None:
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


def _messages(
    conv: Conversation,
    prepared: Sequence[PreparedAudio],
    question: str | None,
    limits: Limits,
    max_turns: int,
    *,
    single: bool = False,
) -> tuple[list[Message], History]:
    """System + the history that fits the input budget + the new user message
    (no history for a model that answers a single turn)."""

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
    if single:  # every earlier turn stays home, and the note says so
        history = History((), conv.turns, ("the model answers one turn",) if conv.turns else ())
    else:
        history = conv.history(limits.max_input_tokens - fixed, turn_cost, max_turns=max_turns)
    messages: list[Message] = []
    if conv.system:
        messages.append(Message("system", (TextPart(conv.system),)))
    for turn in history.turns:
        items = [prepare(c, limits) for c in turn.clips]
        messages.append(_user(items, turn.question))
        messages.append(Message("assistant", (TextPart(turn.answer),)))
    messages.append(_user(prepared, question))
    return messages, history


def _user(items: Sequence[PreparedAudio], question: str | None) -> Message:
    parts: list[AudioPart | TextPart] = [AudioPart(p) for p in items]
    if question:
        parts.append(TextPart(question))
    return Message("user", tuple(parts))


# ---------------------------------------------------------------------- sending
@dataclass(frozen=True)
class Outcome:
    """A finished answer, from the service or the cache."""

    text: str
    usage: Usage | None
    request_id: str | None
    finish_reason: str | None
    latency: float
    first_text: float | None = None
    cached: bool = False
    attempts: int = 0  # requests sent (0 for a cached answer)
    reasoning: str = ""  # a thinking model's reasoning: shown apart, never sent back
    speech: bytes = b""  # a spoken answer: 16-bit mono PCM at speech_rate Hz
    speech_rate: int = 24_000
    language: str | None = None  # speech recognition's annotations
    emotion: str | None = None


def speaks(request: Request) -> bool:
    """Whether ``request`` asks for a spoken answer (``modalities`` with audio)."""
    modalities = request.params.get("modalities")
    return isinstance(modalities, (list, tuple)) and "audio" in modalities


def send(
    sess: Session,
    backend: Backend,
    request: Request,
    mode: CacheMode,
    *,
    on_text: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
    on_attempt: Callable[[int], None] | None = None,
    limiter: RateLimiter | None = None,
    on_reasoning: Callable[[str], None] | None = None,
    responses: ResponseCache | None = None,
) -> Outcome:
    """Answer ``request``: from the cache when ``mode`` allows, else from the backend with
    retries (then stored). Records usage either way; raises QAudioError subclasses.

    ``on_text`` gets each piece of the answer, ``on_reasoning`` each piece of a thinking
    model's reasoning. A spoken answer is never cached (its audio is not stored). With a
    ``limiter`` (batches: :func:`pacing`), every try waits for its slot under the route's
    rate limit first. ``responses``: the response cache to use (a batch's, made once),
    else the session's."""
    started = time.perf_counter()
    seconds = audio_seconds(request)
    store = key = material = None
    if mode.active and not speaks(request):
        store = responses or sess.response_cache()
        material = request_material(route_of(backend), request)
        key = key_of(material)
        hit = store.get(key) if mode.read else None
        if hit is not None:
            if on_reasoning is not None and hit.reasoning:
                on_reasoning(hit.reasoning)
            if on_text is not None and hit.text:
                on_text(hit.text)
            sess.usage.record(request.model, hit.usage, seconds, cached=True)
            return Outcome(
                hit.text,
                hit.usage,
                hit.request_id,
                hit.finish_reason,
                time.perf_counter() - started,
                cached=True,
                reasoning=hit.reasoning,
                language=hit.language,
                emotion=hit.emotion,
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
    thought: list[str] = []
    pcm: list[bytes] = []
    rate = 24_000
    note: Annotation | None = None
    tries = [0]

    def attempt(n: int) -> None:
        tries[0] = n
        if on_attempt is not None:
            on_attempt(n)

    policy = RetryPolicy(attempts=sess.settings.retries + 1)
    events = with_retries(
        backend,
        request,
        policy,
        cancel=cancel,
        on_attempt=attempt,
        limiter=limiter,
        input_tokens=input_tokens(request, backend.limits(request.model)) if limiter else 0,
    )
    with closing(events):  # Ctrl-C: the stream is closed, and with it the connection
        for event in events:
            if isinstance(event, TextDelta):
                if first is None:
                    first = time.perf_counter() - started
                parts.append(event.text)
                if on_text is not None:
                    on_text(event.text)
            elif isinstance(event, ReasoningDelta):
                thought.append(event.text)
                if on_reasoning is not None:
                    on_reasoning(event.text)
            elif isinstance(event, AudioDelta):
                pcm.append(event.pcm)
                rate = event.rate
            elif isinstance(event, Annotation):
                note = event
            else:
                completion = event
    assert completion is not None
    outcome = Outcome(
        "".join(parts),
        completion.usage,
        completion.request_id,
        completion.finish_reason,
        time.perf_counter() - started,
        first,
        attempts=tries[0],
        reasoning="".join(thought),
        speech=b"".join(pcm),
        speech_rate=rate,
        language=note.language if note else None,
        emotion=note.emotion if note else None,
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
            reasoning=outcome.reasoning,
            language=outcome.language,
            emotion=outcome.emotion,
        )
    return outcome


def pacing(sess: Session, backend: Backend, model: str) -> RateLimiter | None:
    """The rate limiter a batch's requests to ``model`` wait on (None: no limit to honour).

    Only batches are paced: a single question is one request, and a 429 it meets is retried;
    a batch would otherwise spend its requests on refusals."""
    return route_limiter(route_of(backend), model, sess.settings.rate_limit, share=sess.rate_share)


def input_tokens(request: Request, limits: Limits) -> int:
    """About how many input tokens ``request`` costs (what its rate limit is charged)."""
    total = 0
    for message in request.messages:
        for part in message.parts:
            if isinstance(part, AudioPart):
                seconds = part.audio.seconds
                total += audio_tokens(seconds if seconds is not None else 30.0, limits)
            else:
                total += estimate_text_tokens(part.text)
    return total


def audio_seconds(request: Request) -> float:
    """Seconds of audio in ``request``, history included (what is billed)."""
    return sum(a.seconds or 0.0 for m in request.messages for a in m.audio)


# ---------------------------------------------------------------------- results
def record(plan: TurnPlan, outcome: Outcome) -> Turn:
    """The completed turn, appended to the plan's conversation."""
    turn = Turn(
        clips=plan.clips,
        question=plan.question,
        answer=outcome.text,
        model=plan.request.model,
        usage=outcome.usage,
        request_id=outcome.request_id,
        reasoning=outcome.reasoning,
    )
    plan.conversation.append(turn)
    return turn


def answer_for(plan: TurnPlan, outcome: Outcome, *, conversation: str | None) -> Answer:
    """The Answer for ``outcome``, with the times it mentions as segments of its clip."""
    from .answer import Answer

    request, ref = plan.request, plan.reference
    try:  # the text is untrusted and the turn is already recorded: nothing here may raise
        segments = (
            find_segments(outcome.text, duration=ref.seconds, offset=ref.start) if ref else []
        )
    except (ValueError, ArithmeticError, RecursionError):
        segments = []
    if ref is not None and segments:  # after the whole text arrived: never delays it
        from .grounding import ground_segments  # numpy and the detector: not at %load_ext

        segments = list(ground_segments(segments, _speech_map(ref)))
    return Answer(
        text=outcome.text,
        model=request.model,
        usage=outcome.usage,
        request_id=outcome.request_id,
        clips=plan.clips,
        latency=outcome.latency,
        question=plan.question,
        conversation=conversation,
        first_text_latency=outcome.first_text,
        audio_seconds=audio_seconds(request),
        estimated_audio_tokens=sum(
            audio_tokens(a.seconds or 30.0, plan.limits) for m in request.messages for a in m.audio
        ),
        notes=plan.notes,
        finish_reason=outcome.finish_reason,
        cached=outcome.cached,
        segments=tuple(segments),
        reasoning=outcome.reasoning,
        audio=spoken_clip(outcome.speech, outcome.speech_rate, plan.voice)
        if outcome.speech
        else None,
        language=outcome.language,
        emotion=outcome.emotion,
        context=plan.context,
        clip_labels=tuple(p.label for p in plan.prepared),
        unknown_audio=sum(1 for m in request.messages for a in m.audio if a.seconds is None),
    )


def _speech_map(ref: PreparedAudio) -> SpeechMap | None:
    """The speech map of what the model heard (the clip's window as sent), or None when
    its audio is not in the kernel (a URL the service fetched itself)."""
    from .grounding import map_for_window

    clip = ref.clip
    if clip.is_remote or not ref.seconds:
        return None
    return map_for_window(clip, ref.start, ref.seconds)


def spoken_clip(pcm: bytes, rate: int, voice: str | None) -> AudioClip:
    """A spoken answer (16-bit mono PCM) as an AudioClip: a player plays it, ``.decode()``
    gives the samples; held in memory only (never in the saved notebook or the cache)."""
    import numpy as np

    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2")
    name = f"spoken answer ({voice})" if voice else "spoken answer"
    return AudioClip.from_array(samples, rate, name=name)
