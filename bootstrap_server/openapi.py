"""The bootstrap server's HTTP API as an OpenAPI 3.1 document (``GET /api/openapi.json``).

Written out rather than generated: the routes are few and their bodies are described in
docs/bootstrap.md; a test checks that every route of the app is here and nothing else, and that
the document validates.
"""

from __future__ import annotations

import copy
from typing import Any

Doc = dict[str, Any]

JSON = "application/json"


def _ref(name: str) -> Doc:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: Doc) -> Doc:
    return {"description": description, "content": {JSON: {"schema": schema}}}


_ERROR = _json("Refused (the body says why).", _ref("Error"))
_OBJECT: Doc = {"type": "object"}
_LIST: Doc = {"type": "array", "items": _OBJECT}


def _path_param(name: str, description: str) -> Doc:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


_KIND_NAME = [
    _path_param("kind", "endpoint or profile"),
    _path_param("name", "the endpoint name or the profile name"),
]


def _op(op_id: str, summary: str, responses: Doc, **extra: Any) -> Doc:
    return {"operationId": op_id, "summary": summary, "responses": responses, **extra}


_PATHS: Doc = {
    "/api/health": {
        "get": _op(
            "health",
            "Liveness",
            {"200": _json("The server runs.", _ref("Health"))},
            security=[],
        )
    },
    "/api/ready": {
        "get": _op(
            "ready",
            "Readiness: listeners open, stores answering",
            {
                "200": _json("Ready.", _ref("Readiness")),
                "503": _json("A check failed.", _ref("Readiness")),
            },
            security=[],
        )
    },
    "/api/openapi.json": {
        "get": _op("openapi", "This document", {"200": _json("OpenAPI 3.1.", _OBJECT)})
    },
    "/api/audit": {
        "get": _op(
            "audit",
            "Audit log of every request that could change something, newest first",
            {"200": _json("Entries.", _LIST), "400": _ERROR},
            parameters=[
                {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                {"name": "before", "in": "query", "schema": {"type": "integer"}},
                {"name": "principal", "in": "query", "schema": {"type": "string"}},
            ],
        )
    },
    "/api/bootstrap/configs": {
        "get": _op(
            "listConfigs",
            "Every configuration, summarised (no secrets)",
            {"200": _json("Configurations.", _LIST)},
        )
    },
    "/api/bootstrap/configs/reload": {
        "post": _op(
            "reloadConfigs",
            "Re-read the configuration folder and the profiles",
            {"200": _json("How many configurations are loaded.", _OBJECT), "400": _ERROR},
        )
    },
    "/api/bootstrap/configs/{kind}/{name}": {
        "get": _op(
            "showConfig",
            "One configuration",
            {"200": _json("The configuration.", _OBJECT), "404": _ERROR},
            parameters=_KIND_NAME,
        ),
        "put": _op(
            "putConfig",
            "Add or replace a configuration (the body is the configuration file as JSON)",
            {
                "200": _json("Replaced.", _OBJECT),
                "201": _json("Added.", _OBJECT),
                "400": _ERROR,
            },
            parameters=_KIND_NAME,
            requestBody={"required": True, "content": {JSON: {"schema": _OBJECT}}},
        ),
        "delete": _op(
            "deleteConfig",
            "Remove a configuration and its file",
            {"204": {"description": "Removed."}, "404": _ERROR},
            parameters=_KIND_NAME,
        ),
    },
    "/api/bootstrap/devices": {
        "get": _op(
            "listDevices",
            "Provisioning records with their provisionState",
            {"200": _json("Records.", _LIST)},
        )
    },
    "/api/bootstrap/devices/import": {
        "post": _op(
            "importDevices",
            "Import provisioning records from CSV (endpoint[,profile] per line)",
            {"200": _json("How many were imported.", _OBJECT), "400": _ERROR},
            parameters=[{"name": "profile", "in": "query", "schema": {"type": "string"}}],
            requestBody={"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}},
        )
    },
    "/api/bootstrap/devices/{endpoint}": {
        "delete": _op(
            "deleteDevice",
            "Forget a provisioning record",
            {"204": {"description": "Forgotten."}, "404": _ERROR},
            parameters=[_path_param("endpoint", "the endpoint name")],
        )
    },
    "/api/bootstrap/sessions": {
        "get": _op(
            "listSessions",
            "Finished bootstrap sessions, newest first",
            {"200": _json("Sessions.", _LIST), "400": _ERROR},
            parameters=[
                {"name": "endpoint", "in": "query", "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer"}},
            ],
        )
    },
    "/api/bootstrap/sessions/active": {
        "get": _op(
            "activeSessions", "Running sessions and their step", {"200": _json("Sessions.", _LIST)}
        )
    },
    "/api/bootstrap/clients/{endpoint}/bootstrap": {
        "post": _op(
            "triggerBootstrap",
            "Server-initiated bootstrap; without an address, where the client's last /bs came from",
            {"202": _json("The session started.", _OBJECT), "400": _ERROR, "404": _ERROR},
            parameters=[_path_param("endpoint", "the endpoint name")],
            requestBody={
                "required": False,
                "content": {
                    JSON: {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "address": {"type": "string", "example": "10.0.0.7:5683"}
                            },
                        }
                    }
                },
            },
        )
    },
}

_DOCUMENT: Doc = {
    "openapi": "3.1.0",
    "info": {
        "title": "pylwm2m bootstrap server API",
        "version": "1.0.0",
        "description": "Bootstrap configurations, provisioning records, sessions and "
        "server-initiated bootstrap (docs/bootstrap.md).",
        "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
    },
    "paths": _PATHS,
    "components": {
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {"type": "string"},
                    "code": {"type": "string"},
                    "source": {"type": "string"},
                    "key": {"type": "string"},
                    "reason": {"type": "string"},
                },
            },
            "Health": {
                "type": "object",
                "required": ["status", "configs", "active_sessions"],
                "properties": {
                    "status": {"const": "ok"},
                    "configs": {"type": "integer"},
                    "active_sessions": {"type": "integer"},
                },
            },
            "Readiness": {
                "type": "object",
                "required": ["ready", "checks"],
                "properties": {
                    "ready": {"type": "boolean"},
                    "checks": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
        },
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API token (shared with lwm2m-server through the keystore).",
            }
        },
    },
    "security": [{"bearer": []}],
}


def openapi_document() -> Doc:
    """A fresh copy (callers may change it)."""
    return copy.deepcopy(_DOCUMENT)
