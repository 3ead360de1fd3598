"""Device Management interface over real sockets: the fake server reads, writes, executes,
creates, deletes, discovers and writes attributes; answers are decoded with the codec facade."""

from __future__ import annotations

import pytest
from aiocoap.numbers.codes import Code

from lwm2m_client.client import Lwm2mClient
from object_models import codecs
from object_models.content_format import ContentFormat
from object_models.node import (
    LwM2mMultipleResource,
    LwM2mObject,
    LwM2mObjectInstance,
    LwM2mSingleResource,
)
from object_models.path import LwM2mPath

from .conftest import ClientFactory
from .fake_server import FakeLwm2mServer

DEVICE = LwM2mPath(3, 0)


@pytest.mark.parametrize(
    "fmt",
    [
        ContentFormat.TLV,
        ContentFormat.SENML_JSON,
        ContentFormat.SENML_CBOR,
        ContentFormat.LWM2M_CBOR,
    ],
)
async def test_read_device_in_each_format(
    client: Lwm2mClient, server: FakeLwm2mServer, fmt: ContentFormat
) -> None:
    response = await server.request(Code.GET, "/3/0", accept=fmt)
    assert response.code == Code.CONTENT
    assert int(response.opt.content_format) == fmt
    node = codecs.decode(response.payload, DEVICE, fmt, client.objects.models)
    assert isinstance(node, LwM2mObjectInstance)
    assert node.resources[0] == LwM2mSingleResource.new(0, "pylwm2m")
    assert node.resources[2].value == "PY-test-ep"  # type: ignore[union-attr]
    power = node.resources[6]
    assert isinstance(power, LwM2mMultipleResource) and power.values == {0: 1, 1: 5}
    assert isinstance(node.resources[13].value, int)  # type: ignore[union-attr]
    assert 4 not in node.resources, "executable resources are not read"


async def test_read_defaults(client: Lwm2mClient, server: FakeLwm2mServer) -> None:
    response = await server.request(Code.GET, "/3/0")
    assert int(response.opt.content_format) == ContentFormat.TLV  # 1.1 client, no Accept
    response = await server.request(Code.GET, "/3/0/0")
    assert int(response.opt.content_format) == ContentFormat.TEXT
    assert response.payload == b"pylwm2m"
    response = await server.request(Code.GET, "/3303/0/5700", accept=ContentFormat.CBOR)
    assert codecs.decode(
        response.payload, LwM2mPath(3303, 0, 5700), ContentFormat.CBOR, client.objects.models
    ) == LwM2mSingleResource.new(5700, 21.5)


async def test_read_object_and_resource_instance(
    client: Lwm2mClient, server: FakeLwm2mServer
) -> None:
    response = await server.request(Code.GET, "/3303", accept=ContentFormat.SENML_CBOR)
    node = codecs.decode(
        response.payload, LwM2mPath(3303), ContentFormat.SENML_CBOR, client.objects.models
    )
    assert isinstance(node, LwM2mObject) and set(node.instances) == {0}
    response = await server.request(Code.GET, "/3/0/6/1", accept=ContentFormat.TEXT)
    assert response.code == Code.CONTENT and response.payload == b"5"


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/0/0", Code.UNAUTHORIZED),  # Security is bootstrap-only
        ("/3/1", Code.NOT_FOUND),
        ("/3/0/42", Code.NOT_FOUND),
        ("/4", Code.NOT_FOUND),
        ("/3/0/4", Code.METHOD_NOT_ALLOWED),  # executable
        ("/rd", Code.NOT_FOUND),  # not an LwM2M path
    ],
)
async def test_read_errors(
    server: FakeLwm2mServer, client: Lwm2mClient, path: str, code: Code
) -> None:
    response = await server.request(Code.GET, path)
    assert response.code == code


async def test_read_unsupported_accept(client: Lwm2mClient, server: FakeLwm2mServer) -> None:
    response = await server.request(Code.GET, "/3/0", accept=ContentFormat.TEXT)
    assert response.code == Code.NOT_ACCEPTABLE
    response = await server.request(Code.GET, "/3/0", accept=50)  # application/json
    assert response.code == Code.NOT_ACCEPTABLE


