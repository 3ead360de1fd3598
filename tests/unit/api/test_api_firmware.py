"""The update job routes over HTTP (``api/firmware.py``), in front of a real ``FirmwareManager``
driving an in-memory device (``tests/unit/firmware/test_manager.py``'s harness)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from lwm2m_server import operator_cli
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


# -- lwm2m-server update ------------------------------------------------------------------------


async def run_cli(client: Client, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    url = str(client.make_url("")).rstrip("/")
    code = await asyncio.to_thread(operator_cli.main, [*argv, "--api", url])
    out, err = capsys.readouterr()
    return code, out, err


async def test_update_cli_starts_shows_and_cancels(
    client: Client, harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await run_cli(
        client, capsys, "update", "dev", "--package", PACKAGE.id, "--strategy", "push"
    )
    assert code == 0 and out.startswith("dev: pending")
    code, out, _ = await run_cli(client, capsys, "update", "dev", "--status", "--json")
    assert code == 0 and json.loads(out)["strategy"] == "push"
    code, out, _ = await run_cli(client, capsys, "update", "dev", "--cancel")
    assert code == 0 and out.startswith("dev: cancelled")
    code, _, err = await run_cli(client, capsys, "update", "nobody", "--package", "x")
    assert code == 1 and "nobody" in err
    code, _, err = await run_cli(client, capsys, "update", "dev")
    assert code == 2 and "--package" in err


async def test_update_cli_waits_for_the_end_and_exits_1_on_failure(
    client: Client, harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    async def device() -> None:
        await harness.until(lambda: harness.sent("write", "/5/0/0"))
        harness.notify("/5/0/3", 2)
        await harness.until(lambda: harness.sent("execute", "/5/0/2"))
        harness.notify("/5/0/5", 8)

    url = str(client.make_url("")).rstrip("/")
    argv = ["update", "dev", "--package", PACKAGE.id, "--strategy", "push", "--wait"]
    capsys.readouterr()
    code, _ = await asyncio.gather(
        asyncio.to_thread(operator_cli.main, [*argv, "--interval", "0.02", "--api", url]),
        device(),
    )
    out = capsys.readouterr().out
    assert code == 1
    assert out.splitlines()[-1] == (
        "dev: failed, Update Result 8 (firmware update failed) — "
        "Update Result 8: firmware update failed"
    )


def test_the_events_command_summarises_a_firmware_event() -> None:
    job = {"endpoint": "dev", "state": "failed", "attempts": 2, "result": 8}
    job |= {"resultText": "firmware update failed", "detail": "Update Result 8: …"}
    line = operator_cli._event_summary("FIRMWARE", {"ep": "dev", **job})
    assert line == (
        "failed (delivery 2), Update Result 8 (firmware update failed) — Update Result 8: …"
    )
