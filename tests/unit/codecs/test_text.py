"""text/plain (0): per-type text forms (Core Appendix C Table C.2), errors, round trips."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from object_models.codecs import text
from object_models.errors import CodecError, ResponseCode
from object_models.model import StaticModels
from object_models.node import (
    LwM2mMultipleResource,
    LwM2mNode,
    LwM2mObjectInstance,
    LwM2mResourceInstance,
    LwM2mSingleResource,
)
from object_models.path import LwM2mPath
from object_models.types import ObjectLink, ResourceType, Value

from .helpers import SPEC_MODELS, examples, object_model, random_cases

T = ResourceType
ALL = StaticModels.of(
    object_model(
        9,
        "All",
        (0, "s", T.STRING, False),
        (1, "i", T.INTEGER, False),
        (2, "u", T.UNSIGNED_INTEGER, False),
        (3, "f", T.FLOAT, False),
        (4, "b", T.BOOLEAN, False),
        (5, "o", T.OPAQUE, False),
        (6, "t", T.TIME, False),
        (7, "l", T.OBJLNK, False),
        (8, "c", T.CORELNK, False),
        (10, "n", T.NONE, False),
        (11, "m", T.INTEGER, True),
    )
)
RID = {
    T.STRING: 0,
    T.INTEGER: 1,
    T.UNSIGNED_INTEGER: 2,
    T.FLOAT: 3,
    T.BOOLEAN: 4,
    T.OPAQUE: 5,
    T.TIME: 6,
    T.OBJLNK: 7,
    T.CORELNK: 8,
    T.NONE: 10,
}


@pytest.mark.parametrize(
    ("rtype", "value", "wire"),
    [
        (T.STRING, "Open Mobile Alliance", b"Open Mobile Alliance"),
        (T.STRING, "é€", "é€".encode()),
        (T.INTEGER, -42, b"-42"),
        (T.INTEGER, 2**63 - 1, b"9223372036854775807"),
        (T.UNSIGNED_INTEGER, 2**64 - 1, b"18446744073709551615"),
        (T.FLOAT, 1.5, b"1.5"),
        (T.FLOAT, 0.1, b"0.1"),
        (T.FLOAT, 1e300, b"1e+300"),
        (T.FLOAT, -0.0, b"-0.0"),
        (T.BOOLEAN, True, b"1"),
        (T.BOOLEAN, False, b"0"),
        (T.OPAQUE, b"\x01\x02\x03\x04\x05", b"AQIDBAU="),  # the Appendix C example
        (T.TIME, 1367491215, b"1367491215"),
        (T.OBJLNK, ObjectLink(66, 1), b"66:1"),
        (T.CORELNK, "</3/0>", b"</3/0>"),
        (T.NONE, None, b""),
    ],
)
def test_text_forms(rtype: ResourceType, value: Value, wire: bytes) -> None:
    path = LwM2mPath(9, 0, RID[rtype])
    node = LwM2mSingleResource(RID[rtype], value, rtype)
    assert text.encode(node, path, ALL) == wire
    assert text.decode(wire, path, ALL) == node


def test_spec_manufacturer_example_and_unknown_resource_is_string() -> None:
    node = text.decode(b"Open Mobile Alliance", LwM2mPath(3, 0, 0), SPEC_MODELS)
    assert node == LwM2mSingleResource(0, "Open Mobile Alliance", T.STRING)
    assert text.decode(b"42", LwM2mPath(3, 0, 99), SPEC_MODELS) == (
        LwM2mSingleResource(99, "42", T.STRING)
    )


def test_resource_instance() -> None:
    node = text.decode(b"7", LwM2mPath(9, 0, 11, 3), ALL)
    assert node == LwM2mResourceInstance(3, 7, T.INTEGER)
    assert text.encode(node, LwM2mPath(9, 0, 11, 3), ALL) == b"7"


def test_opaque_base64_without_padding_is_accepted() -> None:
    assert text.decode(b"AQIDBAU", LwM2mPath(9, 0, 5), ALL).value == b"\x01\x02\x03\x04\x05"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("rtype", "wire"),
    [
        (T.INTEGER, b"1_0"),
        (T.INTEGER, b" 5"),
        (T.INTEGER, b"+5"),
        (T.INTEGER, b"\xd9\xa5"),
        (T.INTEGER, b"9223372036854775808"),
        (T.INTEGER, b""),
        (T.UNSIGNED_INTEGER, b"-1"),
        (T.FLOAT, b"nan"),
        (T.FLOAT, b"inf"),
        (T.FLOAT, b"1e999"),
        (T.FLOAT, b"1,5"),
        (T.BOOLEAN, b"true"),
        (T.BOOLEAN, b"2"),
        (T.OPAQUE, b"!!"),
        (T.OPAQUE, b"A"),
        (T.OBJLNK, b"1:70000"),
        (T.OBJLNK, b"1"),
        (T.TIME, b"2020-01-01"),
        (T.NONE, b"x"),
        (T.STRING, b"\xff\xfe"),
    ],
)
def test_invalid_text_is_bad_request_naming_the_path(rtype: ResourceType, wire: bytes) -> None:
    path = LwM2mPath(9, 0, RID[rtype])
    with pytest.raises(CodecError) as info:
        text.decode(wire, path, ALL)
    assert info.value.code is ResponseCode.BAD_REQUEST
    assert str(info.value).startswith("/9/0/")


def test_levels_text_cannot_carry() -> None:
    for path in (LwM2mPath(9), LwM2mPath(9, 0), LwM2mPath(9, 0, 11)):
        with pytest.raises(CodecError) as info:
            text.decode(b"1", path, ALL)
        assert info.value.code is ResponseCode.UNSUPPORTED_CONTENT_FORMAT
    for node, path in (
        (LwM2mObjectInstance(0, {}), LwM2mPath(9, 0)),
        (LwM2mMultipleResource.from_values(11, {0: 1}, T.INTEGER), LwM2mPath(9, 0, 11)),
    ):
        with pytest.raises(CodecError) as info:
            text.encode(node, path, ALL)
        assert info.value.code is ResponseCode.NOT_ACCEPTABLE


def test_encode_refuses_a_value_of_the_wrong_type() -> None:
    with pytest.raises(CodecError, match="/9/0/1"):
        text.encode(LwM2mSingleResource(1, "x", T.INTEGER), LwM2mPath(9, 0, 1), ALL)


@settings(max_examples=examples(), deadline=None)
@given(random_cases(depths=(3, 4)))
def test_roundtrip_single_values(case: tuple[StaticModels, LwM2mPath, LwM2mNode]) -> None:
    models, path, node = case
    if isinstance(node, LwM2mMultipleResource):
        with pytest.raises(CodecError):
            text.encode(node, path, models)
        return
    assert text.decode(text.encode(node, path, models), path, models) == node


@settings(max_examples=examples(), deadline=None)
@given(st.binary(max_size=48), st.sampled_from(sorted(RID.values())))
def test_arbitrary_bytes_raise_only_codec_error(payload: bytes, rid: int) -> None:
    with contextlib.suppress(CodecError):
        text.decode(payload, LwM2mPath(9, 0, rid), ALL)
