"""The Leshan dialect of the HTTP API: the same operations under ``/leshan/api/...``, with the
JSON, status codes and error bodies of the Leshan demo server (``ClientServlet``,
``EventServlet``, ``ObjectSpecServlet``, ``ServerServlet``), so that Leshan's web UI and
scripts work against this server unchanged (docs/http-api.md, "Leshan dialect").

Why a path prefix and not a header: Leshan's UI builds every URL relative to its page
(``api/clients``, ``new EventSource("api/event")``) and sends no custom header (an
``EventSource`` cannot send one at all). Served under ``/leshan/``, it reaches
``/leshan/api/...`` as written. The prefix also keeps the two dialects apart in logs, the
audit log and the OpenAPI document.

Where Leshan answers differently from our native API, this follows Leshan:

* an unknown endpoint is HTTP 400 ``No registered client with id 'x'`` (plain text), not 404;
* errors are plain-text bodies (Leshan's UI shows a string body as the message);
* ``GET /api/clients`` is the whole list (Leshan's UI has no paging);
* a request queued for a sleeping client is HTTP 200 ``{ep, path, requestId, delayed: true}``
  and its answer a REQUEST_RESPONSE event;
* ``timeout`` is in seconds up to 30 minutes; ``null``/``none`` (the UI's "None") means the
  server's default;
* ``DELETE .../observe`` without ``active`` only forgets the observation (200, empty body),
  with ``active`` it cancels on the device (404 if there is no such observation).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from lwm2m_runtime.http_errors import ApiError
from object_models.errors import Lwm2mError
from object_models.path import LwM2mPath

from ...core.queue import QueueFullError
from ...operations import (
    DeviceAnswerError,
    DeviceResponse,
    DeviceTimeoutError,
    ObservationLimitError,
    ServerEvent,
    UnknownClientError,
)
from .. import params
from ..composite import CompositeHandlers
from ..device import DeviceHandlers
from ..dialect import Dialect
from ..events import serve_events
from ..state import ApiState, client_of, state_of
from . import shapes
from .codec import LeshanValueError, instance_in, node_in, text_in
from .specs import object_specs

log = logging.getLogger(__name__)

PREFIX = "/leshan"
"""Every Leshan-dialect route is the native route under this prefix."""

MAX_TIMEOUT = 30 * 60.0
"""The longest timeout Leshan's UI offers (30 min)."""

