"""The sliced sockets under every HTTP request (``_net.py``), over TCP and TLS, through
both transports that use them: httpx's own (URL sources) and ``_wire.WireTransport`` (the
API backends).

The real service is reached over https, so slicing must keep TLS intact: big bodies
both ways arrive byte for byte, a quiet server still times out as configured, a
refused or unreachable port fails as httpx would say, and Ctrl-C stops a TLS read in
the middle of a wait. The backends' transport also keeps connections alive, replaces
one the server closed while it was idle, and is broken off from another thread.
"""

from __future__ import annotations

import _thread
import hashlib
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psutil
import pytest

from qaudio_magic._net import SlicedStream, interruptible_transport, sliced_sleep
from qaudio_magic._wire import WireTransport

BIG = bytes(range(256)) * 40_000  # 10 MB


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    server: _Quiet

    def do_GET(self) -> None:
        if self.path == "/slow":  # holds its answer until the test is over
            self.server.slow_asked.set()
            self.server.release.wait(60)
            self.server.slow_answered.set()
        body = BIG if self.path == "/big" else b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        if self.path == "/bye":  # closes the connection without saying so in a header
            self.close_connection = True

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        received = b""
        while len(received) < length:  # read slowly: the client's writes must wait
            received += self.rfile.read(min(1 << 16, length - len(received)))
            time.sleep(0.001)
        digest = hashlib.sha256(received).hexdigest().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(digest)))
        self.end_headers()
        self.wfile.write(digest)


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True
    # /slow answers only when `release` is set (at teardown): a client that returns before
    # then stopped waiting on its own (a timeout, Ctrl-C) while the server still held it
    release: threading.Event
    slow_asked: threading.Event
    slow_answered: threading.Event

    def server_activate(self) -> None:
        self.release, self.slow_asked, self.slow_answered = (threading.Event() for _ in "abc")
        super().server_activate()

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that give up (timeouts, Ctrl-C) are the point of these tests


SERVERS: dict[str, _Quiet] = {}  # host:port -> its server, for the tests' checks


def _serve(server: _Quiet) -> Iterator[str]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    host = f"127.0.0.1:{server.server_address[1]}"
    SERVERS[host] = server
    yield host
    del SERVERS[host]
    server.release.set()
    server.shutdown()
    thread.join()
    server.server_close()


@pytest.fixture
def plain() -> Iterator[str]:
    yield from _serve(_Quiet(("127.0.0.1", 0), _Handler))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls(certificate: tuple[Path, Path]) -> Iterator[str]:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = _Quiet(("127.0.0.1", 0), _Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    yield from _serve(server)


@pytest.fixture(params=["httpx", "wire"])
def kind(request: pytest.FixtureRequest) -> str:
    """Which transport: httpx's own with sliced sockets, or the backends' WireTransport."""
    return str(request.param)


def _client(
    certificate: tuple[Path, Path] | None = None, kind: str = "httpx", **timeouts: float
) -> httpx.Client:
    context = ssl.create_default_context(
        cafile=str(certificate[0]) if certificate is not None else None
    )
    transport: httpx.BaseTransport = (
        WireTransport(ssl_context=context)
        if kind == "wire"
        else interruptible_transport(verify=context)
    )
    return httpx.Client(
        transport=transport,
        timeout=httpx.Timeout(60.0, **timeouts),  # a guard against hanging; tests set their own
    )


def _stream_of(client: httpx.Client) -> object:
    transport = client._transport  # type: ignore[attr-defined]
    if isinstance(transport, WireTransport):
        return transport.connections[0].stream
    return transport._pool.connections[0]._connection._network_stream


def _press_ctrl_c_when(ready: Callable[[], bool]) -> threading.Thread:
    """Ctrl-C (``interrupt_main``, as ipykernel on Windows) once ``ready()`` holds: where the
    test wants it, however long a loaded machine takes to get there."""

    def press() -> None:
        deadline = time.monotonic() + 60
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.01)
        _thread.interrupt_main()

    presser = threading.Thread(target=press, daemon=True)
    presser.start()
    return presser


