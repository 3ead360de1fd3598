"""Update jobs end to end over real loopback sockets: the real server (its job manager, package
library and download server) and the demo client with its honest objects 5 and 9, NoSec and
DTLS (PSK), push and pull over CoAP; a device whose update fails, one that disappears
mid-download, a queue-mode device, a software install, and a server restart mid-update.

The jobs are started and read through the HTTP API (``POST``/``GET
/api/clients/{ep}/firmware``), as an operator does; the tests wait on the job's state (the
manager's subscribers), never on time. The job timeouts are made small through the
configuration (``firmware.*``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from keystore.credentials import DeviceCredentials
from keystore.store.credentials import SqliteCredentialStore
from keystore.store.engines import StoreSettings
from lwm2m_client.client import Lwm2mClient
from lwm2m_client.firmware import UpdateSimulation
from lwm2m_client.firmware_image import make_image
from lwm2m_server.config import FirmwareSettings, QueueSettings, ServerConfig
from lwm2m_server.firmware.contracts import JobState, JobView, Package, PackageKind
from lwm2m_server.service import Lwm2mServer
from tests.live import DeviceFactory, Http, api_of, devices, loopback_config, running

PSK_IDENTITY, PSK_KEY = b"fw-dtls-psk", bytes(range(16))
FIRMWARE = FirmwareSettings(
    request_timeout=3.0,
    download_timeout=10.0,
    update_timeout=10.0,
    queued_timeout=30.0,
    retries=1,
    retry_backoff=0.05,
)
SIMULATION = UpdateSimulation(reboot_delay=0.2, block_timeout=2.0, push_timeout=5.0)


class Jobs:
    """The server's job changes, as its subscribers see them; ``until`` waits for one."""

    def __init__(self) -> None:
        self.seen: list[JobView] = []
        self._changed = asyncio.Event()
        self._server: Lwm2mServer | None = None

    def follow(self, server: Lwm2mServer) -> None:
        assert server.firmware is not None
        self._server = server
        server.firmware.subscribe(self._on_job)

    def _on_job(self, view: JobView) -> None:
        self.seen.append(view)
        self._changed.set()

    def states(self, endpoint: str) -> list[JobState]:
        states: list[JobState] = []
        for view in self.seen:
            if view.endpoint == endpoint and (not states or states[-1] is not view.state):
                states.append(view.state)
        return states

    def last(self, endpoint: str) -> JobView | None:
        """The job now (it may have changed before this watch subscribed)."""
        if self._server is not None and self._server.firmware is not None:
            return self._server.firmware.job(endpoint)
        views = [v for v in self.seen if v.endpoint == endpoint]
        return views[-1] if views else None

    async def until(
        self, endpoint: str, check: Callable[[JobView], bool], timeout: float = 30.0
    ) -> JobView:
        async def wait() -> JobView:
            while True:
                view = self.last(endpoint)
                if view is not None and check(view):
                    return view
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(wait(), timeout)

    async def finished(self, endpoint: str, timeout: float = 30.0) -> JobView:
        return await self.until(endpoint, lambda v: v.state.finished, timeout)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a condition nothing signals (the demo device's own state)."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


def make_config(tmp_path: Path, **changes: Any) -> ServerConfig:
    defaults: dict[str, Any] = {
        "queue": QueueSettings(awake_time=0.5),
        "request_timeout": 5.0,
        "firmware": FIRMWARE,
    }
    return loopback_config(tmp_path / "data", **{**defaults, **changes})


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Lwm2mServer]:
    config = make_config(tmp_path)
    with SqliteCredentialStore.open(config.database) as store:
        store.put_device(DeviceCredentials.for_psk("fw-dtls", PSK_IDENTITY, PSK_KEY))
    async with running(config) as srv:
        yield srv


@pytest.fixture
def jobs(server: Lwm2mServer) -> Jobs:
    watch = Jobs()
    watch.follow(server)
    return watch


@pytest.fixture
async def http(server: Lwm2mServer) -> AsyncIterator[Http]:
    async with api_of(server) as client:
        yield client


