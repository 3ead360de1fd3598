"""DTLS sessions across nodes (issue 12, docs/coaps-transport.md "DTLS across nodes"): two
DTLS endpoints ("nodes" A and B), each with its own handle on one real ``redis-server``
(``RedisDtlsSessionStore``: its own owner), over real loopback sockets. The device is our DTLS
client engine (``RawPeer``) behind a small UDP relay that plays the load balancer: it forwards
the device's datagrams to A, then to B, from the same source address (a rebalancing) or from a
new one (a NAT rebinding, with a Connection ID).

What a user sees: after the move the device's next record is answered by B **without a
handshake** (B started none, and B's answer is in the old session); the replay window comes
along (a record A accepted is refused by B); A forgets the session once B claimed it, without a
word to the device; a session deleted from the store is not continued and the device's new
handshake works; a flood of records from unknown peers costs at most the rate-limited number
of store lookups.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest

from keystore.coaps import DtlsEndpoint, EndpointSettings
from keystore.coaps.persistence import SessionProgress, StoredSession
from keystore.dtls.identity import PskIdentity
from keystore.store.redis_database import RedisDatabase
from keystore.store.redis_dtls_sessions import RedisDtlsSessionStore, cid_session_id
from tests.integration.server.conftest import eventually

from .rawpeer import RawPeer, RawSocket
from .test_endpoint_persistence import PSK, PSK_ID, SERVER, Echo

pytest.importorskip("redis")

Address = tuple[str, int]


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, back: Callable[[bytes], None]) -> None:
        self.back = back

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.back(data)


class Relay:
    """Device ⇄ relay ⇄ node. ``target`` says which node gets the device's datagrams;
    ``rebind()`` makes them come from a new source port (a NAT rebinding)."""

    def __init__(self) -> None:
        self.target: Address = ("127.0.0.1", 0)
        self.device: Any = None
        self.front: asyncio.DatagramTransport | None = None
        self.upstream: asyncio.DatagramTransport | None = None
        self._old: list[asyncio.DatagramTransport] = []

    @classmethod
    async def open(cls, target: Address) -> Relay:
        relay = cls()
        relay.target = target
        loop = asyncio.get_running_loop()
        relay.front, _ = await loop.create_datagram_endpoint(
            lambda: _Front(relay), local_addr=("127.0.0.1", 0)
        )
        await relay.rebind()
        return relay

    @property
    def address(self) -> Address:
        assert self.front is not None
        host, port = self.front.get_extra_info("sockname")[:2]
        return str(host), int(port)

    @property
    def source_port(self) -> int:
        assert self.upstream is not None
        return int(self.upstream.get_extra_info("sockname")[1])

    async def rebind(self) -> None:
        loop = asyncio.get_running_loop()
        if self.upstream is not None:
            self._old.append(self.upstream)
        self.upstream, _ = await loop.create_datagram_endpoint(
            lambda: _Upstream(self._to_device), local_addr=("127.0.0.1", 0)
        )

    def _to_device(self, data: bytes) -> None:
        if self.front is not None and self.device is not None:
            self.front.sendto(data, self.device)

    def from_device(self, data: bytes, addr: Any) -> None:
        self.device = addr
        assert self.upstream is not None
        self.upstream.sendto(data, self.target)

    def close(self) -> None:
        for transport in [self.front, self.upstream, *self._old]:
            if transport is not None:
                transport.close()


class _Front(asyncio.DatagramProtocol):
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.relay.from_device(data, addr)


class CountingStore(RedisDtlsSessionStore):
    """The Redis store, counting the lookups that reach Redis."""

    def __init__(self, db: RedisDatabase) -> None:
        super().__init__(db)
        self.finds = 0

    def find_dtls_session(
        self, *, address: tuple[str, int] | None = None, cid: bytes | None = None, cutoff: float
    ) -> StoredSession | None:
        self.finds += 1
        return super().find_dtls_session(address=address, cid=cid, cutoff=cutoff)


async def open_node(db: RedisDatabase, **settings: Any) -> tuple[DtlsEndpoint, CountingStore]:
    store = CountingStore(db)
    listener = Echo()
    endpoint = await DtlsEndpoint.open(
        listener,
        ("127.0.0.1", 0),
        server_config=SERVER,
        settings=EndpointSettings(session_store=store, **settings),
    )
    listener.endpoint = endpoint
    return endpoint, store


def _open_database(request: pytest.FixtureRequest, prefix: str) -> RedisDatabase:
    """One Redis (``redis``) or a three-node Redis Cluster (``redis-cluster``): on a cluster
    each session is in a slot of its own, its indexes in another (docs/cluster.md)."""
    if request.param == "redis-cluster":
        return RedisDatabase(
            request.getfixturevalue("redis_cluster_url"), prefix=prefix, cluster=True
        )
    return RedisDatabase(request.getfixturevalue("redis_url"), prefix=prefix)


@pytest.fixture(params=["redis", "redis-cluster"])
async def db(request: pytest.FixtureRequest) -> AsyncIterator[RedisDatabase]:
    database = _open_database(request, "nodes")
    yield database
    database.close()


@pytest.fixture(params=["redis", "redis-cluster"])
def store_db(request: pytest.FixtureRequest) -> Iterator[RedisDatabase]:
    database = _open_database(request, "claims")
    yield database
    database.close()


def store_in_one_slot_layout(
    db: RedisDatabase, rows: Sequence[StoredSession], *, owner: str = "", indexed: bool = True
) -> None:
    """Write ``rows`` as the one-slot layout before session 7 kept them (docs/cluster.md
    until then: ``{P:dtls}:state|seq|window|owner`` hashes by id, ``addr``/``cid`` indexes,
    which sessions written before session 4 lack: ``indexed=False``)."""
    from keystore.store.dtls_sessions import state_to_json

    client = db.client
    for row in rows:
        state = row.state
        window = f"{row.host}|{row.port}|{state.read_top}|{state.read_bitmap:x}|{row.saved_at!r}"
        client.hset(db.group_key("dtls", "state"), row.id, state_to_json(state))
        client.hset(db.group_key("dtls", "seq"), row.id, str(state.write_seq))
        client.hset(db.group_key("dtls", "window"), row.id, window)
        if owner:
            client.hset(db.group_key("dtls", "owner"), row.id, owner)
        if indexed:
            client.hset(db.group_key("dtls", "addr"), f"{row.host}|{row.port}", row.id)
            if state.own_cid is not None:
                client.hset(db.group_key("dtls", "cid"), state.own_cid.hex(), row.id)
    client.delete(db.group_key("dtls", "layout"))


async def echo(peer: RawPeer, data: bytes) -> bytes | None:
    peer.send(data)
    return await peer.receive(5.0)


async def device(relay: Relay, **config: Any) -> RawPeer:
    from keystore.dtls import ClientConfig

    return await RawPeer.connect(
        relay.address, ClientConfig(psk_identity=PSK_ID, psk=PSK, **config)
    )


def epoch1_seqs(datagrams: Sequence[bytes]) -> list[int]:
    from keystore.dtls.record import parse_datagram

    return [r.seq for d in datagrams for r in parse_datagram(d, None) if r.epoch == 1]


async def test_device_moves_from_a_to_b_without_a_handshake(db: RedisDatabase) -> None:
    a, store_a = await open_node(db)
    b, _ = await open_node(db)
    relay = await Relay.open(a.local_address)
    peer = await device(relay)
    try:
        assert await echo(peer, b"on a") == b"echo:on a"
        accepted_by_a = peer.sent[-1]
        relay.target = b.local_address  # the load balancer moves the device
        assert await echo(peer, b"on b") == b"echo:on b"
        assert b.stats.handshakes_started == 0 and b.stats.hello_verify_requests == 0
        assert b.stats.sessions_adopted == 1 and b.stats.session_lookups == 1
        (held,) = b.sessions
        assert held.claim is not None and held.claim.identity == PskIdentity(PSK_ID)
        # the replay window came along: what A accepted, B refuses
        relay.upstream.sendto(accepted_by_a, relay.target)  # type: ignore[union-attr]
        await eventually(lambda: b.stats.drops.get("replay") == 1)
        # the device goes back to A, which still holds its old copy: A accepts the record, but
        # its write finds that B owns the session, so A forgets it without answering
        relay.target = a.local_address
        peer.send(b"back on a")
        await eventually(lambda: a.stats.sessions_taken_over == 1)
        assert len(a.sessions) == 0 and store_a.count() == 1
        assert await peer.receive(0.5) is None
        # the device retransmits: A now finds the session in the store and claims it back
        assert await echo(peer, b"back on a") == b"echo:back on a"
        assert a.stats.sessions_adopted == 1
        assert a.stats.handshakes_started == 1 and b.stats.handshakes_started == 0
    finally:
        peer.close()
        relay.close()
        await a.shutdown()
        await b.shutdown()


async def test_nodes_never_use_one_sequence_number_twice(db: RedisDatabase) -> None:
    """Every record the device receives from A and then from B has a sequence number it never
    saw before (AES-CCM: a reused number is a reused nonce), with small reservations that A
    keeps renewing."""
    a, _ = await open_node(db, reserve_ahead=4)
    b, _ = await open_node(db, reserve_ahead=4)
    relay = await Relay.open(a.local_address)
    peer = await device(relay)
    received: list[bytes] = []
    original = peer.socket.protocol.datagram_received

    def record(data: bytes, addr: Any) -> None:
        received.append(data)
        original(data, addr)

    peer.socket.protocol.datagram_received = record  # type: ignore[method-assign]
    try:
        for i in range(6):
            assert await echo(peer, b"a%d" % i) == b"echo:a%d" % i
        relay.target = b.local_address
        for i in range(6):
            assert await echo(peer, b"b%d" % i) == b"echo:b%d" % i
        seqs = epoch1_seqs(received)
        assert len(seqs) == 12 and len(set(seqs)) == 12
    finally:
        peer.close()
        relay.close()
        await a.shutdown()
        await b.shutdown()


async def test_cid_device_with_a_new_address_continues_on_b(db: RedisDatabase) -> None:
    a, _ = await open_node(db)
    b, store_b = await open_node(db)
    relay = await Relay.open(a.local_address)
    peer = await device(relay, connection_id=b"")
    try:
        assert await echo(peer, b"on a") == b"echo:on a"
        (row,) = store_b.load_dtls_sessions()
        cid = row.state.own_cid
        assert cid is not None and (row.host, row.port) == ("127.0.0.1", relay.source_port)
        assert row.id == cid_session_id(cid)  # found by CID without the index
        relay.target = b.local_address
        await relay.rebind()  # and a new NAT binding
        assert await echo(peer, b"on b") == b"echo:on b"
        assert b.stats.handshakes_started == 0 and b.stats.sessions_adopted == 1
        assert b.sessions.by_cid(cid) is not None
        assert b.stats.address_changes == 1  # after the record authenticated (RFC 9146 §6)
        # the store follows the new address, and the CID still finds the session there
        await eventually(lambda: store_b.load_dtls_sessions()[0].port == relay.source_port)
        assert store_b.find_dtls_session(cid=cid, cutoff=0) is not None
        assert store_b.find_dtls_session(address=("127.0.0.1", relay.source_port), cutoff=0)
    finally:
        peer.close()
        relay.close()
        await a.shutdown()
        await b.shutdown()


async def test_a_session_whose_cid_is_stored_already_is_saved_under_a_random_id(
    db: RedisDatabase,
) -> None:
    """The endpoint's half of a CID drawn twice: the store refuses the id that names it, and
    the handshake still completes, the session saved under a random id (index path); the
    other session's row is untouched."""
    from tests.unit.dtls.test_session_store import IDENTITIES, state

    a, store_a = await open_node(db)
    other = RedisDtlsSessionStore(db)
    cid = b"\x0a\x0b\x0c\x0d\x0e\x0f"
    taken = StoredSession(
        cid_session_id(cid), "192.0.2.1", 1, state(IDENTITIES[0], own_cid=cid), 9e9
    )
    other.save_owned_dtls_sessions([taken], [], [])
    store_a.new_session_id = lambda _cid: taken.id  # type: ignore[method-assign]
    relay = await Relay.open(a.local_address)
    peer = await device(relay, connection_id=b"")
    try:
        assert await echo(peer, b"on a") == b"echo:on a"
        rows = {row.id: row for row in store_a.load_dtls_sessions()}
        assert rows.pop(taken.id) == taken
        (mine,) = rows.values()
        assert len(mine.id) == 24 and mine.port == relay.source_port
        assert a.stats.sessions_taken_over == 0 and a.stats.handshakes_completed == 1
        assert await echo(peer, b"again") == b"echo:again"
    finally:
        peer.close()
        relay.close()
        await a.shutdown()


