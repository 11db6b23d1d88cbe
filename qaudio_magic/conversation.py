"""Conversations: ordered turns, a per-kernel registry of named ones, and what history to send.

The conversation, not the backend, decides which history goes out: everything that fits
the model's input budget, oldest turns dropped first (the caller shows a note). A turn is
appended only after its answer completed, so a failed or interrupted turn leaves the
conversation exactly as it was.
"""

from __future__ import annotations

import datetime as _dt
import threading
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .backends.base import Usage
from .clip import AudioClip
from .errors import InputError

__all__ = ["Conversation", "Conversations", "Turn", "estimate_text_tokens"]


def estimate_text_tokens(text: str | None) -> int:
    """Rough token count: one per CJK character, one per four other characters."""
    if not text:
        return 0
    wide = sum(1 for ch in text if unicodedata.east_asian_width(ch) in ("W", "F"))
    return wide + -(-(len(text) - wide) // 4)


@dataclass(frozen=True)
class Turn:
    """One completed exchange: the user's clips and text, and the model's answer."""

    clips: tuple[AudioClip, ...]
    question: str | None
    answer: str
    model: str
    usage: Usage | None = None
    request_id: str | None = None
    created: _dt.datetime = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc))
    # A thinking model's reasoning: exported apart from the answer, never sent as history
    reasoning: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able record without audio bytes (clips are named and hashed)."""
        return {
            "question": self.question,
            "answer": self.answer,
            "model": self.model,
            "usage": self.usage.as_dict() if self.usage else None,
            "request_id": self.request_id,
            "created": self.created.isoformat(),
            "clips": [c.describe() for c in self.clips],
            **({"reasoning": self.reasoning} if self.reasoning else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Turn:
        clips = tuple(c for item in data.get("clips", []) for c in _restore_clip(item))
        usage = Usage(**data["usage"]) if data.get("usage") else None
        return cls(
            clips=clips,
            question=data.get("question"),
            answer=data["answer"],
            model=data["model"],
            usage=usage,
            request_id=data.get("request_id"),
            created=_dt.datetime.fromisoformat(data["created"])
            if data.get("created")
            else _dt.datetime.now(_dt.timezone.utc),
            reasoning=str(data.get("reasoning") or ""),
        )


def _restore_clip(item: dict[str, Any]) -> list[AudioClip]:
    location = item.get("location")
    if not location:
        raise InputError(
            f"{item.get('name')}: this clip was held in memory and is not in the export"
        )
    clip = AudioClip.from_source(location)
    window = item.get("window")
    return [clip.window_of(window[0], window[1]) if window else clip]


class Conversation:
    """A named, ordered list of turns with an optional system prompt."""

    def __init__(self, name: str, system: str | None = None) -> None:
        self.name = name
        self.system = system
        self._turns: list[Turn] = []
        self._lock = threading.Lock()

    @property
    def turns(self) -> tuple[Turn, ...]:
        return tuple(self._turns)

    def __len__(self) -> int:
        return len(self._turns)

    def __iter__(self) -> Iterator[Turn]:
        return iter(self.turns)

    def __repr__(self) -> str:
        return f"Conversation({self.name!r}, turns={len(self._turns)})"

    def append(self, turn: Turn) -> None:
        with self._lock:
            self._turns.append(turn)

    def clear(self) -> None:
        with self._lock:
            self._turns.clear()

    @property
    def clips(self) -> tuple[AudioClip, ...]:
        """Every clip of the conversation, in order."""
        return tuple(c for t in self._turns for c in t.clips)

    def history(
        self,
        budget: int,
        cost: Callable[[Turn], int],
        *,
        max_turns: int | None = None,
    ) -> tuple[tuple[Turn, ...], int]:
        """The newest turns whose total ``cost`` fits ``budget``; also how many were dropped.

        Turns are kept whole and contiguous: once one does not fit, nothing older goes.
        """
        turns = self.turns
        if max_turns is not None and max_turns >= 0:
            turns = turns[len(turns) - max_turns :] if max_turns else ()
        kept: list[Turn] = []
        used = 0
        for turn in reversed(turns):
            c = cost(turn)
            if used + c > budget:
                break
            kept.append(turn)
            used += c
        kept.reverse()
        return tuple(kept), len(self._turns) - len(kept)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "system": self.system,
            "turns": [t.to_dict() for t in self._turns],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Conversation:
        conv = cls(data["name"], data.get("system"))
        for item in data.get("turns", []):
            conv.append(Turn.from_dict(item))
        return conv


class Conversations:
    """The kernel's conversations by name, with a current one."""

    DEFAULT = "default"

    def __init__(self) -> None:
        self._items: dict[str, Conversation] = {self.DEFAULT: Conversation(self.DEFAULT)}
        self._current = self.DEFAULT
        self._lock = threading.Lock()

    @property
    def current(self) -> Conversation:
        return self._items[self._current]

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[Conversation]:
        return iter(list(self._items.values()))

    def get(self, name: str | None, *, create: bool = True) -> Conversation:
        """The named conversation (created on first use), or the current one for None."""
        if name is None:
            return self.current
        with self._lock:
            conv = self._items.get(name)
            if conv is None:
                if not create:
                    known = ", ".join(self._items)
                    raise InputError(f"no conversation named {name!r} (known: {known})")
                conv = self._items[name] = Conversation(name)
            return conv

    def new(self, name: str | None = None, system: str | None = None) -> Conversation:
        """Start a fresh conversation and make it current (replacing one of the same name)."""
        conv = self.draft(name, system)
        self.adopt(conv)
        return conv

    def draft(self, name: str | None = None, system: str | None = None) -> Conversation:
        """A fresh conversation not registered yet: ``--new`` adopts it only once its first
        turn succeeded, so a failed first question leaves the user where they were."""
        with self._lock:
            if name is None:
                n = len(self._items) + 1
                while f"chat-{n}" in self._items:
                    n += 1
                name = f"chat-{n}"
            return Conversation(name, system)

    def adopt(self, conv: Conversation) -> None:
        """Register ``conv`` (replacing one of the same name) and make it current."""
        with self._lock:
            self._items[conv.name] = conv
            self._current = conv.name

    def use(self, name: str) -> Conversation:
        conv = self.get(name, create=False)
        self._current = name
        return conv

    def add(self, conv: Conversation) -> None:
        with self._lock:
            self._items[conv.name] = conv
