"""Observations the server holds with its clients, indexed for the three questions asked of them.

* a notification arrives: which observation does its token belong to? (``by_token``)
* the HTTP API asks to observe/cancel ``/3303/0/5700`` of ``ep``: is there one? (``get``)
* a registration ends (Deregister, expiry, or a new Register of the same endpoint, which per
  Core §6.4 cancels every observation of the old one): which to drop? (``remove_registration``)

Tokens are chosen by the CoAP layer (8 random bytes) and are unique per peer; the index keeps one
observation per token and one per (endpoint, target) so that observing a path again replaces the
old observation instead of stacking a second stream of notifications.

With a store (``store=``, what ``ServerCore`` passes) the index is a cache: a token or an
endpoint it does not know is looked up in the store and cached (a notification for an
observation another server process started on a shared store is recognised here). Writes go
to the store through ``ServerCore``, not through this index.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import attrs

from object_models.path import LwM2mPath

if TYPE_CHECKING:
    from lwm2m_server.store.base import ObservationStore


def _paths(value: Iterable[LwM2mPath]) -> tuple[LwM2mPath, ...]:
    return tuple(value)


@attrs.frozen
class Observation:
    """One Observe (single path) or Observe-Composite (several paths) relation.

    ``active`` is False once the server decided to cancel but before the client heard it (a
    passive cancel: the next notification is answered with RST); ``last_notification`` is the
    time of the latest notification, for the API and for spotting dead observations.
    """

    token: bytes
    endpoint: str
    registration_id: str
    paths: tuple[LwM2mPath, ...] = attrs.field(converter=_paths)
    content_format: int | None = None
    created_at: float = 0.0
    composite: bool = False
    active: bool = True
    last_notification: float | None = None

    def __attrs_post_init__(self) -> None:
        if not self.paths:
            raise ValueError("an observation needs at least one path")
        if not self.composite and len(self.paths) != 1:
            raise ValueError("a single-path observation has exactly one path")

    @property
    def path(self) -> LwM2mPath:
        """The observed path (the first one for a composite observation)."""
        return self.paths[0]

    @property
    def target(self) -> tuple[bool, tuple[LwM2mPath, ...]]:
        """What is observed, independent of the token: the (endpoint-local) identity."""
        return (self.composite, self.paths)


class ObservationIndex:
    """In-memory index of observations: token → observation and (endpoint, target) → token."""

    def __init__(self, store: ObservationStore | None = None) -> None:
        self.store = store
        self._by_token: dict[bytes, Observation] = {}
        self._by_target: dict[tuple[str, tuple[bool, tuple[LwM2mPath, ...]]], bytes] = {}
        self._by_registration: dict[str, set[bytes]] = {}
        # the profile engine asks for a device's observations at each of its Registers: a scan
        # of every observation was ~37 ms per Register with 200k of them (docs/performance.md)
        self._by_endpoint: dict[str, dict[bytes, None]] = {}

    def __len__(self) -> int:
        return len(self._by_token)

    def __iter__(self) -> Iterator[Observation]:
        return iter(list(self._by_token.values()))

    def add(self, observation: Observation) -> Observation | None:
        """Index ``observation``; return the one it replaces (same token, or same endpoint and
        target), which the caller should cancel on the wire and drop from the store."""
        replaced = self._by_token.get(observation.token)
        key = (observation.endpoint, observation.target)
        other_token = self._by_target.get(key)
        if other_token is not None and other_token != observation.token:
            replaced = self._by_token.get(other_token) if replaced is None else replaced
            self._drop(other_token)
        if observation.token in self._by_token:
            self._drop(observation.token)
        self._by_token[observation.token] = observation
        self._by_target[key] = observation.token
        self._by_registration.setdefault(observation.registration_id, set()).add(observation.token)
        self._by_endpoint.setdefault(observation.endpoint, {})[observation.token] = None
        return replaced

    def by_token(self, token: bytes) -> Observation | None:
        obs = self._by_token.get(token)
        if obs is None and self.store is not None:
            obs = self.store.observation_by_token(token)
            if obs is not None:
                self.add(obs)
        return obs

    def get(
        self, endpoint: str, path: LwM2mPath | Iterable[LwM2mPath], composite: bool = False
    ) -> Observation | None:
        paths = (path,) if isinstance(path, LwM2mPath) else tuple(path)
        key = (endpoint, (composite, paths))
        token = self._by_target.get(key)
        if token is None and self.store is not None:
            self._load_endpoint(endpoint)
            token = self._by_target.get(key)
        return None if token is None else self._by_token.get(token)

    def for_endpoint(self, endpoint: str) -> list[Observation]:
        found = self._of_endpoint(endpoint)
        if not found and self.store is not None:
            self._load_endpoint(endpoint)
            found = self._of_endpoint(endpoint)
        return found

    def refresh(self, endpoint: str) -> list[Observation]:
        """The endpoint's observations as the store has them, the cache brought in line: on a
        shared store (a cluster) another node starts and cancels observations of a device this
        node cached, so a listing or a cancel asks the store, not the cache. An observation
        this node caches but the store no longer has is dropped from the cache (cancelled
        elsewhere: its next notification here is refused); one cached as passively cancelled
        stays (its record went with the cancel, its next notification gets the RST). A cached
        observation that is still stored is kept as cached (it knows its last notification)."""
        if self.store is None:
            return self._of_endpoint(endpoint)
        stored = {o.token: o for o in self.store.observations_by_endpoint(endpoint)}
        for obs in self._of_endpoint(endpoint):
            if obs.token not in stored and obs.active:
                self._drop(obs.token)
        for token, obs in stored.items():
            if token not in self._by_token:
                self.add(obs)
        return [o for o in self._of_endpoint(endpoint) if o.token in stored or not o.active]

    def _of_endpoint(self, endpoint: str) -> list[Observation]:
        return [self._by_token[t] for t in self._by_endpoint.get(endpoint, ())]

    def _load_endpoint(self, endpoint: str) -> None:
        assert self.store is not None
        for obs in self.store.observations_by_endpoint(endpoint):
            if obs.token not in self._by_token:
                self.add(obs)

    def for_registration(self, registration_id: str) -> list[Observation]:
        tokens = self._by_registration.get(registration_id, ())
        return [self._by_token[t] for t in tokens]

    def cancel(self, token: bytes) -> Observation | None:
        """Forget the observation (an active cancel, or the client answered RST/an error)."""
        return self._drop(token)

    def deactivate(self, token: bytes) -> Observation | None:
        """Mark a passive cancel: keep the token known so the next notification gets RST."""
        obs = self.by_token(token)
        if obs is None:
            return None
        obs = attrs.evolve(obs, active=False)
        self._by_token[token] = obs
        return obs

    def on_notification(self, token: bytes, now: float) -> Observation | None:
        """The observation a notification with ``token`` belongs to, or ``None`` when it is
        unknown or cancelled (the CoAP layer then answers RST so the client stops)."""
        obs = self.by_token(token)
        if obs is None or not obs.active:
            return None
        return self.notified(obs, now)

    def notified(self, obs: Observation, now: float) -> Observation:
        """``obs`` (active, found by ``by_token``) with the time of its latest notification:
        ``on_notification`` for a caller that looked the observation up already."""
        token = obs.token
        obs = Observation(  # attrs.evolve, written out: it introspects the fields every call
            obs.token,
            obs.endpoint,
            obs.registration_id,
            obs.paths,
            obs.content_format,
            obs.created_at,
            obs.composite,
            obs.active,
            now,
        )
        self._by_token[token] = obs
        return obs

    def remove_registration(self, registration_id: str) -> list[Observation]:
        """Drop every observation of a registration that ended or was replaced."""
        tokens = self._by_registration.pop(registration_id, set())
        removed = []
        for token in tokens:
            obs = self._by_token.get(token)
            if obs is not None and obs.registration_id == registration_id:
                removed.append(obs)
                self._drop(token)
        removed.sort(key=lambda o: (o.created_at, o.token))
        return removed

    def _drop(self, token: bytes) -> Observation | None:
        obs = self._by_token.pop(token, None)
        if obs is None:
            return None
        key = (obs.endpoint, obs.target)
        if self._by_target.get(key) == token:
            del self._by_target[key]
        tokens = self._by_registration.get(obs.registration_id)
        if tokens is not None:
            tokens.discard(token)
            if not tokens:
                del self._by_registration[obs.registration_id]
        of_endpoint = self._by_endpoint.get(obs.endpoint)
        if of_endpoint is not None:
            of_endpoint.pop(token, None)
            if not of_endpoint:
                del self._by_endpoint[obs.endpoint]
        return obs
