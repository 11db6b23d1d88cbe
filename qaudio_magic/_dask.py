"""The same question over a whole corpus on Dask: ``ask_audio(ddf["path"], question)``.

Sources given as a ``dask.dataframe.Series`` or a ``dask.bag.Bag`` make a lazy
``dask.dataframe.DataFrame`` with exactly the columns of ``Answers.to_pandas()``. Each
partition is an ordinary batch (the same engine, cache, retries and rate limits) run by
whichever worker Dask gives it, ``concurrency`` requests at a time per worker; nothing is
sent before ``.compute()`` (or ``.persist()``, ``.to_parquet()`` ...) on whatever Dask
client is active — the local threads if there is none.

The API key never enters the task graph, so no graph repr, task log or dashboard page can
show it: when ``ask_audio`` is called with a ``distributed`` client active, the keys go to
the workers once in a :class:`~distributed.diagnostics.plugin.WorkerPlugin` (over the
cluster's own comms; workers that join later, or replace a killed one, get it too), and
tasks name it only by an opaque handle. Without a client the partitions run in this
process and read the keys from here. A worker that has neither falls back to its own
``DASHSCOPE_API_KEY`` / ``OPENAI_API_KEY``.

A worker killed mid-partition loses nothing: Dask runs the partition again elsewhere, and
the response cache (on the worker's machine) answers the items that had finished, so only
the unfinished ones are asked again.

``dask[dataframe]`` and ``distributed`` are the optional extra ``qaudio_magic[dask]``;
this module is imported only when sources are a Dask collection.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ._secret import Secret
from .errors import ConfigError, InputError

if TYPE_CHECKING:
    from .session import Session, Settings

__all__ = ["KeyPlugin", "ask_dask"]

_SALT = secrets.token_bytes(16)  # per process: a handle never reveals even a key's hash
_keys: dict[str, tuple[Secret | None, Secret | None]] = {}  # handle -> keys, in this process
_keys_lock = threading.Lock()
_sessions: dict[tuple[str, str], Session] = {}  # one per (settings, handle) on a worker
_sessions_lock = threading.Lock()


# ---------------------------------------------------------------------- keys
if TYPE_CHECKING:
    _Plugin = object
else:
    try:  # a WorkerPlugin when distributed is there (dask alone runs in this process)
        from distributed.diagnostics.plugin import WorkerPlugin as _Plugin
    except ImportError:
        _Plugin = object


class KeyPlugin(_Plugin):
    """Gives each worker the API keys, under ``handle``. It travels once, as a plugin
    (to the workers there are and to those that join later), never inside a task, and
    its repr shows no key."""

    idempotent = True  # registering it again (another ask_audio call) changes nothing

    def __init__(self, handle: str, dashscope: Secret | None, openai: Secret | None) -> None:
        self.name = handle
        self._keys = (dashscope, openai)

    def __repr__(self) -> str:
        return f"KeyPlugin({self.name!r}, keys='***')"

    def __reduce__(self) -> tuple[Any, ...]:
        # A Secret refuses to be pickled, so that none travels by accident; this is the
        # one journey a key makes on purpose: to the workers, inside the cluster's comms.
        raw = tuple(k.reveal() if k is not None else None for k in self._keys)
        return (_plugin, (self.name, *raw))

    def setup(self, worker: Any) -> None:
        with _keys_lock:
            _keys[self.name] = self._keys

    def teardown(self, worker: Any) -> None:
        with _keys_lock:
            _keys.pop(self.name, None)


def _plugin(handle: str, dashscope: str | None, openai: str | None) -> KeyPlugin:
    """A KeyPlugin again, on the worker that unpickles it."""
    return KeyPlugin(
        handle,
        Secret(dashscope) if dashscope else None,
        Secret(openai) if openai else None,
    )


def _handle(dashscope: Secret | None, openai: Secret | None) -> str:
    """An opaque name for a pair of keys (salted per process: it reveals nothing)."""
    digest = hashlib.sha256(_SALT)
    for key in (dashscope, openai):
        digest.update(b"\0" + (key.reveal().encode() if key is not None else b""))
    return "qaudio-keys-" + digest.hexdigest()[:16]


def _ship_keys(session: Session, client: Any) -> str:
    """Make the session's keys available where the partitions will run; their handle."""
    dashscope, openai = session.api_key(), session.openai_key()
    handle = _handle(dashscope, openai)
    with _keys_lock:  # this process too: the local scheduler, or a LocalCluster's threads
        _keys[handle] = (dashscope, openai)
    if client is not None and (dashscope is not None or openai is not None):
        client.register_plugin(KeyPlugin(handle, dashscope, openai), name=handle)
    return handle


