"""The server's store interfaces: small Protocols, one per kind of record.

The store is the **single source of truth** for registrations and observations: ``ServerCore``
writes through these Protocols itself and keeps its in-memory indexes only as a cache that a
miss reads through to (a registration made by another server process sharing the store is
found by an Update here) and that can always be rebuilt from the store. Each Protocol is
deliberately small (Leshan's store interfaces are the model) so that a second engine (Redis,
several server processes on one store: issue 12) is a small, checkable piece of work; the
contract every engine must meet is ``tests/unit/store/test_contract.py``, run over each engine.

Every write is durable when the call returns, or, under the sqlite engine's group commit,
before any reply of the same loop iteration leaves: the CoAP adapter answers a device only
after the store has what the answer acknowledges. Every method may raise
``keystore.store.StoreError`` (CoAP 5.00), which names the database and says what failed.

Times are Unix seconds (floats). A registration's expiry is ``Registration.expires_at``
(``last_update + lifetime``, without the server's grace period); engines keep it indexed for
``expiring_before`` and compare it exactly (the same float the core computed) in the
conditional ``remove_registration(..., expires_at=...)`` that makes expiry happen once when
several servers share the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from keystore.resolver import IdentityBinding
from lwm2m_runtime.address import Address
from lwm2m_server.core.observations import Observation
from lwm2m_server.core.registration import Registration
from lwm2m_server.core.telemetry import TelemetryPoint


class RegistrationStore(Protocol):
    def put_registration(self, registration: Registration) -> Registration | None:
        """Insert or replace by id (a Register). One registration per endpoint: a stored
        registration of the same endpoint under another id is removed (with its observations)
        and returned."""
        ...

    def update_registration(self, registration: Registration) -> bool:
        """Replace the stored record of ``registration.registration_id`` (an Update that changed
        more than its lifetime/address); False, writing nothing, when that id is no longer
        stored (deregistered, expired or replaced by another server meanwhile)."""
        ...

    def touch_registration(self, registration: Registration, *, moved: bool = True) -> bool:
        """The cheap Update: store only ``last_update``, ``lifetime`` and ``address`` of
        ``registration`` (and the expiry they make), not the whole record; the caller
        guarantees nothing else changed. False, writing nothing, when the id is not stored.
        ``moved=False``: the caller knows lifetime and address are the stored ones (a
        keep-alive), so only the times need writing (sqlite then leaves the address index
        alone)."""
        ...

    def remove_registration(
        self, registration_id: str, *, expires_at: float | None = None
    ) -> Registration | None:
        """Remove a registration and its observations; return it (None if unknown). With
        ``expires_at``, remove it only if its stored expiry is still exactly that (an expiry:
        None when another server refreshed or removed it meanwhile), so that of several
        servers expiring the same registration exactly one gets it back."""
        ...

    def get_registration(self, registration_id: str) -> Registration | None: ...

    def registration_by_endpoint(self, endpoint: str) -> Registration | None: ...

    def registrations_by_address(self, address: Address) -> list[Registration]:
        """Every registration whose requests come from ``address`` (a NoSec Send's sender;
        several endpoints may share one address behind a NAT), oldest ``last_update`` first."""
        ...

    def registrations_by_identity(self, identity: IdentityBinding) -> list[Registration]:
        """Every registration bound to this DTLS identity (a secured Send's sender), oldest
        ``last_update`` first."""
        ...

    def expiring_before(self, t: float, limit: int) -> list[Registration]:
        """Up to ``limit`` registrations whose ``expires_at`` is before ``t``, earliest first
        (the periodic sweep that expires registrations no server's cache holds)."""
        ...

    def registrations(self) -> list[Registration]:
        """Every stored registration (start-up, rebuilding the cache)."""
        ...


class ObservationStore(Protocol):
    def put_observation(self, observation: Observation) -> None:
        """Insert or replace by token."""
        ...

    def remove_observation(self, token: bytes) -> Observation | None: ...

    def observation_by_token(self, token: bytes) -> Observation | None: ...

    def observations_by_endpoint(self, endpoint: str) -> list[Observation]:
        """The observations of ``endpoint``'s registration, by token."""
        ...

    def observations(self) -> list[Observation]:
        """Every stored observation (start-up, rebuilding the cache)."""
        ...


class CoreStore(RegistrationStore, ObservationStore, Protocol):
    """What ``ServerCore`` writes through and reads through: one engine holds both, because a
    registration's removal takes its observations with it atomically."""


class TelemetryStore(Protocol):
    def append_points(self, points: Iterable[TelemetryPoint]) -> int:
        """Append a batch atomically (all or nothing); return how many were written. The
        latest value per (endpoint, path) is kept current unless a point is older than it."""
        ...

    def latest(self, endpoint: str) -> dict[str, TelemetryPoint]:
        """The newest point of each path of ``endpoint``, by path."""
        ...

    def history(
        self,
        endpoint: str,
        key: str,
        *,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 1000,
    ) -> list[TelemetryPoint]:
        """Points of one series (``key`` matches the telemetry key or the path) with
        ``since_ms <= ts_ms < until_ms``, newest first, at most ``limit``."""
        ...
