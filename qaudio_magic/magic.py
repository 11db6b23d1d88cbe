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
import os
import re
import shlex
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
  %qaudio key [--clear]     enter the DashScope API key (hidden; kept in memory only)
  %qaudio key --openai [--clear]  the same for openai:MODEL servers ($OPENAI_API_KEY)
  %qaudio emulator [auto|on|off]  use the built-in offline emulator
  %qaudio export FILE       save the current conversation as JSON (no audio, no key)
  %qaudio usage [--reset]   audio seconds and tokens spent per model; what the cache saved
  %qaudio cache [clear]     where the response cache is, how big, and its mode
  %qaudio record [NAME] [--max SECONDS]  show a recorder; NAME (default mic) is its latest take
  %qaudio SOURCE [options]  voice chat: send the audio alone, no question (same options as %%qaudio)
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
    upload = CaselessStrEnum(
        ["auto", "always", "never"],
        "auto",
        help="Local audio: 'auto' uploads it once to DashScope's temporary store where the "
        "endpoint has one (Beijing, the emulator) and reuses the oss:// URL on later turns, "
        "else sends it inline; 'always' requires the upload; 'never' always sends it inline",
    ).tag(config=True)
    concurrency = Int(4, help="Requests in flight at once in a batch (1-16)").tag(config=True)
    cache = CaselessStrEnum(
        ["auto", "on", "off", "refresh", "replay"],
        "auto",
        help="Response cache: auto (batches only), on, off, refresh (ask again, overwrite), "
        "replay (offline: answer only from the cache)",
    ).tag(config=True)
    cache_dir = Unicode("", help="Response cache directory; empty: the user's cache dir").tag(
        config=True
    )
    openai_base_url = Unicode(
        "", help="Base URL of the server behind -m openai:MODEL (vLLM ...); empty: $OPENAI_BASE_URL"
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
        "upload",
        "concurrency",
        "cache",
        "cache_dir",
        "openai_base_url",
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

    @validate("concurrency")
    def _concurrency_range(self, proposal: Any) -> int:
        value = int(proposal["value"])
        if not 1 <= value <= 16:
            raise ValueError("concurrency must be between 1 and 16")
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
        "a glob pattern (clips/*.wav), a directory, or a variable holding a list or "
        "pandas Series = a batch, one question per clip; "
        "none = a follow-up in the current conversation",
    )
    @argument(
        "-m",
        "--model",
        help="model for this question (default: %%config QAudioMagic.model); the name picks "
        "the route: qwen-audio-* (DashScope), *omni* (DashScope compatible mode), "
        "openai:NAME (an OpenAI-compatible server such as vLLM), local:PATH_OR_HUB_ID "
        "(transformers); see %%qaudio models",
    )
    @argument(
        "--base-url",
        metavar="URL",
        help="server for -m openai:NAME for this question, e.g. http://localhost:8000/v1 "
        "(default: %%config QAudioMagic.openai_base_url, then $OPENAI_BASE_URL)",
    )
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
    @argument(
        "--start",
        metavar="TIME",
        help="send each SOURCE from this time on (seconds or m:ss, e.g. 80 or 1:20)",
    )
    @argument("--end", metavar="TIME", help="send each SOURCE up to this time (seconds or m:ss)")
    @argument(
        "--dry-run",
        action="store_true",
        help="show what would be sent (clips, windows, seconds, audio tokens, bytes, "
        "inline or upload) and send nothing",
    )
    @argument("--batch", action="store_true", help="ask about each SOURCE separately (a batch)")
    @argument(
        "--windows",
        type=float,
        metavar="SECONDS",
        help="ask about each window of this many seconds of a long clip (a timeline)",
    )
    @argument(
        "--overlap", type=float, default=0.0, metavar="SECONDS", help="overlap between windows"
    )
    @argument("-j", "--concurrency", type=int, metavar="N", help="batch requests in flight")
    @argument(
        "--cache",
        choices=["auto", "on", "off", "refresh", "replay"],
        help="response cache for this cell (default: %%config QAudioMagic.cache)",
    )
    def qaudio(self, line: str, cell: str | None = None) -> Any:
        """Ask Qwen-Audio about audio: the cell body is the question.

        %%qaudio clip.wav
        What is said here? Who is speaking, and in what mood?

        Voice chat (the audio itself is the message, no question): the line magic
        ``%qaudio clip.wav`` (IPython refuses a %% cell with an empty body). A cell
        without SOURCE continues the current conversation. Only the first 30 s of a clip
        is heard: pick another part with --start/--end (``--start 1:20 --end 1:50``).

        %%qaudio clips/*.wav
        Is there a dog barking?                  # a batch: one answer per clip, as a table

        %%qaudio interview.wav --windows 30
        Summarise this part.                     # a timeline: one answer per 30 s
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
            args = self.qaudio.parser.parse_args(argv)  # type: ignore[union-attr] # magic_arguments
        except UsageError as exc:
            raise UsageError(f"{exc} (see %%qaudio?)") from None
        from .batch import is_many

        sources: Any = [self._source(token) for token in args.sources]
        if args.selection:
            if sources:
                raise UsageError("--selection asks about the selected region: give no SOURCE")
            from .player import selected_player

            sources = [selected_player().selection_clip]
        if args.start is not None or args.end is not None:
            if not sources:
                raise UsageError("--start/--end need a SOURCE to cut (see %%qaudio?)")
            from .clip import resolve_sources

            sources = [c.window_of(args.start, args.end) for c in resolve_sources(sources)]
        params = _parse_params([kv for group in args.param for kv in group])
        # Several plain SOURCEs are clips of one turn; a pattern, a directory or a list
        # variable among them (or --batch/--windows) makes the cell a batch of all of them.
        batch = args.batch or args.windows is not None or any(is_many(s) for s in sources)
        if batch and len(sources) == 1:
            target: Any = sources[0]  # as it is: a Series keeps its index as labels
        elif batch:
            target = [x for s in sources for x in (_as_list(s) if is_many(s) else [s])]
        else:
            target = tuple(sources) or None
        with self._base_url(args.base_url, args.model or self.session.settings.model):
            return ask_audio(
                target,
                cell,
                model=args.model,
                conversation=args.conversation,
                system=args.system,
                stream=False if args.no_stream else None,
                new=args.new,
                session=self.session,
                dry_run=args.dry_run,
                batch=batch,
                windows=args.windows,
                overlap=args.overlap,
                concurrency=args.concurrency,
                cache=args.cache,
                **params,
            )

    @contextmanager
    def _base_url(self, url: str | None, model: str) -> Iterator[None]:
        """``--base-url``: the openai:MODEL server for this one question."""
        if url is None:
            yield
            return
        from .models import lookup

        if lookup(model).route != "openai":
            raise UsageError(
                f"--base-url is for -m openai:NAME models, not {model!r} (DashScope's address "
                "is %config QAudioMagic.base_url / region)"
            )
        saved = self.session.settings
        self.session.configure(openai_base_url=url)
        try:
            yield
        finally:
            self.session.settings = saved

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
            if self._names_a_source(words[0]):
                # voice chat: the audio alone is the message. IPython refuses a %% cell magic
                # with an empty body, so the line magic is how an empty question is typed.
                return self._ask(line, "")
            raise UsageError(
                f"unknown subcommand {name!r}; `%qaudio help` lists them (to ask a question "
                "use the cell magic %%qaudio; `%qaudio SOURCE` sends audio alone)"
            )
        return handler(rest)

    def _names_a_source(self, token: str) -> bool:
        """Whether a line magic's first word is audio (a variable, URL, path or pattern)."""
        ns = self.shell.user_ns if self.shell is not None else {}
        root = token.split(".")[0].split("[")[0]
        return (
            root in ns
            or "://" in token
            or token.startswith("data:")
            or any(ch in token for ch in "*?")
            or Path(token).expanduser().exists()
        )

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
        print(f"Using conversation '{conv.name}' ({_n(len(conv), 'turn')}).")

    def _cmd_reset(self, rest: list[str]) -> None:
        conv = self.session.conversations.current
        n = len(conv)
        conv.clear()
        print(f"Conversation '{conv.name}' reset ({_n(n, 'turn')} forgotten).")

    def _cmd_list(self, rest: list[str]) -> None:
        current = self.session.conversations.current.name
        for conv in self.session.conversations:
            mark = "*" if conv.name == current else " "
            print(f"{mark} {conv.name}: {_n(len(conv), 'turn')}, {_n(len(conv.clips), 'clip')}")

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
        from .models import MODELS, ROUTES, lookup

        specs = list(MODELS.values())
        current = self.session.settings.model
        if current not in MODELS:
            specs.insert(0, lookup(current))
        rows: list[tuple[str, ...]] = []
        for spec in specs:
            lim = spec.limits
            audio = ", ".join(
                bit
                for bit in (
                    f"{lim.max_audio_seconds:g} s" if lim.max_audio_seconds else "",
                    "PCM in memory" if lim.wants_pcm else f"{lim.max_audio_bytes / 1e6:g} MB",
                    f"{lim.audio_tokens_per_second:g} tok/s",
                )
                if bit
            )
            rows.append(
                (
                    ("* " if spec.name == current else "") + spec.name,
                    spec.route,
                    f"{lim.context_tokens:,}",
                    f"{lim.max_input_tokens:,} / {lim.max_output_tokens:,}",
                    audio,
                    spec.note,
                )
            )
        routes = "; ".join(f"{name}: {what}" for name, what in ROUTES.items())
        _show_table(
            f"Known models (-m NAME; * current). Routes — {routes}",
            ("model", "route", "context", "max in / out", "audio per clip", "note"),
            rows,
        )

    def _cmd_key(self, rest: list[str]) -> None:
        flags = set(rest)
        if flags - {"--clear", "--openai"}:
            raise UsageError("usage: %qaudio key [--openai] [--clear]")
        openai = "--openai" in flags
        setter = self.session.set_openai_key if openai else self.session.set_key
        what, env = (
            ("OpenAI-compatible server", "OPENAI_API_KEY")
            if openai
            else ("DashScope", "DASHSCOPE_API_KEY")
        )
        if "--clear" in flags:
            setter(None)
            print(f"{what} key forgotten; ${env} is used if set.")
            return
        value = getpass.getpass(f"{what} API key (hidden): ")
        if not value.strip():
            raise UsageError("no key entered; nothing changed")
        setter(value)
        print(f"{what} key set for this kernel session (kept in memory only, never saved).")

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

    def _cmd_usage(self, rest: list[str]) -> None:
        if rest and rest[0] == "--reset":
            self.session.usage.reset()
            print("Usage meter reset.")
            return
        title, header, rows, lines = self.session.usage.table()
        if not rows:
            print("Nothing asked yet in this session.")
            return
        _show_table(title, header, rows)
        print("\n".join(lines))

    def _cmd_cache(self, rest: list[str]) -> None:
        cache = self.session.response_cache()
        if rest and rest[0] == "clear":
            n = cache.clear()
            print(f"Deleted {n} cached answer{'s' if n != 1 else ''} from {cache.directory}.")
            return
        if rest:
            raise UsageError("usage: %qaudio cache [clear]")
        count, size = cache.stats()
        print(
            f"Response cache: {cache.directory}\n"
            f"{count} answer{'s' if count != 1 else ''}, {size / 1024:.1f} KB · "
            f"mode {self.session.settings.cache!r} "
            "(auto = batches only; set with %config QAudioMagic.cache = 'on|off|refresh|replay')"
        )

    def _cmd_export(self, rest: list[str]) -> None:
        if not rest:
            raise UsageError("usage: %qaudio export FILE.json")
        conv = self.session.conversations.current
        Path(rest[0]).write_text(json.dumps(conv.to_dict(), ensure_ascii=False, indent=1))
        print(
            f"Saved '{conv.name}' ({_n(len(conv), 'turn')}) to {rest[0]} (no audio bytes, no key)."
        )

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
        magic._saved_openai = (session._openai_key, magic.openai_base_url)  # type: ignore[attr-defined]
        session.set_key(Secret("sk-emulator-offline"))  # the real key never goes to the emulator
        session.set_openai_key(Secret("sk-emulator-offline"))
    magic.base_url = session.emulator.base_url
    magic.openai_base_url = session.emulator.openai_base_url  # openai:MODEL → the vLLM stand-in
    return str(session.emulator.base_url)


def _stop_emulator(magic: QAudioMagic) -> None:
    session = magic.session
    if session.emulator is not None:
        session.emulator.stop()
        session.emulator = None
        session.set_key(getattr(magic, "_saved_key", None))
        magic.base_url = ""
        openai_key, openai_url = getattr(magic, "_saved_openai", (None, ""))
        session.set_openai_key(openai_key)
        magic.openai_base_url = openai_url


def _as_list(source: Any) -> list[Any]:
    """A list or Series variable as its items (patterns and directories expand later)."""
    if isinstance(source, (str, os.PathLike)):
        return [source]
    tolist = getattr(source, "tolist", None)
    return list(tolist()) if callable(tolist) else list(source)


def _n(count: int, noun: str) -> str:
    """``1 turn``, ``2 turns``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


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


def _show_table(title: str, header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
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
