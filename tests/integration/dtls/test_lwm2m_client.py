"""Our own ``lwm2m_client`` over CoAPs in PSK, RPK and X.509 mode against the server: register,
then the server reads ``/3/0`` over the same DTLS session; identity binding (4.03 for another
endpoint's name, 4.01 for unknown credentials)."""

from __future__ import annotations

from typing import Any

import pytest

from lwm2m_client.client import Lwm2mClient, Lwm2mClientError
from lwm2m_server.service import Lwm2mServer
from object_models.path import LwM2mPath

from .conftest import coaps_port, eventually
from .pki import PSK_IDENTITY, PSK_KEY, Pki


def credentials(mode: str, pki: Pki) -> dict[str, Any]:
    if mode == "psk":
        return {"psk": (PSK_IDENTITY, PSK_KEY)}
    if mode == "rpk":
        return {"rpk": (pki.rpk_device.key, pki.server_public_file.read_bytes())}
    if mode == "x509":
        return {"x509": (pki.x509_device.key, pki.x509_device.cert, pki.ca)}
    assert mode == "pinned"
    return {"x509": (pki.pinned_device.key, pki.pinned_device.cert, pki.ca)}


ENDPOINT = {"psk": "dev-psk", "rpk": "dev-rpk", "x509": "dev-x509", "pinned": "dev-pinned"}


@pytest.mark.parametrize("mode", ["psk", "rpk", "x509", "pinned"])
async def test_register_and_read_over_the_same_session(
    server: Lwm2mServer, pki: Pki, mode: str
) -> None:
    endpoint = ENDPOINT[mode]
    client = Lwm2mClient(
        endpoint,
        f"coaps://127.0.0.1:{coaps_port(server)}",
        auto_update=False,
        **credentials(mode, pki),
    )
    await client.start()
    try:
        await client.register()
        registration = server.client(endpoint)
        assert registration.transport == "coaps"
        assert registration.identity is not None and registration.identity.mode == mode.replace(
            "pinned", "x509"
        )
        sessions = list(server.dtls.sessions)
        assert len(sessions) == 1
        response = await server.read(endpoint, LwM2mPath(3, 0), timeout=5)
        assert response.dotted_code == "2.05"
        assert list(server.dtls.sessions) == sessions  # no second handshake
        # the session is the CoAP peer the downlink went to
        assert server.coap.coaps is not None
        assert server.coap.coaps.session_for(*sessions[0].key) is sessions[0]
        await client.update()
        assert server.client(endpoint).registration_id == registration.registration_id
    finally:
        await client.stop()


async def test_impersonation_is_forbidden(server: Lwm2mServer, pki: Pki) -> None:
    client = Lwm2mClient(
        "someone-else",
        f"coaps://127.0.0.1:{coaps_port(server)}",
        auto_update=False,
        psk=(PSK_IDENTITY, PSK_KEY),
    )
    await client.start()
    try:
        with pytest.raises(Lwm2mClientError) as info:
            await client.register()
        assert int(info.value.code) == 0x83  # 4.03
        assert server.clients() == []
    finally:
        await client.stop()


async def test_observe_send_and_deregister_over_coaps(server: Lwm2mServer, pki: Pki) -> None:
    """Notifications come back over the session (through the server's notification hook, which
    reads the address from our remote), Send is bound to the same identity, De-register too."""
    temperature = LwM2mPath(3303, 0, 5700)
    client = Lwm2mClient(
        "dev-rpk",
        f"coaps://127.0.0.1:{coaps_port(server)}",
        auto_update=False,
        **credentials("rpk", pki),
    )
    await client.start()
    try:
        await client.register()
        response = await server.observe("dev-rpk", temperature, timeout=5)
        assert response.dotted_code == "2.05"
        client.set_value(temperature, 31.5)
        await eventually(lambda: server.telemetry_latest("dev-rpk")["/3303/0/5700"].value == 31.5)
        client.set_value(temperature, 12.0)
        await client.send([temperature])
        assert server.telemetry_latest("dev-rpk")["/3303/0/5700"].value == 12.0
        await client.deregister()
        assert server.clients() == []
    finally:
        await client.stop()


async def test_client_starts_over_when_the_server_lost_its_session(
    server: Lwm2mServer, pki: Pki
) -> None:
    """A restarted server (here: one that evicted the session) drops the client's records
    silently; after three unanswered transmissions of a CON (about 6-9 s with aiocoap's
    timers) the client drops the session, that request fails, and the next one handshakes."""
    client = Lwm2mClient(
        "dev-psk",
        f"coaps://127.0.0.1:{coaps_port(server)}",
        auto_update=False,
        **credentials("psk", pki),
    )
    await client.start()
    try:
        await client.register()
        (first,) = server.dtls.sessions
        assert server.dtls.evict_idle(idle_timeout=0) == 1
        with pytest.raises(Lwm2mClientError):
            await client.update()
        await client.update()
        (second,) = server.dtls.sessions
        assert second is not first and second.established
        assert server.client("dev-psk").transport == "coaps"
    finally:
        await client.stop()
