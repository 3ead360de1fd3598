"""The hand-written OpenAPI document: valid OpenAPI 3.1 and describing every route."""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from lwm2m_runtime.http_auth import ApiAuthSettings
from lwm2m_server.api import create_app, create_server_app
from lwm2m_server.api.openapi import openapi_document
from lwm2m_server.config import ServerConfig
from lwm2m_server.service import Lwm2mServer
from tests.auth import ADMIN_TOKEN, HEADERS

from .fake_ops import FakeOps

Client = TestClient  # type: ignore[type-arg]


def _routes(app: web.Application) -> set[tuple[str, str]]:
    return {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }


@pytest.fixture
async def real_server(tmp_path: Path) -> AsyncIterator[Lwm2mServer]:
    """A started server (loopback, free ports), as ``lwm2m-server`` runs it: profile engine on."""
    config = ServerConfig(
        host="127.0.0.1",
        coap_port=0,
        coaps_port=0,
        data_dir=tmp_path,
        api_auth=ApiAuthSettings(admin_token=ADMIN_TOKEN),
    )
    server = Lwm2mServer(config)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_every_route_is_documented_and_nothing_else(real_server: Lwm2mServer) -> None:
    doc = openapi_document()
    documented = {
        (method, path)
        for path, item in doc["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete")
    }
    routes = _routes(create_server_app(real_server))
    assert ("get", "/api/profiles") in routes  # the app the real server serves: profiles too
    assert documented == routes
    # a test double without a profile engine serves a subset (no profile routes)
    assert _routes(create_app(FakeOps())) < routes


def test_operation_ids_are_unique_and_refs_resolve() -> None:
    doc = openapi_document()
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if "$ref" in node else []
            return found + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for ref in refs(doc):
        _, section, name = ref.removeprefix("#/").split("/")
        assert name in doc["components"][section], ref


def test_component_schemas_are_valid_json_schema() -> None:
    for schema in openapi_document()["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.skipif(
    importlib.util.find_spec("openapi_spec_validator") is None,
    reason="openapi-spec-validator is not installed (structural checks above still ran)",
)
def test_validates_against_the_openapi_31_schema() -> None:
    from openapi_spec_validator import validate

    validate(openapi_document())  # type: ignore[arg-type]


def _validate(doc: dict[str, Any], instance: object, name: str) -> None:
    """Validate against a component schema, resolving refs inside the document itself."""
    resource = Resource.from_contents(doc, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:api", resource)
    schema = {"$ref": f"urn:api#/components/schemas/{name}"}
    jsonschema.Draft202012Validator(schema, registry=registry).validate(instance)


async def test_served_and_examples_match_schemas(api: Client) -> None:
    doc = await (await api.get("/api/openapi.json")).json()
    assert doc["openapi"] == "3.1.0"
    for response in doc["components"]["responses"].values():
        media = response["content"]["application/json"]
        if "example" in media:
            name = media["schema"]["$ref"].rsplit("/", 1)[1]
            _validate(doc, media["example"], name)


async def test_real_answers_match_the_schemas(api: Client) -> None:
    doc = openapi_document()

    async def check(url: str, name: str) -> None:
        _validate(doc, await (await api.get(url)).json(), name)

    await check("/api/clients/dev-1/3/0", "DeviceResponse")
    await check("/api/clients/dev-1/3/0/discover", "DeviceResponse")
    await check("/api/clients/dev-1/composite?paths=/3/0/1,/3/0/99", "DeviceResponse")
    await check("/api/clients/dev-1/7/0", "DeviceResponse")
    await check("/api/clients/dev-1/telemetry", "Telemetry")
    await check("/api/clients/dev-1/observations", "Observations")
    await check("/api/health", "Health")
    await check("/api/clients/nope", "Error")
    for reg in await (await api.get("/api/clients")).json():
        _validate(doc, reg, "Registration")


async def test_real_profile_answers_match_the_schemas(real_server: Lwm2mServer) -> None:
    doc = openapi_document()
    app = create_server_app(real_server)
    async with TestServer(app) as http, TestClient(http, headers=HEADERS) as api:

        async def check(method: str, url: str, name: str, status: int = 200, **kw: Any) -> None:
            answer = await api.request(method, url, **kw)
            assert answer.status == status, await answer.text()
            _validate(doc, await answer.json(), name)

        body = {"observe_strategy": "single", "resources": {"/3/0/9": {"key": "battery"}}}
        await check("PUT", "/api/profiles/p1", "ProfileSummary", 201, json=body)
        await check("GET", "/api/profiles", "ProfileList")
        await check("GET", "/api/profiles/p1", "Profile")
        await check("GET", "/api/profiles/nope", "Error", 404)
        await check("POST", "/api/profiles/reload", "ProfileReload")
        await check("PUT", "/api/clients/dev-1/profile", "ProfileAssignment",
                    json={"profile": "p1"})  # fmt: skip
        await check("GET", "/api/clients/dev-1/attributes", "Error", 404)  # not registered
        await check("GET", "/api/clients/dev-1/profile-status", "Error", 404)


def test_every_documented_path_is_in_the_http_api_guide() -> None:
    """docs/http-api.md covers every path of the OpenAPI document (and so every route)."""
    from pathlib import Path

    guide = (Path(__file__).parents[3] / "docs" / "http-api.md").read_text()
    missing = [path for path in openapi_document()["paths"] if f"{path}" not in guide]
    assert missing == []
