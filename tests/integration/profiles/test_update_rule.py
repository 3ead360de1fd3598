"""When an Update triggers the profile engine (issue 10, hot-path hygiene): an Update with the
same object list and no gap in the device's status costs nothing (no task, no profile
resolution, no status write); an Update that changes the object list, or one after a request
the device refused, still applies what is missing. And with no event subscriber, Registers and
Updates build no event payload; with one, the event is complete."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import lwm2m_server.events_bus as events_bus
from lwm2m_server.core.registration import ObjectLinks, Registration
from lwm2m_server.json_nodes import registration_to_json
from lwm2m_server.operations import ServerEvent
from lwm2m_server.profiles.engine import ProfileEngine
from lwm2m_server.service import Lwm2mServer

from .conftest import TEMPERATURE_PROFILE, ClientFactory, ServerFactory, settled, write_profile


class Calls:
    """Counts calls to the engine's per-Update work, forwarding them."""

    def __init__(self, engine: ProfileEngine) -> None:
        self.scheduled: list[tuple[str, str]] = []
        self.resolved = 0
        self.saved = 0
        schedule, resolve, save = engine.schedule, engine.catalog.resolve, engine._save

        def counting_schedule(endpoint: str, reason: Any) -> Any:
            self.scheduled.append((endpoint, reason.value))
            return schedule(endpoint, reason)

        def counting_resolve(endpoint: str) -> Any:
            self.resolved += 1
            return resolve(endpoint)

        def counting_save(status: Any) -> None:
            self.saved += 1
            save(status)

        engine.schedule = counting_schedule  # type: ignore[method-assign]
        engine.catalog.resolve = counting_resolve  # type: ignore[method-assign]
        engine._save = counting_save  # type: ignore[method-assign]


async def _next(events: AsyncIterator[ServerEvent], kind: str) -> ServerEvent:
    async def find() -> ServerEvent:
        async for event in events:
            if event.kind == kind:
                return event
        raise AssertionError("event stream ended")

    return await asyncio.wait_for(find(), 5.0)


async def _eventually(check: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.02)


def _observed(server: Lwm2mServer, endpoint: str = "temp-1") -> set[tuple[str, ...]]:
    return {tuple(str(p) for p in paths) for paths in server.observations(endpoint)}


async def test_update_with_the_same_object_list_schedules_nothing(
    make_server: ServerFactory, make_client: ClientFactory, profiles_dir: Path
) -> None:
    write_profile(profiles_dir, endpoints=["temp-*"])
    server = await make_server()
    client, recorder = await make_client(server)
    await settled(server)
    recorder.take()
    assert server.profiles is not None
    calls = Calls(server.profiles)
    events = server.events()  # to know the UPDATED event went through the engine's listener
    await client.update()
    await _next(events, "UPDATED")
    await client.update(lifetime=120)
    await _next(events, "UPDATED")
    await client.update(objects=True)  # the same object list, sent again
    await _next(events, "UPDATED")
    await settled(server)
    assert (calls.scheduled, calls.resolved, calls.saved) == ([], 0, 0)
    assert recorder.take() == []
    assert server.profiles.status("temp-1")["state"] == "applied"


async def test_update_that_changes_the_object_list_applies(
    make_server: ServerFactory, make_client: ClientFactory, profiles_dir: Path
) -> None:
    resources = dict(TEMPERATURE_PROFILE["resources"])
    resources["/3303/1/5700"] = {"key": "temperature2", "kind": "telemetry", "observe": True}
    write_profile(profiles_dir, endpoints=["temp-*"], resources=resources)
    server = await make_server()
    client, recorder = await make_client(server)
    await settled(server)
    recorder.take()
    assert ("/3303/1/5700",) not in _observed(server)  # not registered: reported, skipped
    assert server.profiles is not None
    calls = Calls(server.profiles)
    client.objects.add_instance(3303, {5700: 19.5, 5701: "Cel"}, instance_id=1)  # Updates
    await _eventually(lambda: ("/3303/1/5700",) in _observed(server))
    await settled(server)
    assert [r[:2] for r in recorder.take()] == [("observe", ("/3303/1/5700",))]
    assert calls.scheduled == [("temp-1", "update")]


async def test_update_retries_a_request_the_device_refused(
    make_server: ServerFactory, make_client: ClientFactory, profiles_dir: Path
) -> None:
    """The cheap form of "an Update fills gaps": only a device whose status records a refused
    request gets an application at an unchanged Update."""
    resources = dict(TEMPERATURE_PROFILE["resources"])
    resources["/3303/0/5750"] = {"key": "appType", "kind": "attribute", "observe": True}
    write_profile(profiles_dir, endpoints=["temp-*"], resources=resources)
    server = await make_server()
    client, recorder = await make_client(server)
    await settled(server)
    recorder.take()
    assert server.profiles is not None
    problems = server.profiles.status("temp-1")["problems"]
    assert [(p["operation"], p["paths"], p["code"]) for p in problems] == [
        ("observe", ["/3303/0/5750"], "4.04")
    ]
    client.set_value("/3303/0/5750", "indoor")  # the resource exists now
    await client.update()
    await _eventually(lambda: ("/3303/0/5750",) in _observed(server))
    await settled(server)
    assert recorder.take() == [("observe", ("/3303/0/5750",), ())]  # only what was missing
    status = server.profiles.status("temp-1")
    assert (status["state"], status["problems"]) == ("applied", [])
    calls = Calls(server.profiles)
    await client.update()  # no gap left: nothing more
    await settled(server)
    assert calls.scheduled == [] and recorder.take() == []


