"""Two ``lwm2m-server`` processes ("nodes") sharing one Redis (``store: {engine: redis}``,
docs/cluster.md), over real sockets with a real ``lwm2m_client``: a device registers on node
A; node B, which has no socket to the device, lists and shows it from the store and shows the
latest value A received; A is killed with SIGKILL and the device's next Update, sent to B's port
(what a load balancer does when a node dies), is accepted with 2.04, without a new Register.
Downlink requests through B (a Read of a device whose datagrams reach A, routed to A) and
events of every node are tests/integration/server/test_cluster.py. Expiry exactly once across
nodes is tests/unit/store/test_shared_core.py (``[redis]``, ``[redis-cluster]``)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from keystore.credential_cache import CachedCredentials
from keystore.credentials import DeviceCredentials
from keystore.store.engines import StoreSettings
from lwm2m_client.client import Lwm2mClient
from lwm2m_client.transport import parse_server_uri
from lwm2m_server.service import Lwm2mServer
from object_models.path import LwM2mPath
from tests.auth import SERVER_ENV
from tests.live import api_session
from tests.redis_fixture import _free_port

from ..processes import REPO, ServerProcess, redis_env, redis_nodes
from . import rawcoap as raw
from .conftest import server_config, wait_for
from .test_persistence import get_json, observe

ZERO_PORTS = ["--coap-port", "0", "--coaps-port", "0", "--http-port", "0"]


@pytest.fixture
def nodes(tmp_path: Path, redis_url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with redis_nodes(tmp_path, redis_url) as pair:
        yield pair


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with api_session() as session:
        yield session


async def test_node_b_serves_a_device_of_node_a_and_takes_it_over_after_a_kill(
    nodes: tuple[ServerProcess, ServerProcess], http: aiohttp.ClientSession
) -> None:
    a, b = nodes
    a.start()
    b.start()
    client = Lwm2mClient("roamer", f"coap://127.0.0.1:{a.coap_port}", auto_update=False)
    try:
        await client.start()
        location = await client.register()

        listed = await get_json(http, f"{b.api}/clients")
        assert [c["endpoint"] for c in listed] == ["roamer"]
        shown = await get_json(http, f"{b.api}/clients/roamer")
        assert shown["registrationId"] == location

        # a value A receives (its observation, its notification) is the latest value on B
        await observe(http, a.api, "roamer", "/3303/0/5700")
        client.set_value("/3303/0/5700", 42.5)
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            data = await get_json(http, f"{b.api}/clients/roamer/telemetry")
            if {p["path"]: p["value"] for p in data["points"]}.get("/3303/0/5700") == 42.5:
                break
            assert asyncio.get_running_loop().time() < deadline, a.log()
            await asyncio.sleep(0.1)

        a.kill9()
        client.server = parse_server_uri(f"coap://127.0.0.1:{b.coap_port}")
        await client.update(lifetime=600)  # raises unless 2.04; a 4.04 would re-register
        assert client.registration_id == location
        shown = await get_json(http, f"{b.api}/clients/roamer")
        assert (shown["registrationId"], shown["lifetime"]) == (location, 600)
    finally:
        await client.stop()
    assert b.stop() == 0


def test_an_unreachable_redis_stops_the_start_naming_the_url(tmp_path: Path) -> None:
    url = f"redis://:secret-pw@127.0.0.1:{_free_port()}/0"  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith("LWM2M_SERVER_")}
    env.update(PYTHONPATH=str(REPO), **SERVER_ENV, **redis_env(url))
    done = subprocess.run(
        [sys.executable, "-m", "lwm2m_server", "--data-dir", str(tmp_path), *ZERO_PORTS],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert url.replace("secret-pw", "***") in output
    assert "secret-pw" not in output


async def test_an_update_on_a_of_a_registration_b_removed_is_404(
    tmp_path: Path, redis_url: str
) -> None:
    """Group commit on Redis: A's cache still holds the registration, so its Update is held
    and answered by the flush's commit, which finds it gone: the 2.04 is withheld, and the
    device's retransmission gets the 4.04 (it registers again) instead of a lie."""
    settings = StoreSettings("redis", redis_url, "inproc")
    a = Lwm2mServer(server_config(tmp_path / "a", store=settings))
    b = Lwm2mServer(server_config(tmp_path / "b", store=settings))
    await a.start()
    await b.start()
    peer = await raw.RawPeer.open(("127.0.0.1", a.coap_address.port))
    try:
        location = await raw.register(peer, "gone-elsewhere", lifetime=300)
        peer.server = ("127.0.0.1", b.coap_address.port)
        answer = await peer.exchange(raw.request(raw.DELETE, ["rd", location]))
        assert raw.code_str(answer.code) == "2.02"

        peer.server = ("127.0.0.1", a.coap_address.port)
        update = raw.request(raw.POST, ["rd", location], query=["lt=600"])
        answer = await peer.exchange(update, timeout=6.0)
        assert raw.code_str(answer.code) == "4.04"
        assert a.coap.udp is not None
        assert a.coap.udp.withheld == 1  # the first answer (2.04) never left
        assert "gone-elsewhere" not in [r.endpoint for r in a.clients()]
    finally:
        peer.close()
        await b.stop()
        await a.stop()


