"""SenML CBOR (Content-Format 112, RFC 8428 §6, LwM2M Core 1.1 §7.4.5).

Only the byte-level dialect is here; records, names, times and typing live in ``senml``.
CBOR specifics: the RFC 8428 Table 4 integer labels (bn -2, bt -3, n 0, v 2, vs 3, vb 4, vd 8,
t 6, …) and text labels for extensions, notably LwM2M's ``"vlo"`` for Objlnk; numbers may also be
decimal fractions (tag 4, RFC 8428 §6); ``vd`` is a byte string. Decoding goes through the bounded
reader of ``cbor_value`` (depth limit, declared lengths checked, duplicate labels refused).
"""

from __future__ import annotations

import math
import struct

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


# -- the fused reader ----------------------------------------------------------------------------
#
# ``resolve`` above goes bytes -> CBOR items -> records with text labels -> ``Record``s: three
# passes and two throw-away containers per record, about 7 µs of a one-value notification's
# 12 µs of decoding. ``fast_records`` reads the bytes straight into ``Record``s for the shape
# nearly every device sends (a definite array of definite maps with the integer labels bn, bt,
# n, t, v, vs, vb, vd and plain values) and gives up (returns None) at anything else, or at
# anything it would have to refuse: the general reader then decodes the payload and raises its
# usual, precise error. So the fused reader decides nothing on its own: on what it accepts it
# must give what the general path gives (a property test holds the two equal), and invalid
# input is always refused by the general path.

_BN, _BT, _N, _V, _VS, _VB, _T, _VD = 0x21, 0x22, 0x00, 0x02, 0x03, 0x04, 0x06, 0x08
"""The initial bytes of the labels the fused reader knows (-2, -3, 0, 2, 3, 4, 6, 8)."""
_LABEL_BITS = {label: 1 << i for i, label in enumerate((_BN, _BT, _N, _V, _VS, _VB, _T, _VD))}
_DOUBLE = struct.Struct(">d").unpack_from
_SINGLE = struct.Struct(">f").unpack_from
_HALF = struct.Struct(">e").unpack_from
_GIVE_UP = object()
"""What ``_scalar`` returns for an item it does not read (the general path will)."""


def _scalar(data: bytes, pos: int, end: int) -> tuple[object, int]:
    """The plain CBOR item (integer, float, text or byte string, boolean) at ``pos`` and the
    position after it, or ``(_GIVE_UP, pos)`` for anything else, including anything malformed."""
    initial = data[pos]
    major = initial >> 5
    info = initial & 0x1F
    pos += 1
    if major == 7:
        if initial == 0xFB and pos + 8 <= end:
            return float(_DOUBLE(data, pos)[0]), pos + 8
        if initial == 0xFA and pos + 4 <= end:
            return float(_SINGLE(data, pos)[0]), pos + 4
        if initial == 0xF9 and pos + 2 <= end:
            return float(_HALF(data, pos)[0]), pos + 2
        if initial == 0xF4:
            return False, pos
        if initial == 0xF5:
            return True, pos
        return _GIVE_UP, pos
    if major > 3:  # arrays, maps and tags are the general reader's
        return _GIVE_UP, pos
    if info < 24:
        arg = info
    elif info <= 27:
        size = 1 << (info - 24)
        if pos + size > end:
            return _GIVE_UP, pos
        arg = int.from_bytes(data[pos : pos + size], "big")
        pos += size
    else:  # indefinite or reserved
        return _GIVE_UP, pos
    if major == 0:
        return arg, pos
    if major == 1:
        return -1 - arg, pos
    if pos + arg > end:
        return _GIVE_UP, pos
    raw = data[pos : pos + arg]
    if major == 2:
        return raw, pos + arg
    try:
        return raw.decode("utf-8"), pos + arg
    except UnicodeDecodeError:
        return _GIVE_UP, pos


def fast_records(payload: bytes) -> list[senml.Record] | None:
    """The pack's records, resolved as ``senml.resolve`` would, or None to leave the payload
    to the general path (any shape or value this reader does not take, any error)."""
    if type(payload) is not bytes:
        return None
    end = len(payload)
    if end < 2 or not 0x81 <= payload[0] <= 0x97:  # an array of 1..23 records
        return None
    pos = 1
    base_name = ""
    base_time: int | float | None = None
    records: list[senml.Record] = []
    for _ in range(payload[0] & 0x1F):
        if pos >= end or not 0xA0 <= payload[pos] <= 0xB7:  # a map of 0..23 pairs
            return None
        pairs = payload[pos] & 0x1F
        pos += 1
        seen = 0  # labels met in this record, one bit each (a label given twice: general)
        name = ""
        offset: int | float | None = None
        field: str | None = None
        value: object = None
        for _ in range(pairs):
            if pos + 1 >= end:
                return None
            label = payload[pos]
            bit = _LABEL_BITS.get(label, 0)
            if not bit or seen & bit:
                return None
            seen |= bit
            # the two items nearly every pair holds, read here (a call of _scalar each was a
            # fifth of this reader): a short text string (a name) and a double (a value);
            # anything else, or anything short of bytes, is _scalar's, which gives up the same
            initial = payload[pos + 1]
            item: object
            if 0x60 <= initial <= 0x77:
                start = pos + 2
                pos = start + initial - 0x60
                if pos > end:
                    return None
                try:
                    item = payload[start:pos].decode("utf-8")
                except UnicodeDecodeError:
                    return None
            elif initial == 0xFB and pos + 10 <= end:
                item = _DOUBLE(payload, pos + 2)[0]
                pos += 10
            else:
                item, pos = _scalar(payload, pos + 1, end)
            if label == _BN:
                if type(item) is not str:
                    return None
                base_name = item
            elif label == _N:
                if type(item) is not str:
                    return None
                name = item
            elif label in (_BT, _T):
                if type(item) is not int and (type(item) is not float or not math.isfinite(item)):
                    return None
                if label == _BT:
                    base_time = item
                else:
                    offset = item
            else:
                if field is not None:  # conflicting value fields: the general path says so
                    return None
                if label == _V:
                    if type(item) is not int and (
                        type(item) is not float or not math.isfinite(item)
                    ):
                        return None
                    field = "v"
                elif label == _VS:
                    if type(item) is not str:
                        return None
                    field = "vs"
                elif label == _VB:
                    if type(item) is not bool:
                        return None
                    field = "vb"
                else:
                    if type(item) is not bytes:
                        return None
                    field = "vd"
                value = item
        full = base_name + name
        if not full:
            return None
        try:
            path = senml._parse_path(full)
        except ValueError:
            return None
        if base_time is None and offset is None:
            time = None
        else:
            total = float((base_time or 0) + (offset or 0))
            if not math.isfinite(total):
                return None
            time = None if total == 0 else total
        records.append(senml.Record(path, time, field, value))
    if pos != end:
        return None
    return records


DIALECT = senml.Dialect(
    "SenML CBOR", _load, _dump, _opaque_in, _opaque_out, fast_records=fast_records
)

_codec = senml.Codec(DIALECT)
encode, decode = _codec.encode, _codec.decode
encode_nodes, decode_nodes = _codec.encode_nodes, _codec.decode_nodes
encode_paths, decode_paths = _codec.encode_paths, _codec.decode_paths
encode_timestamped, decode_timestamped = _codec.encode_timestamped, _codec.decode_timestamped
