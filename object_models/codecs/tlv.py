"""OMA TLV (content format 11542, and 1542 used by LwM2M 1.0 clients).

Wire format (LwM2M Core 1.1.1 §7.4.3, 1.0.2 §6.4.3). Each TLV is::

    type byte | identifier (1 or 2 bytes) | length (0-3 bytes) | value
    type byte: bits 7-6 kind (00 object instance, 01 resource instance,
               10 multiple resource, 11 resource with value), bit 5 identifier is 16 bits,
               bits 4-3 size of the length field (0 = length is in bits 2-0), bits 2-0 length

Object instance TLVs hold resource and multiple-resource TLVs; multiple-resource TLVs hold
resource-instance TLVs; the other two hold a value. Nesting is therefore at most three deep *by
construction*: the parser accepts each kind only where the spec allows it, so no input can make
it recurse further.

Levels:
- ``/o``: a list of object instance TLVs. A bare list of resource TLVs is also accepted and read
  as instance 0 when the object is single-instance or unknown to the model (a single-instance
  object sent without its wrapper); for a multi-instance object it is a 4.00, since filing the
  values under an instance the client never named would store them at the wrong path.
- ``/o/i``: the resource TLVs (what we encode), or one object instance TLV with the same id.
- ``/o/i/r``: one resource TLV or one multiple-resource TLV. Bare resource-instance TLVs (seen
  from some clients) are read as a multiple resource; an empty payload as an empty multiple
  resource unless the model says the resource is single.
- ``/o/i/r/ri``: one resource-instance TLV (possibly inside its multiple-resource TLV).

Values are typed by the model (Core Appendix C): integers 1/2/4/8-byte two's complement; unsigned
integers as unsigned big-endian in 1/2/4/8 bytes — we write values below 2**63 in the shortest
*signed* form so that a 1.0 client reading them as Integer gets the same number; floats 4 or 8
bytes (4 only when exact); booleans one byte 0/1; Time as an integer; Objlnk two 16-bit ids;
strings UTF-8; opaque raw. A resource missing from the model decodes as Opaque bytes: the TLV
carries no type, and any guess (text? integer?) would silently be wrong for some resources.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from ..errors import CodecError, ResponseCode
from ..model import ModelProvider, resource_model
from ..node import (
    LwM2mMultipleResource,
    LwM2mNode,
    LwM2mObject,
    LwM2mObjectInstance,
    LwM2mResource,
    LwM2mResourceInstance,
    LwM2mSingleResource,
)
from ..path import MAX_INSTANCE_ID, LwM2mPath
from ..types import ObjectLink, ResourceType, Value
from .common import check_node_id, check_value, utf8

OBJECT_INSTANCE = 0
RESOURCE_INSTANCE = 1
MULTIPLE_RESOURCE = 2
RESOURCE_VALUE = 3

_KIND_NAMES = {
    OBJECT_INSTANCE: "object instance",
    RESOURCE_INSTANCE: "resource instance",
    MULTIPLE_RESOURCE: "multiple resource",
    RESOURCE_VALUE: "resource",
}
_INSIDE_INSTANCE = frozenset({RESOURCE_VALUE, MULTIPLE_RESOURCE})
_INSIDE_MULTIPLE = frozenset({RESOURCE_INSTANCE})
_ANY_TOP = frozenset(_KIND_NAMES)
MAX_VALUE_LENGTH = (1 << 24) - 1
"""The 24-bit length field bounds one TLV to 16 MiB - 1 bytes (the spec's "16.7 MB")."""

_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")


class Tlv(NamedTuple):
    """One parsed TLV: ``value`` for leaves, ``children`` for the two container kinds."""

    kind: int
    id: int
    value: bytes
    children: tuple[Tlv, ...]
    offset: int


# == parsing ======================================================================================
def parse(data: bytes, where: LwM2mPath | None = None) -> list[Tlv]:
    """Split ``data`` into TLVs (any kind allowed at the top). Raises ``CodecError``.

    Every declared length is checked against the bytes that remain before anything is sliced,
    so a forged 16 MiB length in a 10-byte payload costs nothing. A sibling id given twice (two
    resources 5 in one instance, …) is refused as soon as the second one's header is read,
    not after the whole payload was parsed and typed: a payload is rejected for its first
    defect, and at the cost of the bytes before it.
    """
    return _parse(data, 0, len(data), _ANY_TOP, where)


_SIBLING = {
    OBJECT_INSTANCE: OBJECT_INSTANCE,
    RESOURCE_INSTANCE: RESOURCE_INSTANCE,
    MULTIPLE_RESOURCE: RESOURCE_VALUE,  # a resource is single or multiple, never both
    RESOURCE_VALUE: RESOURCE_VALUE,
}
"""Which TLVs of one list share an id space (a duplicate is two of the same space)."""


def _parse(
    data: bytes, pos: int, end: int, allowed: frozenset[int], where: LwM2mPath | None
) -> list[Tlv]:
    result: list[Tlv] = []
    seen: set[tuple[int, int]] = set()
    while pos < end:
        start = pos
        type_byte = data[pos]
        kind = type_byte >> 6
        id_size = 2 if type_byte & 0x20 else 1
        length_size = (type_byte >> 3) & 0x03
        header_end = pos + 1 + id_size + length_size
        if header_end > end:
            raise CodecError(f"truncated TLV header at byte {start}", path=where)
        tlv_id = int.from_bytes(data[pos + 1 : pos + 1 + id_size], "big")
        if length_size:
            length = int.from_bytes(data[pos + 1 + id_size : header_end], "big")
        else:
            length = type_byte & 0x07
        if length > end - header_end:
            raise CodecError(
                f"TLV at byte {start} declares {length} bytes but only {end - header_end} remain",
                path=where,
            )
        if kind not in allowed:
            raise CodecError(
                f"a {_KIND_NAMES[kind]} TLV (byte {start}) is not allowed here", path=where
            )
        key = (_SIBLING[kind], tlv_id)
        if key in seen:
            raise CodecError(
                f"{_KIND_NAMES[key[0]]} {tlv_id} is given twice (byte {start})", path=where
            )
        seen.add(key)
        pos = header_end + length
        if kind == OBJECT_INSTANCE:
            children = _parse(data, header_end, pos, _INSIDE_INSTANCE, where)
            result.append(Tlv(kind, tlv_id, b"", tuple(children), start))
        elif kind == MULTIPLE_RESOURCE:
            children = _parse(data, header_end, pos, _INSIDE_MULTIPLE, where)
            result.append(Tlv(kind, tlv_id, b"", tuple(children), start))
        else:
            result.append(Tlv(kind, tlv_id, data[header_end:pos], (), start))
    return result


# == values =======================================================================================
def decode_value(rtype: ResourceType, raw: bytes, path: LwM2mPath) -> Value:
    """Decode one TLV value as ``rtype`` (Core Appendix C, TLV column)."""
    size = len(raw)
    if rtype in (ResourceType.STRING, ResourceType.CORELNK):
        return utf8(raw, path, "the value")
    if rtype in (ResourceType.INTEGER, ResourceType.TIME, ResourceType.UNSIGNED_INTEGER):
        if size not in (1, 2, 4, 8):
            raise CodecError(f"{rtype.value} of {size} bytes (must be 1, 2, 4 or 8)", path=path)
        return int.from_bytes(raw, "big", signed=rtype is not ResourceType.UNSIGNED_INTEGER)
    if rtype is ResourceType.FLOAT:
        return _decode_float(raw, path)
    if rtype is ResourceType.BOOLEAN:
        if size != 1 or raw[0] > 1:
            raise CodecError(f"boolean must be one byte 0 or 1, got {raw[:8].hex()}", path=path)
        return raw[0] == 1
    if rtype is ResourceType.OBJLNK:
        if size != 4:
            raise CodecError(f"object link of {size} bytes (must be 4)", path=path)
        return ObjectLink(int.from_bytes(raw[:2], "big"), int.from_bytes(raw[2:], "big"))
    if rtype is ResourceType.OPAQUE:
        return raw
    if size:
        raise CodecError("a resource of type none carries no value", path=path)
    return None


def _decode_float(raw: bytes, path: LwM2mPath) -> float:
    if len(raw) == 4:
        value: float = _F32.unpack(raw)[0]
    elif len(raw) == 8:
        value = _F64.unpack(raw)[0]
    else:
        raise CodecError(f"float of {len(raw)} bytes (must be 4 or 8)", path=path)
    if not math.isfinite(value):
        raise CodecError("float is NaN or infinite, which LwM2M values cannot be", path=path)
    return value


def encode_value(rtype: ResourceType, value: Value, path: LwM2mPath) -> bytes:
    """The TLV value bytes of ``value``, in the shortest form the spec allows."""
    check_value(rtype, value, path)
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bool):
        return b"\x01" if value else b"\x00"
    if isinstance(value, int):
        return _encode_int(value)
    if isinstance(value, float):
        return _encode_float(value)
    if isinstance(value, ObjectLink):
        return value.object_id.to_bytes(2, "big") + value.instance_id.to_bytes(2, "big")
    if isinstance(value, bytes):
        return value
    return b""


