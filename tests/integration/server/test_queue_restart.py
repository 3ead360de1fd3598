"""Queued requests survive a restart: a Write queued for a sleeping queue-mode device was
acknowledged with 202 and a ``requestId``, so after ``kill -9`` and a restart of the server
process the device still gets it when it wakes, and the outcome is published as a
REQUEST_RESPONSE event with the same ``requestId`` (the original HTTP caller is gone)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest

from keystore.store.errors import StoreError
from lwm2m_client.client import Lwm2mClient
from lwm2m_server.coap import requests as rq
from lwm2m_server.config import QueueSettings
from lwm2m_server.service import Lwm2mServer
from lwm2m_server.store.queued_requests import StoredRequest
from object_models.node import LwM2mSingleResource
from object_models.path import LwM2mPath
from tests.live import api_session, next_sse_event

from ..processes import ServerProcess
from .conftest import ServerFactory, uri_of
from .conftest import next_event as wait_for_event

P = LwM2mPath.parse


@pytest.fixture
def process(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path, tmp_path / "server.log")
    proc.env["LWM2M_SERVER_QUEUE_AWAKE_TIME"] = "0.5"
    yield proc
    proc.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with api_session() as session:
        yield session


async def next_event(stream: aiohttp.ClientResponse, kind: str, timeout: float = 10.0) -> Any:
    return await next_sse_event(stream, kind, timeout)


def stored_requests(process: ServerProcess) -> int:
    with contextlib.closing(sqlite3.connect(process.database)) as db:
        return int(db.execute("SELECT count(*) FROM queued_requests").fetchone()[0])


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)


async def test_a_queued_write_is_delivered_after_kill_9_and_restart(
    process: ServerProcess, http: aiohttp.ClientSession
) -> None:
    process.start()
    events = await http.get(f"{process.api}/event?ep=sleepy")
    await events.content.readline()
    device = Lwm2mClient(
        "sleepy",
        f"coap://127.0.0.1:{process.coap_port}",
        queue_mode=True,
        awake_time=30,
        auto_update=False,
    )
    await device.start()
    try:
        await device.register()
        await next_event(events, "SLEEPING")  # the server's awake window (0.5 s) closed
        device.sleep()  # and the device really stops listening
        async with http.put(f"{process.api}/clients/sleepy/3/0/14", json="+07:00") as answer:
            assert answer.status == 202, await answer.text()
            request_id = (await answer.json())["requestId"]
        assert device.get_value("/3/0/14") != "+07:00"
        assert stored_requests(process) == 1  # on disk before the 202
        events.close()

        process.kill9()
        process.start(coap_port=process.coap_port)
        events = await http.get(f"{process.api}/event?ep=sleepy")
        await events.content.readline()

        await device.update()  # the device wakes up: the restarted server delivers the Write
        answered = await next_event(events, "REQUEST_RESPONSE")
        assert answered["requestId"] == request_id
        assert answered["delayed"] is True and answered["path"] == "/3/0/14"
        assert answered["response"]["status"] == "CHANGED"
        assert device.get_value("/3/0/14") == "+07:00"
        # answered: its record is gone, a later start has nothing to deliver again
        await wait_until(lambda: stored_requests(process) == 0)
    finally:
        events.close()
        await device.stop()


# -- in process: what the store holds across a stop, expired and orphaned records, a failed write


async def sleeping_client(server: Lwm2mServer) -> Lwm2mClient:
    events = server.events()
    client = Lwm2mClient("q", uri_of(server), queue_mode=True, awake_time=30, auto_update=False)
    await client.start()
    await client.register()
    await wait_for_event(events, "SLEEPING")
    client.sleep()
    return client


async def test_a_graceful_stop_keeps_queued_requests_for_the_next_start(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    first = await make_server(queue=QueueSettings(awake_time=0.4))
    client = await sleeping_client(first)
    try:
        queued = await first.write("q", P("/3/0/14"), LwM2mSingleResource.new(14, "+03:00"))
        assert queued.queued and queued.request_id
        [stored] = first.stores.queued_requests.all()
        assert (stored.request_id, stored.endpoint) == (queued.request_id, "q")
        assert stored.request.operation == "write"
        config = attrs.evolve(first.config, coap_port=first.coap_address.port)
        await first.stop()

        second = Lwm2mServer(config)
        events = second.events()
        await second.start()
        try:
            assert [j.request_id for j in second.queued("q")] == [queued.request_id]
            await client.update()
            answered = await wait_for_event(events, "REQUEST_RESPONSE")
            assert answered.data["requestId"] == queued.request_id
            assert answered.data["response"].dotted_code == "2.04"
            assert client.get_value("/3/0/14") == "+03:00"
            assert second.stores.queued_requests.all() == []
        finally:
            await second.stop()
    finally:
        await client.stop()


async def test_expired_and_orphaned_records_are_answered_and_forgotten(
    make_server: ServerFactory,
) -> None:
    first = await make_server(queue=QueueSettings(awake_time=0.4, ttl=60.0))
    client = await sleeping_client(first)
    try:
        store = first.stores.queued_requests
        request = rq.read(first.client("q"), P("/3/0/0"), None)
        now = time.time()
        store.put(StoredRequest("old", "q", request, now - 120.0, ttl=60.0, timeout=5.0))
        store.put(StoredRequest("gone", "nobody", request, now, ttl=60.0, timeout=5.0))
        config = attrs.evolve(first.config, coap_port=first.coap_address.port)
        await first.stop()

        second = Lwm2mServer(config)
        events = second.events()
        await second.start()
        try:
            answers = {}
            for _ in range(2):
                event = await wait_for_event(events, "REQUEST_RESPONSE")
                answers[event.data["requestId"]] = event.data
            assert "expired" in answers["old"]["error"]
            assert "no longer registered" in answers["gone"]["error"]
            assert second.stores.queued_requests.all() == []
            assert second.queued("q") == []
        finally:
            await second.stop()
    finally:
        await client.stop()


async def test_a_request_that_cannot_be_recorded_is_refused_not_queued(
    make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = await make_server(queue=QueueSettings(awake_time=0.4))
    client = await sleeping_client(server)
    try:

        def broken(entry: StoredRequest) -> None:
            raise StoreError("disk full")

        monkeypatch.setattr(server.stores.queued_requests, "put", broken)
        with pytest.raises(StoreError):
            await server.read("q", P("/3/0/0"))
        assert server.queued("q") == []  # no promise the server could not keep
    finally:
        await client.stop()
