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

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Generic, Protocol, TypeVar

from .backends.base import Message, Request, TextPart
from .schema import AnswerMismatchError, Schema

__all__ = ["GUIDED_ROUTES", "TypedResult", "ask_typed", "mechanism", "typed_request"]

GUIDED_ROUTES = frozenset({"openai"})  # routes whose servers enforce a JSON schema


class _HasText(Protocol):
    @property
    def text(self) -> str: ...


OutcomeT = TypeVar("OutcomeT", bound=_HasText)


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
    send: Callable[[Request], OutcomeT], request: Request, schema: Schema
) -> TypedResult[OutcomeT]:
    """Send ``request`` (already :func:`typed_request`), validate, repair once if needed.

    ``send`` answers one request (cache, retries and usage are its business). Raises
    :class:`AnswerMismatchError` when the repaired answer is still wrong; errors of
    ``send`` propagate unchanged.
    """
    first = send(request)
    try:
        return TypedResult(schema.parse(first.text), first, (first,))
    except AnswerMismatchError as exc:
        problem = str(exc)
    repair = replace(
        request,
        messages=(
            *request.messages,
            Message("assistant", (TextPart(first.text),)),
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