async def test_a_device_revoked_on_b_is_refused_by_a_at_its_next_update(
    tmp_path: Path, redis_url: str
) -> None:
    """The resolver of node A caches device records (keystore/credential_cache.py; on Redis
    checked against the credential version counter once per loop turn, read by the group
    commit that began the turn or, after a pause like this one, by a GET of its own): while
    nothing changes A's Updates read no record, and once node B deactivates the device, A
    refuses its very next Update (4.01) — a revocation anywhere takes effect everywhere after
    each node's next commit (docs/cluster.md, "Credential cache")."""
    settings = StoreSettings("redis", redis_url, "revoke")
    a = Lwm2mServer(server_config(tmp_path / "a", store=settings, open_registration=False))
    b = Lwm2mServer(server_config(tmp_path / "b", store=settings, open_registration=False))
    await a.start()
    await b.start()
    peer = await raw.RawPeer.open(("127.0.0.1", a.coap_address.port))
    try:
        b.stores.credentials.put_device(DeviceCredentials.for_nosec("revoked-on-b"))
        location = await raw.register(peer, "revoked-on-b", lifetime=300)
        assert a.resolver is not None and isinstance(a.resolver.store, CachedCredentials)
        hits = a.resolver.store.hits
        for _ in range(2):
            answer = await peer.exchange(raw.request(raw.POST, ["rd", location], query=["lt=600"]))
            assert raw.code_str(answer.code) == "2.04"
        assert a.resolver.store.hits == hits + 2  # no keystore read for these Updates

        b.stores.credentials.put_device(DeviceCredentials.for_nosec("revoked-on-b", active=False))
        answer = await peer.exchange(raw.request(raw.POST, ["rd", location], query=["lt=600"]))
        assert raw.code_str(answer.code) == "4.01"
    finally:
        peer.close()
        await b.stop()
        await a.stop()


async def test_a_request_queued_on_b_is_delivered_by_a_where_the_device_wakes_up(
    tmp_path: Path, redis_url: str
) -> None:
    """A queue-mode device registered on node A; node B's API reads it while it sleeps (for
    B: B never heard it), so B queues the Read (202 and a requestId) with B as its owner in
    Redis. The device wakes with an Update on A: A takes the queue over atomically, sends the
    Read (once), and the answer reaches B's event stream as REQUEST_RESPONSE with the 202's
    requestId; B's copy is dropped without an answer of its own, the store is left empty."""
    settings = StoreSettings("redis", redis_url, "queued")
    a = Lwm2mServer(server_config(tmp_path / "a", store=settings))
    b = Lwm2mServer(server_config(tmp_path / "b", store=settings))
    await a.start()
    await b.start()
    reads: list[raw.Msg] = []

    def device(msg: raw.Msg) -> raw.Msg:
        reads.append(msg)
        return raw.Msg(raw.ACK, raw.CONTENT, 0, options=[(raw.CONTENT_FORMAT, b"")], payload=b"x")

    peer = await raw.RawPeer.open(("127.0.0.1", a.coap_address.port), device)
    events = b.bus.subscribe()
    try:
        location = await raw.register(peer, "sleepy", links="</3/0>", queue_mode=True)

        queued = await b.read("sleepy", LwM2mPath.parse("/3/0/0"))
        assert queued.queued and queued.request_id is not None
        assert [j.request_id for j in b.queued("sleepy")] == [queued.request_id]
        assert reads == []  # nobody sent it: A's queue is empty, B cannot reach the device

        answer = await peer.exchange(raw.request(raw.POST, ["rd", location]))
        assert raw.code_str(answer.code) == "2.04"
        await wait_for(lambda: len(reads) == 1, "the queued Read at the device")
        assert reads[0].strings(raw.URI_PATH) == ["3", "0", "0"]

        async def response() -> dict[str, Any]:
            while True:
                event = await events.get()
                assert event is not None
                if event.kind == "REQUEST_RESPONSE":
                    return dict(event.data)

        data = await asyncio.wait_for(response(), 10)
        assert data["requestId"] == queued.request_id and "error" not in data
        assert data["response"]["code"] == "2.05"
        await wait_for(lambda: b.queued("sleepy") == [], "B to let go of its copy")
        assert a.stores.queued_requests.all() == [] and b.stores.queued_requests.all() == []
        assert a.cluster is not None and a.cluster.queued_taken == 1
        await asyncio.sleep(0)
        assert len(reads) == 1  # delivered once
    finally:
        events.close()
        peer.close()
        await b.stop()
        await a.stop()
