"""Campaigns end to end over real loopback sockets: the real server (job manager, package
library, download server, campaigns) with its HTTP API as ``lwm2m-server`` serves it (admin
token), and 200 demo clients (``lwm2m_client``, honest objects 5 and 9) on their own sockets.

* ``ok-*`` (140 devices, push): a rollout rate of 1200 devices a minute and at most 25 jobs at
  once; paused after 20 successes (no device starts while it is paused, the running jobs end),
  resumed, completed with every device on the new version;
* ``bad-*`` (60 devices, pull over CoAP): every other device fails its update (Update Result 8);
  with ``failureThreshold: 0.2`` after ``minSample: 10`` the campaign aborts, the devices it
  never started are cancelled.

Both run at once. The test waits on the server's own state, woken by its events (every job
change is a FIRMWARE event on the bus), never on time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lwm2m_client.client import Lwm2mClient
from lwm2m_client.firmware import UpdateSimulation
from lwm2m_client.firmware_image import make_image
from lwm2m_runtime.http_auth import ApiAuthSettings
from lwm2m_server.api import create_server_app
from lwm2m_server.config import FirmwareSettings
from lwm2m_server.firmware.campaigns import CampaignState
from lwm2m_server.firmware.contracts import PackageKind
from lwm2m_server.service import Lwm2mServer
from tests import live
from tests.auth import ADMIN_TOKEN, HEADERS

GOOD, BAD = 140, 60
RATE = 1200.0  # devices a minute: 20 a second, a bucket of 20
FIRMWARE = FirmwareSettings(
    request_timeout=10.0,
    download_timeout=30.0,
    update_timeout=30.0,
    retries=1,
    retry_backoff=0.05,
)


class Fleet:
    def __init__(self, server: Lwm2mServer, http: str, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http
        self.session = session
        self.devices: dict[str, Lwm2mClient] = {}

    async def call(self, method: str, path: str, **kw: Any) -> tuple[int, Any]:
        async with self.session.request(method, self.http + path, headers=HEADERS, **kw) as r:
            return r.status, await r.json()

    async def until(self, condition: Callable[[], bool], timeout: float = 60.0) -> None:
        """Wait for ``condition``, re-checked after every event of the server's bus (job
        changes, campaign changes, registrations)."""
        events = self.server.bus.subscribe()
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    await events.wait()
                    events.ready()
        finally:
            events.close()


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    config = live.loopback_config(
        tmp_path / "data",
        api_auth=ApiAuthSettings(admin_token=ADMIN_TOKEN),
        request_timeout=10.0,
        firmware=FIRMWARE,
    )
    async with (
        live.running(config) as server,
        live.listening(create_server_app(server), access_log=None) as port,
    ):
        session = aiohttp.ClientSession()
        fleet = Fleet(server, f"http://127.0.0.1:{port}", session)
        uri = f"coap://127.0.0.1:{server.coap_address.port}"
        gate = asyncio.Semaphore(10)

        async def add(endpoint: str, fail: bool) -> None:
            simulation = UpdateSimulation(fail_update=fail, reboot_delay=0.05, push_timeout=20.0)
            device = Lwm2mClient(endpoint, uri, auto_update=False, update_simulation=simulation)
            fleet.devices[endpoint] = device
            async with gate:
                await device.start()
                await device.register()

        try:
            await asyncio.gather(
                *[add(f"ok-{i:03d}", False) for i in range(GOOD)],
                *[add(f"bad-{i:03d}", i % 2 == 1) for i in range(BAD)],
            )
            yield fleet
        finally:
            await session.close()
            for device in fleet.devices.values():
                await device.stop()


def upload(server: Lwm2mServer, version: str) -> str:
    assert server.packages is not None
    image = make_image("pylwm2m-demo", version, f"firmware {version} ".encode() * 20)
    return server.packages.add(image, kind=PackageKind.FIRMWARE, name="demo", version=version).id


async def test_campaigns_over_200_devices_rate_pause_resume_and_abort(fleet: Fleet) -> None:
    server = fleet.server
    assert server.campaigns is not None
    good_package, bad_package = upload(server, "2.0.0"), upload(server, "2.1.0")

    # writes need the admin token, like every other write route
    async with fleet.session.post(fleet.http + "/api/campaigns", json={}) as refused:
        assert refused.status == 401

    status, good = await fleet.call(
        "POST",
        "/api/campaigns",
        json={
            "name": "ok fleet",
            "target": {"endpoint": "ok-*"},
            "package": good_package,
            "strategy": "push",
            "ratePerMinute": RATE,
            "maxConcurrent": 25,
        },
    )
    assert status == 201, good
    assert good["total"] == GOOD
    status, bad = await fleet.call(
        "POST",
        "/api/campaigns",
        json={
            "target": {"endpoint": "bad-*"},
            "package": bad_package,
            "strategy": "pull_coap",
            "maxConcurrent": 10,
            "failureThreshold": 0.2,
            "minSample": 10,
        },
    )
    assert status == 201, bad
    ok_campaign = server.campaigns.get(good["id"])
    bad_campaign = server.campaigns.get(bad["id"])

    # pause the good one after 20 successes: nothing starts, the running jobs end
    await fleet.until(lambda: ok_campaign.counts["succeeded"] >= 20)
    status, paused = await fleet.call("POST", f"/api/campaigns/{good['id']}/pause")
    assert status == 200 and paused["state"] == "paused"
    pending_at_pause = ok_campaign.counts["pending"]
    assert pending_at_pause > 0
    await fleet.until(lambda: ok_campaign.counts["running"] == 0)
    assert ok_campaign.state is CampaignState.PAUSED
    assert ok_campaign.counts["pending"] == pending_at_pause
    status, resumed = await fleet.call("POST", f"/api/campaigns/{good['id']}/resume")
    assert status == 200 and resumed["state"] == "running"

    # the failing one aborts by itself; its running jobs are left to end
    await fleet.until(lambda: bad_campaign.state is CampaignState.ABORTED)
    await fleet.until(lambda: bad_campaign.counts["running"] == 0)
    status, shown = await fleet.call("GET", f"/api/campaigns/{bad['id']}?status=failed")
    assert shown["state"] == "aborted"
    assert "exceeds the threshold 20%" in shown["reason"]
    counts = shown["counts"]
    assert counts["failed"] + counts["succeeded"] >= 10
    assert counts["cancelled"] > 0 and counts["pending"] == 0
    assert counts["failed"] + counts["succeeded"] + counts["cancelled"] == BAD
    assert {d["result"] for d in shown["devices"]} == {8}  # firmware update failed
    assert all(d["detail"] for d in shown["devices"])

    await fleet.until(lambda: ok_campaign.state is CampaignState.COMPLETED, timeout=90.0)
    status, done = await fleet.call("GET", f"/api/campaigns/{good['id']}?limit=1000")
    failures = [(d["endpoint"], d["detail"]) for d in done["devices"] if d["status"] != "succeeded"]
    assert done["counts"]["succeeded"] == GOOD, failures
    assert all(fleet.devices[f"ok-{i:03d}"].get_value("/3/0/3") == "2.0.0" for i in range(GOOD))
    # the rate: the token bucket started no more than a second's worth at once, then 20 a
    # second (a lower bound on the spread of the start times; a slow machine only widens it)
    starts = sorted(d["started"] for d in done["devices"])
    burst = RATE / 60
    assert starts[-1] - starts[0] >= (GOOD - burst) / (RATE / 60) * 1000 - 1

    # the CLI's and the UI's view: both campaigns listed with their final counts
    status, listing = await fleet.call("GET", "/api/campaigns")
    states = {c["id"]: c["state"] for c in listing["campaigns"]}
    assert states == {good["id"]: "completed", bad["id"]: "aborted"}
