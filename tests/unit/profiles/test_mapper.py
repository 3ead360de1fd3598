"""Points -> profile keys, telemetry or attributes; wrong types set aside."""

from __future__ import annotations

from lwm2m_server.core.telemetry import TelemetryPoint
from lwm2m_server.profiles.engine import telemetry_records
from lwm2m_server.profiles.mapper import map_points
from object_models.types import ResourceType as T

from .helpers import profile


def point(
    path: str, value: object, rtype: T, key: str = "default", ts: int = 1000
) -> TelemetryPoint:
    return TelemetryPoint("dev-1", path, key, ts, value, rtype)  # type: ignore[arg-type]


def test_keys_kinds_and_unmapped() -> None:
    mapped = map_points(
        profile(),
        [
            point("/3303/0/5700", 21.5, T.FLOAT),
            point("/3303/0/5701", "Cel", T.STRING),
            point("/3/0/13", 1700000000, T.TIME, key="currentTime"),
        ],
    )
    assert [(p.key, p.value) for p in mapped.telemetry] == [
        ("temperature", 21.5),
        ("currentTime", 1700000000),
    ]
    assert [(p.key, p.value) for p in mapped.attributes] == [("units", "Cel")]
    dropped = map_points(profile(keep_unmapped=False), [point("/3/0/13", 1, T.TIME)])
    assert dropped.telemetry == [] and dropped.problems == []


def test_exact_conversions_pass_and_wrong_types_are_problems() -> None:
    mapped = map_points(
        profile(),
        [
            point("/3303/0/5700", "22.5", T.STRING),  # SenML "vs" of a float resource
            point("/3/0/9", "full", T.STRING),
            point("/3/0/9", 80, T.INTEGER),
        ],
    )
    assert [(p.key, p.value, p.type) for p in mapped.telemetry] == [
        ("temperature", 22.5, T.FLOAT),
        ("batteryLevel", 80, T.INTEGER),
    ]
    assert [(p.path, p.key) for p in mapped.problems] == [("/3/0/9", "batteryLevel")]
    typed = profile(resources={"/3303/0/5700": {"key": "t", "type": "integer"}})
    problem = map_points(typed, [point("/3303/0/5700", 21.5, T.FLOAT)]).problems[0]
    assert "Integer" in problem.message


def test_resource_instances_of_a_mapped_resource() -> None:
    mapped = map_points(
        profile(resources={"/3/0/7": {"key": "voltage"}}),
        [point("/3/0/7/0", 3800, T.INTEGER), point("/3/0/7/1", 5000, T.INTEGER)],
    )
    assert [p.key for p in mapped.telemetry] == ["voltage[0]", "voltage[1]"]


def test_thingsboard_records_group_by_timestamp() -> None:
    points = [
        point("/a", 1, T.INTEGER, key="a", ts=2),
        point("/b", 2, T.INTEGER, key="b", ts=1),
        point("/c", 3, T.INTEGER, key="c", ts=2),
    ]
    assert telemetry_records(points) == [
        {"ts": 1, "values": {"b": 2}},
        {"ts": 2, "values": {"a": 1, "c": 3}},
    ]
