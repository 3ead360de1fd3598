"""Fan-out of server events to any number of subscribers (SSE connections, tests, the CLI).

Publishing never blocks and never fails: the CoAP layer publishes while it answers devices, so a
slow or stuck subscriber must not slow registrations down or grow memory. Every event gets an
id and goes into **one bounded replay buffer** (a ring of ``replay_size`` events shared by every
subscriber); a subscriber is only a cursor into it (the next id it wants). So publishing costs
the same with no subscriber, one or a hundred (a ring slot and, only when a reader is waiting
for the next event, one wake-up), a subscriber costs no memory of its own, and a stream can
resume where it stopped (``subscribe(after=last_id)``, SSE ``Last-Event-ID``) as long as the
buffer still holds what it missed.

Nothing is lost silently: a subscriber whose cursor fell out of the buffer (it read too slowly,
or resumed too late) first gets a ``GAP`` event ``{"missed": n, "from": a, "to": b}`` naming the
ids it will never see, then continues with the oldest event still held. A resume from an id
this bus never issued (the server restarted, or another process's id) gets a ``GAP`` with
``"missed": None`` (unknown) and everything this process still holds.

Ids are per bus, i.e. per server process: they start at the process's start time in
microseconds (``first_id``) and count up by one per event, so that the ids of a later run are
larger than those of an earlier one on the same host, and a resume with an id from an earlier
run is recognised as such instead of being mistaken for one of ours. They fit a JavaScript
number (< 2^53) for centuries.

``listen()`` is for in-process consumers that must see every event, in order, synchronously at
``publish`` (the profile engine); they are not subscribers and never miss anything.
``listen_fields()`` is the same for a consumer taking ``(kind, endpoint, data)``, and
``announce()`` is ``publish`` for a producer that does not want the event back: between the
two, a keep-alive's UPDATED (and a Register's events) makes no ``ServerEvent`` unless a
subscriber or an object listener reads it (the ring holds the fields until then).

The event kinds are the ``ServerEvent`` kinds of ``lwm2m_server.operations``. Their payloads use
the HTTP API's JSON shapes (``lwm2m_server.json_nodes``): a registration is
``registration_to_json``, a telemetry point ``telemetry_to_json``, so that a client reads one
shape from ``GET /api/clients`` and from the event stream.

Payloads are built only when someone reads them: ``publish`` takes the data or a function that
builds it (``registration_data``). Building a registration's JSON re-reads its object list and
formats dates, which cost more than the rest of an Update; the in-process listener (the profile
engine) only looks at the kind and endpoint, so with no SSE reader connected an Update builds
nothing, and with one the SSE writer builds it once, in its own task, after the reply went out.
The replay buffer holds the lazy payloads (``LazyData``: the builder and the frozen values it
builds from, without a closure, which the cyclic collector would have to traverse object by
object), not built payloads.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref
from collections.abc import Callable, Container, Iterator, Mapping

import attrs

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
CAMPAIGN = "CAMPAIGN"
"""An update campaign's state change or progress (``firmware.campaigns``; docs/firmware.md)."""
FIRMWARE = "FIRMWARE"
"""An update job changed (``lwm2m_server.firmware.manager``): the job as the API shows it."""
KINDS = (
    REGISTRATION,
    UPDATED,
    DEREGISTRATION,
    SLEEPING,
    AWAKE,
    NOTIFICATION,
    SEND,
    REQUEST_RESPONSE,
    CAMPAIGN,
    FIRMWARE,
)
GAP = "GAP"
"""Not a server event: what a subscriber gets in place of events it can no longer receive,
``{"missed": n, "from": first_id, "to": last_id}`` (``missed`` None when unknown)."""

DEFAULT_REPLAY_SIZE = 10_000
"""Events kept for resuming streams (``events.replay_size``)."""

Data = Mapping[str, object]
Build = Callable[[], Data]


_EVENT_FIELDS = ("kind", "endpoint", "data", "id")
if tuple(field.name for field in attrs.fields(ServerEvent)) != _EVENT_FIELDS:
    # ``publish`` sets these slots and no other (caught at import, not at the first event)
    raise TypeError("ServerEvent's fields changed: update _EVENT_FIELDS and EventBus.publish")
