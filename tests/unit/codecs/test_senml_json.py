"""SenML JSON (Content-Format 110): spec vectors, bad input, property tests.

The spec vectors follow LwM2M Core 1.1(.1) §7.4.4 (SenML JSON) and §7.4.5 (SenML CBOR). The OMA
text itself was not at hand; the Device example was transcribed from the spec as quoted by
independent implementations (its SenML CBOR hex is the spec's, page 86 of Core 1.1.1).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import strategies as st

from object_models.codecs import senml_json
from object_models.errors import CodecError, ResponseCode
from object_models.node import (
    LwM2mNode,
    LwM2mObject,
    LwM2mObjectInstance,
)
from object_models.path import LwM2mPath
from object_models.types import ResourceType as T

from .helpers import (
    DEVICE_INSTANCE,
    OBJ65_INSTANCE,
    SPEC_MODELS,
    CodecProperties,
    TimestampedProperties,
    multi,
    single,
    spec_payloads,
)
from .strategies import json_values

# -- spec vectors ---------------------------------------------------------------------------------

DEVICE_JSON = (
    '[{"bn":"/3/0/","n":"0","vs":"Open Mobile Alliance"},'
    '{"n":"1","vs":"Lightweight M2M Client"},{"n":"2","vs":"345000123"},{"n":"3","vs":"1.0"},'
    '{"n":"6/0","v":1},{"n":"6/1","v":5},{"n":"7/0","v":3800},{"n":"7/1","v":5000},'
    '{"n":"8/0","v":125},{"n":"8/1","v":900},{"n":"9","v":100},{"n":"10","v":15},'
    '{"n":"11/0","v":0},{"n":"13","v":1367491215},{"n":"14","vs":"+02:00"},{"n":"16","vs":"U"}]'
)


def test_device_instance_read() -> None:
    """Core 1.1 §7.4.4: Read /3/0 answered in SenML JSON (the Device example)."""
    node = senml_json.decode(DEVICE_JSON.encode(), LwM2mPath(3, 0), SPEC_MODELS)
    assert node == DEVICE_INSTANCE
    assert isinstance(node, LwM2mObjectInstance)
    assert node.resources[13] == single(13, 1367491215, T.TIME)
    assert senml_json.encode(node, LwM2mPath(3, 0), SPEC_MODELS).decode() == DEVICE_JSON


def test_single_resource_read() -> None:
    """Core 1.1 §7.4.4: a single resource is one record whose ``bn`` is the resource path."""
    payload = b'[{"bn":"/3/0/0","vs":"Open Mobile Alliance"}]'
    node = single(0, "Open Mobile Alliance", T.STRING)
    assert senml_json.decode(payload, LwM2mPath(3, 0, 0), SPEC_MODELS) == node
    assert senml_json.encode(node, LwM2mPath(3, 0, 0), SPEC_MODELS) == payload


def test_multiple_instance_resource_read() -> None:
    """Core 1.1 §7.4.4: Read /3/0/7 (Power Source Voltage, multiple instances)."""
    payload = b'[{"bn":"/3/0/7/","n":"0","v":3800},{"n":"1","v":5000}]'
    node = multi(7, {0: 3800, 1: 5000}, T.INTEGER)
    assert senml_json.decode(payload, LwM2mPath(3, 0, 7), SPEC_MODELS) == node
    assert senml_json.encode(node, LwM2mPath(3, 0, 7), SPEC_MODELS) == payload


def test_object_links() -> None:
    """Core 1.1 §7.4.4 with the Objlnk example of §7.4.3.3: links travel as ``vlo`` "o:i"."""
    payload = (
        b'[{"bn":"/65/0/","n":"0/0","vlo":"66:0"},{"n":"0/1","vlo":"66:1"},'
        b'{"n":"1","vs":"8613800755500"},{"n":"2","v":305419896}]'
    )
    assert senml_json.decode(payload, LwM2mPath(65, 0), SPEC_MODELS) == OBJ65_INSTANCE
    assert senml_json.encode(OBJ65_INSTANCE, LwM2mPath(65, 0), SPEC_MODELS) == payload


def test_read_composite_request_and_response() -> None:
    """Core 1.1 §6.3 Read-Composite with §7.4.4: a body of paths, answered one node per path."""
    request = b'[{"n":"/3/0/1"},{"n":"/1/0"}]'
    paths = [LwM2mPath(3, 0, 1), LwM2mPath(1, 0)]
    assert senml_json.encode_paths(paths) == request
    assert senml_json.decode_paths(request) == paths
    response = (
        b'[{"bn":"/3/0/1","vs":"Lightweight M2M Client"},'
        b'{"bn":"/1/0/","n":"0","v":1},{"n":"1","v":86400}]'
    )
    nodes: dict[LwM2mPath, LwM2mNode | None] = {
        paths[0]: single(1, "Lightweight M2M Client", T.STRING),
        paths[1]: LwM2mObjectInstance.of(0, single(0, 1, T.INTEGER), single(1, 86400, T.INTEGER)),
    }
    assert senml_json.encode_nodes(nodes, SPEC_MODELS) == response
    assert senml_json.decode_nodes(response, SPEC_MODELS, paths) == nodes
    # the same answer with full names in "n" (no base name), as other clients send it
    full = (
        b'[{"n":"/3/0/1","vs":"Lightweight M2M Client"},'
        b'{"n":"/1/0/0","v":1},{"n":"/1/0/1","v":86400}]'
    )
    assert senml_json.decode_nodes(full, SPEC_MODELS, paths) == nodes
    assert senml_json.decode_nodes(full, SPEC_MODELS) == {
        paths[0]: nodes[paths[0]],
        LwM2mPath(1, 0, 0): single(0, 1, T.INTEGER),
        LwM2mPath(1, 0, 1): single(1, 86400, T.INTEGER),
    }


def test_write_composite_with_delete() -> None:
    """Core 1.1 §6.3 Write-Composite with §7.4.4: a record without value deletes that path."""
    payload = b'[{"n":"/3/0/14","vs":"+02:00"},{"n":"/1/0/1","v":3600},{"n":"/3/0/7/1"}]'
    assert senml_json.decode_nodes(payload, SPEC_MODELS) == {
        LwM2mPath(3, 0, 14): single(14, "+02:00", T.STRING),
        LwM2mPath(1, 0, 1): single(1, 3600, T.INTEGER),
        LwM2mPath(3, 0, 7, 1): None,
    }
    encoded = senml_json.encode_nodes({LwM2mPath(3, 0, 7, 1): None}, SPEC_MODELS)
    assert encoded == b'[{"bn":"/3/0/7/1"}]'


def test_timestamped_notification() -> None:
    """Core 1.1 §7.4.4 / RFC 8428 §4.5.3: ``bt`` + ``t`` give each value's time."""
    payload = b'[{"bn":"/1024/0/1","v":22.9,"bt":268500000},{"v":22.4,"t":-5},{"v":24.1,"t":-50}]'
    path = LwM2mPath(1024, 0, 1)
    got = senml_json.decode_timestamped(payload, SPEC_MODELS, path)
    assert got.entries == (
        (268500000.0, {path: single(1, 22.9, T.FLOAT)}),
        (268499995.0, {path: single(1, 22.4, T.FLOAT)}),
        (268499950.0, {path: single(1, 24.1, T.FLOAT)}),
    )
    assert senml_json.encode_timestamped(got, SPEC_MODELS) == (
        b'[{"bn":"/1024/0/1","bt":268500000,"v":22.9},{"bt":268499995,"v":22.4},'
        b'{"bt":268499950,"v":24.1}]'
    )


