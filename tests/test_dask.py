"""Dask: a whole corpus through ask_audio on a 2-worker LocalCluster, against the emulator.

The cluster's workers are separate processes on 127.0.0.1 talking to this process's
emulator over real HTTP; the key goes to them only through qaudio's worker plugin (the
environment they inherit holds none).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from qaudio_magic import ask_audio
from qaudio_magic.emulator import Emulator
from qaudio_magic.session import Session, Settings, set_session

from ._synth import make_clips
from .conftest import TEST_KEY

dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")
cloudpickle = pytest.importorskip("cloudpickle")

pytestmark = pytest.mark.slow
SAME = ["source", "window", "answer", "model", "tokens", "error", "start", "end", "question"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[distributed.Client]:
    """Two worker processes, one thread each, with no API key in their environment."""
    saved = {
        k: os.environ.pop(k) for k in ("DASHSCOPE_API_KEY", "OPENAI_API_KEY") if k in os.environ
    }
    try:
        with (
            distributed.LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",  # a free port: another cluster may hold 8787
            ) as local,
            distributed.Client(local) as client,
        ):
            yield client
    finally:
        os.environ.update(saved)


@pytest.fixture
def keyed(emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Session]:
    """A session whose key was set with %qaudio key (memory only), never in the environment."""
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    sess = Session(Settings(base_url=emu.base_url, cache_dir=str(tmp_path / "cache"), retries=0))
    sess.set_key(TEST_KEY)
    old = set_session(sess)
    yield sess
    sess.close()
    set_session(old)


def _paths(tmp_path: Path, n: int) -> list[str]:
    return [str(p) for p in make_clips(tmp_path / "clips", n)]


def test_a_dask_series_gives_the_rows_of_a_local_batch(
    cluster: distributed.Client, keyed: Session, emu: Emulator, tmp_path: Path
) -> None:
    paths = _paths(tmp_path, 200)
    frame = pd.DataFrame({"path": paths}, index=pd.Index([f"id{i}" for i in range(200)]))
    ddf = dd.from_pandas(frame, npartitions=6, sort=False)  # keep the rows in their order

    lazy = ask_audio(ddf["path"], "Is there a tone?", concurrency=4)
    assert isinstance(lazy, dd.DataFrame)
    assert emu.generation_requests() == []  # lazy: nothing sent yet
    local = ask_audio(frame["path"], "Is there a tone?", cache="off", progress=False).to_pandas()
    assert list(lazy.columns) == list(local.columns)  # exactly the columns of to_pandas()
    emu.clear()

    result = lazy.compute()
    assert len(emu.generation_requests()) == 200
    assert list(result.index) == list(frame.index)  # the Series' index is kept
    pd.testing.assert_frame_equal(result[SAME], local[SAME], check_dtype=False)
    assert result["error"].isna().all()

    # the key is nowhere in the graph, its pickled form, the workers' or scheduler's logs,
    # or the scheduler's web pages (workers, logs, each worker's page)
    graph = dict(lazy.__dask_graph__())
    blob = repr(graph) + repr(lazy) + str(lazy.dask)
    blob += str(cluster.get_worker_logs()) + str(cluster.get_scheduler_logs())
    info = cluster.scheduler_info()
    web = f"http://127.0.0.1:{info['services']['dashboard']}"
    pages = ["/info/main/workers.html", "/info/main/logs.html", "/json/counts.json"]
    pages += [f"/info/worker/{quote(w, safe='')}.html" for w in info["workers"]]
    pages += [f"/info/logs/{quote(w, safe='')}.html" for w in info["workers"]]
    for page in pages:
        shown = httpx.get(web + page, timeout=30)
        assert shown.status_code == 200, page
        blob += shown.text
    assert TEST_KEY not in blob
    assert TEST_KEY.encode() not in cloudpickle.dumps(graph)  # what travels to the scheduler


def test_a_dask_bag_works_too(cluster: distributed.Client, keyed: Session, tmp_path: Path) -> None:
    import dask.bag as db

    paths = _paths(tmp_path, 20)
    result = ask_audio(db.from_sequence(paths, npartitions=3), "Q").compute()
    assert sorted(result["source"]) == sorted(paths)
    assert result["answer"].str.contains("Emulated answer").all()


def test_a_killed_worker_loses_no_rows_and_finished_items_are_not_asked_again(
    cluster: distributed.Client, keyed: Session, emu: Emulator, tmp_path: Path
) -> None:
    paths = _paths(tmp_path, 200)
    ddf = dd.from_pandas(pd.DataFrame({"path": paths}), npartitions=4)
    emu.add_fault("latency=0.03")  # slow enough that a partition is half-way when killed
    lazy = ask_audio(ddf["path"], "Is there a tone?", concurrency=2)
    future = cluster.compute(lazy)

    deadline = time.monotonic() + 120
    while len(emu.generation_requests()) < 30 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = cluster.run(os.getpid)
    victim = sorted(pids.values())[0]
    os.kill(victim, signal.SIGKILL)  # the nanny starts a fresh worker; Dask retries its task

    result = future.result(timeout=300)
    assert len(result) == 200 and result["error"].isna().all()
    assert sorted(result["source"]) == sorted(paths)
    assert victim not in cluster.run(os.getpid).values()  # a new worker took its place
    # the partition it was running ran again: what it had finished came from the cache
    assert result["cached"].any()
    asked = emu.generation_requests()  # (the killed worker's last ones may be half-read)
    assert len(asked) >= 200
    # only what was in flight on the killed worker (2 at a time) is asked twice: the rest
    # of its partition came back from the response cache
    assert len(asked) <= 200 + 2 * 2, f"{len(asked) - 200} items asked again"


def test_typed_questions_give_their_typed_columns_on_dask(
    cluster: distributed.Client, keyed: Session, tmp_path: Path
) -> None:
    paths = _paths(tmp_path, 12)
    ddf = dd.from_pandas(pd.DataFrame({"path": paths}), npartitions=2, sort=False)
    schema = {"dog_barks": bool, "speakers": int}
    lazy = ask_audio(ddf["path"], "Does a dog bark? How many speakers?", schema=schema)
    local = ask_audio(paths, "Does a dog bark? How many speakers?", schema=schema, progress=False)
    assert list(lazy.columns) == list(local.to_pandas().columns)  # the typed columns too
    result = lazy.compute()
    assert result["error"].isna().all() and result["speakers"].notna().all()
    assert list(result["dog_barks"]) == list(local.to_pandas()["dog_barks"])
