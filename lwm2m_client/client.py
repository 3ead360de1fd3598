"""``Lwm2mClient``: one LwM2M client talking to one LwM2M server over aiocoap.

Typical use (tests, the CLI, scripts)::

    async with Lwm2mClient("dev-1", "coap://127.0.0.1:5683", lifetime=60) as client:
        client.set_value("/3303/0/5700", 23.5)      # notifies observers
        await client.send(["/3303/0/5700"])          # LwM2M Send to /dp

``async with`` = ``start()`` (bind the socket) + ``register()``; leaving it deregisters and
stops. Once registered the client keeps its registration alive by itself: an Update before the
lifetime ends, a fresh Register if the server forgot it (Update answered 4.04), retries with
backoff while the server is unreachable. It also sends an Update when the server changes the
lifetime or binding in the Server object, when object instances appear or disappear, and when
the Registration Update Trigger (/1/0/8) is executed.

The server-facing logic is elsewhere (``management``, ``observe``); this module owns the
uplink (Register, Update, De-register, Send) and the lifecycle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from types import TracebackType
from typing import Any

import aiocoap
from aiocoap.numbers.codes import Code

from keystore.coaps.client import PskInput, RpkInput, X509Input, client_dtls_config
from keystore.dtls import ClientConfig
from keystore.modes import SecurityMode
from object_models.content_format import ContentFormat
from object_models.errors import Lwm2mError
from object_models.model import ModelProvider
from object_models.path import LwM2mPath

from . import link_format
from .accounts import ServerAccount, server_accounts
from .attributes import AttributeStore
from .bootstrap import BootstrapInterface, bootstrap_accounts, factory_account
from .bootstrap_session import BootstrapFailed, Bootstrapper, BootstrapSettings
from .coap_resource import Lwm2mResource, RequestLogger
from .device import build_default_tree
from .firmware import FirmwareUpdate, PackageReceiver, UpdateSimulation
from .management import DeviceManagement, available_formats, registration_formats, send_payload
from .models import default_models
from .objects import ObjectTree, not_allowed
from .observe import Observations
from .outage import Outage
from .queue_mode import DEFAULT_AWAKE_TIME, SleepGate
from .registration import RegistrationParams, changed_params, registration_id, update_delay
from .software import SoftwareManagement
from .transport import ServerAddress, create_context, local_address, parse_server_uri
from .update_host import ClientUpdateHost

log = logging.getLogger(__name__)

SERVER_INSTANCE = 0
"""The Server instance used unless bootstrap gave the account another one."""
LIFETIME, DISABLE, DISABLE_TIMEOUT, BINDING, UPDATE_TRIGGER = 1, 4, 5, 7, 8
BOOTSTRAP_TRIGGER, MUTE_SEND = 9, 23


class Lwm2mClientError(Exception):
    """An uplink operation failed: the server refused it (``code`` set) or did not answer."""

    def __init__(self, message: str, code: Any = None) -> None:
        super().__init__(message)
        self.code = code


class Lwm2mClient:
    """An LwM2M client with the demo device's objects unless ``objects`` is given.

    Parameters:
        endpoint: the endpoint client name (``ep``).
        server_uri: ``coap://host[:port]`` or ``coaps://host[:port]`` (DTLS, with one of
            ``psk``/``rpk``/``x509``).
        psk: ``(identity, key)`` for PSK mode.
        rpk: ``(device private key, server public key)`` for raw public key mode.
        x509: ``(device private key, device certificate chain, server CA or certificate)``.
        lifetime: registration lifetime in seconds (also /1/0/1 of the default objects).
        lwm2m_version: "1.0", "1.1" or "1.2" — changes the ``b``/``Q`` spelling and the default
            content format of Read.
        binding: "U" (queue mode is the separate ``queue_mode`` flag).
        queue_mode: register with Q and simulate a sleeping device (see ``queue_mode``).
        awake_time: how long the device stays reachable after it sent anything (queue mode).
        objects: an ``ObjectTree`` to serve instead of the demo device.
        models: the object models (default: the shipped registry, see ``models``).
        formats: the content formats the client produces (default: every available codec).
        bind_host: local address (default 127.0.0.1 for a loopback server, else all).
        auto_update: keep the registration alive automatically (off for step-by-step tests).
        on_request: ``callback(request, response)`` after each downlink request (logging).
        update_objects: serve Firmware Update (/5/0) and Software Management (/9/0…) — by
            default only with the demo device's objects (see ``firmware``, ``software``).
        update_simulation: the failure knobs of those objects (``UpdateSimulation``).
        software_instances: how many Software Management instances (/9/0, /9/1, …).
        ca_file: PEM certificates trusted for ``https://`` Package URIs instead of the system's
            trust store (a server with a private CA or a self-signed certificate).
    """

    def __init__(
        self,
        endpoint: str,
        server_uri: str = "coap://127.0.0.1:5683",
        *,
        lifetime: int = 300,
        lwm2m_version: str = "1.1",
        binding: str = "U",
        queue_mode: bool = False,
        awake_time: float = DEFAULT_AWAKE_TIME,
        objects: ObjectTree | None = None,
        models: ModelProvider | None = None,
        formats: Sequence[int] | None = None,
        bind_host: str | None = None,
        auto_update: bool = True,
        on_request: RequestLogger | None = None,
        psk: PskInput | None = None,
        rpk: RpkInput | None = None,
        x509: X509Input | None = None,
        bootstrap: BootstrapSettings | None = None,
        update_objects: bool | None = None,
        update_simulation: UpdateSimulation | None = None,
        software_instances: int = 1,
        ca_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.bootstrapper: Bootstrapper | None = None
        if bootstrap is not None:
            # The credentials are the bootstrap account's; the LwM2M server comes from bootstrap.
            self.server = parse_server_uri(bootstrap.uri)
            self.dtls = _dtls_for(self.server, psk, rpk, x509)
            self.bootstrapper = Bootstrapper(bootstrap, self.server, self.dtls)
        else:
            self.server = parse_server_uri(server_uri)
            self.dtls = _dtls_for(self.server, psk, rpk, x509)
        self.server_instance = SERVER_INSTANCE
        self.params = RegistrationParams(
            endpoint=endpoint,
            lifetime=lifetime,
            lwm2m_version=lwm2m_version,
            binding=binding,
            queue_mode=queue_mode,
        )
        if update_objects is None:
            update_objects = objects is None
        if objects is None:
            objects = build_default_tree(
                models if models is not None else default_models(),
                endpoint=endpoint,
                server_uri=server_uri,
                lifetime=lifetime,
                binding=binding,
            )
        self.objects = objects
        self.outage = Outage()
        self.update_simulation = update_simulation or UpdateSimulation()
        self.update_host = ClientUpdateHost(self, self.update_simulation, ca_file=ca_file)
        self.firmware: FirmwareUpdate | None = None
        self.software: list[SoftwareManagement] = []
        if update_objects:
            self._add_update_objects(software_instances)
        self.attributes = AttributeStore()
        self.formats = tuple(formats) if formats is not None else available_formats()
        self.management = DeviceManagement(
            objects, self.attributes, lwm2m_version=lwm2m_version, formats=self.formats
        )
        self.observations = Observations(objects, self.attributes, server_instance=SERVER_INSTANCE)
        self.bootstrap_interface = BootstrapInterface(
            objects,
            self.management,
            lwm2m_version=lwm2m_version,
            on_change=self._install_executables,
        )
        self.bootstrapped = bootstrap is None
        self.gate = SleepGate(awake_time, enabled=queue_mode)
        self.bind_host = bind_host
        self.auto_update = auto_update
        self.on_request = on_request

        self.context: Any = None
        self.location: tuple[str, ...] | None = None
        self._registered_params: RegistrationParams | None = None
        self._objects_dirty = False
        self._update_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

        objects.add_listener(self._values_changed)
        objects.add_structure_listener(self._structure_changed)
        self._install_executables()

    @classmethod
    def from_bootstrap(
        cls,
        endpoint: str,
        bootstrap_uri: str,
        *,
        psk: PskInput | None = None,
        rpk: RpkInput | None = None,
        x509: X509Input | None = None,
        pack: bool = False,
        finish_timeout: float = 60.0,
        attempts: int | None = 5,
        retry_delay: float = 1.0,
        preferred_format: int | None = None,
        bootstrap_instance: int = 0,
        **options: Any,
    ) -> Lwm2mClient:
        """A device that holds only its factory Bootstrap-Server account (Security instance
        ``bootstrap_instance``).

        ``psk``/``rpk``/``x509`` authenticate it to the bootstrap server (``coaps://``).
        ``async with`` (or ``bootstrap()`` then ``register()``) bootstraps, classic or
        ``pack`` (1.2 Bootstrap-Pack), then registers with the first LwM2M server account
        it was given, over NoSec or DTLS with the credentials from its Security instance.
        Other ``options`` are those of the constructor.
        """
        models = options.pop("models", None) or default_models()
        objects = options.pop("objects", None)
        if objects is None:
            objects = build_default_tree(
                models, endpoint=endpoint, server_uri=bootstrap_uri,
                lifetime=options.get("lifetime", 300),
            )  # fmt: skip
        mode, identity, secret = SecurityMode.NOSEC, b"", b""
        if psk is not None:
            raw = psk[0]
            mode, secret = SecurityMode.PSK, bytes(psk[1])
            identity = raw.encode() if isinstance(raw, str) else bytes(raw)
        elif rpk is not None:
            mode = SecurityMode.RPK
        elif x509 is not None:
            mode = SecurityMode.X509
        factory_account(objects, bootstrap_uri, int(mode), identity, secret,
                        instance_id=bootstrap_instance)  # fmt: skip
        settings = BootstrapSettings(
            bootstrap_uri, pack=pack, finish_timeout=finish_timeout, attempts=attempts,
            retry_delay=retry_delay, preferred_format=preferred_format,
        )  # fmt: skip
        return cls(
            endpoint, bootstrap_uri, objects=objects, models=models, bootstrap=settings,
            psk=psk, rpk=rpk, x509=x509, **options,
        )  # fmt: skip

    # -- properties -----------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return self.params.endpoint

    @property
    def registration_id(self) -> str | None:
        return None if self.location is None else registration_id(self.location)

    @property
    def registered(self) -> bool:
        return self.location is not None

    @property
    def local_address(self) -> tuple[str, int] | None:
        return None if self.context is None else local_address(self.context)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the local socket (serving the server's requests) without registering yet."""
        if self.context is not None:
            return
        site = Lwm2mResource(
            self.management, self.observations, on_request=self.on_request,
            on_block1=self._block1,
        )  # fmt: skip
        self.context = await create_context(self.server, site, self.bind_host, self.dtls)
        if self.params.queue_mode:
            self.gate.install(self.context)
        self.outage.install(self.context)
        log.info("%s listening on %s", self.endpoint, self.local_address)

    async def stop(self) -> None:
        """Cancel timers and observations and close the socket (no De-register: see ``close``)."""
        self._stopping = True
        for task in [*self._tasks, *([self._update_task] if self._update_task else [])]:
            task.cancel()
        for task in [*self._tasks, *([self._update_task] if self._update_task else [])]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._update_task = None
        receivers: list[PackageReceiver[Any, Any]] = [*self.software]
        if self.firmware is not None:
            receivers.insert(0, self.firmware)
        for receiver in receivers:
            await receiver.close()
        await self.update_host.close()
        self.observations.clear()
        if self.context is not None:
            await self.context.shutdown()
            self.context = None

    async def close(self) -> None:
        """De-register (if registered and the server answers) and stop."""
        await self._try_deregister("De-register")
        await self.stop()

    async def _try_deregister(self, what: str) -> None:
        """De-register if registered, but never fail for it: a server that does not answer
        within 10 s, or refuses, is logged and left behind (``what`` says when)."""
        if self.registered and self.context is not None:
            try:
                await asyncio.wait_for(self.deregister(), 10)
            except (Lwm2mClientError, TimeoutError) as exc:
                log.warning("%s failed: %s", what, exc)

    async def __aenter__(self) -> Lwm2mClient:
        if self.bootstrapper is not None:
            await self.bootstrap_and_register()
            return self
        await self.start()
        await self.register()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- Bootstrap interface ---------------------------------------------------------------------
    async def bootstrap(self) -> ServerAccount:
        """Client-initiated bootstrap (or Bootstrap-Pack), retried with backoff.

        Leaves the current LwM2M server first (De-register, socket closed), since the
        bootstrap may rewrite its account. Afterwards the client points at the first LwM2M
        server account it was given; ``register()`` (or ``async with``) registers there.
        """
        bootstrapper = self._bootstrapper()
        await self._leave_server()
        try:
            await bootstrapper.run(
                self.bootstrap_interface, endpoint=self.endpoint,
                lwm2m_version=self.params.lwm2m_version, bind_host=self.bind_host,
            )  # fmt: skip
        except BootstrapFailed as exc:
            raise Lwm2mClientError(f"bootstrap failed: {exc}") from exc
        return self._use_account()

    async def bootstrap_and_register(self) -> str:
        """Bootstrap (unless done), then register; a refused Register bootstraps again.

        Core §6.2.1.1 (Server resource 16, "Bootstrap on Registration Failure", default true):
        credentials the LwM2M server does not accept mean the configuration is stale or the
        bootstrap server never committed it (our answer to its Finish may have been lost).
        Tried ``attempts`` times like the bootstrap itself.
        """
        settings = self._bootstrapper().settings
        attempt = 0
        while True:
            attempt += 1
            if not self.bootstrapped:
                await self.bootstrap()
            try:
                await self.start()
                return await self.register()
            except Lwm2mClientError as exc:
                if exc.code is None or (
                    settings.attempts is not None and attempt >= settings.attempts
                ):
                    raise
                log.warning("Register refused (%s): bootstrapping again", exc)
                self.bootstrapped = False
                await asyncio.sleep(settings.retry_delay)

    def _bootstrapper(self) -> Bootstrapper:
        """Ours, or one for the Bootstrap-Server account in the Security object."""
        if self.bootstrapper is None:
            try:
                self.bootstrapper = Bootstrapper.from_tree(self.objects)
            except ValueError as exc:
                raise Lwm2mClientError(f"unusable Bootstrap-Server account: {exc}") from exc
            if self.bootstrapper is None:
                raise Lwm2mClientError("this client has no Bootstrap-Server account")
        return self.bootstrapper

    def _use_account(self) -> ServerAccount:
        """Point the client at the first LwM2M server account bootstrap wrote."""
        accounts = server_accounts(self.objects)
        if not accounts:
            raise Lwm2mClientError("bootstrap left no LwM2M server account")
        account = accounts[0]
        try:
            self.server = parse_server_uri(account.uri)
            self.dtls = account.dtls_config()
        except ValueError as exc:
            raise Lwm2mClientError(f"unusable server account /0/{account.security_instance}: "
                                   f"{exc}") from exc  # fmt: skip
        self.server_instance = account.server_instance
        self.observations.server_instance = account.server_instance
        self.bootstrapped = True
        self._install_executables()
        self._restore_update_objects()
        log.info("%s bootstrapped: LwM2M server %s (ssid %d)",
                 self.endpoint, account.uri, account.short_server_id)  # fmt: skip
        return account

    async def _leave_server(self) -> None:
        await self._try_deregister("De-register before bootstrap")
        self._cancel_update()
        self.location = None
        self.observations.clear()
        if self.context is not None:
            context, self.context = self.context, None
            await context.shutdown()

    async def _rebootstrap(self) -> None:
        """Execute /1/x/9 (Bootstrap-Request Trigger): bootstrap again, then register."""
        await asyncio.sleep(0.05)  # the 2.04 to the Execute goes out before the socket closes
        self.bootstrapped = False
        try:
            await self.bootstrap_and_register()
        except Lwm2mClientError as exc:
            log.warning("bootstrap triggered by the server failed: %s", exc)

    # -- Client Registration interface ----------------------------------------------------------
    def registration_payload(self) -> str:
        return link_format.registration_links(self.objects, registration_formats(self.formats))

    async def register(self) -> str:
        """Register and return the registration id; starts the automatic Updates."""
        await self.start()
        self._stopping = False
        self._sync_params_from_server_object()
        response = await self._request(
            Code.POST,
            ["rd"],
            self.params.register_query(),
            self.registration_payload().encode(),
            ContentFormat.LINK,
        )
        if response.code != Code.CREATED:
            raise Lwm2mClientError(f"Register refused: {response.code}", response.code)
        self.location = tuple(response.opt.location_path)
        self._registered_params = self.params
        self._objects_dirty = False
        log.info("%s registered as %s", self.endpoint, self.registration_id)
        self._schedule_update()
        return self.registration_id or ""

    async def update(
        self, *, objects: bool = False, force_params: bool = False, **changes: Any
    ) -> None:
        """Update the registration.

        ``changes`` may set ``lifetime``, ``binding``, ``queue_mode`` or ``sms``; only changed
        values are sent. ``objects=True`` (or instances having changed since the last Register
        or Update) adds the object list. A 4.04 answer means the server lost the registration:
        the client registers again.
        """
        if self.location is None:
            raise Lwm2mClientError("not registered")
        if changes:
            self.params = changed_params(self.params, changes)
            self._write_server_object()
        previous = None if force_params else self._registered_params
        query = self.params.update_query(previous)
        send_objects = objects or self._objects_dirty
        payload = self.registration_payload().encode() if send_objects else b""
        response = await self._request(
            Code.POST,
            list(self.location),
            query,
            payload,
            ContentFormat.LINK if send_objects else None,
        )
        if response.code == Code.NOT_FOUND:
            log.info("server forgot registration %s: registering again", self.registration_id)
            self.location = None
            await self.register()
            return
        if response.code != Code.CHANGED:
            raise Lwm2mClientError(f"Update refused: {response.code}", response.code)
        self._registered_params = self.params
        if send_objects:
            self._objects_dirty = False
        log.debug("%s updated (%s)", self.endpoint, "&".join(query) or "no parameters")
        self._schedule_update()

    async def deregister(self) -> None:
        if self.location is None:
            raise Lwm2mClientError("not registered")
        location = self.location
        self._cancel_update()
        self.location = None
        self.observations.clear()
        response = await self._request(Code.DELETE, list(location))
        if response.code != Code.DELETED:
            raise Lwm2mClientError(f"De-register refused: {response.code}", response.code)
        log.info("%s deregistered", self.endpoint)

    # -- Information Reporting: Send ------------------------------------------------------------
    async def send(
        self,
        paths: Iterable[LwM2mPath | str],
        *,
        content_format: int = ContentFormat.SENML_CBOR,
        timestamp: float | None = None,
    ) -> Any:
        """LwM2M Send (1.1+): POST /dp with the current values of ``paths``, timestamped.

        Returns the response code; raises when Mute Send (/1/0/23) is on or the server refuses.
        """
        if self.params.lwm2m_version == "1.0":
            raise Lwm2mClientError("Send does not exist in LwM2M 1.0")
        if self._server_value(MUTE_SEND) is True:
            raise Lwm2mClientError("Send is muted by the server (/1/0/23)")
        resolved = [p if isinstance(p, LwM2mPath) else LwM2mPath.parse(p) for p in paths]
        now = time.time() if timestamp is None else timestamp
        payload = send_payload(self.objects, resolved, content_format, now)
        response = await self._request(Code.POST, ["dp"], [], payload, content_format)
        if not response.code.is_successful():
            raise Lwm2mClientError(f"Send refused: {response.code}", response.code)
        return response.code

    # -- local device API -----------------------------------------------------------------------
    def set_value(self, path: LwM2mPath | str, value: object) -> None:
        """Change a value as the device would (notifies observers, honouring their attributes)."""
        self.objects.set_value(path, value)

    def get_value(self, path: LwM2mPath | str) -> object:
        return self.objects.get_value(path)

    def sleep(self) -> None:
        """Queue mode: fall asleep now instead of after the awake window."""
        self.gate.sleep()

    async def reboot(self, downtime: float, apply: Callable[[], None] | None = None) -> str:
        """Simulate a reboot: drop off the network without De-register (observations and the
        registration are lost, as on a real device), stay down ``downtime`` seconds, run
        ``apply`` (the new firmware is now running), then send a new Register (retried with
        backoff while the server does not answer). Returns the new registration id."""
        self._cancel_update()
        self.location = None
        self.observations.clear()
        if self.context is not None:
            context, self.context = self.context, None
            await context.shutdown()
        await asyncio.sleep(downtime)
        if apply is not None:
            apply()
        await self.start()
        retry = 1.0
        while True:
            try:
                return await self.register()
            except Lwm2mClientError as exc:
                log.warning("Register after reboot failed: %s; retry in %.0fs", exc, retry)
                await asyncio.sleep(retry)
                retry = min(retry * 2, 60.0)

    async def update_quietly(self, *, objects: bool = False) -> None:
        """A registration Update whose failure is only logged (background work)."""
        if self.registered:
            try:
                await self.update(objects=objects)
            except Lwm2mClientError as exc:
                log.warning("Update failed: %s", exc)

    # -- internals ------------------------------------------------------------------------------
    async def _request(
        self,
        code: Any,
        path: list[str],
        query: Sequence[str] = (),
        payload: bytes = b"",
        content_format: int | None = None,
    ) -> Any:
        if self.context is None:
            raise Lwm2mClientError("client not started")
        message = aiocoap.Message(code=code, uri=self.server.base_uri, payload=payload)
        message.opt.uri_path = tuple(path)
        message.opt.uri_query = tuple(query)
        if content_format is not None:
            message.opt.content_format = content_format
        try:
            return await self.context.request(message).response
        except aiocoap.error.Error as exc:
            raise Lwm2mClientError(f"{code} /{'/'.join(path)} failed: {exc!r}") from exc

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.warning("background task failed: %r", t.exception())

        task.add_done_callback(done)

    def _cancel_update(self) -> None:
        if self._update_task is not None and self._update_task is not asyncio.current_task():
            self._update_task.cancel()
        self._update_task = None

    def _schedule_update(self) -> None:
        if not self.auto_update or self._stopping:
            return
        self._cancel_update()
        self._update_task = asyncio.get_running_loop().create_task(self._update_loop())

    async def _update_loop(self) -> None:
        """Keep the registration alive; back off while the server cannot be reached."""
        await asyncio.sleep(update_delay(self.params.lifetime))
        retry = 1.0
        while not self._stopping:
            try:
                if self.location is None:
                    await self.register()
                else:
                    await self.update()
                return  # update()/register() scheduled the next round
            except Lwm2mClientError as exc:
                log.warning("keeping the registration alive failed: %s; retry in %.0fs", exc, retry)
                if exc.code is not None:
                    self.location = None  # refused: start over with a Register
                await asyncio.sleep(retry)
                retry = min(retry * 2, 60.0)

    def _server_path(self, resource_id: int) -> LwM2mPath:
        return LwM2mPath(1, self.server_instance, resource_id)

    def _server_value(self, resource_id: int) -> object:
        """A resource of our Server instance, or None when it is absent."""
        try:
            return self.objects.get_value(self._server_path(resource_id))
        except (Lwm2mError, ValueError):
            return None

    def _sync_params_from_server_object(self) -> None:
        """Lifetime and binding come from the Server object when it has them."""
        changes: dict[str, Any] = {}
        lifetime = self._server_value(LIFETIME)
        if isinstance(lifetime, int) and lifetime > 0 and lifetime != self.params.lifetime:
            changes["lifetime"] = lifetime
        binding = self._server_value(BINDING)
        if isinstance(binding, str) and binding:
            binding = binding.replace("Q", "")  # 1.0 spelling; queue mode is our own flag
            if binding != self.params.binding:
                changes["binding"] = binding
        if changes:
            self.params = changed_params(self.params, changes)

    def _write_server_object(self) -> None:
        """After ``update(lifetime=…)``: the Server object shows what was registered."""
        if self._server_value(LIFETIME) not in (None, self.params.lifetime):
            self.objects.set_value(self._server_path(LIFETIME), self.params.lifetime)
        if self._server_value(BINDING) not in (None, self.params.binding):
            self.objects.set_value(self._server_path(BINDING), self.params.binding)

    def _values_changed(self, paths: Sequence[LwM2mPath]) -> None:
        """A server Write of lifetime or binding calls for an Update (Core §6.2.2)."""
        if not self.registered or self._stopping:
            return
        if any(p in (self._server_path(LIFETIME), self._server_path(BINDING)) for p in paths):
            before = self.params
            self._sync_params_from_server_object()
            if self.params != before:
                self._spawn(self._safe_update())

    def _structure_changed(self) -> None:
        self._objects_dirty = True
        if self.registered and not self._stopping:
            self._spawn(self._safe_update())

    async def _safe_update(self) -> None:
        await asyncio.sleep(0)  # let the response to the triggering request go out first
        if self.registered:
            try:
                await self.update()
            except Lwm2mClientError as exc:
                log.warning("Update failed: %s", exc)

    def _add_update_objects(self, software_instances: int) -> None:
        """Objects 5 and 9 (before the listeners: they are part of the first Register)."""
        running = LwM2mPath(3, 0, 3)  # Device Firmware Version
        version = self.objects.get_value(running) if self.objects.exists(running) else "0.1.0"
        self.firmware = FirmwareUpdate(
            self.objects, self.update_host, self.update_simulation, pkg_version=str(version)
        )
        self.software = [
            SoftwareManagement(
                self.objects, self.update_host, self.update_simulation, instance_id=i
            )
            for i in range(software_instances)
        ]

    def _restore_update_objects(self) -> None:
        """A Bootstrap-Delete of ``/`` removes /5/0 and /9/x too, but they are the device's
        own update machinery, not configuration: they come back after bootstrap."""
        if self.firmware is not None and not self.objects.exists(self.firmware.base):
            self.firmware = FirmwareUpdate(
                self.objects, self.update_host, self.update_simulation,
                pkg_version=str(self.objects.get_value(LwM2mPath(3, 0, 3))),
            )  # fmt: skip
        if self.firmware is not None:
            self.firmware.refresh_protocols()  # CoAPS or not: the account bootstrap gave
        for index, software in enumerate(self.software):
            if not self.objects.exists(software.base):
                self.software[index] = SoftwareManagement(
                    self.objects, self.update_host, self.update_simulation,
                    instance_id=software.base.ids[1],
                )  # fmt: skip

    def _block1(self, path: LwM2mPath, number: int, more: bool) -> None:
        """A Block1 block of a Write: tell the object whose Package it is (push delivery)."""
        if path.resource_id is None or path.depth != 3:
            return
        if self.firmware is not None and path == self.firmware.base.child(0):
            self.firmware.push_block(number, more)
        for software in self.software:
            if path == software.base.child(2):
                software.push_block(number, more)

    def _install_executables(self) -> None:
        """Server-object executables need the client: Update Trigger, Disable, and the
        Bootstrap-Request Trigger. Run again after bootstrap created Server instances."""
        tree = self.objects

        def update_trigger(_args: str) -> None:
            self._spawn(self._safe_update())

        def disable(_args: str) -> None:
            self._spawn(self._disable())

        def bootstrap_trigger(_args: str) -> None:
            # as a device: without a Bootstrap-Server account in /0 (one a bootstrap server
            # overwrote, say) there is nothing to bootstrap with, whatever we started with
            if not bootstrap_accounts(tree):
                raise not_allowed(LwM2mPath(1), "no Bootstrap-Server account to bootstrap with")
            self._spawn(self._rebootstrap())

        for i in tree.instance_ids(1):
            tree.set_executable(LwM2mPath(1, i, UPDATE_TRIGGER), update_trigger)
            tree.set_executable(LwM2mPath(1, i, DISABLE), disable)
            model = tree.resource_model(1, BOOTSTRAP_TRIGGER)
            if model is not None and model.operations.executable:
                tree.set_executable(LwM2mPath(1, i, BOOTSTRAP_TRIGGER), bootstrap_trigger)

    async def _disable(self) -> None:
        """Execute /1/0/4: de-register, stay away for the Disable Timeout, register again."""
        await asyncio.sleep(0)
        value = self._server_value(DISABLE_TIMEOUT)
        timeout = value if isinstance(value, int) and value >= 0 else 86400
        if self.registered:
            await self.deregister()
        await asyncio.sleep(timeout)
        await self.register()


def _dtls_for(
    server: ServerAddress, psk: PskInput | None, rpk: RpkInput | None, x509: X509Input | None
) -> ClientConfig | None:
    if server.scheme == "coaps":
        return client_dtls_config(psk=psk, rpk=rpk, x509=x509)
    if psk or rpk or x509:
        raise ValueError("DTLS credentials given for a coap:// server (use coaps://)")
    return None
