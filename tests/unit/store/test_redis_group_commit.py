"""``RedisStore`` group commit: the cheap Updates of a loop iteration are held and sent as one
MULTI/EXEC by ``commit()`` (the CoAP driver's flush hook, before the replies leave); a commit
that fails, or finds a registration another node removed, returns False (the replies are
withheld) and the device's retransmission then gets its 4.04."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
import redis

from keystore.resolver import IdentityBinding
from keystore.store.redis_database import RedisDatabase
from lwm2m_runtime.address import Address
from lwm2m_server.core.registration import Registration
from lwm2m_server.store.redis import RedisStore, _score
from tests.redis_fixture import _free_port

from .engines import obs, redis_node_pair, reg


@pytest.fixture
def stores(redis_url: str) -> Iterator[tuple[RedisStore, RedisStore]]:
    with redis_node_pair(redis_url, "gc") as pair:
        yield pair


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


def test_keep_alives_score_the_expiry_index_about_once_per_half_lifetime(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    """A keep-alive leaves the expiry score where it is while the score it would write (its
    expiry rounded down to a multiple of half its lifetime) is the one already there: the index
    may be early by less than half a lifetime, never late; the sweep re-scores such an entry
    from its record and reports the registration only when it is due; an Update that moves the
    expiry earlier (a shorter lifetime) is scored at once."""
    node, other = stores
    r = reg(1, last_update=1000.0, lifetime=100)
    node.put_registration(r)
    expiry = other.database.group_key("reg", "expiry")
    client = other.database.client
    scores = []
    for t in (1010.0, 1020.0, 1040.0, 1049.0):
        assert node.touch_registration(attrs.evolve(r, last_update=t))
        assert node.commit() is True
        scores.append(client.zscore(expiry, "id1"))
    # scored by the first keep-alive (the Register's score has no record of it): 1110 rounded
    # down to a multiple of 50, kept while the expiry moved to 1149 (49 s early now)
    assert scores == [1100.0] * 4
    assert other.get_registration("id1").expires_at == 1149.0  # type: ignore[union-attr]
    # the sweep: nothing due before the record's expiry, and the early score repaired
    assert other.expiring_before(1145.0, 10) == []
    assert client.zscore(expiry, "id1") == 1149.0
    assert [x.registration_id for x in other.expiring_before(1150.0, 10)] == ["id1"]
    for t, score in ((1050.0, 1150.0), (1060.0, 1150.0), (1099.0, 1150.0), (1100.0, 1200.0)):
        node.touch_registration(attrs.evolve(r, last_update=t))
        assert node.commit() is True
        assert client.zscore(expiry, "id1") == score, t
    # a shorter lifetime: the expiry moves earlier, so it is scored at once
    shorter = attrs.evolve(r, last_update=1110.0, lifetime=10)
    node.touch_registration(shorter)
    assert node.commit() is True
    assert client.zscore(expiry, "id1") == 1120.0
    assert other.expiring_before(1121.0, 10) == [shorter]


def test_a_keep_alive_never_leaves_a_score_later_than_its_expiry(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    """Whoever wrote the expiry score last (a synchronous Update, the sweep's repair), a
    keep-alive after it leaves the score at most the record's expiry, even one whose expiry is
    earlier than the stored one (another node's clock a few seconds behind) and whose rounded
    score is the one the script wrote before."""
    node, other = stores
    r = reg(1, last_update=1000.0, lifetime=100)
    node.put_registration(r)
    expiry = other.database.group_key("reg", "expiry")
    client = other.database.client

    def keep_alive(t: float) -> None:
        assert node.touch_registration(attrs.evolve(r, last_update=t))
        assert node.commit() is True
        stored = other.get_registration("id1")
        assert stored is not None and stored.last_update == t
        assert client.zscore(expiry, "id1") <= stored.expires_at

    keep_alive(1010.0)  # scores 1100
    # a synchronous Update (more than the touch fields) scores its own expiry, 1130
    assert other.update_registration(attrs.evolve(r, last_update=1030.0, sms_number="+1"))
    assert client.zscore(expiry, "id1") == 1130.0
    keep_alive(1015.0)  # rounded score 1100 again, expiry 1115 < 1130: re-scored
    assert client.zscore(expiry, "id1") == 1100.0
    # the sweep's repair scores the record's expiry, 1115
    assert other.expiring_before(1101.0, 10) == []
    assert client.zscore(expiry, "id1") == 1115.0
    keep_alive(1012.0)  # rounded score 1100 again, expiry 1112 < 1115: re-scored
    assert client.zscore(expiry, "id1") == 1100.0


def test_a_keep_alive_after_another_node_wrote_the_record_checks_it_again(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    """A keep-alive repeated from the same address is written without reading the record's
    id and address (the script's token says they are the ones it wrote); whatever another node
    wrote since (an Update from another address, a De-register, a Register of the endpoint)
    makes the next keep-alive check them again: its address entry is added back, a removed or
    replaced registration is not brought back."""
    node, other = stores
    r = reg(1, last_update=1000.0, lifetime=100)
    node.put_registration(r)
    for t in (1010.0, 1011.0):
        assert node.touch_registration(attrs.evolve(r, last_update=t))
        assert node.commit() is True
    elsewhere = attrs.evolve(r, last_update=1012.0, address=Address("198.51.100.20", 9))
    assert other.touch_registration(elsewhere)  # another node, from another address
    assert other.registrations_by_address(r.address) == []
    back = attrs.evolve(r, last_update=1013.0)  # the same token as the keep-alives above
    assert node.touch_registration(back)
    assert node.commit() is True
    assert other.registrations_by_address(r.address) == [back]
    assert other.registrations_by_address(elsewhere.address) == []
    assert other.remove_registration("id1") is not None  # De-register on another node
    assert node.touch_registration(attrs.evolve(r, last_update=1014.0))
    assert node.commit() is False  # gone: the replies are withheld, nothing written
    assert other.get_registration("id1") is None
    assert other.registration_by_endpoint("ep1") is None
    # a Register of the endpoint on another node (a new id), then this node's stale keep-alive
    fresh = attrs.evolve(r, registration_id="id9", last_update=1015.0)
    assert other.put_registration(fresh) is None
    stale = attrs.evolve(r, last_update=1016.0)
    assert node.touch_registration(stale) is False  # the lost id is written at once: 4.04
    assert node.touch_registration(attrs.evolve(fresh, last_update=1017.0))
    assert node.commit() is True
    assert node.touch_registration(attrs.evolve(r, last_update=1018.0)) is True  # held
    assert node.commit() is False
    assert other.registration_by_endpoint("ep1") == attrs.evolve(fresh, last_update=1017.0)


def test_a_keep_alive_with_another_lifetime_and_the_same_score_writes_the_lifetime(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    """A repeated keep-alive writes only its last update and expiry; one with another lifetime
    writes that too, even when its rounded expiry score is the one already there."""
    node, other = stores
    r = reg(1, last_update=1000.0, lifetime=100)
    node.put_registration(r)
    for t, lifetime in ((1010.0, 100), (1011.0, 100), (950.0, 200), (951.0, 200)):
        touched = attrs.evolve(r, last_update=t, lifetime=lifetime)  # scores 1100 each time
        assert node.touch_registration(touched)
        assert node.commit() is True
        assert other.get_registration("id1") == touched
        assert (
            other.database.client.zscore(other.database.group_key("reg", "expiry"), "id1") == 1100.0
        )


@pytest.mark.parametrize(
    ("endpoint", "host"),
    [
        ("plain", "192.0.2.1"),
        ("with{braces}", "192.0.2.1"),
        ("per%cent", "fe80::1%eth0"),
        ("", "2001:db8::1"),
    ],
)
def test_keep_alives_use_the_keys_every_other_call_uses(
    stores: tuple[RedisStore, RedisStore], endpoint: str, host: str
) -> None:
    """The group commit formats the keys of plain names itself: whatever the endpoint and the
    host, a keep-alive writes the record and the address entry the other calls read."""
    node, other = stores
    r = attrs.evolve(reg(1), endpoint=endpoint, address=Address(host, 5683))
    node.put_registration(r)
    for t, port in ((1500.0, 5683), (1501.0, 5684), (1502.0, 5684)):
        touched = attrs.evolve(r, last_update=t, address=Address(host, port))
        assert node.touch_registration(touched)
        assert node.commit() is True
        assert other.registration_by_endpoint(endpoint) == touched
        assert other.registrations_by_address(touched.address) == [touched]
    assert other.registrations_by_address(r.address) == []


def test_the_score_of_a_keep_alive_is_early_by_less_than_half_a_lifetime() -> None:
    for lifetime in (2, 3, 7, 60, 86_400, 1_000_003):
        half = lifetime // 2
        for expires_at in (0.0, 0.3, 1.1, 1_765_100_000.123456, 1_765_100_000.9999999, 4e9 + 0.5):
            score = float(_score(expires_at, lifetime))
            assert expires_at - half < score <= expires_at, (expires_at, lifetime)
            assert score % half == 0
            assert _score(score + half * 0.999, lifetime) == _score(expires_at, lifetime)
    assert _score(-0.5, 60) == "-30"
    for odd in (1234.5, 2.0**60, float("inf"), float("-inf")):  # a lifetime of 1, huge expiries
        assert _score(odd, 1 if odd == 1234.5 else 60) == repr(odd)
    assert _score(float("nan"), 60) == "nan"


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


@pytest.mark.parametrize(
    ("reg_id", "host", "held"),
    [
        ('id"1', "192.0.2.1", False),  # a quote: written alone
        ("id\\1", "192.0.2.1", False),  # a backslash: written alone
        ("id1", "192.0.2.1|x", False),  # the token's separator in the host: written alone
        ("id\t1\nx", "192.0.2.1", True),  # a tab and a line break are plain JSON here
        ("id|1|2", "192.0.2.1", True),  # the separator in the id: the token splits from its end
    ],
)
def test_an_update_that_cannot_be_plain_json_strings_is_written_alone(
    stores: tuple[RedisStore, RedisStore], reg_id: str, host: str, held: bool
) -> None:
    """The group commit's script takes the Updates as one JSON array of strings (one argument
    for redis-py to encode instead of seven per Update), not escaped: a registration id or host
    that would need escaping, or a host with the token's ``|`` (never one the server makes), is
    written synchronously instead; anything else is held and then stored exactly, whichever
    path (the first keep-alive's or a repeated one's) writes it."""
    node, other = stores
    odd = attrs.evolve(reg(1), registration_id=reg_id, address=Address(host, 5683))
    node.put_registration(odd)
    for t in (1800.0, 1801.0, 1802.0):
        touched = attrs.evolve(odd, last_update=t)
        assert node.touch_registration(touched) is True
        assert (other.get_registration(reg_id) == touched) is not held
        assert node.commit() is True
        assert other.get_registration(reg_id) == touched
        assert other.registrations_by_address(odd.address) == [touched]


class Answers:
    """What ``put_registration_later`` tells each held Register: (id, stored, replaced id)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, bool, str | None]] = []

    def done(self, reg_id: str) -> Callable[[bool, Registration | None], None]:
        def answered(stored: bool, replaced: Registration | None) -> None:
            self.seen.append(
                (reg_id, stored, None if replaced is None else replaced.registration_id)
            )

        return answered