def _main_thread_in(function: str) -> Callable[[], bool]:
    """Ready when the main thread is running ``function``."""
    main = threading.main_thread().ident

    def ready() -> bool:
        frame = sys._current_frames().get(main)
        while frame is not None:
            if frame.f_code.co_name == function:
                return True
            frame = frame.f_back
        return False

    return ready


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_big_bodies_both_ways_arrive_intact(
    scheme: str, kind: str, plain: str, tls: str, certificate: tuple[Path, Path]
) -> None:
    host = plain if scheme == "http" else tls
    with _client(certificate, kind) as client:
        got = client.get(f"{scheme}://{host}/big")
        assert got.content == BIG
        assert isinstance(_stream_of(client), SlicedStream)  # TLS kept the slicing too
        sent = client.post(f"{scheme}://{host}/echo", content=BIG)
        assert sent.text == hashlib.sha256(BIG).hexdigest()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_quiet_server_times_out_as_configured(
    scheme: str, kind: str, plain: str, tls: str, certificate: tuple[Path, Path]
) -> None:
    host = plain if scheme == "http" else tls
    with _client(certificate, kind, read=0.35) as client:
        started = time.perf_counter()
        with pytest.raises(httpx.ReadTimeout):
            client.get(f"{scheme}://{host}/slow")
        assert time.perf_counter() - started >= 0.35
        assert not SERVERS[host].slow_answered.is_set()  # it gave up; nobody answered


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_ctrl_c_stops_a_wait_within_a_slice(
    scheme: str, kind: str, plain: str, tls: str, certificate: tuple[Path, Path]
) -> None:
    host = plain if scheme == "http" else tls
    with _client(certificate, kind) as client:
        client.get(f"{scheme}://{host}/ok")  # connected, and kept alive
        with pytest.raises(KeyboardInterrupt):
            presser = _press_ctrl_c_when(SERVERS[host].slow_asked.is_set)
            client.get(f"{scheme}://{host}/slow")
        presser.join()
        # interrupt_main wakes no system call: only a read waiting in slices sees Ctrl-C
        # while the server still holds its answer (an unsliced one would wait 60 s for it)
        assert not SERVERS[host].slow_answered.is_set()
        assert client.get(f"{scheme}://{host}/ok").text == "ok"  # the client still works


def _connecting_to(port: int) -> bool:
    """This process has a connection to ``port`` waiting for the SYN's answer."""
    return any(
        c.raddr and c.raddr.port == port and c.status == psutil.CONN_SYN_SENT
        for c in psutil.Process().net_connections(kind="tcp")
    )


def test_refused_and_unreachable_ports_fail_as_httpx_says(kind: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with (
        _client(kind=kind) as client,
        pytest.raises(httpx.ConnectError, match="Connection refused"),
    ):
        client.get(f"http://127.0.0.1:{closed}/")
    server = socket.socket()  # a full accept queue: SYNs go unanswered
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.05)
    try:
        with _client(kind=kind, connect=0.3) as client:
            started = time.perf_counter()
            with pytest.raises(httpx.ConnectTimeout):
                client.get(f"http://127.0.0.1:{port}/")
            assert time.perf_counter() - started >= 0.3
        with _client(kind=kind, connect=60) as client:
            started = time.perf_counter()
            with pytest.raises(KeyboardInterrupt):
                presser = _press_ctrl_c_when(lambda: _connecting_to(port))
                client.get(f"http://127.0.0.1:{port}/")
            # Ctrl-C while connecting, long before the 60 s connect timeout (how soon: bench)
            assert time.perf_counter() - started < 30
            presser.join()
    finally:
        for s in fillers:
            s.close()
        server.close()


