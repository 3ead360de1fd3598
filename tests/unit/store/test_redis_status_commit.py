"""Profile statuses on Redis ride the group commit (``RedisDeviceStateStore`` with ``group``):
the statuses the profile engine writes after a busy Register iteration are one MSET in the next
commit's round trip, not a pipeline of SETs of their own; read back from the node until Redis
has them; kept and sent again when a commit fails, whose Registers' 2.01s stay withheld."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
import redis

from keystore.store.redis_database import RedisDatabase
from lwm2m_server.store.redis import RedisStore
from lwm2m_server.store.redis_device_state import RedisDeviceStateStore
from tests.redis_fixture import _free_port

from .engines import reg
from .test_redis_group_commit import Answers, RoundTrips, _until


def _status(endpoint: str, state: str = "applied") -> dict[str, object]:
    return {"endpoint": endpoint, "profile": "default", "state": state, "appliedAt": 1.5}


@pytest.fixture
def node(
    redis_url: str,
) -> Iterator[tuple[RedisStore, RedisDeviceStateStore, RedisDeviceStateStore]]:
    """This node's grouped store and its device state riding it; another node's device state
    (a connection of its own: what Redis holds)."""
    store = RedisStore(RedisDatabase(redis_url, prefix="st"))
    store.enable_group_commit()
    elsewhere = RedisDatabase(redis_url, prefix="st")
    yield (
        store,
        RedisDeviceStateStore(store.database, group=store),
        RedisDeviceStateStore(elsewhere),
    )
    store.close()
    elsewhere.close()


def _refuse(store: RedisStore) -> redis.Redis:
    """Point the store's client at a port nobody listens on (Redis down); the working one."""
    working = store.database.client
    store.database.client = redis.Redis(port=_free_port(), socket_connect_timeout=1)
    return working


def test_statuses_ride_the_registers_commit_in_one_round_trip(
    node: tuple[RedisStore, RedisDeviceStateStore, RedisDeviceStateStore],
) -> None:
    store, state, other = node
    trips = RoundTrips(store.database.client)
    answers = Answers()
    assert store.put_registration_later(reg(1), answers.done("id1"))
    state.put_statuses([("ep1", _status("ep1")), ("ep2", _status("ep2"))])
    state.put_status("ep3", _status("ep3"))
    assert trips.count == 0  # held: nothing sent yet
    assert other.statuses(["ep1", "ep2", "ep3"]) == {}
    # this node reads its own writes (the engine drops them from memory at once), no round trip
    assert state.status("ep1") == _status("ep1")
    assert state.statuses(["ep1", "ep3"]) == {"ep1": _status("ep1"), "ep3": _status("ep3")}
    assert trips.count == 0
    assert store.commit() is True
    assert trips.count == 1  # the Register's script and one MSET of the statuses
    assert answers.seen == [("id1", True, None)]
    assert other.statuses(["ep1", "ep2", "ep3"]) == {
        "ep1": _status("ep1"),
        "ep2": _status("ep2"),
        "ep3": _status("ep3"),
    }
    assert state.status_writes == 1
    assert store.commit() is True  # nothing left to send
    assert trips.count == 1


