"""Telemetry points -> what the profile calls them: telemetry under the profile's key, or device
attributes; values of the wrong type for the mapping are set aside with the reason.

Pure: ``map_points(profile, points)`` only sorts and renames. The engine stores and publishes the
result; the service stores the telemetry part (``TelemetryMapper``).

A value whose type differs from the mapping's (the model's, or the profile's ``type:``) is
converted with ``coerce_value`` when that is exact (``"21.5"`` -> 21.5, 3 -> 3.0); otherwise it
is not stored and becomes a ``ValueProblem`` for the device's status. Unmapped paths keep their
default telemetry key (``keep_unmapped: true``, the default) or are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from object_models.path import LwM2mPath
from object_models.types import ResourceType, coerce_value

from ..core.telemetry import TelemetryPoint
from .model import Kind, Profile


@attrs.frozen
class ValueProblem:
    path: str
    key: str
    message: str
    ts_ms: int


@attrs.frozen
class Mapped:
    telemetry: list[TelemetryPoint] = attrs.field(factory=list)
    attributes: list[TelemetryPoint] = attrs.field(factory=list)
    problems: list[ValueProblem] = attrs.field(factory=list)


def _typed(point: TelemetryPoint, key: str, rtype: ResourceType) -> TelemetryPoint:
    if point.type is rtype:
        return attrs.evolve(point, key=key)
    value = coerce_value(rtype, point.value)
    if isinstance(value, float) and isinstance(point.value, int | float) and value != point.value:
        raise ValueError(f"{point.value!r} does not convert exactly")
    return attrs.evolve(point, key=key, value=value, type=rtype)


def map_points(profile: Profile, points: Iterable[TelemetryPoint]) -> Mapped:
    result = Mapped()
    if not profile.resources:  # nothing mapped (the built-in default): no path to parse
        if profile.keep_unmapped:
            result.telemetry.extend(points)
        return result
    for point in points:
        try:
            path = LwM2mPath.parse(point.path)
        except ValueError:
            path = None
        found = None if path is None else profile.mapping_for(path)
        if found is None:
            if profile.keep_unmapped:
                result.telemetry.append(point)
            continue
        mapping, key = found
        try:
            typed = _typed(point, key, mapping.type)
        except (TypeError, ValueError) as exc:
            result.problems.append(
                ValueProblem(
                    point.path,
                    key,
                    f"{point.type.value} value {point.value!r} does not fit the mapping's type "
                    f"{mapping.type.value}: {exc}",
                    point.ts_ms,
                )
            )
            continue
        if mapping.kind is Kind.ATTRIBUTE:
            result.attributes.append(typed)
        else:
            result.telemetry.append(typed)
    return result
