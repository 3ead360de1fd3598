"""Redis down or restarting under a running server (issue 12, "Bad input / faults";
docs/cluster.md, "Redis down"), over real sockets and a real ``redis-server`` that the test
stops and starts again on the same port:

* while Redis is down, a device's Update and Register are answered 5.03 with Max-Age (never
  2.xx: nothing was stored, so nothing is acknowledged) and the API's client list 503 with
  Retry-After (on Redis the list is the store's: this node's cache misses other nodes'
  devices), while a device this node holds is still shown from its memory;
* once Redis is back, the next Update and Register succeed without restarting the server
  (redis-py reconnects on the next command);
* the outage is logged once: one WARNING when it starts, one INFO when Redis answers again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from keystore.store.engines import StoreSettings
from lwm2m_runtime.http_auth import ApiAuthSettings
from lwm2m_server.api.app import create_server_app
from lwm2m_server.service import Lwm2mServer
from tests.auth import ADMIN_TOKEN, HEADERS
from tests.redis_fixture import RestartableRedis

from . import rawcoap as raw
from .conftest import server_config

MAX_AGE = 14  # CoAP option number (RFC 7252 §5.10)
SERVICE_UNAVAILABLE = (5 << 5) | 3


@pytest.fixture
async def lwm2m(tmp_path: Path, own_redis: RestartableRedis) -> AsyncIterator[Lwm2mServer]:
    settings = StoreSettings("redis", own_redis.url, "down")
    auth = ApiAuthSettings(admin_token=ADMIN_TOKEN)
    server = Lwm2mServer(server_config(tmp_path / "data", store=settings, api_auth=auth))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _update(registration_id: str) -> raw.Msg:
    return raw.request(raw.POST, ["rd", registration_id])


def _register(endpoint: str) -> raw.Msg:
    return raw.request(
        raw.POST,
        ["rd"],
        query=[f"ep={endpoint}", "lt=300", "lwm2m=1.1", "b=U"],
        payload=b"</3303/0>",
        content_format=40,
    )


async def test_redis_down_is_503_with_max_age_then_the_server_recovers_by_itself(
    lwm2m: Lwm2mServer, own_redis: RestartableRedis, caplog: pytest.LogCaptureFixture
) -> None:
    peer = await raw.RawPeer.open(("127.0.0.1", lwm2m.coap_address.port))
    try:
        async with (
            TestServer(create_server_app(lwm2m)) as web,
            TestClient(web, headers=HEADERS) as http,  # type: ignore[var-annotated]
        ):
            registration_id = await raw.register(peer, "survivor")
            assert (await peer.exchange(_update(registration_id))).code == raw.CHANGED

            caplog.clear()
            caplog.set_level(logging.DEBUG)
            own_redis.stop()

            for message in (_update(registration_id), _register("newcomer"), _update("x")):
                answer = await peer.exchange(message)
                assert answer.code == SERVICE_UNAVAILABLE, raw.code_str(answer.code)
                assert answer.uint(MAX_AGE) == 5
            listed = await http.get("/api/clients")
            assert listed.status == 503, await listed.text()
            assert listed.headers["Retry-After"] == "5"
            assert (await listed.json())["code"] == "5.03"
            # what the node holds in memory is still served: its own device's registration
            shown = await http.get("/api/clients/survivor")
            assert shown.status == 200, await shown.text()
            assert (await shown.json())["registrationId"] == registration_id
            during = [r for r in caplog.records if _complaint(r)]

            own_redis.start_again()
            # no restart of the server: the next requests are served
            assert (await peer.exchange(_update(registration_id))).code == raw.CHANGED
            await raw.register(peer, "newcomer")
            listed = await http.get("/api/clients")
            assert listed.status == 200, await listed.text()
            endpoints = {c["endpoint"] for c in await listed.json()}
            assert {"survivor", "newcomer"} <= endpoints
    finally:
        peer.close()

    warnings = [r.getMessage() for r in during]
    assert len(warnings) == 1, warnings
    assert "unreachable" in warnings[0] and "5.03" in warnings[0]
    recovered = [r.getMessage() for r in caplog.records if "reachable again" in r.getMessage()]
    assert len(recovered) == 1 and caplog.records[0].levelno <= logging.WARNING
    assert [r.levelname for r in caplog.records if "reachable again" in r.getMessage()] == ["INFO"]
    after = [r.getMessage() for r in caplog.records if _complaint(r)]
    assert after == warnings  # nothing else complained, before or after the restart


def _complaint(record: logging.LogRecord) -> bool:
    """A WARNING or worse, except the cluster link's own (its pub/sub connection to the same
    Redis: "connection lost" and "cannot publish", each once a minute, docs/cluster.md)."""
    return record.levelno >= logging.WARNING and not record.name.startswith("lwm2m_server.cluster")
