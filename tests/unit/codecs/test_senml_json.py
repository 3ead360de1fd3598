"""SenML JSON (Content-Format 110): spec vectors, bad input, property tests.

Also holds what the other CBOR-family test modules share: the object models of the spec examples,
the Device object instance of the spec, and the hypothesis strategies for multi-path and
timestamped data (the test modules that may exist are fixed, so shared test code lives here).

The spec vectors follow LwM2M Core 1.1(.1) §7.4.4 (SenML JSON) and §7.4.5 (SenML CBOR). The OMA
text itself was not at hand; the Device example was transcribed from the spec as quoted by
independent implementations (its SenML CBOR hex is the spec's, page 86 of Core 1.1.1).
"""

from __future__ import annotations

import json
import math
import os
import random
import struct
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from object_models.codecs import senml_json
from object_models.errors import CodecError, ResponseCode
from object_models.model import ObjectModel, Operations, ResourceModel, StaticModels
from object_models.node import (
    LwM2mMultipleResource,
    LwM2mNode,
    LwM2mObject,
    LwM2mObjectInstance,
    LwM2mResourceInstance,
    LwM2mSingleResource,
    TimestampedNodes,
    flatten,
)
from object_models.path import LwM2mPath
from object_models.types import ObjectLink
from object_models.types import ResourceType as T

from .strategies import model_and_node
from .test_tlv import mutated, random_case, random_cases

