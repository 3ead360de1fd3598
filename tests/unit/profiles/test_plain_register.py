"""The profile engine's plain Register path (``ProfileEngine._register_plainly``) against the
general one: for any mix of devices due in one loop iteration (new, re-registering with a
stored status, with value problems, with a corrupt status, with a gap kept in memory, with an
application running, gone before their turn, on a profile that asks nothing or that sends
requests, assigned a profile that no longer exists, LwM2M 1.0 or 1.1) and a store that accepts
or refuses the status write, both paths store the same rows, publish the same events, keep the
same statuses in memory, schedule the same tasks and log the same lines."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lwm2m_server.profiles.engine as engine_module
from keystore.store.errors import StoreError
from keystore.store.profiles import SqliteProfileStore
from lwm2m_server.core.registration import Registration
from lwm2m_server.events_bus import EventBus, LazyData
from lwm2m_server.operations import ServerEvent, UnknownClientError
from lwm2m_server.profiles.engine import ProfileEngine
from lwm2m_server.profiles.plan import Reason
from lwm2m_server.profiles.status import DeviceStatus, PlainStatus
from lwm2m_server.store.device_state import SqliteDeviceStateStore
from lwm2m_server.store.sqlite import SqliteStore
from object_models.path import LwM2mPath

from .helpers import REGISTRY, RESOURCES, registration

NOW = 1_765_000_000.25

STORED: dict[str, dict[str, Any]] = {
    "plain": {
        "endpoint": "x",
        "profile": "default",
        "state": "applied",
        "reason": "register",
        "appliedAt": 1.5,
        "observations": [],
    },
    "observed": {
        "profile": "temp",
        "state": "partial",
        "observations": [["/3303/0/5700"]],
        "attributesWritten": {"/3303/0/5700": {"pmin": "5"}},
        "problems": [{"operation": "observe", "paths": [], "message": "m", "code": "4.04"}],
    },
    "value problems": {
        "profile": "default",
        "valueProblems": [{"path": "/3303/0/5700", "key": "t", "message": "x", "ts": 1}],
    },
    "corrupt": {"profile": "default", "observations": [["not a path"]]},
    "empty": {},
}


@attrs.frozen
class Device:
    registered: bool
    version: str
    stored: str | None
    in_memory: bool
    running: bool
    assigned: str | None
    pattern: bool


devices = st.builds(
    Device,
    registered=st.booleans(),
    version=st.sampled_from(["1.0", "1.1"]),
    stored=st.none() | st.sampled_from(sorted(STORED)),
    in_memory=st.booleans(),
    running=st.booleans(),
    assigned=st.none() | st.sampled_from(["temp", "bare", "missing"]),
    pattern=st.booleans(),
)


class Ops:
    """The engine's ``ServerOperations``: only what an application that sends nothing uses."""

    def __init__(self, registrations: dict[str, Registration]) -> None:
        self.registrations = registrations

    def client(self, endpoint: str) -> Registration:
        found = self.registrations.get(endpoint)
        if found is None:
            raise UnknownClientError(f"no client {endpoint!r} is registered")
        return found

    def observations(self, endpoint: str) -> list[Any]:
        return []


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelname, record.getMessage()))


def _engine(
    path: Path, devices: list[Device], refuse: bool, texts: bool
) -> tuple[ProfileEngine, Any]:
    base = SqliteStore(path)
    profiles = SqliteProfileStore(base)
    state = SqliteDeviceStateStore(base)
    events: list[ServerEvent] = []

    def publish(kind: str, endpoint: str, data: Any) -> None:
        events.append(ServerEvent(kind, endpoint, data() if callable(data) else dict(data)))

    registrations: dict[str, Registration] = {}
    engine = ProfileEngine(
        Ops(registrations),  # type: ignore[arg-type]
        profiles,
        state,
        REGISTRY,
        listen=lambda listener: lambda: None,
        publish=publish,
    )
    engine.catalog.put({"resources": RESOURCES, "endpoints": ["temp-*"]}, "temp")
    engine.catalog.put({"observe_strategy": "composite_all", "endpoints": ["pat-*"]}, "bare")
    scheduled: list[tuple[str, Reason]] = []
    engine.schedule = lambda ep, reason: scheduled.append((ep, reason))  # type: ignore[assignment,method-assign,return-value]
    for n, device in enumerate(devices):
        endpoint = f"{'pat' if device.pattern else 'dev'}-{n}"
        if device.registered:
            registrations[endpoint] = registration(version=device.version, endpoint=endpoint)
        if device.stored is not None:
            state.put_status(endpoint, STORED[device.stored])
        if device.in_memory:
            status = DeviceStatus(endpoint, "default", state="applying")
            status.observed = [(LwM2mPath.parse("/3/0/9"),)]
            engine._status[endpoint] = status
        if device.running:
            engine._running[endpoint] = mock.Mock()
        if device.assigned is not None:
            profiles.assign(endpoint, device.assigned)
        engine._due[endpoint] = Reason.REGISTER
    if refuse:

        def refused(items: Any) -> None:
            list(items)
            raise StoreError("disk full")

        state.put_statuses = refused  # type: ignore[method-assign,assignment]
        state.put_status_texts = refused  # type: ignore[method-assign,assignment]
    if not texts:  # a store with only the protocol's methods (Redis)
        engine.state = ProtocolOnly(state)
    return engine, (base, events, scheduled)


