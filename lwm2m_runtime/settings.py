"""The settings loader both servers use: defaults < YAML file < environment < command-line flags.

A ``Schema`` is built from an attrs config class (``lwm2m_server.config.ServerConfig``,
``bootstrap_server.config.BootstrapServerConfig``): each field's type decides how a value is
converted, a field whose type is itself an attrs class is a section (``queue.max_per_client``),
and per-key checks add ranges and choices. The schema then

* reads a YAML file in which any string may be ``${ENV_NAME:default}`` (the ThingsBoard
  convention); a value that is *entirely* one reference takes the key's type (``5683`` → int),
  ``${NAME}`` without default must be set;
* reads ``<PREFIX><KEY>`` environment variables (nested keys joined by ``_``, lists separated by
  ``os.pathsep``); any other variable with the prefix is an error naming it and the closest
  known name, like an unknown YAML key: ``LWM2M_SERVER_COAP_PROT=5683`` silently ignored would
  leave the server on a port the operator did not choose. Only this schema's prefix is checked
  (the other server's variables in the same environment are not this one's business), and
  ``extra_env`` names variables that share the prefix but are read elsewhere (the bootstrap
  operator commands' ``LWM2M_BOOTSTRAP_API``);
* applies command-line overrides (``None`` = flag not given);
* validates everything and raises a ``ConfigError`` naming the source (file, environment
  variable or flag), the key and the reason; ``cross_checks`` see the whole configuration
  (``store.url`` is required when ``store.engine`` is ``redis``) and name the source that set
  the key they blame.

Only values that came in as text (a ``${...}`` reference, an environment variable, a command-line
string) are converted from text: a YAML string where a number or boolean is expected is an error.
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar, get_args, get_origin

import attrs
import yaml

from keystore.config_error import ConfigError
from keystore.store.engines import StoreSettings, check_engine, check_store_url, store_problems
from keystore.store.redis_database import check_prefix

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")

Check = Callable[[Any], str | None]
"""A value check: ``None`` if the (converted) value is acceptable, else the reason."""

C = TypeVar("C")

CrossCheck = Callable[[Any], tuple[str, str] | None]
"""A check of the whole (built) configuration: ``None``, or the dotted key it blames and why."""


# -- checks ---------------------------------------------------------------------------------------


def port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else f"port {value} is out of range 0..65535"


def positive(value: float) -> str | None:
    return None if value > 0 else f"{value} must be greater than 0"


def non_negative(value: float) -> str | None:
    return None if value >= 0 else f"{value} must not be negative"


def between(low: int, high: int) -> Check:
    def check(value: int) -> str | None:
        return None if low <= value <= high else f"{value} is outside {low}..{high}"

    return check


def one_of(choices: tuple[str, ...]) -> Check:
    """Case-insensitive choice; pair it with ``upper_case`` in the schema to normalise."""

    def check(value: str) -> str | None:
        if value.upper() not in choices:
            return f"{value!r} is not one of {', '.join(choices)}"
        return None

    return check


def non_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


# -- the store section ----------------------------------------------------------------------------


def store_checks(section: str = "store") -> dict[str, Check]:
    """The per-key checks of a ``store:`` section (``keystore.store.engines.StoreSettings``:
    ``engine``, ``url``, ``prefix``), for a server's ``Schema``."""
    return {
        f"{section}.engine": check_engine,
        f"{section}.url": check_store_url,
        f"{section}.prefix": check_prefix,
    }


def store_cross_check(section: str = "store") -> CrossCheck:
    """The checks across the store section's keys (a Redis engine needs a URL; a URL without
    the Redis engine is a mistake), for a server's ``Schema(cross_checks=...)``."""

    def check(config: Any) -> tuple[str, str] | None:
        settings: StoreSettings = getattr(config, section)
        problems = store_problems(settings)
        if not problems:
            return None
        field, reason = problems[0]
        return f"{section}.{field}", reason

    return check


# -- text from the environment --------------------------------------------------------------------


class FromText(str):
    """A string that came from the environment (a ``${...}`` reference or a variable) or the
    command line: it is converted to the key's type, unlike a string literal in YAML, which must
    already be one."""


_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::([^}]*))?\}")


def substitute(value: Any, source: str, key: str, env: Mapping[str, str]) -> Any:
    """``value`` (YAML data) with every ``${NAME}`` / ``${NAME:default}`` in its strings replaced
    from ``env``; a string that had a reference becomes ``FromText``. ``key`` is the dotted key
    of ``value``, for errors."""
    if isinstance(value, dict):
        return {
            k: substitute(v, source, f"{key}.{k}" if key else str(k), env) for k, v in value.items()
        }
    if isinstance(value, list):
        return [substitute(v, source, key, env) for v in value]
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

    return FromText(_REFERENCE.sub(replace, value))


def load_yaml(path: Path) -> dict[str, Any]:
    """The file's top-level mapping (``{}`` for an empty file), or a ``ConfigError``."""
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
    return data


