"""``BootstrapServer``: the running bootstrap server (CoAP listeners, stores, sessions).

It owns the pieces and the I/O around the sans-IO core: the runtime's ``CoapServer`` (our own
CoAP layer on the NoSec UDP and the CoAPs listeners, ``lwm2m_runtime.server``), the shared
keystore (the LwM2M server's sqlite file), its own store, and one asyncio task per running
session that sends the session's requests and feeds back answers and timeouts (a task per
session, not per message: a session waits for the client between its steps).

The operations at the bottom (configs, devices, sessions, server-initiated bootstrap) are what
the HTTP API and the CLI call; configs given through them are written as files into the
configuration folder, so files stay the one source of truth and a restart changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from keystore import tools
from keystore.bootstrap_config.loader import parse_config
from keystore.bootstrap_config.model import BootstrapConfig, ConfigKind
from keystore.config_error import ConfigError
from keystore.credentials import CredentialError, load_certificate
from keystore.resolver import PeerIdentity
from keystore.secrets_io import write_private
from keystore.store.credentials import SqliteCredentialStore
from keystore.store.database import SqliteDatabase
from keystore.store.engines import open_redis
from keystore.store.errors import StoreError
from keystore.store.profiles import SqliteProfileStore
from keystore.store.redis_credentials import RedisCredentialStore
from keystore.store.redis_profiles import RedisProfileStore
from lwm2m_runtime.address import Address
from lwm2m_runtime.listeners import listeners
from lwm2m_runtime.server import CoapServer, Peer
from object_models.errors import Lwm2mError, ResponseCode
from object_models.registry import ModelRegistry

from .coap.downlink import Unreachable, send
from .coap.site import BootstrapSite
from .coaps import bootstrap_dtls_config
from .config import BootstrapServerConfig
from .core.catalog import Catalog, load_folder
from .core.manager import BootstrapManager
from .core.provisioning import DeviceRecord, ProvisioningCa, parse_csv
from .core.session import BootstrapSession, Request, Timing
from .profiles import bootstrap_configs
from .redis_store import RedisBootstrapStore
from .store import BootstrapStore, SqliteBootstrapStore

log = logging.getLogger("bootstrap_server")


class ConfigErrors(ConfigError):
    """Every problem found in the configuration folder (the first one is the message)."""

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        first = errors[0]
        super().__init__(first.source, first.key, first.reason)
        self.errors = list(errors)


class BootstrapServer:
    def __init__(
        self, config: BootstrapServerConfig, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.clock = clock
        self.registry = ModelRegistry(config.models_dirs)
        self.catalog = Catalog()
        self._manager: BootstrapManager | None = None
        self._store: BootstrapStore | None = None
        self._keystore: SqliteCredentialStore | RedisCredentialStore | None = None
        self._coap: CoapServer | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._seen: dict[str, tuple[Address, Peer]] = {}
        self.nosec_enabled = False
        self.dtls_modes: frozenset[Any] = frozenset()

    # -- lifecycle -------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load and check every configuration (``ConfigErrors`` stops the start), open the
        stores, then listen."""
        catalog, errors = self._load_catalog()
        if errors:
            raise ConfigErrors(errors)
        ca = self._provisioning_ca()
        self.catalog = catalog
        if self.config.store.engine == "redis":
            # one connection each, so each store closes its own
            self._keystore = RedisCredentialStore(open_redis(self.config.store), owns_db=True)
            self._store = RedisBootstrapStore(open_redis(self.config.store), owns_db=True)
        else:
            self._keystore = SqliteCredentialStore.open(self.config.keystore_file)
            self._store = SqliteBootstrapStore(self.config.database)
        self._manager = BootstrapManager(
            catalog, self.registry, self._store, self._keystore,
            timing=Timing(self.config.step_timeout, self.config.step_retries), ca=ca,
            on_finished=self._finished, discoveries=self._store,
        )  # fmt: skip
        nosec, coaps = listeners(self.config.security_modes, self.config.dtls)
        if not self.config.coaps:
            coaps = None
        self.nosec_enabled = nosec
        self.dtls_modes = frozenset() if coaps is None else coaps.modes
        coap = CoapServer(BootstrapSite(self))
        await coap.start(
            host=self.config.host,
            port=self.config.coap_port if nosec else None,
            coaps_port=self.config.coaps_port if coaps is not None else None,
            dtls_config=(
                bootstrap_dtls_config(self, self._keystore, coaps) if coaps is not None else None
            ),
            dtls_settings=coaps.endpoint if coaps is not None else None,
        )
        self._coap = coap
        self._log_listeners()
        if not catalog.configs:
            log.warning("no bootstrap configuration in %s: every Bootstrap-Request is refused "
                        "until one is added", self.config.configs_folder)  # fmt: skip

    async def stop(self) -> None:
        manager = self._manager
        if manager is not None:
            for session in manager.active():
                manager.abort(session, "the bootstrap server is stopping", self.clock())
        for task in list(self._tasks.values()):
            task.cancel()
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._coap is not None:
            await self._coap.stop()
            self._coap = None
        for store in (self._store, self._keystore):
            if store is not None:
                store.close()
        self._store = self._keystore = None

    @property
    def manager(self) -> BootstrapManager:
        if self._manager is None:
            raise RuntimeError("the bootstrap server is not started")
        return self._manager

    def readiness(self) -> dict[str, str]:
        """``GET /api/ready``: the CoAP listeners are open and the keystore answers (sqlite: a
        read; Redis: a PING); each check ``ok`` or why not."""
        checks: dict[str, str] = {}
        up = self._coap is not None and self._coap.listening()
        checks["listeners"] = "ok" if up else "CoAP listeners are not open"
        try:
            keystore = self.keystore
            if isinstance(keystore, SqliteCredentialStore):
                keystore.store.read("SELECT 1")
            else:
                keystore.database.ping()
            checks["store"] = "ok"
        except (StoreError, RuntimeError) as exc:
            checks["store"] = str(exc)
        return checks

    @property
    def keystore(self) -> SqliteCredentialStore | RedisCredentialStore:
        """The shared keystore (device credentials, API tokens)."""
        if self._keystore is None:
            raise RuntimeError("the bootstrap server is not started")
        return self._keystore

    @property
    def store(self) -> BootstrapStore:
        if self._store is None:
            raise RuntimeError("the bootstrap server is not started")
        return self._store

    @property
    def coap_address(self) -> Address:
        """Where the NoSec listener is bound (the real port when ``coap_port`` was 0)."""
        address = None if self._coap is None else self._coap.coap_address
        if address is None:
            raise RuntimeError("the bootstrap server has no CoAP listener")
        return Address(*address)

    @property
    def coaps_address(self) -> Address:
        """Where the CoAPs listener is bound (the real port when ``coaps_port`` was 0)."""
        address = None if self._coap is None else self._coap.coaps_address
        if address is None:
            raise RuntimeError("the bootstrap server has no CoAPs listener")
        return Address(*address)

    @property
    def coap(self) -> CoapServer:
        if self._coap is None:
            raise RuntimeError("the bootstrap server is not started")
        return self._coap

    def _log_listeners(self) -> None:
        """One line per listener, each with the configured host and the real port, so an
        operator (and a device maker reading the log) sees where to point ``coaps://``."""
        host = self.config.host
        if self.nosec_enabled:
            log.info("bootstrap server: CoAP listening on udp %s:%d (NoSec)", host,
                     self.coap_address.port)  # fmt: skip
        if self.dtls_modes:
            modes = ", ".join(sorted(m.name for m in self.dtls_modes))
            log.info("bootstrap server: CoAPs listening on udp %s:%d (%s)", host,
                     self.coaps_address.port, modes)  # fmt: skip

    def _provisioning_ca(self) -> ProvisioningCa | None:
        cert_path, key_path = self.config.provisioning_ca_cert, self.config.provisioning_ca_key
        if cert_path is None and key_path is None:
            return None
        if cert_path is None or key_path is None:
            key = "provisioning_ca_key" if key_path is None else "provisioning_ca_cert"
            raise ConfigError("configuration", key, "give both provisioning_ca_cert and _key")
        try:
            cert = load_certificate(cert_path.read_bytes(), "provisioning_ca_cert")
            private = tools.load_private_key(key_path.read_bytes(), "provisioning_ca_key")
        except OSError as exc:
            raise ConfigError("configuration", "provisioning_ca", str(exc)) from None
        except CredentialError as exc:
            raise ConfigError("configuration", exc.field, exc.reason) from None
        return ProvisioningCa(cert, private)

    def _finished(self, summary: Any) -> None:
        what = "bootstrap-pack" if summary.kind == "pack" else "bootstrap"
        log.info("%s %s of %r %s", what, summary.session_id, summary.endpoint, summary.outcome)
        if self._store is not None:
            try:
                self._store.add_session(summary)
            except Lwm2mError:
                log.exception("cannot record session %s", summary.session_id)
        if summary.success and summary.profile is not None:
            self._assign_profiles([(summary.endpoint, summary.profile)])

    def _assign_profiles(self, pairs: Sequence[tuple[str, str]]) -> None:
        """A device provisioned under a profile (a record naming it, or a session under its
        ``bootstrap:`` section) gets that device profile on the LwM2M server: the assignment
        goes into the shared profile store, which ``lwm2m-server`` reads when the device
        registers (docs/bootstrap.md). Only for a profile the LwM2M server has (a bootstrap
        configuration of the folder may name a profile no device profile matches)."""
        keystore = self._keystore
        if keystore is None or not pairs:
            return
        try:
            profiles = (
                SqliteProfileStore(keystore.store)
                if isinstance(keystore, SqliteCredentialStore)
                else RedisProfileStore(keystore.database)
            )
            known: dict[str, bool] = {}
            for endpoint, profile in pairs:
                if profile not in known:
                    known[profile] = profiles.get_profile(profile) is not None
                if known[profile] and profiles.assignment(endpoint) != profile:
                    profiles.assign(endpoint, profile)
        except Lwm2mError as exc:
            log.error("profile assignment of %d device(s) not stored: %s", len(pairs), exc)

    # -- CoAP handler ----------------------------------------------------------------------------
    def handle_bootstrap_request(
        self, query: Sequence[str], *, peer: PeerIdentity, address: Address, remote: Peer
    ) -> None:
        session, first = self.manager.bootstrap_request(peer, query, self.clock())
        self._seen[session.endpoint] = (address, remote)
        log.info("bootstrap %s of %r from %s (%s)", session.session_id, session.endpoint,
                 address, peer.mode.label)  # fmt: skip
        self._run(session, first, remote=remote, address=address)

    def handle_bootstrap_pack(
        self, query: Sequence[str], accept: int | None, *, peer: PeerIdentity
    ) -> tuple[bytes, int]:
        """``GET /bspack``; recorded in the session log like a classic session (``_finished``
        hears it from the manager)."""
        return self.manager.bootstrap_pack(peer, query, accept, self.clock())

    def _run(self, session: BootstrapSession, first: Request, *, remote: Peer | None,
             address: Address) -> None:  # fmt: skip
        old = self._tasks.pop(session.endpoint, None)
        if old is not None:
            old.cancel()
        task = asyncio.get_running_loop().create_task(
            self._drive(session, first, remote=remote, address=address),
            name=f"bootstrap-{session.session_id}",
        )
        self._tasks[session.endpoint] = task

        def done(t: asyncio.Task[None]) -> None:
            if self._tasks.get(session.endpoint) is t:
                del self._tasks[session.endpoint]

        task.add_done_callback(done)

    async def _drive(self, session: BootstrapSession, request: Request | None, *,
                     remote: Peer | None, address: Address) -> None:  # fmt: skip
        manager = self.manager
        try:
            while request is not None and not session.done:
                wait = max(0.0, (session.deadline or self.clock()) - self.clock())
                try:
                    reply = await asyncio.wait_for(
                        send(self.coap, request, remote=remote, address=address), wait
                    )
                except TimeoutError:
                    request = manager.timeout(session, self.clock())
                    continue
                except Unreachable as exc:
                    manager.abort(session, f"the client is unreachable: {exc}", self.clock())
                    return
                request = manager.receive(session, request.seq, reply, self.clock())
        except asyncio.CancelledError:
            manager.abort(session, "cancelled", self.clock())
            raise
        except Exception as exc:  # a bug must not leave the session hanging
            log.exception("bootstrap %s crashed", session.session_id)
            manager.abort(session, f"internal error: {exc}", self.clock())

    # -- operations (HTTP API, CLI) --------------------------------------------------------------
    def put_config(self, document: object, kind: str | None = None,
                   name: str | None = None) -> BootstrapConfig:  # fmt: skip
        """Validate ``document`` (a config mapping), check it against the other configs, write
        it as a file, and use it from the next Bootstrap-Request. ``ConfigError`` changes
        nothing."""
        if isinstance(document, dict) and kind is not None and name is not None:
            if kind not in ("endpoint", "profile"):
                raise ConfigError("request", "kind", "expected endpoint or profile")
            other = "profile" if kind == "endpoint" else "endpoint"
            if document.get(kind, name) != name or other in document:
                raise ConfigError("request", kind, f"the body is not the {kind} {name!r}")
            document = {**document, kind: name}
        folder = self.config.configs_folder
        provisional = parse_config(document, "request", self.registry, base_dir=folder)
        existing = self.catalog.configs.get(provisional.key)
        target = Path(existing.source) if existing else folder / _file_name(provisional)
        config = parse_config(document, str(target), self.registry, base_dir=folder)
        catalog = self.catalog.replaced(config)
        folder.mkdir(parents=True, exist_ok=True)
        write_private(target, (json.dumps(document, indent=2, sort_keys=False) + "\n").encode())
        self._swap(catalog)
        return config

    def remove_config(self, kind: str, name: str) -> BootstrapConfig:
        config = self.catalog.configs.get((kind, name))
        if config is None:
            raise Lwm2mError(f"no {kind} configuration {name!r}", code=ResponseCode.NOT_FOUND)
        Path(config.source).unlink(missing_ok=True)
        self._swap(self.catalog.without(config.key))
        return config

    def reload_configs(self) -> list[ConfigError]:
        """Re-read the folder and the profiles; any error keeps the current configs (and is
        returned)."""
        catalog, errors = self._load_catalog()
        if not errors:
            self._swap(catalog)
        return errors

    def _load_catalog(self) -> tuple[Catalog, list[ConfigError]]:
        """The configuration folder plus the ``bootstrap`` sections of the device profiles
        that ``lwm2m-server`` keeps in the shared store (docs/profiles.md)."""
        profile_configs: list[BootstrapConfig] = []
        errors: list[ConfigError] = []
        if self.config.store.engine == "redis":
            with open_redis(self.config.store) as db:
                profile_configs, errors = bootstrap_configs(RedisProfileStore(db), self.registry)
        elif self.config.keystore_file.exists():
            with SqliteDatabase(self.config.keystore_file) as shared:
                profile_configs, errors = bootstrap_configs(
                    SqliteProfileStore(shared), self.registry
                )
        catalog, folder_errors = load_folder(
            self.config.configs_folder, self.registry, profile_configs
        )
        return catalog, errors + folder_errors

    def _swap(self, catalog: Catalog) -> None:
        self.catalog = catalog
        if self._manager is not None:
            self._manager.catalog = catalog

    def import_devices(self, text: str, *, profile: str | None = None,
                       source: str = "CSV") -> list[DeviceRecord]:  # fmt: skip
        records = parse_csv(text, default_profile=profile, now=self.clock(), source=source)
        for record in records:
            if record.profile is not None and self.catalog.profile(record.profile) is None:
                raise Lwm2mError(f"{source}: {record.endpoint!r}: no profile {record.profile!r}",
                                 code=ResponseCode.BAD_REQUEST)  # fmt: skip
        self.store.put_devices(records)
        self._assign_profiles([(r.endpoint, r.profile) for r in records if r.profile is not None])
        return records

    def start_bootstrap(self, endpoint: str, address: Address | None = None) -> BootstrapSession:
        """Server-initiated bootstrap of a client we can reach: at ``address``, else where its
        last Bootstrap-Request came from."""
        seen = self._seen.get(endpoint)
        remote: Peer | None = None
        if address is None:
            if seen is None:
                raise Lwm2mError(f"no known address for {endpoint!r}: give one",
                                 code=ResponseCode.NOT_FOUND)  # fmt: skip
            address, remote = seen
        elif seen is not None and seen[0] == address:
            remote = seen[1]
        session, first = self.manager.server_initiated(endpoint, self.clock())
        self._run(session, first, remote=remote, address=address)
        return session


def _file_name(config: BootstrapConfig) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", config.name).strip("._") or "config"
    return f"{config.kind.value}-{slug}.json"


__all__ = ["BootstrapServer", "ConfigErrors", "ConfigKind"]
