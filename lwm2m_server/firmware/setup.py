"""Building the package library and the download server of a running ``Lwm2mServer``, and the
addresses its Package URIs carry (docs/firmware.md, "Download server"); and the update job
manager (``create_manager``), so the service needs one call and knows nothing of jobs.

The URI must name an address the *device* reaches, which the listeners' bound address often is
not (``0.0.0.0``, a container's address behind NAT). ``firmware.download_base`` names it; without
it a wildcard bind is replaced by the address of the interface that routes outwards (found by
connecting a UDP socket, which sends nothing), and a warning says to set the key.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from keystore.resolver import Resolver
from keystore.store.database import SqliteDatabase
from keystore.store.redis_database import RedisDatabase

from ..config import ServerConfig
from .downloads import DownloadServer
from .job_store import RedisJobStore
from .manager import FirmwareManager, JobCluster, registration_transport, settings_from
from .packages import Library, open_library

if TYPE_CHECKING:
    from ..service import Lwm2mServer

log = logging.getLogger(__name__)


def open_firmware(
    config: ServerConfig,
    local: SqliteDatabase,
    redis: RedisDatabase | None,
    resolver: Resolver | None,
    clock: Callable[[], float] = time.time,
) -> tuple[Library, DownloadServer]:
    """The library and download server on the configured store engine: Redis (metadata, grants
    and bytes in Redis: every node serves every package) or sqlite (metadata and grants in the
    server's file, bytes under ``<data_dir>/packages``)."""
    firmware = config.firmware
    library = open_library(
        config.data_dir,
        sqlite=None if redis is not None else local,
        redis=redis,
        max_size=firmware.max_package_size,
        clock=clock,
    )
    downloads = DownloadServer(
        library.records, library, resolver=resolver, clock=clock, default_ttl=firmware.grant_ttl
    )
    return library, downloads


def device_host(configured: str, bound: str) -> str:
    """The host part of a Package URI: ``firmware.download_base``, else the bound address,
    else (a wildcard bind) the outward interface's address."""
    if configured:
        return configured
    host = bound  # an address devices reach, or a name they resolve
    version = _wildcard_version(bound)
    if version is not None:
        host = outbound_address(version)
        log.warning(
            "the listeners bind %s: Package URIs name %s; set firmware.download_base to the "
            "address devices reach this server at",
            bound,
            host,
        )
    return f"[{host}]" if ":" in host else host


def _wildcard_version(bound: str) -> int | None:
    """The IP version of a wildcard bind (``0.0.0.0``, ``::``); None for anything else."""
    try:
        address = ipaddress.ip_address(bound)
    except ValueError:
        return None
    return address.version if address.is_unspecified else None


def outbound_address(version: int = 4) -> str:
    """The local address of the route to a documentation address (nothing is sent)."""
    family = socket.AF_INET6 if version == 6 else socket.AF_INET
    target = "2001:db8::1" if version == 6 else "192.0.2.1"
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((target, 9))
            return str(sock.getsockname()[0])
    except OSError:
        return "::1" if version == 6 else "127.0.0.1"


def set_coap_bases(
    downloads: DownloadServer,
    config: ServerConfig,
    coap_port: int | None,
    coaps_port: int | None,
) -> None:
    host = device_host(config.firmware.download_base, config.host)
    loopback = _loopback_host(config.firmware.download_base, config.host)
    if coap_port is not None:
        local = None if loopback is None else f"coap://{loopback}:{coap_port}"
        downloads.set_base("coap", f"coap://{host}:{coap_port}", loopback=local)
    if coaps_port is not None:
        local = None if loopback is None else f"coaps://{loopback}:{coaps_port}"
        downloads.set_base("coaps", f"coaps://{host}:{coaps_port}", loopback=local)


def _loopback_host(configured: str, bound: str) -> str | None:
    """The loopback address of a wildcard bind's family, when nothing is configured: the host a
    device on this machine is given (it may be bound to loopback, which cannot reach the
    outward address ``device_host`` found)."""
    version = None if configured else _wildcard_version(bound)
    if version is None:
        return None
    return "[::1]" if version == 6 else "127.0.0.1"


def set_http_base(
    downloads: DownloadServer, config: ServerConfig, port: int, *, scheme: str = "http"
) -> None:
    """Called once the HTTP listener is bound (its real port when ``http_port`` is 0).
    ``scheme``: ``https`` when the listener speaks TLS (``http_tls``); then only ``https``
    Package URIs are offered, since there is no plain listener for ``http://`` ones."""
    url = config.firmware.http_download_url
    if url:
        downloads.set_base("https" if url.startswith("https:") else "http", url)
        return
    host = device_host(config.firmware.download_base, config.http_host)
    loopback = _loopback_host(config.firmware.download_base, config.http_host)
    local = None if loopback is None else f"{scheme}://{loopback}:{port}"
    downloads.set_base(scheme, f"{scheme}://{host}:{port}", loopback=local)


def create_manager(server: Lwm2mServer) -> FirmwareManager:
    """The update job manager over the started server, its package library and download
    server (docs/firmware.md, "Update jobs"); a package a running job delivers cannot be
    deleted (the library's ``in_use`` hook)."""
    manager = FirmwareManager(
        server,
        server.stores.firmware_jobs,
        packages=server.packages,
        downloads=server.downloads,
        listen=server.bus.listen,
        publish=server.bus.publish,
        settings=settings_from(server.config.firmware),
        clock=server.clock,
        transport=registration_transport(server),
        owns=_holds(server),
        cluster=_cluster_link(server),
    )
    if server.packages is not None:
        server.packages.add_in_use(manager.in_use)
    if server.cluster is not None:
        server.cluster.gained.append(manager.gained)
        server.cluster.handlers[HINT] = lambda message: manager.hinted(str(message["endpoint"]))
        server.cluster.remote_listeners.append(manager.remote_job)
    return manager


HINT = "fwjob"
"""The cluster message that tells a node a job of a device it holds waits for it."""


def _cluster_link(server: Lwm2mServer) -> JobCluster | None:
    """On Redis: the jobs are driven by the node that holds the device, under a lease
    (docs/firmware.md, "Updates in a cluster")."""
    cluster = server.cluster
    store = server.stores.firmware_jobs
    if cluster is None or not isinstance(store, RedisJobStore):
        return None

    def alive(node: str) -> bool:
        listening = cluster.db.client.pubsub_numsub(cluster.node_channel(node))
        return any(count for _, count in listening)

    def hint(node: str, endpoint: str) -> None:
        cluster.post(node, {"op": HINT, "endpoint": endpoint})

    return JobCluster(
        node=cluster.node_id,
        store=store,
        lease=server.config.firmware.job_lease,
        holder=cluster.holder,
        alive=alive,
        hint=hint,
    )


def _holds(server: Lwm2mServer) -> Callable[[str], bool] | None:
    """On a cluster (Redis): whether this node is the one to resume the device's job: it holds
    the device (hears its events, docs/cluster.md), nobody does, or the node that held it is
    gone (nobody listens on its channel any more: it stopped, or this is that node restarted
    with a new id). None on sqlite, where one node holds every device."""
    cluster = server.cluster
    if cluster is None:
        return None

    def holds(endpoint: str) -> bool:
        holder = cluster.holder(endpoint)
        if holder in (None, cluster.node_id):
            return True
        listening = cluster.db.client.pubsub_numsub(cluster.node_channel(holder))
        return not any(count for _, count in listening)

    return holds
