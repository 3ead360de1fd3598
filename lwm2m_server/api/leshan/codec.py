"""LwM2M values and nodes in the JSON of the Leshan demo server (its ``JacksonLwM2mNodeSerializer``
and ``JacksonLwM2mNodeDeserializer``), so that Leshan's web UI and scripts read and write the
values they mean.

Why a codec of its own: our native JSON is typed (numbers as numbers, opaque as base64, Time in
seconds); Leshan's is not, and the two overlap in ways that corrupt data silently when one is
read as the other: ``"0102abcd"`` is valid hex *and* valid base64, ``1700000000000`` is a valid
Time in milliseconds *and* in seconds (year 55,800). So the dialect is chosen by the URL, never
guessed from the value, and each value is checked against the resource type with Leshan's rules:

| type             | Leshan writes                | Leshan reads                            |
|------------------|------------------------------|-----------------------------------------|
| STRING           | string                       | string only                             |
| INTEGER          | decimal string ``"-5"``      | decimal string, or an integral number   |
| UNSIGNED_INTEGER | decimal string               | decimal string, or an integral number   |
| FLOAT            | ``Double.toString`` string   | numeric string (finite), or a number    |
| BOOLEAN          | ``true``/``false``           | JSON boolean only                       |
| OPAQUE           | lowercase hex string         | hex string (either case, even length)   |
| TIME             | epoch milliseconds (number)  | integral number of epoch milliseconds   |
| OBJLNK           | ``{objectId, objectInstanceId, nullLink}`` | object with the two ids   |
| CORELINK         | link-format string           | link-format string                      |

Devices keep Time in whole seconds (every LwM2M content format encodes seconds): milliseconds
are truncated toward the past on the way in, as Leshan's encoders do.

A value that does not fit is a ``LeshanValueError`` (HTTP 400) naming the path, the resource
type and the form expected.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from object_models.errors import Lwm2mError, ResponseCode
from object_models.model import ModelProvider, resource_model
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
from object_models.types import INT64_MAX, INT64_MIN, UINT64_MAX, ObjectLink, ResourceType, Value

from ...json_nodes import type_from_name, type_name

JsonDict = dict[str, Any]


class LeshanValueError(Lwm2mError):
    """A Leshan-dialect body that does not describe a valid node or value (HTTP 400)."""

    code = ResponseCode.BAD_REQUEST


EXPECTED: dict[ResourceType, str] = {
    ResourceType.STRING: "a JSON string",
    ResourceType.INTEGER: 'a decimal string like "-42" (a JSON integer is tolerated)',
    ResourceType.UNSIGNED_INTEGER: 'a decimal string like "42" (a JSON integer is tolerated)',
    ResourceType.FLOAT: 'a numeric string like "21.5" (a JSON number is tolerated)',
    ResourceType.BOOLEAN: "a JSON boolean (true or false)",
    ResourceType.OPAQUE: 'a hex string like "0102abcd" (even number of hex digits)',
    ResourceType.TIME: "an integral JSON number of milliseconds since the epoch",
    ResourceType.OBJLNK: '{"objectId": integer, "objectInstanceId": integer}',
    ResourceType.CORELNK: 'a CoRE link-format string like "</3/0>"',
    ResourceType.NONE: "no value",
}
"""What each type takes in a Leshan-dialect body: the text of the 400 that refuses a value."""


# -- values out ------------------------------------------------------------------------------------


def java_double(value: float) -> str:
    """``Double.toString``: plain decimal for 1e-3 <= |v| < 1e7 (always with a fraction digit),
    otherwise ``d.dddE±n``; ``NaN``, ``Infinity``, ``-Infinity`` as Java spells them."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    magnitude = abs(value)
    sign = "-" if value < 0 else ""
    exact = Decimal(repr(magnitude)).normalize()  # repr: the shortest digits that round-trip
    digits = "".join(map(str, exact.as_tuple().digits))
    if 1e-3 <= magnitude < 1e7:
        text = format(exact, "f")
        return sign + (text if "." in text else text + ".0")
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{exact.adjusted()}"


def value_out(rtype: ResourceType, value: Value) -> object:
    """One value as Leshan's serializer writes it (see the module table)."""
    if value is None:
        return None
    if rtype is ResourceType.OPAQUE and isinstance(value, bytes):
        return value.hex()
    if rtype in (ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER):
        return str(int(value)) if isinstance(value, int | float) else str(value)
    if rtype is ResourceType.FLOAT:
        return java_double(float(value)) if isinstance(value, int | float) else str(value)
    if rtype is ResourceType.TIME and isinstance(value, int | float):
        return int(value) * 1000
    if isinstance(value, ObjectLink):
        return {
            "objectId": value.object_id,
            "objectInstanceId": value.instance_id,
            "nullLink": value.is_null,
        }
    if isinstance(value, bytes):
        return value.hex()
    return value


