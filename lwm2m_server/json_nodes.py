"""LwM2M nodes, registrations and telemetry points as JSON, shared by the HTTP API and the CLI.

The node shapes are the Leshan demo server's, so tools written against Leshan read ours::

    {"kind": "obj", "id": 3, "instances": [...]}
    {"kind": "instance", "id": 0, "resources": [...]}
    {"kind": "singleResource", "id": 0, "type": "STRING", "value": "Acme"}
    {"kind": "multiResource", "id": 7, "type": "INTEGER", "values": {"0": 3800, "1": 5000}}
    {"kind": "resourceInstance", "id": 1, "type": "INTEGER", "value": 5000}

One deliberate difference: values are *typed* JSON (integers and floats are numbers, booleans
are booleans), where Leshan sends numbers as strings for JavaScript's sake. Opaque values are
base64, object links ``"3:0"``, time values integer seconds since the epoch.

Input (``node_from_json``) is forgiving in shape but strict in type: besides the full shapes it
takes a bare value for a single resource or resource instance, ``{"0": v, "1": v}`` for a
multiple resource, ``{"0": v, "7": {"0": v}}`` (resource id → value) for an object instance.
Every value is coerced with the resource type from the client's object model
(``coerce_value``); a value of the wrong type is a ``JsonNodeError`` whose message starts with
the path, so an operator knows which of fifty values was wrong.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping
from typing import Any

from object_models.codecs.link_format import parse_links
from object_models.errors import CodecError, Lwm2mError, ResponseCode
from object_models.model import ModelProvider, ResourceModel, resource_model
from object_models.node import (
    LwM2mMultipleResource,
    LwM2mNode,
    LwM2mObject,
    LwM2mObjectInstance,
    LwM2mResource,
    LwM2mResourceInstance,
    LwM2mSingleResource,
)
from object_models.path import MAX_ID, MAX_INSTANCE_ID, LwM2mPath
from object_models.types import ResourceType, Value, coerce_value, value_to_json

from .core.registration import Registration
from .core.telemetry import TelemetryPoint

__all__ = [
    "JsonNodeError",
    "instance_from_json",
    "links_to_json",
    "node_from_json",
    "node_to_json",
    "registration_to_json",
    "telemetry_to_json",
    "type_from_name",
    "type_name",
    "value_to_jsonable",
]

JsonDict = dict[str, Any]


class JsonNodeError(Lwm2mError):
    """JSON that does not describe a valid node for its path (answered with 400)."""

    code = ResponseCode.BAD_REQUEST


# -- resource types -------------------------------------------------------------------------------

_TYPE_NAMES: dict[ResourceType, str] = {
    ResourceType.STRING: "STRING",
    ResourceType.INTEGER: "INTEGER",
    ResourceType.UNSIGNED_INTEGER: "UNSIGNED_INTEGER",
    ResourceType.FLOAT: "FLOAT",
    ResourceType.BOOLEAN: "BOOLEAN",
    ResourceType.OPAQUE: "OPAQUE",
    ResourceType.TIME: "TIME",
    ResourceType.OBJLNK: "OBJLNK",
    ResourceType.CORELNK: "CORELINK",  # Leshan's spelling
    ResourceType.NONE: "NONE",
}


def type_name(rtype: ResourceType) -> str:
    """The Leshan name of a resource type (``UNSIGNED_INTEGER``, ``CORELINK``)."""
    return _TYPE_NAMES[rtype]


def type_from_name(name: object, where: str = "") -> ResourceType:
    """Parse a type name in Leshan's spelling or the DDF's (``Unsigned Integer``)."""
    if not isinstance(name, str):
        raise JsonNodeError(_at(where, f"resource type must be a string, got {name!r}"))
    key = name.strip().upper()
    for rtype, text in _TYPE_NAMES.items():
        if key == text:
            return rtype
    try:
        return ResourceType.from_name(name)
    except ValueError:
        raise JsonNodeError(_at(where, f"unknown resource type {name!r}")) from None


# -- node -> JSON ---------------------------------------------------------------------------------


def value_to_jsonable(value: Value) -> object:
    """``value_to_json`` plus non-finite floats as strings (JSON has no NaN or Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value_to_json(value)


def node_to_json(node: LwM2mNode) -> JsonDict:
    """The Leshan-shaped JSON of a node (see the module doc)."""
    if isinstance(node, LwM2mObject):
        return {
            "kind": "obj",
            "id": node.id,
            "instances": [node_to_json(i) for _, i in sorted(node.instances.items())],
        }
    if isinstance(node, LwM2mObjectInstance):
        result: JsonDict = {"kind": "instance"}
        if node.id is not None:
            result["id"] = node.id
        result["resources"] = [node_to_json(r) for _, r in sorted(node.resources.items())]
        return result
    if isinstance(node, LwM2mMultipleResource):
        return {
            "kind": "multiResource",
            "id": node.id,
            "type": type_name(node.type),
            "values": {
                str(k): value_to_jsonable(ri.value) for k, ri in sorted(node.instances.items())
            },
        }
    kind = "singleResource" if isinstance(node, LwM2mSingleResource) else "resourceInstance"
    return {
        "kind": kind,
        "id": node.id,
        "type": type_name(node.type),
        "value": value_to_jsonable(node.value),
    }


# -- JSON -> node ---------------------------------------------------------------------------------


def _at(where: str, message: str) -> str:
    return f"{where}: {message}" if where else message


def _is_id_key(key: object, limit: int = MAX_ID) -> bool:
    return (
        isinstance(key, str)
        and re.fullmatch(r"0|[1-9][0-9]{0,4}", key) is not None
        and (int(key) <= limit)
    )


def _id_of(data: Mapping[str, Any], expected: int | None, where: str) -> int | None:
    """The node's ``id`` field, checked against the id its path gives (if any)."""
    if "id" not in data or data["id"] is None:
        return expected
    raw = data["id"]
    if isinstance(raw, bool) or not isinstance(raw, int | str) or not _is_id_key(str(raw)):
        raise JsonNodeError(_at(where, f"invalid id {raw!r}"))
    value = int(raw)
    if expected is not None and value != expected:
        raise JsonNodeError(_at(where, f"node id {value} does not match the path"))
    return value


def _coerce(rtype: ResourceType, value: object, where: str) -> Value:
    if value is None and rtype is not ResourceType.NONE:
        raise JsonNodeError(_at(where, "null is not a value (give the value to write)"))
    try:
        return coerce_value(rtype, value)
    except (ValueError, TypeError) as exc:
        raise JsonNodeError(_at(where, f"{exc} (resource type {type_name(rtype)})")) from None


def _guess(value: object, where: str) -> ResourceType:
    """The type of a JSON value when neither the model nor the node says."""
    if isinstance(value, bool):
        return ResourceType.BOOLEAN
    if isinstance(value, int):
        return ResourceType.INTEGER
    if isinstance(value, float):
        return ResourceType.FLOAT
    if isinstance(value, str):
        return ResourceType.STRING
    if isinstance(value, dict) and set(value) == {"objectId", "objectInstanceId"}:
        return ResourceType.OBJLNK
    raise JsonNodeError(
        _at(where, f'cannot tell the type of {value!r}: unknown resource, give "type"')
    )


def _rtype(
    model: ResourceModel | None, data: Mapping[str, Any] | None, sample: object, where: str
) -> ResourceType:
    """The model's type wins (it is what the device expects); else the node's ``type``; else a
    guess from the JSON value."""
    if model is not None:
        return model.type
    if data is not None and data.get("type") is not None:
        return type_from_name(data["type"], where)
    return _guess(sample, where)


def _is_full_resource(data: Mapping[str, Any]) -> bool:
    return "kind" in data or "value" in data or "values" in data


def _values_map(raw: object, where: str) -> dict[int, object]:
    """``{"0": v, "1": v}`` or ``[v, v]`` → ``{0: v, 1: v}``."""
    if isinstance(raw, list):
        return dict(enumerate(raw))
    if not isinstance(raw, dict):
        raise JsonNodeError(_at(where, 'values of a multiple resource must be {"id": value}'))
    result: dict[int, object] = {}
    for key, value in raw.items():
        if not _is_id_key(key):
            raise JsonNodeError(_at(where, f"resource instance id {key!r} is not 0..65535"))
        result[int(key)] = value
    return result


def _multiple(
    resource_id: int,
    values: Mapping[int, object],
    model: ResourceModel | None,
    data: Mapping[str, Any] | None,
    where: str,
) -> LwM2mMultipleResource:
    if model is not None and not model.multiple:
        raise JsonNodeError(
            _at(where, f"resource {model.name!r} is single-instance: give one value")
        )
    sample = next(iter(values.values()), "")
    rtype = _rtype(model, data, sample, where)
    instances = {
        ri: LwM2mResourceInstance(ri, _coerce(rtype, v, f"{where}/{ri}"), rtype)
        for ri, v in values.items()
    }
    return LwM2mMultipleResource(resource_id, instances, rtype)


def _single(
    resource_id: int,
    value: object,
    model: ResourceModel | None,
    data: Mapping[str, Any] | None,
    where: str,
) -> LwM2mSingleResource:
    if model is not None and model.multiple:
        raise JsonNodeError(
            _at(
                where,
                f"resource {model.name!r} is multiple-instance: give "
                '{"0": value, ...} or a multiResource node',
            )
        )
    rtype = _rtype(model, data, value, where)
    return LwM2mSingleResource(resource_id, _coerce(rtype, value, where), rtype)


def _resource(
    data: object, object_id: int, resource_id: int | None, models: ModelProvider, where: str
) -> LwM2mResource:
    if isinstance(data, dict) and _is_full_resource(data):
        rid = _id_of(data, resource_id, where)
        if rid is None:
            raise JsonNodeError(_at(where, "resource node without an id"))
        if resource_id is None:
            where = f"{where}/{rid}"
        model = resource_model(models, object_id, rid)
        kind = data.get("kind")
        if kind == "multiResource" or (kind is None and "values" in data):
            return _multiple(rid, _values_map(data.get("values"), where), model, data, where)
        if kind not in (None, "singleResource"):
            raise JsonNodeError(_at(where, f"expected a resource node, got kind {kind!r}"))
        if "value" not in data:
            raise JsonNodeError(_at(where, 'singleResource node without "value"'))
        return _single(rid, data["value"], model, data, where)
    if resource_id is None:
        raise JsonNodeError(_at(where, "resource node without an id"))
    model = resource_model(models, object_id, resource_id)
    if isinstance(data, list) or (
        isinstance(data, dict) and data and all(_is_id_key(k) for k in data)
    ):
        return _multiple(resource_id, _values_map(data, where), model, None, where)
    if isinstance(data, dict) and not data and model is not None and model.multiple:
        return LwM2mMultipleResource(resource_id, {}, model.type)
    return _single(resource_id, data, model, None, where)


def _resource_instance(
    data: object, path: LwM2mPath, models: ModelProvider, where: str
) -> LwM2mResourceInstance:
    object_id, _, resource_id, ri = path.ids
    model = resource_model(models, object_id, resource_id)
    if model is not None and not model.multiple:
        raise JsonNodeError(_at(where, f"resource {model.name!r} is single-instance"))
    node_data: Mapping[str, Any] | None = None
    value = data
    if isinstance(data, dict) and ("kind" in data or "value" in data):
        kind = data.get("kind")
        if kind not in (None, "resourceInstance"):
            raise JsonNodeError(_at(where, f"expected a resourceInstance node, got {kind!r}"))
        _id_of(data, ri, where)
        if "value" not in data:
            raise JsonNodeError(_at(where, 'resourceInstance node without "value"'))
        node_data, value = data, data["value"]
    rtype = _rtype(model, node_data, value, where)
    return LwM2mResourceInstance(ri, _coerce(rtype, value, where), rtype)


def instance_from_json(
    data: object, object_id: int, models: ModelProvider, instance_id: int | None = None
) -> LwM2mObjectInstance:
    """An object instance from ``{"kind":"instance","id":..,"resources":[...]}`` or the short
    ``{"resourceId": value-or-node}`` (optionally with ``"id"``). ``instance_id`` (from the path)
    is used when the data has no id and must agree with one it has; without either the id stays
    ``None`` (Create: the client picks it).
    """
    where = f"/{object_id}" + ("" if instance_id is None else f"/{instance_id}")
    if not isinstance(data, dict):
        raise JsonNodeError(_at(where, "an object instance must be a JSON object"))
    full = "kind" in data or "resources" in data
    if full and data.get("kind") not in (None, "instance"):
        raise JsonNodeError(_at(where, f"expected an instance node, got kind {data['kind']!r}"))
    iid = _id_of(data, instance_id, where)
    if iid is not None and iid > MAX_INSTANCE_ID:
        raise JsonNodeError(_at(where, f"object instance id {iid} is reserved"))
    if iid is not None and instance_id is None:
        where = f"{where}/{iid}"
    # the short form may still name its instance: {"id": 7, "5700": 12.5}
    raw = data.get("resources", []) if full else {k: v for k, v in data.items() if k != "id"}
    resources: dict[int, LwM2mResource] = {}
    if isinstance(raw, list):
        for item in raw:
            res = _resource(item, object_id, None, models, where)
            if res.id in resources:
                raise JsonNodeError(_at(f"{where}/{res.id}", "resource given twice"))
            resources[res.id] = res
    elif isinstance(raw, dict):
        for key, value in raw.items():
            if not _is_id_key(key):
                raise JsonNodeError(_at(where, f"resource id {key!r} is not 0..65535"))
            rid = int(key)
            resources[rid] = _resource(value, object_id, rid, models, f"{where}/{rid}")
    else:
        raise JsonNodeError(_at(where, '"resources" must be a list of nodes or {"id": value}'))
    return LwM2mObjectInstance(iid, resources)


def _object(data: object, object_id: int, models: ModelProvider) -> LwM2mObject:
    where = f"/{object_id}"
    if not isinstance(data, dict):
        raise JsonNodeError(_at(where, "an object must be a JSON object"))
    instances: dict[int, LwM2mObjectInstance] = {}
    if "kind" in data or "instances" in data:
        if data.get("kind") not in (None, "obj"):
            raise JsonNodeError(_at(where, f"expected an obj node, got kind {data['kind']!r}"))
        _id_of(data, object_id, where)
        raw = data.get("instances", [])
        if not isinstance(raw, list):
            raise JsonNodeError(_at(where, '"instances" must be a list of instance nodes'))
        for item in raw:
            inst = instance_from_json(item, object_id, models)
            if inst.id is None:
                raise JsonNodeError(_at(where, "an instance inside an object needs an id"))
            instances[inst.id] = inst
    else:
        for key, value in data.items():
            if not _is_id_key(key, MAX_INSTANCE_ID):
                raise JsonNodeError(_at(where, f"object instance id {key!r} is not 0..65534"))
            instances[int(key)] = instance_from_json(value, object_id, models, int(key))
    return LwM2mObject(object_id, instances)


def node_from_json(data: object, path: LwM2mPath, models: ModelProvider) -> LwM2mNode:
    """The node at ``path`` described by ``data`` (see the module doc for accepted shapes).

    Raises ``JsonNodeError`` (400) naming the path of the first bad value.
    """
    if path.is_root:
        raise JsonNodeError("cannot build a node for the root path")
    where = str(path)
    if path.is_object:
        return _object(data, path.ids[0], models)
    if path.is_object_instance:
        return instance_from_json(data, path.ids[0], models, path.ids[1])
    if path.is_resource:
        return _resource(data, path.ids[0], path.ids[2], models, where)
    return _resource_instance(data, path, models, where)


# -- links ----------------------------------------------------------------------------------------


def links_to_json(text: str | None) -> list[JsonDict]:
    """CoRE link-format text as ``[{"url": "/3/0", "attributes": {"ver": "1.1"}}]`` (Leshan's
    shape); attributes without a value map to ``null``. Text that does not parse gives ``[]``:
    this only displays what a device said, and callers keep the raw text next to it."""
    try:
        links = parse_links(text or "")
    except CodecError:
        return []
    return [{"url": link.target, "attributes": dict(link.params)} for link in links]


# -- registrations and telemetry ------------------------------------------------------------------


def _iso(seconds: float) -> str:
    stamp = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def registration_to_json(reg: Registration, *, sleeping: bool | None = None) -> JsonDict:
    """A registration in the Leshan demo's field names, plus ``expiresAt`` and ``transport``.

    ``sleeping`` is only reported for queue-mode clients and only when the caller knows it.
    """
    available: dict[str, list[int]] = {
        str(o): sorted(ids) for o, ids in sorted(reg.object_links.instances.items())
    }
    result: JsonDict = {
        "endpoint": reg.endpoint,
        "registrationId": reg.registration_id,
        "registrationDate": _iso(reg.registered_at),
        "lastUpdate": _iso(reg.last_update),
        "expiresAt": _iso(reg.expires_at),
        "address": str(reg.address),
        "smsNumber": reg.sms_number,
        "lwM2mVersion": reg.lwm2m_version,
        "lifetime": reg.lifetime,
        "bindingMode": reg.binding,
        "rootPath": reg.object_links.root_path,
        "objectLinks": links_to_json(reg.object_links.text),
        "supportedObjects": {str(o): v for o, v in sorted(reg.supported_objects.items())},
        "availableInstances": available,
        "secure": reg.identity is not None,
        "transport": reg.transport,
        "additionalRegistrationAttributes": dict(reg.additional_attributes),
        "queuemode": reg.queue_mode,
    }
    if reg.identity is not None:
        result["identity"] = {"mode": reg.identity.mode, "identity": reg.identity.identity}
    if reg.queue_mode and sleeping is not None:
        result["sleeping"] = sleeping
    return result


def telemetry_to_json(point: TelemetryPoint) -> JsonDict:
    """One telemetry point: ``ts`` in milliseconds since the epoch and ``time`` as ISO 8601."""
    return {
        "endpoint": point.endpoint,
        "path": point.path,
        "key": point.key,
        "ts": point.ts_ms,
        "time": _iso(point.ts_ms / 1000),
        "type": type_name(point.type),
        "value": value_to_jsonable(point.value),
    }
