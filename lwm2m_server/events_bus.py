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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping

from .operations import ServerEvent

log = logging.getLogger(__name__)

REGISTRATION = "REGISTRATION"
UPDATED = "UPDATED"
DEREGISTRATION = "DEREGISTRATION"
SLEEPING = "SLEEPING"
AWAKE = "AWAKE"
NOTIFICATION = "NOTIFICATION"
SEND = "SEND"
KINDS = (REGISTRATION, UPDATED, DEREGISTRATION, SLEEPING, AWAKE, NOTIFICATION, SEND)

DEFAULT_QUEUE_SIZE = 1000


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

    def publish(self, kind: str, endpoint: str, data: Mapping[str, object]) -> ServerEvent:
        event = ServerEvent(kind, endpoint, dict(data))
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
