"""``GET /api/event``: the server's events as server-sent events, like Leshan's EventServlet.

Each event is ``id: N\nevent: KIND\ndata: {json}\n\n`` with KIND one of REGISTRATION, UPDATED,
DEREGISTRATION, SLEEPING, AWAKE, NOTIFICATION, SEND, REQUEST_RESPONSE (the answer to a request
queued for a sleeping client, with the ``requestId`` its 202 gave), or GAP; ``data`` always
carries ``"ep"``, except GAP's.
``?ep=dev-1`` keeps only that endpoint's events (and every GAP). A comment line
(``: keep-alive``) goes out every 15 s so that proxies and clients can tell an idle stream from a
dead one.

Lossless or told so (``lwm2m_server.events_bus``): ``id`` increases by one per event of the server
process; a reader that reconnects with ``Last-Event-ID: N`` (what a browser's EventSource does by
itself; ``?lastEventId=N`` for clients that cannot set headers) gets every event after N that the
replay buffer (``events.replay_size``) still holds, and a ``GAP`` event
``{"missed": n, "from": a, "to": b}`` for those it no longer does; a reader too slow for the
buffer gets the same GAP in the stream. Nothing is dropped without a GAP.

The writer sends whatever is ready in one write (up to ``BATCH`` events): a reader that keeps up
costs one write per loop turn, not one per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from lwm2m_runtime.http_errors import bad_request
from object_models.node import (
    LwM2mMultipleResource,
    LwM2mObject,
    LwM2mObjectInstance,
    LwM2mResourceInstance,
    LwM2mSingleResource,
)
from object_models.path import LwM2mPath
from object_models.types import ObjectLink

from ..core.registration import Registration
from ..core.telemetry import TelemetryPoint
from ..events_bus import GAP
from ..json_nodes import node_to_json, registration_to_json, telemetry_to_json, value_to_jsonable
from ..operations import DeviceResponse, ServerEvent
from .state import state_of

log = logging.getLogger(__name__)

_NODES = (
    LwM2mObject,
    LwM2mObjectInstance,
    LwM2mSingleResource,
    LwM2mMultipleResource,
    LwM2mResourceInstance,
)


def _json_default(value: object) -> Any:
    """Event data is meant to be JSON-ready; this makes the stream robust to a producer that
    hands over nodes, registrations or raw values anyway."""
    if isinstance(value, _NODES):
        return node_to_json(value)
    if isinstance(value, DeviceResponse):  # REQUEST_RESPONSE's answer
        from .responses import device_response_json

        return device_response_json(value)
    if isinstance(value, Registration):
        return registration_to_json(value)
    if isinstance(value, TelemetryPoint):
        return telemetry_to_json(value)
    if isinstance(value, bytes | ObjectLink):
        return value_to_jsonable(value)
    if isinstance(value, LwM2mPath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def format_event(event: ServerEvent) -> bytes:
    """The native dialect's frame (without ``id:``, which ``serve_events`` adds)."""
    if event.kind == GAP:
        data = {str(k): v for k, v in event.data.items()}
    else:
        data = {"ep": event.endpoint, **{str(k): v for k, v in event.data.items()}}
    text = json.dumps(data, default=_json_default, separators=(",", ":"))
    return f"event: {event.kind}\ndata: {text}\n\n".encode()


async def event_stream(request: web.Request) -> web.StreamResponse:
    return await serve_events(request, format_event)


Formatter = Callable[[ServerEvent], bytes | None]
"""One event as SSE bytes, or None to leave it out (each API dialect has its own)."""


BATCH = 512
"""Most events formatted and written at once."""


def resume_id(request: web.Request) -> int | None:
    """The id to resume after: ``Last-Event-ID`` (set by EventSource on reconnect), else the
    ``lastEventId`` query parameter; None for a fresh stream. Not an integer: HTTP 400."""
    raw = request.headers.get("Last-Event-ID") or request.query.get("lastEventId")
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw.strip())
    except ValueError:
        raise bad_request(
            f"Last-Event-ID / lastEventId {raw[:40]!r} is not an event id (an integer)"
        ) from None
    if value < 0:
        raise bad_request(f"Last-Event-ID / lastEventId {value} is negative")
    return value


async def serve_events(request: web.Request, formatter: Formatter) -> web.StreamResponse:
    state = state_of(request)
    only = request.query.get("ep") or None
    after = resume_id(request)
    events = state.ops.events(after)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    me = asyncio.current_task()
    if me is not None:
        state.streams.add(me)
    waiter: asyncio.Future[bool] | None = None
    try:
        await response.prepare(request)
        await response.write(b": stream open\n\n")
        while True:
            batch = events.ready(BATCH)
            if not batch:
                if waiter is None:
                    waiter = asyncio.ensure_future(events.wait())
                done, _ = await asyncio.wait({waiter}, timeout=state.keepalive)
                if not done:
                    await response.write(b": keep-alive\n\n")
                    continue  # still waiting on the same waiter
                more, waiter = waiter.result(), None
                if not more:
                    break  # the server's event stream ended
                continue
            frames: list[bytes] = []
            for event in batch:
                if only is not None and event.endpoint != only and event.kind != GAP:
                    continue
                frame = formatter(event)
                if frame is not None:
                    frames.append(b"id: %d\n" % event.id + frame if event.id else frame)
            if frames:
                await response.write(b"".join(frames))
    except (ConnectionResetError, ConnectionError):
        log.debug("event stream client went away")
    finally:
        if me is not None:
            state.streams.discard(me)
        if waiter is not None and not waiter.done():
            waiter.cancel()
        with contextlib.suppress(Exception):
            await events.aclose()
    return response


async def close_streams(app: web.Application) -> None:
    """``on_shutdown``: event streams never end by themselves; end them so the server stops
    promptly instead of waiting for its shutdown timeout."""
    from .state import STATE

    for task in list(app[STATE].streams):
        task.cancel()
