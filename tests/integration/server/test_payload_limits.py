"""Per-content-format payload limits (issue 11 item 2): a Send over its format's limit is
refused with 4.13 and Size1 (RFC 7959 §2.9.3) before it is decoded, and counted; one under
it is stored as before. A notification over the limit is acknowledged but not stored."""

from __future__ import annotations

import attrs
import cbor2

from lwm2m_client.client import Lwm2mClient
from lwm2m_server.config import PayloadLimits
from lwm2m_server.service import Lwm2mServer
from object_models.content_format import ContentFormat as CF
from object_models.path import LwM2mPath

from . import rawcoap as raw
from .conftest import ServerFactory, eventually, next_event, uri_of

SIZE1 = 60
LIMIT = 1000


def _pack(values: int) -> bytes:
    return cbor2.dumps(
        [{-2: "/3303/0/5700", -3: 1_700_000_000 + i, 2: 20.5} for i in range(values)]
    )


async def _registered(server: Lwm2mServer) -> raw.RawPeer:
    peer = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port))
    await raw.register(peer, "big-sender", links="</3303/0>")
    return peer


async def test_a_send_over_the_limit_is_refused_with_size1_before_decoding(
    make_server: ServerFactory,
) -> None:
    server = await make_server(payload_limits=attrs.evolve(PayloadLimits(), senml_cbor=LIMIT))
    peer = await _registered(server)
    try:
        big = _pack(40)
        assert LIMIT < len(big) < 1400  # one datagram: no Block1 needed
        for payload in (big, b"\xff" * (LIMIT + 1)):  # the second would not even decode
            send = raw.request(raw.POST, ["dp"], payload=payload, content_format=CF.SENML_CBOR)
            answer = await peer.exchange(send)
            assert raw.code_str(answer.code) == "4.13"
            assert answer.uint(SIZE1) == LIMIT
        assert server.telemetry_latest("big-sender") == {}
        assert server.uplink is not None and server.uplink.payloads_refused["send"] == 2
        # the same values under the limit, and another format's limit is its own
        small = _pack(10)
        send = raw.request(raw.POST, ["dp"], payload=small, content_format=CF.SENML_CBOR)
        assert raw.code_str((await peer.exchange(send)).code) == "2.04"
        assert server.telemetry_latest("big-sender")["/3303/0/5700"].value == 20.5
    finally:
        peer.close()


async def test_the_default_limits_take_a_typical_send(server: Lwm2mServer) -> None:
    peer = await _registered(server)
    try:
        send = raw.request(raw.POST, ["dp"], payload=_pack(20), content_format=CF.SENML_CBOR)
        assert raw.code_str((await peer.exchange(send)).code) == "2.04"
    finally:
        peer.close()


async def test_a_notification_over_the_limit_is_acknowledged_but_not_stored(
    make_server: ServerFactory,
) -> None:
    server = await make_server(payload_limits=attrs.evolve(PayloadLimits(), text=4))
    client = Lwm2mClient("noisy", uri_of(server), auto_update=False)
    await client.start()
    try:
        await client.register()
        temperature = LwM2mPath.parse("/3303/0/5700")
        await server.observe("noisy", temperature, fmt=CF.TEXT)
        events = server.events()
        client.set_value(str(temperature), 12345.25)  # "12345.25": 8 bytes of text
        event = await next_event(events, "NOTIFICATION")
        assert "4-byte limit" in event.data["error"] and event.data["points"] == []
        assert server.uplink is not None and server.uplink.payloads_refused["notification"] == 1
        client.set_value(str(temperature), 1.5)  # "1.5": under the limit, stored
        await eventually(lambda: server.telemetry_latest("noisy")[str(temperature)].value == 1.5)
    finally:
        await client.stop()
