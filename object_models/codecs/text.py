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

The value checks it shares with TLV and OMA JSON (``check_value``, Base64, UTF-8) live in
``common``.
"""

from __future__ import annotations

import math
import re

from ..errors import CodecError, ResponseCode
from ..model import ModelProvider
from ..node import LwM2mNode, LwM2mResourceInstance, LwM2mSingleResource
from ..path import LwM2mPath
from ..types import INT64_MAX, INT64_MIN, UINT64_MAX, ObjectLink, ResourceType, Value
from .common import (
    b64decode,
    b64encode,
    check_node_id,
    check_single_value_path,
    check_value,
    model_type,
    single_value_node,
    utf8,
)

_INT_RE = re.compile(r"-?[0-9]{1,20}")
_UINT_RE = re.compile(r"[0-9]{1,20}")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,4})?")
_OBJLNK_RE = re.compile(r"([0-9]{1,5}):([0-9]{1,5})")
_MAX_FLOAT_TEXT = 400
"""Longer float text is refused before parsing: no real value needs it, and it bounds work."""


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
    check_single_value_path(path, models, "text/plain", ResponseCode.UNSUPPORTED_CONTENT_FORMAT)
    rtype = model_type(models, path) or ResourceType.STRING
    return single_value_node(path, parse_value(rtype, utf8(payload, path), path), rtype)
