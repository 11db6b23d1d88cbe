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

Entries are small JSON documents, one row each in an SQLite database,
``<dir>/responses/answers.sqlite3`` (WAL journal): each answer is committed the moment it
arrives, so a batch killed half-way keeps every answer it had, and threads, kernels and
Dask workers of one machine share the file safely. Why not a JSON file per answer, as
before: creating a file costs ~0.4 ms of kernel time on a journaling file system, more
than everything else a batch does per clip; a row costs a few tens of microseconds.
Entries written that way (``<dir>/responses/ab/abcdef….json``) are still read. The
directory is the platform's user cache dir (``$XDG_CACHE_HOME`` or
``~/.cache/qaudio_magic`` on Linux) unless ``%config QAudioMagic.cache_dir`` says otherwise.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import sqlite3
import threading
import warnings
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
    """Answers on disk: one SQLite row per request key (see the module docstring)."""

    FILE = "answers.sqlite3"

    def __init__(self, directory: Path | str | None = None) -> None:
        base = Path(directory).expanduser() if directory else default_dir()
        self.directory = base / "responses"
        self.path = self.directory / self.FILE

    def __repr__(self) -> str:
        return f"ResponseCache({str(self.directory)!r})"

    def _legacy(self, key: str) -> Path:
        """Where a version before the database kept ``key`` (still read)."""
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> CachedAnswer | None:
        """The stored answer for ``key``, or None (an unreadable entry counts as absent)."""
        text: str | None = None
        try:
            reader = _reader(self.path)
            if reader is not None:
                row = reader.execute("SELECT entry FROM answers WHERE key = ?", (key,)).fetchone()
                text = row[0] if row else None
        except (sqlite3.Error, OSError):
            text = None
        if text is None:
            if not _has_legacy(self.directory):
                return None
            try:
                text = self._legacy(key).read_text(encoding="utf-8")
            except (OSError, ValueError):
                return None
        return _answer_of(key, text)

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
    ) -> None:
        """Store one answer, committed at once (it survives the kernel dying right after);
        never a spoken answer's audio."""
        created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        entry = {
            "key": key,
            "created": created,
            "clips": clips,  # names, for a human reading the entry; not part of the key
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
        document = json.dumps(entry, ensure_ascii=False, default=str)
        try:
            db = _open(self.path, create=True)
            assert db is not None
            with db.lock:
                db.conn.execute(
                    "INSERT OR REPLACE INTO answers (key, created, entry) VALUES (?, ?, ?)",
                    (key, created, document),
                )
        except (sqlite3.Error, OSError) as exc:  # the answer itself is fine: keep it, say so
            _warn_once(self.path, exc)

    def delete(self, key: str) -> bool:
        gone = False
        db = _open(self.path, create=False)
        if db is not None:
            with db.lock:
                gone = db.conn.execute("DELETE FROM answers WHERE key = ?", (key,)).rowcount > 0
        try:
            self._legacy(key).unlink()
            gone = True
        except FileNotFoundError:
            pass
        return gone

    def keys(self) -> Iterator[str]:
        """The keys of every stored answer."""
        db = _open(self.path, create=False)
        if db is not None:
            with db.lock:
                rows = db.conn.execute("SELECT key FROM answers ORDER BY key").fetchall()
            yield from (row[0] for row in rows)
        if self.directory.is_dir():
            yield from (p.stem for p in self.directory.glob("??/*.json"))

    def stats(self) -> tuple[int, int]:
        """Number of entries and the bytes they take."""
        count = size = 0
        db = _open(self.path, create=False)
        if db is not None:
            with db.lock:
                count, size = db.conn.execute(
                    "SELECT count(*), coalesce(sum(length(entry)), 0) FROM answers"
                ).fetchone()
        for path in self.directory.glob("??/*.json") if self.directory.is_dir() else ():
            try:
                size += path.stat().st_size
                count += 1
            except OSError:
                pass
        return int(count), int(size)

    def clear(self) -> int:
        """Delete every entry; returns how many."""
        n = 0
        db = _open(self.path, create=False)
        if db is not None:
            with db.lock:
                n = db.conn.execute("DELETE FROM answers").rowcount
                db.conn.execute("VACUUM")
        for path in list(self.directory.glob("??/*.json")) if self.directory.is_dir() else ():
            try:
                path.unlink()
                n += 1
            except OSError:
                pass
        return n


_warned: set[Path] = set()
_legacy_dirs: dict[Path, bool] = {}


def _has_legacy(directory: Path) -> bool:
    """Whether ``directory`` holds entries of the file-per-answer layout (looked at once per
    process: a miss should not cost a failed file open)."""
    found = _legacy_dirs.get(directory)
    if found is None:
        found = _legacy_dirs[directory] = directory.is_dir() and any(directory.glob("??/*.json"))
    return found


def _warn_once(path: Path, exc: BaseException) -> None:
    if path not in _warned:
        _warned.add(path)
        warnings.warn(
            f"the response cache {path} cannot store answers ({exc}); they are not cached",
            RuntimeWarning,
            stacklevel=3,
        )


def _answer_of(key: str, text: str) -> CachedAnswer | None:
    try:
        data = json.loads(text)
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
    except (ValueError, KeyError, TypeError):
        return None


@dataclass
class _Database:
    conn: sqlite3.Connection
    lock: threading.Lock


# One connection per database file and process, shared by its threads (SQLite serialises
# writers anyway; reads take a few microseconds). Keyed by pid too: a forked child must
# not use its parent's connection.
_databases: dict[tuple[int, str], _Database] = {}
_databases_lock = threading.Lock()


_readers = threading.local()  # .connections: {path: connection} of this thread


def _reader(path: Path) -> sqlite3.Connection | None:
    """This thread's read-only connection to the database (None while it does not exist).

    Lookups need no lock this way: in WAL mode readers never wait for each other or for
    the writer, and a batch's 64 workers look up every item before asking for it."""
    connections: dict[tuple[int, str], sqlite3.Connection] | None = getattr(
        _readers, "connections", None
    )
    if connections is None:
        connections = _readers.connections = {}
    ident = (os.getpid(), str(path))
    conn = connections.get(ident)
    if conn is None:
        if _open(path, create=False) is None:  # made (schema, WAL) by the one writer
            return None
        conn = connections[ident] = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, timeout=30, isolation_level=None
        )
        # a lookup by key reads a few pages: 64 workers with SQLite's default 2 MB page
        # cache each would hold 128 MB of pages the OS caches anyway
        conn.execute("PRAGMA cache_size=-64")
    return conn


def _open(path: Path, *, create: bool) -> _Database | None:
    """The process's connection to the database at ``path`` (None if it does not exist and
    ``create`` is false)."""
    ident = (os.getpid(), str(path))
    db = _databases.get(ident)
    if db is not None:
        return db
    if not create and not path.exists():
        return None
    with _databases_lock:
        db = _databases.get(ident)
        if db is None:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # private from the start
            os.close(fd)
            # autocommit (isolation_level None): each statement is its own transaction
            conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "PRAGMA synchronous=NORMAL"
            )  # WAL + NORMAL: a crash loses nothing committed
            conn.execute(
                "CREATE TABLE IF NOT EXISTS answers "
                "(key TEXT PRIMARY KEY, created TEXT NOT NULL, entry TEXT NOT NULL)"
            )
            db = _databases[ident] = _Database(conn, threading.Lock())
    return db
