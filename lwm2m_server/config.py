"""The server's configuration: defaults < YAML file < environment < command-line flags.

* The YAML file (``--config FILE.yaml``) may use ``${ENV_NAME:default}`` in any string value
  (the ThingsBoard convention): ``coap_port: ${COAP_PORT:5683}``. A value that is *entirely*
  one reference takes the key's type (``5683`` → int); ``${NAME}`` without default must be set.
* Every key can be overridden by ``LWM2M_SERVER_<KEY>`` (nested keys joined by ``_``:
  ``LWM2M_SERVER_QUEUE_MAX_PER_CLIENT=8``; lists separated by ``os.pathsep``).
* Command-line flags override both.

The loading itself is ``lwm2m_runtime.settings`` (shared with the bootstrap server); this module
is the schema: the keys, their defaults and their checks. Everything is validated at start; a
``ConfigError`` (``keystore.config_error``) names where the value came from (file, environment
variable or flag), the key, and the reason (unknown key, wrong type, out of range), and the CLI
turns it into exit status 2.
Every key is documented in docs/configuration.md.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from keystore.store.database import DATABASE_FILE
from keystore.store.engines import StoreSettings
from lwm2m_runtime.coap import Parameters
from lwm2m_runtime.http_auth import ApiAuthSettings, check_secret
from lwm2m_runtime.listeners import (
    SECURITY_MODES,
    DtlsSettings,
    check_cipher_suites,
    check_security_modes,
)
from lwm2m_runtime.settings import (
    LOG_LEVELS,
    Schema,
    between,
    non_empty,
    non_negative,
    one_of,
    port,
    positive,
    store_checks,
    store_cross_check,
)

from .cluster.workers import check_affinity

__all__ = [
    "ADDRESS_BINDINGS",
    "ENV_PREFIX",
    "LOG_LEVELS",
    "SCHEMA",
    "SYNCHRONOUS",
    "BootstrapApiSettings",
    "EventSettings",
    "FirmwareSettings",
    "HttpTlsSettings",
    "LimitsSettings",
    "PayloadLimits",
    "QueueSettings",
    "ServerConfig",
    "SinkSettings",
    "TelemetrySettings",
    "env_name",
    "load_config",
    "log_level_number",
]

ENV_PREFIX = "LWM2M_SERVER_"
SYNCHRONOUS = ("NORMAL", "FULL")
ADDRESS_BINDINGS = ("loose", "strict")
DEFAULT_DTLS = DtlsSettings()
DEFAULT_API_AUTH = ApiAuthSettings()
DEFAULT_STORE = StoreSettings()


@attrs.frozen
class QueueSettings:
    max_per_client: int = 32
    awake_time: float = 93.0
    ttl: float = 24 * 3600.0


@attrs.frozen
class LimitsSettings:
    """Per-source and per-client limits (docs/security.md, "Limits"): each is applied before
    the work it protects, answered with the code the RFCs name and counted in ``/api/health``.
    0 turns ``register_rate`` and ``observations_per_client`` off."""

    register_rate: float = 50.0
    """Registers per second per source address (token bucket), sustained."""
    register_burst: int = 1000
    """Registers a source address may send at once before ``register_rate`` applies."""
    observations_per_client: int = 128
    """Active observations per registered client; one more is refused by the API (409)."""
    max_body_size: int = 256 * 1024
    """Largest CoAP request body (whole, or reassembled from Block1): 4.13 with Size1."""
    block1_per_peer: int = 4
    """Concurrent Block1 uploads per peer; a newer one replaces the peer's oldest."""
    block1_total: int = 1000
    """Concurrent Block1 uploads in total; past it a new one gets 5.03 with Max-Age."""
    block1_bytes: int = 32 << 20
    """Bytes all Block1 uploads may buffer together; past it, 5.03 with Max-Age."""
    dedup_entries: int = 100_000
    """Requests remembered for deduplication (RFC 7252 §4.5), per listener."""
    dedup_bytes: int = 64 << 20
    """The same bound in bytes (about 400 bytes per entry plus the answer it replays)."""

    def parameters(self) -> Parameters:
        """The CoAP layer's parameters carrying these limits."""
        return Parameters(
            max_body_size=self.max_body_size,
            max_block_transfers_per_peer=self.block1_per_peer,
            max_block_transfers=self.block1_total,
            max_block_bytes=self.block1_bytes,
            dedup_capacity=self.dedup_entries,
            dedup_max_bytes=self.dedup_bytes,
        )


