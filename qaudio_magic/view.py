"""AnswerView: what the user sees while and after an answer streams in.

In a notebook: one waveform player per clip of the turn (:mod:`qaudio_magic.player`;
it never autoplays), then the answer as one display that is updated in place as text
arrives, then a footer. When the answer is complete, the times it mentions become
segments on the player of the clip they refer to (for a follow-up, a player for the
conversation's clip is shown under the answer). Every output carries a plain-text
fallback listing those times, so a notebook saved with default settings (no widget
state) still says which clip the answer is about and where, and holds no audio bytes.
In a terminal the text is printed as it arrives.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._render import bundle
from .segments import Segment

if TYPE_CHECKING:
    from .backends.base import PreparedAudio

__all__ = ["AnswerView", "display_mode", "make_player"]

_UPDATE_EVERY = 0.05  # seconds between re-renders while streaming (the first is immediate)


def display_mode() -> str | None:
    """'rich' inside a notebook kernel (or a capture), 'plain' in a terminal, None outside IPython."""
    try:
        from IPython import get_ipython
        from IPython.core.displaypub import DisplayPublisher
    except ImportError:  # pragma: no cover - IPython is a dependency
        return None
    shell = get_ipython()
    if shell is None:
        return None
    return "plain" if type(shell.display_pub) is DisplayPublisher else "rich"


def make_player(audio: PreparedAudio) -> Any:
    """The waveform player for what was sent (the window, not the whole source)."""
    from .player import Player

    return Player.from_prepared(audio)


class AnswerView:
    """Live rendering of one turn; ``ask_audio`` drives it."""

    def __init__(
        self,
        audio: Sequence[PreparedAudio],
        *,
        question: str | None,
        notes: Sequence[str] = (),
        mode: str = "rich",
    ) -> None:
        self.audio = list(audio)
        self.question = question
        self.notes = list(notes)
        self.mode = mode
        self.text = ""
        self._handle: Any = None
        self._last_render = 0.0
        self._dirty = False
        self.players: list[Any] = []
        self._player_handles: list[Any] = []
        self._after: list[Any] = []  # players shown under the answer (follow-ups)
        self.segments: list[Segment] = []
        self.data: Mapping[str, Any] | None = None  # a typed answer's fields, once valid

    @property
    def clips_line(self) -> str:
        return ", ".join(a.label for a in self.audio)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self.mode == "plain":
            head = f"🔊 {self.clips_line}" if self.audio else "💬 follow-up"
            print(head, *(f"note: {n}" for n in self.notes), sep="\n", flush=True)
            return
        from IPython.display import display

        for audio in self.audio:
            player = make_player(audio)
            self.players.append(player)
            self._player_handles.append(display(player, display_id=True))
        data, md = self._bundle(footer="", status=None)
        self._handle = display(data, metadata=md, raw=True, display_id=True)

    def add(self, text: str) -> None:
        """A new piece of answer text: shown at once, then at most every 50 ms."""
        self.text += text
        if self.mode == "plain":
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        now = time.perf_counter()
        if self._last_render and now - self._last_render < _UPDATE_EVERY:
            self._dirty = True
            return
        self._render(footer="", status=None)
        self._last_render = now

    def finish(
        self,
        footer: str,
        metadata: dict[str, Any],
        *,
        segments: Sequence[Segment] = (),
        reference: PreparedAudio | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        """The complete answer; ``segments`` (times it mentions) go on ``reference``'s player;
        ``data`` (a typed answer) shows as a table with the raw text folded."""
        self.segments = list(segments)
        self.data = data
        if self.mode == "rich" and self.segments and reference is not None:
            self._show_segments(reference)
        self._final(footer, None, metadata)

    def _show_segments(self, reference: PreparedAudio) -> None:
        for audio, player, handle in zip(
            self.audio, self.players, self._player_handles, strict=False
        ):
            if audio is reference:
                player.segments = self.segments
                handle.update(player)  # the plain-text fallback now lists the times
                return
        player = make_player(reference)  # a follow-up: the conversation's clip, under the answer
        player.segments = self.segments
        self.players.append(player)
        self._after.append(player)

    def restart(self, note: str) -> None:
        """A second answer follows (a typed answer's repair): clear the text, say why."""
        self.notes.append(note)
        self.text = ""
        if self.mode == "plain":
            print("", f"note: {note}", sep="\n", flush=True)
            return
        self._render(footer="", status=None)

    def fail(self, status: str, metadata: dict[str, Any] | None = None) -> None:
        """Keep whatever text arrived, marked incomplete with the reason."""
        self._final("", status, metadata or {})

    # ------------------------------------------------------------------ internals
    def _final(self, footer: str, status: str | None, metadata: dict[str, Any]) -> None:
        if self.mode == "plain":
            times = ", ".join(s.label() for s in self.segments)
            tail = [
                t for t in (status, times and f"⏱ times: {times}", footer and f"-- {footer}") if t
            ]
            if self.data is not None:
                from ._render import data_lines

                tail = [*data_lines(self.data), *tail]
            print("", *tail, sep="\n", flush=True)
            return
        self._render(footer=footer, status=status, metadata=metadata)
        if self._after:
            from IPython.display import display

            display(*self._after)

    def _bundle(
        self, footer: str, status: str | None, metadata: dict[str, Any] | None = None
    ) -> tuple[dict[str, str], dict[str, Any]]:
        return bundle(
            self.text,
            clips_line=self.clips_line,
            question=self.question,
            notes=self.notes,
            footer=footer,
            status=status,
            metadata=metadata or {"status": "streaming"},
            segments=[s.label() for s in self.segments],
            data=self.data,
        )

    def _render(
        self, footer: str, status: str | None, metadata: dict[str, Any] | None = None
    ) -> None:
        data, md = self._bundle(footer, status, metadata)
        if self._handle is not None:
            self._handle.update(data, metadata=md, raw=True)
        self._dirty = False
