"""Single-path device operations over real HTTP against the in-memory device."""

from __future__ import annotations

import time

import pytest
from aiohttp.test_utils import TestClient

from object_models.content_format import ContentFormat
from object_models.node import LwM2mObjectInstance, LwM2mSingleResource
from object_models.path import LwM2mPath
from object_models.types import ResourceType

from .fake_ops import FakeOps

Client = TestClient  # type: ignore[type-arg]


# -- Read -----------------------------------------------------------------------------------------


async def test_read_resource_typed(api: Client) -> None:
    resp = await api.get("/api/clients/dev-1/3/0/9")
    assert resp.status == 200
    assert await resp.json() == {
        "status": "CONTENT",
        "code": "2.05",
        "valid": True,
        "success": True,
        "failure": False,
        "contentFormat": "tlv",
        "content": {"kind": "singleResource", "id": 9, "type": "INTEGER", "value": 87},
    }


async def test_read_instance(api: Client) -> None:
    body = await (await api.get("/api/clients/dev-1/3/0")).json()
    content = body["content"]
    assert content["kind"] == "instance" and content["id"] == 0
    by_id = {r["id"]: r for r in content["resources"]}
    assert by_id[0]["value"] == "Acme"
    assert by_id[6] == {
        "kind": "multiResource",
        "id": 6,
        "type": "INTEGER",
        "values": {"0": 1, "1": 5},
    }
    assert by_id[13] == {"kind": "singleResource", "id": 13, "type": "TIME", "value": 1_700_000_000}


async def test_read_passes_format_and_timeout(api: Client, ops: FakeOps) -> None:
    resp = await api.get("/api/clients/dev-1/3/0/0?format=SENML_JSON&timeout=3")
    assert (await resp.json())["contentFormat"] == "senml-json"
    assert ops.calls[-1] == ("read", "dev-1", LwM2mPath(3, 0, 0), ContentFormat.SENML_JSON, 3.0)
    await api.get("/api/clients/dev-1/3/0/0?format=11542")
    assert ops.calls[-1][3] is ContentFormat.TLV


async def test_device_error_is_http_200_with_coap_status(api: Client) -> None:
    resp = await api.get("/api/clients/dev-1/3/7")
    assert resp.status == 200
    assert await resp.json() == {
        "status": "NOT_FOUND",
        "code": "4.04",
        "valid": True,
        "success": False,
        "failure": True,
        "errormessage": "/3/7 not found",
    }


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("/api/clients/dev-1/3/x", "invalid LwM2M path"),
        ("/api/clients/dev-1/3/0/1/2/3", "more than 4 segments"),
        ("/api/clients/dev-1/70000", "outside"),
        ("/api/clients/dev-1/3/0?format=xml", "unknown content format 'xml'"),
        ("/api/clients/dev-1/3/0?timeout=0", "timeout"),
        ("/api/clients/dev-1/3/0?timeout=soon", "timeout"),
        ("/api/clients/dev-1/3/0?timeout=1000", "timeout"),
    ],
)
async def test_bad_requests(api: Client, url: str, fragment: str) -> None:
    resp = await api.get(url)
    assert resp.status == 400
    body = await resp.json()
    assert body["code"] == "4.00" and fragment in body["error"]


async def test_timeout_is_504_after_timeout(api: Client, ops: FakeOps) -> None:
    ops.silent.add("dev-1")
    started = time.monotonic()
    resp = await api.get("/api/clients/dev-1/3/0?timeout=0.3")
    elapsed = time.monotonic() - started
    assert resp.status == 504
    body = await resp.json()
    assert body["error"] == "timeout" and body["code"] == "5.04" and "message" in body
    assert 0.25 <= elapsed < 2.0


async def test_garbage_answer_from_the_device_is_502(api: Client, ops: FakeOps) -> None:
    from lwm2m_server.operations import DeviceAnswerError

    async def garbage(*args: object, **kwargs: object) -> None:
        raise DeviceAnswerError("/3/0: TLV length 200 exceeds the 3 bytes left")

    ops.read = garbage  # type: ignore[assignment,method-assign]
    resp = await api.get("/api/clients/dev-1/3/0")
    assert resp.status == 502
    body = await resp.json()
    assert body["code"] == "5.00" and "TLV length" in body["error"]


async def test_api_gives_up_when_the_operation_hangs(api: Client, ops: FakeOps) -> None:
    """An operation that ignores its timeout still ends as a 504 (timeout + grace)."""
    import asyncio

    from lwm2m_server.api import state

    async def hang(*args: object, **kwargs: object) -> None:
        await asyncio.sleep(60)

    ops.read = hang  # type: ignore[assignment,method-assign]
    original = state.TIMEOUT_GRACE
    state.TIMEOUT_GRACE = 0.1
    try:
        resp = await api.get("/api/clients/dev-1/3/0?timeout=0.1")
    finally:
        state.TIMEOUT_GRACE = original
    assert resp.status == 504
    assert "within 0.1 s" in (await resp.json())["message"]


