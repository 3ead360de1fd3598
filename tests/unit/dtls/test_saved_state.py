"""An established session exported as ``SavedState`` and restored into a new engine (what the
CoAPs endpoint does across a server restart): the peer keeps using its session, no sequence
number is reused, and no record accepted before the export is accepted again."""

from __future__ import annotations

import dataclasses

import pytest

from keystore.dtls import (
    ApplicationData,
    ConfigError,
    ConnectionStateError,
    DtlsEngine,
    LruSessionCache,
    SavedState,
)
from keystore.dtls.drops import DropReason
from keystore.dtls.events import RecordDropped
from keystore.dtls.record import parse_datagram

from .conftest import ALL_MODES, ConfigFactory
from .harness import Link


def _established(configs: ConfigFactory, mode: str, suite: int | None, **server: object) -> Link:
    c, s = configs(mode, suite, client={"connection_id": b""}, server={"cid_length": 6, **server})
    link = Link(c, s)
    assert link.handshake()
    link.exchange_data()
    return link


@pytest.mark.parametrize(("mode", "suite"), ALL_MODES)
def test_restored_server_continues_the_session(
    configs: ConfigFactory, mode: str, suite: int
) -> None:
    link = _established(configs, mode, suite)
    server = link.server
    assert server is not None
    link.client.send_application_data(b"before")
    (before,) = link.client.datagrams_to_send()
    assert server.receive_datagram(before, 1.0) == [ApplicationData(b"before")]
    state = server.export_state()
    assert state.read_top == parse_datagram(before, 6)[0].seq
    reserved = state.write_seq + 1000
    restored = DtlsEngine.restore(
        link.server_config, dataclasses.replace(state, write_seq=reserved), link.addr
    )
    assert restored.is_established and restored.peer_identity == server.peer_identity
    assert restored.connection_id == server.connection_id
    # the peer's next record is accepted, a record from before is a replay
    link.client.send_application_data(b"after")
    (after,) = link.client.datagrams_to_send()
    assert restored.receive_datagram(after, 2.0) == [ApplicationData(b"after")]
    assert restored.receive_datagram(before, 2.0) == [RecordDropped(DropReason.REPLAY)]
    # our side jumps to the reserved sequence number, and the client accepts it
    restored.send_application_data(b"answer")
    (answer,) = restored.datagrams_to_send()
    assert parse_datagram(answer)[0].seq == reserved
    assert link.client.receive_datagram(answer, 2.0) == [ApplicationData(b"answer")]
    assert restored.next_write_seq == reserved + 1


def test_state_is_only_for_established_sessions(configs: ConfigFactory) -> None:
    c, s = configs("psk")
    engine = DtlsEngine.server(s)
    with pytest.raises(ConnectionStateError):
        engine.export_state()
    link = Link(c, s)
    assert link.handshake() and link.server is not None
    link.server.close()
    with pytest.raises(ConnectionStateError):
        link.server.export_state()


def test_secret_is_not_in_repr(configs: ConfigFactory) -> None:
    link = _established(configs, "psk", None)
    assert link.server is not None
    state = link.server.export_state()
    assert state.master_secret.hex() not in repr(state)
    assert repr(state.master_secret) not in repr(state)


def test_restore_refuses_a_state_that_does_not_fit(configs: ConfigFactory) -> None:
    link = _established(configs, "psk", None)
    assert link.server is not None
    state: SavedState = link.server.export_state()
    c, s = configs("psk")
    with pytest.raises(ConfigError):
        DtlsEngine.restore(c, state)  # a client config for a server session
    other_suite = [x for x in s.cipher_suites if x != state.cipher_suite]
    with pytest.raises(ConfigError):
        DtlsEngine.restore(dataclasses.replace(s, cipher_suites=other_suite), state)


def test_restored_session_can_be_resumed(configs: ConfigFactory) -> None:
    cache = LruSessionCache()
    link = _established(configs, "psk", None, session_cache=cache)
    assert link.server is not None and link.client.session is not None
    state = link.server.export_state()
    fresh_cache = LruSessionCache()
    c, s = configs("psk", server={"session_cache": fresh_cache})
    DtlsEngine.restore(s, state)
    assert fresh_cache.get(state.session_id) is not None
    resume = Link(dataclasses.replace(c, session=link.client.session), s)
    assert resume.handshake()
    assert resume.complete(resume.server_events)[0].resumed
