"""Plain CBOR (Content-Format 60, LwM2M 1.1 §7.4.7): one resource or resource-instance value.

Also home of the bounded CBOR reader that every CBOR-based codec here (SenML CBOR, LwM2M CBOR)
decodes with, and of the value <-> CBOR item mapping that LwM2M CBOR reuses for its leaves.

Why our own reader instead of ``cbor2.loads``: cbor2 turns tags into arbitrary Python objects
(tag 1 into ``datetime`` that overflows for large epochs, tag 35 into a compiled regex, tags 28/29
into shared and even cyclic structures) and raises many exception types while doing it. A payload
from a device is untrusted, so the reader here accepts exactly the CBOR data model (RFC 8949 §3)
and nothing more: definite and indefinite strings, arrays and maps, integers, floats, false, true,
null; tags come back as ``Tagged`` for the caller to interpret. Nesting is limited to
``MAX_DEPTH``, every declared length is checked against the bytes that are actually there (so a
huge declared length costs nothing), duplicate map keys are refused, text must be valid UTF-8, and
the only exception that leaves it is ``CodecError``. Encoding still uses cbor2.

Value mapping (Leshan's choice, which the LwM2M 1.1 text leaves open for Time): String and
Corelnk are text strings, Integer and Unsigned Integer integers, Float a float (a decimal fraction,
tag 4, is accepted), Boolean a simple value, Opaque a byte string, Objlnk the text ``"o:i"``, and
Time an epoch-based date/time (tag 1 around an integer) when encoding; a bare integer, tag 1 and
an RFC 3339 string under tag 0 are all accepted when decoding.
"""

from __future__ import annotations

import decimal
import struct

import attrs
import cbor2

from ..errors import CodecError, ResponseCode
from ..model import ModelProvider
from ..node import LwM2mNode, LwM2mResourceInstance, LwM2mSingleResource
from ..path import LwM2mPath
from ..types import ResourceType, Value, coerce_value
from .common import (
    check_single_value_path,
    encodable_value,
    leaf_type,
    model_type,
    number_type,
    single_value_node,
)

__all__ = ["MAX_DEPTH", "Tagged", "decode", "dump_cbor", "encode", "read_cbor"]

MAX_DEPTH = 16
"""Deepest nesting of arrays, maps and tags accepted; LwM2M CBOR needs 7 at most."""

_BREAK = 0xFF
_FLOATS = {25: ">e", 26: ">f", 27: ">d"}
_DOUBLE = struct.Struct(">d").unpack_from
_SINGLE = struct.Struct(">f").unpack_from
_SIMPLE: dict[int, object] = {20: False, 21: True, 22: None}


@attrs.frozen
class Tagged:
    """A CBOR tag (major type 6) around its item, left for the caller to interpret."""

    tag: int
    value: object


