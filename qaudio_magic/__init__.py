"""qaudio_magic: ask Qwen-Audio about audio from a Jupyter notebook.

``%load_ext qaudio_magic`` adds ``%%qaudio`` (and ``%qaudio`` subcommands) and puts
``ask_audio`` in the notebook's namespace. Names are imported lazily so loading the
extension stays fast; heavy libraries (PyAV, numpy, httpx) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__

if TYPE_CHECKING:
    from .answer import Answer, Answers, Failure
    from .ask import ask_audio
    from .clip import AudioClip
    from .conversation import Conversation
    from .errors import (
        AnswerMismatchError,
        APIError,
        AudioDecodeError,
        AudioTooLargeError,
        CacheMissError,
        ConfigError,
        InputError,
        Interrupted,
        MissingKeyError,
        QAudioError,
        SchemaError,
        SourceError,
        TransportError,
    )
    from .grid import Grid, compare
    from .player import Player
    from .recorder import Recorder
    from .segments import Segment

__all__ = [
    "APIError",
    "Answer",
    "AnswerMismatchError",
    "Answers",
    "AudioClip",
    "AudioDecodeError",
    "AudioTooLargeError",
    "CacheMissError",
    "ConfigError",
    "Conversation",
    "Failure",
    "Grid",
    "InputError",
    "Interrupted",
    "MissingKeyError",
    "Player",
    "QAudioError",
    "Recorder",
    "SchemaError",
    "Segment",
    "SourceError",
    "TransportError",
    "__version__",
    "ask_audio",
    "compare",
    "load_ipython_extension",
    "unload_ipython_extension",
]

# Where each public name lives; imported on first use so `%load_ext` stays fast.
_LAZY = {
    "Answer": "answer",
    "Answers": "answer",
    "Failure": "answer",
    "ask_audio": "ask",
    "compare": "grid",
    "Grid": "grid",
    "AudioClip": "clip",
    "Conversation": "conversation",
    "Player": "player",
    "Recorder": "recorder",
    "Segment": "segments",
    **dict.fromkeys(
        [
            "APIError",
            "AnswerMismatchError",
            "AudioDecodeError",
            "AudioTooLargeError",
            "CacheMissError",
            "ConfigError",
            "InputError",
            "Interrupted",
            "MissingKeyError",
            "QAudioError",
            "SchemaError",
            "SourceError",
            "TransportError",
        ],
        "errors",
    ),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'qaudio_magic' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext qaudio_magic``: register the magic and its config, expose ``ask_audio``."""
    from .magic import QAudioMagic

    magic = QAudioMagic(shell=ipython)
    ipython.register_magics(magic)
    if magic not in ipython.configurables:
        ipython.configurables.append(magic)
    from .ask import ask_audio

    ipython.push({"ask_audio": ask_audio, "compare": _compare})


def _compare(*args: Any, **kwargs: Any) -> Any:
    """The same question to several models, side by side (see :func:`qaudio_magic.grid.compare`)."""
    from .grid import compare

    return compare(*args, **kwargs)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext qaudio_magic``: close connections and stop the emulator."""
    from .session import get_session

    get_session().close()
