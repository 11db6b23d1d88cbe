"""``%%qaudio`` / ``%qaudio``: a thin parser over :func:`ask_audio`.

Configuration lives in traitlets on :class:`QAudioMagic` (``%config QAudioMagic.model``,
``c.QAudioMagic.model`` in ``ipython_config.py``), generated from the one declaration of
each setting in :mod:`qaudio_magic.settings` and mirrored into the session. The API key is
not a trait, so no ``%config`` listing can show it. The line magic's subcommands live in
:mod:`qaudio_magic._commands`. Errors print as one line via ``UsageError`` — never a
traceback.
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import (
    Bool,
    CaselessStrEnum,
    Dict,
    Float,
    Int,
    MetaHasTraits,
    TraitError,
    TraitType,
    Unicode,
)
from traitlets.config import Configurable

from .errors import ConfigError, QAudioError
from .session import Session, get_session
from .settings import CACHE_MODES, Settings, check

__all__ = ["QAudioMagic"]

CAPTIONER = "qwen3-omni-30b-a3b-captioner"
TRANSCRIBER = "qwen3-asr-flash"
_EXPR = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(\[[^\]]*\])*")


def _trait(name: str, default: Any, meta: Any) -> TraitType[Any, Any]:
    """The traitlet for one setting: its type, default, choices and help."""
    help_text = meta["help"]
    if meta["choices"] is not None:
        trait: TraitType[Any, Any] = CaselessStrEnum(meta["choices"], default, help=help_text)
    elif isinstance(default, bool):
        trait = Bool(default, help=help_text)
    elif isinstance(default, int):
        trait = Int(default, help=help_text)
    elif isinstance(default, float):
        trait = Float(default, help=help_text)
    elif isinstance(default, dict):
        trait = Dict(key_trait=Unicode(), value_trait=Unicode(), help=help_text)
    else:
        trait = Unicode(default, help=help_text)
    return trait.tag(config=True)


def _settings_traits() -> dict[str, Any]:
    defaults = Settings()
    traits: dict[str, Any] = {
        f.name: _trait(f.name, getattr(defaults, f.name), f.metadata) for f in fields(Settings)
    }

    def validate(self: Any, proposal: Any) -> Any:  # every setting checks through check()
        try:
            return check(proposal["trait"].name, proposal["value"])
        except ConfigError as exc:
            raise TraitError(str(exc)) from None

    def changed(self: Any, change: Any) -> None:
        self._sync()

    from traitlets import observe
    from traitlets import validate as validator

    names = list(traits)
    traits["_validate_setting"] = validator(*names)(validate)
    traits["_setting_changed"] = observe(*names)(changed)
    return traits


# The settings as traitlets, made from `Settings` so that nothing is declared twice.
_SettingsTraits = MetaHasTraits("QAudioSettings", (Configurable,), _settings_traits())
SETTINGS = tuple(f.name for f in fields(Settings))


@magics_class
class QAudioMagic(Magics, _SettingsTraits):  # type: ignore[misc, valid-type]
    """Ask Qwen audio models about audio in notebooks."""

    def __init__(self, shell: Any = None, session: Session | None = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.session = session or get_session()
        self._sync()

    def _sync(self) -> None:
        if hasattr(self, "session"):
            self.session.configure(**{name: getattr(self, name) for name in SETTINGS})

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
        "the route: qwen-audio-* and qwen3-asr-* (DashScope), qwen3.5-omni-*, "
        "qwen3.8-omni-*, qwen3-omni-* and the captioner (DashScope compatible mode), "
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
        "--stream",
        action="store_true",
        help="a batch: stream each answer too (keeps the partial text of one that breaks off)",
    )
    @argument(
        "--speak",
        nargs="?",
        const=True,
        default=False,
        metavar="VOICE",
        help="a spoken answer too (models that speak: qwen3.5-omni-*, qwen3-omni-flash), "
        "played under the answer, never automatically; VOICE: one of the model's voices "
        "(default Tina on 3.5, Cherry on 3-Omni-Flash)",
    )
    @argument(
        "--caption",
        action="store_true",
        help=f"describe the audio with {CAPTIONER} (no question is sent)",
    )
    @argument(
        "--transcribe",
        action="store_true",
        help=f"speech to text with {TRANSCRIBER} (-p language=en, -p enable_itn=true; "
        "--system: names and terms as recognition context)",
    )
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
        "inline or upload) and send nothing; for a batch or --compare: requests, audio "
        "seconds, tokens and estimated cost per model",
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
        "--schema",
        metavar="NAME",
        help="a typed question: NAME is a notebook variable holding a pydantic model, a JSON "
        "Schema dict or a dict of field types ({'gender': ['male', 'female'], 'age': int}); "
        "the answer shows as a table, a batch gets one column per field",
    )
    @argument(
        "--compare",
        metavar="M1,M2,...",
        help="ask each of these models (comma-separated) about each SOURCE: a grid side by "
        "side, with latency, tokens and estimated cost per model (instead of -m)",
    )
    @argument(
        "--cache",
        choices=CACHE_MODES,
        help="response cache for this cell (default: %%config QAudioMagic.cache)",
    )
    def qaudio(self, line: str, cell: str | None = None) -> Any:
        """Ask Qwen-Audio about audio: the whole cell body is the question (so keep
        comments out of it). Each example below is one cell.

        %%qaudio clip.wav
        What is said here? Who is speaking, and in what mood?

        Voice chat (the audio itself is the message, no question): the line magic
        ``%qaudio clip.wav`` (IPython refuses a %% cell with an empty body). A cell
        without SOURCE continues the current conversation. Qwen-Audio hears only the first
        30 s of a clip (Qwen3.5-Omni up to 3 h): pick another part with --start/--end
        (``--start 1:20 --end 1:50``).

        A batch, one answer per clip, as a table:

        %%qaudio clips/*.wav
        Is there a dog barking?

        A timeline, one answer per 30 s:

        %%qaudio interview.wav --windows 30
        Summarise this part.

        Typed answers (Speaker = {"gender": ["male", "female"], "age": int}):

        %%qaudio clips/ --schema Speaker
        Who is speaking?

        A grid, one column per model:

        %%qaudio clips/ --compare qwen-audio-turbo-latest,qwen3.5-omni-flash
        Is there a dog barking?
        """
        try:
            if cell is None:
                from ._commands import run_subcommand

                return run_subcommand(self, line)
            return self.ask(line, cell)
        except QAudioError as exc:
            raise UsageError(exc.one_line()) from None

    def ask(self, line: str, cell: str) -> Any:
        """Ask with the magic line ``line`` and the question ``cell`` (the cell body)."""
        from .ask import ask_audio

        try:  # shlex, not IPython's arg_split: quotes must go ("my clip.wav", --system 'a b')
            argv = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"cannot parse the magic line: {exc}") from None
        try:
            args = self.qaudio.parser.parse_args(argv)  # type: ignore[union-attr] # magic_arguments
        except UsageError as exc:
            raise UsageError(f"{exc} (see %%qaudio?)") from None
        from .sources import batch_target, is_many, resolve_sources

        sources: Any = [self.source(token) for token in args.sources]
        if args.selection:
            if sources:
                raise UsageError("--selection asks about the selected region: give no SOURCE")
            from .player import selected_player

            sources = [selected_player().selection_clip]
        if args.start is not None or args.end is not None:
            if not sources:
                raise UsageError("--start/--end need a SOURCE to cut (see %%qaudio?)")
            sources = [c.window_of(args.start, args.end) for c in resolve_sources(sources)]
        params = _parse_params([kv for group in args.param for kv in group])
        schema = self._schema(args.schema) if args.schema else None
        model = _task_model(args.model, caption=args.caption, transcribe=args.transcribe)
        if args.compare is not None:
            return self._compare(args, sources, cell, schema, params)
        # Several plain SOURCEs are clips of one turn; a pattern, a directory or a list
        # variable among them (or --batch/--windows) makes the cell a batch of all of them.
        batch = args.batch or args.windows is not None or any(is_many(s) for s in sources)
        target = batch_target(sources) if batch else (tuple(sources) or None)
        with self._base_url(args.base_url, model or self.session.settings.model):
            return ask_audio(
                target,
                cell,
                model=model,
                conversation=args.conversation,
                system=args.system,
                stream=False if args.no_stream else (True if args.stream else None),
                new=args.new,
                session=self.session,
                dry_run=args.dry_run,
                batch=batch,
                windows=args.windows,
                overlap=args.overlap,
                concurrency=args.concurrency,
                cache=args.cache,
                speak=args.speak,
                schema=schema,
                **params,
            )

    def _schema(self, name: str) -> Any:
        """``--schema NAME``: the schema held by a notebook variable (or expression)."""
        value = self.source(name)
        if isinstance(value, str) and value == name:
            raise UsageError(
                f"--schema {name}: no notebook variable {name!r} (assign a pydantic model, "
                "a JSON Schema dict or a dict of field types to it first)"
            )
        return value

    def _compare(
        self, args: Any, sources: list[Any], cell: str, schema: Any, params: dict[str, Any]
    ) -> Any:
        """``--compare m1,m2,...``: the same question to each model, as a grid."""
        from .grid import compare
        from .sources import batch_target

        if args.model:
            raise UsageError("--compare names the models: leave out -m")
        for flag, given in (
            ("--new", args.new),
            ("-c/--conversation", args.conversation),
            ("--windows", args.windows is not None),
            ("--selection", args.selection),
        ):
            if given:
                raise UsageError(f"{flag} does not apply to --compare (each cell is one turn)")
        if not sources:
            raise UsageError("--compare needs a SOURCE (a clip, a list, a pattern or a folder)")
        with self._base_url(args.base_url, "openai:" if args.base_url else ""):
            return compare(
                batch_target(sources),
                cell,
                models=args.compare.split(","),
                schema=schema,
                system=args.system,
                concurrency=args.concurrency,
                cache=args.cache,
                dry_run=args.dry_run,
                session=self.session,
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

    def source(self, token: str) -> Any:
        """A notebook variable (or expression like ``clips[0]``) if one is meant, a sample
        rate written as a number (``%%qaudio noise 44100``), else the text."""
        ns = self.shell.user_ns if self.shell is not None else {}
        if token.isidentifier() and token in ns:
            return ns[token]
        if token.isdecimal() and not Path(token).exists():
            return int(token)
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


def _task_model(model: str | None, *, caption: bool, transcribe: bool) -> str | None:
    """``--caption`` / ``--transcribe``: the model for the task (or ``-m``, if it does it)."""
    if caption and transcribe:
        raise UsageError("--caption and --transcribe are two different tasks: pick one")
    if not (caption or transcribe):
        return model
    from .models import lookup

    task, default = ("--caption", CAPTIONER) if caption else ("--transcribe", TRANSCRIBER)
    if model is None:
        return default
    spec = lookup(model)
    fits = spec.transcribes if transcribe else not spec.takes_text and not spec.transcribes
    if not fits:
        raise UsageError(f"{task} needs a model that does it ({default}), not {model!r}")
    return model


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
