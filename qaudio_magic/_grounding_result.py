"""The result of grounding one segment: what the audio holds where the model points.

A small data module of its own so that :class:`~qaudio_magic.segments.Segment` can carry
it without importing the detector (``grounding.py`` computes it; see there for how).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ._format import seconds, span

__all__ = ["Grounding", "Status"]

Status = Literal["speech", "sound", "silence"]


@dataclass(frozen=True)
class Grounding:
    """What the audio holds where a segment points, and the segment snapped onto it.

    ``status``: ``"speech"``, ``"sound"``, ``"silence"``, or None (audio not readable).
    ``start``/``end``: the snapped range (``end`` None for a point nothing was found at).
    ``said_start``/``said_end``: the times as the model wrote them, before they were cut
    to the clip; ``clip_end`` is the clip's length when the model's range ran past it.
    """

    status: Status | None
    start: float | None
    end: float | None
    said_start: float
    said_end: float | None
    clip_end: float | None = None

    @property
    def clipped(self) -> bool:
        return self.clip_end is not None

    @property
    def moved(self) -> bool:
        """Whether snapping changed the range the model gave."""
        return self.status in ("speech", "sound") and (
            self.start != self.said_start or self.end != self.said_end
        )

    def describe(self) -> str:
        """One line for a tooltip: ``model said 1.53–1.87 s; speech at 1.50–1.85 s``."""
        said = f"model said {_span(self.said_start, self.said_end)}"
        if self.clip_end is not None:
            said += f"; the clip ends at {seconds(self.clip_end)}"
        if self.status is None:
            return f"{said}; the audio could not be checked"
        if self.status == "silence":
            return f"{said}; nothing audible here"
        if self.start is None:
            return said
        return f"{said}; {self.status} at {_span(self.start, self.end)}"

    def as_dict(self) -> dict[str, object]:
        return {
            "status": self.status,
            "start": self.start,
            "end": self.end,
            "said_start": self.said_start,
            "said_end": self.said_end,
            "clip_end": self.clip_end,
            "text": self.describe(),
        }


def _span(a: float, b: float | None) -> str:
    return seconds(a) if b is None else span(a, b)
