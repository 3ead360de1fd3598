"""The resolver's device-record lookups, cached while the keystore provably did not change.

Why: the resolver answers "may this peer be this endpoint?" on every Register, Update,
De-register and Send (a NoSec Update must be refused at once when its endpoint gets DTLS
credentials or is deactivated). Over sqlite that was one SELECT and one record decoded per
Update, ~10 % of an Update's CPU, for an answer that almost never changes.

Correctness rests on knowing cheaply that nothing changed, from two counters the store offers
(:class:`VersionedCredentials`):

* ``local_writes()``: credential writes through this process's connection (the HTTP API, the
  Leshan dialect's security routes): a plain counter, checked on **every** lookup, so a write
  made in this process is seen by the very next lookup;
* ``data_version()``: changes when **another** connection committed — sqlite's ``PRAGMA
  data_version`` (another process on the file: ``lwm2m-keystore``, the bootstrap server), or on
  Redis the ``{P:cred}:version`` counter that the credential write script moves in the same
  atomic step as the write (any process on any host). The read costs about as much as the
  lookup it saves, so it is made at most once per event-loop iteration (at the iteration's
  first lookup; without a running loop, on every lookup). A commit by another process is
  therefore seen by every request the server reads after it — a request handled in the same
  loop iteration as that commit is ordered before it, exactly as if it had arrived a moment
  earlier. On Redis this replaces one HGET per Update by one GET per iteration, and on the
  server that GET rides the previous iteration's group commit (below); a revoked device is
  refused by every node after its next commit. (Pub/sub invalidation was the other
  candidate: it is at-most-once, so it would need a TTL as a fallback, and a lost message would
  leave a revoked key usable until that TTL; the counter is never late.)

**Versions read by the group commit** (Redis, one server node; docs/cluster.md, "Credential
cache"). On the server the iterations that look credentials up are the ones that commit (an
Update's lookup, then its write), so the GET of the version at an iteration's first lookup was
one of the two round trips a busy iteration waited for. A store that offers it
(``FollowsCommits``: the Redis credential store) reads the version in every group commit's
pipeline, after the commit's writes, and hands it to the cache (``commit_version``). The first
lookup of an iteration trusts that version instead of reading one when it is **fresh**:

* read by a commit made in the same turn of the event loop — the CoAP driver's flush runs at
  the start of a turn, before the turn's datagrams are read, so that is the commit of the
  previous batch; the version expires at the start of the next turn (``loop.call_soon``), so
  a version a commit read is never used past the turn after it (an idle node, an iteration
  that wrote nothing: the lookup GETs as before);
* and sent at most ``FRESH_FOR`` (20 ms) before that first lookup (a stalled commit, a long
  callback between the commit and the lookups: the lookup GETs).

A commit that failed (Redis down, its pipeline refused) hands over no version and makes the
next lookup check again: it GETs, which fails, and nothing is trusted (read-through, the 5.03
of "Redis down"). Writes through this process still empty the cache at once (the local
counter above). What it changes: a request is checked against the version Redis had when the
previous batch's commit read it, not when this batch was read — earlier by the time from that
read to the first lookup (half a round trip and the loop's turn, at most ``FRESH_FOR``). So a
credential write committed by another process decides every request this process reads in a
turn after its first group commit sent after the write (once that commit returned), and in any
case every request of a turn whose first lookup comes ``FRESH_FOR`` or more after the write
(docs/cluster.md says why that is acceptable). The
commit reads the version only when a lookup was made since the last one it read (an iteration
of notifications alone adds no GET).

Either counter moving empties the whole cache (changes are rare; no per-record bookkeeping to get
wrong). Stores without the counters are not cached: every lookup reads through.
Only records (and "no record") are cached, never decisions: validity periods
and refusals are still computed by the resolver from the clock on every request.

**Endpoints without a record** (the NoSec Register of a device not seen since the cache was
last emptied: every first Register, every Register after a restart) would each cost a read that
finds nothing (~5 µs on sqlite, a round trip on Redis), and in an open-registration NoSec fleet
that is nearly every device. So the cache also keeps the *list of the endpoints that have a
record* (``device_endpoints``), read from the store after the same checks and thrown away with
the records when either counter moves: an endpoint not in it has no record, answered without a
read. It is exact for the same reason the records are: it is read within the same window of
"provably unchanged", and any write, here or elsewhere, empties it before the next decision.
A keystore with many records makes the list costly to read, so it is read only once it pays
for itself: when the endpoint-record reads made since the cache was emptied, times
``ROWS_PER_READ``, reach the list's expected size. The list then never costs more than about
the reads it replaces: an empty or small keystore is listed at the first such read, a large
one whose devices mostly have records late or never. ``device_endpoints`` is optional
(``ListsEndpoints``); a store without it gets the per-endpoint reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol, TypeVar, runtime_checkable

from .credentials import DeviceCredentials, TrustedCa

K = TypeVar("K")
_ABSENT = object()

MAX_ENTRIES = 200_000
"""Records (or "no record") kept; past it the cache starts again empty (a bound on memory for
fleets larger than this, at the price of one store read per device after the reset)."""

ROWS_PER_READ = 8
"""Endpoints a listing reads for the price of one endpoint-record read (sqlite, measured: ~0.5
µs per listed endpoint against ~4.5 µs for a lookup that finds nothing; on Redis one round trip
either way, the listing's HLEN first): how the cache decides when listing the endpoints that
have a record pays for itself (module docstring)."""


class WriteCounter:
    """A count of credential writes made through one connection (``local_writes``), as an
    object the cache can hold: a store that hands it out (``CountsLocalWrites``) spares every
    lookup the ``local_writes()`` call (the NoSec check of every Update reads it)."""

    __slots__ = ("writes",)

    def __init__(self) -> None:
        self.writes = 0


@runtime_checkable
class CountsLocalWrites(Protocol):
    """A ``VersionedCredentials`` store whose ``local_writes()`` is ``local_write_counter().writes``
    at every moment (the same object for the store's life)."""

    def local_write_counter(self) -> WriteCounter: ...


@runtime_checkable
class VersionedCredentials(Protocol):
    """A credential store that says cheaply whether its records may have changed."""

    def local_writes(self) -> int:
        """Credential writes made through this process's connection so far."""
        ...

    def data_version(self) -> int:
        """Changes when another connection committed to the store (``PRAGMA data_version``, or
        the Redis credential version counter); negative when it cannot be read."""
        ...

    def get_device(self, endpoint: str) -> DeviceCredentials | None: ...

    def device_by_psk_identity(self, identity: bytes) -> DeviceCredentials | None: ...

    def device_by_rpk(self, spki: bytes) -> DeviceCredentials | None: ...

    def device_by_certificate(self, der: bytes) -> DeviceCredentials | None: ...

    def devices(self) -> list[DeviceCredentials]: ...

    def trusted_cas(self) -> list[TrustedCa]: ...


FRESH_FOR = 0.020
"""Seconds after its commit was sent that a version the commit read may still decide the
first lookup of an iteration (module docstring, "Versions read by the group commit"). Not less:
on the shared 2-core benchmark machine the time from a busy worker's commit to its next first
lookup (the commit's round trip, the batch's replies sent, preemption) had a median of 7 ms
and a 90th percentile of 13 ms, and 5 ms sent two thirds of the busy iterations back to a GET
of their own (docs/performance.md, "Session 9: one Redis wait per iteration"). It is of
the order of an iteration's own length, which is how stale a GET at its first lookup already
is for the iteration's last request."""


class CommitVersions(Protocol):
    """What a ``FollowsCommits`` store hands the versions its group commits read to."""

    def wants_commit_version(self) -> bool:
        """Whether the next commit should read the version (a lookup was made since)."""
        ...

    def commit_version(self, version: int | None, sent_at: float) -> None:
        """The version a commit read (None: the commit failed, nothing may be trusted), and
        the ``time.monotonic()`` at which that commit was sent."""
        ...


@runtime_checkable
class FollowsCommits(Protocol):
    """A store whose group commits can read the data version along (module docstring)."""

    def follow_commits(self, follower: CommitVersions) -> None: ...


@runtime_checkable
class ListsEndpoints(Protocol):
    """A store that can list the endpoints that have a device record (module docstring)."""

    def device_endpoints(self, limit: int) -> frozenset[str] | None:
        """Those endpoints, or None when there are more than ``limit``."""
        ...


class CachedCredentials:
    """A ``CredentialLookup`` over a :class:`VersionedCredentials` store (module docstring)."""

    def __init__(self, store: VersionedCredentials, *, max_entries: int = MAX_ENTRIES) -> None:
        self.store = store
        self.max_entries = max_entries
        self._by_endpoint: dict[str, DeviceCredentials | None] = {}
        self._by_psk: dict[bytes, DeviceCredentials | None] = {}
        self._by_rpk: dict[bytes, DeviceCredentials | None] = {}
        self._by_cert: dict[bytes, DeviceCredentials | None] = {}
        self._size = 0
        self._local = -1
        self._version: int | None = None
        self._checked = False  # data_version read in this loop iteration
        self._lister = store if isinstance(store, ListsEndpoints) else None
        self._counter = (
            store.local_write_counter() if isinstance(store, CountsLocalWrites) else None
        )
        """The store's write counter, read directly on the fast path of ``get_device``."""
        self._listed: frozenset[str] | None = None
        """The endpoints with a record, listed since the cache was last emptied (or None)."""
        self._unlisted_reads = 0
        """Endpoint-record reads since the cache was last emptied, while not listed."""
        self._listing_rows = 0
        """What a listing is expected to read: the records last listed, or twice the limit a
        listing last exceeded (kept across emptyings: a keystore's size changes slowly)."""
        self.hits = 0
        self.misses = 0
        self.resets = 0
        self.listings = 0
        """``device_endpoints`` reads (those that found more than their limit included)."""
        self.version_reads = 0
        """``data_version()`` reads (on Redis: round trips, at most one per loop iteration)."""
        self.versions_from_commits = 0
        """Iterations whose lookups trusted the version a group commit read (no round trip)."""
        self._offered: int | None = None
        """The version the last group commit read, while fresh (module docstring)."""
        self._offered_at = 0.0
        self._offered_in: asyncio.AbstractEventLoop | None = None
        self._offers = 0
        self._wanted = False
        """A lookup checked the version since the last commit read it."""
        if isinstance(store, FollowsCommits):
            store.follow_commits(self)

    # -- CredentialLookup --------------------------------------------------------------------
    def get_device(self, endpoint: str) -> DeviceCredentials | None:
        counter = self._counter
        # ``_validate`` does nothing when no local write was made since it last ran and the
        # version was already checked in this loop iteration: the NoSec check of nearly every
        # Update skips its call (and ``local_writes``'s) by reading the counter directly
        if counter is None or counter.writes != self._local or not self._checked:
            self._validate()
        cache = self._by_endpoint
        record = cache.get(endpoint, _ABSENT)  # not ``[]``: most endpoints are not kept (a list
        if record is not _ABSENT:  # says they have no record), and a KeyError costs ~1 µs
            self.hits += 1
            return record  # type: ignore[return-value]
        listed = self._listed
        if listed is None and self._lister is not None:
            listed = self._listing()
        if listed is not None and endpoint not in listed:
            self.hits += 1  # no record, known without a read (and not kept: the list says it)
            return None
        return self._read(cache, endpoint, self.store.get_device)

    def device_by_psk_identity(self, identity: bytes) -> DeviceCredentials | None:
        return self._lookup(self._by_psk, bytes(identity), self.store.device_by_psk_identity)

    def device_by_rpk(self, spki: bytes) -> DeviceCredentials | None:
        return self._lookup(self._by_rpk, bytes(spki), self.store.device_by_rpk)

    def device_by_certificate(self, der: bytes) -> DeviceCredentials | None:
        return self._lookup(self._by_cert, bytes(der), self.store.device_by_certificate)

    def devices(self) -> list[DeviceCredentials]:
        return self.store.devices()  # a full listing (trust-store snapshots): rare, read through

    def trusted_cas(self) -> list[TrustedCa]:
        return self.store.trusted_cas()

    # -- internals ---------------------------------------------------------------------------
    def _lookup(
        self,
        cache: dict[K, DeviceCredentials | None],
        key: K,
        read: Callable[[K], DeviceCredentials | None],
    ) -> DeviceCredentials | None:
        self._validate()
        try:
            record = cache[key]
        except KeyError:
            pass
        else:
            self.hits += 1
            return record
        return self._read(cache, key, read)

    def _read(
        self,
        cache: dict[K, DeviceCredentials | None],
        key: K,
        read: Callable[[K], DeviceCredentials | None],
    ) -> DeviceCredentials | None:
        self.misses += 1
        record = read(key)  # a StoreError propagates, nothing is cached
        if self._size >= self.max_entries:
            self._clear_records()
        cache[key] = record
        self._size += 1
        return record

    def _listing(self) -> frozenset[str] | None:
        """The endpoints with a record, listed now if the endpoint-record reads made since the
        cache was emptied paid for it (module docstring); None while they have not."""
        assert self._lister is not None
        self._unlisted_reads += 1
        budget = self._unlisted_reads * ROWS_PER_READ
        if budget < self._listing_rows:
            return None
        self.listings += 1
        listed = self._lister.device_endpoints(budget)  # a StoreError propagates
        if listed is None:  # more than the budget: try again once twice as much was spent
            self._listing_rows = 2 * budget
            return None
        self._listing_rows = len(listed)
        self._listed = listed
        return listed

    def _validate(self) -> None:
        local = self.store.local_writes()
        if local != self._local:
            self._clear()
            self._local = local
        if self._checked:
            return
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None  # no loop: read the version on every lookup
        offered = self._offered
        if (
            offered is not None
            and loop is self._offered_in
            and time.monotonic() - self._offered_at <= FRESH_FOR
        ):
            version = offered  # read by this turn's commit: no round trip
            self.versions_from_commits += 1
        else:
            version = self.store.data_version()
            self.version_reads += 1
        if version != self._version or version < 0:  # < 0: unreadable, trust nothing
            self._clear()
            self._version = version
        if loop is None:
            return
        self._checked = True
        self._wanted = True
        loop.call_soon(self._new_iteration)

    def _new_iteration(self) -> None:
        self._checked = False

    # -- CommitVersions (the group commit's reads of the version) ----------------------------
    def wants_commit_version(self) -> bool:
        return self._wanted

    def commit_version(self, version: int | None, sent_at: float) -> None:
        """A group commit read ``version`` (None: it failed): the next lookup checks again,
        against it while it is fresh (module docstring), else with a read of its own."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._offered = None  # no loop (a commit at close): every lookup reads anyway
            return
        self._wanted = False
        self._checked = False
        if version is None or version < 0:
            self._offered = None  # a failed commit: nothing trusted until a read succeeds
            return
        self._offered, self._offered_at, self._offered_in = version, sent_at, loop
        self._offers += 1
        loop.call_soon(self._expire_offer, self._offers)

    def _expire_offer(self, offer: int) -> None:
        """The turn after the commit's: its version is no longer fresh."""
        if offer == self._offers:
            self._offered = None

    def _clear(self) -> None:
        """The keystore may have changed: forget the records and the list of endpoints."""
        self._clear_records()
        self._listed = None
        self._unlisted_reads = 0

    def _clear_records(self) -> None:
        if self._size:
            self.resets += 1
            self._by_endpoint.clear()
            self._by_psk.clear()
            self._by_rpk.clear()
            self._by_cert.clear()
            self._size = 0
