"""The HTTP API in front of the real ``Lwm2mServer``, driving a real ``lwm2m_client`` over
loopback CoAP: every layer between an operator's HTTP request and the device's object tree.

Each test gets a fresh server (ephemeral CoAP port, fresh sqlite under ``tmp_path``), the API on
an ephemeral HTTP port, and one registered demo device (``Lwm2mClient``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import ClientResponse

from lwm2m_client.client import Lwm2mClient
from lwm2m_server import operator_cli
from lwm2m_server.service import Lwm2mServer
from tests.live import (
    DeviceFactory,
    Http,
    devices,
    next_sse_event,
)

EP = "api-dev"


ClientFactory = DeviceFactory


@pytest.fixture
async def make_device(server: Lwm2mServer) -> AsyncIterator[ClientFactory]:
    async with devices(server, EP, lwm2m_version="1.1") as make:
        yield make


@pytest.fixture
async def device(make_device: ClientFactory) -> Lwm2mClient:
    return await make_device()


async def _json(resp: ClientResponse, status: int = 200) -> Any:
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_list_and_show_clients(http: Http, device: Lwm2mClient) -> None:
    clients = await _json(await http.get("/api/clients"))
    assert [c["endpoint"] for c in clients] == [EP]
    reg = await _json(await http.get(f"/api/clients/{EP}"))
    assert reg["registrationId"] == device.registration_id
    assert reg["lwM2mVersion"] == "1.1"
    assert reg["availableInstances"]["3"] == [0]
    assert reg["availableInstances"]["3303"] == [0]
    assert (await _json(await http.get("/api/health")))["clients"] == 1


async def test_read_device_instance_typed(http: Http, device: Lwm2mClient) -> None:
    body = await _json(await http.get(f"/api/clients/{EP}/3/0"))
    assert body["status"] == "CONTENT" and body["success"] is True
    content = body["content"]
    assert content["kind"] == "instance" and content["id"] == 0
    resources = {r["id"]: r for r in content["resources"]}
    assert resources[0] == {
        "kind": "singleResource",
        "id": 0,
        "type": "STRING",
        "value": "pylwm2m",
    }
    assert resources[9]["type"] == "INTEGER" and isinstance(resources[9]["value"], int)
    assert resources[13]["type"] == "TIME" and isinstance(resources[13]["value"], int)
    assert resources[6]["kind"] == "multiResource"
    assert all(isinstance(v, int) for v in resources[6]["values"].values())

    tlv = await _json(await http.get(f"/api/clients/{EP}/3303/0/5700?format=tlv"))
    assert tlv["contentFormat"] == "tlv" and tlv["content"]["value"] == 21.5


async def test_write_and_read_back(http: Http, device: Lwm2mClient) -> None:
    body = await _json(await http.put(f"/api/clients/{EP}/3/0/14", json="+02:00"))
    assert body["status"] == "CHANGED"
    assert device.get_value("/3/0/14") == "+02:00"
    back = await _json(await http.get(f"/api/clients/{EP}/3/0/14"))
    assert back["content"]["value"] == "+02:00"

    partial = await http.put(f"/api/clients/{EP}/3/0?replace=false", json={"15": "Europe/Paris"})
    assert (await _json(partial))["success"] is True
    assert device.get_value("/3/0/15") == "Europe/Paris"
    assert device.get_value("/3/0/0") == "pylwm2m"

    wrong = await _json(await http.put(f"/api/clients/{EP}/3/0/14", json=2), status=400)
    assert wrong["error"].startswith("/3/0/14: ")

    refused = await _json(await http.put(f"/api/clients/{EP}/3/0/0", json="Other"))
    assert refused["success"] is False and refused["code"] == "4.05"


async def test_execute_create_delete_discover(http: Http, device: Lwm2mClient) -> None:
    device.set_value("/3303/0/5700", 30.0)
    body = await _json(await http.post(f"/api/clients/{EP}/3303/0/5605"))
    assert body["code"] == "2.04"
    assert device.get_value("/3303/0/5602") == 30.0

    created = await http.post(
        f"/api/clients/{EP}/3303", json={"id": 7, "5700": 12.5, "5701": "Cel"}
    )
    assert (await _json(created))["location"] == "/3303/7"
    read = await _json(await http.get(f"/api/clients/{EP}/3303/7/5700"))
    assert read["content"]["value"] == 12.5
    deleted = await _json(await http.delete(f"/api/clients/{EP}/3303/7"))
    assert deleted["status"] == "DELETED"

    await _json(await http.put(f"/api/clients/{EP}/3303/0/5700/attributes", json={"pmin": 1}))
    found = await _json(await http.get(f"/api/clients/{EP}/3303/0/discover"))
    urls = {link["url"]: link["attributes"] for link in found["objectLinks"]}
    assert urls["/3303/0/5700"].get("pmin") == "1"


async def test_composite_read(http: Http, device: Lwm2mClient) -> None:
    body = await _json(await http.get(f"/api/clients/{EP}/composite?paths=/3/0/0,/3303/0/5700"))
    assert body["content"]["/3/0/0"]["value"] == "pylwm2m"
    assert body["content"]["/3303/0/5700"]["value"] == 21.5


async def test_observe_notification_arrives_as_sse(http: Http, device: Lwm2mClient) -> None:
    stream = await http.get(f"/api/event?ep={EP}")
    assert stream.status == 200
    await stream.content.readline()  # ": stream open" (the subscription exists)
    body = await _json(await http.post(f"/api/clients/{EP}/3303/0/5700/observe"))
    assert body["content"]["value"] == 21.5
    observations = await _json(await http.get(f"/api/clients/{EP}/observations"))
    assert observations["observations"] == [{"paths": ["/3303/0/5700"], "composite": False}]

    device.set_value("/3303/0/5700", 25.0)
    data = await next_sse_event(stream, "NOTIFICATION")
    assert data["ep"] == EP and data["paths"] == ["/3303/0/5700"]
    assert [(p["path"], p["value"]) for p in data["points"]] == [("/3303/0/5700", 25.0)]

    cancelled = await _json(await http.delete(f"/api/clients/{EP}/3303/0/5700/observe"))
    assert cancelled["success"] is True
    assert (await _json(await http.get(f"/api/clients/{EP}/observations")))["observations"] == []
    stream.close()


async def test_telemetry_from_reads_and_notifications(http: Http, device: Lwm2mClient) -> None:
    await http.get(f"/api/clients/{EP}/3303/0/5700")
    device.set_value("/3303/0/5700", 22.0)
    await http.get(f"/api/clients/{EP}/3303/0/5700")
    latest = await _json(await http.get(f"/api/clients/{EP}/telemetry"))
    point = next(p for p in latest["points"] if p["path"] == "/3303/0/5700")
    assert point["key"] == "sensorValue" and point["value"] == 22.0 and point["type"] == "FLOAT"
    history = await _json(await http.get(f"/api/clients/{EP}/telemetry?key=sensorValue"))
    assert sorted(p["value"] for p in history["points"]) == [21.5, 22.0]


async def test_unknown_client_is_404(http: Http) -> None:
    body = await _json(await http.get("/api/clients/nobody/3/0"), status=404)
    assert body["code"] == "4.04"


async def test_silent_device_is_504_after_timeout(http: Http, device: Lwm2mClient) -> None:
    await device.stop()  # gone without a De-register
    started = asyncio.get_running_loop().time()
    body = await _json(await http.get(f"/api/clients/{EP}/3/0?timeout=0.5"), status=504)
    assert body["error"] == "timeout"
    assert asyncio.get_running_loop().time() - started < 3


async def test_sleeping_queue_mode_client_is_202(
    http: Http, server: Lwm2mServer, make_device: ClientFactory
) -> None:
    stream = await http.get("/api/event?ep=sleepy")
    await stream.content.readline()
    device = await make_device("sleepy", queue_mode=True, awake_time=0.3)
    await next_sse_event(stream, "SLEEPING", timeout=5)  # the server's awake window (0.5 s) closed
    queued = await _json(await http.get("/api/clients/sleepy/3/0/0"), status=202)
    assert queued["status"] == "queued"
    reg = await _json(await http.get("/api/clients/sleepy"))
    assert reg["queuemode"] is True and reg["sleeping"] is True

    await device.update()  # the device wakes up; the server delivers what was queued
    await next_sse_event(stream, "AWAKE", timeout=5)
    for _ in range(100):
        if not server.queued("sleepy"):
            break
        await asyncio.sleep(0.05)
    assert server.queued("sleepy") == []
    stream.close()


async def test_operator_cli_against_the_real_server(
    http: Http, device: Lwm2mClient, capsys: pytest.CaptureFixture[str]
) -> None:
    url = str(http.make_url("")).rstrip("/")
    code = await asyncio.to_thread(operator_cli.main, ["read", EP, "/3/0", "--api", url])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0] == "/3/0  Device"
    assert any(line.split()[:3] == ["0", "Manufacturer", "pylwm2m"] for line in out.splitlines())
    code = await asyncio.to_thread(
        operator_cli.main, ["write", EP, "/3/0/14", "+05:00", "--api", url]
    )
    assert code == 0 and device.get_value("/3/0/14") == "+05:00"


async def test_operator_cli_observe_follow(
    http: Http, server: Lwm2mServer, device: Lwm2mClient, capsys: pytest.CaptureFixture[str]
) -> None:
    url = str(http.make_url("")).rstrip("/")
    argv = ["observe", EP, "/3303/0/5700", "--follow", "--count", "1", "--api", url]
    run = asyncio.create_task(asyncio.to_thread(operator_cli.main, argv))
    for _ in range(200):  # the app's presence tracker + the CLI's event stream
        if server.bus.subscribers >= 2:
            break
        await asyncio.sleep(0.02)
    device.set_value("/3303/0/5700", 27.5)
    code = await asyncio.wait_for(run, 10)
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert lines[0] == f"observing /3303/0/5700 on {EP}"
    assert lines[-1].split()[1:] == ["NOTIFICATION", EP, "/3303/0/5700", "=", "27.5"]
