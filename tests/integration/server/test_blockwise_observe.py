"""Observe whose answers are block-wise (RFC 7959 Block2 with more=1), against a scripted device
that serves a value in 64-byte blocks: the first answer of the Observe and a later notification
are each block 0 of 3. The server must fetch blocks 1 and 2 with plain GETs (no Observe, the
other options as in the Observe: RFC 7959 §2.4/§3.4), store the whole value, and keep no
observation when the rest cannot be had.

Assertions are on what the device's socket received and on what the API and store report."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lwm2m_server.operations import DeviceAnswerError, DeviceTimeoutError
from lwm2m_server.service import Lwm2mServer
from object_models.content_format import ContentFormat as CF
from object_models.node import LwM2mSingleResource
from object_models.path import LwM2mPath

from . import rawcoap as raw
from .conftest import eventually, next_event, server_config

ETAG, BLOCK2 = 4, 23
SZX = 2  # 64-byte blocks
SIZE = 16 << SZX
NAME = LwM2mPath.parse("/3/0/0")
FIRST = b"".join(b"first-value-%03d|" % i for i in range(9))  # 153 bytes: 3 blocks
SECOND = b"".join(b"notified-%03d|" % i for i in range(12))  # 156 bytes: 3 blocks


def block_option(num: int, more: bool, szx: int = SZX) -> bytes:
    return raw.uint_bytes(num << 4 | int(more) << 3 | szx)


def parse_block(value: int | None) -> tuple[int, bool, int] | None:
    if value is None:
        return None
    return value >> 4, bool(value & 8), value & 7


class BlockDevice:
    """Serves ``/3/0/0`` as text in ``SIZE``-byte blocks; ``refuse`` answers block requests
    with that code, ``drop`` ignores them."""

    def __init__(self) -> None:
        self.value = FIRST
        self.peer: raw.RawPeer
        self.token = b""
        self.refuse: int | None = None
        self.drop = False
        self.block_requests: list[raw.Msg] = []
        self.observes: list[raw.Msg] = []
        self.etag: bytes | None = None  # sent with every block when set
        self.shift = 0  # answer block n + shift when block n is asked (a broken device)
        self.changing = False  # the ETag changes from one block to the next

    def handle(self, msg: raw.Msg) -> raw.Msg | None:
        if msg.code != raw.GET or msg.strings(raw.URI_PATH) != ["3", "0", "0"]:
            return raw.Msg(raw.ACK, 0x84, 0)
        if msg.uint(raw.OBSERVE) == 0:
            self.observes.append(msg)
            self.token = msg.token
            return self.block(0, seq=1)
        self.block_requests.append(msg)
        if self.drop:
            return None
        if self.refuse is not None:
            return raw.Msg(raw.ACK, self.refuse, 0)
        wanted = parse_block(msg.uint(BLOCK2))
        return self.block((0 if wanted is None else wanted[0]) + self.shift)

    def block(self, num: int, *, seq: int | None = None, mtype: int = raw.ACK) -> raw.Msg:
        chunk = self.value[num * SIZE : (num + 1) * SIZE]
        more = (num + 1) * SIZE < len(self.value)
        options = [(raw.CONTENT_FORMAT, b""), (BLOCK2, block_option(num, more))]
        if self.etag is not None:
            options.append((ETAG, self.etag))
            self.etag = self.etag[:-1] + bytes([self.etag[-1] + 1]) if self.changing else self.etag
        if seq is not None:
            options.append((raw.OBSERVE, raw.uint_bytes(seq)))
        return raw.Msg(mtype, raw.CONTENT, 0, self.token, options, chunk)


@pytest.fixture
async def device(server: Lwm2mServer) -> AsyncIterator[BlockDevice]:
    dev = BlockDevice()
    dev.peer = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port), dev.handle)
    try:
        await raw.register(dev.peer, "blocky", links="</3/0>", version="1.1")
        yield dev
    finally:
        dev.peer.close()


def latest(server: Lwm2mServer) -> object:
    point = server.telemetry_latest("blocky").get("/3/0/0")
    return None if point is None else point.value


async def test_observe_with_a_blockwise_answer_and_notification(
    server: Lwm2mServer, device: BlockDevice
) -> None:
    events = server.events()
    response = await server.observe("blocky", NAME)
    assert response.dotted_code == "2.05"
    assert isinstance(response.node, LwM2mSingleResource)
    assert response.node.value == FIRST.decode()
    assert latest(server) == FIRST.decode()
    assert server.observations("blocky") == [(NAME,)]

    # blocks 1 and 2 were asked with a GET like the Observe, minus Observe, plus Block2
    (observe,) = device.observes
    assert [parse_block(m.uint(BLOCK2)) for m in device.block_requests] == [
        (1, False, SZX),
        (2, False, SZX),
    ]
    for request in device.block_requests:
        assert request.opt(raw.OBSERVE) == []
        assert request.strings(raw.URI_PATH) == ["3", "0", "0"]
        assert request.opt(raw.ACCEPT) == observe.opt(raw.ACCEPT)

    # a notification that is block 0 of 3: ACKed, completed, stored whole
    device.value = SECOND
    device.block_requests.clear()
    ack = await device.peer.exchange(device.block(0, seq=2, mtype=raw.CON))
    assert ack.mtype == raw.ACK
    await eventually(lambda: latest(server) == SECOND.decode())
    event = await next_event(events, "NOTIFICATION")
    assert [p["value"] for p in event.data["points"]] == [SECOND.decode()]
    assert [parse_block(m.uint(BLOCK2))[0] for m in device.block_requests] == [1, 2]  # type: ignore[index]
    assert all(m.opt(raw.OBSERVE) == [] for m in device.block_requests)
    # and the device can be talked to normally afterwards
    device.value = b"short"
    read = await server.read("blocky", NAME, fmt=CF.TEXT)
    assert isinstance(read.node, LwM2mSingleResource) and read.node.value == "short"


async def test_observe_whose_blocks_are_refused_leaves_no_observation(
    server: Lwm2mServer, device: BlockDevice
) -> None:
    device.refuse = 0xA3  # 5.03
    response = await server.observe("blocky", NAME)
    assert response.dotted_code == "5.03"
    assert server.observations("blocky") == []
    assert server.store.observations() == []
    assert latest(server) is None  # no partial value stored either


async def test_observe_whose_blocks_time_out_leaves_no_observation(
    server: Lwm2mServer, device: BlockDevice
) -> None:
    device.drop = True
    with pytest.raises(DeviceTimeoutError):
        await server.observe("blocky", NAME, timeout=1.0)
    assert device.block_requests, "the server asked for block 1"
    assert server.observations("blocky") == []
    assert server.store.observations() == []
    # a later notification on that token is refused (RST), which ends it on the device
    answer = await device.peer.exchange(device.block(0, seq=2, mtype=raw.CON))
    assert answer.mtype == raw.RST


async def test_a_device_that_answers_the_wrong_block_fails_the_observe_cleanly(
    server: Lwm2mServer, device: BlockDevice
) -> None:
    device.shift = 1  # asked for block 1, sends block 2
    with pytest.raises(DeviceAnswerError):
        await server.observe("blocky", NAME)
    assert server.observations("blocky") == [] and server.store.observations() == []


async def test_a_representation_that_changes_between_blocks_is_not_assembled(
    server: Lwm2mServer, device: BlockDevice
) -> None:
    device.etag, device.changing = b"v1", True
    with pytest.raises(DeviceAnswerError):
        await server.observe("blocky", NAME)
    assert server.observations("blocky") == [] and latest(server) is None
    # the same ETag on every block: assembled
    device.etag, device.changing = b"v9", False
    response = await server.observe("blocky", NAME)
    assert isinstance(response.node, LwM2mSingleResource)
    assert response.node.value == FIRST.decode()


async def test_observe_composite_with_a_blockwise_answer(server: Lwm2mServer) -> None:
    """Observe-Composite is a FETCH: the follow-ups repeat the FETCH body (the paths) with
    Block2 and without Observe."""
    value = "x" * 150
    whole = json.dumps([{"n": "/3/0/0", "vs": value}]).encode()
    fetches: list[raw.Msg] = []

    def handle(msg: raw.Msg) -> raw.Msg:
        fetches.append(msg)
        wanted = parse_block(msg.uint(BLOCK2))
        num = 0 if wanted is None else wanted[0]
        more = (num + 1) * SIZE < len(whole)
        options = [
            (raw.CONTENT_FORMAT, raw.uint_bytes(int(CF.SENML_JSON))),
            (BLOCK2, block_option(num, more)),
        ]
        if msg.uint(raw.OBSERVE) == 0:
            options.append((raw.OBSERVE, raw.uint_bytes(1)))
        chunk = whole[num * SIZE : (num + 1) * SIZE]
        return raw.Msg(raw.ACK, raw.CONTENT, 0, options=options, payload=chunk)

    peer = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port), handle)
    try:
        await raw.register(peer, "blocky-c", links='</>;ct="110",</3/0>', version="1.1")
        response = await server.observe_composite("blocky-c", [NAME], fmt=CF.SENML_JSON)
        assert response.dotted_code == "2.05" and response.nodes is not None
        node = response.nodes[NAME]
        assert isinstance(node, LwM2mSingleResource) and node.value == value
        assert server.telemetry_latest("blocky-c")["/3/0/0"].value == value
        assert server.observations("blocky-c") == [(NAME,)]
        assert [m.code for m in fetches] == [raw.FETCH] * 3
        first, *rest = fetches
        assert first.uint(raw.OBSERVE) == 0
        for follow_up in rest:
            assert follow_up.opt(raw.OBSERVE) == []
            assert follow_up.payload == first.payload
            assert follow_up.opt(raw.ACCEPT) == first.opt(raw.ACCEPT)
        assert [parse_block(m.uint(BLOCK2)) for m in rest] == [(1, False, SZX), (2, False, SZX)]
    finally:
        peer.close()


async def test_blockwise_notification_of_a_restored_observation(tmp_path: Path) -> None:
    """After a restart the server knows the observation only from its store; a notification
    that is block 0 of several is ACKed, the rest fetched like any block-wise notification
    (GET with Block2, no Observe, the observation's path and Accept), and the whole stored."""
    data = tmp_path / "data"
    first = Lwm2mServer(server_config(data))
    await first.start()
    port = first.coap_address.port
    dev = BlockDevice()
    dev.value = b"short"
    dev.peer = await raw.RawPeer.open(("127.0.0.1", port), dev.handle)
    try:
        await raw.register(dev.peer, "blocky", links="</3/0>", version="1.1")
        await first.observe("blocky", NAME, fmt=CF.TEXT)
        await first.stop()
        server = Lwm2mServer(server_config(data, coap_port=port))
        await server.start()
        try:
            assert server.observations("blocky") == [(NAME,)]
            dev.value = SECOND
            ack = await dev.peer.exchange(dev.block(0, seq=2, mtype=raw.CON))
            assert ack.mtype == raw.ACK
            await eventually(lambda: latest(server) == SECOND.decode())
            assert [parse_block(m.uint(BLOCK2)) for m in dev.block_requests] == [
                (1, False, SZX),
                (2, False, SZX),
            ]
            for request in dev.block_requests:
                assert request.opt(raw.OBSERVE) == []
                assert request.strings(raw.URI_PATH) == ["3", "0", "0"]
                assert request.uint(raw.ACCEPT) == int(CF.TEXT)
            # the adopted observation goes on: the next notification is stored too
            dev.value = b"later"
            assert (await dev.peer.exchange(dev.block(0, seq=3, mtype=raw.CON))).mtype == raw.ACK
            await eventually(lambda: latest(server) == "later")
        finally:
            await server.stop()
    finally:
        dev.peer.close()
