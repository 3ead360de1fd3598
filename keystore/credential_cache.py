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
  earlier. On Redis this replaces one HGET per Update by one GET per iteration; a revoked
  device is refused by the next iteration of every node. (Pub/sub invalidation was the other
  candidate: it is at-most-once, so it would need a TTL as a fallback, and a lost message would
  leave a revoked key usable until that TTL; the counter is never late.)

Either counter moving empties the whole cache (changes are rare; no per-record bookkeeping to get
wrong). Stores without the counters are not cached: every lookup reads through.
Only records (and "no record") are cached, never decisions: validity periods
and refusals are still computed by the resolver from the clock on every request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol, TypeVar, runtime_checkable

from .credentials import DeviceCredentials, TrustedCa

K = TypeVar("K")

MAX_ENTRIES = 200_000
"""Records (or "no record") kept; past it the cache starts again empty (a bound on memory for
fleets larger than this, at the price of one store read per device after the reset)."""


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
        self.hits = 0
        self.misses = 0
        self.resets = 0
        self.version_reads = 0
        """``data_version()`` reads (on Redis: round trips, one per busy loop iteration)."""

    # -- CredentialLookup --------------------------------------------------------------------
    def get_device(self, endpoint: str) -> DeviceCredentials | None:
        return self._lookup(self._by_endpoint, endpoint, self.store.get_device)

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
        self.misses += 1
        record = read(key)  # a StoreError propagates, nothing is cached
        if self._size >= self.max_entries:
            self._clear()
        cache[key] = record
        self._size += 1
        return record

    def _validate(self) -> None:
        local = self.store.local_writes()
        if local != self._local:
            self._clear()
            self._local = local
        if self._checked:
            return
        version = self.store.data_version()
        self.version_reads += 1
        if version != self._version or version < 0:  # < 0: unreadable, trust nothing
            self._clear()
            self._version = version
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: read the version on every lookup
        self._checked = True
        loop.call_soon(self._new_iteration)

    def _new_iteration(self) -> None:
        self._checked = False

    def _clear(self) -> None:
        if self._size:
            self.resets += 1
            self._by_endpoint.clear()
            self._by_psk.clear()
            self._by_rpk.clear()
            self._by_cert.clear()
            self._size = 0
