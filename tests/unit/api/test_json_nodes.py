"""node ⇄ JSON: Leshan shapes out, forgiving shapes in, strict types from the model."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keystore.resolver import IdentityBinding
from lwm2m_runtime.address import Address
from lwm2m_server.core.registration import ObjectLinks, Registration
from lwm2m_server.core.telemetry import TelemetryPoint
from lwm2m_server.json_nodes import (
    JsonNodeError,
    instance_from_json,
    links_to_json,
    node_from_json,
    node_to_json,
    registration_to_json,
    telemetry_to_json,
    type_from_name,
)
from object_models.model import StaticModels
from object_models.node import (
    LwM2mMultipleResource,
    LwM2mObject,
    LwM2mObjectInstance,
    LwM2mResourceInstance,
    LwM2mSingleResource,
)
from object_models.path import LwM2mPath
from object_models.registry import ModelRegistry
from object_models.types import ObjectLink, ResourceType

MODELS = ModelRegistry.builtin()
NO_MODELS = StaticModels({})
P = LwM2mPath.parse


# -- out ------------------------------------------------------------------------------------------


def test_single_resource_shape() -> None:
    node = LwM2mSingleResource(0, "Acme", ResourceType.STRING)
    assert node_to_json(node) == {
        "kind": "singleResource",
        "id": 0,
        "type": "STRING",
        "value": "Acme",
    }


def test_multi_resource_and_instance_shape() -> None:
    multi = LwM2mMultipleResource.from_values(7, {0: 3800, 1: 5000}, ResourceType.INTEGER)
    inst = LwM2mObjectInstance.of(0, LwM2mSingleResource(9, 87, ResourceType.INTEGER), multi)
    assert node_to_json(inst) == {
        "kind": "instance",
        "id": 0,
        "resources": [
            {"kind": "multiResource", "id": 7, "type": "INTEGER", "values": {"0": 3800, "1": 5000}},
            {"kind": "singleResource", "id": 9, "type": "INTEGER", "value": 87},
        ],
    }


def test_object_and_resource_instance_shape() -> None:
    obj = LwM2mObject(3, {0: LwM2mObjectInstance(0, {})})
    assert node_to_json(obj) == {
        "kind": "obj",
        "id": 3,
        "instances": [{"kind": "instance", "id": 0, "resources": []}],
    }
    ri = LwM2mResourceInstance(1, 5000, ResourceType.INTEGER)
    assert node_to_json(ri)["kind"] == "resourceInstance"


def test_values_json_friendly() -> None:
    opaque = LwM2mSingleResource(0, b"\x01\x02", ResourceType.OPAQUE)
    assert node_to_json(opaque)["value"] == base64.b64encode(b"\x01\x02").decode()
    link = LwM2mSingleResource(0, ObjectLink(3, 0), ResourceType.OBJLNK)
    assert node_to_json(link)["value"] == "3:0"
    nan = LwM2mSingleResource(0, float("nan"), ResourceType.FLOAT)
    assert node_to_json(nan)["value"] == "NaN"
    core = LwM2mSingleResource(0, "</3/0>", ResourceType.CORELNK)
    assert node_to_json(core)["type"] == "CORELINK"


# -- in -------------------------------------------------------------------------------------------


def test_bare_value_takes_the_model_type() -> None:
    node = node_from_json(300, P("/1/0/1"), MODELS)
    assert node == LwM2mSingleResource(1, 300, ResourceType.INTEGER)
    assert node_from_json("300", P("/1/0/1"), MODELS) == node  # strings parse with the type


def test_full_shape_is_accepted() -> None:
    data = {"kind": "singleResource", "id": 14, "type": "STRING", "value": "+02:00"}
    assert node_from_json(data, P("/3/0/14"), MODELS) == LwM2mSingleResource(
        14, "+02:00", ResourceType.STRING
    )


def test_wrong_type_names_the_path() -> None:
    with pytest.raises(JsonNodeError, match=r"^/3/0/14: expected a string, got int"):
        node_from_json(5, P("/3/0/14"), MODELS)
    with pytest.raises(JsonNodeError, match=r"^/1/0/1: .*integer"):
        node_from_json("soon", P("/1/0/1"), MODELS)
    with pytest.raises(JsonNodeError, match=r"^/1/0/1: null"):
        node_from_json(None, P("/1/0/1"), MODELS)


def test_id_must_match_path() -> None:
    with pytest.raises(JsonNodeError, match="does not match"):
        node_from_json({"id": 2, "value": "x"}, P("/3/0/14"), MODELS)


def test_multiple_resource_shapes() -> None:
    expected = LwM2mMultipleResource.from_values(6, {0: 1, 1: 5}, ResourceType.INTEGER)
    assert node_from_json({"0": 1, "1": 5}, P("/3/0/6"), MODELS) == expected
    assert node_from_json([1, 5], P("/3/0/6"), MODELS) == expected
    full = {"kind": "multiResource", "id": 6, "type": "INTEGER", "values": {"0": 1, "1": 5}}
    assert node_from_json(full, P("/3/0/6"), MODELS) == expected


def test_single_vs_multiple_from_model() -> None:
    with pytest.raises(JsonNodeError, match="multiple-instance"):
        node_from_json(3, P("/3/0/6"), MODELS)
    with pytest.raises(JsonNodeError, match="single-instance"):
        node_from_json({"0": "a"}, P("/3/0/14"), MODELS)
    with pytest.raises(JsonNodeError, match=r"^/3/0/6/1: "):
        node_from_json({"0": 1, "1": "x"}, P("/3/0/6"), MODELS)


def test_resource_instance() -> None:
    assert node_from_json(5, P("/3/0/6/1"), MODELS) == LwM2mResourceInstance(
        1, 5, ResourceType.INTEGER
    )
    with pytest.raises(JsonNodeError, match="single-instance"):
        node_from_json("x", P("/3/0/14/0"), MODELS)


def test_objlnk_and_opaque_inputs() -> None:
    models = StaticModels({})
    link = node_from_json({"value": "3:0", "type": "OBJLNK"}, P("/9/0/1"), models)
    assert isinstance(link, LwM2mSingleResource) and link.value == ObjectLink(3, 0)
    as_dict = node_from_json({"objectId": 3, "objectInstanceId": 1}, P("/9/0/1"), models)
    assert isinstance(as_dict, LwM2mSingleResource) and as_dict.value == ObjectLink(3, 1)
    hexed = node_from_json({"value": "hex:0102", "type": "OPAQUE"}, P("/9/0/2"), models)
    assert isinstance(hexed, LwM2mSingleResource) and hexed.value == b"\x01\x02"
    b64 = node_from_json({"value": "AQI=", "type": "opaque"}, P("/9/0/2"), models)
    assert isinstance(b64, LwM2mSingleResource) and b64.value == b"\x01\x02"


def test_unknown_resource_guesses_or_asks_for_a_type() -> None:
    node = node_from_json(2.5, P("/32769/0/1"), NO_MODELS)
    assert node == LwM2mSingleResource(1, 2.5, ResourceType.FLOAT)
    with pytest.raises(JsonNodeError, match='give "type"'):
        node_from_json({"a": 1}, P("/32769/0/1"), NO_MODELS)
    with pytest.raises(JsonNodeError, match="unknown resource type"):
        node_from_json({"value": 1, "type": "WIDGET"}, P("/32769/0/1"), NO_MODELS)


def test_instance_short_and_full_shapes() -> None:
    short = instance_from_json({"5700": 21.5, "5701": "Cel"}, 3303, MODELS)
    assert short.id is None
    named = instance_from_json({"id": 7, "5700": 21.5}, 3303, MODELS)
    assert named.id == 7 and set(named.resources) == {5700}
    with pytest.raises(JsonNodeError, match=r"^/3303/7/5700: "):
        instance_from_json({"id": 7, "5700": "warm"}, 3303, MODELS)
    assert short.resources[5700] == LwM2mSingleResource(5700, 21.5, ResourceType.FLOAT)
    full = instance_from_json(
        {"kind": "instance", "id": 4, "resources": [{"id": 5701, "value": "Cel"}]}, 3303, MODELS
    )
    assert full.id == 4 and set(full.resources) == {5701}
    with pytest.raises(JsonNodeError, match=r"^/3303/4/5700: expected a float"):
        instance_from_json({"id": 4, "resources": [{"id": 5700, "value": "hot"}]}, 3303, MODELS)
    with pytest.raises(JsonNodeError, match="given twice"):
        instance_from_json({"resources": [{"id": 1, "value": "a"}] * 2}, 3303, NO_MODELS)
    with pytest.raises(JsonNodeError, match="reserved"):
        instance_from_json({"id": 65535, "resources": []}, 3303, MODELS)


def test_node_from_json_at_instance_and_object_paths() -> None:
    inst = node_from_json({"14": "+02:00"}, P("/3/0"), MODELS)
    assert isinstance(inst, LwM2mObjectInstance) and inst.id == 0
    obj = node_from_json({"0": {"14": "+02:00"}}, P("/3"), MODELS)
    assert isinstance(obj, LwM2mObject) and set(obj.instances) == {0}
    with pytest.raises(JsonNodeError, match="root"):
        node_from_json({}, LwM2mPath(), MODELS)


def test_type_names() -> None:
    assert type_from_name("UNSIGNED_INTEGER") is ResourceType.UNSIGNED_INTEGER
    assert type_from_name("Unsigned Integer") is ResourceType.UNSIGNED_INTEGER
    assert type_from_name("corelink") is ResourceType.CORELNK


# -- round trip -----------------------------------------------------------------------------------

_VALUES = {
    ResourceType.STRING: st.text(max_size=20),
    ResourceType.INTEGER: st.integers(-(2**63), 2**63 - 1),
    ResourceType.UNSIGNED_INTEGER: st.integers(0, 2**64 - 1),
    ResourceType.FLOAT: st.floats(allow_nan=False, allow_infinity=False),
    ResourceType.BOOLEAN: st.booleans(),
    ResourceType.OPAQUE: st.binary(max_size=20),
    ResourceType.TIME: st.integers(0, 2**40),
    ResourceType.OBJLNK: st.builds(ObjectLink, st.integers(0, 65535), st.integers(0, 65535)),
}


@st.composite
def _resources(draw: st.DrawFn) -> LwM2mSingleResource | LwM2mMultipleResource:
    rtype = draw(st.sampled_from(sorted(_VALUES, key=lambda t: t.value)))
    rid = draw(st.integers(0, 65535))
    if draw(st.booleans()):
        return LwM2mSingleResource(rid, draw(_VALUES[rtype]), rtype)
    values = draw(st.dictionaries(st.integers(0, 65535), _VALUES[rtype], max_size=4))
    return LwM2mMultipleResource.from_values(rid, values, rtype)


@given(st.lists(_resources(), max_size=5, unique_by=lambda r: r.id), st.integers(0, 65534))
def test_instance_round_trip_without_models(resources: list[object], iid: int) -> None:
    """What node_to_json writes, node_from_json reads back identically (types travel in the
    JSON when there is no model)."""
    inst = LwM2mObjectInstance(iid, {r.id: r for r in resources})  # type: ignore[attr-defined]
    back = node_from_json(node_to_json(inst), LwM2mPath(32769, iid), NO_MODELS)
    assert back == inst


# -- links, registrations, telemetry --------------------------------------------------------------


def test_links_to_json() -> None:
    text = '</>;rt="oma.lwm2m";ct=11543,</3>;ver=1.2,</3/0>,</3/0/7>;dim=2;pmin'
    assert links_to_json(text) == [
        {"url": "/", "attributes": {"rt": "oma.lwm2m", "ct": "11543"}},
        {"url": "/3", "attributes": {"ver": "1.2"}},
        {"url": "/3/0", "attributes": {}},
        {"url": "/3/0/7", "attributes": {"dim": "2", "pmin": None}},
    ]
    assert links_to_json("not <links") == []
    assert links_to_json(None) == []


def test_registration_to_json() -> None:
    reg = Registration(
        registration_id="r1",
        endpoint="dev-1",
        address=Address("::1", 5683),
        lwm2m_version="1.1",
        queue_mode=True,
        object_links=ObjectLinks.parse("</3>;ver=1.2,</3/0>,</1/0>"),
        identity=IdentityBinding("psk", "dev-1-id"),
        registered_at=0.0,
        last_update=10.0,
        lifetime=60,
    )
    data = registration_to_json(reg, sleeping=True)
    assert data["endpoint"] == "dev-1"
    assert data["address"] == "[::1]:5683"
    assert data["registrationDate"] == "1970-01-01T00:00:00.000Z"
    assert data["expiresAt"] == "1970-01-01T00:01:10.000Z"
    assert data["availableInstances"] == {"1": [0], "3": [0]}
    assert data["supportedObjects"]["3"] == "1.2"
    assert data["secure"] is True and data["identity"] == {"mode": "psk", "identity": "dev-1-id"}
    assert data["queuemode"] is True and data["sleeping"] is True
    assert "sleeping" not in registration_to_json(reg)


def test_telemetry_to_json() -> None:
    point = TelemetryPoint("dev-1", "/3303/0/5700", "sensorValue", 1500, 21.5, ResourceType.FLOAT)
    assert telemetry_to_json(point) == {
        "endpoint": "dev-1",
        "path": "/3303/0/5700",
        "key": "sensorValue",
        "ts": 1500,
        "time": "1970-01-01T00:00:01.500Z",
        "type": "FLOAT",
        "value": 21.5,
    }
