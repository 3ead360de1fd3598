"""Contract tests of the Leshan dialect (``/leshan/api/...``), written from the shapes the Leshan
2.0 demo server's servlets and Jackson serializers produce (``ClientServlet``, ``EventServlet``,
``ObjectSpecServlet``, ``SecurityServlet``, ``ServerServlet``, ``JacksonLwM2mNodeSerializer``/
``Deserializer``, ``JacksonRegistrationSerializer``, ``JacksonResponseSerializer``), over the test
double; every route is run in both dialects, each giving its own shape for the same device."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from keystore.credentials import DeviceCredentials
from keystore.store.credentials import SqliteCredentialStore
from lwm2m_runtime.address import Address
from lwm2m_server.api import create_app
from lwm2m_server.api.leshan.codec import java_double
from lwm2m_server.operations import DeviceResponse
from object_models.node import LwM2mSingleResource
from object_models.path import LwM2mPath
from object_models.types import ResourceType

from .fake_ops import FakeOps, device_tree

Client = TestClient  # type: ignore[type-arg]
L = "/leshan/api"


def _tree() -> Any:
    tree = device_tree()
    tree[10] = {0: {7: LwM2mSingleResource(7, b"\x00\x01", ResourceType.OPAQUE)}}
    tree[3308] = {0: {5900: LwM2mSingleResource(5900, 20.0, ResourceType.FLOAT)}}
    return tree


@pytest.fixture
def ops() -> FakeOps:
    fake = FakeOps()
    fake.add_client("dev-1", tree=_tree())
    return fake


@pytest.fixture
def keystore(tmp_path: Path) -> SqliteCredentialStore:
    return SqliteCredentialStore.open(tmp_path / "keys.db")


@pytest.fixture
async def api(ops: FakeOps, keystore: SqliteCredentialStore) -> AsyncIterator[Client]:
    app = create_app(ops, keepalive=0.2, credentials=keystore)
    async with TestServer(app) as server, TestClient(server) as client:
        yield client


async def _ok(resp: Any, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


def _value(ops: FakeOps, path: str) -> object:
    node = ops._find("dev-1", LwM2mPath.parse(path))
    assert node is not None
    return node.value  # type: ignore[union-attr]


# -- values: what Leshan writes -------------------------------------------------------------------


async def test_read_values_are_written_as_leshans_serializer_does(api: Client) -> None:
    body = await _ok(await api.get(f"{L}/clients/dev-1/3/0"))
    assert body["status"] == "CONTENT(205)"
    assert (body["valid"], body["success"], body["failure"]) == (True, True, False)
    assert "code" not in body and "contentFormat" not in body  # ours, not Leshan's
    content = body["content"]
    assert content["kind"] == "instance" and content["id"] == 0
    res = {r["id"]: r for r in content["resources"]}
    assert res[13] == {
        "id": 13,
        "kind": "singleResource",
        "type": "TIME",
        "value": 1_700_000_000_000,
    }  # epoch ms
    assert res[9] == {"id": 9, "kind": "singleResource", "type": "INTEGER", "value": "87"}
    assert res[6] == {
        "id": 6,
        "kind": "multiResource",
        "type": "INTEGER",
        "values": {"0": "1", "1": "5"},
    }
    assert res[0]["value"] == "Acme"
    temp = await _ok(await api.get(f"{L}/clients/dev-1/3303/0/5700"))
    assert temp["content"]["value"] == "21.5"  # Double.toString, as a string
    opaque = await _ok(await api.get(f"{L}/clients/dev-1/10/0/7"))
    assert opaque["content"] == {
        "id": 7,
        "kind": "singleResource",
        "type": "OPAQUE",
        "value": "0001",
    }


async def test_the_native_dialect_keeps_its_typed_json(api: Client) -> None:
    time = await _ok(await api.get("/api/clients/dev-1/3/0/13"))
    assert time["content"]["value"] == 1_700_000_000 and time["status"] == "CONTENT"
    opaque = await _ok(await api.get("/api/clients/dev-1/10/0/7"))
    assert opaque["content"]["value"] == base64.b64encode(b"\x00\x01").decode()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (21.5, "21.5"),
        (1.0, "1.0"),
        (1e7, "1.0E7"),
        (0.001, "0.001"),
        (1e-4, "1.0E-4"),
        (-2.5e-10, "-2.5E-10"),
        (123456789.0, "1.23456789E8"),
        (0.0, "0.0"),
    ],
)
def test_floats_are_spelled_like_java_double_to_string(value: float, text: str) -> None:
    assert java_double(value) == text


# -- values: what Leshan reads, and what it refuses ------------------------------------------------


async def test_opaque_hex_and_time_ms_are_written_as_the_device_values_they_mean(
    api: Client, ops: FakeOps
) -> None:
    """The issue's measurement: "0102abcd" was written as base64 (d35d3669b71d) and a Time in
    ms as seconds (year 58,900)."""
    node = {"id": 7, "kind": "singleResource", "type": "OPAQUE", "value": "0102abcd"}
    body = await _ok(await api.put(f"{L}/clients/dev-1/10/0/7", json=node))
    assert body["status"] == "CHANGED(204)"
    assert _value(ops, "/10/0/7") == bytes.fromhex("0102abcd")
    node = {"id": 13, "kind": "singleResource", "type": "TIME", "value": 1_733_500_000_123}
    await _ok(await api.put(f"{L}/clients/dev-1/3/0/13", json=node))
    assert _value(ops, "/3/0/13") == 1_733_500_000  # seconds on the device, ms floored
    back = await _ok(await api.get(f"{L}/clients/dev-1/3/0/13"))
    assert back["content"]["value"] == 1_733_500_000_000


async def test_the_native_dialect_writes_base64_and_seconds(api: Client, ops: FakeOps) -> None:
    await _ok(await api.put("/api/clients/dev-1/10/0/7", json="AQKrzQ=="))
    assert _value(ops, "/10/0/7") == bytes.fromhex("0102abcd")
    await _ok(await api.put("/api/clients/dev-1/3/0/13", json=1_733_500_000))
    assert _value(ops, "/3/0/13") == 1_733_500_000


async def test_numbers_as_strings_and_tolerated_numbers(api: Client, ops: FakeOps) -> None:
    for value, expected in (("-42", -42), (42, 42), (42.0, 42)):
        node = {"id": 1, "kind": "singleResource", "type": "INTEGER", "value": value}
        body = await _ok(await api.put(f"{L}/clients/dev-1/1/0/1", json=node))
        assert body["success"] is True
        assert _value(ops, "/1/0/1") == expected
    for value in ("22.25", 22.25, "2.225E1"):
        node = {"id": 5900, "kind": "singleResource", "type": "FLOAT", "value": value}
        body = await _ok(await api.put(f"{L}/clients/dev-1/3308/0/5900", json=node))
        assert body["success"] is True
        assert _value(ops, "/3308/0/5900") == 22.25


@pytest.mark.parametrize(
    ("path", "rtype", "value", "expected"),
    [
        ("/10/0/7", "OPAQUE", "xyz", "hex string"),
        ("/10/0/7", "OPAQUE", "abc", "hex string"),  # odd length
        ("/10/0/7", "OPAQUE", 12, "hex string"),
        ("/3/0/13", "TIME", "1700000000000", "milliseconds"),
        ("/3/0/13", "TIME", 1.5, "milliseconds"),
        ("/1/0/1", "INTEGER", "12.5", "decimal string"),
        ("/1/0/1", "INTEGER", True, "decimal string"),
        ("/3303/0/5700", "FLOAT", "NaN", "numeric string"),
        ("/3303/0/5700", "FLOAT", "warm", "numeric string"),
        ("/3/0/0", "STRING", 5, "JSON string"),
    ],
)
async def test_a_value_that_does_not_parse_is_400_naming_path_type_and_form(
    api: Client, ops: FakeOps, path: str, rtype: str, value: object, expected: str
) -> None:
    rid = int(path.rsplit("/", 1)[1])
    before = _value(ops, path)
    node = {"id": rid, "kind": "singleResource", "type": rtype, "value": value}
    resp = await api.put(f"{L}/clients/dev-1{path}", json=node)
    assert resp.status == 400
    text = await resp.text()
    assert path in text and rtype in text and expected in text, text
    assert _value(ops, path) == before  # nothing was written


async def test_a_node_type_that_contradicts_the_model_is_refused(api: Client) -> None:
    """``"type": "OPAQUE"`` on a TIME resource would send different bytes than meant."""
    node = {"id": 13, "kind": "singleResource", "type": "OPAQUE", "value": "0102"}
    resp = await api.put(f"{L}/clients/dev-1/3/0/13", json=node)
    assert resp.status == 400
    text = await resp.text()
    assert "/3/0/13" in text and "TIME" in text and "OPAQUE" in text


async def test_text_plain_is_read_with_the_resource_type(api: Client, ops: FakeOps) -> None:
    resp = await api.put(
        f"{L}/clients/dev-1/10/0/7", data="cafe", headers={"Content-Type": "text/plain"}
    )
    await _ok(resp)
    assert _value(ops, "/10/0/7") == bytes.fromhex("cafe")


async def test_objlnk_in_and_out(api: Client, ops: FakeOps) -> None:
    node = {
        "id": 1,
        "kind": "singleResource",
        "type": "OBJLNK",
        "value": {"objectId": 3, "objectInstanceId": 0, "nullLink": False},
    }
    from lwm2m_server.api.leshan.codec import node_in, node_out

    parsed = node_in(node, LwM2mPath.parse("/99/0/1"), ops.registry)
    assert node_out(parsed) == node
    bad = {**node, "value": "3:0"}
    with pytest.raises(Exception, match="OBJLNK"):
        node_in(bad, LwM2mPath.parse("/99/0/1"), ops.registry)


# -- responses --------------------------------------------------------------------------------


async def test_device_errors_are_200_with_leshans_status(api: Client) -> None:
    body = await _ok(await api.get(f"{L}/clients/dev-1/3/0/42"))
    assert body["status"] == "NOT_FOUND(404)"
    assert (body["success"], body["failure"]) == (False, True)
    assert body["errormessage"] == "/3/0/42 not found"


async def test_unknown_client_is_400_text_in_leshan_and_404_native(api: Client) -> None:
    for path in ("clients/nope", "clients/nope/3/0/1", "objectspecs/nope"):
        resp = await api.get(f"{L}/{path}")
        assert resp.status == 400
        assert await resp.text() == "No registered client with id 'nope'"
    assert (await api.get("/api/clients/nope/3/0/1")).status == 404


async def test_timeouts_the_ui_offers(api: Client, ops: FakeOps) -> None:
    for value, seconds in (
        ("5", 5.0),
        ("300", 300.0),
        ("900", 900.0),
        ("1800", 1800.0),
        ("null", 10.0),
    ):
        await _ok(await api.get(f"{L}/clients/dev-1/3/0/1?timeout={value}"))
        assert ops.calls[-1][-1] == seconds
    assert (await api.get(f"{L}/clients/dev-1/3/0/1?timeout=1801")).status == 400
    assert (await api.get("/api/clients/dev-1/3/0/1?timeout=1800")).status == 400


async def test_format_names_leshan_uses(api: Client, ops: FakeOps) -> None:
    for name, number in (
        ("TLV", 11542),
        ("SENML_CBOR", 112),
        ("SENML_JSON", 110),
        ("JSON", 11543),
        ("TEXT", 0),
        ("CBOR", 60),
        ("OPAQUE", 42),
    ):
        await _ok(await api.get(f"{L}/clients/dev-1/3/0/9?format={name}"))
        assert ops.calls[-1][3] == number


async def test_queued_request_answers_delayed_with_a_request_id(
    api: Client, ops: FakeOps, monkeypatch: pytest.MonkeyPatch
) -> None:
    ops.asleep.add("dev-1")
    original = ops._exchange

    async def queued(endpoint: str, timeout: float) -> DeviceResponse | None:
        answer = await original(endpoint, timeout)
        if answer is not None and answer.queued:
            return DeviceResponse(0, queued=True, request_id="req-7")
        return answer

    monkeypatch.setattr(ops, "_exchange", queued)
    body = await _ok(await api.get(f"{L}/clients/dev-1/3/0/1"))
    assert body == {"ep": "dev-1", "path": "/3/0/1", "requestId": "req-7", "delayed": True}
    native = await _ok(await api.get("/api/clients/dev-1/3/0/1"), 202)
    assert native["requestId"] == "req-7"


# -- registrations --------------------------------------------------------------------------------


async def test_registration_in_leshans_shape(api: Client) -> None:
    reg = await _ok(await api.get(f"{L}/clients/dev-1"))
    assert reg["endpoint"] == "dev-1" and reg["registrationId"] == "reg-dev-1"
    assert reg["registrationDate"] == 1_700_000_000_000  # epoch ms
    assert reg["lastUpdate"] == 1_700_000_000_000
    assert reg["address"] == "127.0.0.1:56830"
    assert reg["lwM2mVersion"] == "1.1" and reg["lifetime"] == 300 and reg["bindingMode"] == "U"
    assert reg["rootPath"] == "/" and reg["secure"] is False and reg["queuemode"] is False
    assert reg["availableInstances"]["3"] == [0]
    assert {"url": "/3", "attributes": {"ver": "1.2"}} in reg["objectLinks"]
    assert "sleeping" not in reg and "smsNumber" not in reg  # NON_NULL, queue mode only
    for ours in ("expiresAt", "transport", "supportedObjects"):
        assert ours not in reg


async def test_client_list_is_complete_in_leshan_and_paged_native(
    api: Client, ops: FakeOps
) -> None:
    for i in range(1005):
        ops.add_client(f"bulk-{i:04d}")
    leshan = await _ok(await api.get(f"{L}/clients"))
    assert len(leshan) == 1006
    native = await _ok(await api.get("/api/clients"))
    assert len(native) == 1000


# -- object specs, server --------------------------------------------------------------------------


async def test_objectspecs_in_leshans_shape(api: Client) -> None:
    specs = await _ok(await api.get(f"{L}/objectspecs/dev-1"))
    ids = [s["id"] for s in specs]
    assert ids == sorted(ids) and 3 in ids and 10 in ids
    device = next(s for s in specs if s["id"] == 3)
    assert device["name"] == "Device" and device["instancetype"] == "single"
    assert device["version"] == "1.2"  # the version the client registered
    assert {"urn", "lwm2mversion", "mandatory", "description", "description2"} <= set(device)
    res = {r["id"]: r for r in device["resourcedefs"]}
    assert res[13]["type"] == "time" and res[13]["operations"] == "RW"
    assert res[4]["operations"] == "E" and res[6]["instancetype"] == "multiple"
    assert {"name", "mandatory", "range", "units", "description"} <= set(res[7])


async def test_server_endpoint(api: Client, ops: FakeOps) -> None:
    assert await _ok(await api.get(f"{L}/server/endpoint")) == []
    ops.coap_address = Address("127.0.0.1", 5683)  # type: ignore[attr-defined]
    body = await _ok(await api.get(f"{L}/server/endpoint"))
    assert body[0]["uri"] == {
        "full": "coap://127.0.0.1:5683",
        "scheme": "coap",
        "host": "127.0.0.1",
        "port": 5683,
    }


# -- security --------------------------------------------------------------------------------


async def test_security_add_list_remove(api: Client, keystore: SqliteCredentialStore) -> None:
    psk = {
        "endpoint": "dev-psk",
        "tls": {"mode": "psk", "details": {"identity": "dev-psk-id", "key": "0102ab"}},
    }
    assert (await api.put(f"{L}/security/clients/", json=psk)).status == 200
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    rpk = {"endpoint": "dev-rpk", "tls": {"mode": "rpk", "details": {"key": spki.hex()}}}
    assert (await api.put(f"{L}/security/clients", json=rpk)).status == 200
    x509 = {"endpoint": "dev-x509", "tls": {"mode": "x509"}}
    assert (await api.put(f"{L}/security/clients/", json=x509)).status == 200
    listed = {s["endpoint"]: s for s in await _ok(await api.get(f"{L}/security/clients"))}
    assert listed == {"dev-psk": psk, "dev-rpk": rpk, "dev-x509": x509}
    stored = keystore.get_device("dev-psk")
    assert stored is not None and stored.psk_key == bytes.fromhex("0102ab")
    assert await _ok(await api.get(f"{L}/security/clients/dev-rpk")) == rpk
    assert (await api.delete(f"{L}/security/clients/dev-psk")).status == 200
    assert keystore.get_device("dev-psk") is None
    assert await _ok(await api.delete(f"{L}/security/clients/dev-psk")) == {"message": "not_found"}


async def test_security_bad_input_is_400(api: Client, keystore: SqliteCredentialStore) -> None:
    keystore.put_device(DeviceCredentials.for_psk("owner", "shared-id", b"\x01"))
    for body in (
        {"tls": {"mode": "psk", "details": {"identity": "i", "key": "01"}}},
        {"endpoint": "e", "tls": {"mode": "psk", "details": {"identity": "i", "key": "zz"}}},
        {"endpoint": "e", "tls": {"mode": "rpk", "details": {"key": "0102"}}},
        {"endpoint": "e", "tls": {"mode": "magic"}},
        {"endpoint": "e", "oscore": {"rid": "01", "sid": "02", "msec": "03"}},
        {
            "endpoint": "e",
            "tls": {"mode": "psk", "details": {"identity": "shared-id", "key": "01"}},
        },
    ):
        resp = await api.put(f"{L}/security/clients/", json=body)
        assert resp.status == 400, body
    assert keystore.get_device("e") is None


async def test_server_security_shows_the_public_key(
    api: Client, keystore: SqliteCredentialStore
) -> None:
    assert await _ok(await api.get(f"{L}/security/server")) == {}
    from keystore.credentials import ServerIdentity

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    identity = ServerIdentity(pem)
    keystore.put_server_identity(identity)
    for route in ("security/server", "server/security"):
        body = await _ok(await api.get(f"{L}/{route}"))
        pub = body["pubkey"]
        assert base64.b64decode(pub["b64Der"]) == identity.public_key_spki
        assert len(pub["x"]) == 64 and len(pub["y"]) == 64


# -- events --------------------------------------------------------------------------------


async def _events(api: Client, path: str, count: int, emit: Any) -> list[tuple[str, Any]]:
    """Open ``path``, run ``emit()`` once the stream is open, collect ``count`` events."""
    resp = await api.get(path)
    assert resp.status == 200
    assert (await resp.content.readuntil(b"\n\n")).startswith(b": stream open")
    emit()
    found: list[tuple[str, Any]] = []
    while len(found) < count:
        frame = (await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 5)).decode()
        if frame.startswith(":"):
            continue
        lines = dict(line.split(": ", 1) for line in frame.strip().split("\n"))
        found.append((lines["event"], json.loads(lines["data"])))
    resp.close()
    return found


def _native_registration(ops: FakeOps) -> dict[str, Any]:
    from lwm2m_server.json_nodes import registration_to_json

    return {**registration_to_json(ops.client("dev-1"), sleeping=False), "replaced": None}


async def test_registration_events_in_leshans_payloads(api: Client, ops: FakeOps) -> None:
    data = _native_registration(ops)

    def emit() -> None:
        ops.emit("REGISTRATION", "dev-1", data)
        ops.emit("UPDATED", "dev-1", data)
        ops.emit("DEREGISTRATION", "dev-1", {**data, "reason": "expired"})
        ops.emit("SLEEPING", "dev-1", {"since": 1.0})
        ops.emit("AWAKE", "dev-1", {"until": 2.0})

    events = await _events(api, f"{L}/event", 5, emit)
    kinds = [k for k, _ in events]
    assert kinds == ["REGISTRATION", "UPDATED", "DEREGISTRATION", "SLEEPING", "AWAKE"]
    reg = events[0][1]
    assert reg == (await _ok(await api.get(f"{L}/clients/dev-1")))
    update = events[1][1]
    assert set(update) == {"registration", "update"}
    assert update["registration"]["registrationId"] == "reg-dev-1"
    assert update["registration"]["lastUpdate"] == 1_700_000_000_000
    assert update["update"]["registrationId"] == "reg-dev-1"
    assert update["update"]["address"] == "127.0.0.1:56830"
    assert events[2][1]["endpoint"] == "dev-1" and "reason" not in events[2][1]
    assert events[3][1] == {"ep": "dev-1"} and events[4][1] == {"ep": "dev-1"}


def _points(path: str, rtype: str, value: object) -> dict[str, Any]:
    return {
        "endpoint": "dev-1",
        "path": path,
        "key": path,
        "ts": 1,
        "time": "x",
        "type": rtype,
        "value": value,
    }


async def test_notification_and_send_in_leshans_payloads(api: Client, ops: FakeOps) -> None:
    """The real server publishes telemetry points; Leshan's UI wants ``{ep, kind, res, val}``
    with a node in Leshan's value formats."""

    def emit() -> None:
        ops.emit(
            "NOTIFICATION",
            "dev-1",
            {
                "registrationId": "reg-dev-1",
                "paths": ["/3/0/13"],
                "contentFormat": 112,
                "points": [_points("/3/0/13", "TIME", 1_700_000_000)],
            },
        )
        ops.emit(
            "NOTIFICATION",
            "dev-1",
            {
                "registrationId": "reg-dev-1",
                "paths": ["/3/0"],
                "contentFormat": 112,
                "points": [
                    _points("/3/0/9", "INTEGER", 87),
                    _points("/3/0/6/0", "INTEGER", 1),
                    _points("/3/0/6/1", "INTEGER", 5),
                ],
            },
        )
        ops.emit(
            "NOTIFICATION",
            "dev-1",
            {
                "registrationId": "reg-dev-1",
                "paths": ["/10/0/7", "/3303/0/5700"],
                "points": [
                    _points("/10/0/7", "OPAQUE", "AQKrzQ=="),
                    _points("/3303/0/5700", "FLOAT", 21.5),
                ],
            },
        )
        ops.emit(
            "SEND",
            "dev-1",
            {
                "registrationId": "reg-dev-1",
                "points": [
                    _points("/3303/0/5700", "FLOAT", 20.0),
                    {**_points("/3303/0/5700", "FLOAT", 23.0), "ts": 2},
                    _points("/10/0/7", "OPAQUE", "AQKrzQ=="),
                ],
            },
        )

    events = await _events(api, f"{L}/event?ep=dev-1", 4, emit)
    single, instance, composite, send = (data for _, data in events)
    assert single == {
        "ep": "dev-1",
        "kind": "single",
        "res": "/3/0/13",
        "val": {"id": 13, "kind": "singleResource", "type": "TIME", "value": 1_700_000_000_000},
    }
    assert instance["res"] == "/3/0" and instance["val"]["kind"] == "instance"
    res = {r["id"]: r for r in instance["val"]["resources"]}
    assert res[9]["value"] == "87"
    assert res[6] == {
        "id": 6,
        "kind": "multiResource",
        "type": "INTEGER",
        "values": {"0": "1", "1": "5"},
    }
    assert composite["kind"] == "composite"
    assert composite["paths"] == ["/10/0/7", "/3303/0/5700"]
    assert composite["val"]["/10/0/7"]["value"] == "0102abcd"
    assert composite["val"]["/3303/0/5700"]["value"] == "21.5"
    assert send == {
        "ep": "dev-1",
        "val": {
            "/10/0/7": {"id": 7, "kind": "singleResource", "type": "OPAQUE", "value": "0102abcd"},
            "/3303/0/5700": {
                "id": 5700,
                "kind": "singleResource",
                "type": "FLOAT",
                "value": "23.0",
            },
        },
    }


