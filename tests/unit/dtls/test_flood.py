"""A spoofed ClientHello flood (issue 11, item 6), in memory: the endpoint answers a
cookie-less ClientHello with a HelloVerifyRequest and keeps nothing; it serves sessions and
cookie-verified ClientHellos before it answers cookie-less ones, within its HelloVerifyRequest
budget (the rest dropped and counted); handshakes in progress are capped and timed out.

The ``DtlsEndpoint`` runs on the test's event loop with a recording transport instead of a
socket; "one loop iteration" is a run of ``datagram_received`` calls, ended by yielding to
the loop once (``settle``), which is when the endpoint answers the queued ClientHellos.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keystore.coaps.endpoint import DtlsEndpoint, EndpointSettings
from keystore.coaps.sessions import Session
from keystore.dtls import ClientConfig, DtlsEngine
from keystore.dtls.buffer import Buffer, Writer
from keystore.dtls.constants import DTLS_1_0, ContentType, HandshakeType
from keystore.dtls.cookie import CookieVerifier, scan_client_hello
from keystore.dtls.errors import DecodeError
from keystore.dtls.messages import (
    ClientHello,
    HelloVerifyRequest,
    encode_handshake,
    pull_client_hello,
    pull_handshake_fragment,
    push_hello_verify_request,
)
from keystore.dtls.record import encode_record, parse_datagram, parse_datagram_checked

from .conftest import ConfigFactory

DEVICE = ("192.0.2.10", 40000)


class Wire:
    """The endpoint's transport: records what it sends, in order."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, Any]] = []

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def to(self, addr: Any) -> list[bytes]:
        return [d for d, a in self.sent if a == addr]

    def take(self, addr: Any) -> list[bytes]:
        mine = self.to(addr)
        self.sent = [(d, a) for d, a in self.sent if a != addr]
        return mine


class Listener:
    def __init__(self) -> None:
        self.data: list[bytes] = []

    def session_established(self, session: Session) -> None:
        pass

    def application_data(self, session: Session, data: bytes) -> None:
        self.data.append(data)

    def session_closed(self, session: Session, reason: str) -> None:
        pass


def is_hvr(datagram: bytes) -> bool:
    return datagram[0] == ContentType.HANDSHAKE and datagram[13] == (
        HandshakeType.HELLO_VERIFY_REQUEST
    )


def spoofed(i: int) -> tuple[str, int]:
    return (f"198.51.100.{i % 250 + 1}", 1024 + i)


async def settle() -> None:
    """End the current loop iteration: the endpoint's end-of-batch callback runs."""
    await asyncio.sleep(0)


@pytest.fixture
async def endpoint_for(
    configs: ConfigFactory,
) -> Any:
    made: list[DtlsEndpoint] = []

    def make(**settings: Any) -> tuple[DtlsEndpoint, Wire, Listener, ClientConfig]:
        client, server = configs("psk")
        listener = Listener()
        endpoint = DtlsEndpoint(
            listener, server_config=server, settings=EndpointSettings(**settings)
        )
        wire = Wire()
        endpoint.transport = wire  # type: ignore[assignment]
        made.append(endpoint)
        return endpoint, wire, listener, client

    yield make
    for endpoint in made:
        await endpoint.shutdown()


def first_hello(config: ClientConfig, now: float = 0.0) -> tuple[DtlsEngine, bytes]:
    client = DtlsEngine.client(config)
    client.connect(now)
    (datagram,) = client.datagrams_to_send()
    return client, datagram


async def cookie_hello(
    endpoint: DtlsEndpoint, wire: Wire, config: ClientConfig, addr: Any
) -> tuple[DtlsEngine, bytes]:
    """A client at ``addr`` after the cookie round trip: its ClientHello with the cookie."""
    client, hello = first_hello(config)
    endpoint.datagram_received(hello, addr)
    await settle()
    (hvr,) = wire.take(addr)
    client.receive_datagram(hvr, 0.0)
    (second,) = client.datagrams_to_send()
    return client, second


async def complete(endpoint: DtlsEndpoint, wire: Wire, client: DtlsEngine, addr: Any) -> None:
    """Ferry datagrams between ``client`` and the endpoint until neither sends more."""
    for _ in range(20):
        moved = False
        for datagram in client.datagrams_to_send():
            endpoint.datagram_received(datagram, addr)
            moved = True
        await settle()
        for datagram in wire.take(addr):
            client.receive_datagram(datagram, 0.0)
            moved = True
        if not moved:
            break
    assert client.is_established


# -- the stateless cookie path ----------------------------------------------------------------


