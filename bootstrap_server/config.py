"""The bootstrap server's settings: defaults < YAML file < environment < command-line flags.

Same conventions as ``lwm2m_server.config`` (docs/configuration.md): ``${ENV_NAME:default}`` in
any string of the YAML file (substituted by the server's own ``_substitute``, so both processes
read files alike), every key overridable by ``LWM2M_BOOTSTRAP_<KEY>``, flags last, and a
``ConfigError`` naming the source, the key and the reason.

The conversion here is driven by the attrs fields of ``BootstrapServerConfig`` (type + range
check per field) rather than by a second copy of the server's schema table; both should end up
as one shared loader (see the report in docs/bootstrap.md, "Open points").

Defaults are chosen so that ``lwm2m-server`` and ``lwm2m-bootstrap`` started from the same
folder share the keystore with no configuration: ``keystore`` defaults to the server's
``data/lwm2m-server.sqlite``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import yaml

from lwm2m_server.config import (
    LOG_LEVELS,
    ConfigError,
    _FromText,
    _port,
    _positive,
    _substitute,
)

ENV_PREFIX = "LWM2M_BOOTSTRAP_"


def _retries(value: int) -> str | None:
    return None if 0 <= value <= 10 else f"{value} is outside 0..10"


def _level(value: str) -> str | None:
    return None if value.upper() in LOG_LEVELS else f"{value!r} is not one of {LOG_LEVELS}"


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
    """Open the DTLS listener (when the CoAPs transport is available)."""

    @property
    def configs_folder(self) -> Path:
        return self.configs_dir or self.data_dir / "bootstrap-configs"

    @property
    def keystore_file(self) -> Path:
        return self.keystore or self.data_dir / "lwm2m-server.sqlite"

    @property
    def database(self) -> Path:
        return self.data_dir / "lwm2m-bootstrap.sqlite"


FIELDS = {f.name: f for f in attrs.fields(BootstrapServerConfig)}
CHECKS: dict[str, Callable[[Any], str | None]] = {
    "coap_port": _port,
    "coaps_port": _port,
    "http_port": _port,
    "log_level": _level,
    "step_timeout": _positive,
    "step_retries": _retries,
}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def _convert(key: str, raw: Any, source: str) -> Any:
    field = FIELDS[key]
    kind = str(field.type)
    text = isinstance(raw, _FromText) or source.startswith("command line")

    def wrong(expected: str) -> ConfigError:
        return ConfigError(source, key, f"expected {expected}, got {type(raw).__name__} {raw!r}")

    value: Any
    if kind.startswith("tuple"):
        if isinstance(raw, str):
            value = tuple(Path(p) for p in (raw.split(os.pathsep) if text else [raw]) if p)
        elif isinstance(raw, list) and all(isinstance(p, str) for p in raw):
            value = tuple(Path(p) for p in raw)
        else:
            raise wrong("a list of folder paths")
    elif kind.startswith("Path"):
        if not isinstance(raw, str) or not raw:
            raise wrong("a path")
        value = Path(raw)
    elif kind == "bool":
        if isinstance(raw, bool):
            value = raw
        elif text and str(raw).strip().lower() in _TRUE + _FALSE:
            value = str(raw).strip().lower() in _TRUE
        else:
            raise wrong("true or false")
    elif kind in ("int", "float"):
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            value = raw
        elif text and re.fullmatch(r"\s*-?[0-9]+(\.[0-9]+)?\s*", str(raw)):
            value = float(raw)
        else:
            raise wrong("a number" if kind == "float" else "an integer")
        if kind == "int":
            if value != int(value):
                raise wrong("an integer")
            value = int(value)
        else:
            value = float(value)
    else:
        if not isinstance(raw, str) or not raw.strip():
            raise wrong("a non-empty string")
        value = str(raw)
    check = CHECKS.get(key)
    problem = check(value) if check is not None else None
    if problem:
        raise ConfigError(source, key, problem)
    return value.upper() if key == "log_level" else value


def _unknown(key: str) -> str:
    return f"unknown key (known keys: {', '.join(sorted(FIELDS))})"


def read_file(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    source = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        reason = f"cannot read the configuration file: {exc.strerror}"
        raise ConfigError(source, "", reason) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(source, "", f"not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(source, "", "the file must be a mapping of keys to values")
    data = _substitute(data, source, "", env)
    result = {}
    for key, raw in data.items():
        if key not in FIELDS:
            raise ConfigError(source, str(key), _unknown(str(key)))
        result[key] = _convert(key, raw, source)
    return result


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> BootstrapServerConfig:
    environment = os.environ if env is None else env
    values: dict[str, Any] = {}
    if path is not None:
        values.update(read_file(Path(path), environment))
    for key in FIELDS:
        name = env_name(key)
        if name in environment:
            values[key] = _convert(key, _FromText(environment[name]), f"environment {name}")
    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        if key not in FIELDS:
            raise ConfigError("command line", key, _unknown(key))
        if isinstance(raw, list | tuple):
            raw = [str(p) for p in raw]
        elif isinstance(raw, Path | int | float) and not isinstance(raw, bool):
            raw = raw if not isinstance(raw, Path) else str(raw)
        values[key] = _convert(key, raw, f"command line --{key.replace('_', '-')}")
    return BootstrapServerConfig(**values)


def log_level_number(config: BootstrapServerConfig) -> int:
    return int(getattr(logging, config.log_level))
