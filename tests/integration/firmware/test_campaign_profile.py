"""A profile's ``firmware`` section on the real server: shown by ``GET /api/profiles/{name}``,
used by a campaign that targets the profile and names no package (a package by name and
version resolved through the library), and a package it names by id stays in use."""

from __future__ import annotations

from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from lwm2m_client.firmware_image import make_image
from lwm2m_server.api import create_app
from lwm2m_server.config import ServerConfig
from lwm2m_server.firmware.contracts import PackageKind
from lwm2m_server.service import Lwm2mServer


async def test_profile_firmware_settings_drive_a_campaign(tmp_path: Path) -> None:
    config = ServerConfig(host="127.0.0.1", coap_port=0, coaps_port=0, data_dir=tmp_path)
    async with Lwm2mServer(config) as server:
        assert server.packages is not None
        firmware = server.packages.add(
            make_image("meter", "2.1", b"fw " * 50),
            kind=PackageKind.FIRMWARE,
            name="meter-fw",
            version="2.1",
        )
        software = server.packages.add(
            make_image("meter-app", "7", b"sw " * 50),
            kind=PackageKind.SOFTWARE,
            name="meter-app",
            version="7",
        )
        document = {
            "endpoints": ["meter-*"],
            "firmware": {
                "firmware": {
                    "strategy": "pull_http",
                    "package": {"name": "meter-fw", "version": "2.1"},
                },
                "software": {"strategy": "push", "package": software.id},
            },
        }
        async with TestServer(create_app(server)) as web, TestClient(web) as http:
            put = await http.put("/api/profiles/meters", json=document)
            assert put.status == 201, await put.text()
            shown = await (await http.get("/api/profiles/meters")).json()
            assert shown["firmware"] == {
                "firmware": {
                    "strategy": "pull_http",
                    "package": {"name": "meter-fw", "version": "2.1"},
                },
                "software": {"strategy": "push", "package": software.id},
            }

            answer = await http.post("/api/campaigns", json={"target": {"profile": "meters"}})
            assert answer.status == 201, await answer.text()
            campaign = await answer.json()
            assert (campaign["package"], campaign["kind"], campaign["strategy"]) == (
                firmware.id,
                "firmware",
                "pull_http",
            )
            assert campaign["state"] == "completed"  # no meter is registered
            sw = await http.post(
                "/api/campaigns", json={"target": {"profile": "meters"}, "kind": "software"}
            )
            assert (await sw.json())["package"] == software.id

            bad = await put_and_create(http, {"name": "nope", "version": "1"})
            assert bad == (404, "no package nope 1")

            refused = await http.delete(f"/api/packages/{software.id}")
            assert refused.status == 409
            assert "profile meters" in (await refused.json())["error"]


async def put_and_create(http: TestClient, package: object) -> tuple[int, str]:  # type: ignore[type-arg]
    document = {"firmware": {"firmware": {"package": package}}}
    assert (await http.put("/api/profiles/other", json=document)).status == 201
    answer = await http.post("/api/campaigns", json={"target": {"profile": "other"}})
    return answer.status, (await answer.json())["error"]
