"""Read-, Write- and Observe-Composite (LwM2M 1.1+): several paths in one request.

Paths come as ``?paths=/3/0/1,/3303/0/5700`` (Leshan's parameter); the content format as
``?format=`` or Leshan's ``?nodeformat=``. Write-Composite takes a JSON object from path to a
value or node (``{"/3/0/14": "+02:00", "/1/0/1": 300}``); ``null`` asks the device to remove the
value (SenML without a value), as LwM2M allows for resource instances.

The handlers are methods of ``CompositeHandlers``, built once per dialect (``api/dialect.py``):
the module-level names are the native API's.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lwm2m_runtime.http_errors import bad_request
from object_models.content_format import ContentFormat
from object_models.node import LwM2mNode
from object_models.path import LwM2mPath

from ..json_nodes import node_from_json
from . import params
from .dialect import NATIVE, Call, Dialect
from .state import client_of


class CompositeHandlers:
    """Read-, Write-, Observe- and Cancel-Observe-Composite, answered in ``dialect``."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    def _format(self, request: web.Request) -> ContentFormat | None:
        return params.content_format(request.query, *self.dialect.composite_formats)

    def _begin(
        self, request: web.Request, *, fmt: bool
    ) -> tuple[Call, list[LwM2mPath], ContentFormat | None]:
        """The client (registered, or refused before anything else), ``?paths=``, the format
        when the operation takes one, then the timeout."""
        state, ep = client_of(request)
        paths = params.paths(request)
        content_format = self._format(request) if fmt else None
        return Call.of(self.dialect, request, state, ep), paths, content_format

    async def read(self, request: web.Request) -> web.Response:
        call, paths, fmt = self._begin(request, fmt=True)
        op = call.ops.read_composite(call.endpoint, paths, fmt=fmt, timeout=call.timeout)
        return await call.on_paths("Read-Composite", paths, op)

    async def _begin_write(
        self, request: web.Request, refusal: str
    ) -> tuple[Call, ContentFormat | None, dict[str, Any]]:
        """Write-Composite's client, format, timeout, then its body: a non-empty JSON object
        (else a 400 saying ``refusal``)."""
        state, ep = client_of(request)
        fmt = self._format(request)
        call = Call.of(self.dialect, request, state, ep)
        data = await params.json_body(request)
        if not isinstance(data, dict) or not data:
            raise bad_request(refusal)
        return call, fmt, data

    async def write(self, request: web.Request) -> web.Response:
        call, fmt, data = await self._begin_write(
            request, 'Write-Composite takes a JSON object {"/3/0/14": value, ...}'
        )
        state, ep = call.state, call.endpoint
        models = state.models(ep)
        nodes: dict[LwM2mPath, LwM2mNode | None] = {}
        for key, value in data.items():
            path = params.lwm2m_path(key, min_depth=3)
            if path in nodes:
                raise bad_request(f"path {path} is given twice")
            nodes[path] = None if value is None else node_from_json(value, path, models)
        op = call.ops.write_composite(ep, nodes, fmt=fmt, timeout=call.timeout)
        return await call.on_paths("Write-Composite", nodes, op)

    async def observe(self, request: web.Request) -> web.Response:
        call, paths, fmt = self._begin(request, fmt=True)
        op = call.ops.observe_composite(call.endpoint, paths, fmt=fmt, timeout=call.timeout)
        return await call.on_paths("Observe-Composite", paths, op)

    async def cancel_observe(self, request: web.Request) -> web.Response:
        call, paths, _ = self._begin(request, fmt=False)
        active = params.boolean(request.query, "active", True)
        op = call.ops.cancel_composite_observation(
            call.endpoint, paths, active=active, timeout=call.timeout
        )
        return await call.on_paths("Cancel-Observe-Composite", paths, op)


_NATIVE = CompositeHandlers(NATIVE)
read = _NATIVE.read
write = _NATIVE.write
observe = _NATIVE.observe
cancel_observe = _NATIVE.cancel_observe