def test_send_with_several_base_names() -> None:
    """Core 1.1 §6.4 Send in SenML JSON (§7.4.4): ``bt`` stays in force across a new ``bn``."""
    payload = (
        b'[{"bn":"/3303/0/5700","bt":1699877805.766,"v":-128.8},'
        b'{"bn":"/6/0/0","t":0.101,"v":-39.0}]'
    )
    got = senml_json.decode_timestamped(payload, SPEC_MODELS)
    assert got.entries == (
        (1699877805.766, {LwM2mPath(3303, 0, 5700): single(5700, -128.8, T.FLOAT)}),
        (1699877805.766 + 0.101, {LwM2mPath(6, 0, 0): single(0, -39.0, T.FLOAT)}),
    )


def test_relative_times_are_kept_as_given() -> None:
    """RFC 8428 §4.5.3: below 2**28 a time is relative to "now"; the codec keeps the number
    (the caller knows when it received the payload), and a resolved 0 is "no time"."""
    payload = b'[{"n":"/3303/0/5700","v":1.5,"t":-10},{"n":"/3303/0/5700","v":2.5}]'
    got = senml_json.decode_timestamped(payload, SPEC_MODELS)
    assert [t for t, _ in got.entries] == [-10.0, None]


def test_empty_payload_is_an_empty_container() -> None:
    """OMA LwM2M issue #494 (followed by Leshan): an empty body reads as nothing inside."""
    assert senml_json.decode(b"", LwM2mPath(3, 0), SPEC_MODELS) == LwM2mObjectInstance(0, {})
    assert senml_json.decode(b"[]", LwM2mPath(3), SPEC_MODELS) == LwM2mObject(3, {})
    with pytest.raises(CodecError, match="no value for the resource"):
        senml_json.decode(b"[]", LwM2mPath(3, 0, 9), SPEC_MODELS)