@attrs.frozen
class BootstrapApiSettings:
    """``bootstrap_api``: the bootstrap server whose provisioning state and sessions the API
    and the web UI show (``api/bootstrap_view.py``)."""

    url: str = ""
    """Its HTTP API, e.g. ``http://127.0.0.1:8081``; empty: not shown."""
    token: str = attrs.field(default="", repr=False)
    """A read token of that API; empty: one is made in the shared keystore at start."""


DEFAULT_BOOTSTRAP_API = BootstrapApiSettings()


def check_bootstrap_url(value: str) -> str | None:
    if value and not re.fullmatch(r"https?://[^/\s]+/?", value):
        return f"{value!r} is not http(s)://host[:port]"
    return None


@attrs.frozen
class SinkSettings:
    """Optional copies of profile-mapped values (docs/profiles.md); empty = off."""

    jsonl: Path | None = None
    mqtt: str = ""
    mqtt_topic: str = "lwm2m/{ep}/{kind}"
    queue_size: int = 10_000


@attrs.frozen
class EventSettings:
    """The event stream (``GET /api/event``; docs/http-api.md, "Events")."""

    replay_size: int = 10_000
    """Latest events kept for readers that fall behind or reconnect with ``Last-Event-ID``;
    further back they get a GAP event. About 200 bytes per event plus its payload builder."""


@attrs.frozen
class TelemetrySettings:
    """Telemetry history (docs/configuration.md, "Telemetry retention")."""

    retention: str = ""
    """How long history points are kept: a duration (``90d``, ``12h``, ``3600``; units s, m,
    h, d, w; a bare number is seconds); empty or ``0`` keeps them forever. A profile's own
    ``retention`` wins for its devices. The latest value per key is always kept."""


@attrs.frozen
class PayloadLimits:
    """Largest Send or notification payload decoded, per content format, in bytes; a larger
    Send is refused with 4.13 and Size1 before decoding, a larger notification is acknowledged
    but not stored (docs/performance.md, "Payload limits"). Decoding runs on the event loop, so
    these bound how long one message can hold every other device up."""

    senml_json: int = 8 * 1024
    senml_cbor: int = 8 * 1024
    oma_cbor: int = 8 * 1024
    tlv: int = 8 * 1024
    oma_json: int = 8 * 1024
    cbor: int = 256 * 1024
    text: int = 256 * 1024
    opaque: int = 256 * 1024

    def by_format(self) -> dict[int, int]:
        """The limits by Content-Format number (both numbers of TLV and OMA JSON)."""
        return {
            110: self.senml_json,
            112: self.senml_cbor,
            11544: self.oma_cbor,
            11542: self.tlv,
            1542: self.tlv,
            11543: self.oma_json,
            1543: self.oma_json,
            60: self.cbor,
            0: self.text,
            42: self.opaque,
        }


