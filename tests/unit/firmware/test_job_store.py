"""The update job store on every engine (memory, sqlite, Redis, Redis Cluster): what one
handle writes, another handle (a restarted server, another node) reads back, unfinished jobs
included, with their deadlines."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from keystore.store.errors import StoreError
from lwm2m_server.firmware.contracts import JobState, PackageKind, Strategy
from lwm2m_server.firmware.job_store import JobStore, MemoryJobStore
from lwm2m_server.firmware.jobs import JobSettings, Step, UpdateJob
from tests.store_engines import Engine, RedisEngine, SqliteEngine

Opener = Callable[[], JobStore]


@pytest.fixture(params=["memory", "sqlite", "redis", "redis-cluster"])
def open_jobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """A function giving a new handle on one job store of the engine."""
    if request.param == "memory":
        shared = MemoryJobStore()
        yield lambda: shared
        return
    engine: Engine
    if request.param == "sqlite":
        engine = SqliteEngine(tmp_path)
    else:
        cluster = request.param == "redis-cluster"
        url = request.getfixturevalue("redis_cluster_url" if cluster else "redis_url")
        engine = RedisEngine(url, cluster=cluster)
    try:
        yield engine.firmware_jobs
    finally:
        engine.close()


def downloading(endpoint: str, now: float = 1.0) -> UpdateJob:
    job = UpdateJob.new(
        endpoint,
        "ab" * 32,
        "2.0",
        PackageKind.FIRMWARE,
        strategy=Strategy.PUSH,
        campaign="spring",
        settings=JobSettings(download_timeout=50),
        now=now,
    )
    for action in job.start(now):
        job.answered(action.seq, now, code="2.05", value=0)
    (deliver,) = [a for a in job.pending]
    job.answered(deliver, now, code="2.04")
    assert job.step is Step.DOWNLOAD
    return job


def test_a_job_written_by_one_handle_is_read_by_another(open_jobs: Opener) -> None:
    job = downloading("dev{1}")  # braces: the Redis hash tag is escaped
    open_jobs().put(job)
    again = open_jobs().get("dev{1}")
    assert again is not None
    assert again.view() == job.view()
    assert again.timer == 51.0 and again.step is Step.DOWNLOAD and again.delivered
    assert open_jobs().get("nobody") is None


def test_all_lists_every_job_by_endpoint_and_put_replaces(open_jobs: Opener) -> None:
    store = open_jobs()
    for name in ("b", "a", "c"):
        store.put(downloading(name))
    done = downloading("b")
    done.cancel(5.0)
    store.put(done)
    jobs = open_jobs().all()
    assert [j.endpoint for j in jobs] == ["a", "b", "c"]
    assert [j.state for j in jobs] == [
        JobState.DOWNLOADING,
        JobState.CANCELLED,
        JobState.DOWNLOADING,
    ]


def test_remove(open_jobs: Opener) -> None:
    store = open_jobs()
    store.put(downloading("a"))
    assert store.remove("a") is True
    assert store.remove("a") is False
    assert open_jobs().all() == [] and open_jobs().get("a") is None


def test_a_non_job_is_refused(open_jobs: Opener) -> None:
    with pytest.raises(StoreError):
        open_jobs().put("not a job")  # type: ignore[arg-type]


def test_a_corrupt_row_is_skipped_not_fatal(tmp_path: Path) -> None:
    engine = SqliteEngine(tmp_path)
    try:
        store = engine.firmware_jobs()
        store.put(downloading("good"))
        store.put(downloading("bad"))
        database = engine._database()
        with database.write() as conn:
            conn.execute("UPDATE firmware_jobs SET data = '{}' WHERE endpoint = 'bad'")
        assert [j.endpoint for j in engine.firmware_jobs().all()] == ["good"]
        assert engine.firmware_jobs().get("bad") is None
    finally:
        engine.close()
