"""What the server does with each message a device sends: the adapter flow of
docs/architecture-server.md for Register, Update, De-register, Send and notifications.

Every flow is: the core decides and writes the store (or raises ``Lwm2mError``: the site
replies with its code; ``StoreError``: 5.00, nothing changed), then the reply goes out (the
site builds it when the handler returns), and last the consequences: events published, queued
requests delivered, the timer re-armed. Those consequences belong to the service and reach it
through ``Effects``.

Notifications arrive as CoAP layer events, for live observations (``Notification`` of the
Observe's handle, Block2 already assembled by the layer) and for observations restored after a
restart or seen from a new address (``UnknownNotification``: the token is looked up in the
persisted observations) alike; both go through ``handle_notification``, which checks that the
notification comes from the observation's registration's peer and stores before it ACKs (the
ACK leaves at the end of the loop iteration, after this synchronous write).
"""

from __future__ import annotations

import collections
import enum
import functools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from keystore.coaps.sessions import Key
from keystore.log_limit import PerPeerLimit
from keystore.modes import SecurityMode
from keystore.resolver import IdentityBinding, Resolver
from keystore.resolver import PeerIdentity as Peer
from keystore.store.errors import StoreError
from lwm2m_runtime.address import Address
from lwm2m_runtime.coap import Message
from lwm2m_runtime.server import IncomingRequest
from lwm2m_server.store.base import TelemetryStore
from object_models import codecs
from object_models.errors import Lwm2mError, ResponseCode
from object_models.model import ModelProvider
from object_models.registry import ModelRegistry

from ..core.events import Event, NotificationReceived, SendReceived
from ..core.observations import Observation
from ..core.registration import Registration, parse_usual_register
from ..core.server import CoreResult, ServerCore
from ..core.telemetry import TelemetryPoint, points_from_nodes, points_from_timestamped
from ..events_bus import NOTIFICATION, SEND, Build, EventBus, LazyData
from ..json_nodes import telemetry_to_json

log = logging.getLogger(__name__)
_DEBUG = logging.DEBUG
_levels: dict[int, bool] = getattr(log, "_cache", {})
"""The logger's own memo of its ``isEnabledFor`` answers (CPython's ``Logger._cache``, emptied
in place whenever a level changes anywhere), read by ``_debug``: a False there is what
``isEnabledFor(DEBUG)`` would answer, for a dict lookup instead of a Python call (~600
instructions per Register and per keep-alive). An empty memo (or none on another
interpreter: this is then a dict of our own, always empty) makes ``_debug`` ask the logger."""


Mapper = Callable[[Registration, list[TelemetryPoint], str], list[TelemetryPoint]]
"""The service's ``TelemetryMapper``: decoded points in, the telemetry to store out."""


class Effects(Protocol):
    def apply(self, result: CoreResult) -> None:
        """Publish the result's events and deliver its ``to_send`` (after the reply)."""
        ...

    def kept_alive(self, registration: Registration, previous: Registration) -> None:
        """``apply`` of a keep-alive ``ServerCore.keep_alive`` made (``previous`` updated to
        ``registration``): what ``apply`` does for its one ``Updated`` event and nothing to
        send, without the event and the result."""
        ...


class Verdict(enum.Enum):
    """What becomes of a notification (the adapter answers accordingly)."""

    ACCEPT = "accept"  # stored (or an ending error noted): ACK a CON
    REJECT = "reject"  # no such observation, or cancelled: RST (CON or NON)
    REFUSE = "refuse"  # not from the observation's peer: RST a CON, drop a NON, keep no state
    IGNORE = "ignore"  # not stored (store failure): no answer, the device retransmits


_MODELS_CACHE_SIZE = 4096
"""Registrations whose models ``Uplink._models_of`` remembers at once."""


def models_for(registry: ModelRegistry, registration: Registration) -> ModelProvider:
    versions = {o: v for o, v in registration.supported_objects.items() if v}
    return registry.for_client(versions)


