"""Information Reporting: Observe, notifications (CON and NON), composite observations and both
ways of cancelling, with telemetry and events checked on the way."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from lwm2m_client.client import Lwm2mClient
from lwm2m_server.events_bus import LazyData
from lwm2m_server.operations import ServerEvent
from lwm2m_server.service import Lwm2mServer
from object_models.content_format import ContentFormat as CF
from object_models.errors import Lwm2mError
from object_models.node import LwM2mSingleResource
from object_models.path import LwM2mPath

from . import rawcoap as raw
from .conftest import ClientFactory, eventually, next_event

P = LwM2mPath.parse
TEMP = P("/3303/0/5700")


@pytest.fixture
async def client(make_client: ClientFactory) -> Lwm2mClient:
    return await make_client("ir", lwm2m_version="1.2")


def point_values(event: object) -> dict[str, object]:
    return {p["path"]: p["value"] for p in event.data["points"]}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "fmt",
    [CF.TEXT, CF.TLV, CF.SENML_JSON, CF.SENML_CBOR, CF.LWM2M_CBOR, CF.JSON],
    ids=lambda f: f.name.lower(),
)
async def test_observe_notify(server: Lwm2mServer, client: Lwm2mClient, fmt: CF) -> None:
    events = server.events()
    response = await server.observe("ir", TEMP, fmt=fmt)
    assert response.dotted_code == "2.05" and response.content_format == fmt
    assert isinstance(response.node, LwM2mSingleResource) and response.node.value == 21.5
    assert server.observations("ir") == [(TEMP,)]
    [stored] = server.store.observations_by_endpoint("ir")
    assert stored.paths == (TEMP,) and stored.content_format == fmt

    client.set_value(TEMP, 25.25)
    event = await next_event(events, "NOTIFICATION")
    assert point_values(event) == {"/3303/0/5700": 25.25}
    assert "token" not in event.data  # a token would let anyone forge this device's notifications
    assert server.telemetry_latest("ir")["/3303/0/5700"].value == 25.25
    history = server.telemetry_history("ir", key="sensorValue")
    assert [p.value for p in history][:2] == [25.25, 21.5]


async def test_observe_instance(server: Lwm2mServer, client: Lwm2mClient) -> None:
    events = server.events()
    await server.observe("ir", P("/3303/0"))
    client.set_value(TEMP, 19.0)
    values = point_values(await next_event(events, "NOTIFICATION"))
    assert values["/3303/0/5700"] == 19.0 and values["/3303/0/5701"] == "Cel"


async def test_observe_again_replaces(server: Lwm2mServer, client: Lwm2mClient) -> None:
    await server.observe("ir", TEMP)
    first = server.store.observations_by_endpoint("ir")[0].token
    await server.observe("ir", TEMP, fmt=CF.SENML_CBOR)
    [second] = server.store.observations_by_endpoint("ir")
    assert second.token != first and server.observations("ir") == [(TEMP,)]


async def test_cancel_active(server: Lwm2mServer, client: Lwm2mClient) -> None:
    await server.observe("ir", TEMP)
    await eventually(lambda: client.observations.active)
    response = await server.cancel_observation("ir", TEMP, active=True)
    assert response.dotted_code == "2.05"  # the cancelling GET is also a Read
    assert server.observations("ir") == [] and server.store.observations() == []
    assert client.observations.active == []  # same token + Observe=1 ended it on the device
    with pytest.raises(Lwm2mError):
        await server.cancel_observation("ir", TEMP)


async def test_cancel_passive(server: Lwm2mServer, client: Lwm2mClient) -> None:
    events = server.events()
    await server.observe("ir", TEMP)
    response = await server.cancel_observation("ir", TEMP, active=False)
    assert response.dotted_code == "2.02"
    assert server.observations("ir") == [] and server.store.observations() == []
    assert client.observations.active  # the device does not know yet
    client.set_value(TEMP, 30.0)  # its next notification gets a RST, which ends it
    await eventually(lambda: not client.observations.active)
    assert "/3303/0/5700" not in [
        p.path for p in server.telemetry_history("ir", key="/3303/0/5700") if p.value == 30.0
    ]
    server.bus.publish("PROBE", "ir", {})
    assert (await next_event(events, "PROBE")).kind == "PROBE"  # no NOTIFICATION came before


@pytest.mark.parametrize(
    "fmt", [CF.SENML_JSON, CF.SENML_CBOR, CF.LWM2M_CBOR], ids=lambda f: f.name.lower()
)
async def test_observe_composite(server: Lwm2mServer, client: Lwm2mClient, fmt: CF) -> None:
    events = server.events()
    paths = [TEMP, P("/3/0/9")]
    response = await server.observe_composite("ir", paths, fmt=fmt)
    assert response.dotted_code == "2.05" and response.nodes is not None
    assert server.observations("ir") == [tuple(paths)]
    client.set_value(TEMP, 22.75)
    values = point_values(await next_event(events, "NOTIFICATION"))
    assert values["/3303/0/5700"] == 22.75 and values["/3/0/9"] == 100
    cancel = await server.cancel_composite_observation("ir", paths)
    assert cancel.dotted_code == "2.05"
    assert server.observations("ir") == [] and client.observations.active == []


async def test_deregister_drops_observations(server: Lwm2mServer, client: Lwm2mClient) -> None:
    await server.observe("ir", TEMP)
    await client.deregister()
    assert server.store.observations() == []
    assert len(server.core.observations) == 0


# -- a hand-built device: message types, duplicates, RSTs --------------------------------------


class Device:
    """A raw peer that accepts one Observe and then sends notifications by hand."""

    def __init__(self) -> None:
        self.token = b""
        self.peer: raw.RawPeer

    def handle(self, msg: raw.Msg) -> raw.Msg:
        self.token = msg.token
        options = [(raw.OBSERVE, raw.uint_bytes(1)), (raw.CONTENT_FORMAT, b"")]
        return raw.Msg(raw.ACK, raw.CONTENT, 0, options=options, payload=b"20.5")

    def notification(
        self, value: bytes, *, mtype: int, seq: int, code: int = raw.CONTENT
    ) -> raw.Msg:
        options = [(raw.OBSERVE, raw.uint_bytes(seq)), (raw.CONTENT_FORMAT, b"")]
        if code != raw.CONTENT:
            options = [(raw.CONTENT_FORMAT, b"")]
        return raw.Msg(mtype, code, self.peer.next_mid(), self.token, options, value)


@pytest.fixture
async def device(server: Lwm2mServer) -> AsyncIterator[Device]:
    dev = Device()
    dev.peer = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port), dev.handle)
    await raw.register(dev.peer, "rawdev", links="</3303/0>")
    response = await server.observe("rawdev", TEMP, fmt=CF.TEXT)
    assert response.success and server.observations("rawdev")
    yield dev
    dev.peer.close()


def values(server: Lwm2mServer) -> list[object]:
    return [p.value for p in server.telemetry_history("rawdev", key="/3303/0/5700")]


async def test_con_notification_acked_and_stored(server: Lwm2mServer, device: Device) -> None:
    msg = device.notification(b"23.5", mtype=raw.CON, seq=2)
    answer = await device.peer.exchange(msg)
    assert answer.mtype == raw.ACK and answer.code == raw.EMPTY
    assert values(server)[0] == 23.5
    # the same CON again (our ACK was lost): ACKed, stored once
    device.peer.send(msg)
    await eventually(
        lambda: any(m.mtype == raw.ACK and m.mid == msg.mid for m in device.peer.received)
    )
    again = await device.peer.exchange(device.notification(b"24.0", mtype=raw.CON, seq=3))
    assert again.mtype == raw.ACK
    assert values(server)[:3] == [24.0, 23.5, 20.5]


async def test_non_notification_stored(server: Lwm2mServer, device: Device) -> None:
    device.peer.send(device.notification(b"26.5", mtype=raw.NON, seq=2))
    await eventually(lambda: values(server)[0] == 26.5)


async def test_unknown_token_gets_rst(server: Lwm2mServer, device: Device) -> None:
    msg = device.notification(b"1", mtype=raw.CON, seq=2)
    msg.token = b"\x01\x02\x03"
    assert (await device.peer.exchange(msg)).mtype == raw.RST


async def test_observing_again_ends_the_old_token(server: Lwm2mServer, device: Device) -> None:
    """Observing the same target again replaces the observation: a notification on the old
    token is refused with RST (the device drops that stream) and is not stored."""
    old = device.token
    await server.observe("rawdev", TEMP, fmt=CF.TEXT)
    assert device.token != old and server.observations("rawdev") == [(TEMP,)]
    stale = device.notification(b"31", mtype=raw.CON, seq=5)
    stale.token = old
    assert (await device.peer.exchange(stale)).mtype == raw.RST
    assert 31.0 not in values(server)
    current = await device.peer.exchange(device.notification(b"32", mtype=raw.CON, seq=6))
    assert current.mtype == raw.ACK and values(server)[0] == 32.0


async def test_a_live_observation_follows_an_update_from_a_new_port(
    server: Lwm2mServer, device: Device
) -> None:
    """NAT rebinding while observed: after an Update from a new port the old port is a stranger
    (RST, nothing stored) and the new one is the observation's peer (ACK, stored)."""
    moved = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port))
    try:
        registration_id = server.client("rawdev").registration_id
        assert (await moved.exchange(raw.request(raw.POST, ["rd", registration_id]))).code == (
            raw.CHANGED
        )
        stale = await device.peer.exchange(device.notification(b"41", mtype=raw.CON, seq=7))
        assert stale.mtype == raw.RST
        notification = device.notification(b"42", mtype=raw.CON, seq=8)
        notification.mid = moved.next_mid()
        answer = await moved.exchange(notification)
        assert answer.mtype == raw.ACK and answer.code == raw.EMPTY
        assert values(server)[0] == 42.0 and 41.0 not in values(server)
        assert server.observations("rawdev") == [(TEMP,)]
    finally:
        moved.close()


