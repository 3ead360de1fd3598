"""Fan-out of server events to any number of subscribers (one per SSE connection, tests, CLI).

Publishing never blocks and never fails: the CoAP layer publishes while it answers devices, so a
slow or stuck subscriber must not slow registrations down or grow memory. Each subscriber gets
its own bounded queue; when it is full the *oldest* event is dropped and ``dropped`` is counted
(an event stream is about the present: a dashboard that falls behind wants the new events, and
it can re-read state through the API). Subscribers end with ``close()`` or when the bus closes.

The event kinds are the ``ServerEvent`` kinds of ``lwm2m_server.operations``. Their payloads use
the HTTP API's JSON shapes (``lwm2m_server.json_nodes``): a registration is
``registration_to_json``, a telemetry point ``telemetry_to_json``, so that a client reads one
shape from ``GET /api/clients`` and from the event stream.

Payloads are built only when someone reads them: ``publish`` takes the data or a function that
builds it (``registration_data``). Building a registration's JSON re-reads its object list and
formats dates, which cost more than the rest of an Update; the in-process listener (the profile
engine) only looks at the kind and endpoint, so with no SSE reader connected an Update builds
nothing, and with one the SSE writer builds it once, in its own task, after the reply went out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping

from .core.registration import Registration
from .json_nodes import registration_to_json
from .operations import ServerEvent

log = logging.getLogger(__name__)

REGISTRATION = "REGISTRATION"
UPDATED = "UPDATED"
DEREGISTRATION = "DEREGISTRATION"
SLEEPING = "SLEEPING"
AWAKE = "AWAKE"
NOTIFICATION = "NOTIFICATION"
SEND = "SEND"
REQUEST_RESPONSE = "REQUEST_RESPONSE"
"""The answer to a request that was queued for a sleeping client (HTTP 202 + ``requestId``):
``{requestId, path, delayed, response}`` or ``{..., error}``; ``response`` is the
``DeviceResponse`` itself, rendered by each API dialect in its own shape."""
KINDS = (
    REGISTRATION,
    UPDATED,
    DEREGISTRATION,
    SLEEPING,
    AWAKE,
    NOTIFICATION,
    SEND,
    REQUEST_RESPONSE,
)

DEFAULT_QUEUE_SIZE = 1000

Data = Mapping[str, object]
Build = Callable[[], Data]


class LazyData(Mapping[str, object]):
    """An event's data, built by ``build`` the first time anything reads it (then kept, so
    every subscriber sees the same dict and it is built at most once). The values it is built
    from must not change afterwards: registrations are frozen, which is why they can be."""

    __slots__ = ("_build", "_data")

    def __init__(self, build: Build) -> None:
        self._build: Build | None = build
        self._data: dict[str, object] | None = None

    @property
    def built(self) -> bool:
        return self._data is not None

    def _get(self) -> dict[str, object]:
        data = self._data
        if data is None:
            assert self._build is not None
            data = self._data = dict(self._build())
            self._build = None  # let go of what it closed over
        return data

    def __getitem__(self, key: str) -> object:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __repr__(self) -> str:
        return repr(self._get())


def registration_data(
    registration: Registration, *, sleeping: bool | None = None, **extra: object
) -> Build:
    """The builder of a REGISTRATION/UPDATED/DEREGISTRATION payload: ``registration_to_json``
    plus ``extra`` (``replaced``, ``reason``), for ``publish`` to call only if it is read."""

    def build() -> Data:
        return {**registration_to_json(registration, sleeping=sleeping), **extra}

    return build


class Subscription:
    """One subscriber's view of the bus: ``async for event in subscription``."""

    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        self._queue: asyncio.Queue[ServerEvent | None] = asyncio.Queue(maxsize)
        self.dropped = 0
        self.closed = False

    def _offer(self, event: ServerEvent | None) -> None:
        if self.closed:
            return
        while True:
            try:
                self._queue.put_nowait(event)
                return
            except asyncio.QueueFull:
                self._queue.get_nowait()  # drop the oldest: see the module docstring
                self.dropped += 1
                self._bus.dropped += 1

    async def get(self) -> ServerEvent | None:
        """The next event, or None once the subscription is closed."""
        if self.closed and self._queue.empty():
            return None
        event = await self._queue.get()
        if event is None:
            self.closed = True
        return event

    def close(self) -> None:
        if not self.closed:
            self._bus._unsubscribe(self)
            self._offer(None)
            self.closed = True

    def events(self) -> AsyncGenerator[ServerEvent, None]:
        """An async generator over the events; when it is closed or garbage-collected (an SSE
        reader went away), the subscription ends too, so forgotten readers do not leak."""
        return self._iterate()

    def __aiter__(self) -> AsyncIterator[ServerEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncGenerator[ServerEvent, None]:
        try:
            while True:
                event = await self.get()
                if event is None:
                    return
                yield event
        finally:
            self.close()

    def __len__(self) -> int:
        return self._queue.qsize()


class EventBus:
    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be >= 1")
        self.queue_size = queue_size
        self._subscribers: list[Subscription] = []
        self._listeners: list[Callable[[ServerEvent], None]] = []
        self.dropped = 0
        """Events dropped for full subscriber queues, over the bus's life (for metrics)."""

    def deepest(self) -> int:
        """Events waiting in the fullest subscriber queue: how far the slowest reader lags."""
        return max((len(sub) for sub in self._subscribers), default=0)

    def listen(self, callback: Callable[[ServerEvent], None]) -> Callable[[], None]:
        """An in-process consumer that must see every event, in order (the profile engine: a
        dropped REGISTRATION would leave a device unobserved): called at ``publish``, so it
        must be quick and never block; its exceptions are logged. Not a ``subscriber``.
        Returns the function that removes it."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback) if callback in self._listeners else None

    def subscribe(self, queue_size: int | None = None) -> Subscription:
        sub = Subscription(self, queue_size or self.queue_size)
        self._subscribers.append(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def has_subscribers(self) -> bool:
        """Whether an event published now would reach a subscriber (an SSE reader, a test):
        for a producer whose data is costly even to describe as a builder."""
        return bool(self._subscribers)

    def publish(self, kind: str, endpoint: str, data: Data | Build) -> ServerEvent:
        """``data``: the payload, or a function building it, called only when a subscriber or
        listener reads the event's data (see the module docstring)."""
        event = ServerEvent(kind, endpoint, LazyData(data) if callable(data) else dict(data))
        for sub in list(self._subscribers):
            sub._offer(event)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed on %s of %s", kind, endpoint)
        return event

    def close(self) -> None:
        for sub in list(self._subscribers):
            sub.close()
