"""The hot path's hand-written shortcuts give exactly what the general code gives."""

from __future__ import annotations

import attrs
from hypothesis import given
from hypothesis import strategies as st

from keystore.store.database import dumps
from lwm2m_server.core.observations import Observation, ObservationIndex
from lwm2m_server.core.telemetry import (
    TelemetryPoint,
    points_from_nodes,
    points_from_timestamped,
    telemetry_key,
)
from lwm2m_server.store.records import check_point, value_text, value_to_json
from object_models.model import ObjectModel, Operations, ResourceModel, StaticModels
from object_models.node import (
    LwM2mMultipleResource,
    LwM2mNode,
    LwM2mObjectInstance,
    LwM2mResourceInstance,
    LwM2mSingleResource,
    TimestampedNodes,
    flatten,
)
from object_models.path import LwM2mPath
from object_models.types import ResourceType

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.booleans(),
    st.none(),
    st.text(max_size=20),
    st.binary(max_size=20),
)


@given(values)
def test_value_text_is_the_json_of_the_tagged_value(value: object) -> None:
    assert value_text(value) == dumps(value_to_json(value))  # type: ignore[arg-type]


def test_a_notification_changes_only_the_observation_s_last_notification() -> None:
    """``on_notification`` writes ``attrs.evolve`` out by hand: every other field is kept
    (a field added to ``Observation`` and forgotten there fails here)."""
    observation = Observation(
        token=b"tok",
        endpoint="dev",
        registration_id="reg",
        paths=(LwM2mPath.parse("/3303/0/5700"), LwM2mPath.parse("/3303/0/5701")),
        content_format=112,
        created_at=12.5,
        composite=True,
        active=True,
        last_notification=3.0,
    )
    copied = [f.name for f in attrs.fields(Observation)]
    assert len(copied) == 9, f"on_notification copies 9 fields; Observation has {copied}"
    index = ObservationIndex()
    index.add(observation)
    updated = index.on_notification(b"tok", 99.0)
    assert updated == attrs.evolve(observation, last_notification=99.0)
    assert index.by_token(b"tok") is updated


# -- notifications (session 7): points, rows, and the default profile's mapping ---------------

_MODELS = StaticModels.of(
    ObjectModel(
        3303,
        "Temperature",
        {
            5700: ResourceModel(
                5700, "Sensor Value", Operations.R, False, False, ResourceType.FLOAT
            ),
            5701: ResourceModel(5701, "Units", Operations.R, False, False, ResourceType.STRING),
            6: ResourceModel(6, "Many", Operations.R, True, False, ResourceType.INTEGER),
        },
    )
)
_types = st.sampled_from(list(ResourceType))
_leaf_ids = st.sampled_from([5700, 5701, 6, 7])
_single = st.builds(LwM2mSingleResource, _leaf_ids, values, _types)
_multiple = st.builds(
    LwM2mMultipleResource,
    _leaf_ids,
    st.dictionaries(
        st.integers(0, 3),
        st.builds(LwM2mResourceInstance, st.integers(0, 3), values, _types),
        max_size=3,
    ).map(lambda d: {k: attrs.evolve(v, id=k) for k, v in d.items()}),
    _types,
)
_instance = st.builds(
    LwM2mObjectInstance,
    st.integers(0, 2),
    st.dictionaries(_leaf_ids, st.one_of(_single, _multiple), max_size=3).map(
        lambda d: {k: attrs.evolve(v, id=k) for k, v in d.items()}
    ),
)


@st.composite
def _nodes(draw: st.DrawFn) -> dict[LwM2mPath, LwM2mNode | None]:
    """Nodes by path as decoders give them: resources at /3303/i/r, instances at /3303/i."""
    nodes: dict[LwM2mPath, LwM2mNode | None] = {}
    for _ in range(draw(st.integers(0, 4))):
        instance = draw(st.integers(0, 2))
        node = draw(st.one_of(st.none(), _single, _multiple, _instance))
        if node is None or isinstance(node, LwM2mObjectInstance):
            path = LwM2mPath(3303, instance)
            if node is not None:
                node = attrs.evolve(node, id=instance)
        else:
            path = LwM2mPath(3303, instance, node.id)
        nodes[path] = node
    return nodes


