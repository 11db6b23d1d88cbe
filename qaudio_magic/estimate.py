"""``--dry-run`` on a batch or a model grid: requests, audio, tokens and cost per model.

Nothing is sent. Each clip is decoded once to learn its length (windows are planned as
the batch would cut them); per model, audio tokens follow that model's token rate and the
seconds it hears, input text tokens are counted from the question as it would be sent
(a typed question's schema included), and the cost comes from the model registry's
prices (:mod:`qaudio_magic.costs`; unknown prices stay unknown). Output length cannot be
known before asking: it is **assumed** (``max_tokens`` when given, else 12 tokens per
field of a typed answer or 150 for prose) and the table says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._format import plural, short, table_bundle
from .backends.base import audio_tokens
from .conversation import estimate_text_tokens
from .costs import Cost, estimate_cost, total_cost
from .errors import InputError
from .models import lookup
from .sources import expand_sources, resolve_sources

if TYPE_CHECKING:
    from .schema import Schema
    from .session import Session

__all__ = ["BatchPlan", "ModelEstimate", "plan_many"]

PROSE_OUTPUT_TOKENS = 150  # assumed length of a prose answer
FIELD_OUTPUT_TOKENS = 12  # assumed tokens per field of a typed answer


@dataclass(frozen=True)
class ModelEstimate:
    """What one model would be sent for the whole batch."""

    model: str
    route: str
    requests: int
    audio_seconds: float  # seconds the model hears (its per-clip limit applied)
    audio_tokens: int
    input_tokens: int  # text: system prompt, question, schema
    output_tokens: int  # assumed
    cost: Cost
    mechanism: str = ""  # typed questions: "json_schema" or "prompt"


@dataclass(frozen=True)
class BatchPlan:
    """What a batch or grid would send, per model — shown by ``--dry-run``; nothing sent."""

    question: str | None
    items: int
    rows: tuple[ModelEstimate, ...]
    notes: tuple[str, ...] = ()

    @property
    def cost(self) -> Cost:
        """All models together (unknown if any price is)."""
        return total_cost(r.cost for r in self.rows)

    _HEADER = (
        "model",
        "route",
        "requests",
        "audio s",
        "audio tok",
        "input tok",
        "output tok (assumed)",
        "est. cost",
    )

    def table(self) -> list[tuple[str, ...]]:
        return [
            (
                r.model + (f" ({r.mechanism})" if r.mechanism else ""),
                r.route,
                f"{r.requests}",
                f"{r.audio_seconds:.1f}",
                f"{r.audio_tokens}",
                f"{r.input_tokens}",
                f"{r.output_tokens}",
                str(r.cost),
            )
            for r in self.rows
        ]

    def summary(self) -> str:
        requests = sum(r.requests for r in self.rows)
        return (
            f"Dry run: nothing sent. {plural(self.items, 'item')} × "
            f"{plural(len(self.rows), 'model')} = {plural(requests, 'request')}; "
            f"estimated cost {self.cost}"
        )

    def _lines(self) -> list[str]:
        lines = [self.summary()]
        if self.question:
            lines.append(f'question: "{short(self.question, 200)}"')
        return lines

    def _all_notes(self) -> list[str]:
        unknown = [r.model for r in self.rows if not r.cost.known]
        notes = list(self.notes)
        for r in self.rows:
            if not r.cost.known:
                notes.append(f"{r.model}: cost unknown ({r.cost.why})")
            elif r.cost.source:
                notes.append(
                    f"{r.model}: price from {r.cost.source}, checked {r.cost.checked}"
                    + ("" if r.cost.verified else " (UNVERIFIED)")
                )
        if unknown and len(unknown) == len(self.rows):
            notes.append("no model here has a known price")
        return notes

    def __str__(self) -> str:
        return str(self._bundle()[0]["text/plain"])

    def __repr__(self) -> str:
        return f"BatchPlan({self.summary()})"

    def _bundle(self) -> tuple[dict[str, str], dict[str, Any]]:
        metadata = {"status": "dry-run", "models": [r.model for r in self.rows]}
        return table_bundle(
            "\n".join(self._lines()),
            self._HEADER,
            self.table(),
            notes=self._all_notes(),
            metadata=metadata,
        )

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> tuple[dict[str, str], dict[str, Any]]:
        return self._bundle()

    def to_pandas(self) -> Any:
        """One row per model, costs as numbers (None when unknown) with their currency."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "model": r.model,
                    "route": r.route,
                    "requests": r.requests,
                    "audio_seconds": r.audio_seconds,
                    "audio_tokens": r.audio_tokens,
                    "input_tokens": r.input_tokens,
                    "output_tokens_assumed": r.output_tokens,
                    "cost": r.cost.amount,
                    "currency": r.cost.currency,
                    "price_source": r.cost.source or None,
                }
                for r in self.rows
            ]
        )


def plan_many(
    sources: object,
    question: str | None,
    models: Sequence[str],
    *,
    session: Session,
    schema: Schema | None = None,
    windows: float | None = None,
    overlap: float = 0.0,
    params: dict[str, Any] | None = None,
    system: str | None = None,
) -> BatchPlan:
    """The per-model estimate of asking ``question`` about each item of ``sources``."""
    from .structured import mechanism
    from .windows import plan_windows

    question = (question or "").strip() or None
    items, _ = expand_sources(sources)
    groups = [tuple(resolve_sources(item)) for item in items]
    if not groups:
        raise InputError("nothing to ask: the batch has no clips")
    # seconds of each request's clips (each window its own request)
    requests: list[list[float]] = []
    for group in groups:
        if windows is not None:
            for clip in group:
                for lo, hi in plan_windows(
                    clip.duration or 0.0, float(windows), float(overlap), start=clip.start
                ):
                    requests.append([hi - lo])
        else:
            requests.append([c.duration or 0.0 for c in group])
    settings = session.settings
    system = system if system is not None else settings.system or None
    sent_text = schema.prompt(question) if schema is not None else (question or "")
    text_tokens = estimate_text_tokens(sent_text) + estimate_text_tokens(system)
    max_tokens = (params or {}).get("max_tokens")
    assumed = FIELD_OUTPUT_TOKENS * len(schema.fields) if schema else PROSE_OUTPUT_TOKENS
    capped = isinstance(max_tokens, int) and 0 < max_tokens < assumed
    if capped:
        assumed = int(max_tokens)  # type: ignore[arg-type]
    rows = []
    for model in models:
        spec = lookup(model)
        limits = spec.limits
        heard = [
            [min(s, limits.max_audio_seconds) if limits.max_audio_seconds else s for s in item]
            for item in requests
        ]
        tokens = [sum(audio_tokens(s, limits) for s in item) for item in requests]
        costs = [
            estimate_cost(
                model,
                settings.region,
                text_in=text_tokens,
                audio_in=t,
                text_out=assumed,
                seconds=sum(h),
            )
            for t, h in zip(tokens, heard, strict=True)
        ]
        rows.append(
            ModelEstimate(
                model,
                spec.route,
                len(requests),
                sum(sum(h) for h in heard),
                sum(tokens),
                text_tokens * len(requests),
                assumed * len(requests),
                total_cost(costs),
                mechanism(spec.route) if schema is not None else "",
            )
        )
    notes = [
        f"output assumed {assumed} tokens per request "
        + ("(max_tokens)" if capped else "(it is not known before asking)")
    ]
    if schema is not None:
        notes.append("a typed answer that does not match gets one repair request more")
    return BatchPlan(question, len(requests), tuple(rows), tuple(notes))
