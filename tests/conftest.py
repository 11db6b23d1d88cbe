"""Shared fixtures: one emulator per test session, a fresh qaudio session and shell per test."""

from __future__ import annotations

import functools
import gc
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from qaudio_magic._testing import TestingShell
from qaudio_magic.emulator import Emulator
from qaudio_magic.session import Session, set_session
from qaudio_magic.settings import Settings

from ._media import make_media

ROOT = Path(__file__).resolve().parents[1]
AUDIO = ROOT / "notebooks" / "audio"  # small clips shipped with the repo
SHARED_CORPUS = ROOT.parent / "shared" / "corpus" / "audio"
TEST_KEY = "sk-qaudio-test-9f3b2c7d41e8"


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu


@pytest.fixture
def emu(emulator_server: Emulator) -> Iterator[Emulator]:
    """The emulator with an empty request log, no faults and no scripted answers."""
    emulator_server.clear()
    emulator_server.clear_faults()
    emulator_server.clear_replies()
    yield emulator_server
    emulator_server.clear_faults()
    emulator_server.clear_replies()


@pytest.fixture
def session(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Session]:
    """A fresh process-wide session pointed at the emulator, keyed by $DASHSCOPE_API_KEY."""
    monkeypatch.setenv("DASHSCOPE_API_KEY", TEST_KEY)
    monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", emu.base_url)
    sess = Session(Settings(retries=0))
    old = set_session(sess)
    yield sess
    sess.close()
    set_session(old)


@pytest.fixture
def ip(session: Session) -> Iterator[TestingShell]:
    """An IPython shell with the extension loaded, re-raising errors."""
    shell = TestingShell.instance()
    shell.run_line_magic("load_ext", "qaudio_magic")
    shell.run_line_magic("config", "QAudioMagic.retries = 0")
    yield shell
    shell.run_line_magic("unload_ext", "qaudio_magic")
    shell.close()


@pytest.fixture
def audio() -> Path:
    return AUDIO


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every format, broken file and long recording the tests need, made from code
    (tests/_media.py) in about a second, laid out like the shared corpus, with a MANIFEST."""
    return make_media(tmp_path_factory.mktemp("media"))


@pytest.fixture(params=["made", "shared-corpus"])
def media_sets(request: pytest.FixtureRequest, media: Path) -> Path:
    """The made set, and the shared corpus too where it sits beside the repository (CI):
    the same checks on the same sentence as encoded by ffmpeg and sox instead of PyAV."""
    if request.param == "made":
        return media
    if not SHARED_CORPUS.is_dir():
        pytest.skip(
            f"extra coverage only: the shared corpus is not beside this clone ({SHARED_CORPUS}); "
            "the same checks ran on the made set"
        )
    return SHARED_CORPUS


@pytest.fixture(autouse=True)
def _ctrl_c_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt, as in a kernel. A pytest started in the background by
    a non-interactive shell (``cmd &``, as CI scripts do) inherits SIGINT *ignored*, and then
    ``_thread.interrupt_main()`` and a real SIGINT do nothing at all."""
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    if previous is not None:  # None: set from outside Python, cannot be put back
        signal.signal(signal.SIGINT, previous)


@pytest.fixture(autouse=True)
def _no_real_dashscope(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No test may reach a real host or the user's cache: proxies off, key env cleared
    unless a fixture sets it, the response cache in a fresh temporary directory."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    if "DASHSCOPE_API_KEY" in os.environ:
        monkeypatch.delenv("DASHSCOPE_API_KEY")


class FolderServer(ThreadingHTTPServer):
    """A loopback HTTP server over a folder, for URL sources: serves its files, records each
    request as ``(method, path, headers)`` in ``seen``, and redirects the paths in
    ``routes`` (path → Location) with a 302. ``url`` names it by ``host`` (``localhost``
    makes a second "host" on the same machine)."""

    daemon_threads = True

    def __init__(self, folder: Path, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, str] = {}
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        super().__init__(("127.0.0.1", 0), functools.partial(_FolderHandler, directory=str(folder)))
        self.url = f"http://{host}:{self.server_address[1]}"


class _FolderHandler(SimpleHTTPRequestHandler):
    server: FolderServer

    def log_message(self, *args: object) -> None:
        pass

    def _redirected(self) -> bool:
        self.server.seen.append((self.command, self.path, dict(self.headers.items())))
        target = self.server.routes.get(self.path)
        if target is None:
            return False
        self.send_response(302)
        self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()
        return True

    def do_HEAD(self) -> None:
        if not self._redirected():
            super().do_HEAD()

    def do_GET(self) -> None:
        if not self._redirected():
            super().do_GET()


@contextmanager
def serve_folders(folder: Path, *hosts: str) -> Iterator[list[FolderServer]]:
    """One :class:`FolderServer` over ``folder`` per host name, running until the block ends;
    they share one request log, so a redirect's hops all show in ``servers[0].seen``."""
    servers = [FolderServer(folder, host) for host in hosts]
    for server in servers[1:]:
        server.seen = servers[0].seen
    threads = [
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}) for s in servers
    ]
    for thread in threads:
        thread.start()
    try:
        yield servers
    finally:
        for server, thread in zip(servers, threads, strict=True):
            server.shutdown()
            thread.join()
            server.server_close()


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A loopback HTTP server over a temporary folder, for URL sources: (base URL, folder)."""
    root = tmp_path / "www"
    root.mkdir()
    with serve_folders(root, "127.0.0.1") as (server,):
        yield server.url, root


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Do the last garbage collection before pytest's summary line, not silently after it.

    What is left after it lives until the process exits; frozen, it is freed by reference
    counting alone, instead of being scanned again by pytest's own final collection and
    several times over by Python's shutdown (with torch and transformers imported, seconds
    of CPU on a loaded 2-core machine). Objects whose finalizers fail in this collection
    are reported by pytest as before.
    """
    gc.collect()
    gc.freeze()
