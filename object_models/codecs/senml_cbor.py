"""SenML CBOR (Content-Format 112, RFC 8428 §6, LwM2M Core 1.1 §7.4.5).

Only the byte-level dialect is here; records, names, times and typing live in ``senml``.
CBOR specifics: the RFC 8428 Table 4 integer labels (bn -2, bt -3, n 0, v 2, vs 3, vb 4, vd 8,
t 6, …) and text labels for extensions, notably LwM2M's ``"vlo"`` for Objlnk; numbers may also be
decimal fractions (tag 4, RFC 8428 §6); ``vd`` is a byte string. Decoding goes through the bounded
reader of ``cbor_value`` (depth limit, declared lengths checked, duplicate labels refused).
"""

from __future__ import annotations

from ..errors import CodecError
from . import senml
from .cbor_value import Tagged, decimal_fraction, dump_cbor, read_cbor

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

LABELS: dict[str, int] = {
    "bver": -1,
    "bn": -2,
    "bt": -3,
    "bu": -4,
    "bv": -5,
    "bs": -6,
    "n": 0,
    "u": 1,
    "v": 2,
    "vs": 3,
    "vb": 4,
    "s": 5,
    "t": 6,
    "ut": 7,
    "vd": 8,
}
"""RFC 8428 Table 4; the table is conclusive, extensions use text labels."""
_NAMES = {label: name for name, label in LABELS.items()}


def _field(value: object, index: int) -> object:
    if isinstance(value, Tagged) and value.tag == 4:
        try:
            return decimal_fraction(value)
        except ValueError as exc:
            raise CodecError(f"record {index}: {exc}") from None
    return value


def _record(record: object, index: int) -> object:
    """A record with text labels; anything that is not a map is left for ``senml`` to refuse.
    (Error texts are built only on error: this runs for every field of every notification.)"""
    if not isinstance(record, dict):
        return record
    result: dict[object, object] = {}
    for key, value in record.items():
        name = _NAMES.get(key) if key.__class__ is int else key
        if name is None:
            raise CodecError(f"record {index}: unknown SenML CBOR label {key}")
        if name in result:
            raise CodecError(f"record {index}: label {name!r} given twice")
        result[name] = _field(value, index)
    return result


def _load(payload: bytes) -> object:
    if not payload:
        return []  # an empty object, instance or multiple resource (OMA LwM2M issue #494)
    pack = read_cbor(payload)
    if isinstance(pack, list):
        return [_record(record, index) for index, record in enumerate(pack)]
    return pack


def _dump(records: list[dict[str, object]]) -> bytes:
    return dump_cbor([{LABELS.get(k, k): v for k, v in r.items()} for r in records])


def _opaque_in(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"expected a byte string, got {type(value).__name__}")
    return value


def _opaque_out(value: bytes) -> object:
    return value


DIALECT = senml.Dialect("SenML CBOR", _load, _dump, _opaque_in, _opaque_out)

_codec = senml.Codec(DIALECT)
encode, decode = _codec.encode, _codec.decode
encode_nodes, decode_nodes = _codec.encode_nodes, _codec.decode_nodes
encode_paths, decode_paths = _codec.encode_paths, _codec.decode_paths
encode_timestamped, decode_timestamped = _codec.encode_timestamped, _codec.decode_timestamped
