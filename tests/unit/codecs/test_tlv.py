"""OMA TLV codec: the spec's examples byte for byte, malformed input, and round-trip properties.

The vectors are the TLV examples of LwM2M 1.0.x §6.4.3 / Core 1.1.x §7.4.3.2 ("Single Object
Instance Request Example", "Multiple Object Instance Request Examples" A/B/C, "Object Link
examples" 1/2); the hex is the spec's, as also reproduced in Eclipse Leshan's test suite.
"""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from object_models import codecs
from object_models.codecs import tlv
from object_models.content_format import ContentFormat
from object_models.errors import CodecError, ResponseCode
from object_models.model import StaticModels
from object_models.node import (
    LwM2mMultipleResource,
    LwM2mObject,
    LwM2mObjectInstance,
    LwM2mResourceInstance,
    LwM2mSingleResource,
)
from object_models.path import LwM2mPath
from object_models.types import ObjectLink, ResourceType

from .helpers import (
    DEVICE_INSTANCE,
    DEVICE_RESOURCES,
    OBJ65_INSTANCE,
    SPEC_MODELS,
    Case,
    assert_roundtrip,
    examples,
    object_model,
    random_cases,
)
from .strategies import model_and_node

T = ResourceType

DEVICE_WITH_INSTANCE = bytes.fromhex("080079") + DEVICE_RESOURCES
ACL_TWO_INSTANCES = bytes.fromhex(
    "08000EC10001C101008302417F07C1037F080212C10003C101008702417F0761013601C1037F"
)
SERVER_ONE_INSTANCE = bytes.fromhex("08000FC10001C40100015180C10601C10755")
OBJ65_INSTANCE_TLV = bytes.fromhex(
    "88000C440000420000440100420001C8010D38363133383030373535353030C40212345678"
)
OBJ66_TWO_INSTANCES = bytes.fromhex(
    "080026C8000B6D79536572766963652031C8010F496E7465726E65742E31352E323334C40200430000"
    "080126C8000B6D79536572766963652032C8010F496E7465726E65742E31352E323335C402FFFFFFFF"
)


# == spec vectors =================================================================================
def test_single_object_instance_example_decodes_to_documented_values() -> None:
    node = tlv.decode(DEVICE_RESOURCES, LwM2mPath(3, 0), SPEC_MODELS)
    assert node == DEVICE_INSTANCE


def test_single_object_instance_example_encodes_to_spec_bytes() -> None:
    assert tlv.encode(DEVICE_INSTANCE, LwM2mPath(3, 0), SPEC_MODELS) == DEVICE_RESOURCES


def test_read_on_single_instance_object_example_a() -> None:
    expected = LwM2mObject(3, {0: DEVICE_INSTANCE})
    assert tlv.decode(DEVICE_WITH_INSTANCE, LwM2mPath(3), SPEC_MODELS) == expected
    assert tlv.encode(expected, LwM2mPath(3), SPEC_MODELS) == DEVICE_WITH_INSTANCE


def test_instance_level_accepts_the_instance_wrapper() -> None:
    assert tlv.decode(DEVICE_WITH_INSTANCE, LwM2mPath(3, 0), SPEC_MODELS) == DEVICE_INSTANCE


def test_object_level_accepts_bare_resources_as_instance_0() -> None:
    """Device is single-instance: its resources without the wrapper can only be instance 0."""
    assert not SPEC_MODELS.objects[3].multiple
    node = tlv.decode(DEVICE_RESOURCES, LwM2mPath(3), SPEC_MODELS)
    assert node == LwM2mObject(3, {0: DEVICE_INSTANCE})


def test_object_level_bare_resources_of_an_unknown_object_are_instance_0() -> None:
    """Without a model nothing says the object has other instances: instance 0, as before."""
    node = tlv.decode(bytes.fromhex("c800036f6d61"), LwM2mPath(32768), StaticModels({}))
    expected = LwM2mSingleResource(0, b"oma", T.OPAQUE)
    assert node == LwM2mObject(32768, {0: LwM2mObjectInstance.of(0, expected)})


def test_object_level_bare_resources_of_a_multi_instance_object_are_4_00() -> None:
    """Issue 9 item 5: resources of a multi-instance object (Server, /1) without their object
    instance TLV belong to an instance the payload does not name; filing them under instance 0
    would store them at the wrong path, so it is a decode error."""
    assert SPEC_MODELS.objects[1].multiple
    bare = bytes.fromhex("C10001C40100015180C10601C10755")  # Server instance 0 without wrapper
    for fmt in (ContentFormat.TLV, ContentFormat.OLD_TLV):
        with pytest.raises(CodecError, match="multi-instance") as info:
            codecs.decode(bare, LwM2mPath(1), fmt, SPEC_MODELS)
        assert info.value.code is ResponseCode.BAD_REQUEST
        assert info.value.path == "/1"
    # with the wrapper the same values decode
    node = tlv.decode(SERVER_ONE_INSTANCE, LwM2mPath(1), SPEC_MODELS)
    assert isinstance(node, LwM2mObject) and list(node.instances) == [0]