def _state(sock: socket.socket) -> str | None:
    """The operating system's TCP state of ``sock`` (ESTABLISHED, CLOSE_WAIT, ...)."""
    port = sock.getsockname()[1]
    for c in psutil.Process().net_connections(kind="tcp"):
        if c.laddr and c.laddr.port == port:
            return str(c.status)
    return None


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_wire_keeps_connections_alive_and_replaces_one_the_server_closed(
    scheme: str, plain: str, tls: str, certificate: tuple[Path, Path]
) -> None:
    host = plain if scheme == "http" else tls
    with _client(certificate, "wire") as client:
        transport = client._transport  # type: ignore[attr-defined]
        assert client.get(f"{scheme}://{host}/ok").text == "ok"
        first = transport.connections[0]
        assert client.get(f"{scheme}://{host}/ok").text == "ok"
        assert transport.connections == [first] and first.is_idle()  # one, kept alive
        assert client.get(f"{scheme}://{host}/bye").text == "ok"
        assert transport.connections == [first]  # nothing said it would close
        deadline = time.monotonic() + 30
        while _state(first.socket) != psutil.CONN_CLOSE_WAIT and time.monotonic() < deadline:
            time.sleep(0.01)  # until the server's close reached this side
        assert _state(first.socket) == psutil.CONN_CLOSE_WAIT
        assert client.get(f"{scheme}://{host}/ok").text == "ok"  # not "disconnected"
        (second,) = transport.connections
        assert second is not first and first.is_closed()


def test_sockets_whose_descriptors_are_past_1024_connect_and_are_kept_alive(
    plain: str,
) -> None:
    """A kernel with many files open (a long session, Dask) gets socket numbers past
    select()'s limit: both transports must still connect (select() raised ValueError), and
    the backends' keeps its connection alive instead of replacing it each time."""
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1400
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"this machine allows {hard} open files")
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    base = os.open(os.devnull, os.O_RDONLY)
    fillers = [os.dup(base) for _ in range(1100)]
    try:
        with _client(kind="wire") as client:
            transport = client._transport  # type: ignore[attr-defined]
            assert client.get(f"http://{plain}/ok").text == "ok"
            (first,) = transport.connections
            assert first.socket.fileno() > 1024
            assert client.get(f"http://{plain}/ok").text == "ok"
            assert transport.connections == [first] and not first.is_closed()
        with _client(kind="httpx") as other:
            assert other.get(f"http://{plain}/ok").text == "ok"
    finally:
        for fd in (*fillers, base):
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_wire_abort_breaks_off_a_request_from_another_thread(
    scheme: str, plain: str, tls: str, certificate: tuple[Path, Path]
) -> None:
    """What an interrupted batch does to its workers' requests: a thread waiting for an
    answer fails at once with a transport error, and its connection is dropped."""
    host = plain if scheme == "http" else tls
    errors: list[BaseException] = []
    with _client(certificate, "wire") as client:
        transport = client._transport  # type: ignore[attr-defined]

        def ask() -> None:
            try:
                client.get(f"{scheme}://{host}/slow")
            except BaseException as exc:  # the test looks at it
                errors.append(exc)

        worker = threading.Thread(target=ask)
        worker.start()
        assert SERVERS[host].slow_asked.wait(30)
        transport.abort()
        worker.join(30)
        assert not worker.is_alive()
        assert not SERVERS[host].slow_answered.is_set()  # it did not wait for the answer
        assert len(errors) == 1 and isinstance(errors[0], httpx.TransportError), errors
        assert transport.connections == []
        assert client.get(f"{scheme}://{host}/ok").text == "ok"  # and it still works


def test_sliced_sleep_sleeps_and_stops_on_ctrl_c() -> None:
    started = time.perf_counter()
    sliced_sleep(0.25)
    assert time.perf_counter() - started >= 0.25
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        presser = _press_ctrl_c_when(_main_thread_in("sliced_sleep"))
        sliced_sleep(120)
    assert time.perf_counter() - started < 60  # stopped, not slept out (how soon: bench)
    presser.join()
