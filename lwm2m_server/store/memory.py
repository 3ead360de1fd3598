"""``MemoryStore``: the registration and observation Protocols in plain dicts.

The reference engine: what ``ServerCore`` uses when it is given no store (unit tests, the
benchmarks of the core alone), and the simplest reading of the contract
(``tests/unit/store/test_contract.py`` runs the same tests over it, sqlite and, later, Redis).
Nothing is durable; two cores given the same ``MemoryStore`` object share it the way two
server processes share a sqlite file or a Redis. Lookups by address, identity and expiry scan
every registration: fine for a reference and for tests, not for 100k clients.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from keystore.resolver import IdentityBinding
from keystore.store.errors import StoreError
from lwm2m_runtime.address import Address
from lwm2m_server.core.observations import Observation
from lwm2m_server.core.registration import Registration


class MemoryStore:
    """Implements ``RegistrationStore`` and ``ObservationStore`` (``CoreStore``)."""

    def __init__(self) -> None:
        self._registrations: dict[str, Registration] = {}
        self._by_endpoint: dict[str, str] = {}
        self._observations: dict[bytes, Observation] = {}

    # -- registrations -----------------------------------------------------------------------
    def put_registration(self, registration: Registration) -> Registration | None:
        if not isinstance(registration, Registration):
            raise StoreError(f"expected a Registration, got {type(registration).__name__}")
        reg_id = registration.registration_id
        replaced = None
        other = self._by_endpoint.get(registration.endpoint)
        if other is not None and other != reg_id:
            replaced = self._delete(other)
        old = self._registrations.get(reg_id)
        if old is not None and old.endpoint != registration.endpoint:
            self._by_endpoint.pop(old.endpoint, None)
        self._registrations[reg_id] = registration
        self._by_endpoint[registration.endpoint] = reg_id
        return replaced

    def update_registration(self, registration: Registration) -> bool:
        old = self._registrations.get(registration.registration_id)
        if old is None:
            return False
        if old.endpoint != registration.endpoint:
            raise StoreError("an update cannot change a registration's endpoint")
        self._registrations[registration.registration_id] = registration
        return True

    def touch_registration(self, registration: Registration, *, moved: bool = True) -> bool:
        del moved  # one evolve either way
        old = self._registrations.get(registration.registration_id)
        if old is None:
            return False
        self._registrations[old.registration_id] = attrs.evolve(
            old,
            last_update=registration.last_update,
            lifetime=registration.lifetime,
            address=registration.address,
        )
        return True

    def remove_registration(
        self, registration_id: str, *, expires_at: float | None = None
    ) -> Registration | None:
        old = self._registrations.get(registration_id)
        if old is None or (expires_at is not None and old.expires_at != expires_at):
            return None
        return self._delete(registration_id)

    def get_registration(self, registration_id: str) -> Registration | None:
        return self._registrations.get(registration_id)

    def registration_by_endpoint(self, endpoint: str) -> Registration | None:
        reg_id = self._by_endpoint.get(endpoint)
        return None if reg_id is None else self._registrations.get(reg_id)

    def registrations_by_address(self, address: Address) -> list[Registration]:
        return _oldest_first(r for r in self._registrations.values() if r.address == address)

    def registrations_by_identity(self, identity: IdentityBinding) -> list[Registration]:
        return _oldest_first(r for r in self._registrations.values() if r.identity == identity)

    def expiring_before(self, t: float, limit: int) -> list[Registration]:
        due = [r for r in self._registrations.values() if r.expires_at < t]
        due.sort(key=lambda r: (r.expires_at, r.registration_id))
        return due[:limit]

    def registrations(self) -> list[Registration]:
        return _oldest_first(self._registrations.values())

    def _delete(self, registration_id: str) -> Registration:
        registration = self._registrations.pop(registration_id)
        if self._by_endpoint.get(registration.endpoint) == registration_id:
            del self._by_endpoint[registration.endpoint]
        for token in [
            t for t, o in self._observations.items() if o.registration_id == registration_id
        ]:
            del self._observations[token]
        return registration

    # -- observations ------------------------------------------------------------------------
    def put_observation(self, observation: Observation) -> None:
        if not isinstance(observation, Observation):
            raise StoreError(f"expected an Observation, got {type(observation).__name__}")
        self._observations[observation.token] = observation

    def remove_observation(self, token: bytes) -> Observation | None:
        return self._observations.pop(token, None)

    def observation_by_token(self, token: bytes) -> Observation | None:
        return self._observations.get(token)

    def observations_by_endpoint(self, endpoint: str) -> list[Observation]:
        found = [o for o in self._observations.values() if o.endpoint == endpoint]
        return sorted(found, key=lambda o: o.token)

    def observations(self) -> list[Observation]:
        return sorted(self._observations.values(), key=lambda o: o.token)


def _oldest_first(registrations: Iterable[Registration]) -> list[Registration]:
    regs = list(registrations)
    regs.sort(key=lambda r: (r.last_update, r.registration_id))
    return regs
