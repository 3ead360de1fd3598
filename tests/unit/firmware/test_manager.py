"""``FirmwareManager`` over an in-memory device (a fake ``ServerOperations``) and a real
``EventBus``: the actions are performed, events and answers (queued ones too) find their job,
every change is stored and published, and a new manager resumes the stored jobs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from lwm2m_runtime.address import Address
from lwm2m_server.events_bus import FIRMWARE, EventBus
from lwm2m_server.firmware.contracts import (
    DownloadEvent,
    DownloadGrant,
    DownloadOutcome,
    JobState,
    JobView,
    Package,
    PackageKind,
    Strategy,
)
from lwm2m_server.firmware.job_store import MemoryJobStore
from lwm2m_server.firmware.jobs import JobSettings
from lwm2m_server.firmware.manager import (
    FirmwareManager,
    JobCluster,
    JobConflictError,
    UnknownPackageError,
    job_from_json,
    job_to_json,
)
from lwm2m_server.operations import (
    DeviceResponse,
    DeviceTimeoutError,
    ServerEvent,
    UnknownClientError,
)
from object_models.node import LwM2mNode, LwM2mSingleResource
from object_models.path import LwM2mPath

PACKAGE = Package("ab" * 32, PackageKind.FIRMWARE, "fw", "2.0", 5, 0)


class Library:
    def get(self, package_id: str) -> Package | None:
        return PACKAGE if package_id == PACKAGE.id else None

    def read(self, package_id: str, offset: int = 0, length: int | None = None) -> bytes:
        return b"hello"


class Grants:
    def __init__(self) -> None:
        self.listeners: list[Callable[[DownloadEvent], None]] = []
        self.revoked: list[str] = []
        self.device_hosts: list[str | None] = []

    def grant(self, package_id: str, endpoint: str, ttl_s: float) -> DownloadGrant:
        return DownloadGrant("tok", package_id, endpoint, int(ttl_s * 1000))

    def revoke(self, endpoint: str) -> None:
        self.revoked.append(endpoint)

    def package_uri(
        self, grant: DownloadGrant, scheme: str, *, device_host: str | None = None
    ) -> str:
        self.device_hosts.append(device_host)
        return f"{scheme}://server/fw/{grant.token}"

    def subscribe(self, listener: Callable[[DownloadEvent], None]) -> None:
        self.listeners.append(listener)


class Device:
    """A fake ``ServerOperations`` for one endpoint ``dev``: records requests, answers them
    with ``answers`` (path → response or exception), queues them while ``sleeping``."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.values: dict[str, Any] = {"/5/0/3": 0, "/5/0/5": 0, "/3/0/3": "1.0"}
        self.sleeping = False
        self.fail: dict[str, Exception] = {}
        self.queued: list[str] = []
        self.changed = asyncio.Event()

    def client(self, endpoint: str) -> Any:
        if endpoint != "dev":
            raise UnknownClientError(f"no {endpoint}")
        return SimpleNamespace(address=Address("192.0.2.9", 5683), transport="coap")

    def is_sleeping(self, endpoint: str) -> bool | None:
        return self.sleeping

    async def _do(self, op: str, path: LwM2mPath, value: Any = None) -> DeviceResponse:
        self.requests.append((op, str(path), value))
        self.changed.set()
        if str(path) in self.fail:
            raise self.fail[str(path)]
        if self.sleeping:
            rid = f"r{len(self.requests)}"
            self.queued.append(rid)
            return DeviceResponse(0, queued=True, request_id=rid)
        node = None
        if op in ("read", "observe") and str(path) in self.values:
            node = LwM2mSingleResource.new(path.ids[-1], self.values[str(path)])
        return DeviceResponse(0x45 if node is not None else 0x44, node=node)

    async def read(self, endpoint: str, path: LwM2mPath, **kw: Any) -> DeviceResponse:
        return await self._do("read", path)

    async def observe(self, endpoint: str, path: LwM2mPath, **kw: Any) -> DeviceResponse:
        return await self._do("observe", path)

    async def write(
        self, endpoint: str, path: LwM2mPath, node: LwM2mNode, **kw: Any
    ) -> DeviceResponse:
        assert isinstance(node, LwM2mSingleResource)
        return await self._do("write", path, node.value)

    async def execute(
        self, endpoint: str, path: LwM2mPath, arguments: str | None = None, **kw: Any
    ) -> DeviceResponse:
        return await self._do("execute", path)

    async def cancel_observation(self, endpoint: str, path: LwM2mPath, **kw: Any) -> Any:
        self.requests.append(("cancel", str(path), None))
        return DeviceResponse(0x45)


