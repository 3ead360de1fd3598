"""Device management and observation of one path: Read, Write, Execute, Create, Delete,
Discover, Write-Attributes, Observe and Cancel-Observation.

URL shapes follow the Leshan demo server: the LwM2M path is the rest of the URL after the
endpoint (``/api/clients/dev-1/3/0/1``), with ``/observe``, ``/discover`` and ``/attributes``
suffixes for the operations that are not plain HTTP verbs on the node.
"""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from lwm2m_runtime.http_errors import bad_request
from object_models.path import LwM2mPath

from ..json_nodes import instance_from_json, node_from_json
from ..operations import DeviceResponse
from . import params
from .responses import render
from .state import client_of, request_timeout

ATTRIBUTE_KINDS: dict[str, str] = {
    "pmin": "int",
    "pmax": "int",
    "epmin": "int",
    "epmax": "int",
    "hqmax": "int",
    "gt": "float",
    "lt": "float",
    "st": "float",
    "edge": "bool",
    "con": "bool",
}
"""The writable notification attributes (Core 1.2 §5.1.2) and the kind of value each takes;
``dim`` and ``ver`` are read-only and refused."""

_NOT_ATTRIBUTES = frozenset({"timeout"})


def _target(request: web.Request, *, min_depth: int = 1, max_depth: int = 4) -> LwM2mPath:
    return params.lwm2m_path(request.match_info["path"], min_depth=min_depth, max_depth=max_depth)


def _reply(resp: DeviceResponse, endpoint: str, path: LwM2mPath) -> web.Response:
    return render(resp, endpoint=endpoint, target=str(path))


# -- Read / Write / Execute / Create / Delete ------------------------------------------------------


async def read(request: web.Request) -> web.Response:
    state, ep = client_of(request)
    path = _target(request)
    fmt = params.content_format(request.query)
    timeout = request_timeout(request, state)
    resp = await state.call(
        state.ops.read(ep, path, fmt=fmt, timeout=timeout), timeout, f"Read {path}"
    )
    return _reply(resp, ep, path)


async def write(request: web.Request) -> web.Response:
    """PUT: Write (replace by default, ``?replace=false`` for a partial update)."""
    state, ep = client_of(request)
    path = _target(request, min_depth=2)
    fmt = params.content_format(request.query)
    timeout = request_timeout(request, state)
    replace = params.boolean(request.query, "replace", True)
    models = state.models(ep)
    if request.content_type == "text/plain":
        if path.depth < 3:
            raise bad_request("a text/plain body can only write a resource or resource instance")
        data: object = await params.text_body(request)
    else:
        data = await params.json_body(request)
    node = node_from_json(data, path, models)
    resp = await state.call(
        state.ops.write(ep, path, node, replace=replace, fmt=fmt, timeout=timeout),
        timeout,
        f"Write {path}",
    )
    return _reply(resp, ep, path)


async def post(request: web.Request) -> web.Response:
    """POST on a resource executes it (text body = arguments); POST on an object creates an
    instance (JSON body = the instance, with or without an id)."""
    state, ep = client_of(request)
    path = _target(request)
    timeout = request_timeout(request, state)
    if path.is_resource:
        text = await params.text_body(request)
        arguments = text if text else None
        resp = await state.call(
            state.ops.execute(ep, path, arguments, timeout=timeout), timeout, f"Execute {path}"
        )
        return _reply(resp, ep, path)
    if path.is_object:
        fmt = params.content_format(request.query)
        data = await params.json_body(request)
        instance = instance_from_json(data, path.ids[0], state.models(ep))
        resp = await state.call(
            state.ops.create(ep, path, instance, fmt=fmt, timeout=timeout),
            timeout,
            f"Create on {path}",
        )
        return _reply(resp, ep, path)
    raise bad_request(
        f"POST {path}: POST executes a resource (/o/i/r) or creates an instance of an object "
        "(/o); for a partial update use PUT with replace=false"
    )


async def delete(request: web.Request) -> web.Response:
    state, ep = client_of(request)
    path = _target(request)
    timeout = request_timeout(request, state)
    resp = await state.call(state.ops.delete(ep, path, timeout=timeout), timeout, f"Delete {path}")
    return _reply(resp, ep, path)


