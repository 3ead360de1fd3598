"""Read-, Write- and Observe-Composite over real HTTP."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from object_models.content_format import ContentFormat
from object_models.node import LwM2mSingleResource
from object_models.path import LwM2mPath
from object_models.types import ResourceType

from .fake_ops import FakeOps

Client = TestClient  # type: ignore[type-arg]


async def test_read_composite(api: Client, ops: FakeOps) -> None:
    resp = await api.get(
        "/api/clients/dev-1/composite?paths=/3/0/1,/3303/0/5700,/3/0/99&nodeformat=SENML_JSON"
    )
    body = await resp.json()
    assert body["status"] == "CONTENT"
    assert body["contentFormat"] == "senml-json"
    assert body["content"] == {
        "/3/0/1": {"kind": "singleResource", "id": 1, "type": "STRING", "value": "Model 500"},
        "/3/0/99": None,
        "/3303/0/5700": {"kind": "singleResource", "id": 5700, "type": "FLOAT", "value": 21.5},
    }
    assert ops.calls[-1][2] == (
        LwM2mPath(3, 0, 1),
        LwM2mPath(3303, 0, 5700),
        LwM2mPath(3, 0, 99),
    )
    assert ops.calls[-1][3] is ContentFormat.SENML_JSON


async def test_read_composite_repeated_paths_parameter(api: Client, ops: FakeOps) -> None:
    await api.get("/api/clients/dev-1/composite?paths=/3/0/1&paths=3/0/2,/3/0/1")
    assert ops.calls[-1][2] == (LwM2mPath(3, 0, 1), LwM2mPath(3, 0, 2))


async def test_read_composite_needs_valid_paths(api: Client) -> None:
    for query in ("", "?paths=", "?paths=/3/x", "?paths=/"):
        resp = await api.get(f"/api/clients/dev-1/composite{query}")
        assert resp.status == 400, query


async def test_write_composite(api: Client, ops: FakeOps) -> None:
    resp = await api.put("/api/clients/dev-1/composite", json={"/3/0/14": "+02:00", "/1/0/1": 120})
    assert (await resp.json())["status"] == "CHANGED"
    nodes = ops.calls[0][2]
    assert nodes == {
        LwM2mPath(3, 0, 14): LwM2mSingleResource(14, "+02:00", ResourceType.STRING),
        LwM2mPath(1, 0, 1): LwM2mSingleResource(1, 120, ResourceType.INTEGER),
    }


async def test_write_composite_rejects(api: Client) -> None:
    cases = [
        [1, 2],
        {},
        {"/3/0": {"14": "x"}},
        {"/3/0/14": 5},
        {"/3/0/14": "a", "3/0/14": "b"},
    ]
    for body in cases:
        resp = await api.put("/api/clients/dev-1/composite", json=body)
        assert resp.status == 400, body
    resp = await api.put("/api/clients/dev-1/composite", json={"/3/0/14": 5})
    assert (await resp.json())["error"].startswith("/3/0/14: ")


async def test_write_composite_null_removes(api: Client, ops: FakeOps) -> None:
    await api.put("/api/clients/dev-1/composite", json={"/3/0/6/1": None})
    assert ops.calls[0][2] == {LwM2mPath(3, 0, 6, 1): None}


async def test_observe_composite_and_cancel(api: Client, ops: FakeOps) -> None:
    resp = await api.post("/api/clients/dev-1/composite/observe?paths=/3/0/9,/3303/0/5700")
    assert (await resp.json())["success"] is True
    obs = await (await api.get("/api/clients/dev-1/observations")).json()
    assert obs["observations"] == [{"paths": ["/3/0/9", "/3303/0/5700"], "composite": True}]
    resp = await api.delete(
        "/api/clients/dev-1/composite/observe?paths=/3/0/9,/3303/0/5700&active=false"
    )
    assert (await resp.json())["success"] is True
    assert ops.calls[-1][3] is False
    assert ops.observed["dev-1"] == []


async def test_composite_queued_and_timeout(api: Client, ops: FakeOps) -> None:
    ops.asleep.add("dev-1")
    resp = await api.get("/api/clients/dev-1/composite?paths=/3/0/1,/3/0/2")
    assert resp.status == 202
    assert (await resp.json())["path"] == "/3/0/1,/3/0/2"
    ops.asleep.clear()
    ops.silent.add("dev-1")
    resp = await api.get("/api/clients/dev-1/composite?paths=/3/0/1&timeout=0.1")
    assert resp.status == 504
