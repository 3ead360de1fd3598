"""The JSON object-model format: load, validate and dump ``{"objects": [...]}`` files.

One format, one shape: a file is a JSON object whose ``objects`` member lists one or more object
models (optional ``$schema`` and ``$comment`` members are allowed next to it)::

    {"objects": [{"id": 3303, "name": "Temperature", "version": "1.1",
                  "resources": [{"id": 5700, "name": "Sensor Value", "operations": "R",
                                 "type": "Float"}]}]}

The JSON Schema (draft 2020-12) ships in ``object_models/schema/object-model.schema.json``;
``docs/object-models.md`` describes every field. Loading checks the schema with ``jsonschema``
when it is installed, then checks everything again while building the models (so errors stay
precise without ``jsonschema``), plus what a schema cannot say: resource ids unique per object and
id+version unique per file. Any problem raises ``ModelError`` naming the file, the JSON field
(``objects[0].resources[3].type``), the reason and, when it can be found, the line.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

import attrs

from .errors import ModelError
from .model import ObjectModel, Operations, ResourceModel
from .types import ResourceType

__all__ = [
    "MAX_INT_DIGITS",
    "MAX_JSON_SIZE",
    "LoadedObject",
    "dump",
    "dumps",
    "load",
    "loads",
    "object_from_json",
    "object_to_json",
    "schema",
]

MAX_JSON_SIZE = 16 * 1024 * 1024
"""Larger files are refused before parsing."""

MAX_INT_DIGITS = 4300
"""Longer integer literals are refused with their field (Python's own conversion limit)."""

SCHEMA_RESOURCE = "schema/object-model.schema.json"

_VERSION = re.compile(r"[0-9]{1,4}\.[0-9]{1,4}")
_OBJECT_KEYS = {
    "id", "name", "version", "lwm2mVersion", "urn", "multiple", "mandatory",
    "description", "description2", "source", "resources",
}  # fmt: skip
_RESOURCE_KEYS = {
    "id", "name", "operations", "multiple", "mandatory", "type", "range", "units", "description",
}  # fmt: skip
_TOP_KEYS = {"objects", "$schema", "$comment"}
_EXPECTED = {
    "integer": "an integer",
    "string": "a string",
    "boolean": "a boolean",
    "array": "an array",
    "object": "an object",
}
_NOT_A_DOCUMENT = 'the file must hold {{"objects": [...]}}, got {}'
_TYPE_NAMES = [t.value for t in ResourceType]
_OPERATION_NAMES = [o.value for o in Operations]

Token = str | int
FieldPath = tuple[Token, ...]


@attrs.frozen
class LoadedObject:
    """One model read from a file, with where it was (``field``/``line``) and its ``source``."""

    model: ObjectModel
    field: str
    line: int | None = None
    source: Mapping[str, str] = attrs.field(factory=dict)


class _FieldError(Exception):
    def __init__(self, path: FieldPath, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


def format_field(path: Iterable[Token]) -> str:
    """``("objects", 0, "resources", 3, "type")`` -> ``objects[0].resources[3].type``."""
    out = ""
    for token in path:
        if isinstance(token, int):
            out += f"[{token}]"
        else:
            out += f".{token}" if out else token
    return out


# -- schema ---------------------------------------------------------------------------------------
@functools.cache
def schema() -> dict[str, Any]:
    """The JSON Schema of the format, as shipped in the package."""
    text = importlib_resources.files("object_models").joinpath(SCHEMA_RESOURCE).read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@functools.cache
def _validator() -> Any:
    try:
        jsonschema = importlib.import_module("jsonschema")
    except ImportError:  # pragma: no cover - jsonschema is a test dependency, optional at run time
        return None
    return jsonschema.Draft202012Validator(schema())


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _schema_error(doc: object) -> _FieldError | None:
    validator = _validator()
    if validator is None:
        return None
    best = importlib.import_module("jsonschema.exceptions").best_match(validator.iter_errors(doc))
    if best is None:
        return None
    path: FieldPath = tuple(best.absolute_path)
    instance = best.instance
    kind = best.validator
    if kind == "required" and isinstance(instance, dict):
        missing = [k for k in best.validator_value if k not in instance]
        return _FieldError((*path, missing[0]), "missing required field")
    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = best.schema.get("properties", {})
        extra = sorted(k for k in instance if k not in allowed)
        return _FieldError((*path, extra[0]), "unknown field")
    if kind == "type":
        if not path:
            return _FieldError(path, _NOT_A_DOCUMENT.format(_json_type(instance)))
        expected = _EXPECTED.get(best.validator_value, str(best.validator_value))
        return _FieldError(path, f"must be {expected}, got {_json_type(instance)}")
    if kind == "enum":
        return _FieldError(path, f"must be one of {best.validator_value}, got {instance!r}")
    if kind in ("minimum", "maximum"):
        return _FieldError(path, f"{instance} is outside 0..65535")
    if kind == "pattern":
        return _FieldError(path, f"expected a version like '1.0', got {instance!r}")
    if kind == "minLength":
        return _FieldError(path, "must not be empty")
    if kind == "minItems":
        return _FieldError(path, "must list at least one object")
    return _FieldError(path, str(best.message))


# -- JSON -> model --------------------------------------------------------------------------------
def _get(
    data: Mapping[str, Any], key: str, path: FieldPath, kind: type, default: Any = None
) -> Any:
    if key not in data:
        if default is None:
            raise _FieldError((*path, key), "missing required field")
        return default
    value = data[key]
    if kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        expected = "an integer"
    elif kind is bool:
        ok = isinstance(value, bool)
        expected = "a boolean"
    elif kind is str:
        ok = isinstance(value, str)
        expected = "a string"
    elif kind is list:
        ok = isinstance(value, list)
        expected = "an array"
    else:
        ok = isinstance(value, dict)
        expected = "an object"
    if not ok:
        raise _FieldError((*path, key), f"must be {expected}, got {_json_type(value)}")
    return value


def _check_keys(data: Mapping[str, Any], allowed: set[str], path: FieldPath) -> None:
    for key in data:
        if key not in allowed:
            raise _FieldError((*path, key), "unknown field")


def _id(data: Mapping[str, Any], path: FieldPath) -> int:
    value: int = _get(data, "id", path, int)
    if not 0 <= value <= 65535:
        raise _FieldError((*path, "id"), f"{value} is outside 0..65535")
    return value


def _name(data: Mapping[str, Any], path: FieldPath) -> str:
    value: str = _get(data, "name", path, str)
    if not value:
        raise _FieldError((*path, "name"), "must not be empty")
    return value


def _version(data: Mapping[str, Any], key: str, path: FieldPath) -> str:
    value: str = _get(data, key, path, str, "1.0")
    if not _VERSION.fullmatch(value):
        raise _FieldError((*path, key), f"expected a version like '1.0', got {value!r}")
    return value


def _resource_from_json(data: object, path: FieldPath) -> ResourceModel:
    if not isinstance(data, dict):
        raise _FieldError(path, f"must be an object, got {_json_type(data)}")
    _check_keys(data, _RESOURCE_KEYS, path)
    resource_id = _id(data, path)
    name = _name(data, path)
    operations = _get(data, "operations", path, str)
    if operations not in _OPERATION_NAMES:
        raise _FieldError(
            (*path, "operations"), f"must be one of {_OPERATION_NAMES}, got {operations!r}"
        )
    type_name = _get(data, "type", path, str)
    if type_name not in _TYPE_NAMES:
        raise _FieldError((*path, "type"), f"must be one of {_TYPE_NAMES}, got {type_name!r}")
    return ResourceModel(
        id=resource_id,
        name=name,
        operations=Operations(operations),
        multiple=_get(data, "multiple", path, bool, False),
        mandatory=_get(data, "mandatory", path, bool, False),
        type=ResourceType(type_name),
        range_enumeration=_get(data, "range", path, str, ""),
        units=_get(data, "units", path, str, ""),
        description=_get(data, "description", path, str, ""),
    )


def _object_from_json(data: object, path: FieldPath) -> tuple[ObjectModel, dict[str, str]]:
    if not isinstance(data, dict):
        raise _FieldError(path, f"must be an object, got {_json_type(data)}")
    _check_keys(data, _OBJECT_KEYS, path)
    object_id = _id(data, path)
    name = _name(data, path)
    raw_resources: list[Any] = _get(data, "resources", path, list)
    resources: dict[int, ResourceModel] = {}
    first_index: dict[int, int] = {}
    for index, item in enumerate(raw_resources):
        item_path = (*path, "resources", index)
        resource = _resource_from_json(item, item_path)
        if resource.id in resources:
            raise _FieldError(
                (*item_path, "id"),
                f"duplicate resource id {resource.id} (also resources[{first_index[resource.id]}])",
            )
        resources[resource.id] = resource
        first_index[resource.id] = index
    source: dict[str, Any] = _get(data, "source", path, dict, {})
    for key, value in source.items():
        if not isinstance(value, str):
            raise _FieldError((*path, "source", key), f"must be a string, got {_json_type(value)}")
    model = ObjectModel(
        id=object_id,
        name=name,
        resources=resources,
        version=_version(data, "version", path),
        lwm2m_version=_version(data, "lwm2mVersion", path),
        multiple=_get(data, "multiple", path, bool, True),
        mandatory=_get(data, "mandatory", path, bool, False),
        urn=_get(data, "urn", path, str, ""),
        description=_get(data, "description", path, str, ""),
        description2=_get(data, "description2", path, str, ""),
    )
    return model, source


def object_from_json(data: Mapping[str, Any], file: str = "<json>", field: str = "") -> ObjectModel:
    """One object model from its JSON form (a dict), without the schema check."""
    try:
        return _object_from_json(dict(data), ())[0]
    except _FieldError as exc:
        prefix = f"{field}." if field and exc.path else field
        raise ModelError(file, prefix + format_field(exc.path), exc.reason) from None


def _objects_from_document(doc: object) -> list[tuple[ObjectModel, dict[str, str], FieldPath]]:
    if not isinstance(doc, dict):
        raise _FieldError((), _NOT_A_DOCUMENT.format(_json_type(doc)))
    _check_keys(doc, _TOP_KEYS, ())
    items: list[Any] = _get(doc, "objects", (), list)
    if not items:
        raise _FieldError(("objects",), "must list at least one object")
    result = []
    seen: dict[tuple[int, str], int] = {}
    for index, item in enumerate(items):
        path: FieldPath = ("objects", index)
        model, source = _object_from_json(item, path)
        key = (model.id, model.version)
        if key in seen:
            raise _FieldError(
                path,
                f"object {model.id} version {model.version} is defined twice "
                f"(also objects[{seen[key]}])",
            )
        seen[key] = index
        result.append((model, source, path))
    return result


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def loads(
    data: str | bytes, file: str = "<string>", *, validate: bool = True
) -> list[LoadedObject]:
    """Every object model in the JSON document ``data`` (``file`` names it in errors).

    ``validate=False`` skips the JSON Schema and duplicate-key checks (used for the shipped
    built-ins, which the test-suite validates); the structural and semantic checks always run.
    """
    if len(data) > MAX_JSON_SIZE:
        raise ModelError(file, "", f"file is larger than {MAX_JSON_SIZE} bytes")
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            at = data.count(b"\n", 0, exc.start) + 1
            reason = f"not UTF-8 text: {exc.reason} at byte {exc.start}"
            raise ModelError(file, "", reason, line=at) from None
    else:
        text = data
    too_long: list[int] = []

    def parse_int(digits: str) -> object:
        # Python refuses to convert more than 4300 digits (ValueError, CVE-2020-10735); no
        # field of the format needs more than 5, so a marker stands in and is reported below
        # with its field and line
        if len(digits) > MAX_INT_DIGITS:
            too_long.append(len(digits))
            return _TooLong(len(digits))
        return int(digits)

    try:
        doc = json.loads(
            text,
            object_pairs_hook=_reject_duplicate_keys if validate else None,
            parse_int=parse_int,
        )
    except json.JSONDecodeError as exc:
        raise ModelError(file, "", f"invalid JSON: {exc.msg}", line=exc.lineno) from None
    except _DuplicateKey as exc:
        raise ModelError(file, "", f"duplicate key {_clip(exc.key)!r} in a JSON object") from None
    except RecursionError:
        raise ModelError(file, "", "JSON nested too deeply") from None
    try:
        if too_long:
            raise _too_long_error(doc)
        if validate:
            problem = _schema_error(doc)
            if problem is not None:
                raise problem
        found = _objects_from_document(doc)
    except _FieldError as exc:
        line = _line_of(text, exc.path)
        raise ModelError(file, format_field(exc.path), exc.reason, line=line) from None
    positions: dict[FieldPath, int] | None = None
    result = []
    for model, source, path in found:
        line = None
        if validate:  # only user files: a second scan is cheap there and gives exact lines
            if positions is None:
                positions = _positions(text)
            offset = positions.get(path)
            line = None if offset is None else text.count("\n", 0, offset) + 1
        result.append(LoadedObject(model, format_field(path), line, source))
    return result


def load(path: str | Path, *, validate: bool = True) -> list[LoadedObject]:
    """Read and load a JSON model file; unreadable files raise ``ModelError`` too."""
    file = str(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_JSON_SIZE + 1)
    except OSError as exc:
        raise ModelError(file, "", f"cannot read file: {exc.strerror or exc}") from None
    return loads(data, file, validate=validate)


class _TooLong:
    """Stands for an integer literal too long to convert (see ``loads``)."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _too_long_error(doc: object) -> _FieldError:
    """The first (in document order) integer literal that was too long, with its path."""
    stack: list[tuple[FieldPath, object]] = [((), doc)]
    while stack:  # iterative: the document may be nested ~1000 deep
        path, value = stack.pop()
        if isinstance(value, _TooLong):
            reason = f"an integer of {value.digits} digits (at most {MAX_INT_DIGITS})"
            return _FieldError(path, reason)
        if isinstance(value, dict):
            stack.extend(((*path, k), v) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend(((*path, i), v) for i, v in reversed(list(enumerate(value))))
    return _FieldError((), "an integer too long to read")  # pragma: no cover - always found


def _clip(text: str, limit: int = 40) -> str:
    """A value quoted in an error, cut short: an error line must stay one readable line."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


# -- model -> JSON --------------------------------------------------------------------------------
def resource_to_json(resource: ResourceModel) -> dict[str, Any]:
    return {
        "id": resource.id,
        "name": resource.name,
        "operations": resource.operations.value,
        "multiple": resource.multiple,
        "mandatory": resource.mandatory,
        "type": resource.type.value,
        "range": resource.range_enumeration,
        "units": resource.units,
        "description": resource.description,
    }


def object_to_json(model: ObjectModel, source: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The JSON form of ``model`` (every field written, resources in id order)."""
    data: dict[str, Any] = {
        "id": model.id,
        "name": model.name,
        "version": model.version,
        "lwm2mVersion": model.lwm2m_version,
        "urn": model.urn,
        "multiple": model.multiple,
        "mandatory": model.mandatory,
        "description": model.description,
    }
    if model.description2:
        data["description2"] = model.description2
    if source:
        data["source"] = dict(source)
    data["resources"] = [resource_to_json(model.resources[k]) for k in sorted(model.resources)]
    return data


ModelWithSource = ObjectModel | tuple[ObjectModel, Mapping[str, str] | None]


def dumps(models: Sequence[ModelWithSource] | ObjectModel, *, indent: int | None = 2) -> str:
    """A ``{"objects": [...]}`` document; items may be ``(model, source)`` pairs."""
    if isinstance(models, ObjectModel):
        models = [models]
    objects = []
    for item in models:
        model, source = item if isinstance(item, tuple) else (item, None)
        objects.append(object_to_json(model, source))
    return json.dumps({"objects": objects}, indent=indent, ensure_ascii=False) + "\n"


def dump(path: str | Path, models: Sequence[ModelWithSource] | ObjectModel) -> None:
    Path(path).write_text(dumps(models), encoding="utf-8")


# -- line numbers ---------------------------------------------------------------------------------
_WS = re.compile(r"[ \t\n\r]*")
_SCALAR = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|true|false|null")


def _positions(text: str) -> dict[FieldPath, int]:
    """Offset of every value in ``text`` by JSON path (object members: offset of the key).

    Only used to put a line number on an error, so a malformed document just stops the scan.
    """
    scanstring: Any = json.decoder.scanstring  # type: ignore[attr-defined]
    found: dict[FieldPath, int] = {}

    def skip(i: int) -> int:
        match = _WS.match(text, i)
        return match.end() if match else i

    def value(i: int, path: FieldPath) -> int:
        i = skip(i)
        found.setdefault(path, i)
        char = text[i]
        if char == "{":
            i = skip(i + 1)
            if text[i] == "}":
                return i + 1
            while True:
                i = skip(i)
                key_at = i
                key, i = scanstring(text, i + 1)
                found.setdefault((*path, key), key_at)
                i = skip(i)
                if text[i] != ":":
                    raise ValueError
                i = skip(value(i + 1, (*path, key)))
                if text[i] == ",":
                    i += 1
                elif text[i] == "}":
                    return i + 1
                else:
                    raise ValueError
        if char == "[":
            i = skip(i + 1)
            if text[i] == "]":
                return i + 1
            index = 0
            while True:
                i = skip(value(i, (*path, index)))
                index += 1
                if text[i] == ",":
                    i += 1
                elif text[i] == "]":
                    return i + 1
                else:
                    raise ValueError
        if char == '"':
            end: int = scanstring(text, i + 1)[1]
            return end
        match = _SCALAR.match(text, i)
        if not match:
            raise ValueError
        return match.end()

    with contextlib.suppress(ValueError, IndexError, RecursionError):
        value(0, ())
    return found


def _line_of(text: str, path: FieldPath) -> int | None:
    """The line of the deepest part of ``path`` found in ``text``."""
    positions = _positions(text)
    for depth in range(len(path), -1, -1):
        offset = positions.get(path[:depth])
        if offset is not None:
            return text.count("\n", 0, offset) + 1
    return None