class ProtocolOnly:
    """A ``DeviceStateStore`` without the sqlite store's ``put_status_texts``."""

    def __init__(self, state: SqliteDeviceStateStore) -> None:
        self.put_statuses = state.put_statuses
        self.statuses = state.statuses
        self.status = state.status
        self.put_status = state.put_status
        self.put_attributes = state.put_attributes
        self.attributes = state.attributes


def _outcome(
    path: Path, devices: list[Device], refuse: bool, plain: bool, texts: bool = True
) -> dict[str, Any]:
    lines = Lines()
    logger = logging.getLogger("lwm2m_server.profiles")
    logger.addHandler(lines)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with (
            mock.patch.object(engine_module, "PLAIN_REGISTERS", plain),
            mock.patch("time.time", return_value=NOW),
        ):
            engine, (base, events, scheduled) = _engine(path, devices, refuse, texts)
            engine._run_due()
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
    rows = base.conn.execute("SELECT endpoint, status FROM profile_status ORDER BY endpoint")
    outcome = {
        "rows": rows.fetchall(),
        "events": [(e.kind, e.endpoint, e.data) for e in events],
        "memory": {ep: status.to_json() for ep, status in engine._status.items()},
        "memory types": {type(status) for status in engine._status.values()},
        "planned with": {ep: links.text for ep, links in engine._planned_with.items()},
        "scheduled": scheduled,
        "log": lines.lines,
    }
    base.close()
    return outcome


@given(st.lists(devices, min_size=1, max_size=6), st.booleans(), st.booleans())
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_plain_path_does_what_the_general_one_does(
    tmp_path_factory: Any, batch: list[Device], refuse: bool, texts: bool
) -> None:
    """``texts``: the sqlite store, whose ``put_status_texts`` takes the statuses encoded by
    the engine; else a store with the protocol's ``put_statuses`` alone (Redis). The
    reference is the general path through ``put_statuses``."""
    folder = tmp_path_factory.mktemp("plain")
    general = _outcome(folder / "general.sqlite", batch, refuse, plain=False, texts=False)
    plain = _outcome(folder / "plain.sqlite", batch, refuse, plain=True, texts=texts)
    assert plain == general


def _taken(folder: Path, devices: list[Device]) -> Iterator[str]:
    """The endpoints whose Register the plain path settles."""
    taken: list[str] = []
    settle = ProfileEngine._register_plainly

    def spy(self: ProfileEngine, endpoint: str) -> Any:
        result = settle(self, endpoint)
        if isinstance(result, PlainStatus):
            taken.append(endpoint)
        return result

    with mock.patch.object(ProfileEngine, "_register_plainly", spy):
        _outcome(folder / "taken.sqlite", devices, False, plain=True)
    return iter(taken)


def test_the_usual_registers_take_the_plain_path(tmp_path: Path) -> None:
    """A new device, a re-Register with a stored plain status, a device on a pattern profile
    that asks nothing: plain; a profile with resources, a gap in memory, a stored status with
    value problems, LwM2M 1.0 on a composite strategy: the general path."""
    usual = Device(True, "1.1", None, False, False, None, False)
    batch = [
        usual,
        attrs.evolve(usual, stored="plain"),
        attrs.evolve(usual, pattern=True),
        attrs.evolve(usual, assigned="missing"),
        attrs.evolve(usual, assigned="temp"),
        attrs.evolve(usual, in_memory=True),
        attrs.evolve(usual, stored="value problems"),
        attrs.evolve(usual, pattern=True, version="1.0"),
        attrs.evolve(usual, running=True),
        attrs.evolve(usual, registered=False),
    ]
    assert list(_taken(tmp_path, batch)) == ["dev-0", "dev-1", "pat-2", "dev-3"]


def test_a_plain_status_publishes_the_event_the_general_path_publishes() -> None:
    """On the bus, ``PlainStatus.event_data`` is what ``publish`` makes of the general path's
    ``DeviceStatus.event_data`` (lazy data, built only when read, the same dict then)."""
    bus = EventBus()
    plain = PlainStatus("ep-ü", "default", "d" * 64, "default", NOW)
    general = plain.status()
    general.state, general.reason = "applied", "register"
    ours = bus.publish("PROFILE", "ep-ü", plain.event_data())
    theirs = bus.publish("PROFILE", "ep-ü", general.event_data())
    assert type(ours.data) is type(theirs.data) is LazyData
    assert not ours.data.built and not theirs.data.built
    assert dict(ours.data) == dict(theirs.data) == general.to_json()
