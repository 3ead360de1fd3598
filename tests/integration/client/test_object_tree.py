"""The client's pieces without sockets: object tree, attributes, link format, registration."""

from __future__ import annotations

import pytest

from lwm2m_client.attributes import Attributes, AttributeStore, parse_query
from lwm2m_client.device import build_default_tree, record_temperature
from lwm2m_client.link_format import registration_links
from lwm2m_client.models import default_models
from lwm2m_client.objects import ObjectTree
from lwm2m_client.observe import crossed
from lwm2m_client.registration import RegistrationParams, registration_id, update_delay
from object_models.errors import Lwm2mError, ResponseCode
from object_models.node import LwM2mMultipleResource, LwM2mObjectInstance, LwM2mSingleResource
from object_models.path import LwM2mPath


def tree() -> ObjectTree:
    return build_default_tree(
        default_models(), endpoint="unit", server_uri="coap://127.0.0.1", lifetime=60
    )


def test_default_models_cover_the_demo_device() -> None:
    models = default_models()
    for object_id in (0, 1, 3, 3303):
        assert models.get_object(object_id) is not None


def test_values_are_typed_by_the_model() -> None:
    t = tree()
    t.set_value("/3/0/9", "42")  # coerced to Integer
    assert t.get_value("/3/0/9") == 42
    t.set_value("/3303/0/5700", 20)  # Float
    assert t.get_value("/3303/0/5700") == 20.0 and isinstance(t.get_value("/3303/0/5700"), float)
    with pytest.raises(ValueError):
        t.set_value("/3/0/9", "lots")
    with pytest.raises(TypeError):
        t.set_value("/3/0/6", 1)  # multiple resource needs a mapping/list


def test_listeners_hear_every_change() -> None:
    t = tree()
    heard: list[list[str]] = []
    t.add_listener(lambda paths: heard.append([str(p) for p in paths]))
    t.set_value("/3303/0/5700", 1.0)
    t.write(LwM2mPath(3, 0, 14), LwM2mSingleResource.new(14, "+01:00"), replace=True)
    assert heard == [["/3303/0/5700"], ["/3/0/14"]]


def test_read_hides_executables_and_security_is_unauthorized() -> None:
    t = tree()
    node = t.read(LwM2mPath(3, 0))
    assert isinstance(node, LwM2mObjectInstance) and 4 not in node.resources
    assert isinstance(node.resources[6], LwM2mMultipleResource)
    with pytest.raises(Lwm2mError) as info:
        t.read(LwM2mPath(0, 0))
    assert info.value.code is ResponseCode.UNAUTHORIZED
    assert t.read(LwM2mPath(0, 0), bootstrap=True)  # the bootstrap server may


def test_replace_removes_optional_writable_resources() -> None:
    t = tree()
    t.write(
        LwM2mPath(3, 0), LwM2mObjectInstance.of(0, LwM2mSingleResource.new(15, "UTC")), replace=True
    )
    assert t.get_value("/3/0/15") == "UTC"
    with pytest.raises(Lwm2mError):
        t.get_value("/3/0/14")  # UTC Offset was not in the replacement
    assert t.get_value("/3/0/0") == "pylwm2m"  # read-only resources stay


def test_declared_object_without_instances() -> None:
    t = ObjectTree(default_models())
    t.add_instance(1, {0: 1, 1: 60, 6: False, 7: "U"})
    t.declare_object(3303)
    assert t.object_ids() == [1, 3303] and t.instance_ids(3303) == []


def test_partial_update_of_a_multiple_resource_merges() -> None:
    t = ObjectTree(default_models())  # object 9999 has no model: everything goes, untyped
    t.add_instance(9999, {1: ["a"]})
    path = LwM2mPath(9999, 0, 1)
    t.write(path, LwM2mMultipleResource.from_values(1, {1: "b"}), replace=False)
    assert t.get_value(path) == {0: "a", 1: "b"}
    t.write(path, LwM2mMultipleResource.from_values(1, {1: "c"}), replace=True)
    assert t.get_value(path) == {1: "c"}


def test_transaction_rolls_back() -> None:
    t = tree()
    with pytest.raises(Lwm2mError), t.transaction():
        t.write(LwM2mPath(3, 0, 14), LwM2mSingleResource.new(14, "+03:00"), replace=True)
        t.write(LwM2mPath(3, 0, 0), LwM2mSingleResource.new(0, "x"), replace=True)
    assert t.get_value("/3/0/14") == "+00:00"


def test_record_temperature_tracks_min_and_max() -> None:
    t = tree()
    record_temperature(t, 30.0)
    record_temperature(t, 10.0)
    assert (t.get_value("/3303/0/5601"), t.get_value("/3303/0/5602")) == (10.0, 30.0)


def test_registration_links() -> None:
    links = registration_links(tree(), [60, 112])
    assert links == (
        '</>;rt="oma.lwm2m";ct="60 112",</1>;ver=1.2,</1/0>,</3>;ver=1.2,</3/0>,'
        "</3303>;ver=1.1,</3303/0>"
    )


def test_registration_params() -> None:
    params = RegistrationParams("ep", 60, "1.1", "U", queue_mode=True)
    assert params.register_query() == ["ep=ep", "lt=60", "lwm2m=1.1", "b=U", "Q"]
    assert params.update_query(params) == []
    with pytest.raises(ValueError):
        RegistrationParams("ep", 60, "2.0")
    with pytest.raises(ValueError):
        RegistrationParams("ep", 60, binding="UQ")
    assert registration_id(("rd", "abc")) == "abc"
    assert update_delay(300) == 270 and update_delay(86400) == 86400 - 93


def test_attributes_merge_and_validation() -> None:
    store = AttributeStore()
    store.write(LwM2mPath(3303), parse_query(["pmin=5", "pmax=50"]), numeric=False)
    store.write(LwM2mPath(3303, 0, 5700), parse_query(["pmin=1", "gt=30"]), numeric=True)
    effective = store.effective(LwM2mPath(3303, 0, 5700), lambda: (0, 100))
    assert effective == Attributes(pmin=1, pmax=50, gt=30.0)
    store.write(LwM2mPath(3303, 0, 5700), parse_query(["gt"]), numeric=True)
    assert store.at(LwM2mPath(3303, 0, 5700)) == {"pmin": 1}
    with pytest.raises(Lwm2mError):
        store.write(LwM2mPath(3303, 0, 5700), {"lt": 5.0, "gt": 6.0, "st": 1.0}, numeric=True)
    with pytest.raises(Lwm2mError):
        parse_query(["ver=1.1"])


def test_value_conditions() -> None:
    attrs = Attributes(gt=30.0, lt=10.0, st=5.0)
    assert crossed(attrs, None, 20.0)
    assert not crossed(attrs, 20.0, 24.0)
    assert crossed(attrs, 20.0, 25.0)  # step
    assert crossed(attrs, 29.0, 31.0)  # gt crossing
    assert crossed(attrs, 11.0, 9.0)  # lt crossing
    assert Attributes(pmin=10, pmax=5).effective_pmax is None
