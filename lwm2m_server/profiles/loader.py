"""Profile documents (YAML/JSON files, API bodies) -> ``Profile``, checked against the models.

A profile is refused as a whole at its first problem, with a ``ConfigError(file, key, reason)``
(the configuration's error type: ``key`` is the dotted place in the document, e.g.
``resources./3303/0/5700.observe``), so the operator can fix a file from the message alone.
Checks against the object models (the version the profile names under ``objects``, else the
latest the registry knows): the object and resource exist, a mapped resource is readable, an
observed one is not executable, a resource instance belongs to a multiple resource, ``gt``/
``lt``/``st`` only on numeric resources, ``pmin <= pmax``, keys are unique.

The ``bootstrap`` section is the bootstrap server's business: it is validated with
``keystore.bootstrap_config.loader.parse_config`` as a profile-kind configuration (its
``profile:`` defaults to the profile's name) and kept as written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from keystore.bootstrap_config.loader import parse_config
from keystore.config_error import ConfigError
from lwm2m_server.core.telemetry import telemetry_key
from object_models.errors import InvalidPathError
from object_models.model import ObjectModel, ResourceModel
from object_models.path import LwM2mPath
from object_models.registry import ModelRegistry
from object_models.types import ResourceType

from ..firmware.contracts import PackageKind, Strategy
from .model import (
    NOTIFICATION_ATTRIBUTES,
    EndpointPattern,
    Kind,
    NotificationAttributes,
    ObserveStrategy,
    OnConnect,
    Profile,
    ResourceMapping,
    UpdateSetting,
)

__all__ = ["SUFFIXES", "ConfigError", "load_file", "parse_profile", "read_document"]

SUFFIXES = (".yaml", ".yml", ".json")
_TOP = frozenset({
    "name", "description", "endpoints", "objects", "observe_strategy", "on_connect",
    "keep_unmapped", "resources", "bootstrap", "retention", "firmware",
})  # fmt: skip
_RESOURCE = frozenset({"key", "kind", "observe", "type", "attributes"})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_NUMERIC = (ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER, ResourceType.FLOAT)


class _Where:
    """The file and the key path being read, for error messages."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.parts: list[str] = []

    def error(self, reason: str) -> ConfigError:
        return ConfigError(self.source, ".".join(self.parts), reason)

    @contextmanager
    def at(self, part: object) -> Iterator[None]:
        self.parts.append(str(part))
        try:
            yield
        finally:
            self.parts.pop()


def _kind_of(value: object) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {value!r}"


def _enum(where: _Where, value: object, enum_type: type[Any]) -> Any:
    text = str(value).strip().lower().replace("-", "_") if isinstance(value, str) else None
    for member in enum_type:
        if member.value == text:
            return member
    choices = ", ".join(m.value for m in enum_type)
    raise where.error(f"expected one of {choices}, got {_kind_of(value)}")


def _bool(where: _Where, value: object) -> bool:
    if not isinstance(value, bool):
        raise where.error(f"expected true or false, got {_kind_of(value)}")
    return value