async def test_sleeping_client_is_202_queued(api: Client, ops: FakeOps) -> None:
    ops.asleep.add("dev-1")
    resp = await api.get("/api/clients/dev-1/3/0")
    assert resp.status == 202
    body = await resp.json()
    assert body["status"] == "queued" and body["path"] == "/3/0"


async def test_full_queue_is_503(api: Client, ops: FakeOps) -> None:
    ops.queue_full.add("dev-1")
    resp = await api.put("/api/clients/dev-1/3/0/14", json="+02:00")
    assert resp.status == 503
    assert (await resp.json())["code"] == "5.03"


async def test_unexpected_exception_is_500_json(api: Client, ops: FakeOps) -> None:
    async def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("kaputt")

    ops.read = boom  # type: ignore[assignment,method-assign]
    resp = await api.get("/api/clients/dev-1/3/0")
    assert resp.status == 500
    assert "kaputt" in (await resp.json())["error"]


# -- Write ----------------------------------------------------------------------------------------


async def test_write_bare_value(api: Client, ops: FakeOps) -> None:
    resp = await api.put("/api/clients/dev-1/1/0/1", json=600)
    assert (await resp.json())["status"] == "CHANGED"
    call = ops.calls[-1]
    assert call[:5] == (
        "write",
        "dev-1",
        LwM2mPath(1, 0, 1),
        LwM2mSingleResource(1, 600, ResourceType.INTEGER),
        True,
    )
    read = await (await api.get("/api/clients/dev-1/1/0/1")).json()
    assert read["content"]["value"] == 600


async def test_write_text_plain_is_parsed_with_the_model_type(api: Client, ops: FakeOps) -> None:
    resp = await api.put(
        "/api/clients/dev-1/1/0/1", data="900", headers={"Content-Type": "text/plain"}
    )
    assert (await resp.json())["code"] == "2.04"
    assert ops.calls[-1][3] == LwM2mSingleResource(1, 900, ResourceType.INTEGER)


async def test_write_wrong_type_is_400_naming_the_path(api: Client, ops: FakeOps) -> None:
    resp = await api.put("/api/clients/dev-1/1/0/1", json="later")
    assert resp.status == 400
    body = await resp.json()
    assert body["error"].startswith("/1/0/1: ") and "integer" in body["error"]
    assert not [c for c in ops.calls if c[0] == "write"]


async def test_write_bad_json_is_400(api: Client) -> None:
    resp = await api.put(
        "/api/clients/dev-1/1/0/1", data="{nope", headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert "invalid JSON" in (await resp.json())["error"]
    resp = await api.put("/api/clients/dev-1/1/0/1")
    assert resp.status == 400


async def test_write_partial_instance(api: Client, ops: FakeOps) -> None:
    resp = await api.put(
        "/api/clients/dev-1/3/0?replace=false", json={"14": "+02:00", "15": "Europe/Berlin"}
    )
    assert (await resp.json())["success"] is True
    call = ops.calls[-1]
    assert call[4] is False
    assert isinstance(call[3], LwM2mObjectInstance) and set(call[3].resources) == {14, 15}


async def test_write_read_only_resource_is_device_405(api: Client) -> None:
    resp = await api.put("/api/clients/dev-1/3/0/0", json="Other Corp")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "METHOD_NOT_ALLOWED" and body["code"] == "4.05"


async def test_write_on_object_is_400(api: Client) -> None:
    resp = await api.put("/api/clients/dev-1/3", json={})
    assert resp.status == 400


# -- Execute / Create / Delete --------------------------------------------------------------------


async def test_execute_with_arguments(api: Client, ops: FakeOps) -> None:
    resp = await api.post("/api/clients/dev-1/3/0/4", data="0='now'")
    assert (await resp.json())["status"] == "CHANGED"
    assert ops.executed == [("dev-1", "/3/0/4", "0='now'")]
    await api.post("/api/clients/dev-1/3/0/4")
    assert ops.executed[-1] == ("dev-1", "/3/0/4", None)


async def test_execute_non_executable_is_device_405(api: Client) -> None:
    body = await (await api.post("/api/clients/dev-1/3/0/0")).json()
    assert body["code"] == "4.05" and body["success"] is False


async def test_create_and_delete(api: Client, ops: FakeOps) -> None:
    resp = await api.post(
        "/api/clients/dev-1/3303", json={"id": 3, "resources": [{"id": 5700, "value": 19}]}
    )
    body = await resp.json()
    assert body["status"] == "CREATED" and body["location"] == "/3303/3"
    created = ops.calls[-1][3]
    assert created.resources[5700] == LwM2mSingleResource(5700, 19.0, ResourceType.FLOAT)
    read = await (await api.get("/api/clients/dev-1/3303/3/5700")).json()
    assert read["content"]["value"] == 19.0

    resp = await api.post("/api/clients/dev-1/3303", json={"5701": "Far"})
    assert (await resp.json())["location"] == "/3303/4"

    assert (await (await api.delete("/api/clients/dev-1/3303/3")).json())["status"] == "DELETED"
    again = await (await api.delete("/api/clients/dev-1/3303/3")).json()
    assert again["status"] == "NOT_FOUND"


async def test_create_bad_body_and_post_on_instance(api: Client) -> None:
    resp = await api.post("/api/clients/dev-1/3303", json=[1, 2])
    assert resp.status == 400
    resp = await api.post("/api/clients/dev-1/3303", json={"5700": "warm"})
    assert resp.status == 400
    assert (await resp.json())["error"].startswith("/3303/5700")
    resp = await api.post("/api/clients/dev-1/3303/0", json={})
    assert resp.status == 400
    assert "PUT with replace=false" in (await resp.json())["error"]


# -- Discover / Attributes ------------------------------------------------------------------------


async def test_discover(api: Client) -> None:
    body = await (await api.get("/api/clients/dev-1/3/0/discover")).json()
    assert body["status"] == "CONTENT"
    urls = [link["url"] for link in body["objectLinks"]]
    assert urls[0] == "/3/0" and "/3/0/6" in urls
    six = next(link for link in body["objectLinks"] if link["url"] == "/3/0/6")
    assert six["attributes"] == {"dim": "2"}
    assert body["links"].startswith("</3/0>")


async def test_discover_on_resource_instance_is_400(api: Client) -> None:
    assert (await api.get("/api/clients/dev-1/3/0/6/0/discover")).status == 400


async def test_write_attributes_from_body_and_query(api: Client, ops: FakeOps) -> None:
    resp = await api.put(
        "/api/clients/dev-1/3303/0/5700/attributes?st=0.5",
        json={"pmin": 10, "pmax": 60, "gt": None, "edge": True},
    )
    assert (await resp.json())["status"] == "CHANGED"
    assert ops.calls[-1] == (
        "write_attributes",
        "dev-1",
        LwM2mPath(3303, 0, 5700),
        {"st": "0.5", "pmin": "10", "pmax": "60", "gt": None, "edge": "1"},
    )
    resp = await api.put("/api/clients/dev-1/3/0/attributes?pmin=5&pmax&timeout=2")
    assert ops.calls[-1][3] == {"pmin": "5", "pmax": None}


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ("", None),
        ("?dim=3", None),
        ("?pmin=-1", None),
        ("?pmin=1.5", None),
        ("?edge=2", None),
        ("", {"gt": "hot"}),
        ("", {"pmin": 60, "pmax": 10}),
        ("", ["pmin"]),
    ],
)
async def test_write_attributes_rejects(api: Client, query: str, body: object) -> None:
    kwargs = {} if body is None else {"json": body}
    resp = await api.put(f"/api/clients/dev-1/3/0/attributes{query}", **kwargs)
    assert resp.status == 400, await resp.text()


