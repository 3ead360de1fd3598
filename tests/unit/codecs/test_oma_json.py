"""OMA JSON (11543): the spec's examples, malformed documents and round-trip properties.

Vectors: the Device object instance Read of LwM2M 1.0.x §6.4.4 (the same instance as the TLV
example), and the notification with ``bt`` and negative ``t`` offsets of the same section.
"""

from __future__ import annotations

import contextlib
import json as stdjson
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from object_models.codecs import json as oma_json
from object_models.errors import CodecError, ResponseCode
from object_models.model import StaticModels
from object_models.node import (
    LwM2mMultipleResource,
    LwM2mNode,
    LwM2mObject,
    LwM2mObjectInstance,
    LwM2mResourceInstance,
    LwM2mSingleResource,
    TimestampedNodes,
)
from object_models.path import LwM2mPath
from object_models.types import ObjectLink, ResourceType

from .helpers import (
    DEVICE_INSTANCE,
    SPEC_MODELS,
    Case,
    assert_roundtrip,
    examples,
    mutated,
    object_model,
    random_case,
    random_cases,
    random_value,
)
from .strategies import model_and_node

T = ResourceType

DEVICE_JSON = (
    b'{"bn":"/3/0/","e":['
    b'{"n":"0","sv":"Open Mobile Alliance"},{"n":"1","sv":"Lightweight M2M Client"},'
    b'{"n":"2","sv":"345000123"},{"n":"3","sv":"1.0"},'
    b'{"n":"6/0","v":1},{"n":"6/1","v":5},{"n":"7/0","v":3800},{"n":"7/1","v":5000},'
    b'{"n":"8/0","v":125},{"n":"8/1","v":900},{"n":"9","v":100},{"n":"10","v":15},'
    b'{"n":"11/0","v":0},{"n":"13","v":1367491215},{"n":"14","sv":"+02:00"},'
    b'{"n":"16","sv":"U"}]}'
)


NOTIFICATION_JSON = (
    b'{"bn":"/3303/0/5700","bt":25462634,"e":[{"v":22.4,"t":-5},{"v":22.9,"t":-30},'
    b'{"v":24.1,"t":-50}]}'
)


def test_device_example_decodes_to_documented_values() -> None:
    assert oma_json.decode(DEVICE_JSON, LwM2mPath(3, 0), SPEC_MODELS) == DEVICE_INSTANCE


def test_device_example_encodes_canonically() -> None:
    assert oma_json.encode(DEVICE_INSTANCE, LwM2mPath(3, 0), SPEC_MODELS) == DEVICE_JSON


def test_base_name_variants_decode_the_same() -> None:
    document = stdjson.loads(DEVICE_JSON)
    rooted = {"bn": "/", "e": [{**e, "n": "3/0/" + e["n"]} for e in document["e"]]}
    absolute = {"e": [{**e, "n": "/3/0/" + e["n"]} for e in document["e"]]}
    for variant in (rooted, absolute):
        payload = stdjson.dumps(variant).encode()
        assert oma_json.decode(payload, LwM2mPath(3, 0), SPEC_MODELS) == DEVICE_INSTANCE


def test_notification_example_with_base_time() -> None:
    data = oma_json.decode_timestamped(NOTIFICATION_JSON, SPEC_MODELS, LwM2mPath(3303, 0, 5700))
    path = LwM2mPath(3303, 0, 5700)
    assert data.entries == (
        (25462629.0, {path: LwM2mSingleResource(5700, 22.4, T.FLOAT)}),
        (25462604.0, {path: LwM2mSingleResource(5700, 22.9, T.FLOAT)}),
        (25462584.0, {path: LwM2mSingleResource(5700, 24.1, T.FLOAT)}),
    )
    assert oma_json.encode_timestamped(data, SPEC_MODELS) == (
        b'{"bn":"/3303/0/5700","bt":25462629,"e":[{"v":22.4,"t":0},{"v":22.9,"t":-25},'
        b'{"v":24.1,"t":-45}]}'
    )
    assert (
        oma_json.decode_timestamped(
            oma_json.encode_timestamped(data, SPEC_MODELS), SPEC_MODELS, path
        )
        == data
    )