_COUNT = int(os.environ.get("CODEC_EXAMPLES", "10000"))
EXAMPLES = settings(
    max_examples=_COUNT,
    deadline=None,
    database=None,
    # the property classes below are shared by every codec's Test* subclass; with no example
    # database there is nothing to replay across them, so the executors may differ
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.differing_executors,
    ],
)
SHRINKING = settings(EXAMPLES, max_examples=max(1, _COUNT // 20))
"""For the shared ``strategies.py``: about 3.6 ms an example to generate where a codec round trip
takes well under 1 ms, so at the full count it alone would take half a minute per test. The full
count runs on ``test_tlv.random_cases`` (one seed per case) instead; these runs keep Hypothesis'
shrinking of structured cases."""


# -- the objects of the spec examples ------------------------------------------------------------


def _res(rid: int, rtype: T, multiple: bool = False) -> ResourceModel:
    return ResourceModel(rid, f"res{rid}", Operations.RW, multiple, False, rtype)


def _obj(oid: int, *resources: ResourceModel) -> ObjectModel:
    return ObjectModel(oid, f"obj{oid}", {r.id: r for r in resources})


SPEC_MODELS = StaticModels.of(
    _obj(0, _res(3, T.OPAQUE), _res(16, T.UNSIGNED_INTEGER)),
    _obj(1, _res(0, T.INTEGER), _res(1, T.INTEGER), _res(6, T.BOOLEAN), _res(7, T.STRING)),
    _obj(  # Device, Core Appendix E.4
        3,
        *(_res(i, T.STRING) for i in (0, 1, 2, 3, 14, 15, 16)),
        *(_res(i, T.INTEGER, multiple=True) for i in (6, 7, 8, 11)),
        _res(4, T.NONE),
        _res(9, T.INTEGER),
        _res(10, T.INTEGER),
        _res(13, T.TIME),
    ),
    _obj(6, _res(0, T.FLOAT), _res(1, T.FLOAT), _res(5, T.TIME)),
    # objects 65 and 66 of the Objlnk example, Core 1.1 §7.4.3.3
    _obj(65, _res(0, T.OBJLNK, multiple=True), _res(1, T.STRING), _res(2, T.INTEGER)),
    _obj(66, _res(0, T.STRING), _res(1, T.STRING), _res(2, T.OBJLNK)),
    _obj(1024, _res(0, T.STRING), _res(1, T.FLOAT)),
    _obj(3303, _res(5700, T.FLOAT)),
)


def _single(rid: int, value: object, rtype: T) -> LwM2mSingleResource:
    return LwM2mSingleResource(rid, value, rtype)  # type: ignore[arg-type]


def _multi(rid: int, values: dict[int, object], rtype: T) -> LwM2mMultipleResource:
    return LwM2mMultipleResource.from_values(rid, values, rtype)  # type: ignore[arg-type]


DEVICE_INSTANCE = LwM2mObjectInstance.of(
    0,
    _single(0, "Open Mobile Alliance", T.STRING),
    _single(1, "Lightweight M2M Client", T.STRING),
    _single(2, "345000123", T.STRING),
    _single(3, "1.0", T.STRING),
    _multi(6, {0: 1, 1: 5}, T.INTEGER),
    _multi(7, {0: 3800, 1: 5000}, T.INTEGER),
    _multi(8, {0: 125, 1: 900}, T.INTEGER),
    _single(9, 100, T.INTEGER),
    _single(10, 15, T.INTEGER),
    _multi(11, {0: 0}, T.INTEGER),
    _single(13, 1367491215, T.TIME),
    _single(14, "+02:00", T.STRING),
    _single(16, "U", T.STRING),
)
"""The Device object instance of the Core spec's data format examples."""

OBJ65_INSTANCE = LwM2mObjectInstance.of(
    0,
    _multi(0, {0: ObjectLink(66, 0), 1: ObjectLink(66, 1)}, T.OBJLNK),
    _single(1, "8613800755500", T.STRING),
    _single(2, 305419896, T.INTEGER),
)
"""Object 65 instance 0 of the Objlnk example (Core 1.1 §7.4.3.3): links to 66:0 and 66:1."""


# -- shared strategies --------------------------------------------------------------------------


def leaf_node(path: LwM2mPath, rtype: T, value: object) -> LwM2mNode:
    """The node ``decode_nodes`` gives for one leaf when no paths are requested."""
    if path.is_resource_instance:
        return LwM2mResourceInstance(path.ids[3], value, rtype)  # type: ignore[arg-type]
    return _single(path.ids[2], value, rtype)


MultiCase = tuple[StaticModels, dict[LwM2mPath, LwM2mNode | None]]
TimedCase = tuple[StaticModels, LwM2mPath | None, TimestampedNodes]


def random_multi(seed: int) -> MultiCase:
    """Nodes of up to three objects at mixed depths plus path-only entries, with their models
    (built from one seed, like ``test_tlv.random_cases``, because generation is the cost)."""
    rnd = random.Random(seed)
    objects: dict[int, ObjectModel] = {}
    nodes: dict[LwM2mPath, LwM2mNode | None] = {}
    for _ in range(rnd.randint(1, 3)):
        models, path, node = random_case(rnd, rnd.randint(1, 4))
        if path.ids[0] not in objects:
            objects.update(models.objects)
            nodes[path] = node
    for _ in range(rnd.randrange(3)):
        oid = rnd.randrange(65536)
        if oid not in objects:
            nodes[LwM2mPath(oid, rnd.randrange(4))] = None
    return StaticModels(objects), nodes


def _random_time(rnd: random.Random) -> float | None:
    choice = rnd.randrange(4)
    if choice == 0:
        return None
    if choice == 1:
        return float(rnd.randint(-(2**40), 2**40) or 1)
    while True:
        (value,) = struct.unpack(">d", rnd.randbytes(8))
        if math.isfinite(value) and value != 0:
            return float(value)


def random_timestamped(seed: int) -> TimedCase:
    """The same node at several times (decoded under its path), or its leaves spread over
    several times (decoded without a path)."""
    rnd = random.Random(seed)
    models, path, node = random_case(rnd, rnd.randint(1, 4))
    times = list(dict.fromkeys(_random_time(rnd) for _ in range(rnd.randint(1, 4))))
    if rnd.random() < 0.5:
        return models, path, TimestampedNodes(tuple((t, {path: node}) for t in times))
    spread: dict[float | None, dict[LwM2mPath, LwM2mNode]] = {}
    for leaf_path, rtype, value in flatten(path, node):
        spread.setdefault(rnd.choice(times), {})[leaf_path] = leaf_node(leaf_path, rtype, value)
    return models, None, TimestampedNodes(tuple(spread.items()))


seeds = st.integers(0, 2**64 - 1)


@st.composite
def multi_path_nodes(draw: st.DrawFn) -> MultiCase:
    """``random_multi`` from the shared strategies, for Hypothesis' shrinking."""
    drawn = draw(
        st.lists(
            st.integers(1, 4).flatmap(model_and_node),
            min_size=1,
            max_size=3,
            unique_by=lambda x: x[1].ids[0],
        )
    )
    objects = {obj.id: obj for m, _, _ in drawn for obj in m.objects.values()}
    nodes: dict[LwM2mPath, LwM2mNode | None] = {path: node for _, path, node in drawn}
    return StaticModels(objects), nodes


def only_codec_errors(call: Callable[[], object]) -> None:
    """Run a decode on hostile input: it may succeed or raise ``CodecError``, nothing else."""
    try:
        call()
    except CodecError as exc:
        assert exc.code in (ResponseCode.BAD_REQUEST, ResponseCode.UNSUPPORTED_CONTENT_FORMAT)


def hostile_decodes(module: object, payload: bytes) -> None:
    """Every decode entry point of a codec module, on ``payload``, raises only ``CodecError``."""
    calls: list[Callable[[], object]] = [
        lambda: module.decode(payload, LwM2mPath(3, 0), SPEC_MODELS),  # type: ignore[attr-defined]
        lambda: module.decode_nodes(payload, SPEC_MODELS),  # type: ignore[attr-defined]
    ]
    if hasattr(module, "decode_paths"):
        calls.append(lambda: module.decode_paths(payload))  # type: ignore[attr-defined]
    if hasattr(module, "decode_timestamped"):
        calls.append(lambda: module.decode_timestamped(payload, SPEC_MODELS))  # type: ignore[attr-defined]
    for call in calls:
        only_codec_errors(call)


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
    assert node.resources[13] == _single(13, 1367491215, T.TIME)
    assert senml_json.encode(node, LwM2mPath(3, 0), SPEC_MODELS).decode() == DEVICE_JSON


def test_single_resource_read() -> None:
    """Core 1.1 §7.4.4: a single resource is one record whose ``bn`` is the resource path."""
    payload = b'[{"bn":"/3/0/0","vs":"Open Mobile Alliance"}]'
    node = _single(0, "Open Mobile Alliance", T.STRING)
    assert senml_json.decode(payload, LwM2mPath(3, 0, 0), SPEC_MODELS) == node
    assert senml_json.encode(node, LwM2mPath(3, 0, 0), SPEC_MODELS) == payload


def test_multiple_instance_resource_read() -> None:
    """Core 1.1 §7.4.4: Read /3/0/7 (Power Source Voltage, multiple instances)."""
    payload = b'[{"bn":"/3/0/7/","n":"0","v":3800},{"n":"1","v":5000}]'
    node = _multi(7, {0: 3800, 1: 5000}, T.INTEGER)
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
        paths[0]: _single(1, "Lightweight M2M Client", T.STRING),
        paths[1]: LwM2mObjectInstance.of(0, _single(0, 1, T.INTEGER), _single(1, 86400, T.INTEGER)),
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
        LwM2mPath(1, 0, 0): _single(0, 1, T.INTEGER),
        LwM2mPath(1, 0, 1): _single(1, 86400, T.INTEGER),
    }


def test_write_composite_with_delete() -> None:
    """Core 1.1 §6.3 Write-Composite with §7.4.4: a record without value deletes that path."""
    payload = b'[{"n":"/3/0/14","vs":"+02:00"},{"n":"/1/0/1","v":3600},{"n":"/3/0/7/1"}]'
    assert senml_json.decode_nodes(payload, SPEC_MODELS) == {
        LwM2mPath(3, 0, 14): _single(14, "+02:00", T.STRING),
        LwM2mPath(1, 0, 1): _single(1, 3600, T.INTEGER),
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
        (268500000.0, {path: _single(1, 22.9, T.FLOAT)}),
        (268499995.0, {path: _single(1, 22.4, T.FLOAT)}),
        (268499950.0, {path: _single(1, 24.1, T.FLOAT)}),
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
        (1699877805.766, {LwM2mPath(3303, 0, 5700): _single(5700, -128.8, T.FLOAT)}),
        (1699877805.766 + 0.101, {LwM2mPath(6, 0, 0): _single(0, -39.0, T.FLOAT)}),
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
    node = _single(16, 2**64 - 1, T.UNSIGNED_INTEGER)
    payload = senml_json.encode(node, LwM2mPath(0, 0, 16), SPEC_MODELS)
    assert payload == b'[{"bn":"/0/0/16","v":18446744073709551615}]'
    assert senml_json.decode(payload, LwM2mPath(0, 0, 16), SPEC_MODELS) == node
    lat = _single(0, 0.1 + 0.2, T.FLOAT)
    assert senml_json.encode(lat, LwM2mPath(6, 0, 0), SPEC_MODELS) == (
        b'[{"bn":"/6/0/0","v":0.30000000000000004}]'
    )


def test_opaque_is_base64url_without_padding() -> None:
    """Core 1.1 §7.4.4: ``vd`` is base64url; we write no padding and accept both alphabets."""
    node = _single(3, b"\xfb\xff", T.OPAQUE)
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
        LwM2mPath(6, 0, 0): _single(0, 43.0, T.FLOAT),
        LwM2mPath(6, 0, 5): _single(5, 1638435000, T.TIME),
        LwM2mPath(9999, 0, 1): _single(1, 2.0, T.FLOAT),
        LwM2mPath(9999, 0, 2): _single(2, 2, T.INTEGER),
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
        senml_json.encode(_single(0, float("nan"), T.FLOAT), LwM2mPath(6, 0, 0), SPEC_MODELS)
    with pytest.raises(CodecError, match="/3/0/9: cannot encode as Integer"):
        senml_json.encode(_single(9, "lots", T.STRING), LwM2mPath(3, 0, 9), SPEC_MODELS)


# -- properties -----------------------------------------------------------------------------------

Drawn = tuple[StaticModels, LwM2mPath, LwM2mNode]


class CodecProperties:
    """Property tests every multi-path codec passes; each codec's test module subclasses this
    as ``Test…Properties`` with its ``module``, valid ``seed_payloads`` to mutate, a byte
    ``alphabet`` for the mutations and a strategy of ``structured`` hostile payloads.

    The full ``CODEC_EXAMPLES`` count runs on cases built from one seed (cheap); the shared
    Hypothesis strategies run at a twentieth of it, for their shrinking (see ``SHRINKING``)."""

    module: ClassVar[Any]
    seed_payloads: ClassVar[list[bytes]]
    alphabet: ClassVar[bytes]
    structured: ClassVar[st.SearchStrategy[bytes]]

    def check_roundtrip(self, drawn: Drawn) -> None:
        models, path, node = drawn
        assert self.module.decode(self.module.encode(node, path, models), path, models) == node

    def check_multi_path(self, drawn: MultiCase) -> None:
        models, nodes = drawn
        payload = self.module.encode_nodes(nodes, models)
        assert self.module.decode_nodes(payload, models, list(nodes)) == nodes
        if hasattr(self.module, "encode_paths"):
            assert self.module.decode_paths(self.module.encode_paths(list(nodes))) == list(nodes)

    @EXAMPLES
    @given(random_cases())
    def test_roundtrip_every_level(self, drawn: Drawn) -> None:
        self.check_roundtrip(drawn)

    @SHRINKING
    @given(st.integers(1, 4).flatmap(model_and_node))
    def test_roundtrip_every_level_shrinking(self, drawn: Drawn) -> None:
        self.check_roundtrip(drawn)

    @EXAMPLES
    @given(seeds.map(random_multi))
    def test_roundtrip_multi_path(self, drawn: MultiCase) -> None:
        self.check_multi_path(drawn)

    @SHRINKING
    @given(multi_path_nodes())
    def test_roundtrip_multi_path_shrinking(self, drawn: MultiCase) -> None:
        self.check_multi_path(drawn)

    @EXAMPLES
    @given(seeds)
    def test_mutated_input_raises_only_codec_errors(self, seed: int) -> None:
        hostile_decodes(self.module, mutated(seed, self.seed_payloads, self.alphabet))

    @SHRINKING
    @given(st.data())
    def test_structured_input_raises_only_codec_errors(self, data: st.DataObject) -> None:
        hostile_decodes(self.module, data.draw(self.structured))


class TimestampedProperties:
    """The timestamped round trip, for the codecs that carry times."""

    module: ClassVar[Any]

    @EXAMPLES
    @given(seeds.map(random_timestamped))
    def test_roundtrip_timestamped(self, drawn: TimedCase) -> None:
        models, path, data = drawn
        payload = self.module.encode_timestamped(data, models)
        assert self.module.decode_timestamped(payload, models, path) == data


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["/3/0/", "/3/0/7/1", "0", "6/0", "66:0", "AQ", "/3/0/9"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["bn", "n", "bt", "t", "v", "vs", "vb", "vd", "vlo", "bv", "u", "x_"])
            | st.text(max_size=3),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)
"""Arbitrary JSON with SenML-looking labels and names."""


def spec_payloads(module: Any) -> list[bytes]:
    """Valid documents of a codec to mutate: the spec examples in every shape it takes."""
    timed = TimestampedNodes(((5.0, {LwM2mPath(3, 0, 9): _single(9, 1, T.INTEGER)}),))
    documents = [
        module.encode(DEVICE_INSTANCE, LwM2mPath(3, 0), SPEC_MODELS),
        module.encode(OBJ65_INSTANCE, LwM2mPath(65, 0), SPEC_MODELS),
        module.encode_nodes({LwM2mPath(3, 0, 7, 1): None, LwM2mPath(1, 0, 1): None}, SPEC_MODELS),
    ]
    if hasattr(module, "encode_timestamped"):
        documents.append(module.encode_timestamped(timed, SPEC_MODELS))
    return documents


class TestSenmlJsonProperties(CodecProperties, TimestampedProperties):
    module = senml_json
    seed_payloads = spec_payloads(senml_json)
    alphabet = b'[]{}",:0123456789.-+eE/ntrufalsbvdo\\'
    structured = st.binary(max_size=64) | json_values.map(lambda v: json.dumps(v).encode())
