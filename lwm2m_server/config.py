"""The server's configuration: defaults < YAML file < environment < command-line flags.

* The YAML file (``--config FILE.yaml``) may use ``${ENV_NAME:default}`` in any string value
  (the ThingsBoard convention): ``coap_port: ${COAP_PORT:5683}``. A value that is *entirely*
  one reference takes the key's type (``5683`` → int); ``${NAME}`` without default must be set.
* Every key can be overridden by ``LWM2M_SERVER_<KEY>`` (nested keys joined by ``_``:
  ``LWM2M_SERVER_QUEUE_MAX_PER_CLIENT=8``; lists separated by ``os.pathsep``).
* Command-line flags override both.

Everything is validated at start; a ``ConfigError`` names where the value came from (file,
environment variable or flag), the key, and the reason (unknown key, wrong type, out of range),
and the CLI turns it into exit status 2. Every key is documented in docs/configuration.md.
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

ENV_PREFIX = "LWM2M_SERVER_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
SYNCHRONOUS = ("NORMAL", "FULL")


class ConfigError(Exception):
    """A configuration problem: ``source`` (file, env var, flag), ``key`` and ``reason``."""

    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source = source
        self.key = key
        self.reason = reason
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {reason}")


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
    queue: QueueSettings = QueueSettings()
    lifetime_grace: float = 15.0
    request_timeout: float = 10.0
    store_synchronous: str = "NORMAL"
    profiles_dir: Path | None = None
    default_profile: str = "default"
    sinks: SinkSettings = SinkSettings()

    @property
    def database(self) -> Path:
        return self.data_dir / "lwm2m-server.sqlite"


# -- the schema -----------------------------------------------------------------------------------

Check = Callable[[Any], str | None]


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else f"port {value} is out of range 0..65535"


def _positive(value: float) -> str | None:
    return None if value > 0 else f"{value} must be greater than 0"


def _non_negative(value: float) -> str | None:
    return None if value >= 0 else f"{value} must not be negative"


def _one_of(choices: tuple[str, ...]) -> Check:
    def check(value: str) -> str | None:
        if value.upper() not in choices:
            return f"{value!r} is not one of {', '.join(choices)}"
        return None

    return check


def _non_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


def _mqtt_url(value: str) -> str | None:
    if value and not re.fullmatch(r"(mqtt|tcp)://[^/\s]+", value):
        return f"{value!r} is not mqtt://[user:password@]host[:port]"
    return None


def _mqtt_topic(value: str) -> str | None:
    from .profiles.sinks.mqtt import check_topic

    return check_topic(value)


@attrs.frozen
class _Key:
    type: str  # "str" | "int" | "float" | "bool" | "paths" | "path"
    check: Check | None = None


SCHEMA: dict[str, _Key] = {
    "host": _Key("str", _non_empty),
    "coap_port": _Key("int", _port),
    "coaps_port": _Key("int", _port),
    "http_host": _Key("str", _non_empty),
    "http_port": _Key("int", _port),
    "data_dir": _Key("path"),
    "models_dirs": _Key("paths"),
    "log_level": _Key("str", _one_of(LOG_LEVELS)),
    "open_registration": _Key("bool"),
    "queue.max_per_client": _Key("int", _positive),
    "queue.awake_time": _Key("float", _positive),
    "queue.ttl": _Key("float", _positive),
    "lifetime_grace": _Key("float", _non_negative),
    "request_timeout": _Key("float", _positive),
    "store_synchronous": _Key("str", _one_of(SYNCHRONOUS)),
    "profiles_dir": _Key("path"),
    "default_profile": _Key("str", _non_empty),
    "sinks.jsonl": _Key("path"),
    "sinks.mqtt": _Key("str", _mqtt_url),
    "sinks.mqtt_topic": _Key("str", _mqtt_topic),
    "sinks.queue_size": _Key("int", _positive),
}
SECTIONS = frozenset(k.split(".")[0] for k in SCHEMA if "." in k)


class _FromText(str):
    """A string that came from the environment (a ``${...}`` reference or a variable): it is
    converted to the key's type, unlike a string literal in YAML, which must already be one."""