def _encode_int(value: int) -> bytes:
    """Shortest signed 1/2/4/8-byte form; unsigned values >= 2**63 take 8 unsigned bytes."""
    for size in (1, 2, 4, 8):
        limit = 1 << (size * 8 - 1)
        if -limit <= value < limit:
            return value.to_bytes(size, "big", signed=True)
    return value.to_bytes(8, "big", signed=False)


def _encode_float(value: float) -> bytes:
    try:
        single = _F32.pack(value)
    except OverflowError:
        return _F64.pack(value)
    if _F32.unpack(single)[0] == value:
        return single
    return _F64.pack(value)


# == TLV writing ==================================================================================
def _header(kind: int, tlv_id: int, length: int, path: LwM2mPath) -> bytes:
    if length > MAX_VALUE_LENGTH:
        raise CodecError(
            f"{length} bytes do not fit a TLV (at most {MAX_VALUE_LENGTH})",
            path=path,
            code=ResponseCode.REQUEST_ENTITY_TOO_LARGE,
        )
    type_byte = kind << 6
    id_bytes = tlv_id.to_bytes(2 if tlv_id > 0xFF else 1, "big")
    if tlv_id > 0xFF:
        type_byte |= 0x20
    if length < 8:
        return bytes((type_byte | length,)) + id_bytes
    size = 1 if length <= 0xFF else 2 if length <= 0xFFFF else 3
    return bytes((type_byte | size << 3,)) + id_bytes + length.to_bytes(size, "big")


