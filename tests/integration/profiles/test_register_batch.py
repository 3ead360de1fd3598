"""The Register path of the profile engine (issue 10): a device whose profile asks nothing (the
built-in default, most of a fleet) is applied without a task of its own, its status is stored and
published as before, and the engine keeps nothing in memory for it once the status is stored;
a device whose profile sends requests still gets them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from lwm2m_server.operations import ServerEvent
from lwm2m_server.service import Lwm2mServer
from tests.integration.server.rawcoap import RawPeer, register

from .conftest import ServerFactory, settled, write_profile

LINKS = "</3/0>,</3303/0>"


async def _register_all(server: Lwm2mServer, endpoints: list[str]) -> list[RawPeer]:
    address = ("127.0.0.1", server.coap_address.port)
    peers = [await RawPeer.open(address) for _ in endpoints]
    await asyncio.gather(
        *(
            register(p, ep, lifetime=3600, links=LINKS)
            for p, ep in zip(peers, endpoints, strict=True)
        )
    )
    return peers


async def _profile_events(events: Any, count: int) -> dict[str, ServerEvent]:
    seen: dict[str, ServerEvent] = {}

    async def collect() -> None:
        async for event in events:
            if event.kind == "PROFILE":
                seen[event.endpoint] = event
                if len(seen) == count:
                    return

    await asyncio.wait_for(collect(), 5.0)
    return seen


async def test_devices_whose_profile_asks_nothing_are_applied_stored_and_published(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    engine = server.profiles
    assert engine is not None
    scheduled: list[tuple[str, str]] = []
    schedule = engine.schedule

    def counting(endpoint: str, reason: Any) -> Any:
        scheduled.append((endpoint, reason.value))
        return schedule(endpoint, reason)

    engine.schedule = counting  # type: ignore[method-assign]
    single_reads: list[str] = []
    assignment, status_read = engine.catalog.store.assignment, engine.state.status

    def one_assignment(endpoint: str) -> Any:
        single_reads.append(f"assignment {endpoint}")
        return assignment(endpoint)

    def one_status(endpoint: str) -> Any:
        single_reads.append(f"status {endpoint}")
        return status_read(endpoint)

    engine.catalog.store.assignment = one_assignment  # type: ignore[method-assign]
    engine.state.status = one_status  # type: ignore[method-assign]
    events = server.events()
    endpoints = [f"plain-{n}" for n in range(20)]
    peers = await _register_all(server, endpoints)
    try:
        published = await _profile_events(events, len(endpoints))
        await settled(server)
        assert scheduled == []  # no task: the plan sends nothing
        # what the applications read is read for all the loop iteration's Registers at once
        assert single_reads == []
        for endpoint in endpoints:
            status = engine.status(endpoint)
            assert (status["profile"], status["state"], status["reason"]) == (
                "default",
                "applied",
                "register",
            )
            assert published[endpoint].data["state"] == "applied"
            stored = engine.state.status(endpoint)  # durable, not only in memory
            assert stored is not None and stored["state"] == "applied"
            # nothing kept per device once stored: no status object, no lock
            assert endpoint not in engine._status and endpoint not in engine._locks
    finally:
        for peer in peers:
            peer.close()


async def test_a_settled_status_read_back_from_the_store_keeps_its_value_problems(
    make_server: ServerFactory,
) -> None:
    """A status the engine no longer holds is read back whole (here: after a re-Register, the
    mapper's value problems recorded before survive, as they did when it stayed in memory)."""
    server = await make_server()
    engine = server.profiles
    assert engine is not None
    peers = await _register_all(server, ["again-1"])
    try:
        await settled(server)
        assert "again-1" not in engine._status
        stored = engine.state.status("again-1")
        assert stored is not None
        stored["valueProblems"] = [{"path": "/3303/0/5700", "key": "t", "message": "x", "ts": 1}]
        engine.state.put_status("again-1", stored)
        await register(peers[0], "again-1", lifetime=3600, links=LINKS)
        await settled(server)
        status = engine.status("again-1")
        assert status["valueProblems"] == stored["valueProblems"]
        assert (status["state"], status["reason"]) == ("applied", "register")
    finally:
        for peer in peers:
            peer.close()


async def test_a_device_whose_profile_sends_requests_still_gets_them(
    make_server: ServerFactory, profiles_dir: Path
) -> None:
    write_profile(profiles_dir, endpoints=["temp-*"])
    server = await make_server()
    engine = server.profiles
    assert engine is not None
    observes: list[str] = []

    def device(msg: Any) -> Any:
        from tests.integration.server.rawcoap import Msg

        observes.append(msg.code)
        return Msg(0, 0x84, 0)  # 4.04: recorded as problems, the application finishes

    address = ("127.0.0.1", server.coap_address.port)
    peer = await RawPeer.open(address, device)
    try:
        await register(peer, "temp-9", lifetime=3600, links=LINKS)
        await settled(server)
        assert observes  # the profile's requests went out
        status = engine.status("temp-9")
        assert status["state"] in ("partial", "failed")
        assert "temp-9" in engine._status  # a gap an Update retries: kept at hand
        assert "temp-9" not in engine._locks
    finally:
        peer.close()


async def test_restored_devices_whose_profile_asks_nothing_are_applied_at_start(
    make_server: ServerFactory,
) -> None:
    """The start-up pacer applies a restored device whose plan sends nothing in place too:
    every one gets its ``restart`` application, and nothing is kept per device afterwards."""
    first = await make_server()
    endpoints = [f"kept-{n}" for n in range(5)]
    peers = await _register_all(first, endpoints)
    try:
        await settled(first)
        port = first.coap_address.port
        await first.stop()
        second = await make_server(coap_port=port)
        engine = second.profiles
        assert engine is not None
        await settled(second)
        for endpoint in endpoints:
            status = engine.status(endpoint)
            assert (status["state"], status["reason"]) == ("applied", "restart")
            assert endpoint not in engine._status and endpoint not in engine._locks
    finally:
        for peer in peers:
            peer.close()