_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _convert(key: str, raw: Any, source: str) -> Any:
    spec = SCHEMA[key]
    from_text = isinstance(raw, _FromText)
    value: Any

    def wrong(expected: str) -> ConfigError:
        shown = f"string {str(raw)!r}" if isinstance(raw, str) else f"{type(raw).__name__} {raw!r}"
        return ConfigError(source, key, f"expected {expected}, got {shown}")

    if spec.type in ("str", "path"):
        if not isinstance(raw, str):
            raise wrong("a string")
        value = str(raw) if spec.type == "str" else Path(str(raw))
    elif spec.type == "paths":
        if isinstance(raw, str):
            parts = str(raw).split(os.pathsep) if from_text else [str(raw)]
            value = tuple(Path(p) for p in parts if p)
        elif isinstance(raw, list) and all(isinstance(p, str) for p in raw):
            value = tuple(Path(str(p)) for p in raw)
        else:
            raise wrong("a list of folder paths")
    elif spec.type == "bool":
        if isinstance(raw, bool):
            value = raw
        elif from_text and raw.strip().lower() in _TRUE + _FALSE:
            value = raw.strip().lower() in _TRUE
        else:
            raise wrong("true or false")
    elif spec.type == "int":
        if isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        elif from_text and re.fullmatch(r"\s*-?[0-9]+\s*", raw):
            value = int(raw)
        else:
            raise wrong("an integer")
    else:  # float
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            value = float(raw)
        elif from_text:
            try:
                value = float(raw)
            except ValueError:
                raise wrong("a number") from None
        else:
            raise wrong("a number")
    if spec.check is not None:
        problem = spec.check(value)
        if problem:
            raise ConfigError(source, key, problem)
    if spec.type == "str" and spec.check is not None and key in ("log_level", "store_synchronous"):
        value = value.upper()
    return value


def _substitute(value: Any, source: str, key: str, env: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            k: _substitute(v, source, f"{key}.{k}" if key else str(k), env)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_substitute(v, source, key, env) for v in value]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is None:
            raise ConfigError(
                source,
                key,
                f"environment variable {name} is not set and ${{{name}}} has no default",
            )
        return default

    return _FromText(_REFERENCE.sub(replace, value))


def _flatten(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in data.items():
        if not isinstance(name, str):
            raise ConfigError(source, str(name), "keys must be strings")
        if name in SECTIONS:
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(source, name, f"expected a mapping, got {type(value).__name__}")
            for sub, subvalue in value.items():
                key = f"{name}.{sub}"
                if key not in SCHEMA:
                    raise ConfigError(source, key, _unknown(key))
                flat[key] = subvalue
        elif name in SCHEMA:
            flat[name] = value
        else:
            raise ConfigError(source, name, _unknown(name))
    return flat


def _unknown(key: str) -> str:
    return f"unknown key (known keys: {', '.join(sorted(SCHEMA))})"


def read_file(path: Path, env: Mapping[str, str]) -> dict[str, Any]:
    """The file's settings as ``{dotted key: converted value}``."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            source, "", f"cannot read the configuration file: {exc.strerror or exc}"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            source, "", f"not valid YAML{where}: {getattr(exc, 'problem', exc)}"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(source, "", "the file must be a mapping of keys to values")
    data = _substitute(data, source, "", env)
    return {key: _convert(key, raw, source) for key, raw in _flatten(data, source).items()}


def env_name(key: str) -> str:
    return ENV_PREFIX + key.replace(".", "_").upper()


def read_env(env: Mapping[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key in SCHEMA:
        name = env_name(key)
        if name in env:
            result[key] = _convert(key, _FromText(env[name]), f"environment {name}")
    return result


def build(values: Mapping[str, Any]) -> ServerConfig:
    top = {k: v for k, v in values.items() if "." not in k}
    queue = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("queue.")}
    sinks = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("sinks.")}
    return ServerConfig(**top, queue=QueueSettings(**queue), sinks=SinkSettings(**sinks))


def load_config(
    path: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServerConfig:
    """The effective configuration. ``overrides`` are CLI flags by dotted key (``None`` values
    are "not given"); they are validated like everything else (source ``--flag``)."""
    environment = os.environ if env is None else env
    values: dict[str, Any] = {}
    if path is not None:
        values.update(read_file(Path(path), environment))
    values.update(read_env(environment))
    for key, raw in (overrides or {}).items():
        if raw is None:
            continue
        if key not in SCHEMA:
            raise ConfigError("command line", key, _unknown(key))
        if isinstance(raw, list | tuple) and SCHEMA[key].type == "paths":
            raw = [str(p) for p in raw]
        elif isinstance(raw, Path):
            raw = str(raw)
        flag = "--" + key.replace("_", "-").replace(".", "-")
        values[key] = _convert(key, raw, f"command line {flag}")
    return build(values)


def log_level_number(config: ServerConfig) -> int:
    return int(getattr(logging, config.log_level))
