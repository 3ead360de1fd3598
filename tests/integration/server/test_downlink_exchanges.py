"""What a scripted device sees on the wire of the server's downlink requests: the Accept option
(none for a 1.0 client that announced nothing, as Leshan does) and the per-client exchange
limits (a request the device drops must not hold back the next ones: RFC 7252 §4.2 lets the
requester give up on a CON it no longer waits for, §4.7 NSTART counts only outstanding ones).

The device is a raw UDP socket (``rawcoap.RawPeer``): the assertions are on the datagrams it
received, so they hold whatever CoAP stack the server uses."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from lwm2m_server.operations import DeviceTimeoutError
from lwm2m_server.service import Lwm2mServer
from object_models.content_format import ContentFormat as CF
from object_models.node import LwM2mSingleResource
from object_models.path import LwM2mPath

from . import rawcoap as raw
from .conftest import eventually

P = LwM2mPath.parse

TEXT = raw.uint_bytes(int(CF.TEXT))


def _text(payload: bytes) -> raw.Msg:
    return raw.Msg(raw.ACK, raw.CONTENT, 0, options=[(raw.CONTENT_FORMAT, TEXT)], payload=payload)


class DroppingDevice:
    """Answers every request with text ``dev``, except the first ``drop`` distinct requests
    (and all their retransmissions), which it ignores as if they were lost."""

    def __init__(self, drop: int) -> None:
        self.drop = drop
        self.dropped: set[int] = set()

    def __call__(self, msg: raw.Msg) -> raw.Msg | None:
        if msg.mid in self.dropped:
            return None
        if len(self.dropped) < self.drop:
            self.dropped.add(msg.mid)
            return None
        return _text(b"dev")


PeerFactory = Callable[[raw.Handler], Awaitable[raw.RawPeer]]


@pytest.fixture
async def open_peer(server: Lwm2mServer) -> AsyncIterator[PeerFactory]:
    peers: list[raw.RawPeer] = []

    async def open_(handler: raw.Handler) -> raw.RawPeer:
        peer = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port), handler)
        peers.append(peer)
        return peer

    yield open_
    for peer in peers:
        peer.close()


def _requests(peer: raw.RawPeer, code: int) -> list[raw.Msg]:
    return [m for m in peer.received if m.code == code]


async def test_read_without_format_sends_no_accept_to_a_1_0_client(
    server: Lwm2mServer, open_peer: PeerFactory
) -> None:
    peer = await open_peer(lambda _m: _text(b"dev"))
    await raw.register(peer, "plain-1.0", links="</3/0>", version="1.0")
    response = await server.read("plain-1.0", P("/3/0/0"))
    assert response.dotted_code == "2.05"
    assert isinstance(response.node, LwM2mSingleResource) and response.node.value == "dev"
    observe = await server.observe("plain-1.0", P("/3/0/0"))
    assert observe.success
    gets = _requests(peer, raw.GET)
    assert len(gets) == 2
    assert all(m.opt(raw.ACCEPT) == [] for m in gets)


async def test_read_keeps_the_chosen_accept_for_1_1_clients_and_forced_formats(
    server: Lwm2mServer, open_peer: PeerFactory
) -> None:
    peer = await open_peer(lambda _m: _text(b"dev"))
    await raw.register(peer, "plain-1.1", links="</3/0>", version="1.1")
    await server.read("plain-1.1", P("/3/0/0"))
    await server.read("plain-1.1", P("/3/0/0"), fmt=CF.TEXT)
    accepts = [m.uint(raw.ACCEPT) for m in _requests(peer, raw.GET)]
    assert accepts == [int(CF.TLV), int(CF.TEXT)]

    peer10 = await open_peer(lambda _m: _text(b"dev"))
    await raw.register(peer10, "forced-1.0", links="</3/0>", version="1.0")
    await server.read("forced-1.0", P("/3/0/0"), fmt=CF.TEXT)
    assert [m.uint(raw.ACCEPT) for m in _requests(peer10, raw.GET)] == [int(CF.TEXT)]


async def test_a_dropped_request_does_not_block_the_next_one(
    server: Lwm2mServer, open_peer: PeerFactory
) -> None:
    device = DroppingDevice(drop=1)
    peer = await open_peer(device)
    await raw.register(peer, "lossy", links="</3/0>", version="1.0")
    with pytest.raises(DeviceTimeoutError):
        await server.read("lossy", P("/3/0/0"), timeout=0.5)
    # the first request is abandoned with its timeout: the next one goes out at once and is
    # answered well within one CoAP exchange (the dropped CON's retransmissions would
    # otherwise hold it back for up to MAX_TRANSMIT_WAIT, 93 s)
    response = await server.read("lossy", P("/3/0/0"), timeout=5)
    assert response.dotted_code == "2.05"
    assert isinstance(response.node, LwM2mSingleResource) and response.node.value == "dev"
    gets = _requests(peer, raw.GET)
    assert {m.mid for m in gets} - device.dropped, "the second request reached the device"
    assert all(m.opt(raw.ACCEPT) == [] for m in gets)


async def test_a_request_waiting_behind_a_dropped_one_goes_out_when_it_is_abandoned(
    server: Lwm2mServer, open_peer: PeerFactory
) -> None:
    device = DroppingDevice(drop=1)
    peer = await open_peer(device)
    await raw.register(peer, "lossy-2", links="</3/0>", version="1.0")
    first = asyncio.ensure_future(server.read("lossy-2", P("/3/0/0"), timeout=0.5))
    await eventually(lambda: device.dropped)  # the device got (and lost) the first one
    second = asyncio.ensure_future(server.read("lossy-2", P("/3/0/1"), timeout=5))
    with pytest.raises(DeviceTimeoutError):
        await first
    response = await second
    assert response.dotted_code == "2.05"
    paths = {tuple(m.strings(raw.URI_PATH)) for m in _requests(peer, raw.GET)}
    assert paths == {("3", "0", "0"), ("3", "0", "1")}


async def test_a_request_abandoned_while_waiting_is_never_sent(
    server: Lwm2mServer, open_peer: PeerFactory
) -> None:
    """A request that times out while it waits behind a dropped one is not sent later
    (an Execute nobody waits for any more must not reach the device minutes later)."""
    device = DroppingDevice(drop=1)
    peer = await open_peer(device)
    await raw.register(peer, "lossy-3", links="</3/0>", version="1.0")
    first = asyncio.ensure_future(server.read("lossy-3", P("/3/0/0"), timeout=1.0))
    await eventually(lambda: device.dropped)
    with pytest.raises(DeviceTimeoutError):
        await server.execute("lossy-3", P("/3/0/4"), timeout=0.2)
    with pytest.raises(DeviceTimeoutError):
        await first
    response = await server.read("lossy-3", P("/3/0/2"), timeout=5)
    assert response.dotted_code == "2.05"
    assert _requests(peer, raw.POST) == [], "the abandoned Execute was never sent"


@pytest.fixture
def short_ack_timeout(server: Lwm2mServer) -> float:
    """CoAP's ACK_TIMEOUT at 50 ms, so that a CON's retransmissions run out (MAX_RETRANSMIT 4:
    at most 50 ms * 1.5 * 31, about 2.3 s) within a test. The one place these tests reach into the
    CoAP layer (the parameters of the server's NoSec endpoint): set the same timer of whatever
    layer the server runs on."""
    udp = server.coap.udp
    assert udp is not None
    udp.endpoint.params = dataclasses.replace(udp.endpoint.params, ack_timeout=0.05)
    return 0.05


async def test_exhausted_retransmissions_fail_only_their_own_request(
    server: Lwm2mServer, open_peer: PeerFactory, short_ack_timeout: float
) -> None:
    """A request whose timeout outlasts its CON's retransmissions (MAX_TRANSMIT_WAIT): when
    they run out it fails, and the request waiting behind it is sent and answered (not failed
    unsent with it)."""
    device = DroppingDevice(drop=1)
    peer = await open_peer(device)
    await raw.register(peer, "lossy-4", links="</3/0>", version="1.0")
    first = asyncio.ensure_future(server.read("lossy-4", P("/3/0/0"), timeout=30))
    await eventually(lambda: device.dropped)
    second = asyncio.ensure_future(server.read("lossy-4", P("/3/0/1"), timeout=30))
    with pytest.raises(DeviceTimeoutError):
        await asyncio.wait_for(first, 20)
    response = await asyncio.wait_for(second, 20)
    assert response.dotted_code == "2.05"
    (mid,) = device.dropped
    assert len([m for m in _requests(peer, raw.GET) if m.mid == mid]) == 5  # 1 + MAX_RETRANSMIT


async def test_a_reset_after_a_timed_out_request_does_not_break_later_requests(
    server: Lwm2mServer, open_peer: PeerFactory
) -> None:
    """Issue 10: on aiocoap, a device that answered RST to a request the server had already
    given up on left the server's per-peer state broken, and every later request to that device
    failed (HTTP 500) until restart. Now the late RST is just unmatched, and the next requests
    are sent and answered."""
    device = DroppingDevice(drop=1)
    peer = await open_peer(device)
    await raw.register(peer, "resetter", links="</3/0>", version="1.0")
    with pytest.raises(DeviceTimeoutError):
        await server.read("resetter", P("/3/0/0"), timeout=0.3)
    (mid,) = device.dropped
    peer.send(raw.Msg(raw.RST, raw.EMPTY, mid))  # the device rejects the abandoned request
    for path in ("/3/0/1", "/3/0/2"):
        response = await server.read("resetter", P(path), timeout=5)
        assert response.dotted_code == "2.05"
        assert isinstance(response.node, LwM2mSingleResource) and response.node.value == "dev"
