"""What several content formats need alike, written once.

- Model lookups: ``model_type`` (the model's type of a resource path, or ``None``),
  ``leaf_type`` (the type a leaf is encoded with: the model's when known, else the node's) and
  ``empty_resource`` (what a payload without any value means at a resource path).
- Value checks: ``check_value`` (is this Python value a valid ``type``; TLV, text and OMA JSON
  refuse the same bad values with it), ``check_node_id``, ``node_matches_path``, and
  ``encodable_value`` (the ``coerce_value`` conversion that SenML and the CBOR formats apply
  before writing, with its failure as a ``CodecError``).
- Numbers: ``number`` (a finite JSON/CBOR number of sane size), ``number_type`` (the type an
  integral or fractional number on the wire takes when the model does not know the resource).
- Single-value formats (text, octet-stream, CBOR 60): ``check_single_value_path`` and
  ``single_value_node``.
- Bytes and text: ``utf8`` (strict UTF-8 with the error every codec reports), ``load_json``
  (strict JSON: UTF-8 only, no ``NaN``/``Infinity``, no duplicate keys, bounded nesting),
  ``b64encode`` / ``b64decode`` (RFC 4648 Base64, the Opaque form of text/plain and OMA JSON).

Every failure is a ``CodecError`` (4.00 unless said otherwise).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re

from ..errors import CodecError, ResponseCode
from ..model import ModelProvider, is_multiple, resource_model
from ..node import (
    LwM2mMultipleResource,
    LwM2mNode,
    LwM2mResourceInstance,
    LwM2mSingleResource,
    node_depth,
)
from ..path import LwM2mPath
from ..types import INT64_MAX, INT64_MIN, UINT64_MAX, ObjectLink, ResourceType, Value, coerce_value

# == model lookups =================================================================================


def model_type(models: ModelProvider, path: LwM2mPath) -> ResourceType | None:
    """The model's type for the resource at ``path`` (depth 3 or 4), ``None`` if unknown."""
    if path.depth < 3:
        return None
    res = resource_model(models, path.ids[0], path.ids[2])
    return None if res is None else res.type


def leaf_type(models: ModelProvider, path: LwM2mPath, fallback: ResourceType) -> ResourceType:
    """The type to encode a leaf with: the model's when known, else the node's own."""
    known = model_type(models, path)
    return fallback if known is None else known


def empty_resource(path: LwM2mPath, models: ModelProvider) -> LwM2mMultipleResource | None:
    """The node a payload with no value at all stands for at resource ``path``: an empty
    multiple resource (typed by the model when it knows the resource), or ``None`` when the
    model says the resource is single, for which "no value" is an error.

    A single resource always has a value on the wire, so when the model does not know the
    resource, an empty answer can only be a multiple resource without instances; refusing it
    turned a valid Read of a custom object into a "bad gateway" (the client's answer was fine).
    """
    assert path.resource_id is not None
    res = resource_model(models, path.ids[0], path.resource_id)
    if res is not None and not res.multiple:
        return None
    rtype = ResourceType.STRING if res is None else res.type
    return LwM2mMultipleResource(path.resource_id, {}, rtype)


# == value checks ==================================================================================


def check_value(rtype: ResourceType, value: Value, path: LwM2mPath) -> None:
    """Raise ``CodecError`` unless ``value`` is the Python representation of ``rtype``.

    Encoders call this before writing so that a wrong value is reported with its path rather
    than written as garbage a client would reject later.
    """
    if not _value_fits(rtype, value):
        raise CodecError(
            f"value {value!r} is not a valid {rtype.value} value",
            path=path,
            code=ResponseCode.BAD_REQUEST,
        )


def _value_fits(rtype: ResourceType, value: Value) -> bool:
    if rtype in (ResourceType.STRING, ResourceType.CORELNK):
        return isinstance(value, str) and _is_unicode(value)
    if rtype in (ResourceType.INTEGER, ResourceType.TIME):
        return _is_int(value) and INT64_MIN <= value <= INT64_MAX  # type: ignore[operator]
    if rtype is ResourceType.UNSIGNED_INTEGER:
        return _is_int(value) and 0 <= value <= UINT64_MAX  # type: ignore[operator]
    if rtype is ResourceType.FLOAT:
        return isinstance(value, float) and math.isfinite(value)
    if rtype is ResourceType.BOOLEAN:
        return isinstance(value, bool)
    if rtype is ResourceType.OPAQUE:
        return isinstance(value, bytes)
    if rtype is ResourceType.OBJLNK:
        return isinstance(value, ObjectLink)
    return value is None


def _is_unicode(text: str) -> bool:
    """No lone surrogates: the text has a UTF-8 form (a JSON ``\\ud800`` escape makes one)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_node_id(node_id: int | None, path: LwM2mPath) -> None:
    """The node's id must be the last id of the path it is encoded at (a caller mix-up
    otherwise writes a payload that silently addresses another resource)."""
    if node_id is not None and path.depth and node_id != path.ids[-1]:
        raise CodecError(f"node id {node_id} does not match the path", path=path)


def node_matches_path(node: LwM2mNode, path: LwM2mPath) -> bool:
    """Whether ``node`` is the kind of node that lives at ``path``'s depth."""
    return node_depth(node) == path.depth


