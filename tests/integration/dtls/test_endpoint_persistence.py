"""The CoAPs endpoint's session persistence rules, over real loopback sockets with an in-memory
store that records what it was given (docs/coaps-transport.md, "Sessions survive a restart"):

* the session is stored before our Finished goes out (a client that completed its handshake
  always finds its session after a crash);
* every record we send has a sequence number below the reservation the store held when it went
  out, also when the reservation is small and must be renewed often;
* the replay window is stored before the reply to the records it accepted;
* a session that ends is deleted; a restored endpoint serves the old session;
* a store that fails never costs the service (the session runs unpersisted) and never lets a
  sequence number past the stored reservation out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from keystore.coaps import DtlsEndpoint, EndpointSettings, Session
from keystore.coaps.persistence import SessionProgress, StoredSession
from keystore.dtls import ApplicationData, ClientConfig, ServerConfig
from keystore.dtls.record import parse_datagram

from .conftest import eventually
from .rawpeer import RawPeer, RawSocket

PSK_ID, PSK = b"device", b"0123456789abcdef"


class MemoryStore:
    """``DtlsSessionStore`` in a dict; ``fail`` makes every write raise."""

    def __init__(self) -> None:
        self.rows: dict[str, StoredSession] = {}
        self.writes = 0
        self.fail = False
        self.lose_answer = False
        """Writes are made, then the call raises (an answer lost after Redis wrote)."""
        self.ever_written: set[str] = set()

    def load_dtls_sessions(self) -> list[StoredSession]:
        return list(self.rows.values())

    def save_dtls_sessions(
        self,
        new: Sequence[StoredSession],
        progress: Sequence[SessionProgress],
        removed: Sequence[str],
    ) -> None:
        if self.fail:
            raise OSError("disk full")
        self.writes += 1
        for row in new:
            self.rows[row.id] = row
        for p in progress:
            old = self.rows[p.id]
            state = dataclasses.replace(
                old.state,
                write_seq=max(old.state.write_seq, p.write_seq),
                read_top=p.read_top,
                read_bitmap=p.read_bitmap,
            )
            self.rows[p.id] = StoredSession(p.id, p.host, p.port, state, p.saved_at)
        for row_id in removed:
            self.rows.pop(row_id, None)
        self.ever_written.update(row.id for row in new)
        if self.lose_answer:
            raise TimeoutError("the answer was lost")

    def remove_dtls_sessions(self, ids: Sequence[str]) -> None:
        for row_id in ids:
            self.rows.pop(row_id, None)

    def only(self) -> StoredSession:
        (row,) = self.rows.values()
        return row


class Echo:
    """Listener that answers every record with ``echo:`` + the record, on the same session."""

    def __init__(self) -> None:
        self.endpoint: DtlsEndpoint | None = None
        self.closed: list[str] = []

    def session_established(self, session: Session) -> None:
        pass

    def application_data(self, session: Session, data: bytes) -> None:
        assert self.endpoint is not None
        self.endpoint.send(session, b"echo:" + data)

    def session_closed(self, session: Session, reason: str) -> None:
        self.closed.append(reason)


SERVER = ServerConfig(
    cipher_suites=ClientConfig(psk_identity=b"i", psk=b"k").cipher_suites,
    psk_for_identity=lambda identity: PSK if identity == PSK_ID else None,
)


async def open_endpoint(store: MemoryStore, **settings: Any) -> DtlsEndpoint:
    listener = Echo()
    endpoint = await DtlsEndpoint.open(
        listener,
        ("127.0.0.1", 0),
        server_config=SERVER,
        settings=EndpointSettings(session_store=store, **settings),
    )
    listener.endpoint = endpoint
    return endpoint


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def endpoint(store: MemoryStore) -> AsyncIterator[DtlsEndpoint]:
    endpoint = await open_endpoint(store)
    yield endpoint
    await endpoint.shutdown()


async def connect(endpoint: DtlsEndpoint, **config: Any) -> RawPeer:
    return await RawPeer.connect(
        endpoint.local_address, ClientConfig(psk_identity=PSK_ID, psk=PSK, **config)
    )


async def echo(peer: RawPeer, data: bytes, store: MemoryStore | None = None) -> bytes | None:
    """Send a record, return the decrypted answer. With ``store``: check that the answer's
    sequence number is below the reservation the store holds now (it went out after it)."""
    peer.send(data)
    deadline = peer._now() + 5
    while peer._now() < deadline:
        datagram = await peer.socket.receive(max(0.01, deadline - peer._now()))
        if datagram is None:
            return None
        if store is not None:
            for record in parse_datagram(datagram, None):
                if record.epoch == 1:
                    assert record.seq < store.only().state.write_seq
        for event in peer.engine.receive_datagram(datagram, peer._now()):
            if isinstance(event, ApplicationData):
                return event.data
    return None


async def test_stored_before_our_finished(endpoint: DtlsEndpoint, store: MemoryStore) -> None:
    peer = await connect(endpoint)
    try:
        # the client completed: it had our Finished, so the row was already written
        row = store.only()
        assert row.state.peer_identity.identity == PSK_ID  # type: ignore[union-attr]
        assert row.state.write_seq >= endpoint.settings.reserve_ahead
        assert (row.host, row.port) == ("127.0.0.1", peer.socket.port)
    finally:
        peer.close()


async def test_replay_window_stored_before_the_reply(
    endpoint: DtlsEndpoint, store: MemoryStore
) -> None:
    peer = await connect(endpoint)
    try:
        for _ in range(3):
            peer.engine.send_application_data(b"x")  # nothing goes out: skip a few numbers
        peer.engine.datagrams_to_send()
        sent = peer.send(b"hello")
        seq = parse_datagram(sent)[0].seq
        deadline = peer._now() + 5
        while peer._now() < deadline:
            datagram = await peer.socket.receive(5)
            assert datagram is not None
            # the reply is out: the window holding the record it answers is stored
            assert store.only().state.read_top == seq
            events = peer.engine.receive_datagram(datagram, peer._now())
            if [e for e in events if isinstance(e, ApplicationData)]:
                break
    finally:
        peer.close()


async def test_small_reservations_are_renewed_ahead(store: MemoryStore) -> None:
    endpoint = await open_endpoint(store, reserve_ahead=4)
    peer = await connect(endpoint)
    try:
        for i in range(20):
            assert await echo(peer, b"%d" % i, store) == b"echo:%d" % i
        # downlink bursts without uplink: 10 records in one go
        (session,) = endpoint.sessions
        for _ in range(10):
            endpoint.send(session, b"down")
        got = 0
        while got < 10:
            datagram = await peer.socket.receive()
            assert datagram is not None
            for record in parse_datagram(datagram):
                assert record.seq < store.only().state.write_seq
            got += sum(
                isinstance(e, ApplicationData)
                for e in peer.engine.receive_datagram(datagram, peer._now())
            )
    finally:
        peer.close()
        await endpoint.shutdown()


async def test_ended_session_is_deleted(endpoint: DtlsEndpoint, store: MemoryStore) -> None:
    peer = await connect(endpoint)
    peer.engine.close()  # close_notify
    peer.flush()
    await eventually(lambda: not store.rows and len(endpoint.sessions) == 0)
    peer.close()


async def test_restored_endpoint_serves_the_old_session(store: MemoryStore) -> None:
    first = await open_endpoint(store)
    port = first.local_address[1]
    peer = await connect(first)
    try:
        assert await echo(peer, b"one") == b"echo:one"
        captured = peer.sent[-1]
        await first.shutdown()  # graceful: the session is kept, no close_notify
        assert len(store.rows) == 1
        assert await peer.socket.receive(0.2) is None
        second = await open_endpoint_on(store, port)
        try:
            assert second.stats.sessions_restored == 1
            assert await echo(peer, b"two", store) == b"echo:two"
            peer.socket.send(captured)
            await eventually(lambda: second.stats.drops.get("replay") == 1)
        finally:
            await second.shutdown()
    finally:
        peer.close()


async def open_endpoint_on(store: MemoryStore, port: int) -> DtlsEndpoint:
    listener = Echo()
    endpoint = await DtlsEndpoint.open(
        listener,
        ("127.0.0.1", port),
        server_config=SERVER,
        settings=EndpointSettings(session_store=store),
    )
    listener.endpoint = endpoint
    return endpoint


async def test_idle_stored_session_is_not_restored(store: MemoryStore) -> None:
    first = await open_endpoint(store)
    peer = await connect(first)
    await first.shutdown()
    peer.close()
    row = store.only()
    store.rows[row.id] = dataclasses.replace(row, saved_at=row.saved_at - 2 * 86400)
    second = await open_endpoint(store)
    try:
        assert second.stats.sessions_restored == 0 and not store.rows
    finally:
        await second.shutdown()


async def test_failing_store_costs_persistence_not_service(store: MemoryStore) -> None:
    store.fail = True
    endpoint = await open_endpoint(store, store_retry=0.05)
    peer = await connect(endpoint)
    try:
        assert await echo(peer, b"still") == b"echo:still"
        assert endpoint.stats.session_write_failures >= 1 and not store.rows
    finally:
        peer.close()
        await endpoint.shutdown()


async def test_a_new_session_whose_failed_save_was_written_is_deleted(store: MemoryStore) -> None:
    """A save that raised may have been written all the same (an answer lost after Redis
    wrote, a store of several steps that failed half way): the session runs unpersisted,
    and the row, whose reservation it will go past, is deleted by the retried deletions."""
    store.lose_answer = True
    endpoint = await open_endpoint(store, store_retry=0.05)
    peer = await connect(endpoint)
    try:
        assert await echo(peer, b"still") == b"echo:still"
        assert endpoint.stats.session_write_failures >= 1 and len(store.ever_written) == 1
        store.lose_answer = False
        await eventually(lambda: not store.rows)
        assert await echo(peer, b"again") == b"echo:again"
    finally:
        peer.close()
        await endpoint.shutdown()


async def test_failing_store_never_lets_an_unreserved_number_out(store: MemoryStore) -> None:
    endpoint = await open_endpoint(store, reserve_ahead=4, store_retry=0.05)
    peer = await connect(endpoint)
    try:
        assert await echo(peer, b"a", store) == b"echo:a"
        reserved = store.only().state.write_seq
        store.fail = True
        (session,) = endpoint.sessions
        for _ in range(8):
            if session in endpoint.sessions:
                endpoint.send(session, b"down")
        seqs: list[int] = []
        while (datagram := await peer.socket.receive(0.5)) is not None:
            seqs += [r.seq for r in parse_datagram(datagram)]
        assert seqs and max(seqs) < reserved
        await eventually(lambda: len(endpoint.sessions) == 0)  # dropped: peer re-handshakes
    finally:
        peer.close()
        await endpoint.shutdown()


async def test_restored_session_keeps_its_connection_id(store: MemoryStore) -> None:
    """After the restart the device's NAT binding changed too: its CID still finds the
    session, which moves to the new address (and the store follows)."""
    first = await open_endpoint(store)
    port = first.local_address[1]
    peer = await connect(first, connection_id=b"")
    try:
        assert await echo(peer, b"one") == b"echo:one"
        cid = store.only().state.own_cid
        assert cid is not None and len(cid) == 6
        await first.shutdown()
        second = await open_endpoint_on(store, port)
        try:
            assert second.sessions.by_cid(cid) is not None
            old_socket = peer.socket
            peer.socket = await RawSocket.open(("127.0.0.1", port))
            old_socket.close()
            assert await echo(peer, b"two", store) == b"echo:two"
            await eventually(lambda: store.only().port == peer.socket.port)
            assert second.stats.address_changes == 1
        finally:
            await second.shutdown()
    finally:
        peer.close()
