"""LwM2M Send (POST /dp, 1.1+): stored as telemetry with the device's timestamps, published as
a SEND event, refused for peers that are not registered or payloads that do not decode."""

from __future__ import annotations

import pytest

from lwm2m_client.client import Lwm2mClient, Lwm2mClientError
from lwm2m_server.json_nodes import telemetry_to_json
from lwm2m_server.service import Lwm2mServer
from object_models.content_format import ContentFormat as CF

from . import rawcoap as raw
from .conftest import ClientFactory, next_event


@pytest.fixture
async def client(make_client: ClientFactory) -> Lwm2mClient:
    return await make_client("sender", lwm2m_version="1.1")


@pytest.mark.parametrize("fmt", [CF.SENML_CBOR, CF.SENML_JSON], ids=lambda f: f.name.lower())
async def test_send(server: Lwm2mServer, client: Lwm2mClient, fmt: CF) -> None:
    events = server.events()
    client.set_value("/3303/0/5700", 17.25)
    code = await client.send(
        ["/3303/0/5700", "/3/0/9"], content_format=fmt, timestamp=1_700_000_000.5
    )
    assert str(code).startswith("2.04")
    latest = server.telemetry_latest("sender")
    assert latest["/3303/0/5700"].value == 17.25
    assert latest["/3303/0/5700"].ts_ms == 1_700_000_000_500
    assert latest["/3/0/9"].key == "batteryLevel"
    event = await next_event(events, "SEND")
    assert {p["path"] for p in event.data["points"]} == {"/3303/0/5700", "/3/0/9"}
    # the API's telemetry JSON (GET /api/clients/{ep}/telemetry), type names and all
    by_path = {p["path"]: p for p in event.data["points"]}
    assert by_path == {path: telemetry_to_json(latest[path]) for path in by_path}
    assert by_path["/3303/0/5700"]["type"] == "FLOAT"


async def test_send_of_an_instance(server: Lwm2mServer, client: Lwm2mClient) -> None:
    await client.send(["/3303/0"])
    latest = server.telemetry_latest("sender")
    assert {"/3303/0/5700", "/3303/0/5701"} <= set(latest)


async def test_send_from_unregistered_peer(server: Lwm2mServer) -> None:
    peer = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port))
    try:
        msg = raw.request(raw.POST, ["dp"], payload=b"[]", content_format=CF.SENML_JSON)
        assert raw.code_str((await peer.exchange(msg)).code) == "4.04"
    finally:
        peer.close()


@pytest.mark.parametrize(
    ("payload", "cf", "code"),
    [
        (b"[{", CF.SENML_JSON, "4.00"),
        (b"\xff", CF.SENML_CBOR, "4.00"),
        (b"21", None, "4.00"),
        (b"21", CF.TEXT, "4.15"),
    ],
)
async def test_send_malformed(
    server: Lwm2mServer, payload: bytes, cf: int | None, code: str
) -> None:
    peer = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port))
    try:
        await raw.register(peer, "bad-sender")
        msg = raw.request(raw.POST, ["dp"], payload=payload, content_format=cf)
        assert raw.code_str((await peer.exchange(msg)).code) == code
        assert server.telemetry_latest("bad-sender") == {}
    finally:
        peer.close()


async def test_muted_send_never_reaches_the_server(
    server: Lwm2mServer, client: Lwm2mClient
) -> None:
    client.set_value("/1/0/23", True)
    with pytest.raises(Lwm2mClientError):
        await client.send(["/3303/0/5700"])