class Harness:
    def __init__(
        self,
        store: MemoryJobStore | None = None,
        owns: Callable[[str], bool] | None = None,
        **settings: Any,
    ) -> None:
        self.device = Device()
        self.bus = EventBus(1000)
        self.grants = Grants()
        self.store = store or MemoryJobStore()
        self.views: list[JobView] = []
        self.now = 1000.0
        self.manager = FirmwareManager(
            self.device,  # type: ignore[arg-type]
            self.store,
            packages=Library(),  # type: ignore[arg-type]
            downloads=self.grants,
            listen=self.bus.listen,
            publish=self.bus.publish,
            settings=JobSettings(**{"request_timeout": 5, **settings}),
            clock=lambda: self.now,
            owns=owns,
        )
        self.manager.subscribe(self.views.append)
        self.events = self.bus.subscribe()

    async def until(self, check: Callable[[], Any], timeout: float = 5.0) -> None:
        async def wait() -> None:
            while not check():
                self.device.changed.clear()
                await asyncio.sleep(0)  # let the tasks run
                if not check():
                    await asyncio.wait_for(self.device.changed.wait(), 0.05)

        async def loop() -> None:
            while True:
                try:
                    await wait()
                    return
                except TimeoutError:
                    continue

        await asyncio.wait_for(loop(), timeout)

    def sent(self, op: str, path: str) -> list[Any]:
        return [v for o, p, v in self.device.requests if (o, p) == (op, path)]

    def notify(self, path: str, value: int) -> None:
        self.bus.publish(
            "NOTIFICATION", "dev", {"paths": [path], "points": [{"path": path, "value": value}]}
        )

    def state(self) -> JobState | None:
        view = self.manager.job("dev")
        return None if view is None else view.state


async def test_a_pull_update_runs_to_success_and_is_published() -> None:
    h = Harness()
    await h.manager.open()
    view = await h.manager.start("dev", PACKAGE.id, strategy=Strategy.PULL_COAP)
    assert view.state is JobState.PENDING
    await h.until(lambda: h.sent("write", "/5/0/1"))
    assert h.sent("write", "/5/0/1") == ["coap://server/fw/tok"]
    assert h.grants.device_hosts == ["192.0.2.9"]  # the URI is made for where the device is
    assert {p for o, p, _ in h.device.requests if o == "observe"} == {"/5/0/3", "/5/0/5"}
    h.notify("/5/0/3", 1)
    h.notify("/5/0/3", 2)
    await h.until(lambda: h.sent("execute", "/5/0/2"))
    await h.until(lambda: h.state() is JobState.UPDATING)
    h.device.values["/3/0/3"] = "2.0"
    h.bus.publish("REGISTRATION", "dev", {})
    await h.until(lambda: h.state() is JobState.SUCCEEDED)
    assert h.grants.revoked == ["dev"]
    states = [v.state for v in h.views]
    assert states == [
        JobState.PENDING,
        JobState.DOWNLOADING,
        JobState.DOWNLOADED,
        JobState.UPDATING,
        JobState.VERIFYING,
        JobState.SUCCEEDED,
    ]
    firmware = [e for e in h.events.ready() if e.kind == FIRMWARE]
    assert [e.data["state"] for e in firmware] == [s.value for s in states]
    assert firmware[-1].data["package"] == PACKAGE.id
    stored = h.store.get("dev")
    assert stored is not None and stored.state is JobState.SUCCEEDED
    await h.manager.close()


