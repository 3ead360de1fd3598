"""Registers on Redis ride the loop iteration's group commit (docs/cluster.md, "Group commit on
Redis"): the 2.01 leaves only once the Register's script answered; a commit that fails withholds
it (the device retransmits, and the retransmission is stored and acknowledged), and a re-Register
on node B of a device node A registered cleans up A's registration (record, observations, index
and expiry entries) and reports it replaced. In-process nodes on a real ``redis-server``, real
sockets (a raw CoAP peer, a real ``lwm2m_client``)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import redis

from keystore.store.engines import StoreSettings
from lwm2m_client.client import Lwm2mClient
from lwm2m_client.transport import parse_server_uri
from lwm2m_server.events_bus import REGISTRATION
from lwm2m_server.operations import ServerEvent
from lwm2m_server.service import Lwm2mServer
from lwm2m_server.store.redis import RedisStore
from object_models.path import LwM2mPath

from . import rawcoap as raw
from .conftest import server_config, wait_for


def registrations_of(server: Lwm2mServer) -> list[ServerEvent]:
    """The REGISTRATION events ``server`` publishes from now on."""
    seen: list[ServerEvent] = []
    server.bus.listen(lambda e: seen.append(e) if e.kind == REGISTRATION else None)
    return seen


def core_store(server: Lwm2mServer) -> RedisStore:
    store = server.stores.core
    assert isinstance(store, RedisStore)
    return store


async def test_a_register_whose_commit_fails_gets_no_2_01_and_its_retransmission_does(
    tmp_path: Path, redis_url: str
) -> None:
    """The Register is held for the commit; the commit's script fails (the id index is not a
    hash: Redis refuses the script's first command, so nothing is written), so the 2.01 never
    leaves, nothing is announced and the node's cache does not keep the registration. Once
    Redis accepts the script again, the device's retransmission (same message id) is handled
    again: stored, acknowledged with the id Redis has, announced once."""
    a = Lwm2mServer(server_config(tmp_path / "a", store=StoreSettings("redis", redis_url, "rf")))
    await a.start()
    events = registrations_of(a)
    store = core_store(a)
    client = store.database.client
    ids = store.database.group_key("reg", "ids")
    peer = await raw.RawPeer.open(("127.0.0.1", a.coap_address.port))
    try:
        assert a.coap.udp is not None
        client.set(ids, "not a hash")  # WRONGTYPE for the script's HGET
        register = raw.request(
            raw.POST,
            ["rd"],
            query=["ep=held-reg", "lt=300", "lwm2m=1.1", "b=U"],
            payload=b"</3303/0>",
            content_format=40,
        )
        register.mid = peer.next_mid()
        first = asyncio.ensure_future(peer.resend(register, timeout=30.0))
        await wait_for(lambda: a.coap.udp is not None and a.coap.udp.withheld == 1, "withheld")
        await asyncio.sleep(0)
        assert not first.done()  # the 2.01 was withheld: nothing reached the device
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first  # its waiter is gone before the retransmission's
        assert store.registration_by_endpoint("held-reg") is None
        assert a.core.registrations.cached_by_endpoint("held-reg") is None
        assert events == []

        client.delete(ids)
        answer = await peer.resend(register, timeout=10.0)  # the device's retransmission
        assert raw.code_str(answer.code) == "2.01"
        location = answer.strings(raw.LOCATION_PATH)[-1]
        stored = store.get_registration(location)
        assert stored is not None and stored.endpoint == "held-reg"
        assert a.core.registrations.cached_by_endpoint("held-reg") == stored
        assert [e.data["registrationId"] for e in events] == [location]
        assert a.coap.udp.withheld == 1
    finally:
        peer.close()
        await a.stop()


async def test_a_reregister_on_b_cleans_up_the_registration_a_made(
    tmp_path: Path, redis_url: str
) -> None:
    """A device registered and observed through node A reboots and its datagrams now reach
    node B (a load balancer): B's Register replaces A's registration in the same script as its
    own write — A's record, observation, token, id and expiry entries are gone, the address
    entry with the next commit — B announces the replaced id, and A, whose cache still holds
    the old registration, does not report it expired (expiry happens once, for what is
    stored)."""
    settings = StoreSettings("redis", redis_url, "rr")
    a = Lwm2mServer(server_config(tmp_path / "a", store=settings))
    b = Lwm2mServer(server_config(tmp_path / "b", store=settings))
    await a.start()
    await b.start()
    events = registrations_of(b)
    store = core_store(b)
    client: redis.Redis = store.database.client
    device = Lwm2mClient("mover", f"coap://127.0.0.1:{a.coap_address.port}", auto_update=False)
    try:
        await device.start()
        old_id = await device.register()
        await a.observe("mover", LwM2mPath.parse("/3303/0/5700"))
        (observation,) = store.observations_by_endpoint("mover")
        old = store.get_registration(old_id)
        assert old is not None
        old_address = store._addr_key(old.address)
        assert client.sismember(old_address, old_id)

        device.server = parse_server_uri(f"coap://127.0.0.1:{b.coap_address.port}")
        new_id = await device.register()
        assert new_id != old_id
        assert [(e.data["registrationId"], e.data["replaced"]) for e in events] == [
            (new_id, old_id)
        ]
        new = store.registration_by_endpoint("mover")
        assert new is not None and new.registration_id == new_id
        assert store.get_registration(old_id) is None
        assert store.observations_by_endpoint("mover") == []
        assert store.observation_by_token(observation.token) is None
        assert (
            client.hget(store.database.group_key("obs", "tokens"), observation.token.hex()) is None
        )
        assert client.hget(store.database.group_key("reg", "ids"), old_id) is None
        assert client.zscore(store.database.group_key("reg", "expiry"), old_id) is None
        await wait_for(lambda: not client.sismember(old_address, old_id), "the address entry")
        assert [r.registration_id for r in store.expiring_before(1e12, 10)] == [new_id]

        # A still caches the old registration; its expiry finds it replaced: not reported
        assert a.core.registrations.cached(old_id) is not None
        assert a.core.registrations.expire(a.core.registrations.deadline(old) + 1) == []
        assert a.core.registrations.cached(old_id) is None
        assert store.registration_by_endpoint("mover") == new
    finally:
        await device.stop()
        await b.stop()
        await a.stop()


async def test_the_registers_of_one_loop_iteration_are_one_script_in_one_round_trip(
    tmp_path: Path, redis_url: str
) -> None:
    """Five Registers handled in one loop iteration (fed to the UDP endpoint as a busy socket
    delivers them, each from a real peer socket that gets its 2.01) reach Redis as one script
    sent by one client command, seen with MONITOR (it was one script and round trip per
    Register, each waited for on the event loop)."""
    a = Lwm2mServer(server_config(tmp_path / "a", store=StoreSettings("redis", redis_url, "rt")))
    await a.start()
    store = core_store(a)
    peers = [await raw.RawPeer.open(("127.0.0.1", a.coap_address.port)) for _ in range(5)]
    seen: list[dict[str, Any]] = []
    monitor = redis.Redis.from_url(redis_url).monitor()
    monitor.__enter__()

    def watch() -> None:
        while (command := monitor.next_command())["command"] != "ECHO rt-end":
            seen.append(command)

    watcher = asyncio.get_running_loop().run_in_executor(None, watch)
    try:
        udp = a.coap.udp
        assert udp is not None
        answers = []
        for i, peer in enumerate(peers):
            message = raw.request(
                raw.POST,
                ["rd"],
                query=[f"ep=batch-{i}", "lt=300", "lwm2m=1.1", "b=U"],
                payload=b"</3303/0>",
                content_format=40,
            )
            message.mid = peer.next_mid()
            answers.append(asyncio.ensure_future(peer.resend(message, timeout=10.0)))
            udp.datagram_received(raw.encode(message), ("127.0.0.1", peer.port))
        codes = [raw.code_str((await answer).code) for answer in answers]
        assert codes == ["2.01"] * 5
        store.database.client.echo("rt-end")
        await watcher
        scripts = [
            c["command"]
            for c in seen
            if c["client_type"] != "lua"
            and c["command"].split(" ", 1)[0] in ("EVAL", "EVALSHA")
            and "rt:reg:{batch-" in c["command"]
        ]
        assert len(scripts) == 1
        assert all(f"rt:reg:{{batch-{i}}}" in scripts[0] for i in range(5))
        assert sorted(r.endpoint for r in store.registrations()) == [f"batch-{i}" for i in range(5)]
    finally:
        monitor.__exit__()
        for peer in peers:
            peer.close()
        await a.stop()