async def test_write_replace_and_partial_update(
    client: Lwm2mClient, server: FakeLwm2mServer
) -> None:
    response = await server.request(
        Code.PUT, "/3303/0/5750", content_format=ContentFormat.TEXT, payload=b"greenhouse"
    )
    assert response.code == Code.CHANGED
    assert client.get_value("/3303/0/5750") == "greenhouse"

    instance = LwM2mObjectInstance.of(0, LwM2mSingleResource.new(14, "+02:00"))
    payload = codecs.encode(instance, DEVICE, ContentFormat.SENML_JSON, client.objects.models)
    response = await server.request(
        Code.POST, "/3/0", content_format=ContentFormat.SENML_JSON, payload=payload
    )
    assert response.code == Code.CHANGED
    assert client.get_value("/3/0/14") == "+02:00"
    assert client.get_value("/3/0/0") == "pylwm2m", "partial update keeps the rest"

    # Current Time is computed; a Write moves the device clock.
    response = await server.request(
        Code.PUT, "/3/0/13", content_format=ContentFormat.TEXT, payload=b"1000000000"
    )
    assert response.code == Code.CHANGED
    assert abs(int(client.get_value("/3/0/13")) - 1_000_000_000) <= 2  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("path", "payload", "code"),
    [
        ("/3/0/0", b"someone else", Code.METHOD_NOT_ALLOWED),  # read-only
        ("/3303/0/5700", b"1.0", Code.METHOD_NOT_ALLOWED),  # read-only sensor value
        ("/3/0/99", b"x", Code.NOT_FOUND),
        ("/3/7/14", b"x", Code.NOT_FOUND),
        ("/1/0/1", b"soon", Code.BAD_REQUEST),  # not an integer
        ("/0/0/0", b"coap://evil", Code.UNAUTHORIZED),
    ],
)
async def test_write_errors(
    client: Lwm2mClient, server: FakeLwm2mServer, path: str, payload: bytes, code: Code
) -> None:
    response = await server.request(
        Code.PUT, path, content_format=ContentFormat.TEXT, payload=payload
    )
    assert response.code == code
    assert client.get_value("/1/0/1") == 300


async def test_write_instance_with_read_only_resource_changes_nothing(
    client: Lwm2mClient, server: FakeLwm2mServer
) -> None:
    instance = LwM2mObjectInstance.of(
        0, LwM2mSingleResource.new(14, "+05:00"), LwM2mSingleResource.new(0, "evil corp")
    )
    payload = codecs.encode(instance, DEVICE, ContentFormat.TLV, client.objects.models)
    response = await server.request(
        Code.PUT, "/3/0", content_format=ContentFormat.TLV, payload=payload
    )
    assert response.code == Code.METHOD_NOT_ALLOWED
    assert client.get_value("/3/0/14") == "+00:00"


async def test_execute(client: Lwm2mClient, server: FakeLwm2mServer) -> None:
    calls: list[str] = []
    client.objects.set_executable("/3/0/4", calls.append)
    assert (await server.request(Code.POST, "/3/0/4")).code == Code.CHANGED
    response = await server.request(
        Code.POST, "/3/0/4", content_format=ContentFormat.TEXT, payload=b"0='now',1"
    )
    assert response.code == Code.CHANGED
    assert calls == ["", "0='now',1"]
    bad = await server.request(Code.POST, "/3/0/4", content_format=0, payload=b"now please")
    assert bad.code == Code.BAD_REQUEST
    assert (await server.request(Code.POST, "/3/0/0")).code == Code.METHOD_NOT_ALLOWED
    client.set_value("/3303/0/5700", 30.0)
    assert (await server.request(Code.POST, "/3303/0/5605")).code == Code.CHANGED
    assert client.get_value("/3303/0/5601") == 30.0


async def test_create_and_delete(client: Lwm2mClient, server: FakeLwm2mServer) -> None:
    instance = LwM2mObjectInstance.of(
        None, LwM2mSingleResource.new(5700, 18.25), LwM2mSingleResource.new(5701, "Cel")
    )
    payload = codecs.encode(instance, LwM2mPath(3303), ContentFormat.TLV, client.objects.models)
    response = await server.request(
        Code.POST, "/3303", content_format=ContentFormat.TLV, payload=payload
    )
    assert response.code == Code.CREATED
    assert tuple(response.opt.location_path) == ("3303", "1")
    assert client.get_value("/3303/1/5700") == 18.25
    # Instances changed: the client tells the server with an Update carrying the object list.
    up = await server.next_uplink("update")
    assert b"</3303/1>" in up.payload

    with_id = LwM2mObjectInstance.of(1, LwM2mSingleResource.new(5700, 1.0))
    payload = codecs.encode(
        with_id, LwM2mPath(3303, 1), ContentFormat.SENML_CBOR, client.objects.models
    )
    response = await server.request(
        Code.POST, "/3303", content_format=ContentFormat.SENML_CBOR, payload=payload
    )
    assert response.code == Code.BAD_REQUEST, "instance 1 already exists"

    assert (await server.request(Code.DELETE, "/3303/1")).code == Code.DELETED
    assert client.objects.instance_ids(3303) == [0]
    assert (await server.request(Code.DELETE, "/3303/1")).code == Code.NOT_FOUND
    assert (await server.request(Code.DELETE, "/3/0")).code == Code.METHOD_NOT_ALLOWED
    assert (await server.request(Code.DELETE, "/1/0")).code == Code.METHOD_NOT_ALLOWED


