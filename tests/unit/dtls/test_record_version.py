"""Record-layer versions: an initial ClientHello may carry any DTLS record version (Mbed TLS
2.x puts its configured *minimum* there, ``FE 00`` for an SSL 3.0 minimum); every other record
must carry DTLS 1.2/1.0, and protected records the negotiated DTLS 1.2 (issue 9, item 1)."""

from __future__ import annotations

from keystore.dtls import ClientConfig, CookieVerifier, DtlsEngine, ServerConfig
from keystore.dtls.buffer import Buffer
from keystore.dtls.constants import ContentType, HandshakeType
from keystore.dtls.drops import DropReason
from keystore.dtls.events import RecordDropped
from keystore.dtls.messages import pull_handshake_fragment
from keystore.dtls.record import encode_record, is_client_hello, parse_datagram

from .conftest import ConfigFactory
from .harness import Link

ADDR = ("192.0.2.44", 5684)

#: The first ClientHello of an Mbed TLS 2.28 client (PSK, TLS_PSK_WITH_AES_128_CCM_8, SNI
#: "localhost", encrypt_then_mac, extended_master_secret, session ticket), recorded from
#: python-mbedtls, with the record version bytes as an SSL 3.0-minimum build writes them:
#: ``FE 00`` (the body's client_version is ``FE FD``).
MBEDTLS_HELLO_FE00 = bytes.fromhex(
    "16fe000000000000000000006e010000620000000000000062fefd6b1556ea15ea0c4d279dae43d46ee6957e"
    "52c69a4c86ac36b8e7b8bd9b14054d00000004c0a800ff010000340000000e000c0000096c6f63616c686f73"
    "74000d0012001006030601050305010403040103030301001600000017000000230000"
)


def _psk_server() -> ServerConfig:
    return ServerConfig(
        cipher_suites=ClientConfig(psk_identity=b"i", psk=b"k").cipher_suites,
        psk_for_identity=lambda identity: b"\x13" * 16,
    )


def _handshake_type(datagram: bytes) -> int:
    (record,) = parse_datagram(datagram)
    return pull_handshake_fragment(Buffer(record.fragment)).msg_type


def test_recorded_mbedtls_hello_with_fe00_gets_hello_verify_request() -> None:
    assert MBEDTLS_HELLO_FE00[1:3] == b"\xfe\x00" and is_client_hello(MBEDTLS_HELLO_FE00)
    reply, ok = CookieVerifier().server_handle_initial_datagram(MBEDTLS_HELLO_FE00, ADDR, 0.0)
    assert reply is not None and not ok
    assert _handshake_type(reply) == HandshakeType.HELLO_VERIFY_REQUEST


def test_recorded_mbedtls_hello_with_fe00_is_answered_by_the_engine() -> None:
    server = DtlsEngine.server(_psk_server(), ADDR)
    events = server.receive_datagram(MBEDTLS_HELLO_FE00, 0.0, ADDR)
    assert not [e for e in events if isinstance(e, RecordDropped)]
    flight = server.datagrams_to_send()
    assert flight and _handshake_type(flight[0][: 13 + int.from_bytes(flight[0][11:13])]) == (
        HandshakeType.SERVER_HELLO
    )
    assert flight[0][1:3] == b"\xfe\xfd"  # we answer with the version we negotiated


def _rewrite_hello_version(batch: list[bytes], first: int) -> list[bytes]:
    """Every ClientHello datagram of the client goes out with record version FE00, as an
    Mbed TLS 2.x client with an SSL 3.0 minimum sends both of them (with and without cookie)."""
    return [d[:1] + b"\xfe\x00" + d[3:] if is_client_hello(d) else d for d in batch]


def test_full_handshake_with_fe00_client_hellos(configs: ConfigFactory) -> None:
    for mode in ("psk", "x509"):
        c, s = configs(mode)
        link = Link(c, s, c2s=_rewrite_hello_version)
        assert link.handshake(), mode
        hellos = [d for d in link.wire_c2s if is_client_hello(d)]
        assert len(hellos) == 2  # without and with cookie
        link.exchange_data()


def test_other_records_keep_strict_versions(configs: ConfigFactory) -> None:
    # an epoch-0 handshake record that is not a ClientHello
    server_hello = bytes([HandshakeType.SERVER_HELLO]) + b"\x00" * 11
    assert parse_datagram(encode_record(ContentType.HANDSHAKE, 0xFE00, 0, 0, server_hello)) == []
    # an epoch-0 alert
    assert parse_datagram(encode_record(ContentType.ALERT, 0xFE00, 0, 0, b"\x02\x28")) == []
    # a protected record must carry the negotiated DTLS 1.2, not 1.0
    c, s = configs("psk")
    link = Link(c, s)
    assert link.handshake() and link.server is not None
    link.client.send_application_data(b"data")
    (datagram,) = link.client.datagrams_to_send()
    relabelled = datagram[:1] + b"\xfe\xff" + datagram[3:]
    assert link.server.receive_datagram(relabelled, 1.0) == [RecordDropped(DropReason.BAD_VERSION)]
    assert link.server.receive_datagram(b"\x17\xfe\x00" + datagram[3:], 1.0) == [
        RecordDropped(DropReason.BAD_VERSION)
    ]