def _tlv(kind: int, tlv_id: int, body: bytes, path: LwM2mPath) -> bytes:
    return _header(kind, tlv_id, len(body), path) + body


def _resource_tlv(res: LwM2mResource, path: LwM2mPath) -> bytes:
    if isinstance(res, LwM2mSingleResource):
        return _tlv(RESOURCE_VALUE, res.id, encode_value(res.type, res.value, path), path)
    parts = [
        _tlv(RESOURCE_INSTANCE, ri.id, encode_value(ri.type, ri.value, path.child(ri.id)), path)
        for ri in res.instances.values()
    ]
    return _tlv(MULTIPLE_RESOURCE, res.id, b"".join(parts), path)


def _resources_body(resources: Mapping[int, LwM2mResource], path: LwM2mPath) -> bytes:
    return b"".join(_resource_tlv(res, path.child(res.id)) for res in resources.values())


# == module contract: encode ======================================================================
def encode(node: LwM2mNode, path: LwM2mPath, models: ModelProvider) -> bytes:
    """Encode ``node`` living at ``path``; the object instance level writes bare resource TLVs,
    the object level one object instance TLV per instance (Core 1.1.1 §7.4.3.2 examples)."""
    del models  # nodes carry their types
    if path.is_object and isinstance(node, LwM2mObject):
        check_node_id(node.id, path)
        return b"".join(_instance_tlv(inst, path) for inst in node.instances.values())
    if path.is_object and isinstance(node, LwM2mObjectInstance):
        # Create on /o: with an id the instance is wrapped, without one the client picks it.
        if node.id is None:
            return _resources_body(node.resources, path)
        return _instance_tlv(node, path)
    if path.is_object_instance and isinstance(node, LwM2mObjectInstance):
        check_node_id(node.id, path)
        return _resources_body(node.resources, path)
    if path.is_resource and isinstance(node, LwM2mSingleResource | LwM2mMultipleResource):
        check_node_id(node.id, path)
        return _resource_tlv(node, path)
    if path.is_resource_instance and isinstance(node, LwM2mResourceInstance):
        check_node_id(node.id, path)
        return _tlv(RESOURCE_INSTANCE, node.id, encode_value(node.type, node.value, path), path)
    raise CodecError(
        f"cannot encode a {type(node).__name__} at this path in TLV",
        path=path,
        code=ResponseCode.NOT_ACCEPTABLE,
    )