async def test_request_response_event_in_both_dialects(api: Client, ops: FakeOps) -> None:
    from object_models.node import LwM2mSingleResource as Single

    answer = DeviceResponse(
        0x45, content_format=112, node=Single(13, 1_700_000_000, ResourceType.TIME)
    )

    def emit() -> None:
        ops.emit(
            "REQUEST_RESPONSE",
            "dev-1",
            {"requestId": "req-7", "path": "/3/0/13", "delayed": True, "response": answer},
        )
        ops.emit(
            "REQUEST_RESPONSE",
            "dev-1",
            {"requestId": "req-8", "path": "/3/0/1", "delayed": True, "error": "expired"},
        )

    leshan = await _events(api, f"{L}/event", 2, emit)
    assert leshan[0] == (
        "REQUEST_RESPONSE",
        {
            "ep": "dev-1",
            "path": "/3/0/13",
            "requestId": "req-7",
            "delayed": True,
            "response": {
                "status": "CONTENT(205)",
                "valid": True,
                "success": True,
                "failure": False,
                "content": {
                    "id": 13,
                    "kind": "singleResource",
                    "type": "TIME",
                    "value": 1_700_000_000_000,
                },
            },
        },
    )
    assert leshan[1][1]["error"] == "expired" and leshan[1][1]["requestId"] == "req-8"
    native = await _events(
        api,
        "/api/event",
        1,
        lambda: ops.emit(
            "REQUEST_RESPONSE",
            "dev-1",
            {"requestId": "req-7", "path": "/3/0/13", "delayed": True, "response": answer},
        ),
    )
    body = native[0][1]
    assert body["requestId"] == "req-7"
    assert body["response"]["status"] == "CONTENT"
    assert body["response"]["content"]["value"] == 1_700_000_000


