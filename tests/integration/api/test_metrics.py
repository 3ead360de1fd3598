"""``GET /metrics`` and ``GET /api/ready`` on the real server: scraped after a registration, a
read and a notification from a real ``lwm2m_client`` device, the counters moved; readiness
fails once the CoAP listeners are closed."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lwm2m_client.client import Lwm2mClient
from lwm2m_runtime.http_auth import ApiAuthSettings
from lwm2m_server.api.app import create_server_app
from lwm2m_server.config import StoreSettings
from lwm2m_server.service import Lwm2mServer
from tests.auth import ADMIN_TOKEN, HEADERS
from tests.live import Http, loopback_config, running, serving


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Lwm2mServer]:
    config = loopback_config(tmp_path / "data", api_auth=ApiAuthSettings(admin_token=ADMIN_TOKEN))
    async with running(config) as srv:
        yield srv


@pytest.fixture
async def http(server: Lwm2mServer) -> AsyncIterator[Http]:
    async with serving(create_server_app(server)) as client:
        yield client


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-zA-Z0-9_:]+)(?:\{(.*)\})? (\S+)", line)
        if match is None:
            continue
        got = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
        if match.group(1) == name and got == wanted:
            return float(match.group(3))
    return 0.0


async def scrape(http: Http) -> str:
    answer = await http.get("/metrics")  # no token: scrapers poll it like /api/health
    assert answer.status == 200, await answer.text()
    assert answer.headers["Content-Type"].startswith("text/plain")
    return await answer.text()


async def test_counters_move_with_a_registration_a_read_and_a_notification(
    server: Lwm2mServer, http: Http
) -> None:
    before = await scrape(http)
    assert sample(before, "lwm2m_registrations", state="online", security="nosec") == 0
    uri = f"coap://127.0.0.1:{server.coap_address.port}"
    async with Lwm2mClient("dev-1", uri) as device:  # registers
        read = await http.get("/api/clients/dev-1/3/0/0", headers=HEADERS)
        assert read.status == 200, await read.text()
        observe = await http.post("/api/clients/dev-1/3303/0/5700/observe", headers=HEADERS)
        assert observe.status == 200, await observe.text()
        device.set_value("/3303/0/5700", 30.5)

        for _ in range(250):  # the notification is stored after the CoAP exchange: wait on it
            text = await scrape(http)
            if sample(text, "lwm2m_notifications_total", verdict="accept") >= 1:
                break
            await asyncio.sleep(0.02)
    assert sample(text, "lwm2m_registrations", state="online", security="nosec") == 1
    assert sample(text, "lwm2m_uplink_requests_total", operation="register", code="2.01") == 1
    assert sample(text, "lwm2m_downlink_requests_total", operation="read", outcome="2.05") == 1
    assert sample(text, "lwm2m_downlink_requests_total", operation="observe", outcome="2.05") == 1
    assert sample(text, "lwm2m_store_commit_seconds_count") >= 1
    assert sample(text, "lwm2m_event_subscribers") >= 0
    assert "lwm2m_dtls_handshakes_total" in text and "lwm2m_limit_refusals_total" in text
    after = await scrape(http)  # the device de-registered on leaving the block
    assert sample(after, "lwm2m_uplink_requests_total", operation="deregister", code="2.02") == 1
    assert sample(after, "lwm2m_registrations", state="online", security="nosec") == 0


async def test_unknown_paths_are_counted_as_other(server: Lwm2mServer, http: Http) -> None:
    import socket

    from lwm2m_runtime.coap import Code, Message, Type, options, serialize

    request = Message(Type.CON, Code.GET, 7, b"\x01", options(uri_path=["nope"]))

    def exchange() -> bytes:  # in a thread: the server runs on this test's loop
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(serialize(request), ("127.0.0.1", server.coap_address.port))
            return sock.recv(2048)

    await asyncio.to_thread(exchange)
    text = await scrape(http)
    assert sample(text, "lwm2m_uplink_requests_total", operation="other", code="4.04") == 1


async def test_ready_until_the_listeners_close(server: Lwm2mServer, http: Http) -> None:
    ready = await http.get("/api/ready")
    assert ready.status == 200
    assert await ready.json() == {"ready": True, "checks": {"listeners": "ok", "store": "ok"}}
    await server.coap.stop()
    down = await http.get("/api/ready")
    assert down.status == 503
    body = await down.json()
    assert body["ready"] is False and body["checks"]["listeners"] != "ok"
    assert body["checks"]["store"] == "ok"


async def test_the_cluster_counters_of_a_server_on_redis(tmp_path: Path, redis_url: str) -> None:
    """On Redis, /metrics carries the node's Redis counters, among them the credential versions
    taken from group commits (the figure /api/cluster shows as
    ``credentialVersionsFromCommits``), each equal to the node's own figure."""
    config = loopback_config(
        tmp_path / "data",
        api_auth=ApiAuthSettings(admin_token=ADMIN_TOKEN),
        store=StoreSettings("redis", redis_url, "metrics"),
    )
    async with running(config) as server, serving(create_server_app(server)) as http:
        client = Lwm2mClient("scraped", f"coap://127.0.0.1:{server.coap_address.port}")
        await client.start()
        try:
            await client.register()
            for _ in range(3):
                await client.update()
        finally:
            await client.stop()
        cluster = server.cluster
        assert cluster is not None
        figures = cluster.figures()["redis"]
        text = await scrape(http)
        assert figures["groupCommits"] >= 4  # the Register and the Updates
        for name, key in (
            ("lwm2m_redis_group_commits_total", "groupCommits"),
            ("lwm2m_redis_credential_version_reads_total", "credentialVersionReads"),
            ("lwm2m_redis_credential_versions_from_commits_total", "credentialVersionsFromCommits"),
        ):
            assert f"\n{name} " in text, name
            assert sample(text, name) == figures[key], name
