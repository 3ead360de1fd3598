"""``Lwm2mServer``: the running LwM2M server, implementing ``ServerOperations``.

It wires the pieces together and owns what spans them:

* start: open the store, rebuild the core from it (``ServerCore.restore``), open the CoAP and
  CoAPs listeners (the runtime's ``CoapServer``: our own CoAP layer, DTLS sessions restored
  from the store), arm the timer (registrations that expired while the server was down are
  swept by the first tick);
* the **single timer** at ``core.next_deadline()`` (lifetimes and queue mode);
* **effects** of every core result: events published on the bus, ended registrations removed
  from the store, queued requests delivered when their client wakes (one delivery task per
  client at a time, in order), their waiters failed when the registration ends;
* the **downlink operations**: build (format choice, encoding), submit to the core (send now,
  or queue for a sleeping queue-mode client: ``DeviceResponse(queued=True)``), send, decode,
  and keep telemetry from Read answers; Observe keeps the observation in core and store, and
  drops it again if the Observe as a whole fails (a block of its answer missing, undecodable);
* the **instance ids of Creates** the server chose or learnt from a 2.01 (``CreatedIds``), so a
  second id-less Create picks a new id before the client's next Update lists the first;
* **notifications** (``_on_coap_event``): the CoAP layer's ``Notification`` events of live
  observations and ``UnknownNotification`` events (an observation from before a restart, or a
  device that moved) go to the uplink, which checks the peer and stores; the answer (ACK, RST,
  nothing) follows its verdict. Block-wise notifications arrive assembled by the layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from keystore.api_tokens import ApiTokenStore
from keystore.coaps import DtlsEndpoint, ensure_server_identity, server_dtls_config
from keystore.coaps.persistence import DtlsSessionStore
from keystore.log_limit import PerPeerLimit
from keystore.modes import SecurityMode
from keystore.resolver import Resolver
from keystore.store.credentials import CredentialStore, SqliteCredentialStore
from keystore.store.dtls_sessions import SqliteDtlsSessionStore
from keystore.store.engines import api_token_store, open_redis
from keystore.store.errors import StoreError
from keystore.store.profiles import ProfileStore, SqliteProfileStore
from keystore.store.redis_database import RedisDatabase
from lwm2m_runtime.address import Address
from lwm2m_runtime.coap import Event as CoapEvent
from lwm2m_runtime.coap import Message, Notification, Type, UnknownNotification
from lwm2m_runtime.driver import AsyncCommitter, Committer
from lwm2m_runtime.limits import RateLimit
from lwm2m_runtime.listeners import listeners
from lwm2m_runtime.server import CoapServer, IncomingRequest
from lwm2m_server.store.base import CoreStore, TelemetryStore
from lwm2m_server.store.device_state import DeviceStateStore, SqliteDeviceStateStore
from lwm2m_server.store.queued_requests import (
    QueuedRequestStore,
    SqliteQueuedRequestStore,
    StoredRequest,
)
from lwm2m_server.store.sqlite import SqliteStore
from object_models.content_format import ContentFormat
from object_models.errors import Lwm2mError, ResponseCode
from object_models.model import ModelProvider
from object_models.node import LwM2mNode, LwM2mObjectInstance
from object_models.path import LwM2mPath
from object_models.registry import ModelRegistry

from .cluster.node import ClusterNode
from .coap import requests as rq
from .coap.downlink import Downlink, build_message
from .coap.site import RegistrationSite
from .coap.uplink import Uplink, Verdict, models_for
from .config import ServerConfig
from .core.events import (
    Awake,
    Deregistered,
    Event,
    Expired,
    ObservationsCancelled,
    QueuedRequestExpired,
    QueueDropped,
    Registered,
    Replaced,
    Sleeping,
    Updated,
)
from .core.observations import Observation
from .core.queue import QueueConfig, QueuedRequest
from .core.registration import Registration
from .core.server import CoreResult, ServerCore
from .core.telemetry import TelemetryPoint, points_from_nodes
from .events_bus import (
    AWAKE,
    DEREGISTRATION,
    REGISTRATION,
    REQUEST_RESPONSE,
    SLEEPING,
    UPDATED,
    EventBus,
    RegistrationData,
    Subscription,
    registration_data,
)
from .firmware.campaigns import CampaignManager, for_server
from .firmware.downloads import DownloadServer
from .firmware.job_store import JobStore, RedisJobStore, SqliteJobStore
from .firmware.manager import FirmwareManager
from .firmware.packages import Library
from .firmware.setup import create_manager, open_firmware, set_coap_bases
from .metrics import Counts, timed_committer
from .operations import (
    DeviceAnswerError,
    DeviceResponse,
    DeviceTimeoutError,
    ObservationLimitError,
    UnknownClientError,
)
from .profiles.engine import ProfileEngine
from .profiles.setup import create_engine
from .telemetry_retention import RetentionPruner, parse_duration

log = logging.getLogger(__name__)

STORE_SWEEP_INTERVAL = 60.0
"""Seconds between the core's sweeps of the store for expired registrations."""

TelemetryMapper = Callable[[Registration, list[TelemetryPoint], str], list[TelemetryPoint]]
"""Called with every batch of decoded values (source ``read``, ``notification``, ``send``)
before it is stored; returns the telemetry to store. The profile engine's ``map_telemetry``
(profile keys, attributes, sinks) once started; without one the points are stored as decoded."""

QUEUED = 0
"""``DeviceResponse.code`` of a queued request (nothing was sent yet; HTTP 202)."""


@attrs.define(eq=False)
class QueuedDownlink:
    """A downlink request waiting in a sleeping client's queue; ``future`` gets its answer."""

    endpoint: str
    request: rq.DownlinkRequest
    timeout: float
    future: asyncio.Future[DeviceResponse]
    request_id: str | None = None
    """Its ``requestId`` (the 202's) once queued; the key of its record in the store."""


class CreatedIds:
    """Instance ids a registration got through our Creates (chosen by us, or named by the
    client's Location-Path), per object. The registration's object list only learns them from
    the client's next Update; until then an id-less Create in SenML/LwM2M CBOR would pick the
    same "free" id again and the client answers 4.00. Kept until the registration ends (ids the
    client deleted since are merely skipped)."""

    def __init__(self) -> None:
        self._ids: dict[str, dict[int, set[int]]] = {}

    def taken(self, registration_id: str, object_id: int) -> frozenset[int]:
        return frozenset(self._ids.get(registration_id, {}).get(object_id, ()))

    def add(self, registration_id: str, path: LwM2mPath) -> None:
        if path.object_id is not None and path.instance_id is not None:
            by_object = self._ids.setdefault(registration_id, {})
            by_object.setdefault(path.object_id, set()).add(path.instance_id)

    def discard(self, registration_id: str, path: LwM2mPath) -> None:
        if path.object_id is not None and path.instance_id is not None:
            self._ids.get(registration_id, {}).get(path.object_id, set()).discard(path.instance_id)

    def forget(self, registration_id: str) -> None:
        self._ids.pop(registration_id, None)


def _silence(future: asyncio.Future[Any]) -> None:
    """Mark a waiter's exception as retrieved: most queued requests have no reader."""
    if not future.cancelled():
        future.exception()


_REGISTER_EVENTS = (Registered, Replaced, ObservationsCancelled)
"""The events of a Register of a client outside queue mode (``ServerCore.apply_register``)."""


