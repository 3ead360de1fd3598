"""A device's answer (``DeviceResponse``) as the JSON the Leshan demo server returns.

Device-side errors are not HTTP errors: when the device answers 4.04, the HTTP request itself
succeeded, so the API answers HTTP 200 with the CoAP status in the body, exactly as Leshan does::

    {"status": "NOT_FOUND", "code": "4.04", "valid": true, "success": false, "failure": true,
     "errormessage": "no such instance"}

and on success ``{"status": "CONTENT", "code": "2.05", ..., "content": {node}}``. ``code`` (the
dotted CoAP code) and ``contentFormat`` are ours; the rest are Leshan's field names. A request
queued for a sleeping queue-mode client is HTTP 202 ``{"status": "queued", ...}``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lwm2m_runtime.http_errors import dotted
from object_models.content_format import ContentFormat

from ..json_nodes import links_to_json, node_to_json
from ..operations import DeviceResponse

CODE_NAMES = {
    0x41: "CREATED",
    0x42: "DELETED",
    0x43: "VALID",
    0x44: "CHANGED",
    0x45: "CONTENT",
    0x5F: "CONTINUE",
    0x80: "BAD_REQUEST",
    0x81: "UNAUTHORIZED",
    0x82: "BAD_OPTION",
    0x83: "FORBIDDEN",
    0x84: "NOT_FOUND",
    0x85: "METHOD_NOT_ALLOWED",
    0x86: "NOT_ACCEPTABLE",
    0x88: "REQUEST_ENTITY_INCOMPLETE",
    0x89: "CONFLICT",
    0x8C: "PRECONDITION_FAILED",
    0x8D: "REQUEST_ENTITY_TOO_LARGE",
    0x8F: "UNSUPPORTED_CONTENT_FORMAT",
    0x9D: "TOO_MANY_REQUESTS",
    0xA0: "INTERNAL_SERVER_ERROR",
    0xA1: "NOT_IMPLEMENTED",
    0xA2: "BAD_GATEWAY",
    0xA3: "SERVICE_UNAVAILABLE",
    0xA4: "GATEWAY_TIMEOUT",
    0xA5: "PROXYING_NOT_SUPPORTED",
}


def code_name(code: int) -> str:
    """Leshan's name of a CoAP code (``CONTENT``); unknown codes as ``CODE_4_22``."""
    return CODE_NAMES.get(code, f"CODE_{code >> 5}_{code & 0x1F:02d}")


def format_name(fmt: int) -> str:
    """``11542`` → ``tlv``: the short name ``?format=`` accepts back."""
    try:
        return ContentFormat(fmt).name.lower().replace("_", "-")
    except ValueError:
        return str(fmt)


def device_response_json(resp: DeviceResponse) -> dict[str, Any]:
    result: dict[str, Any] = {
        "status": code_name(resp.code),
        "code": dotted(resp.code),
        "valid": True,
        "success": resp.success,
        "failure": not resp.success,
    }
    if resp.content_format is not None:
        result["contentFormat"] = format_name(resp.content_format)
    if resp.node is not None:
        result["content"] = node_to_json(resp.node)
    if resp.nodes is not None:
        result["content"] = {
            str(path): None if node is None else node_to_json(node)
            for path, node in sorted(resp.nodes.items())
        }
    if resp.links is not None:
        result["objectLinks"] = links_to_json(resp.links)
        result["links"] = resp.links
    if resp.location is not None:
        result["location"] = resp.location
    if not resp.success and resp.error_message:
        result["errormessage"] = resp.error_message
    return result


def render(resp: DeviceResponse, *, endpoint: str, target: str) -> web.Response:
    """HTTP 202 for a queued request, else HTTP 200 with the device's answer."""
    if resp.queued:
        body: dict[str, Any] = {"status": "queued", "ep": endpoint, "path": target, "delayed": True}
        if resp.request_id is not None:
            body["requestId"] = resp.request_id  # its answer: a REQUEST_RESPONSE event
        return web.json_response(body, status=202)
    return web.json_response(device_response_json(resp))
