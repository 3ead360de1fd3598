"""``GET /api/event``: the server's events as server-sent events, like Leshan's EventServlet.

Each event is ``event: KIND\\ndata: {json}\\n\\n`` with KIND one of REGISTRATION, UPDATED,
DEREGISTRATION, SLEEPING, AWAKE, NOTIFICATION, SEND, REQUEST_RESPONSE (the answer to a request
queued for a sleeping client, with the ``requestId`` its 202 gave); ``data`` always carries
``"ep"``.
``?ep=dev-1`` keeps only that endpoint's events. A comment line (``: keep-alive``) goes out
every 15 s so that proxies and clients can tell an idle stream from a dead one.

Each connection has its own subscription (``ops.events()``) feeding a bounded queue: a client
that reads too slowly loses the oldest events (and is told so in a comment) instead of making
the server buffer without limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

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
from ..json_nodes import node_to_json, registration_to_json, telemetry_to_json, value_to_jsonable
from ..operations import DeviceResponse, ServerEvent
from .state import state_of

log = logging.getLogger(__name__)

QUEUE_SIZE = 1000

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
    data = {"ep": event.endpoint, **{str(k): v for k, v in event.data.items()}}
    text = json.dumps(data, default=_json_default, separators=(",", ":"))
    return f"event: {event.kind}\ndata: {text}\n\n".encode()


async def event_stream(request: web.Request) -> web.StreamResponse:
    return await serve_events(request, format_event)


Formatter = Callable[[ServerEvent], bytes | None]
"""One event as SSE bytes, or None to leave it out (each API dialect has its own)."""


async def serve_events(request: web.Request, formatter: Formatter) -> web.StreamResponse:
    state = state_of(request)
    only = request.query.get("ep") or None
    queue: asyncio.Queue[ServerEvent] = asyncio.Queue(QUEUE_SIZE)
    dropped = 0
    events = state.ops.events()

    async def pump() -> None:
        nonlocal dropped
        async for event in events:
            if only is not None and event.endpoint != only:
                continue
            if queue.full():
                queue.get_nowait()
                dropped += 1
            queue.put_nowait(event)

    pump_task = asyncio.create_task(pump(), name="lwm2m-api-sse-pump")
    await asyncio.sleep(0)  # let a generator-based subscription start before we say "open"
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
    getter: asyncio.Future[ServerEvent] | None = None
    try:
        await response.prepare(request)
        await response.write(b": stream open\n\n")
        while True:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait(
                {getter, pump_task}, timeout=state.keepalive, return_when=asyncio.FIRST_COMPLETED
            )
            if getter not in done:
                getter.cancel()
                if pump_task in done and queue.empty():
                    break  # the server's event stream ended
                await response.write(b": keep-alive\n\n")
                continue
            if dropped:
                await response.write(f": {dropped} events dropped (slow reader)\n\n".encode())
                dropped = 0
            frame = formatter(getter.result())
            if frame is not None:
                await response.write(frame)
    except (ConnectionResetError, ConnectionError):
        log.debug("event stream client went away")
    finally:
        if me is not None:
            state.streams.discard(me)
        if getter is not None and not getter.done():
            getter.cancel()
        pump_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump_task
        close = getattr(events, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()
    return response


async def close_streams(app: web.Application) -> None:
    """``on_shutdown``: event streams never end by themselves; end them so the server stops
    promptly instead of waiting for its shutdown timeout."""
    from .state import STATE

    for task in list(app[STATE].streams):
        task.cancel()
