"""A notification is acknowledged only once it is stored (issue 12, "never acknowledges what
it did not store"; docs/reliability.md, "Notifications the store refuses").

Over real sockets, with a hand-built device: while the store refuses (Redis stopped, the
sqlite file read-only, a commit that fails like a full disk) a CON notification gets **no
answer at all** — not an ACK (that would claim a value that is lost), not an RST (that would
end the observation, RFC 7641 §3.6) — so the device retransmits it (RFC 7252 §4.2) with the
same message id; once the store is back the retransmission is stored and ACKed, exactly once.

"No answer" is checked without waiting for a timeout: after the notification the device
sends a CoAP ping, which the server answers with RST in order; when the RST is in, an ACK of
the notification would have been too.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from keystore.store.engines import StoreSettings
from lwm2m_server.service import Lwm2mServer
from object_models.content_format import ContentFormat as CF
from object_models.path import LwM2mPath
from tests.redis_fixture import RestartableRedis

from . import rawcoap as raw
from .conftest import ServerFactory, server_config

TEMP = LwM2mPath.parse("/3303/0/5700")


class Device:
    """A raw peer that accepts one Observe of /3303/0/5700 and sends notifications by hand."""

    def __init__(self) -> None:
        self.token = b""
        self.peer: raw.RawPeer
        self.seq = 1

    def handle(self, msg: raw.Msg) -> raw.Msg:
        self.token = msg.token
        options = [(raw.OBSERVE, raw.uint_bytes(1)), (raw.CONTENT_FORMAT, b"")]
        return raw.Msg(raw.ACK, raw.CONTENT, 0, options=options, payload=b"20.5")

    def notification(self, value: bytes) -> raw.Msg:
        self.seq += 1
        options = [(raw.OBSERVE, raw.uint_bytes(self.seq)), (raw.CONTENT_FORMAT, b"")]
        return raw.Msg(raw.CON, raw.CONTENT, self.peer.next_mid(), self.token, options, value)

    async def send_unanswered(self, msg: raw.Msg) -> None:
        """Send ``msg`` and check that the server answered nothing to it (the ping barrier)."""
        self.peer.send(msg)
        pong = await self.peer.exchange(raw.Msg(raw.CON, raw.EMPTY, 0))
        assert pong.mtype == raw.RST
        assert [m for m in self.peer.received if m.mid == msg.mid] == []


async def observed_device(server: Lwm2mServer, endpoint: str) -> Device:
    device = Device()
    device.peer = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port), device.handle)
    await raw.register(device.peer, endpoint, links="</3303/0>")
    response = await server.observe(endpoint, TEMP, fmt=CF.TEXT)
    assert response.success and server.observations(endpoint)
    return device


def history(server: Lwm2mServer, endpoint: str) -> list[object]:
    return [p.value for p in server.telemetry_history(endpoint, key="/3303/0/5700")]


async def assert_stored_once_when_retransmitted(
    server: Lwm2mServer, device: Device, msg: raw.Msg, endpoint: str
) -> None:
    ack = await device.peer.resend(msg)  # the device's retransmission, same mid
    assert (ack.mtype, ack.code) == (raw.ACK, raw.EMPTY)
    assert history(server, endpoint).count(31.5) == 1
    assert server.telemetry_latest(endpoint)["/3303/0/5700"].value == 31.5
    assert server.observations(endpoint) == [(TEMP,)]  # the observation lived on
    # the next notification is stored as usual: the observe order was not disturbed
    later = device.notification(b"32.5")
    assert (await device.peer.resend(later)).mtype == raw.ACK
    assert history(server, endpoint)[:2] == [32.5, 31.5]


async def test_notification_refused_by_a_read_only_store_is_not_acked_then_stored(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    device = await observed_device(server, "ro-dev")
    try:
        conn = server.store.conn
        conn.execute("PRAGMA query_only = ON")  # every write fails: a read-only file
        try:
            msg = device.notification(b"31.5")
            await device.send_unanswered(msg)
            await device.send_unanswered(msg)  # nor is a retransmission during the outage
        finally:
            conn.execute("PRAGMA query_only = OFF")
        await assert_stored_once_when_retransmitted(server, device, msg, "ro-dev")
    finally:
        device.peer.close()


class FailingCommits:
    """The store's connection with a switchable commit failure (a full disk)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.fail = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    def commit(self) -> None:
        if self.fail:
            raise sqlite3.OperationalError("database or disk is full")
        self.conn.commit()