async def test_cookieless_client_hello_gets_a_hello_verify_request_and_leaves_no_state(
    endpoint_for: Any,
) -> None:
    endpoint, wire, _, config = endpoint_for()
    _, hello = first_hello(config)
    endpoint.datagram_received(hello, DEVICE)
    await settle()
    (reply,) = wire.to(DEVICE)
    assert is_hvr(reply)
    assert len(endpoint.sessions) == 0 and endpoint.handshakes_in_progress == 0
    assert endpoint.stats.hello_verify_requests == 1 and endpoint.stats.handshakes_started == 0
    assert endpoint.stats.dropped == 0


def test_hello_verify_request_bytes_are_the_encoders(configs: ConfigFactory) -> None:
    """The reply built from raw slices is exactly what the message encoders produce: record
    sequence number of the ClientHello, its message_seq, DTLS 1.0 versions, a 32-byte cookie
    over the fields RFC 6347 §4.2.1 names."""
    client, _ = configs("psk")
    engine = DtlsEngine.client(client)
    engine.connect(0.0)
    engine.datagrams_to_send()
    engine.handle_timer(1.0)  # a retransmission: record sequence number 1
    (hello,) = engine.datagrams_to_send()
    verifier = CookieVerifier()
    scan = scan_client_hello(hello)
    assert isinstance(scan, tuple)
    reply = verifier.hello_verify_request(hello, scan, DEVICE, 5.0)

    (rec,) = parse_datagram(hello)
    frag = pull_handshake_fragment(Buffer(rec.fragment))
    parsed = pull_client_hello(Buffer(frag.body))
    w = Writer()
    push_hello_verify_request(
        w, HelloVerifyRequest(DTLS_1_0, verifier.make_cookie(DEVICE, parsed, 5.0))
    )
    body = encode_handshake(HandshakeType.HELLO_VERIFY_REQUEST, frag.message_seq, w.getvalue())
    assert rec.seq == 1
    assert reply == encode_record(ContentType.HANDSHAKE, DTLS_1_0, 0, rec.seq, body)


# -- prioritisation and the budget --------------------------------------------------------------


async def test_sessions_and_valid_cookies_are_served_before_cookieless_hellos(
    endpoint_for: Any,
) -> None:
    endpoint, wire, listener, config = endpoint_for(hello_rate=100.0)  # 10 per batch at most
    # an established device, and another one back with its cookie
    device, hello = first_hello(config)
    endpoint.datagram_received(hello, DEVICE)
    await settle()
    for datagram in wire.take(DEVICE):
        device.receive_datagram(datagram, 0.0)
    await complete(endpoint, wire, device, DEVICE)
    newcomer_addr = ("192.0.2.11", 40001)
    newcomer, with_cookie = await cookie_hello(endpoint, wire, config, newcomer_addr)
    device.send_application_data(b"uplink")
    (record,) = device.datagrams_to_send()
    wire.sent.clear()
    dropped_before = endpoint.stats.hellos_dropped

    # one batch: 40 spoofed hellos, the device's record, the newcomer's hello, 40 more
    flood = first_hello(config)[1]
    for i in range(40):
        endpoint.datagram_received(flood, spoofed(i))
    endpoint.datagram_received(record, DEVICE)
    endpoint.datagram_received(with_cookie, newcomer_addr)
    for i in range(40, 80):
        endpoint.datagram_received(flood, spoofed(i))

    # handled at once, within the batch: the record is delivered, the newcomer's handshake
    # runs (its server flight is out), and not one HelloVerifyRequest has been sent yet
    assert listener.data == [b"uplink"]
    assert endpoint.handshakes_in_progress == 1
    assert wire.to(newcomer_addr) and not any(is_hvr(d) for d, _ in wire.sent)
    served = len(wire.sent)

    await settle()  # end of the batch: the queued hellos, within the budget
    answered = wire.sent[served:]
    assert all(is_hvr(d) for d, _ in answered)
    assert 0 < len(answered) <= 10
    dropped = endpoint.stats.hellos_dropped - dropped_before
    assert len(answered) + dropped == 80
    assert endpoint.stats.drops["hello_overload"] == endpoint.stats.hellos_dropped
    assert len(endpoint.sessions) == 2  # the device and the newcomer, nothing for the flood

    for datagram in wire.take(newcomer_addr):
        newcomer.receive_datagram(datagram, 0.0)
    await complete(endpoint, wire, newcomer, newcomer_addr)


