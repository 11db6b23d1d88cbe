"""The session's quota meter: what was spent per model, and what the cache saved.

Qwen-Audio on DashScope is free-trial only (a small token quota, no paid tier), so a
researcher wants to see what a notebook costs. Counts come from the usage the service
reports with each answer; audio seconds are what was sent (history included, as it is
billed). Answers served from the response cache are counted apart, as savings.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from .backends.base import Usage

__all__ = ["ModelUsage", "UsageMeter"]


@dataclass
class ModelUsage:
    requests: int = 0  # answers from the service
    audio_seconds: float = 0.0
    audio_tokens: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached: int = 0  # answers from the cache
    saved_audio_seconds: float = 0.0
    saved_tokens: int = 0

    @property
    def tokens(self) -> int:
        return self.audio_tokens + self.input_tokens + self.output_tokens


class UsageMeter:
    """Thread-safe per-model totals (batch workers record concurrently)."""

    def __init__(self) -> None:
        self._models: dict[str, ModelUsage] = {}
        self._lock = threading.Lock()

    def record(
        self, model: str, usage: Usage | None, audio_seconds: float, *, cached: bool
    ) -> None:
        with self._lock:
            row = self._models.setdefault(model, ModelUsage())
            if cached:
                row.cached += 1
                row.saved_audio_seconds += audio_seconds
                row.saved_tokens += usage.total_tokens if usage else 0
                return
            row.requests += 1
            row.audio_seconds += audio_seconds
            if usage is not None:
                row.audio_tokens += usage.audio_tokens or 0
                row.input_tokens += usage.input_tokens or 0
                row.output_tokens += usage.output_tokens or 0

    def snapshot(self) -> dict[str, ModelUsage]:
        with self._lock:
            return {name: ModelUsage(**vars(row)) for name, row in self._models.items()}

    def reset(self) -> None:
        with self._lock:
            self._models.clear()

    def table(self) -> tuple[str, tuple[str, ...], list[tuple[str, ...]], list[str]]:
        """Title, header, rows and closing lines for display."""
        models = self.snapshot()
        header: tuple[str, ...] = (
            "model",
            "answers",
            "audio s",
            "audio tok",
            "in tok",
            "out tok",
            "tokens",
            "from cache",
            "saved audio s",
            "saved tok",
        )
        rows: list[tuple[str, ...]] = [
            (
                name,
                str(u.requests),
                f"{u.audio_seconds:.1f}",
                f"{u.audio_tokens:,}",
                f"{u.input_tokens:,}",
                f"{u.output_tokens:,}",
                f"{u.tokens:,}",
                str(u.cached),
                f"{u.saved_audio_seconds:.1f}",
                f"{u.saved_tokens:,}",
            )
            for name, u in sorted(models.items())
        ]
        spent = sum(u.tokens for u in models.values())
        saved = sum(u.saved_tokens for u in models.values())
        hits = sum(u.cached for u in models.values())
        lines = [f"Spent {spent:,} tokens this session (as reported by the service)."]
        if hits:
            lines.append(
                f"The response cache answered {hits} question{'s' if hits != 1 else ''}, "
                f"saving {saved:,} tokens."
            )
        return "Usage this session", header, rows, lines
