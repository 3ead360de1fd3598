"""The update job store on every engine (memory, sqlite, Redis, Redis Cluster): what one
handle writes, another handle (a restarted server, another node) reads back, unfinished jobs
included, with their deadlines."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from keystore.store.errors import StoreError
from lwm2m_server.firmware.contracts import JobState, PackageKind, Strategy
from lwm2m_server.firmware.job_store import JobStore, MemoryJobStore, RedisJobStore
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


# -- leases: who drives a job on a cluster (docs/firmware.md, "Updates in a cluster") -----------


@pytest.fixture(params=["redis", "redis-cluster"])
def leased(request: pytest.FixtureRequest) -> Iterator[RedisJobStore]:
    cluster = request.param == "redis-cluster"
    url = request.getfixturevalue("redis_cluster_url" if cluster else "redis_url")
    engine = RedisEngine(url, cluster=cluster)
    try:
        store = engine.firmware_jobs()
        assert isinstance(store, RedisJobStore)
        yield store
    finally:
        engine.close()


def test_only_the_driver_writes_a_job_and_a_steal_fences_the_former_one(
    leased: RedisJobStore,
) -> None:
    job = downloading("dev-1")
    assert leased.create(job, "node-a", 30.0, drive=True)
    assert not leased.create(downloading("dev-1"), "node-b", 30.0, drive=True)  # one at a time
    assert leased.claim("dev-1", "node-b", 30.0) == (None, "node-a")  # a live lease holds
    job.detail = "from a"
    assert leased.put_as(job, "node-a", 30.0)

    taken, _ = leased.claim("dev-1", "node-b", 30.0, steal=True)  # the device moved to B
    assert taken is not None and taken.detail == "from a"
    job.detail = "late write of a"
    assert not leased.put_as(job, "node-a", 30.0)  # refused: nothing written
    stored = leased.get("dev-1")
    assert stored is not None and stored.detail == "from a"
    assert leased.renew(["dev-1"], "node-a", 30.0) == ["dev-1"]  # A learns it lost it
    assert leased.renew(["dev-1"], "node-b", 30.0) == []


def test_a_finished_job_has_no_driver_and_cannot_be_written_again(leased: RedisJobStore) -> None:
    job = downloading("dev-2")
    assert leased.create(job, "node-a", 30.0, drive=True)
    stale = leased.get("dev-2")
    assert stale is not None
    job.cancel(2.0)
    assert leased.put_as(job, "node-a", 30.0)
    assert leased.claim("dev-2", "node-b", 30.0, steal=True) == (None, None)
    assert not leased.put_as(stale, "node-a", 30.0)  # the lease went with the finished job
    shown = leased.get("dev-2")
    assert shown is not None and shown.state is JobState.CANCELLED
    assert leased.expired(1e12) == []
    assert leased.create(downloading("dev-2"), "node-b", 30.0, drive=True)  # a new one may start


def test_an_expired_lease_frees_the_job_for_another_node(leased: RedisJobStore) -> None:
    job = downloading("dev-3")
    assert leased.create(job, "node-a", 0.05, drive=True)

    def taken() -> bool:
        return leased.claim("dev-3", "node-b", 30.0)[0] is not None

    deadline = time.monotonic() + 10
    while not taken():  # Redis expires the key: polled, nothing signals it
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert "dev-3" not in leased.expired(time.time())  # renewed for B in the index
    assert not leased.put_as(job, "node-a", 30.0)


def test_a_job_handed_to_the_holder_is_free_until_claimed(leased: RedisJobStore) -> None:
    job = downloading("dev-4")
    assert leased.create(job, "node-a", 30.0, drive=False)
    assert "dev-4" in leased.expired(time.time())
    assert not leased.put_as(job, "node-a", 30.0)
    claimed, _ = leased.claim("dev-4", "node-b", 30.0)
    assert claimed is not None
    leased.release("dev-4", "node-b")  # B stops: free again at once
    assert "dev-4" in leased.expired(time.time())
    assert leased.claim("dev-4", "node-c", 30.0)[0] is not None
