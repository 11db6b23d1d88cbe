"""Real-browser harness: a Jupyter server (Lab 4 + Notebook 7) and headless Chromium.

Follows shared/E2E-BROWSER.md: isolated Jupyter dirs, empty token, loopback only, Debian
Chromium driven by Playwright (no browser download), a fake microphone playing a known
speech file. Tests skip only when no Chromium binary can be found, and say so.
The server keeps the default websocket message limit on purpose: the product must work
with a user's stock server.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

from qaudio_magic.emulator import Emulator

from ..conftest import AUDIO, ROOT, TEST_KEY

CHROMIUM = (
    shutil.which("chromium")
    or shutil.which("chromium-browser")
    or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
)
WIDGET_ERRORS = (
    "Failed to load model class",
    "Error displaying widget",
    "Click to show javascript error",
    "model not found",
)
APPS = ("lab", "notebook")

pytestmark = pytest.mark.browser


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Browser tests last: Playwright's sync API keeps an event loop running in the main
    # thread for the rest of the session, and later tests that call asyncio.run() fail.
    items.sort(key=lambda item: "e2e" in str(item.fspath))
    for item in items:
        if "e2e" in str(item.fspath):
            item.add_marker(pytest.mark.browser)
            if CHROMIUM is None:
                item.add_marker(
                    pytest.mark.skip(reason="no Chromium found (apt-get install chromium)")
                )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class JupyterServer:
    url: str
    root: Path
    process: subprocess.Popen[bytes]
    runtime_dir: Path

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as r:
            return json.loads(r.read())

    def write_notebook(self, name: str, cells: list[str]) -> Path:
        """A notebook of code cells (markdown cells start with '#md ')."""
        nb = nbformat.v4.new_notebook()
        for src in cells:
            if src.startswith("#md "):
                nb.cells.append(nbformat.v4.new_markdown_cell(src[4:]))
            else:
                nb.cells.append(nbformat.v4.new_code_cell(src))
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        path = self.root / name
        nbformat.write(nb, path)
        return path

    def kernel_client(self, notebook: str) -> Any:
        """A second client on the notebook's kernel: it shares the notebook's namespace."""
        from jupyter_client import BlockingKernelClient

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for sess in self.api("/api/sessions"):
                if sess.get("path", "").endswith(notebook):
                    kid = sess["kernel"]["id"]
                    conn = self.runtime_dir / f"kernel-{kid}.json"
                    if conn.exists():
                        client = BlockingKernelClient(connection_file=str(conn))
                        client.load_connection_file()
                        client.start_channels()
                        client.wait_for_ready(timeout=60)
                        return client
            time.sleep(0.3)
        raise AssertionError(f"no kernel session for {notebook}")

    def shutdown_kernels(self) -> None:
        """End every session, so that tests don't share kernel state."""
        for sess in self.api("/api/sessions"):
            req = urllib.request.Request(f"{self.url}/api/sessions/{sess['id']}", method="DELETE")
            try:
                urllib.request.urlopen(req, timeout=10)
            except OSError:
                pass

    def kernel_is_idle(self, notebook: str) -> bool:
        for sess in self.api("/api/sessions"):
            if sess.get("path", "").endswith(notebook):
                return sess["kernel"]["execution_state"] == "idle"
        return False


@pytest.fixture(scope="session")
def browser_emulator() -> Iterator[Emulator]:
    with Emulator(key=TEST_KEY) as emu:
        yield emu


@pytest.fixture(scope="session")
def jupyter(
    tmp_path_factory: pytest.TempPathFactory, browser_emulator: Emulator
) -> Iterator[JupyterServer]:
    base = tmp_path_factory.mktemp("jupyter")
    root = base / "notebooks"
    root.mkdir()
    shutil.copytree(AUDIO, root / "audio")
    dirs = {
        name: base / name
        for name in ("config", "data", "runtime", "ipython", "settings", "workspaces")
    }
    for d in dirs.values():
        d.mkdir()
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(dirs["config"]),
        "JUPYTER_DATA_DIR": str(dirs["data"]),
        "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
        "IPYTHONDIR": str(dirs["ipython"]),
        "JUPYTERLAB_SETTINGS_DIR": str(dirs["settings"]),
        "JUPYTERLAB_WORKSPACES_DIR": str(dirs["workspaces"]),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "DASHSCOPE_API_KEY": TEST_KEY,
        "DASHSCOPE_HTTP_BASE_URL": browser_emulator.base_url,
    }
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    log = open(base / "server.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/api/status", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                raise AssertionError((base / "server.log").read_text()[-3000:]) from None
            time.sleep(0.3)
    else:
        proc.kill()
        raise AssertionError("Jupyter server did not start in 60 s")
    server = JupyterServer(url, root, proc, dirs["runtime"])
    yield server
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="session")
def fake_mic() -> Path:
    return AUDIO / "speech_en.wav"


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory, fake_mic: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={fake_mic}",
                "--autoplay-policy=no-user-gesture-required",
            ],
            viewport={"width": 1400, "height": 1000},
        )
        yield context
        context.close()


class NotebookPage:
    """One notebook open in Lab or Notebook 7, with the helpers tests need."""

    def __init__(self, page: Any, server: JupyterServer, name: str, app: str) -> None:
        self.page, self.server, self.name, self.app = page, server, name, app

    @property
    def panel(self) -> Any:
        if self.app == "lab":
            return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
        return self.page.locator(".jp-NotebookPanel")

    def wait_kernel_idle(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.server.kernel_is_idle(self.name):
                return
            time.sleep(0.3)
        raise AssertionError("kernel did not become idle")

    def run_all(self) -> None:
        self.page.get_by_role("menuitem", name="Run", exact=True).first.click()
        self.page.get_by_text("Run All Cells", exact=True).first.click()

    def output(self, text: str, timeout: float = 60) -> Any:
        """Wait for an output (not a cell's source) containing ``text``."""
        loc = self.panel.locator(".jp-OutputArea-output", has_text=text).first
        loc.wait_for(timeout=timeout * 1000)
        return loc

    def outputs_text(self) -> str:
        return "\n".join(self.panel.locator(".jp-OutputArea-output").all_inner_texts())

    def assert_no_widget_errors(self) -> None:
        text = self.outputs_text()
        for marker in WIDGET_ERRORS:
            assert marker not in text, f"widget error on the page: {marker!r}\n{text[-2000:]}"


@pytest.fixture
def open_notebook(jupyter: JupyterServer, browser: Any) -> Iterator[Any]:
    """``open_notebook(name, cells, app)`` writes, opens and waits for an idle kernel."""
    pages: list[Any] = []

    def _open(name: str, cells: list[str], app: str = "lab") -> NotebookPage:
        jupyter.write_notebook(name, cells)
        page = browser.new_page()
        pages.append(page)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        url = (
            f"{jupyter.url}/lab/tree/{name}?reset"
            if app == "lab"
            else f"{jupyter.url}/notebooks/{name}"
        )
        page.goto(url)
        nbp = NotebookPage(page, jupyter, name, app)
        nbp.page_errors = errors  # type: ignore[attr-defined]
        nbp.panel.locator(".jp-Cell").first.wait_for(timeout=60_000)
        nbp.wait_kernel_idle()
        return nbp

    yield _open
    for page in pages:
        page.close()
    jupyter.shutdown_kernels()