def test_large_integers_and_floats_are_exact() -> None:
    """64-bit integers are JSON integers (no float rounding), floats use their shortest repr."""
    node = single(16, 2**64 - 1, T.UNSIGNED_INTEGER)
    payload = senml_json.encode(node, LwM2mPath(0, 0, 16), SPEC_MODELS)
    assert payload == b'[{"bn":"/0/0/16","v":18446744073709551615}]'
    assert senml_json.decode(payload, LwM2mPath(0, 0, 16), SPEC_MODELS) == node
    lat = single(0, 0.1 + 0.2, T.FLOAT)
    assert senml_json.encode(lat, LwM2mPath(6, 0, 0), SPEC_MODELS) == (
        b'[{"bn":"/6/0/0","v":0.30000000000000004}]'
    )


def test_opaque_is_base64url_without_padding() -> None:
    """Core 1.1 §7.4.4: ``vd`` is base64url; we write no padding and accept both alphabets."""
    node = single(3, b"\xfb\xff", T.OPAQUE)
    payload = senml_json.encode(node, LwM2mPath(0, 0, 3), SPEC_MODELS)
    assert payload == b'[{"bn":"/0/0/3","vd":"-_8"}]'
    for sent in (b"-_8", b"+/8=", b"-_8="):
        body = b'[{"bn":"/0/0/3","vd":"' + sent + b'"}]'
        assert senml_json.decode(body, LwM2mPath(0, 0, 3), SPEC_MODELS) == node


def test_model_types_numbers() -> None:
    """The model decides Integer vs Float vs Time; unknown resources are typed by the number."""
    payload = (
        b'[{"n":"/6/0/0","v":43},{"n":"/6/0/5","v":1.638435E9},'
        b'{"n":"/9999/0/1","v":2.0},{"n":"/9999/0/2","v":2}]'
    )
    assert senml_json.decode_nodes(payload, SPEC_MODELS) == {
        LwM2mPath(6, 0, 0): single(0, 43.0, T.FLOAT),
        LwM2mPath(6, 0, 5): single(5, 1638435000, T.TIME),
        LwM2mPath(9999, 0, 1): single(1, 2.0, T.FLOAT),
        LwM2mPath(9999, 0, 2): single(2, 2, T.INTEGER),
    }


# -- bad input ------------------------------------------------------------------------------------