def _instance_tlv(inst: LwM2mObjectInstance, object_path: LwM2mPath) -> bytes:
    if inst.id is None:
        raise CodecError("object instance without an id inside an object", path=object_path)
    inst_path = object_path.child(inst.id)
    return _tlv(OBJECT_INSTANCE, inst.id, _resources_body(inst.resources, inst_path), inst_path)


# == module contract: decode ======================================================================
def decode(payload: bytes, path: LwM2mPath, models: ModelProvider) -> LwM2mNode:
    """Decode a TLV payload for a request on ``path`` (object, instance, resource or resource
    instance). Any defect is a ``CodecError`` (4.00) naming the path and the reason."""
    if path.is_root:
        raise CodecError(
            "TLV cannot carry the root path",
            path=path,
            code=ResponseCode.UNSUPPORTED_CONTENT_FORMAT,
        )
    tlvs = parse(payload, path)
    decoder = _Decoder(models, path.ids[0])
    if path.is_object:
        return decoder.object(tlvs, path)
    if path.is_object_instance:
        return decoder.instance_at(tlvs, path)
    if path.is_resource:
        return decoder.resource_at(_unwrap_instance(tlvs, path), path)
    return decoder.resource_instance_at(_unwrap_instance(tlvs, path), path)


def _unwrap_instance(tlvs: list[Tlv], path: LwM2mPath) -> list[Tlv]:
    """Accept a resource (instance) payload wrapped in its own object instance TLV."""
    if len(tlvs) == 1 and tlvs[0].kind == OBJECT_INSTANCE:
        if tlvs[0].id != path.instance_id:
            raise CodecError(f"payload is for object instance {tlvs[0].id}", path=path)
        return list(tlvs[0].children)
    return tlvs


def _single(tlvs: list[Tlv], kinds: Iterable[int], tlv_id: int, path: LwM2mPath) -> Tlv:
    if len(tlvs) != 1:
        raise CodecError(f"expected exactly one TLV, got {len(tlvs)}", path=path)
    tlv = tlvs[0]
    if tlv.kind not in kinds:
        raise CodecError(f"unexpected {_KIND_NAMES[tlv.kind]} TLV", path=path)
    if tlv.id != tlv_id:
        raise CodecError(f"TLV id {tlv.id} does not match the path", path=path)
    return tlv


