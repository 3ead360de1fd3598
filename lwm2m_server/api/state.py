"""What every handler needs, stored once on the application under one typed key."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

import attrs
from aiohttp import web

from object_models.model import ModelProvider

from ..core.registration import Registration
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
    pages: ClientPages = attrs.field(
        default=attrs.Factory(lambda self: pages_of(self.ops), takes_self=True)
    )
    """How ``GET /api/clients`` pages (``api/listing.py``)."""
    streams: set[asyncio.Task[object]] = attrs.field(factory=set)
    """Handler tasks of open event streams, cancelled at shutdown (they never end by
    themselves)."""

    def sleeping(self, registration: Registration) -> bool | None:
        """Whether a queue-mode client sleeps, from the server's own state
        (``ops.is_sleeping``): never derived from the event stream, which may lose events."""
        if not registration.queue_mode:
            return None
        return self.ops.is_sleeping(registration.endpoint)

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
