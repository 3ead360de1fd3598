"""SenML CBOR (Content-Format 112): spec vectors, bad input, property tests.

Spec vectors follow LwM2M Core 1.1(.1) §7.4.5 (SenML CBOR, RFC 8428 §6 labels).
"""

from __future__ import annotations

import cbor2
import pytest

from object_models.codecs import senml_cbor
from object_models.errors import CodecError
from object_models.node import LwM2mObjectInstance
from object_models.path import LwM2mPath
from object_models.types import ResourceType as T

from .helpers import (
    CBOR_ALPHABET,
    DEVICE_INSTANCE,
    OBJ65_INSTANCE,
    SPEC_MODELS,
    CodecProperties,
    TimestampedProperties,
    single,
    spec_payloads,
)
from .strategies import cbor_payloads

DEVICE_HEX = (
    "90a321652f332f302f00613003744f70656e204d6f62696c6520416c6c69616e6365a200613103764c6967"
    "6874776569676874204d324d20436c69656e74a20061320369333435303030313233a20061330363312e30a2"
    "0063362f300201a20063362f310205a20063372f3002190ed8a20063372f3102191388a20063382f3002187d"
    "a20063382f3102190384a2006139021864a200623130020fa2006431312f300200a200623133021a5182428f"
    "a20062313403662b30323a3030a200623136036155"
)
"""Core 1.1.1 §7.4.5 (page 86): the Device instance in SenML CBOR, as printed in the spec."""


def test_device_instance_read() -> None:
    """Core 1.1.1 §7.4.5: Read /3/0 in SenML CBOR decodes to the Device example and re-encodes
    to the spec's bytes (``bn`` -2, ``n`` 0, ``v`` 2, ``vs`` 3, in that order)."""
    payload = bytes.fromhex(DEVICE_HEX)
    node = senml_cbor.decode(payload, LwM2mPath(3, 0), SPEC_MODELS)
    assert node == DEVICE_INSTANCE
    assert senml_cbor.encode(node, LwM2mPath(3, 0), SPEC_MODELS) == payload


def test_object_links_use_the_text_label_vlo() -> None:
    """Core 1.1 §7.4.5: Objlnk has no RFC 8428 integer label; LwM2M uses the text key "vlo"."""
    payload = senml_cbor.encode(OBJ65_INSTANCE, LwM2mPath(65, 0), SPEC_MODELS)
    assert cbor2.loads(payload) == [
        {-2: "/65/0/", 0: "0/0", "vlo": "66:0"},
        {0: "0/1", "vlo": "66:1"},
        {0: "1", 3: "8613800755500"},
        {0: "2", 2: 305419896},
    ]
    assert senml_cbor.decode(payload, LwM2mPath(65, 0), SPEC_MODELS) == OBJ65_INSTANCE


def test_opaque_is_a_byte_string() -> None:
    """Core 1.1 §7.4.5: ``vd`` (label 8) is a CBOR byte string: [{-2: "/0/0/3", 8: h'ABCDEF'}]."""
    payload = bytes.fromhex("81a221662f302f302f330843abcdef")
    node = single(3, b"\xab\xcd\xef", T.OPAQUE)
    assert senml_cbor.decode(payload, LwM2mPath(0, 0, 3), SPEC_MODELS) == node
    assert senml_cbor.encode(node, LwM2mPath(0, 0, 3), SPEC_MODELS) == payload


def test_read_composite_request() -> None:
    """Core 1.1 §6.3 Read-Composite, §7.4.5 SenML CBOR: [{0: "/3/0/1"}, {0: "/1/0"}]."""
    paths = [LwM2mPath(3, 0, 1), LwM2mPath(1, 0)]
    payload = senml_cbor.encode_paths(paths)
    assert payload == bytes.fromhex("82a100662f332f302f31a100642f312f30")
    assert senml_cbor.decode_paths(payload) == paths


def test_timestamps_as_decimal_fractions() -> None:
    """RFC 8428 §6: numbers may be decimal fractions (tag 4); Leshan sends ``bt`` that way."""
    payload = bytes.fromhex(
        "83a321662f302f302f3022c482001a1dcd6504036c53616d706c65537472696e67a321662f302f302f"
        "3122c482001a1dcd650504f4a321662f302f302f3222c482001a1dcd6506021901c8"
    )
    got = senml_cbor.decode_timestamped(payload, SPEC_MODELS)
    assert [t for t, _ in got.entries] == [500000004.0, 500000005.0, 500000006.0]
    assert got.entries[0][1] == {LwM2mPath(0, 0, 0): single(0, "SampleString", T.STRING)}
    assert got.entries[1][1] == {LwM2mPath(0, 0, 1): single(1, False, T.BOOLEAN)}