async def test_passive_cancel_rsts_non_notifications(server: Lwm2mServer, device: Device) -> None:
    await server.cancel_observation("rawdev", TEMP, active=False)
    msg = device.notification(b"27", mtype=raw.NON, seq=2)
    device.peer.send(msg)
    await eventually(
        lambda: any(m.mtype == raw.RST and m.mid == msg.mid for m in device.peer.received)
    )
    assert 27.0 not in values(server)


async def test_error_notification_ends_observation(server: Lwm2mServer, device: Device) -> None:
    answer = await device.peer.exchange(device.notification(b"", mtype=raw.CON, seq=2, code=0x84))
    assert answer.mtype == raw.ACK
    assert server.observations("rawdev") == [] and server.store.observations() == []


async def test_undecodable_notification_is_acked(server: Lwm2mServer, device: Device) -> None:
    events = server.events()
    answer = await device.peer.exchange(device.notification(b"warm", mtype=raw.CON, seq=2))
    assert answer.mtype == raw.ACK  # the observation is fine, the payload is not
    event = await next_event(events, "NOTIFICATION")
    assert event.data["points"] == [] and "error" in event.data
    assert server.observations("rawdev")


async def test_notification_right_behind_the_observe_answer(server: Lwm2mServer) -> None:
    """The first notification arrives back-to-back with the 2.05: it must find the observation
    already indexed (neither lost to aiocoap's released request nor answered with RST)."""
    peer: raw.RawPeer

    def handle(msg: raw.Msg) -> raw.Msg:
        options = [(raw.OBSERVE, raw.uint_bytes(1)), (raw.CONTENT_FORMAT, b"")]
        notify = raw.Msg(
            raw.CON,
            raw.CONTENT,
            0,
            msg.token,
            [(raw.OBSERVE, raw.uint_bytes(2)), (raw.CONTENT_FORMAT, b"")],
            b"42.5",
        )

        def send_now() -> None:
            notify.mid = peer.next_mid()
            peer.send(notify)

        asyncio.get_running_loop().call_soon(send_now)
        return raw.Msg(raw.ACK, raw.CONTENT, 0, options=options, payload=b"20.5")

    peer = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port), handle)
    try:
        await raw.register(peer, "eager", links="</3303/0>")
        assert (await server.observe("eager", TEMP, fmt=CF.TEXT)).success
        await eventually(lambda: server.telemetry_latest("eager")["/3303/0/5700"].value == 42.5)
        await eventually(lambda: any(m.mtype == raw.ACK for m in peer.received))
        assert not any(m.mtype == raw.RST for m in peer.received)
    finally:
        peer.close()


