"""Queue mode (Core §6.5): requests for a sleeping client are queued (``DeviceResponse.queued``,
HTTP 202) and delivered, in order, when it next speaks; the queue is bounded and its entries
expire; a De-register fails what is still waiting."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lwm2m_client.client import Lwm2mClient
from lwm2m_server.config import QueueSettings
from lwm2m_server.core.queue import QueueFullError
from lwm2m_server.operations import DeviceTimeoutError, UnknownClientError
from lwm2m_server.service import Lwm2mServer
from object_models.node import LwM2mSingleResource
from object_models.path import LwM2mPath

from .conftest import ServerFactory, next_event, uri_of

P = LwM2mPath.parse


async def setup(make_server: ServerFactory, **queue: Any) -> tuple[Lwm2mServer, Lwm2mClient, Any]:
    settings = {"awake_time": 0.4, **queue}
    server = await make_server(queue=QueueSettings(**settings))
    events = server.events()
    client = Lwm2mClient("q", uri_of(server), queue_mode=True, awake_time=30, auto_update=False)
    await client.start()
    await client.register()
    assert server.client("q").queue_mode
    await next_event(events, "AWAKE")
    await next_event(events, "SLEEPING")
    client.sleep()  # the device really stops listening now
    return server, client, events


@pytest.fixture
async def queued_setup(make_server: ServerFactory) -> Any:
    server, client, events = await setup(make_server)
    yield server, client, events
    await client.stop()


async def test_queued_then_delivered_on_update(queued_setup: Any) -> None:
    server, client, events = queued_setup
    write = await server.write("q", P("/3/0/14"), LwM2mSingleResource.new(14, "+04:00"))
    read = await server.read("q", P("/3/0/14"))
    assert write.queued and read.queued and read.code == 0
    jobs = server.queued("q")
    assert [j.request.operation for j in jobs] == ["write", "read"]
    assert client.gate.dropped == 0  # nothing was sent to the sleeping device
    await client.update()  # the device wakes up and speaks
    assert (await next_event(events, "AWAKE")).endpoint == "q"
    written = await asyncio.wait_for(jobs[0].future, 5)
    answer = await asyncio.wait_for(jobs[1].future, 5)
    assert written.dotted_code == "2.04"
    assert answer.dotted_code == "2.05" and answer.node == LwM2mSingleResource.new(14, "+04:00")
    assert server.telemetry_latest("q")["/3/0/14"].value == "+04:00"  # delivered Reads too
    assert server.queued("q") == []
    # awake now: the next request goes straight through
    direct = await server.read("q", P("/3/0/0"))
    assert not direct.queued and direct.dotted_code == "2.05"


async def test_queue_is_bounded(make_server: ServerFactory) -> None:
    server, client, _ = await setup(make_server, max_per_client=2)
    try:
        assert (await server.read("q", P("/3/0/0"))).queued
        assert (await server.read("q", P("/3/0/1"))).queued
        with pytest.raises(QueueFullError):
            await server.read("q", P("/3/0/2"))
        assert len(server.queued("q")) == 2
    finally:
        await client.stop()


async def test_queued_request_expires(make_server: ServerFactory) -> None:
    server, client, _ = await setup(make_server, ttl=0.3)
    try:
        assert (await server.read("q", P("/3/0/0"))).queued
        [job] = server.queued("q")
        with pytest.raises(DeviceTimeoutError):
            await asyncio.wait_for(job.future, 5)
        assert server.queued("q") == []
    finally:
        await client.stop()


async def test_deregister_fails_waiters(queued_setup: Any) -> None:
    server, client, _ = queued_setup
    assert (await server.observe("q", P("/3303/0/5700"))).queued
    [job] = server.queued("q")
    await client.deregister()
    with pytest.raises(UnknownClientError):
        await asyncio.wait_for(job.future, 5)


async def test_send_wakes_the_client(queued_setup: Any) -> None:
    server, client, _ = queued_setup
    assert (await server.observe("q", P("/3303/0/5700"))).queued
    [job] = server.queued("q")
    await client.send(["/3/0/9"])  # any uplink opens the awake window
    response = await asyncio.wait_for(job.future, 5)
    assert response.dotted_code == "2.05"
    assert server.observations("q") == [(P("/3303/0/5700"),)]
