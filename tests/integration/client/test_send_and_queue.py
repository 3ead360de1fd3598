"""Information Reporting Send (POST /dp) and queue mode (the device sleeps between sends)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiocoap.numbers.codes import Code

from lwm2m_client.client import Lwm2mClient, Lwm2mClientError
from object_models import codecs
from object_models.content_format import ContentFormat
from object_models.errors import CodecError
from object_models.path import LwM2mPath
from tests.integration.server.conftest import eventually

from .conftest import ClientFactory
from .fake_server import FakeLwm2mServer


@pytest.mark.parametrize("fmt", [ContentFormat.SENML_CBOR, ContentFormat.SENML_JSON])
async def test_send_arrives_timestamped(
    client: Lwm2mClient, server: FakeLwm2mServer, fmt: ContentFormat
) -> None:
    before = time.time()
    code = await client.send(["/3303/0/5700", "/3/0/9"], content_format=fmt)
    assert code == Code.CHANGED
    up = await server.next_uplink("send")
    assert up.path == ("dp",) and up.content_format == fmt
    data = codecs.decode_timestamped(up.payload, fmt, client.objects.models)
    ((timestamp, nodes),) = data.entries
    assert timestamp is not None and before - 1 <= timestamp <= time.time() + 1
    values = {str(p): n.value for p, n in nodes.items()}  # type: ignore[union-attr]
    assert values == {"/3303/0/5700": 21.5, "/3/0/9": 100}


async def test_send_default_is_senml_cbor(client: Lwm2mClient, server: FakeLwm2mServer) -> None:
    await client.send([LwM2mPath(3303, 0)])
    up = await server.next_uplink("send")
    assert up.content_format == ContentFormat.SENML_CBOR


async def test_send_refused_muted_and_missing(client: Lwm2mClient, server: FakeLwm2mServer) -> None:
    server.send_code = Code.BAD_REQUEST
    with pytest.raises(Lwm2mClientError) as info:
        await client.send(["/3/0/9"])
    assert info.value.code == Code.BAD_REQUEST
    client.set_value("/1/0/23", True)
    with pytest.raises(Lwm2mClientError, match="muted"):
        await client.send(["/3/0/9"])


async def test_send_needs_a_timestamped_format(client: Lwm2mClient) -> None:
    # LwM2M CBOR carries no time, so it cannot be used for Send (4.06 from the codec).
    with pytest.raises(CodecError):
        await client.send(["/3/0/9"], content_format=ContentFormat.LWM2M_CBOR)


async def test_queue_mode_silence(make_client: ClientFactory, server: FakeLwm2mServer) -> None:
    client = await make_client(queue_mode=True, awake_time=0.4)
    # Just registered: awake.
    response = await server.request(Code.GET, "/3/0/9", accept=ContentFormat.TEXT)
    assert response.payload == b"100"
    # After the awake window the device is deaf: no ACK, no response. (NON, so that the fake
    # server's message layer has no exchange open that would hold back the next request.)
    await eventually(lambda: not client.gate.awake)
    with pytest.raises(TimeoutError):
        await server.request(Code.GET, "/3/0/9", timeout=0.5, reliable=False)
    assert client.gate.dropped == 1
    # Any uplink (here an Update, as a waking device sends) opens the window again.
    await client.update()
    await server.next_uplink("update")
    response = await server.request(Code.GET, "/3/0/9", accept=ContentFormat.TEXT)
    assert response.code == Code.CONTENT


async def test_queue_mode_retransmission_answered_after_wake(
    make_client: ClientFactory, server: FakeLwm2mServer
) -> None:
    client = await make_client(queue_mode=True, awake_time=30)
    client.sleep()
    pending = asyncio.ensure_future(server.request(Code.GET, "/3/0/0", timeout=6))
    await eventually(lambda: client.gate.dropped == 1)  # the device saw the CON and dropped it
    assert not pending.done()
    await client.update()  # wakes; the CON retransmission (after 2-3 s) is then answered
    response = await pending
    assert response.code == Code.CONTENT and response.payload == b"pylwm2m"


async def test_queue_mode_sleep_now(make_client: ClientFactory, server: FakeLwm2mServer) -> None:
    client = await make_client(queue_mode=True, awake_time=30)
    client.sleep()
    with pytest.raises(TimeoutError):
        await server.request(Code.GET, "/3/0/9", timeout=0.5, reliable=False)
    await client.send(["/3/0/9"])  # sending wakes the device
    response = await server.request(Code.GET, "/3/0/9", accept=ContentFormat.TEXT)
    assert response.payload == b"100"
