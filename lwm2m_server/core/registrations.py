"""``RegistrationBook``: the in-memory index of live registrations and their lifetimes.

One registration per endpoint name (a second Register replaces the first, Core §6.2.1) and one
per registration id. Lifetimes are tracked by a single min-heap of ``(deadline, id, version)``
with lazy deletion: an Update or Deregister does not search the heap, it bumps the
registration's version and pushes a new entry; stale entries are skipped when they surface.
That keeps Register/Update O(log n) and ``next_deadline``/``expire`` cheap with 100k clients,
and the adapter needs exactly one timer (armed at ``next_deadline()``).

Grace period: a registration expires ``grace_period`` seconds after ``last_update + lifetime``.
A client that sends its Update just before its lifetime ends may still be retransmitting it
(CoAP MAX_TRANSMIT_SPAN is 45 s), and a client whose clock runs slightly slow updates late;
removing it at the exact second would make it lose its observations for a few seconds of jitter.
Leshan applies a small grace for the same reason. Default 15 s; 0 gives the spec's exact rule.

A registration stays usable until ``expire(now)`` sweeps it: the adapter calls ``expire`` when
its timer fires at ``next_deadline()``, so the window where a dead registration still answers
an Update is at most a timer tick.

**Store** (``store=``, what ``ServerCore`` passes): the store is the source of truth and this
book a cache of it. Every change is written to the store *before* the book indexes it (a
``StoreError`` leaves the book as it was), and a lookup that misses the book (by id, endpoint,
address or identity) reads through to the store and caches what it finds, so a registration
another server process made on a shared store is found here (by address only when the
store may hold what the book lacks: ``complete``). A hit is trusted (no read per
Update); a stale hit is caught by the write it leads to: an Update's conditional
``touch_registration``/``update_registration`` finds the id gone (deregistered or replaced by
another process) and the book forgets it and answers 4.04. Expiry asks the store too: the
conditional ``remove_registration(id, expires_at=...)`` removes it only if nobody refreshed it
meanwhile (then the book takes the stored record instead), so with several processes exactly
one reports it expired; ``sweep`` expires what no process's cache holds. Without a store the
book is the pure in-memory index it always was.
"""

from __future__ import annotations

import base64
import heapq
import logging
import os
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import attrs

from keystore.resolver import IdentityBinding
from keystore.store.errors import StoreError
from lwm2m_runtime.address import Address
from object_models.errors import Lwm2mError, ResponseCode

from .events import Deregistered, Event, Registered, Replaced, Updated
from .registration import BARE_UPDATE, Registration, RegistrationRequest, UpdateRequest

if TYPE_CHECKING:
    from lwm2m_server.store.base import RegistrationStore

log = logging.getLogger(__name__)

DEFAULT_GRACE_PERIOD = 15.0
EXPIRY_RETRY = 5.0
"""Seconds before an expiry the store refused (``StoreError``) is tried again."""

_K = TypeVar("_K", bound=Hashable)


_ID_BYTES = 6
_random_ids: list[str] = []
"""The random part of the next ids, 8 URL-safe characters each (``_ID_BYTES`` random bytes):
``os.urandom`` (the source of ``secrets``) read 6 KiB at a time and base64-encoded in one call
(6 bytes are exactly 8 characters, so each slice is one id's ``token_urlsafe(6)``); one system
call and one encoding per Register were ~3 % of it. Emptied in a forked child (``--workers``),
which must never hand out its parent's ids."""
_URLSAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_PREFIXES = [a + b for a in _URLSAFE for b in _URLSAFE]
"""The 4,096 two-character prefixes, in order (``new_registration_id``)."""
_IDS_PER_PREFIX = 256
_ids_made = int.from_bytes(os.urandom(3), "big")
"""Ids handed out (from a random start): their prefix moves on every ``_IDS_PER_PREFIX``."""


def _after_fork() -> None:
    global _ids_made
    _random_ids.clear()
    _ids_made = int.from_bytes(os.urandom(3), "big")  # the child's own prefixes


os.register_at_fork(after_in_child=_after_fork)


def _refill() -> None:
    text = base64.urlsafe_b64encode(os.urandom(_ID_BYTES * 1024)).decode("ascii")
    _random_ids[:] = [text[i : i + 8] for i in range(0, len(text), 8)]