def test_timestamped_without_path_gives_one_node_per_resource() -> None:
    payload = (
        b'{"bn":"/3303/0/","bt":100,"e":[{"n":"5700","v":1.5,"t":-5},'
        b'{"n":"5701","sv":"Cel","t":-5},{"n":"5700","v":2.5}]}'
    )
    data = oma_json.decode_timestamped(payload, SPEC_MODELS)
    assert data.entries == (
        (
            95.0,
            {
                LwM2mPath(3303, 0, 5700): LwM2mSingleResource(5700, 1.5, T.FLOAT),
                LwM2mPath(3303, 0, 5701): LwM2mSingleResource(5701, "Cel", T.STRING),
            },
        ),
        (100.0, {LwM2mPath(3303, 0, 5700): LwM2mSingleResource(5700, 2.5, T.FLOAT)}),
    )
    assert data.latest()[LwM2mPath(3303, 0, 5700)] == LwM2mSingleResource(5700, 2.5, T.FLOAT)
    assert (
        oma_json.decode_timestamped(oma_json.encode_timestamped(data, SPEC_MODELS), SPEC_MODELS)
        == data
    )


def test_untimed_and_fractional_times_use_absolute_t() -> None:
    path = LwM2mPath(3303, 0, 5700)
    data = TimestampedNodes(
        (
            (None, {path: LwM2mSingleResource(5700, 1.0, T.FLOAT)}),
            (10.25, {path: LwM2mSingleResource(5700, 2.0, T.FLOAT)}),
        )
    )
    encoded = oma_json.encode_timestamped(data, SPEC_MODELS)
    assert b'"bt"' not in encoded
    assert oma_json.decode_timestamped(encoded, SPEC_MODELS, path) == data


def test_value_fields_per_type() -> None:
    instance = LwM2mObjectInstance.of(
        0,
        LwM2mSingleResource(0, ObjectLink(66, 1), T.OBJLNK),
        LwM2mSingleResource(1, b"\x01\x02\x03\x04\x05", T.OPAQUE),
        LwM2mSingleResource(2, True, T.BOOLEAN),
        LwM2mSingleResource(3, 2**64 - 1, T.UNSIGNED_INTEGER),
        LwM2mSingleResource(4, -0.5, T.FLOAT),
    )
    models = StaticModels.of(
        object_model(
            77,
            "X",
            (0, "a", T.OBJLNK, False),
            (1, "b", T.OPAQUE, False),
            (2, "c", T.BOOLEAN, False),
            (3, "d", T.UNSIGNED_INTEGER, False),
            (4, "e", T.FLOAT, False),
        )
    )
    encoded = oma_json.encode(instance, LwM2mPath(77, 0), models)
    assert encoded == (
        b'{"bn":"/77/0/","e":[{"n":"0","ov":"66:1"},{"n":"1","sv":"AQIDBAU="},'
        b'{"n":"2","bv":true},{"n":"3","v":18446744073709551615},{"n":"4","v":-0.5}]}'
    )
    assert oma_json.decode(encoded, LwM2mPath(77, 0), models) == instance


def test_unknown_resources_take_their_type_from_the_field() -> None:
    payload = (
        b'{"bn":"/9999/0/","e":[{"n":"0","v":3},{"n":"1","v":2.5},{"n":"2","sv":"s"},'
        b'{"n":"3","bv":false},{"n":"4","ov":"1:2"}]}'
    )
    node = oma_json.decode(payload, LwM2mPath(9999, 0), SPEC_MODELS)
    assert node == LwM2mObjectInstance.of(
        0,
        LwM2mSingleResource(0, 3, T.INTEGER),
        LwM2mSingleResource(1, 2.5, T.FLOAT),
        LwM2mSingleResource(2, "s", T.STRING),
        LwM2mSingleResource(3, False, T.BOOLEAN),
        LwM2mSingleResource(4, ObjectLink(1, 2), T.OBJLNK),
    )


