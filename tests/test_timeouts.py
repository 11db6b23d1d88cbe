"""Timeouts: connect, first byte (and gaps), the whole answer — each fires as one line.

The defaults suit a 30 s clip on a slow link; each is set with ``%config`` and each is
proven to fire, on every HTTP route and on the upload, without anything hanging.
(The fault matrix in ``test_faults.py`` covers read and total timeouts per mode.)
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from IPython.core.error import UsageError

from qaudio_magic.backends._http import Timeouts
from qaudio_magic.emulator import Emulator
from qaudio_magic.magic import QAudioMagic
from qaudio_magic.session import get_session
from qaudio_magic.settings import Settings

from ._leaks import assert_no_leaks, client_sockets, our_threads

# A guard against hanging, not a speed figure (how soon each fires: bench/): far above
# what any of these takes on a loaded machine, far below what not firing would take.
HANG = 30.0
SLOW = 60  # seconds the emulator holds an answer that a timeout must not wait for


def test_defaults_suit_a_30_s_clip_on_a_slow_link() -> None:
    # connect 10 s; 60 s for the first byte (the reply to a 10 MB upload, a long first
    # token) and between chunks; 120 s of stalled writing; 10 minutes for one answer
    assert Settings().timeouts == Timeouts(connect=10, read=60, write=120, total=600)
    traits = QAudioMagic.class_traits()
    assert (
        traits["connect_timeout"].default_value,
        traits["timeout"].default_value,
        traits["total_timeout"].default_value,
    ) == (10, 60, 600)
    # each wait is capped by what is left of the total
    capped = Timeouts(connect=10, read=60, total=600).httpx(left=2.5)
    assert (capped.connect, capped.read, capped.write, capped.pool) == (2.5, 2.5, 2.5, 2.5)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A loopback port that never completes a connection: its accept queue is full."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = int(server.getsockname()[1])
    fillers = []
    for _ in range(3):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    time.sleep(0.05)
    yield port
    for s in fillers:
        s.close()
    server.close()


ROUTES = {
    "native": ("", "base_url", "/api/v1"),
    "compatible": ("-m qwen3-omni-flash", "base_url", "/api/v1"),
    "vllm": ("-m openai:Qwen/Qwen2-Audio-7B-Instruct", "openai_base_url", "/v1"),
}


def _point_at(ip, route: str, port: int) -> str:
    extra, option, path = ROUTES[route]
    ip.run_line_magic("config", f"QAudioMagic.{option} = 'http://127.0.0.1:{port}{path}'")
    return extra


@pytest.mark.parametrize("route", list(ROUTES))
def test_connection_refused(ip, audio: Path, closed_port: int, route: str) -> None:
    extra = _point_at(ip, route, closed_port)
    ip.run_line_magic("config", "QAudioMagic.retries = 1")
    started = time.perf_counter()
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} {extra}", "Q")
    assert time.perf_counter() - started < HANG
    assert str(err.value) == (
        f"cannot connect to 127.0.0.1:{closed_port}: [Errno 111] Connection refused"
    )
    assert len(get_session().conversations.current) == 0


@pytest.mark.parametrize("route", list(ROUTES))
def test_connect_timeout(ip, audio: Path, blackhole: int, route: str) -> None:
    extra = _point_at(ip, route, blackhole)
    ip.run_line_magic("config", "QAudioMagic.connect_timeout = 0.3")
    threads, fillers = our_threads(), client_sockets(blackhole)
    started = time.perf_counter()
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} {extra}", "Q")
    took = time.perf_counter() - started
    assert 0.3 <= took < HANG
    assert str(err.value) == f"cannot connect to 127.0.0.1:{blackhole}: timed out"
    assert_no_leaks(get_session(), blackhole, threads, sockets_before=fillers)


@pytest.mark.parametrize("route", ["compatible", "vllm"])
@pytest.mark.parametrize(
    ("fault", "settings", "message"),
    [
        (f"latency={SLOW}", {"timeout": 0.3}, r"sent nothing for too long \(read timeout\)$"),
        (
            "token_rate=10",  # the first event at once, the last after about 3 s
            {"total_timeout": 1.0},
            r"the answer took longer than 1 s \(total timeout\) \(request id [\w-]+\)$",
        ),
        (f"latency={SLOW}", {"total_timeout": 0.4}, r"took longer than 0\.4 s \(total timeout\)$"),
    ],
)
def test_read_and_total_timeouts_on_chat_routes(
    ip, emu: Emulator, audio: Path, route: str, fault: str, settings: dict, message: str
) -> None:
    extra, _, _ = ROUTES[route]
    ip.run_line_magic("config", f"QAudioMagic.openai_base_url = '{emu.openai_base_url}'")
    for key, value in settings.items():
        ip.run_line_magic("config", f"QAudioMagic.{key} = {value!r}")
    emu.add_fault(fault)
    threads = our_threads()
    started = time.perf_counter()
    with pytest.raises(UsageError, match=message):
        ip.run_cell_magic("qaudio", f"{audio / 'speech_en.wav'} {extra}", "Q")
    assert time.perf_counter() - started < HANG
    assert not emu.chat_requests()[-1].completed  # the client gave up before the answer ended
    emu.clear_faults()
    assert_no_leaks(get_session(), emu.port, threads)


@pytest.fixture
def split_emulator() -> Iterator[Emulator]:
    """An emulator whose OSS form lives on its own port, as the real service's does."""
    with Emulator(separate_upload_host=True) as emu:
        yield emu


def test_upload_to_an_unreachable_upload_host(
    ip, split_emulator: Emulator, audio: Path, blackhole: int, monkeypatch
) -> None:
    emu = split_emulator
    ip.run_line_magic("config", f"QAudioMagic.base_url = '{emu.base_url}'")
    ip.run_line_magic("config", "QAudioMagic.connect_timeout = 0.3")
    monkeypatch.setattr(
        type(emu), "upload_root", property(lambda self: f"http://127.0.0.1:{blackhole}")
    )
    started = time.perf_counter()
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "Q")
    assert time.perf_counter() - started < HANG
    assert str(err.value) == f"cannot connect to 127.0.0.1:{blackhole}: timed out"
    assert emu.generation_requests() == []  # nothing was asked without its audio


def test_upload_read_timeout_names_the_upload_host(
    ip, split_emulator: Emulator, audio: Path
) -> None:
    emu = split_emulator
    ip.run_line_magic("config", f"QAudioMagic.base_url = '{emu.base_url}'")
    ip.run_line_magic("config", "QAudioMagic.timeout = 0.3")
    emu.add_fault(f"slow_upload={SLOW}")
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("qaudio", str(audio / "speech_en.wav"), "Q")
    assert emu.upload_root is not None
    host = emu.upload_root.removeprefix("http://")
    assert str(err.value) == f"{host} sent nothing for too long (read timeout)"
