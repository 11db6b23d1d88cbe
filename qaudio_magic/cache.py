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
``<dir>/responses/answers.sqlite3`` (WAL journal): each answer is committed as it arrives
(a batch's, together as it collects them: :meth:`ResponseCache.gathered`), so a batch killed
half-way keeps every answer it had counted, and threads, kernels and
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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
            db = _open(self.path, create=False)
            if db is not None:
                if db.pending:  # stored a moment ago, not yet written
                    with db.pending_lock:
                        waiting = db.pending.get(key)
                    if waiting is not None:
                        return _answer_of(key, waiting[1])
                with db.lock:
                    row = db.conn.execute(
                        "SELECT entry FROM answers WHERE key = ?", (key,)
                    ).fetchone()
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
            if db.gathering:  # a batch writes its answers together (see gathered)
                with db.pending_lock:
                    db.pending[key] = (created, document)
                return
            with db.lock:
                db.conn.execute(
                    "INSERT OR REPLACE INTO answers (key, created, entry) VALUES (?, ?, ?)",
                    (key, created, document),
                )
        except (sqlite3.Error, OSError) as exc:  # the answer itself is fine: keep it, say so
            _warn_once(self.path, exc)

    @contextmanager
    def gathered(self) -> Iterator[Callable[[], None]]:
        """Within the block, answers stored by any thread wait in memory until the
        ``flush`` it gives is called (a batch calls it each time it collects the results
        that arrived meanwhile), then go in as one transaction; the rest at the end.

        For a batch of short clips a commit per answer cost ~40 µs of CPU each (and a
        hand-off of the GIL); a commit per collection costs that once. An answer still
        waiting is found by :meth:`get` all the same; a crash loses at most the answers
        not yet collected (a re-run asks those again).
        """
        try:
            db = _open(self.path, create=True)
        except (sqlite3.Error, OSError):
            db = None
        if db is None:
            yield lambda: None
            return
        with db.pending_lock:
            db.gathering += 1
        try:
            yield lambda: db.flush(self.path)
        finally:
            with db.pending_lock:
                db.gathering -= 1
            db.flush(self.path)

    def delete(self, key: str) -> bool:
        gone = False
        db = _open(self.path, create=False)
        if db is not None:
            db.flush(self.path)
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
            db.flush(self.path)
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
            db.flush(self.path)
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
            db.flush(self.path)
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


_INSERT_ROWS = 100  # rows per INSERT statement: 300 parameters, well under SQLite's limit


@dataclass
class _Database:
    """A database's one connection, and the answers a batch gathered for it."""

    conn: sqlite3.Connection
    lock: threading.Lock
    gathering: int = 0  # blocks of ResponseCache.gathered open
    pending: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> row
    pending_lock: threading.Lock = field(default_factory=threading.Lock)

    def flush(self, path: Path) -> None:
        """Write the gathered answers, as one transaction."""
        if not self.pending:
            return
        with self.pending_lock:
            rows, self.pending = self.pending, {}
        items = [(key, *row) for key, row in rows.items()]
        try:
            with self.lock:
                self.conn.execute("BEGIN")
                try:
                    for i in range(0, len(items), _INSERT_ROWS):
                        chunk = items[i : i + _INSERT_ROWS]
                        self.conn.execute(
                            "INSERT OR REPLACE INTO answers (key, created, entry) VALUES "
                            + ",".join(["(?, ?, ?)"] * len(chunk)),
                            [value for item in chunk for value in item],
                        )
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    raise
                self.conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:  # the answers themselves are fine: say so
            _warn_once(path, exc)
        except BaseException:  # Ctrl-C mid-write: the next flush writes them
            with self.pending_lock:
                for key, row in rows.items():
                    self.pending.setdefault(key, row)
            raise


# One connection per database file and process, shared by its threads for reads and
# writes, under its lock (SQLite serialises writers anyway; a lookup takes tens of
# microseconds). Not a read-only connection per thread: after every commit each of those
# re-reads the pages the commit changed, and a batch's 64 workers then spent ~0.1 ms a
# lookup (bench_scale) against ~0.04 ms through the one connection. Keyed by pid too: a
# forked child must not use its parent's connection.
_databases: dict[tuple[int, str], _Database] = {}
_databases_lock = threading.Lock()


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
            try:
                conn = _connect(path)
            except (OSError, sqlite3.Error):
                if create:
                    raise
                # a cache someone else wrote, in a place this user may only read: replay
                conn = sqlite3.connect(
                    f"file:{path}?mode=ro",
                    uri=True,
                    timeout=30,
                    isolation_level=None,
                    check_same_thread=False,
                )
            db = _databases[ident] = _Database(conn, threading.Lock())
    return db


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # private from the start
    os.close(fd)
    # autocommit (isolation_level None): each statement is its own transaction
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a crash loses nothing committed
    conn.execute(
        "CREATE TABLE IF NOT EXISTS answers "
        "(key TEXT PRIMARY KEY, created TEXT NOT NULL, entry TEXT NOT NULL)"
    )
    return conn
