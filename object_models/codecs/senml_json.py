"""SenML JSON (Content-Format 110, RFC 8428 §5, LwM2M Core 1.1 §7.4.4).

Only the byte-level dialect is here; records, names, times and typing live in ``senml``.
JSON specifics: the payload is read with ``common.load_json`` (UTF-8 only, no ``NaN`` or
``Infinity``, no duplicate labels, bounded nesting); integers stay integers (so a 64-bit value above
2**53 round-trips exactly) and floats are written with ``repr`` (shortest exact form). ``vd`` is
base64url without padding (Core 1.1 §7.4.4); decoding also accepts padding and the standard
alphabet, as some clients send it.
"""

from __future__ import annotations

import base64
import binascii
import json

from ..errors import CodecError
from . import senml
from .common import load_json

__all__ = [
    "decode",
    "decode_nodes",
    "decode_paths",
    "decode_timestamped",
    "encode",
    "encode_nodes",
    "encode_paths",
    "encode_timestamped",
]


def _load(payload: bytes) -> object:
    if not payload.strip():
        return []  # an empty object, instance or multiple resource (OMA LwM2M issue #494)
    return load_json(payload, what="SenML JSON")


def _dump(records: list[dict[str, object]]) -> bytes:
    try:
        text = json.dumps(records, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return text.encode("utf-8")
    except ValueError as exc:
        raise CodecError(f"cannot encode as SenML JSON: {exc}") from None


def _opaque_in(value: object) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"expected base64url text, got {type(value).__name__}")
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{value!r} is not base64url") from None


def _opaque_out(value: bytes) -> object:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode("ascii")


DIALECT = senml.Dialect("SenML JSON", _load, _dump, _opaque_in, _opaque_out)

_codec = senml.Codec(DIALECT)
encode, decode = _codec.encode, _codec.decode
encode_nodes, decode_nodes = _codec.encode_nodes, _codec.decode_nodes
encode_paths, decode_paths = _codec.encode_paths, _codec.decode_paths
encode_timestamped, decode_timestamped = _codec.encode_timestamped, _codec.decode_timestamped
