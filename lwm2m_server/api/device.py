"""Device management and observation of one path: Read, Write, Execute, Create, Delete,
Discover, Write-Attributes, Observe and Cancel-Observation.

URL shapes follow the Leshan demo server: the LwM2M path is the rest of the URL after the
endpoint (``/api/clients/dev-1/3/0/1``), with ``/observe``, ``/discover`` and ``/attributes``
suffixes for the operations that are not plain HTTP verbs on the node.

The handlers are methods of ``DeviceHandlers``, built once per dialect (``api/dialect.py``):
the module-level names are the native API's; the Leshan dialect subclasses it where Leshan
answers otherwise (``api/leshan/routes.py``).
"""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from lwm2m_runtime.http_errors import bad_request
from object_models.content_format import ContentFormat
from object_models.path import LwM2mPath

from ..json_nodes import instance_from_json, node_from_json
from . import params
from .dialect import NATIVE, Call, Dialect
from .state import client_of

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


class DeviceHandlers:
    """Device management and observation of one path, answered in ``dialect``."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    def _begin(
        self, request: web.Request, *, min_depth: int = 1, max_depth: int = 4, fmt: bool = False
    ) -> tuple[Call, LwM2mPath, ContentFormat | None]:
        """The client (registered, or refused before anything else), the path, ``?format=``
        when the operation takes one, then the timeout."""
        state, ep = client_of(request)
        path = _target(request, min_depth=min_depth, max_depth=max_depth)
        content_format = params.content_format(request.query) if fmt else None
        return Call.of(self.dialect, request, state, ep), path, content_format

    # -- Read / Write / Execute / Create / Delete --------------------------------------------------
    async def read(self, request: web.Request) -> web.Response:
        call, path, fmt = self._begin(request, fmt=True)
        op = call.ops.read(call.endpoint, path, fmt=fmt, timeout=call.timeout)
        return await call.on_path("Read", path, op)

    async def write(self, request: web.Request) -> web.Response:
        """PUT: Write (replace by default, ``?replace=false`` for a partial update)."""
        call, path, fmt = self._begin(request, min_depth=2, fmt=True)
        replace = params.boolean(request.query, "replace", True)
        models = call.state.models(call.endpoint)
        if request.content_type == "text/plain":
            if path.depth < 3:
                raise bad_request(
                    "a text/plain body can only write a resource or resource instance"
                )
            data: object = await params.text_body(request)
        else:
            data = await params.json_body(request)
        node = node_from_json(data, path, models)
        op = call.ops.write(
            call.endpoint, path, node, replace=replace, fmt=fmt, timeout=call.timeout
        )
        return await call.on_path("Write", path, op)

    async def post(self, request: web.Request) -> web.Response:
        """POST on a resource executes it (text body = arguments); POST on an object creates an
        instance (JSON body = the instance, with or without an id)."""
        call, path, _ = self._begin(request)
        if path.is_resource:
            return await self._execute(request, call, path)
        if path.is_object:
            fmt = params.content_format(request.query)
            data = await params.json_body(request)
            instance = instance_from_json(data, path.ids[0], call.state.models(call.endpoint))
            op = call.ops.create(call.endpoint, path, instance, fmt=fmt, timeout=call.timeout)
            return await call.on_path("Create on", path, op)
        raise bad_request(
            f"POST {path}: POST executes a resource (/o/i/r) or creates an instance of an "
            "object (/o); for a partial update use PUT with replace=false"
        )

    async def _execute(self, request: web.Request, call: Call, path: LwM2mPath) -> web.Response:
        """Execute ``path`` with the text body as its arguments (none when empty)."""
        text = await params.text_body(request)
        op = call.ops.execute(call.endpoint, path, text or None, timeout=call.timeout)
        return await call.on_path("Execute", path, op)

    async def delete(self, request: web.Request) -> web.Response:
        call, path, _ = self._begin(request)
        op = call.ops.delete(call.endpoint, path, timeout=call.timeout)
        return await call.on_path("Delete", path, op)

    # -- Discover / Write-Attributes ---------------------------------------------------------------
    async def discover(self, request: web.Request) -> web.Response:
        call, path, _ = self._begin(request, max_depth=3)
        op = call.ops.discover(call.endpoint, path, timeout=call.timeout)
        return await call.on_path("Discover", path, op)

    async def write_attributes(self, request: web.Request) -> web.Response:
        call, path, _ = self._begin(request)
        attributes = await _attributes(request)
        op = call.ops.write_attributes(call.endpoint, path, attributes, timeout=call.timeout)
        return await call.on_path("Write-Attributes", path, op)

    # -- Observe / Cancel --------------------------------------------------------------------------
    async def observe(self, request: web.Request) -> web.Response:
        call, path, fmt = self._begin(request, fmt=True)
        op = call.ops.observe(call.endpoint, path, fmt=fmt, timeout=call.timeout)
        return await call.on_path("Observe", path, op)

    async def cancel_observe(self, request: web.Request) -> web.Response:
        """``?active=true`` (default) sends a cancelling GET; ``?active=false`` only forgets the
        observation (the device's next notification gets a RST)."""
        call, path, _ = self._begin(request)
        active = params.boolean(request.query, "active", True)
        op = call.ops.cancel_observation(call.endpoint, path, active=active, timeout=call.timeout)
        return await call.on_path("Cancel-Observation", path, op)


_NATIVE = DeviceHandlers(NATIVE)
read = _NATIVE.read
write = _NATIVE.write
post = _NATIVE.post
delete = _NATIVE.delete
discover = _NATIVE.discover
write_attributes = _NATIVE.write_attributes
observe = _NATIVE.observe
cancel_observe = _NATIVE.cancel_observe
