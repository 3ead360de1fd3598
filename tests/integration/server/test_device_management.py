"""Device Management interface against a real ``lwm2m_client`` over loopback: every operation,
in every content format the spec allows for it, plus the format choice, errors and timeouts.
A hand-built peer plays a device that answers garbage or uses an alternate root path."""

from __future__ import annotations

import asyncio

import pytest

from lwm2m_client.client import Lwm2mClient
from lwm2m_server.operations import DeviceAnswerError, DeviceTimeoutError, UnknownClientError
from lwm2m_server.service import Lwm2mServer
from object_models.content_format import ContentFormat as CF
from object_models.errors import Lwm2mError
from object_models.node import (
    LwM2mObject,
    LwM2mObjectInstance,
    LwM2mSingleResource,
)
from object_models.path import LwM2mPath
from object_models.types import ResourceType

from . import rawcoap as raw
from .conftest import ClientFactory, eventually

P = LwM2mPath.parse
SINGLE = [CF.TLV, CF.SENML_JSON, CF.SENML_CBOR, CF.LWM2M_CBOR, CF.JSON]
MULTI = [CF.SENML_JSON, CF.SENML_CBOR, CF.LWM2M_CBOR]
ids = lambda f: f.name.lower()  # noqa: E731


@pytest.fixture
async def client(make_client: ClientFactory) -> Lwm2mClient:
    return await make_client("dm", lwm2m_version="1.2")


def resource(node: object) -> object:
    assert isinstance(node, LwM2mSingleResource)
    return node.value


@pytest.mark.parametrize("fmt", SINGLE, ids=ids)
async def test_read_instance(server: Lwm2mServer, client: Lwm2mClient, fmt: CF) -> None:
    response = await server.read("dm", P("/3/0"), fmt=fmt)
    assert response.dotted_code == "2.05" and response.content_format == fmt
    assert isinstance(response.node, LwM2mObjectInstance)
    assert resource(response.node.resources[0]) == "pylwm2m"
    assert resource(response.node.resources[2]) == "PY-dm"


@pytest.mark.parametrize("fmt", [*SINGLE, CF.TEXT], ids=ids)
async def test_read_resource(server: Lwm2mServer, client: Lwm2mClient, fmt: CF) -> None:
    response = await server.read("dm", P("/3303/0/5700"), fmt=fmt)
    assert response.success and response.content_format == fmt
    assert resource(response.node) == 21.5
    # a Read answer is telemetry too
    latest = server.telemetry_latest("dm")["/3303/0/5700"]
    assert latest.value == 21.5 and latest.key == "sensorValue"


@pytest.mark.parametrize("fmt", [CF.TLV, CF.SENML_CBOR, CF.LWM2M_CBOR], ids=ids)
async def test_read_object(server: Lwm2mServer, client: Lwm2mClient, fmt: CF) -> None:
    response = await server.read("dm", P("/3303"), fmt=fmt)
    assert isinstance(response.node, LwM2mObject)
    assert resource(response.node.instances[0].resources[5701]) == "Cel"


@pytest.mark.parametrize(
    ("version", "formats", "expected"),
    [
        ("1.0", None, CF.TLV),
        ("1.1", None, CF.SENML_CBOR),
        ("1.1", [CF.TLV, CF.TEXT], CF.TLV),
        ("1.2", None, CF.LWM2M_CBOR),
        ("1.2", [CF.SENML_CBOR, CF.TLV], CF.SENML_CBOR),
    ],
)
async def test_format_choice(
    server: Lwm2mServer,
    make_client: ClientFactory,
    version: str,
    formats: list[int] | None,
    expected: CF,
) -> None:
    await make_client("fmt", lwm2m_version=version, formats=formats)
    response = await server.read("fmt", P("/3/0"))
    assert response.content_format == expected
    write = await server.write("fmt", P("/3/0/14"), LwM2mSingleResource.new(14, "+03:00"))
    assert write.dotted_code == "2.04"


async def test_discover(server: Lwm2mServer, client: Lwm2mClient) -> None:
    response = await server.discover("dm", P("/3/0"))
    assert response.dotted_code == "2.05" and response.content_format == CF.LINK
    assert response.links is not None and "</3/0/0>" in response.links


