"""Cluster mode over real sockets and a real ``redis-server`` (docs/cluster.md, issue 12):

* two ``lwm2m-server`` nodes on one Redis: a real ``lwm2m_client`` registers on node A; node B's
  API reads /3/0 (the request is routed to A, which holds the device, and B returns the value)
  and starts an Observe whose notifications reach B's event stream;
* ``lwm2m-server --workers 2``: both workers answer Registers from different source ports on
  the one shared port, the HTTP API is served once and lists every device, a killed worker is
  restarted; ``--workers 2`` on the sqlite store is refused with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis

from keystore.store.engines import StoreSettings
from lwm2m_client.client import Lwm2mClient
from lwm2m_server.cluster import node
from lwm2m_server.coap.requests import DownlinkRequest, RawResponse
from lwm2m_server.config import LimitsSettings
from lwm2m_server.operations import DeviceTimeoutError, UnknownClientError
from lwm2m_server.service import Lwm2mServer
from object_models.errors import ResponseCode
from object_models.path import LwM2mPath
from tests.live import Http, api_of, api_session

from ..processes import REDIS_PREFIX, ServerProcess, redis_env, redis_nodes, run_to_exit
from . import rawcoap as raw
from .conftest import eventually, server_config


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with api_session() as session:
        yield session


@pytest.fixture
def nodes(tmp_path: Path, redis_url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    # DEBUG: the log says which node sent a routed request
    with redis_nodes(tmp_path, redis_url, log_level="DEBUG") as pair:
        yield pair


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def next_event(stream: aiohttp.ClientResponse, kind: str) -> dict[str, Any]:
    """The data of the next SSE event of ``kind`` (others are skipped)."""
    current = None
    while True:
        line = (await asyncio.wait_for(stream.content.readline(), 20)).decode().rstrip("\n")
        if line.startswith("event: "):
            current = line[len("event: ") :]
        elif line.startswith("data: ") and current == kind:
            data: dict[str, Any] = json.loads(line[len("data: ") :])
            return data


async def heard_listening(a: Lwm2mServer, b: Lwm2mServer) -> None:
    """Until node A knows that node B has an event reader (B announced it when its reader
    subscribed): from then on A shares its ordinary events (docs/cluster.md)."""
    assert a.cluster is not None and b.cluster is not None
    async with asyncio.timeout(10):
        while b.cluster.node_id not in a.cluster.listening_peers():
            await asyncio.sleep(0.01)


async def test_node_b_reads_and_observes_a_device_that_node_a_holds(
    nodes: tuple[ServerProcess, ServerProcess], http: aiohttp.ClientSession
) -> None:
    a, b = nodes
    a.start()
    b.start()
    client = Lwm2mClient("held-by-a", f"coap://127.0.0.1:{a.coap_port}", auto_update=False)
    try:
        await client.start()
        await client.register()

        body = await get_json(http, f"{b.api}/clients/held-by-a/3/0")
        values = {r["id"]: r.get("value") for r in body["content"]["resources"]}
        assert values[0] == "pylwm2m"  # Manufacturer, read by A for B's caller
        assert re.search(r"read /3/0 of held-by-a routed to node \S+", b.log()), b.log()
        assert "sending read /3/0 to held-by-a for node" in a.log(), a.log()

        stream = await http.get(f"{b.api}/event?ep=held-by-a")
        assert stream.status == 200
        await stream.content.readline()  # ": stream open"
        async with http.post(
            f"{b.api}/clients/held-by-a/3303/0/5700/observe?timeout=10"
        ) as response:
            assert response.status == 200, await response.text()
        assert "sending observe /3303/0/5700 to held-by-a for node" in a.log()

        client.set_value("/3303/0/5700", 31.5)  # the notification goes to A, the event to B
        data = await next_event(stream, "NOTIFICATION")
        assert data["ep"] == "held-by-a" and data["paths"] == ["/3303/0/5700"]
        assert [(p["path"], p["value"]) for p in data["points"]] == [("/3303/0/5700", 31.5)]
        stream.close()
    finally:
        await client.stop()
    assert b.stop() == 0
    assert a.stop() == 0


def holders(url: str) -> dict[str, str]:
    """endpoint → node id of every holder record (``P:node:{ep}``)."""
    r = redis.Redis.from_url(url, decode_responses=True)
    try:
        found = {}
        for key in r.scan_iter(f"{REDIS_PREFIX}:node:*"):
            endpoint = str(key).split("{", 1)[1].rstrip("}")
            found[endpoint] = str(r.get(key))
        return found
    finally:
        r.close()


async def test_two_workers_share_the_port_and_serve_the_api_once(
    tmp_path: Path, redis_url: str, http: aiohttp.ClientSession
) -> None:
    server = ServerProcess(tmp_path, tmp_path / "server.log", extra_args=["--workers", "2"])
    server.env.update(redis_env(redis_url))
    server.start()  # returns once worker 0 listens
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while "2 workers running" not in server.log():
            assert asyncio.get_running_loop().time() < deadline, server.log()
            await asyncio.sleep(0.1)
        count = 20  # each from its own source port: both workers get some (1 in 2^19 not)
        peers = [await raw.RawPeer.open(("127.0.0.1", server.coap_port)) for _ in range(count)]
        try:
            for i, peer in enumerate(peers):
                await raw.register(peer, f"w-{i}")
        finally:
            for peer in peers:
                peer.close()
        held = holders(redis_url)
        assert sorted(held) == sorted(f"w-{i}" for i in range(count))
        assert len(set(held.values())) == 2, held  # two worker processes answered

        listed = await get_json(http, f"{server.api}/clients")
        assert len(listed) == count
        log = server.log()
        assert log.count("HTTP API on http://") == 1, log
        assert len(re.findall(r"\[worker (\d)\] .*CoAP listening on udp", log)) == 2, log

        # a worker that dies is restarted on the same ports: worker 0, the API's, here
        worker_pids = {int(node.rsplit(":", 1)[1]) for node in held.values()}
        found = re.search(r"worker 0 \(pid (\d+)\) ready", log)
        assert found is not None and int(found.group(1)) in worker_pids, log
        os.kill(int(found.group(1)), signal.SIGKILL)
        deadline = asyncio.get_running_loop().time() + 30
        restarted = re.compile(r"exited with status -9: restarting it.*\n(.*\n)*.*ready")
        while not restarted.search(server.log()):
            assert server.alive(), server.log()
            assert asyncio.get_running_loop().time() < deadline, server.log()
            await asyncio.sleep(0.1)
        peer = await raw.RawPeer.open(("127.0.0.1", server.coap_port))
        try:
            await raw.register(peer, "after-restart")
        finally:
            peer.close()
        listed = await get_json(http, f"{server.api}/clients")  # the API on its port again
        assert len(listed) == count + 1
    finally:
        assert server.stop() == 0, server.log()
    assert not any(_alive(pid) for pid in worker_pids), "SIGTERM stops every worker"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_workers_on_sqlite_are_refused_with_the_reason(tmp_path: Path) -> None:
    done = run_to_exit(tmp_path, "--workers", "2")
    assert done.returncode == 2, done.stderr
    assert "workers: 2 needs store.engine: redis" in done.stderr


@contextlib.asynccontextmanager
async def _two_nodes(
    tmp_path: Path, redis_url: str, **changes: Any
) -> AsyncIterator[tuple[Lwm2mServer, Lwm2mServer]]:
    """Two nodes in this process on one Redis (each its own sockets and cluster channel), with
    ``changes`` to both configs."""
    settings = StoreSettings("redis", redis_url, "inproc")
    a = Lwm2mServer(server_config(tmp_path / "a", store=settings, **changes))
    b = Lwm2mServer(server_config(tmp_path / "b", store=settings, **changes))
    assert a.cluster is None
    await a.start()
    await b.start()
    assert a.cluster is not None and b.cluster is not None
    assert b.cluster.node_id != a.cluster.node_id  # one process, two nodes
    try:
        yield a, b
    finally:
        await b.stop()
        await a.stop()


@pytest.fixture
async def pair(tmp_path: Path, redis_url: str) -> AsyncIterator[tuple[Lwm2mServer, Lwm2mServer]]:
    async with _two_nodes(tmp_path, redis_url) as nodes:
        yield nodes


async def test_events_of_a_reach_b_subscribers_once_and_never_b_listeners(
    pair: tuple[Lwm2mServer, Lwm2mServer],
) -> None:
    a, b = pair
    on_a, on_b = a.bus.subscribe(), b.bus.subscribe()
    await heard_listening(a, b)
    heard_by_b_listener: list[str] = []
    b.bus.listen(lambda event: heard_by_b_listener.append(event.kind))
    peer = await raw.RawPeer.open(("127.0.0.1", a.coap_address.port))
    try:
        await raw.register(peer, "evented")
    finally:
        peer.close()
    event = await asyncio.wait_for(on_b.get(), 10)
    assert event is not None
    assert (event.kind, event.endpoint) == ("REGISTRATION", "evented")
    assert event.data["endpoint"] == "evented"
    first = await asyncio.wait_for(on_a.get(), 10)
    assert first is not None and first.kind == "REGISTRATION"
    # a marker event from B, after which nothing of "evented" may follow on A (no echo)
    b.bus.publish("SLEEPING", "marker", {"since": 0})
    while (echo := await asyncio.wait_for(on_a.get(), 10)) is not None:
        if echo.endpoint == "marker":
            break
        assert (echo.kind, echo.endpoint) != ("REGISTRATION", "evented"), "echoed back to A"
    assert "REGISTRATION" not in heard_by_b_listener  # the profile engine of B stays out


async def test_a_steady_stream_of_events_reaches_b_whole(
    pair: tuple[Lwm2mServer, Lwm2mServer],
) -> None:
    """A busy node's events all reach the other node: 20,000 events in bursts of 200 (a busy
    loop's iterations) at 20,000 a second are each published once, none dropped from the
    outbox (10,000 entries: only a Redis stalled for half a second could overflow it). Before the
    publisher sent a batch per round trip it sent one event per round trip, fell behind,
    and dropped the oldest half once its outbox was full."""
    a, b = pair
    assert a.cluster is not None
    on_b = b.bus.subscribe()
    await heard_listening(a, b)
    total, burst = 20_000, 200
    heard = 0

    async def count() -> None:
        nonlocal heard
        while heard < total:
            event = await on_b.get()
            assert event is not None
            if event.endpoint == "burst":
                assert event.data == {"n": heard}  # in order, each once
                heard += 1

    counting = asyncio.create_task(count())
    for start in range(0, total, burst):
        for n in range(start, start + burst):
            a.bus.publish("SLEEPING", "burst", {"n": n})
        await asyncio.sleep(0.01)  # 20,000 events/s
    await asyncio.wait_for(counting, 60)
    assert heard == total
    assert a.cluster.events_dropped == 0


async def test_ordinary_events_are_shared_only_while_another_node_has_a_reader(
    pair: tuple[Lwm2mServer, Lwm2mServer], redis_url: str
) -> None:
    """Node A does not build and PUBLISH its ordinary events while no other node has a reader
    (that cost a Redis node ~105 µs per Update for nobody); B's first reader is announced at
    once and A shares from then on; FIRMWARE events are shared regardless (the job managers
    of other nodes consume them)."""
    a, b = pair
    assert a.cluster is not None and b.cluster is not None
    watcher = redis.asyncio.Redis.from_url(redis_url)
    channel = watcher.pubsub()
    await channel.subscribe(a.cluster.events_channel)
    seen: list[tuple[str, str]] = []

    async def read_until(kind: str, endpoint: str) -> None:
        async with asyncio.timeout(10):
            while (kind, endpoint) not in seen:
                message = await channel.get_message(ignore_subscribe_messages=True, timeout=1)
                if message is not None:
                    data = json.loads(message["data"])
                    if data["origin"] == a.cluster.node_id and data["kind"] != "_alive":
                        seen.append((data["kind"], data["endpoint"]))

    try:
        assert a.cluster.listening_peers() == []
        a.bus.publish("SLEEPING", "unread", {"since": 0})
        a.bus.publish("FIRMWARE", "job", {"state": "running"})
        await read_until("FIRMWARE", "job")  # published after SLEEPING, had it been shared
        assert ("SLEEPING", "unread") not in seen
        on_b = b.bus.subscribe()
        await heard_listening(a, b)
        a.bus.publish("SLEEPING", "read", {"since": 0})
        await read_until("SLEEPING", "read")
        while True:  # the FIRMWARE event may still be on its way to B
            event = await asyncio.wait_for(on_b.get(), 10)
            assert event is not None and event.endpoint != "unread"
            if event.endpoint == "read":
                break
        assert b.cluster.node_id in a.cluster.figures()["peersListening"]
    finally:
        await channel.aclose()
        await watcher.aclose()


async def test_a_read_through_b_is_routed_to_a_and_falls_back_when_a_holder_is_gone(
    pair: tuple[Lwm2mServer, Lwm2mServer], redis_url: str
) -> None:
    a, b = pair
    assert a.cluster is not None and b.cluster is not None
    client = Lwm2mClient("routed", f"coap://127.0.0.1:{a.coap_address.port}", auto_update=False)
    try:
        await client.start()
        await client.register()
        assert b.cluster.holder("routed") == a.cluster.node_id

        response = await b.read("routed", LwM2mPath.parse("/3/0/0"), timeout=5)
        assert response.success and response.node is not None
        assert (b.cluster.routed, a.cluster.served) == (1, 1)

        # a holder without subscriber (a killed node): B sends it itself
        r = redis.Redis.from_url(redis_url)
        r.set(b.cluster.holder_key("routed"), "gone-host:1")
        r.close()
        response = await b.read("routed", LwM2mPath.parse("/3/0/0"), timeout=5)
        assert response.success
        assert (b.cluster.routed, a.cluster.served) == (1, 1)
    finally:
        await client.stop()


async def _observed(http: Http, endpoint: str) -> list[list[str]]:
    """The paths of each observation ``GET /api/clients/{ep}/observations`` lists."""
    answer = await http.get(f"/api/clients/{endpoint}/observations")
    assert answer.status == 200, await answer.text()
    return sorted(o["paths"] for o in (await answer.json())["observations"])


def _device_observes(client: Lwm2mClient) -> list[str]:
    return sorted(str(p) for o in client.observations.active for p in o.paths)


@contextlib.asynccontextmanager
async def _registered_on(server: Lwm2mServer, endpoint: str) -> AsyncIterator[Lwm2mClient]:
    """A demo device registered on ``server`` (the node that then holds it)."""
    uri = f"coap://127.0.0.1:{server.coap_address.port}"
    client = Lwm2mClient(endpoint, uri, auto_update=False)
    try:
        await client.start()
        await client.register()
        yield client
    finally:
        await client.stop()


@pytest.fixture
def plain_redis(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test's Redis, to look at the records the nodes wrote."""
    r = redis.Redis.from_url(redis_url)
    yield r
    r.close()


