"""Update jobs on a cluster (docs/firmware.md, "Updates in a cluster"): two server nodes on one
real Redis, the demo client with its honest object 5, over real sockets.

* A job started through node A's API for a device registered on A; after Execute Update the
  device "reboots" and registers on node B (what a load balancer or another ``--workers``
  process may do): B takes the job over at that Register, verifies the version and the job
  succeeds; A stopped driving it at that moment (it never publishes a state after UPDATING),
  and both APIs show the same job.
* Node A (a real process) is killed with SIGKILL mid-download: B takes the job over once A's
  lease expired (before the device ever talks to B), delivers the package again from B and
  finishes the update; A's API showed the job B's API showed before the kill.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp.test_utils import TestClient, TestServer

from keystore.store.engines import StoreSettings
from lwm2m_client.client import Lwm2mClient
from lwm2m_client.firmware import UpdateSimulation
from lwm2m_client.transport import parse_server_uri
from lwm2m_server.api import create_app
from lwm2m_server.config import ServerConfig
from lwm2m_server.events_bus import FIRMWARE
from lwm2m_server.firmware.contracts import JobState
from lwm2m_server.operations import ServerEvent
from lwm2m_server.service import Lwm2mServer
from tests.auth import HEADERS

from ..processes import ServerProcess
from .test_update_flow import FIRMWARE as SETTINGS
from .test_update_flow import HAPPY, Jobs, make_config, shown, start, until, upload

LEASE = 1.0
KILL_LEASE = 2.0


def node_config(
    tmp_path: Path, name: str, url: str, prefix: str, lease: float = LEASE, **firmware: Any
) -> ServerConfig:
    config = make_config(
        tmp_path / name, firmware=attrs.evolve(SETTINGS, job_lease=lease, **firmware)
    )
    return attrs.evolve(config, store=StoreSettings("redis", url, prefix))


def start_process_node(
    tmp_path: Path, redis_url: str, prefix: str, **settings: str
) -> ServerProcess:
    """Node "a" as a real ``lwm2m-server`` process (one a test can SIGKILL) on Redis under
    ``prefix``, with the kill tests' short lease and request timeout; ``settings`` adds more
    ``LWM2M_SERVER_*`` variables (without the prefix)."""
    folder = tmp_path / "a"
    folder.mkdir()
    node = ServerProcess(folder, folder / "server.log")
    every = {
        "STORE_ENGINE": "redis",
        "STORE_URL": redis_url,
        "STORE_PREFIX": prefix,
        "FIRMWARE_JOB_LEASE": str(KILL_LEASE),
        "FIRMWARE_REQUEST_TIMEOUT": str(SETTINGS.request_timeout),
        **settings,
    }
    node.env.update({f"LWM2M_SERVER_{k}": v for k, v in every.items()})
    node.start()
    return node


@pytest.fixture
async def pair(tmp_path: Path, redis_url: str) -> AsyncIterator[tuple[Lwm2mServer, Lwm2mServer]]:
    a = Lwm2mServer(node_config(tmp_path, "a", redis_url, "fwpair"))
    b = Lwm2mServer(node_config(tmp_path, "b", redis_url, "fwpair"))
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await b.stop()
        await a.stop()


async def test_a_job_started_on_a_succeeds_when_the_device_reboots_onto_b(
    pair: tuple[Lwm2mServer, Lwm2mServer],
) -> None:
    a, b = pair
    assert a.firmware is not None and b.firmware is not None
    on_a, on_b = Jobs(), Jobs()
    on_a.follow(a)
    on_b.follow(b)
    # the job states each node publishes itself (as the driver of the job), in a row
    driven: dict[str, list[str]] = {"a": [], "b": []}

    def recorder(seen: list[str]) -> Callable[[ServerEvent], None]:
        def record(event: ServerEvent) -> None:
            state = str(event.data["state"]) if event.kind == FIRMWARE else None
            if state is not None and (not seen or seen[-1] != state):
                seen.append(state)

        return record

    a.bus.listen(recorder(driven["a"]))
    b.bus.listen(recorder(driven["b"]))
    device = Lwm2mClient(
        "fw-roam",
        f"coap://127.0.0.1:{a.coap_address.port}",
        auto_update=False,
        update_simulation=UpdateSimulation(reboot_delay=0.3),
    )
    server_a, server_b = (TestServer(create_app(n, registry=n.registry)) for n in (a, b))
    http_a: TestClient[Any, Any]
    http_b: TestClient[Any, Any]
    async with server_a, server_b, TestClient(server_a) as http_a, TestClient(server_b) as http_b:
        await device.start()
        try:
            await device.register()
            started = await start(http_a, "fw-roam", upload(a, "2.0.0"), "pull_coap")
            assert started["state"] == "pending"
            assert a.firmware.driving() == ["fw-roam"]
            assert (await shown(http_b, "fw-roam"))["package"] == started["package"]
            # its reboot into the new image registers on B (a load balancer's choice)
            device.server = parse_server_uri(f"coap://127.0.0.1:{b.coap_address.port}")
            view = await on_b.finished("fw-roam")
            assert view.state is JobState.SUCCEEDED, view.detail
            assert device.get_value("/3/0/3") == "2.0.0"
        finally:
            await device.stop()
        # A drove it to UPDATING, B took it from the Register on and verified the version
        assert driven["a"][-1] == "updating"
        # (on one Redis the holder record rides the Register's group commit, so B takes the
        # job over right after that commit and may first publish the state it took over)
        assert driven["b"] in (["verifying", "succeeded"], ["updating", "verifying", "succeeded"])
        # A's subscribers (a campaign) heard of B's changes, from B's events
        await on_a.until("fw-roam", lambda v: JobState.SUCCEEDED in on_a.states("fw-roam"))
        assert on_a.states("fw-roam") == HAPPY
        await until(lambda: a.firmware is not None and not a.firmware.driving())
        assert b.firmware.driving() == []
        for http in (http_a, http_b):
            body = await shown(http, "fw-roam")
            assert (body["state"], body["result"]) == ("succeeded", 1)
            listed = await http.get("/api/firmware/jobs")
            assert [j["endpoint"] for j in (await listed.json())["jobs"]] == ["fw-roam"]


async def test_a_job_of_a_device_on_b_started_through_a_is_driven_by_b_and_cancelled_by_a(
    pair: tuple[Lwm2mServer, Lwm2mServer],
) -> None:
    """The node whose API starts a job hands it to the node the device talks to (whose
    events the job needs); a cancel through any node ends it (that node takes the job, so the
    cancel is its last change)."""
    a, b = pair
    assert a.firmware is not None and b.firmware is not None
    device = Lwm2mClient(
        "fw-far",
        f"coap://127.0.0.1:{b.coap_address.port}",
        auto_update=False,
        update_simulation=UpdateSimulation(vanish_after_blocks=1),  # never finishes
    )
    await device.start()
    try:
        await device.register()
        view = await a.firmware.start("fw-far", upload(a, "2.0.0").id)
        assert view.state is JobState.PENDING
        await until(lambda: b.firmware is not None and b.firmware.driving() == ["fw-far"])
        assert a.firmware.driving() == []
        await until(lambda: device.outage.active)  # B delivered it: the download started
        cancelled = await a.firmware.cancel("fw-far")
        assert cancelled is not None and cancelled.state is JobState.CANCELLED
        await until(lambda: b.firmware is not None and not b.firmware.driving())
        shown_b = b.firmware.job("fw-far")
        assert shown_b is not None and shown_b.state is JobState.CANCELLED
    finally:
        await device.stop()


async def api_json(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> Any:
    async with http.request(method, url, **kw) as response:
        assert response.status < 300, await response.text()
        return await response.json()


async def test_node_a_killed_mid_download_b_takes_the_job_over_after_the_lease(
    tmp_path: Path, redis_url: str
) -> None:
    prefix = "fwkill"
    a = start_process_node(
        tmp_path,
        redis_url,
        prefix,
        FIRMWARE_DOWNLOAD_TIMEOUT=str(SETTINGS.download_timeout),
        FIRMWARE_UPDATE_TIMEOUT=str(SETTINGS.update_timeout),
        FIRMWARE_RETRIES="2",
        FIRMWARE_RETRY_BACKOFF="0.1",
    )
    b = Lwm2mServer(node_config(tmp_path, "b", redis_url, prefix, KILL_LEASE, retries=2))
    await b.start()
    assert b.firmware is not None and b.cluster is not None
    on_b = Jobs()
    on_b.follow(b)
    # the device goes silent after 2 blocks for a moment; A dies meanwhile; the device is
    # back well before A's lease ends, so B's Observes of the job it takes over reach it and
    # it hears the lost download at once (else it would wait for the download deadline)
    device = Lwm2mClient(
        "fw-kill",
        f"coap://127.0.0.1:{a.coap_port}",
        auto_update=False,
        update_simulation=UpdateSimulation(
            vanish_after_blocks=2, vanish_for=0.2, reboot_delay=0.3, block_timeout=2.0
        ),
    )
    try:
        async with aiohttp.ClientSession(
            headers=HEADERS, timeout=aiohttp.ClientTimeout(total=30)
        ) as http:
            await device.start()
            await device.register()
            package = upload(b, "2.0.0")  # the package library is in Redis: A serves it too
            url = f"{a.api}/clients/fw-kill/firmware"
            await api_json(http, "POST", url, json={"package": package.id, "strategy": "pull_coap"})
            await until(lambda: device.outage.active, timeout=20)  # mid-download
            on_a = await api_json(http, "GET", url)
            assert on_a["state"] == "downloading"
            shown_b = b.firmware.job("fw-kill")
            assert shown_b is not None and shown_b.state is JobState.DOWNLOADING
            assert b.firmware.driving() == []  # A drives it
            holder_a = b.cluster.holder("fw-kill")
            a.kill9()
            # back in coverage for good: the next download completes
            firmware = device.firmware
            assert firmware is not None
            firmware.simulation = attrs.evolve(firmware.simulation, vanish_after_blocks=None)
            # B claims it once A's lease expired, though the device never talked to B
            await until(lambda: b.firmware is not None and "fw-kill" in b.firmware.driving(), 20)
            assert b.cluster.holder("fw-kill") == holder_a != b.cluster.node_id
            device.server = parse_server_uri(f"coap://127.0.0.1:{b.coap_address.port}")
            view = await on_b.finished("fw-kill", timeout=60)
            assert view.state is JobState.SUCCEEDED, view.detail
            assert view.attempts == 2  # delivered again, from B
            assert device.get_value("/3/0/3") == "2.0.0"
    finally:
        await device.stop()
        await b.stop()
        a.stop()
    assert "taken over by this node" not in a.log()  # A only ever drove it
