"""Failures end with the right alert; forged, replayed and malformed input is dropped."""

from __future__ import annotations

import itertools

import pytest

from keystore.dtls import (
    AlertDescription,
    AlertLevel,
    AlertReceived,
    ApplicationData,
    ConnectionClosed,
    DtlsEngine,
)
from keystore.dtls.constants import ContentType, HandshakeType
from keystore.dtls.drops import DropReason
from keystore.dtls.events import RecordDropped
from keystore.dtls.messages import encode_handshake, encode_handshake_fragment
from keystore.dtls.record import encode_record

from . import pki
from .conftest import PSK, ConfigFactory, Pki
from .harness import Link

A = AlertDescription


def _alerts(link: Link) -> tuple[int | None, int | None]:
    """(alert the server closed with, alert the client closed with)."""
    s = link.closed(link.server_events)
    c = link.closed(link.client_events)
    return (s[0].alert if s else None, c[0].alert if c else None)


def _established(configs: ConfigFactory, mode: str = "psk") -> Link:
    link = Link(*configs(mode))
    assert link.handshake()
    return link


# -- handshake failures --------------------------------------------------------------------------


def test_wrong_psk_fails_with_bad_record_mac(configs: ConfigFactory) -> None:
    c, s = configs("psk", client={"psk": b"not the right key"})
    link = Link(c, s)
    assert not link.handshake()
    server_alert, client_alert = _alerts(link)
    assert server_alert == A.bad_record_mac  # the client's Finished cannot be decrypted
    assert client_alert == A.bad_record_mac  # ... and the client learns it from the alert
    assert link.closed(link.client_events)[0].by_peer
    assert link.now < 1.0  # no waiting for timers


def test_unknown_psk_identity(configs: ConfigFactory) -> None:
    c, s = configs("psk", client={"psk_identity": b"who-am-i"})
    link = Link(c, s)
    assert not link.handshake()
    assert _alerts(link) == (A.unknown_psk_identity, A.unknown_psk_identity)


def test_psk_lookup_exception_is_internal_error(configs: ConfigFactory) -> None:
    def boom(identity: bytes) -> bytes:
        raise RuntimeError("db down")

    c, s = configs("psk", server={"psk_for_identity": boom})
    link = Link(c, s)
    assert not link.handshake()
    assert _alerts(link)[0] == A.internal_error


def test_untrusted_client_certificate(configs: ConfigFactory, test_pki: Pki) -> None:
    c, s = configs("x509", server={"trust_store": [test_pki.other_ca]})
    link = Link(c, s)
    assert not link.handshake()
    assert _alerts(link) == (A.bad_certificate, A.bad_certificate)


def test_untrusted_server_certificate(configs: ConfigFactory, test_pki: Pki) -> None:
    c, s = configs("x509", client={"trust_store": [test_pki.other_ca]})
    link = Link(c, s)
    assert not link.handshake()
    assert _alerts(link) == (A.bad_certificate, A.bad_certificate)


@pytest.mark.parametrize("when", ["expired", "not_yet_valid"])
def test_client_certificate_outside_validity(
    configs: ConfigFactory, test_pki: Pki, when: str
) -> None:
    if when == "expired":
        key, cert = pki.make_leaf(
            "old", test_pki.ca_key, test_pki.ca, pki.NOW - 10 * pki.DAY, pki.NOW - pki.DAY
        )
    else:
        key, cert = pki.make_leaf(
            "new", test_pki.ca_key, test_pki.ca, pki.NOW + pki.DAY, pki.NOW + 10 * pki.DAY
        )
    c, s = configs("x509", client={"private_key": key, "certificate_chain": [pki.der(cert)]})
    link = Link(c, s)
    assert not link.handshake()
    assert _alerts(link)[0] == A.certificate_expired


def test_server_clock_decides_validity(configs: ConfigFactory, test_pki: Pki) -> None:
    c, s = configs("x509", server={"clock": lambda: pki.NOW + 400 * pki.DAY})
    link = Link(c, s)
    assert not link.handshake()
    assert _alerts(link)[0] == A.certificate_expired


