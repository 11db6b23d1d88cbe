"""AnswerView: what the user sees while and after an answer streams in.

In a notebook: one waveform player per clip of the turn (:mod:`qaudio_magic.player`; it
never autoplays) — for a follow-up, the player of the conversation's clip its times refer
to — then the answer as one display that is updated in place as text arrives, then a
footer. Players of what was asked about always sit above their answer. When the answer is
complete, the times it mentions become segments on the player of the clip they refer to.
Every output carries a static record: the answer's plain output lists those times as text
and shows a small picture of each waveform with them marked (:mod:`qaudio_magic._picture`),
so a notebook saved with default settings (no widget state) still shows which clip the
answer is about and where, and holds no audio bytes. In a terminal the text is printed as
it arrives, control characters shown as symbols (``_format.printable``).

The cost of one streamed piece does not grow with the answer: pieces are appended to a
list (joined only to render), and the answer is re-rendered at most every 50 ms and never
sooner than four times as long as the last render took, so rendering takes at most a fifth
of the time however long the answer grows.

A failure before anything arrived leaves nothing behind but the error's one line: what
was drawn is removed (no empty player, no "…"); "Incomplete" is only for an answer that
was cut after its text began.

A thinking model's reasoning streams into a collapsed "💭 thinking…" block above the
answer: an accordion widget, so opening it to read survives every update; where widgets
cannot render (a notebook saved without widget state, nbconvert) its output falls back to
a static collapsed block with the same reasoning. It has its own display and its own pace
of updates, so it never delays the answer's first text.
A spoken answer gets a player under the answer; it never autoplays, and its audio lives
in widget state only, so the saved notebook holds no audio bytes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._format import printable
from ._render import bundle
from .segments import Segment

if TYPE_CHECKING:
    from .backends.base import PreparedAudio
    from .clip import AudioClip

__all__ = ["AnswerView", "display_mode", "make_player"]

_UPDATE_EVERY = 0.05  # seconds between re-renders while streaming (the first is immediate)
_PICTURES = 4  # static waveform pictures per answer at most (a few KB each)
_THINK_EVERY = 0.25  # seconds between updates of the reasoning block (the first is immediate)
_BUSY = 4.0  # wait at least this many times the last render's duration before the next


class _Pieces:
    """Text that grows piece by piece: adding costs the same however long it is; the
    pieces are joined only when the text is read (to render it)."""

    __slots__ = ("_parts",)

    def __init__(self, text: str = "") -> None:
        self._parts = [text] if text else []

    def add(self, piece: str) -> None:
        self._parts.append(piece)

    def __bool__(self) -> bool:
        return bool(self._parts)

    def value(self) -> str:
        if len(self._parts) > 1:
            self._parts[:] = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""


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
        thinking: bool = False,
        context: str | None = None,
        reference: PreparedAudio | None = None,
    ) -> None:
        self.audio = list(audio)
        self.question = question
        self.notes = list(notes)
        self.mode = mode
        self.thinking = thinking  # reserve the reasoning block above the answer
        self.context = context  # "conversation default, turn 3 · also sent: a.wav (7.0 s)"
        self.reference = reference  # the audio the answer's times refer to
        self._text = _Pieces()
        self._reasoning = _Pieces()
        self._thought: Any = None  # the accordion's HTML while reasoning streams
        self._accordion: Any = None
        self._thinking_handle: Any = None
        self._next_thought = 0.0  # perf_counter time before which the block is not updated
        self._handle: Any = None
        self._next_render = 0.0  # perf_counter time before which the answer is not re-rendered
        self._dirty = False
        self._head_printed = False
        self.players: list[Any] = []
        self._shown: list[PreparedAudio] = []  # the audio of each player, in order
        self._player_handles: list[Any] = []
        self._after: list[Any] = []  # shown under the answer: the spoken answer's player
        self.segments: list[Segment] = []
        self.pictures: list[str] = []  # static waveform pictures, once the answer is complete
        self.notes_after: list[str] = []  # terminal lines after the footer
        self.data: Mapping[str, Any] | None = None  # a typed answer's fields, once valid

    @property
    def clips_line(self) -> str:
        return ", ".join(a.label for a in self.audio)

    @property
    def arrived(self) -> bool:
        """Whether any of the answer (its text or reasoning) has been shown."""
        return bool(self._text or self._reasoning)

    @property
    def text(self) -> str:
        return self._text.value()

    @text.setter
    def text(self, value: str) -> None:
        self._text = _Pieces(value)

    @property
    def reasoning(self) -> str:
        return self._reasoning.value()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Draw the players and the answer's place (a terminal prints its header only
        once something arrives, so an error before that prints nothing but itself)."""
        if self.mode == "plain":
            return
        from IPython.display import display

        shown = list(self.audio)
        if not shown and self.reference is not None:  # a follow-up: the clip it is about
            shown = [self.reference]
        for audio in shown:
            player = make_player(audio)
            self.players.append(player)
            self._shown.append(audio)
            self._player_handles.append(display(player, display_id=True))
        if self.thinking:
            self._thought, self._accordion = _thinking_block()
            self._thinking_handle = display(self._accordion, display_id=True)
        data, md = self._bundle(footer="", status=None)
        self._handle = display(data, metadata=md, raw=True, display_id=True)

    def _print_head(self) -> None:
        if self._head_printed:
            return
        self._head_printed = True
        lines = [f"🔊 {self.clips_line}" if self.audio else "💬 follow-up"]
        if self.context:
            lines.append(self.context)
        lines += [f"note: {n}" for n in self.notes]
        print(*(printable(line) for line in lines), sep="\n", flush=True)

    def add_reasoning(self, text: str) -> None:
        """A new piece of reasoning: into its block, at its own pace (never the answer's)."""
        first = not self._reasoning
        self._reasoning.add(text)
        if self.mode == "plain":
            self._print_head()
            sys.stdout.write(("💭 " if first else "") + printable(text))
            sys.stdout.flush()
            return
        now = time.perf_counter()
        if self._thought is not None:
            if now < self._next_thought:
                return
            self._show_reasoning(streaming=True)
            self._next_thought = _next(now, _THINK_EVERY)
        elif now >= self._next_render:
            self._render(footer="", status=None)  # no block reserved: inside the answer
            self._next_render = _next(now, _UPDATE_EVERY)

    def _show_reasoning(self, *, streaming: bool) -> None:
        from ._render import reasoning_html, thinking_title

        self._thought.value = reasoning_html(self.reasoning)
        self._accordion.titles = (thinking_title(self.reasoning, streaming=streaming),)
        self._accordion.reasoning = self.reasoning

    def _settle_reasoning(self) -> None:
        """The block once the answer is complete: the widget stays (and stays as open as the
        user left it); its output is published again so that where no widget can render (a
        saved notebook without widget state, nbconvert) a static collapsed block holds the
        reasoning. A request that did not think after all leaves nothing behind."""
        if self._accordion is None:
            return
        handle = self._thinking_handle
        if self.reasoning:
            self._show_reasoning(streaming=False)
            if handle is not None:
                handle.update(self._accordion)
        else:
            if handle is not None:
                handle.update({"text/plain": ""}, raw=True)
            self._accordion.close()
            self._thought.close()
        self._accordion = self._thought = None

    def add(self, text: str) -> None:
        """A new piece of answer text: shown at once, then at most every 50 ms (and never
        sooner than four times the last render took)."""
        first = not self._text
        self._text.add(text)
        if self.mode == "plain":
            self._print_head()
            if first and self._reasoning:
                sys.stdout.write("\n\n")
            sys.stdout.write(printable(text))
            sys.stdout.flush()
            return
        if first and self._thought is not None and self._reasoning:
            self._show_reasoning(streaming=False)  # complete now: one cheap widget update
        now = time.perf_counter()
        if now < self._next_render:
            self._dirty = True
            return
        self._render(footer="", status=None)
        self._next_render = _next(now, _UPDATE_EVERY)

    def finish(
        self,
        footer: str,
        metadata: dict[str, Any],
        *,
        segments: Sequence[Segment] = (),
        reference: PreparedAudio | None = None,
        data: Mapping[str, Any] | None = None,
        spoken: AudioClip | None = None,
    ) -> None:
        """The complete answer; ``segments`` (times it mentions) go on ``reference``'s player;
        ``data`` (a typed answer) shows as a table with the raw text folded; ``spoken``: the
        spoken answer, given a player under the answer."""
        self.segments = list(segments)
        self.data = data
        reference = reference if reference is not None else self.reference
        if self.mode == "rich":
            if self.segments and reference is not None:
                self._show_segments(reference)
            drawn = [p for p in self.players if p.peaks][:_PICTURES]
            self.pictures = [_picture_of(p) for p in drawn]
        if spoken is not None:
            if self.mode == "plain":
                self.notes_after = [f"🗣 spoken answer: {spoken.duration or 0:.1f} s (answer.audio)"]
            else:
                from .player import Player

                self._after.append(Player(spoken))
        self._final(footer, None, metadata)

    def _show_segments(self, reference: PreparedAudio) -> None:
        for audio, player, handle in zip(
            self._shown, self.players, self._player_handles, strict=True
        ):
            if audio is reference:
                player.segments = self.segments
                handle.update(player)  # the plain-text fallback now lists the times
                return

    def restart(self, note: str) -> None:
        """A second answer follows (a typed answer's repair): clear the text, say why."""
        self.notes.append(note)
        self.text = ""
        if self.mode == "plain":
            self._print_head()
            print("", f"note: {note}", sep="\n", flush=True)
            return
        self._render(footer="", status=None)

    def fail(self, status: str, metadata: dict[str, Any] | None = None) -> None:
        """Keep the text that arrived, marked incomplete with the reason."""
        self._final("", status, metadata or {})

    def discard(self) -> None:
        """Nothing arrived (an error before sending, or before the first text): remove
        what was drawn, so the error's own line is all that is shown."""
        if self.mode == "plain":
            return  # nothing was printed yet
        empty: dict[str, Any] = {}
        for handle in self._player_handles:
            handle.update(empty, raw=True)
        if self._thinking_handle is not None:
            self._thinking_handle.update(empty, raw=True)
            for widget in (self._accordion, self._thought):
                if widget is not None:
                    widget.close()
            self._accordion = self._thought = None
        if self._handle is not None:
            self._handle.update(empty, metadata={"qaudio": {"status": "not sent"}}, raw=True)

    # ------------------------------------------------------------------ internals
    def _final(self, footer: str, status: str | None, metadata: dict[str, Any]) -> None:
        if self.mode == "plain":
            self._print_head()
            times = ", ".join(s.label() for s in self.segments)
            tail = [
                t for t in (status, times and f"⏱ times: {times}", footer and f"-- {footer}") if t
            ]
            if self.data is not None:
                from ._render import data_lines

                tail = [*data_lines(self.data), *tail]
            print("", *(printable(t) for t in [*tail, *self.notes_after]), sep="\n", flush=True)
            return
        self._settle_reasoning()
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
            reasoning=self.reasoning if not self.thinking else "",
            context=self.context,
            pictures=self.pictures,
        )

    def _render(
        self, footer: str, status: str | None, metadata: dict[str, Any] | None = None
    ) -> None:
        data, md = self._bundle(footer, status, metadata)
        if self._handle is not None:
            self._handle.update(data, metadata=md, raw=True)
        self._dirty = False


