"""``%%qaudio`` / ``%qaudio``: a thin parser over :func:`ask_audio`, plus subcommands.

Configuration lives in traitlets on :class:`QAudioMagic` (``%config QAudioMagic.model``,
``c.QAudioMagic.model`` in ``ipython_config.py``) and is mirrored into the session's
settings. The API key is not a trait, so no ``%config`` listing can show it. Errors print
as one line via ``UsageError`` — never a traceback.
"""

from __future__ import annotations

import ast
import getpass
import html
import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Bool, CaselessStrEnum, Dict, Float, Int, Unicode, observe, validate

from .errors import QAudioError
from .session import Session, get_session

__all__ = ["QAudioMagic"]

_EXPR = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(\[[^\]]*\])*")

SUBCOMMANDS = """\
Subcommands (line magic):
  %qaudio new [NAME]        start a new conversation (and make it current)
  %qaudio use NAME          switch to another conversation
  %qaudio reset             forget the current conversation's turns
  %qaudio history [NAME]    turns with clip names, durations and token counts
  %qaudio list              conversations
  %qaudio models            known models, routes and limits
  %qaudio key [--clear]     enter the API key (hidden; kept in memory only)
  %qaudio emulator [auto|on|off]  use the built-in offline emulator
  %qaudio export FILE       save the current conversation as JSON (no audio, no key)
  %qaudio record [NAME] [--max SECONDS]  show a recorder; NAME (default mic) is its latest take
  %qaudio help              this text
"""