async def test_a_failed_update_is_explained() -> None:
    h = Harness()
    await h.manager.open()
    await h.manager.start("dev", PACKAGE.id, strategy=Strategy.PUSH)
    await h.until(lambda: h.sent("write", "/5/0/0"))
    assert h.sent("write", "/5/0/0") == [b"hello"]
    h.notify("/5/0/3", 2)
    await h.until(lambda: h.state() is JobState.UPDATING)
    h.notify("/5/0/5", 8)
    await h.until(lambda: h.state() is JobState.FAILED)
    view = h.manager.job("dev")
    assert view is not None and view.detail == "Update Result 8: firmware update failed"
    await h.manager.close()


async def test_bad_requests_are_refused() -> None:
    h = Harness()
    await h.manager.open()
    with pytest.raises(UnknownClientError):
        await h.manager.start("nobody", PACKAGE.id)
    with pytest.raises(UnknownPackageError):
        await h.manager.start("dev", "cd" * 32)
    await h.manager.start("dev", PACKAGE.id)
    with pytest.raises(JobConflictError):
        await h.manager.start("dev", PACKAGE.id)
    cancelled = await h.manager.cancel("dev")
    assert cancelled is not None and cancelled.state is JobState.CANCELLED
    assert await h.manager.cancel("nobody") is None
    await h.manager.close()


async def test_queued_requests_are_answered_by_request_response_events() -> None:
    h = Harness()
    h.device.sleeping = True
    await h.manager.open()
    await h.manager.start("dev", PACKAGE.id, strategy=Strategy.PULL_COAP)
    await h.until(lambda: h.sent("write", "/5/0/1"))  # queued behind the observes
    assert h.state() is JobState.DOWNLOADING and len(h.device.queued) == 3
    # the device wakes up: the queued requests' answers come as REQUEST_RESPONSE events
    for rid in h.device.queued:
        h.bus.publish(
            "REQUEST_RESPONSE", "dev", {"requestId": rid, "response": DeviceResponse(0x44)}
        )
    h.notify("/5/0/3", 2)
    h.device.sleeping = False
    await h.until(lambda: h.sent("execute", "/5/0/2"))
    await h.manager.close()


async def test_a_timeout_retries_and_a_refused_download_is_recorded() -> None:
    h = Harness(retries=1, backoff=0.0)
    h.device.fail["/5/0/1"] = DeviceTimeoutError("no answer")
    await h.manager.open()
    await h.manager.start("dev", PACKAGE.id, strategy=Strategy.PULL_COAP)
    await h.until(lambda: h.state() is JobState.FAILED)
    assert len(h.sent("write", "/5/0/1")) == 2
    view = h.manager.job("dev")
    assert view is not None and view.detail.startswith("timeout: deliver (/5/0/1)")
    h.device.fail.clear()
    await h.manager.start("dev", PACKAGE.id, strategy=Strategy.PULL_COAP)
    await h.until(lambda: h.state() is JobState.DOWNLOADING)
    for listener in h.grants.listeners:
        listener(DownloadEvent(DownloadOutcome.REFUSED, "dev", PACKAGE.id, "expired"))
    view = h.manager.job("dev")
    assert view is not None and view.detail == "download refused: expired"
    await h.manager.close()


async def test_a_new_manager_resumes_the_stored_jobs() -> None:
    store = MemoryJobStore()
    first = Harness(store)
    await first.manager.open()
    await first.manager.start("dev", PACKAGE.id, strategy=Strategy.PULL_COAP)
    await first.until(lambda: first.state() is JobState.DOWNLOADING)
    await first.manager.close()  # the server stops mid-download
    second = Harness(store)
    await second.manager.open()
    assert second.state() is JobState.DOWNLOADING
    await second.until(lambda: len(second.sent("observe", "/5/0/3")) == 1)  # observes again
    second.notify("/5/0/3", 2)
    await second.until(lambda: second.sent("execute", "/5/0/2"))
    await second.manager.close()


async def test_the_download_deadline_fires_from_the_timer() -> None:
    h = Harness(download_timeout=0.01, retries=0)
    await h.manager.open()
    await h.manager.start("dev", PACKAGE.id, strategy=Strategy.PULL_COAP)
    await h.until(lambda: h.state() is JobState.DOWNLOADING)
    h.now += 1.0  # the manager's clock moves past the deadline; the loop timer fires
    await h.until(lambda: h.state() is JobState.FAILED)
    view = h.manager.job("dev")
    assert view is not None and "download did not finish" in view.detail
    await h.manager.close()


