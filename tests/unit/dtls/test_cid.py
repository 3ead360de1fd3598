"""RFC 9146 connection IDs: negotiation, tls12_cid records, and NAT rebinding."""

from __future__ import annotations

import pytest

from keystore.dtls import ApplicationData, PeerAddressChanged, peek_connection_id
from keystore.dtls.constants import ContentType
from keystore.dtls.drops import DropReason
from keystore.dtls.events import RecordDropped

from .conftest import ALL_MODES, ConfigFactory
from .harness import Link

NEW_ADDR = ("198.51.100.7", 61000)


def _cid_link(configs: ConfigFactory, mode: str = "psk", suite: int | None = None) -> Link:
    c, s = configs(mode, suite, client={"connection_id": b""}, server={"cid_length": 6})
    link = Link(c, s)
    assert link.handshake()
    return link


@pytest.mark.parametrize(("mode", "suite"), ALL_MODES, ids=lambda v: getattr(v, "name", v))
def test_cid_records_and_rebinding(configs: ConfigFactory, mode: str, suite: int) -> None:
    link = _cid_link(configs, mode, suite)
    server = link.server
    assert server is not None
    (s_done,) = link.complete(link.server_events)
    cid = s_done.connection_id
    assert cid is not None and len(cid) == 6 and server.connection_id == cid
    assert link.complete(link.client_events)[0].connection_id is None  # client asked for none

    link.client.send_application_data(b"register")
    (datagram,) = link.client.datagrams_to_send()
    assert datagram[0] == ContentType.TLS12_CID
    assert peek_connection_id(datagram, 6) == cid  # the transport demuxes on this
    events = server.receive_datagram(datagram, 1.0, NEW_ADDR)
    assert events == [PeerAddressChanged(link.addr, NEW_ADDR), ApplicationData(b"register")]
    assert server.peer_address == NEW_ADDR

    # replies to the client carry no CID (it asked for a zero-length one)
    server.send_application_data(b"created")
    (reply,) = server.datagrams_to_send()
    assert reply[0] == ContentType.APPLICATION_DATA
    assert link.client.receive_datagram(reply, 1.0) == [ApplicationData(b"created")]


def test_old_record_from_new_address_does_not_move_the_peer(configs: ConfigFactory) -> None:
    link = _cid_link(configs)
    server = link.server
    assert server is not None
    link.client.send_application_data(b"one")
    (first,) = link.client.datagrams_to_send()
    link.client.send_application_data(b"two")
    (second,) = link.client.datagrams_to_send()
    assert server.receive_datagram(second, 1.0, link.addr) == [ApplicationData(b"two")]
    # an older (but not replayed) record from elsewhere: accepted, but no re-mapping
    assert server.receive_datagram(first, 1.0, NEW_ADDR) == [ApplicationData(b"one")]
    assert server.peer_address == link.addr


def test_forged_cid_record_from_new_address_is_dropped(configs: ConfigFactory) -> None:
    link = _cid_link(configs)
    server = link.server
    assert server is not None
    link.client.send_application_data(b"hello")
    (datagram,) = link.client.datagrams_to_send()
    forged = bytearray(datagram)
    forged[-1] ^= 1
    assert server.receive_datagram(bytes(forged), 1.0, NEW_ADDR) == [
        RecordDropped(DropReason.BAD_MAC)
    ]
    assert server.peer_address == link.addr


def test_both_sides_use_cids(configs: ConfigFactory) -> None:
    c, s = configs("psk", client={"connection_id": b"\xaa\xbb"}, server={"cid_length": 4})
    link = Link(c, s)
    assert link.handshake()
    assert link.complete(link.client_events)[0].connection_id == b"\xaa\xbb"
    assert link.server is not None
    link.server.send_application_data(b"x")
    (reply,) = link.server.datagrams_to_send()
    assert peek_connection_id(reply, 2) == b"\xaa\xbb"
    assert link.client.receive_datagram(reply, 1.0) == [ApplicationData(b"x")]
    link.exchange_data()


def test_cid_not_negotiated_when_server_disables_it(configs: ConfigFactory) -> None:
    c, s = configs("psk", client={"connection_id": b""}, server={"cid_length": None})
    link = Link(c, s)
    assert link.handshake()
    assert link.complete(link.server_events)[0].connection_id is None
    link.client.send_application_data(b"x")
    (datagram,) = link.client.datagrams_to_send()
    assert peek_connection_id(datagram, 6) is None


def test_records_without_cid_are_refused_once_negotiated(configs: ConfigFactory) -> None:
    link = _cid_link(configs)
    server = link.server
    assert server is not None
    # Seal a record as if no CID had been negotiated (same keys, classic header).
    peer_cid, link.client._peer_cid = link.client._peer_cid, b""
    link.client.send_application_data(b"no cid")
    link.client._peer_cid = peer_cid
    (datagram,) = link.client.datagrams_to_send()
    assert datagram[0] == ContentType.APPLICATION_DATA
    assert server.receive_datagram(datagram, 1.0) == [RecordDropped(DropReason.MISSING_CID)]


def test_peek_connection_id_rejects_garbage() -> None:
    assert peek_connection_id(b"", 4) is None
    assert peek_connection_id(b"\x19\xfe\xfd" + b"\x00" * 8, 4) is None  # too short
    assert peek_connection_id(b"\x17\xfe\xfd" + b"\x00" * 20, 4) is None  # not tls12_cid
    assert peek_connection_id(b"\x19\xfe\xfd" + b"\x00" * 8 + b"abcd" + b"\x00\x00", 4) == b"abcd"
    assert peek_connection_id(b"\x19\xfe\xfd" + b"\x00" * 20, 0) is None