@magics_class
class QAudioMagic(Magics):
    """Ask Qwen-Audio about audio in notebooks."""

    model = Unicode("qwen-audio-turbo-latest", help="Model (selects the route)").tag(config=True)
    base_url = Unicode(
        "", help="DashScope API base URL; empty: $DASHSCOPE_HTTP_BASE_URL, then the region's"
    ).tag(config=True)
    region = CaselessStrEnum(["cn", "intl"], "cn", help="cn (Beijing) or intl (Singapore)").tag(
        config=True
    )
    stream = Bool(True, help="Stream answers as they are generated").tag(config=True)
    system = Unicode("", help="System prompt for new conversations").tag(config=True)
    max_history_turns = Int(20, help="Most earlier turns sent with a question").tag(config=True)
    timeout = Float(60.0, help="Seconds to wait for the first byte and between chunks").tag(
        config=True
    )
    connect_timeout = Float(10.0, help="Seconds to wait for a connection").tag(config=True)
    total_timeout = Float(600.0, help="Seconds one whole answer may take").tag(config=True)
    retries = Int(3, help="Retries for rate limits and server or network faults").tag(config=True)
    headers = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        help="Extra HTTP headers (e.g. X-DashScope-WorkSpace); never the key",
    ).tag(config=True)

    _SETTINGS = (
        "model",
        "base_url",
        "region",
        "stream",
        "system",
        "max_history_turns",
        "timeout",
        "connect_timeout",
        "total_timeout",
        "retries",
        "headers",
    )

    def __init__(self, shell: Any = None, session: Session | None = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.session = session or get_session()
        self._sync()

    # ------------------------------------------------------------------ config
    @validate("headers")
    def _no_auth_header(self, proposal: Any) -> dict[str, str]:
        value = proposal["value"]
        if any(k.lower() == "authorization" for k in value):
            raise ValueError("put the key in DASHSCOPE_API_KEY or `%qaudio key`, not in headers")
        return value

    @validate("model")
    def _model_not_empty(self, proposal: Any) -> str:
        if not proposal["value"].strip():
            raise ValueError("model cannot be empty")
        return proposal["value"].strip()

    @observe(*_SETTINGS)
    def _changed(self, change: Any) -> None:
        self._sync()

    def _sync(self) -> None:
        self.session.configure(**{name: getattr(self, name) for name in self._SETTINGS})

    # ------------------------------------------------------------------ the magic
    @line_cell_magic
    @magic_arguments()
    @argument(
        "sources",
        nargs="*",
        metavar="SOURCE",
        help="audio: a path, http(s)/oss/data URL, or a variable holding a path, Path, "
        "bytes, ipywidgets.Audio or AudioClip; several = several clips in one turn; "
        "none = a follow-up in the current conversation",
    )
    @argument("-m", "--model", help="model for this question (default: %%config QAudioMagic.model)")
    @argument("--system", help="system prompt for this conversation")
    @argument("--new", action="store_true", help="start a new conversation with this question")
    @argument("-c", "--conversation", metavar="NAME", help="conversation to use (created if new)")
    @argument(
        "-p",
        "--param",
        action="append",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="model parameters: temperature, top_p, top_k, max_tokens, seed, ...",
    )
    @argument("--no-stream", action="store_true", help="wait for the whole answer")
    @argument(
        "--selection",
        action="store_true",
        help="ask about the region selected (dragged) on a waveform player: the most recent "
        "selection that still stands, on any player (instead of SOURCE)",
    )
    def qaudio(self, line: str, cell: str | None = None) -> Any:
        """Ask Qwen-Audio about audio: the cell body is the question.

        %%qaudio clip.wav
        What is said here? Who is speaking, and in what mood?

        An empty body with audio is voice chat (the audio is the message). A cell
        without SOURCE continues the current conversation.
        """
        try:
            if cell is None:
                return self._subcommand(line)
            return self._ask(line, cell)
        except QAudioError as exc:
            raise UsageError(exc.one_line()) from None

    def _ask(self, line: str, cell: str) -> Any:
        from .ask import ask_audio

        try:  # shlex, not IPython's arg_split: quotes must go ("my clip.wav", --system 'a b')
            argv = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"cannot parse the magic line: {exc}") from None
        try:
            args = self.qaudio.parser.parse_args(argv)
        except UsageError as exc:
            raise UsageError(f"{exc} (see %%qaudio?)") from None
        sources = [self._source(token) for token in args.sources]
        if args.selection:
            if sources:
                raise UsageError("--selection asks about the selected region: give no SOURCE")
            from .player import selected_player

            sources = [selected_player().selection_clip]
        params = _parse_params([kv for group in args.param for kv in group])
        return ask_audio(
            sources or None,
            cell,
            model=args.model,
            conversation=args.conversation,
            system=args.system,
            stream=False if args.no_stream else None,
            new=args.new,
            session=self.session,
            **params,
        )

    def _source(self, token: str) -> Any:
        """A notebook variable (or expression like ``clips[0]``) if one is meant, else the text."""
        ns = self.shell.user_ns if self.shell is not None else {}
        if token.isidentifier() and token in ns:
            return ns[token]
        if (
            _EXPR.fullmatch(token)
            and token.split(".")[0].split("[")[0] in ns
            and not Path(token).exists()
        ):
            try:
                return eval(token, ns)
            except Exception as exc:
                raise UsageError(f"{token}: {type(exc).__name__}: {exc}") from None
        return token

    # ------------------------------------------------------------------ subcommands
    def _subcommand(self, line: str) -> Any:
        words = shlex.split(line)
        if not words:
            words = ["help"]
        name, rest = words[0].lower(), words[1:]
        handler: Callable[[list[str]], Any] | None = getattr(self, f"_cmd_{name}", None)
        if handler is None:
            raise UsageError(
                f"unknown subcommand {name!r}; `%qaudio help` lists them "
                "(to ask a question use the cell magic %%qaudio)"
            )
        return handler(rest)

    def _cmd_help(self, rest: list[str]) -> None:
        print(SUBCOMMANDS + "\nAsk with the cell magic; see %%qaudio? for its options.")

    def _cmd_new(self, rest: list[str]) -> None:
        conv = self.session.conversations.new(
            rest[0] if rest else None, system=self.session.settings.system or None
        )
        print(f"New conversation '{conv.name}' (now current).")

    def _cmd_use(self, rest: list[str]) -> None:
        if not rest:
            raise UsageError("usage: %qaudio use NAME")
        conv = self.session.conversations.use(rest[0])
        print(f"Using conversation '{conv.name}' ({len(conv)} turns).")

    def _cmd_reset(self, rest: list[str]) -> None:
        conv = self.session.conversations.current
        n = len(conv)
        conv.clear()
        print(f"Conversation '{conv.name}' reset ({n} turns forgotten).")

    def _cmd_list(self, rest: list[str]) -> None:
        current = self.session.conversations.current.name
        for conv in self.session.conversations:
            mark = "*" if conv.name == current else " "
            print(f"{mark} {conv.name}: {len(conv)} turns, {len(conv.clips)} clips")

    def _cmd_history(self, rest: list[str]) -> None:
        conv = self.session.conversations.get(rest[0] if rest else None, create=False)
        rows = []
        for i, turn in enumerate(conv.turns, 1):
            clips = ", ".join(c.label() for c in turn.clips) or "(follow-up)"
            usage = turn.usage
            tokens = (
                f"audio {usage.audio_tokens} · in {usage.input_tokens} · out {usage.output_tokens}"
                if usage
                else ""
            )
            rows.append(
                (str(i), clips, turn.question or "(voice chat)", _short(turn.answer, 80), tokens)
            )
        _show_table(
            f"Conversation '{conv.name}': {len(rows)} turns",
            ("#", "clips", "question", "answer", "tokens"),
            rows,
        )

    def _cmd_models(self, rest: list[str]) -> None:
        from .models import MODELS

        rows = []
        for spec in MODELS.values():
            lim = spec.limits
            audio = (
                f"{lim.max_audio_seconds:g} s, {lim.max_audio_bytes / 1e6:g} MB"
                if lim.max_audio_seconds
                else f"{lim.max_audio_bytes / 1e6:g} MB"
            )
            rows.append(
                (
                    spec.name,
                    spec.route,
                    f"{lim.context_tokens:,}",
                    f"{lim.max_input_tokens:,} / {lim.max_output_tokens:,}",
                    audio,
                    spec.note,
                )
            )
        _show_table(
            "Known models (-m NAME)",
            ("model", "route", "context", "max in / out", "audio", "note"),
            rows,
        )

    def _cmd_key(self, rest: list[str]) -> None:
        if rest and rest[0] == "--clear":
            self.session.set_key(None)
            print("Key forgotten; $DASHSCOPE_API_KEY is used if set.")
            return
        value = getpass.getpass("DashScope API key (hidden): ")
        if not value.strip():
            raise UsageError("no key entered; nothing changed")
        self.session.set_key(value)
        print("Key set for this kernel session (kept in memory only, never saved).")

    def _cmd_emulator(self, rest: list[str]) -> None:
        mode = rest[0].lower() if rest else "on"
        if mode == "off":
            _stop_emulator(self)
            print("Emulator stopped; talking to", self.session.settings.dashscope_url())
            return
        if mode == "auto" and self.session.api_key() is not None and self.session.emulator is None:
            print(
                f"Using DashScope at {self.session.settings.dashscope_url()} "
                f"with the key from {self.session.key_source}."
            )
            return
        if mode not in ("on", "auto"):
            raise UsageError("usage: %qaudio emulator [auto|on|off]")
        url = _start_emulator(self)
        why = "No DASHSCOPE_API_KEY set: " if mode == "auto" else ""
        print(f"{why}using the built-in emulator at {url} — answers are emulated, not from Qwen.")

    def _cmd_export(self, rest: list[str]) -> None:
        if not rest:
            raise UsageError("usage: %qaudio export FILE.json")
        conv = self.session.conversations.current
        Path(rest[0]).write_text(json.dumps(conv.to_dict(), ensure_ascii=False, indent=1))
        print(f"Saved '{conv.name}' ({len(conv)} turns) to {rest[0]} (no audio bytes, no key).")

    def _cmd_record(self, rest: list[str]) -> None:
        from IPython.display import display

        from .recorder import Recorder

        usage = "usage: %qaudio record [NAME] [--max SECONDS] (NAME: a variable name, default mic)"
        names: list[str] = []
        max_seconds: float | None = None
        words = list(rest)
        while words:
            word = words.pop(0)
            if word == "--max" and words:
                try:
                    max_seconds = float(words.pop(0))
                    if not max_seconds > 0:
                        raise ValueError
                except ValueError:
                    raise UsageError(usage) from None
            elif word.isidentifier() and not names:
                names.append(word)
            else:
                raise UsageError(usage)
        name = names[0] if names else "mic"
        ns = self.shell.user_ns if self.shell is not None else {}
        recorder = ns.get(name)
        if not isinstance(recorder, Recorder):
            recorder = ns[name] = Recorder(name)
        # else: re-running the cell shows the same recorder, earlier takes kept
        if max_seconds is not None:
            recorder.max_seconds = max_seconds
        display(recorder)


