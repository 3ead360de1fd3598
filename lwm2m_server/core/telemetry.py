"""Decoded LwM2M nodes → flat telemetry points (what dashboards and the telemetry store keep).

Every leaf value becomes one ``TelemetryPoint(endpoint, path, key, ts_ms, value, type)``.
``path`` is the exact LwM2M path string and is what identifies a series; ``key`` is a friendlier
name derived from the object model:

* the resource name in lowerCamelCase: words split on anything that is not a letter or a digit,
  the first word all lower case, the following ones capitalised (``Manufacturer`` →
  ``manufacturer``, ``Sensor Value`` → ``sensorValue``, ``SMS Number`` → ``smsNumber``,
  ``Router IP Addresses`` → ``routerIpAddresses``);
* ``_{instance}`` appended when the object instance is not 0 (``/3303/1/5700`` →
  ``sensorValue_1``), so the common single-instance case keeps the plain name;
* ``[{ri}]`` appended for a resource instance of a multiple resource
  (``/3/0/6/1`` → ``availablePowerSources[1]``);
* when the model or the resource is unknown, or the name yields no word, the key is the path
  string itself (``/32769/0/1``).

Two objects can share a resource name (Temperature and Humidity both have ``Sensor Value``):
keys are a convenience and may collide across objects; ``path`` never does. Deployments that
want distinct names pass ``overrides`` (a path string → key mapping, consulted first).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping

import attrs

from object_models.model import ModelProvider
from object_models.node import LwM2mNode, LwM2mSingleResource, TimestampedNodes, flatten
from object_models.path import LwM2mPath
from object_models.types import ResourceType, Value


@attrs.frozen
class TelemetryPoint:
    endpoint: str
    path: str
    key: str
    ts_ms: int
    value: Value
    type: ResourceType


@functools.lru_cache(maxsize=4096)
def lower_camel(name: str) -> str:
    """``"Sensor Value"`` → ``"sensorValue"`` (see the module rules); ``""`` if no word.
    Cached: resource names are few, and every value of every notification needs its key."""
    words = [w for w in re.split(r"[^0-9A-Za-z]+", name) if w]
    if not words:
        return ""
    first = words[0].lower()
    return first + "".join(w[0].upper() + w[1:].lower() for w in words[1:])


@functools.lru_cache(maxsize=8192)
def path_text(path: LwM2mPath) -> str:
    """``str(path)``, remembered: every value of every notification stores its path as text,
    and the few observed paths repeat (formatting one cost more than the cached lookup)."""
    return str(path)


def telemetry_key(
    path: LwM2mPath,
    models: ModelProvider,
    overrides: Mapping[str, str] | None = None,
    text: str | None = None,
) -> str:
    """The key of the leaf at ``path`` (a resource or resource-instance path); ``text`` is
    ``str(path)`` when the caller has it (the point stores it too: formatted once)."""
    if text is None:
        text = str(path)
    if overrides and text in overrides:
        return overrides[text]
    if path.depth < 3:
        return text
    object_id, instance_id, resource_id = path.ids[:3]
    model = models.get_object(object_id)
    resource = None if model is None else model.resource(resource_id)
    base = "" if resource is None else lower_camel(resource.name)
    if not base:
        return text
    if instance_id != 0:
        base += f"_{instance_id}"
    if path.resource_instance_id is not None:
        base += f"[{path.resource_instance_id}]"
    return base


def _ts_ms(ts: float | None, now: float) -> int:
    value = now if ts is None or not math.isfinite(ts) else ts
    return round(value * 1000)


def points_from_nodes(
    endpoint: str,
    nodes: Mapping[LwM2mPath, LwM2mNode | None],
    *,
    now: float,
    models: ModelProvider,
    ts: float | None = None,
    overrides: Mapping[str, str] | None = None,
) -> list[TelemetryPoint]:
    """Points for the nodes of a Read/notification (``None`` nodes, i.e. "no value at this
    path" in a composite answer, yield nothing). ``ts`` (seconds) defaults to ``now``; the
    value type is the node's, which the codec set from the model or the payload."""
    stamp = _ts_ms(ts, now)
    points: list[TelemetryPoint] = []
    for path, node in nodes.items():
        if node is None:
            continue
        if node.__class__ is LwM2mSingleResource:  # what flatten yields for it, without it
            rtype = node.type
            if rtype is not ResourceType.NONE:
                text = path_text(path)
                key = telemetry_key(path, models, overrides, text)
                points.append(TelemetryPoint(endpoint, text, key, stamp, node.value, rtype))
            continue
        for leaf_path, rtype, value in flatten(path, node):
            if rtype is ResourceType.NONE:
                continue
            text = path_text(leaf_path)
            key = telemetry_key(leaf_path, models, overrides, text)
            points.append(TelemetryPoint(endpoint, text, key, stamp, value, rtype))
    return points


def points_from_timestamped(
    endpoint: str,
    data: TimestampedNodes,
    *,
    now: float,
    models: ModelProvider,
    overrides: Mapping[str, str] | None = None,
) -> list[TelemetryPoint]:
    """Points for a SenML-style notification or Send: each entry at its own time (``now`` for
    entries without a time), in payload order."""
    entries = data.entries
    if len(entries) == 1:  # a notification's value: its list as it is
        ts, nodes = entries[0]
        return points_from_nodes(
            endpoint, nodes, now=now, models=models, ts=ts, overrides=overrides
        )
    points: list[TelemetryPoint] = []
    for ts, nodes in entries:
        points.extend(
            points_from_nodes(endpoint, nodes, now=now, models=models, ts=ts, overrides=overrides)
        )
    return points


def latest_by_path(points: Iterable[TelemetryPoint]) -> dict[str, TelemetryPoint]:
    """The newest point per path (later points win on equal timestamps)."""
    result: dict[str, TelemetryPoint] = {}
    for point in points:
        old = result.get(point.path)
        if old is None or point.ts_ms >= old.ts_ms:
            result[point.path] = point
    return result
