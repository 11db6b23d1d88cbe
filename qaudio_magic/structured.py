"""Asking a typed question: the schema into the request, the answer out of it, one repair.

Each route gets the strongest mechanism it has (protocol reference §11.7, §5.2):

    route                  mechanism
    openai (vLLM, ...)     ``response_format: {"type": "json_schema", ...}``: guided decoding
                           makes the server emit JSON matching the schema; the schema is in
                           the prompt too, so the model knows what the fields mean
    dashscope (native)     the schema in the prompt; DashScope documents no
    dashscope-compatible   ``response_format`` for any audio, omni or captioner model, and
    local                  none in thinking mode, so none is sent; the answer is validated here

An answer that does not match gets **one** repair request in the same conversation (the
question, the model's answer, then "your answer did not match: …; answer again as JSON
only"); a second mismatch raises :class:`~qaudio_magic.schema.AnswerMismatchError` with
the validation message, which a batch turns into a failed row like any other error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from .backends.base import Backend, Message, Request, TextPart, Usage
from .errors import AnswerMismatchError, InputError
from .schema import Schema

if TYPE_CHECKING:
    from .cache import CacheMode
    from .session import Session
    from .turn import Outcome, TurnPlan

__all__ = [
    "GUIDED_ROUTES",
    "TypedResult",
    "ask_typed",
    "check_model",
    "mechanism",
    "send_typed",
    "typed_plan",
    "typed_request",
]

GUIDED_ROUTES = frozenset({"openai"})  # routes whose servers enforce a JSON schema


class _HasText(Protocol):
    @property
    def text(self) -> str: ...


OutcomeT = TypeVar("OutcomeT", bound=_HasText)


def check_model(model: str) -> None:
    """Refuse a typed question to a model that cannot answer one, before anything is sent:
    speech recognition models transcribe (a question is only context to them) and the
    captioner takes no text at all, so neither can be asked for JSON or repaired."""
    from .models import lookup

    spec = lookup(model)
    why = None
    if spec.transcribes:
        why = "it transcribes speech; the question is only context to it"
    elif not spec.takes_text or spec.single_turn:
        why = "it takes no question (one turn, audio only)"
    if why:
        raise InputError(
            f"{model} cannot answer a typed question (--schema): {why}",
            hint="ask a model that answers questions, e.g. qwen3.5-omni-flash, then score "
            "its transcripts against labels with metric='wer'",
        )


def mechanism(route: str) -> str:
    """How ``route`` is asked for JSON: ``"json_schema"`` or ``"prompt"``."""
    return "json_schema" if route in GUIDED_ROUTES else "prompt"


def typed_request(request: Request, schema: Schema, route: str) -> Request:
    """``request`` asking for ``schema``: its last user message carries the schema, and
    on a guided route its parameters carry ``response_format`` (unless the caller set one).
    """
    messages = list(request.messages)
    last = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)
    if last is None:
        messages.append(Message("user", (TextPart(schema.prompt(None)),)))
    else:
        message = messages[last]
        question = message.text or None
        parts = tuple(p for p in message.parts if not isinstance(p, TextPart))
        messages[last] = Message("user", (*parts, TextPart(schema.prompt(question))))
    params = dict(request.params)
    if mechanism(route) == "json_schema":
        params.setdefault("response_format", schema.response_format())
    return replace(request, messages=tuple(messages), params=params)


@dataclass(frozen=True)
class TypedResult(Generic[OutcomeT]):
    """The validated data, the outcome it came from, and the repair if one was needed."""

    data: dict[str, object]
    outcome: OutcomeT
    attempts: tuple[OutcomeT, ...]  # every outcome, the first answer included
    repaired: str | None = None  # what was wrong with the first answer

    @property
    def note(self) -> str | None:
        if self.repaired is None:
            return None
        return f"the first answer did not match the schema ({self.repaired}); one repair asked"


def ask_typed(
    send: Callable[[Request], OutcomeT],
    request: Request,
    schema: Schema,
    *,
    before_repair: Callable[[str], None] | None = None,
) -> TypedResult[OutcomeT]:
    """Send ``request`` (already :func:`typed_request`), validate, repair once if needed.

    ``send`` answers one request (cache, retries and usage are its business);
    ``before_repair`` hears what was wrong before the repair is sent. Raises
    :class:`AnswerMismatchError` when the repaired answer is still wrong; errors of
    ``send`` propagate unchanged.
    """
    first = send(request)
    try:
        return TypedResult(schema.parse(first.text), first, (first,))
    except AnswerMismatchError as exc:
        problem = str(exc)
    if before_repair is not None:
        before_repair(problem)
    repair = replace(
        request,
        messages=(
            *request.messages,
            Message("assistant", (TextPart(first.text or "(no answer)"),)),
            Message("user", (TextPart(schema.repair_message(problem)),)),
        ),
    )
    second = send(repair)
    try:
        data = schema.parse(second.text)
    except AnswerMismatchError as exc:
        raise AnswerMismatchError(
            f"the answer did not match the schema, even after one repair request: {exc}",
            raw=second.text,
        ) from None
    return TypedResult(data, second, (first, second), repaired=problem)


# ---------------------------------------------------------------------- one typed turn
def typed_plan(plan: TurnPlan, schema: Schema, route: str) -> TurnPlan:
    """``plan`` asking for ``schema`` (its request only; the question shown stays the user's)."""
    return replace(plan, request=typed_request(plan.request, schema, route))


def send_typed(
    sess: Session,
    backend: Backend,
    plan: TurnPlan,
    mode: CacheMode,
    schema: Schema,
    *,
    on_text: Callable[[str], None] | None = None,
    on_repair: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
    on_attempt: Callable[[int], None] | None = None,
    **options: Any,
) -> tuple[Outcome, dict[str, object], str | None]:
    """Send a :func:`typed_plan`'s request through :func:`qaudio_magic.turn.send`, validate,
    repair once: the outcome (usage, latency and requests of both answers added up), the
    data, and a note when a repair was needed. Raises :class:`AnswerMismatchError`.
    ``options`` go to ``send`` as they are (e.g. a batch's rate limiter)."""
    from .turn import send

    sent = [0]  # requests of the answers before this one, for on_attempt's running count

    def one(request: Request) -> Outcome:
        def attempt(n: int) -> None:
            if on_attempt is not None:
                on_attempt(sent[0] + n)

        outcome = send(
            sess,
            backend,
            request,
            mode,
            on_text=on_text,
            cancel=cancel,
            on_attempt=attempt,
            **options,
        )
        sent[0] += outcome.attempts
        return outcome

    result = ask_typed(one, plan.request, schema, before_repair=on_repair)
    outcomes = result.attempts
    last = result.outcome
    combined = replace(
        last,
        usage=_added([o.usage for o in outcomes]),
        latency=sum(o.latency for o in outcomes),
        first_text=outcomes[0].first_text,
        attempts=sum(o.attempts for o in outcomes),
        cached=all(o.cached for o in outcomes),
    )
    return combined, result.data, result.note


def _added(usages: Sequence[Usage | None]) -> Usage | None:
    """Token counts of several requests added up (None where no request reported one)."""
    known = [u for u in usages if u is not None]
    if not known:
        return None

    def total(name: str) -> int | None:
        values = [getattr(u, name) for u in known if getattr(u, name) is not None]
        return sum(values) if values else None

    return Usage(
        input_tokens=total("input_tokens"),
        output_tokens=total("output_tokens"),
        audio_tokens=total("audio_tokens"),
    )
