"""Plain CBOR (Content-Format 60, LwM2M Core 1.1 §7.4.7): one value per payload.

Core 1.1 §7.4.7 maps each LwM2M type to a CBOR major type and leaves Time's form open; we send
Time as tag 1 (epoch seconds, RFC 8949 §3.4.2, as Leshan does) and accept a bare integer or an
RFC 3339 string under tag 0 (as Zephyr sends).
"""

from __future__ import annotations

import math

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from object_models.codecs import cbor_value
from object_models.errors import CodecError, ResponseCode
from object_models.model import StaticModels
from object_models.node import (
    LwM2mMultipleResource,
    LwM2mNode,
    LwM2mObjectInstance,
    LwM2mResourceInstance,
)
from object_models.path import LwM2mPath
from object_models.types import ObjectLink
from object_models.types import ResourceType as T

from .helpers import (
    CBOR_ALPHABET,
    EXAMPLES,
    SHRINKING,
    SPEC_MODELS,
    Case,
    assert_roundtrip,
    mutated,
    only_codec_errors,
    random_cases,
    single,
)
from .strategies import cbor_payloads, model_and_node, seeds

VECTORS = [  # Core 1.1 §7.4.7: (path, node, CBOR bytes)
    (
        "/3/0/0",
        single(0, "Open Mobile Alliance", T.STRING),
        "744f70656e204d6f62696c6520416c6c69616e6365",
    ),
    ("/3/0/9", single(9, 100, T.INTEGER), "1864"),
    ("/3/0/13", single(13, 1367491215, T.TIME), "c11a5182428f"),
    ("/6/0/0", single(0, 1.5, T.FLOAT), "fb3ff8000000000000"),
    ("/1/0/6", single(6, True, T.BOOLEAN), "f5"),
    ("/0/0/3", single(3, b"\xab\xcd\xef", T.OPAQUE), "43abcdef"),
    ("/0/0/16", single(16, 2**64 - 1, T.UNSIGNED_INTEGER), "1bffffffffffffffff"),
    ("/66/0/2", single(2, ObjectLink(67, 0), T.OBJLNK), "6436373a30"),
    ("/3/0/7/1", LwM2mResourceInstance(1, 5000, T.INTEGER), "191388"),
]


@pytest.mark.parametrize(("path", "node", "hexdata"), VECTORS)
def test_vectors(path: str, node: LwM2mNode, hexdata: str) -> None:
    where = LwM2mPath.parse(path)
    assert cbor_value.encode(node, where, SPEC_MODELS).hex() == hexdata
    assert cbor_value.decode(bytes.fromhex(hexdata), where, SPEC_MODELS) == node


@pytest.mark.parametrize(
    "item",
    [1367491215, cbor2.CBORTag(1, 1367491215), cbor2.CBORTag(0, "2013-05-02T10:40:15Z")],
)
def test_time_forms_accepted(item: object) -> None:
    """Core 1.1 §7.4.7 leaves Time open: a bare integer, tag 1 and tag 0 text all decode."""
    node = cbor_value.decode(cbor2.dumps(item), LwM2mPath(3, 0, 13), SPEC_MODELS)
    assert node == single(13, 1367491215, T.TIME)


def test_unknown_resource_is_typed_by_its_cbor_type() -> None:
    unknown = StaticModels({})
    assert cbor_value.decode(b"\xf9\x3e\x00", LwM2mPath(9, 0, 1), unknown) == single(
        1, 1.5, T.FLOAT
    )
    assert cbor_value.decode(b"\x20", LwM2mPath(9, 0, 1), unknown) == single(1, -1, T.INTEGER)
    assert cbor_value.decode(b"\x61a", LwM2mPath(9, 0, 1), unknown) == single(1, "a", T.STRING)


def test_non_finite_floats_are_values() -> None:
    """CBOR, unlike JSON, can carry NaN and infinities; a Float resource takes them."""
    node = cbor_value.decode(bytes.fromhex("f97c00"), LwM2mPath(6, 0, 0), SPEC_MODELS)
    assert node == single(0, math.inf, T.FLOAT)