# -- every route, both dialects --------------------------------------------------------------------

ROUTES: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    # method, path after /api, native kwargs, leshan kwargs
    ("GET", "/clients", {}, {}),
    ("GET", "/clients/dev-1", {}, {}),
    ("GET", "/clients/dev-1/3/0/1", {}, {}),
    ("GET", "/clients/dev-1/3/0/discover", {}, {}),
    (
        "PUT",
        "/clients/dev-1/3/0/14",
        {"json": "+02:00"},
        {"json": {"id": 14, "kind": "singleResource", "type": "STRING", "value": "+02:00"}},
    ),
    ("PUT", "/clients/dev-1/3/0/attributes?pmin=5&pmax=60", {}, {}),
    ("POST", "/clients/dev-1/3/0/4", {}, {}),
    (
        "POST",
        "/clients/dev-1/3303",
        {"json": {"5700": 1.5}},
        {
            "json": {
                "kind": "instance",
                "resources": [
                    {"id": 5700, "kind": "singleResource", "type": "FLOAT", "value": "1.5"}
                ],
            }
        },
    ),
    ("DELETE", "/clients/dev-1/3303/0", {}, {}),
    ("POST", "/clients/dev-1/3/0/13/observe", {}, {}),
    ("GET", "/clients/dev-1/composite?paths=/3/0/1,/3/0/13", {}, {}),
    (
        "PUT",
        "/clients/dev-1/composite",
        {"json": {"/3/0/14": "+03:00"}},
        {
            "json": {
                "/3/0/14": {"id": 14, "kind": "singleResource", "type": "STRING", "value": "+03:00"}
            }
        },
    ),
    ("POST", "/clients/dev-1/composite/observe?paths=/3/0/9", {}, {}),
]