_set_kind, _set_endpoint, _set_data, _set_id = (
    ServerEvent.__dict__[name].__set__ for name in _EVENT_FIELDS
)
_new = object.__new__
"""``publish`` builds its ``ServerEvent`` with these: the attrs ``__init__`` of a frozen class
sets every field through a bound ``object.__setattr__`` made per instance (and is a Python
frame entered from C); each slot's own descriptor sets it for a third fewer instructions,
on every event (one per Update, two per Register). No validator or converter is skipped:
``ServerEvent`` has none. The event compares equal to ``ServerEvent(...)`` of the same
values (tests/unit/service/test_events_bus.py)."""

FieldsListener = Callable[[str, str, "Data"], None]
"""A ``listen_fields`` consumer: called with the event's kind, endpoint and data (its payload
as subscribers read it: ``LazyData`` or a dict), not with a ``ServerEvent``."""

_Callback = Callable[[ServerEvent], None]
_Listener = tuple["_Callback | FieldsListener", "Container[str] | None", "Container[str]", bool]
"""A consumer: the callback, the endpoints it is called for (None: all), the kinds it is
called for whatever the endpoint, and whether it takes the fields (``listen_fields``) rather
than the event."""

_Held = tuple[str, str, "Data", int]
"""An event ``announce`` put in the replay ring: ``(kind, endpoint, data, id)``, made a
``ServerEvent`` only when something reads it (``_event_of``)."""


def _event_of(held: _Held) -> ServerEvent:
    """The ``ServerEvent`` of an event ``announce`` held as its fields, built by the slots as
    ``publish`` builds its own (the same value)."""
    event = _new(ServerEvent)
    _set_kind(event, held[0])
    _set_endpoint(event, held[1])
    _set_data(event, held[2])
    _set_id(event, held[3])
    return event


_LAZY_TYPES: set[type] = set()
"""``LazyData`` and its subclasses (each adds itself): ``publish`` tells lazy data by its exact
type. ``isinstance(data, LazyData)`` goes through ``ABCMeta.__instancecheck__`` (``LazyData`` is
a ``Mapping``), ~0.4 µs per call, twice per Register (docs/performance.md, "Register: the
store and the events"); a set lookup of the type is ~0.05 µs and says the same, as nothing
registers virtual subclasses of ``LazyData``."""


class LazyData(Mapping[str, object]):
    """An event's data, built by ``build(*args)`` the first time anything reads it (then kept,
    so every subscriber sees the same dict and it is built at most once). The values it is
    built from must not change afterwards: registrations are frozen, which is why they can be.

    Why the arguments are kept here and not in a closure or a ``partial``: the bus's replay
    ring keeps the last 10,000 events alive, so everything an event holds lives through
    several young collections of the cyclic collector, which traverses each container object
    it finds. A closure over three values is six such objects (function, cell tuple, three
    cells, a dict), a ``partial`` two; this object plus its argument tuple is at most two, and
    the subclasses for the hottest events (``RegistrationData``) are one."""

    __slots__ = ("_args", "_build", "_data")

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        _LAZY_TYPES.add(cls)

    def __init__(self, build: Callable[..., Data], *args: object) -> None:
        self._build: Callable[..., Data] | None = build
        self._args: tuple[object, ...] = args
        self._data: dict[str, object] | None = None

    @classmethod
    def of(cls, build: Build) -> LazyData:
        """``build`` as lazy data; a ``functools.partial`` without keywords is taken apart
        (its function and arguments kept here), so the partial itself dies at once."""
        if type(build) is functools.partial and not build.keywords:
            return cls(build.func, *build.args)
        return cls(build)

    @property
    def built(self) -> bool:
        return self._data is not None

    def _make(self) -> Data:
        assert self._build is not None
        return self._build(*self._args)

    def _release(self) -> None:
        self._build = None  # let go of what it was built from
        self._args = ()

    def _get(self) -> dict[str, object]:
        data = self._data
        if data is None:
            data = self._data = dict(self._make())
            self._release()
        return data

    def __getitem__(self, key: str) -> object:
        return self._get()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())

    def __repr__(self) -> str:
        return repr(self._get())


_LAZY_TYPES.add(LazyData)