@pytest.fixture
async def make_device(server: Lwm2mServer) -> AsyncIterator[DeviceFactory]:
    async with devices(server, update_simulation=SIMULATION) as make:
        yield make


def upload(server: Lwm2mServer, version: str, kind: PackageKind = PackageKind.FIRMWARE) -> Package:
    assert server.packages is not None
    image = make_image("pylwm2m-demo", version, f"firmware {version} ".encode() * 600)
    return server.packages.add(image, kind=kind, name="demo", version=version)


async def start(http: Http, endpoint: str, package: Package, strategy: str, **more: Any) -> Any:
    body = {"package": package.id, "strategy": strategy, **more}
    response = await http.post(f"/api/clients/{endpoint}/firmware", json=body)
    assert response.status == 201, await response.text()
    return await response.json()


async def shown(http: Http, endpoint: str) -> Any:
    response = await http.get(f"/api/clients/{endpoint}/firmware")
    assert response.status == 200
    return await response.json()


HAPPY = [
    JobState.PENDING,
    JobState.DOWNLOADING,
    JobState.DOWNLOADED,
    JobState.UPDATING,
    JobState.VERIFYING,
    JobState.SUCCEEDED,
]


@pytest.mark.parametrize("strategy", ["auto", "pull_coap", "push"])
async def test_nosec_update_succeeds(
    strategy: str, server: Lwm2mServer, http: Http, jobs: Jobs, make_device: DeviceFactory
) -> None:
    device = await make_device("fw-plain")
    package = upload(server, "2.0.0")
    started = await start(http, "fw-plain", package, strategy)
    assert started["state"] == "pending"
    view = await jobs.finished("fw-plain")
    assert view.state is JobState.SUCCEEDED, view.detail
    assert jobs.states("fw-plain") == HAPPY
    assert view.strategy.value == ("pull_coap" if strategy == "auto" else strategy)
    assert device.get_value("/3/0/3") == "2.0.0"
    body = await shown(http, "fw-plain")
    assert body["state"] == "succeeded" and body["result"] == 1 and body["attempts"] == 1


@pytest.mark.parametrize("strategy", ["pull_coap", "push"])
async def test_dtls_psk_update_succeeds(
    strategy: str, server: Lwm2mServer, http: Http, jobs: Jobs, make_device: DeviceFactory
) -> None:
    device = await make_device("fw-dtls", psk=(PSK_IDENTITY, PSK_KEY))
    package = upload(server, "3.0.0")
    await start(http, "fw-dtls", package, strategy)
    view = await jobs.finished("fw-dtls")
    assert view.state is JobState.SUCCEEDED, view.detail
    assert device.get_value("/3/0/3") == "3.0.0"


async def test_a_failing_update_fails_with_the_result_explained(
    server: Lwm2mServer, http: Http, jobs: Jobs, make_device: DeviceFactory
) -> None:
    device = await make_device(
        "fw-bad", update_simulation=UpdateSimulation(fail_update=True, reboot_delay=0.1)
    )
    await start(http, "fw-bad", upload(server, "2.0.0"), "pull_coap")
    view = await jobs.finished("fw-bad")
    assert view.state is JobState.FAILED
    assert view.result == 8
    assert view.detail == "Update Result 8: firmware update failed"
    body = await shown(http, "fw-bad")
    assert body["resultText"] == "firmware update failed"
    assert device.get_value("/3/0/3") == "0.1.0"


async def test_a_device_that_disappears_mid_download_is_retried_then_fails(
    tmp_path: Path, make_device: DeviceFactory
) -> None:
    # a fresh server with a short download timeout: the device is gone for good
    config = make_config(
        tmp_path / "short",
        firmware=attrs.evolve(FIRMWARE, download_timeout=1.0, request_timeout=0.5),
    )
    async with Lwm2mServer(config) as server:
        watch = Jobs()
        watch.follow(server)
        device = Lwm2mClient(
            "fw-gone",
            f"coap://127.0.0.1:{server.coap_address.port}",
            auto_update=False,
            update_simulation=UpdateSimulation(vanish_after_blocks=1),
        )
        await device.start()
        try:
            await device.register()
            assert server.firmware is not None
            await server.firmware.start("fw-gone", upload(server, "2.0.0").id)
            view = await watch.finished("fw-gone")
        finally:
            await device.stop()
    assert view.state is JobState.FAILED
    assert watch.states("fw-gone")[:2] == [JobState.PENDING, JobState.DOWNLOADING]
    assert JobState.PENDING in watch.states("fw-gone")[2:]  # the retry
    assert view.detail.startswith("timeout: the download did not finish within 1 s; then ")
    assert view.detail.endswith("not answered within 0.5 s (2 attempts)")