async def test_notification_event_payload_is_built_only_when_read(
    server: Lwm2mServer, device: Device
) -> None:
    """Hot-path hygiene (issue 10): an in-process listener sees the NOTIFICATION at once, but
    its JSON (points, paths) is built only when something reads it, with the usual shape."""
    seen: list[ServerEvent] = []
    stop = server.bus.listen(seen.append)
    try:
        answer = await device.peer.exchange(device.notification(b"23.5", mtype=raw.CON, seq=2))
    finally:
        stop()
    assert answer.mtype == raw.ACK
    [event] = [e for e in seen if e.kind == "NOTIFICATION"]
    assert isinstance(event.data, LazyData) and not event.data.built
    assert event.data["paths"] == ["/3303/0/5700"]
    assert point_values(event) == {"/3303/0/5700": 23.5} and "error" not in event.data


async def test_notifications_the_store_refuses_are_logged_once_per_host(
    server: Lwm2mServer,
    device: Device,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A store outage (a full disk, Redis down) refuses every notification: one ERROR for the
    host, then DEBUG — not a log line per notification. None is acknowledged (the device
    retransmits a CON: test_notification_storage.py), so none is "acknowledged but not
    stored"."""
    import logging

    from keystore.store.errors import StoreError

    assert server.uplink is not None

    def refuse(points: object) -> int:
        raise StoreError("the store is down")

    monkeypatch.setattr(server.uplink.store, "append_points", refuse)
    with caplog.at_level(logging.DEBUG):
        for seq in range(2, 7):
            device.peer.send(device.notification(b"30.5", mtype=raw.NON, seq=seq))
        await eventually(lambda: sum("not stored" in r.getMessage() for r in caplog.records) >= 5)
    refused = [r for r in caplog.records if "notification from" in r.getMessage()]
    loud = [r for r in refused if r.levelno >= logging.WARNING]
    assert len(loud) == 1, [r.getMessage() for r in loud]  # the uplink's ERROR
    assert len(refused) == 5
    assert not any("acknowledged" in r.getMessage() for r in caplog.records)