def test_empty_payload_at_a_resource_path() -> None:
    """Issue 9 item 7: nothing at all at a resource the model does not say is single is an
    empty multiple resource (typed like every unknown TLV value: Opaque)."""
    path = LwM2mPath(32768, 0, 7)
    assert tlv.decode(b"", path, StaticModels({})) == LwM2mMultipleResource(7, {}, T.OPAQUE)
    wrapped = tlv.decode(bytes.fromhex("880700"), path, StaticModels({}))
    assert wrapped == LwM2mMultipleResource(7, {}, T.OPAQUE)
    with pytest.raises(CodecError, match="no value for the resource"):
        tlv.decode(b"", LwM2mPath(3, 0, 9), SPEC_MODELS)


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
    node = tlv.decode(OBJ65_INSTANCE_TLV, LwM2mPath(65, 0), SPEC_MODELS)
    assert node == OBJ65_INSTANCE  # links to 66:0 and 66:1, "8613800755500", 0x12345678
    assert tlv.encode(node, LwM2mPath(65, 0), SPEC_MODELS) == OBJ65_INSTANCE_TLV


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
    "two resources at resource level": ("C10964C10A64", LwM2mPath(3, 0, 9), "exactly one"),
    "empty single resource": ("", LwM2mPath(3, 0, 9), "no value"),
    "wrong instance wrapper": ("0301C10964", LwM2mPath(3, 0), "does not match"),
    "value for none type": ("C10401", LwM2mPath(3, 0), "none"),
}


@pytest.mark.parametrize("case", sorted(BAD_PAYLOADS))
def test_malformed_payloads_raise_codec_error_with_path(case: str) -> None:
    hex_payload, path, reason = BAD_PAYLOADS[case]
    models = SPEC_MODELS
    if case == "float of 3 bytes":
        models = StaticModels.of(object_model(4242, "F", (0, "f", T.FLOAT, False)))
    with pytest.raises(CodecError) as info:
        tlv.decode(bytes.fromhex(hex_payload), path, models)
    assert info.value.code is ResponseCode.BAD_REQUEST
    assert info.value.path is not None and info.value.path.startswith(str(path))
    assert str(path) in str(info.value)
    if reason:
        assert reason in info.value.reason


@pytest.mark.parametrize(
    ("hex_payload", "path", "what"),
    [
        ("C10964 C10964 C8", LwM2mPath(3, 0), "resource 9"),
        ("0000 0000 C8", LwM2mPath(3), "object instance 0"),
        ("8606 410101 410105 C8", LwM2mPath(3, 0), "resource instance 1"),
        ("C10964 8309 410001 C8", LwM2mPath(3, 0), "resource 9"),  # single, then multiple
    ],
)
def test_a_duplicate_id_is_refused_before_the_rest_is_parsed(
    hex_payload: str, path: LwM2mPath, what: str
) -> None:
    """The duplicate comes before a truncated header: it is what the error names, so the
    check runs while parsing (issue 11 item 2), not after the whole payload was parsed."""
    with pytest.raises(CodecError) as info:
        tlv.decode(bytes.fromhex(hex_payload), path, SPEC_MODELS)
    assert f"{what} is given twice" in info.value.reason
    assert "truncated" not in info.value.reason


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
def test_roundtrip_every_type_at_every_level(case: Case) -> None:
    assert_roundtrip(tlv, case)


@settings(max_examples=examples(0.1), deadline=None)
@given(st.one_of([model_and_node(depth) for depth in (1, 2, 3, 4)]))
def test_roundtrip_shared_strategy(case: Case) -> None:
    assert_roundtrip(tlv, case)


@settings(max_examples=examples(), deadline=None)
@given(st.binary(max_size=64), st.integers(1, 4), st.booleans())
def test_arbitrary_bytes_raise_only_codec_error(payload: bytes, depth: int, known: bool) -> None:
    path = LwM2mPath.from_ids(*[3, 0, 6, 0][:depth])
    with contextlib.suppress(CodecError):
        tlv.decode(payload, path, SPEC_MODELS if known else StaticModels.of())