def node_out(node: LwM2mNode) -> JsonDict:
    """A node in Leshan's shape: ``kind``, ``id``, and ``instances`` / ``resources`` /
    ``value`` + ``type`` / ``values`` + ``type`` (type names in upper case)."""
    if isinstance(node, LwM2mObject):
        return {
            "id": node.id,
            "kind": "obj",
            "instances": [node_out(i) for _, i in sorted(node.instances.items())],
        }
    if isinstance(node, LwM2mObjectInstance):
        result: JsonDict = {"kind": "instance"}
        # Leshan's id-less instance (a Create without id) serializes its UNDEFINED id as -1
        result["id"] = -1 if node.id is None else node.id
        result["resources"] = [node_out(r) for _, r in sorted(node.resources.items())]
        return result
    if isinstance(node, LwM2mMultipleResource):
        return {
            "id": node.id,
            "kind": "multiResource",
            "values": {
                str(k): value_out(node.type, ri.value) for k, ri in sorted(node.instances.items())
            },
            "type": type_name(node.type),
        }
    kind = "singleResource" if isinstance(node, LwM2mSingleResource) else "resourceInstance"
    return {
        "id": node.id,
        "kind": kind,
        "type": type_name(node.type),
        "value": value_out(node.type, node.value),
    }


# -- values in -------------------------------------------------------------------------------------

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
_DECIMAL = re.compile(r"[+-]?\d+")


def _refuse(where: str, rtype: ResourceType, value: object, why: str = "") -> LeshanValueError:
    shown = repr(value) if not isinstance(value, str) else f'"{value}"'
    if len(shown) > 80:
        shown = shown[:77] + "..."
    reason = f" ({why})" if why else ""
    return LeshanValueError(
        f"{where}: {shown} is not a valid {type_name(rtype)} value{reason}: "
        f"expected {EXPECTED[rtype]}"
    )


def _integral(value: object) -> int | None:
    """A JSON integer, or a float with an exact integral value (Jackson's
    ``canConvertToExactIntegral``); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return int(value)
    return None


def value_in(rtype: ResourceType, value: object, where: str) -> Value:
    """One JSON value read with Leshan's rules for ``rtype`` (module table); 400 otherwise."""
    if rtype is ResourceType.STRING:
        if isinstance(value, str):
            return value
        raise _refuse(where, rtype, value)
    if rtype in (ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER):
        lo, hi = (INT64_MIN, INT64_MAX) if rtype is ResourceType.INTEGER else (0, UINT64_MAX)
        number: int | None
        if isinstance(value, str):
            number = int(value.strip()) if _DECIMAL.fullmatch(value.strip()) else None
        else:
            number = _integral(value)
        if number is None:
            raise _refuse(where, rtype, value)
        if not lo <= number <= hi:
            raise _refuse(where, rtype, value, f"outside {lo}..{hi}")
        return number
    if rtype is ResourceType.FLOAT:
        if isinstance(value, str):
            try:
                result = float(value.strip())
            except ValueError:
                raise _refuse(where, rtype, value) from None
            if not math.isfinite(result):
                raise _refuse(where, rtype, value, "not finite")
            return result
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise _refuse(where, rtype, value)
    if rtype is ResourceType.BOOLEAN:
        if isinstance(value, bool):
            return value
        raise _refuse(where, rtype, value)
    if rtype is ResourceType.OPAQUE:
        if isinstance(value, str) and _HEX.fullmatch(value):
            return bytes.fromhex(value)
        raise _refuse(where, rtype, value)
    if rtype is ResourceType.TIME:
        millis = _integral(value)
        if millis is None:
            raise _refuse(where, rtype, value)
        seconds = millis // 1000  # devices keep seconds; floor, as Leshan's encoders do
        if not INT64_MIN <= seconds <= INT64_MAX:
            raise _refuse(where, rtype, value, "out of range")
        return seconds
    if rtype is ResourceType.OBJLNK:
        if isinstance(value, Mapping):
            oid, iid = _integral(value.get("objectId")), _integral(value.get("objectInstanceId"))
            if oid is not None and iid is not None:
                try:
                    return ObjectLink(oid, iid)
                except ValueError as exc:
                    raise _refuse(where, rtype, value, str(exc)) from None
        raise _refuse(where, rtype, value)
    if rtype is ResourceType.CORELNK:
        if isinstance(value, str):
            return value
        raise _refuse(where, rtype, value)
    if value is None or value == "":
        return None
    raise _refuse(where, rtype, value)


