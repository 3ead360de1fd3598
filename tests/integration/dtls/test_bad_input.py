"""What the CoAPs listener does with peers that are wrong, hostile or unlucky: wrong key,
unknown identity, untrusted/expired certificates, a certificate naming no known endpoint, a
flood of ClientHellos from spoofed addresses, replayed and tampered records, garbage, a
rebooted client, NAT rebinding with a Connection ID, idle eviction, and the NoSec rules.
Never a crash: each test ends with the server still serving."""

from __future__ import annotations

import asyncio
import logging
import os
import random

import pytest

from keystore.coaps import address_key
from keystore.dtls import AlertDescription, ClientConfig, ConnectionClosed, DtlsEngine
from lwm2m_client.client import Lwm2mClient, Lwm2mClientError
from lwm2m_server.service import Lwm2mServer
from object_models.path import LwM2mPath

from . import coap
from .conftest import coaps_port, eventually
from .pki import PSK_IDENTITY, PSK_KEY, Device, Pki
from .rawpeer import RawPeer, RawSocket

PSK_SUITES = ClientConfig(psk_identity=b"x", psk=b"y").cipher_suites


def psk_config(identity: bytes = PSK_IDENTITY, key: bytes = PSK_KEY, **kw: object) -> ClientConfig:
    return ClientConfig(psk_identity=identity, psk=key, **kw)  # type: ignore[arg-type]


def cert_config(device: Device, pki: Pki) -> ClientConfig:
    return ClientConfig(
        private_key=device.key, certificate_chain=[device.cert_der], trust_store=[pki.ca]
    )


def server_addr(server: Lwm2mServer) -> tuple[str, int]:
    return ("127.0.0.1", coaps_port(server))


async def still_serving(server: Lwm2mServer) -> None:
    """A good device can still register (and the server reads /3/0 from it)."""
    peer = await RawPeer.connect(server_addr(server), psk_config())
    try:
        peer.send(coap.register("dev-psk"))
        answer = await peer.receive()
        assert answer is not None and str(coap.decode(answer).code) == "2.01 Created"
    finally:
        peer.close()


async def failed_handshake(server: Lwm2mServer, config: ClientConfig) -> ConnectionClosed:
    socket = await RawSocket.open(server_addr(server))
    peer = RawPeer(socket, config)
    try:
        with pytest.raises(ConnectionError):
            await peer.handshake(timeout=3)
    finally:
        peer.close()
    (closed,) = [e for e in peer.events if isinstance(e, ConnectionClosed)]
    await eventually(lambda: len(server.dtls.sessions) == 0)
    return closed


# -- credentials ------------------------------------------------------------------------------