async def test_observations_started_through_b_are_listed_and_cancelled_through_either_node(
    pair: tuple[Lwm2mServer, Lwm2mServer], plain_redis: redis.Redis
) -> None:
    """Node A holds the device; B's API observes two paths (kept by A: in its CoAP layer and
    in Redis). Both nodes' APIs list them from the store; a passive cancel through B reaches A
    (the device's next notification gets A's RST and ends it), an active cancel through B is
    sent by A (the device gets the GET with Observe=1); each removes the record from Redis.
    The Leshan dialect's active cancel through B (which checks the list first) does the same."""
    a, b = pair
    assert a.cluster is not None and b.cluster is not None
    temperature, minimum, maximum = "/3303/0/5700", "/3303/0/5601", "/3303/0/5602"
    r, records = plain_redis, b.cluster.db.endpoint_key("obs", "watched")
    async with _registered_on(a, "watched") as client, api_of(a) as on_a, api_of(b) as on_b:
        assert await _observed(on_b, "watched") == []  # B has looked (and cached nothing)
        for path in (temperature, minimum):
            started = await on_b.post(f"/api/clients/watched{path}/observe?timeout=10")
            assert started.status == 200, await started.text()
        assert a.cluster.served == 2 and len(a.core.observations) == 2  # A keeps them
        assert r.hlen(records) == 2
        both = [[minimum], [temperature]]
        assert await _observed(on_a, "watched") == both
        assert await _observed(on_b, "watched") == both
        assert _device_observes(client) == [minimum, temperature]

        # passive, through B: A forgets it and RSTs the next notification
        cancel = await on_b.delete(f"/api/clients/watched{temperature}/observe?active=false")
        assert cancel.status == 200, await cancel.text()
        assert a.cluster.served == 3
        assert r.hlen(records) == 1
        assert await _observed(on_a, "watched") == [[minimum]]
        assert await _observed(on_b, "watched") == [[minimum]]
        client.set_value(temperature, 41.0)  # the notification goes to A: RST
        await eventually(lambda: _device_observes(client) == [minimum])

        # active, through B: A sends the GET with Observe=1 and forgets it
        cancel = await on_b.delete(f"/api/clients/watched{minimum}/observe")
        assert cancel.status == 200, await cancel.text()
        assert a.cluster.served == 4
        assert _device_observes(client) == []  # the device answered the cancel
        assert r.hlen(records) == 0 and r.hlen(b.cluster.db.group_key("obs", "tokens")) == 0
        assert await _observed(on_a, "watched") == []
        assert await _observed(on_b, "watched") == []
        assert len(a.core.observations) == 0
        again = await on_b.delete(f"/api/clients/watched{minimum}/observe")
        assert again.status == 404, await again.text()

        # the Leshan dialect's active cancel checks the list first: the store's, on B too
        started = await on_b.post(f"/leshan/api/clients/watched{maximum}/observe")
        assert started.status == 200, await started.text()
        cancel = await on_b.delete(f"/leshan/api/clients/watched{maximum}/observe?active")
        assert cancel.status == 200, await cancel.text()
        assert _device_observes(client) == [] and r.hlen(records) == 0