def test_levels() -> None:
    single = LwM2mSingleResource(9, 100, T.INTEGER)
    assert oma_json.encode(single, LwM2mPath(3, 0, 9), SPEC_MODELS) == (
        b'{"bn":"/3/0/9","e":[{"v":100}]}'
    )
    multiple = LwM2mMultipleResource.from_values(6, {0: 1, 1: 5}, T.INTEGER)
    encoded = oma_json.encode(multiple, LwM2mPath(3, 0, 6), SPEC_MODELS)
    assert encoded == b'{"bn":"/3/0/6/","e":[{"n":"0","v":1},{"n":"1","v":5}]}'
    assert oma_json.decode(encoded, LwM2mPath(3, 0, 6), SPEC_MODELS) == multiple
    ri = LwM2mResourceInstance(1, 5, T.INTEGER)
    assert (
        oma_json.decode(
            oma_json.encode(ri, LwM2mPath(3, 0, 6, 1), SPEC_MODELS),
            LwM2mPath(3, 0, 6, 1),
            SPEC_MODELS,
        )
        == ri
    )
    obj = LwM2mObject(3, {0: DEVICE_INSTANCE})
    assert (
        oma_json.decode(oma_json.encode(obj, LwM2mPath(3), SPEC_MODELS), LwM2mPath(3), SPEC_MODELS)
        == obj
    )
    empty = oma_json.decode(b'{"e":[]}', LwM2mPath(3, 0, 6), SPEC_MODELS)
    assert empty == LwM2mMultipleResource(6, {}, T.INTEGER)