async def test_a_queue_mode_device_is_updated_when_it_wakes(
    server: Lwm2mServer, http: Http, jobs: Jobs, make_device: DeviceFactory
) -> None:
    device = await make_device("fw-sleepy", queue_mode=True, awake_time=0.3)

    async def asleep() -> None:
        while server.is_sleeping("fw-sleepy") is not True:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(asleep(), 10)
    await start(http, "fw-sleepy", upload(server, "2.0.0"), "pull_coap")
    assert server.queued("fw-sleepy")  # nothing sent: it sleeps
    assert (await shown(http, "fw-sleepy"))["state"] == "downloading"
    await device.update()  # it wakes: the queued observes and Package URI go out
    await jobs.until("fw-sleepy", lambda v: v.state is not JobState.DOWNLOADING)
    if server.is_sleeping("fw-sleepy") and server.queued("fw-sleepy"):
        await device.update()  # the Execute Update waits for the next wake-up
    view = await jobs.finished("fw-sleepy")
    assert view.state is JobState.SUCCEEDED, view.detail
    assert device.get_value("/3/0/3") == "2.0.0"


async def test_software_install_on_object_9(
    server: Lwm2mServer, http: Http, jobs: Jobs, make_device: DeviceFactory
) -> None:
    device = await make_device("fw-soft")
    package = upload(server, "5.0.0", PackageKind.SOFTWARE)
    started = await start(http, "fw-soft", package, "auto", instance=0)
    assert started["kind"] == "software"
    view = await jobs.finished("fw-soft")
    assert view.state is JobState.SUCCEEDED, view.detail
    assert device.get_value("/9/0/1") == "5.0.0"


async def test_a_second_software_update_replaces_the_installed_one(
    server: Lwm2mServer, http: Http, jobs: Jobs, make_device: DeviceFactory
) -> None:
    """The device is INSTALLED after the first: the job uninstalls "ForUpdate" first (a
    Package URI written in INSTALLED would be refused with 4.05)."""
    device = await make_device("fw-soft-twice")
    for version in ("5.0.0", "6.0.0"):
        package = upload(server, version, PackageKind.SOFTWARE)
        await start(http, "fw-soft-twice", package, "pull_coap", instance=0)
        view = await jobs.finished("fw-soft-twice")
        assert view.state is JobState.SUCCEEDED, view.detail
        assert device.get_value("/9/0/1") == version