async def test_discover(client: Lwm2mClient, server: FakeLwm2mServer) -> None:
    response = await server.request(Code.GET, "/3", accept=ContentFormat.LINK)
    assert response.code == Code.CONTENT and int(response.opt.content_format) == 40
    links = response.payload.decode().split(",")
    assert links[:3] == ["</3>;ver=1.2", "</3/0>", "</3/0/0>"]
    assert "</3/0/6>;dim=2" in links and "</3/0/4>" in links

    await server.request(Code.PUT, "/3303/0/5700", query=("pmin=5", "gt=30"))
    response = await server.request(Code.GET, "/3303/0/5700", accept=ContentFormat.LINK)
    assert response.payload == b"</3303/0/5700>;pmin=5;gt=30"
    response = await server.request(Code.GET, "/3303/0", accept=ContentFormat.LINK)
    assert b"</3303/0/5700>;pmin=5;gt=30" in response.payload
    response = await server.request(Code.GET, "/3/0/11", accept=ContentFormat.LINK)
    assert response.payload == b"</3/0/11>;dim=1,</3/0/11/0>"
    response = await server.request(Code.GET, "/0", accept=ContentFormat.LINK)
    assert response.code == Code.UNAUTHORIZED


@pytest.mark.parametrize(
    ("path", "query", "code"),
    [
        ("/3303/0/5700", ("pmin=1", "pmax=10", "st=0.5"), Code.CHANGED),
        ("/3303/0", ("pmin=2",), Code.CHANGED),
        ("/3303/0/5700", ("pmin",), Code.CHANGED),  # removal
        ("/3303/0/5701", ("gt=3",), Code.BAD_REQUEST),  # gt on a string
        ("/3303/0/5700", ("lt=10", "gt=5"), Code.BAD_REQUEST),
        ("/3303/0/5700", ("dim=3",), Code.BAD_REQUEST),
        ("/3303/0/5700", ("pmin=abc",), Code.BAD_REQUEST),
        ("/3303/9", ("pmin=1",), Code.NOT_FOUND),
    ],
)
async def test_write_attributes(
    client: Lwm2mClient, server: FakeLwm2mServer, path: str, query: tuple[str, ...], code: Code
) -> None:
    response = await server.request(Code.PUT, path, query=query)
    assert response.code == code


async def test_read_composite(client: Lwm2mClient, server: FakeLwm2mServer) -> None:
    paths = [LwM2mPath(3, 0, 0), LwM2mPath(3303, 0, 5700), LwM2mPath(3, 0, 42)]
    for fmt in (ContentFormat.SENML_CBOR, ContentFormat.SENML_JSON):
        body = codecs.encode_paths(paths, fmt)
        response = await server.request(Code.FETCH, "/", content_format=fmt, payload=body)
        assert response.code == Code.CONTENT and int(response.opt.content_format) == fmt
        nodes = codecs.decode_nodes(response.payload, fmt, client.objects.models)
        values = {str(p): n.value for p, n in nodes.items()}  # type: ignore[union-attr]
        assert values == {"/3/0/0": "pylwm2m", "/3303/0/5700": 21.5}


async def test_write_composite_is_all_or_nothing(
    client: Lwm2mClient, server: FakeLwm2mServer
) -> None:
    models = client.objects.models
    good = {
        LwM2mPath(3, 0, 14): LwM2mSingleResource.new(14, "+01:00"),
        LwM2mPath(3303, 0, 5750): LwM2mSingleResource.new(5750, "fridge"),
    }
    payload = codecs.encode_nodes(good, ContentFormat.SENML_CBOR, models)
    response = await server.request(
        Code.iPATCH, "/", content_format=ContentFormat.SENML_CBOR, payload=payload
    )
    assert response.code == Code.CHANGED
    assert client.get_value("/3/0/14") == "+01:00"
    assert client.get_value("/3303/0/5750") == "fridge"

    bad = {
        LwM2mPath(3, 0, 14): LwM2mSingleResource.new(14, "+09:00"),
        LwM2mPath(3, 0, 0): LwM2mSingleResource.new(0, "read-only!"),
    }
    payload = codecs.encode_nodes(bad, ContentFormat.SENML_JSON, models)
    response = await server.request(
        Code.iPATCH, "/", content_format=ContentFormat.SENML_JSON, payload=payload
    )
    assert response.code == Code.METHOD_NOT_ALLOWED
    assert client.get_value("/3/0/14") == "+01:00", "rolled back"


async def test_read_oma_json_and_cbor_single_value(
    client: Lwm2mClient, server: FakeLwm2mServer
) -> None:
    response = await server.request(Code.GET, "/3/0", accept=ContentFormat.JSON)
    assert response.code == Code.CONTENT
    node = codecs.decode(response.payload, DEVICE, ContentFormat.JSON, client.objects.models)
    assert node.resources[0].value == "pylwm2m"  # type: ignore[union-attr]
    response = await server.request(Code.GET, "/3/0", accept=ContentFormat.CBOR)
    assert response.code == Code.NOT_ACCEPTABLE  # plain CBOR carries one value only


async def test_lwm2m_1_2_default_format(
    make_client: ClientFactory, server: FakeLwm2mServer
) -> None:
    await make_client(lwm2m_version="1.2")
    response = await server.request(Code.GET, "/3/0")
    assert int(response.opt.content_format) == ContentFormat.SENML_CBOR
