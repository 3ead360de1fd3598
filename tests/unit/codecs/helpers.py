"""What the codec test modules share, so that no test module imports another.

- example counts: ``examples()``, and the ``EXAMPLES`` / ``SHRINKING`` settings;
- the object models and nodes of the spec examples: ``SPEC_MODELS`` (the parts of the OMA objects
  and of the spec's test objects 65/66 that any example touches), ``DEVICE_INSTANCE``,
  ``OBJ65_INSTANCE``, the TLV bytes of the Device instance, and small builders
  (``object_model``, ``single``, ``multi``, ``leaf_node``);
- cases built from one seed (``random_case`` and friends, and ``random_cases``, the strategy that
  maps a seed to one): Hypothesis' per-draw cost is what makes the structured strategies of
  ``strategies.py`` slow, so the full-count runs use these;
- hostile input: ``mutated`` (a valid payload with random edits), ``only_codec_errors``,
  ``hostile_decodes``, ``spec_payloads``, ``CBOR_ALPHABET``;
- the property tests every multi-path codec passes (``CodecProperties``,
  ``TimestampedProperties``), subclassed by each codec's test module as ``Test…Properties``.

``strategies.py`` holds the Hypothesis strategies and imports nothing from here.
"""

from __future__ import annotations

import math
import os
import random
import struct
from collections.abc import Callable
from typing import Any, ClassVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    TimestampedNodes,
    flatten,
)
from object_models.path import LwM2mPath
from object_models.types import INT64_MAX, INT64_MIN, UINT64_MAX, ObjectLink, ResourceType, Value

from .strategies import model_and_node, multi_path_nodes, seeds

T = ResourceType

# == example counts ================================================================================


def examples(fraction: float = 1.0) -> int:
    """Hypothesis examples for a test: ``fraction`` of ``CODEC_EXAMPLES`` (default 10,000).

    The shared ``model_and_node`` strategy costs ~3 ms an example to generate (the codecs take
    microseconds), so the 10,000-example runs use ``random_cases`` (one seed per case, values
    biased to edges) and the structured strategies run a fraction of that, for their shrinking.
    """
    return max(1, int(int(os.environ.get("CODEC_EXAMPLES", "10000")) * fraction))