@attrs.frozen
class FirmwareSettings:
    """Firmware and software packages, the download server and the update jobs
    (docs/firmware.md)."""

    max_package_size: int = 16 << 20
    """Largest package accepted (bytes): a larger upload is refused with HTTP 413 (4.13)."""
    download_base: str = ""
    """The host name or address devices reach this server at, for the Package URIs
    (``coap://<download_base>:<port>/fw/<token>``); empty: the CoAP listeners' address (its
    outbound interface's address when they bind a wildcard such as 0.0.0.0)."""
    http_download_url: str = ""
    """The URL prefix of ``GET /fw/<token>`` over HTTP(S) as devices reach it (a reverse
    proxy's ``https://fw.example.com``); empty: ``http://`` + the HTTP listener's address."""
    grant_ttl: float = 24 * 3600.0
    """Seconds a Package URI stays valid when its grant names no other duration."""
    # update jobs (docs/firmware.md, "Update jobs"): each step's timeout and its retries
    request_timeout: float = 30.0
    """Seconds for each request of a job (read, observe, Package URI write, execute)."""
    download_timeout: float = 600.0
    """Seconds from the delivery to State Downloaded (also a push write's own timeout)."""
    update_timeout: float = 600.0
    """Seconds from Execute Update / Install to the re-registration or the success result."""
    queued_timeout: float = 86_400.0
    """Extra seconds a step gets when its request waits for a sleeping (queue-mode) device."""
    retries: int = 2
    """New attempts of a failed step (a request timed out, a download did not finish)."""
    retry_backoff: float = 5.0
    """Seconds before the first new attempt, doubled for each further one."""
    software_activate: bool = False
    """Object 9: Execute Activate (``/9/x/10``) after a successful install."""
    job_lease: float = 15.0
    """On Redis: seconds a node's claim on the jobs it drives lasts without renewal (renewed
    every third of it); a job whose node died is taken over by another after this. Also the
    lease of the node that runs an update campaign (docs/firmware.md, "Campaigns in a
    cluster")."""


def check_download_base(value: str) -> str | None:
    if value and not re.fullmatch(r"[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\]", value):
        return f"{value!r} is not a host name or address (no scheme, port nor path; IPv6 in [])"
    return None


def check_http_download_url(value: str) -> str | None:
    if value and not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", value):
        return f"{value!r} is not http(s)://host[:port][/path]"
    return None


@attrs.frozen
class HttpTlsSettings:
    """``http_tls``: TLS on the HTTP listener (API, web UI, ``GET /fw/<token>``); both files or
    neither (docs/configuration.md, "HTTPS")."""

    cert: Path | None = None
    """PEM certificate chain (the server's certificate first)."""
    key: Path | None = None
    """PEM private key of that certificate; refused when other users may read it."""


def _readable_file(value: Path | None) -> str | None:
    if value is None:
        return None
    try:
        with value.open("rb"):
            pass
    except OSError as exc:
        return f"cannot read {str(value)!r}: {exc.strerror or exc}"
    if not value.is_file():
        return f"{str(value)!r} is not a file"
    return None


def check_tls_key_file(value: Path | None) -> str | None:
    """The key must be readable by us and by no other user: a key any local account can read
    lets that account impersonate this server to every device and API client (the reasoning of
    ssh's "UNPROTECTED PRIVATE KEY FILE"). Refused rather than warned about: a warning scrolls
    by, and the fix (``chmod 600``) costs the operator one command."""
    problem = _readable_file(value)
    if problem or value is None:
        return problem
    mode = value.stat().st_mode
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        return (
            f"{str(value)!r} is readable or writable by other users "
            f"(mode {stat.S_IMODE(mode):04o}): chmod 600 it"
        )
    return None


def server_tls_context(settings: HttpTlsSettings) -> ssl.SSLContext | None:
    """The HTTPS listener's context (TLS 1.2 at least, the stdlib's default ciphers, no
    compression, no renegotiation), or None without ``http_tls``. ``ssl.SSLError``/``OSError``
    when the files do not hold a matching certificate and key."""
    if settings.cert is None or settings.key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(os.fspath(settings.cert), os.fspath(settings.key))
    return context