@pytest.mark.parametrize("fmt", SINGLE, ids=ids)
async def test_write_replace_and_partial(server: Lwm2mServer, client: Lwm2mClient, fmt: CF) -> None:
    value = LwM2mSingleResource.new(14, "+05:30", ResourceType.STRING)
    assert (await server.write("dm", P("/3/0/14"), value, fmt=fmt)).dotted_code == "2.04"
    assert client.get_value("/3/0/14") == "+05:30"
    partial = LwM2mObjectInstance.of(0, LwM2mSingleResource.new(14, "-01:00", ResourceType.STRING))
    response = await server.write("dm", P("/3/0"), partial, replace=False, fmt=fmt)
    assert response.dotted_code == "2.04"
    assert client.get_value("/3/0/14") == "-01:00"
    assert client.get_value("/3/0/0") == "pylwm2m"  # partial update kept the rest


async def test_write_attributes(server: Lwm2mServer, client: Lwm2mClient) -> None:
    response = await server.write_attributes("dm", P("/3303/0/5700"), {"pmin": "1", "pmax": "30"})
    assert response.dotted_code == "2.04"
    links = (await server.discover("dm", P("/3303/0"))).links or ""
    assert "pmin=1" in links and "pmax=30" in links
    assert (await server.write_attributes("dm", P("/3303/0/5700"), {"pmin": None})).success
    assert "pmin=1" not in ((await server.discover("dm", P("/3303/0"))).links or "")


async def test_execute(server: Lwm2mServer, client: Lwm2mClient) -> None:
    client.set_value("/3303/0/5700", 30.0)
    assert (await server.execute("dm", P("/3303/0/5605"))).dotted_code == "2.04"
    assert client.get_value("/3303/0/5602") == 30.0
    assert (await server.execute("dm", P("/3/0/4"), "0='now'")).dotted_code == "2.04"
    refused = await server.execute("dm", P("/3/0/0"))
    assert refused.dotted_code == "4.05" and refused.error_message


@pytest.mark.parametrize("fmt", [CF.TLV, CF.SENML_JSON, CF.SENML_CBOR, CF.LWM2M_CBOR], ids=ids)
async def test_create_read_delete(server: Lwm2mServer, client: Lwm2mClient, fmt: CF) -> None:
    instance = LwM2mObjectInstance.of(
        7,
        LwM2mSingleResource.new(5700, 12.5, ResourceType.FLOAT),
        LwM2mSingleResource.new(5701, "Cel", ResourceType.STRING),
    )
    created = await server.create("dm", P("/3303"), instance, fmt=fmt)
    assert created.dotted_code == "2.01" and created.location == "/3303/7"
    assert resource((await server.read("dm", P("/3303/7/5700"))).node) == 12.5
    assert (await server.delete("dm", P("/3303/7"))).dotted_code == "2.02"
    assert (await server.read("dm", P("/3303/7"))).dotted_code == "4.04"


async def test_create_lets_the_client_pick_the_id(server: Lwm2mServer, client: Lwm2mClient) -> None:
    instance = LwM2mObjectInstance.of(None, LwM2mSingleResource.new(5700, 1.0, ResourceType.FLOAT))
    created = await server.create("dm", P("/3303"), instance)
    assert created.dotted_code == "2.01" and created.location == "/3303/1"
    # with a format that names full paths, the server picks a free id from the object list,
    # which the client's Update (new instance) brings up to date
    await eventually(lambda: 1 in server.client("dm").object_links.instances.get(3303, ()))
    created = await server.create("dm", P("/3303"), instance, fmt=CF.SENML_CBOR)
    assert created.dotted_code == "2.01" and created.location is not None


@pytest.mark.parametrize("fmt", MULTI, ids=ids)
async def test_read_composite(server: Lwm2mServer, client: Lwm2mClient, fmt: CF) -> None:
    paths = [P("/3/0/0"), P("/3303/0/5700"), P("/3303/0/5701")]
    response = await server.read_composite("dm", paths, fmt=fmt)
    assert response.dotted_code == "2.05" and response.nodes is not None
    assert resource(response.nodes[P("/3/0/0")]) == "pylwm2m"
    assert resource(response.nodes[P("/3303/0/5700")]) == 21.5
    assert "/3303/0/5701" in server.telemetry_latest("dm")