def _text(where: _Where, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise where.error(f"expected a non-empty string, got {_kind_of(value)}")
    return value.strip()


def _mapping(where: _Where, value: object) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise where.error(f"expected a mapping, got {_kind_of(value)}")
    return value


def _unknown(where: _Where, data: Mapping[Any, Any], known: frozenset[str]) -> None:
    for name in data:
        if name not in known:
            with where.at(name):
                raise where.error(f"unknown key (known: {', '.join(sorted(known))})")


def parse_profile(
    data: object, source: str, registry: ModelRegistry, *, name: str | None = None
) -> Profile:
    """Validate one profile document; ``name`` is the fallback (a file's stem)."""
    where = _Where(source)
    top = _mapping(where, data)
    _unknown(where, top, _TOP)
    with where.at("name"):
        profile_name = _text(where, top.get("name", name))
        if not _NAME.fullmatch(profile_name):
            raise where.error("letters, digits, '_', '.', '-' only, at most 128, no leading mark")
    with where.at("objects"):
        objects = _objects(where, top.get("objects", {}), registry)
    with where.at("resources"):
        resources = _resources(where, top.get("resources", {}), objects, registry)
    for mapping in resources.values():  # every mapped object has a known version
        object_id = mapping.path.ids[0]
        latest = registry.get(object_id)
        if object_id not in objects and latest is not None:
            objects[object_id] = latest.version
    options: dict[str, Any] = {}
    for key, enum_type in (("observe_strategy", ObserveStrategy), ("on_connect", OnConnect)):
        if key in top:
            with where.at(key):
                options[key] = _enum(where, top[key], enum_type)
    if "keep_unmapped" in top:
        with where.at("keep_unmapped"):
            options["keep_unmapped"] = _bool(where, top["keep_unmapped"])
    with where.at("endpoints"):
        endpoints = _endpoints(where, top.get("endpoints", []))
    description = ""
    if top.get("description") is not None:
        with where.at("description"):
            description = _text(where, top["description"])
    bootstrap = None
    if top.get("bootstrap") is not None:
        with where.at("bootstrap"):
            bootstrap = _bootstrap(where, top["bootstrap"], profile_name, registry)
    if top.get("retention") is not None:
        with where.at("retention"):
            options["retention"] = _retention(where, top["retention"])
    if top.get("firmware") is not None:
        with where.at("firmware"):
            options["firmware"] = _firmware(where, top["firmware"])
    document = dict(top)
    document["name"] = profile_name
    return Profile(
        name=profile_name,
        source=source,
        document=document,
        objects=objects,
        resources=resources,
        endpoints=endpoints,
        description=description,
        bootstrap=bootstrap,
        **options,
    )


def _retention(where: _Where, value: object) -> float:
    """Seconds (``0.0``: keep forever), from a duration like ``30d`` or a number of seconds."""
    from ..telemetry_retention import parse_duration

    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise where.error(f"expected a duration like 30d or 12h, got {_kind_of(value)}")
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise where.error(str(exc)) from None
    return 0.0 if seconds is None else seconds


_SHA256 = re.compile(r"[0-9a-f]{64}")


def _firmware(where: _Where, value: object) -> dict[PackageKind, UpdateSetting]:
    """``firmware: {firmware: {strategy, package}, software: {...}}``; ``package`` is a
    package id (its SHA-256, lowercase hex) or ``{name, version}``. Whether the package exists
    is checked when a campaign uses it (packages come and go; the profile names one)."""
    section = _mapping(where, value)
    _unknown(where, section, frozenset(k.value for k in PackageKind))
    settings: dict[PackageKind, UpdateSetting] = {}
    for kind in PackageKind:
        if section.get(kind.value) is None:
            continue
        with where.at(kind.value):
            entry = _mapping(where, section[kind.value])
            _unknown(where, entry, frozenset({"strategy", "package"}))
            strategy = Strategy.AUTO
            if "strategy" in entry:
                with where.at("strategy"):
                    strategy = _enum(where, entry["strategy"], Strategy)
            package_id = name = version = None
            raw = entry.get("package")
            with where.at("package"):
                if isinstance(raw, str):
                    package_id = raw.strip().lower()
                    if not _SHA256.fullmatch(package_id):
                        raise where.error(
                            "expected a package id (64 hex digits, its SHA-256) or "
                            f"{{name, version}}, got {_kind_of(raw)}"
                        )
                elif isinstance(raw, Mapping):
                    _unknown(where, raw, frozenset({"name", "version"}))
                    with where.at("name"):
                        name = _text(where, raw.get("name"))
                    with where.at("version"):
                        version_raw = raw.get("version")
                        if isinstance(version_raw, int | float) and not isinstance(
                            version_raw, bool
                        ):
                            version_raw = str(version_raw)
                        version = _text(where, version_raw)
                elif raw is not None:
                    raise where.error(
                        f"expected a package id or {{name, version}}, got {_kind_of(raw)}"
                    )
            settings[kind] = UpdateSetting(strategy, package_id, name, version)
    return settings


def _objects(where: _Where, value: object, registry: ModelRegistry) -> dict[int, str]:
    result: dict[int, str] = {}
    for raw_id, raw_version in _mapping(where, value).items():
        with where.at(raw_id):
            object_id = _object_id(where, raw_id)
            version = str(raw_version).strip() if raw_version is not None else ""
            if isinstance(raw_version, float):
                version = f"{raw_version:.1f}"  # YAML reads 1.0 as a float
            if registry.get(object_id, version) is None:
                known = ", ".join(registry.versions(object_id)) or "none"
                raise where.error(
                    f"object {object_id} version {version or '?'} is not in the object models "
                    f"(known versions: {known})"
                )
            result[object_id] = version
    return result


def _object_id(where: _Where, raw: object) -> int:
    text = str(raw).strip().lstrip("/")
    if not text.isdigit() or int(text) > 65534:
        raise where.error(f"expected an object id 0..65534, got {_kind_of(raw)}")
    return int(text)


def _model(
    where: _Where, object_id: int, objects: Mapping[int, str], registry: ModelRegistry
) -> ObjectModel:
    model = registry.get(object_id, objects.get(object_id))
    if model is None:
        raise where.error(f"object {object_id} is not in the object models")
    return model


def _resources(
    where: _Where, value: object, objects: Mapping[int, str], registry: ModelRegistry
) -> dict[LwM2mPath, ResourceMapping]:
    result: dict[LwM2mPath, ResourceMapping] = {}
    keys: dict[str, LwM2mPath] = {}
    for raw_path, raw in _mapping(where, value).items():
        with where.at(raw_path):
            try:
                path = LwM2mPath.parse(str(raw_path))
            except InvalidPathError as exc:
                raise where.error(f"not an LwM2M path: {exc.message}") from None
            if path.depth < 3:
                raise where.error("map resources (/o/i/r) or resource instances (/o/i/r/ri)")
            model = _model(where, path.ids[0], objects, registry)
            resource = model.resource(path.ids[2])
            if resource is None:
                raise where.error(
                    f"object {model.id} ({model.name}) version {model.version} has no "
                    f"resource {path.ids[2]}"
                )
            default_key = telemetry_key(path, registry.for_client(objects))
            mapping = _resource(where, path, raw, resource, default_key)
            if mapping.key in keys:
                raise where.error(f"key {mapping.key!r} is also used by {keys[mapping.key]}")
            keys[mapping.key] = path
            result[path] = mapping
    return result


def _resource(
    where: _Where, path: LwM2mPath, raw: object, resource: ResourceModel, default_key: str
) -> ResourceMapping:
    data = _mapping(where, {} if raw is None else raw)
    _unknown(where, data, _RESOURCE)
    if path.is_resource_instance and not resource.multiple:
        raise where.error(f"resource {resource.id} ({resource.name}) has no instances")
    observe = False
    if "observe" in data:
        with where.at("observe"):
            observe = _bool(where, data["observe"])
            if observe and resource.operations.executable:
                raise where.error(f"cannot observe executable resource {path} ({resource.name})")
    if not resource.operations.readable:
        raise where.error(
            f"resource {path} ({resource.name}) is not readable "
            f"(operations {resource.operations.value or 'none'}): it cannot be mapped"
        )
    with where.at("key"):
        key = _text(where, data.get("key", default_key))
    kind = Kind.TELEMETRY
    if "kind" in data:
        with where.at("kind"):
            kind = _enum(where, data["kind"], Kind)
    rtype = resource.type
    if "type" in data:
        with where.at("type"):
            try:
                rtype = ResourceType.from_name(_text(where, data["type"]).replace("_", " "))
            except ValueError as exc:
                raise where.error(str(exc)) from None
    attributes = NotificationAttributes()
    if data.get("attributes") is not None:
        with where.at("attributes"):
            attributes = _attributes(where, data["attributes"], resource)
    return ResourceMapping(
        path=path,
        key=key,
        kind=kind,
        type=rtype,
        observe=observe,
        attributes=attributes,
        writable=resource.operations.writable,
    )


def _attributes(where: _Where, value: object, resource: ResourceModel) -> NotificationAttributes:
    data = _mapping(where, value)
    _unknown(where, data, frozenset(NOTIFICATION_ATTRIBUTES))
    values: dict[str, int | float] = {}
    for name, raw in data.items():
        with where.at(name):
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                raise where.error(f"expected a number, got {_kind_of(raw)}")
            if name in ("pmin", "pmax"):
                if not isinstance(raw, int) or raw < 0:
                    raise where.error(f"expected whole seconds >= 0, got {raw!r}")
            elif resource.type not in _NUMERIC:
                raise where.error(
                    f"{name} applies to numeric resources; {resource.name} is {resource.type.value}"
                )
            elif name == "st" and raw < 0:
                raise where.error("st must not be negative")
            values[name] = raw
    pmin, pmax = values.get("pmin"), values.get("pmax")
    if pmin is not None and pmax is not None and pmax < pmin:
        with where.at("pmax"):
            raise where.error(f"pmax {pmax} is below pmin {pmin}")
    lt, gt = values.get("lt"), values.get("gt")
    if lt is not None and gt is not None and not lt < gt:
        with where.at("lt"):
            raise where.error(f"lt {lt} must be below gt {gt}")
    return NotificationAttributes(
        pmin=None if pmin is None else int(pmin),
        pmax=None if pmax is None else int(pmax),
        gt=None if gt is None else float(gt),
        lt=None if lt is None else float(lt),
        st=None if values.get("st") is None else float(values["st"]),
    )


def _endpoints(where: _Where, value: object) -> tuple[EndpointPattern, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise where.error(f"expected a list of patterns, got {_kind_of(value)}")
    patterns = []
    for index, raw in enumerate(items):
        with where.at(index):
            text = _text(where, raw)
            if text.startswith("re:"):
                try:
                    re.compile(text[3:])
                except re.error as exc:
                    raise where.error(f"invalid regular expression: {exc}") from None
            patterns.append(EndpointPattern(text))
    return tuple(patterns)


def _bootstrap(
    where: _Where, value: object, name: str, registry: ModelRegistry
) -> Mapping[str, Any]:
    section = dict(_mapping(where, value))
    if section.setdefault("profile", name) != name:
        with where.at("profile"):
            raise where.error(f"must be the profile's own name {name!r} (or left out)")
    try:
        parse_config(section, where.source, registry)
    except ConfigError as exc:
        key = ".".join([*where.parts, exc.key]).rstrip(".")
        raise ConfigError(where.source, key, exc.reason) from None
    return section


# -- files ---------------------------------------------------------------------------------------


def read_document(path: Path) -> object:
    """The parsed content of a ``.yaml``/``.yml``/``.json`` file; ``ConfigError`` otherwise."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read the file: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(source, "", f"not valid JSON at line {exc.lineno}: {exc.msg}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            source, "", f"not valid YAML{at}: {getattr(exc, 'problem', exc)}"
        ) from None


def load_file(path: Path, registry: ModelRegistry) -> Profile:
    """One profile file (its stem is the name when the document gives none)."""
    return parse_profile(read_document(path), str(path), registry, name=path.stem)
