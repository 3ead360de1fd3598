"""LwM2M Send (POST /dp, 1.1+): stored as telemetry with the device's timestamps, published as
a SEND event, refused for peers that are not registered or payloads that do not decode."""

from __future__ import annotations

from pathlib import Path

import pytest

from keystore.credentials import DeviceCredentials
from keystore.store.credentials import SqliteCredentialStore
from lwm2m_client.client import Lwm2mClient, Lwm2mClientError
from lwm2m_server.json_nodes import telemetry_to_json
from lwm2m_server.service import Lwm2mServer
from object_models.content_format import ContentFormat as CF

from . import rawcoap as raw
from .conftest import ClientFactory, next_event, server_config


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


async def test_send_from_an_address_shared_by_two_endpoints_is_refused(
    server: Lwm2mServer,
) -> None:
    """Behind a NAT several NoSec endpoints share one address:port. A Send names no endpoint,
    so the server refuses it (4.03) and stores nothing rather than filing one device's data
    under the most recently registered one; with one endpoint left it is accepted."""
    peer = await raw.RawPeer.open(("127.0.0.1", server.coap_address.port))
    payload = b'[{"bn":"/3303/0/","n":"5700","v":21.5}]'
    try:
        await raw.register(peer, "behind-nat-1")
        second = await raw.register(peer, "behind-nat-2")
        msg = raw.request(raw.POST, ["dp"], payload=payload, content_format=CF.SENML_JSON)
        answer = await peer.exchange(msg)
        assert raw.code_str(answer.code) == "4.03"
        assert b"behind-nat-1" in answer.payload and b"behind-nat-2" in answer.payload
        assert server.telemetry_latest("behind-nat-1") == {}
        assert server.telemetry_latest("behind-nat-2") == {}

        delete = await peer.exchange(raw.request(raw.DELETE, ["rd", second]))
        assert raw.code_str(delete.code) == "2.02"
        msg = raw.request(raw.POST, ["dp"], payload=payload, content_format=CF.SENML_JSON)
        assert raw.code_str((await peer.exchange(msg)).code) == "2.04"
        assert server.telemetry_latest("behind-nat-1")["/3303/0/5700"].value == 21.5
    finally:
        peer.close()


async def test_dtls_send_is_attributed_by_the_session_identity(tmp_path: Path) -> None:
    """Over CoAPs the Send is filed under the endpoint the DTLS identity is bound to."""
    config = server_config(tmp_path / "data", open_registration=False)
    with SqliteCredentialStore.open(config.database) as store:
        store.put_device(DeviceCredentials.for_psk("dtls-sender", b"dtls-sender-id", b"k" * 16))
    server = Lwm2mServer(config)
    await server.start()
    client = Lwm2mClient(
        "dtls-sender",
        f"coaps://127.0.0.1:{server.coaps_address.port}",
        auto_update=False,
        lwm2m_version="1.1",
        psk=(b"dtls-sender-id", b"k" * 16),
    )
    try:
        await client.start()
        await client.register()
        client.set_value("/3303/0/5700", 3.5)
        code = await client.send(["/3303/0/5700"])
        assert str(code).startswith("2.04")
        assert server.telemetry_latest("dtls-sender")["/3303/0/5700"].value == 3.5
    finally:
        await client.stop()
        await server.stop()


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