@pytest.mark.parametrize(
    ("method", "path", "native", "leshan"), ROUTES, ids=[f"{m} {p}" for m, p, _, _ in ROUTES]
)
async def test_every_route_in_both_dialects(
    api: Client,
    ops: FakeOps,
    method: str,
    path: str,
    native: dict[str, Any],
    leshan: dict[str, Any],
) -> None:
    for prefix, kwargs in (("/api", native), (f"{L}", leshan)):
        ops.trees["dev-1"] = _tree()
        resp = await api.request(method, prefix + path, **kwargs)
        assert resp.status == 200, (prefix, await resp.text())
        body = await resp.json()
        if isinstance(body, dict) and "status" in body:
            assert body["success"] is True, body
            leshan_status = "(" in body["status"]
            assert leshan_status == (prefix == L), body["status"]


async def test_cancel_observation_follows_leshans_active_rule(api: Client, ops: FakeOps) -> None:
    await _ok(await api.post(f"{L}/clients/dev-1/3/0/13/observe"))
    resp = await api.delete(f"{L}/clients/dev-1/3/0/13/observe")  # passive: forget only
    assert resp.status == 200 and await resp.text() == ""
    assert ops.calls[-1] == ("cancel_observation", "dev-1", LwM2mPath.parse("/3/0/13"), False)
    resp = await api.delete(f"{L}/clients/dev-1/3/0/9/observe?active")
    assert resp.status == 404
    assert "no observation for path /3/0/9" in await resp.text()
    await _ok(await api.post(f"{L}/clients/dev-1/3/0/9/observe"))
    body = await _ok(await api.delete(f"{L}/clients/dev-1/3/0/9/observe?active"))
    assert body["status"].endswith(")")
    # composite
    await _ok(await api.post(f"{L}/clients/dev-1/composite/observe?paths=/3/0/9,/3/0/1"))
    assert (
        await api.delete(f"{L}/clients/dev-1/composite/observe?paths=/3/0/14&active")
    ).status == 404
    resp = await api.delete(f"{L}/clients/dev-1/composite/observe?paths=/3/0/9,/3/0/1")
    assert resp.status == 200