def test_a_failed_commit_withholds_the_register_and_keeps_the_statuses(
    node: tuple[RedisStore, RedisDeviceStateStore, RedisDeviceStateStore],
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, state, other = node
    answers = Answers()
    working = _refuse(store)
    try:
        store.put_registration_later(reg(1), answers.done("id1"))
        state.put_statuses([("ep1", _status("ep1")), ("ep2", _status("ep2"))])
        with caplog.at_level(logging.WARNING):
            assert store.commit() is False  # the iteration's replies (the 2.01) are withheld
    finally:
        store.database.client.close()
        store.database.client = working
    assert answers.seen == [("id1", False, None)]
    assert any("profile status of 2 devices not stored yet" in m for m in caplog.messages)
    assert other.statuses(["ep1", "ep2"]) == {}
    assert state.statuses(["ep1", "ep2"]) == {"ep1": _status("ep1"), "ep2": _status("ep2")}
    # a newer status of ep2 meanwhile: the one sent is the newest
    state.put_status("ep2", _status("ep2", state="failed"))
    assert store.commit() is True  # Redis is back: the kept statuses go with this commit
    assert other.statuses(["ep1", "ep2"]) == {
        "ep1": _status("ep1"),
        "ep2": _status("ep2", state="failed"),
    }
    assert store.registration_by_endpoint("ep1") is None  # the Register was never stored


def test_statuses_a_commit_refused_are_sent_again_by_the_loop(
    node: tuple[RedisStore, RedisDeviceStateStore, RedisDeviceStateStore],
) -> None:
    """In the server (a running loop): kept, and queued again a second later with a commit
    of the loop's own, without any new write; not re-sent every iteration meanwhile."""
    store, state, other = node

    async def main() -> None:
        working = _refuse(store)
        try:
            state.put_statuses([("ep1", _status("ep1"))])
            assert store.commit() is True  # an advisory write alone never withholds replies
        finally:
            store.database.client.close()
            store.database.client = working
        assert other.status("ep1") is None
        assert state.status("ep1") == _status("ep1")
        await _until(lambda: other.status("ep1") is not None)
        assert other.status("ep1") == _status("ep1")
        assert state.status_writes == 1

    asyncio.run(main())


def test_on_a_cluster_statuses_are_written_at_once(redis_cluster_url: str) -> None:
    store = RedisStore(RedisDatabase(redis_cluster_url, prefix="st", cluster=True))
    other = RedisDeviceStateStore(RedisDatabase(redis_cluster_url, prefix="st", cluster=True))
    try:
        store.enable_group_commit()  # no group commit on a cluster
        state = RedisDeviceStateStore(store.database, group=store)
        state.put_statuses([("ep1", _status("ep1")), ("ep2", _status("ep2"))])
        assert other.statuses(["ep1", "ep2"]) == {"ep1": _status("ep1"), "ep2": _status("ep2")}
    finally:
        store.close()
        other._db.close()


def test_what_the_profile_engine_reads_after_registers_rides_their_commit(
    node: tuple[RedisStore, RedisDeviceStateStore, RedisDeviceStateStore],
) -> None:
    """The profile engine re-reads the assignments and the stored statuses of a loop
    iteration's registered devices the iteration after their commit: both are read in that
    commit (an HMGET and an MGET beside the Registers' script), so the engine's reads cost no
    round trip; each value is used once, and this node's own later writes win over it."""
    from keystore.store.redis_profiles import RedisProfileStore

    store, state, other = node
    profiles = RedisProfileStore(store.database, group=store)
    elsewhere = RedisProfileStore(other._db)
    elsewhere.assign("ep1", "meters")
    other.put_status("ep1", _status("ep1", state="failed"))
    answers = Answers()
    for n in (1, 2):
        store.put_registration_later(reg(n), answers.done(f"id{n}"))
    trips = RoundTrips(store.database.client)
    assert store.commit() is True
    assert trips.count == 1  # the Registers' script, the HMGET and the MGET
    assert profiles.assignments_of(["ep1", "ep2"]) == {"ep1": "meters"}
    assert state.statuses(["ep1", "ep2"]) == {"ep1": _status("ep1", state="failed")}
    assert trips.count == 1  # no round trip of their own
    # used once: a later read asks Redis again, and sees a change made meanwhile
    elsewhere.assign("ep1", "gauges")
    assert profiles.assignments_of(["ep1"]) == {"ep1": "gauges"}
    assert trips.count == 2
    # a write of this node after the read-ahead wins over what was read
    store.put_registration_later(reg(3), answers.done("id3"))
    assert store.commit() is True
    profiles.assign("ep3", "valves")
    state.put_status("ep3", _status("ep3"))
    assert store.commit() is True  # the status is in Redis now, no longer held
    assert profiles.assignments_of(["ep3"]) == {"ep3": "valves"}
    assert state.statuses(["ep3"]) == {"ep3": _status("ep3")}