class _Reader:
    """A cursor over one CBOR item; every method raises ``CodecError`` on malformed input."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def fail(self, reason: str) -> CodecError:
        return CodecError(f"invalid CBOR at byte {self.pos}: {reason}")

    def take(self, count: int) -> bytes:
        if count > len(self.data) - self.pos:
            raise self.fail(f"{count} bytes declared but only {len(self.data) - self.pos} left")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def head(self) -> tuple[int, int, int | None]:
        """Major type, additional information and argument (``None`` when indefinite)."""
        initial = self.take(1)[0]
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            return major, info, info
        if info <= 27:
            return major, info, int.from_bytes(self.take(1 << (info - 24)), "big")
        if info == 31 and major in (2, 3, 4, 5, 7):
            return major, info, None
        self.pos -= 1
        raise self.fail(f"reserved additional information {info} for major type {major}")

    def at_break(self) -> bool:
        if self.pos >= len(self.data):
            raise self.fail("indefinite-length item is not terminated")
        if self.data[self.pos] == _BREAK:
            self.pos += 1
            return True
        return False

    def item(self, depth: int) -> object:
        # the head inline when its argument is in the initial byte (most items of a SenML
        # pack: labels, small integers, short strings); ``head`` for the rest
        data, pos = self.data, self.pos
        arg: int | None
        if pos < len(data) and (data[pos] & 0x1F) < 24:
            initial = data[pos]
            self.pos = pos + 1
            major = initial >> 5
            info = initial & 0x1F
            if major == 0:
                return info
            if major == 1:
                return -1 - info
            arg = info
        elif pos + 9 <= len(data) and data[pos] == 0xFB:
            # a double (a SenML value, a timestamp): read in place; ``head`` + ``simple``
            # turn its 8 bytes into an int and back into bytes first
            self.pos = pos + 9
            return float(_DOUBLE(data, pos + 1)[0])
        elif pos + 5 <= len(data) and data[pos] == 0xFA:
            self.pos = pos + 5
            return float(_SINGLE(data, pos + 1)[0])
        else:
            major, info, arg = self.head()
        if major == 0:
            return arg
        if major == 1:
            assert arg is not None
            return -1 - arg
        if major in (2, 3):
            return self.string(major, arg)
        if major == 7:
            return self.simple(info, arg)
        if depth >= MAX_DEPTH:
            raise self.fail(f"nesting deeper than {MAX_DEPTH}")
        if major == 4:
            return self.array(arg, depth + 1)
        if major == 5:
            return self.map(arg, depth + 1)
        assert arg is not None
        return Tagged(arg, self.item(depth + 1))

    def string(self, major: int, arg: int | None) -> bytes | str:
        if arg is not None:
            return self.text(self.take(arg)) if major == 3 else self.take(arg)
        chunks: list[bytes] = []
        while not self.at_break():
            chunk_major, _, chunk_arg = self.head()
            if chunk_major != major or chunk_arg is None:
                raise self.fail("indefinite-length string holds a chunk of another type")
            chunk = self.take(chunk_arg)
            if major == 3:
                self.text(chunk)  # each chunk must be valid UTF-8 on its own (RFC 8949 §3.2.3)
            chunks.append(chunk)
        joined = b"".join(chunks)
        return self.text(joined) if major == 3 else joined

    def text(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(f"text string is not valid UTF-8 ({exc.reason})") from None

    def simple(self, info: int, arg: int | None) -> object:
        if info in _FLOATS:
            assert arg is not None
            size = 1 << (info - 24)
            value: float = struct.unpack(_FLOATS[info], arg.to_bytes(size, "big"))[0]
            return value
        if arg is None:
            raise self.fail("unexpected break")
        if info in _SIMPLE:
            return _SIMPLE[info]
        raise self.fail(f"unsupported simple value {arg}")

    def array(self, count: int | None, depth: int) -> list[object]:
        items: list[object] = []
        if count is None:
            while not self.at_break():
                items.append(self.item(depth))
            return items
        if count > len(self.data) - self.pos:
            raise self.fail(f"array of {count} items cannot fit in what is left")
        for _ in range(count):
            items.append(self.item(depth))
        return items

    def map(self, count: int | None, depth: int) -> dict[object, object]:
        result: dict[object, object] = {}
        if count is not None and 2 * count > len(self.data) - self.pos:
            raise self.fail(f"map of {count} pairs cannot fit in what is left")
        remaining = count
        while (not self.at_break()) if remaining is None else remaining > 0:
            key = self.item(depth)
            if type(key) is not int and type(key) is not str:
                key = _hashable(key, self)
            if key in result:
                raise self.fail(f"duplicate map key {key!r}")
            result[key] = self.item(depth)
            if remaining is not None:
                remaining -= 1
        return result


def _hashable(key: object, reader: _Reader) -> object:
    """Map keys as Python dict keys: arrays (LwM2M CBOR path compaction) become tuples."""
    if isinstance(key, list):
        return tuple(_hashable(k, reader) for k in key)
    if isinstance(key, dict | Tagged):
        raise reader.fail("maps and tags are not supported as map keys")
    return key


def read_cbor(payload: bytes) -> object:
    """Decode exactly one CBOR data item (see the module docstring for what is accepted)."""
    reader = _Reader(bytes(payload))
    if not reader.data:
        raise CodecError("empty CBOR payload")
    result = reader.item(0)
    if reader.pos != len(reader.data):
        raise reader.fail(f"{len(reader.data) - reader.pos} bytes after the CBOR item")
    return result


def dump_cbor(item: object) -> bytes:
    """``cbor2.dumps`` with its failures turned into ``CodecError``."""
    try:
        return cbor2.dumps(item)
    except (cbor2.CBOREncodeError, ValueError, TypeError) as exc:
        raise CodecError(f"cannot encode as CBOR: {exc}") from None


# -- values --------------------------------------------------------------------------------------


def describe(item: object) -> str:
    """A short name of a decoded CBOR item for error messages."""
    if isinstance(item, Tagged):
        return f"tag {item.tag}"
    if item is None:
        return "null"
    names = {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a text string",
        bytes: "a byte string",
        list: "an array",
        dict: "a map",
    }
    return names.get(type(item), type(item).__name__)


def decimal_fraction(item: Tagged) -> int | float:
    """Tag 4 ``[exponent, mantissa]`` as a number; exponents are bounded so it stays cheap."""
    content = item.value
    if (
        not isinstance(content, list)
        or len(content) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in content)
    ):
        raise ValueError("a decimal fraction (tag 4) must be [exponent, mantissa] integers")
    exponent, mantissa = content
    assert isinstance(exponent, int) and isinstance(mantissa, int)
    if not -400 <= exponent <= 400:
        raise ValueError(f"decimal fraction exponent {exponent} is out of range")
    if exponent >= 0 and abs(mantissa) < 2**64 and exponent <= 20:
        return int(mantissa * 10**exponent)
    return float(decimal.Decimal(mantissa).scaleb(exponent))


def _number(item: object) -> int | float | None:
    if isinstance(item, bool):
        return None
    if isinstance(item, int | float):
        return item
    if isinstance(item, Tagged) and item.tag == 4:
        return decimal_fraction(item)
    return None


def _time(item: object) -> object:
    """Unwrap the time forms: tag 1 (epoch seconds) and tag 0 (RFC 3339 text)."""
    if isinstance(item, Tagged) and item.tag == 1 and _number(item.value) is not None:
        return item.value
    if isinstance(item, Tagged) and item.tag == 0 and isinstance(item.value, str):
        return item.value
    if isinstance(item, int) and not isinstance(item, bool):
        return item
    raise TypeError(f"expected a time (integer or tag 1), got {describe(item)}")


def _guess_type(item: object) -> ResourceType:
    """The type of a value whose resource is not in the model, from its CBOR type alone."""
    if isinstance(item, bool):
        return ResourceType.BOOLEAN
    if isinstance(item, int):
        return number_type(item)
    if isinstance(item, Tagged) and item.tag in (0, 1):
        return ResourceType.TIME
    if isinstance(item, float) or (isinstance(item, Tagged) and item.tag == 4):
        return ResourceType.FLOAT
    if isinstance(item, bytes):
        return ResourceType.OPAQUE
    if isinstance(item, str):
        return ResourceType.STRING
    raise TypeError(f"cannot take {describe(item)} as a resource value")


_PYTHON_TYPE: dict[ResourceType, tuple[type, ...]] = {
    ResourceType.STRING: (str,),
    ResourceType.CORELNK: (str,),
    ResourceType.OBJLNK: (str,),
    ResourceType.OPAQUE: (bytes,),
    ResourceType.BOOLEAN: (bool,),
}


def _check_raw(rtype: ResourceType, item: object) -> object:
    """The CBOR item in the shape ``coerce_value`` expects, refusing loose conversions."""
    if rtype is ResourceType.TIME:
        return _time(item)
    if rtype in _PYTHON_TYPE:
        if not isinstance(item, _PYTHON_TYPE[rtype]):
            raise TypeError(f"expected {_PYTHON_TYPE[rtype][0].__name__}, got {describe(item)}")
        return item
    number = _number(item)
    if number is None or (rtype is not ResourceType.FLOAT and not isinstance(number, int)):
        wanted = "a number" if rtype is ResourceType.FLOAT else "an integer"
        raise TypeError(f"expected {wanted}, got {describe(item)}")
    return number


def value_from_cbor(
    item: object, rtype: ResourceType | None, path: LwM2mPath
) -> tuple[ResourceType, Value]:
    """Type a decoded CBOR item as the model says (or from its CBOR type when unknown)."""
    try:
        if rtype is None:
            rtype = _guess_type(item)
        if rtype is ResourceType.NONE:
            raise ValueError("a resource of type none carries no value")
        return rtype, coerce_value(rtype, _check_raw(rtype, item))
    except (ValueError, TypeError, OverflowError) as exc:
        where = "" if rtype is None else f" for a {rtype.value} resource"
        raise CodecError(f"invalid value{where}: {exc}", path=path) from None


def value_to_cbor(rtype: ResourceType, value: Value, path: LwM2mPath) -> object:
    """The CBOR item for a value of ``rtype`` (checked and converted with ``coerce_value``)."""
    checked = encodable_value(rtype, value, path)
    if rtype is ResourceType.TIME:
        return cbor2.CBORTag(1, checked)
    if rtype is ResourceType.OBJLNK:
        return str(checked)
    return checked


# -- Content-Format 60 ----------------------------------------------------------------------------


def encode(node: LwM2mNode, path: LwM2mPath, models: ModelProvider) -> bytes:
    if not isinstance(node, LwM2mSingleResource | LwM2mResourceInstance):
        raise CodecError(
            f"CBOR cannot carry a {type(node).__name__}",
            path=path,
            code=ResponseCode.NOT_ACCEPTABLE,
        )
    check_single_value_path(path, models, "CBOR", ResponseCode.NOT_ACCEPTABLE)
    rtype = leaf_type(models, path, node.type)
    return dump_cbor(value_to_cbor(rtype, node.value, path))


def decode(payload: bytes, path: LwM2mPath, models: ModelProvider) -> LwM2mNode:
    check_single_value_path(path, models, "CBOR", ResponseCode.UNSUPPORTED_CONTENT_FORMAT)
    rtype, value = value_from_cbor(read_cbor(payload), model_type(models, path), path)
    return single_value_node(path, value, rtype)
