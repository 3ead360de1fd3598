"""``/api/campaigns`` over a real loopback HTTP server, in front of the API's operations double
with a campaign driver whose jobs the test finishes (``test_campaigns.FakeUpdates``)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from lwm2m_server.api.openapi import openapi_document
from lwm2m_server.firmware.contracts import JobState
from tests.unit.api.test_openapi import _validate

from .test_campaigns import PACKAGE, FakeUpdates, until

Client = TestClient  # type: ignore[type-arg]


async def test_create_list_show_and_page_devices(api: Client, updates: FakeUpdates) -> None:
    body = {
        "name": "meters 2.0",
        "target": {"endpoint": "meter-*", "attributes": {"queue": "false"}},
        "package": PACKAGE,
        "strategy": "push",
        "maxConcurrent": 3,
        "failureThreshold": 0.5,
        "minSample": 4,
    }
    answer = await api.post("/api/campaigns", json=body)
    assert answer.status == 201
    created = await answer.json()
    _validate(openapi_document(), created, "Campaign")
    assert created["total"] == 10  # meter-00, 02, … 18: the queue-mode ones are filtered out
    assert created["state"] == "running" and created["strategy"] == "push"
    cid = created["id"]
    await until(lambda: len(updates.running()) == 3)
    updates.finish("meter-00", JobState.SUCCEEDED)
    updates.finish("meter-02", JobState.FAILED, result=5)

    listing = await (await api.get("/api/campaigns")).json()
    assert [c["id"] for c in listing["campaigns"]] == [cid]

    async def show(query: str = "") -> Any:
        reply = await api.get(f"/api/campaigns/{cid}{query}")
        assert reply.status == 200
        return await reply.json()

    await until(lambda: len(updates.running()) == 3)
    page = await show("?limit=4")
    assert page["counts"]["succeeded"] == 1 and page["counts"]["failed"] == 1
    assert [d["endpoint"] for d in page["devices"]] == [
        "meter-00",
        "meter-02",
        "meter-04",
        "meter-06",
    ]
    assert page["nextOffset"] == 4
    assert page["devices"][1]["result"] == 5
    rest = await show("?offset=8&limit=4")
    assert [d["endpoint"] for d in rest["devices"]] == ["meter-16", "meter-18"]
    assert rest["nextOffset"] is None
    failed = await show("?status=failed")
    assert [d["endpoint"] for d in failed["devices"]] == ["meter-02"]
    assert (await api.get(f"/api/campaigns/{cid}?status=weird")).status == 400


async def test_pause_resume_cancel_and_refusals(api: Client, updates: FakeUpdates) -> None:
    created = await (
        await api.post(
            "/api/campaigns",
            json={
                "target": {"endpoints": ["meter-01", "meter-03"]},
                "package": PACKAGE,
                "maxConcurrent": 1,
            },
        )
    ).json()
    cid = created["id"]
    paused = await api.post(f"/api/campaigns/{cid}/pause")
    assert (await paused.json())["state"] == "paused"
    resumed = await api.post(f"/api/campaigns/{cid}/resume")
    assert (await resumed.json())["state"] == "running"
    await until(lambda: updates.running() == ["meter-01"])
    cancelled = await (await api.post(f"/api/campaigns/{cid}/cancel")).json()
    assert cancelled["state"] == "cancelled"
    await until(lambda: updates.cancelled == ["meter-01"])
    again = await api.post(f"/api/campaigns/{cid}/resume")
    assert again.status == 409
    assert (await again.json())["code"] == "4.09"
    missing = await api.post("/api/campaigns/nope/pause")
    assert missing.status == 404


async def test_a_profile_target_takes_the_profiles_package_and_strategy(api: Client) -> None:
    answer = await api.post("/api/campaigns", json={"target": {"profile": "meters"}})
    assert answer.status == 201
    created = await answer.json()
    assert (created["package"], created["strategy"], created["total"]) == (
        PACKAGE,
        "pull_http",
        20,
    )
    explicit = await api.post(
        "/api/campaigns", json={"target": {"profile": "meters"}, "strategy": "push"}
    )
    assert (await explicit.json())["strategy"] == "push"
    unknown = await api.post("/api/campaigns", json={"target": {"profile": "nope"}})
    assert unknown.status == 404


ONE = {"endpoints": ["a"]}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"target": ONE}, "package is required"),
        ({"target": ONE, "package": PACKAGE, "ratePerMinute": -1}, "ratePerMinute"),
        ({"target": ONE, "package": PACKAGE, "failureThreshold": 2}, "failureThreshold"),
        ({"target": ONE, "package": PACKAGE, "strategy": "fax"}, "strategy"),
        ({"target": ONE, "package": PACKAGE, "colour": 1}, "unknown key 'colour'"),
        ({"target": {}, "package": PACKAGE}, "exactly one"),
        ([1, 2], "JSON object"),
    ],
)
async def test_bad_bodies_are_400_naming_the_problem(api: Client, body: Any, words: str) -> None:
    answer = await api.post("/api/campaigns", json=body)
    assert answer.status == 400
    error = await answer.json()
    assert words in error["error"] and error["code"] == "4.00"


async def test_not_json_is_400(api: Client) -> None:
    answer = await api.post("/api/campaigns", data=b"{nope")
    assert answer.status == 400