async def test_notification_whose_group_commit_failed_is_stored_when_retransmitted(
    make_server: ServerFactory,
) -> None:
    """The value was written but its iteration's commit failed: the ACK is withheld with the
    other replies, and the retransmission is stored (it is not taken for a stale duplicate)."""
    server = await make_server()
    device = await observed_device(server, "full-dev")
    store = server.store
    failing = FailingCommits(store.conn)
    store._conn = failing  # type: ignore[assignment]
    try:
        failing.fail = True
        msg = device.notification(b"31.5")
        await device.send_unanswered(msg)
        assert 31.5 not in history(server, "full-dev")
        failing.fail = False
        await assert_stored_once_when_retransmitted(server, device, msg, "full-dev")
    finally:
        store._conn = failing.conn
        device.peer.close()


@pytest.fixture
async def on_redis(tmp_path: Path, own_redis: RestartableRedis) -> AsyncIterator[Lwm2mServer]:
    settings = StoreSettings("redis", own_redis.url, "notify")
    server = Lwm2mServer(server_config(tmp_path / "data", store=settings))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_notification_during_a_redis_outage_is_retransmitted_and_stored(
    on_redis: Lwm2mServer, own_redis: RestartableRedis
) -> None:
    server = on_redis
    device = await observed_device(server, "redis-dev")
    try:
        own_redis.stop()
        msg = device.notification(b"31.5")
        await device.send_unanswered(msg)
        await device.send_unanswered(msg)
        assert server.counts.notifications["ignore"] == 2
        own_redis.start_again()
        await assert_stored_once_when_retransmitted(server, device, msg, "redis-dev")
    finally:
        device.peer.close()


async def test_unknown_token_notification_refused_by_the_store_is_handled_when_retransmitted(
    make_server: ServerFactory,
) -> None:
    """After the server's CoAP layer forgot the observation (as after a restart) the first
    notification is adopted only once it is stored; before, its retransmissions were swallowed
    by the deduplication cache until the device gave up."""
    server = await make_server()
    device = await observed_device(server, "adopt-dev")
    try:
        assert server._downlink is not None
        server._downlink.observations.forget(device.token, reactive=False)
        conn = server.store.conn
        conn.execute("PRAGMA query_only = ON")
        try:
            msg = device.notification(b"31.5")
            await device.send_unanswered(msg)
        finally:
            conn.execute("PRAGMA query_only = OFF")
        await assert_stored_once_when_retransmitted(server, device, msg, "adopt-dev")
    finally:
        device.peer.close()


async def test_the_ping_barrier_sees_the_ack_of_a_stored_notification(
    make_server: ServerFactory,
) -> None:
    """The barrier the tests above rely on: a stored notification's ACK is in before the
    ping's RST."""
    server = await make_server()
    device = await observed_device(server, "barrier-dev")
    try:
        msg = device.notification(b"31.5")
        device.peer.send(msg)
        assert (await device.peer.exchange(raw.Msg(raw.CON, raw.EMPTY, 0))).mtype == raw.RST
        assert [(m.mtype, m.code) for m in device.peer.received if m.mid == msg.mid] == [
            (raw.ACK, raw.EMPTY)
        ]
    finally:
        device.peer.close()


async def test_unknown_token_notification_during_a_redis_outage_is_adopted_when_retransmitted(
    on_redis: Lwm2mServer, own_redis: RestartableRedis
) -> None:
    server = on_redis
    device = await observed_device(server, "redis-adopt")
    try:
        assert server._downlink is not None
        server._downlink.observations.forget(device.token, reactive=False)
        own_redis.stop()
        msg = device.notification(b"31.5")
        await device.send_unanswered(msg)
        await device.send_unanswered(msg)
        assert server.counts.notifications["ignore"] == 2
        own_redis.start_again()
        await assert_stored_once_when_retransmitted(server, device, msg, "redis-adopt")
    finally:
        device.peer.close()