async def test_what_leshans_ui_sends(api: Client, ops: FakeOps) -> None:
    """``restutils.js`` (``resourceToREST``): the lower-case ``type`` of the object specs, text
    fields as strings, Time as ``seconds * 1000``, ``timeout=null`` for "None"."""
    opts = "?timeout=null&format=TLV"
    for path, node, expected in (
        (
            "/10/0/7",
            {"id": 7, "kind": "singleResource", "value": "CAFE", "type": "opaque"},
            bytes.fromhex("cafe"),
        ),
        (
            "/3/0/13",
            {"id": 13, "kind": "singleResource", "value": 1_733_500_000 * 1000, "type": "time"},
            1_733_500_000,
        ),
        ("/1/0/1", {"id": 1, "kind": "singleResource", "value": "600", "type": "integer"}, 600),
        (
            "/3308/0/5900",
            {"id": 5900, "kind": "singleResource", "value": "19.5", "type": "float"},
            19.5,
        ),
    ):
        body = await _ok(await api.put(f"{L}/clients/dev-1{path}{opts}", json=node))
        assert body["status"] == "CHANGED(204)", body
        assert _value(ops, path) == expected
    multi = {"id": 6, "kind": "multiResource", "values": {"0": "2", "1": "7"}, "type": "integer"}
    await _ok(await api.put(f"{L}/clients/dev-1/3/0/6{opts}", json=multi))
    written = ops.calls[-1][3]
    assert ops.calls[-1][0] == "write" and written.values == {0: 2, 1: 7}
    create = {
        "kind": "instance",
        "id": 3,
        "resources": [{"id": 5700, "kind": "singleResource", "value": "3.5", "type": "float"}],
    }
    body = await _ok(await api.post(f"{L}/clients/dev-1/3303{opts}", json=create))
    assert body["status"] == "CREATED(201)", body


async def test_read_composite_content_is_a_map_of_path_to_node(api: Client) -> None:
    body = await _ok(await api.get(f"{L}/clients/dev-1/composite?paths=/3/0/13,/3/0/77"))
    assert body["status"] == "CONTENT(205)"
    assert body["content"] == {
        "/3/0/13": {"id": 13, "kind": "singleResource", "type": "TIME", "value": 1_700_000_000_000},
        "/3/0/77": None,  # Jackson writes null map values
    }