def _http_tls_cross_check(config: Any) -> tuple[str, str] | None:
    """Both files or neither, and they must load as a matching pair (checked at start, not at
    the first connection)."""
    tls: HttpTlsSettings = config.http_tls
    if (tls.cert is None) != (tls.key is None):
        missing = "http_tls.key" if tls.key is None else "http_tls.cert"
        return missing, "http_tls needs both cert and key"
    try:
        server_tls_context(tls)
    except (ssl.SSLError, OSError) as exc:
        return "http_tls.cert", (
            f"{str(tls.cert)!r} and {str(tls.key)!r} are not a PEM certificate chain "
            f"and its private key: {getattr(exc, 'reason', None) or exc}"
        )
    return None


def _distinct_ports_cross_check(config: Any) -> tuple[str, str] | None:
    """CoAP and CoAPs on one port is refused: with ``workers`` > 1 both sockets are bound with
    SO_REUSEPORT, so the kernel would accept the second bind and split the datagrams of the
    port between the NoSec and the DTLS listener (each dropping what belongs to the other);
    with one worker the second bind fails later with a less telling EADDRINUSE."""
    modes = {m.lower() for m in config.security_modes}
    both = "nosec" in modes and bool(modes - {"nosec"})
    if both and config.coap_port and config.coap_port == config.coaps_port:
        return "coaps_port", (
            f"{config.coaps_port} is also coap_port: the CoAP (NoSec) and CoAPs (DTLS) "
            f"listeners need a port each"
        )
    return None


@attrs.frozen
class ServerConfig:
    host: str = "0.0.0.0"
    coap_port: int = 5683
    coaps_port: int = 5684
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    http_tls: HttpTlsSettings = HttpTlsSettings()
    """HTTPS on the HTTP listener when both files are set (docs/configuration.md)."""
    data_dir: Path = Path("./data")
    models_dirs: tuple[Path, ...] = ()
    log_level: str = "INFO"
    open_registration: bool = True
    security_modes: tuple[str, ...] = SECURITY_MODES
    dtls: DtlsSettings = DEFAULT_DTLS
    queue: QueueSettings = QueueSettings()
    lifetime_grace: float = 15.0
    request_timeout: float = 10.0
    store_synchronous: str = "NORMAL"
    store: StoreSettings = DEFAULT_STORE
    """``engine: redis`` keeps registrations, observations, the latest telemetry, the keystore
    (credentials, DTLS sessions, API tokens), profiles and device state in Redis, shared by
    several server processes (docs/cluster.md); the sqlite file in ``data_dir`` then keeps only
    this node's telemetry history and the API audit log."""
    profiles_dir: Path | None = None
    default_profile: str = "default"
    sinks: SinkSettings = SinkSettings()
    api_auth: ApiAuthSettings = DEFAULT_API_AUTH
    bootstrap_api: BootstrapApiSettings = DEFAULT_BOOTSTRAP_API
    limits: LimitsSettings = LimitsSettings()
    nosec_address_binding: str = "loose"
    payload_limits: PayloadLimits = PayloadLimits()
    workers: int = 1
    """Worker processes sharing the CoAP/CoAPs ports (SO_REUSEPORT); more than one needs
    ``store.engine: redis`` (docs/cluster.md, "Several workers on one host")."""
    worker_cpu_affinity: str = "off"
    """``off``, ``auto`` (worker i on the i-th CPU) or a CPU list (``2-5``): pin each worker to
    one CPU (``lwm2m_server.cluster.workers.affinity_plan``; docs/cluster.md, "CPU
    affinity")."""
    events: EventSettings = EventSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    firmware: FirmwareSettings = FirmwareSettings()

    @property
    def database(self) -> Path:
        return self.data_dir / DATABASE_FILE

    @property
    def token_file(self) -> Path:
        """Where the first admin API token is written (``api_auth.token_file``)."""
        return self.data_dir / self.api_auth.token_file


# -- the schema -----------------------------------------------------------------------------------


def _address_binding(value: str) -> str | None:
    if value not in ADDRESS_BINDINGS:
        return f"{value!r} is not one of {', '.join(ADDRESS_BINDINGS)}"
    return None


