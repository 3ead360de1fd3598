"""LwM2M resource data types (Core §C / Appendix C) and their Python representation.

| LwM2M type       | Python value                                  |
|------------------|-----------------------------------------------|
| String           | ``str``                                       |
| Integer          | ``int`` (signed 64-bit)                       |
| Unsigned Integer | ``int`` (0 .. 2**64-1)                        |
| Float            | ``float``                                     |
| Boolean          | ``bool``                                      |
| Opaque           | ``bytes``                                     |
| Time             | ``int`` seconds since the Unix epoch          |
| Objlnk           | ``ObjectLink``                                |
| Corelnk          | ``str`` (CoRE link-format text)               |
| none             | ``None`` (executable resources carry no value)|

``coerce_value`` turns loosely typed input (JSON from the HTTP API, CLI strings) into that
representation, and is what the codecs use to check values against a model.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import enum
import math
import re

import attrs

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1


class ResourceType(enum.Enum):
    STRING = "String"
    INTEGER = "Integer"
    UNSIGNED_INTEGER = "Unsigned Integer"
    FLOAT = "Float"
    BOOLEAN = "Boolean"
    OPAQUE = "Opaque"
    TIME = "Time"
    OBJLNK = "Objlnk"
    CORELNK = "Corelnk"
    NONE = "none"

    @classmethod
    def from_name(cls, name: str) -> ResourceType:
        """Accept the DDF spelling (``Unsigned Integer``, ``Objlnk``, empty for none) loosely."""
        key = re.sub(r"[\s_-]", "", (name or "").strip().lower())
        if key in ("", "none"):
            return cls.NONE
        for member in cls:
            if re.sub(r"[\s_-]", "", member.value.lower()) == key:
                return member
        aliases = {
            "unsignedint": cls.UNSIGNED_INTEGER,
            "uint": cls.UNSIGNED_INTEGER,
            "int": cls.INTEGER,
            "bool": cls.BOOLEAN,
            "double": cls.FLOAT,
        }
        if key in aliases:
            return aliases[key]
        raise ValueError(f"unknown resource type {name!r}")


@attrs.frozen(order=True)
class ObjectLink:
    """An Objlnk value: a reference to object instance ``object_id:instance_id``.

    ``65535:65535`` is the "null" link of the specs.
    """

    object_id: int
    instance_id: int

    def __attrs_post_init__(self) -> None:
        for value in (self.object_id, self.instance_id):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
                raise ValueError(f"object link ids must be 0..65535, got {value!r}")

    @classmethod
    def parse(cls, text: str) -> ObjectLink:
        match = re.fullmatch(r"\s*(\d{1,5}):(\d{1,5})\s*", text)
        if not match:
            raise ValueError(f"invalid object link {text!r}, expected 'objectId:instanceId'")
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def is_null(self) -> bool:
        return self.object_id == 65535 and self.instance_id == 65535

    def __str__(self) -> str:
        return f"{self.object_id}:{self.instance_id}"


Value = str | int | float | bool | bytes | ObjectLink | None


def _coerce_int(value: object, lo: int, hi: int, what: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"expected {what}, got a boolean")
    if isinstance(value, int):
        result = value
    elif isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"expected {what}, got non-integral number {value!r}")
        result = int(value)
    elif isinstance(value, str):
        try:
            result = int(value.strip(), 10)
        except ValueError:
            raise ValueError(f"expected {what}, got {value!r}") from None
    else:
        raise TypeError(f"expected {what}, got {type(value).__name__}")
    if not lo <= result <= hi:
        raise ValueError(f"{result} is outside the {what} range {lo}..{hi}")
    return result


def _coerce_time(value: object) -> int:
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return int(value.timestamp())
    if isinstance(value, str) and not re.fullmatch(r"\s*-?\d+\s*", value):
        try:
            parsed = datetime.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"expected a time (seconds or ISO 8601), got {value!r}") from None
        return _coerce_time(parsed)
    return _coerce_int(value, INT64_MIN, INT64_MAX, "time (seconds since epoch)")


def _coerce_float(value: object) -> float:
    if isinstance(value, bool):
        raise TypeError("expected a float, got a boolean")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise ValueError(f"expected a float, got {value!r}") from None
    raise TypeError(f"expected a float, got {type(value).__name__}")


def _coerce_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("0", "1", "true", "false"):
        return value.strip().lower() in ("1", "true")
    raise ValueError(f"expected a boolean, got {value!r}")


def _coerce_opaque(value: object) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lower().startswith("hex:"):
            try:
                return bytes.fromhex(text[4:])
            except ValueError:
                raise ValueError(f"invalid hex opaque value {value!r}") from None
        try:
            return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"opaque value must be base64 or 'hex:…', got {value!r}") from None
    raise TypeError(f"expected opaque bytes, got {type(value).__name__}")


def coerce_value(rtype: ResourceType, value: object) -> Value:
    """Return ``value`` in the Python representation of ``rtype`` or raise ``ValueError``/
    ``TypeError`` saying why. Strings are accepted for every type (CLI and text/plain input);
    opaque strings are base64, or hex with a ``hex:`` prefix."""
    if rtype is ResourceType.STRING or rtype is ResourceType.CORELNK:
        if isinstance(value, str):
            return value
        raise TypeError(f"expected a string, got {type(value).__name__}")
    if rtype is ResourceType.INTEGER:
        return _coerce_int(value, INT64_MIN, INT64_MAX, "integer")
    if rtype is ResourceType.UNSIGNED_INTEGER:
        return _coerce_int(value, 0, UINT64_MAX, "unsigned integer")
    if rtype is ResourceType.FLOAT:
        return _coerce_float(value)
    if rtype is ResourceType.BOOLEAN:
        return _coerce_bool(value)
    if rtype is ResourceType.OPAQUE:
        return _coerce_opaque(value)
    if rtype is ResourceType.TIME:
        return _coerce_time(value)
    if rtype is ResourceType.OBJLNK:
        if isinstance(value, ObjectLink):
            return value
        if isinstance(value, str):
            return ObjectLink.parse(value)
        if isinstance(value, dict) and set(value) == {"objectId", "objectInstanceId"}:
            return ObjectLink(int(value["objectId"]), int(value["objectInstanceId"]))
        raise TypeError(f"expected an object link, got {type(value).__name__}")
    if value is None or value == "":
        return None
    raise ValueError(f"a resource of type none carries no value, got {value!r}")


def guess_type(value: Value) -> ResourceType:
    """The type a bare Python value most naturally has (used when no model is known)."""
    if isinstance(value, bool):
        return ResourceType.BOOLEAN
    if isinstance(value, int):
        return ResourceType.INTEGER
    if isinstance(value, float):
        return ResourceType.FLOAT
    if isinstance(value, bytes):
        return ResourceType.OPAQUE
    if isinstance(value, ObjectLink):
        return ResourceType.OBJLNK
    if value is None:
        return ResourceType.NONE
    return ResourceType.STRING


def value_to_json(value: Value) -> object:
    """A JSON-friendly form: opaque as base64, object links as ``"o:i"``."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, ObjectLink):
        return str(value)
    return value
