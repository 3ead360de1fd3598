"""The operations the running server offers to its operators: the contract between the CoAP
service (which implements it) and the HTTP API and CLI (which call it).

Keeping it a small Protocol lets the API be written and read without knowing about CoAP,
sockets or the store, and lets the service change inside without touching the API.

Errors: every method raises ``Lwm2mError`` subclasses from this module, each carrying the CoAP
code and mapped by the API to an HTTP status: ``UnknownClientError`` → 404,
``DeviceTimeoutError`` → 504, ``DeviceAnswerError`` → 502,
``QueueFullError`` → 503, ``ObservationLimitError`` → 409; bad input (path, value, format) → 400.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Protocol

import attrs

from object_models.content_format import ContentFormat
from object_models.errors import Lwm2mError, ResponseCode
from object_models.model import ModelProvider
from object_models.node import LwM2mNode, LwM2mObjectInstance
from object_models.path import LwM2mPath

from .core.registration import Registration
from .core.telemetry import TelemetryPoint


class UnknownClientError(Lwm2mError):
    """No registration for that endpoint name."""

    code = ResponseCode.NOT_FOUND


class DeviceTimeoutError(Lwm2mError):
    """The device did not answer within the request's timeout."""

    code = ResponseCode.GATEWAY_TIMEOUT


class DeviceAnswerError(Lwm2mError):
    """The device answered with a success code but a payload we cannot decode (it sent
    garbage): a gateway-style failure, not the caller's mistake."""

    code = ResponseCode.INTERNAL_SERVER_ERROR


class ObservationLimitError(Lwm2mError):
    """The client has ``limits.observations_per_client`` active observations already: HTTP 409
    Conflict (the client's state is what conflicts; cancelling one resolves it, waiting does
    not, so not 429), body code ``4.09``. Nothing was sent to the device."""

    code = ResponseCode.FORBIDDEN
    """Only what the CoAP side would say (4.03); the API answers 409 (``api.errors``)."""


@attrs.frozen
class DeviceResponse:
    """What a device answered to a downlink request, already decoded with its models.

    ``code`` is the CoAP response code as an int (``ResponseCode`` values and success codes such
    as 0x45 = 2.05); ``queued`` is True when the request was queued for a sleeping queue-mode
    client (nothing was sent yet, no other field is meaningful).
    """

    code: int
    content_format: int | None = None
    node: LwM2mNode | None = None
    nodes: Mapping[LwM2mPath, LwM2mNode | None] | None = None
    links: str | None = None
    location: str | None = None
    error_message: str | None = None
    queued: bool = False
    request_id: str | None = None
    """For a queued request: the id its REQUEST_RESPONSE event will carry."""

    @property
    def success(self) -> bool:
        return (self.code >> 5) == 2

    @property
    def dotted_code(self) -> str:
        return f"{self.code >> 5}.{self.code & 0x1F:02d}"


@attrs.frozen
class ServerEvent:
    """One item of the event stream (``GET /api/event``): ``kind`` is one of REGISTRATION,
    UPDATED, DEREGISTRATION, SLEEPING, AWAKE, NOTIFICATION, SEND, REQUEST_RESPONSE, FIRMWARE
    (an update job changed: ``firmware.manager.job_to_json``), CAMPAIGN (an update campaign's
    state or progress: ``firmware.campaigns.campaign_to_json``, endpoint ""), or GAP (a
    subscriber missed events: ``{missed, from, to}``, endpoint ""); ``data`` is JSON-ready
    except REQUEST_RESPONSE's ``response`` (a ``DeviceResponse``, each API dialect renders it).
    ``id``: the event's place in the stream, increasing by one per event of a server process
    (the SSE ``id:``; a GAP's is the last id it stands for; 0 for an event made elsewhere)."""

    kind: str
    endpoint: str
    data: Mapping[str, object]
    id: int = 0