BAD = [
    (b"{}", "/3/0", "must be an array of records"),
    (b"[1]", "/3/0", "record 0: must be a map"),
    (b'[{"v":1}]', "/3/0", "record 0: record has no name"),
    (b'[{"n":5,"v":1}]', "/3/0", "'n' must be a string"),
    (b'[{"n":"/3/0/x","v":1}]', "/3/0", "is not an LwM2M path"),
    (b'[{"n":"/3/0/9","v":1,"vs":"1"}]', "/3/0", "conflicting value fields v, vs"),
    (b'[{"n":"/3/0/9","vs":"100"}]', "/3/0", "/3/0/9: a Integer resource takes 'v', got 'vs'"),
    (b'[{"n":"/3/0/9","v":1.5}]', "/3/0", "/3/0/9: invalid Integer value"),
    (b'[{"n":"/3/0/9","v":true}]', "/3/0", "'v' must be a number, got a boolean"),
    (b'[{"n":"/3/0/9","v":9223372036854775808}]', "/3/0", "outside the integer range"),
    (b'[{"n":"/3/0/9","v":NaN}]', "/3/0", "NaN is not a JSON number"),
    (b'[{"n":"/3/0/9","v":1,"v":2}]', "/3/0", "duplicate label 'v'"),
    (b'[{"n":"/0/0/3","vd":"a*b"}]', "/0/0", "invalid 'vd'"),
    (b'[{"n":"/3/0/9","v":1,"foo_":1}]', "/3/0", "must-understand field 'foo_'"),
    (b'[{"n":"/3/0/9","s":1}]', "/3/0", "sum values ('s') are not supported"),
    (b'[{"n":"/3/0/9"}]', "/3/0", "/3/0/9: record has no value"),
    (b'[{"n":"/3/0","vs":"x"}]', "/3", "/3/0: a value needs a resource"),
    (b'[{"n":"/4/0/1","v":1}]', "/3/0", "outside the requested path"),
    (b'[{"n":"/3/0/9","v":1},{"n":"/3/0/9","v":2}]', "/3/0", "given twice"),
    (b'[{"n":"/3/0/7","v":1}]', "/3/0", "multiple-instance resource given without an instance"),
    (b'[{"n":"/3/0/\\ud800","v":1}]', "/3/0", "not valid Unicode"),
    (b'[{"n":"/3/0/0","vs":"\xff"}]', "/3/0", "not valid UTF-8"),
    (b"[" * 100000, "/3/0", "JSON"),
    (b'[{"n":"/3/0/9","v":1', "/3/0", "invalid JSON"),
    (b'[{"n":"/65/0/0/0","vlo":"66"}]', "/65/0", "invalid Objlnk value"),
    (b'[{"n":"/3/0/9","v":1,"bt":"x"}]', "/3/0", "'bt' must be a number"),
    (b'[{"n":"/6/0/0","v":1e999}]', "/6/0", "'v' must be a finite number, got inf"),
    (b'[{"n":"/6/0/0","v":1,"bt":1' + b"0" * 400 + b',"t":0.5}]', "/6/0", "too large"),
    (b'[{"n":"/6/0/0","v":1' + b"0" * 400 + b"}]", "/6/0", "'v' is too large a number"),
]


@pytest.mark.parametrize(("payload", "path", "message"), BAD)
def test_bad_input(payload: bytes, path: str, message: str) -> None:
    with pytest.raises(CodecError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        senml_json.decode(payload, LwM2mPath.parse(path), SPEC_MODELS)
    assert err.value.code == ResponseCode.BAD_REQUEST


def test_bad_paths_and_timestamped() -> None:
    with pytest.raises(CodecError, match="a path list carries no values"):
        senml_json.decode_paths(b'[{"n":"/3/0/1","v":1}]')
    with pytest.raises(CodecError, match="a path list carries no times"):
        senml_json.decode_paths(b'[{"n":"/3/0/1","t":5}]')
    with pytest.raises(CodecError, match="record has no value"):
        senml_json.decode_timestamped(b'[{"n":"/3/0/1","t":5}]', SPEC_MODELS)
    with pytest.raises(CodecError, match="not requested"):
        senml_json.decode_nodes(b'[{"n":"/3/0/1"}]', SPEC_MODELS, [LwM2mPath(3, 0)])


def test_encode_refuses_what_senml_cannot_carry() -> None:
    with pytest.raises(CodecError, match="non-finite"):
        senml_json.encode(single(0, float("nan"), T.FLOAT), LwM2mPath(6, 0, 0), SPEC_MODELS)
    with pytest.raises(CodecError, match="/3/0/9: cannot encode as Integer"):
        senml_json.encode(single(9, "lots", T.STRING), LwM2mPath(3, 0, 9), SPEC_MODELS)


# -- properties -----------------------------------------------------------------------------------


class TestSenmlJsonProperties(CodecProperties, TimestampedProperties):
    module = senml_json
    seed_payloads = spec_payloads(senml_json)
    alphabet = b'[]{}",:0123456789.-+eE/ntrufalsbvdo\\'
    structured = st.binary(max_size=64) | json_values.map(lambda v: json.dumps(v).encode())
