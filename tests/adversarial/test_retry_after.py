"""``Retry-After`` junk: whatever the header says, the retry falls back to its usual
back-off — no raw ``ValueError`` through ``%%qaudio``, no "unexpected ValueError" row."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from IPython.core.error import UsageError

from qaudio_magic import ask_audio
from qaudio_magic.session import Session

from .conftest import CLIP, GENERATION
from .server import Conn, HostileServer, Request

JUNK = ["soon", "nan", "inf", "-5", "1e400", "Mon, 99 Foo 2024 25:61:61 GMT", "\x01\x02", "9" * 400]


def _throttled(value: str) -> Callable[[Conn, Request], None]:
    def behaviour(conn: Conn, request: Request) -> None:
        body = {"code": "Throttling.RateQuota", "message": "slow down", "request_id": "r"}
        conn.json(429, body, {"Retry-After": value})

    return behaviour


@pytest.mark.parametrize("value", JUNK)
def test_junk_retry_after_falls_back_to_the_usual_backoff(
    hostile: HostileServer, make_session: Callable[..., Session], value: str
) -> None:
    hostile.route(GENERATION, _throttled(value))
    sess = make_session(retries=1, total_timeout=30.0)
    with pytest.raises(Exception) as err:
        ask_audio(str(CLIP), "Q", session=sess, display=False)
    assert str(err.value) == "DashScope error 429 Throttling.RateQuota: slow down (request id r)"
    assert len(hostile.hits_to(GENERATION)) == 2  # retried once, after the usual back-off


def test_junk_retry_after_in_the_magic_and_a_batch(ip, hostile: HostileServer) -> None:
    hostile.route(GENERATION, _throttled("soon"))
    for setting in (f"base_url = '{hostile.base_url}'", "upload = 'never'", "retries = 1"):
        ip.run_line_magic("config", f"QAudioMagic.{setting}")
    with pytest.raises(UsageError, match=r"^DashScope error 429 Throttling\.RateQuota"):
        ip.run_cell_magic("qaudio", str(CLIP), "Q")
    answers = ip.run_cell_magic("qaudio", f"{CLIP} {CLIP} --batch --cache off", "Q")
    assert [str(f.error) for f in answers.failed] == [
        "DashScope error 429 Throttling.RateQuota: slow down (request id r)"
    ] * 2