def decode_points(
    registration: Registration,
    models: ModelProvider,
    payload: bytes,
    content_format: int | None,
    *,
    now: float,
    observation: Observation | None = None,
) -> list[TelemetryPoint]:
    """Telemetry points of a notification (``observation`` given) or a Send. Raises
    ``CodecError`` (or ``Lwm2mError``) on a payload that cannot be decoded."""
    endpoint = registration.endpoint
    if content_format is None:
        if observation is None or observation.content_format is None:
            raise Lwm2mError("payload without Content-Format")
        content_format = observation.content_format
    if observation is None:
        data = codecs.decode_timestamped(payload, content_format, models)
        return points_from_timestamped(endpoint, data, now=now, models=models)
    path = None if observation.composite else observation.path
    if codecs.supports(content_format, "decode_timestamped"):
        data = codecs.decode_timestamped(payload, content_format, models, path)
        return points_from_timestamped(endpoint, data, now=now, models=models)
    if observation.composite:
        nodes = codecs.decode_nodes(payload, content_format, models, list(observation.paths))
        return points_from_nodes(endpoint, nodes, now=now, models=models)
    node = codecs.decode(payload, observation.path, content_format, models)
    return points_from_nodes(endpoint, {observation.path: node}, now=now, models=models)


class Uplink:
    """Implements ``coap.site.UplinkHandler`` and the notification hook."""

    def __init__(
        self,
        core: ServerCore,
        store: TelemetryStore,
        registry: ModelRegistry,
        bus: EventBus,
        effects: Effects,
        *,
        resolver: Resolver,
        clock: Callable[[], float] = time.time,
        mapper: Mapper | None = None,
        address_binding: str = "loose",
        payload_limits: Mapping[int, int] | None = None,
    ) -> None:
        self.mapper = mapper
        self.address_binding = address_binding
        """``nosec_address_binding``: ``strict`` refuses a NoSec registration's Update and
        De-register from another address:port (``_check_address``)."""
        self._strict = address_binding == "strict"
        self.address_refused = 0
        """Updates/De-registers refused by ``strict`` (for ``/api/health``)."""
        self.payload_limits = codecs.DEFAULT_LIMITS if payload_limits is None else payload_limits
        self.payloads_refused: collections.Counter[str] = collections.Counter()
        """Sends and notifications over ``payload_limits``, by kind (``send``, ``notification``)."""
        self._size_log = PerPeerLimit(60.0)  # payloads over the limit: one WARNING/host/minute
        self.core = core
        self._models_cache: dict[int, tuple[Registration, ModelProvider]] = {}
        self.resolver = resolver
        self.store = store
        self.registry = registry
        self.bus = bus
        self.effects = effects
        self.clock = clock
        self._foreign_log = PerPeerLimit(60.0)  # forged notifications: one WARNING/host/minute
        self._store_log = PerPeerLimit(60.0)  # notifications the store refused: one ERROR/host/min

    # -- registration interface ----------------------------------------------------------
    def handle_register(
        self,
        query: Sequence[str],
        payload: bytes,
        content_format: int | None,
        *,
        address: Address,
        transport: str,
        identity: Peer,
    ) -> Registration:
        # a Register of the usual shape is parsed first (it cannot be refused for its query
        # or payload, so the resolver's answer comes first either way) and authorized by
        # the endpoint it names, the same as ``_endpoint_of`` finds; any other is parsed by
        # the core after the resolver, which decides the refusal as before
        request = parse_usual_register(query, payload, content_format)  # ``.usual``
        if request is None:
            bound = self._authorize(identity, _endpoint_of(query))
            result = self.core.register(
                query,
                payload,
                content_format,
                now=self.clock(),
                address=address,
                transport=transport,
                identity=bound,
            )
        else:
            bound = self.resolver.resolve(identity, request.endpoint).binding  # ``_authorize``
            result = self.core.apply_register(
                request, now=self.clock(), address=address, transport=transport, identity=bound
            )
        registration = result.registration
        assert registration is not None
        if _levels.get(_DEBUG) is not False and log.isEnabledFor(_DEBUG):  # per message (a
            # fleet re-registering must not flood the log): not even the call to ``debug``, nor
            # that to ``isEnabledFor`` when the logger's memo says no (``_levels``)
            log.debug(
                "registered %s as %s from %s (LwM2M %s, lifetime %ss, binding %s%s)",
                registration.endpoint,
                registration.registration_id,
                address,
                registration.lwm2m_version,
                registration.lifetime,
                registration.binding,
                ", queue mode" if registration.queue_mode else "",
            )
        self.effects.apply(result)
        return registration

    def handle_update(
        self,
        registration_id: str,
        query: Sequence[str],
        payload: bytes,
        content_format: int | None,
        *,
        source: Key,
        identity: Peer,
    ) -> Registration:
        # looked up once: the address and identity checks and the core's Update all work on
        # the registration the book holds now (nothing runs in between that could change it)
        core = self.core
        registration = core.registrations.get(registration_id)
        # the registration's own ``Address`` when ``source`` is where it is registered (a
        # keep-alive, nearly every Update): not built again, and the core sees at once (by
        # identity) that the address did not move
        address = None if registration is None else registration.address
        if address is None or address.port != source[1] or address.host != source[0]:
            address = Address(*source)
        if self._strict:
            self._check_address(registration, address, identity)
        if registration is None:  # the core's own lookup answers (4.04, or a store read)
            bound = None
        else:
            # ``_authorize_for`` written out: every Update
            bound = self.resolver.resolve(identity, registration.endpoint).binding
            if not query and not payload:
                # the keep-alive (a bare Update): the core skips what such an Update of a
                # client outside queue mode does not need (``ServerCore.keep_alive``), and the
                # effects announce it without an event object; None: the general path below
                kept = core.keep_alive(registration, self.clock(), address, bound)
                if kept is not None:
                    if _levels.get(_DEBUG) is not False and log.isEnabledFor(_DEBUG):
                        log.debug("updated %s (%s)", kept.endpoint, registration_id)
                    self.effects.kept_alive(kept, registration)
                    return kept
        result = core.update(
            registration_id,
            query,
            payload,
            content_format,
            now=self.clock(),
            address=address,
            identity=bound,
            registration=registration,
        )
        assert result.registration is not None
        if log.isEnabledFor(logging.DEBUG):  # per message: not even the call to ``debug``
            log.debug("updated %s (%s)", result.registration.endpoint, registration_id)
        self.effects.apply(result)
        return result.registration

    def handle_deregister(
        self, registration_id: str, *, address: Address, identity: Peer
    ) -> Registration:
        registration = self.core.registrations.get(registration_id)
        if self._strict:
            self._check_address(registration, address, identity)
        bound = self._authorize_for(registration, identity)
        result = self.core.deregister(registration_id, now=self.clock(), identity=bound)
        registration = result.registration
        assert registration is not None
        log.debug("deregistered %s (%s) from %s", registration.endpoint, registration_id, address)
        self.effects.apply(result)
        return registration

    def endpoint_of(self, registration_id: str) -> str | None:
        registration = self.core.registrations.get(registration_id)
        return None if registration is None else registration.endpoint

    # -- identity binding ----------------------------------------------------------------
    def _authorize(self, peer: Peer, endpoint: str | None) -> IdentityBinding | None:
        """May ``peer`` be ``endpoint``? The resolver decides from the device records
        (``IdentityRefused``, an ``Lwm2mError``: 4.01 unknown/deactivated, 4.03 another
        endpoint's identity or a secured endpoint over NoSec, 4.00 bad ``ep``). The core gets
        the identity it compares later requests of the registration with (None for NoSec)."""
        return self.resolver.resolve(peer, endpoint).binding

    def _authorize_for(
        self, registration: Registration | None, peer: Peer
    ) -> IdentityBinding | None:
        """Update/De-register/Send: the peer must still be allowed to be the registration's
        endpoint (a device removed or deactivated since is refused); without a registration
        the core answers 4.04 itself."""
        if registration is None:
            return None
        # ``_authorize`` written out
        return self.resolver.resolve(peer, registration.endpoint).binding

    def _check_address(
        self, registration: Registration | None, address: Address, peer: Peer
    ) -> None:
        """``nosec_address_binding: strict``: a NoSec registration is known only by its
        address:port (there is no identity over NoSec), so whoever knows its registration id
        could move its downlink address with an Update (docs/security.md). Strict refuses an
        Update or De-register from any other address:port, or over DTLS, with 4.03 (the site
        logs it, rate-limited); the device re-registers from its new address instead. ``loose``
        (the default) lets the Update move the address: NATs rebind, and a device behind one
        would otherwise lose its registration on every rebinding."""
        if (
            registration is None
            or registration.transport != "coap"
            or (peer.mode is SecurityMode.NOSEC and address == registration.address)
        ):
            return
        self.address_refused += 1
        # the answer does not say where the device is: the sender may be the one probing
        raise Lwm2mError(
            f"{registration.endpoint} is bound to the address:port it registered from "
            "(nosec_address_binding: strict): register again from a new address",
            code=ResponseCode.FORBIDDEN,
        )

    def _session_identity(self, peer: Peer) -> IdentityBinding | None:
        """The identity a DTLS peer's registrations are bound to (what ``_authorize`` gave the
        core at Register), from the session alone; None for a NoSec peer, which is known only
        by its address."""
        if peer.mode is SecurityMode.NOSEC:
            return None
        return self.resolver.resolve(peer).binding

    # -- information reporting -----------------------------------------------------------
    def handle_send(
        self,
        payload: bytes,
        content_format: int | None,
        *,
        address: Address,
        identity: Peer,
    ) -> None:
        # 4.13 + Size1 before any work: decoding runs on the event loop (codecs.DEFAULT_LIMITS)
        self._check_size(payload, content_format, "send", address)
        now = self.clock()
        bound = self._session_identity(identity)
        sender = self.core.sender(address, bound)  # 4.04 / 4.03 (ambiguous) before decoding
        self._authorize(identity, sender.endpoint)  # still allowed to be that endpoint
        result = self.core.send(address, payload, content_format, now=now, identity=bound)
        registration = result.registration
        assert registration is not None
        points = decode_points(
            registration,
            models_for(self.registry, registration),
            payload,
            content_format,
            now=now,
        )
        points = self._map(registration, points, "send")
        self.store.append_points(points)
        self.bus.publish(SEND, registration.endpoint, _points_data(registration, tuple(points)))
        self.effects.apply(_without(result, SendReceived))

    def handle_notification(self, message: Message, source: IncomingRequest) -> Verdict:
        """One notification (whole: the CoAP layer assembled a block-wise one) from
        ``source``, for the observation its token names.

        A token is not a credential: it travels in clear over NoSec and any peer can send any
        token. So a notification counts only when it comes from the peer the observation is
        with (RFC 7252 §5.3.2, §9.1.2); anything else is refused before it touches the
        observation, the registration or the telemetry (``_foreign``)."""
        address = Address(*source.address)
        checked = self._check_notification(message, source, address)
        if isinstance(checked, Verdict):
            return checked
        found = checked
        observation = found[0]
        token = message.token
        code = message.code
        final = (code >> 5) != 2 or message.observe is None
        now = self.clock()
        ct = message.content_format
        payload = message.payload
        result = self.core.notification(token, payload, ct, now=now, found=found)
        registration = result.registration
        if registration is None:  # the core forgot the observation (cache and store)
            return Verdict.REJECT
        if final:
            # RFC 7641 §3.2: an error (or a response without Observe) ends the observation
            log.info(
                "observation %s of %s ended by the device with %d.%02d",
                " ".join(map(str, observation.paths)),
                observation.endpoint,
                code >> 5,
                code & 0x1F,
            )
            self._forget_observation(token)
            if (code >> 5) != 2:
                self.effects.apply(_without(result, NotificationReceived))
                return Verdict.ACCEPT
        if not self._store_notification(
            registration, observation, payload, ct, now=now, address=address
        ):
            return Verdict.IGNORE
        if result.to_send or len(result.events) > 1 or registration.queue_mode:
            # otherwise there is nothing to apply: no event but this one (published by
            # _store_notification), no queued request due, no timer moved (queue mode moves
            # the sleep timer); the effects' timer re-arm was a tenth of a notification's cost
            self.effects.apply(_without(result, NotificationReceived))
        return Verdict.ACCEPT

    def check_notification(self, message: Message, source: IncomingRequest) -> Verdict | None:
        """None when ``message`` is a notification of a live observation from its peer; else
        why not (REJECT: unknown or cancelled, REFUSE: from another peer). Changes nothing
        but ending a passively cancelled observation."""
        checked = self._check_notification(message, source, Address(*source.address))
        return checked if isinstance(checked, Verdict) else None

    def _check_notification(
        self, message: Message, source: IncomingRequest, address: Address
    ) -> Verdict | tuple[Observation, Registration | None]:
        """``check_notification``, giving what it looked up when the notification passes: the
        observation and its registration (None when gone: the core then forgets the
        observation), so that ``handle_notification`` looks neither up again. ``address``:
        ``source.address`` as an ``Address`` (the caller needs it too: built once)."""
        token = message.token
        observation = self.core.observations.by_token(token)
        if observation is None:
            return Verdict.REJECT
        registration_now = self.core.registrations.get(observation.registration_id)
        if registration_now is not None:
            reason = self._foreign(source, address, registration_now)
            if reason is not None:
                self._log_foreign(observation, address, reason)
                return Verdict.REFUSE
        if not observation.active:
            # passive cancel: the RST tells the device to stop (RFC 7641 §3.6)
            self.core.observations.cancel(token)
            log.debug("RST to a notification of a cancelled observation of %s",
                      observation.endpoint)  # fmt: skip
            return Verdict.REJECT
        return observation, registration_now

    def _foreign(
        self, source: IncomingRequest, address: Address, registration: Registration
    ) -> str | None:
        """Why a notification from ``source`` is not from ``registration``'s peer, or None.

        The registration (its current address, transport and identity, restored from the
        store after a restart and moved by an Update) is the reference, so observations follow
        their device and survive a restart. A NoSec device is known only by its address:port.
        A DTLS device is known by the identity its session authenticated, wherever that session
        sends from: the session is the endpoint (RFC 7252 §9.1.2) and a Connection ID moves it
        to a new address without a new handshake (RFC 9146), as ``ServerCore.sender`` does for
        Send. Another device's session, or plain CoAP for a DTLS device, is refused."""
        scheme = "coaps" if source.secure else "coap"
        if scheme != registration.transport:
            return f"over {scheme}, but {registration.endpoint} registered over " + (
                registration.transport
            )
        if scheme == "coap":
            if address != registration.address:
                return f"{registration.endpoint} is registered from {registration.address}"
            return None
        try:
            identity = self._session_identity(source.identity)
        except Lwm2mError as exc:
            return f"the DTLS identity is refused ({exc.message})"
        if identity != registration.identity:
            return f"another DTLS identity than {registration.endpoint}'s"
        return None

    def _log_foreign(self, observation: Observation, address: Address, reason: str) -> None:
        """WARNING once a minute per source host (a flood of forged notifications must not
        flood the log), DEBUG otherwise. Never the token: it is what a forger needs."""
        first = self._foreign_log.allow(address.host, time.monotonic())
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "notification for %s of %s from %s refused: %s",
            " ".join(map(str, observation.paths)),
            observation.endpoint,
            address,
            reason,
        )

    def _store_notification(
        self,
        registration: Registration,
        observation: Observation,
        payload: bytes,
        ct: int | None,
        *,
        now: float,
        address: Address,
    ) -> bool:
        """Decode, map, store and publish one (whole) notification value; False if the store
        failed (nothing published: the device is not ACKed and retransmits). The event's JSON
        is built only if a subscriber reads it (``events_bus.LazyData``), after the ACK left."""
        error: str | None = None
        try:
            fmt = ct if ct is not None else observation.content_format
            self._check_size(payload, fmt, "notification", address)
            points = decode_points(
                registration,
                self._models_of(registration),
                payload,
                ct,
                now=now,
                observation=observation,
            )
        except codecs.PayloadTooLarge as exc:  # counted and logged by _check_size
            points = []
            error = exc.message
        except Lwm2mError as exc:
            log.warning(
                "undecodable notification from %s (%s) for %s: %s",
                registration.endpoint,
                address,
                " ".join(map(str, observation.paths)),
                exc.message,
            )
            points = []
            error = exc.message
        points = self._map(registration, points, "notification")
        try:
            self.store.append_points(points)
        except StoreError as exc:
            # once per host a minute: a store outage would otherwise log every notification
            first = self._store_log.allow(address.host, time.monotonic())
            log.log(
                logging.ERROR if first else logging.DEBUG,
                "notification from %s not stored: %s",
                address,
                exc,
            )
            return False
        self.bus.publish(
            NOTIFICATION,
            registration.endpoint,
            NotificationData(registration, observation, ct, points, error),
        )
        return True

    def _models_of(self, registration: Registration) -> ModelProvider:
        """``models_for(registration)``, remembered for the registration object (a new object
        after each Update that changes it): a device's notifications all need the same
        models, and building them (its object versions copied into a dict) was ~5 % of a
        notification. The cache holds the registration itself, so a hit is that very object;
        it is emptied when full (a few thousand observed devices at once)."""
        key = id(registration)
        hit = self._models_cache.get(key)
        if hit is not None and hit[0] is registration:
            return hit[1]
        models = models_for(self.registry, registration)
        if len(self._models_cache) >= _MODELS_CACHE_SIZE:
            self._models_cache.clear()
        self._models_cache[key] = (registration, models)
        return models

    def _check_size(self, payload: bytes, fmt: int | None, kind: str, address: Address) -> None:
        """``PayloadTooLarge`` (4.13, its ``limit`` for Size1) for a payload over its format's
        limit, counted; a notification's is logged here once a minute per source host (a
        refused Send is logged, rate-limited too, by the site with its 4.13)."""
        try:
            codecs.check_limit(len(payload), fmt, self.payload_limits)
        except codecs.PayloadTooLarge as exc:
            self.payloads_refused[kind] += 1
            if kind == "send":
                raise
            first = self._size_log.allow(address.host, time.monotonic())
            log.log(
                logging.WARNING if first else logging.DEBUG,
                "%s from %s refused before decoding: %s (%d refused so far)",
                kind,
                address,
                exc.message,
                self.payloads_refused[kind],
            )
            raise

    def _map(
        self, registration: Registration, points: list[TelemetryPoint], source: str
    ) -> list[TelemetryPoint]:
        return points if self.mapper is None else self.mapper(registration, points, source)

    def _forget_observation(self, token: bytes) -> None:
        try:
            self.core.cancel_observation(token)
        except StoreError as exc:
            log.error("could not remove observation %s from the store: %s", token.hex(), exc)