def _at_least_one(value: int) -> str | None:
    return None if value >= 1 else f"{value} must be at least 1"


def _duration(value: str) -> str | None:
    from .telemetry_retention import parse_duration

    try:
        parse_duration(value)
    except ValueError as exc:
        return str(exc)
    return None


def _mqtt_url(value: str) -> str | None:
    if value and not re.fullmatch(r"(mqtt|tcp)://[^/\s]+", value):
        return f"{value!r} is not mqtt://[user:password@]host[:port]"
    return None


def _mqtt_topic(value: str) -> str | None:
    from .profiles.sinks.mqtt import check_topic

    return check_topic(value)


SCHEMA: Schema[ServerConfig] = Schema(
    ServerConfig,
    env_prefix=ENV_PREFIX,
    checks={
        "host": non_empty,
        "coap_port": port,
        "coaps_port": port,
        "http_host": non_empty,
        "http_port": port,
        "http_tls.cert": _readable_file,
        "http_tls.key": check_tls_key_file,
        "log_level": one_of(LOG_LEVELS),
        "security_modes": check_security_modes,
        "dtls.cipher_suites": check_cipher_suites,
        "dtls.cid_length": between(1, 255),
        "dtls.handshake_timeout": positive,
        "dtls.max_handshakes": positive,
        "dtls.hello_rate": positive,
        "queue.max_per_client": positive,
        "queue.awake_time": positive,
        "queue.ttl": positive,
        "lifetime_grace": non_negative,
        "request_timeout": positive,
        "store_synchronous": one_of(SYNCHRONOUS),
        **store_checks(),
        "default_profile": non_empty,
        "sinks.mqtt": _mqtt_url,
        "sinks.mqtt_topic": _mqtt_topic,
        "sinks.queue_size": positive,
        "api_auth.admin_token": check_secret,
        "api_auth.read_token": check_secret,
        "api_auth.token_file": non_empty,
        "bootstrap_api.url": check_bootstrap_url,
        "bootstrap_api.token": check_secret,
        "limits.register_rate": non_negative,
        "limits.register_burst": _at_least_one,
        "limits.observations_per_client": non_negative,
        "limits.max_body_size": between(16, 1 << 30),
        "limits.block1_per_peer": _at_least_one,
        "limits.block1_total": _at_least_one,
        "limits.block1_bytes": between(1024, 1 << 40),
        "limits.dedup_entries": _at_least_one,
        "limits.dedup_bytes": between(1 << 16, 1 << 40),
        "nosec_address_binding": _address_binding,
        "workers": between(1, 256),
        "worker_cpu_affinity": check_affinity,
        **{f"payload_limits.{f.name}": positive for f in attrs.fields(PayloadLimits)},
        "events.replay_size": _at_least_one,
        "telemetry.retention": _duration,
        "firmware.max_package_size": between(1, 1 << 32),
        "firmware.download_base": check_download_base,
        "firmware.http_download_url": check_http_download_url,
        "firmware.grant_ttl": positive,
        "firmware.request_timeout": positive,
        "firmware.download_timeout": positive,
        "firmware.update_timeout": positive,
        "firmware.queued_timeout": non_negative,
        "firmware.retries": between(0, 100),
        "firmware.retry_backoff": non_negative,
        "firmware.job_lease": positive,
    },
    cross_checks=(store_cross_check(), _http_tls_cross_check, _distinct_ports_cross_check),
    upper_case=("log_level", "store_synchronous"),
)
"""Every key the server accepts (``SCHEMA.keys``), each documented in docs/configuration.md."""


def env_name(key: str) -> str:
    return SCHEMA.env_name(key)


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServerConfig:
    """The effective configuration. ``overrides`` are CLI flags by dotted key (``None`` values
    are "not given"); they are validated like everything else (source ``--flag``)."""
    return SCHEMA.load(path, env=env, overrides=overrides)


def log_level_number(config: ServerConfig) -> int:
    return int(getattr(logging, config.log_level))
