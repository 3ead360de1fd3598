"""The bounded CBOR reader reads single and double floats in place (a fast path taken by every
SenML CBOR notification value): the same values as the reference decoder, the same refusals."""

from __future__ import annotations

import math
import struct

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from object_models.codecs.cbor_value import read_cbor
from object_models.errors import CodecError


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return type(a) is type(b) and a == b


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_a_double_reads_as_cbor2_reads_it(value: float) -> None:
    data = b"\xfb" + struct.pack(">d", value)
    assert same(read_cbor(data), cbor2.loads(data))


@given(st.floats(width=32, allow_nan=True, allow_infinity=True))
def test_a_single_reads_as_cbor2_reads_it(value: float) -> None:
    data = b"\xfa" + struct.pack(">f", value)
    assert same(read_cbor(data), cbor2.loads(data))


@given(st.lists(st.floats(allow_nan=False), max_size=5))
def test_floats_inside_arrays_and_maps(values: list[float]) -> None:
    data = cbor2.dumps([{2: v, 6: v} for v in values])
    assert read_cbor(data) == cbor2.loads(data)


@pytest.mark.parametrize("data", [b"\xfb" + bytes(7), b"\xfa" + bytes(3), b"\x81\xfb\x00"])
def test_a_truncated_float_is_refused(data: bytes) -> None:
    with pytest.raises(CodecError, match="declared but only"):
        read_cbor(data)


def test_nothing_may_follow_a_double() -> None:
    with pytest.raises(CodecError, match="bytes after the CBOR item"):
        read_cbor(b"\xfb" + bytes(8) + b"\x00")