class _Decoder:
    """Turns parsed TLVs into nodes, typing values with the model of one object."""

    def __init__(self, models: ModelProvider, object_id: int) -> None:
        self.models = models
        self.object_id = object_id

    def rtype(self, resource_id: int) -> ResourceType:
        model = resource_model(self.models, self.object_id, resource_id)
        return ResourceType.OPAQUE if model is None else model.type

    def is_single(self, resource_id: int) -> bool:
        model = resource_model(self.models, self.object_id, resource_id)
        return model is not None and not model.multiple

    # -- levels -----------------------------------------------------------------------------------
    def object(self, tlvs: list[Tlv], path: LwM2mPath) -> LwM2mObject:
        kinds = {tlv.kind for tlv in tlvs}
        if kinds <= _INSIDE_INSTANCE and tlvs:
            # A single-instance object sent as bare resources: that is instance 0. Only a
            # single-instance object has no other instance they could belong to.
            model = self.models.get_object(self.object_id)
            if model is not None and model.multiple:
                raise CodecError(
                    "resources without their object instance TLV, but the object is"
                    " multi-instance: the instance they belong to is unknown",
                    path=path,
                )
            return LwM2mObject(path.ids[0], {0: self.instance(tlvs, path.child(0))})
        if kinds - {OBJECT_INSTANCE}:
            raise CodecError("an object payload must be object instance TLVs", path=path)
        instances: dict[int, LwM2mObjectInstance] = {}
        for tlv in tlvs:
            if tlv.id > MAX_INSTANCE_ID:
                raise CodecError(f"object instance id {tlv.id} is reserved", path=path)
            if tlv.id in instances:
                raise CodecError(f"object instance {tlv.id} is given twice", path=path)
            instances[tlv.id] = self.instance(list(tlv.children), path.child(tlv.id))
        return LwM2mObject(path.ids[0], instances)

    def instance_at(self, tlvs: list[Tlv], path: LwM2mPath) -> LwM2mObjectInstance:
        if any(tlv.kind == OBJECT_INSTANCE for tlv in tlvs):
            tlv = _single(tlvs, (OBJECT_INSTANCE,), path.ids[1], path)
            tlvs = list(tlv.children)
        return self.instance(tlvs, path)

    def instance(self, tlvs: list[Tlv], path: LwM2mPath) -> LwM2mObjectInstance:
        resources: dict[int, LwM2mResource] = {}
        for tlv in tlvs:
            if tlv.kind not in _INSIDE_INSTANCE:
                raise CodecError(f"a {_KIND_NAMES[tlv.kind]} TLV is not allowed here", path=path)
            if tlv.id in resources:
                raise CodecError(f"resource {tlv.id} is given twice", path=path)
            resources[tlv.id] = self.resource(tlv, path.child(tlv.id))
        return LwM2mObjectInstance(path.ids[1], resources)

    def resource_at(self, tlvs: list[Tlv], path: LwM2mPath) -> LwM2mResource:
        resource_id = path.ids[2]
        if not tlvs:
            # a single resource always has a value on the wire: nothing at all can only be a
            # multiple resource without instances, unless the model says otherwise
            if self.is_single(resource_id):
                raise CodecError("payload holds no value for the resource", path=path)
            return LwM2mMultipleResource(resource_id, {}, self.rtype(resource_id))
        if all(tlv.kind == RESOURCE_INSTANCE for tlv in tlvs):
            return self.multiple(resource_id, tlvs, path)
        return self.resource(_single(tlvs, _INSIDE_INSTANCE, resource_id, path), path)

    def resource(self, tlv: Tlv, path: LwM2mPath) -> LwM2mResource:
        if tlv.kind == MULTIPLE_RESOURCE:
            return self.multiple(tlv.id, list(tlv.children), path)
        rtype = self.rtype(tlv.id)
        return LwM2mSingleResource(tlv.id, decode_value(rtype, tlv.value, path), rtype)

    def multiple(self, resource_id: int, tlvs: list[Tlv], path: LwM2mPath) -> LwM2mResource:
        rtype = self.rtype(resource_id)
        instances: dict[int, LwM2mResourceInstance] = {}
        for tlv in tlvs:
            if tlv.id in instances:
                raise CodecError(f"resource instance {tlv.id} is given twice", path=path)
            value = decode_value(rtype, tlv.value, path.child(tlv.id))
            instances[tlv.id] = LwM2mResourceInstance(tlv.id, value, rtype)
        return LwM2mMultipleResource(resource_id, instances, rtype)

    def resource_instance_at(self, tlvs: list[Tlv], path: LwM2mPath) -> LwM2mResourceInstance:
        resource_id, instance_id = path.ids[2], path.ids[3]
        if len(tlvs) == 1 and tlvs[0].kind == MULTIPLE_RESOURCE:
            tlvs = list(_single(tlvs, (MULTIPLE_RESOURCE,), resource_id, path).children)
        tlv = _single(tlvs, (RESOURCE_INSTANCE,), instance_id, path)
        rtype = self.rtype(resource_id)
        return LwM2mResourceInstance(instance_id, decode_value(rtype, tlv.value, path), rtype)
