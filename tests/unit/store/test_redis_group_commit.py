"""``RedisStore`` group commit: the cheap Updates of a loop iteration are held and sent as one
MULTI/EXEC by ``commit()`` (the CoAP driver's flush hook, before the replies leave); a commit
that fails, or finds a registration another node removed, returns False (the replies are
withheld) and the device's retransmission then gets its 4.04."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import redis

from keystore.resolver import IdentityBinding
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


class RoundTrips:
    """Counts what the store sends to Redis: single commands and pipelines (one round trip
    each), by wrapping the client's two ways to talk to the server."""

    def __init__(self, client: Any) -> None:
        self.count = 0
        single, pipeline = client.execute_command, client.pipeline

        def one(*args: Any, **options: Any) -> Any:
            self.count += 1
            return single(*args, **options)

        def many(*args: Any, **options: Any) -> Any:
            pipe = pipeline(*args, **options)
            execute = pipe.execute

            def counted(*a: Any, **k: Any) -> Any:
                self.count += 1
                return execute(*a, **k)

            pipe.execute = counted
            return pipe

        client.execute_command = one
        client.pipeline = many


def test_a_register_is_one_round_trip_on_one_redis(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    """The id's owner check, the indexes, the record and the expiry score in one script (it
    was an HGET, then a MULTI/EXEC); a Register replacing the endpoint's registration (a
    device after a reboot) drops the old index entries in one more round trip (it was one per
    entry): what a Register waits for before its reply."""
    node, other = stores
    node.put_registration(reg(0))  # the script is loaded
    trips = RoundTrips(node.database.client)
    first = reg(1)
    assert node.put_registration(first) is None
    assert trips.count == 1
    again = attrs.evolve(reg(2), endpoint=first.endpoint)
    assert node.put_registration(again) == first  # replaces the endpoint's registration
    assert trips.count == 3  # and the old one's index entries: one pipeline
    assert other.get_registration("id2") == again
    assert other.get_registration("id1") is None
    assert other.registrations_by_address(again.address) == [again]
    assert [r.registration_id for r in other.expiring_before(1e12, 10)] == ["id0", "id2"]


def test_advisory_writes_travel_with_the_group_commit(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    """``write_later`` (the cluster's holder records): no round trip of its own, sent with the
    iteration's Updates, its answer handed back; on a cluster the caller writes it itself."""
    node, other = stores
    r = reg(1)
    node.put_registration(r)
    answers: list[object] = []
    trips = RoundTrips(node.database.client)
    assert node.write_later(lambda pipe: pipe.set("gc:advisory", "a", get=True), answers.append)
    node.touch_registration(attrs.evolve(r, last_update=1600.0))
    assert answers == [] and other.database.client.get("gc:advisory") is None
    assert node.commit() is True
    assert trips.count == 1  # the Update and the advisory write: one MULTI/EXEC
    assert answers == [None] and other.database.client.get("gc:advisory") == b"a"
    node.write_later(lambda pipe: pipe.set("gc:advisory", "b", get=True), answers.append)
    assert node.commit() is True
    assert answers == [None, b"a"]


def test_a_failed_advisory_write_never_withholds_replies(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    node, _ = stores
    answers: list[object] = []
    working = node.database.client
    node.database.client = redis.Redis(port=_free_port(), socket_connect_timeout=1)
    try:
        node.write_later(lambda pipe: pipe.set("gc:advisory", "a"), answers.append)
        assert node.commit() is True  # nothing a device asked for depends on it
    finally:
        node.database.client.close()
        node.database.client = working
    assert len(answers) == 1 and isinstance(answers[0], redis.exceptions.ConnectionError)


def test_one_commit_of_many_updates_keeps_every_index(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    """The iteration's Updates in one script: each with its own keys (a DTLS-bound one has an
    identity index too), one that moved drops its old address entry, one whose registration
    another node removed writes nothing and fails the commit."""
    node, other = stores
    bound = reg(1, identity=IdentityBinding("psk", "dev-1"))
    plain, gone = reg(2), reg(3)
    for r in (bound, plain, gone):
        node.put_registration(r)
    other.remove_registration("id3")
    moved = attrs.evolve(plain, last_update=1700.0, address=Address("198.51.100.9", 7000))
    touched = attrs.evolve(bound, last_update=1700.0)
    for r in (touched, moved, attrs.evolve(gone, last_update=1700.0)):
        assert node.touch_registration(r)
    assert node.commit() is False  # id3 was gone: the iteration's replies are withheld
    assert other.registrations_by_identity(bound.identity) == [touched]  # type: ignore[arg-type]
    assert other.registrations_by_address(moved.address) == [moved]
    assert other.registrations_by_address(plain.address) == []
    assert other.get_registration("id3") is None
    assert [r.registration_id for r in other.expiring_before(1e12, 10)] == ["id1", "id2"]
