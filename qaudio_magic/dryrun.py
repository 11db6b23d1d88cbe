"""``--dry-run``: what a question would send, shown as a table; nothing is sent.

Each clip of the request (history included) with its window, seconds, estimated audio
tokens, bytes on the wire and how it would travel (inline, upload, URL ...). The backend
says how it would route each clip when it can (``plan()``, no network); otherwise bytes
are assumed to go inline as base64.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._format import size, span
from .backends.base import Backend, Limits, PreparedAudio, Request, audio_tokens

__all__ = ["PlannedAudio", "SendPlan", "plan_request"]


@dataclass(frozen=True)
class PlannedAudio:
    """One clip of a request as it would travel."""

    audio: PreparedAudio
    route: str  # "inline" | "upload" | "uploaded" (oss:// reused) | "url" | "pcm"
    wire_bytes: int  # bytes this clip adds to this turn's traffic
    tokens: int  # estimated audio tokens (25 per second, at least 25)
    history: bool = False  # from an earlier turn of the conversation


_ROUTE_TEXT = {
    "inline": "inline base64",
    "upload": "temporary upload, then oss://",
    "uploaded": "oss:// (uploaded earlier)",
    "url": "URL (the service fetches it)",
    "pcm": "decoded samples (local)",
}


@dataclass(frozen=True)
class SendPlan:
    """What a question would send — shown by ``--dry-run``; nothing was sent."""

    model: str
    conversation: str
    question: str | None
    items: tuple[PlannedAudio, ...]
    request_bytes: int  # the model call's body, inline audio included
    upload_bytes: int  # bytes of temporary uploads before the call
    notes: tuple[str, ...] = ()

    @property
    def seconds(self) -> float:
        return sum(i.audio.seconds or 0.0 for i in self.items)

    @property
    def tokens(self) -> int:
        return sum(i.tokens for i in self.items)

    @property
    def wire_bytes(self) -> int:
        return self.request_bytes + self.upload_bytes

    def rows(self) -> list[tuple[str, ...]]:
        out: list[tuple[str, ...]] = []
        for item in self.items:
            a = item.audio
            window = "?" if a.seconds is None else span(a.start, a.start + a.seconds)
            seconds = "?" if a.seconds is None else f"{a.seconds:.1f}"
            how = _ROUTE_TEXT.get(item.route, item.route)
            out.append(
                (
                    a.clip.name + (" (history)" if item.history else ""),
                    window,
                    seconds,
                    f"{item.tokens}",
                    size(item.wire_bytes),
                    how,
                )
            )
        return out

    def summary(self) -> str:
        n = len(self.items)
        return (
            f"{n} clip{'s' if n != 1 else ''}, {self.seconds:.1f} s of audio ≈ {self.tokens} "
            f"audio tokens; {size(self.wire_bytes)} on the wire (request "
            f"{size(self.request_bytes)}, uploads {size(self.upload_bytes)})"
        )

    _HEADER = ("clip", "window", "seconds", "audio tokens", "bytes on the wire", "how")

    def __str__(self) -> str:
        rows = self.rows()
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(self._HEADER)]
        lines = [
            f"Dry run: nothing sent. Model {self.model}, conversation '{self.conversation}'.",
            "  ".join(h.ljust(w) for h, w in zip(self._HEADER, widths, strict=True)),
            *("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows),
            self.summary(),
            *(f"note: {n}" for n in self.notes),
        ]
        return "\n".join(line.rstrip() for line in lines)

    def __repr__(self) -> str:
        return f"SendPlan({self.summary()})"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        esc = html.escape
        body = "".join(
            "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in self.rows()
        )
        notes = "".join(f"<div><i>note: {esc(n)}</i></div>" for n in self.notes)
        page = (
            f"<div><b>Dry run: nothing sent.</b> Model {esc(self.model)}, conversation "
            f"'{esc(self.conversation)}'.<table><thead><tr>"
            + "".join(f"<th>{esc(h)}</th>" for h in self._HEADER)
            + f"</tr></thead><tbody>{body}</tbody></table>{esc(self.summary())}{notes}</div>"
        )
        return {"text/plain": str(self), "text/html": page}


def plan_request(
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
