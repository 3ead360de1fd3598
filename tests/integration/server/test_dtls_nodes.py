"""A CoAPs device moves between two ``lwm2m-server`` processes sharing one Redis without a new
handshake (issue 12, "a DTLS client moves from A to B without a handshake";
docs/coaps-transport.md, "DTLS across nodes").

A real ``lwm2m_client`` with a PSK registers on node A through a UDP relay (the load
balancer); the relay then sends its datagrams to node B, from the same address (rebalancing);
the device's next Update, in its old DTLS session, is accepted by B with 2.04, and B's
``/metrics`` show no handshake started there and one session continued from the store. Node A
is then killed with SIGKILL, and the device goes on with B in the same session.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from keystore.credentials import DeviceCredentials
from keystore.store.redis_credentials import RedisCredentialStore
from keystore.store.redis_database import RedisDatabase
from lwm2m_client.client import Lwm2mClient
from tests.integration.dtls.test_sessions_across_nodes import Relay
from tests.live import api_session

from ..processes import ServerProcess, redis_nodes
from .test_persistence import get_json

PSK_ID, PSK_KEY = b"mover-identity", bytes(range(16))


@pytest.fixture
def nodes(tmp_path: Path, redis_url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    db = RedisDatabase(redis_url, prefix="nodes")
    try:
        RedisCredentialStore(db).put_device(DeviceCredentials.for_psk("mover", PSK_ID, PSK_KEY))
    finally:
        db.close()
    with redis_nodes(tmp_path, redis_url) as pair:
        yield pair


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with api_session() as session:
        yield session


async def metric(http: aiohttp.ClientSession, node: ServerProcess, name: str) -> float:
    """One sample of ``GET /metrics`` (``name`` with its labels, as exposed)."""
    base = node.api.removesuffix("/api")
    async with http.get(f"{base}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert found is not None, f"{name} not in /metrics"
    return float(found.group(1))


async def test_a_dtls_device_moves_from_a_to_b_without_a_handshake(
    nodes: tuple[ServerProcess, ServerProcess], http: aiohttp.ClientSession
) -> None:
    a, b = nodes
    a.start()
    b.start()
    relay = await Relay.open(("127.0.0.1", a.coaps_port))
    host, port = relay.address
    client = Lwm2mClient(
        "mover", f"coaps://{host}:{port}", auto_update=False, psk=(PSK_ID, PSK_KEY)
    )
    try:
        await client.start()
        location = await client.register()
        started = 'lwm2m_dtls_handshakes_total{result="started"}'
        assert await metric(http, a, started) == 1

        relay.target = ("127.0.0.1", b.coaps_port)  # the load balancer moves the device
        await client.update(lifetime=600)  # raises unless 2.04; a 4.04 would re-register
        assert client.registration_id == location
        assert await metric(http, b, started) == 0
        assert await metric(http, b, "lwm2m_dtls_sessions_adopted_total") == 1
        assert await metric(http, b, 'lwm2m_dtls_session_lookups_total{result="sent"}') == 1
        shown = await get_json(http, f"{b.api}/clients/mover")
        assert (shown["registrationId"], shown["lifetime"]) == (location, 600)

        # node A is killed; the device keeps talking to B in the same session
        a.kill9()
        await client.update(lifetime=700)
        assert await metric(http, b, started) == 0
        shown = await get_json(http, f"{b.api}/clients/mover")
        assert shown["lifetime"] == 700
    finally:
        await client.stop()
        relay.close()
    assert b.stop() == 0