# -- Discover / Write-Attributes -------------------------------------------------------------------


async def discover(request: web.Request) -> web.Response:
    state, ep = client_of(request)
    path = _target(request, max_depth=3)
    timeout = request_timeout(request, state)
    resp = await state.call(
        state.ops.discover(ep, path, timeout=timeout), timeout, f"Discover {path}"
    )
    return _reply(resp, ep, path)


def _attribute_value(name: str, raw: object) -> str | None:
    """Check one attribute value and return its text form (``None`` removes the attribute)."""
    kind = ATTRIBUTE_KINDS.get(name)
    if kind is None:
        known = ", ".join(ATTRIBUTE_KINDS)
        raise bad_request(f"unknown or read-only attribute {name!r} (writable: {known})")
    if raw is None or raw == "":
        return None
    if kind == "bool":
        if raw in (True, 1, "1", "true"):
            return "1"
        if raw in (False, 0, "0", "false"):
            return "0"
        raise bad_request(f"attribute {name} takes 0 or 1, got {raw!r}")
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise bad_request(f"attribute {name} takes a number, got {raw!r}")
    try:
        number = float(raw)
    except ValueError:
        raise bad_request(f"attribute {name} takes a number, got {raw!r}") from None
    if not math.isfinite(number):
        raise bad_request(f"attribute {name} takes a finite number, got {raw!r}")
    if kind == "int":
        if number != int(number) or number < 0:
            raise bad_request(f"attribute {name} takes a non-negative integer, got {raw!r}")
        return str(int(number))
    return repr(number) if isinstance(raw, float) else str(raw).strip()


async def _attributes(request: web.Request) -> dict[str, str | None]:
    """From the JSON body (``{"pmin": 10, "gt": null}``) and the query (``?pmin=10&gt``)."""
    result: dict[str, str | None] = {}
    for name, value in request.query.items():
        if name not in _NOT_ATTRIBUTES:
            result[name] = _attribute_value(name, value)
    if request.can_read_body:
        text = (await params.text_body(request)).strip()
        if text:
            data: Any = await params.json_body(request)
            if not isinstance(data, dict):
                raise bad_request('attributes body must be a JSON object, e.g. {"pmin": 10}')
            for name, value in data.items():
                result[name] = _attribute_value(name, value)
    if not result:
        raise bad_request('no attributes given: use a JSON body {"pmin": 10} or ?pmin=10')
    for low, high in (("pmin", "pmax"), ("epmin", "epmax")):
        lo, hi = result.get(low), result.get(high)
        if lo is not None and hi is not None and int(lo) > int(hi):
            raise bad_request(f"{low}={lo} is greater than {high}={hi}")
    return result


async def write_attributes(request: web.Request) -> web.Response:
    state, ep = client_of(request)
    path = _target(request)
    timeout = request_timeout(request, state)
    attributes = await _attributes(request)
    resp = await state.call(
        state.ops.write_attributes(ep, path, attributes, timeout=timeout),
        timeout,
        f"Write-Attributes {path}",
    )
    return _reply(resp, ep, path)


# -- Observe / Cancel ------------------------------------------------------------------------------


async def observe(request: web.Request) -> web.Response:
    state, ep = client_of(request)
    path = _target(request)
    fmt = params.content_format(request.query)
    timeout = request_timeout(request, state)
    resp = await state.call(
        state.ops.observe(ep, path, fmt=fmt, timeout=timeout), timeout, f"Observe {path}"
    )
    return _reply(resp, ep, path)


async def cancel_observe(request: web.Request) -> web.Response:
    """``?active=true`` (default) sends a cancelling GET; ``?active=false`` only forgets the
    observation (the device's next notification gets a RST)."""
    state, ep = client_of(request)
    path = _target(request)
    timeout = request_timeout(request, state)
    active = params.boolean(request.query, "active", True)
    resp = await state.call(
        state.ops.cancel_observation(ep, path, active=active, timeout=timeout),
        timeout,
        f"Cancel-Observation {path}",
    )
    return _reply(resp, ep, path)