@pytest.fixture
def payload_builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every registration payload the event bus builds (its endpoint)."""
    built: list[str] = []

    def counting(registration: Any, **kwargs: Any) -> dict[str, Any]:
        built.append(registration.endpoint)
        return registration_to_json(registration, **kwargs)

    monkeypatch.setattr(events_bus, "registration_to_json", counting)
    return built


async def test_no_event_payload_without_a_subscriber(
    make_server: ServerFactory,
    make_client: ClientFactory,
    profiles_dir: Path,
    payload_builds: list[str],
) -> None:
    write_profile(profiles_dir, endpoints=["temp-*"])
    server = await make_server()
    client, _ = await make_client(server)  # Register
    await settled(server)
    for _ in range(3):
        await client.update(lifetime=200)
    await settled(server)
    assert payload_builds == []  # the engine listened to every event, no payload was built
    events = server.events()
    await client.update(lifetime=250)
    event = await _next(events, "UPDATED")
    assert event.data == registration_to_json(server.client("temp-1"), sleeping=False)
    assert event.data["lifetime"] == 250
    assert payload_builds == ["temp-1"]
    await client.register()
    event = await _next(events, "REGISTRATION")
    assert event.data["replaced"] is not None and event.data["endpoint"] == "temp-1"
    await settled(server)  # the re-Register's application ends before the client stops


class Lookups:
    """Counts the engine's lookups of a client by endpoint (``ops.client``), forwarding them."""

    def __init__(self, engine: ProfileEngine) -> None:
        self.endpoints: list[str] = []
        client = engine.ops.client

        def counting(endpoint: str) -> Any:
            self.endpoints.append(endpoint)
            return client(endpoint)

        engine.ops.client = counting  # type: ignore[method-assign]


async def test_the_update_check_reads_the_event_s_registration(
    make_server: ServerFactory, make_client: ClientFactory, profiles_dir: Path
) -> None:
    """The UPDATED event's data holds the registration the Update made: the engine's check
    reads it there (no lookup by endpoint per Update) and decides the same."""
    write_profile(profiles_dir, endpoints=["temp-*"])
    server = await make_server()
    client, recorder = await make_client(server)
    await settled(server)
    recorder.take()
    assert server.profiles is not None
    lookups = Lookups(server.profiles)
    calls = Calls(server.profiles)
    events = server.events()
    for _ in range(3):
        await client.update()
        await _next(events, "UPDATED")
    await settled(server)
    assert lookups.endpoints == []
    assert (calls.scheduled, calls.resolved, calls.saved) == ([], 0, 0)


def _with_another_instance(server: Lwm2mServer) -> Registration:
    """The client's registration as an Update adding /3303/1 would make it (not stored)."""
    registration = server.client("temp-1")
    links = ObjectLinks.parse(registration.object_links.text + ",</3303/1>")
    return attrs.evolve(registration, object_links=links)


async def _two_instance_setup(
    make_server: ServerFactory, make_client: ClientFactory, profiles_dir: Path
) -> tuple[Lwm2mServer, Any, Any, Calls, Registration]:
    """A registered temp-1 under a profile that also wants /3303/1, and the registration an
    Update adding that instance would make (not stored): its UPDATED event asks for an
    application."""
    resources = dict(TEMPERATURE_PROFILE["resources"])
    resources["/3303/1/5700"] = {"key": "temperature2", "kind": "telemetry", "observe": True}
    write_profile(profiles_dir, endpoints=["temp-*"], resources=resources)
    server = await make_server()
    client, recorder = await make_client(server)
    await settled(server)
    recorder.take()
    assert server.profiles is not None
    return server, client, recorder, Calls(server.profiles), _with_another_instance(server)


async def test_an_update_of_an_endpoint_that_ends_in_the_same_iteration_applies_nothing(
    make_server: ServerFactory, make_client: ClientFactory, profiles_dir: Path
) -> None:
    """An UPDATED event that asks for an application (a new object list), then the endpoint's
    De-register in the same loop iteration: its DEREGISTRATION takes the application back
    before it runs, as when the engine looked the client up at the UPDATED event."""
    server, client, recorder, calls, updated = await _two_instance_setup(
        make_server, make_client, profiles_dir
    )
    server.bus.publish(events_bus.UPDATED, "temp-1", events_bus.RegistrationData(updated))
    assert "temp-1" in server.profiles._due  # it would apply...
    result = server.core.deregister(updated.registration_id, now=time.time())
    server.apply(result)  # ...but the endpoint ends before the iteration is over
    assert "temp-1" not in server.profiles._due
    await asyncio.sleep(0.05)
    await settled(server)
    assert calls.scheduled == [] and recorder.take() == []
    client.location = None  # the server forgot it: the client must not De-register at exit


async def test_an_update_event_of_an_endpoint_gone_already_applies_nothing(
    make_server: ServerFactory, make_client: ClientFactory, profiles_dir: Path
) -> None:
    """An UPDATED event whose registration is no longer the server's (the endpoint ended
    before the event reached the engine): the application it asks for finds no client and
    sends nothing, as the lookup at the event did."""
    server, client, recorder, calls, updated = await _two_instance_setup(
        make_server, make_client, profiles_dir
    )
    server.core.deregister(updated.registration_id, now=time.time())  # no event: gone quietly
    server.bus.publish(events_bus.UPDATED, "temp-1", events_bus.RegistrationData(updated))
    await asyncio.sleep(0.05)
    await settled(server)
    assert calls.scheduled == [] and recorder.take() == []
    client.location = None