def _current_client() -> Any:
    try:
        from distributed import Client
    except ImportError:
        return None
    try:
        return Client.current(allow_global=True)
    except ValueError:
        return None


# ---------------------------------------------------------------------- partitions
@dataclass(frozen=True)
class _Spec:
    """What every partition needs (picklable; no key, only the handle of the keys)."""

    question: str | None
    settings: Settings
    keys: str
    concurrency: int
    share: float  # this worker's part of the account's rate limits
    options: dict[str, Any] = field(default_factory=dict)  # model, system, cache, stream
    params: dict[str, Any] = field(default_factory=dict)  # to the model (temperature ...)


def _worker_threads() -> int:
    """Threads of the Dask worker running this task (1 outside a worker)."""
    try:
        from distributed import get_worker

        return max(int(get_worker().state.nthreads), 1)
    except (ImportError, ValueError, AttributeError):
        return 1


def _session_for(spec: _Spec) -> Session:
    """This worker's session for ``spec`` (kept, so connections are reused across partitions)."""
    from .session import Session

    with _keys_lock:
        dashscope, openai = _keys.get(spec.keys, (None, None))
    cache_key = (repr(spec.settings), spec.keys)
    with _sessions_lock:
        session = _sessions.get(cache_key)
        if session is None:
            session = _sessions[cache_key] = Session(spec.settings)
        if dashscope is not None:
            session.set_key(dashscope)
        if openai is not None:
            session.set_openai_key(openai)
        session.rate_share = spec.share
    return session


def _run_partition(part: Any, spec: _Spec) -> Any:
    """One partition, as an ordinary batch: its rows, indexed like the partition."""
    import pandas as pd

    from .batch import run_batch

    if len(part) == 0:
        return _empty(spec.question, spec.options.get("schema"))
    session = _session_for(spec)
    per_thread = max(spec.concurrency // _worker_threads(), 1)
    sources = part if isinstance(part, pd.Series) else list(part)
    answers = run_batch(
        sources,
        spec.question,
        session=session,
        concurrency=per_thread,
        progress=False,
        params=spec.params,
        **spec.options,
    )
    return answers.to_pandas()


def _empty(question: str | None, schema: Any) -> Any:
    """The columns of ``Answers.to_pandas()`` (typed ones too), made by ``to_pandas()``
    itself, of a batch with no rows: Dask's meta, and an empty partition's rows."""
    from .answer import Answers

    return Answers([], question=question, model="", elapsed=0.0, schema=schema).to_pandas()


# ---------------------------------------------------------------------- entry
def ask_dask(
    sources: Any,
    question: str | None,
    *,
    session: Session,
    concurrency: int | None,
    params: dict[str, Any],
    **options: Any,
) -> Any:
    """A lazy ``dask.dataframe.DataFrame`` of the answers about each item of ``sources``."""
    try:
        import dask
        import dask.dataframe as dd
    except ImportError:
        raise ConfigError("Dask sources need Dask: pip install 'qaudio_magic[dask]'") from None

    client = _current_client()
    workers = len(client.scheduler_info().get("workers", ())) if client is not None else 0
    question = (question or "").strip() or None
    spec = _Spec(
        question=question,
        settings=replace(session.settings),
        keys=_ship_keys(session, client),
        concurrency=int(concurrency if concurrency is not None else session.settings.concurrency),
        share=1.0 / max(workers, 1),
        options={k: v for k, v in options.items() if v is not None},
        params=dict(params),
    )
    meta = _empty(question, options.get("schema"))
    if isinstance(sources, dd.DataFrame):
        raise InputError("give one column of sources (ddf['path']), not a whole DataFrame")
    if isinstance(sources, dd.Series):
        return sources.map_partitions(_run_partition, spec, meta=meta, enforce_metadata=False)
    to_delayed = getattr(sources, "to_delayed", None)
    if to_delayed is None:
        raise InputError(f"cannot ask about a {type(sources).__name__}: give a Dask Series or Bag")
    parts = [dask.delayed(_run_partition)(p, spec) for p in to_delayed()]
    return dd.from_delayed(parts, meta=meta, verify_meta=False)