def _next(started: float, every: float) -> float:
    """When the next update may come: ``every`` seconds after ``started``, or four times
    what this one took, whichever is later (rendering takes at most a fifth of the time)."""
    now = time.perf_counter()
    return now + max(every - (now - started), _BUSY * (now - started))


def _thinking_block() -> tuple[Any, Any]:
    """The "💭 thinking…" accordion (collapsed) and its content: a widget, so that opening
    it survives the updates while the reasoning streams. Where widgets cannot render, its
    output falls back to a static collapsed block with the same reasoning."""
    import ipywidgets

    from ._render import thinking_bundle

    class ThinkingBlock(ipywidgets.Accordion):  # type: ignore[misc]
        reasoning = ""

        def _repr_mimebundle_(self, **kwargs: Any) -> Any:
            bundle = super()._repr_mimebundle_(**kwargs)
            if bundle is None:
                return None
            data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
            static, _ = thinking_bundle(self.reasoning, streaming=not self.reasoning)
            return {**data, **static}, metadata

    content = ipywidgets.HTML("")
    block = ThinkingBlock(children=[content], titles=("💭 thinking…",), selected_index=None)
    return content, block


def _picture_of(player: Any) -> str:
    """The static picture of a player's waveform with its segments marked."""
    from ._picture import picture_html

    marks = [(s["start"], s["end"]) for s in player.segments]
    times = [s["label"] for s in player.segments]
    return picture_html(player.peaks, player.duration, marks, player.label, times)