def _only_postponed(events: Sequence[Event]) -> bool:
    """Is this the keep-alive Update of a client outside queue mode, whose expiry moved later?

    Then nothing became due earlier than before: a timer armed for the earliest deadline is
    still early enough (when it fires it re-arms for what is left), and re-arming would only
    compute ``next_deadline`` again (~5 % of an Update, the most frequent message). Any other
    event (a Register, a shorter lifetime, an awake window) re-arms."""
    if len(events) != 1:
        return False
    event = events[0]
    if type(event) is not Updated:
        return False
    registration, previous = event.registration, event.previous
    # ``expires_at`` of both written out (every Update)
    return not registration.queue_mode and (
        registration.last_update + registration.lifetime >= previous.last_update + previous.lifetime
    )


class Lwm2mServer:
    """The LwM2M server (see the module docstring). ``await start()`` / ``await stop()``."""

    def __init__(
        self,
        config: ServerConfig | None = None,
        *,
        registry: ModelRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or ServerConfig()
        self.registry = registry or ModelRegistry(self.config.models_dirs)
        self.clock = clock
        self.bus = EventBus(self.config.events.replay_size)
        self.counts = Counts()  # what /metrics reports (lwm2m_server/metrics.py)
        queue = self.config.queue
        self.core = ServerCore(
            grace_period=self.config.lifetime_grace,
            queue_config=QueueConfig(
                max_length=queue.max_per_client, entry_ttl=queue.ttl, awake_time=queue.awake_time
            ),
            # expire what no cache holds (another process's, on a shared store) once a minute
            sweep_interval=STORE_SWEEP_INTERVAL,
        )
        self._store: SqliteStore | None = None
        self._redis: RedisDatabase | None = None
        self._stores: _Stores | None = None
        self._coap: CoapServer | None = None
        self._downlink: Downlink | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._delivery_locks: dict[str, asyncio.Lock] = {}
        self._handed_over: set[str] = set()
        """Queued requests another node took over (cluster: ``release_queued``)."""
        self._created = CreatedIds()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self.uplink: Uplink | None = None
        self.resolver: Resolver | None = None
        self.nosec_enabled = True
        self.dtls_modes: frozenset[SecurityMode] = frozenset()
        self.profiles: ProfileEngine | None = None
        self.firmware: FirmwareManager | None = None
        """Firmware/software update jobs (docs/firmware.md, "Update jobs"); set by ``start``."""
        self.telemetry_mapper: TelemetryMapper | None = None
        self.retention: RetentionPruner | None = None
        """Deletes telemetry history past its TTL in the background (started by ``start``)."""
        limits = self.config.limits
        self.register_limit = RateLimit(limits.register_rate, limits.register_burst)
        """Registers per source host (``limits.register_rate``/``register_burst``)."""
        self.observations_refused = 0
        self._observe_log = PerPeerLimit(60.0)
        self.campaigns: CampaignManager | None = None
        """Update campaigns over the job manager (docs/firmware.md, "Campaigns"); set by
        ``start``."""
        self.cluster: ClusterNode | None = None
        """On Redis: this node's part of the cluster (holder records, downlink routing, events
        of every node; docs/cluster.md)."""
        self.packages: Library | None = None
        """Firmware/software packages (docs/firmware.md, "Packages"); set by ``start``."""
        self.downloads: DownloadServer | None = None
        """Download grants and ``GET /fw/<token>`` over CoAP and HTTP (docs/firmware.md,
        "Download server"); set by ``start``."""

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        config = self.config
        store = SqliteStore(config.database, synchronous=config.store_synchronous)
        self._store = store
        store.enable_group_commit()  # committed by the CoAP drivers' flush (group commit)
        try:
            stores = self._open_stores(store)
            self._stores = stores
            # the store is the source of truth; the core's indexes are its cache
            self.core.use_store(stores.core)
            if config.store.engine == "redis":  # Registers ride the group commit there
                self.core.defer_registers(self.apply)
            credentials = stores.credentials
            self.resolver = Resolver(credentials, open_registration=config.open_registration)
            identity = ensure_server_identity(credentials, host=config.host)
            packages, downloads = open_firmware(
                config, store, self._redis, self.resolver, self.clock
            )
            self.packages, self.downloads = packages, downloads
            uplink = Uplink(
                self.core,
                stores.telemetry,
                self.registry,
                self.bus,
                self,
                clock=self.clock,
                resolver=self.resolver,
                mapper=self.map_telemetry,
                address_binding=config.nosec_address_binding,
                payload_limits=config.payload_limits.by_format(),
            )
            self.uplink = uplink
            self.nosec_enabled, coaps = listeners(config.security_modes, config.dtls)
            self.dtls_modes = coaps.modes if coaps is not None else frozenset()
            site = RegistrationSite(
                uplink,
                on_contact=self._contact,
                register_limit=self.register_limit,
                counts=self.counts.uplink,
                download=downloads.coap,
            )
            coap = CoapServer(
                site,
                params=config.limits.parameters(),
                on_event=self._on_coap_event,
                committer=timed_committer(stores.committer, self.counts),
            )
            downlink = Downlink(coap)
            self._downlink = downlink
            if self._redis is None:
                # no cluster node can come (it needs Redis): ``_contact`` would only ever call
                # ``remember``, so the site calls it itself (every Register and Update, one
                # frame fewer); the site is not called before this (``coap.start`` below)
                site.on_contact = downlink.remember
            await coap.start(
                host=config.host,
                port=config.coap_port if self.nosec_enabled else None,
                coaps_port=config.coaps_port if coaps is not None else None,
                dtls_config=(
                    server_dtls_config(self.resolver, identity, coaps)
                    if coaps is not None
                    else None
                ),
                # DTLS sessions survive a restart (docs/coaps-transport.md)
                dtls_settings=(
                    dataclasses.replace(coaps.endpoint, session_store=stores.dtls_sessions)
                    if coaps is not None
                    else None
                ),
                reuse_port=config.workers > 1,  # lwm2m-server --workers (docs/cluster.md)
            )
        except BaseException:
            self._downlink = None
            self._stores = None
            self._close_firmware()
            store.close()
            self._store = None
            self._close_redis()
            raise
        self._coap = coap
        set_coap_bases(
            downloads,
            config,
            self.coap_address.port if self.nosec_enabled else None,
            self.coaps_address.port if self.dtls_modes else None,
        )
        if self._redis is not None:
            cluster = ClusterNode(self, config.store, self._redis)
            try:
                await cluster.start()
            except Exception as exc:
                await self.stop()
                raise StoreError(f"cluster pub/sub on {config.store.where}: {exc}") from exc
            self.cluster = cluster
        if len(self.core.registrations):
            log.info(
                "restored %d registrations and %d observations from %s",
                len(self.core.registrations),
                len(self.core.observations),
                config.database if self._redis is None else config.store.where,
            )
        for error in self.registry.errors:
            log.error("object models: %s", error)
        self._restore_queued()
        log.info(
            "CoAP (NoSec) on %s, CoAPs (%s) on %s",
            self.coap_address if self.nosec_enabled else "off",
            ", ".join(sorted(m.name for m in self.dtls_modes)) or "no DTLS mode",
            self.coaps_address if self.dtls_modes else "off",
        )
        if config.open_registration:
            log.warning(
                "open registration is on: any NoSec device may register; set "
                "open_registration: false (LWM2M_SERVER_OPEN_REGISTRATION=false) in production"
            )
        self._arm_timer()
        self.profiles = create_engine(self)
        self.telemetry_mapper = self.profiles.map_telemetry
        await self.profiles.start()
        self.firmware = create_manager(self)
        await self.firmware.open()
        self.campaigns = for_server(self, self.firmware)
        await self.campaigns.start()  # resumes the unfinished campaigns of the store
        self.retention = self._retention_pruner()
        self._spawn(self.retention.run())
        # group commit: nothing of start() stays in an open transaction (another connection to
        # the same file, an in-process bootstrap server say, may write before the next loop turn)
        self.stores.committer.commit()

    async def stop(self) -> None:
        if self.campaigns is not None:
            await self.campaigns.stop()
            self.campaigns = None
        if self.firmware is not None:
            await self.firmware.close()
            self.firmware = None
        if self.cluster is not None:
            await self.cluster.stop()
            self.cluster = None
        if self.profiles is not None:
            await self.profiles.stop()
            self.profiles = None
            self.telemetry_mapper = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        # the queued requests stay in the store: the next start delivers them (their waiters
        # here fail, but neither their record nor a REQUEST_RESPONSE goes: see _answered)
        self._stopping = True
        for entry in self._all_queued():
            self._fail(entry, DeviceTimeoutError("the server is shutting down"))
        if self._coap is not None:
            await self._coap.stop()
            self._coap = None
        self._downlink = None
        self._stores = None
        self._close_firmware()
        if self._store is not None:
            self._store.close()
            self._store = None
        self._close_redis()
        self.bus.close()

    def _open_stores(self, local: SqliteStore) -> _Stores:
        """The stores of ``store.engine`` (docs/cluster.md, "The LwM2M server on Redis"): with
        sqlite every one is on ``local``, the file in ``data_dir``; with Redis, everything
        several nodes must share is on one Redis connection (opened here, PINGed: an
        unreachable Redis stops the start with a ``StoreError`` naming the URL), and ``local``
        keeps this node's telemetry history and the API audit log."""
        if self.config.store.engine != "redis":
            profiles = SqliteProfileStore(local)  # before the device state: the schema version
            credentials = SqliteCredentialStore(local)
            return _Stores(
                committer=local,
                core=local,
                telemetry=local,
                credentials=credentials,
                profiles=profiles,
                device_state=SqliteDeviceStateStore(local),
                dtls_sessions=SqliteDtlsSessionStore(local),
                api_tokens=api_token_store(credentials),
                queued_requests=SqliteQueuedRequestStore(local),
                firmware_jobs=SqliteJobStore(local),
            )
        from keystore.store.redis_credentials import RedisCredentialStore
        from keystore.store.redis_dtls_sessions import RedisDtlsSessionStore
        from keystore.store.redis_profiles import RedisProfileStore

        from .store.redis import RedisStore, RedisTelemetryStore
        from .store.redis_device_state import RedisDeviceStateStore
        from .store.redis_queued_requests import RedisQueuedRequestStore

        db = open_redis(self.config.store)
        self._redis = db
        credentials_on_redis = RedisCredentialStore(db)
        core = RedisStore(db)
        # the Updates of an iteration: one script at the flush; asynchronous only on request
        # (docs/cluster.md, "Group commit on Redis")
        core.enable_group_commit(asynchronous=os.environ.get(ASYNC_COMMIT_ENV) == "1")
        return _Stores(
            committer=_CommitBoth(core, local),
            core=core,
            telemetry=RedisTelemetryStore(db, local),
            credentials=credentials_on_redis,
            profiles=RedisProfileStore(db, group=core),  # assignments read with Registers
            device_state=RedisDeviceStateStore(db, group=core),  # statuses ride the commit
            dtls_sessions=RedisDtlsSessionStore(db),
            api_tokens=api_token_store(credentials_on_redis),
            queued_requests=RedisQueuedRequestStore(db),
            firmware_jobs=RedisJobStore(db),
        )

    def _close_firmware(self) -> None:
        if self.packages is not None:
            self.packages.close()
        self.packages = None
        self.downloads = None

    def _close_redis(self) -> None:
        if self._redis is not None:
            self._redis.close()
            self._redis = None

    async def __aenter__(self) -> Lwm2mServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def store(self) -> SqliteStore:
        if self._store is None:
            raise RuntimeError("the server is not started")
        return self._store

    @property
    def stores(self) -> _Stores:
        """The stores of the configured engine (``store.engine``)."""
        if self._stores is None:
            raise RuntimeError("the server is not started")
        return self._stores

    @property
    def coap(self) -> CoapServer:
        """The CoAP listeners (the runtime's facade over the NoSec and CoAPs endpoints)."""
        if self._coap is None:
            raise RuntimeError("the server is not started")
        return self._coap

    @property
    def dtls(self) -> DtlsEndpoint:
        """The DTLS endpoint of the CoAPs listener (the session table, its stats)."""
        coaps = self.coap.coaps
        if coaps is None or coaps.dtls is None:
            raise RuntimeError("no CoAPs listener")
        return coaps.dtls

    @property
    def coaps_address(self) -> Address:
        """Where the CoAPs listener is bound (the real port when ``coaps_port`` was 0)."""
        address = self.coap.coaps_address
        if address is None:
            raise RuntimeError("no CoAPs listener")
        return Address(*address)

    @property
    def coap_address(self) -> Address:
        """Where the CoAP listener is bound (the real port when ``coap_port`` was 0)."""
        address = self.coap.coap_address
        if address is None:
            raise RuntimeError("NoSec is not among the security modes: no CoAP listener")
        return Address(*address)

    # -- CoAP adapter: contacts and notifications ------------------------------------------------
    def _contact(self, registration: Registration, remote: object) -> None:
        """A Register/Update came from ``remote``: downlinks to the registration go there."""
        if self._downlink is not None:
            self._downlink.remember(registration, remote)
        if self.cluster is not None:
            self.cluster.holding(registration)

    def _on_coap_event(self, event: CoapEvent) -> None:
        """Notifications (the layer's other events are answered by the facade or awaited by
        the downlink): the uplink decides, the answer follows its verdict."""
        uplink, downlink = self.uplink, self._downlink
        if uplink is None or downlink is None:
            return
        if isinstance(event, Notification):
            handle = event.handle
            source = IncomingRequest(event.message, handle.peer)
            verdict = uplink.handle_notification(event.message, source)
            self.counts.notifications[verdict.value] += 1
            if verdict is Verdict.IGNORE:
                # the store refused it: no ACK (the layer queued one; it has not left), so the
                # device retransmits and the observation lives on (docs/reliability.md)
                if not downlink.observations.withhold(event):
                    address = Address(*source.address)
                    first = self._observe_log.allow(f"unstored {address.host}", time.monotonic())
                    level = logging.WARNING if first else logging.DEBUG
                    log.log(
                        level, "a notification from %s was acknowledged but not stored", address
                    )
            elif verdict is not Verdict.ACCEPT or event.final:
                downlink.observations.drop(handle, reactive=not event.final)
        elif isinstance(event, UnknownNotification):
            self._on_unknown_notification(event, uplink, downlink)

    def _on_unknown_notification(
        self, event: UnknownNotification, uplink: Uplink, downlink: Downlink
    ) -> None:
        """A notification whose token the CoAP layer does not know with this peer: an
        observation from before a restart (from the store), a device that moved, or a
        stranger. Accepted (ACK, and adopted: later ones are ``Notification`` events) only
        from the observation's registration's peer."""
        message = event.message
        source = IncomingRequest(message, event.peer)
        observations = downlink.observations
        block2 = message.block2
        if block2 is not None and block2.more:
            # block 0 of a larger value: check it and adopt it with the observe request, so
            # the layer fetches the rest; the whole arrives as a Notification (and its ACK,
            # held by the layer until then, follows the store's verdict like any other)
            verdict = uplink.check_notification(message, source)
            if verdict is None:
                request = self._observe_message(message.token)
                observation = self.core.observations.by_token(message.token)
                if request is not None and observation is not None:
                    observations.adopt(event, observation.registration_id, request)
                    return
                verdict = Verdict.REJECT
        else:
            verdict = uplink.handle_notification(message, source)
        self.counts.notifications[verdict.value] += 1
        if verdict is Verdict.ACCEPT:
            observation = self.core.observations.by_token(message.token)
            if observation is None:  # it ended with this one: ACK, but adopt nothing
                observations.acknowledge(event)
            else:
                observations.adopt(
                    event, observation.registration_id, self._observe_message(message.token)
                )
        elif verdict is Verdict.REJECT:
            observations.reject(event)
        elif verdict is Verdict.REFUSE:
            # RFC 7252 §4.2: a CON that cannot be processed is rejected with RST; a NON is
            # just dropped (an RST would only help a forger probe tokens)
            observations.reject(event, answer=message.mtype is Type.CON)
        else:  # IGNORE (the store failed): no answer, and its retransmission handled again
            observations.withhold(event)

    def _observe_message(self, token: bytes) -> Message | None:
        """The Observe request of the observation ``token`` as it was sent (as far as it can
        be rebuilt), for the layer to follow Block2 and cancel on an adopted observation."""
        observation = self.core.observations.by_token(token)
        if observation is None:
            return None
        registration = self.core.registrations.get(observation.registration_id)
        if registration is None:
            return None
        request = self._observe_request(registration, observation)
        return build_message(registration, request).replace(token=token)

    async def reload_models(self) -> list[str]:
        """Re-read the user model folders and then the profiles folder (SIGHUP; profiles are
        checked against the models); returns the problems found, if any (the previous models
        and profiles then stay in use)."""
        errors = await asyncio.to_thread(self.registry.reload)
        for error in errors:  # one line per bad file: file[:line]: field: reason
            log.error("model reload: %s", error)
        if errors:
            log.error(
                "object models not reloaded (%d problem%s above): the previous models stay "
                "in use until the next reload finds none (docs/object-models.md)",
                len(errors),
                "" if len(errors) == 1 else "s",
            )
        else:
            log.info(
                "object models reloaded from %s",
                ", ".join(map(str, self.registry.models_dirs)) or "built-ins",
            )
        problems = [str(e) for e in errors]
        if self.profiles is not None:
            problems += [str(e) for e in self.profiles.reload().errors]
        return problems

    # -- effects of core results (Effects protocol of coap.uplink) -----------------------------
    def apply(self, result: CoreResult) -> None:
        events = result.events
        self._handle_events(events)
        if result.to_send:
            endpoint = result.to_send[0].endpoint
            self._spawn(self._deliver(endpoint, list(result.to_send)))
        if self._timer is not None and (
            _only_postponed(events) or self._registered_after_timer(events)
        ):
            return  # the armed timer is due no later than anything is now
        self._arm_timer()

    def kept_alive(self, registration: Registration, previous: Registration) -> None:
        """``apply`` of a keep-alive (``ServerCore.keep_alive``: a bare Update of a client
        outside queue mode with nothing queued), whose result would be one ``Updated`` event
        and nothing to send: the UPDATED event ``_handle_events`` publishes for it, and the
        timer re-armed unless ``_only_postponed`` would say it need not be (the expiry moved
        later; such a client is never in queue mode). Skipped: the ``Updated`` event object,
        the result, the walk over its events and the call to ``_only_postponed``."""
        self.bus.announce(
            UPDATED, registration.endpoint, RegistrationData(registration, False, None)
        )
        if self._timer is None or registration.last_update + registration.lifetime < (
            previous.last_update + previous.lifetime
        ):
            self._arm_timer()

    def _registered_after_timer(self, events: Sequence[Event]) -> bool:
        """Is this the Register of a client outside queue mode that expires after the armed
        timer? Then, as for ``_only_postponed``, nothing became due earlier: a Register adds
        one later deadline and only removes others (the registration it replaced, a queue
        left over), and re-arming would compute ``next_deadline`` per Register (~2 % of it)."""
        event = events[-1] if events else None
        if type(event) is not Registered or event.registration.queue_mode:
            return False
        if len(events) > 1 and any(type(e) not in _REGISTER_EVENTS for e in events):
            return False
        at = self._timer_at
        return at is not None and at <= self.core.registrations.deadline(event.registration)

    def _handle_events(self, events: Sequence[Event]) -> None:
        # the registration events go out by ``announce``: nobody here needs the event back,
        # and the bus makes no ``ServerEvent`` of them unless a subscriber or an object
        # listener reads one (every Register and Update)
        for event in events:
            if isinstance(event, Registered):
                if event.replaced is not None:
                    self._created.forget(event.replaced.registration_id)
                    if self._downlink is not None:
                        self._downlink.forget(event.replaced.registration_id)
                # a client that just registered or updated is awake (queue mode); payloads
                # are built only if a subscriber reads them (events_bus.registration_data)
                replaced = None if event.replaced is None else event.replaced.registration_id
                # ``registration_data(registration, sleeping=False, replaced=replaced)`` built
                # directly (every Register: no keywords to gather, no call more)
                data = RegistrationData(event.registration, False, {"replaced": replaced})
                self.bus.announce(REGISTRATION, event.registration.endpoint, data)
            elif isinstance(event, Updated):
                # ``registration_data(registration, sleeping=False)`` built directly: every
                # Update (no keyword arguments to gather, no call more)
                registration = event.registration
                data = RegistrationData(registration, False, None)
                self.bus.announce(UPDATED, registration.endpoint, data)
            elif isinstance(event, Deregistered | Expired):
                if self._downlink is not None:
                    self._downlink.forget(event.registration.registration_id)
                self._created.forget(event.registration.registration_id)
                if self.core.registrations.cached_by_endpoint(event.registration.endpoint) is None:
                    self._delivery_locks.pop(event.registration.endpoint, None)
                reason = "expired" if isinstance(event, Expired) else "deregistered"
                data = registration_data(event.registration, reason=reason)
                self.bus.announce(DEREGISTRATION, event.registration.endpoint, data)
            elif isinstance(event, Awake):
                self.bus.publish(AWAKE, event.endpoint, {"until": event.until})
            elif isinstance(event, Sleeping):
                self.bus.publish(SLEEPING, event.endpoint, {"since": event.since})
            elif isinstance(event, QueuedRequestExpired):
                if isinstance(event.request, QueuedDownlink):
                    self._fail(
                        event.request,
                        DeviceTimeoutError(
                            f"{event.request.request.describe()} for {event.endpoint!r} expired "
                            "in the queue (the device did not wake up)"
                        ),
                    )
            elif isinstance(event, QueueDropped):
                for request in event.requests:
                    if isinstance(request, QueuedDownlink):
                        self._fail(
                            request,
                            UnknownClientError(f"{event.endpoint!r} is no longer registered"),
                        )

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        events = self.core.tick(self.clock())  # removes them from the store too
        for event in events:
            if isinstance(event, Expired):
                reg = event.registration
                log.info("registration of %s (%s) expired", reg.endpoint, reg.registration_id)
        self._handle_events(events)
        self._arm_timer()

    def _arm_timer(self) -> None:
        if self._coap is None:
            return
        deadline = self.core.next_deadline()
        if deadline is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
                self._timer_at = None
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= deadline:
            return  # the earlier timer fires first and re-arms for what is left
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, deadline - self.clock())
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)
        self._timer_at = deadline

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- queue mode ----------------------------------------------------------------------------
    async def _deliver(self, endpoint: str, entries: list[QueuedRequest[object]]) -> None:
        """Send what was queued for a client that just woke, in order, one at a time; on a
        timeout put the rest (and the one that failed) back for its next wake-up."""
        # one delivery at a time per client, in order (the lock lives as long as the client)
        lock = self._delivery_locks.setdefault(endpoint, asyncio.Lock())
        async with lock:
            for index, entry in enumerate(entries):
                job = entry.request
                if not isinstance(job, QueuedDownlink) or job.future.done():
                    continue
                registration = self.core.registrations.by_endpoint(endpoint)
                if registration is None:
                    self._fail(job, UnknownClientError(f"{endpoint!r} is no longer registered"))
                    continue
                try:
                    response = await self._execute(registration, job.request, job.timeout)
                except DeviceTimeoutError:
                    log.info(
                        "%s did not answer queued %s: keeping it and %d more for its next wake-up",
                        endpoint,
                        job.request.describe(),
                        len(entries) - index - 1,
                    )
                    self.core.queues.requeue(endpoint, entries[index:])
                    self._arm_timer()
                    return
                except Lwm2mError as exc:
                    self._fail(job, exc)
                    continue
                except Exception as exc:  # never lose the rest of the batch to a bug
                    log.exception(
                        "delivering queued %s to %s failed", job.request.describe(), endpoint
                    )
                    self._fail(job, exc)
                    continue
                log.info(
                    "delivered queued %s to %s: %s",
                    job.request.describe(),
                    endpoint,
                    response.dotted_code,
                )
                job.future.set_result(response)

    def _answered(
        self, endpoint: str, request_id: str, path: str, future: asyncio.Future[DeviceResponse]
    ) -> None:
        """A queued request got its answer (or failed): forget its record and tell the event
        stream, so that whoever got the 202 and its ``requestId`` learns the outcome
        (REQUEST_RESPONSE). Not when the server stops: the request is still owed, and the next
        start delivers it from the store."""
        if self._stopping:
            return
        if request_id in self._handed_over:  # another node took it: it answers (cluster)
            self._handed_over.discard(request_id)
            return
        if self._stores is not None:
            try:
                self._stores.queued_requests.remove(request_id)
            except StoreError as error:  # delivered again after a restart: at least once
                log.error(
                    "cannot forget the queued request %s of %s: %s", request_id, endpoint, error
                )
        data: dict[str, object] = {"requestId": request_id, "path": path, "delayed": True}
        if future.cancelled():
            data["error"] = "cancelled"
        elif (exc := future.exception()) is not None:
            data["error"] = exc.message if isinstance(exc, Lwm2mError) else str(exc)
        else:
            data["response"] = future.result()
        self.bus.publish(REQUEST_RESPONSE, endpoint, data)

    def _watch(self, job: QueuedDownlink) -> None:
        assert job.request_id is not None
        job.future.add_done_callback(
            functools.partial(self._answered, job.endpoint, job.request_id, str(job.request.path))
        )

    def _unlist_queued_cancel(self, endpoint: str, token: bytes) -> None:
        """An active cancel now waits for the device (queued, recorded): its observation is
        listed no more, on any node, as on one node (where ``_cancel`` removed it before
        queuing). The cancelling GET still goes out when the device wakes, from whichever
        node (docs/cluster.md, "Observations across nodes"). If the store cannot remove the
        record now, the node that sends the cancel does (as before): the request is queued,
        so the caller still gets its 202."""
        try:
            self.core.cancel_observation(token)
        except StoreError as exc:
            log.warning(
                "%s: observation %s stays listed until its queued cancel is sent: %s",
                endpoint,
                token.hex(),
                exc,
            )

    def _record_queued(self, job: QueuedDownlink, now: float) -> None:
        """Write the request just queued to the store before its 202 is answered: the 202 is
        a promise to deliver it, which must survive a restart. ``put`` is durable on return
        (sqlite commits at once even under the group commit; Redis has it). When it cannot
        be recorded the request is taken out of the queue again and the caller gets the
        ``StoreError`` (5.00) instead of a promise the server could not keep."""
        assert job.request_id is not None
        entry = StoredRequest(
            job.request_id,
            job.endpoint,
            job.request,
            created_at=now,
            ttl=self.core.queues.config.entry_ttl,
            timeout=job.timeout,
        )
        try:
            self.stores.queued_requests.put(entry)
        except StoreError:
            self.core.queues.discard(job.endpoint, job)
            raise

    def _restore_queued(self) -> None:
        """Start-up: put the requests a previous run queued (and acknowledged with 202) back
        in the queues, with their original times and ``requestId``s; their answers go out as
        REQUEST_RESPONSE events. A request of a device that is no longer registered is
        dropped (reported the same way)."""
        try:
            entries = self.stores.queued_requests.all()
        except StoreError as exc:
            log.error("cannot read the queued requests, none restored: %s", exc)
            return
        loop = asyncio.get_running_loop()
        restored = 0
        for entry in entries:
            job = QueuedDownlink(
                entry.endpoint, entry.request, entry.timeout, loop.create_future(), entry.request_id
            )
            self._watch(job)
            if self.core.registrations.by_endpoint(entry.endpoint) is None:
                self._fail(job, UnknownClientError(f"{entry.endpoint!r} is no longer registered"))
                continue
            self.core.queues.restore(entry.endpoint, job, entry.created_at, entry.expires_at)
            restored += 1
        if restored:
            log.info("restored %d queued requests from the store", restored)

    def adopt_queued(self, endpoint: str, entries: Sequence[StoredRequest]) -> None:
        """Cluster (docs/cluster.md, "Queued requests across nodes"): the device woke up on
        this node, which took over the requests other nodes queued for it (they are this
        node's in the store now): into this node's queue, delivered now if the device is
        awake, their answers published as REQUEST_RESPONSE events with their ``requestId``."""
        loop = asyncio.get_running_loop()
        for entry in entries:
            job = QueuedDownlink(
                entry.endpoint, entry.request, entry.timeout, loop.create_future(), entry.request_id
            )
            self._watch(job)
            self.core.queues.restore(endpoint, job, entry.created_at, entry.expires_at)
        due = self.core.queues.drain(endpoint, self.clock())
        if due:
            log.info("delivering %d requests other nodes queued for %s", len(due), endpoint)
            self._spawn(self._deliver(endpoint, due))
        self._arm_timer()

    def release_queued(self, endpoint: str, request_ids: Iterable[str]) -> int:
        """Cluster: another node took these queued requests over (the device woke up there):
        forget them here without an answer or an event (that node gives both)."""
        wanted = set(request_ids)
        released = 0
        for entry in self.core.queues.pending(endpoint):
            job = entry.request
            if isinstance(job, QueuedDownlink) and job.request_id in wanted:
                self.core.queues.discard(endpoint, job)
                self._handed_over.add(job.request_id)
                job.future.cancel()
                released += 1
        return released

    def _fail(self, job: QueuedDownlink, exc: Exception) -> None:
        if not job.future.done():
            job.future.set_exception(exc)
            _silence(job.future)

    def _all_queued(self) -> list[QueuedDownlink]:
        jobs = []
        for registration in self.core.registrations:
            for entry in self.core.queues.pending(registration.endpoint):
                if isinstance(entry.request, QueuedDownlink):
                    jobs.append(entry.request)
        return jobs

    def queued(self, endpoint: str) -> list[QueuedDownlink]:
        """The requests waiting for ``endpoint`` to wake up, oldest first (their ``future``
        resolves with the device's answer once delivered)."""
        return [
            e.request
            for e in self.core.queues.pending(endpoint)
            if isinstance(e.request, QueuedDownlink)
        ]

    # -- downlink --------------------------------------------------------------------------------
    def _timeout(self, timeout: float | None) -> float:
        return self.config.request_timeout if timeout is None else timeout

    async def _perform(
        self,
        endpoint: str,
        build: Callable[[Registration, ModelProvider], rq.DownlinkRequest],
        timeout: float | None,
    ) -> DeviceResponse:
        registration = self.client(endpoint)
        request = build(registration, self.registry_for(registration))
        seconds = self._timeout(timeout)
        loop = asyncio.get_running_loop()
        request_id = uuid.uuid4().hex
        job = QueuedDownlink(endpoint, request, seconds, loop.create_future(), request_id)
        now = self.clock()
        if not self.core.submit(endpoint, job, now=now):
            self._record_queued(job, now)
            if request.token is not None and self.cluster is not None:
                self._unlist_queued_cancel(endpoint, request.token)
            log.info("%s is sleeping: %s queued", endpoint, request.describe())
            self._arm_timer()
            self._watch(job)
            return DeviceResponse(QUEUED, queued=True, request_id=request_id)
        return await self._execute(registration, request, seconds)

    def registry_for(self, registration: Registration) -> ModelProvider:
        return models_for(self.registry, registration)

    async def _execute(
        self, registration: Registration, request: rq.DownlinkRequest, timeout: float
    ) -> DeviceResponse:
        started: list[bytes] = []  # the token of the observation the device accepted
        raw = None
        try:
            if self.cluster is not None:  # another node holds the device: it sends, we decode
                raw = await self.cluster.route(registration, request, timeout)
            if raw is None:
                raw = await self._send(registration, request, timeout, started)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):  # /metrics
                outcome = "timeout" if isinstance(exc, DeviceTimeoutError) else "error"
                self.counts.downlink[(request.operation, outcome)] += 1
            raise
        self.counts.downlink[(request.operation, f"{raw.code >> 5}.{raw.code & 0x1F:02d}")] += 1
        now = self.clock()
        models = self.registry_for(registration)
        try:
            response = rq.decode_response(request, raw, models)
        except Lwm2mError as exc:
            self._observation_failed(registration, started)
            log.warning(
                "%s answered %s with %d.%02d and an undecodable payload: %s",
                registration.endpoint,
                request.describe(),
                raw.code >> 5,
                raw.code & 0x1F,
                exc.message,
            )
            raise DeviceAnswerError(
                f"{registration.endpoint!r} answered {request.describe()} with an undecodable "
                f"payload (content format {raw.content_format}): {exc.message}"
            ) from None
        if not response.success:
            self._observation_failed(registration, started)
        if response.success and request.operation in ("read", "read_composite"):
            self._keep_telemetry(registration, request, response, models, now)
        return response

    async def send_routed(
        self, registration: Registration, request: rq.DownlinkRequest, timeout: float
    ) -> rq.RawResponse:
        """A downlink another node's API routed here because this node holds the device
        (docs/cluster.md): sent from our socket, an Observe's observation kept here (its
        notifications arrive here); the caller decodes the answer."""
        return await self._send(registration, request, timeout, [])

    async def _send(
        self,
        registration: Registration,
        request: rq.DownlinkRequest,
        timeout: float,
        started: list[bytes],
    ) -> rq.RawResponse:
        """Send from this node's socket and wait for the whole answer; an accepted Observe's
        token is appended to ``started``."""
        if self._downlink is None:
            raise RuntimeError("the server is not started")

        def observed(raw: rq.RawResponse) -> None:
            # Runs before any later datagram is read (see Downlink.send): the observation is
            # indexed and its first value stored before the first notification can arrive.
            now = self.clock()
            if self._observation_started(registration, request, raw, now):
                started.append(raw.token)
            models = self.registry_for(registration)
            with contextlib.suppress(Lwm2mError):  # an undecodable answer is reported below
                first = rq.decode_response(request, raw, models)
                self._keep_telemetry(registration, request, first, models, now)

        if request.token is not None and self.cluster is not None:
            # an active cancel, on the node that sends it (the holder, or the caller's node
            # when the holder is gone): the observation goes from core, store and CoAP layer
            # in one step, not before the request reached the holder (docs/cluster.md)
            self.core.cancel_observation(request.token)
            self._downlink.observations.forget(request.token, reactive=False)
        try:
            raw = await self._downlink.send(
                registration,
                request,
                timeout,
                on_observe=observed if request.observe == 0 else None,
            )
        except BaseException:
            self._observation_failed(registration, started)
            raise
        self.apply(self.core.heard_from(registration.registration_id, now=self.clock()))
        return raw

    def _keep_telemetry(
        self,
        registration: Registration,
        request: rq.DownlinkRequest,
        response: DeviceResponse,
        models: ModelProvider,
        now: float,
    ) -> None:
        nodes: Mapping[LwM2mPath, LwM2mNode | None] | None = response.nodes
        if response.node is not None:
            nodes = {request.path: response.node}
        if not nodes or request.operation not in (
            "read",
            "read_composite",
            "observe",
            "observe_composite",
        ):
            return
        points = points_from_nodes(registration.endpoint, nodes, now=now, models=models)
        points = self.map_telemetry(registration, points, "read")
        try:
            self.stores.telemetry.append_points(points)
        except StoreError as exc:
            log.error("telemetry of %s not stored: %s", registration.endpoint, exc)

    def _observation_started(
        self,
        registration: Registration,
        request: rq.DownlinkRequest,
        raw: rq.RawResponse,
        now: float,
    ) -> bool:
        """Index and store the observation the device accepted; False if it is not kept."""
        observation = Observation(
            token=raw.token,
            endpoint=registration.endpoint,
            registration_id=registration.registration_id,
            paths=request.targets,
            content_format=rq.answer_format(request, raw.content_format),
            created_at=now,
            composite=request.composite,
        )
        try:
            replaced = self.core.observation_started(observation)
        except Lwm2mError as exc:
            log.info("observation of %s not kept: %s", registration.endpoint, exc.message)
            return False
        replaced_live = replaced is not None and replaced.token != observation.token
        if replaced_live and replaced is not None and self._downlink is not None:
            self._downlink.observations.forget(replaced.token)  # its next notification: RST
        return True

    def _observation_failed(self, registration: Registration, tokens: Sequence[bytes]) -> None:
        """The Observe whose first answer indexed these observations failed after all (a later
        block timed out or was refused, the value does not decode): the caller is told it
        failed, so nothing of it may stay in core, store or CoAP layer. The device learns it
        from the RST its next notification gets."""
        for token in tokens:
            if self._downlink is not None:
                self._downlink.observations.forget(token)
            try:
                dropped = self.core.cancel_observation(token)
            except StoreError as exc:
                dropped = self.core.observations.cancel(token)
                log.error("could not remove observation %s from the store: %s", token.hex(), exc)
            if dropped is not None:
                log.info(
                    "observation of %s by %s dropped: the Observe failed",
                    " ".join(map(str, dropped.paths)),
                    registration.endpoint,
                )

    @staticmethod
    def _observe_request(
        registration: Registration, observation: Observation
    ) -> rq.DownlinkRequest:
        """The Observe that started ``observation``, as far as it can be rebuilt (its Accept is
        the format the device answered in)."""
        if observation.composite:
            return rq.read_composite(
                registration, observation.paths, observation.content_format, observe=0
            )
        return rq.observe(registration, observation.path, observation.content_format)

    def map_telemetry(
        self, registration: Registration, points: list[TelemetryPoint], source: str
    ) -> list[TelemetryPoint]:
        """Apply the ``telemetry_mapper`` (see ``TelemetryMapper``) to decoded points."""
        if self.telemetry_mapper is None:
            return points
        return self.telemetry_mapper(registration, points, source)

    # -- ServerOperations: registrations ---------------------------------------------------------
    def clients(self) -> list[Registration]:
        """Every registration: this process's cache on sqlite (the only process), the store
        itself on Redis, where other nodes register devices this one has never seen."""
        if self._redis is not None:
            registrations = self.stores.core.registrations()
        else:
            registrations = list(self.core.registrations)
        return sorted(registrations, key=lambda r: r.endpoint)

    def quarantined(self) -> int:
        return 0 if self._store is None else self._store.quarantined()

    def readiness(self) -> dict[str, str]:
        """What ``GET /api/ready`` checks, each ``ok`` or the reason it is not: the CoAP
        listeners are open, the store answers (sqlite: a read, and the file is writable;
        Redis: a PING). Liveness (``/api/health``) only says the process runs."""
        checks: dict[str, str] = {}
        up = self._coap is not None and self._coap.listening()
        checks["listeners"] = "ok" if up else "CoAP listeners are not open"
        try:
            if self._redis is not None:
                self._redis.ping()
            else:
                self.store.read("SELECT 1")
                if not os.access(self.config.database, os.W_OK):
                    raise StoreError(f"{self.config.database} is not writable")
            checks["store"] = "ok"
        except (StoreError, RuntimeError) as exc:
            checks["store"] = str(exc)
        return checks

    def limit_counters(self) -> dict[str, int]:
        """What each limit refused so far (docs/security.md, "Limits"), for ``/api/health``:
        the CoAP layer's (both listeners summed), Registers over the per-source rate,
        Observes over the per-client count, Updates refused by ``nosec_address_binding``."""
        counters = {
            "register_rate": self.register_limit.refused,
            "observations_per_client": self.observations_refused,
            "nosec_address_binding": 0 if self.uplink is None else self.uplink.address_refused,
            "dedup_full": 0,
            "dedup_evicted": 0,
            "block1_full": 0,
            "block1_evicted": 0,
            "too_large": 0,
        }
        coap = self._coap
        for driver in () if coap is None else (coap.udp, coap.coaps):
            if driver is not None:
                for name, count in driver.endpoint.limit_counters().items():
                    counters[name] += count
        return counters

    def _check_observation_limit(
        self, endpoint: str, paths: Sequence[LwM2mPath], composite: bool
    ) -> None:
        """``limits.observations_per_client``, before anything is sent: re-observing what is
        observed already replaces it and is always allowed. Observes in flight are not
        counted, so concurrent ones may pass the limit by their number."""
        limit = self.config.limits.observations_per_client
        if not limit:
            return
        registration = self.client(endpoint)
        observations = self.core.observations
        if self.cluster is not None:  # counted in the store: other nodes observe it too
            observations.refresh(endpoint)
        if observations.get(endpoint, paths, composite) is not None:
            return
        active = sum(1 for o in observations.for_registration(registration.registration_id)
                     if o.active)  # fmt: skip
        if active < limit:
            return
        self.observations_refused += 1
        if self._observe_log.allow(endpoint, time.monotonic()):
            log.warning(
                "Observe of %s on %s refused: it has %d observations (limits.observations_per_"
                "client)", " ".join(map(str, paths)), endpoint, active,
            )  # fmt: skip
        raise ObservationLimitError(
            f"{endpoint!r} has {active} active observations, the limit "
            f"(limits.observations_per_client); cancel one first"
        )

    def client(self, endpoint: str) -> Registration:
        registration = self.core.registrations.by_endpoint(endpoint)
        if registration is None:
            raise UnknownClientError(f"no client {endpoint!r} is registered")
        return registration

    def models_for(self, endpoint: str) -> ModelProvider:
        return self.registry_for(self.client(endpoint))

    # -- ServerOperations: device management ------------------------------------------------------
    async def read(
        self,
        endpoint: str,
        path: LwM2mPath,
        *,
        fmt: ContentFormat | None = None,
        timeout: float | None = None,
    ) -> DeviceResponse:
        return await self._perform(endpoint, lambda reg, _m: rq.read(reg, path, _fmt(fmt)), timeout)

    async def discover(
        self, endpoint: str, path: LwM2mPath, *, timeout: float | None = None
    ) -> DeviceResponse:
        return await self._perform(endpoint, lambda _r, _m: rq.discover(path), timeout)

    async def write(
        self,
        endpoint: str,
        path: LwM2mPath,
        node: LwM2mNode,
        *,
        replace: bool = True,
        fmt: ContentFormat | None = None,
        timeout: float | None = None,
    ) -> DeviceResponse:
        return await self._perform(
            endpoint,
            lambda reg, models: rq.write(
                reg, path, node, replace=replace, fmt=_fmt(fmt), models=models
            ),
            timeout,
        )

    async def write_attributes(
        self,
        endpoint: str,
        path: LwM2mPath,
        attributes: Mapping[str, str | None],
        *,
        timeout: float | None = None,
    ) -> DeviceResponse:
        return await self._perform(
            endpoint, lambda _r, _m: rq.write_attributes(path, attributes), timeout
        )

    async def execute(
        self,
        endpoint: str,
        path: LwM2mPath,
        arguments: str | None = None,
        *,
        timeout: float | None = None,
    ) -> DeviceResponse:
        return await self._perform(endpoint, lambda _r, _m: rq.execute(path, arguments), timeout)

    async def create(
        self,
        endpoint: str,
        path: LwM2mPath,
        instance: LwM2mObjectInstance,
        *,
        fmt: ContentFormat | None = None,
        timeout: float | None = None,
    ) -> DeviceResponse:
        registration_ids: list[str] = []
        chosen: list[tuple[str, LwM2mPath]] = []  # an id the server picked (reserved at once)

        def build(reg: Registration, models: ModelProvider) -> rq.DownlinkRequest:
            registration_ids.append(reg.registration_id)
            taken = (
                ()
                if path.object_id is None
                else self._created.taken(reg.registration_id, path.object_id)
            )
            request = rq.create(reg, path, instance, fmt=_fmt(fmt), models=models, taken=taken)
            if instance.id is None and request.paths:
                # reserved now, so that a concurrent or queued Create picks another id
                self._created.add(reg.registration_id, request.paths[0])
                chosen.append((reg.registration_id, request.paths[0]))
            return request

        try:
            response = await self._perform(endpoint, build, timeout)
        except DeviceTimeoutError:
            raise  # the client may have created it: a chosen id stays reserved
        except BaseException:
            for registration_id, created in chosen:
                self._created.discard(registration_id, created)
            raise
        if response.success:
            location = rq.location_instance(path, response.location)
            if location is not None:
                for registration_id in registration_ids:
                    self._created.add(registration_id, location)
        elif not response.queued:  # refused: the id is free again
            for registration_id, created in chosen:
                self._created.discard(registration_id, created)
        return response

    async def delete(
        self, endpoint: str, path: LwM2mPath, *, timeout: float | None = None
    ) -> DeviceResponse:
        return await self._perform(endpoint, lambda _r, _m: rq.delete(path), timeout)

    async def read_composite(
        self,
        endpoint: str,
        paths: Sequence[LwM2mPath],
        *,
        fmt: ContentFormat | None = None,
        timeout: float | None = None,
    ) -> DeviceResponse:
        return await self._perform(
            endpoint, lambda reg, _m: rq.read_composite(reg, paths, _fmt(fmt)), timeout
        )

    async def write_composite(
        self,
        endpoint: str,
        nodes: Mapping[LwM2mPath, LwM2mNode | None],
        *,
        fmt: ContentFormat | None = None,
        timeout: float | None = None,
    ) -> DeviceResponse:
        return await self._perform(
            endpoint, lambda reg, models: rq.write_composite(reg, nodes, _fmt(fmt), models), timeout
        )

    # -- ServerOperations: information reporting --------------------------------------------------
    async def observe(
        self,
        endpoint: str,
        path: LwM2mPath,
        *,
        fmt: ContentFormat | None = None,
        timeout: float | None = None,
    ) -> DeviceResponse:
        self._check_observation_limit(endpoint, (path,), False)
        return await self._perform(
            endpoint, lambda reg, _m: rq.observe(reg, path, _fmt(fmt)), timeout
        )

    async def observe_composite(
        self,
        endpoint: str,
        paths: Sequence[LwM2mPath],
        *,
        fmt: ContentFormat | None = None,
        timeout: float | None = None,
    ) -> DeviceResponse:
        self._check_observation_limit(endpoint, tuple(paths), True)
        return await self._perform(
            endpoint, lambda reg, _m: rq.read_composite(reg, paths, _fmt(fmt), observe=0), timeout
        )

    async def cancel_observation(
        self, endpoint: str, path: LwM2mPath, *, active: bool = True, timeout: float | None = None
    ) -> DeviceResponse:
        return await self._cancel(endpoint, (path,), False, active, timeout)

    async def cancel_composite_observation(
        self,
        endpoint: str,
        paths: Sequence[LwM2mPath],
        *,
        active: bool = True,
        timeout: float | None = None,
    ) -> DeviceResponse:
        return await self._cancel(endpoint, tuple(paths), True, active, timeout)

    async def _cancel(
        self,
        endpoint: str,
        paths: tuple[LwM2mPath, ...],
        composite: bool,
        active: bool,
        timeout: float | None,
    ) -> DeviceResponse:
        registration = self.client(endpoint)
        observation = self._observation_of(endpoint, paths, composite)
        if observation is None or not observation.active:
            raise Lwm2mError(
                f"{endpoint!r} has no {'composite ' if composite else ''}observation of "
                f"{' '.join(map(str, paths))}",
                code=ResponseCode.NOT_FOUND,
            )
        token = observation.token
        if not active:
            if self.cluster is not None and await self.cluster.route_forget(
                registration, token, self._timeout(timeout)
            ):
                self.core.observations.cancel(token)  # the holder removed the record
                return DeviceResponse(rq.DELETED)
            self.forget_observation(token)
            return DeviceResponse(rq.DELETED)
        if self.cluster is None:
            self.core.cancel_observation(token)
        else:  # the node that sends the cancel removes the record (``_send``)
            self.core.observations.cancel(token)

        def build(reg: Registration, _m: ModelProvider) -> rq.DownlinkRequest:
            return rq.cancel(self._observe_request(reg, observation), token)

        return await self._perform(endpoint, build, timeout)

    def _observation_of(
        self, endpoint: str, paths: tuple[LwM2mPath, ...], composite: bool
    ) -> Observation | None:
        """The observation of ``paths``: on a cluster as the store has it (another node may
        have started or cancelled it: docs/cluster.md, "Observations across nodes")."""
        index = self.core.observations
        if self.cluster is None:
            return index.get(endpoint, paths, composite)
        target = (composite, paths)
        return next((o for o in index.refresh(endpoint) if o.target == target), None)

    def forget_observation(self, token: bytes) -> None:
        """A passive cancel on this node: the store's record goes now, and the next
        notification gets a RST, which ends the observation on the device (RFC 7641 §3.6):
        from the CoAP layer for a live observation, else from the uplink (inactive, or unknown
        here)."""
        live = self._downlink is not None and self._downlink.observations.handle(token)
        if live and self._downlink is not None:
            self.core.cancel_observation(token)
            self._downlink.observations.forget(token)
        else:
            self.core.deactivate_observation(token)

    def observations(self, endpoint: str) -> list[Sequence[LwM2mPath]]:
        self.client(endpoint)
        index = self.core.observations
        found = index.for_endpoint(endpoint) if self.cluster is None else index.refresh(endpoint)
        return [o.paths for o in found if o.active]

    # -- ServerOperations: telemetry and events ---------------------------------------------------
    def telemetry_latest(self, endpoint: str) -> dict[str, TelemetryPoint]:
        return self.stores.telemetry.latest(endpoint)

    def telemetry_history(
        self,
        endpoint: str,
        *,
        key: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 1000,
    ) -> list[TelemetryPoint]:
        if key is not None:
            return self.stores.telemetry.history(
                endpoint, key, since_ms=since_ms, until_ms=until_ms, limit=limit
            )
        points: list[TelemetryPoint] = []
        for path in self.stores.telemetry.latest(endpoint):
            points += self.stores.telemetry.history(
                endpoint, path, since_ms=since_ms, until_ms=until_ms, limit=limit
            )
        points.sort(key=lambda p: p.ts_ms, reverse=True)
        return points[:limit]

    def events(self, after: int | None = None) -> Subscription:
        return self.bus.subscribe(after)

    # -- telemetry retention (lwm2m_server.telemetry_retention) ----------------------------------
    def _retention_pruner(self) -> RetentionPruner:
        deployment = parse_duration(self.config.telemetry.retention)

        def retention_for(endpoint: str) -> float | None:
            if self.profiles is not None:
                own = self.profiles.catalog.resolve(endpoint)[0].retention
                if own is not None:
                    return own or None  # 0.0: this profile keeps its history forever
            return deployment

        def active() -> bool:
            if deployment is not None:
                return True
            profiles = [] if self.profiles is None else self.profiles.catalog.profiles()
            return any(p.retention for p in profiles)

        store: Any = self.stores.telemetry
        return RetentionPruner(store, retention_for, active=active, clock=self.clock)

    # -- ServerOperations: presence ----------------------------------------------------------------
    def is_sleeping(self, endpoint: str) -> bool | None:
        """From the core's queue-mode state, the one that decides whether a request is queued
        (never from the lossy event stream)."""
        registration = self.core.registrations.by_endpoint(endpoint)
        if registration is None or not registration.queue_mode:
            return None
        return not self.core.queues.is_awake(endpoint, self.clock())


