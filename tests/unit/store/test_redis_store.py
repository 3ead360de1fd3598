"""``RedisStore`` beyond the contract: what a process killed between the steps that keep the
indexes leaves behind (docs/cluster.md, "Atomicity of the server's records") is harmless, and
the telemetry split (latest in Redis, history in the node's sqlite file)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from keystore.store.redis_database import RedisDatabase
from lwm2m_runtime.address import Address
from lwm2m_server.core.telemetry import TelemetryPoint
from lwm2m_server.store.redis import RedisClientPages, RedisStore, RedisTelemetryStore
from lwm2m_server.store.sqlite import SqliteStore
from object_models.types import ResourceType

from .engines import reg


@pytest.fixture(params=["redis", "redis-cluster"])
def db(request: pytest.FixtureRequest) -> Iterator[RedisDatabase]:
    cluster = request.param == "redis-cluster"
    url = request.getfixturevalue("redis_cluster_url" if cluster else "redis_url")
    database = RedisDatabase(url, prefix="t", cluster=cluster)
    yield database
    database.close()


def test_entries_of_a_register_killed_before_its_record_are_ignored_and_swept(
    db: RedisDatabase,
) -> None:
    store = RedisStore(db)
    ghost = reg(1, last_update=1000.0, lifetime=100)
    store._add_indexes(ghost)  # the steps before the record, then the process died
    assert store.get_registration("id1") is None
    assert store.registrations() == []
    assert store.registrations_by_address(ghost.address) == []
    assert store.remove_registration("id1") is None
    assert store.expiring_before(5000.0, 10) == []
    assert db.client.zscore(db.group_key("reg", "expiry"), "id1") is None  # swept
    assert db.client.hget(db.group_key("reg", "ids"), "id1") is None


def test_an_early_expiry_score_is_repaired_not_reported(db: RedisDatabase) -> None:
    store = RedisStore(db)
    r = reg(1, last_update=1000.0, lifetime=100)
    store.put_registration(r)
    # an Update whose process died before it set the new score: the record says 2000 + 100
    refreshed = attrs.evolve(r, last_update=2000.0)
    store.touch_registration(refreshed)
    db.client.zadd(db.group_key("reg", "expiry"), {"id1": r.expires_at})
    assert store.expiring_before(1500.0, 10) == []
    assert db.client.zscore(db.group_key("reg", "expiry"), "id1") == refreshed.expires_at
    assert store.expiring_before(2101.0, 10) == [refreshed]


def test_an_update_of_a_removed_registration_leaves_no_index_entry(db: RedisDatabase) -> None:
    store = RedisStore(db)
    r = reg(1)
    store.put_registration(r)
    store.remove_registration("id1")
    moved = reg(1, address=Address("198.51.100.1", 9))
    assert not store.touch_registration(moved)
    assert not db.client.exists(store._addr_key(moved.address))
    assert db.client.zscore(db.group_key("reg", "expiry"), "id1") is None


def test_an_update_that_moves_the_device_leaves_the_old_address(db: RedisDatabase) -> None:
    store = RedisStore(db)
    r = reg(1)
    store.put_registration(r)
    store.touch_registration(reg(1, address=Address("198.51.100.1", 9)))
    assert not db.client.exists(store._addr_key(r.address))


def test_latest_telemetry_is_shared_and_newest_wins(db: RedisDatabase, tmp_path: Path) -> None:
    path = "/3303/0/5700"

    def point(ts_ms: int, value: float) -> TelemetryPoint:
        return TelemetryPoint("dev", path, "sensorValue", ts_ms, value, ResourceType.FLOAT)

    a = RedisTelemetryStore(db, SqliteStore(tmp_path / "a.sqlite"))
    b = RedisTelemetryStore(db, SqliteStore(tmp_path / "b.sqlite"))
    assert a.append_points([point(2000, 21.5)]) == 1
    b.append_points([point(1000, 19.0)])  # older: history only
    assert b.latest("dev")[path].value == 21.5
    assert [p.value for p in a.history("dev", path)] == [21.5]  # each node's own points
    assert [p.value for p in b.history("dev", path)] == [19.0]


def test_the_client_list_pages_the_store_in_endpoint_order(db: RedisDatabase) -> None:
    store = RedisStore(db)
    regs = [reg(n, endpoint=f"ep{n:02d}") for n in range(7)]
    for r in reversed(regs):
        store.put_registration(r)
    store._add_indexes(reg(99, endpoint="ep03a"))  # a Register killed before its record
    pages = RedisClientPages(store)
    assert pages.clients_page(None, 3) == regs[:3]
    assert pages.clients_page("ep02", 3) == regs[3:6]  # the stale entry does not shorten it
    assert pages.clients_page("ep05", 3) == regs[6:]
    assert pages.clients_page("ep06", 3) == []
    assert pages.client_count() == 8  # one HLEN: counts the stale entry until it is swept
