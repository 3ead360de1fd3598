"""The profile routes of the HTTP API and the ``profiles`` CLI against the real server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lwm2m_server import operator_cli
from lwm2m_server.service import Lwm2mServer
from tests.live import Http, api_of

from .conftest import TEMPERATURE_PROFILE, ClientFactory, ServerFactory, settled


@pytest.fixture
async def server(make_server: ServerFactory) -> Lwm2mServer:
    return await make_server()


@pytest.fixture
async def http(server: Lwm2mServer) -> AsyncIterator[Http]:
    async with api_of(server, default_timeout=3.0) as client:
        yield client


async def call(http: Http, method: str, url: str, body: Any = None) -> tuple[int, Any]:
    async with http.request(method, url, json=body) as response:
        return response.status, await response.json()


async def test_profiles_crud_assignment_status_attributes_timeseries(
    server: Lwm2mServer, http: Http, make_client: ClientFactory
) -> None:
    profile = {**TEMPERATURE_PROFILE, "on_connect": "read_mapped"}
    status, body = await call(http, "PUT", "/api/profiles/temperature-sensor", profile)
    assert status == 201 and body["observeStrategy"] == "single"
    status, body = await call(
        http, "PUT", "/api/profiles/bad", {"resources": {"/3303/0/1": {"key": "x"}}}
    )
    assert status == 400 and "resources./3303/0/1" in body["error"]
    client, recorder = await make_client(server, "dev-9")
    await settled(server)
    assert recorder.take() == []  # the default profile asks nothing
    status, body = await call(
        http, "PUT", "/api/clients/dev-9/profile", {"profile": "temperature-sensor"}
    )
    assert (status, body["chosenBy"]) == (200, "assigned")
    await settled(server)
    assert [r[0] for r in recorder.take()] == ["write_attributes", "observe", "observe"]
    status, body = await call(http, "GET", "/api/clients/dev-9/profile-status")
    assert body["profile"] == "temperature-sensor" and body["state"] == "applied"
    status, body = await call(http, "GET", "/api/profiles")
    listed = {p["name"]: p for p in body["profiles"]}
    assert listed["temperature-sensor"]["devices"] == ["dev-9"] and "default" in listed

    # attributes: read now (apply: as on connect); writing one through the API writes the device
    status, body = await call(http, "POST", "/api/clients/dev-9/profile/apply")
    assert status == 200
    status, body = await call(http, "GET", "/api/clients/dev-9/attributes")
    assert body["attributes"] == {"manufacturer": "pylwm2m", "units": "Cel", "utcOffset": "+00:00"}
    status, body = await call(http, "PUT", "/api/clients/dev-9/attributes/utcOffset", "+02:00")
    assert status == 200 and body["success"], body
    assert client.get_value("/3/0/14") == "+02:00"
    status, body = await call(http, "GET", "/api/clients/dev-9/attributes")
    assert body["attributes"]["utcOffset"] == "+02:00"
    status, body = await call(http, "PUT", "/api/clients/dev-9/attributes/manufacturer", "x")
    assert status == 405 and "not writable" in body["error"]
    status, body = await call(http, "PUT", "/api/clients/dev-9/attributes/nope", 1)
    assert status == 404

    # telemetry in ThingsBoard's shape
    start = int(time.time() * 1000) - 60_000
    client.set_value("/3303/0/5700", 19.0)
    for _ in range(200):
        status, body = await call(http, "GET", "/api/clients/dev-9/timeseries?keys=temperature")
        if body["temperature"][0]["value"] == 19.0:
            break
        await asyncio.sleep(0.02)
    assert body["temperature"][0]["value"] == 19.0
    status, body = await call(
        http, "GET", f"/api/clients/dev-9/timeseries?keys=temperature,batteryLevel&startTs={start}"
    )
    assert body["temperature"][0]["value"] == 19.0
    assert set(body) == {"temperature", "batteryLevel"}

    # a file-less profile can be deleted; the device falls back to the default
    status, body = await call(http, "DELETE", "/api/profiles/temperature-sensor")
    assert status == 200
    status, body = await call(http, "GET", "/api/clients/dev-9/profile-status")
    await settled(server)
    status, body = await call(http, "GET", "/api/profiles/temperature-sensor")
    assert status == 404


async def test_file_profiles_are_managed_by_their_file_and_reload(
    server: Lwm2mServer, http: Http, profiles_dir: Path
) -> None:
    (profiles_dir / "t.yaml").write_text(yaml.safe_dump({**TEMPERATURE_PROFILE, "name": "t"}))
    status, body = await call(http, "POST", "/api/profiles/reload")
    assert (status, body["changed"]) == (200, ["t"])
    status, body = await call(http, "PUT", "/api/profiles/t", TEMPERATURE_PROFILE)
    assert status == 412 and "t.yaml" in body["error"]
    (profiles_dir / "t.yaml").unlink()
    status, body = await call(http, "POST", "/api/profiles/reload")
    assert body["removed"] == ["t"]


async def test_profiles_cli(
    server: Lwm2mServer,
    http: Http,
    tmp_path: Path,
    make_client: ClientFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = str(http.make_url("")).rstrip("/")
    file = tmp_path / "temperature-sensor.yaml"
    file.write_text(yaml.safe_dump(TEMPERATURE_PROFILE))

    async def cli(*argv: str) -> tuple[int, str]:
        code = await asyncio.to_thread(operator_cli.main, [*argv, "--api", url])
        return code, capsys.readouterr().out

    code, out = await cli("profiles", "apply", str(file))
    assert code == 0 and "temperature-sensor: created" in out
    await make_client(server, "dev-2")
    code, out = await cli("profiles", "assign", "dev-2", "temperature-sensor")
    assert code == 0 and "dev-2: temperature-sensor (assigned)" in out
    await settled(server)
    code, out = await cli("profiles", "list")
    assert code == 0 and "temperature-sensor" in out and "dev-2" in out
    code, out = await cli("profiles", "show", "temperature-sensor")
    assert code == 0 and yaml.safe_load(out)["on_connect"] == "observe_only"
    code, out = await cli("profiles", "status", "dev-2")
    assert code == 0 and "applied" in out and "observing /3303/0/5700" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nresources: {/3/0/4: {observe: true}}\n")
    code, out = await cli("profiles", "apply", str(bad))
    assert code == 1
