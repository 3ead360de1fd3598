"""The OpenAPI 3.1 document of the HTTP API, written by hand as data.

Hand-written rather than generated because the API is small, its shapes (Leshan's node JSON)
are not Python classes, and a document that reads well is the point. A test checks that every
route of the app the server builds (``create_server_app``, device profile routes included) is
described here and that the document validates against the OpenAPI
3.1 schema, so the two cannot drift apart silently.

The LwM2M path is one URL parameter spanning several segments (``3/0/1``); OpenAPI has no
multi-segment parameter, so ``{path}`` is documented as such and its slashes are literal.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

JSON = "application/json"

_ID = "(0|[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
"""An LwM2M id 0..65535 as a regular expression (no leading zeros, as paths are parsed)."""

Doc = dict[str, Any]


def _ref(name: str, kind: str = "schemas") -> Doc:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: Doc, example: object = None) -> Doc:
    media: Doc = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"content": {JSON: media}}


def _resp(description: str, schema: Doc, example: object = None) -> Doc:
    return {"description": description, **_json(schema, example)}


def _params(*names: str) -> list[Doc]:
    return [_ref(n, "parameters") for n in names]


_ERRORS = {
    "400": _ref("BadRequest", "responses"),
    "404": _ref("UnknownClient", "responses"),
}
_DEVICE_ERRORS = {
    **_ERRORS,
    "503": _ref("QueueFull", "responses"),
    "504": _ref("Timeout", "responses"),
}


def _tagged_op(tag: str, op_id: str, summary: str, responses: Doc, **more: Any) -> Doc:
    """An operation of the ``tag`` group: ``more`` adds parameters, a body, a description."""
    return {"operationId": op_id, "summary": summary, "tags": [tag], **more, "responses": responses}


def _query(
    name: str,
    description: str | None,
    schema: Doc,
    *,
    required: bool | None = None,
) -> Doc:
    """A query parameter (``required`` and ``description`` only where they are said)."""
    param: Doc = {"name": name, "in": "query"}
    if required is not None:
        param["required"] = required
    if description is not None:
        param["description"] = description
    param["schema"] = schema
    return param


def _device_op(
    op_id: str,
    summary: str,
    description: str,
    params: list[Doc],
    body: Doc | None = None,
    *,
    errors: Doc | None = None,
) -> Doc:
    op: Doc = {
        "operationId": op_id,
        "summary": summary,
        "description": description,
        "tags": ["device"],
        "parameters": params,
        "responses": {
            "200": _ref("DeviceAnswer", "responses"),
            "202": _ref("Queued", "responses"),
            **_DEVICE_ERRORS,
            **(errors or {}),
        },
    }
    if body is not None:
        op["requestBody"] = body
    return op


_NODE_SCHEMAS: Doc = {
    "ResourceType": {
        "type": "string",
        "enum": [
            "STRING",
            "INTEGER",
            "UNSIGNED_INTEGER",
            "FLOAT",
            "BOOLEAN",
            "OPAQUE",
            "TIME",
            "OBJLNK",
            "CORELINK",
            "NONE",
        ],
    },
    "Value": {
        "description": "A typed value: numbers as JSON numbers, opaque as base64, object links "
        'as "objectId:instanceId", time as seconds since the epoch.',
        "type": ["string", "number", "integer", "boolean", "null"],
    },
    "SingleResource": {
        "type": "object",
        "required": ["kind", "id", "value"],
        "properties": {
            "kind": {"const": "singleResource"},
            "id": {"type": "integer", "minimum": 0, "maximum": 65535},
            "type": _ref("ResourceType"),
            "value": _ref("Value"),
        },
    },
    "MultiResource": {
        "type": "object",
        "required": ["kind", "id", "values"],
        "properties": {
            "kind": {"const": "multiResource"},
            "id": {"type": "integer", "minimum": 0, "maximum": 65535},
            "type": _ref("ResourceType"),
            "values": {
                "type": "object",
                "propertyNames": {"pattern": "^[0-9]+$"},
                "additionalProperties": _ref("Value"),
            },
        },
    },
    "ResourceInstance": {
        "type": "object",
        "required": ["kind", "id", "value"],
        "properties": {
            "kind": {"const": "resourceInstance"},
            "id": {"type": "integer", "minimum": 0, "maximum": 65535},
            "type": _ref("ResourceType"),
            "value": _ref("Value"),
        },
    },
    "Instance": {
        "type": "object",
        "required": ["kind", "resources"],
        "properties": {
            "kind": {"const": "instance"},
            "id": {"type": "integer", "minimum": 0, "maximum": 65534},
            "resources": {
                "type": "array",
                "items": {"oneOf": [_ref("SingleResource"), _ref("MultiResource")]},
            },
        },
    },
    "Object": {
        "type": "object",
        "required": ["kind", "id", "instances"],
        "properties": {
            "kind": {"const": "obj"},
            "id": {"type": "integer", "minimum": 0, "maximum": 65535},
            "instances": {"type": "array", "items": _ref("Instance")},
        },
    },
    "Node": {
        "description": "An LwM2M node in the Leshan demo server's JSON shape.",
        "oneOf": [
            _ref("Object"),
            _ref("Instance"),
            _ref("SingleResource"),
            _ref("MultiResource"),
            _ref("ResourceInstance"),
        ],
    },
    "NodeInput": {
        "description": "What a Write/Create accepts: a full Node, a bare value for a resource "
        'or resource instance, {"0": v, "1": v} for a multiple resource, or '
        '{"resourceId": value} for an instance. Values are coerced with the model\'s type.',
    },
}

_OTHER_SCHEMAS: Doc = {
    "Error": {
        "type": "object",
        "required": ["error", "code"],
        "properties": {
            "error": {"type": "string"},
            "code": {"type": "string", "pattern": "^[245]\\.[0-9]{2}$"},
            "message": {"type": "string"},
        },
    },
    "Queued": {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": {"const": "queued"},
            "ep": {"type": "string"},
            "path": {"type": "string"},
            "delayed": {"type": "boolean"},
            "requestId": {
                "type": "string",
                "description": "The REQUEST_RESPONSE event with this id carries the answer.",
            },
        },
    },
    "Link": {
        "type": "object",
        "required": ["url", "attributes"],
        "properties": {
            "url": {"type": "string"},
            "attributes": {
                "type": "object",
                "additionalProperties": {"type": ["string", "null"]},
            },
        },
    },
    "DeviceResponse": {
        "description": "The device's answer. Device-side errors (4.04 from the device) are "
        'HTTP 200 with success=false, as in Leshan: {"status":"NOT_FOUND","code":"4.04",...}.',
        "type": "object",
        "required": ["status", "code", "success"],
        "properties": {
            "status": {"type": "string", "examples": ["CONTENT", "CHANGED", "NOT_FOUND"]},
            "code": {"type": "string", "pattern": "^[245]\\.[0-9]{2}$"},
            "valid": {"type": "boolean"},
            "success": {"type": "boolean"},
            "failure": {"type": "boolean"},
            "contentFormat": {"type": "string"},
            "content": {
                "description": "A Node (single path) or {path: Node|null} (composite)",
                "oneOf": [
                    _ref("Node"),
                    {
                        "type": "object",
                        "additionalProperties": {"oneOf": [_ref("Node"), {"type": "null"}]},
                    },
                ],
            },
            "objectLinks": {"type": "array", "items": _ref("Link")},
            "links": {"type": "string", "description": "Discover: the raw link-format text"},
            "location": {"type": "string"},
            "errormessage": {"type": "string"},
        },
    },
    "Registration": {
        "type": "object",
        "required": ["endpoint", "registrationId", "address", "lifetime", "lwM2mVersion"],
        "properties": {
            "endpoint": {"type": "string"},
            "registrationId": {"type": "string"},
            "registrationDate": {"type": "string", "format": "date-time"},
            "lastUpdate": {"type": "string", "format": "date-time"},
            "expiresAt": {"type": "string", "format": "date-time"},
            "address": {"type": "string"},
            "smsNumber": {"type": ["string", "null"]},
            "lwM2mVersion": {"type": "string"},
            "lifetime": {"type": "integer"},
            "bindingMode": {"type": "string"},
            "rootPath": {"type": "string"},
            "objectLinks": {"type": "array", "items": _ref("Link")},
            "supportedObjects": {
                "type": "object",
                "description": "object id -> version (null: the default for the client)",
                "additionalProperties": {"type": ["string", "null"]},
            },
            "availableInstances": {
                "type": "object",
                "additionalProperties": {"type": "array", "items": {"type": "integer"}},
            },
            "secure": {"type": "boolean"},
            "transport": {"type": "string", "enum": ["coap", "coaps"]},
            "identity": {
                "type": "object",
                "properties": {"mode": {"type": "string"}, "identity": {"type": "string"}},
            },
            "additionalRegistrationAttributes": {
                "type": "object",
                "additionalProperties": {"type": "string"},
            },
            "queuemode": {"type": "boolean"},
            "sleeping": {"type": "boolean"},
        },
    },
    "TelemetryPoint": {
        "type": "object",
        "required": ["endpoint", "path", "key", "ts", "value"],
        "properties": {
            "endpoint": {"type": "string"},
            "path": {"type": "string"},
            "key": {"type": "string"},
            "ts": {"type": "integer", "description": "milliseconds since the epoch"},
            "time": {"type": "string", "format": "date-time"},
            "type": _ref("ResourceType"),
            "value": _ref("Value"),
        },
    },
    "Telemetry": {
        "type": "object",
        "required": ["endpoint", "mode", "points"],
        "properties": {
            "endpoint": {"type": "string"},
            "mode": {"type": "string", "enum": ["latest", "history"]},
            "points": {"type": "array", "items": _ref("TelemetryPoint")},
        },
    },
    "Observations": {
        "type": "object",
        "required": ["endpoint", "observations"],
        "properties": {
            "endpoint": {"type": "string"},
            "observations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["paths", "composite"],
                    "properties": {
                        "paths": {"type": "array", "items": {"type": "string"}},
                        "composite": {"type": "boolean"},
                        "active": {"type": "boolean"},
                        "lastNotification": {"type": "number"},
                        "contentFormat": {"type": "string"},
                    },
                },
            },
        },
    },
    "Attributes": {
        "type": "object",
        "description": "Notification attributes; null removes one.",
        "properties": {
            name: {"type": ["number", "string", "null"]}
            for name in ("pmin", "pmax", "epmin", "epmax", "hqmax", "gt", "lt", "st")
        }
        | {"edge": {"type": ["integer", "boolean", "null"]}}
        | {"con": {"type": ["integer", "boolean", "null"]}},
        "additionalProperties": False,
    },
    "Readiness": {
        "type": "object",
        "required": ["ready", "checks"],
        "properties": {
            "ready": {"type": "boolean"},
            "checks": {
                "type": "object",
                "description": "Each check (listeners, store): ok, or why not.",
                "additionalProperties": {"type": "string"},
            },
        },
    },
    "AuditEntry": {
        "type": "object",
        "required": ["id", "time_ms", "principal", "method", "path", "status", "outcome"],
        "properties": {
            "id": {"type": "integer"},
            "time_ms": {"type": "integer", "description": "Epoch milliseconds."},
            "principal": {
                "type": "string",
                "description": "The token's name; anonymous when refused without one.",
            },
            "method": {"type": "string"},
            "path": {"type": "string"},
            "status": {"type": "integer"},
            "outcome": {"enum": ["ok", "failed", "unauthenticated", "forbidden"]},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "clients", "quarantined"],
        "properties": {
            "status": {
                "enum": ["ok", "degraded"],
                "description": "degraded: the shared store (Redis) cannot be reached; the "
                "process is alive (docs/cluster.md, Redis down).",
            },
            "clients": {"type": ["integer", "null"], "description": "null while degraded."},
            "store": {
                "type": "object",
                "description": "Only while degraded: the store's error.",
                "properties": {"up": {"const": False}, "error": {"type": "string"}},
            },
            "quarantined": {
                "type": "integer",
                "description": "Unreadable store rows set aside at start (docs/server.md).",
            },
            "limits": {
                "type": "object",
                "description": "What each limit refused (or evicted) since start, by name "
                "(docs/security.md, Limits).",
                "additionalProperties": {"type": "integer"},
            },
            "cluster": {
                "type": "object",
                "description": "Only on a Redis store (docs/cluster.md, Health and metrics): "
                "this node's id, the other nodes heard from lately (and those with an event "
                "reader), requests routed to and "
                "served for other nodes, queued requests taken over, holder records written, "
                "events dropped, and Redis figures (reachable, last PING, group commits, "
                "credential version reads and cache hits/misses).",
                "properties": {
                    "node": {"type": "string"},
                    "peers": {"type": "array", "items": {"type": "string"}},
                    "peersListening": {"type": "array", "items": {"type": "string"}},
                    "routed": {"type": "integer"},
                    "served": {"type": "integer"},
                    "queuedTaken": {"type": "integer"},
                    "holderWrites": {"type": "integer"},
                    "eventsDropped": {"type": "integer"},
                    "redis": {"type": "object"},
                },
            },
        },
    },
}

_PROFILE_SCHEMAS: Doc = {
    "ProfileSummary": {
        "description": "A device profile (docs/profiles.md) and the connected devices using it.",
        "type": "object",
        "required": ["name", "source", "observeStrategy", "onConnect", "devices"],
        "properties": {
            "name": {"type": "string"},
            "source": {"type": "string", "description": "a file path, api or builtin"},
            "description": {"type": "string"},
            "observeStrategy": {"type": "string"},
            "onConnect": {"type": "string"},
            "objects": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
            "endpoints": {"type": "array", "items": {"type": "string"}},
            "resources": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "key": {"type": "string"},
                        "kind": {"type": "string"},
                        "observe": {"type": "boolean"},
                        "attributes": {
                            "type": "object",
                            "description": "notification attributes the profile writes",
                        },
                    },
                },
            },
            "bootstrap": {"type": "boolean"},
            "firmware": {
                "type": "object",
                "description": "Update strategy and package per kind (firmware, software): "
                "what a campaign targeting the profile uses (docs/firmware.md).",
                "additionalProperties": {
                    "type": "object",
                    "properties": {
                        "strategy": {"enum": ["push", "pull_coap", "pull_http", "auto"]},
                        "package": {
                            "description": "a package id, or {name, version}",
                            "type": ["string", "object", "null"],
                        },
                    },
                },
            },
            "devices": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Profile": {
        "description": "A profile summary plus the document it was read from.",
        "allOf": [
            _ref("ProfileSummary"),
            {
                "type": "object",
                "required": ["document"],
                "properties": {"document": {"type": "object"}},
            },
        ],
    },
    "ProfileList": {
        "type": "object",
        "required": ["profiles", "errors"],
        "properties": {
            "profiles": {"type": "array", "items": _ref("ProfileSummary")},
            "errors": {"type": "array", "items": {"type": "string"}},
        },
    },
    "ProfileReload": {
        "type": "object",
        "required": ["changed", "removed", "errors"],
        "properties": {
            "changed": {"type": "array", "items": {"type": "string"}},
            "removed": {"type": "array", "items": {"type": "string"}},
            "errors": {"type": "array", "items": {"type": "string"}},
        },
    },
    "ProfileAssignment": {
        "type": "object",
        "required": ["endpoint", "profile", "chosenBy"],
        "properties": {
            "endpoint": {"type": "string"},
            "profile": {"type": "string", "description": "the profile the device now gets"},
            "chosenBy": {"type": "string", "description": "assigned, pattern or default"},
        },
    },
    "ProfileStatus": {
        "description": "Which profile a device uses and how applying it went.",
        "type": "object",
        "required": ["endpoint", "profile", "chosenBy", "state"],
        "properties": {
            "endpoint": {"type": "string"},
            "profile": {"type": "string"},
            "chosenBy": {"type": "string"},
            "state": {
                "type": "string",
                "examples": ["pending", "applying", "applied", "partial", "failed"],
            },
            "reason": {"type": "string"},
            "appliedAt": {"type": ["number", "null"]},
            "observations": {
                "type": "array",
                "items": {"type": "array", "items": {"type": "string"}},
            },
            "attributesWritten": {"type": "object"},
            "problems": {"type": "array"},
            "requests": {"type": "array"},
            "valueProblems": {"type": "array"},
        },
    },
    "MappedAttributes": {
        "type": "object",
        "required": ["endpoint", "attributes", "updated"],
        "properties": {
            "endpoint": {"type": "string"},
            "attributes": {"type": "object", "description": "{key: value}"},
            "updated": {
                "type": "object",
                "description": "{key: epoch milliseconds of the value}",
                "additionalProperties": {"type": "integer"},
            },
        },
    },
    "Timeseries": {
        "description": "ThingsBoard's shape: {key: [{ts, value}, ...]}, newest first.",
        "type": "object",
        "additionalProperties": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["ts", "value"],
                "properties": {"ts": {"type": "integer"}, "value": {}},
            },
        },
    },
}

_PARAMETERS: Doc = {
    "ep": {
        "name": "ep",
        "in": "path",
        "required": True,
        "description": "The client's endpoint name.",
        "schema": {"type": "string"},
    },
    "path": {
        "name": "path",
        "in": "path",
        "required": True,
        "description": "An LwM2M path without its leading slash; it spans several URL "
        "segments (3/0/1).",
        "schema": {"type": "string", "pattern": f"^{_ID}(/{_ID}){{0,3}}$"},
        "example": "3/0/1",
    },
    "format": {
        "name": "format",
        "in": "query",
        "description": "Content format for the device exchange: a name (tlv, senml-json, "
        "senml-cbor, lwm2m-cbor, json, text, opaque, cbor), a number or a media type.",
        "schema": {"type": "string"},
    },
    "nodeformat": {
        "name": "nodeformat",
        "in": "query",
        "description": "Leshan's name for format= in composite requests.",
        "schema": {"type": "string"},
    },
    "timeout": {
        "name": "timeout",
        "in": "query",
        "description": "Seconds to wait for the device (default 10, at most 600).",
        "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": 600},
    },
    "replace": {
        "name": "replace",
        "in": "query",
        "description": "true (default): Write replaces; false: partial update.",
        "schema": {"type": "boolean", "default": True},
    },
    "active": {
        "name": "active",
        "in": "query",
        "description": "true (default): send a cancelling request to the device; false: "
        "forget the observation (passive cancel).",
        "schema": {"type": "boolean", "default": True},
    },
    "paths": {
        "name": "paths",
        "in": "query",
        "required": True,
        "description": "Comma-separated LwM2M paths (/3/0/1,/3303/0/5700).",
        "schema": {"type": "string"},
        "example": "/3/0/1,/3303/0/5700",
    },
}

_RESPONSES: Doc = {
    "DeviceAnswer": _resp(
        "The device answered (success or a device-side CoAP error).",
        _ref("DeviceResponse"),
        {
            "status": "CONTENT",
            "code": "2.05",
            "valid": True,
            "success": True,
            "failure": False,
            "contentFormat": "tlv",
            "content": {"kind": "singleResource", "id": 0, "type": "STRING", "value": "Acme"},
        },
    ),
    "Queued": _resp(
        "The client sleeps (queue mode): the request waits for it to wake up.",
        _ref("Queued"),
        {
            "status": "queued",
            "ep": "dev-1",
            "path": "/3/0",
            "delayed": True,
            "requestId": "5f0c9a3e2b7d4c1e8a6b9d0f1e2a3b4c",
        },
    ),
    "BadRequest": _resp(
        "Bad path, format, parameter, JSON body or value type.",
        _ref("Error"),
        {"error": "/3/0/1: expected a string, got int (resource type STRING)", "code": "4.00"},
    ),
    "UnknownClient": _resp(
        "No registration for that endpoint.",
        _ref("Error"),
        {"error": "no client registered as 'dev-9'", "code": "4.04"},
    ),
    "QueueFull": _resp("The sleeping client's request queue is full.", _ref("Error"), None),
    "ObservationLimit": _resp(
        "The client has limits.observations_per_client active observations; cancel one first "
        "(code 4.09). Nothing was sent to the device.",
        _ref("Error"),
        None,
    ),
    "Timeout": _resp(
        "The device did not answer within the timeout.",
        _ref("Error"),
        {"error": "timeout", "message": "no answer to Read /3/0 within 10 s", "code": "5.04"},
    ),
}

_node_body = {
    "required": True,
    "content": {
        JSON: {"schema": _ref("NodeInput"), "example": "Acme"},
        "text/plain": {"schema": {"type": "string"}},
    },
}
_instance_body = {
    "required": True,
    "content": {
        JSON: {
            "schema": _ref("NodeInput"),
            "example": {"id": 1, "resources": [{"id": 5700, "value": 21.5}]},
        }
    },
}

_PATHS: Doc = {
    "/api/health": {
        "get": {
            "operationId": "health",
            "summary": "Liveness",
            "tags": ["server"],
            "responses": {"200": _resp("The server runs.", _ref("Health"))},
        }
    },
    "/api/ready": {
        "get": {
            "operationId": "ready",
            "summary": "Readiness",
            "description": "200 when the CoAP listeners are open and the store answers, else "
            "503 with the failing check (no token needed, like /api/health).",
            "tags": ["server"],
            "security": [],
            "responses": {
                "200": _resp("Ready.", _ref("Readiness")),
                "503": _resp("Not ready: a check failed.", _ref("Readiness")),
            },
        }
    },
    "/metrics": {
        "get": {
            "operationId": "metrics",
            "summary": "Prometheus metrics",
            "description": "Text exposition format (counts only, no device data; no token "
            "needed): registrations by state and security mode, uplink and downlink requests "
            "by operation and code, notifications, group-commit latency, queues, event stream, "
            "limits, DTLS handshakes (docs/http-api.md, Metrics).",
            "tags": ["server"],
            "security": [],
            "responses": {
                "200": {
                    "description": "Metrics.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
    **{
        f"/api/bootstrap/{route}": {
            "get": {
                "operationId": "bootstrap_" + route.replace("/", "_"),
                "summary": f"The bootstrap server's {route.replace('/', ' ')} (read through)",
                "description": "Forwarded to bootstrap_api.url (the bootstrap server's own API, "
                "docs/bootstrap.md) and answered as it answers; 404 when no bootstrap server is "
                "configured, 502 when it is unreachable.",
                "tags": ["server"],
                "responses": {
                    "200": _resp("The bootstrap server's answer.", {"type": "array"}),
                    "404": {"description": "No bootstrap server configured."},
                    "502": {"description": "The bootstrap API is unreachable."},
                },
            }
        }
        for route in ("devices", "sessions", "sessions/active", "configs")
    },
    "/api/audit": {
        "get": {
            "operationId": "audit",
            "summary": "Audit log",
            "description": "Every request that could change something (any method but GET), "
            "allowed or refused: who (the token's name), what, the HTTP status. Newest first.",
            "tags": ["server"],
            "parameters": [
                _query(
                    "limit",
                    None,
                    {"type": "integer", "minimum": 1, "maximum": 10000, "default": 100},
                ),
                _query(
                    "before",
                    "An entry id: entries older than it (paging back).",
                    {"type": "integer"},
                ),
                _query("principal", "Only the entries of this token name.", {"type": "string"}),
            ],
            "responses": {
                "200": _resp("Entries.", {"type": "array", "items": _ref("AuditEntry")}),
                "400": _ref("BadRequest", "responses"),
            },
        }
    },
    "/api/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "tags": ["server"],
            "responses": {"200": _resp("OpenAPI 3.1 document.", {"type": "object"})},
        }
    },
    "/api/event": {
        "get": {
            "operationId": "events",
            "summary": "Server-sent events",
            "description": "text/event-stream of REGISTRATION, UPDATED, DEREGISTRATION, "
            "SLEEPING, AWAKE, NOTIFICATION, SEND, REQUEST_RESPONSE events; data is JSON "
            "with an ep field. Every event has an id (+1 per event of the server process); "
            "a reader resuming with Last-Event-ID gets the events after it that the replay "
            "buffer holds, and a GAP event {missed, from, to} for those it no longer does "
            "(also sent to a reader too slow for the buffer). "
            "Keep-alive comments every 15 s.",
            "tags": ["events"],
            "parameters": [
                _query("ep", "Only this endpoint's events (and GAPs).", {"type": "string"}),
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "description": "Resume after this event id (EventSource sends it itself).",
                    "schema": {"type": "integer", "minimum": 0},
                },
                _query(
                    "lastEventId",
                    "Last-Event-ID for clients that cannot set headers.",
                    {"type": "integer", "minimum": 0},
                ),
            ],
            "responses": {
                "200": {
                    "description": "An endless event stream.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "400": _ref("BadRequest", "responses"),
            },
        }
    },
    "/api/clients": {
        "get": {
            "operationId": "listClients",
            "summary": "Registered clients, a page at a time",
            "description": (
                "Registrations in endpoint order, at most `limit` per page so that no response "
                "holds the server's event loop. When the page is full the `Link` (rel=next) and "
                "`X-Next-Cursor` headers give the next page; the cursor is the page's last "
                "endpoint, so pages stay stable while clients come and go."
            ),
            "tags": ["clients"],
            "parameters": [
                _query(
                    "limit",
                    "Registrations per page (default 1000).",
                    {"type": "integer", "minimum": 1, "maximum": 10000, "default": 1000},
                ),
                _query(
                    "cursor", "Opaque: the X-Next-Cursor of the previous page.", {"type": "string"}
                ),
            ],
            "responses": {
                "200": {
                    **_resp(
                        "Registrations by endpoint.",
                        {"type": "array", "items": _ref("Registration")},
                    ),
                    "headers": {
                        "Link": {
                            "description": 'The next page: `<url>; rel="next"` (full pages).',
                            "schema": {"type": "string"},
                        },
                        "X-Next-Cursor": {
                            "description": "The `cursor` of the next page (full pages).",
                            "schema": {"type": "string"},
                        },
                        "X-Total-Count": {
                            "description": "Registrations when the page was built.",
                            "schema": {"type": "integer"},
                        },
                    },
                },
                "400": _ref("BadRequest", "responses"),
            },
        }
    },
    "/api/clients/{ep}": {
        "get": {
            "operationId": "getClient",
            "summary": "One registration",
            "tags": ["clients"],
            "parameters": _params("ep"),
            "responses": {"200": _resp("The registration.", _ref("Registration")), **_ERRORS},
        }
    },
    "/api/clients/{ep}/observations": {
        "get": {
            "operationId": "listObservations",
            "summary": "The client's observations",
            "tags": ["clients"],
            "parameters": _params("ep"),
            "responses": {"200": _resp("Observations.", _ref("Observations")), **_ERRORS},
        }
    },
    "/api/clients/{ep}/telemetry": {
        "get": {
            "operationId": "getTelemetry",
            "summary": "Latest values, or history with key/since/until/limit",
            "tags": ["clients"],
            "parameters": [
                *_params("ep"),
                _query("key", None, {"type": "string"}),
                _query("since", "Epoch milliseconds or ISO 8601.", {"type": "string"}),
                _query("until", "Epoch milliseconds or ISO 8601.", {"type": "string"}),
                _query("limit", None, {"type": "integer", "minimum": 1, "maximum": 10000}),
            ],
            "responses": {"200": _resp("Telemetry points.", _ref("Telemetry")), **_ERRORS},
        }
    },
    "/api/clients/{ep}/composite": {
        "get": _device_op(
            "readComposite",
            "Read-Composite",
            "Read several paths at once (LwM2M 1.1+, SenML or LwM2M CBOR).",
            _params("ep", "paths", "format", "nodeformat", "timeout"),
        ),
        "put": _device_op(
            "writeComposite",
            "Write-Composite",
            "Write several resources at once; the body maps paths to values or nodes.",
            _params("ep", "format", "nodeformat", "timeout"),
            {
                "required": True,
                **_json(
                    {
                        "type": "object",
                        "minProperties": 1,
                        "propertyNames": {"pattern": f"^/?{_ID}(/{_ID}){{2,3}}$"},
                        "additionalProperties": _ref("NodeInput"),
                    },
                    {"/3/0/14": "+02:00", "/1/0/1": 300},
                ),
            },
        ),
    },
    "/api/clients/{ep}/composite/observe": {
        "post": _device_op(
            "observeComposite",
            "Observe-Composite",
            "Start one observation of several paths.",
            _params("ep", "paths", "format", "nodeformat", "timeout"),
            errors={"409": _ref("ObservationLimit", "responses")},
        ),
        "delete": _device_op(
            "cancelObserveComposite",
            "Cancel Observe-Composite",
            "End a composite observation, actively (default) or passively.",
            _params("ep", "paths", "active", "timeout"),
        ),
    },
    "/api/clients/{ep}/{path}/observe": {
        "post": _device_op(
            "observe",
            "Observe",
            "Start observing a path.",
            _params("ep", "path", "format", "timeout"),
            errors={"409": _ref("ObservationLimit", "responses")},
        ),
        "delete": _device_op(
            "cancelObservation",
            "Cancel Observation",
            "End an observation, actively (default) or passively.",
            _params("ep", "path", "active", "timeout"),
        ),
    },
    "/api/clients/{ep}/{path}/discover": {
        "get": _device_op(
            "discover",
            "Discover",
            "The objects, instances, resources and attributes under a path.",
            _params("ep", "path", "timeout"),
        )
    },
    "/api/clients/{ep}/{path}/attributes": {
        "put": _device_op(
            "writeAttributes",
            "Write-Attributes",
            "Set notification attributes from the JSON body and/or the query "
            "(?pmin=10&pmax=60; an empty value removes one).",
            [
                *_params("ep", "path", "timeout"),
                *(
                    _query(n, None, {"type": "string"})
                    for n in ("pmin", "pmax", "gt", "lt", "st", "epmin", "epmax", "edge", "con")
                ),
            ],
            {"required": False, **_json(_ref("Attributes"), {"pmin": 10, "pmax": 60})},
        )
    },
    "/api/clients/{ep}/{path}": {
        "get": _device_op(
            "read",
            "Read",
            "Read a node, decoded with the client's object models.",
            _params("ep", "path", "format", "timeout"),
        ),
        "put": _device_op(
            "write",
            "Write",
            "Replace (default) or partially update (replace=false) a node. A text/plain body "
            "writes one resource, parsed with its type.",
            _params("ep", "path", "format", "timeout", "replace"),
            _node_body,
        ),
        "post": _device_op(
            "executeOrCreate",
            "Execute (resource path) or Create (object path)",
            "On /o/i/r: Execute with the text body as arguments. On /o: Create an instance from "
            "the JSON body (an id in the body chooses the instance id).",
            _params("ep", "path", "format", "timeout"),
            _instance_body,
        ),
        "delete": _device_op(
            "delete", "Delete", "Delete an object instance.", _params("ep", "path", "timeout")
        ),
    },
}

_NO_PROFILE = _resp("No such profile.", _ref("Error"))
_FILE_MANAGED = _resp(
    "The profile comes from the profiles folder: change the file instead.", _ref("Error")
)


_profile_op = functools.partial(_tagged_op, "profiles")

_PROFILE_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "The profile's name.",
    "schema": {"type": "string"},
}

_PROFILE_PATHS: Doc = {
    "/api/profiles": {
        "get": _profile_op(
            "listProfiles",
            "Every profile, with the connected devices using it",
            {"200": _resp("Profiles and the last reload's errors.", _ref("ProfileList"))},
        )
    },
    "/api/profiles/reload": {
        "post": _profile_op(
            "reloadProfiles",
            "Re-read the profiles folder (like SIGHUP)",
            {
                "200": _resp("What changed.", _ref("ProfileReload")),
                "422": _resp("A file failed (the stored version stays).", _ref("ProfileReload")),
            },
        )
    },
    "/api/profiles/{name}": {
        "get": _profile_op(
            "getProfile",
            "One profile: summary and document",
            {"200": _resp("The profile.", _ref("Profile")), "404": _NO_PROFILE},
            parameters=[_PROFILE_NAME],
        ),
        "put": _profile_op(
            "putProfile",
            "Create or replace a profile",
            {
                "200": _resp("Replaced.", _ref("ProfileSummary")),
                "201": _resp("Created.", _ref("ProfileSummary")),
                "400": _ref("BadRequest", "responses"),
                "412": _FILE_MANAGED,
            },
            parameters=[_PROFILE_NAME],
            requestBody={"required": True, **_json({"type": "object"})},
        ),
        "delete": _profile_op(
            "deleteProfile",
            "Remove a profile (its devices fall back to a pattern or the default)",
            {
                "200": _resp(
                    "Removed.",
                    {"type": "object", "properties": {"deleted": {"type": "string"}}},
                ),
                "404": _NO_PROFILE,
                "412": _FILE_MANAGED,
            },
            parameters=[_PROFILE_NAME],
        ),
    },
    "/api/clients/{ep}/attributes": {
        "get": _profile_op(
            "getAttributes",
            "The device's profile-mapped attribute values",
            {"200": _resp("Attributes.", _ref("MappedAttributes")), **_ERRORS},
            parameters=_params("ep"),
        )
    },
    "/api/clients/{ep}/attributes/{key}": {
        "put": {
            **_device_op(
                "writeAttribute",
                "Write a mapped attribute",
                "Write the resource the profile maps the attribute key to; the body is the "
                "JSON value.",
                [
                    *_params("ep"),
                    {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}},
                    *_params("timeout"),
                ],
                {"required": True, **_json({})},
            ),
            "tags": ["profiles"],
        }
    },
    "/api/clients/{ep}/profile-status": {
        "get": _profile_op(
            "getProfileStatus",
            "The device's profile, requests sent and problems",
            {"200": _resp("Status.", _ref("ProfileStatus")), **_ERRORS},
            parameters=_params("ep"),
        )
    },
    "/api/clients/{ep}/profile": {
        "put": _profile_op(
            "assignProfile",
            'Assign a profile to the endpoint ({"profile": name}, or null to remove it)',
            {
                "200": _resp("The profile the device now gets.", _ref("ProfileAssignment")),
                "400": _ref("BadRequest", "responses"),
            },
            parameters=_params("ep"),
            requestBody={
                "required": True,
                **_json(
                    {
                        "type": "object",
                        "required": ["profile"],
                        "properties": {"profile": {"type": ["string", "null"]}},
                    },
                    {"profile": "temperature-sensor"},
                ),
            },
        )
    },
    "/api/clients/{ep}/profile/apply": {
        "post": _profile_op(
            "applyProfile",
            "Apply the profile again now and answer the status (state applying if the wait "
            "ran out)",
            {"200": _resp("Status.", _ref("ProfileStatus")), **_ERRORS},
            parameters=_params("ep", "timeout"),
        )
    },
    "/api/clients/{ep}/timeseries": {
        "get": _profile_op(
            "getTimeseries",
            "Telemetry in ThingsBoard's shape",
            {"200": _resp("Values by key.", _ref("Timeseries")), **_ERRORS},
            parameters=[
                *_params("ep"),
                _query(
                    "keys",
                    "Comma-separated telemetry keys (default: every key).",
                    {"type": "string"},
                ),
                _query(
                    "startTs",
                    "Epoch milliseconds or ISO 8601; with endTs: history.",
                    {"type": "string"},
                ),
                _query("endTs", "Epoch milliseconds or ISO 8601.", {"type": "string"}),
                _query("limit", None, {"type": "integer", "minimum": 1, "maximum": 10000}),
            ],
        )
    },
}

_LESHAN_ROUTES: list[tuple[str, str, str, str]] = [
    ("get", "/event", "events", "Server-sent events in Leshan's payloads"),
    ("get", "/clients", "clients", "Every registration (no paging), Leshan's shape"),
    ("get", "/clients/{ep}", "client", "One registration; unknown: 400 text"),
    ("get", "/objectspecs/{ep}", "objectSpecs", "The client's object models"),
    ("get", "/server/endpoint", "serverEndpoints", "The CoAP endpoints"),
    ("get", "/server/security", "serverSecurity", "The server's public key / certificate"),
    ("get", "/security/server", "securityServer", "The server's public key / certificate"),
    ("get", "/security/clients", "securityList", "Every device credential"),
    ("put", "/security/clients", "securityPut", "Add or replace a device credential"),
    ("put", "/security/clients/", "securityPutSlash", "The same (Leshan's UI adds a slash)"),
    ("get", "/security/clients/{ep}", "securityShow", "One device credential"),
    ("delete", "/security/clients/{ep}", "securityDelete", "Remove a device credential"),
    ("post", "/clients/{ep}/composite/observe", "observeComposite", "Observe-Composite"),
    ("delete", "/clients/{ep}/composite/observe", "cancelObserveComposite", "Cancel it"),
    ("get", "/clients/{ep}/composite", "readComposite", "Read-Composite"),
    ("put", "/clients/{ep}/composite", "writeComposite", "Write-Composite"),
    ("post", "/clients/{ep}/{path}/observe", "observe", "Observe"),
    ("delete", "/clients/{ep}/{path}/observe", "cancelObserve", "Cancel Observation"),
    ("get", "/clients/{ep}/{path}/discover", "discover", "Discover"),
    ("put", "/clients/{ep}/{path}/attributes", "writeAttributes", "Write-Attributes"),
    ("get", "/clients/{ep}/{path}", "read", "Read"),
    ("put", "/clients/{ep}/{path}", "write", "Write (Leshan node JSON or text/plain)"),
    ("post", "/clients/{ep}/{path}", "post", "Execute (resource) / Create (object)"),
    ("delete", "/clients/{ep}/{path}", "delete", "Delete"),
]
"""The Leshan dialect (``api/leshan``): the native operations under ``/leshan/api`` with the
Leshan demo server's JSON (docs/http-api.md, "Leshan dialect")."""


