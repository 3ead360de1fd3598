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
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from keystore.store.database import DATABASE_FILE
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
)

__all__ = [
    "ENV_PREFIX",
    "LOG_LEVELS",
    "SCHEMA",
    "SYNCHRONOUS",
    "PayloadLimits",
    "QueueSettings",
    "ServerConfig",
    "SinkSettings",
    "env_name",
    "load_config",
    "log_level_number",
]

ENV_PREFIX = "LWM2M_SERVER_"
SYNCHRONOUS = ("NORMAL", "FULL")
DEFAULT_DTLS = DtlsSettings()


@attrs.frozen
class QueueSettings:
    max_per_client: int = 32
    awake_time: float = 93.0
    ttl: float = 24 * 3600.0


@attrs.frozen
class SinkSettings:
    """Optional copies of profile-mapped values (docs/profiles.md); empty = off."""

    jsonl: Path | None = None
    mqtt: str = ""
    mqtt_topic: str = "lwm2m/{ep}/{kind}"
    queue_size: int = 10_000


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
class ServerConfig:
    host: str = "0.0.0.0"
    coap_port: int = 5683
    coaps_port: int = 5684
    http_host: str = "127.0.0.1"
    http_port: int = 8080
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
    profiles_dir: Path | None = None
    default_profile: str = "default"
    sinks: SinkSettings = SinkSettings()
    payload_limits: PayloadLimits = PayloadLimits()

    @property
    def database(self) -> Path:
        return self.data_dir / DATABASE_FILE


# -- the schema -----------------------------------------------------------------------------------


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
        "log_level": one_of(LOG_LEVELS),
        "security_modes": check_security_modes,
        "dtls.cipher_suites": check_cipher_suites,
        "dtls.cid_length": between(1, 255),
        "queue.max_per_client": positive,
        "queue.awake_time": positive,
        "queue.ttl": positive,
        "lifetime_grace": non_negative,
        "request_timeout": positive,
        "store_synchronous": one_of(SYNCHRONOUS),
        "default_profile": non_empty,
        "sinks.mqtt": _mqtt_url,
        "sinks.mqtt_topic": _mqtt_topic,
        "sinks.queue_size": positive,
        **{f"payload_limits.{f.name}": positive for f in attrs.fields(PayloadLimits)},
    },
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
