"""Queue mode (Core 1.1 §6.5 / Transport §5): hold downlink requests while a client sleeps.

A queue-mode client listens only for a while after it sent something (Register, Update, a
notification, a Send, any response). The server therefore tracks, per endpoint:

* **awake/sleeping**: ``heard_from(endpoint, now)`` opens an awake window of ``awake_time``
  seconds (default 93 s = CoAP MAX_TRANSMIT_WAIT, the value Core recommends for how long a
  client stays reachable); ``tick`` reports ``Sleeping`` when the window closes, ``heard_from``
  reports ``Awake`` when a sleeping client speaks again.
* **a bounded FIFO** of requests (``max_length`` entries, each dropped after ``entry_ttl``
  seconds): ``enqueue`` while the client sleeps, ``drain`` when it wakes. The spec sends queued
  requests one at a time and keeps the rest when one fails: ``requeue`` puts unsent ones back at
  the front, in order.

A full queue raises ``QueueFullError`` with code 5.03 Service Unavailable: the server cannot take
more work for that device until it wakes. The error is never sent to a device (queued requests
come from the HTTP API), which maps it to HTTP 503.

Queued requests are opaque to this module (``T``): the adapter queues whatever it needs to send
the request later (operation, path, payload, a future to resolve).

The queues are in memory; the adapter (``service.py``) records each queued request in the
store (``lwm2m_server.store.queued_requests``) and ``restore``s them at start-up, so a request
acknowledged with 202 survives a restart of the server.

Queued requests survive a new Register of the same endpoint (the operator's intent still
stands; a request for an instance that is gone simply fails with 4.04) and are dropped with the
registration on Deregister or expiry (``remove``).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import KeysView
from typing import Generic, Literal, TypeVar

import attrs

from object_models.errors import Lwm2mError, ResponseCode

from .events import Awake, Event, QueuedRequestExpired, Sleeping

T = TypeVar("T")

DEFAULT_AWAKE_TIME = 93.0
"""CoAP MAX_TRANSMIT_WAIT with default parameters (RFC 7252 §4.8.2)."""


@attrs.frozen
class QueueConfig:
    max_length: int = 32
    entry_ttl: float = 24 * 3600.0
    awake_time: float = DEFAULT_AWAKE_TIME

    def __attrs_post_init__(self) -> None:
        if self.max_length < 1:
            raise ValueError("queue max_length must be >= 1")
        if self.entry_ttl <= 0 or self.awake_time <= 0:
            raise ValueError("queue entry_ttl and awake_time must be > 0")


class QueueFullError(Lwm2mError):
    """The endpoint's queue holds ``max_length`` requests already (see the module doc on the
    code)."""

    code = ResponseCode.SERVICE_UNAVAILABLE


@attrs.frozen
class QueuedRequest(Generic[T]):
    endpoint: str
    request: T
    enqueued_at: float
    expires_at: float


@attrs.define
class _Client(Generic[T]):
    entries: deque[QueuedRequest[T]] = attrs.field(factory=deque)
    awake_until: float | None = None
    sleep_timer: bool = False
    ttl_timer: float | None = None
    epoch: int = 0


class RequestQueues(Generic[T]):
    """Awake state and request queues of every queue-mode client; one timer (``next_deadline``)."""

    def __init__(self, config: QueueConfig | None = None) -> None:
        self.config = config or QueueConfig()
        self._clients: dict[str, _Client[T]] = {}
        self.endpoints: KeysView[str] = self._clients.keys()
        """The endpoints this holds anything for (awake state, timers or requests): a live,
        read-only view, so a caller on every message's path (``ServerCore._after_contact``)
        asks ``endpoint in queues.endpoints`` without a Python call."""
        # (deadline, seq, kind, endpoint, epoch); kinds "sleep" | "ttl"; checked lazily when
        # popped, and ignored when the client was removed and came back since (epoch differs).
        self._timers: list[tuple[float, int, str, str, int]] = []
        self._seq = 0
        self._backlog: list[Event] = []

    # -- awake / sleeping ------------------------------------------------------------------
    def heard_from(self, endpoint: str, now: float) -> list[Event]:
        """A message from ``endpoint`` arrived: it is awake for ``awake_time``. Returns
        ``[Awake]`` when it was asleep (or new), ``[]`` when it only extends its window."""
        client = self._client(endpoint)
        was_awake = client.awake_until is not None and client.awake_until > now
        client.awake_until = now + self.config.awake_time
        if not client.sleep_timer:
            # At most one sleep timer per client: a chatty client must not grow the heap; when
            # the timer fires early (window extended) it re-arms at the new end.
            client.sleep_timer = True
            self._push(client.awake_until, "sleep", endpoint)
        return [] if was_awake else [Awake(endpoint, client.awake_until)]

    def is_awake(self, endpoint: str, now: float) -> bool:
        client = self._clients.get(endpoint)
        return client is not None and client.awake_until is not None and client.awake_until > now

    def awake_until(self, endpoint: str) -> float | None:
        client = self._clients.get(endpoint)
        return None if client is None else client.awake_until

    # -- the queue -------------------------------------------------------------------------
    def enqueue(self, endpoint: str, request: T, now: float) -> Literal["queued"]:
        """Hold ``request`` until the client wakes; ``QueueFullError`` when at ``max_length``
        (after dropping expired entries, which ``tick`` then reports)."""
        client = self._client(endpoint)
        self._expire_entries(endpoint, client, now)
        if len(client.entries) >= self.config.max_length:
            raise QueueFullError(
                f"queue of {endpoint!r} is full ({self.config.max_length} requests)"
            )
        entry = QueuedRequest(endpoint, request, now, now + self.config.entry_ttl)
        client.entries.append(entry)
        self._arm_ttl(endpoint, client)
        return "queued"

    def restore(self, endpoint: str, request: T, enqueued_at: float, expires_at: float) -> None:
        """Put back a request a previous process queued (start-up, from the store), with its
        original times; the bound is not applied (the request was accepted already). One
        already past its expiry is reported by the next ``tick``."""
        client = self._client(endpoint)
        client.entries.append(QueuedRequest(endpoint, request, enqueued_at, expires_at))
        self._arm_ttl(endpoint, client)

    def discard(self, endpoint: str, request: T) -> bool:
        """Take ``request`` out of the queue unsent (it could not be recorded, so it is
        refused instead of queued); False when it is no longer queued."""
        client = self._clients.get(endpoint)
        if client is None:
            return False
        for entry in client.entries:
            if entry.request is request:
                client.entries.remove(entry)
                return True
        return False

    def sizes(self) -> dict[str, int]:
        """Requests waiting, per client that has any (for metrics: no copies of entries)."""
        return {ep: len(c.entries) for ep, c in self._clients.items() if c.entries}

    def pending(self, endpoint: str) -> list[QueuedRequest[T]]:
        client = self._clients.get(endpoint)
        return [] if client is None else list(client.entries)

    def drain(self, endpoint: str, now: float) -> list[QueuedRequest[T]]:
        """Take every live queued request of an awake client, oldest first ([] while asleep)."""
        client = self._clients.get(endpoint)
        if client is None or not self.is_awake(endpoint, now):
            return []
        self._expire_entries(endpoint, client, now)
        taken = list(client.entries)
        client.entries.clear()
        return taken

    def requeue(self, endpoint: str, entries: list[QueuedRequest[T]]) -> None:
        """Put unsent requests back at the front, in their order (a send failed mid-drain).
        They keep their original expiry; the bound is not applied to what was already ours."""
        client = self._client(endpoint)
        client.entries.extendleft(reversed(entries))
        self._arm_ttl(endpoint, client)

    def remove(self, endpoint: str) -> list[QueuedRequest[T]]:
        """Forget the client (deregistered, expired, or no longer in queue mode); returns the
        requests that will never be sent, so their waiters can be failed."""
        client = self._clients.pop(endpoint, None)
        return [] if client is None else list(client.entries)

    # -- time ------------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        if self._backlog:
            return float("-inf")
        return self._timers[0][0] if self._timers else None

    def tick(self, now: float) -> list[Event]:
        """Events due at ``now``: ``Sleeping`` for closed awake windows and
        ``QueuedRequestExpired`` for requests past their time to live."""
        events, self._backlog = self._backlog, []
        while self._timers and self._timers[0][0] <= now:
            deadline, _, kind, endpoint, epoch = heapq.heappop(self._timers)
            client = self._clients.get(endpoint)
            if client is None or client.epoch != epoch:
                continue
            if kind == "sleep":
                client.sleep_timer = False
                if client.awake_until is None:
                    continue
                if client.awake_until <= now:
                    events.append(Sleeping(endpoint, client.awake_until))
                else:
                    client.sleep_timer = True
                    self._push(client.awake_until, "sleep", endpoint)
            elif deadline == client.ttl_timer:
                client.ttl_timer = None
                self._expire_entries(endpoint, client, now)
                events.extend(self._backlog)
                self._backlog = []
                self._arm_ttl(endpoint, client)
        return events

    def _expire_entries(self, endpoint: str, client: _Client[T], now: float) -> None:
        while client.entries and client.entries[0].expires_at <= now:
            entry = client.entries.popleft()
            self._backlog.append(QueuedRequestExpired(endpoint, entry.request, entry.enqueued_at))
        # requeue() may have put a later-expiring entry before an earlier one: scan the rest.
        if any(e.expires_at <= now for e in client.entries):
            kept = deque(e for e in client.entries if e.expires_at > now)
            for e in client.entries:
                if e.expires_at <= now:
                    self._backlog.append(QueuedRequestExpired(endpoint, e.request, e.enqueued_at))
            client.entries = kept

    def _arm_ttl(self, endpoint: str, client: _Client[T]) -> None:
        """Keep one expiry timer per client, at its earliest entry expiry."""
        if not client.entries:
            return
        first = min(e.expires_at for e in client.entries)
        if client.ttl_timer is None or first < client.ttl_timer:
            client.ttl_timer = first
            self._push(first, "ttl", endpoint)

    def _client(self, endpoint: str) -> _Client[T]:
        client = self._clients.get(endpoint)
        if client is None:
            self._seq += 1
            client = self._clients[endpoint] = _Client(epoch=self._seq)
        return client

    def _push(self, deadline: float, kind: str, endpoint: str) -> None:
        self._seq += 1
        epoch = self._clients[endpoint].epoch
        heapq.heappush(self._timers, (deadline, self._seq, kind, endpoint, epoch))