def _points_data(registration: Registration, points: tuple[TelemetryPoint, ...]) -> Build:
    """The builder of a SEND event's data (called only if a subscriber reads it): a
    ``partial``, which the bus takes apart (``events_bus.LazyData``), not a closure (the replay
    ring keeps 10,000 events alive; a closure is five objects for the cyclic collector)."""
    return functools.partial(_points_json, registration, points)


def _points_json(
    registration: Registration, points: tuple[TelemetryPoint, ...]
) -> dict[str, object]:
    return {
        "registrationId": registration.registration_id,
        "points": [telemetry_to_json(p) for p in points],
    }


class NotificationData(LazyData):
    """A NOTIFICATION event's data, built when read (``_notification_json``): what the value's
    points say, the observation's paths, and the decoding error if the payload could not be
    read. One object holding its five values directly: the bus's replay ring keeps 10,000
    events alive through several young collections of the cyclic collector, and a ``partial``
    taken apart by ``LazyData.of`` was a partial, a ``LazyData`` and an argument tuple (plus a
    tuple copy of the points) per notification. ``points`` is the list that was stored, which
    nothing changes afterwards (the profile engine's TELEMETRY event holds the same list)."""

    __slots__ = ("_ct", "_error", "_observation", "_points", "_registration")

    def __init__(
        self,
        registration: Registration,
        observation: Observation,
        ct: int | None,
        points: Sequence[TelemetryPoint],
        error: str | None,
    ) -> None:
        self._registration: Registration | None = registration
        self._observation: Observation | None = observation
        self._ct = ct
        self._points: Sequence[TelemetryPoint] = points
        self._error = error
        self._data = None

    def _make(self) -> dict[str, object]:
        assert self._registration is not None and self._observation is not None
        return _notification_json(
            self._registration, self._observation, self._ct, self._points, self._error
        )

    def _release(self) -> None:
        self._registration = None
        self._observation = None
        self._points = ()


def _notification_json(
    registration: Registration,
    observation: Observation,
    ct: int | None,
    points: Sequence[TelemetryPoint],
    error: str | None,
) -> dict[str, object]:
    data: dict[str, object] = {
        "registrationId": registration.registration_id,
        "paths": [str(p) for p in observation.paths],
        "contentFormat": ct,
    }
    if error is not None:
        data["error"] = error
    data["points"] = [telemetry_to_json(p) for p in points]
    return data


def _endpoint_of(query: Sequence[str]) -> str | None:
    """The ``ep`` of a Register's Uri-Query (the core validates the rest)."""
    for item in query:
        if item.startswith("ep="):
            return item[3:]
    return None


def _without(result: CoreResult, kind: type) -> CoreResult:
    events: tuple[Event, ...] = tuple(e for e in result.events if not isinstance(e, kind))
    return CoreResult(result.registration, events, result.to_send)
