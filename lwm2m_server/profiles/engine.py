"""``ProfileEngine``: applies profiles to connected devices and maps their values.

It is a consumer of the server, not part of it: it calls ``ServerOperations`` (read, observe,
Write-Attributes, …) and follows the event stream, so the service only has to (1) start and stop
it and (2) pass every batch of decoded values through ``map_telemetry`` before storing them.

When a profile is applied (see ``plan`` for what each case sends):

* ``REGISTRATION`` (a Register, or a re-Register that replaced the old registration and with
  it the old observations): everything;
* ``UPDATED``: only when the Update changed the object list (then what is missing), or when the
  device's status records a gap a new attempt may fill (a request the device refused or that
  timed out, an application that never finished). An Update with the same object list and
  nothing missing schedules nothing: no task, no profile resolution, no status write (it is
  the most frequent message a server gets, and it changes nothing the profile depends on);
* start-up: every restored registration, because its observations may be gone on the device
  side; a queue-mode client waits until it next speaks (``AWAKE``/``UPDATED``). Not all at
  once: with 100k restored registrations one task each made the first loop iteration after
  start-up run 100k applications (and log a line each) before CoAP read a datagram, so the
  first Register waited 30+ s. The restored clients wait in a queue that a background pacer
  drains with at most ``restart_concurrency`` applications in flight and one started per loop
  iteration, so CoAP is served from the first iteration on. A client that sends a Register,
  an Update or wakes up before its turn leaves the queue and is applied then (once: the pacer
  skips it); one summary INFO line is logged at the start and one at the end;
* a profile change (API, folder reload, assignment): every connected device whose profile it is.

One application per device at a time: a new Register cancels the one in progress (its
observations were dropped with the old registration anyway); other triggers wait their turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from keystore.store.errors import StoreError
from keystore.store.profiles import ProfileStore
from object_models.errors import Lwm2mError, ResponseCode
from object_models.registry import ModelRegistry

from ..core.registration import ObjectLinks, Registration
from ..core.telemetry import TelemetryPoint
from ..events_bus import LazyData, RegistrationData
from ..json_nodes import node_from_json, value_to_jsonable
from ..operations import DeviceResponse, ServerEvent, ServerOperations
from ..store.device_state import DeviceStateStore
from .applier import applied_without_requests, apply_plan
from .catalog import Catalog, Reload
from .mapper import map_points
from .model import Kind, ObserveStrategy, Profile
from .plan import Plan, Reason, Target, composite_allowed, plan
from .sinks import SinkRecord, SinkSet
from .status import DeviceStatus, PlainStatus

log = logging.getLogger(__name__)
_DEBUG = logging.DEBUG
_levels: dict[int, bool] = getattr(log, "_cache", {})
"""The logger's memo of its ``isEnabledFor`` answers, as ``coap.uplink._levels`` reads its own:
a False for DEBUG there is ``isEnabledFor(DEBUG)``'s answer without the call (every plain
Register); an empty memo (a level changed) makes the check ask the logger."""

TELEMETRY = "TELEMETRY"
ATTRIBUTES = "ATTRIBUTES"
PROFILE = "PROFILE"

Publish = Callable[[str, str, Mapping[str, object] | Callable[[], Mapping[str, object]]], object]
"""``EventBus.publish``: the event's data, or a function building it when someone reads it."""
Listen = Callable[[Callable[[ServerEvent], None]], Callable[[], None]]
"""``EventBus.listen``: register a synchronous event callback, get its remover."""
ListenFields = Callable[[Callable[[str, str, Mapping[str, object]], None]], Callable[[], None]]
"""``EventBus.listen_fields``: the same for a callback taking ``(kind, endpoint, data)``."""


def telemetry_records(points: Sequence[TelemetryPoint]) -> list[dict[str, Any]]:
    """``[{"ts": ms, "values": {key: value}}]``, one per timestamp, oldest first."""
    by_ts: dict[int, dict[str, object]] = {}
    for point in points:
        by_ts.setdefault(point.ts_ms, {})[point.key] = value_to_jsonable(point.value)
    return [{"ts": ts, "values": values} for ts, values in sorted(by_ts.items())]