class ServerOperations(Protocol):
    """``timeout`` on every device operation: seconds to wait for the device, ``None`` for the
    server's configured ``request_timeout``."""

    # -- registrations ------------------------------------------------------------------------
    def clients(self) -> list[Registration]: ...

    def quarantined(self) -> int:
        """How many unreadable store rows were set aside (the store's ``quarantine`` table):
        shown by ``/api/health`` so an operator sees that devices were skipped at start."""
        ...

    def client(self, endpoint: str) -> Registration:
        """Raises ``UnknownClientError``."""
        ...

    def limit_counters(self) -> Mapping[str, int]:
        """What each limit (docs/security.md, "Limits") refused so far, by name: shown by
        ``/api/health``."""
        ...

    def models_for(self, endpoint: str) -> ModelProvider:
        """The object models in the versions this client registered."""
        ...

    # -- device management --------------------------------------------------------------------
    async def read(
        self,
        endpoint: str,
        path: LwM2mPath,
        *,
        fmt: ContentFormat | None = None,
        timeout: float | None = None,
    ) -> DeviceResponse: ...

    async def discover(
        self, endpoint: str, path: LwM2mPath, *, timeout: float | None = None
    ) -> DeviceResponse: ...

    async def write(
        self,
        endpoint: str,
        path: LwM2mPath,
        node: LwM2mNode,
        *,
        replace: bool = True,
        fmt: ContentFormat | None = None,
        timeout: float | None = None,
    ) -> DeviceResponse: ...

    async def write_attributes(
        self,
        endpoint: str,
        path: LwM2mPath,
        attributes: Mapping[str, str | None],
        *,
        timeout: float | None = None,
    ) -> DeviceResponse: ...

    async def execute(
        self,
        endpoint: str,
        path: LwM2mPath,
        arguments: str | None = None,
        *,
        timeout: float | None = None,
    ) -> DeviceResponse: ...

    async def create(
        self,
        endpoint: str,
        path: LwM2mPath,
        instance: LwM2mObjectInstance,
        *,
        fmt: ContentFormat | None = None,
        timeout: float | None = None,
    ) -> DeviceResponse: ...

    async def delete(
        self, endpoint: str, path: LwM2mPath, *, timeout: float | None = None
    ) -> DeviceResponse: ...

    async def read_composite(
        self,
        endpoint: str,
        paths: Sequence[LwM2mPath],
        *,
        fmt: ContentFormat | None = None,
        timeout: float | None = None,
    ) -> DeviceResponse: ...

    async def write_composite(
        self,
        endpoint: str,
        nodes: Mapping[LwM2mPath, LwM2mNode | None],
        *,
        fmt: ContentFormat | None = None,
        timeout: float | None = None,
    ) -> DeviceResponse: ...

    # -- information reporting ----------------------------------------------------------------
    async def observe(
        self,
        endpoint: str,
        path: LwM2mPath,
        *,
        fmt: ContentFormat | None = None,
        timeout: float | None = None,
    ) -> DeviceResponse: ...

    async def observe_composite(
        self,
        endpoint: str,
        paths: Sequence[LwM2mPath],
        *,
        fmt: ContentFormat | None = None,
        timeout: float | None = None,
    ) -> DeviceResponse: ...

    async def cancel_observation(
        self, endpoint: str, path: LwM2mPath, *, active: bool = True, timeout: float | None = None
    ) -> DeviceResponse:
        """Passive cancel forgets the token (the next notification gets a RST); active cancel
        sends a GET with Observe=1."""
        ...

    async def cancel_composite_observation(
        self,
        endpoint: str,
        paths: Sequence[LwM2mPath],
        *,
        active: bool = True,
        timeout: float | None = None,
    ) -> DeviceResponse: ...

    def observations(self, endpoint: str) -> list[Sequence[LwM2mPath]]: ...

    # -- telemetry and events -----------------------------------------------------------------
    def telemetry_latest(self, endpoint: str) -> dict[str, TelemetryPoint]: ...

    def telemetry_history(
        self,
        endpoint: str,
        *,
        key: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 1000,
    ) -> list[TelemetryPoint]: ...

    def events(self, after: int | None = None) -> EventSubscription:
        """A fresh subscription to every event from now on (one per SSE connection), or
        resuming after the event id ``after`` (SSE ``Last-Event-ID``): the events since that
        the server still holds, and a GAP event for those it no longer does
        (``lwm2m_server.events_bus``)."""
        ...

    # -- presence -----------------------------------------------------------------------------
    def is_sleeping(self, endpoint: str) -> bool | None:
        """Whether a queue-mode client sleeps now (requests to it are queued), from the
        server's own queue-mode state, not from the event stream; None when the client is not
        registered or not in queue mode."""
        ...


class EventSubscription(Protocol):
    """What ``ServerOperations.events`` returns: an async iterator of events that can also
    hand over what is ready without waiting (an SSE writer sends it in one write)."""

    def __aiter__(self) -> AsyncIterator[ServerEvent]: ...

    async def __anext__(self) -> ServerEvent: ...

    def ready(self, limit: int = ...) -> list[ServerEvent]:
        """Events available now (a GAP first when some were missed), at most ``limit``."""
        ...

    async def wait(self) -> bool:
        """Until an event is ready (True) or the stream ended (False)."""
        ...

    async def aclose(self) -> None: ...
