"""A notification is stored only when it comes from the peer its observation is with (issue 11,
item 1; RFC 7252 §5.3.2). The token alone proves nothing: it travels in clear over NoSec, so
anyone who saw it could otherwise write another device's telemetry.

Everything is checked where a user sees it: the datagram the forger gets back (RST), the
telemetry the server stores, the events it publishes and its log. The NoSec cases are here; the
DTLS ones (another device's session, plain CoAP for a DTLS device) are in
``tests/integration/dtls/test_notification_binding.py``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Self

import pytest

from keystore.dtls import ClientConfig
from lwm2m_client.client import Lwm2mClient
from lwm2m_server.service import Lwm2mServer
from object_models.path import LwM2mPath

from ..dtls import pki as pki_mod
from ..dtls.conftest import provisioned_server
from ..dtls.pki import PSK_IDENTITY, PSK_KEY, Pki
from ..dtls.rawpeer import RawPeer as DtlsPeer
from . import rawcoap as raw
from .conftest import ClientFactory, eventually, next_event, server_config

TEMP = LwM2mPath.parse("/3303/0/5700")


def notification(token: bytes, value: str, *, mtype: int = raw.CON, seq: int = 7) -> raw.Msg:
    """A 2.05 notification of ``/3303/0/5700`` as text, on ``token``."""
    options = [(raw.OBSERVE, raw.uint_bytes(seq)), (raw.CONTENT_FORMAT, b"")]
    return raw.Msg(mtype, raw.CONTENT, 0, token, options, value.encode())


def stored_values(server: Lwm2mServer, endpoint: str) -> list[object]:
    return [p.value for p in server.telemetry_history(endpoint, key=str(TEMP))]


def token_of(server: Lwm2mServer, endpoint: str) -> bytes:
    [observation] = server.store.observations_by_endpoint(endpoint)
    return observation.token


async def nothing_published(server: Lwm2mServer, events: object) -> None:
    """No NOTIFICATION was published before now: a probe event is the next one out."""
    server.bus.publish("PROBE", "-", {})
    assert (await next_event(events, "PROBE")).kind == "PROBE"


async def test_notification_from_another_port_is_refused(
    server: Lwm2mServer, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client: Lwm2mClient = await make_client("victim")
    await server.observe("victim", TEMP)
    token = token_of(server, "victim")
    before = stored_values(server, "victim")
    events = server.events()
    forger = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port))
    caplog.set_level(logging.DEBUG, logger="lwm2m_server")
    try:
        # a NON first: dropped silently; the CON after it is answered, so both were handled
        forger.send(notification(token, "-40.0", mtype=raw.NON))
        answer = await forger.exchange(notification(token, "99.5"))
        assert answer.mtype == raw.RST and answer.code == raw.EMPTY
        assert forger.received == []  # no answer at all to the NON
    finally:
        forger.close()
    assert stored_values(server, "victim") == before
    await nothing_published(server, events)
    refusals = [r for r in caplog.records if "refused" in r.getMessage() and "victim" in r.message]
    assert refusals and refusals[0].levelno == logging.WARNING
    assert f"127.0.0.1:{forger.port}" in refusals[0].message
    assert "registered from 127.0.0.1:" in refusals[0].message
    assert [r.levelno for r in refusals[1:]] == [logging.DEBUG]  # rate-limited per host
    assert all(token.hex() not in r.getMessage() for r in caplog.records)

    # the device's own notifications still count, and the observation is intact
    assert server.observations("victim") == [(TEMP,)]
    client.set_value(TEMP, 23.25)
    event = await next_event(events, "NOTIFICATION")
    assert [p["value"] for p in event.data["points"]] == [23.25]
    assert "token" not in event.data
    assert stored_values(server, "victim")[0] == 23.25
    assert client.observations.active


class RawDevice:
    """A NoSec device on a bare UDP socket: answers Observe with 2.05 "20.0" and notifies by
    hand, so that its source port and token are under the test's control."""

    def __init__(self) -> None:
        self.peer: raw.RawPeer

    @classmethod
    async def open(cls, server: Lwm2mServer) -> Self:
        device = cls()
        device.peer = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port), device.handle)
        return device

    def handle(self, msg: raw.Msg) -> raw.Msg:
        options = [(raw.OBSERVE, raw.uint_bytes(1)), (raw.CONTENT_FORMAT, b"")]
        return raw.Msg(raw.ACK, raw.CONTENT, 0, options=options, payload=b"20.0")


