"""The ``%qaudio`` line magic's subcommands: conversations, models, key, emulator, usage,
cache, export, record — and voice chat (``%qaudio SOURCE``: the audio alone is the message).

Each ``_NAME(magic, rest)`` function is one subcommand; :func:`run_subcommand` picks it
from the first word of the line.
"""

from __future__ import annotations

import getpass
import json
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from IPython.core.error import UsageError

from ._format import plural, short, table_bundle
from .sources import names_a_source

if TYPE_CHECKING:
    from .session import Session


class QAudioMagic(Protocol):
    """What a subcommand uses of the magic (``magic.QAudioMagic``)."""

    session: Session
    shell: Any
    base_url: str
    openai_base_url: str

    def ask(self, line: str, cell: str) -> Any: ...


__all__ = ["SUBCOMMANDS", "run_subcommand"]

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
  %qaudio export FILE [--paths]  save the current conversation as JSON (clip names and
                            sha256; no audio, no key; local paths only with --paths)
  %qaudio usage [--reset]   audio seconds and tokens spent per model; what the cache saved
  %qaudio cache [clear]     where the response cache is, how big, and its mode
  %qaudio record [NAME] [--max SECONDS]  show a recorder; NAME (default mic) is its latest take
  %qaudio SOURCE [options]  voice chat: send the audio alone, no question (same options as %%qaudio)
  %qaudio help              this text
