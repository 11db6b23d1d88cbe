"""Conversations: ordered turns, a per-kernel registry of named ones, and what history to send.

The conversation, not the backend, decides which history goes out (:meth:`Conversation.history`).
The turns that carry audio are what the conversation is about, so they are kept as long as
they fit: text-only turns go first (oldest first), and only when the audio turns alone are
over the input budget (or ``max_history_turns``) are the oldest of those dropped. Every drop
is named in one line (:meth:`History.note`). A turn is appended only after its answer
completed, so a failed or interrupted turn leaves the conversation exactly as it was.
"""

from __future__ import annotations

import datetime as _dt
import threading
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ._format import plural
from .backends.base import Usage
from .clip import AudioClip
from .errors import InputError

__all__ = ["Conversation", "Conversations", "History", "Turn", "estimate_text_tokens"]


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

    def to_dict(self, *, paths: bool = False) -> dict[str, Any]:
        """JSON-able record without audio bytes (clips are named and hashed; local paths
        only with ``paths``)."""
        return {
            "question": self.question,
            "answer": self.answer,
            "model": self.model,
            "usage": self.usage.as_dict() if self.usage else None,
            "request_id": self.request_id,
            "created": self.created.isoformat(),
            "clips": [c.describe(paths=paths) for c in self.clips],
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
        why = (
            "this clip was held in memory"
            if item.get("kind") != "path"
            else "the export holds no paths (%qaudio export FILE --paths keeps them)"
        )
        raise InputError(f"{item.get('name')}: {why}; its audio cannot be restored")
    clip = AudioClip.from_source(location)
    window = item.get("window")
    return [clip.window_of(window[0], window[1]) if window else clip]


@dataclass(frozen=True)
class History:
    """The earlier turns sent with a question, and those left out (with why)."""

    turns: tuple[Turn, ...]
    dropped: tuple[Turn, ...] = ()
    reasons: tuple[str, ...] = ()  # "budget" and/or "max_history_turns = N"

    def note(self, input_tokens: int) -> str | None:
        """One line naming what was not sent and why, and which clips still are;
        None when nothing was dropped. ``input_tokens``: the model's input budget."""
        if not self.dropped:
            return None
        questions = sum(1 for t in self.dropped if not t.clips)
        with_audio = [t for t in self.dropped if t.clips]
        what = []
        if questions:
            what.append(plural(questions, "earlier question"))
        kept = [c for t in self.turns for c in t.clips]
        if with_audio:
            gone = [c for t in with_audio for c in t.clips if c.name not in {k.name for k in kept}]
            names = f" ({_clip_names(gone, the=False)})" if gone else ""
            what.append(f"{plural(len(with_audio), 'earlier turn')} with audio{names}")
        why = [
            f"over the {input_tokens:,}-token input budget" if r == "budget" else r
            for r in self.reasons
        ]
        line = f"{' and '.join(what)} not sent ({' and '.join(why)})"
        if kept:
            verb = "is" if len({c.name for c in kept}) == 1 else "are"
            line += f"; {_clip_names(kept)} {verb} still sent"
        return line


def _clip_names(clips: Iterable[AudioClip], *, the: bool = True, most: int = 3) -> str:
    """``'the clip a.wav'``, ``'the clips a.wav, b.wav'``, ``'a.wav, b.wav, c.wav (+2 more)'``."""
    names = list(dict.fromkeys(c.name for c in clips))
    shown = ", ".join(names[:most]) + (f" (+{len(names) - most} more)" if len(names) > most else "")
    return f"the clip{'s' if len(names) > 1 else ''} {shown}" if the else shown


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
    ) -> History:
        """The earlier turns to send: at most ``max_turns``, whose total ``cost`` fits ``budget``.

        What goes when something must: the oldest text-only turn, then the next oldest
        text-only one; only when none is left, the oldest turn with audio. Kept turns stay
        whole and in conversation order.
        """
        turns = self.turns
        costs = [cost(t) for t in turns]
        keep = [True] * len(turns)
        reasons: list[str] = []

        def drop_one(reason: str) -> None:
            for with_audio in (False, True):
                for i, turn in enumerate(turns):
                    if keep[i] and bool(turn.clips) == with_audio:
                        keep[i] = False
                        if reason not in reasons:
                            reasons.append(reason)
                        return

        if max_turns is not None and max_turns >= 0:
            while sum(keep) > max_turns:
                drop_one(f"max_history_turns = {max_turns}")
        while sum(c for c, k in zip(costs, keep, strict=True) if k) > max(budget, 0):
            drop_one("budget")
        return History(
            tuple(t for t, k in zip(turns, keep, strict=True) if k),
            tuple(t for t, k in zip(turns, keep, strict=True) if not k),
            tuple(reasons),
        )

    def to_dict(self, *, paths: bool = False) -> dict[str, Any]:
        """JSON-able, without audio bytes; local paths only with ``paths``."""
        return {
            "name": self.name,
            "system": self.system,
            "turns": [t.to_dict(paths=paths) for t in self._turns],
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