def _node_type(
    data: Mapping[str, Any], models: ModelProvider, object_id: int, resource_id: int, where: str
) -> ResourceType:
    """The resource's type from the client's model; the body's ``type`` must agree with it (a
    body that says OPAQUE for a TIME resource means a different value than the device gets).
    Without a model the body's ``type`` is required, as in Leshan."""
    model = resource_model(models, object_id, resource_id)
    given = data.get("type")
    said = None if given is None else _type_of(given, where)
    if model is not None:
        if said is not None and said is not model.type:
            raise LeshanValueError(
                f"{where}: the body says type {type_name(said)} but the resource "
                f"{model.name!r} is {type_name(model.type)}: expected "
                f"{EXPECTED[model.type]}"
            )
        return model.type
    if said is None:
        raise LeshanValueError(f'{where}: unknown resource: give its "type"')
    return said


def _type_of(given: object, where: str) -> ResourceType:
    try:
        return type_from_name(given, where)
    except Lwm2mError as exc:
        raise LeshanValueError(exc.message) from None


def _id(data: Mapping[str, Any], expected: int | None, where: str, limit: int = MAX_ID) -> int:
    raw = data.get("id", expected)
    number = _integral(raw)
    if number is None or not 0 <= number <= limit:
        if raw == -1 and expected is None:
            return -1
        raise LeshanValueError(f"{where}: missing or invalid id {raw!r}")
    if expected is not None and number != expected:
        raise LeshanValueError(f"{where}: node id {number} does not match the path")
    return number


def _kind(data: Mapping[str, Any]) -> str | None:
    """Leshan's rule: ``kind`` if given, else the field that is present."""
    kind = data.get("kind")
    if isinstance(kind, str):
        return kind
    for field, name in (
        ("instances", "obj"),
        ("resources", "instance"),
        ("values", "multiResource"),
        ("value", "singleResource"),
    ):
        if field in data:
            return name
    return None


def _resource_in(
    data: object, object_id: int, expected: int | None, models: ModelProvider, where: str
) -> LwM2mResource:
    if not isinstance(data, Mapping):
        raise LeshanValueError(f"{where}: a resource must be a JSON object (a Leshan node)")
    rid = _id(data, expected, where)
    if expected is None:
        where = f"{where}/{rid}"
    rtype = _node_type(data, models, object_id, rid, where)
    model = resource_model(models, object_id, rid)
    kind = _kind(data)
    if kind == "multiResource":
        values = data.get("values")
        if not isinstance(values, Mapping):
            raise LeshanValueError(f"{where}: values of a multiResource must be an object")
        if model is not None and not model.multiple:
            raise LeshanValueError(f"{where}: resource {model.name!r} is single-instance")
        instances: dict[int, LwM2mResourceInstance] = {}
        for key, raw in values.items():
            if not re.fullmatch(r"\d{1,5}", str(key)) or int(key) > MAX_ID:
                raise LeshanValueError(f"{where}: resource instance id {key!r} is not 0..65535")
            ri = int(key)
            instances[ri] = LwM2mResourceInstance(ri, value_in(rtype, raw, f"{where}/{ri}"), rtype)
        return LwM2mMultipleResource(rid, instances, rtype)
    if kind in ("singleResource", None) and "value" in data:
        if model is not None and model.multiple:
            raise LeshanValueError(
                f"{where}: resource {model.name!r} is multiple-instance: give a multiResource"
            )
        return LwM2mSingleResource(rid, value_in(rtype, data["value"], where), rtype)
    raise LeshanValueError(f"{where}: expected a singleResource or multiResource node")