def _telemetry_event(source: str, points: Sequence[TelemetryPoint]) -> dict[str, Any]:
    """A TELEMETRY event's data for points of one timestamp."""
    (record,) = telemetry_records(points)
    return {"source": source, **record}


PLAIN_REGISTERS = True
"""Whether ``ProfileEngine._register_plainly`` may settle a Register (tests turn it off to
compare it with the general path)."""

_REGISTER = Reason.REGISTER
_SINGLE = ObserveStrategy.SINGLE
"""Enum members the Register path compares with, looked up once: ``Reason.REGISTER`` reads
the class attribute through ``EnumType.__getattr__``'s slot (~75 ns, a Python-level
``__getattribute__`` call each time), several times per Register."""


class TelemetryData(LazyData):
    """A TELEMETRY event's data for points of one timestamp (``_telemetry_event``), built when
    read. One object holding the source and the points directly, where a ``partial`` taken
    apart by ``LazyData.of`` was a partial, this object and an argument tuple: one such event
    per notification lives in the bus's replay ring through several young collections (see
    ``LazyData``). The points list is not changed afterwards (the uplink stores it and hands
    the same list to its NOTIFICATION event)."""

    __slots__ = ("_points", "_source")

    def __init__(self, source: str, points: Sequence[TelemetryPoint]) -> None:
        self._source = source
        self._points: Sequence[TelemetryPoint] = points
        self._data = None

    def _make(self) -> dict[str, Any]:
        return _telemetry_event(self._source, self._points)

    def _release(self) -> None:
        self._points = ()


def _one_timestamp(points: Sequence[TelemetryPoint]) -> bool:
    first = points[0].ts_ms
    return all(p.ts_ms == first for p in points)