# -- the schema -----------------------------------------------------------------------------------

KINDS = ("str", "int", "float", "bool", "path", "paths")


@attrs.frozen
class Key:
    """One accepted key: its kind (one of ``KINDS``), an optional check, and whether the value
    is normalised to upper case."""

    kind: str
    check: Check | None = None
    upper: bool = False


def _kind(owner: type, name: str, annotation: Any) -> str:
    if annotation in (str, int, float, bool):
        return str(annotation.__name__)
    if annotation is Path:
        return "path"
    if isinstance(annotation, types.UnionType) and set(get_args(annotation)) == {
        Path,
        type(None),
    }:
        return "path"
    if get_origin(annotation) is tuple and get_args(annotation) == (Path, ...):
        return "paths"
    if get_origin(annotation) is tuple and get_args(annotation) == (str, ...):
        return "strs"
    raise TypeError(f"{owner.__name__}.{name}: no settings conversion for {annotation!r}")


class Schema(Generic[C]):
    """The keys of ``config_class`` (an attrs class) and how to load them.

    ``checks`` and ``upper_case`` are by dotted key. Fields whose type is an attrs class are
    sections; their keys are ``section.field``.
    """

    def __init__(
        self,
        config_class: type[C],
        *,
        env_prefix: str,
        checks: Mapping[str, Check] | None = None,
        upper_case: Iterable[str] = (),
        extra_env: Iterable[str] = (),
        cross_checks: Iterable[CrossCheck] = (),
    ) -> None:
        self.config_class = config_class
        self.cross_checks = tuple(cross_checks)
        self.env_prefix = env_prefix
        self.extra_env = frozenset(extra_env)
        if any(not name.startswith(env_prefix) for name in self.extra_env):
            raise TypeError(f"extra_env names must start with {env_prefix}")
        checks = dict(checks or {})
        upper = frozenset(upper_case)
        self.keys: dict[str, Key] = {}
        self.sections: dict[str, type] = {}
        resolved: Any = attrs.resolve_types(config_class)  # type: ignore[type-var]
        for field in attrs.fields(resolved):
            if attrs.has(field.type):
                self.sections[field.name] = field.type
                inner = attrs.fields(attrs.resolve_types(field.type))
                for sub in inner:
                    self._add(f"{field.name}.{sub.name}", field.type, sub, checks, upper)
            else:
                self._add(field.name, config_class, field, checks, upper)
        unused = (set(checks) | upper) - set(self.keys)
        if unused:
            raise TypeError(f"checks for keys {config_class.__name__} lacks: {sorted(unused)}")

    def _add(
        self,
        key: str,
        owner: type,
        field: attrs.Attribute[Any],
        checks: Mapping[str, Check],
        upper: frozenset[str],
    ) -> None:
        self.keys[key] = Key(_kind(owner, field.name, field.type), checks.get(key), key in upper)

    # -- names --

    def env_name(self, key: str) -> str:
        return self.env_prefix + key.replace(".", "_").upper()

    def flag_name(self, key: str) -> str:
        return "--" + key.replace("_", "-").replace(".", "-")

    def unknown(self, key: str) -> str:
        return f"unknown key (known keys: {', '.join(sorted(self.keys))})"

    # -- conversion --

    def convert(self, key: str, raw: Any, source: str) -> Any:
        """``raw`` as the value of ``key``, checked; ``ConfigError`` from ``source`` if not."""
        spec = self.keys[key]
        from_text = isinstance(raw, FromText)
        value: Any

        def wrong(expected: str) -> ConfigError:
            shown = (
                f"string {str(raw)!r}" if isinstance(raw, str) else f"{type(raw).__name__} {raw!r}"
            )
            return ConfigError(source, key, f"expected {expected}, got {shown}")

        if spec.kind == "str":
            if not isinstance(raw, str):
                raise wrong("a string")
            value = str(raw)
        elif spec.kind == "path":
            if not isinstance(raw, str) or not raw:
                raise wrong("a path")
            value = Path(str(raw))
        elif spec.kind == "paths":
            if isinstance(raw, str):
                parts = str(raw).split(os.pathsep) if from_text else [str(raw)]
                value = tuple(Path(p) for p in parts if p)
            elif isinstance(raw, list) and all(isinstance(p, str) for p in raw):
                value = tuple(Path(str(p)) for p in raw)
            else:
                raise wrong("a list of folder paths")
        elif spec.kind == "strs":
            # a YAML list, or text with commas (environment, flags, or a YAML string)
            if isinstance(raw, str):
                value = tuple(w.strip() for w in str(raw).split(",") if w.strip())
            elif isinstance(raw, list) and all(isinstance(w, str) for w in raw):
                value = tuple(str(w).strip() for w in raw)
            else:
                raise wrong("a list of names")
        elif spec.kind == "bool":
            if isinstance(raw, bool):
                value = raw
            elif from_text and raw.strip().lower() in TRUE_WORDS + FALSE_WORDS:
                value = raw.strip().lower() in TRUE_WORDS
            else:
                raise wrong("true or false")
        elif spec.kind == "int":
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
        return value.upper() if spec.upper else value

    # -- sources --

    def flatten(self, data: Mapping[Any, Any], source: str) -> dict[str, Any]:
        """YAML data as ``{dotted key: raw value}``; unknown keys are errors."""
        flat: dict[str, Any] = {}
        for name, value in data.items():
            if not isinstance(name, str):
                raise ConfigError(source, str(name), "keys must be strings")
            if name in self.sections:
                if value is None:
                    continue
                if not isinstance(value, dict):
                    raise ConfigError(
                        source, name, f"expected a mapping, got {type(value).__name__}"
                    )
                for sub, subvalue in value.items():
                    key = f"{name}.{sub}"
                    if key not in self.keys:
                        raise ConfigError(source, key, self.unknown(key))
                    flat[key] = subvalue
            elif name in self.keys:
                flat[name] = value
            else:
                raise ConfigError(source, name, self.unknown(name))
        return flat

    def read_file(self, path: Path, env: Mapping[str, str]) -> dict[str, Any]:
        """The file's settings as ``{dotted key: converted value}``."""
        source = str(path)
        data = substitute(load_yaml(path), source, "", env)
        return {
            key: self.convert(key, raw, source) for key, raw in self.flatten(data, source).items()
        }

    def env_names(self) -> frozenset[str]:
        """Every environment variable with this schema's prefix that is not an error."""
        return frozenset(self.env_name(key) for key in self.keys) | self.extra_env

    def check_env(self, env: Mapping[str, str]) -> None:
        """A ``ConfigError`` for the first (alphabetically) variable with this schema's prefix
        that no key reads, suggesting the closest known name."""
        known = self.env_names()
        for name in sorted(env):
            if name.startswith(self.env_prefix) and name not in known:
                # compared without the prefix, which every name shares
                cut = len(self.env_prefix)
                suffixes = sorted(k[cut:] for k in known)
                close = difflib.get_close_matches(name[cut:], suffixes, n=1, cutoff=0.6)
                hint = (
                    f"did you mean {self.env_prefix}{close[0]}?"
                    if close
                    else f"known variables: {', '.join(sorted(known))}"
                )
                raise ConfigError(f"environment {name}", "", f"unknown variable ({hint})")

    def read_env(self, env: Mapping[str, str]) -> dict[str, Any]:
        """``{dotted key: converted value}`` of the variables set; an unknown variable with
        the prefix is an error (``check_env``)."""
        self.check_env(env)
        result: dict[str, Any] = {}
        for key in self.keys:
            name = self.env_name(key)
            if name in env:
                result[key] = self.convert(key, FromText(env[name]), f"environment {name}")
        return result

    def read_overrides(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Command-line values by dotted key; ``None`` means "flag not given". Strings are
        converted like environment values."""
        result: dict[str, Any] = {}
        for key, raw in overrides.items():
            if raw is None:
                continue
            if key not in self.keys:
                raise ConfigError("command line", key, self.unknown(key))
            if isinstance(raw, list | tuple):
                raw = [str(p) for p in raw]
            elif isinstance(raw, str | Path):
                raw = FromText(str(raw))
            result[key] = self.convert(key, raw, f"command line {self.flag_name(key)}")
        return result

    def build(self, values: Mapping[str, Any]) -> C:
        """The config object from ``{dotted key: converted value}`` (defaults for the rest)."""
        top: dict[str, Any] = {k: v for k, v in values.items() if "." not in k}
        for section, cls in self.sections.items():
            prefix = section + "."
            top[section] = cls(
                **{k[len(prefix) :]: v for k, v in values.items() if k.startswith(prefix)}
            )
        return self.config_class(**top)

    def load(
        self,
        path: str | Path | None = None,
        *,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> C:
        """The effective configuration: defaults < file < ``env`` (default ``os.environ``) <
        ``overrides``."""
        environment = os.environ if env is None else env
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        if path is not None:
            from_file = self.read_file(Path(path), environment)
            values.update(from_file)
            sources.update(dict.fromkeys(from_file, str(path)))
        from_env = self.read_env(environment)
        values.update(from_env)
        sources.update({key: f"environment {self.env_name(key)}" for key in from_env})
        from_flags = self.read_overrides(overrides or {})
        values.update(from_flags)
        sources.update({key: f"command line {self.flag_name(key)}" for key in from_flags})
        config = self.build(values)
        for check in self.cross_checks:
            problem = check(config)
            if problem is not None:
                key, reason = problem
                # the key's source, else the source of a key beside it (the engine that needs
                # the URL nobody gave), else the file
                section = key.rpartition(".")[0] + "."
                beside = [
                    src for k, src in sources.items() if section != "." and k.startswith(section)
                ]
                fallback = beside[-1] if beside else str(path) if path is not None else "defaults"
                raise ConfigError(sources.get(key, fallback), key, reason)
        return config
