"""Answer: the result of one question, with the reprs notebooks and terminals expect."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._render import bundle
from .backends.base import Usage
from .clip import AudioClip
from .segments import Segment

__all__ = ["Answer"]


@dataclass(eq=False)
class Answer:
    """The model's answer plus provenance: model, usage, request id, clips and timing."""

    text: str
    model: str
    usage: Usage | None
    request_id: str | None
    clips: tuple[AudioClip, ...]
    latency: float  # seconds from sending to the last text
    question: str | None = None
    conversation: str | None = None
    first_text_latency: float | None = None
    audio_seconds: float = 0.0  # audio in the request, history included (what is billed)
    estimated_audio_tokens: int = 0  # 25/s, minimum 25 per clip, history included
    notes: tuple[str, ...] = ()
    finish_reason: str | None = None
    # Times the answer mentions, relative to the clip they refer to (see segments.py)
    segments: tuple[Segment, ...] = ()
    _shown_in: int | None = field(default=None, repr=False)  # execution count of the live view

    def __str__(self) -> str:
        return self.text

    # ------------------------------------------------------------------ presentation
    @property
    def clips_line(self) -> str:
        return ", ".join(c.label() for c in self.clips)

    def footer(self) -> str:
        """Model · audio · usage · latency · request id, as one line."""
        bits = [self.model]
        if self.audio_seconds or self.estimated_audio_tokens:
            audio = f"audio {self.audio_seconds:.1f} s ≈ {self.estimated_audio_tokens} tok"
            if self.usage and self.usage.audio_tokens is not None:
                audio += f" (service: {self.usage.audio_tokens})"
            bits.append(audio)
        if self.usage and (
            self.usage.input_tokens is not None or self.usage.output_tokens is not None
        ):
            bits.append(f"in {self.usage.input_tokens} · out {self.usage.output_tokens} tok")
        timing = f"{self.latency:.2f} s"
        if self.first_text_latency is not None:
            timing += f" (first text {self.first_text_latency:.2f} s)"
        bits.append(timing)
        if self.request_id:
            bits.append(f"request {self.request_id}")
        return " · ".join(bits)

    def metadata(self) -> dict[str, Any]:
        """Provenance stored with the output (no audio bytes, no key)."""
        return {
            "status": "complete",
            "model": self.model,
            "request_id": self.request_id,
            "conversation": self.conversation,
            "usage": self.usage.as_dict() if self.usage else None,
            "clips": [c.describe() for c in self.clips],
            "segments": [[s.start, s.end] for s in self.segments],
        }

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> tuple[dict[str, str], dict[str, Any]]:
        data, md = bundle(
            self.text,
            clips_line=self.clips_line,
            question=self.question,
            notes=self.notes,
            footer=self.footer(),
            metadata=self.metadata(),
            segments=[s.label() for s in self.segments],
        )
        data["text/markdown"] = _inert_markdown(self.text)
        return data, md

    def _ipython_display_(self) -> None:
        """Display, unless this very cell already shows the answer live (no double output)."""
        from IPython import get_ipython
        from IPython.display import display

        shell = get_ipython()
        if shell is not None and self._shown_in == shell.execution_count:
            return
        data, md = self._repr_mimebundle_()
        display(data, metadata=md, raw=True)

    def __repr__(self) -> str:
        return (
            f"Answer({self.text[:60]!r}{'…' if len(self.text) > 60 else ''}, model={self.model!r})"
        )


_MD_SPECIAL = set("\\`*_{}[]()<>#+-.!|~&")


def _inert_markdown(text: str) -> str:
    """Markdown that shows ``text`` literally: every syntax character backslash-escaped.

    Frontends pick text/html first; this part exists for Markdown-only consumers and
    must never let model output become live HTML or links.
    """
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text)
