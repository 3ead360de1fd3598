"""What a LwM2M 1.2 client sends in LwM2M CBOR (Content-Format 11544) over a real socket: a Send
(``POST /dp``) and notifications are decoded and stored like SenML (issue 9 item 3).

LwM2M CBOR has no time field, so every value is stored with the time the server received it;
the server runs on a fixed clock here so that time is known exactly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import cbor2
import pytest

from lwm2m_server.service import Lwm2mServer
from object_models.content_format import ContentFormat as CF
from object_models.path import LwM2mPath

from . import rawcoap as raw
from .conftest import eventually, next_event, server_config

NOW = 1_800_000_000.25
"""The server's clock: the receive time every LwM2M CBOR value must be stored with."""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Lwm2mServer]:
    srv = Lwm2mServer(server_config(tmp_path / "data"), clock=lambda: NOW)
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def peer(server: Lwm2mServer) -> AsyncIterator[raw.RawPeer]:
    peer = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port))
    yield peer
    peer.close()


async def test_send_in_lwm2m_cbor_is_stored_with_the_receive_time(
    server: Lwm2mServer, peer: raw.RawPeer
) -> None:
    """Was 4.15: the server took Send only in SenML."""
    await raw.register(peer, "cbor-sender", links="</3/0>,</3303/0>", version="1.2")
    events = server.events()
    payload = cbor2.dumps({(3303, 0, 5700): 21.5, (3, 0): {9: 87, 6: {0: 1, 1: 5}}})
    msg = raw.request(raw.POST, ["dp"], payload=payload, content_format=CF.LWM2M_CBOR)
    assert raw.code_str((await peer.exchange(msg)).code) == "2.04"

    latest = server.telemetry_latest("cbor-sender")
    assert {path: point.value for path, point in latest.items()} == {
        "/3303/0/5700": 21.5,
        "/3/0/9": 87,
        "/3/0/6/0": 1,
        "/3/0/6/1": 5,
    }
    assert {point.ts_ms for point in latest.values()} == {round(NOW * 1000)}
    assert latest["/3/0/9"].key == "batteryLevel"
    event = await next_event(events, "SEND")
    assert {p["path"] for p in event.data["points"]} == set(latest)


async def test_send_in_lwm2m_cbor_with_a_null_is_4_00(
    server: Lwm2mServer, peer: raw.RawPeer
) -> None:
    """A path without a value means nothing in a Send: a decode error, nothing stored."""
    await raw.register(peer, "cbor-null", links="</3/0>", version="1.2")
    payload = cbor2.dumps({(3, 0, 9): None})
    msg = raw.request(raw.POST, ["dp"], payload=payload, content_format=CF.LWM2M_CBOR)
    assert raw.code_str((await peer.exchange(msg)).code) == "4.00"
    assert server.telemetry_latest("cbor-null") == {}


TEMP = LwM2mPath(3303, 0, 5700)


async def test_notification_in_lwm2m_cbor_is_stored_with_the_receive_time(
    server: Lwm2mServer,
) -> None:
    token = b""

    def answer_observe(msg: raw.Msg) -> raw.Msg:
        nonlocal token
        token = msg.token
        options = [(raw.OBSERVE, raw.uint_bytes(1)), (raw.CONTENT_FORMAT, raw.uint_bytes(11544))]
        payload = cbor2.dumps({(3303, 0, 5700): 20.5})
        return raw.Msg(raw.ACK, raw.CONTENT, 0, options=options, payload=payload)

    peer = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port), answer_observe)
    try:
        await raw.register(peer, "cbor-notifier", links="</3303/0>", version="1.2")
        response = await server.observe("cbor-notifier", TEMP, fmt=CF.LWM2M_CBOR)
        assert response.success
        options = [(raw.OBSERVE, raw.uint_bytes(2)), (raw.CONTENT_FORMAT, raw.uint_bytes(11544))]
        notification = raw.Msg(
            raw.CON,
            raw.CONTENT,
            peer.next_mid(),
            token,
            options,
            cbor2.dumps({(3303, 0, 5700): 23.75}),
        )
        assert (await peer.exchange(notification)).mtype == raw.ACK
        latest = await eventually(
            lambda: [
                p
                for p in server.telemetry_history("cbor-notifier", key=str(TEMP))
                if p.value == 23.75
            ]
        )
        assert latest[0].ts_ms == round(NOW * 1000)
    finally:
        peer.close()
