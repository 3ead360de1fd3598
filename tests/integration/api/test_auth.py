"""Bearer tokens and the audit log on the real server's HTTP API (``lwm2m_runtime.http_auth``):
every route that can change something refuses a caller without a token (401) and a read-only
token (403), and each attempt is in the audit log; reads need a token too, liveness does not;
the first start writes an admin token the operator commands find; revocation is immediate."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bootstrap_server.api import create_app as create_bootstrap_app
from bootstrap_server.config import BootstrapServerConfig
from bootstrap_server.service import BootstrapServer
from keystore.api_tokens import ApiToken, Role, SqliteApiTokenStore, digest
from keystore.cli import main as keystore_main
from lwm2m_client.client import Lwm2mClient
from lwm2m_runtime.http_auth import ApiAuthSettings
from lwm2m_server import operator_cli
from lwm2m_server.api.app import create_server_app
from lwm2m_server.config import ServerConfig
from lwm2m_server.service import Lwm2mServer
from tests.auth import ADMIN_TOKEN, HEADERS

Http = TestClient  # type: ignore[type-arg]
READ_TOKEN = "read-only-token-for-the-auth-tests-0123"
PLACEHOLDERS = {"ep": "dev-1", "path": "3/0/14", "name": "p1", "key": "battery", "id": "0" * 64}


def config(data_dir: Path, **auth: object) -> ServerConfig:
    return ServerConfig(
        host="127.0.0.1",
        coap_port=0,
        coaps_port=0,
        http_port=0,
        data_dir=data_dir,
        api_auth=ApiAuthSettings(**auth),  # type: ignore[arg-type]
    )


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Lwm2mServer]:
    srv = Lwm2mServer(config(tmp_path / "data", admin_token=ADMIN_TOKEN))
    await srv.start()
    SqliteApiTokenStore(srv.store).put_token(ApiToken("dashboard", Role.READ, digest(READ_TOKEN)))
    yield srv
    await srv.stop()


@pytest.fixture
async def app(server: Lwm2mServer) -> web.Application:
    return create_server_app(server)


@pytest.fixture
async def http(app: web.Application) -> AsyncIterator[Http]:
    async with TestServer(app) as web_server, TestClient(web_server) as client:
        yield client


def mutating_routes(app: web.Application) -> list[tuple[str, str]]:
    """Every (method, concrete URL) of the app that is not a read."""
    routes = []
    for route in app.router.routes():
        if route.method in ("GET", "HEAD", "OPTIONS") or route.resource is None:
            continue
        url = re.sub(
            r"\{(\w+)(?::[^}]*)?\}", lambda m: PLACEHOLDERS[m.group(1)], route.resource.canonical
        )
        routes.append((route.method, url))
    return sorted(set(routes))


async def audit(http: Http) -> list[dict[str, object]]:
    answer = await http.get("/api/audit?limit=1000", headers=HEADERS)
    assert answer.status == 200, await answer.text()
    entries: list[dict[str, object]] = await answer.json()
    return entries


async def test_every_mutating_route_wants_an_admin_token(app: web.Application, http: Http) -> None:
    routes = mutating_routes(app)
    assert ("DELETE", "/api/clients/dev-1/3/0/14") in routes
    assert ("POST", "/api/profiles/reload") in routes
    assert len(routes) >= 12
    for method, url in routes:
        anonymous = await http.request(method, url)
        assert anonymous.status == 401, (method, url)
        assert anonymous.headers["WWW-Authenticate"] == 'Bearer realm="pylwm2m"'
        assert (await anonymous.json())["code"] == "4.01"
        wrong = await http.request(method, url, headers={"Authorization": "Bearer nope" * 4})
        assert wrong.status == 401, (method, url)
        read_only = await http.request(
            method, url, headers={"Authorization": f"Bearer {READ_TOKEN}"}
        )
        assert read_only.status == 403, (method, url)
        assert "read-only" in (await read_only.json())["error"]
    entries = await audit(http)
    for method, url in routes:
        mine = [(e["principal"], e["status"], e["outcome"]) for e in entries
                if e["method"] == method and e["path"] == url]  # fmt: skip
        assert mine.count(("anonymous", 401, "unauthenticated")) == 2, (method, url, mine)
        assert ("dashboard", 403, "forbidden") in mine, (method, url, mine)


async def test_reads_want_a_token_liveness_does_not(http: Http) -> None:
    assert (await http.get("/api/clients")).status == 401
    assert (await http.get("/api/event")).status == 401
    read = {"Authorization": f"Bearer {READ_TOKEN}"}
    assert (await http.get("/api/clients", headers=read)).status == 200
    assert (await http.get("/api/audit", headers=read)).status == 200  # auditors read it
    health = await http.get("/api/health")
    assert health.status == 200 and (await health.json())["status"] == "ok"
    assert (await http.get("/api/packages")).status == 401
    # a device's download carries its own credential (the token in the path): no bearer
    download = await http.get("/fw/no-such-download-token")
    assert download.status == 404 and (await download.json())["code"] == "4.04"


async def test_admin_actions_on_a_device_are_audited(server: Lwm2mServer, http: Http) -> None:
    uri = f"coap://127.0.0.1:{server.coap_address.port}"
    async with Lwm2mClient("dev-1", uri) as device:
        answer = await http.put(
            "/api/clients/dev-1/3/0/14?format=text", data="+02:00", headers=HEADERS
        )
        assert answer.status == 200, await answer.text()
        assert device.get_value("/3/0/14") == "+02:00"
        missing = await http.delete("/api/clients/nobody/3/0", headers=HEADERS)
        assert missing.status == 404
    entries = await audit(http)
    assert entries[0]["path"] == "/api/clients/nobody/3/0"
    assert (entries[0]["principal"], entries[0]["status"], entries[0]["outcome"]) == (
        "config-admin",
        404,
        "failed",
    )
    write = entries[1]
    assert (write["method"], write["path"], write["status"], write["outcome"]) == (
        "PUT",
        "/api/clients/dev-1/3/0/14",
        200,
        "ok",
    )
    older = await http.get(f"/api/audit?before={entries[0]['id']}&limit=1", headers=HEADERS)
    assert [e["id"] for e in await older.json()] == [write["id"]]
    assert (await http.get("/api/audit?limit=0", headers=HEADERS)).status == 400


async def test_keystore_tokens_work_at_once_and_revoke_at_once(
    server: Lwm2mServer, http: Http, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = str(server.config.data_dir)
    assert (
        keystore_main(["--data-dir", data_dir, "api-token", "create", "ops", "--role", "admin"])
        == 0
    )
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("lwm2m_") and len(secret) > 40
    headers = {"Authorization": f"Bearer {secret}"}
    assert (await http.post("/api/profiles/reload", headers=headers)).status == 200
    assert keystore_main(["--data-dir", data_dir, "api-token", "list"]) == 0
    listing = capsys.readouterr().out
    assert "ops\tadmin" in listing and "dashboard\tread" in listing and secret not in listing
    assert keystore_main(["--data-dir", data_dir, "api-token", "revoke", "ops"]) == 0
    assert (await http.post("/api/profiles/reload", headers=headers)).status == 401
    assert keystore_main(["--data-dir", data_dir, "api-token", "revoke", "ops"]) == 1


async def test_first_start_writes_an_admin_token_the_commands_find(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data_dir = tmp_path / "data"
    srv = Lwm2mServer(config(data_dir))
    await srv.start()
    try:
        with caplog.at_level(logging.INFO):
            app = create_server_app(srv)
        token_file = data_dir / "api-token"
        secret = token_file.read_text().strip()
        assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
        assert secret not in caplog.text and str(token_file) in caplog.text
        async with TestServer(app) as web_server:
            api = str(web_server.make_url("")).rstrip("/")
            monkeypatch.delenv("LWM2M_API_TOKEN", raising=False)
            monkeypatch.setenv("LWM2M_SERVER_DATA_DIR", str(data_dir))
            assert await asyncio.to_thread(operator_cli.main, ["clients", "--api", api]) == 0
            assert "no clients registered" in capsys.readouterr().out
            monkeypatch.setenv("LWM2M_SERVER_DATA_DIR", str(tmp_path / "elsewhere"))
            assert await asyncio.to_thread(operator_cli.main, ["clients", "--api", api]) == 1
            assert "HTTP 401" in capsys.readouterr().err
        create_server_app(srv)  # a later start: an admin exists, the file is kept
        assert token_file.read_text().strip() == secret
    finally:
        await srv.stop()


async def test_auth_off_is_explicit_and_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    srv = Lwm2mServer(config(tmp_path / "data", enabled=False))
    await srv.start()
    try:
        with caplog.at_level(logging.WARNING):
            app = create_server_app(srv)
        assert "API authentication is OFF" in caplog.text
        assert not (tmp_path / "data" / "api-token").exists()
        async with TestServer(app) as web_server, TestClient(web_server) as http:
            assert (await http.post("/api/profiles/reload")).status == 200
            entries = await (await http.get("/api/audit")).json()
            assert entries[0]["principal"] == "anonymous" and entries[0]["status"] == 200
    finally:
        await srv.stop()


async def test_bootstrap_api_takes_the_same_tokens(tmp_path: Path) -> None:
    """The token store is the keystore both servers share: a token made for one works on the
    other; the bootstrap API refuses and audits like the server's."""
    data_dir = tmp_path / "data"
    bootstrap = BootstrapServer(
        BootstrapServerConfig(host="127.0.0.1", coap_port=0, coaps=False, data_dir=data_dir)
    )
    await bootstrap.start()
    try:
        SqliteApiTokenStore(bootstrap.keystore.store).put_token(
            ApiToken("dashboard", Role.READ, digest(READ_TOKEN))
        )
        app = create_bootstrap_app(bootstrap)
        admin = (data_dir / "api-token").read_text().strip()  # its first start made one
        async with TestServer(app) as web_server, TestClient(web_server) as http:
            url = "/api/bootstrap/configs/reload"
            assert (await http.get("/api/bootstrap/configs")).status == 401
            read = {"Authorization": f"Bearer {READ_TOKEN}"}
            assert (await http.get("/api/bootstrap/configs", headers=read)).status == 200
            assert (await http.post(url, headers=read)).status == 403
            answer = await http.post(url, headers={"Authorization": f"Bearer {admin}"})
            assert answer.status == 200, await answer.text()
            entries = await (await http.get("/api/audit", headers=read)).json()
            assert [(e["principal"], e["status"]) for e in entries[:2]] == [
                ("admin", 200),
                ("dashboard", 403),
            ]
    finally:
        await bootstrap.stop()