"""


def run_subcommand(magic: QAudioMagic, line: str) -> Any:
    """Run ``%qaudio LINE``: a subcommand, or voice chat when the first word is audio."""
    words = shlex.split(line) or ["help"]
    name, rest = words[0].lower(), words[1:]
    handler = _HANDLERS.get(name)
    if handler is None:
        ns = magic.shell.user_ns if magic.shell is not None else {}
        if names_a_source(words[0], ns):
            # voice chat: the audio alone is the message. IPython refuses a %% cell magic
            # with an empty body, so the line magic is how an empty question is typed.
            return magic.ask(line, "")
        raise UsageError(
            f"unknown subcommand {name!r}; %qaudio help lists them (to ask a question "
            "use the cell magic %%qaudio; %qaudio SOURCE sends audio alone)"
        )
    return handler(magic, rest)


def _help(magic: QAudioMagic, rest: list[str]) -> None:
    print(SUBCOMMANDS + "\nAsk with the cell magic; see %%qaudio? for its options.")


def _new(magic: QAudioMagic, rest: list[str]) -> None:
    conv = magic.session.conversations.new(
        rest[0] if rest else None, system=magic.session.settings.system or None
    )
    print(f"New conversation '{conv.name}' (now current).")


def _use(magic: QAudioMagic, rest: list[str]) -> None:
    if not rest:
        raise UsageError("usage: %qaudio use NAME")
    conv = magic.session.conversations.use(rest[0])
    print(f"Using conversation '{conv.name}' ({plural(len(conv), 'turn')}).")


def _reset(magic: QAudioMagic, rest: list[str]) -> None:
    conv = magic.session.conversations.current
    n = len(conv)
    conv.clear()
    print(f"Conversation '{conv.name}' reset ({plural(n, 'turn')} forgotten).")


def _list(magic: QAudioMagic, rest: list[str]) -> None:
    current = magic.session.conversations.current.name
    for conv in magic.session.conversations:
        mark = "*" if conv.name == current else " "
        print(f"{mark} {conv.name}: {plural(len(conv), 'turn')}, {plural(len(conv.clips), 'clip')}")


def _history(magic: QAudioMagic, rest: list[str]) -> None:
    conv = magic.session.conversations.get(rest[0] if rest else None, create=False)
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
            (str(i), clips, turn.question or "(voice chat)", short(turn.answer, 80), tokens)
        )
    _show(
        f"Conversation '{conv.name}': {plural(len(rows), 'turn')}",
        ("#", "clips", "question", "answer", "tokens"),
        rows,
    )


def _models(magic: QAudioMagic, rest: list[str]) -> None:
    from .models import MODELS, ROUTES, lookup, model_row

    specs = list(MODELS.values())
    current = magic.session.settings.model
    if current not in MODELS:
        specs.insert(0, lookup(current))
    rows = [
        (("* " if spec.name == current else "") + spec.name, *model_row(spec)) for spec in specs
    ]
    routes = "; ".join(f"{name}: {what}" for name, what in ROUTES.items())
    _show(
        f"Known models (-m NAME; * current; † UNVERIFIED, see qaudio_magic/models.py). "
        f"Routes — {routes}\n"
        "DashScope keys are per region (%config QAudioMagic.region; a workspace with "
        "QAudioMagic.workspace or $DASHSCOPE_WORKSPACE_ID); openai: $OPENAI_API_KEY, optional",
        (
            "model",
            "route",
            "key · regions",
            "audio per clip",
            "clips",
            "context",
            "max in / out",
            "does",
            "note",
        ),
        rows,
    )


def _key(magic: QAudioMagic, rest: list[str]) -> None:
    flags = set(rest)
    if flags - {"--clear", "--openai"}:
        raise UsageError("usage: %qaudio key [--openai] [--clear]")
    openai = "--openai" in flags
    setter = magic.session.set_openai_key if openai else magic.session.set_key
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


def _emulator(magic: QAudioMagic, rest: list[str]) -> None:
    mode = rest[0].lower() if rest else "on"
    if mode == "off":
        _stop_emulator(magic)
        print("Emulator stopped; talking to", magic.session.settings.dashscope_url())
        return
    if mode == "auto" and magic.session.api_key() is not None and magic.session.emulator is None:
        print(
            f"Using DashScope at {magic.session.settings.dashscope_url()} "
            f"with the key from {magic.session.key_source}."
        )
        return
    if mode not in ("on", "auto"):
        raise UsageError("usage: %qaudio emulator [auto|on|off]")
    url = _start_emulator(magic)
    why = "No DASHSCOPE_API_KEY set: " if mode == "auto" else ""
    print(f"{why}using the built-in emulator at {url} — answers are emulated, not from Qwen.")


def _usage(magic: QAudioMagic, rest: list[str]) -> None:
    if rest and rest[0] == "--reset":
        magic.session.usage.reset()
        print("Usage meter reset.")
        return
    title, header, rows, lines = magic.session.usage.table()
    if not rows:
        print("Nothing asked yet in this session.")
        return
    _show(title, header, rows)
    print("\n".join(lines))


def _cache(magic: QAudioMagic, rest: list[str]) -> None:
    cache = magic.session.response_cache()
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
        f"mode {magic.session.settings.cache!r} "
        "(auto = batches only; set with %config QAudioMagic.cache = 'on|off|refresh|replay')"
    )


def _export(magic: QAudioMagic, rest: list[str]) -> None:
    paths = "--paths" in rest
    files = [w for w in rest if w != "--paths"]
    if len(files) != 1 or files[0].startswith("-"):
        raise UsageError("usage: %qaudio export FILE.json [--paths]")
    conv = magic.session.conversations.current
    data = conv.to_dict(paths=paths)
    Path(files[0]).write_text(json.dumps(data, ensure_ascii=False, indent=1))
    kept = "with local paths" if paths else "no local paths"
    print(
        f"Saved '{conv.name}' ({plural(len(conv), 'turn')}) to {files[0]} "
        f"(clip names and sha256; {kept}; no audio bytes, no key)."
    )


def _record(magic: QAudioMagic, rest: list[str]) -> None:
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
    ns = magic.shell.user_ns if magic.shell is not None else {}
    recorder = ns.get(name)
    if not isinstance(recorder, Recorder):
        recorder = ns[name] = Recorder(name)
    # else: re-running the cell shows the same recorder, earlier takes kept
    if max_seconds is not None:
        recorder.max_seconds = max_seconds
    display(recorder)


def _start_emulator(magic: QAudioMagic) -> str:
    url = magic.session.start_emulator()
    _mirror_urls(magic)  # openai:MODEL → the emulator's vLLM stand-in too
    return url


def _stop_emulator(magic: QAudioMagic) -> None:
    magic.session.stop_emulator()
    _mirror_urls(magic)


def _mirror_urls(magic: QAudioMagic) -> None:
    """``%config QAudioMagic`` shows the addresses the session now talks to."""
    s = magic.session.settings
    magic.base_url, magic.openai_base_url = s.base_url, s.openai_base_url


def _show(title: str, header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    """A table as escaped HTML with a plain-text fallback."""
    from IPython.display import display

    data, metadata = table_bundle(title, header, rows)
    display(data, metadata=metadata, raw=True)


_HANDLERS: dict[str, Callable[[QAudioMagic, list[str]], Any]] = {
    "help": _help,
    "new": _new,
    "use": _use,
    "reset": _reset,
    "list": _list,
    "history": _history,
    "models": _models,
    "key": _key,
    "emulator": _emulator,
    "usage": _usage,
    "cache": _cache,
    "export": _export,
    "record": _record,
}
