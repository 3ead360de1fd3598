"""``RedisStore`` group commit: the cheap Updates of a loop iteration are held and sent as one
MULTI/EXEC by ``commit()`` (the CoAP driver's flush hook, before the replies leave); a commit
that fails, or finds a registration another node removed, returns False (the replies are
withheld) and the device's retransmission then gets its 4.04."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import attrs
import pytest
import redis

from keystore.store.redis_database import RedisDatabase
from lwm2m_runtime.address import Address
from lwm2m_server.store.redis import RedisStore
from tests.redis_fixture import _free_port

from .engines import reg


@pytest.fixture
def stores(redis_url: str) -> Iterator[tuple[RedisStore, RedisStore]]:
    node, other = (RedisStore(RedisDatabase(redis_url, prefix="gc")) for _ in range(2))
    node.enable_group_commit()
    yield node, other
    node.close()
    other.close()


def test_updates_are_in_redis_only_after_commit(stores: tuple[RedisStore, RedisStore]) -> None:
    node, other = stores
    r = reg(1)
    node.put_registration(r)
    moved = attrs.evolve(r, last_update=1100.0, address=Address("198.51.100.7", 40000))
    assert node.touch_registration(moved)
    assert other.get_registration("id1") == r  # held
    assert node.commit() is True
    assert other.get_registration("id1") == moved
    assert other.registrations_by_address(moved.address) == [moved]
    assert other.registrations_by_address(r.address) == []
    assert node.commit() is True  # nothing pending


def test_any_other_call_sends_the_held_updates_first(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    node, other = stores
    r = reg(1)
    node.put_registration(r)
    touched = attrs.evolve(r, last_update=1200.0)
    node.touch_registration(touched)
    assert node.get_registration("id1") == touched
    assert other.get_registration("id1") == touched
    assert node.commit() is True


def test_an_update_of_a_registration_removed_elsewhere_fails_the_commit(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    node, other = stores
    r = reg(1)
    node.put_registration(r)
    other.remove_registration("id1")
    refreshed = attrs.evolve(r, last_update=1300.0, address=Address("198.51.100.8", 1))
    assert node.touch_registration(refreshed)  # held: answered later by the commit
    assert node.commit() is False  # the reply (a 2.04) is withheld
    assert other.get_registration("id1") is None
    assert other.registrations_by_address(refreshed.address) == []  # nothing left behind
    # the device's retransmission: this time the store answers at once (the core says 4.04)
    assert node.touch_registration(refreshed) is False
    assert node.commit() is True


def test_a_commit_redis_refuses_is_false_and_logged_once(
    stores: tuple[RedisStore, RedisStore], caplog: pytest.LogCaptureFixture
) -> None:
    node, other = stores
    r = reg(1)
    node.put_registration(r)
    working = node.database.client
    node.database.client = redis.Redis(port=_free_port(), socket_connect_timeout=1)
    try:
        for n in range(2):
            node.touch_registration(attrs.evolve(r, last_update=2000.0 + n))
            with caplog.at_level(logging.ERROR):
                assert node.commit() is False
    finally:
        node.database.client.close()
        node.database.client = working
    assert len([m for m in caplog.messages if "pending Updates not stored" in m]) == 1
    assert other.get_registration("id1") == r
    node.touch_registration(attrs.evolve(r, last_update=3000.0))
    assert node.commit() is True


def test_updates_outside_a_flush_are_sent_by_the_loop(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    node, other = stores
    r = reg(1)
    node.put_registration(r)
    touched = attrs.evolve(r, last_update=1400.0)

    async def main() -> None:
        node.touch_registration(touched)
        assert other.get_registration("id1") == r
        await asyncio.sleep(0)  # one loop iteration: the store's own call_soon sends them
        assert other.get_registration("id1") == touched

    asyncio.run(main())


def test_on_a_cluster_updates_are_synchronous(redis_cluster_url: str) -> None:
    node = RedisStore(RedisDatabase(redis_cluster_url, prefix="gc", cluster=True))
    other = RedisStore(RedisDatabase(redis_cluster_url, prefix="gc", cluster=True))
    try:
        node.enable_group_commit()
        r = reg(1)
        node.put_registration(r)
        touched = attrs.evolve(r, last_update=1500.0)
        assert node.touch_registration(touched)
        assert other.get_registration("id1") == touched
    finally:
        node.close()
        other.close()