async def test_the_observation_limit_counts_what_the_store_holds_not_a_stale_cache(
    tmp_path: Path, redis_url: str
) -> None:
    """``limits.observations_per_client`` on node B counts the device's observations in the
    store: one B started and A then cancelled (B's memory still had it) leaves room."""
    limits = LimitsSettings(observations_per_client=1)
    async with (
        _two_nodes(tmp_path, redis_url, limits=limits) as (a, b),
        _registered_on(a, "limited"),
        api_of(a) as on_a,
        api_of(b) as on_b,
    ):
        first = await on_b.post("/api/clients/limited/3303/0/5700/observe?timeout=10")
        assert first.status == 200, await first.text()
        assert await _observed(on_b, "limited") == [["/3303/0/5700"]]  # B caches it
        cancel = await on_a.delete("/api/clients/limited/3303/0/5700/observe")
        assert cancel.status == 200, await cancel.text()
        second = await on_b.post("/api/clients/limited/3303/0/5601/observe?timeout=10")
        assert second.status == 200, await second.text()
        third = await on_b.post("/api/clients/limited/3303/0/5602/observe?timeout=10")
        assert third.status == 409, await third.text()  # the limit still holds


async def test_a_cancel_through_b_whose_holder_is_gone_still_removes_the_record(
    pair: tuple[Lwm2mServer, Lwm2mServer],
    plain_redis: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The holder has no subscriber any more (killed, restarted under a new id): B removes the
    store's record itself and says so in its log; the device's next notification, wherever it
    lands, finds no observation and gets a RST."""
    a, b = pair
    assert b.cluster is not None
    r, records = plain_redis, b.cluster.db.endpoint_key("obs", "orphan")
    async with _registered_on(a, "orphan"), api_of(b) as on_b:
        started = await on_b.post("/api/clients/orphan/3303/0/5700/observe?timeout=10")
        assert started.status == 200, await started.text()
        assert r.hlen(records) == 1
        r.set(b.cluster.holder_key("orphan"), "gone-host:1")
        caplog.set_level(logging.INFO, logger=node.__name__)
        cancel = await on_b.delete("/api/clients/orphan/3303/0/5700/observe?active=false")
        assert cancel.status == 200, await cancel.text()
        assert r.hlen(records) == 0
        assert await _observed(on_b, "orphan") == []
        said = [m.getMessage() for m in caplog.records if "gone-host:1" in m.getMessage()]
        assert said and "passive cancel of observation" in said[0], said
        assert "done by this node" in said[0]


def test_the_wire_forms_round_trip() -> None:
    request = DownlinkRequest(
        "write",
        "PUT",
        LwM2mPath.parse("/3/0/14"),
        paths=(LwM2mPath.parse("/3/0"),),
        payload=b"\x00\xff",
        content_format=11542,
        accept=None,
        query=("pmin=1",),
        observe=None,
        token=b"\x01\x02",
    )
    assert node.request_from_json(json.loads(json.dumps(node.request_to_json(request)))) == request
    answer = RawResponse(0x45, b"\x01", 11542, ("3", "1"), 7, b"\xaa", b"\xbb")
    assert node.raw_from_json(json.loads(json.dumps(node.raw_to_json(answer)))) == answer
    timeout = node.error_from_json(node.error_to_json(DeviceTimeoutError("late")))
    assert isinstance(timeout, DeviceTimeoutError) and timeout.message == "late"
    unknown = node.error_from_json(node.error_to_json(UnknownClientError("who")))
    assert isinstance(unknown, UnknownClientError)
    other = node.error_from_json({"kind": "error", "code": 0x84, "message": "no"})
    assert other.code == ResponseCode.NOT_FOUND


async def test_health_and_metrics_show_the_cluster_figures(
    nodes: tuple[ServerProcess, ServerProcess], http: aiohttp.ClientSession
) -> None:
    """/api/health (``cluster``) and /metrics of each node: its id, the other node among the
    peers it heard from, a Read routed by B and served by A counted on both sides, Redis
    reachable with a timed PING and the group commits and credential version reads made."""
    a, b = nodes
    a.start()
    b.start()
    client = Lwm2mClient("counted", f"coap://127.0.0.1:{a.coap_port}", auto_update=False)
    try:
        await client.start()
        await client.register()
        await get_json(http, f"{b.api}/clients/counted/3/0")  # routed to A
    finally:
        await client.stop()

    async def cluster_of(node: ServerProcess) -> dict[str, Any]:
        health = await get_json(http, f"{node.api}/health")
        figures: dict[str, Any] = health["cluster"]
        return figures

    deadline = asyncio.get_running_loop().time() + 20
    while True:  # each node hears the other's heartbeat (sent at start)
        fa, fb = await cluster_of(a), await cluster_of(b)
        if fb["node"] in fa["peers"] and fa["node"] in fb["peers"]:
            break
        assert asyncio.get_running_loop().time() < deadline, (fa, fb)
        await asyncio.sleep(0.1)
    assert fa["node"] != fb["node"]
    assert (fb["routed"], fa["served"]) == (1, 1)
    assert fa["holderWrites"] >= 1
    assert fa["redis"]["down"] is False and fa["redis"]["pingMs"] is not None
    assert fa["redis"]["groupCommits"] >= 1 and fa["redis"]["credentialVersionReads"] >= 1

    base = b.api.removesuffix("/api")
    async with http.get(f"{base}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    assert f'lwm2m_cluster_node_info{{node="{fb["node"]}"}} 1.0' in text
    assert "lwm2m_cluster_routed_requests_total 1.0" in text
    assert "lwm2m_cluster_peers 1.0" in text
    assert "lwm2m_redis_up 1.0" in text
    assert "lwm2m_redis_ping_seconds" in text
    assert b.stop() == 0
    assert a.stop() == 0
