"""Redis down or restarting under a running server (issue 12, "Bad input / faults";
docs/cluster.md, "Redis down"), over real sockets and a real ``redis-server`` that the test
stops and starts again on the same port:

* while Redis is down, a device's Update and Register are answered 5.03 with Max-Age (never
  2.xx: nothing was stored, so nothing is acknowledged) and the API's client list 503 with
  Retry-After (on Redis the list is the store's: this node's cache misses other nodes'
  devices), while a device this node holds is still shown from its memory;
* once Redis is back, the next Update and Register succeed without restarting the server
  (redis-py reconnects on the next command);
* the outage is logged once: one WARNING when it starts, one INFO when Redis answers again;
* a Redis that hangs (``SIGSTOP``: connections accepted by the kernel, nothing answered) costs
  one socket timeout, not one per request: the circuit breaker then fails every request at once
  (5.03 with Max-Age), ``/api/health`` reports the store down, and after ``SIGCONT`` the
  breaker's probe closes it and the next requests succeed; what was acknowledged is there.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
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


SOCKET_TIMEOUT = 5.0
"""The Redis client's socket timeout (``RedisDatabase``'s default, which the server uses)."""


async def test_a_redis_that_hangs_costs_one_timeout_then_requests_fail_fast_until_it_is_back(
    lwm2m: Lwm2mServer, own_redis: RestartableRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis stopped with SIGSTOP drops nothing and answers nothing: without the breaker every
    Register and Update waited for the socket timeout (an Update two commands: 10 s each) on
    the event loop. With it, the first command waits once, then every request is answered
    5.03 at once until Redis answers a PING again. Bounds are generous: the point is "one
    timeout, not one per request", not a speed."""
    assert own_redis.proc is not None
    peer = await raw.RawPeer.open(("127.0.0.1", lwm2m.coap_address.port))
    try:
        async with (
            TestServer(create_server_app(lwm2m)) as web,
            TestClient(web, headers=HEADERS) as http,  # type: ignore[var-annotated]
        ):
            kept = {ep: await raw.register(peer, ep) for ep in ("kept-1", "kept-2", "kept-3")}
            caplog.clear()
            caplog.set_level(logging.DEBUG)
            own_redis.proc.send_signal(signal.SIGSTOP)
            try:
                requests = [_update(kept["kept-1"]), _register("newcomer")]
                requests += [_update(kept["kept-2"]), _register("other"), _update("x")] * 2
                started = time.monotonic()
                for message in requests:
                    # one attempt, waited for long enough to see a stall of the loop
                    answer = await peer.exchange(message, timeout=60, retries=1)
                    assert answer.code == SERVICE_UNAVAILABLE, raw.code_str(answer.code)
                    assert answer.uint(MAX_AGE) == 5
                elapsed = time.monotonic() - started
                assert elapsed < len(requests) * SOCKET_TIMEOUT / 2, elapsed

                health = await http.get("/api/health")  # liveness: the process serves
                assert health.status == 200, await health.text()
                report = await health.json()
                assert report["status"] == "degraded" and report["clients"] is None
                assert report["store"]["up"] is False
                assert "did not answer" in report["store"]["error"]
                figures = report["cluster"]["redis"]
                assert figures["down"] is True and figures["breakerOpen"] is True
                assert figures["breakerTrips"] == 1 and figures["failedFast"] >= len(requests)
                metrics = await (await http.get("/metrics")).text()
                assert "lwm2m_redis_breaker_open 1.0" in metrics
                assert "lwm2m_redis_breaker_trips_total 1.0" in metrics
                during = [r for r in caplog.records if r.levelno >= logging.WARNING]
            finally:
                own_redis.proc.send_signal(signal.SIGCONT)

            async with asyncio.timeout(20):  # the probe's PING is answered on resuming
                while lwm2m.cluster is not None and lwm2m.cluster.db.breaker.is_open:
                    await asyncio.sleep(0.05)
            # no restart: served again, and nothing acknowledged before the outage is lost
            for endpoint, registration_id in kept.items():
                answer = await peer.exchange(_update(registration_id))
                assert answer.code == raw.CHANGED, (endpoint, raw.code_str(answer.code))
            await raw.register(peer, "newcomer")
            listed = await http.get("/api/clients")
            assert listed.status == 200, await listed.text()
            assert {c["endpoint"] for c in await listed.json()} >= {*kept, "newcomer"}
            healthy = await (await http.get("/api/health")).json()
            assert healthy["status"] == "ok" and healthy["clients"] >= 4
            assert healthy["cluster"]["redis"]["breakerOpen"] is False
    finally:
        peer.close()

    # the outage, once (saying the breaker opened); the refused requests are not complaints
    # (the firmware job and campaign lease timers log their own failure once a minute)
    outage = [r.getMessage() for r in during if r.name == "keystore.store.redis_database"]
    assert len(outage) == 1, outage
    assert "unreachable" in outage[0] and "not asked again" in outage[0]
    assert not [r for r in during if r.name.startswith("lwm2m_server.coap")]
    recovered = [r for r in caplog.records if "reachable again" in r.getMessage()]
    assert [r.levelname for r in recovered] == ["INFO"]
