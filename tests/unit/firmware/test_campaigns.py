"""Campaigns: the sans-IO scheduler over many devices with a fake clock, and the asyncio driver
over an in-memory ``FirmwareUpdates`` double whose jobs finish when the test says so."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from lwm2m_server.events_bus import EventBus
from lwm2m_server.firmware.campaign_store import CampaignStore, MemoryCampaignStore
from lwm2m_server.firmware.campaigns import (
    CAMPAIGN,
    Announce,
    CampaignError,
    CampaignManager,
    CampaignScheduler,
    CampaignSpec,
    CampaignState,
    CancelJob,
    Effect,
    StartJob,
    Target,
)
from lwm2m_server.firmware.contracts import JobState, JobView, PackageKind, Strategy
from object_models.errors import Lwm2mError, ResponseCode

PACKAGE = "ab" * 32


def spec(**changes: Any) -> CampaignSpec:
    return CampaignSpec(target=Target(endpoints=("x",)), package_id=PACKAGE, **changes)


def started(effects: list[Effect]) -> list[str]:
    return [e.endpoint for e in effects if isinstance(e, StartJob)]


def view(endpoint: str, state: JobState, campaign: str = "c1", **more: Any) -> JobView:
    return JobView(
        endpoint=endpoint,
        package_id=PACKAGE,
        kind=PackageKind.FIRMWARE,
        strategy=Strategy.PUSH,
        state=state,
        campaign=campaign,
        **more,
    )


DEVICES = [f"dev-{i:04d}" for i in range(1000)]


# -- the sans-IO scheduler --------------------------------------------------------------------


def test_rate_limit_starts_devices_per_minute_from_a_token_bucket() -> None:
    core = CampaignScheduler()
    core.create("c1", spec(rate_per_minute=60, max_concurrent=1000), DEVICES, now=0.0)
    assert len(started(core.poll(0.0))) == 1  # the bucket holds one second's worth: one
    assert started(core.poll(0.5)) == []
    assert core.timer() == pytest.approx(1.0)  # the next token
    assert started(core.poll(1.0)) == ["dev-0001"]
    total = 2
    for t in range(2, 61):
        total += len(started(core.poll(float(t))))
    assert total == 61  # one a second over a minute (plus the first)
    # a long silence does not bank tokens beyond one second's worth
    assert len(started(core.poll(600.0))) == 1
    assert core.get("c1").counts["running"] == 62


def test_fast_rate_allows_a_second_of_devices_at_once() -> None:
    core = CampaignScheduler()
    core.create("c1", spec(rate_per_minute=600, max_concurrent=1000), DEVICES, now=0.0)
    assert len(started(core.poll(0.0))) == 10
    assert len(started(core.poll(0.1))) == 1
    assert len(started(core.poll(10.0))) == 10


def test_max_concurrent_bounds_running_jobs() -> None:
    core = CampaignScheduler()
    core.create("c1", spec(max_concurrent=5), DEVICES[:20], now=0.0)
    first = started(core.poll(0.0))
    assert first == DEVICES[:5]
    assert started(core.poll(1.0)) == []
    core.poll(5.0)  # the progress of the starts
    assert core.timer() is None  # nothing to do until a job ends
    for ep in first[:2]:
        core.job_changed(view(ep, JobState.SUCCEEDED), now=2.0)
    assert started(core.poll(2.0)) == DEVICES[5:7]
    assert core.get("c1").counts == {
        "pending": 13,
        "running": 5,
        "succeeded": 2,
        "failed": 0,
        "cancelled": 0,
    }


def test_intermediate_job_states_are_recorded_per_device() -> None:
    core = CampaignScheduler()
    core.create("c1", spec(max_concurrent=1), ["a", "b"], now=0.0)
    core.poll(0.0)
    core.job_changed(view("a", JobState.DOWNLOADING), now=1.0)
    device = core.get("c1").devices["a"]
    assert (device.status.value, device.job_state) == ("running", "downloading")
    core.job_changed(view("a", JobState.FAILED, result=5, detail="integrity check failure"), 2.0)
    assert (device.status.value, device.result, device.detail) == (
        "failed",
        5,
        "integrity check failure",
    )
    # a job of another campaign, or of no campaign, is not ours
    core.job_changed(view("b", JobState.SUCCEEDED, campaign="other"), 3.0)
    core.job_changed(view("b", JobState.SUCCEEDED, campaign=None), 3.0)
    assert core.get("c1").devices["b"].status.value == "pending"


def test_pause_stops_new_starts_and_resume_continues() -> None:
    core = CampaignScheduler()
    core.create("c1", spec(max_concurrent=3), DEVICES[:10], now=0.0)
    running = started(core.poll(0.0))
    effects = core.pause("c1", now=1.0)
    assert Announce("c1", "state") in effects
    assert core.get("c1").state is CampaignState.PAUSED
    for ep in running:
        core.job_changed(view(ep, JobState.SUCCEEDED), now=2.0)
    assert started(core.poll(3.0)) == []  # paused: the finished jobs are not replaced
    assert started(core.poll(100.0)) == []
    assert core.pause("c1", now=3.0) == []  # pausing twice is a no-op
    core.resume("c1", now=4.0)
    assert started(core.poll(4.0)) == DEVICES[3:6]
    assert core.get("c1").state is CampaignState.RUNNING


def test_cancel_cancels_running_jobs_and_pending_devices() -> None:
    core = CampaignScheduler()
    core.create("c1", spec(max_concurrent=2), DEVICES[:5], now=0.0)
    running = started(core.poll(0.0))
    effects = core.cancel("c1", now=1.0)
    assert sorted(e.endpoint for e in effects if isinstance(e, CancelJob)) == running
    campaign = core.get("c1")
    assert campaign.state is CampaignState.CANCELLED
    assert campaign.counts["cancelled"] == 3 and campaign.counts["running"] == 2
    for ep in running:
        core.job_changed(view(ep, JobState.CANCELLED), now=2.0)
    assert campaign.counts == {
        "pending": 0,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 5,
    }
    assert started(core.poll(5.0)) == []
    with pytest.raises(CampaignError) as refused:
        core.resume("c1", now=6.0)
    assert refused.value.status == 409
    with pytest.raises(CampaignError) as unknown:
        core.pause("nope", now=6.0)
    assert unknown.value.status == 404


def test_failure_threshold_aborts_only_after_the_minimum_sample() -> None:
    core = CampaignScheduler()
    core.create(
        "c1",
        spec(max_concurrent=100, failure_threshold=0.2, min_sample=10),
        DEVICES[:200],
        now=0.0,
    )
    running = started(core.poll(0.0))
    # the first three fail: 100 % failed, but fewer than 10 finished: go on
    for ep in running[:3]:
        core.job_changed(view(ep, JobState.FAILED, result=8), now=1.0)
    for ep in running[3:9]:
        core.job_changed(view(ep, JobState.SUCCEEDED), now=1.0)
    assert core.get("c1").state is CampaignState.RUNNING
    # the tenth: 3 of 10 = 30 % > 20 %
    effects = core.job_changed(view(running[9], JobState.SUCCEEDED), now=2.0)
    campaign = core.get("c1")
    assert campaign.state is CampaignState.ABORTED
    assert "30%" in campaign.reason and "3 of 10" in campaign.reason
    assert Announce("c1", "state") in effects
    # never-started devices are cancelled with why; the running jobs are left to finish
    assert campaign.counts["pending"] == 0
    assert campaign.counts["cancelled"] == 100
    assert campaign.devices[DEVICES[150]].detail.startswith("not started: campaign aborted")
    assert campaign.counts["running"] == 90
    core.job_changed(view(running[10], JobState.SUCCEEDED), now=3.0)
    assert campaign.counts["succeeded"] == 8
    assert started(core.poll(4.0)) == []


def test_failure_below_threshold_completes() -> None:
    core = CampaignScheduler()
    core.create(
        "c1", spec(max_concurrent=50, failure_threshold=0.2, min_sample=10), DEVICES[:50], 0.0
    )
    for i, ep in enumerate(started(core.poll(0.0))):
        state = JobState.FAILED if i % 10 == 0 else JobState.SUCCEEDED
        core.job_changed(view(ep, state), now=1.0)
    campaign = core.get("c1")
    assert campaign.state is CampaignState.COMPLETED
    assert campaign.counts["failed"] == 5 and campaign.counts["succeeded"] == 45


def test_progress_is_announced_at_most_once_per_interval() -> None:
    core = CampaignScheduler(progress_interval=5.0)
    core.create("c1", spec(max_concurrent=100), DEVICES[:100], now=0.0)
    core.poll(0.0)
    core.poll(5.0)  # the starts' progress
    for ep in DEVICES[:10]:
        core.job_changed(view(ep, JobState.SUCCEEDED), now=6.0)
    assert [e for e in core.poll(6.0) if isinstance(e, Announce)] == []
    assert core.timer() == pytest.approx(10.0)
    assert Announce("c1", "progress") in core.poll(10.0)
    assert [e for e in core.poll(20.0) if isinstance(e, Announce)] == []  # nothing changed


def test_an_empty_target_completes_at_once() -> None:
    core = CampaignScheduler()
    campaign, _ = core.create("c1", spec(), [], now=0.0)
    assert campaign.state is CampaignState.COMPLETED
    assert campaign.reason == "no device to update"


def test_target_validation_names_the_problem() -> None:
    assert Target.from_json({"profile": "meters"}).profile == "meters"
    assert Target.from_json({"endpoint": "s-*", "attributes": {"binding": "U*"}}).attributes
    for bad, words in [
        ({}, "exactly one"),
        ({"profile": "p", "endpoints": ["a"]}, "exactly one"),
        ({"endpoints": "a"}, "list"),
        ({"endpoints": ["a", "a"]}, "twice"),
        ({"attributes": {"binding": 1}}, "globs"),
        ({"group": "x"}, "unknown key 'group'"),
        ([], "object"),
    ]:
        with pytest.raises(CampaignError, match=words) as refused:
            Target.from_json(bad)
        assert refused.value.status == 400


# -- the driver over a FirmwareUpdates double ------------------------------------------------


@attrs.define
class FakeUpdates:
    """``FirmwareUpdates`` in memory: ``start`` creates a PENDING job; the test finishes it."""

    jobs_by_ep: dict[str, JobView] = attrs.field(factory=dict)
    listeners: list[Callable[[JobView], None]] = attrs.field(factory=list)
    refuse: set[str] = attrs.field(factory=set)
    cancelled: list[str] = attrs.field(factory=list)
    starts: int = 0

    async def start(
        self,
        endpoint: str,
        package_id: str,
        *,
        strategy: Strategy = Strategy.AUTO,
        instance: int | None = None,
        campaign: str | None = None,
    ) -> JobView:
        self.starts += 1
        if endpoint in self.refuse:
            raise Lwm2mError(f"no client {endpoint!r}", code=ResponseCode.NOT_FOUND)
        job = JobView(
            endpoint, package_id, PackageKind.FIRMWARE, strategy, JobState.PENDING,
            campaign=campaign,
        )  # fmt: skip
        self.jobs_by_ep[endpoint] = job
        self._emit(job)
        return job

    def job(self, endpoint: str) -> JobView | None:
        return self.jobs_by_ep.get(endpoint)

    def jobs(self, campaign: str | None = None) -> list[JobView]:
        return [j for j in self.jobs_by_ep.values() if campaign in (None, j.campaign)]

    async def cancel(self, endpoint: str) -> JobView | None:
        self.cancelled.append(endpoint)
        job = self.jobs_by_ep.get(endpoint)
        if job is None or job.state.finished:
            return job
        return self.finish(endpoint, JobState.CANCELLED)

    def subscribe(self, listener: Callable[[JobView], None]) -> None:
        self.listeners.append(listener)

    def _emit(self, job: JobView) -> None:
        for listener in list(self.listeners):
            listener(job)

    def running(self) -> list[str]:
        return [ep for ep, j in self.jobs_by_ep.items() if not j.state.finished]

    def finish(self, endpoint: str, state: JobState, result: int | None = None) -> JobView:
        job = attrs.evolve(self.jobs_by_ep[endpoint], state=state, result=result)
        self.jobs_by_ep[endpoint] = job
        self._emit(job)
        return job


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for ``condition`` (the driver runs in tasks), failing after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


def manager(updates: FakeUpdates, store: CampaignStore, bus: EventBus | None = None) -> Any:
    def resolve(target: Target) -> list[str]:
        return list(target.endpoints)

    return CampaignManager(updates, store, resolve=resolve, bus=bus, progress_interval=0.05)


def endpoints_spec(endpoints: list[str], **changes: Any) -> CampaignSpec:
    return CampaignSpec(target=Target(endpoints=tuple(endpoints)), package_id=PACKAGE, **changes)


async def test_driver_runs_a_campaign_over_many_devices_and_announces_it() -> None:
    updates, bus = FakeUpdates(), EventBus(100_000)
    events = bus.subscribe()
    campaigns = manager(updates, MemoryCampaignStore(), bus)
    await campaigns.start()
    try:
        campaign = campaigns.create(endpoints_spec(DEVICES, max_concurrent=50), "c1")
        finished = 0
        while finished < len(DEVICES):
            await until(lambda: bool(updates.running()))
            assert len(updates.running()) <= 50
            for ep in updates.running():
                updates.finish(ep, JobState.FAILED if ep.endswith("7") else JobState.SUCCEEDED)
                finished += 1
        await until(lambda: campaign.state is CampaignState.COMPLETED)
        assert campaign.counts["succeeded"] == 900 and campaign.counts["failed"] == 100
        await until(lambda: len(events) > 0)
        seen = [e for e in events.ready() if e.kind == CAMPAIGN]
        states = [e.data["state"] for e in seen if e.data["event"] == "state"]
        assert states[0] == "running" and states[-1] == "completed"
        assert seen[-1].data["counts"]["succeeded"] == 900
    finally:
        await campaigns.stop()


async def test_driver_records_a_refused_start_as_that_devices_failure() -> None:
    updates = FakeUpdates(refuse={"b"})
    campaigns = manager(updates, MemoryCampaignStore())
    await campaigns.start()
    try:
        campaign = campaigns.create(endpoints_spec(["a", "b"]), "c1")
        await until(lambda: campaign.counts["failed"] == 1)
        assert campaign.devices["b"].detail == "not started: no client 'b' (4.04)"
        updates.finish("a", JobState.SUCCEEDED)
        await until(lambda: campaign.state is CampaignState.COMPLETED)
    finally:
        await campaigns.stop()


async def test_driver_cancel_goes_through_the_job_manager() -> None:
    updates = FakeUpdates()
    campaigns = manager(updates, MemoryCampaignStore())
    await campaigns.start()
    try:
        campaign = campaigns.create(endpoints_spec(DEVICES[:10], max_concurrent=4), "c1")
        await until(lambda: len(updates.running()) == 4)
        campaigns.cancel("c1")
        await until(lambda: campaign.counts["cancelled"] == 10)
        assert sorted(updates.cancelled) == DEVICES[:4]
        assert updates.starts == 4
    finally:
        await campaigns.stop()


async def test_driver_pause_resume() -> None:
    updates = FakeUpdates()
    campaigns = manager(updates, MemoryCampaignStore())
    await campaigns.start()
    try:
        campaign = campaigns.create(endpoints_spec(DEVICES[:6], max_concurrent=2), "c1")
        await until(lambda: len(updates.running()) == 2)
        campaigns.pause("c1")
        for ep in updates.running():
            updates.finish(ep, JobState.SUCCEEDED)
        await asyncio.sleep(0.05)  # give the driver turns: it must not start anything
        assert updates.starts == 2 and campaign.state is CampaignState.PAUSED
        campaigns.resume("c1")
        await until(lambda: updates.starts == 4)
    finally:
        await campaigns.stop()


async def test_restart_resumes_from_the_store() -> None:
    store = MemoryCampaignStore()
    updates = FakeUpdates()
    first = manager(updates, store)
    await first.start()
    campaign = first.create(endpoints_spec(DEVICES[:10], max_concurrent=3), "c1")
    await until(lambda: len(updates.running()) == 3)
    updates.finish(DEVICES[0], JobState.SUCCEEDED)
    await until(lambda: len(updates.running()) == 3)  # dev-0003 replaced it
    await first.stop()
    # while the server is down: one job ends, and the job manager lost another one
    updates.finish(DEVICES[1], JobState.FAILED, result=8)
    del updates.jobs_by_ep[DEVICES[2]]
    updates.listeners.clear()

    second = manager(updates, store)
    await second.start()
    try:
        resumed = second.get("c1")
        assert resumed is not campaign
        assert resumed.devices[DEVICES[0]].status.value == "succeeded"
        assert resumed.devices[DEVICES[1]].status.value == "failed"
        assert resumed.devices[DEVICES[1]].result == 8
        # the lost job's device is started again, the one still running is followed
        await until(lambda: updates.job(DEVICES[2]) is not None)
        while resumed.state is CampaignState.RUNNING:
            await until(
                lambda: bool(updates.running()) or resumed.state is not CampaignState.RUNNING
            )
            for ep in updates.running():
                updates.finish(ep, JobState.SUCCEEDED)
        assert resumed.state is CampaignState.COMPLETED
        assert resumed.counts["succeeded"] == 9 and resumed.counts["failed"] == 1
    finally:
        await second.stop()


async def test_paused_state_survives_a_restart() -> None:
    store = MemoryCampaignStore()
    updates = FakeUpdates()
    first = manager(updates, store)
    await first.start()
    first.create(endpoints_spec(DEVICES[:5], max_concurrent=1), "c1")
    await until(lambda: updates.starts == 1)
    first.pause("c1")
    await first.stop()
    second = manager(updates, store)
    await second.start()
    try:
        assert second.get("c1").state is CampaignState.PAUSED
        updates.finish(DEVICES[0], JobState.SUCCEEDED)
        await until(lambda: second.get("c1").counts["succeeded"] == 1)
        assert updates.starts == 1
    finally:
        await second.stop()


async def test_store_engines_keep_campaigns_across_restart(engine: Any) -> None:
    """The same restart over each store engine (sqlite, Redis, Redis Cluster)."""
    updates = FakeUpdates()
    first = manager(updates, engine.campaigns())
    await first.start()
    first.create(endpoints_spec(DEVICES[:4], max_concurrent=2, failure_threshold=0.5), "c1")
    await until(lambda: len(updates.running()) == 2)
    updates.finish(DEVICES[0], JobState.SUCCEEDED)
    await until(lambda: len(updates.running()) == 2)
    await first.stop()
    second = manager(updates, engine.campaigns())
    await second.start()
    try:
        resumed = second.get("c1")
        assert resumed.spec.failure_threshold == 0.5
        assert [d.status.value for d in resumed.devices.values()] == [
            "succeeded",
            "running",
            "running",
            "pending",
        ]
        updates.finish(DEVICES[1], JobState.SUCCEEDED)
        updates.finish(DEVICES[2], JobState.SUCCEEDED)
        await until(lambda: updates.job(DEVICES[3]) is not None)
        updates.finish(DEVICES[3], JobState.SUCCEEDED)
        await until(lambda: resumed.state is CampaignState.COMPLETED)
    finally:
        await second.stop()
    third = engine.campaigns()
    assert [c["state"] for c in third.campaigns()] == ["completed"]
    assert len(third.devices("c1")) == 4


async def test_an_unfinished_campaign_keeps_its_package_in_use() -> None:
    updates = FakeUpdates()
    campaigns = manager(updates, MemoryCampaignStore())
    await campaigns.start()
    try:
        campaigns.create(endpoints_spec(["a"]), "c1")
        assert campaigns.in_use(PACKAGE) == "campaign c1 (running)"
        assert campaigns.in_use("cd" * 32) is None
        await until(lambda: updates.job("a") is not None)
        updates.finish("a", JobState.SUCCEEDED)
        await until(lambda: campaigns.get("c1").state is CampaignState.COMPLETED)
        assert campaigns.in_use(PACKAGE) is None
    finally:
        await campaigns.stop()


class DownStore(MemoryCampaignStore):
    """A store that is unreachable (Redis down): every write fails."""

    def save(self, campaign: Any, devices: Any = ()) -> None:
        from keystore.store.errors import StoreUnavailable

        raise StoreUnavailable("Redis store redis://x: cannot write: connection refused")


async def test_a_store_outage_does_not_stop_a_campaign_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    updates = FakeUpdates()
    campaigns = manager(updates, DownStore())
    await campaigns.start()
    try:
        campaign = campaigns.create(endpoints_spec(DEVICES[:20], max_concurrent=5), "c1")
        while campaign.state is CampaignState.RUNNING:
            await until(lambda: bool(updates.running()) or campaign.state.finished)
            for ep in updates.running():
                updates.finish(ep, JobState.SUCCEEDED)
        assert campaign.counts["succeeded"] == 20
    finally:
        await campaigns.stop()
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "cannot persist" in errors[0].getMessage()
    assert errors[0].exc_info is None  # a line, not a traceback