def instance_in(
    data: object, object_id: int, models: ModelProvider, instance_id: int | None = None
) -> LwM2mObjectInstance:
    """An ``instance`` node; without an id (or with Leshan's -1) for a Create the client names."""
    where = f"/{object_id}" + ("" if instance_id is None else f"/{instance_id}")
    if not isinstance(data, Mapping) or _kind(data) != "instance":
        raise LeshanValueError(f'{where}: expected an instance node (kind "instance")')
    iid: int | None = instance_id
    if "id" in data and data["id"] is not None:
        iid = _id(data, instance_id, where, MAX_INSTANCE_ID)
        if iid == -1:
            iid = None
        elif instance_id is None:
            where = f"{where}/{iid}"
    raw = data.get("resources")
    if not isinstance(raw, list):
        raise LeshanValueError(f'{where}: "resources" must be a list of resource nodes')
    resources: dict[int, LwM2mResource] = {}
    for item in raw:
        res = _resource_in(item, object_id, None, models, where)
        resources[res.id] = res
    return LwM2mObjectInstance(iid, resources)


def node_in(data: object, path: LwM2mPath, models: ModelProvider) -> LwM2mNode:
    """The node at ``path`` from a Leshan body (``JacksonLwM2mNodeDeserializer``'s shapes)."""
    where = str(path)
    if path.is_object:
        if not isinstance(data, Mapping) or _kind(data) != "obj":
            raise LeshanValueError(f"{where}: expected an obj node")
        _id(data, path.ids[0], where)
        raw = data.get("instances")
        if not isinstance(raw, list):
            raise LeshanValueError(f'{where}: "instances" must be a list')
        instances = {}
        for item in raw:
            inst = instance_in(item, path.ids[0], models)
            if inst.id is None:
                raise LeshanValueError(f"{where}: an instance inside an object needs an id")
            instances[inst.id] = inst
        return LwM2mObject(path.ids[0], instances)
    if path.is_object_instance:
        return instance_in(data, path.ids[0], models, path.ids[1])
    if path.is_resource:
        return _resource_in(data, path.ids[0], path.ids[2], models, where)
    if path.depth == 4:
        object_id, _, resource_id, ri = path.ids
        if not isinstance(data, Mapping) or "value" not in data:
            raise LeshanValueError(f"{where}: expected a resourceInstance node with a value")
        _id(data, ri, where)
        rtype = _node_type(data, models, object_id, resource_id, where)
        return LwM2mResourceInstance(ri, value_in(rtype, data["value"], where), rtype)
    raise LeshanValueError("cannot build a node for the root path")


def text_in(text: str, path: LwM2mPath, models: ModelProvider) -> LwM2mNode:
    """A ``text/plain`` body: Leshan writes it as a STRING resource; we read it with the
    resource's real type (hex for OPAQUE, milliseconds for TIME) so it cannot be misread."""
    if path.depth < 3:
        raise LeshanValueError(f"{path}: a text/plain body can only write a resource")
    object_id, resource_id = path.ids[0], path.ids[2]
    model = resource_model(models, object_id, resource_id)
    rtype = ResourceType.STRING if model is None else model.type
    raw: object = text
    if rtype in (ResourceType.TIME, ResourceType.BOOLEAN):
        stripped = text.strip()
        if rtype is ResourceType.TIME and _DECIMAL.fullmatch(stripped):
            raw = int(stripped)
        elif rtype is ResourceType.BOOLEAN and stripped in ("true", "false"):
            raw = stripped == "true"
    value = value_in(rtype, raw, str(path))
    if path.depth == 4:
        return LwM2mResourceInstance(path.ids[3], value, rtype)
    return LwM2mSingleResource(resource_id, value, rtype)


# -- native JSON -> Leshan JSON (event payloads built in the native shape) -----------------------


def native_value_out(type_text: object, value: object) -> object:
    """A value as our native JSON carries it (typed, opaque base64, Time seconds) re-encoded
    the Leshan way; a value that does not read back is passed through unchanged."""
    from object_models.types import coerce_value

    try:
        rtype = type_from_name(type_text)
        return value_out(rtype, coerce_value(rtype, value))
    except (Lwm2mError, ValueError, TypeError):
        return value


def native_node_out(node: object) -> object:
    """A node in our native JSON shape (``json_nodes.node_to_json``) in Leshan's shape."""
    if not isinstance(node, Mapping):
        return node
    kind = node.get("kind")
    result = dict(node)
    if kind == "obj":
        result["instances"] = [native_node_out(i) for i in node.get("instances", [])]
    elif kind == "instance":
        result["resources"] = [native_node_out(r) for r in node.get("resources", [])]
    elif kind == "multiResource":
        values = node.get("values") or {}
        result["values"] = {k: native_value_out(node.get("type"), v) for k, v in values.items()}
    elif kind in ("singleResource", "resourceInstance"):
        result["value"] = native_value_out(node.get("type"), node.get("value"))
    return result