@pytest.mark.parametrize("engine", ["sqlite", "redis"])
async def test_a_restarted_server_resumes_the_update(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    config = make_config(tmp_path / "restart")
    if engine == "redis":  # jobs in Redis; the restarted node has a new node id
        url = request.getfixturevalue("redis_url")
        config = attrs.evolve(config, store=StoreSettings("redis", url, "fwjobs"))
    first = Lwm2mServer(config)
    await first.start()
    port = first.coap_address.port
    watch = Jobs()
    watch.follow(first)
    device = Lwm2mClient(
        "fw-restart",
        f"coap://127.0.0.1:{port}",
        auto_update=False,
        update_simulation=UpdateSimulation(reboot_delay=1.0),
    )
    await device.start()
    second: Lwm2mServer | None = None
    try:
        await device.register()
        assert first.firmware is not None
        await first.firmware.start("fw-restart", upload(first, "2.0.0").id)
        await watch.until("fw-restart", lambda v: v.state is JobState.UPDATING)
        await first.stop()  # the device reboots into the new image meanwhile
        second = Lwm2mServer(attrs.evolve(config, coap_port=port))
        await second.start()
        assert second.firmware is not None
        resumed = second.firmware.job("fw-restart")
        assert resumed is not None and resumed.state is JobState.UPDATING
        again = Jobs()
        again.follow(second)
        # the device registers with the restarted server; the resumed job verifies it
        view = await again.finished("fw-restart")
        assert view.state is JobState.SUCCEEDED, view.detail
        assert device.get_value("/3/0/3") == "2.0.0"
    finally:
        await device.stop()
        if second is not None:
            await second.stop()


async def test_an_impossible_state_reported_by_the_device_fails_the_job_clearly(
    server: Lwm2mServer, http: Http, jobs: Jobs, make_device: DeviceFactory
) -> None:
    device = await make_device("fw-odd")
    assert server.packages is not None
    big = make_image("pylwm2m-demo", "2.0.0", bytes(range(256)) * 400)  # ~100 blocks to fetch
    package = server.packages.add(big, kind=PackageKind.FIRMWARE, name="big", version="2.0.0")
    await start(http, "fw-odd", package, "pull_coap")
    # the device downloads (State 1, which the job hears of and records)
    await jobs.until("fw-odd", lambda v: device.get_value("/5/0/3") == 1)
    device.set_value("/5/0/3", 3)  # "Updating", though nobody executed anything
    view = await jobs.finished("fw-odd")
    assert view.state is JobState.FAILED
    assert view.detail == (
        "impossible transition: the device reports State 3 (Updating) "
        "but Execute Update was never sent"
    )
    assert (await shown(http, "fw-odd"))["detail"] == view.detail


async def test_a_package_a_running_job_delivers_cannot_be_deleted(
    server: Lwm2mServer, http: Http, jobs: Jobs, make_device: DeviceFactory
) -> None:
    await make_device("fw-busy", update_simulation=UpdateSimulation(vanish_after_blocks=1))
    package = upload(server, "2.0.0")
    await start(http, "fw-busy", package, "pull_coap")
    refused = await http.delete(f"/api/packages/{package.id}")
    assert refused.status == 409
    assert "update job of fw-busy" in (await refused.json())["error"]
    cancelled = await http.delete("/api/clients/fw-busy/firmware")
    assert (await cancelled.json())["state"] == "cancelled"
    assert (await http.delete(f"/api/packages/{package.id}")).status == 200


@pytest.mark.parametrize("engine", ["sqlite", "redis"])
async def test_a_restarted_server_re_arms_the_stored_deadline(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The download stalls (the device went silent) and the server restarts: the resumed job's
    deadline, re-armed from the store, still fails it after the retry."""
    config = make_config(
        tmp_path / "stall",
        firmware=attrs.evolve(FIRMWARE, download_timeout=1.0, request_timeout=0.5),
    )
    if engine == "redis":  # the restarted node has a new node id: it takes the job over
        url = request.getfixturevalue("redis_url")
        config = attrs.evolve(config, store=StoreSettings("redis", url, "fwstall"))
    first = Lwm2mServer(config)
    await first.start()
    port = first.coap_address.port
    device = Lwm2mClient(
        "fw-stall",
        f"coap://127.0.0.1:{port}",
        auto_update=False,
        update_simulation=UpdateSimulation(vanish_after_blocks=1),
    )
    await device.start()
    second: Lwm2mServer | None = None
    try:
        await device.register()
        watch = Jobs()
        watch.follow(first)
        assert first.firmware is not None
        await first.firmware.start("fw-stall", upload(first, "2.0.0").id)
        await until(lambda: device.outage.active)  # it stopped asking for blocks
        assert watch.last("fw-stall") is not None
        await first.stop()
        second = Lwm2mServer(attrs.evolve(config, coap_port=port))
        await second.start()
        again = Jobs()
        again.follow(second)
        view = await again.finished("fw-stall")
        assert view.state is JobState.FAILED
        assert view.detail.startswith("timeout: the download did not finish within 1 s")
    finally:
        await device.stop()
        if second is not None:
            await second.stop()