def test_client_certificate_with_intermediate(configs: ConfigFactory, test_pki: Pki) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    inter_key = pki.new_key()
    inter = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Intermediate")]))
        .issuer_name(test_pki.ca.subject)
        .public_key(inter_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(pki.NOW - pki.DAY)
        .not_valid_after(pki.NOW + 100 * pki.DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(inter_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(test_pki.ca_key.public_key()),
            critical=False,
        )
        .sign(test_pki.ca_key, hashes.SHA256())
    )
    key, leaf = pki.make_leaf("dev", inter_key, inter)
    chain = [pki.der(leaf), pki.der(inter)]
    c, s = configs("x509", client={"private_key": key, "certificate_chain": chain})
    link = Link(c, s)
    assert link.handshake()
    assert link.complete(link.server_events)[0].peer_identity.chain == tuple(chain)  # type: ignore[union-attr]


def test_certificate_key_mismatch_fails_certificate_verify(
    configs: ConfigFactory, test_pki: Pki
) -> None:
    # a valid certificate, but the client signs with another key
    c, s = configs("x509", client={"private_key": pki.new_key()})
    link = Link(c, s)
    assert not link.handshake()
    assert _alerts(link)[0] == A.decrypt_error


def test_rpk_refused_by_verifier(configs: ConfigFactory) -> None:
    c, s = configs("rpk", server={"verify_rpk": lambda spki: False})
    link = Link(c, s)
    assert not link.handshake()
    assert _alerts(link) == (A.bad_certificate, A.bad_certificate)


def test_server_rpk_refused_by_client(configs: ConfigFactory) -> None:
    c, s = configs("rpk", client={"verify_rpk": lambda spki: False})
    link = Link(c, s)
    assert not link.handshake()
    assert _alerts(link) == (A.bad_certificate, A.bad_certificate)


def test_rpk_verifier_exception_is_a_refusal(configs: ConfigFactory) -> None:
    def boom(spki: bytes) -> bool:
        raise KeyError

    c, s = configs("rpk", server={"verify_rpk": boom})
    link = Link(c, s)
    assert not link.handshake()
    assert _alerts(link)[0] == A.bad_certificate


def test_rpk_client_against_x509_only_server(configs: ConfigFactory, test_pki: Pki) -> None:
    c, _ = configs("rpk")
    _, s = configs("x509", server={"verify_rpk": None})
    link = Link(c, s)
    assert not link.handshake()
    assert _alerts(link)[0] == A.handshake_failure


def test_no_common_suite(configs: ConfigFactory) -> None:
    c, _ = configs("psk")
    _, s = configs("rpk")
    link = Link(c, s)
    assert not link.handshake()
    assert _alerts(link) == (A.handshake_failure, A.handshake_failure)


def test_tampered_finished_is_decrypt_error(configs: ConfigFactory) -> None:
    """A Finished that decrypts but carries the wrong verify_data."""
    link = Link(*configs("psk"))
    link.client.connect(0.0)
    link.flush()
    link.flush()  # client has the server flight now and queued CKE/CCS/Finished
    hs = link.client._hs
    assert hs is not None
    # Replace the queued flight's Finished with a wrong one, sealed with the right keys.
    link.client.datagrams_to_send()
    epoch, ctype, mtype, seq, _ = hs.flight[-1]
    hs.flight[-1] = (epoch, ctype, mtype, seq, b"\x00" * 12)
    link.client._transmit(hs.flight)
    link.flush()
    assert _alerts(link)[0] == A.decrypt_error


# -- established-session robustness -------------------------------------------------------------


def test_replayed_record_is_dropped(configs: ConfigFactory) -> None:
    link = _established(configs)
    assert link.server is not None
    link.client.send_application_data(b"once")
    (datagram,) = link.client.datagrams_to_send()
    first = link.server.receive_datagram(datagram, 1.0)
    again = link.server.receive_datagram(datagram, 2.0)
    assert first == [ApplicationData(b"once")]
    assert again == [RecordDropped(DropReason.REPLAY)]
    assert link.server.is_established


def test_reordered_records_within_window_are_accepted(configs: ConfigFactory) -> None:
    link = _established(configs)
    assert link.server is not None
    grams = []
    for i in range(70):
        link.client.send_application_data(bytes([i]))
        grams += link.client.datagrams_to_send()
    got = []
    # Record numbers are i + 1 (the Finished used 0). After the newest (70) arrives, the window
    # holds 7..70: grams[6] is 63 behind and accepted, grams[5] is 64 behind and dropped.
    for d in [grams[69], *grams[6:69], grams[5], grams[0]]:
        got += link.server.receive_datagram(d, 1.0)
    assert [e.data for e in got if isinstance(e, ApplicationData)] == [
        bytes([69]),
        *[bytes([i]) for i in range(6, 69)],
    ]


@pytest.mark.parametrize("position", [-1, -5, 14, 20, 3])
def test_tampered_record_is_dropped_silently(configs: ConfigFactory, position: int) -> None:
    link = _established(configs)
    assert link.server is not None
    link.client.send_application_data(b"payload-payload")
    (datagram,) = link.client.datagrams_to_send()
    bad = bytearray(datagram)
    bad[position] ^= 0x40
    # byte 3 is in the epoch field: a record of an epoch that does not exist
    reason = DropReason.UNKNOWN_EPOCH if position == 3 else DropReason.BAD_MAC
    assert link.server.receive_datagram(bytes(bad), 1.0) == [RecordDropped(reason)]
    assert link.server.datagrams_to_send() == []  # no alert for bad_record_mac
    assert link.server.receive_datagram(datagram, 1.0) == [ApplicationData(b"payload-payload")]


def test_plaintext_records_after_handshake_are_ignored(configs: ConfigFactory) -> None:
    link = _established(configs)
    assert link.server is not None
    forged_alert = encode_record(ContentType.ALERT, 0xFEFD, 0, 99, b"\x02\x28")
    forged_data = encode_record(ContentType.APPLICATION_DATA, 0xFEFD, 0, 100, b"evil")
    assert link.server.receive_datagram(forged_alert + forged_data, 1.0) == [
        RecordDropped(DropReason.STALE_EPOCH),
        RecordDropped(DropReason.STALE_EPOCH),
    ]
    assert link.server.is_established


def test_renegotiation_client_hello_gets_warning(configs: ConfigFactory) -> None:
    link = _established(configs)
    assert link.server is not None
    body = encode_handshake(HandshakeType.CLIENT_HELLO, 7, b"\xfe\xfd" + b"\x00" * 40)
    link.client._out.append(link.client._seal(1, ContentType.HANDSHAKE, body))
    link.flush()
    assert AlertReceived(AlertLevel.WARNING, A.no_renegotiation) in link.client_events
    assert link.server.is_established and link.client.is_established
    link.exchange_data()


def test_hello_request_gets_no_renegotiation(configs: ConfigFactory) -> None:
    link = _established(configs)
    assert link.server is not None
    body = encode_handshake(HandshakeType.HELLO_REQUEST, 9, b"")
    link.server._out.append(link.server._seal(1, ContentType.HANDSHAKE, body))
    link.flush()
    link.flush()
    assert AlertReceived(AlertLevel.WARNING, A.no_renegotiation) in link.server_events
    link.exchange_data()


def test_fatal_alert_from_peer_closes(configs: ConfigFactory) -> None:
    link = _established(configs)
    assert link.server is not None
    link.server._send_alert(AlertLevel.FATAL, A.internal_error)
    link.flush()
    assert link.client.is_closed
    assert link.closed(link.client_events) == [
        ConnectionClosed("peer sent a fatal alert", A.internal_error, by_peer=True)
    ]


def test_application_data_api_guards(configs: ConfigFactory) -> None:
    from keystore.dtls import ConnectionStateError

    c, _ = configs("psk")
    engine = DtlsEngine.client(c)
    with pytest.raises(ConnectionStateError):
        engine.send_application_data(b"too early")
    link = _established(configs)
    with pytest.raises(ValueError):
        link.client.send_application_data(b"x" * (2**14 + 1))


# -- malformed handshake input ------------------------------------------------------------------


def _server_mid_handshake(configs: ConfigFactory) -> Link:
    link = Link(*configs("psk"))
    link.client.connect(0.0)
    link.flush()
    link.flush()
    link.client.datagrams_to_send()  # withhold the client's second flight
    assert link.server is not None and not link.server.is_closed
    return link


def _hs_record(seq: int, fragment: bytes) -> bytes:
    return encode_record(ContentType.HANDSHAKE, 0xFEFD, 0, seq, fragment)


@pytest.mark.parametrize(
    "fragment",
    [
        b"",  # empty handshake record
        b"\x10\x00",  # truncated header
        encode_handshake_fragment(16, 2, 10, 8, b"abcd"),  # fragment beyond its message
        encode_handshake_fragment(16, 2, 2**24 - 1, 0, b"a"),  # absurd total length
        encode_handshake_fragment(16, 2, 100_000, 0, b"a" * 10),  # larger than we buffer
        encode_handshake_fragment(16, 7, 5, 0, b"abcde"),  # far-future message_seq
        encode_handshake_fragment(16, 3, 20, 10, b"x" * 10),  # out of order, partial
        encode_handshake_fragment(16, 1, 5, 0, b"abcde"),  # old message_seq
    ],
)
def test_odd_handshake_fragments_do_not_crash(configs: ConfigFactory, fragment: bytes) -> None:
    link = _server_mid_handshake(configs)
    assert link.server is not None
    events = link.server.receive_datagram(_hs_record(50, fragment), 0.5)
    assert all(not isinstance(e, ConnectionClosed) for e in events)
    assert not link.server.is_closed


def test_malformed_client_key_exchange_is_decode_error(configs: ConfigFactory) -> None:
    link = _server_mid_handshake(configs)
    assert link.server is not None
    body = b"\x00\x40" + b"short"  # identity length says 64, only 5 bytes follow
    events = link.server.receive_datagram(
        _hs_record(50, encode_handshake_fragment(16, 2, len(body), 0, body)), 0.5
    )
    assert link.closed(events)[0].alert == A.decode_error


def test_unexpected_message_type(configs: ConfigFactory) -> None:
    link = _server_mid_handshake(configs)
    assert link.server is not None
    body = b"\x00" * 12
    events = link.server.receive_datagram(
        _hs_record(50, encode_handshake_fragment(HandshakeType.FINISHED, 2, 12, 0, body)), 0.5
    )
    assert link.closed(events)[0].alert == A.unexpected_message


def test_psk_identity_longer_than_128_is_refused(configs: ConfigFactory) -> None:
    link = _server_mid_handshake(configs)
    assert link.server is not None
    identity = b"i" * 129
    body = len(identity).to_bytes(2, "big") + identity
    events = link.server.receive_datagram(
        _hs_record(50, encode_handshake_fragment(16, 2, len(body), 0, body)), 0.5
    )
    assert link.closed(events)[0].alert == A.illegal_parameter


def test_handshake_fragments_in_any_order_are_reassembled(configs: ConfigFactory) -> None:
    """Split the client's ClientKeyExchange into three fragments, send them backwards + dup."""
    link = _server_mid_handshake(configs)
    assert link.server is not None
    hs = link.client._hs
    assert hs is not None
    (_, _, msg_type, seq, body), *rest = hs.flight
    cuts = [0, 3, 9, len(body)]
    pieces = [
        link.client._seal(
            0,
            ContentType.HANDSHAKE,
            encode_handshake_fragment(msg_type, seq, len(body), a, body[a:b]),
        )
        for a, b in itertools.pairwise(cuts)
    ]
    for d in [pieces[2], pieces[1], pieces[1], pieces[0]]:
        link.server_events += link.server.receive_datagram(d, 0.5)
    link.client._transmit(rest)
    assert link.run_until(link.both_complete)
    link.exchange_data()
    assert PSK  # the fixture PSK was used on both sides
