"""The keep-alive's short cuts after a contact (s9-update2): a client never queued skips the
queues, and a downlink route that did not move is kept as it is. Each short cut must leave
what a user sees unchanged: queued requests still go when a client leaves queue mode, and
downlinks still follow a device that moved."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import attrs

from lwm2m_runtime.address import Address
from lwm2m_server.coap.downlink import Downlink
from lwm2m_server.core.queue import RequestQueues
from lwm2m_server.core.registration import BARE_UPDATE, Registration, UpdateRequest
from lwm2m_server.core.server import ServerCore

from .helpers import ADDR, Clock, request


def make_core() -> ServerCore:
    counter = itertools.count()
    return ServerCore(grace_period=0, id_factory=lambda: f"r{next(counter)}")


def queued_client(clock: Clock) -> tuple[ServerCore, Registration]:
    """A core with one client "a" registered in queue mode (awake from its Register)."""
    core = make_core()
    reg = core.apply_register(
        request("a", binding="UQ", queue_mode=True, lwm2m_version="1.0"),
        now=clock.now,
        address=ADDR,
    ).registration
    assert reg is not None
    return core, reg


def test_the_queues_endpoints_view_follows_the_clients_it_holds(clock: Clock) -> None:
    queues: RequestQueues[str] = RequestQueues()
    assert "a" not in queues.endpoints
    queues.heard_from("a", clock.now)
    queues.enqueue("b", "held", now=clock.now)
    assert set(queues.endpoints) == {"a", "b"}
    queues.remove("a")
    assert set(queues.endpoints) == {"b"}


def test_a_never_queued_client_s_update_sends_nothing_and_queues_nothing(clock: Clock) -> None:
    core = make_core()
    reg = core.apply_register(request("a"), now=clock.now, address=ADDR).registration
    assert reg is not None
    up = core.apply_update(reg.registration_id, BARE_UPDATE, now=clock.advance(10))
    assert up.registration is not None and up.to_send == ()
    assert "a" not in core.queues.endpoints
    assert core.submit("a", "direct", now=clock.now) is True  # not queued: sent at once
    assert "a" not in core.queues.endpoints


def test_a_queued_client_s_keep_alive_still_wakes_it_and_flushes_its_queue(clock: Clock) -> None:
    core, reg = queued_client(clock)
    clock.advance(500)
    core.tick(clock.now)  # asleep
    assert core.submit("a", "held", now=clock.now) is False
    up = core.apply_update(reg.registration_id, BARE_UPDATE, now=clock.now)
    assert [e.request for e in up.to_send] == ["held"]


def test_leaving_queue_mode_with_an_empty_queue_forgets_the_awake_state(clock: Clock) -> None:
    """The client is in ``queues.endpoints`` (awake state, no request): the Update that
    leaves queue mode still removes it, and later requests go at once."""
    core, reg = queued_client(clock)
    assert "a" in core.queues.endpoints
    up = core.apply_update(reg.registration_id, UpdateRequest(binding="U"), now=clock.advance(1))
    assert up.registration is not None and not up.registration.queue_mode
    assert up.to_send == ()
    assert "a" not in core.queues.endpoints
    clock.advance(500)
    assert core.submit("a", "direct", now=clock.now) is True


class Resolver:
    """The CoAP server's ``resolve``, counted: the downlink asks it only for a route it
    does not hold."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    async def resolve(self, host: str, port: int, *, secure: bool) -> tuple[str, int]:
        self.calls.append((host, port))
        return ("resolved", port)


def registration(address: Address = ADDR) -> Registration:
    return Registration(registration_id="r1", endpoint="a", address=address)


def route(downlink: Downlink, reg: Registration) -> Any:
    return asyncio.run(downlink.remote_of(reg))


def test_a_keep_alive_from_the_same_peer_keeps_the_route() -> None:
    coap = Resolver()
    downlink = Downlink(coap)  # type: ignore[arg-type]
    reg = registration()
    downlink.remember(reg, ("192.0.2.1", 5683))
    kept = attrs.evolve(reg, last_update=reg.last_update + 10)  # same Address object
    assert kept.address is reg.address
    downlink.remember(kept, ("192.0.2.1", 5683))  # an equal, new peer tuple
    assert route(downlink, kept) == ("192.0.2.1", 5683)
    assert coap.calls == []


def test_a_device_that_moved_is_routed_to_its_new_peer() -> None:
    coap = Resolver()
    downlink = Downlink(coap)  # type: ignore[arg-type]
    reg = registration()
    downlink.remember(reg, ("192.0.2.1", 5683))
    downlink.remember(reg, ("192.0.2.9", 5683))  # same registration, another peer
    assert route(downlink, reg) == ("192.0.2.9", 5683)
    moved = attrs.evolve(reg, address=Address("192.0.2.7", 5700))
    downlink.remember(moved, ("192.0.2.7", 5700))
    assert route(downlink, moved) == ("192.0.2.7", 5700)
    assert coap.calls == []


def test_an_equal_new_address_from_the_same_peer_is_taken() -> None:
    """Same peer, an equal but new ``Address`` object: the route still serves the
    registration without resolving."""
    coap = Resolver()
    downlink = Downlink(coap)  # type: ignore[arg-type]
    reg = registration()
    downlink.remember(reg, ("192.0.2.1", 5683))
    again = attrs.evolve(reg, address=Address(ADDR.host, ADDR.port))
    assert again.address is not reg.address
    downlink.remember(again, ("192.0.2.1", 5683))
    assert route(downlink, again) == ("192.0.2.1", 5683)
    assert coap.calls == []