async def test_a_garbage_cookie_does_not_skip_the_queue(endpoint_for: Any) -> None:
    endpoint, wire, _, config = endpoint_for()
    _, hello = first_hello(config)
    scan = scan_client_hello(hello)
    assert isinstance(scan, tuple)
    at = scan[0]
    # the same ClientHello with a made-up 32-byte cookie
    length = int.from_bytes(hello[11:13], "big") + 32
    body_len = int.from_bytes(hello[14:17], "big") + 32
    forged = (
        hello[:11] + length.to_bytes(2, "big") + hello[13:14] + body_len.to_bytes(3, "big")
        + hello[17:22] + body_len.to_bytes(3, "big") + hello[25:at] + bytes([32])
        + bytes(range(32)) + hello[at + 1:]
    )  # fmt: skip
    endpoint.datagram_received(forged, DEVICE)
    assert wire.sent == []  # queued like a cookie-less one
    await settle()
    (reply,) = wire.to(DEVICE)
    assert is_hvr(reply) and len(endpoint.sessions) == 0


# -- half-open handshakes -----------------------------------------------------------------------


async def test_handshakes_in_progress_are_capped_and_timed_out(endpoint_for: Any) -> None:
    endpoint, wire, _, config = endpoint_for(max_handshakes=2, handshake_timeout=5.0)
    loop = asyncio.get_running_loop()
    addrs = [("192.0.2.20", 5000 + i) for i in range(4)]
    hellos = [await cookie_hello(endpoint, wire, config, a) for a in addrs]

    started = loop.time()
    for (_, hello), addr in zip(hellos[:2], addrs[:2], strict=True):
        endpoint.datagram_received(hello, addr)
    begun = loop.time()
    assert endpoint.handshakes_in_progress == 2 and wire.to(addrs[0]) and wire.to(addrs[1])

    endpoint.datagram_received(hellos[2][1], addrs[2])  # a third, over the cap
    assert wire.to(addrs[2]) == []
    assert endpoint.stats.handshakes_refused == 1
    assert endpoint.stats.drops["handshake_limit"] == 1
    assert len(endpoint.sessions) == 2

    # explicit clock: not yet at handshake_timeout, then past it
    assert endpoint.expire_handshakes(started + 5.0 - 0.001) == 0
    assert endpoint.expire_handshakes(begun + 5.0) == 2
    assert endpoint.stats.handshakes_timed_out == 2
    assert len(endpoint.sessions) == 0 and endpoint.handshakes_in_progress == 0

    # room again: the refused client's retransmitted ClientHello (cookie still valid) gets in
    endpoint.datagram_received(hellos[2][1], addrs[2])
    assert endpoint.handshakes_in_progress == 1
    client, _ = hellos[2]
    for datagram in wire.take(addrs[2]):
        client.receive_datagram(datagram, 0.0)
    await complete(endpoint, wire, client, addrs[2])
    assert endpoint.handshakes_in_progress == 0  # completed: no longer counted
    assert endpoint.stats.handshakes_completed == 1
    assert endpoint.expire_handshakes(begun + 1000.0) == 0  # an established session stays
    assert len(endpoint.sessions) == 1


@pytest.mark.parametrize(
    "settings",
    [{"max_handshakes": 0}, {"handshake_timeout": 0.0}, {"hello_rate": -1.0}],
)
def test_invalid_flood_limits_are_refused(settings: dict[str, Any]) -> None:
    (name,) = settings
    with pytest.raises(ValueError, match=name):
        EndpointSettings(**settings)


# -- the raw scan agrees with the message parsers -------------------------------------------------


def _parsed(data: bytes) -> ClientHello | None:
    """The ClientHello as the full parsers read it (None: not one whole epoch-0 hello)."""
    records, _ = parse_datagram_checked(data)
    if not records or records[0].content_type != ContentType.HANDSHAKE or records[0].epoch:
        return None
    try:
        frag = pull_handshake_fragment(Buffer(records[0].fragment))
        if frag.msg_type != HandshakeType.CLIENT_HELLO or not frag.is_complete:
            return None
        return pull_client_hello(Buffer(frag.body))
    except DecodeError:
        return None


@settings(max_examples=300)
@given(flips=st.lists(st.tuples(st.integers(0, 200), st.integers(1, 255)), max_size=3))
def test_scan_accepts_every_hello_the_parser_accepts(
    configs: ConfigFactory, flips: list[tuple[int, int]]
) -> None:
    """No valid ClientHello is dropped by the raw scan, and where the scan finds the cookie
    the parser finds the same cookie."""
    _, hello = first_hello(configs("psk")[0])
    data = bytearray(hello)
    for pos, x in flips:
        data[pos % len(data)] ^= x
    parsed = _parsed(bytes(data))
    scan = scan_client_hello(bytes(data))
    if parsed is not None:
        assert isinstance(scan, tuple)
    if isinstance(scan, tuple) and parsed is not None:
        at = scan[0]
        assert bytes(data[at + 1 : at + 1 + data[at]]) == parsed.cookie
