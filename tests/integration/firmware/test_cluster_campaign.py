"""Campaigns on a cluster (docs/firmware.md, "Campaigns in a cluster"): two server nodes on one
real Redis, 20 demo clients (honest object 5) registered half on each node, over real sockets.

* A campaign created through A's API is run by A's scheduler only (B's never starts a job), so
  its rollout rate holds across the cluster; paused through B's API, no device starts anywhere
  while the running jobs end; resumed through B's API, it completes; both APIs show it.
* A's campaign runner dies without releasing its lease (its scheduler's tasks cancelled, as a
  kill leaves them): B takes the campaign over once the lease expired and finishes it, no
  device started twice.
* The same with node A a real process killed with SIGKILL (its devices' jobs are driven by B,
  which holds the devices): B claims the campaign after A's lease and completes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from lwm2m_client.client import Lwm2mClient
from lwm2m_client.firmware import UpdateSimulation
from lwm2m_server.api import create_app
from lwm2m_server.firmware.campaigns import campaign_to_json
from lwm2m_server.service import Lwm2mServer
from tests.auth import HEADERS

from .test_cluster_jobs import KILL_LEASE, api_json, node_config, start_process_node
from .test_update_flow import upload

DEVICES = 20
RATE = 120.0  # devices a minute: 2 a second, a bucket of 2

Http = TestClient[Any, Any]


class Cluster:
    def __init__(self, a: Lwm2mServer, b: Lwm2mServer, http_a: Http, http_b: Http) -> None:
        self.a, self.b = a, b
        self.http_a, self.http_b = http_a, http_b
        self.starts: list[tuple[str, str, float]] = []
        """(node, endpoint, time.monotonic()) of every job a campaign scheduler started."""
        for name, node in (("a", a), ("b", b)):
            self._count(name, node)

    def _count(self, name: str, node: Lwm2mServer) -> None:
        assert node.firmware is not None
        original = node.firmware.start

        async def start(endpoint: str, *args: Any, **kw: Any) -> Any:
            if kw.get("campaign") is not None:
                self.starts.append((name, endpoint, time.monotonic()))
            return await original(endpoint, *args, **kw)

        node.firmware.start = start  # type: ignore[method-assign]

    async def campaign(self, http: Http, campaign_id: str) -> Any:
        response = await http.get(f"/api/campaigns/{campaign_id}?limit=100", headers=HEADERS)
        assert response.status == 200, await response.text()
        return await response.json()

    async def until(
        self, http: Http, campaign_id: str, condition: Callable[[Any], bool], timeout: float = 60
    ) -> Any:
        """Poll the campaign through ``http`` until ``condition`` (nothing on this side of the
        API signals another node's progress)."""
        async with asyncio.timeout(timeout):
            while True:
                shown = await self.campaign(http, campaign_id)
                if condition(shown):
                    return shown
                await asyncio.sleep(0.05)


@pytest.fixture
async def cluster(tmp_path: Path, redis_url: str) -> AsyncIterator[Cluster]:
    a = Lwm2mServer(node_config(tmp_path, "a", redis_url, "fwcamp"))
    b = Lwm2mServer(node_config(tmp_path, "b", redis_url, "fwcamp"))
    await a.start()
    await b.start()
    devices: list[Lwm2mClient] = []
    server_a, server_b = (TestServer(create_app(n, registry=n.registry)) for n in (a, b))
    try:
        async with (
            server_a,
            server_b,
            TestClient(server_a) as http_a,
            TestClient(server_b) as http_b,
        ):
            for i in range(DEVICES):
                node = a if i % 2 == 0 else b
                device = Lwm2mClient(
                    f"camp-{i:02d}",
                    f"coap://127.0.0.1:{node.coap_address.port}",
                    auto_update=False,
                    update_simulation=UpdateSimulation(reboot_delay=0.05, push_timeout=20.0),
                )
                devices.append(device)
                await device.start()
                await device.register()
            yield Cluster(a, b, http_a, http_b)
    finally:
        for device in devices:
            await device.stop()
        await b.stop()
        await a.stop()


def unsuccessful(shown: Any) -> str:
    """The devices of a campaign that did not succeed, with their jobs' details: why a run
    under load failed, in the assertion message."""
    return "; ".join(
        f"{d['endpoint']}: {d.get('status')} ({d.get('detail')})"
        for d in shown["devices"]
        if d.get("status") != "succeeded"
    )


async def create(cluster: Cluster, http: Http) -> str:
    package = upload(cluster.a, "2.0.0")
    body = {
        "target": {"endpoint": "camp-*"},
        "package": package.id,
        "strategy": "push",
        "ratePerMinute": RATE,
        "maxConcurrent": 4,
    }
    response = await http.post("/api/campaigns", json=body, headers=HEADERS)
    assert response.status == 201, await response.text()
    created = await response.json()
    assert created["total"] == DEVICES
    return str(created["id"])


def within_rate(starts: list[float]) -> bool:
    """Every run of starts fits the token bucket: at most burst + rate times its duration (a
    second runner would start a second bucket's worth at once)."""
    burst, per_second = max(1.0, RATE / 60), RATE / 60
    times = sorted(starts)
    return all(
        j - i + 1 <= burst + per_second * (times[j] - times[i]) + 0.5
        for i in range(len(times))
        for j in range(i, len(times))
    )


async def test_one_node_runs_the_campaign_and_obeys_the_other_nodes_api(
    cluster: Cluster,
) -> None:
    a, b = cluster.a, cluster.b
    assert a.campaigns is not None and b.campaigns is not None
    cid = await create(cluster, cluster.http_a)
    assert a.campaigns.running_here() == [cid] and b.campaigns.running_here() == []
    await cluster.until(cluster.http_b, cid, lambda c: c["counts"]["succeeded"] >= 4)

    paused = await cluster.http_b.post(f"/api/campaigns/{cid}/pause", headers=HEADERS)
    assert paused.status == 200, await paused.text()
    assert (await paused.json())["state"] == "paused"
    at_pause = len(cluster.starts)
    shown = await cluster.until(cluster.http_b, cid, lambda c: c["counts"]["running"] == 0)
    assert shown["state"] == "paused" and shown["counts"]["pending"] > 0
    assert len(cluster.starts) == at_pause  # no new job anywhere while paused

    resumed = await cluster.http_b.post(f"/api/campaigns/{cid}/resume", headers=HEADERS)
    assert resumed.status == 200
    assert (await resumed.json())["state"] == "running"
    final = await cluster.until(cluster.http_b, cid, lambda c: c["state"] != "running")
    assert final["state"] == "completed", final["reason"]
    assert final["counts"]["succeeded"] == DEVICES
    assert {d["endpoint"] for d in final["devices"]} == {f"camp-{i:02d}" for i in range(DEVICES)}
    shown_a = await cluster.campaign(cluster.http_a, cid)
    assert (shown_a["state"], shown_a["counts"]) == ("completed", final["counts"])

    assert {node for node, _, _ in cluster.starts} == {"a"}  # only A's scheduler started jobs
    assert len(cluster.starts) == DEVICES
    resumed_at = [t for _, _, t in cluster.starts[at_pause:]]
    assert within_rate([t for _, _, t in cluster.starts[:at_pause]])
    assert within_rate(resumed_at)


async def test_a_killed_runner_is_replaced_by_b_after_the_lease(cluster: Cluster) -> None:
    a, b = cluster.a, cluster.b
    assert a.campaigns is not None and b.campaigns is not None
    on_b = b.campaigns
    cid = await create(cluster, cluster.http_a)
    await cluster.until(cluster.http_b, cid, lambda c: c["counts"]["succeeded"] >= 2)
    await a.campaigns.stop(release=False)  # killed: its lease runs out by itself
    # B's lease check (every third of the lease) claims it once the lease expired
    await cluster.until(cluster.http_b, cid, lambda c: on_b.running_here() == [cid])
    final = await cluster.until(cluster.http_a, cid, lambda c: c["state"] != "running")
    assert final["state"] == "completed", f"{final['reason']}: {unsuccessful(final)}"
    assert final["counts"]["succeeded"] == DEVICES, unsuccessful(final)
    assert {node for node, _, _ in cluster.starts} == {"a", "b"}
    started = [endpoint for _, endpoint, _ in cluster.starts]
    assert sorted(started) == sorted(set(started))  # no device started twice


async def test_node_a_killed_with_sigkill_b_finishes_its_campaign(
    tmp_path: Path, redis_url: str
) -> None:
    prefix = "fwcampkill"
    a = start_process_node(tmp_path, redis_url, prefix)
    b = Lwm2mServer(node_config(tmp_path, "b", redis_url, prefix, KILL_LEASE))
    await b.start()
    assert b.campaigns is not None
    on_b = b.campaigns
    devices = [
        Lwm2mClient(
            f"kill-{i:02d}",
            f"coap://127.0.0.1:{b.coap_address.port}",
            auto_update=False,
            update_simulation=UpdateSimulation(reboot_delay=0.05, push_timeout=20.0),
        )
        for i in range(10)
    ]
    try:
        for device in devices:
            await device.start()
            await device.register()
        async with aiohttp.ClientSession(
            headers=HEADERS, timeout=aiohttp.ClientTimeout(total=30)
        ) as http:
            package = upload(b, "2.0.0")  # the package library is in Redis: A has it too
            body = {
                "target": {"endpoint": "kill-*"},
                "package": package.id,
                "strategy": "push",
                "ratePerMinute": 60,
                "maxConcurrent": 2,
            }
            created = await api_json(http, "POST", f"{a.api}/campaigns", json=body)
            cid = created["id"]
            assert created["total"] == 10
            assert on_b.running_here() == []

            async def shown() -> Any:
                return campaign_to_json(on_b.get(cid))

            async with asyncio.timeout(60):
                while (await shown())["counts"]["succeeded"] < 2:
                    await asyncio.sleep(0.05)
            a.kill9()
            async with asyncio.timeout(60):  # B claims it once A's lease expired
                while on_b.running_here() != [cid]:
                    await asyncio.sleep(0.05)
                while (await shown())["state"] == "running":
                    await asyncio.sleep(0.05)
            final = await shown()
            assert final["state"] == "completed", final["reason"]
            assert final["counts"]["succeeded"] == 10
            assert all(d.get_value("/3/0/3") == "2.0.0" for d in devices)
    finally:
        for device in devices:
            await device.stop()
        await b.stop()
        a.stop()
    assert "taken by this node" not in a.log()  # A only ever ran it as its creator
