"""The update job routes over HTTP (``api/firmware.py``), in front of a real ``FirmwareManager``
driving an in-memory device (``tests/unit/firmware/test_manager.py``'s harness)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from lwm2m_server.api import create_app
from tests.unit.firmware.test_manager import PACKAGE, Harness

from .fake_ops import FakeOps

Client = TestClient  # type: ignore[type-arg]


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    await h.manager.open()
    yield h
    await h.manager.close()


@pytest.fixture
async def client(harness: Harness) -> AsyncIterator[Client]:
    ops = FakeOps()
    ops.firmware = harness.manager  # type: ignore[attr-defined]
    async with TestServer(create_app(ops)) as server, TestClient(server) as client:
        yield client


async def test_start_show_list_and_cancel_a_job(client: Client, harness: Harness) -> None:
    started = await client.post(
        "/api/clients/dev/firmware", json={"package": PACKAGE.id, "strategy": "pull_coap"}
    )
    assert started.status == 201
    body = await started.json()
    assert body["endpoint"] == "dev" and body["state"] == "pending"
    assert body["package"] == PACKAGE.id and body["kind"] == "firmware"
    assert body["strategy"] == "pull_coap" and body["finished"] is False
    again = await client.post("/api/clients/dev/firmware", json={"package": PACKAGE.id})
    assert again.status == 409 and "already has" in (await again.json())["error"]
    shown = await (await client.get("/api/clients/dev/firmware")).json()
    assert shown["endpoint"] == "dev"
    jobs = await (await client.get("/api/firmware/jobs")).json()
    assert [j["endpoint"] for j in jobs["jobs"]] == ["dev"]
    assert (await (await client.get("/api/firmware/jobs?campaign=x")).json()) == {"jobs": []}
    cancelled = await client.delete("/api/clients/dev/firmware")
    assert cancelled.status == 200
    assert (await cancelled.json())["state"] == "cancelled"


async def test_errors(client: Client) -> None:
    unknown_client = await client.post("/api/clients/nobody/firmware", json={"package": "x"})
    assert unknown_client.status == 404
    unknown_package = await client.post("/api/clients/dev/firmware", json={"package": "x"})
    assert unknown_package.status == 404 and "no package" in (await unknown_package.json())["error"]
    for body, words in [
        ({}, "package"),
        ({"package": PACKAGE.id, "strategy": "teleport"}, "strategy"),
        ({"package": PACKAGE.id, "instance": "one"}, "instance"),
        ({"package": PACKAGE.id, "extra": 1}, "unknown key"),
        ([1], "JSON object"),
    ]:
        response = await client.post("/api/clients/dev/firmware", json=body)
        assert response.status == 400, body
        assert words in (await response.json())["error"]
    bad_json = await client.post("/api/clients/dev/firmware", data=b"{nope")
    assert bad_json.status == 400
    assert (await client.get("/api/clients/dev/firmware")).status == 404
    assert (await client.delete("/api/clients/dev/firmware")).status == 404