def test_the_registers_of_an_iteration_ride_its_commit_in_one_round_trip(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    """``put_registration_later``: held like an Update, sent with the iteration's Updates and
    advisory writes in one round trip, each told when the commit answered whether it is stored
    and what it replaced — here a registration another node wrote, whose observation, token,
    id and expiry entries go in the same script, its address entry with the next commit."""
    node, other = stores
    touched, elsewhere = reg(1), reg(2)
    node.put_registration(touched)
    other.put_registration(elsewhere)  # another node's registration of ep2
    other.put_observation(obs(b"\x02", elsewhere))
    answers = Answers()
    trips = RoundTrips(node.database.client)
    fresh = reg(3, identity=IdentityBinding("psk", "dev-3"))
    again = attrs.evolve(reg(4), endpoint="ep2", address=Address("198.51.100.4", 4))
    for r in (fresh, again):
        assert node.put_registration_later(r, answers.done(r.registration_id))
    node.touch_registration(attrs.evolve(touched, last_update=1900.0))
    node.write_later(lambda pipe: pipe.set("gc:advisory", "r"), lambda _: None)
    assert other.get_registration("id3") is None and answers.seen == []  # held
    assert node.commit() is True
    assert trips.count == 1  # the Updates' script, the Registers' script, the advisory write
    assert answers.seen == [("id3", True, None), ("id4", True, "id2")]
    assert other.get_registration("id3") == fresh
    assert other.registrations_by_identity(fresh.identity) == [fresh]  # type: ignore[arg-type]
    assert other.registration_by_endpoint("ep2") == again
    assert other.get_registration("id2") is None
    assert other.observations_by_endpoint("ep2") == []
    assert other.observation_by_token(b"\x02") is None
    assert other.get_registration("id1").last_update == 1900.0  # type: ignore[union-attr]
    assert [r.registration_id for r in other.expiring_before(1e12, 10)] == ["id3", "id4", "id1"]
    client = other.database.client
    assert client.hget(other.database.group_key("reg", "ids"), "id2") is None
    assert client.hget(other.database.group_key("obs", "tokens"), "02") is None
    assert client.sismember(other._addr_key(elsewhere.address), "id2")  # the next commit's
    assert node.commit() is True
    assert not client.sismember(other._addr_key(elsewhere.address), "id2")


def test_a_held_register_whose_id_another_endpoint_owns_is_not_written(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    """A fresh id met again (48 random bits: practically never) is not taken from the endpoint
    that owns it: nothing is written, the Register is told it is not stored, and the commit
    fails (the iteration's replies are withheld; the retransmission gets another id)."""
    node, other = stores
    owner = reg(1)
    other.put_registration(owner)
    answers = Answers()
    clash = attrs.evolve(reg(1), endpoint="other-ep")
    assert node.put_registration_later(clash, answers.done("id1"))
    assert node.commit() is False
    assert answers.seen == [("id1", False, None)]
    assert other.get_registration("id1") == owner
    assert other.registration_by_endpoint("other-ep") is None
    assert node.commit() is True


def test_held_registers_redis_refuses_are_told_not_stored(
    stores: tuple[RedisStore, RedisStore], caplog: pytest.LogCaptureFixture
) -> None:
    node, other = stores
    answers = Answers()
    working = node.database.client
    node.database.client = redis.Redis(port=_free_port(), socket_connect_timeout=1)
    try:
        node.put_registration_later(reg(1), answers.done("id1"))
        with caplog.at_level(logging.ERROR):
            assert node.commit() is False
    finally:
        node.database.client.close()
        node.database.client = working
    assert answers.seen == [("id1", False, None)]
    assert any("not stored" in m for m in caplog.messages)
    assert other.get_registration("id1") is None


def test_a_register_is_held_only_where_it_can_be_one_line_and_grouped(
    stores: tuple[RedisStore, RedisStore], redis_cluster_url: str
) -> None:
    """An endpoint name with a tab or a line break (a device may choose one) cannot be a
    field of the script's line: ``put_registration_later`` refuses, the caller writes it
    with ``put_registration``; on a Redis Cluster nothing is held."""
    node, _ = stores
    answers = Answers()
    assert not node.put_registration_later(reg(1, endpoint="tab\there"), answers.done("id1"))
    cluster = RedisStore(RedisDatabase(redis_cluster_url, prefix="gc", cluster=True))
    try:
        cluster.enable_group_commit()
        assert not cluster.put_registration_later(reg(2), answers.done("id2"))
    finally:
        cluster.close()
    assert answers.seen == []


# -- the asynchronous commit (``commit_async`` with ``enable_group_commit(asynchronous=True)``) -


@pytest.fixture
def async_stores(redis_url: str) -> Iterator[tuple[RedisStore, RedisStore]]:
    with redis_node_pair(redis_url, "gca", asynchronous=True) as pair:
        yield pair


def test_by_default_commit_async_is_the_synchronous_commit(
    stores: tuple[RedisStore, RedisStore],
) -> None:
    """Without ``asynchronous=True`` (the server's default), ``commit_async`` commits at once
    and answers before it returns: the replies leave at the flush, as with ``commit()``."""
    node, other = stores
    r = reg(1)
    node.put_registration(r)
    answers: list[bool] = []

    async def main() -> None:
        node.touch_registration(attrs.evolve(r, last_update=6000.0))
        node.commit_async(answers.append)
        assert answers == [True]
        assert other.get_registration("id1").last_update == 6000.0  # type: ignore[union-attr]

    asyncio.run(main())


async def _until(condition: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.002)


def test_commit_async_answers_later_in_order_without_blocking(
    async_stores: tuple[RedisStore, RedisStore],
) -> None:
    """The script is sent, the call returns before Redis answers (the loop goes on), and each
    ``done`` is called in the order of the calls; a call with nothing to write waits for the
    commit in flight (its replies may depend on what that commit writes)."""
    node, other = async_stores
    r1, r2 = reg(1), reg(2)
    node.put_registration(r1)
    node.put_registration(r2)
    answers: list[tuple[str, bool]] = []

    async def main() -> None:
        node.touch_registration(attrs.evolve(r1, last_update=5000.0))
        node.commit_async(lambda ok: answers.append(("first", ok)))
        node.touch_registration(attrs.evolve(r2, last_update=5000.0))
        node.commit_async(lambda ok: answers.append(("second", ok)))
        node.commit_async(lambda ok: answers.append(("nothing to write", ok)))
        assert answers == []  # sent, not answered: the answers come through the loop
        await _until(lambda: len(answers) == 3)

    asyncio.run(main())
    assert answers == [("first", True), ("second", True), ("nothing to write", True)]
    assert other.get_registration("id1").last_update == 5000.0  # type: ignore[union-attr]
    assert other.get_registration("id2").last_update == 5000.0  # type: ignore[union-attr]
    assert node.commits == 2  # two scripts; the third call sent nothing


def test_a_synchronous_call_waits_for_the_commits_in_flight(
    async_stores: tuple[RedisStore, RedisStore],
) -> None:
    """Any other store call is ordered after the commits in flight (it reads their answers
    first, so it sees their writes and their ``done`` has run)."""
    node, _ = async_stores
    r = reg(1)
    node.put_registration(r)
    answers: list[bool] = []

    async def main() -> None:
        node.touch_registration(attrs.evolve(r, last_update=5100.0))
        node.commit_async(answers.append)
        assert answers == []
        stored = node.get_registration("id1")
        assert answers == [True]
        assert stored is not None and stored.last_update == 5100.0

    asyncio.run(main())


def test_a_failed_async_commit_fails_the_calls_made_while_it_was_in_flight(
    async_stores: tuple[RedisStore, RedisStore],
) -> None:
    """A commit whose registration another node removed answers False, and so does every
    call made before that answer came (their replies, e.g. a duplicate answered from the
    deduplication cache, may rest on it); the next Update of the lost registration is
    synchronous (the device's retransmission gets its 4.04); later calls succeed again."""
    node, other = async_stores
    r1, r2 = reg(1), reg(2)
    node.put_registration(r1)
    node.put_registration(r2)
    other.remove_registration("id1")
    answers: list[tuple[str, bool]] = []

    async def main() -> None:
        node.touch_registration(attrs.evolve(r1, last_update=5200.0))
        node.commit_async(lambda ok: answers.append(("gone", ok)))
        node.touch_registration(attrs.evolve(r2, last_update=5200.0))
        node.commit_async(lambda ok: answers.append(("meanwhile", ok)))
        node.commit_async(lambda ok: answers.append(("meanwhile, nothing", ok)))
        await _until(lambda: len(answers) == 3)
        assert node.touch_registration(attrs.evolve(r1, last_update=5300.0)) is False
        node.touch_registration(attrs.evolve(r2, last_update=5300.0))
        node.commit_async(lambda ok: answers.append(("after", ok)))
        await _until(lambda: len(answers) == 4)

    asyncio.run(main())
    assert answers == [
        ("gone", False),
        ("meanwhile", False),
        ("meanwhile, nothing", False),
        ("after", True),
    ]
    assert other.get_registration("id1") is None
    assert other.get_registration("id2").last_update == 5300.0  # type: ignore[union-attr]


def test_an_async_commit_without_redis_fails_at_once_and_logs_once(
    async_stores: tuple[RedisStore, RedisStore], caplog: pytest.LogCaptureFixture
) -> None:
    """Redis down: the send fails (connection refused), ``done(False)`` at once (the replies
    are withheld), logged once as the synchronous commit; once Redis is back the next
    commit goes through on a new connection."""
    node, other = async_stores
    r = reg(1)
    node.put_registration(r)
    answers: list[bool] = []

    async def main() -> None:
        node.touch_registration(attrs.evolve(r, last_update=5400.0))
        node.commit_async(answers.append)  # the commit connection is open
        await _until(lambda: answers == [True])
        working = node.database.client
        node.database.client = redis.Redis(port=_free_port(), socket_connect_timeout=1)
        try:
            for n in range(2):
                node.touch_registration(attrs.evolve(r, last_update=5500.0 + n))
                with caplog.at_level(logging.ERROR):
                    node.commit_async(answers.append)
                assert answers[-1] is False and len(answers) == 2 + n
        finally:
            node.database.client.close()
            node.database.client = working
        node.touch_registration(attrs.evolve(r, last_update=5600.0))
        node.commit_async(answers.append)
        await _until(lambda: len(answers) == 4)

    asyncio.run(main())
    assert answers == [True, False, False, True]
    assert len([m for m in caplog.messages if "pending Updates not stored" in m]) == 1
    assert other.get_registration("id1").last_update == 5600.0  # type: ignore[union-attr]


def test_a_commit_connection_redis_closed_is_dropped_and_reopened(
    async_stores: tuple[RedisStore, RedisStore],
) -> None:
    """Redis closes the commit connection (a restart, CLIENT KILL): the loop's reader sees
    it and drops it (a commit in flight on it would answer False: nothing is known to be
    stored), and the next commit opens a new one."""
    node, other = async_stores
    r = reg(1)
    node.put_registration(r)
    answers: list[bool] = []

    async def main() -> None:
        node.touch_registration(attrs.evolve(r, last_update=5700.0))
        node.commit_async(answers.append)
        await _until(lambda: answers == [True])
        other.database.client.client_kill_filter(_type="normal", skipme=True)
        await _until(lambda: node._conn is None)  # the loop's reader saw the close
        node.touch_registration(attrs.evolve(r, last_update=5800.0))
        node.commit_async(answers.append)
        await _until(lambda: len(answers) == 2)

    asyncio.run(main())
    assert answers == [True, True]
    assert other.get_registration("id1").last_update == 5800.0  # type: ignore[union-attr]


def test_the_loops_own_commit_is_asynchronous_and_the_drivers_waits_for_it(
    async_stores: tuple[RedisStore, RedisStore],
) -> None:
    """The store's own turn after a write (armed by the first write of the iteration, so it
    runs before the CoAP driver's flush) sends the script without waiting for Redis; the
    driver's ``commit_async`` then has nothing to send and waits for that commit, so the
    iteration's replies still leave only after its writes are in Redis."""
    node, other = async_stores
    r = reg(1)
    node.put_registration(r)
    answers: list[bool] = []

    async def main() -> None:
        node.touch_registration(attrs.evolve(r, last_update=5900.0))
        await asyncio.sleep(0)  # the store's turn: sent, not waited for
        node.commit_async(answers.append)  # the driver's flush, later in the iteration
        assert answers == []
        await _until(lambda: answers == [True])

    asyncio.run(main())
    assert other.get_registration("id1").last_update == 5900.0  # type: ignore[union-attr]


def test_an_async_commit_answers_its_held_registers_before_releasing_the_replies(
    async_stores: tuple[RedisStore, RedisStore],
) -> None:
    """With the asynchronous commit, a held Register's ``done`` runs when the commit's answer
    is read, before the driver's ``done`` (which releases the iteration's replies): the node's
    memory is settled before the 2.01 leaves."""
    node, other = async_stores
    seen: list[str] = []

    async def main() -> None:
        node.put_registration_later(reg(1), lambda ok, _: seen.append(f"register {ok}"))
        node.commit_async(lambda ok: seen.append(f"replies {ok}"))
        assert seen == []  # sent, not answered
        await _until(lambda: len(seen) == 2)

    asyncio.run(main())
    assert seen == ["register True", "replies True"]
    assert other.get_registration("id1") == reg(1)