def test_only_single_values() -> None:
    """Core 1.1 §7.4.7: CBOR carries one value; nodes with children are 4.06/4.15."""
    instance = LwM2mObjectInstance.of(0, single(9, 1, T.INTEGER))
    with pytest.raises(CodecError) as err:
        cbor_value.encode(instance, LwM2mPath(3, 0), SPEC_MODELS)
    assert err.value.code == ResponseCode.NOT_ACCEPTABLE
    multiple = LwM2mMultipleResource.from_values(7, {0: 1})
    with pytest.raises(CodecError) as err:
        cbor_value.encode(multiple, LwM2mPath(3, 0, 7), SPEC_MODELS)
    assert err.value.code == ResponseCode.NOT_ACCEPTABLE
    for path in (LwM2mPath(3, 0), LwM2mPath(3, 0, 7)):
        with pytest.raises(CodecError) as err:
            cbor_value.decode(b"\x01", path, SPEC_MODELS)
        assert err.value.code == ResponseCode.UNSUPPORTED_CONTENT_FORMAT


BAD = [
    ("/3/0/9", "6131", "/3/0/9: invalid value for a Integer resource: expected an integer"),
    ("/3/0/9", "f93e00", "expected an integer, got a float"),
    ("/3/0/9", "1b8000000000000000", "outside the integer range"),
    ("/3/0/0", "01", "/3/0/0: invalid value for a String resource: expected str"),
    ("/3/0/13", "c16131", "expected a time"),
    ("/3/0/13", "c06178", "expected a time"),
    ("/1/0/6", "01", "expected bool"),
    ("/66/0/2", "6136", "invalid object link"),
    ("/3/0/0", "", "empty CBOR payload"),
    ("/3/0/0", "0101", "1 bytes after the CBOR item"),
    ("/3/0/0", "62c328", "not valid UTF-8"),
    ("/9/0/1", "80", "cannot take an array as a resource value"),
    ("/3/0/4", "01", "a resource of type none carries no value"),
]


@pytest.mark.parametrize(("path", "hexdata", "message"), BAD)
def test_bad_input(path: str, hexdata: str, message: str) -> None:
    with pytest.raises(CodecError, match=message) as err:
        cbor_value.decode(bytes.fromhex(hexdata), LwM2mPath.parse(path), SPEC_MODELS)
    assert err.value.code == ResponseCode.BAD_REQUEST


def test_reader_matches_cbor2_on_plain_data() -> None:
    """The bounded reader agrees with cbor2 on the CBOR data model it accepts."""
    item = {"a": [1, -2, 2**64 - 1, -(2**64), 1.5, None, True, b"x"], 3: {(1, 2): "y"}}
    assert cbor_value.read_cbor(cbor2.dumps(item)) == item
    indefinite = bytes.fromhex("7f61616162ff5f4101ff")  # (_ "a", "b") then (_ h'01')
    assert cbor_value.read_cbor(indefinite[:6]) == "ab"
    assert cbor_value.read_cbor(indefinite[6:]) == b"\x01"


# -- properties -----------------------------------------------------------------------------------


def _single_value(drawn: Case) -> Case:
    """A multiple resource cannot travel in plain CBOR: take its first instance instead."""
    models, path, node = drawn
    if isinstance(node, LwM2mMultipleResource):
        first = next(iter(node.instances.values()))
        return models, path.child(first.id), first
    return drawn


def _roundtrip(drawn: Case) -> None:
    assert_roundtrip(cbor_value, _single_value(drawn))


@EXAMPLES
@given(random_cases((3, 4)))
def test_roundtrip(drawn: Case) -> None:
    _roundtrip(drawn)


@SHRINKING
@given(st.integers(3, 4).flatmap(model_and_node))
def test_roundtrip_shrinking(drawn: Case) -> None:
    _roundtrip(drawn)


def _hostile(payload: bytes) -> None:
    for path in (LwM2mPath(3, 0, 13), LwM2mPath(6, 0, 0), LwM2mPath(9, 0, 1)):
        only_codec_errors(lambda p=path: cbor_value.decode(payload, p, SPEC_MODELS))  # type: ignore[misc]


_SEEDS = [bytes.fromhex(hexdata) for _, _, hexdata in VECTORS]


@EXAMPLES
@given(seeds)
def test_mutated_input_raises_only_codec_errors(seed: int) -> None:
    _hostile(mutated(seed, _SEEDS, CBOR_ALPHABET))


@SHRINKING
@given(cbor_payloads)
def test_structured_input_raises_only_codec_errors(payload: bytes) -> None:
    _hostile(payload)
