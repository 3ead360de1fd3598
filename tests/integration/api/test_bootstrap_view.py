"""The bootstrap server's provisioning records and sessions read through the LwM2M server's API
(``GET /api/bootstrap/…``, forwarded to ``bootstrap_api.url``): both servers run in this process
on one data folder, so the LwM2M server authenticates with the read token it puts in the shared
keystore; only GETs go through; no bootstrap server configured → 404, unreachable → 502."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bootstrap_server.api import create_app as create_bootstrap_app
from bootstrap_server.config import BootstrapServerConfig
from bootstrap_server.service import BootstrapServer
from keystore.api_tokens import Role
from lwm2m_runtime.http_auth import ApiAuthSettings
from lwm2m_server.api.app import create_server_app
from lwm2m_server.config import BootstrapApiSettings, ServerConfig
from lwm2m_server.service import Lwm2mServer
from tests.auth import ADMIN_TOKEN, HEADERS

Http = TestClient  # type: ignore[type-arg]


def server_config(data_dir: Path, url: str) -> ServerConfig:
    return ServerConfig(
        host="127.0.0.1",
        coap_port=0,
        coaps_port=0,
        data_dir=data_dir,
        api_auth=ApiAuthSettings(admin_token=ADMIN_TOKEN),
        bootstrap_api=BootstrapApiSettings(url=url),
    )


@pytest.fixture
async def bootstrap_api(tmp_path: Path) -> AsyncIterator[tuple[BootstrapServer, str]]:
    bootstrap = BootstrapServer(
        BootstrapServerConfig(
            host="127.0.0.1",
            coap_port=0,
            coaps=False,
            data_dir=tmp_path / "data",
            api_auth=ApiAuthSettings(admin_token=ADMIN_TOKEN),
        )
    )
    await bootstrap.start()
    web = TestServer(create_bootstrap_app(bootstrap), host="127.0.0.1")
    await web.start_server()
    yield bootstrap, str(web.make_url("")).rstrip("/")
    await web.close()
    await bootstrap.stop()


async def test_provisioning_and_sessions_read_through(
    tmp_path: Path, bootstrap_api: tuple[BootstrapServer, str]
) -> None:
    bootstrap, url = bootstrap_api
    async with aiohttp.ClientSession(headers=HEADERS) as bs:  # the bootstrap server's own API
        imported = await bs.post(f"{url}/api/bootstrap/devices/import", data="meter-1\nmeter-2\n")
        assert imported.status == 200, await imported.text()
    server = Lwm2mServer(server_config(tmp_path / "data", url))
    await server.start()
    try:
        app = create_server_app(server)
        view_tokens = [
            t for t in server.stores.api_tokens.tokens() if t.name == "lwm2m-server-view"
        ]
        assert [t.role for t in view_tokens] == [Role.READ]  # made in the shared keystore
        async with TestServer(app) as web, TestClient(web) as http:
            devices = await http.get("/api/bootstrap/devices", headers=HEADERS)
            assert devices.status == 200, await devices.text()
            names = sorted(d["endpoint"] for d in await devices.json())
            assert names == ["meter-1", "meter-2"]
            sessions = await http.get("/api/bootstrap/sessions?limit=5", headers=HEADERS)
            assert sessions.status == 200 and await sessions.json() == []
            active = await http.get("/api/bootstrap/sessions/active", headers=HEADERS)
            assert active.status == 200 and await active.json() == []
            assert (await http.get("/api/bootstrap/devices")).status == 401  # ours, first
            refused = await http.delete("/api/bootstrap/devices/meter-1", headers=HEADERS)
            assert refused.status in (404, 405)  # only reads go through
        assert len(bootstrap.store.devices()) == 2
    finally:
        await server.stop()


async def test_not_configured_is_404_and_unreachable_is_502(tmp_path: Path) -> None:
    for url, status in (("", 404), ("http://127.0.0.1:9", 502)):
        server = Lwm2mServer(server_config(tmp_path / f"d{status}", url))
        await server.start()
        try:
            async with TestServer(create_server_app(server)) as web, TestClient(web) as http:
                answer = await http.get("/api/bootstrap/devices", headers=HEADERS)
                assert answer.status == status
                assert "bootstrap" in (await answer.json())["error"]
        finally:
            await server.stop()
