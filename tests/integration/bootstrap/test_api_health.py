"""The bootstrap server's liveness, readiness and OpenAPI document: no token for the first two;
every route of the app is in the document (and nothing else), which validates as OpenAPI 3.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openapi_spec_validator import validate

from bootstrap_server.api import create_app
from bootstrap_server.config import BootstrapServerConfig
from bootstrap_server.openapi import openapi_document
from bootstrap_server.service import BootstrapServer
from lwm2m_runtime.http_auth import ApiAuthSettings
from tests.auth import ADMIN_TOKEN, HEADERS

Http = TestClient  # type: ignore[type-arg]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[BootstrapServer]:
    config = BootstrapServerConfig(
        host="127.0.0.1",
        coap_port=0,
        coaps_port=0,
        data_dir=tmp_path / "data",
        api_auth=ApiAuthSettings(admin_token=ADMIN_TOKEN),
    )
    srv = BootstrapServer(config)
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
def app(server: BootstrapServer) -> web.Application:
    return create_app(server)


@pytest.fixture
async def http(app: web.Application) -> AsyncIterator[Http]:
    async with TestServer(app) as web_server, TestClient(web_server) as client:
        yield client


async def test_health_and_ready_without_a_token(server: BootstrapServer, http: Http) -> None:
    health = await http.get("/api/health")
    assert health.status == 200
    assert await health.json() == {"status": "ok", "configs": 0, "active_sessions": 0}
    ready = await http.get("/api/ready")
    assert ready.status == 200
    assert await ready.json() == {"ready": True, "checks": {"listeners": "ok", "store": "ok"}}
    assert (await http.get("/api/bootstrap/configs")).status == 401  # the rest wants a token
    assert server._coap is not None
    await server._coap.stop()
    down = await http.get("/api/ready")
    assert down.status == 503 and (await down.json())["checks"]["listeners"] != "ok"


async def test_the_openapi_document_covers_every_route(app: web.Application, http: Http) -> None:
    doc = openapi_document()
    validate(doc)
    documented = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    assert documented == routes
    served = await http.get("/api/openapi.json", headers=HEADERS)
    assert served.status == 200 and await served.json() == doc