def new_registration_id() -> str:
    """10 URL-safe characters: a 2-character prefix, then 48 random bits (8 characters, what
    ``secrets.token_urlsafe(6)`` gives). Short enough for a Location-Path on a constrained
    link; unguessable enough that a peer cannot update or delete someone else's registration
    (the prefix is no secret: the 48 random bits are what a guess must hit, as before).

    Why the prefix: it is the same for 256 ids in a row, then the next of 4,096, so the ids a
    loop iteration registers sort next to each other. The store's index on the id (sqlite's
    primary key B-tree) then takes a group commit's Registers on one or two pages instead of
    one random page each: with 8 random characters alone, an INSERT cost 12 µs at 10k rows and
    21 µs at 100k (a random leaf page to read and to write to the WAL per Register), with the
    prefix 10 and 14 µs (docs/performance.md, "Register path (session 5)")."""
    global _ids_made
    made = _ids_made = _ids_made + 1
    if not _random_ids:
        _refill()
    return _PREFIXES[(made // _IDS_PER_PREFIX) & 0xFFF] + _random_ids.pop()


@attrs.frozen
class RegisterOutcome:
    registration: Registration
    replaced: Registration | None
    events: tuple[Event, ...]
    held: bool = False
    """The store holds the write for its group commit (``register``'s ``then``): ``replaced``
    is what the cache knew, the events come with the store's answer."""


class UpdateOutcome(NamedTuple):
    """An Update's outcome: one per Update, the most frequent message, so a named tuple (see
    ``core.server.CoreResult``: built in one C call, not a field at a time)."""

    registration: Registration
    previous: Registration
    events: tuple[Event, ...]


@attrs.frozen
class DeregisterOutcome:
    registration: Registration
    events: tuple[Event, ...]


def not_found(registration_id: str) -> Lwm2mError:
    return Lwm2mError(f"no registration {registration_id!r}", code=ResponseCode.NOT_FOUND)


class RegistrationBook:
    """Live registrations by id and by endpoint, and their expiry. Pure: ``now`` comes in."""

    def __init__(
        self,
        *,
        grace_period: float = DEFAULT_GRACE_PERIOD,
        id_factory: Callable[[], str] = new_registration_id,
        store: RegistrationStore | None = None,
    ) -> None:
        if grace_period < 0:
            raise ValueError("grace_period must be >= 0")
        self.grace_period = grace_period
        self.store = store
        self._new_id = id_factory
        self._by_id: dict[str, Registration] = {}
        self._by_endpoint: dict[str, str] = {}
        # several registrations may share an address (NoSec devices behind one NAT binding,
        # a gateway registering several endpoints from one socket): an ordered set of ids, or
        # the id alone for the usual one (``_Ids``)
        self._by_address: dict[Address, _Ids] = {}
        self._by_identity: dict[IdentityBinding, _Ids] = {}
        self._versions: dict[str, int] = {}
        self._heap: list[tuple[float, str, int]] = []
        self._counter = 0
        self.complete = False
        """Every registration of ``store`` is in this book: the store is written by this process
        alone and was loaded into the book at start-up (``ServerCore.load`` sets it when the
        store says ``one_process``). An address that misses the book then has no registration
        anywhere, and ``at_address`` answers so without reading the store.

        Why: the store's lookup by address is the one read-through that needs an index of its
        own on a one-process store (id and endpoint are unique keys the store keeps anyway,
        identity has a partial index NoSec Registers skip), and that index is the part of a
        Register that grows with the fleet when devices share addresses: at 100k registrations
        from the load generator's 128 sockets, filing each Register under its (host, port) in
        sqlite costs ~10 µs more than at 1k (docs/performance.md, "Session 8: Registers at
        100k"). Without reads by address the store may drop that index. A shared store (Redis,
        several workers) is read through as before: another process's registration is found
        there."""

    # -- queries -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Registration]:
        return iter(list(self._by_id.values()))

    def __contains__(self, registration_id: object) -> bool:
        return registration_id in self._by_id

    def get(self, registration_id: str) -> Registration | None:
        reg = self._by_id.get(registration_id)
        if reg is None and self.store is not None:
            reg = self._cache(self.store.get_registration(registration_id))
        return reg

    def require(self, registration_id: str) -> Registration:
        """The registration, or a 4.04 ``Lwm2mError`` (unknown Location-Path)."""
        reg = self.get(registration_id)
        if reg is None:
            raise not_found(registration_id)
        return reg

    def by_endpoint(self, endpoint: str) -> Registration | None:
        reg_id = self._by_endpoint.get(endpoint)
        if reg_id is not None:
            return self._by_id.get(reg_id)
        if self.store is None:
            return None
        return self._cache(self.store.registration_by_endpoint(endpoint))

    def cached(self, registration_id: str) -> Registration | None:
        """The cached registration, without reading through to the store."""
        return self._by_id.get(registration_id)

    def cached_by_endpoint(self, endpoint: str) -> Registration | None:
        """The cached registration of ``endpoint``, without reading through to the store."""
        reg_id = self._by_endpoint.get(endpoint)
        return None if reg_id is None else self._by_id.get(reg_id)

    def at_address(self, address: Address) -> list[Registration]:
        """Every live registration whose requests come from ``address`` (least recently
        written first)."""
        ids = self._by_address.get(address)
        if ids is None and self.store is not None and not self.complete:
            for reg in self.store.registrations_by_address(address):
                self._cache(reg)
            ids = self._by_address.get(address)
        return [self._by_id[r] for r in _each(ids)]

    def with_identity(self, identity: IdentityBinding) -> list[Registration]:
        """Every live registration bound to this DTLS identity (least recently written first)."""
        ids = self._by_identity.get(identity)
        if ids is None and self.store is not None:
            for reg in self.store.registrations_by_identity(identity):
                self._cache(reg)
            ids = self._by_identity.get(identity)
        return [self._by_id[r] for r in _each(ids)]

    def by_address(self, address: Address) -> Registration | None:
        """The one registration from ``address``; None when there is none *or several*: an
        address shared by several endpoints (NAT) names none of them, and guessing the latest
        would file one device's data under another (``ServerCore.sender`` refuses instead)."""
        here = self.at_address(address)
        return here[0] if len(here) == 1 else None

    def deadline(self, registration: Registration) -> float:
        """When ``registration`` will be swept by ``expire``: expires_at plus the grace."""
        return registration.expires_at + self.grace_period

    # -- operations ----------------------------------------------------------------------------
    def register(
        self,
        request: RegistrationRequest,
        *,
        now: float,
        address: Address,
        transport: str = "coap",
        identity: IdentityBinding | None = None,
        then: Callable[[RegisterOutcome | None], None] | None = None,
    ) -> RegisterOutcome:
        """Add a registration; an earlier one of the same endpoint is replaced (its observations
        and queue are the caller's to drop: see ``ServerCore``).

        ``then``: when the store can hold the write for its group commit
        (``put_registration_later``, Redis), it does, the outcome says ``held`` and has no
        events, and ``then`` gets the real outcome when the store answered (before the
        iteration's replies leave), or None when the write failed (the reply is withheld;
        the cache then forgets the registration)."""
        reg_id = self._new_id()
        if reg_id in self._by_id:  # 48 random bits: practically never
            reg_id = self._fresh_id()
        registration = Registration.create(
            reg_id, request, now=now, address=address, transport=transport, identity=identity
        )
        # the cache says what it replaces; the store says it when another process registered
        # the endpoint (no extra read: put_registration finds it anyway)
        cached_id = self._by_endpoint.get(request.endpoint)
        replaced = None if cached_id is None else self._by_id.get(cached_id)
        if then is not None and self._hold(registration, replaced, then):
            if replaced is not None:
                self._forget(replaced.registration_id)
            self._put(registration)
            return RegisterOutcome(registration, replaced, (), held=True)
        if self.store is not None:
            stored = self.store.put_registration(registration)
            replaced = replaced if stored is None or replaced is not None else stored
        events: list[Event] = []
        if replaced is not None:
            if replaced.registration_id in self._by_id:
                self._forget(replaced.registration_id)
            events.append(Replaced(old=replaced, new=registration))
        self._put(registration)
        # by position (every Register): keywords make the attrs ``__init__`` call gather a dict
        events.append(Registered(registration, replaced))
        return RegisterOutcome(registration, replaced, tuple(events))

    def _hold(
        self,
        registration: Registration,
        cached: Registration | None,
        then: Callable[[RegisterOutcome | None], None],
    ) -> bool:
        """Hand the write to the store's group commit, if it takes it (``register``)."""
        later = getattr(self.store, "put_registration_later", None)
        if later is None:
            return False

        def stored(ok: bool, replaced: Registration | None) -> None:
            then(self._registered(registration, cached, ok, replaced))

        return bool(later(registration, stored))

    def _registered(
        self,
        registration: Registration,
        cached: Registration | None,
        ok: bool,
        stored: Registration | None,
    ) -> RegisterOutcome | None:
        """The store answered a held Register: its outcome, as ``register`` makes it (the
        cache's replaced registration, else the store's: another node registered the endpoint);
        None when it was not stored: the cache forgets it (a cache may miss, never hold what
        the store lacks; what it replaced is still stored and read through on a miss)."""
        reg_id = registration.registration_id
        if not ok:
            if self._by_id.get(reg_id) is registration:
                self._forget(reg_id)
            return None
        replaced = cached if cached is not None or stored is None else stored
        if replaced is not None and replaced is stored and stored.registration_id in self._by_id:
            self._forget(stored.registration_id)  # a copy the cache read meanwhile
        events: list[Event] = []
        if replaced is not None:
            events.append(Replaced(old=replaced, new=registration))
        events.append(Registered(registration=registration, replaced=replaced))
        return RegisterOutcome(registration, replaced, tuple(events))

    def update(
        self,
        registration_id: str,
        request: UpdateRequest,
        *,
        now: float,
        address: Address | None = None,
        identity: IdentityBinding | None = None,
        previous: Registration | None = None,
    ) -> UpdateOutcome:
        """Apply an Update: 4.04 for an unknown id, 4.03 when the peer's security identity is
        not the one that registered (the id alone must not let another device take over), 4.00
        for a binding that the client's LwM2M version does not have. ``previous``: what
        ``get(registration_id)`` gave the caller just before (not looked up again)."""
        if previous is None:
            previous = self.require(registration_id)
        registration = self.updated(previous, request, now=now, address=address, identity=identity)
        return UpdateOutcome(registration, previous, (Updated(registration, previous),))

    def updated(
        self,
        previous: Registration,
        request: UpdateRequest,
        *,
        now: float,
        address: Address | None = None,
        identity: IdentityBinding | None = None,
    ) -> Registration:
        """``update`` of the registration ``previous`` (what the book holds for its id), giving
        only the registration after it: ``ServerCore.keep_alive`` publishes no ``Updated``
        event object (its caller announces the Update itself), so it asks for none. Checks,
        writes the store and indexes exactly as ``update`` (which is this and the outcome)."""
        if request is BARE_UPDATE and address is not None:  # the keep-alive: nothing to read
            return self.touched(previous, now, address, identity)
        registration_id = previous.registration_id
        if previous.identity is not identity:  # the same object (None over NoSec): equal
            _check_identity(previous, identity)
        registration = previous.updated(request, now=now, address=address)
        if self.store is not None:
            # a bare Update (no parameters, no payload) changes nothing ``_only_touched`` reads
            if request is BARE_UPDATE or _only_touched(request, previous, registration):
                # ``updated`` keeps the very address object when it did not change
                moved = (
                    registration.address is not previous.address
                    or registration.lifetime != previous.lifetime
                )
                written = self.store.touch_registration(registration, moved=moved)
            else:
                written = self.store.update_registration(registration)
            if not written:  # deregistered, expired or replaced by another process
                self._forget(registration_id)
                raise not_found(registration_id)
        # indexed touching only what moved (once ``_replace``, written out: every Update).
        # An Update is the most frequent message and almost always a keep-alive that changes
        # nothing but ``last_update`` (the address and identity are the same objects): the
        # address and identity indexes are rewritten only when those changed, and the expiry
        # heap keeps the registration's entry when the deadline only moved later: when that
        # entry comes first, ``_drop_stale_head`` sees the later deadline and files it again
        # (about one heap operation per registration per lifetime instead of a push, and a
        # stale entry to pop, per Update; ``next_deadline`` and ``expire`` stay exact). A
        # shorter deadline (a smaller ``lt``) gets a new entry at once.
        # ``Registration.updated``/``touched`` keep the very address (when equal) and identity
        if registration.address is not previous.address or (
            registration.identity is not previous.identity
        ):
            self._unindex(previous)
            _add(self._by_address, registration.address, registration_id)
            if registration.identity is not None:
                _add(self._by_identity, registration.identity, registration_id)
        self._by_id[registration_id] = registration
        # ``deadline`` of both written out (the grace cancels out)
        if registration.last_update + registration.lifetime < (
            previous.last_update + previous.lifetime
        ):
            self._file(registration_id, self.deadline(registration))
        return registration

    def touched(
        self,
        previous: Registration,
        now: float,
        address: Address,
        identity: IdentityBinding | None = None,
    ) -> Registration:
        """``updated(previous, BARE_UPDATE, now=now, address=address, identity=identity)``: the
        keep-alive (``ServerCore.keep_alive``, nearly every Update), by position. The same
        checks, store write and indexes as ``updated``, with what a bare Update cannot change
        left out: ``Registration.touched`` keeps the lifetime and the identity object (so only
        a moved address re-indexes and is written as moved), and there is no request to
        read."""
        registration_id = previous.registration_id
        if previous.identity is not identity:  # the same object (None over NoSec): equal
            _check_identity(previous, identity)
        registration = previous.touched(now, address)
        moved = registration.address is not previous.address  # kept when it did not move
        if self.store is not None and not self.store.touch_registration(
            registration, moved=moved
        ):  # deregistered, expired or replaced by another process
            self._forget(registration_id)
            raise not_found(registration_id)
        if moved:  # the identity is the very object: only the address index changes
            self._unindex(previous)
            _add(self._by_address, registration.address, registration_id)
            if registration.identity is not None:
                _add(self._by_identity, registration.identity, registration_id)
        self._by_id[registration_id] = registration
        # a deadline moved earlier (a clock that went back) is filed again, as in ``updated``
        if now < previous.last_update:
            self._file(registration_id, self.deadline(registration))
        return registration

    def deregister(
        self, registration_id: str, *, now: float, identity: IdentityBinding | None = None
    ) -> DeregisterOutcome:
        del now  # kept for symmetry and future auditing; removal itself is timeless
        registration = self.require(registration_id)
        _check_identity(registration, identity)
        if self.store is not None and self.store.remove_registration(registration_id) is None:
            self._forget(registration_id)  # another process removed it first
            raise not_found(registration_id)
        self._forget(registration_id)
        return DeregisterOutcome(registration, (Deregistered(registration),))

    def restore(self, registrations: Iterable[Registration]) -> None:
        """Load registrations from a store at start-up, without events. Ones that expired while
        the server was down come out of the next ``expire(now)``. Of two of one endpoint the
        later ``last_update`` stays (the later one given on a tie).

        An empty book (start-up) is filled in bulk (``_bulk_restore``); otherwise one at a
        time."""
        if not self._by_id:
            self._bulk_restore(registrations)
            return
        for registration in registrations:
            old_id = self._by_endpoint.get(registration.endpoint)
            old = None if old_id is None else self._by_id.get(old_id)
            if old is not None:
                if old.last_update > registration.last_update:
                    continue
                self._forget(old.registration_id)
            self._put(registration)

    def _bulk_restore(self, registrations: Iterable[Registration]) -> None:
        """``restore`` into an empty book: the id and endpoint maps first, then the address and
        identity indexes, one ``heapify`` and (``_restored``) whatever a subclass keeps.

        Why: a start-up restores every stored registration (issue 10: 100k of them, serving in
        ≤ 3 s), and indexing them one ``_put`` at a time (a heap push, a version, a sorted
        insert each) was ~40 % of the load after the rows were read."""
        by_id, by_endpoint = self._by_id, self._by_endpoint
        for registration in registrations:
            reg_id, endpoint = registration.registration_id, registration.endpoint
            old_id = by_endpoint.get(endpoint)
            if old_id is not None:
                if by_id[old_id].last_update > registration.last_update:
                    continue
                del by_id[old_id]
            previous = by_id.get(reg_id)
            if previous is not None and by_endpoint.get(previous.endpoint) == reg_id:
                del by_endpoint[previous.endpoint]  # the same id again, for another endpoint
            by_id[reg_id] = registration
            by_endpoint[endpoint] = reg_id
        by_address, by_identity, versions = self._by_address, self._by_identity, self._versions
        heap = self._heap
        counter = self._counter
        grace = self.grace_period
        for reg_id, registration in by_id.items():
            _add(by_address, registration.address, reg_id)
            if registration.identity is not None:
                _add(by_identity, registration.identity, reg_id)
            counter += 1
            versions[reg_id] = counter
            heap.append((registration.expires_at + grace, reg_id, counter))
        self._counter = counter
        heapq.heapify(heap)
        self._restored()

    def _restored(self) -> None:
        """After ``_bulk_restore``: a subclass rebuilds what it keeps beside the indexes."""

    def _cache(self, registration: Registration | None) -> Registration | None:
        """Index a registration read from the store (a miss); a cached one of the same endpoint
        under another id is stale (replaced elsewhere) and is dropped."""
        if registration is None:
            return None
        reg_id = registration.registration_id
        cached = self._by_id.get(reg_id)
        if cached is not None:
            return cached
        other = self._by_endpoint.get(registration.endpoint)
        if other is not None and other != reg_id:
            self._forget(other)
        self._put(registration)
        return registration

    # -- lifetimes -----------------------------------------------------------------------------
    def next_deadline(self) -> float | None:
        """When the next registration expires (arm one timer for it), or None with none left."""
        self._drop_stale_head()
        return self._heap[0][0] if self._heap else None

    def expire(self, now: float) -> list[Registration]:
        """Remove and return every registration whose deadline is ``<= now``, oldest first."""
        expired: list[Registration] = []
        retry: list[Registration] = []
        refreshed: list[Registration] = []
        while True:
            self._drop_stale_head()
            if not self._heap or self._heap[0][0] > now:
                break
            _, reg_id, _ = heapq.heappop(self._heap)
            registration = self._by_id[reg_id]
            if self.store is None:
                expired.append(registration)
                self._forget(reg_id)
                continue
            try:
                removed, fresh = self._expire_stored(registration)
            except StoreError as exc:
                log.error("registration %s not expired, retrying: %s", registration.endpoint, exc)
                retry.append(registration)
                continue
            if removed:
                expired.append(registration)
            elif fresh is not None:
                refreshed.append(fresh)
        for fresh in refreshed:  # after the loop: the heap cannot hand the same one back
            self._put(fresh)
        for registration in retry:  # not before this call returns: no busy loop on a bad disk
            self._file(registration.registration_id, now + EXPIRY_RETRY)
        return expired

    def sweep(self, now: float, limit: int = 1000) -> list[Registration]:
        """Expire what the *store* says is due, cached here or not (a registration another
        process made and nobody's cache holds any more, e.g. after that process died).
        Conditional removal: of several processes sweeping, one reports each."""
        if self.store is None:
            return []
        expired = []
        for stored in self.store.expiring_before(now - self.grace_period, limit):
            reg_id = stored.registration_id
            removed = self.store.remove_registration(reg_id, expires_at=stored.expires_at)
            if reg_id in self._by_id:
                self._forget(reg_id)
            if removed is not None:
                expired.append(removed)
        return expired

    def _expire_stored(self, registration: Registration) -> tuple[bool, Registration | None]:
        """Remove an expired registration from the store if nobody refreshed it: (True, None)
        when this call removed it; else (False, what the store holds now: the record another
        process refreshed, for the cache to take, or None when it removed it and reports it)."""
        assert self.store is not None
        reg_id = registration.registration_id
        removed = self.store.remove_registration(reg_id, expires_at=registration.expires_at)
        if removed is not None:
            self._forget(reg_id)
            return True, None
        fresh = self.store.get_registration(reg_id)
        self._forget(reg_id)
        return False, fresh

    # -- internals -----------------------------------------------------------------------------
    def _fresh_id(self) -> str:
        for _ in range(100):
            reg_id = self._new_id()
            if reg_id not in self._by_id:
                return reg_id
        raise RuntimeError("registration id factory keeps returning ids in use")

    def _file(self, registration_id: str, deadline: float) -> None:
        """File ``registration_id`` in the expiry heap at ``deadline``, as its only current
        entry (a new version: the older entries become stale); compacts a heap grown past
        twice the registrations. ``_put`` has it written out (every Register)."""
        self._counter += 1
        self._versions[registration_id] = self._counter
        heapq.heappush(self._heap, (deadline, registration_id, self._counter))
        if len(self._heap) > 2 * len(self._by_id) + 1024:
            self._compact()

    def _put(self, registration: Registration) -> None:
        reg_id = registration.registration_id
        old = self._by_id.get(reg_id)
        if old is not None:
            self._unindex(old)
        _add(self._by_address, registration.address, reg_id)
        if registration.identity is not None:
            _add(self._by_identity, registration.identity, reg_id)
        self._counter += 1
        self._versions[reg_id] = self._counter
        self._by_id[reg_id] = registration
        self._by_endpoint[registration.endpoint] = reg_id
        # ``deadline(registration)`` written out (every Register and restored registration)
        deadline = registration.last_update + registration.lifetime + self.grace_period
        heapq.heappush(self._heap, (deadline, reg_id, self._counter))
        if len(self._heap) > 2 * len(self._by_id) + 1024:
            self._compact()

    def _forget(self, registration_id: str) -> None:
        registration = self._by_id.pop(registration_id)
        self._versions.pop(registration_id, None)
        if self._by_endpoint.get(registration.endpoint) == registration_id:
            del self._by_endpoint[registration.endpoint]
        self._unindex(registration)

    def _unindex(self, registration: Registration) -> None:
        """Drop ``registration`` from the address and identity indexes."""
        reg_id = registration.registration_id
        _discard(self._by_address, registration.address, reg_id)
        if registration.identity is not None:
            _discard(self._by_identity, registration.identity, reg_id)

    def _drop_stale_head(self) -> None:
        """Make the heap's first entry exact: entries of ended or re-filed registrations are
        dropped, and one an Update moved later (``updated``) is filed again at its deadline."""
        heap = self._heap
        while heap:
            filed, reg_id, version = heap[0]
            if self._versions.get(reg_id) != version:
                heapq.heappop(heap)
                continue
            deadline = self.deadline(self._by_id[reg_id])
            if deadline <= filed:
                return
            heapq.heapreplace(heap, (deadline, reg_id, version))

    def _compact(self) -> None:
        """Rebuild the heap from live entries only, so Updates cannot grow it without bound."""
        self._heap = [
            (self.deadline(reg), reg_id, self._versions[reg_id])
            for reg_id, reg in self._by_id.items()
        ]
        heapq.heapify(self._heap)


_Ids = str | dict[str, None]
"""The registration ids of one address or identity: the id itself when it is the only one
(every device from an address of its own: a one-entry dict was ~100 bytes per registration),
else an ordered set (a dict, least recently written first)."""


def _each(ids: _Ids | None) -> Iterable[str]:
    if ids is None:
        return ()
    return (ids,) if isinstance(ids, str) else ids


def _add(index: dict[_K, _Ids], key: _K, reg_id: str) -> None:
    # one lookup (one ``Address.__hash__``, a Python method) for the usual new key
    ids = index.setdefault(key, reg_id)
    if ids is reg_id:
        return
    if isinstance(ids, str):
        if ids != reg_id:
            index[key] = {ids: None, reg_id: None}
    else:
        ids[reg_id] = None


def _discard(index: dict[_K, _Ids], key: _K, reg_id: str) -> None:
    ids = index.get(key)
    if ids is None:
        return
    if isinstance(ids, str):
        if ids == reg_id:
            del index[key]
        return
    ids.pop(reg_id, None)
    if len(ids) == 1:
        index[key] = next(iter(ids))
    elif not ids:
        del index[key]


def _only_touched(request: UpdateRequest, previous: Registration, updated: Registration) -> bool:
    """Did the Update change nothing but last_update, lifetime and address (the periodic
    keep-alive of almost every Update)? Then the store is only touched, not rewritten."""
    if request.object_links is not None and updated.object_links != previous.object_links:
        return False
    if request.additional_attributes and (
        updated.additional_attributes != previous.additional_attributes
    ):
        return False
    return (
        updated.binding == previous.binding
        and updated.sms_number == previous.sms_number
        and updated.queue_mode == previous.queue_mode
    )


def _check_identity(registration: Registration, identity: IdentityBinding | None) -> None:
    if registration.identity != identity:
        raise Lwm2mError(
            f"registration {registration.registration_id!r} belongs to another peer identity",
            code=ResponseCode.FORBIDDEN,
        )
