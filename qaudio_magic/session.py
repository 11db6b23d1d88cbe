"""Per-kernel state: settings, the API key, conversations, and one backend per route.

``%load_ext`` and plain-Python use share one :class:`Session` (``get_session()``), so
``ask_audio()`` in code continues the same conversations as ``%%qaudio`` cells. The key is
held as a :class:`~qaudio_magic._secret.Secret` and never stored in settings, so no
settings listing can show it.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._secret import Secret
from .conversation import Conversations
from .errors import ConfigError, MissingKeyError
from .models import DEFAULT_MODEL, lookup
from .usage import UsageMeter

if TYPE_CHECKING:  # httpx loads with the first backend, not at `%load_ext`
    from .backends._http import Timeouts
    from .backends.base import Backend

__all__ = ["Session", "Settings", "get_session", "set_session"]

REGIONS = {
    "cn": "https://dashscope.aliyuncs.com/api/v1",
    "intl": "https://dashscope-intl.aliyuncs.com/api/v1",
}


@dataclass(frozen=True)
class Settings:
    """Everything configurable (mirrored by ``%config QAudioMagic.*``); never the key."""

    model: str = DEFAULT_MODEL
    base_url: str = ""  # "" → $DASHSCOPE_HTTP_BASE_URL → the region's endpoint
    region: str = "cn"
    stream: bool = True
    system: str = ""
    max_history_turns: int = 20
    connect_timeout: float = 10.0
    timeout: float = 60.0  # first byte, and the longest gap between streamed chunks
    total_timeout: float = 600.0
    retries: int = 3
    headers: dict[str, str] = field(default_factory=dict)
    upload: str = "auto"  # local audio: "auto" temporary upload where offered, "always", "never"
    concurrency: int = 4  # requests in flight at once in a batch
    cache: str = "auto"  # response cache: auto | on | off | refresh | replay (see cache.py)
    cache_dir: str = ""  # "" → the user's cache dir
    openai_base_url: str = ""  # for openai:MODEL; "" → $OPENAI_BASE_URL

    @property
    def timeouts(self) -> Timeouts:
        from .backends._http import Timeouts

        return Timeouts(connect=self.connect_timeout, read=self.timeout, total=self.total_timeout)

    def dashscope_url(self) -> str:
        """The native API base URL this session talks to."""
        if self.base_url:
            return self.base_url.rstrip("/")
        env = os.environ.get("DASHSCOPE_HTTP_BASE_URL", "").strip()
        if env:
            return env.rstrip("/")
        try:
            return REGIONS[self.region]
        except KeyError:
            raise ConfigError(f"unknown region {self.region!r} (use 'cn' or 'intl')") from None

    def compatible_url(self) -> str:
        """DashScope's OpenAI-compatible base on the same host: ``…/compatible-mode/v1``."""
        native = self.dashscope_url()
        if native.endswith("/api/v1"):
            return native[: -len("/api/v1")] + "/compatible-mode/v1"
        parts = urlsplit(native)
        return f"{parts.scheme}://{parts.netloc}/compatible-mode/v1"

    def openai_url(self) -> str:
        """The OpenAI-compatible server for ``openai:MODEL`` (setting, then $OPENAI_BASE_URL)."""
        url = self.openai_base_url.strip() or os.environ.get("OPENAI_BASE_URL", "").strip()
        if not url:
            raise ConfigError(
                "openai:MODEL needs the server's base URL",
                hint="pass --base-url http://HOST:8000/v1, or `%config QAudioMagic.openai_base_url"
                " = '…'`, or set OPENAI_BASE_URL",
            )
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"openai base URL {url!r} must start with http:// or https://")
        return url.rstrip("/")


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
        self.usage = UsageMeter()  # what this session spent, per model (`%qaudio usage`)

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
        else:
            raise ConfigError(f"{model}: route {spec.route!r} is not available")
        config = (spec.route, url, s.timeouts, tuple(sorted(s.headers.items())))
        with self._lock:
            backend = self._backends.get(config)
            if backend is None:
                backend = self._make_backend(spec.route, url)
                self._backends[config] = backend
            if spec.route == "dashscope":
                # switched in place: the oss:// upload cache survives a change of mode
                backend.upload = s.upload  # type: ignore[attr-defined]
            return backend

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
                missing_key=lambda: MissingKeyError(
                    "no DashScope API key (Qwen-Omni uses the same key as Qwen-Audio)",
                    hint="set DASHSCOPE_API_KEY, run `%qaudio key`, or `%qaudio emulator` "
                    "to try offline",
                ),
                key_hint="set DASHSCOPE_API_KEY or run `%qaudio key`",
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
            key_hint="set OPENAI_API_KEY or run `%qaudio key --openai`",
            timeouts=s.timeouts,
        )

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
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None


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
