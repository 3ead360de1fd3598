"""The queued-request store contract (``lwm2m_server/store/queued_requests.py``), run over every
engine (memory, sqlite, redis, redis-cluster): what the server relies on to deliver, after a
restart, the requests it acknowledged with 202. ``a``/``b`` are two handles on one store (a
restarted process sees what the first one wrote)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from keystore.store.errors import StoreError
from lwm2m_server.coap.requests import DownlinkRequest
from lwm2m_server.store.queued_requests import (
    MemoryQueuedRequestStore,
    QueuedRequestStore,
    SqliteQueuedRequestStore,
    StoredRequest,
)
from lwm2m_server.store.sqlite import SqliteStore
from object_models.path import LwM2mPath

from .engines import ENGINES

P = LwM2mPath.parse


@pytest.fixture(params=ENGINES)
def open_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], QueuedRequestStore]]:
    opened: list[Any] = []
    if request.param == "memory":
        shared = MemoryQueuedRequestStore()
        yield lambda: shared
        return
    if request.param in ("redis", "redis-cluster"):
        from keystore.store.redis_database import RedisDatabase
        from lwm2m_server.store.redis_queued_requests import RedisQueuedRequestStore

        cluster = request.param == "redis-cluster"
        url = request.getfixturevalue("redis_cluster_url" if cluster else "redis_url")

        def open_redis() -> QueuedRequestStore:
            db = RedisDatabase(url, prefix="core", cluster=cluster)
            opened.append(db)
            return RedisQueuedRequestStore(db)

        yield open_redis
    else:

        def open_sqlite() -> QueuedRequestStore:
            store = SqliteStore(tmp_path / "shared.sqlite")
            opened.append(store)
            return SqliteQueuedRequestStore(store)

        yield open_sqlite
    for closable in opened:
        closable.close()


def entry(n: int, endpoint: str = "ep1", created_at: float = 1000.0) -> StoredRequest:
    request = DownlinkRequest(
        "write",
        "PUT",
        P("/3/0/14"),
        payload=bytes([0xC8, 0x0E, n]),
        content_format=11542,
        query=("pmin=1",),
        token=None if n % 2 else b"\x01\x02",
        paths=(P("/3/0/14"), P("/1/0/1")) if n % 3 == 0 else (),
        observe=0 if n % 2 else None,
    )
    return StoredRequest(f"r{n}", endpoint, request, created_at, ttl=3600.0, timeout=5.0)


def test_put_then_read_back_exactly(open_store: Callable[[], QueuedRequestStore]) -> None:
    a, b = open_store(), open_store()
    first, second, other = entry(1, created_at=1000.0), entry(2, created_at=999.0), entry(3, "ep2")
    for e in (first, second, other):
        a.put(e)
    assert b.by_endpoint("ep1") == [second, first]  # oldest first
    assert b.by_endpoint("ep2") == [other]
    assert b.by_endpoint("nobody") == []
    assert b.all() == [second, first, other]
    assert b.all()[0].expires_at == 999.0 + 3600.0


def test_remove(open_store: Callable[[], QueuedRequestStore]) -> None:
    a, b = open_store(), open_store()
    a.put(entry(1))
    a.put(entry(2))
    assert b.remove("r1")
    assert not b.remove("r1")
    assert not a.remove("never")
    assert a.all() == [entry(2)]
    assert a.remove("r2")
    assert b.all() == [] and b.by_endpoint("ep1") == []


def test_put_replaces_by_request_id(open_store: Callable[[], QueuedRequestStore]) -> None:
    a = open_store()
    a.put(entry(1))
    again = StoredRequest("r1", "ep1", entry(4).request, 1000.0, 60.0, 2.0)
    a.put(again)
    assert open_store().all() == [again]


def test_bad_entries_are_refused(open_store: Callable[[], QueuedRequestStore]) -> None:
    a = open_store()
    with pytest.raises(StoreError):
        a.put("not an entry")  # type: ignore[arg-type]
    assert a.all() == []


# -- Redis: owners (docs/cluster.md, "Queued requests across nodes") ------------------------------


@pytest.mark.parametrize("cluster", [False, True], ids=["redis", "redis-cluster"])
def test_the_node_where_the_device_wakes_takes_the_queue(
    request: pytest.FixtureRequest, cluster: bool
) -> None:
    """Node B queued two requests, node A one: A takes the endpoint's queue (B's entries become
    A's, and A learns B had them); B's late removal (an expiry of its stale copy) leaves A's
    entry alone; each node's start-up sees its own entries; A's removal after delivery works."""
    from keystore.store.redis_database import RedisDatabase
    from lwm2m_server.store.redis_queued_requests import RedisQueuedRequestStore

    url = request.getfixturevalue("redis_cluster_url" if cluster else "redis_url")
    dbs = [RedisDatabase(url, prefix="owners", cluster=cluster) for _ in range(2)]
    a, b = (RedisQueuedRequestStore(db, node=name) for db, name in zip(dbs, "ab", strict=True))
    try:
        b.put(entry(1, created_at=1000.0))
        b.put(entry(2, created_at=1001.0))
        a.put(entry(3, created_at=1002.0))
        assert [e.request_id for e in b.all()] == ["r1", "r2"]
        assert [(e.request_id, owner) for e, owner in a.take("ep1")] == [
            ("r1", "b"),
            ("r2", "b"),
            ("r3", "a"),
        ]
        assert a.taken == 2
        assert b.remove("r1") is False  # A delivers it now
        assert b.all() == [] and [e.request_id for e in a.all()] == ["r1", "r2", "r3"]
        assert a.remove("r1") is True
        assert [e.request_id for e in b.by_endpoint("ep1")] == ["r2", "r3"]
        assert a.take("other") == []
    finally:
        for db in dbs:
            db.close()
