"""What every handler needs, stored once on the application under one typed key."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable

import attrs
from aiohttp import web

from object_models.model import ModelProvider

from ..operations import DeviceResponse, DeviceTimeoutError, ServerOperations
from . import params
from .listing import ClientPages, pages_of
from .params import DEFAULT_TIMEOUT

log = logging.getLogger(__name__)

TIMEOUT_GRACE = 2.0
"""Seconds the API waits beyond ``timeout`` before giving up itself: the operations honour the
timeout and raise ``DeviceTimeoutError``; this is only a safety net so that an HTTP request never
hangs when they do not."""


@attrs.define
class ApiState:
    ops: ServerOperations
    registry: ModelProvider
    keepalive: float = 15.0
    default_timeout: float = DEFAULT_TIMEOUT
    sleeping: dict[str, bool] = attrs.field(factory=dict)
    """Queue-mode presence as last seen on the event stream (SLEEPING/AWAKE), per endpoint."""
    pages: ClientPages = attrs.field(
        default=attrs.Factory(lambda self: pages_of(self.ops), takes_self=True)
    )
    """How ``GET /api/clients`` pages (``api/listing.py``)."""
    streams: set[asyncio.Task[object]] = attrs.field(factory=set)
    """Handler tasks of open event streams, cancelled at shutdown (they never end by
    themselves)."""

    def models(self, endpoint: str) -> ModelProvider:
        """The client's own model versions; the API's registry if the service has none."""
        try:
            return self.ops.models_for(endpoint)
        except NotImplementedError:  # pragma: no cover - a partial implementation
            return self.registry

    async def call(
        self, operation: Awaitable[DeviceResponse], timeout: float, what: str
    ) -> DeviceResponse:
        try:
            return await asyncio.wait_for(operation, timeout + TIMEOUT_GRACE)
        except TimeoutError:
            raise DeviceTimeoutError(f"no answer to {what} within {timeout:g} s") from None


STATE: web.AppKey[ApiState] = web.AppKey("lwm2m_api_state", ApiState)


def state_of(request: web.Request) -> ApiState:
    return request.app[STATE]


def client_of(request: web.Request) -> tuple[ApiState, str]:
    """The state and the endpoint, after checking the client is registered (404 otherwise) —
    before the body is parsed, so an unknown client is a 404 whatever the body says."""
    state = state_of(request)
    endpoint = request.match_info["ep"]
    state.ops.client(endpoint)
    return state, endpoint


def request_timeout(request: web.Request, state: ApiState) -> float:
    return params.timeout(request.query, state.default_timeout)


_AWAKE_KINDS = frozenset({"AWAKE", "REGISTRATION", "UPDATED", "NOTIFICATION", "SEND"})


async def track_presence(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: follow the event stream for the whole life of the app to know which
    queue-mode clients sleep (the operations contract has no presence query)."""
    state = app[STATE]

    async def follow() -> None:
        try:
            events = state.ops.events()
        except Exception:
            log.warning("no event stream: queue-mode presence will not be reported", exc_info=True)
            return
        try:
            async for event in events:
                if event.kind == "SLEEPING":
                    state.sleeping[event.endpoint] = True
                elif event.kind == "DEREGISTRATION":
                    state.sleeping.pop(event.endpoint, None)
                elif event.kind in _AWAKE_KINDS:
                    state.sleeping[event.endpoint] = False
        finally:
            close = getattr(events, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()

    task = asyncio.create_task(follow(), name="lwm2m-api-presence")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
