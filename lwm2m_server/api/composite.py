"""Read-, Write- and Observe-Composite (LwM2M 1.1+): several paths in one request.

Paths come as ``?paths=/3/0/1,/3303/0/5700`` (Leshan's parameter); the content format as
``?format=`` or Leshan's ``?nodeformat=``. Write-Composite takes a JSON object from path to a
value or node (``{"/3/0/14": "+02:00", "/1/0/1": 300}``); ``null`` asks the device to remove the
value (SenML without a value), as LwM2M allows for resource instances.
"""

from __future__ import annotations

from aiohttp import web

from lwm2m_runtime.http_errors import bad_request
from object_models.node import LwM2mNode
from object_models.path import LwM2mPath

from ..json_nodes import node_from_json
from . import params
from .responses import render
from .state import client_of, request_timeout


def _label(paths: list[LwM2mPath]) -> str:
    return ",".join(str(p) for p in paths)


async def read(request: web.Request) -> web.Response:
    state, ep = client_of(request)
    paths = params.paths(request)
    fmt = params.content_format(request.query, "format", "nodeformat")
    timeout = request_timeout(request, state)
    resp = await state.call(
        state.ops.read_composite(ep, paths, fmt=fmt, timeout=timeout),
        timeout,
        f"Read-Composite {_label(paths)}",
    )
    return render(resp, endpoint=ep, target=_label(paths))


async def write(request: web.Request) -> web.Response:
    state, ep = client_of(request)
    fmt = params.content_format(request.query, "format", "nodeformat")
    timeout = request_timeout(request, state)
    data = await params.json_body(request)
    if not isinstance(data, dict) or not data:
        raise bad_request('Write-Composite takes a JSON object {"/3/0/14": value, ...}')
    models = state.models(ep)
    nodes: dict[LwM2mPath, LwM2mNode | None] = {}
    for key, value in data.items():
        path = params.lwm2m_path(key, min_depth=3)
        if path in nodes:
            raise bad_request(f"path {path} is given twice")
        nodes[path] = None if value is None else node_from_json(value, path, models)
    resp = await state.call(
        state.ops.write_composite(ep, nodes, fmt=fmt, timeout=timeout),
        timeout,
        f"Write-Composite {_label(list(nodes))}",
    )
    return render(resp, endpoint=ep, target=_label(list(nodes)))


async def observe(request: web.Request) -> web.Response:
    state, ep = client_of(request)
    paths = params.paths(request)
    fmt = params.content_format(request.query, "format", "nodeformat")
    timeout = request_timeout(request, state)
    resp = await state.call(
        state.ops.observe_composite(ep, paths, fmt=fmt, timeout=timeout),
        timeout,
        f"Observe-Composite {_label(paths)}",
    )
    return render(resp, endpoint=ep, target=_label(paths))


async def cancel_observe(request: web.Request) -> web.Response:
    state, ep = client_of(request)
    paths = params.paths(request)
    timeout = request_timeout(request, state)
    active = params.boolean(request.query, "active", True)
    resp = await state.call(
        state.ops.cancel_composite_observation(ep, paths, active=active, timeout=timeout),
        timeout,
        f"Cancel-Observe-Composite {_label(paths)}",
    )
    return render(resp, endpoint=ep, target=_label(paths))