@attrs.frozen
class _Stores:
    """The stores the server uses, on the configured engine (``Lwm2mServer._open_stores``)."""

    committer: Committer
    """What the CoAP drivers' flush commits before the iteration's replies leave."""
    core: CoreStore
    telemetry: TelemetryStore
    credentials: CredentialStore
    profiles: ProfileStore
    device_state: DeviceStateStore
    dtls_sessions: DtlsSessionStore
    api_tokens: ApiTokenStore
    queued_requests: QueuedRequestStore
    """Requests queued for sleeping devices (they survive a restart)."""
    firmware_jobs: JobStore
    """Firmware/software update jobs (resumed at start)."""


ASYNC_COMMIT_ENV = "PYLWM2M_REDIS_ASYNC_COMMIT"
"""``1``: the Redis group commit is asynchronous (an experiment's switch, not a setting: on the
2-core benchmark machine it cost more CPU per Update than it saved; docs/performance.md)."""


@attrs.frozen
class _CommitBoth:
    """The group commit of a node on Redis: the held Updates in Redis, then the node's sqlite
    file (telemetry history); the replies leave only if both succeeded."""

    first: AsyncCommitter
    second: Committer

    def commit(self) -> bool:
        ok = self.first.commit()
        return self.second.commit() and ok

    def commit_async(self, done: Callable[[bool], None]) -> None:
        """The sqlite file at once, Redis asynchronously (docs/cluster.md, "Group commit on
        Redis"): the replies leave when Redis answered, if both succeeded."""
        local_ok = self.second.commit()
        if local_ok:
            self.first.commit_async(done)
        else:
            self.first.commit_async(lambda ok: done(False))

    def poll(self) -> None:
        self.first.poll()


def _fmt(fmt: ContentFormat | int | None) -> int | None:
    return None if fmt is None else int(fmt)
