"""Observe over real sockets: notifications after ``set_value`` honouring pmin/pmax/gt, cancel by
Observe=1 (same token) and by RST, and Observe-Composite."""

from __future__ import annotations

import asyncio
import time

from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type

from lwm2m_client.client import Lwm2mClient
from object_models import codecs
from object_models.content_format import ContentFormat
from object_models.path import LwM2mPath
from tests.integration.server.conftest import eventually

from .fake_server import FakeLwm2mServer, Notifications, raw_message

TEMPERATURE = "/3303/0/5700"


async def test_observe_and_notify_on_set_value(
    client: Lwm2mClient, server: FakeLwm2mServer
) -> None:
    request = server.observe(TEMPERATURE, accept=ContentFormat.TEXT)
    notifications = Notifications(request)
    first = await request.response
    assert first.code == Code.CONTENT and first.opt.observe == 0 and first.payload == b"21.5"
    assert len(client.observations.active) == 1

    client.set_value(TEMPERATURE, 25.0)
    note = await notifications.next()
    assert note.payload == b"25.0" and note.opt.observe > 0
    assert int(note.opt.content_format) == ContentFormat.TEXT

    client.set_value("/3303/0/5701", "K")  # another resource: no notification
    assert await notifications.none_within(0.3)
    notifications.cancel()


async def test_observe_instance_in_senml(client: Lwm2mClient, server: FakeLwm2mServer) -> None:
    request = server.observe("/3303/0", accept=ContentFormat.SENML_CBOR)
    notifications = Notifications(request)
    await request.response
    client.set_value(TEMPERATURE, 19.0)
    note = await notifications.next()
    node = codecs.decode(
        note.payload, LwM2mPath(3303, 0), ContentFormat.SENML_CBOR, client.objects.models
    )
    assert node.resources[5700].value == 19.0  # type: ignore[union-attr]
    notifications.cancel()


async def test_pmin_delays_and_coalesces(client: Lwm2mClient, server: FakeLwm2mServer) -> None:
    await server.request(Code.PUT, TEMPERATURE, query=("pmin=1",))
    request = server.observe(TEMPERATURE, accept=ContentFormat.TEXT)
    notifications = Notifications(request)
    await request.response
    started = time.monotonic()
    client.set_value(TEMPERATURE, 22.0)
    client.set_value(TEMPERATURE, 23.0)
    note = await notifications.next()
    assert time.monotonic() - started >= 0.9
    assert note.payload == b"23.0", "changes within pmin are coalesced into the latest value"
    notifications.cancel()


async def test_pmax_notifies_without_change(client: Lwm2mClient, server: FakeLwm2mServer) -> None:
    await server.request(Code.PUT, "/3303/0", query=("pmax=1",))  # instance level, inherited
    request = server.observe(TEMPERATURE, accept=ContentFormat.TEXT)
    notifications = Notifications(request)
    await request.response
    started = time.monotonic()
    note = await notifications.next()
    assert 0.9 <= time.monotonic() - started < 2.0
    assert note.payload == b"21.5"
    notifications.cancel()


async def test_server_default_pmax(client: Lwm2mClient, server: FakeLwm2mServer) -> None:
    await server.request(Code.PUT, "/1/0/3", content_format=ContentFormat.TEXT, payload=b"1")
    request = server.observe("/3/0/9", accept=ContentFormat.TEXT)
    notifications = Notifications(request)
    await request.response
    assert (await notifications.next()).payload == b"100"
    notifications.cancel()


async def test_gt_lt_only_notify_on_crossing(client: Lwm2mClient, server: FakeLwm2mServer) -> None:
    await server.request(Code.PUT, TEMPERATURE, query=("gt=30", "lt=10"))
    request = server.observe(TEMPERATURE, accept=ContentFormat.TEXT)
    notifications = Notifications(request)
    await request.response
    client.set_value(TEMPERATURE, 25.0)  # still between lt and gt
    assert await notifications.none_within(0.3)
    client.set_value(TEMPERATURE, 31.0)  # crossed gt
    assert (await notifications.next()).payload == b"31.0"
    client.set_value(TEMPERATURE, 5.0)  # crossed gt (down) and lt
    assert (await notifications.next()).payload == b"5.0"
    notifications.cancel()


async def test_cancel_with_observe_1_on_the_same_token(
    client: Lwm2mClient, server: FakeLwm2mServer
) -> None:
    raw = server.raw_socket()
    try:
        token = b"\x0b\x5e"
        observe = raw_message(
            Type.CON, Code.GET, token=token, uri_path=("3303", "0", "5700"), observe=0
        )
        raw.send(observe)
        first = await raw.receive()
        assert first.code == Code.CONTENT and first.opt.observe == 0 and first.token == token
        client.set_value(TEMPERATURE, 26.0)
        note = await raw.receive()
        raw.ack(note)
        assert note.token == token and note.payload == b"26.0" and note.opt.observe >= 1

        cancel = raw_message(
            Type.CON, Code.GET, token=token, uri_path=("3303", "0", "5700"), observe=1
        )
        raw.send(cancel)
        answer = await raw.receive()
        assert answer.code == Code.CONTENT and answer.opt.observe is None
        await asyncio.sleep(0.05)
        assert client.observations.active == []
        client.set_value(TEMPERATURE, 27.0)
        assert await raw.receive_none(0.4)
    finally:
        raw.close()


async def test_cancel_with_rst(client: Lwm2mClient, server: FakeLwm2mServer) -> None:
    raw = server.raw_socket()
    try:
        observe = raw_message(
            Type.CON, Code.GET, token=b"\x77", uri_path=("3", "0", "9"), observe=0
        )
        raw.send(observe)
        assert (await raw.receive()).opt.observe == 0
        client.set_value("/3/0/9", 80)
        note = await raw.receive()
        assert note.payload == b"80"
        raw.rst(note)
        await eventually(lambda: client.observations.active == [])
        client.set_value("/3/0/9", 70)
        assert await raw.receive_none(0.4)
    finally:
        raw.close()


async def test_observe_composite(client: Lwm2mClient, server: FakeLwm2mServer) -> None:
    paths = [LwM2mPath(3303, 0, 5700), LwM2mPath(3, 0, 9)]
    body = codecs.encode_paths(paths, ContentFormat.SENML_JSON)
    message = server.message(
        Code.FETCH,
        "/",
        observe=0,
        content_format=ContentFormat.SENML_JSON,
        accept=ContentFormat.SENML_CBOR,
        payload=body,
    )
    request = server.context.request(message)
    notifications = Notifications(request)
    first = await request.response
    assert first.code == Code.CONTENT and first.opt.observe == 0
    client.set_value("/3/0/9", 55)
    note = await notifications.next()
    nodes = codecs.decode_nodes(note.payload, ContentFormat.SENML_CBOR, client.objects.models)
    assert {str(p): n.value for p, n in nodes.items()} == {  # type: ignore[union-attr]
        "/3303/0/5700": 21.5,
        "/3/0/9": 55,
    }
    notifications.cancel()


async def test_observe_errors_are_plain_responses(
    client: Lwm2mClient, server: FakeLwm2mServer
) -> None:
    request = server.observe("/3303/7/5700")
    response = await request.response
    assert response.code == Code.NOT_FOUND and response.opt.observe is None
    await asyncio.sleep(0.05)
    assert client.observations.active == []
