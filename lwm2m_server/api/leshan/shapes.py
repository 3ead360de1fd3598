"""Responses, registrations and events in the JSON the Leshan demo server writes (its
``JacksonResponseSerializer``, ``JacksonRegistrationSerializer``,
``JacksonRegistrationUpdateSerializer``, ``JacksonLinkSerializer`` and ``EventServlet``).

Leshan's mapper leaves out null fields (``NON_NULL``), writes dates as epoch milliseconds and a
response code as ``NAME(code)`` with the HTTP-like number (``CONTENT(205)``,
``NOT_FOUND(404)``; a code Leshan has no name for is ``UNKNOWN(422)``). The device's error
message is ``errormessage`` (all lower case: Leshan's spelling, which its UI reads).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from ...core.registration import Registration
from ...json_nodes import links_to_json
from ...operations import DeviceResponse
from .codec import native_node_out, native_value_out, node_out

JsonDict = dict[str, Any]

_NAMES = {
    201: "CREATED",
    202: "DELETED",
    204: "CHANGED",
    205: "CONTENT",
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    408: "REQUEST_ENTITY_INCOMPLETE",
    412: "PRECONDITION_FAILED",
    413: "REQUEST_ENTITY_TOO_LARGE",
    415: "UNSUPPORTED_CONTENT_FORMAT",
    500: "INTERNAL_SERVER_ERROR",
}
"""Leshan's ``ResponseCode`` constants: the only codes it names."""


def status(code: int) -> str:
    """CoAP code (0x45) → ``CONTENT(205)``, as Leshan's ``ResponseCode.toString``."""
    number = (code >> 5) * 100 + (code & 0x1F)
    return f"{_NAMES.get(number, 'UNKNOWN')}({number})"


def response_json(resp: DeviceResponse) -> JsonDict:
    """A device's answer: ``status``, ``valid``, ``success``, ``failure`` and, by operation,
    ``content`` (Read, Read-Composite, Observe), ``objectLinks`` (Discover), ``location``
    (Create), ``errormessage`` (failures that carry one)."""
    result: JsonDict = {
        "status": status(resp.code),
        "valid": True,
        "success": resp.success,
        "failure": not resp.success,
    }
    if resp.node is not None:
        result["content"] = node_out(resp.node)
    elif resp.nodes is not None:
        # Jackson writes a map's null values (NON_NULL only drops null fields): a path the
        # device had no value for is ``null``
        result["content"] = {
            str(path): None if node is None else node_out(node)
            for path, node in sorted(resp.nodes.items())
        }
    elif resp.links is not None:
        result["objectLinks"] = links_to_json(resp.links)
    elif resp.location is not None:
        result["location"] = resp.location
    if not resp.success and resp.error_message:
        result["errormessage"] = resp.error_message
    return result


def delayed_json(endpoint: str, path: str | None, request_id: str | None) -> JsonDict:
    """The HTTP 200 body of a request queued for a sleeping client (Leshan's
    ``ResponseDelayed`` with no response yet); its answer comes later as a REQUEST_RESPONSE
    event with the same ``requestId``."""
    result: JsonDict = {"ep": endpoint}
    if path is not None:
        result["path"] = path
    if request_id is not None:
        result["requestId"] = request_id
    result["delayed"] = True
    return result


def _ms(seconds: float) -> int:
    return round(seconds * 1000)


def _address(host: str, port: int) -> str:
    """Java's ``getHostAddress() + ":" + port``: no brackets around an IPv6 address."""
    return f"{host}:{port}"


def _available(instances: Mapping[int, Any]) -> JsonDict:
    return {str(o): sorted(ids) for o, ids in sorted(instances.items())}


def registration_json(reg: Registration, *, sleeping: bool | None = None) -> JsonDict:
    """A registration as ``JacksonRegistrationSerializer`` writes it (null fields left out;
    ``sleeping`` only for queue-mode clients, and only when known)."""
    result: JsonDict = {
        "endpoint": reg.endpoint,
        "registrationId": reg.registration_id,
        "registrationDate": _ms(reg.registered_at),
        "lastUpdate": _ms(reg.last_update),
        "address": _address(reg.address.host, reg.address.port),
    }
    if reg.sms_number is not None:
        result["smsNumber"] = reg.sms_number
    result.update(
        {
            "lwM2mVersion": reg.lwm2m_version,
            "lifetime": reg.lifetime,
            "bindingMode": reg.binding,
            "rootPath": reg.object_links.root_path,
            "objectLinks": links_to_json(reg.object_links.text),
            "secure": reg.identity is not None,
            "additionalRegistrationAttributes": dict(reg.additional_attributes),
            "queuemode": reg.queue_mode,
            "availableInstances": _available(reg.object_links.instances),
        }
    )
    if reg.queue_mode:
        result["sleeping"] = bool(sleeping)
    return result


_NATIVE_ONLY = ("expiresAt", "supportedObjects", "transport", "identity", "replaced", "reason")


def _iso_ms(text: object) -> object:
    if not isinstance(text, str):
        return text
    try:
        stamp = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return round(stamp.timestamp() * 1000)


