"""Stateless HelloVerifyRequest cookies: nothing is kept per peer until the cookie returns."""

from __future__ import annotations

from keystore.dtls import CookieVerifier, DtlsEngine, is_client_hello
from keystore.dtls.buffer import Buffer
from keystore.dtls.constants import ContentType, HandshakeType
from keystore.dtls.messages import pull_handshake_fragment, pull_hello_verify_request
from keystore.dtls.record import parse_datagram

from .conftest import ConfigFactory

ADDR = ("192.0.2.1", 5000)


def _client_hello(configs: ConfigFactory) -> tuple[DtlsEngine, bytes]:
    c, _ = configs("psk")
    client = DtlsEngine.client(c)
    client.connect(0.0)
    (datagram,) = client.datagrams_to_send()
    return client, datagram


def _cookie_round(verifier: CookieVerifier, client: DtlsEngine, first: bytes) -> bytes:
    reply, ok = verifier.server_handle_initial_datagram(first, ADDR, 0.0)
    assert reply is not None and not ok
    client.receive_datagram(reply, 0.0)
    (second,) = client.datagrams_to_send()
    return second


def test_first_client_hello_gets_hello_verify_request(configs: ConfigFactory) -> None:
    _, datagram = _client_hello(configs)
    assert is_client_hello(datagram)
    verifier = CookieVerifier()
    reply, ok = verifier.server_handle_initial_datagram(datagram, ADDR, 0.0)
    assert not ok and reply is not None
    assert len(reply) < len(datagram)  # no amplification
    (rec,) = parse_datagram(reply)
    (ch_rec,) = parse_datagram(datagram)
    assert rec.content_type == ContentType.HANDSHAKE and rec.seq == ch_rec.seq
    frag = pull_handshake_fragment(Buffer(rec.fragment))
    assert frag.msg_type == HandshakeType.HELLO_VERIFY_REQUEST and frag.message_seq == 0
    assert len(pull_hello_verify_request(Buffer(frag.body)).cookie) == 32


def test_verifier_keeps_no_per_peer_state(configs: ConfigFactory) -> None:
    verifier = CookieVerifier()
    assert not hasattr(verifier, "__dict__")
    _, datagram = _client_hello(configs)
    verifier.server_handle_initial_datagram(datagram, ADDR, 0.0)  # secrets are made lazily
    before = (verifier._current, verifier._previous)
    for port in range(2000):
        verifier.server_handle_initial_datagram(datagram, ("192.0.2.1", port), 0.5)
    assert (verifier._current, verifier._previous) == before


def test_cookie_round_trip_allows_session(configs: ConfigFactory) -> None:
    client, first = _client_hello(configs)
    verifier = CookieVerifier()
    second = _cookie_round(verifier, client, first)
    assert verifier.server_handle_initial_datagram(second, ADDR, 1.0) == (None, True)


def test_cookie_bound_to_address(configs: ConfigFactory) -> None:
    client, first = _client_hello(configs)
    verifier = CookieVerifier()
    second = _cookie_round(verifier, client, first)
    reply, ok = verifier.server_handle_initial_datagram(second, ("192.0.2.1", 5001), 1.0)
    assert not ok and reply is not None  # a fresh HVR, no session


def test_cookie_expires_after_two_rotations(configs: ConfigFactory) -> None:
    client, first = _client_hello(configs)
    verifier = CookieVerifier(rotation_interval=60.0)
    second = _cookie_round(verifier, client, first)
    assert verifier.server_handle_initial_datagram(second, ADDR, 90.0)[1]  # previous secret
    reply, ok = verifier.server_handle_initial_datagram(second, ADDR, 130.0)
    assert not ok and reply is not None


def test_tampered_cookie_or_hello_is_refused(configs: ConfigFactory) -> None:
    client, first = _client_hello(configs)
    verifier = CookieVerifier()
    second = bytearray(_cookie_round(verifier, client, first))
    # byte 13+12+2+32 is inside the client random: the cookie no longer matches
    second[13 + 12 + 2 + 5] ^= 1
    reply, ok = verifier.server_handle_initial_datagram(bytes(second), ADDR, 1.0)
    assert not ok and reply is not None


def test_garbage_and_non_hello_are_dropped() -> None:
    verifier = CookieVerifier()
    for data in [
        b"",
        b"\x16\xfe\xfd",
        b"\x17\xfe\xfd" + b"\x00" * 20,
        bytes(range(256)),
        b"\x16\xfe\xfd\x00\x01" + b"\x00" * 6 + b"\x00\x0c" + b"\x01" + b"\x00" * 11,  # epoch 1
        # a ClientHello fragment (offset 0, length 10 of 100): refused, no reassembly here
        b"\x16\xfe\xfd" + b"\x00" * 8 + b"\x00\x16" + b"\x01\x00\x00\x64\x00\x00"
        b"\x00\x00\x00\x00\x00\x0a" + b"\x00" * 10,
    ]:
        assert verifier.server_handle_initial_datagram(data, ADDR, 0.0) == (None, False)


def test_hello_verify_loop_is_bounded(configs: ConfigFactory) -> None:
    client, datagram = _client_hello(configs)
    verifier = CookieVerifier()
    for _ in range(6):
        reply, _ = verifier.server_handle_initial_datagram(datagram, ("x", 1), 0.0)
        assert reply is not None
        client.receive_datagram(reply[:-1] + bytes([reply[-1] ^ 1]), 0.0)  # new cookie each time
        out = client.datagrams_to_send()
        if client.is_closed:
            break
        datagram = out[0]
    assert client.is_closed


def test_rebooted_client_starts_over_through_the_verifier(configs: ConfigFactory) -> None:
    """A new epoch-0 ClientHello from a known address is the transport's to route (§4.2.8)."""
    from .harness import Link

    c, s = configs("psk")
    link = Link(c, s)
    assert link.handshake()
    assert link.server is not None
    rebooted = DtlsEngine.client(c)
    rebooted.connect(10.0)
    (hello,) = rebooted.datagrams_to_send()
    assert is_client_hello(hello)
    assert link.server.receive_datagram(hello, 10.0, link.addr) == []  # old session ignores it
    assert link.server.is_established
    reply, ok = CookieVerifier().server_handle_initial_datagram(hello, link.addr, 10.0)
    assert reply is not None and not ok  # the transport answers with a cookie instead
    link.client.send_application_data(b"x")
    (data,) = link.client.datagrams_to_send()
    assert not is_client_hello(data)