async def test_a_session_resumed_by_session_id_is_stored_by_its_new_cid(
    db: RedisDatabase,
) -> None:
    """An abbreviated handshake (the DTLS session id of the first, from A's session cache)
    makes a new session with a new CID: stored under an id that names that CID, and B
    continues it after a NAT rebinding without a handshake."""
    import dataclasses

    from keystore.dtls import LruSessionCache

    store_a = CountingStore(db)
    listener = Echo()
    a = await DtlsEndpoint.open(
        listener,
        ("127.0.0.1", 0),
        server_config=dataclasses.replace(SERVER, session_cache=LruSessionCache(16)),
        settings=EndpointSettings(session_store=store_a),
    )
    listener.endpoint = a
    b, store_b = await open_node(db)
    relay = await Relay.open(a.local_address)
    first = await device(relay, connection_id=b"")
    resumed: RawPeer | None = None
    try:
        assert await echo(first, b"full") == b"echo:full"
        assert first.engine.session is not None and first.engine.session.session_id
        await relay.rebind()
        resumed = await device(relay, connection_id=b"", session=first.engine.session)
        assert resumed.events and any(getattr(e, "resumed", False) for e in resumed.events)
        assert await echo(resumed, b"resumed") == b"echo:resumed"
        ids = {row.id for row in store_b.load_dtls_sessions()}
        cids = {row.state.own_cid for row in store_b.load_dtls_sessions()}
        assert ids == {cid_session_id(c) for c in cids if c} and len(ids) == 2
        relay.target = b.local_address
        await relay.rebind()
        assert await echo(resumed, b"on b") == b"echo:on b"
        assert b.stats.handshakes_started == 0 and b.stats.sessions_adopted == 1
    finally:
        first.close()
        if resumed is not None:
            resumed.close()
        relay.close()
        await a.shutdown()
        await b.shutdown()