def native_registration(data: Mapping[str, object]) -> JsonDict:
    """A registration event's payload (``json_nodes.registration_to_json``) in Leshan's shape:
    dates in milliseconds, our extra fields dropped, nulls left out, the address unbracketed."""
    result: JsonDict = {}
    for key, value in data.items():
        if key in _NATIVE_ONLY or key == "ep" or value is None:
            continue
        if key in ("registrationDate", "lastUpdate"):
            value = _iso_ms(value)
        elif key == "address" and isinstance(value, str) and value.startswith("["):
            host, _, port = value[1:].partition("]:")
            value = _address(host, int(port)) if port.isdigit() else value
        result[key] = value
    if result.get("queuemode") and "sleeping" not in result:
        result["sleeping"] = False
    return result


def update_json(registration: Mapping[str, object]) -> JsonDict:
    """The ``update`` half of an UPDATED event. Our bus carries the registration after the
    Update, not the Update's own parameters, so this reports the fields every Update has
    (``registrationId``, ``address``, ``secure``) plus the current lifetime and object links;
    Leshan's UI reads only ``registration``."""
    result: JsonDict = {}
    for key in ("registrationId", "address", "smsNumber", "lifetime"):
        if registration.get(key) is not None:
            result[key] = registration[key]
    if registration.get("objectLinks") is not None:
        result["objectLinks"] = registration["objectLinks"]
    result["secure"] = bool(registration.get("secure"))
    result["additionalAttributes"] = {}
    return result


# -- notifications and sends ----------------------------------------------------------------------


def _point_value(point: Mapping[str, Any]) -> object:
    return native_value_out(point.get("type"), point.get("value"))


def _resource_from_points(rid: int, rpath: str, points: list[Mapping[str, Any]]) -> JsonDict:
    single = [p for p in points if p.get("path") == rpath]
    if single:
        point = single[-1]
        return {
            "id": rid,
            "kind": "singleResource",
            "type": point.get("type"),
            "value": _point_value(point),
        }
    values: JsonDict = {}
    rtype: object = None
    for point in points:
        text = str(point.get("path", ""))
        if text.startswith(rpath + "/"):
            values[text[len(rpath) + 1 :]] = _point_value(point)
            rtype = point.get("type")
    return {"id": rid, "kind": "multiResource", "values": values, "type": rtype}


def node_from_points(path: str, points: list[Mapping[str, Any]]) -> JsonDict | None:
    """Rebuild the node at ``path`` from the telemetry points a notification stored (one
    point per resource or resource instance, native JSON), in Leshan's node shape."""
    ids = [int(p) for p in path.strip("/").split("/") if p]
    inside = [p for p in points if str(p.get("path", "")).startswith(path.rstrip("/"))]
    if not ids or not inside:
        return None
    if len(ids) == 4:
        point = next((p for p in inside if p.get("path") == path), None)
        if point is None:
            return None
        return {
            "id": ids[3],
            "kind": "resourceInstance",
            "type": point.get("type"),
            "value": _point_value(point),
        }
    if len(ids) == 3:
        return _resource_from_points(ids[2], path, inside)

    def instance(oid: int, iid: int) -> JsonDict:
        prefix = f"/{oid}/{iid}/"
        rids = sorted(
            {
                int(str(p["path"])[len(prefix) :].split("/")[0])
                for p in inside
                if str(p.get("path", "")).startswith(prefix)
            }
        )
        return {
            "id": iid,
            "kind": "instance",
            "resources": [_resource_from_points(r, f"{prefix}{r}", inside) for r in rids],
        }

    if len(ids) == 2:
        return instance(ids[0], ids[1])
    prefix = f"/{ids[0]}/"
    iids = sorted(
        {
            int(str(p["path"])[len(prefix) :].split("/")[0])
            for p in inside
            if str(p.get("path", "")).startswith(prefix)
        }
    )
    return {"id": ids[0], "kind": "obj", "instances": [instance(ids[0], i) for i in iids]}


def notification_json(endpoint: str, data: Mapping[str, Any]) -> JsonDict | None:
    """``{ep, kind: "single", res, val}`` for an observation of one path,
    ``{ep, kind: "composite", val: {path: node}, paths}`` for a composite one; None when the
    notification carried nothing Leshan could show (undecodable: it has no error event)."""
    if "val" in data and "res" in data:  # already node-shaped (native)
        return {
            "ep": endpoint,
            "kind": data.get("kind", "single"),
            "res": data["res"],
            "val": native_node_out(data["val"]),
        }
    paths = [str(p) for p in data.get("paths", []) or []]
    points = list(data.get("points", []) or [])
    if not paths:
        return None
    if len(paths) == 1:
        node = node_from_points(paths[0], points)
        if node is None:
            return None
        return {"ep": endpoint, "kind": "single", "res": paths[0], "val": node}
    nodes = {p: n for p in paths if (n := node_from_points(p, points)) is not None}
    return {"ep": endpoint, "kind": "composite", "val": nodes, "paths": paths}


def send_json(endpoint: str, data: Mapping[str, Any]) -> JsonDict:
    """``{ep, val: {path: node}}``: the most recent value of every path the Send carried."""
    points = list(data.get("points", []) or [])
    latest: dict[str, Mapping[str, Any]] = {}
    for point in points:
        key = str(point.get("path", ""))
        if key not in latest or (point.get("ts") or 0) >= (latest[key].get("ts") or 0):
            latest[key] = point
    val: JsonDict = {}
    for key in sorted(latest):
        node = node_from_points(key, [latest[key]])
        if node is not None:
            val[key] = node
    return {"ep": endpoint, "val": val}
