"""text/plain (content format 0): one value of a single resource or a resource instance.

LwM2M Core 1.1.1 §7.4.1 and Appendix C (Table C.2) give the text form of each type:

| type              | text                                                          |
|-------------------|---------------------------------------------------------------|
| String, Corelnk   | the UTF-8 string itself                                       |
| Integer, Unsigned | ASCII decimal (``-`` for negatives)                            |
| Float             | decimal, optional exponent; we write Python's shortest repr   |
| Boolean           | ``0`` or ``1``                                                |
| Time              | decimal seconds since the epoch                               |
| Objlnk            | ``objectId:instanceId``                                       |
| Opaque            | Base64 (RFC 4648, padded) — since LwM2M 1.0.2, not before     |
| none              | the empty payload                                             |

The module also owns ``check_value``, the "is this Python value a valid ``type``" test that the
binary and JSON codecs of this family share, so that every encoder refuses the same bad values.
"""

from __future__ import annotations

import base64
import binascii
import math
import re

from ..errors import CodecError, ResponseCode
from ..model import ModelProvider, resource_model
from ..node import LwM2mNode, LwM2mResourceInstance, LwM2mSingleResource, node_depth
from ..path import LwM2mPath
from ..types import INT64_MAX, INT64_MIN, UINT64_MAX, ObjectLink, ResourceType, Value

_INT_RE = re.compile(r"-?[0-9]{1,20}")
_UINT_RE = re.compile(r"[0-9]{1,20}")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
_OBJLNK_RE = re.compile(r"([0-9]{1,5}):([0-9]{1,5})")
_BASE64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_MAX_FLOAT_TEXT = 400
"""Longer float text is refused before parsing: no real value needs it, and it bounds work."""


# -- shared value checks --------------------------------------------------------------------------
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
        return isinstance(value, str)
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


def _is_int(value: Value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_node_id(node_id: int | None, path: LwM2mPath) -> None:
    """The node's id must be the last id of the path it is encoded at (a caller mix-up
    otherwise writes a payload that silently addresses another resource)."""
    if node_id is not None and path.depth and node_id != path.ids[-1]:
        raise CodecError(f"node id {node_id} does not match the path", path=path)


def node_matches_path(node: LwM2mNode, path: LwM2mPath) -> bool:
    """Whether ``node`` is the kind of node that lives at ``path``'s depth."""
    return node_depth(node) == path.depth


def utf8(payload: bytes, path: LwM2mPath | None) -> str:
    """Strict UTF-8 decoding, with the error every codec reports for invalid bytes."""
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CodecError(f"invalid UTF-8 at byte {exc.start}", path=path) from None


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


# -- value <-> text -------------------------------------------------------------------------------
def format_value(rtype: ResourceType, value: Value, path: LwM2mPath) -> str:
    """The text form of ``value``; ``check_value`` has been applied."""
    check_value(rtype, value, path)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, bytes):
        return b64encode(value)
    if isinstance(value, float):
        return repr(value)
    if value is None:
        return ""
    return str(value)


def parse_value(rtype: ResourceType, text: str, path: LwM2mPath) -> Value:
    """Parse the text form of a ``rtype`` value, refusing anything the spec does not allow
    (Python's ``int``/``float`` would accept ``1_0``, `` 5``, ``nan`` or Unicode digits)."""
    if rtype in (ResourceType.STRING, ResourceType.CORELNK):
        return text
    if rtype in (ResourceType.INTEGER, ResourceType.TIME):
        return _parse_int(text, _INT_RE, INT64_MIN, INT64_MAX, rtype, path)
    if rtype is ResourceType.UNSIGNED_INTEGER:
        return _parse_int(text, _UINT_RE, 0, UINT64_MAX, rtype, path)
    if rtype is ResourceType.FLOAT:
        return _parse_float(text, path)
    if rtype is ResourceType.BOOLEAN:
        if text not in ("0", "1"):
            raise CodecError(f"boolean must be '0' or '1', got {text[:20]!r}", path=path)
        return text == "1"
    if rtype is ResourceType.OPAQUE:
        return b64decode(text, path)
    if rtype is ResourceType.OBJLNK:
        return _parse_objlnk(text, path)
    if text:
        raise CodecError("a resource of type none carries no value", path=path)
    return None


def _parse_int(
    text: str, pattern: re.Pattern[str], lo: int, hi: int, rtype: ResourceType, path: LwM2mPath
) -> int:
    if not pattern.fullmatch(text):
        raise CodecError(f"invalid {rtype.value} {text[:30]!r}", path=path)
    value = int(text)
    if not lo <= value <= hi:
        raise CodecError(f"{rtype.value} {value} is outside {lo}..{hi}", path=path)
    return value


def _parse_float(text: str, path: LwM2mPath) -> float:
    if len(text) > _MAX_FLOAT_TEXT or not _FLOAT_RE.fullmatch(text):
        raise CodecError(f"invalid float {text[:30]!r}", path=path)
    value = float(text)
    if not math.isfinite(value):
        raise CodecError(f"float {text[:30]!r} is out of range", path=path)
    return value


def _parse_objlnk(text: str, path: LwM2mPath) -> ObjectLink:
    match = _OBJLNK_RE.fullmatch(text)
    if not match or int(match.group(1)) > 65535 or int(match.group(2)) > 65535:
        raise CodecError(f"invalid object link {text[:30]!r}, expected 'o:i'", path=path)
    return ObjectLink(int(match.group(1)), int(match.group(2)))


# -- module contract ------------------------------------------------------------------------------
def encode(node: LwM2mNode, path: LwM2mPath, models: ModelProvider) -> bytes:
    """Encode a single resource or resource instance; anything else is 4.06 (not acceptable)."""
    del models  # the node carries its type
    if not isinstance(node, LwM2mSingleResource | LwM2mResourceInstance) or path.depth < 3:
        raise CodecError(
            "text/plain carries only a single resource or resource instance value",
            path=path,
            code=ResponseCode.NOT_ACCEPTABLE,
        )
    check_node_id(node.id, path)
    return format_value(node.type, node.value, path).encode("utf-8")


def decode(payload: bytes, path: LwM2mPath, models: ModelProvider) -> LwM2mNode:
    """Decode one value typed by the model; an unknown resource decodes as a string."""
    if path.depth < 3:
        raise CodecError(
            "text/plain carries only a single resource or resource instance value",
            path=path,
            code=ResponseCode.UNSUPPORTED_CONTENT_FORMAT,
        )
    object_id, _, resource_id = path.ids[:3]
    model = resource_model(models, object_id, resource_id)
    if model is not None and model.multiple and path.is_resource:
        raise CodecError(
            "text/plain cannot carry a multiple-instance resource",
            path=path,
            code=ResponseCode.UNSUPPORTED_CONTENT_FORMAT,
        )
    rtype = model.type if model is not None else ResourceType.STRING
    value = parse_value(rtype, utf8(payload, path), path)
    if path.resource_instance_id is not None:
        return LwM2mResourceInstance(path.resource_instance_id, value, rtype)
    return LwM2mSingleResource(resource_id, value, rtype)