def encodable_value(rtype: ResourceType, value: Value, path: LwM2mPath) -> Value:
    """``value`` converted to ``rtype`` with ``coerce_value`` (SenML, CBOR and LwM2M CBOR encode
    what this returns); a resource of type none has no value to write."""
    if rtype is ResourceType.NONE:
        raise CodecError("a resource of type none carries no value", path=path)
    try:
        return coerce_value(rtype, value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise CodecError(f"cannot encode as {rtype.value}: {exc}", path=path) from None


# == numbers =======================================================================================

LARGEST_NUMBER = 2**1000
"""Integers beyond this cannot be JSON/SenML numbers (RFC 8428 §6: IEEE doubles); refusing them
keeps time and base-value sums and float conversions from overflowing."""


def kind(value: object) -> str:
    """A short name of a decoded JSON/SenML value's type, for error messages."""
    names = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        bytes: "bytes",
        list: "an array",
        dict: "a map",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def number(value: object, what: str, prefix: str = "", path: object = None) -> int | float:
    """``value`` if it is a finite number no larger than ``LARGEST_NUMBER``; the error reads
    ``<prefix>'<what>' must be a number, got …`` and names ``path``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CodecError(f"{prefix}'{what}' must be a number, got {kind(value)}", path=path)
    if isinstance(value, float) and not math.isfinite(value):
        raise CodecError(f"{prefix}'{what}' must be a finite number, got {value}", path=path)
    if isinstance(value, int) and abs(value) > LARGEST_NUMBER:
        raise CodecError(f"{prefix}'{what}' is too large a number", path=path)
    return value


def number_type(value: int | float) -> ResourceType:
    """The type of a number whose resource the model does not know: Integer when integral and
    within int64, Unsigned Integer above that, Float when fractional."""
    if isinstance(value, float):
        return ResourceType.FLOAT
    if INT64_MIN <= value <= INT64_MAX:
        return ResourceType.INTEGER
    return ResourceType.UNSIGNED_INTEGER


# == single-value formats ==========================================================================


def check_single_value_path(
    path: LwM2mPath, models: ModelProvider, fmt: str, code: ResponseCode
) -> None:
    """A single-value format carries a resource or resource instance value, and not a resource
    the model says has multiple instances."""
    if path.depth < 3:
        raise CodecError(
            f"{fmt} carries only a single resource or resource instance value", path=path, code=code
        )
    if path.is_resource and is_multiple(models)(path.ids[0], path.ids[2]) is True:
        raise CodecError(f"{fmt} cannot carry a multiple-instance resource", path=path, code=code)


def single_value_node(path: LwM2mPath, value: Value, rtype: ResourceType) -> LwM2mNode:
    """The single resource or resource instance at ``path`` (depth 3 or 4) holding ``value``."""
    if path.resource_instance_id is not None:
        return LwM2mResourceInstance(path.resource_instance_id, value, rtype)
    assert path.resource_id is not None
    return LwM2mSingleResource(path.resource_id, value, rtype)


# == bytes and text ================================================================================


def utf8(payload: bytes, path: LwM2mPath | None = None, what: str = "payload") -> str:
    """Strict UTF-8 decoding, with the error every codec reports for invalid bytes."""
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CodecError(f"{what} is not valid UTF-8 at byte {exc.start}", path=path) from None


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate label {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not a JSON number")


def load_json(payload: bytes, path: LwM2mPath | None = None, what: str = "payload") -> object:
    """Strict JSON (RFC 8259): UTF-8 only (``json.loads`` on bytes would also guess UTF-16/32),
    no ``NaN``/``Infinity`` (which Python's parser accepts), no duplicate keys, nesting within the
    interpreter's limit, integers within Python's digit limit."""
    text = utf8(payload, path, what)
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        reason = f"{exc.msg} (line {exc.lineno} column {exc.colno})"
        raise CodecError(f"invalid JSON: {reason}", path=path) from None
    except RecursionError:
        raise CodecError("JSON nesting is too deep", path=path) from None
    except ValueError as exc:  # duplicate keys, NaN, integers with too many digits
        raise CodecError(f"invalid JSON: {exc}", path=path) from None


_BASE64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str, path: LwM2mPath) -> bytes:
    """Base64 (RFC 4648 §4 alphabet). Missing padding is tolerated, other defects are not."""
    if not _BASE64_RE.fullmatch(text) or len(text.rstrip("=")) % 4 == 1:
        raise CodecError("invalid Base64 for an opaque value", path=path)
    stripped = text.rstrip("=")
    try:
        return base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise CodecError("invalid Base64 for an opaque value", path=path) from None
