"""The server's store interfaces: small Protocols, one per kind of record.

Each is deliberately 3 to 6 methods (Leshan's store interfaces are the model) so that a second
engine (Redis, for several server instances) is a small, checkable piece of work. Every write
is durable when the call returns: the CoAP adapter answers a device only after the store has
what the answer acknowledges. Every method may raise ``keystore.store.StoreError`` (CoAP 5.00),
which names the database and says what failed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from lwm2m_server.core.observations import Observation
from lwm2m_server.core.registration import Registration
from lwm2m_server.core.telemetry import TelemetryPoint


class RegistrationStore(Protocol):
    def put_registration(self, registration: Registration) -> Registration | None:
        """Insert or replace by id. One registration per endpoint: a stored registration of the
        same endpoint under another id is removed (with its observations) and returned."""
        ...

    def remove_registration(self, registration_id: str) -> Registration | None:
        """Remove a registration and its observations; return it (None if unknown)."""
        ...

    def get_registration(self, registration_id: str) -> Registration | None: ...

    def registration_by_endpoint(self, endpoint: str) -> Registration | None: ...

    def registrations(self) -> list[Registration]:
        """Every stored registration (start-up restore, the API's client list)."""
        ...


class ObservationStore(Protocol):
    def put_observation(self, observation: Observation) -> None:
        """Insert or replace by token."""
        ...

    def remove_observation(self, token: bytes) -> Observation | None: ...

    def observation_by_token(self, token: bytes) -> Observation | None: ...

    def observations_by_endpoint(self, endpoint: str) -> list[Observation]: ...

    def observations(self) -> list[Observation]:
        """Every stored observation (start-up restore)."""
        ...


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