async def test_wrong_psk_is_logged_once_without_the_key(
    server: Lwm2mServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = b"wrong-key-123456"
    closed = await failed_handshake(server, psk_config(key=wrong))
    assert closed.alert == AlertDescription.bad_record_mac and closed.by_peer
    failures = [r for r in caplog.records if "DTLS handshake with 127.0.0.1:" in r.getMessage()]
    assert len(failures) == 1 and failures[0].levelno == logging.WARNING
    assert "bad_record_mac" in failures[0].getMessage()
    text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (wrong, PSK_KEY):
        assert secret.decode() not in text and secret.hex() not in text
    assert server.dtls.stats.handshakes_failed == 1
    await still_serving(server)


async def test_unknown_psk_identity(server: Lwm2mServer) -> None:
    closed = await failed_handshake(server, psk_config(identity=b"nobody"))
    assert closed.alert == AlertDescription.unknown_psk_identity
    await still_serving(server)


@pytest.mark.parametrize(
    ("device", "alert"),
    [
        ("untrusted_device", AlertDescription.bad_certificate),
        ("expired_device", AlertDescription.certificate_expired),
    ],
)
async def test_refused_certificates(
    server: Lwm2mServer, pki: Pki, device: str, alert: AlertDescription
) -> None:
    closed = await failed_handshake(server, cert_config(getattr(pki, device), pki))
    assert closed.alert == alert
    await still_serving(server)


async def test_unknown_raw_public_key(server: Lwm2mServer, pki: Pki) -> None:
    config = ClientConfig(
        private_key=pki.stranger_device.key, verify_rpk=lambda spki: True, connection_id=None
    )
    closed = await failed_handshake(server, config)
    assert closed.alert == AlertDescription.bad_certificate


async def test_certificate_naming_no_known_endpoint_cannot_register(
    server: Lwm2mServer, pki: Pki
) -> None:
    # issued by the trusted CA, so the handshake succeeds; no device record, no auto-registration
    peer = await RawPeer.connect(server_addr(server), cert_config(pki.stranger_device, pki))
    try:
        for endpoint in ("nobody-knows-me", "dev-x509"):
            peer.send(coap.register(endpoint, mid=len(endpoint)))
            answer = await peer.receive()
            assert answer is not None
            assert str(coap.decode(answer).code) == (
                "4.01 Unauthorized" if endpoint == "nobody-knows-me" else "4.03 Forbidden"
            )
        assert server.clients() == []
    finally:
        peer.close()


async def test_nosec_rules_with_open_registration_off(server: Lwm2mServer) -> None:
    client = Lwm2mClient("dev-psk", f"coap://127.0.0.1:{server.coap_address.port}",
                         auto_update=False)  # fmt: skip
    stranger = Lwm2mClient("stranger", f"coap://127.0.0.1:{server.coap_address.port}",
                           auto_update=False)  # fmt: skip
    try:
        await client.start()
        await stranger.start()
        with pytest.raises(Lwm2mClientError) as secured:
            await client.register()  # a PSK endpoint over NoSec
        with pytest.raises(Lwm2mClientError) as unknown:
            await stranger.register()
        assert int(secured.value.code) == 0x83  # 4.03
        assert int(unknown.value.code) == 0x81  # 4.01
    finally:
        await client.stop()
        await stranger.stop()


# -- floods, replays, tampering, garbage ------------------------------------------------------


def client_hello() -> bytes:
    engine = DtlsEngine.client(psk_config())
    engine.connect(0.0)
    (datagram,) = engine.datagrams_to_send()
    return datagram


async def test_client_hello_flood_from_spoofed_addresses_creates_no_session(
    server: Lwm2mServer,
) -> None:
    endpoint = server.dtls
    hello = client_hello()
    rng = random.Random(7)
    for _ in range(3000):
        # spoofed sources anywhere in 127/8: the HelloVerifyRequests go nowhere useful
        spoofed = (f"127.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                   rng.randrange(1024, 65535))  # fmt: skip
        endpoint.datagram_received(hello, spoofed)
        # and a ClientHello carrying a made-up cookie
        endpoint.datagram_received(hello[:59] + bytes([0]) + hello[60:], spoofed)
        # one loop iteration per pair, as a socket read would deliver them: the endpoint
        # answers cookie-less ClientHellos after each batch, within a per-batch budget
        await asyncio.sleep(0)
    # real sockets that never answer the HelloVerifyRequest
    sockets = [await RawSocket.open(server_addr(server)) for _ in range(20)]
    try:
        for sock in sockets:
            for _ in range(10):
                sock.send(client_hello())
        replies = [await sock.receive(2) for sock in sockets]
        assert all(r is not None and r[0] == 22 and r[13] == 3 for r in replies)  # HVR
    finally:
        for sock in sockets:
            sock.close()
    assert len(endpoint.sessions) == 0
    assert endpoint.stats.handshakes_started == 0
    assert endpoint.stats.hello_verify_requests >= 3000
    await still_serving(server)


async def test_replayed_and_tampered_records_are_dropped(server: Lwm2mServer) -> None:
    peer = await RawPeer.connect(server_addr(server), psk_config())
    try:
        record = peer.send(coap.register("dev-psk"))
        answer = await peer.receive()
        assert answer is not None and str(coap.decode(answer).code) == "2.01 Created"
        # a replay would make aiocoap repeat its cached 2.01 (same message id): DTLS drops it
        peer.socket.send(record)
        assert await peer.receive(0.5) is None
        # tampered: a flipped ciphertext bit fails the AEAD check and is dropped
        tampered = peer.engine
        tampered.send_application_data(coap.register("dev-psk", mid=0x2222))
        (datagram,) = tampered.datagrams_to_send()
        peer.socket.send(datagram[:-1] + bytes([datagram[-1] ^ 1]))
        assert await peer.receive(0.5) is None
        # garbage, from the session's address and from elsewhere
        peer.socket.send(os.urandom(100))
        peer.socket.send(b"\x17\xfe\xfd" + os.urandom(60))
        other = await RawSocket.open(server_addr(server))
        for size in (0, 1, 13, 200, 1500):
            other.send(os.urandom(size))
        other.close()
        # the session survived all of it
        peer.send(coap.register("dev-psk", mid=0x3333))
        answer = await peer.receive()
        assert answer is not None and str(coap.decode(answer).code) == "2.01 Created"
        assert len(server.dtls.sessions) == 1
    finally:
        peer.close()


async def test_duplicated_client_hello_does_not_replace_the_session(server: Lwm2mServer) -> None:
    peer = await RawPeer.connect(server_addr(server), psk_config())
    try:
        (session,) = server.dtls.sessions
        hello_with_cookie = peer.sent[1]  # ClientHello, HelloVerifyRequest, ClientHello + cookie
        peer.socket.send(hello_with_cookie)
        peer.send(coap.register("dev-psk"))
        assert await peer.receive() is not None
        assert list(server.dtls.sessions) == [session]
    finally:
        peer.close()


# -- lifecycle --------------------------------------------------------------------------------


async def test_rebooted_client_replaces_its_session(server: Lwm2mServer) -> None:
    peer = await RawPeer.connect(server_addr(server), psk_config())
    try:
        peer.send(coap.register("dev-psk"))
        assert await peer.receive() is not None
        (old,) = server.dtls.sessions
        # the device reboots: same address, a brand-new handshake
        rebooted = RawPeer(peer.socket, psk_config())
        await rebooted.handshake()
        rebooted.send(coap.register("dev-psk", mid=0x4444))
        answer = await rebooted.receive()
        assert answer is not None and str(coap.decode(answer).code) == "2.01 Created"
        (new,) = server.dtls.sessions
        assert new is not old and old.closed
    finally:
        peer.close()


async def test_nat_rebinding_keeps_the_session_by_connection_id(server: Lwm2mServer) -> None:
    peer = await RawPeer.connect(server_addr(server), psk_config(connection_id=b""))
    try:
        peer.send(coap.register("dev-psk"))
        assert await peer.receive() is not None
        (session,) = server.dtls.sessions
        assert session.cid is not None
        old_port = peer.socket.port
        # the NAT gives the device a new source port
        peer.socket = await RawSocket.open(server_addr(server))
        assert peer.socket.port != old_port
        # the server's downlink still goes to the registered (old) address: it is found there
        peer.send(b"\x40\x00\x12\x99")  # an empty CON (ping) from the new address
        assert await peer.receive() is not None  # aiocoap's RST, sent to the new address
        task = asyncio.ensure_future(server.read("dev-psk", LwM2mPath(3, 0), timeout=5))
        request = await peer.receive(3)
        assert request is not None and coap.decode(request).code.is_request()
        peer.send(coap.answer(coap.decode(request), coap.device_tlv()))
        response = await task
        assert response.dotted_code == "2.05"
        assert session.key == address_key(("127.0.0.1", peer.socket.port))
        assert server.dtls.stats.address_changes == 1
        assert list(server.dtls.sessions) == [session]
    finally:
        peer.close()


async def test_idle_sessions_are_evicted(server: Lwm2mServer) -> None:
    peer = await RawPeer.connect(server_addr(server), psk_config())
    try:
        peer.send(coap.register("dev-psk"))
        assert await peer.receive() is not None
        endpoint = server.dtls
        assert endpoint.evict_idle() == 0  # the default timeout is a day
        assert endpoint.evict_idle(idle_timeout=0) == 1
        assert len(endpoint.sessions) == 0
        # the evicted peer's records are dropped; the downlink says the device is unreachable
        with pytest.raises(Exception, match="unreachable"):
            await server.read("dev-psk", LwM2mPath(3, 0), timeout=2)
    finally:
        peer.close()
    await still_serving(server)


async def test_certificate_devices_added_while_running_need_a_trust_refresh(
    server: Lwm2mServer, pki: Pki
) -> None:
    """X.509 anchors are a snapshot re-read every few seconds (docs/coaps-transport.md);
    PSK and RPK devices are looked up per handshake and need nothing."""
    from keystore.credentials import DeviceCredentials
    from keystore.store.credentials import SqliteCredentialStore

    from . import pki as pki_mod

    late = pki_mod._device(pki.folder, "late", "late-device", issuer=None)
    SqliteCredentialStore(server.store).put_device(DeviceCredentials.for_x509("late", late.cert))
    trust = server.dtls.server_config.trust_store  # type: ignore[union-attr]
    trust.invalidate()  # type: ignore[union-attr]
    peer = await RawPeer.connect(server_addr(server), cert_config(late, pki))
    try:
        peer.send(coap.register("late"))
        answer = await peer.receive()
        assert answer is not None and str(coap.decode(answer).code) == "2.01 Created"
    finally:
        peer.close()