async def test_on_a_cluster_only_the_node_holding_the_device_resumes_its_job() -> None:
    store = MemoryJobStore()
    first = Harness(store)
    await first.manager.open()
    await first.manager.start("dev", PACKAGE.id, strategy=Strategy.PULL_COAP)
    await first.until(lambda: first.state() is JobState.DOWNLOADING)
    await first.manager.close()
    other = Harness(store, owns=lambda endpoint: False)
    await other.manager.open()
    assert other.state() is JobState.DOWNLOADING  # visible, but not driven from here
    await asyncio.sleep(0)
    assert other.device.requests == []
    await other.manager.close()


def test_a_job_event_of_another_node_reads_back_as_the_view_it_was_made_from() -> None:
    view = JobView(
        "dev-1", "ab" * 32, PackageKind.SOFTWARE, Strategy.PULL_HTTP, JobState.FAILED,
        instance=2, result=58, detail="Update Result 58", attempts=3, campaign="spring",
        created_ms=5, updated_ms=9,
    )  # fmt: skip
    assert job_from_json(json.loads(json.dumps(job_to_json(view)))) == view


async def test_subscribers_hear_of_jobs_other_nodes_drive_from_their_events() -> None:
    h = Harness()
    await h.manager.open()
    try:
        remote = JobView("far", "ab" * 32, PackageKind.FIRMWARE, Strategy.PUSH, JobState.UPDATING)
        h.manager.remote_job(ServerEvent(FIRMWARE, "far", job_to_json(remote), 1))
        h.manager.remote_job(ServerEvent("NOTIFICATION", "far", {}, 2))
        h.manager.remote_job(ServerEvent(FIRMWARE, "far", {"not": "a job"}, 3))
        assert h.views == [remote]
    finally:
        await h.manager.close()


class LeaseStore(MemoryJobStore):
    """The cluster's job store, in memory: this node drives every job until ``taken`` (its
    lease lapsed, or another node claimed it), which the next renewal reports."""

    def __init__(self) -> None:
        super().__init__()
        self.taken: set[str] = set()

    def create(self, job: Any, node: str, lease: float, *, drive: bool) -> bool:
        self.put(job)
        return True

    def put_as(self, job: Any, node: str, lease: float) -> bool:
        if job.endpoint in self.taken:
            return False
        self.put(job)
        return True

    def renew(self, endpoints: list[str], node: str, lease: float) -> list[str]:
        return [e for e in endpoints if e in self.taken]

    def expired(self, now: float) -> list[str]:
        return []


async def test_a_job_whose_lease_is_lost_stops_its_requests_in_flight() -> None:
    """Under load a node's job lease lapsed mid-push: the push it was sending must stop, or it
    goes on beside the new driver's reset and push (two Block1 transfers of one resource
    interleaved at the device)."""
    store = LeaseStore()
    h = Harness(store)
    pushing = asyncio.Event()
    stopped = asyncio.Event()
    device = h.device
    answer = device._do

    async def slow_push(op: str, path: LwM2mPath, value: Any = None) -> DeviceResponse:
        if (op, str(path)) != ("write", "/5/0/0"):
            return await answer(op, path, value)
        pushing.set()
        try:
            await asyncio.Event().wait()  # the blocks go on and on
        except asyncio.CancelledError:
            stopped.set()
            raise
        raise AssertionError("unreachable")

    device._do = slow_push  # type: ignore[method-assign]
    h.manager._cluster = JobCluster(
        node="a",
        store=store,  # type: ignore[arg-type]
        lease=0.06,
        holder=lambda endpoint: "a",
        alive=lambda node: True,
        hint=lambda node, endpoint: None,
    )
    await h.manager.open()
    await h.manager.start("dev", PACKAGE.id, strategy=Strategy.PUSH)
    await asyncio.wait_for(pushing.wait(), 5)
    store.taken.add("dev")  # the lease lapsed: the next renewal says so
    await asyncio.wait_for(stopped.wait(), 5)
    assert h.manager.driving() == []
    await h.manager.close()