async def test_restored_observation_is_bound_to_the_registration(tmp_path: Path) -> None:
    """After a restart the observation comes back from the store and the registration's
    address is the reference; an Update from a new address moves the observation with it."""
    data = tmp_path / "data"
    first = Lwm2mServer(server_config(data))
    await first.start()
    port = first.coap_address.port
    device = await RawDevice.open(first)
    moved: RawDevice | None = None
    forger = await raw.RawPeer.open(("127.0.0.1", port))
    try:
        registration_id = await raw.register(device.peer, "restored")
        await first.observe("restored", TEMP)
        token = token_of(first, "restored")
        await first.stop()

        server = Lwm2mServer(server_config(data, coap_port=port))
        await server.start()
        try:
            assert server.observations("restored") == [(TEMP,)]
            assert (await forger.exchange(notification(token, "99.5"))).mtype == raw.RST
            answer = await device.peer.exchange(notification(token, "21.5"))
            assert answer.mtype == raw.ACK and answer.code == raw.EMPTY
            assert stored_values(server, "restored")[0] == 21.5

            # NAT rebinding: the device updates from a new port; its old port is now a stranger
            moved = await RawDevice.open(server)
            update = raw.request(raw.POST, ["rd", registration_id])
            assert (await moved.peer.exchange(update)).code == raw.CHANGED
            answer = await moved.peer.exchange(notification(token, "22.5", seq=9))
            assert answer.mtype == raw.ACK
            assert (await device.peer.exchange(notification(token, "98.0", seq=10))).mtype == (
                raw.RST
            )
            await eventually(lambda: stored_values(server, "restored")[0] == 22.5)
            assert 98.0 not in stored_values(server, "restored")
            assert 99.5 not in stored_values(server, "restored")
            assert server.observations("restored") == [(TEMP,)]
        finally:
            await server.stop()
    finally:
        for peer in (device.peer, forger, moved.peer if moved else None):
            if peer is not None:
                peer.close()


class SilentDevice(RawDevice):
    """Registers, then keeps the server's next request unanswered (the test answers it later,
    as a separate response, RFC 7252 §5.2.2)."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: raw.Msg | None = None

    def handle(self, msg: raw.Msg) -> raw.Msg | None:  # type: ignore[override]
        self.pending = msg
        return None


async def test_response_from_another_port_is_refused(server: Lwm2mServer) -> None:
    """A response counts only from the peer the request went to (RFC 7252 §5.3.2): a forger
    who learnt the token of a pending Read gets RST and the Read gets the device's answer."""
    device = await SilentDevice.open(server)
    forger = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port))
    try:
        await raw.register(device.peer, "slow")
        read = asyncio.create_task(server.read("slow", TEMP, timeout=20))
        request = await eventually(lambda: device.pending)
        options = [(raw.CONTENT_FORMAT, b"")]
        forged = raw.Msg(raw.CON, raw.CONTENT, 0, request.token, options, b"99.5")
        answer = await forger.exchange(forged)
        assert answer.mtype == raw.RST
        assert not read.done()

        device.peer.send(raw.Msg(raw.ACK, raw.EMPTY, request.mid))  # separate response
        real = raw.Msg(raw.CON, raw.CONTENT, 0, request.token, options, b"21.0")
        assert (await device.peer.exchange(real)).mtype == raw.ACK
        response = await read
        assert response.dotted_code == "2.05" and response.node is not None
        assert response.node.value == 21.0  # type: ignore[union-attr]
    finally:
        device.peer.close()
        forger.close()


# -- DTLS devices (the keystore records and PKI of tests/integration/dtls) ------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return pki_mod.build(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def dtls_server(tmp_path: Path, pki: Pki) -> AsyncIterator[Lwm2mServer]:
    """NoSec and CoAPs listeners, open registration off, the DTLS suite's devices provisioned
    (``dev-psk`` and ``someone-else`` are two PSK devices)."""
    async with provisioned_server(tmp_path / "data", pki) as srv:
        yield srv


async def test_dtls_observation_refuses_other_sessions_and_nosec(
    dtls_server: Lwm2mServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = dtls_server
    coaps = ("127.0.0.1", server.coaps_address.port)
    client = Lwm2mClient(
        "dev-psk",
        f"coaps://{coaps[0]}:{coaps[1]}",
        auto_update=False,
        psk=(PSK_IDENTITY, PSK_KEY),
    )
    await client.start()
    other: DtlsPeer | None = None
    plain = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port))
    caplog.set_level(logging.DEBUG, logger="lwm2m_server")
    try:
        await client.register()
        await server.observe("dev-psk", TEMP)
        token = token_of(server, "dev-psk")
        events = server.events()

        # another device's authenticated session, with dev-psk's token
        other = await DtlsPeer.connect(
            coaps, ClientConfig(psk_identity=b"other-identity", psk=b"k" * 16)
        )
        forged = notification(token, "99.5")
        forged.mid = 0x4242
        other.send(raw.encode(forged))
        reply = await other.receive()
        assert reply is not None
        answer = raw.decode(reply)
        assert (answer.mtype, answer.code, answer.mid) == (raw.RST, raw.EMPTY, 0x4242)

        # plain CoAP (NoSec) for the DTLS device's observation
        answer = await plain.exchange(notification(token, "-12.0"))
        assert answer.mtype == raw.RST

        assert 99.5 not in stored_values(server, "dev-psk")
        assert -12.0 not in stored_values(server, "dev-psk")
        await nothing_published(server, events)
        messages = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
        assert any("another DTLS identity" in m and "dev-psk" in m for m in messages)
        assert any("over coap, but dev-psk registered over coaps" in m for m in messages)

        # the device's own notification over its session is stored
        client.set_value(TEMP, 24.5)
        event = await next_event(events, "NOTIFICATION")
        assert [p["value"] for p in event.data["points"]] == [24.5]
        assert stored_values(server, "dev-psk")[0] == 24.5
        assert client.observations.active
    finally:
        plain.close()
        if other is not None:
            other.close()
        await client.stop()
