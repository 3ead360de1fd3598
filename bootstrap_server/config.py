"""The bootstrap server's settings: defaults < YAML file < environment < command-line flags.

Same conventions and the same loader as the LwM2M server (``lwm2m_runtime.settings``,
docs/configuration.md): ``${ENV_NAME:default}`` in any string of the YAML file, every key
overridable by ``LWM2M_BOOTSTRAP_<KEY>``, flags last, and a ``ConfigError`` naming the source,
the key and the reason. This module is only the schema: keys, defaults and checks.

Defaults are chosen so that ``lwm2m-server`` and ``lwm2m-bootstrap`` started from the same
folder share the keystore with no configuration: ``keystore`` defaults to the server's
``data/lwm2m-server.sqlite``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from keystore.store.database import DATABASE_FILE
from keystore.store.engines import StoreSettings
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
    one_of,
    port,
    positive,
    store_checks,
    store_cross_check,
)

__all__ = [
    "ENV_PREFIX",
    "SCHEMA",
    "BootstrapServerConfig",
    "env_name",
    "load_config",
    "log_level_number",
]

ENV_PREFIX = "LWM2M_BOOTSTRAP_"


DEFAULT_DTLS = DtlsSettings()
DEFAULT_STORE = StoreSettings()
DEFAULT_API_AUTH = ApiAuthSettings()


@attrs.frozen
class BootstrapServerConfig:
    host: str = "0.0.0.0"
    coap_port: int = 5783
    coaps_port: int = 5784
    http_host: str = "127.0.0.1"
    http_port: int = 8081
    data_dir: Path = Path("./data")
    models_dirs: tuple[Path, ...] = ()
    configs_dir: Path | None = None
    """Bootstrap configuration files; default ``<data_dir>/bootstrap-configs``."""
    keystore: Path | None = None
    """The shared keystore (the LwM2M server's sqlite file); default
    ``<data_dir>/lwm2m-server.sqlite``."""
    log_level: str = "INFO"
    step_timeout: float = 30.0
    step_retries: int = 2
    provisioning_ca_cert: Path | None = None
    provisioning_ca_key: Path | None = None
    coaps: bool = True
    """Open the DTLS listener at all (then ``security_modes`` says which DTLS modes it offers)."""
    security_modes: tuple[str, ...] = SECURITY_MODES
    """Any subset of nosec/psk/rpk/x509, as for the LwM2M server; without ``nosec`` there is no
    plain CoAP listener (NoSec bootstrap also needs a configuration that allows it)."""
    dtls: DtlsSettings = DEFAULT_DTLS
    store: StoreSettings = DEFAULT_STORE
    """``engine: redis`` keeps the keystore (shared with ``lwm2m-server``), the profiles and
    this server's records in Redis instead of the sqlite files (docs/cluster.md)."""
    api_auth: ApiAuthSettings = DEFAULT_API_AUTH
    """Bearer tokens on the HTTP API, shared with the LwM2M server through the keystore."""

    @property
    def token_file(self) -> Path:
        return self.data_dir / self.api_auth.token_file

    @property
    def configs_folder(self) -> Path:
        return self.configs_dir or self.data_dir / "bootstrap-configs"

    @property
    def keystore_file(self) -> Path:
        return self.keystore or self.data_dir / DATABASE_FILE

    @property
    def database(self) -> Path:
        return self.data_dir / "lwm2m-bootstrap.sqlite"


SCHEMA: Schema[BootstrapServerConfig] = Schema(
    BootstrapServerConfig,
    env_prefix=ENV_PREFIX,
    checks={
        "host": non_empty,
        "coap_port": port,
        "coaps_port": port,
        "http_host": non_empty,
        "http_port": port,
        "log_level": one_of(LOG_LEVELS),
        "step_timeout": positive,
        "step_retries": between(0, 10),
        "security_modes": check_security_modes,
        "dtls.cipher_suites": check_cipher_suites,
        "dtls.cid_length": between(1, 255),
        **store_checks(),
        "api_auth.admin_token": check_secret,
        "api_auth.read_token": check_secret,
        "api_auth.token_file": non_empty,
        "dtls.handshake_timeout": positive,
        "dtls.max_handshakes": positive,
        "dtls.hello_rate": positive,
    },
    cross_checks=(store_cross_check(),),
    upper_case=("log_level",),
    # read by the operator commands (``lwm2m-bootstrap configs list`` …), not by ``serve``
    extra_env=("LWM2M_BOOTSTRAP_API",),
)
"""Every key the bootstrap server accepts (``SCHEMA.keys``)."""


def env_name(key: str) -> str:
    return SCHEMA.env_name(key)


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> BootstrapServerConfig:
    """The effective settings; ``overrides`` are CLI flags by key (``None`` = not given)."""
    return SCHEMA.load(path, env=env, overrides=overrides)


def log_level_number(config: BootstrapServerConfig) -> int:
    return int(getattr(logging, config.log_level))
