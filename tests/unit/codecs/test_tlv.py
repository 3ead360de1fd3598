"""OMA TLV codec: the spec's examples byte for byte, malformed input, and round-trip properties.

The vectors are the TLV examples of LwM2M 1.0.x §6.4.3 / Core 1.1.x §7.4.3.2 ("Single Object
Instance Request Example", "Multiple Object Instance Request Examples" A/B/C, "Object Link
examples" 1/2); the hex is the spec's, as also reproduced in Eclipse Leshan's test suite.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from object_models.codecs import tlv
from object_models.errors import CodecError, ResponseCode
from object_models.model import ObjectModel, Operations, ResourceModel, StaticModels
from object_models.node import (
    LwM2mMultipleResource,
    LwM2mNode,
    LwM2mObject,
    LwM2mObjectInstance,
    LwM2mResource,
    LwM2mResourceInstance,
    LwM2mSingleResource,
)
from object_models.path import LwM2mPath
from object_models.types import INT64_MAX, INT64_MIN, UINT64_MAX, ObjectLink, ResourceType, Value

from .strategies import model_and_node

T = ResourceType


def examples(fraction: float = 1.0) -> int:
    """Hypothesis examples for a test: ``fraction`` of ``CODEC_EXAMPLES`` (default 10,000).

    The shared ``model_and_node`` strategy costs ~3 ms an example to generate (the codecs take
    microseconds), so the 10,000-example runs use ``random_cases`` (one ``st.randoms()`` draw,
    values biased to edges) and the shared strategy runs a tenth of that, for its shrinking.
    """
    return max(1, int(int(os.environ.get("CODEC_EXAMPLES", "10000")) * fraction))


_INT_EDGES = [
    0,
    1,
    -1,
    127,
    128,
    -128,
    -129,
    255,
    256,
    32767,
    32768,
    -32768,
    -32769,
    2**31 - 1,
    2**31,
    -(2**31),
    -(2**31) - 1,
    INT64_MAX,
    INT64_MIN,
]
_UINT_EDGES = [
    0,
    1,
    127,
    128,
    255,
    256,
    65535,
    2**31,
    2**32 - 1,
    2**32,
    INT64_MAX,
    2**63,
    UINT64_MAX,
]
_FLOAT_EDGES = [
    0.0,
    -0.0,
    1.5,
    -2.25,
    0.1,
    1e-45,
    1.401298464324817e-45,
    5e-324,
    3.4028234663852886e38,
    3.4028235677973366e38,
    1.7976931348623157e308,
    1e16,
    123456789.0,
    float(2**53),
    -1e-310,
]


def random_value(rnd: random.Random, rtype: ResourceType) -> Value:
    """A value of ``rtype``: half the time an edge case, otherwise uniform over the range."""
    edge = rnd.random() < 0.5
    if rtype in (T.STRING, T.CORELNK):
        size = rnd.choice([0, 1, 5, 20])
        if edge:
            return "".join(rnd.choice('a,;"\\<>/ \x00é€😀') for _ in range(size))
        return "".join(
            chr(rnd.choice([rnd.randrange(0xD800), rnd.randrange(0xE000, 0x110000)]))
            for _ in range(size)
        )
    if rtype in (T.INTEGER, T.TIME):
        if edge:
            return rnd.choice(_INT_EDGES)
        return rnd.randint(INT64_MIN, INT64_MAX) >> rnd.randrange(64)
    if rtype is T.UNSIGNED_INTEGER:
        return rnd.choice(_UINT_EDGES) if edge else rnd.getrandbits(64) >> rnd.randrange(64)
    if rtype is T.FLOAT:
        return _random_float(rnd, edge)
    if rtype is T.BOOLEAN:
        return rnd.random() < 0.5
    if rtype is T.OPAQUE:
        return rnd.randbytes(rnd.choice([0, 1, 7, 8, 40, 300]))
    if rtype is T.OBJLNK:
        return ObjectLink(rnd.choice([0, 65535, rnd.randrange(65536)]), rnd.randrange(65536))
    return None


def _random_float(rnd: random.Random, edge: bool) -> float:
    if edge:
        return rnd.choice(_FLOAT_EDGES) * rnd.choice([1, -1])
    while True:
        packed = rnd.randbytes(4 if rnd.random() < 0.3 else 8)
        value: float = struct.unpack(">f" if len(packed) == 4 else ">d", packed)[0]
        if math.isfinite(value):
            return value


def random_case(
    rnd: random.Random, depth: int, types: list[ResourceType] | None = None
) -> tuple[StaticModels, LwM2mPath, LwM2mNode]:
    """Like ``strategies.model_and_node`` but from one ``random.Random`` (cheap to generate)."""
    pool = types or [t for t in ResourceType if t is not T.NONE]
    object_id = rnd.choice([0, 3, 65535, rnd.randrange(65536)])
    rids = (
        rnd.sample(range(65536), rnd.randint(1, 6))
        if rnd.random() < 0.5
        else rnd.sample(range(256), rnd.randint(1, 6))
    )
    model = _model(
        object_id, "R", *[(rid, "r", rnd.choice(pool), rnd.random() < 0.4) for rid in rids]
    )
    models = StaticModels.of(model)

    def resource(rid: int) -> LwM2mResource:
        rm = model.resources[rid]
        if rm.multiple:
            ids = rnd.sample(range(65536) if rnd.random() < 0.3 else range(300), rnd.randint(1, 4))
            values = {i: random_value(rnd, rm.type) for i in ids}
            return LwM2mMultipleResource.from_values(rid, values, rm.type)
        return LwM2mSingleResource(rid, random_value(rnd, rm.type), rm.type)

    def instance(iid: int) -> LwM2mObjectInstance:
        chosen = rnd.sample(rids, rnd.randint(1, len(rids)))
        return LwM2mObjectInstance(iid, {rid: resource(rid) for rid in chosen})

    if depth == 1:
        iids = rnd.sample(range(65535) if rnd.random() < 0.3 else range(300), rnd.randint(1, 3))
        return models, LwM2mPath(object_id), LwM2mObject(object_id, {i: instance(i) for i in iids})
    iid = rnd.choice([0, 65534, rnd.randrange(65535)])
    if depth == 2:
        return models, LwM2mPath(object_id, iid), instance(iid)
    rid = rnd.choice(rids)
    if depth == 3:
        return models, LwM2mPath(object_id, iid, rid), resource(rid)
    ri = rnd.choice([0, 65535, rnd.randrange(65536)])
    rtype = model.resources[rid].type
    node = LwM2mResourceInstance(ri, random_value(rnd, rtype), rtype)
    return models, LwM2mPath(object_id, iid, rid, ri), node


def mutated(seed: int, seeds: list[bytes], alphabet: bytes) -> bytes:
    """A valid document with 0-4 random edits (or random bytes): cheap, targeted fuzz input."""
    rnd = random.Random(seed)
    if rnd.random() < 0.15:
        return rnd.randbytes(rnd.randrange(64))
    data = bytearray(rnd.choice(seeds))
    for _ in range(rnd.randrange(5)):
        at = rnd.randrange(len(data) + 1)
        edit = rnd.randrange(4)
        if edit == 0:
            del data[at : at + rnd.randint(1, 8)]
        elif edit == 1:
            data[at:at] = bytes(rnd.choice(alphabet) for _ in range(rnd.randint(1, 3)))
        elif edit == 2 and at < len(data):
            data[at] = rnd.randrange(256)
        else:
            del data[at:]
    return bytes(data)


def random_cases(
    depths: tuple[int, ...] = (1, 2, 3, 4), types: list[ResourceType] | None = None
) -> st.SearchStrategy[tuple[StaticModels, LwM2mPath, LwM2mNode]]:
    """One integer draw seeds everything: Hypothesis' per-draw cost is what made the shared
    strategy slow. A failure prints the seed, which reproduces the case exactly."""

    def build(seed: int) -> tuple[StaticModels, LwM2mPath, LwM2mNode]:
        rnd = random.Random(seed)
        return random_case(rnd, rnd.choice(depths), types)

    return st.integers(0, 2**64 - 1).map(build)


def _model(object_id: int, name: str, *res: tuple[int, str, ResourceType, bool]) -> ObjectModel:
    return ObjectModel(
        object_id,
        name,
        {
            rid: ResourceModel(rid, rname, Operations.RW, multiple, False, rtype)
            for rid, rname, rtype, multiple in res
        },
    )


# The parts of the OMA models (and of the spec's test objects 65/66) the examples touch.
DEVICE = _model(
    3,
    "Device",
    (0, "Manufacturer", T.STRING, False),
    (1, "Model Number", T.STRING, False),
    (2, "Serial Number", T.STRING, False),
    (3, "Firmware Version", T.STRING, False),
    (4, "Reboot", T.NONE, False),
    (5, "Factory Reset", T.NONE, False),
    (6, "Available Power Sources", T.INTEGER, True),
    (7, "Power Source Voltage", T.INTEGER, True),
    (8, "Power Source Current", T.INTEGER, True),
    (9, "Battery Level", T.INTEGER, False),
    (10, "Memory Free", T.INTEGER, False),
    (11, "Error Code", T.INTEGER, True),
    (12, "Reset Error Code", T.NONE, False),
    (13, "Current Time", T.TIME, False),
    (14, "UTC Offset", T.STRING, False),
    (15, "Timezone", T.STRING, False),
    (16, "Supported Binding and Modes", T.STRING, False),
)
SERVER = _model(
    1,
    "LwM2M Server",
    (0, "Short Server ID", T.INTEGER, False),
    (1, "Lifetime", T.INTEGER, False),
    (2, "Default Minimum Period", T.INTEGER, False),
    (3, "Default Maximum Period", T.INTEGER, False),
    (6, "Notification Storing", T.BOOLEAN, False),
    (7, "Binding", T.STRING, False),
)
ACL = _model(
    2,
    "LwM2M Access Control",
    (0, "Object ID", T.INTEGER, False),
    (1, "Object Instance ID", T.INTEGER, False),
    (2, "ACL", T.INTEGER, True),
    (3, "Access Control Owner", T.INTEGER, False),
)
OBJ65 = _model(
    65,
    "Spec test 65",
    (0, "res0", T.OBJLNK, True),
    (1, "res1", T.STRING, False),
    (2, "res2", T.INTEGER, False),
)
OBJ66 = _model(
    66,
    "Spec test 66",
    (0, "res0", T.STRING, False),
    (1, "res1", T.STRING, False),
    (2, "res2", T.OBJLNK, False),
)
SPEC_MODELS = StaticModels.of(DEVICE, SERVER, ACL, OBJ65, OBJ66)

DEVICE_RESOURCES_HEX = (
    "C800144F70656E204D6F62696C6520416C6C69616E6365"
    "C801164C69676874776569676874204D324D20436C69656E74"
    "C80209333435303030313233"
    "C303312E30"
    "86064100014101 05"
    "88070842000ED842011388"
    "870841007D42010384"
    "C10964"
    "C10A0F"
    "830B410000"
    "C40D5182428F"
    "C60E2B30323A3030"
    "C11055"
)
DEVICE_RESOURCES = bytes.fromhex(DEVICE_RESOURCES_HEX)
DEVICE_WITH_INSTANCE = bytes.fromhex("080079") + DEVICE_RESOURCES
ACL_TWO_INSTANCES = bytes.fromhex(
    "08000EC10001C101008302417F07C1037F080212C10003C101008702417F0761013601C1037F"
)
SERVER_ONE_INSTANCE = bytes.fromhex("08000FC10001C40100015180C10601C10755")
OBJ65_INSTANCE = bytes.fromhex(
    "88000C440000420000440100420001C8010D38363133383030373535353030C40212345678"
)
OBJ66_TWO_INSTANCES = bytes.fromhex(
    "080026C8000B6D79536572766963652031C8010F496E7465726E65742E31352E323334C40200430000"
    "080126C8000B6D79536572766963652032C8010F496E7465726E65742E31352E323335C402FFFFFFFF"
)


def device_instance() -> LwM2mObjectInstance:
    """The Device object instance the spec examples describe."""

    def single(rid: int, value: object, rtype: ResourceType) -> LwM2mSingleResource:
        return LwM2mSingleResource(rid, value, rtype)  # type: ignore[arg-type]

    def multi(rid: int, *values: int) -> LwM2mMultipleResource:
        return LwM2mMultipleResource.from_values(rid, dict(enumerate(values)), T.INTEGER)

    return LwM2mObjectInstance.of(
        0,
        single(0, "Open Mobile Alliance", T.STRING),
        single(1, "Lightweight M2M Client", T.STRING),
        single(2, "345000123", T.STRING),
        single(3, "1.0", T.STRING),
        multi(6, 1, 5),
        multi(7, 3800, 5000),
        multi(8, 125, 900),
        single(9, 100, T.INTEGER),
        single(10, 15, T.INTEGER),
        multi(11, 0),
        single(13, 1367491215, T.TIME),
        single(14, "+02:00", T.STRING),
        single(16, "U", T.STRING),
    )


# == spec vectors =================================================================================
def test_single_object_instance_example_decodes_to_documented_values() -> None:
    node = tlv.decode(DEVICE_RESOURCES, LwM2mPath(3, 0), SPEC_MODELS)
    assert node == device_instance()


def test_single_object_instance_example_encodes_to_spec_bytes() -> None:
    assert tlv.encode(device_instance(), LwM2mPath(3, 0), SPEC_MODELS) == DEVICE_RESOURCES


def test_read_on_single_instance_object_example_a() -> None:
    expected = LwM2mObject(3, {0: device_instance()})
    assert tlv.decode(DEVICE_WITH_INSTANCE, LwM2mPath(3), SPEC_MODELS) == expected
    assert tlv.encode(expected, LwM2mPath(3), SPEC_MODELS) == DEVICE_WITH_INSTANCE


def test_instance_level_accepts_the_instance_wrapper() -> None:
    assert tlv.decode(DEVICE_WITH_INSTANCE, LwM2mPath(3, 0), SPEC_MODELS) == device_instance()


def test_object_level_accepts_bare_resources_as_instance_0() -> None:
    node = tlv.decode(DEVICE_RESOURCES, LwM2mPath(3), SPEC_MODELS)
    assert node == LwM2mObject(3, {0: device_instance()})


def test_access_control_two_instances_example_b() -> None:
    node = tlv.decode(ACL_TWO_INSTANCES, LwM2mPath(2), SPEC_MODELS)
    assert isinstance(node, LwM2mObject)
    assert set(node.instances) == {0, 2}
    first, second = node.instances[0], node.instances[2]
    assert first.resources[0] == LwM2mSingleResource(0, 1, T.INTEGER)
    assert first.resources[1] == LwM2mSingleResource(1, 0, T.INTEGER)
    assert first.resources[2] == LwM2mMultipleResource.from_values(2, {127: 7}, T.INTEGER)
    assert first.resources[3] == LwM2mSingleResource(3, 127, T.INTEGER)
    assert second.resources[0] == LwM2mSingleResource(0, 3, T.INTEGER)
    acl = second.resources[2]
    assert isinstance(acl, LwM2mMultipleResource) and acl.values == {127: 7, 310: 1}
    assert tlv.encode(node, LwM2mPath(2), SPEC_MODELS) == ACL_TWO_INSTANCES


def test_server_single_instance_example_c() -> None:
    node = tlv.decode(SERVER_ONE_INSTANCE, LwM2mPath(1), SPEC_MODELS)
    assert node == LwM2mObject(
        1,
        {
            0: LwM2mObjectInstance.of(
                0,
                LwM2mSingleResource(0, 1, T.INTEGER),
                LwM2mSingleResource(1, 86400, T.INTEGER),
                LwM2mSingleResource(6, True, T.BOOLEAN),
                LwM2mSingleResource(7, "U", T.STRING),
            )
        },
    )
    assert tlv.encode(node, LwM2mPath(1), SPEC_MODELS) == SERVER_ONE_INSTANCE


def test_object_link_example_1_single_instance() -> None:
    node = tlv.decode(OBJ65_INSTANCE, LwM2mPath(65, 0), SPEC_MODELS)
    assert node == LwM2mObjectInstance.of(
        0,
        LwM2mMultipleResource.from_values(
            0, {0: ObjectLink(66, 0), 1: ObjectLink(66, 1)}, T.OBJLNK
        ),
        LwM2mSingleResource(1, "8613800755500", T.STRING),
        LwM2mSingleResource(2, 0x12345678, T.INTEGER),
    )
    assert tlv.encode(node, LwM2mPath(65, 0), SPEC_MODELS) == OBJ65_INSTANCE


def test_object_link_example_2_multiple_instances_with_null_link() -> None:
    node = tlv.decode(OBJ66_TWO_INSTANCES, LwM2mPath(66), SPEC_MODELS)
    assert isinstance(node, LwM2mObject)
    assert node.instances[0].resources[0] == LwM2mSingleResource(0, "myService 1", T.STRING)
    assert node.instances[0].resources[1] == LwM2mSingleResource(1, "Internet.15.234", T.STRING)
    assert node.instances[0].resources[2] == LwM2mSingleResource(2, ObjectLink(67, 0), T.OBJLNK)
    link = node.instances[1].resources[2]
    assert isinstance(link, LwM2mSingleResource)
    assert isinstance(link.value, ObjectLink) and link.value.is_null
    assert tlv.encode(node, LwM2mPath(66), SPEC_MODELS) == OBJ66_TWO_INSTANCES


# == other levels =================================================================================
def test_multiple_resource_level() -> None:
    payload = bytes.fromhex("86064100014101 05")
    node = tlv.decode(payload, LwM2mPath(3, 0, 6), SPEC_MODELS)
    assert node == LwM2mMultipleResource.from_values(6, {0: 1, 1: 5}, T.INTEGER)
    assert tlv.encode(node, LwM2mPath(3, 0, 6), SPEC_MODELS) == payload


def test_bare_resource_instances_read_as_multiple_resource() -> None:
    node = tlv.decode(bytes.fromhex("410001410105"), LwM2mPath(3, 0, 6), SPEC_MODELS)
    assert node == LwM2mMultipleResource.from_values(6, {0: 1, 1: 5}, T.INTEGER)


def test_empty_multiple_resource() -> None:
    node = tlv.decode(b"", LwM2mPath(3, 0, 6), SPEC_MODELS)
    assert node == LwM2mMultipleResource(6, {}, T.INTEGER)
    assert tlv.encode(node, LwM2mPath(3, 0, 6), SPEC_MODELS) == b"\x80\x06"


def test_resource_instance_level() -> None:
    node = tlv.decode(bytes.fromhex("410105"), LwM2mPath(3, 0, 6, 1), SPEC_MODELS)
    assert node == LwM2mResourceInstance(1, 5, T.INTEGER)
    assert tlv.encode(node, LwM2mPath(3, 0, 6, 1), SPEC_MODELS) == bytes.fromhex("410105")
    wrapped = bytes.fromhex("8306 410105")
    assert tlv.decode(wrapped, LwM2mPath(3, 0, 6, 1), SPEC_MODELS) == node


def test_single_resource_level_and_wrapped_in_its_instance() -> None:
    node = LwM2mSingleResource(9, 100, T.INTEGER)
    assert tlv.encode(node, LwM2mPath(3, 0, 9), SPEC_MODELS) == bytes.fromhex("C10964")
    assert tlv.decode(bytes.fromhex("C10964"), LwM2mPath(3, 0, 9), SPEC_MODELS) == node
    assert tlv.decode(bytes.fromhex("0300C10964"), LwM2mPath(3, 0, 9), SPEC_MODELS) == node
    with pytest.raises(CodecError, match="instance 1"):
        tlv.decode(bytes.fromhex("0301C10964"), LwM2mPath(3, 0, 9), SPEC_MODELS)


def test_create_on_object_without_and_with_instance_id() -> None:
    res = LwM2mSingleResource(9, 100, T.INTEGER)
    assert tlv.encode(LwM2mObjectInstance(None, {9: res}), LwM2mPath(3), SPEC_MODELS) == (
        bytes.fromhex("C10964")
    )
    assert tlv.encode(LwM2mObjectInstance(4, {9: res}), LwM2mPath(3), SPEC_MODELS) == (
        bytes.fromhex("0304C10964")
    )


def test_unknown_resource_decodes_as_opaque() -> None:
    node = tlv.decode(bytes.fromhex("C1630A"), LwM2mPath(3, 0), SPEC_MODELS)
    assert node == LwM2mObjectInstance.of(0, LwM2mSingleResource(99, b"\x0a", T.OPAQUE))
    node = tlv.decode(bytes.fromhex("C30161 6263"), LwM2mPath(4242, 0, 1), SPEC_MODELS)
    assert node == LwM2mSingleResource(1, b"abc", T.OPAQUE)


# == value encodings ==============================================================================
@pytest.mark.parametrize(
    ("value", "hex_value"),
    [
        (0, "00"),
        (127, "7F"),
        (128, "0080"),
        (-128, "80"),
        (-129, "FF7F"),
        (32767, "7FFF"),
        (32768, "00008000"),
        (2**31 - 1, "7FFFFFFF"),
        (2**31, "0000000080000000"),
        (-(2**63), "8000000000000000"),
    ],
)
def test_integer_shortest_encoding(value: int, hex_value: str) -> None:
    assert tlv.encode_value(T.INTEGER, value, LwM2mPath(1, 0, 0)) == bytes.fromhex(hex_value)
    assert tlv.decode_value(T.INTEGER, bytes.fromhex(hex_value), LwM2mPath(1, 0, 0)) == value


def test_unsigned_integer_encoding() -> None:
    path = LwM2mPath(1, 0, 0)
    assert tlv.encode_value(T.UNSIGNED_INTEGER, 255, path) == bytes.fromhex("00FF")
    assert tlv.encode_value(T.UNSIGNED_INTEGER, 2**64 - 1, path) == b"\xff" * 8
    assert tlv.encode_value(T.UNSIGNED_INTEGER, 2**63, path) == bytes.fromhex("8000000000000000")
    assert tlv.decode_value(T.UNSIGNED_INTEGER, b"\xff", path) == 255
    assert tlv.decode_value(T.UNSIGNED_INTEGER, b"\xff" * 8, path) == 2**64 - 1


def test_float_uses_4_bytes_only_when_exact() -> None:
    path = LwM2mPath(1, 0, 0)
    assert tlv.encode_value(T.FLOAT, 1.5, path) == struct.pack(">f", 1.5)
    assert tlv.encode_value(T.FLOAT, 0.1, path) == struct.pack(">d", 0.1)
    assert tlv.encode_value(T.FLOAT, 1e300, path) == struct.pack(">d", 1e300)
    assert tlv.decode_value(T.FLOAT, struct.pack(">f", 1.5), path) == 1.5


def test_time_and_boolean_and_objlnk() -> None:
    path = LwM2mPath(1, 0, 0)
    assert tlv.encode_value(T.TIME, 1367491215, path) == bytes.fromhex("5182428F")
    assert tlv.encode_value(T.BOOLEAN, True, path) == b"\x01"
    assert tlv.encode_value(T.OBJLNK, ObjectLink(66, 1), path) == bytes.fromhex("00420001")


def test_long_value_uses_wider_length_fields() -> None:
    for size, header in ((7, "C707"), (8, "C80708"), (300, "D0070" + "12C"), (70000, "D807011170")):
        encoded = tlv.encode(
            LwM2mSingleResource(7, b"x" * size, T.OPAQUE), LwM2mPath(9, 0, 7), StaticModels.of()
        )
        assert encoded.hex().upper().startswith(header.upper())
        assert tlv.decode(encoded, LwM2mPath(9, 0, 7), StaticModels.of()).value == b"x" * size  # type: ignore[union-attr]


def test_encode_refuses_wrong_values_and_levels() -> None:
    with pytest.raises(CodecError, match="/3/0/9"):
        tlv.encode(LwM2mSingleResource(9, "100", T.INTEGER), LwM2mPath(3, 0, 9), SPEC_MODELS)
    with pytest.raises(CodecError) as info:
        tlv.encode(LwM2mSingleResource(9, 1, T.INTEGER), LwM2mPath(3, 0), SPEC_MODELS)
    assert info.value.code is ResponseCode.NOT_ACCEPTABLE
    with pytest.raises(CodecError, match="does not match"):
        tlv.encode(LwM2mSingleResource(9, 1, T.INTEGER), LwM2mPath(3, 0, 10), SPEC_MODELS)


# == malformed input ==============================================================================
BAD_PAYLOADS = {
    "truncated header": ("C8", LwM2mPath(3, 0), "truncated"),
    "truncated 16-bit id": ("E100", LwM2mPath(3, 0), "truncated"),
    "truncated length": ("C800", LwM2mPath(3, 0), "truncated"),
    "length beyond payload": ("C80014414243", LwM2mPath(3, 0), "declares 20 bytes"),
    "huge declared length": ("D800FFFFFF41", LwM2mPath(3, 0), "declares 16777215"),
    "instance inside instance": ("0200 0001", LwM2mPath(3), "not allowed"),
    "resource inside multiple": ("8303 C10001", LwM2mPath(3, 0), "not allowed"),
    "resource instance at instance level": ("410001", LwM2mPath(3, 0), "not allowed"),
    "integer of length 3": ("C309000001", LwM2mPath(3, 0), "3 bytes"),
    "integer of length 0": ("C009", LwM2mPath(3, 0), "0 bytes"),
    "boolean 2": ("C10602", LwM2mPath(1, 0), "boolean"),
    "boolean 2 bytes": ("C2060001", LwM2mPath(1, 0), "boolean"),
    "float of 3 bytes": ("C3000000 00", LwM2mPath(4242, 0, 0), None),
    "invalid utf-8": ("C20080FF", LwM2mPath(3, 0), "UTF-8"),
    "objlnk of 3 bytes": ("C302000000", LwM2mPath(66, 0), "4"),
    "duplicate resource": ("C10964C10964", LwM2mPath(3, 0), "twice"),
    "duplicate instance": ("0000 0000", LwM2mPath(3), "twice"),
    "duplicate resource instance": ("8606 410001 410005", LwM2mPath(3, 0), "twice"),
    "reserved instance id": ("20FFFF", LwM2mPath(3), "reserved"),
    "mixed instances and resources": ("0000 C10964", LwM2mPath(3), "object instance TLVs"),
    "wrong resource id": ("C10A64", LwM2mPath(3, 0, 9), "does not match"),
    "two resources at resource level": ("C10964C10964", LwM2mPath(3, 0, 9), "exactly one"),
    "empty single resource": ("", LwM2mPath(3, 0, 9), "no value"),
    "wrong instance wrapper": ("0301C10964", LwM2mPath(3, 0), "does not match"),
    "value for none type": ("C10401", LwM2mPath(3, 0), "none"),
}


@pytest.mark.parametrize("case", sorted(BAD_PAYLOADS))
def test_malformed_payloads_raise_codec_error_with_path(case: str) -> None:
    hex_payload, path, reason = BAD_PAYLOADS[case]
    models = SPEC_MODELS
    if case == "float of 3 bytes":
        models = StaticModels.of(_model(4242, "F", (0, "f", T.FLOAT, False)))
    with pytest.raises(CodecError) as info:
        tlv.decode(bytes.fromhex(hex_payload), path, models)
    assert info.value.code is ResponseCode.BAD_REQUEST
    assert info.value.path is not None and info.value.path.startswith(str(path))
    assert str(path) in str(info.value)
    if reason:
        assert reason in info.value.reason


def test_non_finite_float_is_refused() -> None:
    with pytest.raises(CodecError, match="NaN"):
        tlv.decode_value(T.FLOAT, struct.pack(">f", float("nan")), LwM2mPath(1, 0, 0))


def test_nesting_is_bounded_by_construction() -> None:
    # 1000 nested object-instance headers: refused at the second level, not by recursion limits.
    payload = b""
    for _ in range(1000):
        payload = bytes((0x18, 0)) + len(payload).to_bytes(3, "big") + payload
    with pytest.raises(CodecError, match="not allowed"):
        tlv.decode(payload, LwM2mPath(3), SPEC_MODELS)


def test_root_path_is_unsupported() -> None:
    with pytest.raises(CodecError) as info:
        tlv.decode(b"", LwM2mPath(), SPEC_MODELS)
    assert info.value.code is ResponseCode.UNSUPPORTED_CONTENT_FORMAT


# == properties ===================================================================================
@settings(max_examples=examples(), deadline=None)
@given(random_cases())
def test_roundtrip_every_type_at_every_level(
    case: tuple[StaticModels, LwM2mPath, LwM2mNode],
) -> None:
    models, path, node = case
    assert tlv.decode(tlv.encode(node, path, models), path, models) == node


@settings(max_examples=examples(0.1), deadline=None)
@given(st.one_of([model_and_node(depth) for depth in (1, 2, 3, 4)]))
def test_roundtrip_shared_strategy(case: tuple[StaticModels, LwM2mPath, LwM2mNode]) -> None:
    models, path, node = case
    assert tlv.decode(tlv.encode(node, path, models), path, models) == node


@settings(max_examples=examples(), deadline=None)
@given(st.binary(max_size=64), st.integers(1, 4), st.booleans())
def test_arbitrary_bytes_raise_only_codec_error(payload: bytes, depth: int, known: bool) -> None:
    path = LwM2mPath.from_ids(*[3, 0, 6, 0][:depth])
    with contextlib.suppress(CodecError):
        tlv.decode(payload, path, SPEC_MODELS if known else StaticModels.of())