BAD = {
    "not json": (b"{", "invalid JSON"),
    "invalid utf-8": (b'{"e":[{"n":"\xff"}]}', "UTF-8"),
    "no e": (b'{"bn":"/3/0/"}', "'e' array"),
    "array document": (b"[]", "'e' array"),
    "NaN": (b'{"bn":"/3/0/","e":[{"n":"9","v":NaN}]}', "NaN"),
    "duplicate key": (b'{"bn":"/3/0/","e":[{"n":"9","v":1,"v":2}]}', "duplicate"),
    "bool as integer": (b'{"bn":"/3/0/","e":[{"n":"9","v":true}]}', "number"),
    "string for integer": (b'{"bn":"/3/0/","e":[{"n":"9","sv":"1"}]}', "'v'"),
    "fractional integer": (b'{"bn":"/3/0/","e":[{"n":"9","v":1.5}]}', "integral"),
    "integer overflow": (b'{"bn":"/3/0/","e":[{"n":"9","v":9223372036854775808}]}', "outside"),
    "two values": (b'{"bn":"/3/0/","e":[{"n":"9","v":1,"sv":"x"}]}', "several"),
    "bad name": (b'{"bn":"/3/0/","e":[{"n":"x","v":1}]}', "segment"),
    "name is instance": (b'{"bn":"/3/","e":[{"n":"0","v":1}]}', "resource"),
    "outside path": (b'{"bn":"/3/1/","e":[{"n":"9","v":1}]}', "outside"),
    "duplicate resource": (b'{"bn":"/3/0/","e":[{"n":"9","v":1},{"n":"9","v":2}]}', "twice"),
    "entry not object": (b'{"bn":"/3/0/","e":[1]}', "not an object"),
    "bn not string": (b'{"bn":3,"e":[]}', "'bn'"),
    "bad base64": (b'{"bn":"/5/0/","e":[{"n":"0","sv":"!!"}]}', "Base64"),
    "bad objlnk": (b'{"bn":"/66/0/","e":[{"n":"2","ov":"1:99999"}]}', "object link"),
    "bt not number": (b'{"bt":"x","e":[]}', "'bt'"),
    "huge exponent": (b'{"bn":"/3/0/","e":[{"n":"13","v":1e999}]}', "integral"),
    "deep nesting": (b'{"e":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "deep"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_documents_raise_codec_error(case: str) -> None:
    payload, reason = BAD[case]
    models = StaticModels(
        {**SPEC_MODELS.objects, 5: object_model(5, "FW", (0, "p", T.OPAQUE, False))}
    )
    with pytest.raises(CodecError) as info:
        oma_json.decode(payload, LwM2mPath(3, 0), models) if case not in (
            "bad base64",
            "bad objlnk",
        ) else oma_json.decode(payload, LwM2mPath(5 if case == "bad base64" else 66, 0), models)
    assert info.value.code is ResponseCode.BAD_REQUEST
    assert reason in str(info.value)
    assert info.value.path is not None


def test_numbers_beyond_a_double_are_codec_errors() -> None:
    """A 400-digit integer is valid JSON; as a time or a Float it is a 4.00, not an overflow."""
    huge = b"1" + b"0" * 400
    with pytest.raises(CodecError, match="'bt' is too large a number") as info:
        oma_json.decode_timestamped(b'{"bt":' + huge + b',"e":[]}', SPEC_MODELS)
    assert info.value.code is ResponseCode.BAD_REQUEST
    payload = b'{"bn":"/3303/0/5700","e":[{"v":' + huge + b"}]}"
    with pytest.raises(CodecError, match="float is out of range") as info:
        oma_json.decode(payload, LwM2mPath(3303, 0, 5700), SPEC_MODELS)
    assert info.value.path == "/3303/0/5700"


def test_encode_wrong_level_is_not_acceptable() -> None:
    with pytest.raises(CodecError) as info:
        oma_json.encode(LwM2mSingleResource(9, 1, T.INTEGER), LwM2mPath(3, 0), SPEC_MODELS)
    assert info.value.code is ResponseCode.NOT_ACCEPTABLE


@settings(max_examples=examples(), deadline=None)
@given(random_cases())
def test_roundtrip_every_type_at_every_level(case: Case) -> None:
    assert_roundtrip(oma_json, case)


@settings(max_examples=examples(0.05), deadline=None)
@given(st.one_of([model_and_node(depth) for depth in (1, 2, 3, 4)]))
def test_roundtrip_shared_strategy(case: Case) -> None:
    assert_roundtrip(oma_json, case)


@settings(max_examples=examples(0.1), deadline=None)
@given(st.integers(0, 2**64 - 1))
def test_timestamped_roundtrip(seed: int) -> None:
    rnd = random.Random(seed)
    models, path, _ = random_case(rnd, 3)
    times = rnd.sample(range(-(2**40), 2**40), rnd.randint(1, 4))
    entries = []
    for time in times:
        _, _, node = _same_model_resource(models, path, rnd)
        entries.append((float(time) if rnd.random() < 0.8 else time + 0.5, {path: node}))
    data = TimestampedNodes(tuple(entries))
    encoded = oma_json.encode_timestamped(data, models)
    assert oma_json.decode_timestamped(encoded, models, path) == data


def _same_model_resource(
    models: StaticModels, path: LwM2mPath, rnd: random.Random
) -> tuple[StaticModels, LwM2mPath, LwM2mNode]:
    rm = models.objects[path.ids[0]].resources[path.ids[2]]
    if rm.multiple:
        values = {i: random_value(rnd, rm.type) for i in rnd.sample(range(300), 2)}
        return models, path, LwM2mMultipleResource.from_values(rm.id, values, rm.type)
    return models, path, LwM2mSingleResource(rm.id, random_value(rnd, rm.type), rm.type)


_JSON_SEEDS = [
    DEVICE_JSON,
    NOTIFICATION_JSON,
    b'{"bn":"/66/0/","e":[{"n":"2","ov":"1:2"}]}',
    b'{"bn":"/3/0/","e":[{"n":"13","v":1e5,"t":-5},{"n":"9","bv":true}]}',
]


@settings(max_examples=examples(), deadline=None)
@given(st.integers(0, 2**64 - 1), st.integers(1, 4))
def test_arbitrary_bytes_raise_only_codec_error(seed: int, depth: int) -> None:
    payload = mutated(seed, _JSON_SEEDS, b'{}[]":,0123456789.-+eE/ntrufalsvbo\\\xff')
    path = LwM2mPath.from_ids(*[3, 0, 6, 0][:depth])
    with contextlib.suppress(CodecError):
        oma_json.decode(payload, path, SPEC_MODELS)
    with contextlib.suppress(CodecError):
        oma_json.decode_timestamped(payload, SPEC_MODELS, None)


# == issue 9: unsigned integers, empty multiple resources, resources without their instance ======
NO_MODELS = StaticModels({})


def test_unsigned_integer_above_int64_without_a_model() -> None:
    """Item 7: a JSON integer above 2**63-1 for a resource the model does not know is an
    Unsigned Integer (a 64-bit counter); it used to fail the whole read. Below it stays an
    Integer, above 2**64-1 nothing can hold it."""
    payload = (
        b'{"bn":"/32768/0/","e":[{"n":"1","v":18446744073709551615},'
        b'{"n":"2","v":9223372036854775808},{"n":"3","v":-5},{"n":"4","v":9223372036854775807}]}'
    )
    node = oma_json.decode(payload, LwM2mPath(32768, 0), NO_MODELS)
    assert node == LwM2mObjectInstance.of(
        0,
        LwM2mSingleResource(1, 2**64 - 1, T.UNSIGNED_INTEGER),
        LwM2mSingleResource(2, 2**63, T.UNSIGNED_INTEGER),
        LwM2mSingleResource(3, -5, T.INTEGER),
        LwM2mSingleResource(4, 2**63 - 1, T.INTEGER),
    )
    [(_, nodes)] = oma_json.decode_timestamped(payload, NO_MODELS).entries
    assert nodes[LwM2mPath(32768, 0, 1)] == LwM2mSingleResource(1, 2**64 - 1, T.UNSIGNED_INTEGER)
    too_big = b'{"bn":"/32768/0/1","e":[{"v":18446744073709551616}]}'
    with pytest.raises(CodecError, match="outside") as info:
        oma_json.decode(too_big, LwM2mPath(32768, 0, 1), NO_MODELS)
    assert info.value.code is ResponseCode.BAD_REQUEST
    # the model still decides when it knows the resource: an Integer cannot hold 2**63
    integer = b'{"bn":"/3/0/9","e":[{"v":9223372036854775808}]}'
    with pytest.raises(CodecError, match="outside"):
        oma_json.decode(integer, LwM2mPath(3, 0, 9), SPEC_MODELS)


def test_empty_multiple_resource_without_a_model() -> None:
    """Item 7: an empty multiple resource of an object the server has no model for decodes;
    one the model knows takes the model's type; a single resource still needs a value."""
    empty = b'{"bn":"/32768/0/7/","e":[]}'
    node = oma_json.decode(empty, LwM2mPath(32768, 0, 7), NO_MODELS)
    assert node == LwM2mMultipleResource(7, {}, T.STRING)
    known = oma_json.decode(b'{"bn":"/3/0/7/","e":[]}', LwM2mPath(3, 0, 7), SPEC_MODELS)
    assert known == LwM2mMultipleResource(7, {}, T.INTEGER)
    with pytest.raises(CodecError, match="no value for the resource") as info:
        oma_json.decode(b'{"bn":"/3/0/9","e":[]}', LwM2mPath(3, 0, 9), SPEC_MODELS)
    assert info.value.code is ResponseCode.BAD_REQUEST


@pytest.mark.parametrize("object_id", [3, 1], ids=["single-instance", "multi-instance"])
def test_resources_without_their_instance_are_4_00(object_id: int) -> None:
    """Item 5: entries that name ``/o/r`` instead of ``/o/i/r`` are never filed under
    instance 0 — an OMA JSON name has no form that says "resource without its instance", so
    ``/3/0`` might as well be instance 0; whatever the object's multiplicity it is a 4.00."""
    payload = b'{"bn":"/%d/","e":[{"n":"0","v":1}]}' % object_id
    with pytest.raises(CodecError, match="does not name a resource") as info:
        oma_json.decode(payload, LwM2mPath(object_id), SPEC_MODELS)
    assert info.value.code is ResponseCode.BAD_REQUEST
