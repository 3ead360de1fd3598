"""The profile engine's telemetry mapping without a sink, for a profile that maps nothing (the
built-in default, the notification path's usual case), gives what the general mapping gives:
the same telemetry to store and the same TELEMETRY events (built when read)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from keystore.store.profiles import SqliteProfileStore
from lwm2m_server.core.telemetry import TelemetryPoint
from lwm2m_server.operations import ServerOperations
from lwm2m_server.profiles.engine import ProfileEngine
from lwm2m_server.profiles.sinks.base import SinkRecord, SinkSet
from lwm2m_server.store.device_state import SqliteDeviceStateStore
from lwm2m_server.store.sqlite import SqliteStore
from object_models.types import ResourceType

from .helpers import REGISTRY, registration


class _Recording:
    """A sink that keeps what it is offered (its presence takes the general path)."""

    name = "recording"

    def __init__(self) -> None:
        self.records: list[SinkRecord] = []

    async def start(self) -> None:
        pass

    def offer(self, record: SinkRecord) -> None:
        self.records.append(record)

    async def stop(self) -> None:
        pass


Published = list[tuple[str, str, dict[str, Any]]]


@contextmanager
def _engines(
    default: Mapping[str, Any] | None,
) -> Iterator[dict[bool, tuple[ProfileEngine, Published]]]:
    """Two engines over one store, the same default profile (``default``, or the built-in one
    when None): one with a sink (the general mapping), one without."""
    with tempfile.TemporaryDirectory() as tmp:
        base = SqliteStore(Path(tmp) / "s.sqlite")
        try:
            engines: dict[bool, tuple[ProfileEngine, Published]] = {}
            for with_sink in (True, False):
                published: Published = []

                def publish(
                    kind: str, endpoint: str, data: Any, out: Published = published
                ) -> None:
                    out.append((kind, endpoint, dict(data() if callable(data) else data)))

                engine = ProfileEngine(
                    cast(ServerOperations, None),
                    SqliteProfileStore(base),
                    SqliteDeviceStateStore(base),
                    REGISTRY,
                    listen=lambda callback: lambda: None,
                    publish=publish,
                    default_profile="bare" if default is not None else "default",
                    sinks=SinkSet([_Recording()]) if with_sink else None,
                )
                if default is not None and with_sink:
                    engine.catalog.put(dict(default), "bare")
                engine.catalog.load()
                engines[with_sink] = (engine, published)
            yield engines
        finally:
            base.close()


_points = st.lists(
    st.builds(
        TelemetryPoint,
        st.just("dev-1"),
        st.sampled_from(["/3303/0/5700", "/3/0/9", "/3/0/13", "/32769/0/1"]),
        st.sampled_from(["sensorValue", "batteryLevel", "k"]),
        st.sampled_from([1_700_000_000_000, 1_700_000_000_500]),
        st.one_of(st.floats(allow_nan=False), st.integers(-(2**31), 2**31), st.text(max_size=4)),
        st.sampled_from([ResourceType.FLOAT, ResourceType.INTEGER, ResourceType.STRING]),
    ),
    max_size=4,
)


def _check(
    engines: dict[bool, tuple[ProfileEngine, Published]], points: list[TelemetryPoint]
) -> None:
    for _, published in engines.values():
        published.clear()
    general, general_events = engines[True]
    fast, fast_events = engines[False]
    stored = general.map_telemetry(registration(), list(points), "notification")
    assert fast.map_telemetry(registration(), list(points), "notification") == stored
    assert fast_events == general_events
    assert [e for e in fast_events if e[0] == "TELEMETRY"] == fast_events


@settings(max_examples=60, deadline=None)
@given(_points)
def test_the_built_in_default_profile_maps_as_the_general_mapping(
    points: list[TelemetryPoint],
) -> None:
    with _engines(None) as engines:
        _check(engines, points)


@settings(max_examples=30, deadline=None)
@given(_points, st.booleans())
def test_a_profile_without_resources_maps_as_the_general_mapping(
    points: list[TelemetryPoint], keep: bool
) -> None:
    with _engines({"name": "bare", "resources": {}, "keep_unmapped": keep}) as engines:
        _check(engines, points)
