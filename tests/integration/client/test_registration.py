"""Client Registration interface over real sockets: Register, Update, De-register."""

from __future__ import annotations

import pytest
from aiocoap.numbers.codes import Code

from lwm2m_client.client import Lwm2mClient, Lwm2mClientError
from lwm2m_client.registration import update_delay

from .conftest import ClientFactory
from .fake_server import FakeLwm2mServer


async def test_register_query_payload_and_content_format(server: FakeLwm2mServer) -> None:
    client = Lwm2mClient("reg-1", server.uri, lifetime=120, auto_update=False)
    try:
        await client.start()
        reg_id = await client.register()
        up = await server.next_uplink("register")
        assert up.path == ("rd",)
        assert up.params == {"ep": "reg-1", "lt": "120", "lwm2m": "1.1", "b": "U"}
        assert up.content_format == 40
        links = up.payload.decode().split(",")
        assert links[0].startswith('</>;rt="oma.lwm2m";ct="')
        for fmt in ("60", "110", "112", "11542"):
            assert fmt in links[0]
        assert "</3>;ver=1.2" in links and "</3/0>" in links and "</1/0>" in links
        assert "</3303/0>" in links
        assert not any(link.startswith("</0") for link in links), "Security must not be listed"
        assert reg_id == "r1" and client.registration_id == "r1"
        # The server's downlink goes to the address the Register came from: same socket.
        assert client.local_address is not None
        assert up.remote.sockaddr[1] == client.local_address[1]
    finally:
        await client.stop()


@pytest.mark.parametrize(
    ("version", "expected"),
    [("1.0", {"b": "UQ"}), ("1.1", {"b": "U", "Q": None}), ("1.2", {"b": "U", "Q": None})],
)
async def test_queue_mode_spelling_per_version(
    make_client: ClientFactory, server: FakeLwm2mServer, version: str, expected: dict[str, object]
) -> None:
    client = await make_client(register=False, lwm2m_version=version, queue_mode=True)
    await client.register()
    up = await server.next_uplink("register")
    assert up.params["lwm2m"] == version
    for key, value in expected.items():
        assert up.params[key] == value


async def test_update_sends_only_changes(client: Lwm2mClient, server: FakeLwm2mServer) -> None:
    await client.update()
    up = await server.next_uplink("update")
    assert up.path == ("rd", "r1") and up.query == () and up.payload == b""
    await client.update(lifetime=90)
    up = await server.next_uplink("update")
    assert up.params == {"lt": "90"}
    assert client.get_value("/1/0/1") == 90  # the Server object follows
    await client.update(objects=True)
    up = await server.next_uplink("update")
    assert up.content_format == 40 and b"</3/0>" in up.payload


async def test_update_404_registers_again(client: Lwm2mClient, server: FakeLwm2mServer) -> None:
    server.registrations.clear()
    await client.update()
    await server.next_uplink("update")
    up = await server.next_uplink("register")
    assert up.params["ep"] == "test-ep"
    assert client.registration_id == "r2"


async def test_automatic_update_before_lifetime(
    make_client: ClientFactory, server: FakeLwm2mServer
) -> None:
    assert update_delay(2) == 1.0
    await make_client(lifetime=2, auto_update=True)
    up = await server.next_uplink("update", timeout=3)
    assert up.path == ("rd", "r1")


async def test_server_write_of_lifetime_triggers_update(
    client: Lwm2mClient, server: FakeLwm2mServer
) -> None:
    response = await server.request(Code.PUT, "/1/0/1", content_format=0, payload=b"77")
    assert response.code == Code.CHANGED
    up = await server.next_uplink("update")
    assert up.params == {"lt": "77"}


async def test_registration_update_trigger(client: Lwm2mClient, server: FakeLwm2mServer) -> None:
    response = await server.request(Code.POST, "/1/0/8")
    assert response.code == Code.CHANGED
    await server.next_uplink("update")


async def test_deregister(client: Lwm2mClient, server: FakeLwm2mServer) -> None:
    await client.deregister()
    up = await server.next_uplink("deregister")
    assert up.path == ("rd", "r1")
    assert not client.registered
    with pytest.raises(Lwm2mClientError):
        await client.update()


async def test_context_manager_registers_and_deregisters(server: FakeLwm2mServer) -> None:
    async with Lwm2mClient("ctx", server.uri, auto_update=False) as client:
        await server.next_uplink("register")
        assert client.registered
    await server.next_uplink("deregister")


async def test_refused_update_raises_with_the_code(server: FakeLwm2mServer) -> None:
    client = Lwm2mClient("x", f"coap://127.0.0.1:{server.port}", auto_update=False)
    try:
        await client.start()
        await client.register()
        server.update_code = Code.FORBIDDEN
        with pytest.raises(Lwm2mClientError) as info:
            await client.update()
        assert info.value.code == Code.FORBIDDEN
    finally:
        await client.stop()


def test_coaps_needs_credentials() -> None:
    with pytest.raises(ValueError, match="DTLS"):
        Lwm2mClient("dtls", "coaps://127.0.0.1:5684")
    with pytest.raises(ValueError, match="coap://"):
        Lwm2mClient("dtls", "coap://127.0.0.1:5683", psk=(b"id", b"key"))


def test_bad_server_uri() -> None:
    with pytest.raises(ValueError, match="scheme"):
        Lwm2mClient("x", "http://127.0.0.1")