EXAMPLES = settings(
    max_examples=examples(),
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
SHRINKING = settings(EXAMPLES, max_examples=max(1, examples() // 20))
"""For the structured strategies of ``strategies.py``: about 3.6 ms an example to generate where a
codec round trip takes well under 1 ms, so at the full count they alone would take half a minute
per test. The full count runs on ``random_cases`` (one seed per case) instead; these runs keep
Hypothesis' shrinking of structured cases."""


# == the objects and nodes of the spec examples ===================================================


def object_model(
    object_id: int,
    name: str,
    *resources: tuple[int, str, ResourceType, bool],
    multiple: bool = True,
) -> ObjectModel:
    """An object model from ``(id, name, type, multiple)`` resources, all RW and optional;
    ``multiple`` is whether the object itself has several instances."""
    return ObjectModel(
        object_id,
        name,
        {
            rid: ResourceModel(rid, rname, Operations.RW, many, False, rtype)
            for rid, rname, rtype, many in resources
        },
        multiple=multiple,
    )


def single(rid: int, value: object, rtype: ResourceType) -> LwM2mSingleResource:
    return LwM2mSingleResource(rid, value, rtype)  # type: ignore[arg-type]


def multi(rid: int, values: dict[int, object], rtype: ResourceType) -> LwM2mMultipleResource:
    return LwM2mMultipleResource.from_values(rid, values, rtype)  # type: ignore[arg-type]


def leaf_node(path: LwM2mPath, rtype: ResourceType, value: object) -> LwM2mNode:
    """The node ``decode_nodes`` gives for one leaf when no paths are requested."""
    if path.is_resource_instance:
        return LwM2mResourceInstance(path.ids[3], value, rtype)  # type: ignore[arg-type]
    return single(path.ids[2], value, rtype)


SPEC_MODELS = StaticModels.of(
    object_model(0, "LwM2M Security", (3, "Secret Key", T.OPAQUE, False),
                 (16, "res16", T.UNSIGNED_INTEGER, False)),
    object_model(
        1, "LwM2M Server",
        (0, "Short Server ID", T.INTEGER, False), (1, "Lifetime", T.INTEGER, False),
        (2, "Default Minimum Period", T.INTEGER, False),
        (3, "Default Maximum Period", T.INTEGER, False),
        (6, "Notification Storing", T.BOOLEAN, False), (7, "Binding", T.STRING, False),
    ),
    object_model(
        2, "LwM2M Access Control",
        (0, "Object ID", T.INTEGER, False), (1, "Object Instance ID", T.INTEGER, False),
        (2, "ACL", T.INTEGER, True), (3, "Access Control Owner", T.INTEGER, False),
    ),
    object_model(  # Device, Core Appendix E.4
        3, "Device",
        (0, "Manufacturer", T.STRING, False), (1, "Model Number", T.STRING, False),
        (2, "Serial Number", T.STRING, False), (3, "Firmware Version", T.STRING, False),
        (4, "Reboot", T.NONE, False), (5, "Factory Reset", T.NONE, False),
        (6, "Available Power Sources", T.INTEGER, True),
        (7, "Power Source Voltage", T.INTEGER, True),
        (8, "Power Source Current", T.INTEGER, True), (9, "Battery Level", T.INTEGER, False),
        (10, "Memory Free", T.INTEGER, False), (11, "Error Code", T.INTEGER, True),
        (12, "Reset Error Code", T.NONE, False), (13, "Current Time", T.TIME, False),
        (14, "UTC Offset", T.STRING, False), (15, "Timezone", T.STRING, False),
        (16, "Supported Binding and Modes", T.STRING, False),
        multiple=False,
    ),
    object_model(6, "Location", (0, "Latitude", T.FLOAT, False),
                 (1, "Longitude", T.FLOAT, False), (5, "Timestamp", T.TIME, False)),
    # objects 65 and 66 of the Objlnk example, Core 1.1 §7.4.3.3
    object_model(65, "Spec test 65", (0, "res0", T.OBJLNK, True), (1, "res1", T.STRING, False),
                 (2, "res2", T.INTEGER, False)),
    object_model(66, "Spec test 66", (0, "res0", T.STRING, False), (1, "res1", T.STRING, False),
                 (2, "res2", T.OBJLNK, False)),
    object_model(1024, "Notification example", (0, "res0", T.STRING, False),
                 (1, "res1", T.FLOAT, False)),
    object_model(3303, "Temperature", (5700, "Sensor Value", T.FLOAT, False),
                 (5701, "Sensor Units", T.STRING, False)),
)  # fmt: skip

DEVICE_INSTANCE = LwM2mObjectInstance.of(
    0,
    single(0, "Open Mobile Alliance", T.STRING),
    single(1, "Lightweight M2M Client", T.STRING),
    single(2, "345000123", T.STRING),
    single(3, "1.0", T.STRING),
    multi(6, {0: 1, 1: 5}, T.INTEGER),
    multi(7, {0: 3800, 1: 5000}, T.INTEGER),
    multi(8, {0: 125, 1: 900}, T.INTEGER),
    single(9, 100, T.INTEGER),
    single(10, 15, T.INTEGER),
    multi(11, {0: 0}, T.INTEGER),
    single(13, 1367491215, T.TIME),
    single(14, "+02:00", T.STRING),
    single(16, "U", T.STRING),
)
"""The Device object instance of the Core spec's data format examples (TLV, JSON, SenML …)."""

OBJ65_INSTANCE = LwM2mObjectInstance.of(
    0,
    multi(0, {0: ObjectLink(66, 0), 1: ObjectLink(66, 1)}, T.OBJLNK),
    single(1, "8613800755500", T.STRING),
    single(2, 0x12345678, T.INTEGER),
)
"""Object 65 instance 0 of the Objlnk example (Core 1.1 §7.4.3.3): links to 66:0 and 66:1."""

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
"""``DEVICE_INSTANCE`` in TLV as the spec prints it (Read /3/0: the bare resource TLVs)."""


# == cases from one seed ===========================================================================

_INT_EDGES = [0, 1, -1, 127, 128, -128, -129, 255, 256, 32767, 32768, -32768, -32769,
              2**31 - 1, 2**31, -(2**31), -(2**31) - 1, INT64_MAX, INT64_MIN]  # fmt: skip
_UINT_EDGES = [0, 1, 127, 128, 255, 256, 65535, 2**31, 2**32 - 1, 2**32, INT64_MAX, 2**63,
               UINT64_MAX]  # fmt: skip
_FLOAT_EDGES = [0.0, -0.0, 1.5, -2.25, 0.1, 1e-45, 1.401298464324817e-45, 5e-324,
                3.4028234663852886e38, 3.4028235677973366e38, 1.7976931348623157e308, 1e16,
                123456789.0, float(2**53), -1e-310]  # fmt: skip


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


Case = tuple[StaticModels, LwM2mPath, LwM2mNode]


def random_case(rnd: random.Random, depth: int, types: list[ResourceType] | None = None) -> Case:
    """Like ``strategies.model_and_node`` but from one ``random.Random`` (cheap to generate)."""
    pool = types or [t for t in ResourceType if t is not T.NONE]
    object_id = rnd.choice([0, 3, 65535, rnd.randrange(65536)])
    rids = (
        rnd.sample(range(65536), rnd.randint(1, 6))
        if rnd.random() < 0.5
        else rnd.sample(range(256), rnd.randint(1, 6))
    )
    model = object_model(
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


def random_cases(
    depths: tuple[int, ...] = (1, 2, 3, 4), types: list[ResourceType] | None = None
) -> st.SearchStrategy[Case]:
    """One integer draw seeds everything: Hypothesis' per-draw cost is what made the structured
    strategy slow. A failure prints the seed, which reproduces the case exactly."""

    def build(seed: int) -> Case:
        rnd = random.Random(seed)
        return random_case(rnd, rnd.choice(depths), types)

    return seeds.map(build)


MultiCase = tuple[StaticModels, dict[LwM2mPath, LwM2mNode | None]]
TimedCase = tuple[StaticModels, LwM2mPath | None, TimestampedNodes]


def random_multi(seed: int) -> MultiCase:
    """Nodes of up to three objects at mixed depths plus path-only entries, with their models."""
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


# == hostile input =================================================================================


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


CBOR_ALPHABET = bytes.fromhex("000102030820212240 5f607f809fa0bfc1c4f4f6f9fbff1b".replace(" ", ""))
"""Initial bytes worth inserting into CBOR: small ints, labels, heads, tags, simple values."""


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


def spec_payloads(module: Any) -> list[bytes]:
    """Valid documents of a codec to mutate: the spec examples in every shape it takes."""
    timed = TimestampedNodes(((5.0, {LwM2mPath(3, 0, 9): single(9, 1, T.INTEGER)}),))
    documents = [
        module.encode(DEVICE_INSTANCE, LwM2mPath(3, 0), SPEC_MODELS),
        module.encode(OBJ65_INSTANCE, LwM2mPath(65, 0), SPEC_MODELS),
        module.encode_nodes({LwM2mPath(3, 0, 7, 1): None, LwM2mPath(1, 0, 1): None}, SPEC_MODELS),
    ]
    if hasattr(module, "encode_timestamped"):
        documents.append(module.encode_timestamped(timed, SPEC_MODELS))
    return documents


# == shared property tests =========================================================================


def assert_roundtrip(module: Any, case: Case) -> None:
    """``decode(encode(node)) == node`` at the node's own path."""
    models, path, node = case
    assert module.decode(module.encode(node, path, models), path, models) == node


class CodecProperties:
    """Property tests every multi-path codec passes; each codec's test module subclasses this
    as ``Test…Properties`` with its ``module``, valid ``seed_payloads`` to mutate, a byte
    ``alphabet`` for the mutations and a strategy of ``structured`` hostile payloads.

    The full ``CODEC_EXAMPLES`` count runs on cases built from one seed (cheap); the structured
    Hypothesis strategies run at a twentieth of it, for their shrinking (see ``SHRINKING``)."""

    module: ClassVar[Any]
    seed_payloads: ClassVar[list[bytes]]
    alphabet: ClassVar[bytes]
    structured: ClassVar[st.SearchStrategy[bytes]]

    def check_multi_path(self, drawn: MultiCase) -> None:
        models, nodes = drawn
        payload = self.module.encode_nodes(nodes, models)
        assert self.module.decode_nodes(payload, models, list(nodes)) == nodes
        if hasattr(self.module, "encode_paths"):
            assert self.module.decode_paths(self.module.encode_paths(list(nodes))) == list(nodes)

    @EXAMPLES
    @given(random_cases())
    def test_roundtrip_every_level(self, drawn: Case) -> None:
        assert_roundtrip(self.module, drawn)

    @SHRINKING
    @given(st.integers(1, 4).flatmap(model_and_node))
    def test_roundtrip_every_level_shrinking(self, drawn: Case) -> None:
        assert_roundtrip(self.module, drawn)

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