class RegistrationData(LazyData):
    """A REGISTRATION/UPDATED/DEREGISTRATION payload, built when read:
    ``registration_to_json(registration, sleeping=...)`` plus ``extra`` (``replaced``,
    ``reason``). One object holding the registration directly: these events are one or two
    per Register and Update, the most frequent in the ring (see ``LazyData``). ``extra`` is a
    dict of strings or None, which the collector does not track."""

    __slots__ = ("_extra", "_sleeping", "registration")

    def __init__(
        self,
        registration: Registration,
        sleeping: bool | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        self.registration: Registration | None = registration
        """The registration the payload is built from, for an in-process listener that needs
        the registration itself rather than its JSON (the profile engine's Update check, at
        ``publish``: it is the one the event announces, as the book held it then); None once
        the payload was built (it let go of it). Read-only to everyone else; a plain slot, not
        a property: the engine reads it at every Update."""
        self._sleeping = sleeping
        self._extra = extra
        self._data = None

    def _make(self) -> Data:
        assert self.registration is not None
        data = registration_to_json(self.registration, sleeping=self._sleeping)  # a new dict
        if self._extra:
            data.update(self._extra)
        return data

    def _release(self) -> None:
        self.registration = None
        self._extra = None


def registration_data(
    registration: Registration, *, sleeping: bool | None = None, **extra: object
) -> RegistrationData:
    """The lazy payload of a REGISTRATION/UPDATED/DEREGISTRATION event:
    ``registration_to_json`` plus ``extra`` (``replaced``, ``reason``), built only if it is
    read (``publish`` keeps it as it is)."""
    return RegistrationData(registration, sleeping, extra or None)


class Subscription:
    """One subscriber: a cursor into the bus's replay buffer. ``async for event in sub``, or
    ``get()``; ``ready(limit)`` takes what is there without waiting (an SSE writer batches)."""

    def __init__(self, bus: EventBus, cursor: int, gap: ServerEvent | None = None) -> None:
        self._bus = bus
        self._cursor = cursor
        """The id of the next event this subscriber wants."""
        self._gap = gap
        """A GAP decided at subscription (a resume from an unknown id), delivered first."""
        self.dropped = 0
        """Events this subscriber was told (GAP) it missed, in total (when known)."""
        self.closed = False

    @property
    def cursor(self) -> int:
        return self._cursor

    def __len__(self) -> int:
        """Events waiting for this subscriber (those it missed included)."""
        return self._bus._next_id - self._cursor

    def ready(self, limit: int = 1 << 30) -> list[ServerEvent]:
        """Up to ``limit`` events available now, without waiting: a GAP first if the buffer no
        longer holds the next one (see the module docstring). ``[]`` when none or closed."""
        if self.closed:
            return []
        bus = self._bus
        out: list[ServerEvent] = []
        if self._gap is not None:
            out.append(self._gap)
            self._gap = None
            if limit <= 1:
                return out
        oldest = bus.oldest_id
        if self._cursor < oldest:
            missed = oldest - self._cursor
            out.append(
                ServerEvent(
                    GAP, "", {"missed": missed, "from": self._cursor, "to": oldest - 1}, oldest - 1
                )
            )
            self.dropped += missed
            bus.dropped += missed
            self._cursor = oldest
            if len(out) >= limit:
                return out
        end = min(bus._next_id, self._cursor + max(0, limit - len(out)))
        ring, size = bus._ring, bus.replay_size
        for event_id in range(self._cursor, end):
            held = ring[event_id % size]
            if type(held) is tuple:  # announced: the event is made once, for every reader
                held = ring[event_id % size] = _event_of(held)
            assert isinstance(held, ServerEvent) and held.id == event_id
            out.append(held)
        self._cursor = max(self._cursor, end)
        return out

    async def get(self) -> ServerEvent | None:
        """The next event (or GAP), or None once the subscription or the bus is closed and
        everything published before was read."""
        while True:
            events = self.ready(1)
            if events:
                return events[0]
            if self.closed or self._bus.closed:
                self.closed = True
                return None
            await asyncio.shield(self._bus._wait())

    async def wait(self) -> bool:
        """Until something is ready (True) or the stream has ended (False)."""
        while not self.closed:
            if self._gap is not None or self._cursor < self._bus._next_id:
                return True
            if self._bus.closed:
                return False
            await asyncio.shield(self._bus._wait())
        return False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._bus._unsubscribe(self)

    async def aclose(self) -> None:
        self.close()

    def events(self) -> Subscription:
        """Itself (an async iterator); kept for callers written against the older generator."""
        return self

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> ServerEvent:
        event = await self.get()
        if event is None:
            raise StopAsyncIteration
        return event


class EventBus:
    """``replay_size``: how many of the latest events are kept for slow and resuming
    subscribers (``events.replay_size``); ``first_id``: the id of the first event (default:
    the time now in microseconds, see the module docstring)."""

    def __init__(self, replay_size: int = DEFAULT_REPLAY_SIZE, *, first_id: int | None = None):
        if replay_size < 1:
            raise ValueError("replay_size must be >= 1")
        self.replay_size = replay_size
        self.first_id = time.time_ns() // 1000 if first_id is None else first_id
        self._next_id = self.first_id
        self._ring: list[ServerEvent | _Held | None] = [None] * replay_size
        """The last ``replay_size`` events by id modulo the size: a ``publish``'s event, or the
        fields an ``announce`` held (made an event by the first reader, who puts it back)."""
        self._subscribers: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self._listeners: tuple[_Listener, ...] = ()
        """A tuple, replaced (not changed) by ``listen`` and its remover: ``publish`` walks it
        without copying it, and a listener added or removed during a ``publish`` takes effect
        at the next, as when ``publish`` walked a copy of a list."""
        self.subscribed_hooks: list[Callable[[], None]] = []
        """Called after each new subscriber (the cluster node tells the other nodes that this
        one has a reader, so that they share their events: docs/cluster.md)."""
        self._waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.dropped = 0
        """Events subscribers were told (GAP) they missed, over the bus's life (metrics)."""

    def deepest(self) -> int:
        """Events waiting for the slowest subscriber: how far it lags (metrics)."""
        return max((len(sub) for sub in self._subscribers), default=0)

    @property
    def last_id(self) -> int:
        """The id of the latest event (``first_id - 1`` before the first)."""
        return self._next_id - 1

    @property
    def oldest_id(self) -> int:
        """The id of the oldest event still in the replay buffer (``last_id + 1`` if none)."""
        return max(self.first_id, self._next_id - self.replay_size)

    def listen(
        self,
        callback: Callable[[ServerEvent], None],
        *,
        endpoints: Container[str] | None = None,
        kinds: Container[str] = (),
    ) -> Callable[[], None]:
        """An in-process consumer that must see every event, in order (the profile engine: a
        dropped REGISTRATION would leave a device unobserved): called at ``publish``, so it
        must be quick and never block; its exceptions are logged. Not a ``subscriber``.
        Returns the function that removes it.

        ``endpoints``: a consumer that acts only on the events of some devices (the firmware
        manager: those with an update job) gives the container it keeps them in (read at each
        ``publish``, so it follows the consumer's changes) and is called only for their
        events and for those of ``kinds``; None (the default): for every event. Why: such a
        consumer's call per keep-alive and per Register, only to find the device has nothing
        for it, was ~1,400 instructions; the ``in`` test here is a C lookup."""
        self._listeners = (*self._listeners, (callback, endpoints, kinds, False))
        return functools.partial(self._unlisten, callback)

    def listen_fields(self, callback: FieldsListener) -> Callable[[], None]:
        """``listen`` (every event, in order among the other listeners) for a consumer that
        takes the event's fields, ``callback(kind, endpoint, data)``, rather than the event
        object (the profile engine). Why: an event published by ``announce`` (every
        keep-alive, every Register) is then made a ``ServerEvent`` only if a subscriber or an
        object listener reads it. Returns the function that removes it."""
        self._listeners = (*self._listeners, (callback, None, (), True))
        return functools.partial(self._unlisten, callback)

    def _unlisten(self, callback: Callable[[ServerEvent], None] | FieldsListener) -> None:
        listeners = list(self._listeners)
        for entry in listeners:
            if entry[0] == callback:  # the first one only, as ``list.remove`` did
                listeners.remove(entry)
                self._listeners = tuple(listeners)
                return

    def subscribe(self, after: int | None = None) -> Subscription:
        """A subscriber from now on, or resuming after the event id ``after`` (what SSE calls
        the last event id): the events after it that the buffer still holds, a GAP for the
        ones it does not (module docstring)."""
        if after is None:
            sub = Subscription(self, self._next_id)
        elif self.first_id - 1 <= after <= self.last_id:
            sub = Subscription(self, after + 1)
        else:
            gap = ServerEvent(
                GAP,
                "",
                {
                    "missed": None,
                    "from": after + 1,
                    "to": self.oldest_id - 1,
                    "reason": f"event id {after} is not from this server process",
                },
                self.oldest_id - 1,
            )
            sub = Subscription(self, self.oldest_id, gap)
        if self.closed:
            sub.closed = True
        else:
            self._subscribers.add(sub)
            for hook in self.subscribed_hooks:
                hook()
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        self._subscribers.discard(sub)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def has_subscribers(self) -> bool:
        """Whether an event published now would reach a subscriber (an SSE reader, a test):
        for a producer whose data is costly even to describe as a builder."""
        return bool(self._subscribers)

    def _wait(self) -> asyncio.Future[None]:
        """A future resolved at the next ``publish`` or ``close``, shared by every waiting
        subscriber: one wake-up per event however many readers wait, none when none does.
        Subscribers await it through ``asyncio.shield``: one reader cancelled (it went away)
        must not cancel the others' wait."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            waiter = self._waiter = asyncio.get_running_loop().create_future()
        return waiter

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def publish(
        self, kind: str, endpoint: str, data: Data | Build, *, listeners: bool = True
    ) -> ServerEvent:
        """``data``: the payload (copied), a function building it, called only when a subscriber
        or listener reads the event's data (see the module docstring), or ``LazyData`` (kept as
        it is). ``listeners=False``: for
        subscribers only (an event another cluster node had: its node acted on it already)."""
        event_id = self._next_id
        if type(data) in _LAZY_TYPES:  # isinstance(data, LazyData), see _LAZY_TYPES
            payload: Data = data  # type: ignore[assignment]  # narrowed by the type test
        elif callable(data):
            payload = LazyData.of(data)
        else:
            payload = dict(data)
        # ``ServerEvent(kind, endpoint, payload, event_id)`` built by its slots (every event):
        # see ``_new`` above
        event = _new(ServerEvent)
        _set_kind(event, kind)
        _set_endpoint(event, endpoint)
        _set_data(event, payload)
        _set_id(event, event_id)
        self._ring[event_id % self.replay_size] = event
        self._next_id = event_id + 1
        if self._waiter is not None:
            self._wake()
        for listener, endpoints, kinds, fields in self._listeners if listeners else ():
            if endpoints is not None and endpoint not in endpoints and kind not in kinds:
                continue  # a consumer of some devices' events only (``listen``)
            try:
                if fields:
                    listener(kind, endpoint, payload)  # type: ignore[call-arg, arg-type]
                else:
                    listener(event)  # type: ignore[call-arg, arg-type]
            except Exception:
                log.exception("event listener failed on %s of %s", kind, endpoint)
        return event

    def announce(self, kind: str, endpoint: str, data: Data | Build) -> None:
        """``publish`` for a producer that does not need the event back (the service's
        Register and Update events, the profile engine's): the same id, the same place in
        the replay ring, the same listeners in the same order with the same data, and
        subscribers read the same ``ServerEvent``. What it skips: the ``ServerEvent`` itself
        (five C calls, ~1.3k instructions, one per keep-alive) unless an object listener
        (``listen``) is called: the ring holds the fields as a tuple until a subscriber reads
        them (``Subscription.ready`` makes and keeps the event), and a ``listen_fields``
        consumer gets the fields."""
        event_id = self._next_id
        if type(data) in _LAZY_TYPES:  # as in ``publish``
            payload: Data = data  # type: ignore[assignment]  # narrowed by the type test
        elif callable(data):
            payload = LazyData.of(data)
        else:
            payload = dict(data)
        ring = self._ring
        slot = event_id % self.replay_size
        held = ring[slot] = (kind, endpoint, payload, event_id)
        self._next_id = event_id + 1
        if self._waiter is not None:
            self._wake()
        event: ServerEvent | None = None
        for listener, endpoints, kinds, fields in self._listeners:
            if endpoints is not None and endpoint not in endpoints and kind not in kinds:
                continue  # a consumer of some devices' events only (``listen``)
            try:
                if fields:
                    listener(kind, endpoint, payload)  # type: ignore[call-arg, arg-type]
                else:
                    if event is None:  # one event for every object listener and reader
                        event = _event_of(held)
                        if ring[slot] is held:  # (unless a listener's events wrapped round)
                            ring[slot] = event
                    listener(event)  # type: ignore[call-arg, arg-type]
            except Exception:
                log.exception("event listener failed on %s of %s", kind, endpoint)

    def close(self) -> None:
        """Ends every subscription once it has read what was published before."""
        self.closed = True
        self._wake()
        self._subscribers.clear()
