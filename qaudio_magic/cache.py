"""Response cache and offline replay: ask once, re-run the notebook for free.

An answer is stored under the sha256 of what decides it: the route (backend and host),
the model, the sampling parameters, and the full message list — system prompt, history
and question text, with each clip named by the sha256 of its source and the window
asked about. Audio bytes, file paths, headers and the API key are never part of a key
or of a stored entry, so moving a folder keeps its cache and no cache file can leak a
key.

Modes (``%config QAudioMagic.cache``, or ``cache=`` per call):

    auto     off for single questions, on for batches (the default)
    on       read and write for every question
    off      neither
    refresh  ask the service again and overwrite what was stored
    replay   offline: answer only from the cache; a miss is an error naming the request

Entries are small JSON files, ``<dir>/responses/ab/abcdef….json``, written atomically
(a temporary file renamed into place) so concurrent workers and kernels never see half
an entry. The directory is the platform's user cache dir (``$XDG_CACHE_HOME`` or
``~/.cache/qaudio_magic`` on Linux) unless ``%config QAudioMagic.cache_dir`` says otherwise.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ._format import short
from .backends.base import AudioPart, Request, TextPart, Usage
from .errors import InputError

__all__ = [
    "MODES",
    "CacheMode",
    "CachedAnswer",
    "ResponseCache",
    "default_dir",
    "key_of",
    "request_key",
    "resolve_mode",
]

MODES = ("auto", "on", "off", "refresh", "replay")
_VERSION = 1


@dataclass(frozen=True)
class CacheMode:
    """What one question may do with the cache."""

    read: bool
    write: bool
    replay: bool = False  # never send; a miss raises CacheMissError

    @property
    def active(self) -> bool:
        return self.read or self.write or self.replay


def resolve_mode(mode: str, *, batch: bool) -> CacheMode:
    """The effective behaviour of ``mode`` for a single question or a batch."""
    mode = (mode or "auto").strip().lower()
    if mode not in MODES:
        raise InputError(f"unknown cache mode {mode!r} (use {', '.join(MODES)})")
    if mode == "auto":
        mode = "on" if batch else "off"
    return {
        "on": CacheMode(read=True, write=True),
        "off": CacheMode(read=False, write=False),
        "refresh": CacheMode(read=False, write=True),
        "replay": CacheMode(read=True, write=False, replay=True),
    }[mode]


def default_dir() -> Path:
    """The user's cache directory for qaudio_magic (platformdirs: XDG on Linux)."""
    import platformdirs

    return platformdirs.user_cache_path("qaudio_magic", appauthor=False)


def route_of(backend: object) -> str:
    """``route@host`` — which service answered; the port is left out so a restarted
    emulator (a new free port each time) still finds its entries."""
    route = str(getattr(backend, "route", type(backend).__name__))
    base = str(getattr(backend, "base_url", "") or "")
    host = urlsplit(base).hostname or ""
    if host == "localhost":
        host = "127.0.0.1"
    return f"{route}@{host}" if host else route


def request_material(route: str, request: Request) -> dict[str, Any]:
    """What decides an answer, as JSON-able data (no audio bytes, no paths, no key)."""
    messages = []
    for message in request.messages:
        parts: list[dict[str, Any]] = []
        for part in message.parts:
            if isinstance(part, AudioPart):
                clip = part.audio.clip
                parts.append(
                    {"audio": clip.sha256, "window": [round(clip.start, 3), _round(clip.end)]}
                )
            elif isinstance(part, TextPart) and part.text:
                parts.append({"text": part.text})
        messages.append({"role": message.role, "content": parts})
    return {
        "v": _VERSION,
        "route": route,
        "model": request.model,
        "parameters": request.params,
        "messages": messages,
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def key_of(material: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``material``."""
    text = json.dumps(
        material, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
    )
    return hashlib.sha256(text.encode()).hexdigest()


def request_key(route: str, request: Request) -> str:
    """The cache key of ``request``."""
    return key_of(request_material(route, request))


def describe_request(request: Request) -> str:
    """A one-line name for a request, for replay misses: clips, model and question."""
    last = request.messages[-1] if request.messages else None
    clips = ", ".join(
        p.audio.clip.label() for p in (last.parts if last else ()) if isinstance(p, AudioPart)
    )
    question = last.text if last else ""
    what = clips or "a follow-up"
    asked = f' "{short(question, 60)}"' if question else " (voice chat)"
    return f"{what} · {request.model} ·{asked}"


@dataclass(frozen=True)
class CachedAnswer:
    """A stored answer: what the service said, and when."""

    key: str
    text: str
    model: str
    usage: Usage | None
    request_id: str | None
    finish_reason: str | None
    latency: float
    created: str  # ISO 8601, UTC
    reasoning: str = ""  # a thinking model's reasoning, kept apart from the text
    language: str | None = None  # speech recognition's annotations
    emotion: str | None = None


class ResponseCache:
    """Answers on disk, one JSON file per request key."""

    def __init__(self, directory: Path | str | None = None) -> None:
        base = Path(directory).expanduser() if directory else default_dir()
        self.directory = base / "responses"

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.directory)!r})"

    def path_for(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> CachedAnswer | None:
        """The stored answer for ``key``, or None (an unreadable entry counts as absent)."""
        try:
            data = json.loads(self.path_for(key).read_text(encoding="utf-8"))
            answer = data["answer"]
            usage = Usage(**answer["usage"]) if answer.get("usage") else None
            return CachedAnswer(
                key=key,
                text=str(answer["text"]),
                model=str(answer["model"]),
                usage=usage,
                request_id=answer.get("request_id"),
                finish_reason=answer.get("finish_reason"),
                latency=float(answer.get("latency") or 0.0),
                created=str(data.get("created", "")),
                reasoning=str(answer.get("reasoning") or ""),
                language=answer.get("language"),
                emotion=answer.get("emotion"),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(
        self,
        key: str,
        material: dict[str, Any],
        *,
        text: str,
        model: str,
        usage: Usage | None,
        request_id: str | None,
        finish_reason: str | None,
        latency: float,
        clips: list[str],
        reasoning: str = "",
        language: str | None = None,
        emotion: str | None = None,
    ) -> Path:
        """Store one answer atomically; returns its file (never a spoken answer's audio)."""
        entry = {
            "key": key,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "clips": clips,  # names, for a human reading the file; not part of the key
            "request": material,
            "answer": {
                "text": text,
                "model": model,
                "usage": usage.as_dict() if usage else None,
                "request_id": request_id,
                "finish_reason": finish_reason,
                "latency": round(latency, 4),
                **({"reasoning": reasoning} if reasoning else {}),
                **({"language": language} if language is not None else {}),
                **({"emotion": emotion} if emotion is not None else {}),
            },
        }
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(entry, fh, ensure_ascii=False, indent=1, default=str)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def delete(self, key: str) -> bool:
        try:
            self.path_for(key).unlink()
            return True
        except FileNotFoundError:
            return False

    def entries(self) -> Iterator[Path]:
        if self.directory.is_dir():
            yield from self.directory.glob("??/*.json")

    def stats(self) -> tuple[int, int]:
        """Number of entries and their total size in bytes."""
        count = size = 0
        for path in self.entries():
            try:
                size += path.stat().st_size
                count += 1
            except OSError:
                pass
        return count, size

    def clear(self) -> int:
        """Delete every entry; returns how many."""
        n = 0
        for path in list(self.entries()):
            try:
                path.unlink()
                n += 1
            except OSError:
                pass
        return n