def test_timestamped_notification() -> None:
    """Core 1.1 §7.4.5: a notification with ``bt`` (-3) and relative ``t`` (6)."""
    path = LwM2mPath(1024, 0, 1)
    payload = cbor2.dumps(
        [{-2: "/1024/0/1", 2: 22.9, -3: 268500000}, {2: 22.4, 6: -5}, {2: 24.1, 6: -50}]
    )
    got = senml_cbor.decode_timestamped(payload, SPEC_MODELS, path)
    assert [(t, n[path]) for t, n in got.entries] == [
        (268500000.0, single(1, 22.9, T.FLOAT)),
        (268499995.0, single(1, 22.4, T.FLOAT)),
        (268499950.0, single(1, 24.1, T.FLOAT)),
    ]


def test_write_composite_with_delete() -> None:
    """Core 1.1 Write-Composite: a record with only a name deletes that path."""
    payload = cbor2.dumps([{0: "/3/0/14", 3: "+02:00"}, {0: "/3/0/7/1"}])
    assert senml_cbor.decode_nodes(payload, SPEC_MODELS) == {
        LwM2mPath(3, 0, 14): single(14, "+02:00", T.STRING),
        LwM2mPath(3, 0, 7, 1): None,
    }


def test_empty_payload_is_an_empty_instance() -> None:
    """OMA LwM2M issue #494: an empty body (or empty array) reads as an empty container."""
    for payload in (b"", b"\x80"):
        assert senml_cbor.decode(payload, LwM2mPath(3, 0), SPEC_MODELS) == LwM2mObjectInstance(
            0, {}
        )


# -- bad input ------------------------------------------------------------------------------------

BAD = [
    (cbor2.dumps({0: "/3/0/9"}), "must be an array of records"),
    (cbor2.dumps([[0]]), "record 0: must be a map"),
    (cbor2.dumps([{99: "x"}]), "record 0: unknown SenML CBOR label 99"),
    (cbor2.dumps([{0: "/3/0/9", "n": "/3/0/9", 2: 1}]), "label 'n' given twice"),
    (cbor2.dumps([{0: "/3/0/9", 3: "100"}]), "/3/0/9: a Integer resource takes 'v', got 'vs'"),
    (cbor2.dumps([{0: "/3/0/9", 2: 1, 4: True}]), "conflicting value fields v, vb"),
    (cbor2.dumps([{0: "/3/0/9", 2: float("inf")}]), "'v' must be a finite number"),
    (cbor2.dumps([{0: "/0/0/3", 8: "q83v"}]), "invalid 'vd': expected a byte string"),
    (cbor2.dumps([{0: 3, 2: 1}]), "'n' must be a string"),
    (cbor2.dumps([{0: "/3/0/9", 2: cbor2.CBORTag(4, [10**6, 1])}]), "exponent 1000000"),
    (cbor2.dumps([{0: "/3/0/9", 2: cbor2.CBORTag(1, 5)}]), "'v' must be a number, got Tagged"),
    (bytes.fromhex("81a10063ff2f33"), "not valid UTF-8"),
    (bytes.fromhex("81a200000001"), "duplicate map key 0"),
    (bytes.fromhex("9b7fffffffffffffff"), "cannot fit"),
    (bytes.fromhex("5b7fffffffffffffff"), "declared but only 0 left"),
    (b"\x81" * 100, "nesting deeper than 16"),
    (bytes.fromhex("8100ff"), "bytes after the CBOR item"),
    (bytes.fromhex("1c"), "reserved additional information 28"),
    (bytes.fromhex("81f7"), "unsupported simple value 23"),
    (bytes.fromhex("ff"), "unexpected break"),
]


@pytest.mark.parametrize(("payload", "message"), BAD)
def test_bad_input(payload: bytes, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        senml_cbor.decode(payload, LwM2mPath(3, 0), SPEC_MODELS)


# -- properties -----------------------------------------------------------------------------------


class TestSenmlCborProperties(CodecProperties, TimestampedProperties):
    module = senml_cbor
    seed_payloads = spec_payloads(senml_cbor)
    alphabet = CBOR_ALPHABET
    structured = cbor_payloads