_NO_TIMEOUT = frozenset({"", "null", "none", "undefined"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ClientNotFound(Lwm2mError):
    """Leshan answers an unknown endpoint with 400 and this text."""


def _text(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain")


def leshan_errors(handler: Handler) -> Handler:
    """Our errors as Leshan's servlets answer them: plain text, Leshan's status codes."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except UnknownClientError:
            ep = request.match_info.get("ep", "")
            return _text(400, f"No registered client with id '{ep}'")
        except DeviceTimeoutError:
            return _text(504, "Request timeout")
        except (LeshanValueError, ApiError) as exc:
            status = getattr(exc, "status", 400)
            return _text(status, f"Invalid request: {exc.message}")
        except QueueFullError as exc:
            return _text(503, exc.message)
        except ObservationLimitError as exc:
            return _text(409, exc.message)
        except DeviceAnswerError as exc:
            return _text(500, f"Invalid Response: {exc.message}")
        except Lwm2mError as exc:
            if (exc.code >> 5) == 4:
                return _text(400, f"Invalid request: {exc.message}")
            return _text(500, f"Unexpected exception: {exc.message}")

    return wrapped


# -- helpers ---------------------------------------------------------------------------------------


def timeout(query: Mapping[str, str], default: float) -> float:
    """``?timeout=`` in seconds up to 30 minutes; the UI's "None" (``null``) is the server's
    default."""
    raw = query.get("timeout")
    if raw is not None and raw.strip().lower() in _NO_TIMEOUT:
        return default
    return params.timeout(query, default, maximum=MAX_TIMEOUT)


def _reply(resp: DeviceResponse, endpoint: str, path: str | None) -> web.Response:
    """Leshan's answer: HTTP 200 either way, a queued request as ``delayed``."""
    if resp.queued:
        return web.json_response(shapes.delayed_json(endpoint, path, resp.request_id))
    return web.json_response(shapes.response_json(resp))


LESHAN = Dialect(
    timeout=timeout,
    reply=_reply,
    composite_formats=("nodeformat", "format"),
    composite_target=False,
)


# -- registrations --------------------------------------------------------------------------------


@leshan_errors
async def list_clients(request: web.Request) -> web.Response:
    """Every registration (Leshan's UI has no paging)."""
    state = state_of(request)
    rows = [(r, state.sleeping(r)) for r in state.ops.clients()]

    def render() -> bytes:
        # ~0.1 ms per registration: in a worker thread, as the native listing's pages, so a
        # large fleet does not stop the CoAP listeners sharing this loop (registrations are
        # immutable, the rows a snapshot)
        rows.sort(key=lambda row: row[0].endpoint)
        body = [shapes.registration_json(reg, sleeping=sleeping) for reg, sleeping in rows]
        return json.dumps(body).encode()

    return web.Response(body=await asyncio.to_thread(render), content_type="application/json")


@leshan_errors
async def show_client(request: web.Request) -> web.Response:
    state = state_of(request)
    reg = state.ops.client(request.match_info["ep"])
    return web.json_response(shapes.registration_json(reg, sleeping=state.sleeping(reg)))


# -- device management, observe, composite --------------------------------------------------------


def _observed(state: ApiState, ep: str) -> list[tuple[LwM2mPath, ...]]:
    result = []
    for item in state.ops.observations(ep):
        paths: Sequence[LwM2mPath] = getattr(item, "paths", None) or item
        result.append(tuple(paths))
    return result


class LeshanDevice(DeviceHandlers):
    """The native handlers in Leshan's dialect, but where Leshan's ``ClientServlet`` parses or
    answers otherwise."""

    async def write(self, request: web.Request) -> web.Response:
        """PUT: Write (``replace=false`` for a partial update); a JSON node or ``text/plain``."""
        call, path, fmt = self._begin(request, min_depth=2, fmt=True)
        replace = request.query.get("replace", "true").strip().lower() != "false"
        models = call.state.models(call.endpoint)
        if request.content_type == "text/plain":
            node = text_in(await params.text_body(request), path, models)
        elif request.content_type == "application/json":
            node = node_in(await params.json_body(request), path, models)
        else:
            raise ApiError(400, f"content type {request.content_type} not supported")
        op = call.ops.write(
            call.endpoint, path, node, replace=replace, fmt=fmt, timeout=call.timeout
        )
        return await call.on_path("Write", path, op)

    async def post(self, request: web.Request) -> web.Response:
        """POST on a resource executes it; on an object (or object instance) creates one."""
        call, path, _ = self._begin(request, max_depth=3)
        if path.is_resource:
            return await self._execute(request, call, path)
        fmt = params.content_format(request.query)
        instance_id = path.ids[1] if path.is_object_instance else None
        body = await params.json_body(request)
        models = call.state.models(call.endpoint)
        instance = instance_in(body, path.ids[0], models, instance_id)
        target = LwM2mPath.parse(f"/{path.ids[0]}")
        op = call.ops.create(call.endpoint, target, instance, fmt=fmt, timeout=call.timeout)
        return await call.on_path("Create on", path, op)

    async def cancel_observe(self, request: web.Request) -> web.Response:
        """Without ``active``: forget the observation (200, no body); with it: cancel on the
        device, 404 when there is no such observation (Leshan's rules)."""
        call, path, _ = self._begin(request)
        ep, seconds = call.endpoint, call.timeout
        if "active" not in request.query:
            op = call.ops.cancel_observation(ep, path, active=False, timeout=seconds)
            await call.state.call(op, seconds, f"Cancel-Observation {path}")
            return web.Response(status=200)
        if (path,) not in _observed(call.state, ep):
            return _text(404, f"no observation for path {path} for  client '{ep}'")
        op = call.ops.cancel_observation(ep, path, active=True, timeout=seconds)
        return await call.on_path("Cancel-Observation", path, op)


class LeshanComposite(CompositeHandlers):
    """The native composite handlers in Leshan's dialect, but for Leshan's Write-Composite body
    and its Cancel-Observe-Composite rules."""

    async def write(self, request: web.Request) -> web.Response:
        """PUT ``composite``: ``{"/3/0/14": node, ...}`` (Leshan's map of path to node)."""
        call, fmt, data = await self._begin_write(
            request, 'a Write-Composite body is {"/o/i/r": node, ...}'
        )
        ep = call.endpoint
        models = call.state.models(ep)
        nodes = {}
        for text, value in data.items():
            path = params.lwm2m_path(str(text), min_depth=1)
            nodes[path] = node_in(value, path, models)
        op = call.ops.write_composite(ep, nodes, fmt=fmt, timeout=call.timeout)
        return await call.on_paths("Write-Composite", nodes, op)

    async def cancel_observe(self, request: web.Request) -> web.Response:
        call, paths, _ = self._begin(request, fmt=False)
        ep, seconds = call.endpoint, call.timeout
        active = "active" in request.query
        if active and tuple(paths) not in _observed(call.state, ep):
            shown = "[" + ", ".join(str(p) for p in paths) + "]"
            return _text(404, f"no composite observation for paths {shown} for  client '{ep}'")
        op = call.ops.cancel_composite_observation(ep, paths, active=active, timeout=seconds)
        if not active:
            await call.state.call(op, seconds, "Cancel-Observe-Composite")
            return web.Response(status=200)
        return await call.on_paths("Cancel-Observe-Composite", paths, op)


_DEVICE = LeshanDevice(LESHAN)
_COMPOSITE = LeshanComposite(LESHAN)
read = leshan_errors(_DEVICE.read)
write = leshan_errors(_DEVICE.write)
post = leshan_errors(_DEVICE.post)
delete = leshan_errors(_DEVICE.delete)
discover = leshan_errors(_DEVICE.discover)
write_attributes = leshan_errors(_DEVICE.write_attributes)
observe = leshan_errors(_DEVICE.observe)
cancel_observe = leshan_errors(_DEVICE.cancel_observe)
read_composite = leshan_errors(_COMPOSITE.read)
write_composite = leshan_errors(_COMPOSITE.write)
observe_composite = leshan_errors(_COMPOSITE.observe)
cancel_observe_composite = leshan_errors(_COMPOSITE.cancel_observe)


# -- object models, server -------------------------------------------------------------------------


@leshan_errors
async def objectspecs(request: web.Request) -> web.Response:
    """The object models this client is served with, sorted by id (``ObjectSpecServlet``)."""
    state, ep = client_of(request)
    return web.json_response(object_specs(state, ep))


@leshan_errors
async def server_endpoint(request: web.Request) -> web.Response:
    """The CoAP endpoints, as ``ServerServlet`` lists them (``uri``: full/scheme/host/port)."""
    ops = state_of(request).ops
    result = []
    for scheme, attr, what in (
        ("coap", "coap_address", "CoAP over UDP (NoSec)"),
        ("coaps", "coaps_address", "CoAP over DTLS (PSK, RPK, X.509)"),
    ):
        try:
            address = getattr(ops, attr)
        except (AttributeError, RuntimeError):
            continue
        host = address.host if ":" not in address.host else f"[{address.host}]"
        result.append(
            {
                "uri": {
                    "full": f"{scheme}://{host}:{address.port}",
                    "scheme": scheme,
                    "host": address.host,
                    "port": address.port,
                },
                "description": what,
            }
        )
    return web.json_response(result)


# -- events ---------------------------------------------------------------------------------------


def format_event(event: ServerEvent) -> bytes | None:
    """One event in Leshan's ``EventServlet`` payload; None for what Leshan does not send."""
    data: Any = event.data
    payload: object
    if event.kind in ("REGISTRATION", "DEREGISTRATION"):
        payload = shapes.native_registration(data)
    elif event.kind == "UPDATED":
        registration = shapes.native_registration(data)
        payload = {"registration": registration, "update": shapes.update_json(registration)}
    elif event.kind in ("SLEEPING", "AWAKE"):
        payload = {"ep": event.endpoint}
    elif event.kind == "NOTIFICATION":
        payload = shapes.notification_json(event.endpoint, data)
    elif event.kind == "SEND":
        payload = shapes.send_json(event.endpoint, data)
    elif event.kind == "REQUEST_RESPONSE":
        body: dict[str, object] = {"ep": event.endpoint}
        for key in ("path", "requestId"):
            if data.get(key) is not None:
                body[key] = data[key]
        response = data.get("response")
        if isinstance(response, DeviceResponse):
            body["response"] = shapes.response_json(response)
        elif data.get("error"):
            body["error"] = data["error"]
        body["delayed"] = True
        payload = body
    elif event.kind == "GAP":  # ours, not Leshan's: the events this reader missed (its UI
        payload = dict(event.data)  # ignores a kind it does not listen to)
    else:
        return None
    if payload is None:
        return None
    text = json.dumps(payload, separators=(",", ":"), default=str)
    return f"event: {event.kind}\ndata: {text}\n\n".encode()


async def event_stream(request: web.Request) -> web.StreamResponse:
    return await serve_events(request, format_event)


# -- wiring ---------------------------------------------------------------------------------------

_CLIENT = PREFIX + "/api/clients/{ep}"
_PATH = (
    _CLIENT + r"/{path:(?!composite(?:/observe)?/?$)(?!.*/(?:observe|discover|attributes)/?$).*}"
)
_PATH_SUFFIXED = _CLIENT + r"/{path:(?!composite/?$).*}"

ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", PREFIX + "/api/event", event_stream),
    ("GET", PREFIX + "/api/clients", list_clients),
    ("GET", _CLIENT, show_client),
    ("GET", PREFIX + "/api/objectspecs/{ep}", objectspecs),
    ("GET", PREFIX + "/api/server/endpoint", server_endpoint),
    ("POST", _CLIENT + "/composite/observe", observe_composite),
    ("DELETE", _CLIENT + "/composite/observe", cancel_observe_composite),
    ("GET", _CLIENT + "/composite", read_composite),
    ("PUT", _CLIENT + "/composite", write_composite),
    ("POST", _PATH_SUFFIXED + "/observe", observe),
    ("DELETE", _PATH_SUFFIXED + "/observe", cancel_observe),
    ("GET", _PATH_SUFFIXED + "/discover", discover),
    ("PUT", _PATH_SUFFIXED + "/attributes", write_attributes),
    ("GET", _PATH, read),
    ("PUT", _PATH, write),
    ("POST", _PATH, post),
    ("DELETE", _PATH, delete),
]
"""Fixed suffixes before the catch-all ``{path}`` routes (aiohttp tries them in order)."""


def add_routes(app: web.Application, extra: Sequence[tuple[str, str, Handler]] = ()) -> None:
    for method, path, handler in [*ROUTES[:5], *extra, *ROUTES[5:]]:
        app.router.add_route(method, path, handler)
