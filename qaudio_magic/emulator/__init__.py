"""A loopback emulator of the DashScope protocol, for tests, CI and users without a key.

``python -m qaudio_magic.emulator`` serves it from the command line; in Python::

    with Emulator() as emu:                 # a free port on 127.0.0.1
        os.environ["DASHSCOPE_HTTP_BASE_URL"] = emu.base_url
        ...
        emu.requests[-1].json               # what the client sent
        emu.oss                             # files uploaded: oss:// URL -> bytes
        emu.add_fault("status=429;times=1") # the next request fails
        emu.set_rate_limit(rpm=60, tpm=100_000) # 429s beyond DashScope's rate limits

Besides DashScope's native endpoint it serves the OpenAI-style routes (``compat.py``):
DashScope's compatible mode under :attr:`Emulator.compatible_base_url` (Qwen-Omni) and a
vLLM stand-in under :attr:`Emulator.openai_base_url` (``openai:MODEL``).

Answers are deterministic and say that they are emulated. A typed question (a JSON
Schema in ``response_format`` or in the prompt) gets deterministic valid JSON instead
(``typed.py``); scripted replies still come first.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections import deque
from typing import Any

from .._secret import Secret
from .compat import COMPATIBLE_CHAT, OPENAI_CHAT, CompatRoute
from .faults import Fault, FaultPlan, parse_fault
from .native import GENERATION, NativeRoute, key_checker
from .ratelimit import RateLimit, RateLimits
from .server import EmulatorServer, ReceivedAudio, RecordedRequest
from .upload import OSS_PATH, POLICY_PATH, OssStore, PolicyRoute, UploadRoute

__all__ = ["Emulator", "Fault", "RateLimit", "ReceivedAudio", "RecordedRequest", "parse_fault"]


class Emulator:
    """The emulator server, started on a thread in this process."""

    def __init__(
        self,
        port: int = 0,
        *,
        key: str | None = None,
        fault: Fault | str | None = None,
        verbose: bool = False,
        separate_upload_host: bool = False,
    ) -> None:
        standing = parse_fault(fault) if isinstance(fault, str) else fault
        self._required = Secret(key) if key else None
        self.server = EmulatorServer(port, faults=FaultPlan(standing), verbose=verbose)
        self.rate_limits = RateLimits()
        self.server.rate_limits = self.rate_limits
        # The real OSS host is not the API host: with a second server the policy names it,
        # so a test can tell which host saw what. Both log into one request list.
        self.upload_server: EmulatorServer | None = None
        if separate_upload_host:
            self.upload_server = EmulatorServer(0, faults=self.server.faults, verbose=verbose)
            self.upload_server.requests = self.server.requests
            self.upload_server._lock = self.server._lock
        self._replies: deque[str] = deque()
        self._replies_lock = threading.Lock()
        self.oss: dict[str, bytes] = {}  # temporary-upload store: oss:// URL -> bytes
        self.oss_store = OssStore(self.oss)  # policies issued, file lifetimes (48 h)
        check = key_checker(self._required)
        self.server.add_route(
            "POST", GENERATION, NativeRoute(check, self.oss_store.get, self._reply_for)
        )
        self.server.add_route(
            "GET", POLICY_PATH, PolicyRoute(check, self.oss_store, lambda: self.upload_root)
        )
        oss_server = self.upload_server or self.server
        oss_server.add_route("POST", OSS_PATH, UploadRoute(self.oss_store))
        self.compatible = CompatRoute("dashscope", check, self.oss_store.get, self._reply_for)
        self.vllm = CompatRoute(  # like vLLM without --api-key, unless a key is required
            "vllm", check, self.oss_store.get, self._reply_for, key_optional=self._required is None
        )
        self.server.add_route("POST", COMPATIBLE_CHAT, self.compatible)
        self.server.add_route("POST", OPENAI_CHAT, self.vllm)
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle
    def _servers(self) -> list[EmulatorServer]:
        return [s for s in (self.server, self.upload_server) if s is not None]

    def start(self) -> Emulator:
        if not self._threads:
            for server in self._servers():
                thread = threading.Thread(
                    target=server.serve_forever,
                    kwargs={"poll_interval": 0.05},
                    name="qaudio-emulator",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)
        return self

    def stop(self) -> None:
        if self._threads:
            for server in self._servers():
                server.shutdown()
            for thread in self._threads:
                thread.join(timeout=5)
            self._threads = []
        for server in self._servers():
            server.server_close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ addresses
    @property
    def port(self) -> int:
        return self.server.port

    @property
    def base_url(self) -> str:
        """The native API base, as DASHSCOPE_HTTP_BASE_URL takes it."""
        return f"http://127.0.0.1:{self.port}/api/v1"

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def upload_root(self) -> str | None:
        """``http://127.0.0.1:<port>`` of the separate upload server, when there is one."""
        if self.upload_server is None:
            return None
        return f"http://127.0.0.1:{self.upload_server.port}"

    @property
    def compatible_base_url(self) -> str:
        """DashScope compatible mode, as the OpenAI SDK's ``base_url`` takes it."""
        return f"{self.root}/compatible-mode/v1"

    @property
    def openai_base_url(self) -> str:
        """The vLLM stand-in, as ``OPENAI_BASE_URL`` / ``--base-url`` take it."""
        return f"{self.root}/v1"

    # ------------------------------------------------------------------ test controls
    @property
    def requests(self) -> list[RecordedRequest]:
        return list(self.server.requests)

    def generation_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == GENERATION]

    def upload_requests(self) -> list[RecordedRequest]:
        """The OSS form POSTs (one per file uploaded)."""
        return [r for r in self.requests if r.path == OSS_PATH]

    def policy_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == POLICY_PATH]

    def chat_requests(self) -> list[RecordedRequest]:
        """Requests to either chat-completions route."""
        return [r for r in self.requests if r.path in (COMPATIBLE_CHAT, OPENAI_CHAT)]

    def clear(self) -> None:
        self.server.requests.clear()

    def add_fault(self, fault: Fault | str) -> None:
        """Apply a fault (``times=N`` for the next N requests, ``rate=p`` for a share)."""
        self.server.faults.add(parse_fault(fault) if isinstance(fault, str) else fault)

    def clear_faults(self) -> None:
        self.server.faults.clear()

    def set_rate_limit(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        window: float = 60.0,
        model: str | None = None,
    ) -> None:
        """Refuse requests beyond ``rpm`` requests / ``tpm`` tokens per minute with 429s,
        per model (every model unless ``model`` is given); no limits lifts them.

        ``window`` is how many seconds' worth may come at once: 60 lets a minute's quota
        arrive in one burst, 1 enforces the per-second rates (RPM/60, TPM/60)."""
        limited = rpm is not None or tpm is not None
        self.rate_limits.set(RateLimit(rpm, tpm, window) if limited else None, model)

    def reply_with(self, *texts: str) -> None:
        """The next answers' text, in order (instead of the generated description)."""
        with self._replies_lock:
            self._replies.extend(texts)

    def clear_replies(self) -> None:
        """Forget scripted answers not used yet."""
        with self._replies_lock:
            self._replies.clear()

    def _reply_for(self, request: RecordedRequest) -> str | None:
        header = request.headers.get("x-emulator-reply")
        if header:
            return urllib.parse.unquote(header)
        with self._replies_lock:
            return self._replies.popleft() if self._replies else None
