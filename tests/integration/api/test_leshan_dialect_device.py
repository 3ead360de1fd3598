"""The Leshan dialect against the real server and a real ``lwm2m_client`` device over loopback
CoAP: an opaque and a Time value written in each dialect reach the device as the bytes and the
instant they mean, and read back in each dialect's form (issue 13: "0102abcd" was written as
base64, a Time in ms as seconds); a request queued for a sleeping device answers later as a
REQUEST_RESPONSE event with the ``requestId`` its HTTP answer gave."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientResponse

from lwm2m_client.client import Lwm2mClient
from lwm2m_client.device import build_default_tree
from lwm2m_client.models import default_models
from lwm2m_server.service import Lwm2mServer
from tests.live import (
    DeviceFactory,
    Http,
    coap_uri,
    devices,
    next_sse_event,
)

EP = "leshan-dev"
L = "/leshan/api"
OPAQUE = "/10/0/7"  # eDRX parameters for Iu mode: Opaque, RW
TIME = "/19/0/2"  # BinaryAppDataContainer, Data Creation Time: Time, RW


Factory = DeviceFactory


@pytest.fixture
async def make_device(server: Lwm2mServer) -> AsyncIterator[Factory]:
    """Demo devices with an opaque (``/10/0/7``) and a Time (``/19/0/2``) resource."""
    async with devices(server, lwm2m_version="1.1") as make_plain:

        async def make(endpoint: str = EP, **kwargs: Any) -> Lwm2mClient:
            uri = coap_uri(server)
            tree = build_default_tree(
                default_models(), endpoint=endpoint, server_uri=uri, lifetime=300
            )
            tree.add_instance(10, {7: b"\x00"}, instance_id=0)
            tree.add_instance(19, {0: [b""], 2: 0}, instance_id=0)
            return await make_plain(endpoint, objects=tree, **kwargs)

        yield make


async def _json(resp: ClientResponse, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


@pytest.mark.parametrize("fmt", ["TLV", "SENML_CBOR", "SENML_JSON"])
async def test_opaque_and_time_round_trip_in_both_dialects(
    http: Http, make_device: Factory, fmt: str
) -> None:
    device = await make_device()
    # Leshan: hex and epoch milliseconds
    opaque = {"id": 7, "kind": "singleResource", "type": "OPAQUE", "value": "0102abcd"}
    body = await _json(await http.put(f"{L}/clients/{EP}{OPAQUE}?format={fmt}", json=opaque))
    assert body["status"] == "CHANGED(204)", body
    assert device.get_value(OPAQUE) == bytes.fromhex("0102abcd")
    time = {"id": 2, "kind": "singleResource", "type": "TIME", "value": 1_733_500_000_000}
    body = await _json(await http.put(f"{L}/clients/{EP}{TIME}?format={fmt}", json=time))
    assert body["status"] == "CHANGED(204)", body
    assert device.get_value(TIME) == 1_733_500_000  # the device keeps seconds

    for path, leshan, native in (
        (OPAQUE, "0102abcd", base64.b64encode(bytes.fromhex("0102abcd")).decode()),
        (TIME, 1_733_500_000_000, 1_733_500_000),
    ):
        read = await _json(await http.get(f"{L}/clients/{EP}{path}?format={fmt}"))
        assert read["status"] == "CONTENT(205)" and read["content"]["value"] == leshan
        read = await _json(await http.get(f"/api/clients/{EP}{path}?format={fmt}"))
        assert read["content"]["value"] == native

    # native: base64 and epoch seconds
    await _json(await http.put(f"/api/clients/{EP}{OPAQUE}?format={fmt}", json="3q2+7w=="))
    assert device.get_value(OPAQUE) == bytes.fromhex("deadbeef")
    await _json(await http.put(f"/api/clients/{EP}{TIME}?format={fmt}", json=1_600_000_000))
    assert device.get_value(TIME) == 1_600_000_000
    read = await _json(await http.get(f"{L}/clients/{EP}{OPAQUE}"))
    assert read["content"]["value"] == "deadbeef"
    read = await _json(await http.get(f"{L}/clients/{EP}{TIME}"))
    assert read["content"]["value"] == 1_600_000_000_000


async def test_an_ambiguous_value_never_reaches_the_device(
    http: Http, make_device: Factory
) -> None:
    device = await make_device()
    node = {"id": 2, "kind": "singleResource", "type": "TIME", "value": "1733500000000"}
    resp = await http.put(f"{L}/clients/{EP}{TIME}", json=node)
    assert resp.status == 400
    text = await resp.text()
    assert TIME in text and "TIME" in text and "milliseconds" in text
    node = {"id": 7, "kind": "singleResource", "type": "OPAQUE", "value": "AQKrzQ=="}
    assert (await http.put(f"{L}/clients/{EP}{OPAQUE}", json=node)).status == 400
    assert device.get_value(TIME) == 0 and device.get_value(OPAQUE) == b"\x00"


async def test_queued_request_answers_as_request_response_event(
    http: Http, make_device: Factory
) -> None:
    leshan = await http.get(f"{L}/event?ep=sleepy")
    native = await http.get("/api/event?ep=sleepy")
    await leshan.content.readline()
    await native.content.readline()
    device = await make_device("sleepy", queue_mode=True, awake_time=0.3)
    registered = await next_sse_event(leshan, "REGISTRATION")
    assert isinstance(registered["registrationDate"], int) and registered["queuemode"] is True
    assert (await next_sse_event(leshan, "SLEEPING")) == {"ep": "sleepy"}

    delayed = await _json(await http.get(f"{L}/clients/sleepy{OPAQUE}"))
    assert delayed["delayed"] is True and delayed["ep"] == "sleepy"
    assert delayed["path"] == OPAQUE and delayed["requestId"]
    queued = await _json(await http.get(f"/api/clients/sleepy{TIME}"), status=202)
    assert queued["requestId"] and queued["requestId"] != delayed["requestId"]

    await device.update()  # the device wakes up; the server delivers what was queued
    updated = await next_sse_event(leshan, "UPDATED")
    assert updated["registration"]["endpoint"] == "sleepy"
    assert updated["update"]["registrationId"] == updated["registration"]["registrationId"]

    answers = {}
    for _ in range(2):
        event = await next_sse_event(leshan, "REQUEST_RESPONSE")
        answers[event["requestId"]] = event
    first = answers[delayed["requestId"]]
    assert first["ep"] == "sleepy" and first["path"] == OPAQUE and first["delayed"] is True
    assert first["response"]["status"] == "CONTENT(205)"
    assert first["response"]["content"]["value"] == "00"  # hex
    second = answers[queued["requestId"]]
    assert second["response"]["content"]["value"] == 0  # epoch ms
    native_answers = {}
    for _ in range(2):
        event = await next_sse_event(native, "REQUEST_RESPONSE")
        native_answers[event["requestId"]] = event
    assert native_answers[delayed["requestId"]]["response"]["content"]["value"] == "AA=="
    assert native_answers[queued["requestId"]]["response"]["status"] == "CONTENT"
    leshan.close()
    native.close()