async def test_forged_cid_record_does_not_take_the_session_away(db: RedisDatabase) -> None:
    """A CID is visible on the wire: a record carrying it that does not authenticate (forged,
    or a replay of one A accepted) makes B claim nothing, and A keeps serving the device."""
    a, _ = await open_node(db)
    b, _ = await open_node(db)
    relay = await Relay.open(a.local_address)
    peer = await device(relay, connection_id=b"")
    try:
        assert await echo(peer, b"on a") == b"echo:on a"
        replayed = peer.sent[-1]
        forged = bytearray(replayed)
        forged[-1] ^= 1
        spoofer = await RawSocket.open(b.local_address)
        spoofer.send(bytes(forged))
        spoofer.send(replayed)  # another source address: another lookup, refused likewise
        await eventually(lambda: b.stats.session_lookups + b.stats.session_lookups_cached == 2)
        spoofer.close()
        assert b.stats.sessions_adopted == 0 and len(b.sessions) == 0
        assert await echo(peer, b"still a") == b"echo:still a"
        assert a.stats.sessions_taken_over == 0
    finally:
        peer.close()
        relay.close()
        await a.shutdown()
        await b.shutdown()


async def test_deleted_session_is_not_continued_and_a_new_handshake_works(
    db: RedisDatabase,
) -> None:
    a, store_a = await open_node(db)
    b, store_b = await open_node(db)
    relay = await Relay.open(a.local_address)
    peer = await device(relay)
    try:
        assert await echo(peer, b"on a") == b"echo:on a"
        (row,) = store_b.load_dtls_sessions()
        store_a.remove_dtls_sessions([row.id])  # revoked by the operator / A
        relay.target = b.local_address
        peer.send(b"lost")
        await eventually(lambda: b.stats.drops.get("no_session") == 1)
        assert b.stats.sessions_adopted == 0 and store_b.finds == 1
        # the device gives up on its session and handshakes again: B accepts it at once
        fresh = await device(relay)
        try:
            assert await echo(fresh, b"new") == b"echo:new"
            assert b.stats.handshakes_completed == 1
        finally:
            fresh.close()
    finally:
        peer.close()
        relay.close()
        await a.shutdown()
        await b.shutdown()