def _start_emulator(magic: QAudioMagic) -> str:
    from ._secret import Secret
    from .emulator import Emulator

    session = magic.session
    if session.emulator is None:
        session.emulator = Emulator().start()
        magic._saved_key = session._key  # type: ignore[attr-defined]
        session.set_key(Secret("sk-emulator-offline"))  # the real key never goes to the emulator
    magic.base_url = session.emulator.base_url
    return str(session.emulator.base_url)


def _stop_emulator(magic: QAudioMagic) -> None:
    session = magic.session
    if session.emulator is not None:
        session.emulator.stop()
        session.emulator = None
        session.set_key(getattr(magic, "_saved_key", None))
        magic.base_url = ""


def _parse_params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"-p expects KEY=VALUE, got {item!r}")
        try:
            value: Any = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = {"true": True, "false": False, "none": None}.get(raw.lower(), raw)
        params[key.strip()] = value
    return params


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _show_table(title: str, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    """A table as escaped HTML with a plain-text fallback."""
    from IPython.display import display

    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    esc = html.escape
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    table = (
        f"<b>{esc(title)}</b><table><thead><tr>"
        + "".join(f"<th>{esc(h)}</th>" for h in header)
        + f"</tr></thead><tbody>{body}</tbody></table>"
    )
    display({"text/plain": "\n".join(lines), "text/html": table}, raw=True)
