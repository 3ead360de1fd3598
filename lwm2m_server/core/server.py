"""``ServerCore``: the one object the CoAP adapter drives; it keeps registrations, observations
and queues consistent with each other.

Each uplink handler is one call that returns a ``CoreResult``: the registration concerned, the
events to persist/publish (in order), and the queued downlink requests that are now due. The
rules that span the three indexes live here and nowhere else:

* a new Register of an endpoint replaces its registration and cancels that registration's
  observations (Core §6.4: a client that registers again has forgotten them);
* Deregister and expiry drop observations and fail the queued requests (``QueueDropped``);
* any message from a queue-mode client (Register, Update, notification, Send) opens its awake
  window and hands back the requests queued for it; a client that leaves queue mode gets its
  queued requests back at once (it is always reachable now).

**The store is the source of truth** (``store=``: the sqlite store in the server, a
``MemoryStore`` by default): every registration and observation change is written through it
here, before the indexes change, and the indexes are a cache a miss reads through to
(``RegistrationBook``, ``ObservationIndex``). So the adapter never writes registrations or
observations itself, a new core on the same store rebuilds its cache from it (``load``), and
several cores (server processes) can share one store: see docs/architecture-server.md,
"Store". The request queues stay in memory (they hold the HTTP callers' futures; the same
document says why).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from keystore.resolver import IdentityBinding
from keystore.store.errors import StoreError
from lwm2m_runtime.address import Address
from object_models.content_format import ContentFormat
from object_models.errors import Lwm2mError, ResponseCode

from .events import (
    Event,
    Expired,
    NotificationReceived,
    ObservationsCancelled,
    QueueDropped,
    SendReceived,
)
from .observations import Observation, ObservationIndex
from .queue import QueueConfig, QueuedRequest, RequestQueues
from .registration import (
    QueryInput,
    Registration,
    RegistrationRequest,
    UpdateRequest,
)
from .registrations import (
    DEFAULT_GRACE_PERIOD,
    RegisterOutcome,
    RegistrationBook,
    new_registration_id,
)
from .sorted_book import SortedRegistrationBook

if TYPE_CHECKING:
    from lwm2m_server.store.base import CoreStore

log = logging.getLogger(__name__)

SWEEP_LIMIT = 1000
"""Registrations one store sweep expires at most (the next sweep takes the rest)."""


class CoreResult(NamedTuple):
    """What an uplink did: ``registration`` (None when the message matched none), ``events``
    in the order they happened, and ``to_send``: queued requests now due, oldest first.

    A named tuple rather than a frozen attrs class: one is made per message a device sends,
    and a frozen attrs ``__init__`` sets each field through ``object.__setattr__`` (~0.2 µs a
    field); a tuple is as immutable and is built in one C call."""

    registration: Registration | None
    events: tuple[Event, ...] = ()
    to_send: tuple[QueuedRequest[object], ...] = ()


class ServerCore:
    def __init__(
        self,
        *,
        grace_period: float = DEFAULT_GRACE_PERIOD,
        queue_config: QueueConfig | None = None,
        id_factory: Callable[[], str] = new_registration_id,
        store: CoreStore | None = None,
        sweep_interval: float | None = None,
    ) -> None:
        """``sweep_interval``: how often ``tick`` asks the store for expired registrations no
        cache holds (None: never; a server sharing its store with others sets it)."""
        if store is None:
            from lwm2m_server.store.memory import MemoryStore  # here: the store imports the core

            store = MemoryStore()
        self.store: CoreStore = store
        # sorted by endpoint name, so the HTTP API pages the client list without sorting it
        self.registrations: RegistrationBook = SortedRegistrationBook(
            grace_period=grace_period, id_factory=id_factory, store=store
        )
        self.observations = ObservationIndex(store)
        self.queues: RequestQueues[object] = RequestQueues(queue_config)
        self.sweep_interval = sweep_interval
        # the first tick sweeps (what expired while no process served the store)
        self._next_sweep: float | None = None if sweep_interval is None else 0.0

    def use_store(self, store: CoreStore) -> None:
        """Make ``store`` the source of truth and rebuild the cache from it (start-up: the
        server opens its store after building the core)."""
        self.store = store
        self.registrations.store = store
        self.observations.store = store
        self.load()

    def load(self) -> None:
        """Fill the cache with everything the store holds (start-up: 100k registrations are
        read once rather than missed one at a time). A store that says ``one_process`` (no
        other process writes it) then holds nothing the cache lacks: the registration book
        stops reading it through by address (``RegistrationBook.complete``)."""
        self.restore(self.store.registrations(), self.store.observations())
        self.registrations.complete = getattr(self.store, "one_process", False) is True

    # -- registration interface ----------------------------------------------------------
    def register(
        self,
        query: QueryInput,
        payload: bytes,
        content_format: int | None = ContentFormat.LINK,
        *,
        now: float,
        address: Address,
        transport: str = "coap",
        identity: IdentityBinding | None = None,
    ) -> CoreResult:
        """``POST /rd``: validate, register, cancel the replaced registration's observations.
        Raises ``Lwm2mError`` (4.00/4.12/4.13/4.15) before changing anything."""
        request = RegistrationRequest.parse(query, payload, content_format)
        return self.apply_register(
            request, now=now, address=address, transport=transport, identity=identity
        )

    def apply_register(
        self,
        request: RegistrationRequest,
        *,
        now: float,
        address: Address,
        transport: str = "coap",
        identity: IdentityBinding | None = None,
    ) -> CoreResult:
        """``register`` for an already parsed request."""
        late = self._late_registers
        outcome = self.registrations.register(
            request,
            now=now,
            address=address,
            transport=transport,
            identity=identity,
            then=None if late is None else functools.partial(self._register_stored, late, now),
        )
        if outcome.held:  # the store answers later: the rest is done then
            return CoreResult(outcome.registration)
        return self._registered(outcome, now)

    def defer_registers(self, apply: Callable[[CoreResult], None]) -> None:
        """Let a store that group-commits Registers (Redis: ``put_registration_later``) hold
        them: ``register`` then returns a result without events, and ``apply`` gets the
        Register's whole result (events, queued requests now due) when the store answered,
        before the iteration's replies leave; nothing when the write failed (the reply is
        withheld, nothing is announced). The replaced registration's observations are dropped
        then too (docs/cluster.md, "Group commit on Redis")."""
        self._late_registers = apply

    _late_registers: Callable[[CoreResult], None] | None = None

    def _register_stored(
        self, apply: Callable[[CoreResult], None], now: float, outcome: RegisterOutcome | None
    ) -> None:
        if outcome is not None:
            apply(self._registered(outcome, now))

    def _registered(self, outcome: RegisterOutcome, now: float) -> CoreResult:
        """A stored Register's result: the replaced registration's observations end."""
        events: list[Event] = list(outcome.events)
        if outcome.replaced is not None:
            cancelled = self.observations.remove_registration(outcome.replaced.registration_id)
            if cancelled:
                events.insert(
                    1, ObservationsCancelled(outcome.replaced.registration_id, tuple(cancelled))
                )
        to_send = self._after_contact(outcome.registration, now, events)
        return CoreResult(outcome.registration, tuple(events), to_send)

    def update(
        self,
        registration_id: str,
        query: QueryInput,
        payload: bytes = b"",
        content_format: int | None = None,
        *,
        now: float,
        address: Address | None = None,
        identity: IdentityBinding | None = None,
        registration: Registration | None = None,
    ) -> CoreResult:
        """``POST /rd/{id}``: 4.04 unknown id, 4.03 other identity, 4.00 bad parameters.
        ``registration``: what ``registrations.get(registration_id)`` just gave the caller
        (the adapter looks it up to authorize the peer), so it is not looked up again; None:
        looked up here."""
        request = UpdateRequest.parse(query, payload, content_format)
        return self.apply_update(
            registration_id,
            request,
            now=now,
            address=address,
            identity=identity,
            registration=registration,
        )

    def apply_update(
        self,
        registration_id: str,
        request: UpdateRequest,
        *,
        now: float,
        address: Address | None = None,
        identity: IdentityBinding | None = None,
        registration: Registration | None = None,
    ) -> CoreResult:
        """``update`` for an already parsed request."""
        outcome = self.registrations.update(
            registration_id,
            request,
            now=now,
            address=address,
            identity=identity,
            previous=registration,
        )
        events: list[Event] = list(outcome.events)
        to_send = self._after_contact(outcome.registration, now, events)
        return CoreResult(outcome.registration, tuple(events), to_send)

    def keep_alive(
        self,
        previous: Registration,
        now: float,
        address: Address,
        identity: IdentityBinding | None = None,
    ) -> Registration | None:
        """A bare Update (``BARE_UPDATE``: no parameters, no payload) of ``previous``, the
        registration ``registrations.get`` just gave the caller: the registration after it, or
        None (nothing done) when the Update must take ``apply_update``, whose result has more
        than the ``Updated`` event: a client in queue mode (its awake window opens, what was
        queued for it is due) or one with anything in the queues (left over from queue mode:
        ``_after_contact`` hands it back). Raises as ``update`` does (4.03 another identity,
        4.04 gone from the store).

        What it skips, for the most frequent message (a keep-alive of a client outside queue
        mode, nearly every Update): ``UpdateRequest.parse`` (it gives ``BARE_UPDATE`` for no
        query and no payload), the ``Updated`` event, the outcome and the ``CoreResult``, and
        ``_after_contact`` (which returns nothing and adds no event for such a client). The
        caller announces the Update (``Effects.kept_alive``); the store write and the indexes
        are the book's ``touched`` (its ``updated`` of a bare Update), as ``apply_update``'s."""
        if previous.queue_mode or previous.endpoint in self.queues.endpoints:
            return None
        return self.registrations.touched(previous, now, address, identity)

    def deregister(
        self, registration_id: str, *, now: float, identity: IdentityBinding | None = None
    ) -> CoreResult:
        """``DELETE /rd/{id}``: 4.04 unknown id, 4.03 other identity."""
        outcome = self.registrations.deregister(registration_id, now=now, identity=identity)
        events: list[Event] = list(outcome.events)
        self._end(outcome.registration, events)
        return CoreResult(outcome.registration, tuple(events))

    # -- information reporting -----------------------------------------------------------
    def observation_started(self, observation: Observation) -> Observation | None:
        """Index an observation the client accepted (2.05 with Observe); returns the one it
        replaces, which the adapter cancels and removes from the store. 4.04 if the
        registration it names is gone (it ended while the Observe was in flight)."""
        registration = self.registrations.get(observation.registration_id)
        if registration is None or registration.endpoint != observation.endpoint:
            raise Lwm2mError(
                f"registration {observation.registration_id!r} of {observation.endpoint!r} is gone",
                code=ResponseCode.NOT_FOUND,
            )
        self.store.put_observation(observation)
        replaced = self.observations.add(observation)
        if replaced is not None and replaced.token != observation.token:
            self.store.remove_observation(replaced.token)
        return replaced

    def cancel_observation(self, token: bytes) -> Observation | None:
        """Forget an observation, in the store and the cache (an active cancel, the client
        answered RST or an error, the Observe failed)."""
        stored = self.store.remove_observation(token)
        cached = self.observations.cancel(token)
        return cached if cached is not None else stored

    def deactivate_observation(self, token: bytes) -> Observation | None:
        """A passive cancel: gone from the store (a restart or another process does not revive
        it), kept inactive in this cache so its next notification here gets RST."""
        self.store.remove_observation(token)
        return self.observations.deactivate(token)

    def notification(
        self,
        token: bytes,
        payload: bytes,
        content_format: int | None,
        *,
        now: float,
        found: tuple[Observation, Registration | None] | None = None,
    ) -> CoreResult:
        """A notification arrived. ``registration`` is None when the token is unknown or the
        observation was cancelled: the adapter answers RST (RFC 7641 §3.6) so it stops.
        ``found``: the (active) observation of ``token`` and its registration (None: gone), as
        the adapter just looked them up to check the sender; they are not looked up again
        (one lookup of each per notification)."""
        if found is None:
            observation = self.observations.on_notification(token, now)
            if observation is None:
                return CoreResult(None)
            registration = self.registrations.get(observation.registration_id)
        else:
            observation = self.observations.notified(found[0], now)
            registration = found[1]
        if registration is None:
            self.cancel_observation(token)
            return CoreResult(None)
        events: list[Event] = [NotificationReceived(observation, payload, content_format, now)]
        to_send = self._after_contact(registration, now, events)
        return CoreResult(registration, tuple(events), to_send)

    def sender(self, address: Address, identity: IdentityBinding | None = None) -> Registration:
        """Whose Send (``POST /dp``) is this? A Send names no registration, so it is attributed
        to the registration its sender is known by, or refused rather than guessed:

        * a DTLS peer (``identity`` given) by its session identity, wherever it sends from (a
          NAT rebinding or a Connection ID keeps it the same device);
        * a NoSec peer by its address, but only when exactly one NoSec registration comes from
          that address: several endpoints behind one NAT binding (or one gateway socket) are
          indistinguishable, and filing one device's data under another is worse than a refusal.

        4.04 when nothing is registered for the sender (Core: only registered clients may
        Send); 4.03 when the address is registered under a DTLS identity the peer does not
        have, or is shared by several endpoints (the message names them, for the log)."""
        if identity is not None:
            candidates = self.registrations.with_identity(identity)
            if not candidates:
                raise Lwm2mError(
                    f"no registration for this {identity.mode} identity",
                    code=ResponseCode.NOT_FOUND,
                )
        else:
            here = self.registrations.at_address(address)
            candidates = [r for r in here if r.identity is None]
            if not candidates:
                if here:
                    raise Lwm2mError(
                        f"{address} is registered under another identity",
                        code=ResponseCode.FORBIDDEN,
                    )
                raise Lwm2mError(f"no registration from {address}", code=ResponseCode.NOT_FOUND)
        if len(candidates) > 1:
            names = ", ".join(sorted(repr(r.endpoint) for r in candidates))
            shared = f"{identity.mode} identity" if identity is not None else f"address {address}"
            raise Lwm2mError(
                f"ambiguous Send: {len(candidates)} endpoints ({names}) share this {shared} "
                "and a Send does not say which one it comes from",
                code=ResponseCode.FORBIDDEN,
            )
        return candidates[0]

    def send(
        self,
        address: Address,
        payload: bytes,
        content_format: int | None,
        *,
        now: float,
        identity: IdentityBinding | None = None,
    ) -> CoreResult:
        """``POST /dp`` (Send, LwM2M 1.1+) from the registration ``sender`` attributes it to
        (4.04 none, 4.03 another identity or an ambiguous address)."""
        registration = self.sender(address, identity)
        events: list[Event] = [SendReceived(registration, payload, content_format, now)]
        to_send = self._after_contact(registration, now, events)
        return CoreResult(registration, tuple(events), to_send)

    def heard_from(self, registration_id: str, *, now: float) -> CoreResult:
        """Any other message from a client (a response, an empty ACK of ours): keeps a
        queue-mode client awake and returns what is now due for it."""
        registration = self.registrations.get(registration_id)
        if registration is None:
            return CoreResult(None)
        events: list[Event] = []
        to_send = self._after_contact(registration, now, events)
        return CoreResult(registration, tuple(events), to_send)

    # -- downlink ------------------------------------------------------------------------
    def submit(self, endpoint: str, request: object, *, now: float) -> bool:
        """A downlink request for ``endpoint``: True when it can go now, False when it was
        queued (queue-mode client asleep). 4.04 for an unknown endpoint; ``QueueFullError``
        when the queue is at its bound."""
        registration = self.registrations.by_endpoint(endpoint)
        if registration is None:
            raise Lwm2mError(f"{endpoint!r} is not registered", code=ResponseCode.NOT_FOUND)
        if not registration.queue_mode or (
            self.queues.is_awake(endpoint, now) and not self.queues.pending(endpoint)
        ):
            return True
        self.queues.enqueue(endpoint, request, now)
        return False

    # -- time ----------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """When ``tick`` has something to do next (one timer for the whole core)."""
        deadlines = [
            d
            for d in (
                self.registrations.next_deadline(),
                self.queues.next_deadline(),
                self._next_sweep,
            )
            if d is not None
        ]
        return min(deadlines) if deadlines else None

    def tick(self, now: float) -> list[Event]:
        """Expire registrations (the cached ones due, and every ``sweep_interval`` those the
        store says are due) and queue entries, close awake windows."""
        events: list[Event] = []
        expired = self.registrations.expire(now)
        if (
            self.sweep_interval is not None
            and self._next_sweep is not None
            and now >= self._next_sweep
        ):
            self._next_sweep = now + self.sweep_interval
            try:
                expired += self.registrations.sweep(now, SWEEP_LIMIT)
            except StoreError as exc:
                log.error("expiry sweep of the store failed: %s", exc)
        for registration in expired:
            events.append(Expired(registration))
            self._end(registration, events)
        events.extend(self.queues.tick(now))
        return events

    def restore(self, registrations: list[Registration], observations: list[Observation]) -> None:
        """Rebuild the indexes from the store at start-up (no events)."""
        self.registrations.restore(registrations)
        for observation in observations:
            if self.registrations.cached(observation.registration_id) is not None:
                self.observations.add(observation)

    # -- internals -----------------------------------------------------------------------
    def _after_contact(
        self, registration: Registration, now: float, events: list[Event]
    ) -> tuple[QueuedRequest[object], ...]:
        endpoint = registration.endpoint
        if registration.queue_mode:
            events.extend(self.queues.heard_from(endpoint, now))
            return tuple(self.queues.drain(endpoint, now))
        # not (or no longer) in queue mode: whatever was queued can go now
        if endpoint not in self.queues.endpoints:  # nearly always: never queued, no call
            return ()
        leftover = self.queues.remove(endpoint)
        if not leftover:
            return ()
        return tuple(e for e in leftover if e.expires_at > now)

    def _end(self, registration: Registration, events: list[Event]) -> None:
        cancelled = self.observations.remove_registration(registration.registration_id)
        if cancelled:
            events.append(ObservationsCancelled(registration.registration_id, tuple(cancelled)))
        # the queue is this process's (in memory): the cache says whether it still serves one
        if self.registrations.cached_by_endpoint(registration.endpoint) is None:
            dropped = self.queues.remove(registration.endpoint)
            if dropped:
                events.append(
                    QueueDropped(registration.endpoint, tuple(e.request for e in dropped))
                )