# -- Observe --------------------------------------------------------------------------------------


async def test_observe_and_cancel(api: Client, ops: FakeOps) -> None:
    body = await (await api.post("/api/clients/dev-1/3303/0/5700/observe")).json()
    assert body["content"]["value"] == 21.5
    assert ops.observed["dev-1"] == [(LwM2mPath(3303, 0, 5700),)]
    obs = await (await api.get("/api/clients/dev-1/observations")).json()
    assert obs["observations"] == [{"paths": ["/3303/0/5700"], "composite": False}]

    resp = await api.delete("/api/clients/dev-1/3303/0/5700/observe?active=false")
    assert (await resp.json())["success"] is True
    assert ops.calls[-1] == ("cancel_observation", "dev-1", LwM2mPath(3303, 0, 5700), False)
    again = await (await api.delete("/api/clients/dev-1/3303/0/5700/observe")).json()
    assert again["status"] == "NOT_FOUND"
    assert ops.calls[-1][3] is True


async def test_cancel_active_flag_spellings(api: Client, ops: FakeOps) -> None:
    for query, expected in [("?active", True), ("?active=true", True), ("?active=0", False)]:
        await api.delete(f"/api/clients/dev-1/3/0/observe{query}")
        assert ops.calls[-1][3] is expected
    resp = await api.delete("/api/clients/dev-1/3/0/observe?active=maybe")
    assert resp.status == 400


async def test_bodies_that_are_not_utf8_are_400(api: Client) -> None:
    for method, url, ctype in [
        ("PUT", "/api/clients/dev-1/3/0/14", "application/json"),
        ("PUT", "/api/clients/dev-1/3/0/14", "text/plain"),
        ("POST", "/api/clients/dev-1/3/0/4", "text/plain"),
        ("POST", "/api/clients/dev-1/3303", "application/json"),
        ("PUT", "/api/clients/dev-1/3/0/attributes", "application/json"),
        ("PUT", "/api/clients/dev-1/composite", "application/json"),
    ]:
        resp = await api.request(method, url, data=b'"\xff\xfe"', headers={"Content-Type": ctype})
        assert resp.status == 400, (method, url, ctype)
        assert "UTF-8" in (await resp.json())["error"]


async def test_deeply_nested_json_is_400(api: Client) -> None:
    body = "[" * 200_000 + "]" * 200_000
    resp = await api.put(
        "/api/clients/dev-1/3/0", data=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
