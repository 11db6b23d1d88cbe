"""Per-kernel state: settings, the API key, conversations, and one backend per route.

``%load_ext`` and plain-Python use share one :class:`Session` (``get_session()``), so
``ask_audio()`` in code continues the same conversations as ``%%qaudio`` cells. The key is
held as a :class:`~qaudio_magic._secret.Secret` and never stored in settings, so no
settings listing can show it.
"""

from __future__ import annotations

import os
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._secret import Secret
from .conversation import Conversations
from .errors import ConfigError, MissingKeyError
from .models import lookup
from .settings import Settings
from .usage import UsageMeter

if TYPE_CHECKING:  # httpx loads with the first backend, not at `%load_ext`
    from .backends.base import Backend

__all__ = ["Session", "get_session", "set_session"]

_EMULATOR_KEY = "sk-emulator-offline"  # the real key never goes to the emulator


class Session:
    """The kernel's qaudio state."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.conversations = Conversations()
        self._key: Secret | None = None
        self._openai_key: Secret | None = None
        self._backends: dict[tuple[Any, ...], Backend] = {}
        self._lock = threading.Lock()
        self.emulator: Any = None  # a running in-process emulator, when `%qaudio emulator` is on
        self._before_emulator: tuple[Secret | None, Secret | None, str, str] | None = None
        self.usage = UsageMeter()  # what this session spent, per model (`%qaudio usage`)
        self.tips_shown: set[str] = set()  # one-time hints already given (e.g. "new")
        # This process's part of the account's rate limits (a Dask worker's session: 1/N)
        self.rate_share = 1.0

    # ---------------------------------------------------------------- key
    def api_key(self) -> Secret | None:
        """The key from ``%qaudio key``, else ``$DASHSCOPE_API_KEY`` (read at each call)."""
        if self._key is not None:
            return self._key
        env = os.environ.get("DASHSCOPE_API_KEY", "").strip()
        return Secret(env) if env else None

    def set_key(self, key: str | Secret | None) -> None:
        self._key = key if isinstance(key, Secret) or key is None else Secret(key)

    @property
    def key_source(self) -> str:
        if self._key is not None:
            return "set with %qaudio key (memory only)"
        return "$DASHSCOPE_API_KEY" if os.environ.get("DASHSCOPE_API_KEY") else "none"

    def openai_key(self) -> Secret | None:
        """Key for ``openai:`` servers: ``%qaudio key --openai``, else ``$OPENAI_API_KEY``.

        None is allowed: a vLLM server started without ``--api-key`` takes no key.
        """
        if self._openai_key is not None:
            return self._openai_key
        env = os.environ.get("OPENAI_API_KEY", "").strip()
        return Secret(env) if env else None

    def set_openai_key(self, key: str | Secret | None) -> None:
        self._openai_key = key if isinstance(key, Secret) or key is None else Secret(key)

    # ---------------------------------------------------------------- settings
    def configure(self, **changes: Any) -> None:
        """Change settings; backends are rebuilt lazily when their configuration changed."""
        self.settings = replace(self.settings, **changes)

    # ---------------------------------------------------------------- backends
    def backend(self, model: str) -> Backend:
        """The backend serving ``model`` with the current settings (created once, reused)."""
        spec = lookup(model)
        s = self.settings
        if spec.route == "dashscope":
            url = s.dashscope_url()
        elif spec.route == "dashscope-compatible":
            url = s.compatible_url()
        elif spec.route == "openai":
            url = s.openai_url()
        elif spec.route == "local":
            url = ""
        else:  # documented, but on a route this package does not speak (see the note)
            raise ConfigError(f"{model}: {spec.note or f'route {spec.route!r} is not available'}")
        config = (spec.route, url, s.timeouts, tuple(sorted(s.headers.items())))
        with self._lock:
            backend = self._backends.get(config)
            if backend is None:
                backend = self._make_backend(spec.route, url)
                self._backends[config] = backend
            if spec.route in ("dashscope", "dashscope-compatible"):
                # switched in place: the oss:// upload cache survives a change of mode
                backend.upload = s.upload  # type: ignore[attr-defined]
            return backend

    def check_key(self, model: str) -> None:
        """Raise now when ``model``'s route needs the DashScope key and none is set: a batch
        checks before its progress bar, since every item would fail the same way."""
        route = lookup(model).route
        if route in ("dashscope", "dashscope-compatible") and self.api_key() is None:
            raise _no_key(route)

    def _make_backend(self, route: str, url: str) -> Backend:
        s = self.settings
        if route == "dashscope":
            from .backends.dashscope import DashScopeBackend

            return DashScopeBackend(url, self.api_key, timeouts=s.timeouts, headers=s.headers)
        if route == "local":
            from .backends.local import LocalBackend

            return LocalBackend()
        from .backends.openai_compat import OpenAICompatBackend

        if route == "dashscope-compatible":
            return OpenAICompatBackend(
                url,
                self.api_key,
                route=route,
                dialect="dashscope",
                service="DashScope compatible mode",
                missing_key=lambda: _no_key("dashscope-compatible"),
                key_hint="set DASHSCOPE_API_KEY or run %qaudio key",
                timeouts=s.timeouts,
                headers=s.headers,
            )
        return OpenAICompatBackend(  # DashScope headers (workspace ...) stay with DashScope
            url,
            self.openai_key,
            route=route,
            dialect="openai",
            service=f"OpenAI-compatible server {urlsplit(url).netloc}",
            key_required=False,
            key_hint="set OPENAI_API_KEY or run %qaudio key --openai",
            timeouts=s.timeouts,
        )

    # ---------------------------------------------------------------- emulator
    def start_emulator(self) -> str:
        """Talk to a loopback emulator from now on (both DashScope and ``openai:`` routes).

        The keys and URLs in use are kept aside and come back with :meth:`stop_emulator`;
        the emulator gets a key of its own, so a real key never travels to it.
        """
        if self.emulator is None:
            from .emulator import Emulator

            s = self.settings
            self._before_emulator = (self._key, self._openai_key, s.base_url, s.openai_base_url)
            self.emulator = Emulator().start()
            self.set_key(Secret(_EMULATOR_KEY))
            self.set_openai_key(Secret(_EMULATOR_KEY))
        self.configure(
            base_url=self.emulator.base_url, openai_base_url=self.emulator.openai_base_url
        )
        return str(self.emulator.base_url)

    def stop_emulator(self) -> None:
        """Stop the emulator; the keys and URLs from before it started are used again."""
        if self.emulator is None:
            return
        self.emulator.stop()
        self.emulator = None
        key, openai_key, base_url, openai_url = self._before_emulator or (None, None, "", "")
        self._before_emulator = None
        self.set_key(key)
        self.set_openai_key(openai_key)
        self.configure(base_url=base_url, openai_base_url=openai_url)

    def discard_backend(self, backend: Backend) -> None:
        """Close ``backend`` and forget it (an interrupted batch leaves no connection open)."""
        with self._lock:
            self._backends = {k: b for k, b in self._backends.items() if b is not backend}
        backend.close()

    def response_cache(self) -> Any:
        """The response cache in the configured directory (see ``cache.py``)."""
        from .cache import ResponseCache

        return ResponseCache(self.settings.cache_dir or None)

    def close(self) -> None:
        """Close every connection and stop the emulator this session started."""
        with self._lock:
            backends, self._backends = list(self._backends.values()), {}
        for backend in backends:
            backend.close()
        self.stop_emulator()


def _no_key(route: str) -> MissingKeyError:
    """The missing-key error, as the backends raise it when asked to send."""
    what = "" if route == "dashscope" else " (Qwen-Omni uses the same key as Qwen-Audio)"
    return MissingKeyError(
        f"no DashScope API key{what}",
        hint="set DASHSCOPE_API_KEY, run %qaudio key, or %qaudio emulator to try offline",
    )


_session: Session | None = None
_session_lock = threading.Lock()


def get_session() -> Session:
    """The process-wide session (created on first use)."""
    global _session
    with _session_lock:
        if _session is None:
            _session = Session()
        return _session


def set_session(session: Session | None) -> Session | None:
    """Replace the process-wide session (tests, `%unload_ext`); returns the old one."""
    global _session
    with _session_lock:
        old, _session = _session, session
    return old