def _leshan_paths() -> Doc:
    paths: Doc = {}
    for method, path, name, summary in _LESHAN_ROUTES:
        names = [n for n in ("ep", "path") if "{" + n + "}" in path]
        paths.setdefault("/leshan/api" + path, {})[method] = {
            "operationId": "leshan_" + name + ("" if method == "get" else "_" + method),
            "tags": ["leshan"],
            "summary": summary,
            "description": "Leshan dialect: Leshan's value formats (opaque hex, Time in epoch "
            "ms, numbers as strings), status strings like CONTENT(205), plain-text errors, an "
            "unknown client is 400.",
            "parameters": _params(*names),
            "responses": {
                "200": {"description": "Leshan's JSON"},
                "400": {"description": "Invalid request (plain text)"},
            },
        }
    return paths


_SESSION = {
    "type": "object",
    "required": ["name", "role", "auth"],
    "properties": {
        "name": {"type": "string", "description": "The token's name (as in the audit log)."},
        "role": {"type": "string", "enum": ["read", "admin"]},
        "auth": {"type": "boolean", "description": "false when api_auth.enabled is false."},
    },
}
_CSRF_PARAM = {
    "name": "X-Requested-With",
    "in": "header",
    "required": True,
    "description": "Any value. Required on the session routes, and on every request but "
    "GET/HEAD/OPTIONS authenticated by the session cookie (CSRF protection).",
    "schema": {"type": "string"},
}
_UI_PATHS: Doc = {
    "/": {
        "get": {
            "operationId": "webUi",
            "summary": "The web UI (lwm2m_server/ui): an HTML page, no credentials needed",
            "tags": ["ui"],
            "security": [],
            "responses": {
                "200": {"description": "HTML.", "content": {"text/html": {"schema": {}}}}
            },
        }
    },
    "/ui/{name}": {
        "get": {
            "operationId": "webUiAsset",
            "summary": "A file of the web UI (script, style sheet, icon)",
            "tags": ["ui"],
            "security": [],
            "parameters": [
                {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": {"description": "The file.", "content": {"*/*": {"schema": {}}}},
                "404": {"description": "No such UI file."},
            },
        }
    },
    "/api/session": {
        "get": {
            "operationId": "showSession",
            "summary": "Who the caller is (token or session cookie)",
            "tags": ["ui"],
            "responses": {"200": _resp("The caller.", _SESSION)},
        },
        "post": {
            "operationId": "openSession",
            "summary": "Log in: swap the bearer token for an HttpOnly SameSite=Strict cookie",
            "description": "Send the token as Authorization: Bearer and X-Requested-With; "
            "the answer sets the pylwm2m_session cookie (12 h, in memory: a restart ends it). "
            "Read tokens may log in too.",
            "tags": ["ui"],
            "parameters": [_CSRF_PARAM],
            "responses": {
                "200": _resp("Logged in (Set-Cookie).", _SESSION),
                "401": {"description": "No or an unknown token."},
                "403": {"description": "Without X-Requested-With."},
            },
        },
        "delete": {
            "operationId": "closeSession",
            "summary": "Log out: the session ends server-side and the cookie is deleted",
            "tags": ["ui"],
            "parameters": [_CSRF_PARAM],
            "responses": {
                "200": _resp("Logged out.", {"type": "object"}),
                "403": {"description": "Without X-Requested-With."},
            },
        },
    },
    "/api/models": {
        "get": {
            "operationId": "objectModels",
            "summary": "Object models (names, units, types, operations) to label values",
            "description": "With ep: the models of the objects the client registered, in the "
            "versions it announced; with ids: those objects. Objects without a model are "
            "listed in unknown.",
            "tags": ["ui"],
            "parameters": [
                _query("ep", None, {"type": "string"}),
                _query("ids", "Comma-separated object ids.", {"type": "string"}),
            ],
            "responses": {
                "200": _resp(
                    "The models.",
                    {
                        "type": "object",
                        "properties": {
                            "endpoint": {"type": ["string", "null"]},
                            "objects": {"type": "array", "items": {"type": "object"}},
                            "unknown": {"type": "array", "items": {"type": "integer"}},
                        },
                    },
                ),
                **_ERRORS,
            },
        }
    },
}

_COUNTS = {
    "type": "object",
    "properties": {
        n: {"type": "integer"} for n in ("pending", "running", "succeeded", "failed", "cancelled")
    },
}
_TARGET = {
    "type": "object",
    "description": "Exactly one of: a profile's devices, an endpoint list, or a filter (an "
    "endpoint glob and/or registration attributes lwm2m, binding, transport, queue or any "
    "additional attribute, each a glob). Resolved once, at creation.",
    "properties": {
        "profile": {"type": "string"},
        "endpoints": {"type": "array", "items": {"type": "string"}},
        "endpoint": {"type": "string", "description": "a glob, e.g. sensor-*"},
        "attributes": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
_CAMPAIGN_SCHEMAS: Doc = {
    "CampaignRequest": {
        "type": "object",
        "required": ["target"],
        "properties": {
            "name": {"type": "string"},
            "target": _TARGET,
            "package": {
                "description": "A package id or {name, version}; left out with a profile "
                "target: the profile's firmware.<kind>.package.",
                "type": ["string", "object"],
            },
            "kind": {"enum": ["firmware", "software"]},
            "strategy": {"enum": ["push", "pull_coap", "pull_http", "auto"]},
            "instance": {"type": "integer", "description": "object 9 instance"},
            "ratePerMinute": {"type": "number", "description": "devices started per minute"},
            "maxConcurrent": {"type": "integer", "default": 10},
            "failureThreshold": {"type": "number", "minimum": 0, "maximum": 1},
            "minSample": {"type": "integer", "default": 10},
        },
    },
    "Campaign": {
        "type": "object",
        "required": ["id", "state", "counts", "total"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "state": {"enum": ["running", "paused", "completed", "cancelled", "aborted"]},
            "reason": {"type": "string"},
            "target": _TARGET,
            "package": {"type": "string"},
            "kind": {"type": "string"},
            "strategy": {"type": "string"},
            "ratePerMinute": {"type": ["number", "null"]},
            "maxConcurrent": {"type": "integer"},
            "failureThreshold": {"type": ["number", "null"]},
            "minSample": {"type": "integer"},
            "total": {"type": "integer"},
            "counts": _COUNTS,
            "failureRatio": {"type": ["number", "null"]},
            "created": {"type": "integer", "description": "ms since the epoch"},
            "updated": {"type": "integer"},
            "finished": {"type": ["integer", "null"]},
        },
    },
    "CampaignDevice": {
        "type": "object",
        "properties": {
            "endpoint": {"type": "string"},
            "index": {"type": "integer"},
            "status": {"enum": ["pending", "running", "succeeded", "failed", "cancelled"]},
            "jobState": {"type": ["string", "null"]},
            "result": {"type": ["integer", "null"], "description": "the Update Result"},
            "detail": {"type": "string"},
            "started": {"type": ["integer", "null"]},
            "finished": {"type": ["integer", "null"]},
        },
    },
}


_campaign_op = functools.partial(_tagged_op, "campaigns")

_CAMPAIGN_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_NO_CAMPAIGN = _resp("No such campaign.", _ref("Error"))
_CAMPAIGN_PATHS: Doc = {
    "/api/campaigns": {
        "post": _campaign_op(
            "createCampaign",
            "Create and start a firmware/software update campaign",
            {
                "201": _resp("Created (running).", _ref("Campaign")),
                "400": _ref("BadRequest", "responses"),
                "404": _resp("Unknown package or profile.", _ref("Error")),
            },
            requestBody={"required": True, **_json(_ref("CampaignRequest"))},
        ),
        "get": _campaign_op(
            "listCampaigns",
            "Every campaign with its progress",
            {
                "200": _resp(
                    "Campaigns.",
                    {
                        "type": "object",
                        "properties": {"campaigns": {"type": "array", "items": _ref("Campaign")}},
                    },
                )
            },
        ),
    },
    "/api/campaigns/{id}": {
        "get": _campaign_op(
            "getCampaign",
            "One campaign and a page of its devices' outcomes",
            {
                "200": _resp(
                    "The campaign; devices from offset, nextOffset null on the last page.",
                    {
                        "allOf": [
                            _ref("Campaign"),
                            {
                                "type": "object",
                                "properties": {
                                    "devices": {
                                        "type": "array",
                                        "items": _ref("CampaignDevice"),
                                    },
                                    "offset": {"type": "integer"},
                                    "limit": {"type": "integer"},
                                    "matched": {"type": "integer"},
                                    "nextOffset": {"type": ["integer", "null"]},
                                },
                            },
                        ]
                    },
                ),
                "404": _NO_CAMPAIGN,
            },
            parameters=[
                _CAMPAIGN_ID,
                _query("offset", None, {"type": "integer", "minimum": 0}),
                _query(
                    "limit",
                    None,
                    {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                ),
                _query("status", "only devices in this status", {"type": "string"}),
            ],
        )
    },
    **{
        f"/api/campaigns/{{id}}/{action}": {
            "post": _campaign_op(
                f"{action}Campaign",
                text,
                {
                    "200": _resp("The campaign.", _ref("Campaign")),
                    "202": _resp(
                        "On a cluster: queued for the node running the campaign, which did "
                        "not take it within firmware.job_lease (the campaign as stored).",
                        _ref("Campaign"),
                    ),
                    "404": _NO_CAMPAIGN,
                    "409": _resp("Not possible in the campaign's state.", _ref("Error")),
                },
                parameters=[_CAMPAIGN_ID],
            )
        }
        for action, text in (
            ("pause", "Stop starting devices (running jobs go on)"),
            ("resume", "Start devices again"),
            ("cancel", "Cancel the pending devices and the running jobs"),
        )
    },
}

# -- firmware packages and downloads (api/packages.py; docs/firmware.md) -------------------------

_PACKAGE_SCHEMAS: Doc = {
    "Package": {
        "description": "An uploaded firmware or software image; its id is the SHA-256 of its "
        "bytes (the same bytes uploaded twice are one package).",
        "type": "object",
        "required": ["id", "sha256", "kind", "name", "version", "size", "createdMs", "profile"],
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
            "kind": {"type": "string", "enum": ["firmware", "software"]},
            "name": {"type": "string"},
            "version": {"type": "string"},
            "size": {"type": "integer", "minimum": 1},
            "createdMs": {"type": "integer"},
            "profile": {"type": ["string", "null"]},
        },
    },
    "PackageList": {
        "type": "object",
        "required": ["packages"],
        "properties": {"packages": {"type": "array", "items": _ref("Package")}},
    },
}

_PACKAGE_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "The package id (lowercase hex SHA-256 of its bytes).",
    "schema": {"type": "string"},
}

_NO_PACKAGE = _resp("No such package.", _ref("Error"))


_package_op = functools.partial(_tagged_op, "packages")


_PACKAGE_PATHS: Doc = {
    "/api/packages": {
        "get": _package_op(
            "listPackages",
            "Every firmware/software package, oldest first",
            {"200": _resp("The packages.", _ref("PackageList"))},
        ),
        "post": _package_op(
            "uploadPackage",
            "Upload a package",
            {
                "200": _resp("These bytes were uploaded before: that package.", _ref("Package")),
                "201": _resp("Added.", _ref("Package")),
                "400": _ref("BadRequest", "responses"),
                "413": _resp(
                    "Over firmware.max_package_size (the message names it).", _ref("Error")
                ),
            },
            description="The body is the image (application/octet-stream), or "
            "multipart/form-data with the image in a part named file (the other fields may "
            "then be form fields). Over firmware.max_package_size: 413.",
            parameters=[
                _query(
                    "kind",
                    "firmware (object 5) or software (object 9).",
                    {"type": "string", "enum": ["firmware", "software"]},
                    required=True,
                ),
                _query("name", "The package name.", {"type": "string"}, required=True),
                _query("version", "The package version.", {"type": "string"}, required=True),
                _query(
                    "profile", "The device profile it is for.", {"type": "string"}, required=False
                ),
            ],
            requestBody={
                "required": True,
                "content": {
                    "application/octet-stream": {
                        "schema": {"type": "string", "contentMediaType": "application/octet-stream"}
                    },
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "file": {
                                    "type": "string",
                                    "contentMediaType": "application/octet-stream",
                                }
                            },
                        }
                    },
                },
            },
        ),
    },
    "/api/packages/{id}": {
        "get": _package_op(
            "getPackage",
            "One package",
            {"200": _resp("The package.", _ref("Package")), "404": _NO_PACKAGE},
            parameters=[_PACKAGE_ID],
        ),
        "delete": _package_op(
            "deletePackage",
            "Delete a package no job, campaign or profile uses",
            {
                "200": _resp(
                    "Deleted.", {"type": "object", "properties": {"deleted": {"type": "string"}}}
                ),
                "404": _NO_PACKAGE,
                "409": _resp("Still in use (the message says by what).", _ref("Error")),
            },
            parameters=[_PACKAGE_ID],
        ),
    },
    "/fw/{token}": {
        "get": _package_op(
            "downloadPackage",
            "A device's download of the package a grant names",
            {
                "200": {
                    "description": "The package bytes.",
                    "content": {"application/octet-stream": {"schema": {"type": "string"}}},
                },
                "206": {
                    "description": "The requested byte range.",
                    "content": {"application/octet-stream": {"schema": {"type": "string"}}},
                },
                "404": _resp("Unknown or expired token, or the package is gone.", _ref("Error")),
                "416": {"description": "The range is outside the package."},
            },
            description="The Package URI the server writes to /5/0/1 (or /9/x/3) for an "
            "http(s) pull. No bearer token: the token in the path is the credential. Supports "
            "Range (RFC 9110).",
            parameters=[
                {
                    "name": "token",
                    "in": "path",
                    "required": True,
                    "description": "The download grant's token.",
                    "schema": {"type": "string"},
                },
                _query(
                    "sha256",
                    "The package's SHA-256 (ignored by the server).",
                    {"type": "string"},
                    required=False,
                ),
            ],
            security=[],
        )
    },
}


_firmware_op = functools.partial(_tagged_op, "firmware")

_NO_JOB = _resp("No such client, package or update job.", _ref("Error"))

_FIRMWARE_PATHS: Doc = {
    "/api/clients/{ep}/firmware": {
        "post": _firmware_op(
            "startUpdate",
            "Start a firmware/software update job for the device (docs/firmware.md)",
            {
                "201": _resp("The job, just started.", _ref("UpdateJob")),
                "400": _ref("BadRequest", "responses"),
                "404": _NO_JOB,
                "409": _resp("The device already has a running job.", _ref("Error")),
            },
            parameters=_params("ep"),
            requestBody={
                "required": True,
                **_json(
                    {
                        "type": "object",
                        "required": ["package"],
                        "additionalProperties": False,
                        "properties": {
                            "package": {"type": "string", "description": "The package id."},
                            "strategy": {
                                "enum": ["auto", "push", "pull_coap", "pull_http"],
                                "default": "auto",
                            },
                            "instance": {
                                "type": "integer",
                                "minimum": 0,
                                "maximum": 65534,
                                "description": "Object 9 instance (software); 0 for firmware.",
                            },
                        },
                    },
                    {"package": "9f86d081884c7d65…", "strategy": "pull_coap"},
                ),
            },
        ),
        "get": _firmware_op(
            "getUpdate",
            "The device's update job (the running one, or the last)",
            {"200": _resp("The job.", _ref("UpdateJob")), "404": _NO_JOB},
            parameters=_params("ep"),
        ),
        "delete": _firmware_op(
            "cancelUpdate",
            "Cancel the device's update job",
            {
                "200": _resp("The job, cancelled (or as it ended).", _ref("UpdateJob")),
                "404": _NO_JOB,
            },
            parameters=_params("ep"),
        ),
    },
    "/api/firmware/jobs": {
        "get": _firmware_op(
            "listUpdates",
            "Every update job, or a campaign's",
            {
                "200": _resp(
                    "Jobs by endpoint.",
                    {
                        "type": "object",
                        "properties": {"jobs": {"type": "array", "items": _ref("UpdateJob")}},
                    },
                )
            },
            parameters=[_query("campaign", "Only the jobs of this campaign.", {"type": "string"})],
        )
    },
}

_FIRMWARE_SCHEMAS: Doc = {
    "UpdateJob": {
        "type": "object",
        "description": 'One device\'s update job (docs/firmware.md, "Update jobs").',
        "properties": {
            "endpoint": {"type": "string"},
            "package": {"type": "string"},
            "kind": {"enum": ["firmware", "software"]},
            "strategy": {"enum": ["auto", "push", "pull_coap", "pull_http"]},
            "state": {
                "enum": [
                    "pending",
                    "downloading",
                    "downloaded",
                    "updating",
                    "verifying",
                    "succeeded",
                    "failed",
                    "cancelled",
                ]
            },
            "finished": {"type": "boolean"},
            "instance": {"type": "integer"},
            "result": {"type": ["integer", "null"], "description": "The last Update Result."},
            "resultText": {"type": ["string", "null"]},
            "detail": {"type": "string", "description": "Why it failed, or what it waits for."},
            "attempts": {"type": "integer", "description": "Deliveries sent."},
            "campaign": {"type": ["string", "null"]},
            "created": {"type": "integer", "description": "Epoch ms."},
            "updated": {"type": "integer", "description": "Epoch ms."},
        },
    }
}

_DOCUMENT: Doc = {
    "openapi": "3.1.0",
    "info": {
        "title": "pylwm2m server API",
        "version": "1.0.0",
        "description": "Operate an OMA LwM2M server: registrations, device management, "
        "observations, telemetry and events. Paths follow the Leshan demo server's REST API.",
        "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
    },
    "tags": [
        {"name": "server"},
        {"name": "clients"},
        {"name": "device"},
        {"name": "events"},
        {"name": "profiles"},
        {"name": "packages", "description": "Firmware/software packages and their downloads."},
        {"name": "firmware", "description": "Firmware/software update jobs, one per device."},
        {"name": "campaigns", "description": "Firmware/software update campaigns."},
        {"name": "leshan", "description": "The Leshan demo server's dialect of the same API."},
        {"name": "ui"},
    ],
    "paths": {
        **_PATHS,
        **_PROFILE_PATHS,
        **_PACKAGE_PATHS,
        **_FIRMWARE_PATHS,
        **_CAMPAIGN_PATHS,
        **_leshan_paths(),
        **_UI_PATHS,
    },
    "components": {
        "schemas": {
            **_NODE_SCHEMAS,
            **_OTHER_SCHEMAS,
            **_PROFILE_SCHEMAS,
            **_PACKAGE_SCHEMAS,
            **_FIRMWARE_SCHEMAS,
            **_CAMPAIGN_SCHEMAS,
        },
        "parameters": _PARAMETERS,
        "responses": _RESPONSES,
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API token (lwm2m-keystore api-token create NAME --role "
                "read|admin). Without one: 401; a read token on anything but GET: 403.",
            },
            "session": {
                "type": "apiKey",
                "in": "cookie",
                "name": "pylwm2m_session",
                "description": "The browser session POST /api/session sets; requests that "
                "change something need X-Requested-With with it.",
            },
        },
    },
    "security": [{"bearer": []}, {"session": []}],
}

for _path in ("/api/health",):
    for _op in _DOCUMENT["paths"][_path].values():
        _op["security"] = []  # liveness is polled without credentials


def openapi_document() -> Doc:
    """A fresh copy (callers may modify it, e.g. to add ``servers``)."""
    return copy.deepcopy(_DOCUMENT)