class ProfileEngine:
    def __init__(
        self,
        ops: ServerOperations,
        store: ProfileStore,
        state: DeviceStateStore,
        registry: ModelRegistry,
        *,
        listen: Listen,
        publish: Publish,
        folder: Path | None = None,
        default_profile: str = "default",
        sinks: SinkSet | None = None,
        timeout: float = 10.0,
        restart_concurrency: int = 32,
        durable: Callable[[], bool] | None = None,
        listen_fields: ListenFields | None = None,
    ) -> None:
        self.ops = ops
        self.store = store
        self.state = state
        self.catalog = Catalog(
            store, registry, folder, default_name=default_profile, durable=durable
        )
        self.sinks = sinks or SinkSet()
        self.timeout = timeout
        self._listen = listen
        self._listen_fields = listen_fields
        """Preferred to ``listen`` when given: ``on_fields`` then gets each event's fields
        and the bus makes no ``ServerEvent`` for the engine (one per keep-alive)."""
        self._unlisten: Callable[[], None] | None = None
        self._publish = publish
        self._status: dict[str, DeviceStatus] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._restart_pending: set[str] = set()
        self._planned_with: dict[str, ObjectLinks] = {}
        """The object list each device's last application planned with (see ``on_event``)."""
        self.restart_concurrency = max(1, restart_concurrency)
        self._restart_queue: dict[str, None] = {}
        """Restored clients whose start-up application has not started yet, in order (a dict:
        ordered, O(1) removal when a client speaks before its turn)."""
        self._pacer: asyncio.Task[None] | None = None
        self._due: dict[str, Reason] = {}
        """Applications the events of this loop iteration asked for, run together by
        ``_run_due`` in the next one (see ``_defer``)."""
        self._due_handle: asyncio.Handle | None = None
        self._preloaded: dict[str, dict[str, Any] | None] = {}
        """Stored statuses ``_run_due`` read in one go for ``status_of`` (None: none stored)."""

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        for error in self.catalog.load():
            log.error("stored profile no longer valid: %s", error)
        self.catalog.reload_folder()
        await self.sinks.start()
        if self._listen_fields is not None:
            self._unlisten = self._listen_fields(self.on_fields)
        else:
            self._unlisten = self._listen(self.on_event)
        for registration in self.ops.clients():
            if registration.queue_mode:
                self._restart_pending.add(registration.endpoint)
            else:
                self._restart_queue[registration.endpoint] = None
        if self._restart_queue or self._restart_pending:
            log.info(
                "re-applying profiles to %d restored registrations in the background (at most "
                "%d at a time); %d queue-mode clients when they next speak",
                len(self._restart_queue),
                self.restart_concurrency,
                len(self._restart_pending),
            )
        if self._restart_queue:
            self._pacer = asyncio.get_running_loop().create_task(self._pace_restart())
            self._tasks.add(self._pacer)
            self._pacer.add_done_callback(self._tasks.discard)

    @property
    def restart_waiting(self) -> int:
        """Restored clients whose start-up application has not started yet."""
        return len(self._restart_queue)

    async def _pace_restart(self) -> None:
        """Start the queued start-up applications one per loop iteration, at most
        ``restart_concurrency`` running; see the module docstring for why."""
        started = time.monotonic()
        done = 0
        slots = asyncio.Semaphore(self.restart_concurrency)
        while self._restart_queue:
            await slots.acquire()
            if not self._restart_queue:  # the rest spoke up while we waited
                slots.release()
                break
            endpoint = next(iter(self._restart_queue))
            del self._restart_queue[endpoint]
            task = self._apply_or_schedule(endpoint, Reason.RESTART)
            if task is None:  # applied at once (its plan sends nothing)
                slots.release()
            else:
                task.add_done_callback(lambda _t: slots.release())
            done += 1
            await asyncio.sleep(0)  # one start per loop iteration: datagrams are read between
        log.info(
            "profiles: start-up applications to %d restored registrations started in %.1f s "
            "(the others were applied when they spoke first)",
            done,
            time.monotonic() - started,
        )

    async def stop(self) -> None:
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        if self._due_handle is not None:  # a restart re-applies them
            self._due_handle.cancel()
            self._due_handle = None
        self._due.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.sinks.stop()

    async def idle(self, timeout: float = 10.0) -> None:
        """Wait until no application is running or waiting for its start-up turn (tests, the
        CLI's ``apply``)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            if self._due:  # ``_run_due`` is armed for the next loop iteration
                await asyncio.sleep(0)
                continue
            waiting = list(self._running.values())
            if self._pacer is not None and not self._pacer.done():
                waiting.append(self._pacer)
            if not waiting:
                return
            await asyncio.wait(waiting, timeout=0.1)

    # -- events ----------------------------------------------------------------------------------
    def on_event(self, event: ServerEvent) -> None:
        """``EventBus.listen`` callback: runs inside ``publish``, so it only schedules."""
        self.on_fields(event.kind, event.endpoint, event.data)

    def on_fields(self, kind: str, endpoint: str, data: Mapping[str, object]) -> None:
        """``on_event`` of the event's fields (``EventBus.listen_fields``: no event object)."""
        if kind == "REGISTRATION":
            self._restart_pending.discard(endpoint)
            self._restart_queue.pop(endpoint, None)  # the Register applies everything
            running = self._running.get(endpoint)
            if running is not None:
                running.cancel()
            self._defer(endpoint, _REGISTER)  # it forgets the old observations first
        elif kind in ("UPDATED", "AWAKE"):
            if endpoint in self._restart_queue:  # it speaks before its start-up turn: now
                del self._restart_queue[endpoint]
                self._defer(endpoint, Reason.RESTART)
            elif endpoint in self._restart_pending:
                self._restart_pending.discard(endpoint)
                self._defer(endpoint, Reason.RESTART)
            elif kind == "UPDATED":
                registration = data.registration if type(data) is RegistrationData else None
                if (
                    registration is not None
                    and self._planned_with.get(endpoint) is registration.object_links
                    and endpoint not in self._status
                ):
                    # nearly every Update: the very object list planned with and no status
                    # kept in memory (so no gap): ``_update_needs_applying`` says False
                    return
                if self._update_needs_applying(endpoint, registration):
                    self._defer(endpoint, Reason.UPDATE)
        elif kind == "DEREGISTRATION":
            self._restart_pending.discard(endpoint)
            self._restart_queue.pop(endpoint, None)
            self._due.pop(endpoint, None)
            self._planned_with.pop(endpoint, None)
            running = self._running.pop(endpoint, None)
            if running is not None:
                running.cancel()
            status = self.status_of(endpoint)
            status.forget_observations()
            self._save(status)

    def _update_needs_applying(
        self, endpoint: str, registration: Registration | None = None
    ) -> bool:
        """Whether an Update may have left the device short of its profile: its object list
        differs from the one the last application planned with (objects or instances came or
        went), or the last application left a gap that retrying can fill (a request answered
        with an error code or timed out, or an application that did not finish). Kept to a
        dictionary lookup and a comparison in the common case, because it runs per Update.

        ``registration``: the one the UPDATED event's data holds (``RegistrationData``: the
        service's), which is what ``ops.client`` gives at ``publish`` (the book indexed it
        before the event), so it is not looked up by endpoint again. Should the endpoint end
        later in the same batch of events (a De-register or expiry in the same loop
        iteration), the same decision holds as with the lookup: its DEREGISTRATION takes it
        off ``_due`` before ``_run_due``, and an application run meanwhile looks the client
        up itself (``_apply_at_once``: a client gone by then gets none). None (an event made
        elsewhere, a payload built already): looked up."""
        if registration is None:
            try:
                registration = self.ops.client(endpoint)
            except Lwm2mError:
                return False
        links = registration.object_links
        planned = self._planned_with.get(endpoint)
        if planned is None or (planned is not links and planned != links):
            return True
        if endpoint in self._running or endpoint in self._due:
            return False  # the application in progress plans with this object list already
        status = self._status.get(endpoint)
        if status is None:
            # only ever the case for a device whose last application left no gap: the
            # engine keeps such statuses in the store alone (``_save_settled``)
            return False
        return _has_gap(status)

    # -- applying --------------------------------------------------------------------------------
    def _defer(self, endpoint: str, reason: Reason) -> None:
        """Apply to ``endpoint`` in the next loop iteration, with every other application the
        events of this one asked for (``_run_due``).

        Why not a task per event: a Register is the second most frequent message a server
        gets, and for most devices the plan sends nothing (the built-in default profile). A
        task, a lock and a status write of its own per Register was about a third of the
        Register's CPU; one callback per iteration settles the applications whose plan is
        empty in place and writes their statuses in one statement. Running after this
        iteration's replies also keeps the application off the Register's reply path. A
        Register's reason wins over another one due for the same device (it applies
        everything)."""
        if reason is _REGISTER or endpoint not in self._due:
            self._due[endpoint] = reason
        if self._due_handle is None:
            self._due_handle = asyncio.get_running_loop().call_soon(self._run_due)

    def _run_due(self) -> None:
        """Run the applications ``_defer`` collected. What they read from the store (each
        Register's assignment, the statuses not in memory) is read first, in one query each,
        rather than one query per device and kind."""
        self._due_handle = None
        due, self._due = self._due, {}
        registers = [ep for ep, reason in due.items() if reason is _REGISTER]
        refreshed = False
        if registers:
            try:
                self.catalog.refresh_assignments(registers)
                refreshed = True
            except StoreError as exc:  # each application reads its own then
                log.error("profile assignments of %d devices not re-read: %s", len(registers), exc)
        missing = [ep for ep in due if ep not in self._status]
        if missing:
            with contextlib.suppress(StoreError):  # each reads its own then
                stored = self.state.statuses(missing)
                self._preloaded = {ep: stored.get(ep) for ep in missing}
        settled: list[DeviceStatus | PlainStatus] = []
        try:
            for endpoint, reason in due.items():
                try:
                    status = self._apply_at_once(endpoint, reason, refreshed=refreshed)
                except Exception:  # one device's bug must not cost the others their application
                    log.exception("applying the profile of %s failed", endpoint)
                    continue
                if status is not None:
                    settled.append(status)
        finally:
            self._preloaded = {}
        if settled:
            self._save_settled(settled)

    def _apply_or_schedule(self, endpoint: str, reason: Reason) -> asyncio.Task[None] | None:
        """Apply now when the plan sends nothing (None), else start the task that sends it.
        Never raises: the start-up pacer calls it, and must go on with the next client."""
        try:
            status = self._apply_at_once(endpoint, reason)
        except Exception:
            log.exception("applying the profile of %s failed", endpoint)
            return None
        if status is not None:
            self._save_settled([status])
            return None
        return self._running.get(endpoint)

    def _apply_at_once(
        self, endpoint: str, reason: Reason, *, refreshed: bool = False
    ) -> DeviceStatus | PlainStatus | None:
        """The application of ``endpoint`` when nothing is applied to it now and its plan sends
        no request: done here, the status returned for ``_save_settled``. Otherwise it is
        scheduled as a task (which plans again, with what holds when it runs) or, for a device
        that is gone, dropped; None then. ``refreshed``: a Register's assignment was re-read
        already."""
        resolved = None
        if reason is _REGISTER and refreshed and PLAIN_REGISTERS:
            plain = self._register_plainly(endpoint)
            if isinstance(plain, PlainStatus):
                return plain
            resolved = plain
        if reason is _REGISTER:  # the registration it replaced took its observations
            self.status_of(endpoint).forget_observations()
        if endpoint in self._running:  # one application at a time: this one waits its turn
            self.schedule(endpoint, reason)
            return None
        try:
            registration = self.ops.client(endpoint)
        except Lwm2mError:
            return None
        if reason is _REGISTER and not refreshed:
            self._refresh_assignment(endpoint)
        prepared = self._prepare(registration, reason, resolved)
        if prepared.plan.requests:
            self.schedule(endpoint, reason)
            return None
        status = self._begin(prepared)
        status.record(
            applied_without_requests(
                prepared.plan,
                previous=[t for t in prepared.previous if t in prepared.existing],
                written=status.written,
            )
        )
        return status

    def _register_plainly(self, endpoint: str) -> PlainStatus | tuple[Profile, str] | None:
        """A Register's application when its profile asks nothing, settled without the general
        path's objects: what ``_apply_at_once`` would make of it (a status ``applied``, reason
        ``register``, nothing observed or written, no problem, the stored value problems
        kept), as a ``PlainStatus``. Anything else declines, changing nothing: None, or the
        profile and why it was chosen (resolved already; ``_prepare`` takes them rather than
        resolving, and logging a missing assignment, twice).

        Why: a Register of a device whose profile asks nothing (the built-in default: nearly
        every Register of most fleets) went through ``status_of``, ``_prepare``, ``plan``,
        ``_begin``, ``applied_without_requests`` and ``record``, seven objects to produce
        seven atoms; about a quarter of a Register's CPU at 100k clients was the profile batch
        (docs/performance.md, "Session 7: Register path"). It applies when, and only when, the
        general path would take ``plan``'s shortcut for a profile that asks nothing and the
        device has no status to carry over but its value problems: no status in memory (a gap
        to retry, an application in progress), no task running, a stored status (read for the
        iteration by ``_run_due``) absent or readable with no value problems, and a profile
        with no objects and no resources whose strategy the device's LwM2M version allows
        (else ``plan`` records a problem). ``tests/unit/profiles/test_plain_register.py``
        holds the two paths to the same stored rows, events and memory."""
        preloaded = self._preloaded
        if endpoint in self._status or endpoint in self._running or endpoint not in preloaded:
            return None
        stored = preloaded[endpoint]
        if stored is not None:
            try:
                kept = DeviceStatus.from_json(stored)
            except Exception:  # the general path meets (and logs) the same error
                return None
            if kept.value_problems:
                return None
        try:
            registration = self.ops.client(endpoint)
        except Lwm2mError:
            return None
        resolved = profile, chosen_by = self.catalog.resolve(endpoint)
        if (
            profile.resources
            or profile.objects
            or (profile.observe_strategy is not _SINGLE and not composite_allowed(registration))
        ):
            return resolved
        self._planned_with[endpoint] = registration.object_links
        if _levels.get(_DEBUG) is not False and log.isEnabledFor(_DEBUG):  # as ``_begin``
            log.debug(
                "applying profile %s to %s (%s): %d requests", profile.name, endpoint, "register", 0
            )
        return PlainStatus(endpoint, profile.name, profile.digest, chosen_by, time.time())

    def _save_settled(self, statuses: Sequence[DeviceStatus | PlainStatus]) -> None:
        """Store the statuses of applications done at once (one write for all), publish them,
        and keep in memory only those an Update still has to look at (a gap to retry).

        The others are read back from the store when needed (``status_of``): a device's
        status is ~0.5 KB of objects, and with 100k devices on a profile that asks nothing it
        was a fifth of the memory per device."""
        put_texts = getattr(self.state, "put_status_texts", None)
        try:
            if put_texts is None:
                self.state.put_statuses([(s.endpoint, s.to_json()) for s in statuses])
            else:  # the sqlite store: encoded here, a PlainStatus from its atoms
                put_texts([(s.endpoint, s.text()) for s in statuses])
        except StoreError as exc:
            log.error("profile status of %d devices not stored: %s", len(statuses), exc)
            for status in statuses:  # kept in memory, as the general path keeps its own
                if isinstance(status, PlainStatus):
                    self._status[status.endpoint] = status.status()
        else:
            for status in statuses:
                endpoint = status.endpoint
                if isinstance(status, DeviceStatus) and (
                    not _has_gap(status)
                    and endpoint not in self._running
                    and self._status.get(endpoint) is status
                ):
                    del self._status[endpoint]
        for status in statuses:
            self._publish(PROFILE, status.endpoint, status.event_data())

    def _refresh_assignment(self, endpoint: str) -> None:
        try:
            self.catalog.refresh_assignment(endpoint)
        except StoreError as exc:  # the assignment this process knows stays in use
            log.error("profile assignment of %s not re-read: %s", endpoint, exc)

    def schedule(self, endpoint: str, reason: Reason) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._apply(endpoint, reason))
        self._tasks.add(task)
        self._running[endpoint] = task

        def done(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            if self._running.get(endpoint) is t:
                del self._running[endpoint]

        task.add_done_callback(done)
        return task

    async def _apply(self, endpoint: str, reason: Reason) -> None:
        lock = self._locks.setdefault(endpoint, asyncio.Lock())
        try:
            async with lock:
                try:
                    registration = self.ops.client(endpoint)
                except Lwm2mError:
                    return
                if reason is Reason.REGISTER:
                    self._refresh_assignment(endpoint)
                await self._apply_to(registration, reason)
        finally:
            # the lock lives while applications of the device wait for it, not for as long
            # as the device exists (one per registered device was ~110 bytes each)
            if self._locks.get(endpoint) is lock and not lock.locked() and not lock._waiters:
                del self._locks[endpoint]

    async def _apply_to(self, registration: Registration, reason: Reason) -> None:
        prepared = self._prepare(registration, reason)
        status = self._begin(prepared)
        applied = await apply_plan(
            self.ops,
            registration.endpoint,
            prepared.plan,
            previous=[t for t in prepared.previous if t in prepared.existing],
            written=status.written,
            timeout=self.timeout,
        )
        status.record(applied)
        self._save(status)
        self._publish(PROFILE, registration.endpoint, status.to_json())

    def _prepare(
        self,
        registration: Registration,
        reason: Reason,
        resolved: tuple[Profile, str] | None = None,
    ) -> _Prepared:
        """The plan for ``registration`` and what it was made from; changes nothing.
        ``resolved``: the profile and why, when the caller resolved it already."""
        endpoint = registration.endpoint
        profile, chosen_by = self.catalog.resolve(endpoint) if resolved is None else resolved
        status = self.status_of(endpoint)
        previous = list(status.observed)
        if status.profile and status.profile != profile.name and reason is Reason.UPDATE:
            reason = Reason.PROFILE
        existing: list[Target] = []
        if previous or (profile.resources and any(m.observe for m in profile.resources.values())):
            # only then does the plan compare with what is observed: a profile that observes
            # nothing (the default) spares every Register the lookup, a store read for a new
            # device
            existing = [tuple(paths) for paths in self.ops.observations(endpoint)]
        the_plan = plan(
            profile,
            registration,
            reason,
            existing=existing,
            previous=previous,
            written=status.written,
        )
        return _Prepared(
            registration, profile, chosen_by, status, reason, previous, existing, the_plan
        )

    def _begin(self, prepared: _Prepared) -> DeviceStatus:
        """Record in the device's status that ``prepared`` is being applied."""
        registration, profile, reason = prepared.registration, prepared.profile, prepared.reason
        endpoint = registration.endpoint
        self._planned_with[endpoint] = registration.object_links
        status = prepared.status
        status.profile, status.chosen_by, status.reason = (
            profile.name,
            prepared.chosen_by,
            _REASON_TEXT[reason],
        )
        status.digest = profile.digest
        status.state = "applying"
        requests = len(prepared.plan.requests)
        if requests or reason is not Reason.UPDATE:
            # start-up applications are summed up by ``start`` (one line, not one per client);
            # one that sends nothing (the Register of most devices) is per message: DEBUG
            level = logging.DEBUG if reason is Reason.RESTART or not requests else logging.INFO
            if log.isEnabledFor(level):  # DEBUG: per Register, not even formatted usually
                log.log(
                    level,
                    "applying profile %s to %s (%s): %d requests",
                    profile.name,
                    endpoint,
                    _REASON_TEXT[reason],
                    requests,
                )
        return status

    def status_of(self, endpoint: str) -> DeviceStatus:
        """The device's status, to change: kept in memory until it is stored again."""
        status = self._status.get(endpoint)
        if status is None:
            status = self._status[endpoint] = self._stored_status(endpoint)
        return status

    def _peek(self, endpoint: str) -> DeviceStatus:
        """The device's status, to read: from memory or the store, without keeping it (an API
        read of every device must not bring every status back into memory)."""
        status = self._status.get(endpoint)
        return self._stored_status(endpoint) if status is None else status

    def _stored_status(self, endpoint: str) -> DeviceStatus:
        stored = None
        if endpoint in self._preloaded:
            stored = self._preloaded.pop(endpoint)
        else:
            with contextlib.suppress(StoreError):
                stored = self.state.status(endpoint)
        status = DeviceStatus.from_json(stored) if stored else DeviceStatus(endpoint)
        status.endpoint = endpoint
        return status

    def _save(self, status: DeviceStatus) -> None:
        try:
            self.state.put_status(status.endpoint, status.to_json())
        except StoreError as exc:
            log.error("profile status of %s not stored: %s", status.endpoint, exc)

    def status(self, endpoint: str) -> dict[str, Any]:
        """The device's status; before anything was applied, the profile it would get."""
        result = self._peek(endpoint).to_json()
        if not result["profile"]:
            profile, chosen_by = self.catalog.resolve(endpoint)
            result["profile"], result["chosenBy"] = profile.name, chosen_by
        return result

    # -- profile changes -------------------------------------------------------------------------
    def _reapply(self, names: set[str] | None = None) -> list[str]:
        """Apply again to connected devices whose profile is (now) one of ``names`` or whose
        profile changed (``names`` None: every device), except a device whose last
        application was of this very document (same name and ``Profile.digest``): a profile
        stored again unchanged, or changed and changed back, sends it nothing."""
        endpoints = []
        for registration in self.ops.clients():
            endpoint = registration.endpoint
            profile, _ = self.catalog.resolve(endpoint)
            status = self._peek(endpoint)
            old = status.profile
            if names is None or profile.name in names or (old and old != profile.name):
                if old == profile.name and status.digest == profile.digest:
                    continue
                endpoints.append(endpoint)
                self.schedule(endpoint, Reason.PROFILE)
        return endpoints

    def reload(self) -> Reload:
        result = self.catalog.reload_folder()
        self.catalog.load()
        if result.changed or result.removed:
            self._reapply(set(result.changed) | set(result.removed))
        return result

    def put_profile(self, name: str, document: Mapping[str, Any]) -> Profile:
        profile = self.catalog.put(document, name)
        self._reapply({name})
        return profile

    def remove_profile(self, name: str) -> Profile | None:
        removed = self.catalog.remove(name)
        if removed is not None:
            self._reapply({name})
        return removed

    def assign(self, endpoint: str, name: str | None) -> None:
        self.catalog.assign(endpoint, name)
        with contextlib.suppress(Lwm2mError):
            self.ops.client(endpoint)
            self.schedule(endpoint, Reason.PROFILE)

    def apply_now(self, endpoint: str) -> asyncio.Task[None]:
        """``profiles apply``: reads, attributes and missing observations, now."""
        self.ops.client(endpoint)  # UnknownClientError for a device that is not connected
        return self.schedule(endpoint, Reason.MANUAL)

    # -- values ----------------------------------------------------------------------------------
    def map_telemetry(
        self, registration: Registration, points: list[TelemetryPoint], source: str
    ) -> list[TelemetryPoint]:
        """The service's ``TelemetryMapper``: returns the telemetry to store; attributes are
        stored here, both are published and copied to the sinks. Never raises."""
        if not points:
            return points
        endpoint = registration.endpoint
        try:
            profile, _ = self.catalog.resolve(endpoint)
            if not profile.resources and not self.sinks.sinks:
                # a profile that maps nothing (the built-in default) and no sink: what
                # map_points would return (the points, or nothing), without its containers
                if not profile.keep_unmapped:
                    return []
                self._publish_lazily(endpoint, source, points)
                return points
            mapped = map_points(profile, points)
        except Exception:
            log.exception("mapping values of %s failed: stored with default keys", endpoint)
            return points
        if mapped.problems:
            status = self.status_of(endpoint)
            for problem in mapped.problems:
                log.warning("%s %s: %s", endpoint, problem.path, problem.message)
                status.value_problem(problem)
            self._save(status)
        if mapped.attributes:
            try:
                self.state.put_attributes(mapped.attributes)
            except StoreError as exc:
                log.error("attributes of %s not stored: %s", endpoint, exc)
            values = {p.key: value_to_jsonable(p.value) for p in mapped.attributes}
            self._publish(ATTRIBUTES, endpoint, {"source": source, "attributes": values})
            self.sinks.offer(SinkRecord(endpoint, "attributes", values, profile.name))
        if self.sinks.sinks:
            for record in telemetry_records(mapped.telemetry):
                self._publish(TELEMETRY, endpoint, {"source": source, **record})
                self.sinks.offer(SinkRecord(endpoint, "telemetry", record, profile.name))
        elif mapped.telemetry:
            # no sink: the records are built only if an event reader asks (issue 10: events
            # built only when someone reads them); one event per timestamp, as above
            self._publish_lazily(endpoint, source, mapped.telemetry)
        return mapped.telemetry

    def _publish_lazily(self, endpoint: str, source: str, points: list[TelemetryPoint]) -> None:
        if len(points) == 1 or _one_timestamp(points):  # a notification's value
            self._publish(TELEMETRY, endpoint, TelemetryData(source, points))
            return
        for ts in sorted({p.ts_ms for p in points}):
            at = [p for p in points if p.ts_ms == ts]
            self._publish(TELEMETRY, endpoint, TelemetryData(source, at))

    def attributes(self, endpoint: str) -> dict[str, TelemetryPoint]:
        return self.state.attributes(endpoint)

    async def write_attribute(
        self, endpoint: str, key: str, value: object, *, timeout: float | None = None
    ) -> DeviceResponse:
        """Write a mapped, writable attribute to the device (and keep it once accepted)."""
        registration = self.ops.client(endpoint)
        profile, _ = self.catalog.resolve(endpoint)
        mapping = profile.by_key(key)
        if mapping is None or mapping.kind is not Kind.ATTRIBUTE:
            raise Lwm2mError(
                f"profile {profile.name!r} maps no attribute {key!r}", code=ResponseCode.NOT_FOUND
            )
        if not mapping.writable:
            raise Lwm2mError(
                f"attribute {key!r} is resource {mapping.path}, which is not writable",
                code=ResponseCode.METHOD_NOT_ALLOWED,
            )
        models = self.ops.models_for(endpoint)
        node = node_from_json(value, mapping.path, models)
        response = await self.ops.write(
            endpoint, mapping.path, node, timeout=timeout or self.timeout
        )
        if response.success:
            from object_models.node import flatten

            points = [
                TelemetryPoint(endpoint, str(p), key, round(time.time() * 1000), v, t)
                for p, t, v in flatten(mapping.path, node)
            ]
            self.map_telemetry(registration, points, "write")
        return response


@attrs.frozen
class _Prepared:
    """A plan and what it was made from (``ProfileEngine._prepare``)."""

    registration: Registration
    profile: Profile
    chosen_by: str
    status: DeviceStatus
    reason: Reason
    previous: list[Target]
    existing: list[Target]
    plan: Plan


_REASON_TEXT = {reason: reason.value for reason in Reason}
"""``reason.value`` looked up (``Enum.value`` is a Python property: per Register)."""


def _has_gap(status: DeviceStatus) -> bool:
    """Whether an Update should apply again although the object list is the same: the last
    application did not finish, or a request of it was refused or timed out."""
    return status.state == "applying" or any("code" in p for p in status.problems)


__all__ = ["ATTRIBUTES", "PROFILE", "TELEMETRY", "ProfileEngine"]
