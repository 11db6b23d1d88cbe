"""Every setting, declared once: its default, its allowed values and its help.

:class:`Settings` is what the code reads; ``%config QAudioMagic.<name>`` and
``c.QAudioMagic.<name>`` in ``ipython_config.py`` are traitlets generated from these same
fields (see :mod:`qaudio_magic.magic`), and both validate through :func:`check`, so a
default, a range or a choice is written in one place. The API key is not a setting: no
settings listing can show it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import ConfigError
from .models import DEFAULT_MODEL
from .regions import ALIASES, REGIONS, RegionError, api_base

if TYPE_CHECKING:  # httpx loads with the first backend, not at `%load_ext`
    from .backends._http import Timeouts

__all__ = [
    "CACHE_MODES",
    "MAX_CONCURRENCY",
    "REGION_CHOICES",
    "Settings",
    "check",
    "help_of",
    "parse_rate_limit",
]

REGION_CHOICES = (*ALIASES, *REGIONS)  # cn / intl stay as aliases of Beijing / Singapore
CACHE_MODES = ("auto", "on", "off", "refresh", "replay")
UPLOAD_MODES = ("auto", "always", "never")
MAX_CONCURRENCY = 64  # requests in flight in one batch; above 8, a connection per worker


def _meta(
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    low: float | None = None,
    high: float | None = None,
) -> dict[str, Any]:
    return {"help": help, "choices": choices, "low": low, "high": high}


def _setting(default: Any, help: str, **limits: Any) -> Any:
    return field(default=default, metadata=_meta(help, **limits))


@dataclass(frozen=True)
class Settings:
    """Everything configurable (mirrored by ``%config QAudioMagic.*``); never the key."""

    model: str = _setting(DEFAULT_MODEL, "Model; the name selects the route (see %qaudio models)")
    base_url: str = _setting(
        "",
        "DashScope API base URL; empty: $DASHSCOPE_HTTP_BASE_URL, then the region's endpoint",
    )
    region: str = _setting(
        "cn",
        "Model Studio region, one of the choices below (cn and intl are Beijing and "
        "Singapore); API keys are per region",
        choices=REGION_CHOICES,
    )
    workspace: str = _setting(
        "",
        "Model Studio workspace id: talk to the workspace host {id}.{region}.maas.aliyuncs.com; "
        "empty: $DASHSCOPE_WORKSPACE_ID, then the region's legacy host",
    )
    stream: bool = _setting(True, "Stream answers as they are generated")
    system: str = _setting("", "System prompt for new conversations")
    max_history_turns: int = _setting(
        20,
        "Most earlier question/answer turns sent with a question (turns with audio are "
        "kept first, text-only ones dropped first)",
        low=0,
    )
    connect_timeout: float = _setting(10.0, "Seconds to wait for a connection", low=0.001)
    timeout: float = _setting(
        60.0, "Seconds to wait for the first byte and between streamed chunks", low=0.001
    )
    total_timeout: float = _setting(600.0, "Seconds one whole answer may take", low=0.001)
    retries: int = _setting(
        3, "Retries for rate limits and server or network faults", low=0, high=20
    )
    headers: dict[str, str] = field(
        default_factory=dict,
        metadata=_meta(
            "Extra HTTP headers for DashScope (e.g. X-DashScope-WorkSpace); never the key"
        ),
    )
    upload: str = _setting(
        "auto",
        "Local audio: 'auto' uploads it once to DashScope's temporary store where the "
        "endpoint has one (Beijing, the emulator) and reuses the oss:// URL on later turns, "
        "else sends it inline; 'always' requires the upload; 'never' always sends it inline",
        choices=UPLOAD_MODES,
    )
    concurrency: int = _setting(
        4,
        f"Requests in flight at once in a batch (1-{MAX_CONCURRENCY})",
        low=1,
        high=MAX_CONCURRENCY,
    )
    cache: str = _setting(
        "auto",
        "Response cache: auto (batches only), on, off, refresh (ask again, overwrite), "
        "replay (offline: answer only from the cache)",
        choices=CACHE_MODES,
    )
    cache_dir: str = _setting("", "Response cache directory; empty: the user's cache dir")
    rate_limit: str = _setting(
        "auto",
        "Pace requests under a rate limit: auto (the model's documented requests/tokens per "
        "minute, e.g. 60/100000 for the omni family), off, or RPM/TPM of your own (600/100000, "
        "or 600 for requests only)",
    )
    openai_base_url: str = _setting(
        "",
        "Base URL of the server behind -m openai:MODEL (vLLM ...); empty: $OPENAI_BASE_URL",
    )

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, check(f.name, getattr(self, f.name)))

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
        workspace = self.workspace or os.environ.get("DASHSCOPE_WORKSPACE_ID", "").strip()
        try:
            return api_base(self.region, workspace)
        except RegionError as exc:  # a malformed $DASHSCOPE_WORKSPACE_ID
            raise ConfigError(f"$DASHSCOPE_WORKSPACE_ID: {exc}") from None

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
                hint="pass --base-url http://HOST:8000/v1, or %config QAudioMagic.openai_base_url"
                " = '…', or set OPENAI_BASE_URL",
            )
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"openai base URL {url!r} must start with http:// or https://")
        return url.rstrip("/")


_FIELDS = {f.name: f for f in fields(Settings)}


def help_of(name: str) -> str:
    """The help text of setting ``name``."""
    return str(_FIELDS[name].metadata["help"])


def check(name: str, value: Any) -> Any:
    """``value`` for setting ``name``, normalised; ConfigError (one line) when it is wrong."""
    f = _FIELDS.get(name)
    if f is None:
        raise ConfigError(f"unknown setting {name!r} (known: {', '.join(_FIELDS)})")
    meta = f.metadata
    default = f.default_factory() if callable(f.default_factory) else f.default
    kind: type[Any] = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ConfigError(f"{name} must be a {kind.__name__}, got {value!r}")
    if meta["choices"] is not None:
        value = value.strip().lower()
        if value not in meta["choices"]:
            raise ConfigError(f"{name} must be one of {', '.join(meta['choices'])}, got {value!r}")
    too_low = meta["low"] is not None and value < meta["low"]
    if too_low or (meta["high"] is not None and value > meta["high"]):
        bounds = (
            f"between {meta['low']:g} and {meta['high']:g}"
            if meta["high"] is not None
            else f"at least {meta['low']:g}"
        )
        raise ConfigError(f"{name} must be {bounds}, got {value}")
    if name == "model":
        value = value.strip()
        if not value:
            raise ConfigError("model cannot be empty")
    if name == "rate_limit":
        value = value.strip().lower()
        if value not in ("auto", "off") and parse_rate_limit(value) is None:
            raise ConfigError(
                f"rate_limit must be auto, off, RPM or RPM/TPM (e.g. 600/100000), got {value!r}"
            )
    if name == "workspace":
        value = value.strip()
        if value:
            try:
                api_base("cn", value)
            except RegionError as exc:
                raise ConfigError(str(exc)) from None
    if name == "headers":
        if any(k.lower() == "authorization" for k in value):
            raise ConfigError("put the key in DASHSCOPE_API_KEY or %qaudio key, not in headers")
        value = {str(k): str(v) for k, v in value.items()}
    return value


def parse_rate_limit(text: str) -> tuple[float, float | None] | None:
    """``"600/100000"`` → (600, 100000); ``"600"`` → (600, None); None when malformed."""
    rpm, _, tpm = text.partition("/")
    try:
        pair = (float(rpm), float(tpm) if tpm else None)
    except ValueError:
        return None
    if pair[0] <= 0 or (pair[1] is not None and pair[1] <= 0):
        return None
    return pair