@pytest.mark.parametrize("fmt", MULTI, ids=ids)
async def test_write_composite(server: Lwm2mServer, client: Lwm2mClient, fmt: CF) -> None:
    nodes = {
        P("/3/0/14"): LwM2mSingleResource.new(14, "+09:00", ResourceType.STRING),
        P("/1/0/1"): LwM2mSingleResource.new(1, 600, ResourceType.INTEGER),
    }
    response = await server.write_composite("dm", nodes, fmt=fmt)
    assert response.dotted_code == "2.04"
    assert client.get_value("/3/0/14") == "+09:00" and client.get_value("/1/0/1") == 600


async def test_default_composite_format(server: Lwm2mServer, client: Lwm2mClient) -> None:
    response = await server.read_composite("dm", [P("/3/0/0")])
    assert response.content_format == CF.LWM2M_CBOR


async def test_composite_needs_1_1(server: Lwm2mServer, make_client: ClientFactory) -> None:
    await make_client("old", lwm2m_version="1.0")
    with pytest.raises(Lwm2mError) as info:
        await server.read_composite("old", [P("/3/0/0")])
    assert info.value.code.dotted == "4.00"


async def test_device_errors_are_responses(server: Lwm2mServer, client: Lwm2mClient) -> None:
    missing = await server.read("dm", P("/3303/9"))
    assert missing.dotted_code == "4.04" and not missing.success
    security = await server.read("dm", P("/0/0"))
    assert security.dotted_code == "4.01"
    with pytest.raises(Lwm2mError):  # a Write to an object path is refused before sending
        await server.write("dm", P("/3"), LwM2mSingleResource.new(1, 1))


async def test_unknown_client_and_timeout(server: Lwm2mServer, client: Lwm2mClient) -> None:
    with pytest.raises(UnknownClientError):
        await server.read("nobody", P("/3/0"))
    await client.stop()  # gone without a De-register
    started = asyncio.get_running_loop().time()
    with pytest.raises(DeviceTimeoutError):
        await server.read("dm", P("/3/0"), timeout=0.5)
    assert asyncio.get_running_loop().time() - started < 2


def _answer(payload: bytes, cf: int) -> raw.Handler:
    def handler(msg: raw.Msg) -> raw.Msg:
        options = [(raw.CONTENT_FORMAT, raw.uint_bytes(cf))]
        return raw.Msg(raw.ACK, raw.CONTENT, 0, options=options, payload=payload)

    return handler


@pytest.mark.parametrize(
    ("payload", "cf"),
    [
        (b"\xc8\x00\x05", CF.TLV),
        (b"[{", CF.SENML_JSON),
        (b"\x9f\xff\xff", CF.SENML_CBOR),
        (b"x", 9999),
    ],
)
async def test_garbage_answer_is_a_clean_error(
    server: Lwm2mServer, payload: bytes, cf: int
) -> None:
    peer = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port), _answer(payload, cf))
    try:
        await raw.register(peer, "garbage", links="</3/0>")
        with pytest.raises(DeviceAnswerError) as info:
            await server.read("garbage", P("/3/0"), timeout=2)
        assert "garbage" in info.value.message
        # the server is fine and the client still registered
        assert server.client("garbage")
    finally:
        peer.close()


async def test_alternate_root_path(server: Lwm2mServer) -> None:
    seen: list[list[str]] = []

    def handler(msg: raw.Msg) -> raw.Msg:
        seen.append(msg.strings(raw.URI_PATH))
        return raw.Msg(raw.ACK, raw.CONTENT, 0, options=[(raw.CONTENT_FORMAT, b"")], payload=b"dev")

    peer = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port), handler)
    try:
        await raw.register(peer, "rooted", links='</lwm2m>;rt="oma.lwm2m",</lwm2m/3/0>')
        response = await server.read("rooted", P("/3/0/0"), fmt=CF.TEXT)
        assert resource(response.node) == "dev"
        assert seen == [["lwm2m", "3", "0", "0"]]
    finally:
        peer.close()