def _points_in_general(
    endpoint: str, nodes: dict[LwM2mPath, LwM2mNode | None], stamp: int
) -> list[TelemetryPoint]:
    """``points_from_nodes`` as it was before its single-resource shortcut: every node
    through ``flatten``."""
    points = []
    for path, node in nodes.items():
        if node is None:
            continue
        for leaf_path, rtype, value in flatten(path, node):
            if rtype is ResourceType.NONE:
                continue
            key = telemetry_key(leaf_path, _MODELS, None, str(leaf_path))
            points.append(TelemetryPoint(endpoint, str(leaf_path), key, stamp, value, rtype))
    return points


@given(_nodes(), st.one_of(st.none(), st.floats(0, 2e9)))
def test_points_of_a_notification_are_those_of_the_general_flattening(
    nodes: dict[LwM2mPath, LwM2mNode | None], ts: float | None
) -> None:
    now = 1_700_000_000.25
    stamp = round((now if ts is None else ts) * 1000)
    expected = _fields(_points_in_general("dev", nodes, stamp))
    assert _fields(points_from_nodes("dev", nodes, now=now, models=_MODELS, ts=ts)) == expected
    present = {path: node for path, node in nodes.items() if node is not None}
    one_entry = TimestampedNodes(((ts, present),))
    assert _fields(points_from_timestamped("dev", one_entry, now=now, models=_MODELS)) == expected
    two = TimestampedNodes(((ts, present), (None, present)))
    assert _fields(points_from_timestamped("dev", two, now=now, models=_MODELS)) == expected + (
        _fields(_points_in_general("dev", nodes, round(now * 1000)))
    )


def _fields(points: list[TelemetryPoint]) -> list[tuple[object, ...]]:
    """The points' fields as tuples: a NaN value is the same object on both sides, which a
    tuple compares by identity (``TelemetryPoint.__eq__`` compares it with ``==``)."""
    return [attrs.astuple(p, recurse=False) for p in points]


class _Str(str):
    """A str subclass: not the shortcut's plain str, accepted by the general check."""


def _check_point_in_general(point: TelemetryPoint) -> tuple[str, str, str, int, str, str]:
    """``check_point`` as it was before its shortcuts."""
    if not isinstance(point, TelemetryPoint):
        raise TypeError(f"expected a TelemetryPoint, got {type(point).__name__}")
    endpoint, path, key, ts_ms = point.endpoint, point.path, point.key, point.ts_ms
    for name, text in (("endpoint", endpoint), ("path", path), ("key", key)):
        if not text or not isinstance(text, str):
            raise ValueError(f"telemetry point {name} must be a non-empty string")
    if type(ts_ms) is not int and (isinstance(ts_ms, bool) or not isinstance(ts_ms, int)):
        raise TypeError(f"telemetry ts_ms must be an int, got {ts_ms!r}")
    if not -(2**63) <= ts_ms < 2**63:
        raise ValueError(f"telemetry ts_ms {ts_ms} is out of range")
    if not isinstance(point.type, ResourceType):
        raise TypeError(f"telemetry type must be a ResourceType, got {point.type!r}")
    return (endpoint, path, key, ts_ms, point.type.value, value_text(point.value))


_texts = st.one_of(
    st.text(max_size=5), st.text(min_size=1, max_size=5).map(_Str), st.none(), st.integers()
)


@given(
    _texts,
    _texts,
    _texts,
    st.one_of(st.integers(-(2**64), 2**64), st.booleans(), st.floats(), st.none()),
    st.one_of(_types, st.sampled_from(["float", None, 3])),
    values,
)
def test_a_point_s_row_and_refusal_are_those_of_the_general_check(
    endpoint: object, path: object, key: object, ts_ms: object, rtype: object, value: object
) -> None:
    point = TelemetryPoint(endpoint, path, key, ts_ms, value, rtype)  # type: ignore[arg-type]
    try:
        expected: object = _check_point_in_general(point)
    except (TypeError, ValueError) as exc:
        expected = (type(exc), str(exc))
    try:
        got: object = check_point(point)
    except (TypeError, ValueError) as exc:
        got = (type(exc), str(exc))
    assert got == expected
