"""Create without an instance id, against a scripted device that keeps its object list to
itself: it answers Creates but sends no Update afterwards (many real clients do so), so the
registration's object list stays what it was at Register.

In SenML and LwM2M CBOR every value carries its full path, so the server picks the id; the
second Create in a row must not pick the id the first one just used (the device would answer
4.00 for an existing instance), and the API reports the new instance either way."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from lwm2m_server.service import Lwm2mServer
from object_models import codecs
from object_models.content_format import ContentFormat as CF
from object_models.node import LwM2mObject, LwM2mObjectInstance, LwM2mSingleResource
from object_models.path import LwM2mPath
from object_models.registry import ModelRegistry
from object_models.types import ResourceType
from tests.live import api_of

from . import rawcoap as raw

P = LwM2mPath.parse
MODELS = ModelRegistry().for_client({})


class TemperatureDevice:
    """Serves object 3303 with instance 0; a Create adds the instance the payload names (the
    client picks the lowest free id for TLV bare resources), 4.00 if it exists already."""

    def __init__(self) -> None:
        self.instances: set[int] = {0}
        self.creates: list[raw.Msg] = []

    def __call__(self, msg: raw.Msg) -> raw.Msg:
        if msg.code != raw.POST or msg.strings(raw.URI_PATH) != ["3303"]:
            return raw.Msg(raw.ACK, 0x84, 0)  # 4.04
        self.creates.append(msg)
        fmt = msg.uint(raw.CONTENT_FORMAT)
        assert fmt is not None
        if fmt == CF.TLV and msg.payload[0] >> 6 != 0:  # bare resources: the client picks
            new = min(set(range(len(self.instances) + 1)) - self.instances)
        else:
            node = codecs.decode(msg.payload, P("/3303"), fmt, MODELS)
            assert isinstance(node, LwM2mObject) and len(node.instances) == 1
            new = next(iter(node.instances))
        if new in self.instances:
            return raw.Msg(raw.ACK, 0x80, 0, payload=b"instance exists")  # 4.00
        self.instances.add(new)
        location = [(raw.LOCATION_PATH, b"3303"), (raw.LOCATION_PATH, str(new).encode())]
        return raw.Msg(raw.ACK, raw.CREATED, 0, options=location)


@pytest.fixture
async def device(server: Lwm2mServer) -> AsyncIterator[TemperatureDevice]:
    device = TemperatureDevice()
    peer = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port), device)
    try:
        await raw.register(
            peer, "no-update", links='</>;ct="110 112 11543 11544",</3303/0>', version="1.2"
        )
        yield device
    finally:
        peer.close()


def _instance() -> LwM2mObjectInstance:
    return LwM2mObjectInstance.of(None, LwM2mSingleResource.new(5700, 1.5, ResourceType.FLOAT))


@pytest.mark.parametrize("fmt", [CF.SENML_CBOR, CF.SENML_JSON, CF.LWM2M_CBOR, CF.TLV, None])
async def test_two_creates_without_an_update_get_distinct_ids(
    server: Lwm2mServer, device: TemperatureDevice, fmt: CF | None
) -> None:
    first = await server.create("no-update", P("/3303"), _instance(), fmt=fmt)
    second = await server.create("no-update", P("/3303"), _instance(), fmt=fmt)
    assert first.dotted_code == "2.01", first.error_message
    assert second.dotted_code == "2.01", second.error_message
    assert first.location is not None and second.location is not None
    assert first.location != second.location
    assert {first.location, second.location} == {"/3303/1", "/3303/2"}
    assert device.instances == {0, 1, 2}


async def test_ids_the_client_picked_are_not_chosen_again(
    server: Lwm2mServer, device: TemperatureDevice
) -> None:
    """A TLV Create lets the client pick (Location-Path /3303/1); a SenML Create right after
    must not pick 1 from the stale object list."""
    tlv = await server.create("no-update", P("/3303"), _instance())
    assert tlv.location == "/3303/1"
    senml = await server.create("no-update", P("/3303"), _instance(), fmt=CF.SENML_CBOR)
    assert senml.dotted_code == "2.01" and senml.location == "/3303/2"


async def test_two_creates_through_the_http_api(
    server: Lwm2mServer, device: TemperatureDevice
) -> None:
    async with api_of(server) as http:
        locations = []
        for _ in range(2):
            response = await http.post(
                "/api/clients/no-update/3303?format=senml-cbor", json={"5700": 1.5}
            )
            assert response.status == 200, await response.text()
            body = await response.json()
            assert body["code"] == "2.01"
            locations.append(body["location"])
    assert locations == ["/3303/1", "/3303/2"]