BLOCK2 = 23
BIG_VALUE = b"31.5000000000000000000"  # 22 bytes: two 16-byte blocks (SZX 0)


class BlockDevice(Device):
    """A device whose notification carries its value block-wise (RFC 7959 §2.6): the first
    block in the notification, the rest for the server to fetch with GET + Block2."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks_served = 0
        self.served = asyncio.Event()

    def handle(self, msg: raw.Msg) -> raw.Msg:
        block = msg.uint(BLOCK2)
        if block is None:
            return super().handle(msg)
        assert block >> 4 == 1 and msg.uint(raw.OBSERVE) is None  # block 1, no Observe
        self.blocks_served += 1
        self.served.set()
        options = [(BLOCK2, bytes([0x10])), (raw.CONTENT_FORMAT, b"")]  # num 1, last, SZX 0
        return raw.Msg(raw.ACK, raw.CONTENT, 0, options=options, payload=BIG_VALUE[16:])

    def first_block(self) -> raw.Msg:
        msg = self.notification(BIG_VALUE[:16])
        msg.options.append((BLOCK2, bytes([0x08])))  # num 0, more, SZX 0
        return msg


async def test_block2_notification_refused_by_the_store_is_not_acked_then_stored(
    make_server: ServerFactory,
) -> None:
    """A notification whose value comes block-wise is acknowledged like any other: only once
    the whole value is stored. Before, the first block was ACKed on arrival, so a value the
    store refused was lost although the device had been told it was taken."""
    server = await make_server()
    device = BlockDevice()
    device.peer = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port), device.handle)
    await raw.register(device.peer, "block-dev", links="</3303/0>")
    assert (await server.observe("block-dev", TEMP, fmt=CF.TEXT)).success
    try:
        conn = server.store.conn
        conn.execute("PRAGMA query_only = ON")
        try:
            msg = device.first_block()
            device.peer.send(msg)
            await asyncio.wait_for(device.served.wait(), 5.0)  # the server fetched the rest
            # the ping barrier: the last block was read before it, and so would be an ACK
            pong = await device.peer.exchange(raw.Msg(raw.CON, raw.EMPTY, 0))
            assert pong.mtype == raw.RST
            assert [m for m in device.peer.received if m.mid == msg.mid] == []
            assert 31.5 not in history(server, "block-dev")
        finally:
            conn.execute("PRAGMA query_only = OFF")
        ack = await device.peer.resend(msg)  # the retransmission: fetched, stored, ACKed
        assert (ack.mtype, ack.code) == (raw.ACK, raw.EMPTY)
        assert device.blocks_served == 2
        assert history(server, "block-dev").count(31.5) == 1
        assert server.observations("block-dev") == [(TEMP,)]
    finally:
        device.peer.close()


async def test_telemetry_and_notification_events_carry_the_stored_value(
    make_server: ServerFactory,
) -> None:
    """The NOTIFICATION and TELEMETRY events of a stored notification are built only when a
    reader asks (no sink configured), and then say what was stored."""
    server = await make_server()
    device = await observed_device(server, "event-dev")
    subscription = server.bus.subscribe()
    try:
        ack = await device.peer.exchange(device.notification(b"31.5"))
        assert (ack.mtype, ack.code) == (raw.ACK, raw.EMPTY)
        events = {e.kind: e for e in subscription.ready() if e.endpoint == "event-dev"}
        stored = server.telemetry_latest("event-dev")["/3303/0/5700"]
        telemetry = dict(events["TELEMETRY"].data)
        assert telemetry == {
            "source": "notification",
            "ts": stored.ts_ms,
            "values": {stored.key: 31.5},
        }
        notification: dict[str, Any] = dict(events["NOTIFICATION"].data)
        assert notification["paths"] == ["/3303/0/5700"]
        assert [p["value"] for p in notification["points"]] == [31.5]
    finally:
        device.peer.close()