async def test_unknown_peer_flood_costs_only_rate_limited_lookups(db: RedisDatabase) -> None:
    """Spoofed application-data records from 300 unknown addresses, and 300 more from one
    address: the store sees at most ``lookup_rate`` lookups per second (plus the burst), each
    address at most once per ``lookup_retry``; the rest are dropped and counted."""
    node, store = await open_node(db, lookup_rate=2.0, lookup_retry=60.0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    record = bytes([23, 0xFE, 0xFD, 0, 1]) + bytes(6) + (16).to_bytes(2, "big") + bytes(16)
    sockets = [await RawSocket.open(node.local_address) for _ in range(300)]
    try:
        for sock in sockets:
            sock.send(record)
        for _ in range(300):
            sockets[0].send(record)
        stats = node.stats
        await eventually(lambda: stats.drops.get("no_session", 0) == 600)
        elapsed = loop.time() - started
        assert store.finds == stats.session_lookups
        assert stats.session_lookups <= 1 + 2.0 * elapsed + 1
        assert (
            stats.session_lookups + stats.session_lookups_refused + stats.session_lookups_cached
            == 600
        )
        assert stats.session_lookups_cached >= 299  # the one address, looked up once at most
    finally:
        for sock in sockets:
            sock.close()
        await node.shutdown()


def test_a_lookup_is_one_round_trip_on_one_redis(store_db: RedisDatabase) -> None:
    """What a record from a peer this node does not know costs the event loop: one script on
    one Redis, found or not (it was the index entry, then the session: two); on a Redis
    Cluster the index and the session are in different slots, so still two. A session whose id is
    not plain letters and digits (never one the endpoint makes) is still found (the script
    names it, Python reads it)."""
    from tests.unit.dtls.test_session_store import IDENTITIES, state
    from tests.unit.store.test_redis_group_commit import RoundTrips

    db = store_db
    a, b = RedisDtlsSessionStore(db), RedisDtlsSessionStore(db)
    row = StoredSession("s1", "192.0.2.1", 1000, state(IDENTITIES[0], write_seq=2048), 1.0)
    odd_state = state(IDENTITIES[1], write_seq=10, own_cid=b"odd-cid")
    odd = StoredSession("s-{2}", "192.0.2.2", 2000, odd_state, 1.0)
    a.save_dtls_sessions([row, odd], [], [])
    b.find_dtls_session(address=("192.0.2.8", 8), cutoff=0)  # the scripts are loaded
    trips = RoundTrips(db.client)
    assert b.find_dtls_session(address=("192.0.2.1", 1000), cutoff=0) == row
    found_trips = trips.count
    assert b.find_dtls_session(cid=row.state.own_cid, cutoff=0) == row
    assert b.find_dtls_session(address=("192.0.2.9", 9), cutoff=0) is None  # no entry
    if not db.cluster:  # (a cluster client's pipeline is more than one call to count)
        assert (found_trips, trips.count) == (1, 3)
    assert b.find_dtls_session(address=("192.0.2.2", 2000), cutoff=0) == odd
    assert b.find_dtls_session(cid=odd.state.own_cid, cutoff=0) == odd
    # an idle session is not found, and is deleted with its index entries, by either path
    assert b.find_dtls_session(cid=row.state.own_cid, cutoff=10.0) is None
    assert b.find_dtls_session(address=("192.0.2.2", 2000), cutoff=10.0) is None
    assert b.load_dtls_sessions() == [] and b.count() == 0
    assert not db.client.exists(db.group_key("dtls", "addr"), db.group_key("dtls", "cid"))


async def test_a_lookup_by_cid_is_one_round_trip_on_a_cluster_too(store_db: RedisDatabase) -> None:
    """A session whose id names its CID (what the endpoint makes with this store) is in the
    CID's own slot: a lookup by CID reads it in one round trip on a Redis Cluster too (it was
    the index, then the session: two), and so is a CID nobody has. A session stored before
    (a random id, found through the CID index) is still found, in two on a cluster."""
    from redis.crc import key_slot

    from keystore.store.redis_dtls_sessions import cid_session_id
    from tests.unit.dtls.test_session_store import IDENTITIES, state
    from tests.unit.store.test_redis_group_commit import RoundTrips

    db = store_db
    a, b = RedisDtlsSessionStore(db), RedisDtlsSessionStore(db)
    cid = b"\x0a\x0b\x0c\x0d\x0e\x0f"
    new_id = a.new_session_id(cid)
    assert new_id == cid_session_id(cid) == "c:0a0b0c0d0e0f"
    assert key_slot(a.session_key(new_id).encode()) == key_slot(b"c:0a0b0c0d0e0f")
    assert a.new_session_id(b"\x01\x02\x03") != a.new_session_id(b"\x01\x02\x03")  # short
    assert len(a.new_session_id(None)) == 24
    keyed = StoredSession(new_id, "192.0.2.1", 1000, state(IDENTITIES[0], own_cid=cid), 1.0)
    old_cid = b"\x01\x02\x03\x04\x05\x06"
    old = StoredSession("0123456789abcdef01234567", "192.0.2.2", 2000, state(IDENTITIES[1]), 1.0)
    assert a.save_owned_dtls_sessions([keyed, old], [], []) == []
    b.find_dtls_session(cid=b"nobody", cutoff=0)  # the scripts are loaded
    b.find_dtls_session(address=("192.0.2.8", 8), cutoff=0)
    trips = RoundTrips(db.client)
    assert b.find_dtls_session(cid=cid, cutoff=0) == keyed
    assert trips.count == 1
    assert b.find_dtls_session(cid=b"\xff" * 6, cutoff=0) is None  # no such CID
    assert trips.count == 2
    assert b.find_dtls_session(cid=old_cid, cutoff=0) == old
    assert trips.count == (4 if db.cluster else 3)
    # the address path is the index, as before
    assert b.find_dtls_session(address=("192.0.2.1", 1000), cutoff=0) == keyed
    # a claim, progress and the sweep find the CID-keyed session by its id
    claimed = b.claim_dtls_session(new_id, 1024)
    assert claimed is not None and claimed.state.write_seq == keyed.state.write_seq
    moved = SessionProgress(new_id, "192.0.2.7", 7, 4096, 9, 1, 2.0)
    assert b.save_owned_dtls_sessions([], [moved], []) == []
    assert b.find_dtls_session(cid=cid, cutoff=0).port == 7  # type: ignore[union-attr]
    assert b.find_dtls_session(address=("192.0.2.7", 7), cutoff=0) is not None
    # idle: not found, and deleted with its index entries
    assert b.find_dtls_session(cid=cid, cutoff=10.0) is None
    assert not db.client.exists(a.session_key(new_id))
    assert [r.id for r in b.load_dtls_sessions()] == [old.id]
    assert db.client.hget(db.group_key("dtls", "cid"), cid.hex()) is None


def test_a_cid_drawn_twice_never_overwrites_a_stored_session(store_db: RedisDatabase) -> None:
    """Two nodes whose new sessions drew the same random CID: the second is not written over
    the first (its id is refused and reported); the first is untouched and still found."""
    from tests.unit.dtls.test_session_store import IDENTITIES, state

    db = store_db
    a, b = RedisDtlsSessionStore(db), RedisDtlsSessionStore(db)
    cid = b"\x0a\x0b\x0c\x0d\x0e\x0f"
    first = StoredSession(
        a.new_session_id(cid), "192.0.2.1", 1, state(IDENTITIES[0], own_cid=cid), 1.0
    )
    second = StoredSession(
        b.new_session_id(cid), "192.0.2.2", 2, state(IDENTITIES[1], own_cid=cid, write_seq=9), 2.0
    )
    assert a.save_owned_dtls_sessions([first], [], []) == []
    assert b.save_owned_dtls_sessions([second], [], []) == [second.id]
    assert b.find_dtls_session(cid=cid, cutoff=0) == first
    assert a.save_owned_dtls_sessions([], [], [first.id]) == []  # still the owner's to remove
    assert b.find_dtls_session(cid=cid, cutoff=0) is None
    assert b.save_owned_dtls_sessions([second], [], []) == []  # the CID is free again
    assert b.find_dtls_session(cid=cid, cutoff=0) == second


async def test_a_client_hello_flood_never_asks_redis(db: RedisDatabase) -> None:
    """Cookie-less ClientHellos from 300 unknown addresses (a spoofed flood): every one is
    answered statelessly (HelloVerifyRequest) or dropped over ``hello_rate``, and none costs
    the event loop a Redis round trip: no session lookup, no command on the store's client
    (a ClientHello is not a record of an established session; the credential lookup comes
    only with the cookie's second ClientHello, which a spoofer never gets to send)."""
    from bench.dtls_flood import client_hello
    from tests.unit.store.test_redis_group_commit import RoundTrips

    node, store = await open_node(db)
    trips = RoundTrips(db.client)
    hello = client_hello()
    sockets = [await RawSocket.open(node.local_address) for _ in range(300)]
    try:
        for n, sock in enumerate(sockets):
            sock.send(hello[:27] + n.to_bytes(32, "big") + hello[59:])
        stats = node.stats
        await eventually(lambda: stats.hello_verify_requests + stats.hellos_dropped == 300)
        assert stats.hello_verify_requests > 0
        assert store.finds == 0 and stats.session_lookups == 0
        assert trips.count == 0
    finally:
        for sock in sockets:
            sock.close()
        await node.shutdown()


def test_progress_of_a_session_another_handle_claimed_is_refused(store_db: RedisDatabase) -> None:
    """The store's half of "one writer per session": after B's claim, A's progress and removal
    change nothing and A is told; the reservation B starts from is above anything A used."""
    from tests.unit.dtls.test_session_store import IDENTITIES, state

    db = store_db
    a, b = RedisDtlsSessionStore(db), RedisDtlsSessionStore(db)
    row = StoredSession("s1", "192.0.2.1", 1000, state(IDENTITIES[0], write_seq=2048), 1.0)
    a.save_dtls_sessions([row], [], [])
    found = b.find_dtls_session(address=("192.0.2.1", 1000), cutoff=0)
    assert found == row
    claimed = b.claim_dtls_session("s1", 1024)
    assert claimed is not None and claimed.state.write_seq == 2048
    progress = SessionProgress("s1", "192.0.2.9", 9, 4096, 50, 1, 2.0)
    assert a.save_owned_dtls_sessions([], [progress], []) == ["s1"]
    a.remove_dtls_sessions(["s1"])
    (kept,) = b.load_dtls_sessions()
    assert (kept.host, kept.state.write_seq, kept.state.read_top) == ("192.0.2.1", 3072, 7)
    # idle sessions are not found, and are deleted when looked up
    # A's refused progress left an index entry at its address: ignored (the session says
    # otherwise), and removed with the session
    assert b.find_dtls_session(address=("192.0.2.9", 9), cutoff=0) is None
    # idle sessions are not found, and are deleted (with their index entries) when looked up
    assert b.find_dtls_session(cid=row.state.own_cid, cutoff=10.0) is None
    assert b.load_dtls_sessions() == [] and b.count() == 0
    assert not db.client.exists(db.group_key("dtls", "addr"), db.group_key("dtls", "cid"))


def test_sessions_of_the_one_slot_layout_are_migrated_when_a_handle_opens(
    store_db: RedisDatabase,
) -> None:
    """Rows of the one-slot layout (before session 7) move into one hash per session when a
    handle opens, once per Redis: every session keeps its secrets, reservation, window and
    owner; rows from before the indexes (no ``addr``/``cid`` entry) get theirs, and an address
    a newer session holds (the device handshook again from it) keeps pointing there; a
    damaged row is dropped; nothing of the old layout is left."""
    from tests.unit.dtls.test_session_store import IDENTITIES, state

    db = store_db
    old = StoredSession("s-old", "192.0.2.5", 5000, state(IDENTITIES[0], own_cid=b"old-1"), 1.0)
    stale = StoredSession("s-stale", "192.0.2.6", 6000, state(IDENTITIES[1], own_cid=b"old-2"), 1.5)
    newer = StoredSession(
        "s-new", "192.0.2.6", 6000, state(IDENTITIES[1], own_cid=b"new-3", write_seq=9000), 2.0
    )
    store_in_one_slot_layout(db, [old, stale], indexed=False)
    store_in_one_slot_layout(db, [newer], owner="node-x")
    db.client.hset(db.group_key("dtls", "state"), "s-damaged", "{}")  # no seq, no window
    db.client.set(db.group_key("dtls", "indexed"), "1")

    node = RedisDtlsSessionStore(db)
    assert node.find_dtls_session(address=("192.0.2.5", 5000), cutoff=0) == old
    assert node.find_dtls_session(cid=b"old-1", cutoff=0) == old
    assert node.find_dtls_session(cid=b"old-2", cutoff=0) == stale
    assert node.find_dtls_session(address=("192.0.2.6", 6000), cutoff=0) == newer
    assert node.find_dtls_session(cid=b"new-3", cutoff=0) == newer
    assert node.load_dtls_sessions() == [old, stale, newer] and node.count() == 3
    for name in ("state", "seq", "window", "owner", "indexed"):
        assert not db.client.exists(db.group_key("dtls", name))
    assert RedisDtlsSessionStore(db).migrate_stored_sessions() == 0  # once per Redis
    # the owner came along: the old owner's claim stands against another node's progress
    progress = SessionProgress("s-new", "192.0.2.6", 6000, 10_000, 50, 1, 3.0)
    assert node.save_owned_dtls_sessions([], [progress], []) == ["s-new"]
    claimed = node.claim_dtls_session("s-new", 1024)
    assert claimed is not None and claimed.state.write_seq == 9000
    assert node.save_owned_dtls_sessions([], [progress], []) == []
    assert node.find_dtls_session(cid=b"new-3", cutoff=0).state.write_seq == 10_024  # type: ignore[union-attr]


def test_a_migration_repeated_after_a_kill_keeps_the_larger_reservation(
    store_db: RedisDatabase,
) -> None:
    """A node killed half way through the migration leaves old rows that are migrated again
    by the next handle: a session that moved on since (its reservation renewed in its own
    hash) keeps its newer reservation, never the old one."""
    from tests.unit.dtls.test_session_store import IDENTITIES, state

    db = store_db
    row = StoredSession("s1", "192.0.2.1", 1000, state(IDENTITIES[0], write_seq=2048), 1.0)
    store_in_one_slot_layout(db, [row])
    first = RedisDtlsSessionStore(db)
    first.save_dtls_sessions([], [SessionProgress("s1", "192.0.2.1", 1000, 4096, 9, 1, 2.0)], [])
    store_in_one_slot_layout(db, [row])  # as if the old row's deletion never happened
    assert RedisDtlsSessionStore(db, migrate=False).migrate_stored_sessions() == 1
    (kept,) = first.load_dtls_sessions()
    assert (kept.state.write_seq, kept.state.read_top, kept.saved_at) == (4096, 9, 2.0)


async def test_a_device_continues_after_the_migration_without_a_handshake(
    db: RedisDatabase,
) -> None:
    """The upgrade as a device sees it: its session was stored by a node of the one-slot
    layout; a node of this version opens (migrating it) and answers the device's next record
    in the old session, with no handshake; the replay window came along."""
    a, store_a = await open_node(db)
    relay = await Relay.open(a.local_address)
    peer = await device(relay)
    try:
        assert await echo(peer, b"before") == b"echo:before"
        accepted_before = peer.sent[-1]
        await a.shutdown()  # the old version stops (its sessions stay stored)
        (row,) = store_a.load_dtls_sessions()
        store_a.remove_dtls_sessions([row.id])  # what the old version had is the old layout:
        store_in_one_slot_layout(db, [row], owner=store_a.owner)
        assert (
            store_a.count() == 0
            and store_a.find_dtls_session(cid=None, address=(row.host, row.port), cutoff=0) is None
        )

        b, store_b = await open_node(db)  # the upgraded node: opening it migrates
        try:
            relay.target = b.local_address
            assert await echo(peer, b"after") == b"echo:after"
            assert b.stats.handshakes_started == 0 and b.stats.sessions_adopted == 1
            relay.upstream.sendto(accepted_before, relay.target)  # type: ignore[union-attr]
            await eventually(lambda: b.stats.drops.get("replay") == 1)
            assert store_b.count() == 1
        finally:
            await b.shutdown()
    finally:
        peer.close()
        relay.close()


async def test_idle_stored_sessions_are_expired_by_the_sweep(db: RedisDatabase) -> None:
    """Nobody loads every session at start any more: each node's sweep deletes, a slice at a
    time, the stored sessions idle for ``idle_timeout`` (whichever node made them)."""
    a, store_a = await open_node(db)
    relay = await Relay.open(a.local_address)
    peer = await device(relay)
    try:
        assert await echo(peer, b"on a") == b"echo:on a"
    finally:
        peer.close()
        relay.close()
        await a.shutdown()
    b, store_b = await open_node(db, idle_timeout=3600)
    try:
        b.expire_stored()
        assert store_b.count() == 1  # not idle yet
        (row,) = store_b.load_dtls_sessions()
        store_a.save_dtls_sessions(
            [StoredSession(row.id, row.host, row.port, row.state, row.saved_at - 7200)], [], []
        )
        b.expire_stored()
        assert store_b.count() == 0
        assert store_b.find_dtls_session(address=(row.host, row.port), cutoff=0) is None
    finally:
        await b.shutdown()


async def test_what_cannot_be_a_session_record_costs_no_lookup(db: RedisDatabase) -> None:
    """Garbage, epoch-0 records and a CID record of epoch 0 never reach the store."""
    node, store = await open_node(db)
    sock = await RawSocket.open(node.local_address)
    try:
        header = bytes([0xFE, 0xFD, 0, 0]) + bytes(6)
        for datagram in (
            b"\x17garbage",
            bytes([23]) + header + (16).to_bytes(2, "big") + bytes(16),  # epoch 0
            bytes([25]) + header + bytes(6) + (16).to_bytes(2, "big") + bytes(16),
            bytes([22]) + header + (16).to_bytes(2, "big") + bytes(16),  # handshake
        ):
            sock.send(datagram)
        await eventually(lambda: node.stats.dropped == 4)
        assert node.stats.session_lookups == 0 and store.finds == 0
    finally:
        sock.close()
        await node.shutdown()
