"""Planning: instance ids around the Bootstrap-Server account, deletes, version checks."""

from __future__ import annotations

import pytest

from bootstrap_server.core.client_info import ClientInfo
from bootstrap_server.core.plan import IssuedSecurity, PlanError, make_plan
from keystore.modes import SecurityMode
from object_models.path import LwM2mPath

from .fake_client import FakeClient
from .helpers import REGISTRY, endpoint_doc, parse, profile_doc


def _client(**kwargs: object) -> tuple[FakeClient, ClientInfo]:
    fake = FakeClient(**kwargs)  # type: ignore[arg-type]
    return fake, ClientInfo.from_discover(fake.discover_payload().encode())


def test_security_ids_skip_the_bootstrap_account_and_deletes_spare_it() -> None:
    fake, _ = _client(bootstrap_instance=0)
    fake.add(0, 1, fake.instances[(0, 0)])  # an old server account, made one below
    from .fake_client import bootstrap_account

    old = bootstrap_account("coaps://old:5684")
    from object_models.node import LwM2mObjectInstance, LwM2mSingleResource
    from object_models.types import ResourceType

    old = LwM2mObjectInstance.of(None, *(r for r in old.resources.values() if r.id != 1),
                                 LwM2mSingleResource(1, False, ResourceType.BOOLEAN),
                                 LwM2mSingleResource(10, 9, ResourceType.INTEGER))  # fmt: skip
    fake.add(0, 1, old)
    client = ClientInfo.from_discover(fake.discover_payload().encode())
    assert client.bootstrap_instances == {0} and client.security_ssids == {1: 9}
    plan = make_plan(parse(endpoint_doc()), client, REGISTRY)
    assert plan.deletes == (LwM2mPath(0, 1), LwM2mPath(1))
    assert [str(w.path) for w in plan.writes] == ["/0/1", "/1/0"]
    assert any("keeping the Bootstrap-Server account /0/0" in n for n in plan.notes)


def test_bootstrap_account_elsewhere() -> None:
    _, client = _client(bootstrap_instance=0)
    client = ClientInfo(True, "1.1", client.object_versions, {0: (2,)}, frozenset({2}), {})
    doc = endpoint_doc(servers=[endpoint_doc()["servers"][0],
                                {**endpoint_doc()["servers"][0], "short_server_id": 2,
                                 "uri": "coaps://b:5684"},
                                {**endpoint_doc()["servers"][0], "short_server_id": 3,
                                 "uri": "coaps://c:5684"}],
                       to_delete=["/0/2", "/1"])  # fmt: skip
    plan = make_plan(parse(doc), client, REGISTRY)
    assert [str(w.path) for w in plan.writes][:3] == ["/0/0", "/0/1", "/0/3"]
    assert plan.deletes == (LwM2mPath(1),)
    assert any("skipped: it is the Bootstrap-Server account" in n for n in plan.notes)


def test_fixed_id_on_the_bootstrap_account_is_refused() -> None:
    _, client = _client(bootstrap_instance=0)
    doc = endpoint_doc()
    doc["servers"][0]["security_instance"] = 0
    with pytest.raises(PlanError, match="Bootstrap-Server account /0/0"):
        make_plan(parse(doc), client, REGISTRY)


def test_unsupported_object_and_old_object_version_are_refused() -> None:
    _, client = _client(versions={0: "1.0", 1: "1.0", 3: "1.0"})
    doc = endpoint_doc(objects={"/3303/0/5700": 21.5})
    with pytest.raises(PlanError, match="does not support object 3303"):
        make_plan(parse(doc), client, REGISTRY)
    doc = endpoint_doc()
    doc["servers"][0]["security_resources"] = {16: {0: 0xC0A8}}
    with pytest.raises(PlanError, match=r"/0/1/16: the client's .*version 1.0, which has no "
                                        r"resource 16"):  # fmt: skip
        make_plan(parse(doc), client, REGISTRY)


def test_oscore_acl_and_generated_credentials() -> None:
    _, client = _client()
    doc = profile_doc(acls=[{"object": 3, "instance": 0, "rights": {1: 7}}])
    doc["servers"][0]["oscore"] = {0: "hex:00", 1: "hex:01", 2: "hex:02"}
    issued = IssuedSecurity(SecurityMode.PSK, b"dev-9", b"k" * 16)
    plan = make_plan(parse(doc), client, REGISTRY, issued=issued)
    nodes = plan.nodes()
    security = nodes[LwM2mPath(0, 1)]
    assert security.resources[3].value == b"dev-9"  # type: ignore[union-attr]
    assert security.resources[5].value == b"k" * 16  # type: ignore[union-attr]
    assert str(security.resources[17].value) == "21:0"  # type: ignore[union-attr]
    assert LwM2mPath(21, 0) in nodes and nodes[LwM2mPath(2, 0)].resources[3].value == 65535  # type: ignore[union-attr]
    with pytest.raises(PlanError, match="no psk credentials were issued"):
        make_plan(parse(doc), client, REGISTRY)


def test_rpk_without_server_key_is_refused() -> None:
    _, client = _client()
    doc = profile_doc()
    doc["servers"][0]["security"] = {"mode": "rpk", "generate": True}
    issued = IssuedSecurity(SecurityMode.RPK, b"spki", b"pkcs8")
    with pytest.raises(PlanError, match="lwm2m-keystore server init"):
        make_plan(parse(doc), client, REGISTRY, issued=issued)


def test_undiscovered_client_assumes_bootstrap_account_at_zero() -> None:
    plan = make_plan(parse(endpoint_doc()), ClientInfo.unknown(), REGISTRY)
    assert plan.deletes == (LwM2mPath(0), LwM2mPath(1))
    assert [str(w.path) for w in plan.writes] == ["/0/1", "/1/0"]
