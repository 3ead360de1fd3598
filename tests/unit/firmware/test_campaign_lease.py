"""Campaigns on a cluster (docs/firmware.md, "Campaigns in a cluster"): one node runs a
campaign at a time, under a lease in Redis (and Redis Cluster).

* The store's contract: only the lease holder writes; a takeover fences the former runner (its
  writes are refused, nothing written); an expired lease frees the campaign; a campaign that
  needs no runner any more has no lease; operator actions are queued for the runner.
* Two ``CampaignManager`` nodes on one store over a shared ``FirmwareUpdates`` double: only the
  creator's scheduler starts jobs; pause/resume/cancel through the other node are carried out by
  the runner; a runner that dies without releasing is replaced once its lease expired.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import pytest

from lwm2m_server.firmware.campaign_store import RedisCampaignStore
from lwm2m_server.firmware.campaigns import (
    NUDGE,
    Campaign,
    CampaignCluster,
    CampaignError,
    CampaignManager,
    CampaignState,
    Target,
)
from lwm2m_server.firmware.contracts import JobState
from tests.store_engines import RedisEngine

from .test_campaigns import DEVICES, PACKAGE, FakeUpdates, endpoints_spec, until


@pytest.fixture(params=["redis", "redis-cluster"])
def shared(request: pytest.FixtureRequest) -> Iterator[RedisCampaignStore]:
    cluster = request.param == "redis-cluster"
    url = request.getfixturevalue("redis_cluster_url" if cluster else "redis_url")
    engine = RedisEngine(url, cluster=cluster)
    try:
        store = engine.campaigns()
        assert isinstance(store, RedisCampaignStore)
        yield store
    finally:
        engine.close()


def header(state: str = "running", running: int = 0, **more: Any) -> dict[str, Any]:
    return {"id": "c1", "state": state, "counts": {"running": running}, "created": 1, **more}


def device(endpoint: str, index: int, status: str = "pending") -> dict[str, Any]:
    return {"endpoint": endpoint, "index": index, "status": status}


# -- the store's contract ------------------------------------------------------------------------


def test_only_the_runner_writes_and_a_takeover_fences_the_former_one(
    shared: RedisCampaignStore,
) -> None:
    assert shared.acquire("c1", "node-a", 30.0)
    assert not shared.acquire("c1", "node-b", 30.0)  # one runner
    assert shared.save_as(header(), [device("d1", 0), device("d2", 1)], "node-a", 30.0)
    assert not shared.save_as(header(reason="b"), [], "node-b", 30.0)  # not B's
    assert shared.claim("c1", "node-b", 30.0) == (None, "node-a")  # a live lease holds
    assert shared.holder("c1") == "node-a"

    taken, _ = shared.claim("c1", "node-b", 30.0, steal=True)
    assert taken is not None
    row, devices = taken
    assert row["state"] == "running" and [d["endpoint"] for d in devices] == ["d1", "d2"]
    assert not shared.save_as(header("paused"), [device("d1", 0, "running")], "node-a", 30.0)
    stored = shared.header("c1")
    assert stored is not None and stored["state"] == "running"  # nothing of A's write
    assert [d["status"] for d in shared.devices("c1")] == ["pending", "pending"]
    assert shared.renew(["c1"], "node-a", 30.0) == ["c1"]  # A learns it lost it
    assert shared.renew(["c1"], "node-b", 30.0) == []
    assert shared.take_requests("c1", "node-a") is None


def test_an_expired_lease_frees_the_campaign_for_another_node(shared: RedisCampaignStore) -> None:
    assert shared.acquire("c1", "node-a", 0.05)
    assert shared.save_as(header(), [device("d1", 0)], "node-a", 0.05)

    def taken() -> bool:
        return shared.claim("c1", "node-b", 30.0)[0] is not None

    deadline = time.monotonic() + 10
    while not taken():  # Redis expires the key: polled, nothing signals it
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert shared.holder("c1") == "node-b"
    assert not shared.save_as(header("paused"), [], "node-a", 30.0)


def test_a_campaign_that_needs_no_runner_has_no_lease(shared: RedisCampaignStore) -> None:
    assert shared.acquire("c1", "node-a", 30.0)
    # aborted with a job still running: its outcome is still recorded, so it keeps its runner
    assert shared.save_as(header("aborted", running=1), [], "node-a", 30.0)
    assert shared.claim("c1", "node-b", 30.0) == (None, "node-a")
    assert shared.save_as(header("aborted", running=0), [], "node-a", 30.0, done=True)
    assert shared.holder("c1") is None
    assert shared.claim("c1", "node-b", 30.0) == (None, None)  # nothing to run
    assert shared.claim("nope", "node-b", 30.0) == (None, None)


def test_operator_actions_are_queued_for_the_runner_only(shared: RedisCampaignStore) -> None:
    assert shared.request("c1", "pause") is None  # nobody runs it
    assert shared.acquire("c1", "node-a", 30.0)
    assert shared.request("c1", "resume") == "node-a"
    assert shared.pending_requests("c1") == 2
    assert shared.take_requests("c1", "node-b") is None  # B does not run it: nothing taken
    assert shared.take_requests("c1", "node-a") == ["pause", "resume"]
    assert shared.pending_requests("c1") == 0
    assert shared.take_requests("c1", "node-a") == []
    shared.release("c1", "node-a")
    assert shared.holder("c1") is None


# -- two nodes ------------------------------------------------------------------------------------


class Nodes:
    """Managers on one store; ``post`` delivers a NUDGE to the named node at once (what the
    cluster node's channel does)."""

    def __init__(self, store: RedisCampaignStore, updates: FakeUpdates, lease: float) -> None:
        self.store = store
        self.updates = updates
        self.lease = lease
        self.nodes: dict[str, CampaignManager] = {}
        self.nudges: list[str] = []

    def add(self, name: str) -> CampaignManager:
        def post(node: str, message: Mapping[str, Any]) -> None:
            assert message["op"] == NUDGE
            self.nudges.append(node)
            self.nodes[node].nudged(str(message["id"]))

        def resolve(target: Target) -> list[str]:
            return list(target.endpoints)

        cluster = CampaignCluster(node=name, store=self.store, lease=self.lease, post=post)
        manager = CampaignManager(
            self.updates, self.store, resolve=resolve, progress_interval=0.05, cluster=cluster
        )
        self.nodes[name] = manager
        return manager

    @contextlib.asynccontextmanager
    async def pair(self) -> AsyncIterator[tuple[CampaignManager, CampaignManager]]:
        """Nodes A and B, started; stopped (B, then A) however the test ends."""
        a, b = self.add("node-a"), self.add("node-b")
        await a.start()
        await b.start()
        try:
            yield a, b
        finally:
            await b.stop()
            await a.stop()


async def test_only_the_creator_runs_a_campaign_and_obeys_the_other_nodes_api(
    shared: RedisCampaignStore,
) -> None:
    updates = FakeUpdates()
    nodes = Nodes(shared, updates, lease=30.0)
    async with nodes.pair() as (a, b):
        a.create(endpoints_spec(DEVICES[:6], max_concurrent=2), "c1")
        await until(lambda: len(updates.running()) == 2)
        assert a.running_here() == ["c1"] and b.running_here() == []
        assert shared.holder("c1") == "node-a"
        shown = b.get("c1")  # from the shared store
        assert shown.counts["running"] == 2 and shown.counts["pending"] == 4
        assert "c1" in (b.in_use(PACKAGE) or "")  # B keeps the package A's campaign needs

        shared.request("c1", "stop")  # garbage in the shared store is ignored, not called
        paused, done = await b.act("pause", "c1")
        assert done and paused.state is CampaignState.PAUSED
        assert nodes.nudges == ["node-a"]
        assert a.get("c1").state is CampaignState.PAUSED  # the runner carried it out
        for endpoint in updates.running():
            updates.finish(endpoint, JobState.SUCCEEDED)
        await until(lambda: b.get("c1").counts["succeeded"] == 2)
        assert updates.starts == 2  # paused: no new start anywhere
        with pytest.raises(CampaignError) as refused:
            await b.act("resume", "nope")
        assert refused.value.status == 404

        resumed, done = await b.act("resume", "c1")
        assert done and resumed.state is CampaignState.RUNNING
        while b.get("c1").state is CampaignState.RUNNING:
            await until(lambda: bool(updates.running()) or b.get("c1").state.finished)
            for endpoint in updates.running():
                updates.finish(endpoint, JobState.SUCCEEDED)
            await until(lambda: not updates.running())
        final = b.get("c1")
        assert final.state is CampaignState.COMPLETED and final.counts["succeeded"] == 6
        assert updates.starts == 6
        assert shared.holder("c1") is None  # done: no runner needed
        assert a.running_here() == [] and b.running_here() == []
        with pytest.raises(CampaignError) as late:
            await b.act("cancel", "c1")
        assert late.value.status == 409


async def test_a_cancel_through_the_other_node_cancels_the_running_jobs(
    shared: RedisCampaignStore,
) -> None:
    updates = FakeUpdates()
    nodes = Nodes(shared, updates, lease=30.0)
    async with nodes.pair() as (a, b):
        a.create(endpoints_spec(DEVICES[:5], max_concurrent=2), "c1")
        await until(lambda: len(updates.running()) == 2)
        cancelled, done = await b.act("cancel", "c1")
        assert done and cancelled.state is CampaignState.CANCELLED
        await until(lambda: b.get("c1").counts == {**b.get("c1").counts, "cancelled": 5})
        assert sorted(updates.cancelled) == DEVICES[:2]
        assert updates.starts == 2


async def test_a_runner_killed_without_releasing_is_replaced_after_the_lease(
    shared: RedisCampaignStore,
) -> None:
    updates = FakeUpdates()
    nodes = Nodes(shared, updates, lease=0.6)
    async with nodes.pair() as (a, b):
        a.create(endpoints_spec(DEVICES[:4], max_concurrent=2), "c1")
        await until(lambda: len(updates.running()) == 2)
        stale: Campaign = a.get("c1")
        await a.stop(release=False)  # killed: the lease runs out by itself
        updates.finish(DEVICES[0], JobState.SUCCEEDED)  # a job ends while nobody runs it
        await until(lambda: b.running_here() == ["c1"])
        assert shared.holder("c1") == "node-b"
        # the dead node's last word would be refused
        assert not shared.save_as(stale.header_json(), [], "node-a", 30.0)
        await until(lambda: b.get("c1").counts["succeeded"] == 1)  # its lease check saw it
        while not b.get("c1").state.finished:
            await until(lambda: bool(updates.running()) or b.get("c1").state.finished)
            for endpoint in updates.running():
                updates.finish(endpoint, JobState.SUCCEEDED)
            await until(lambda: not updates.running())
        final = b.get("c1")
        assert final.state is CampaignState.COMPLETED and final.counts["succeeded"] == 4
        assert updates.starts == 4  # nobody started a device twice
