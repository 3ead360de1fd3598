"""``GET /api/clients`` pages and ``lwm2m-server clients`` over the real ``Lwm2mServer`` with
real devices registering over loopback CoAP: every client listed exactly once across pages,
with the server's registrations either in its sorted book (``SortedRegistrationBook``, what the
service plugs in) or in the plain one (the API then pages a snapshot)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from lwm2m_client.client import Lwm2mClient
from lwm2m_runtime.http_auth import ApiAuthSettings
from lwm2m_server import operator_cli
from lwm2m_server.api.app import create_server_app
from lwm2m_server.config import ServerConfig
from lwm2m_server.core.registrations import RegistrationBook
from lwm2m_server.core.sorted_book import SortedRegistrationBook
from lwm2m_server.service import Lwm2mServer
from tests.auth import ADMIN_TOKEN, HEADERS

Http = TestClient  # type: ignore[type-arg]


@pytest.fixture(params=["sorted-book", "plain-book"])
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Lwm2mServer]:
    config = ServerConfig(
        host="127.0.0.1",
        coap_port=0,
        coaps_port=0,
        data_dir=tmp_path / "d",
        api_auth=ApiAuthSettings(admin_token=ADMIN_TOKEN),
    )
    srv = Lwm2mServer(config)
    assert isinstance(srv.core.registrations, SortedRegistrationBook)  # what the service keeps
    if request.param == "plain-book":  # the API's fallback: a sorted snapshot per page
        srv.core.registrations = RegistrationBook(grace_period=srv.core.registrations.grace_period)
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def http(server: Lwm2mServer) -> AsyncIterator[Http]:
    app = create_server_app(server)
    async with TestServer(app) as web, TestClient(web, headers=HEADERS) as client:
        yield client


@pytest.fixture
async def devices(server: Lwm2mServer) -> AsyncIterator[list[Lwm2mClient]]:
    started: list[Lwm2mClient] = []

    async def add(name: str) -> None:
        uri = f"coap://127.0.0.1:{server.coap_address.port}"
        device = Lwm2mClient(name, uri, auto_update=False)
        started.append(device)
        await device.start()
        await device.register()

    await asyncio.gather(*(add(f"dev-{i}") for i in (1, 3, 5, 7, 9)))
    yield started
    for device in started:
        await device.stop()


async def test_pages_over_real_registrations_with_one_arriving(
    http: Http, server: Lwm2mServer, devices: list[Lwm2mClient]
) -> None:
    resp = await http.get("/api/clients?limit=2")
    assert resp.status == 200
    assert [c["endpoint"] for c in await resp.json()] == ["dev-1", "dev-3"]
    assert resp.headers["X-Total-Count"] == "5"
    # a device registers between two pages; its name sorts after the cursor
    late = Lwm2mClient("dev-4", f"coap://127.0.0.1:{server.coap_address.port}", auto_update=False)
    devices.append(late)
    await late.start()
    await late.register()
    names: list[str] = []
    url: str | None = resp.headers["Link"].split(">")[0].lstrip("<")
    while url is not None:
        resp = await http.get(url)
        names += [c["endpoint"] for c in await resp.json()]
        link = resp.headers.get("Link")
        url = None if link is None else link.split(">")[0].lstrip("<")
    assert names == ["dev-4", "dev-5", "dev-7", "dev-9"]


async def test_cli_lists_every_client_over_several_pages(
    http: Http,
    devices: list[Lwm2mClient],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LWM2M_API_TOKEN", ADMIN_TOKEN)
    url = str(http.make_url("")).rstrip("/")
    argv = ["clients", "--page-size", "2", "--json", "--api", url]
    code = await asyncio.to_thread(operator_cli.main, argv)
    assert code == 0
    listed = [c["endpoint"] for c in json.loads(capsys.readouterr().out)]
    assert listed == ["dev-1", "dev-3", "dev-5", "dev-7", "dev-9"]


async def test_profiles_list_their_devices_across_index_pages(
    http: Http, server: Lwm2mServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``GET /api/profiles`` resolves every client once, walking the client index a page at a
    time (small pages here), and still lists every device under its profile."""
    from lwm2m_runtime.address import Address
    from lwm2m_server.api import profiles
    from lwm2m_server.core.registration import RegistrationRequest

    monkeypatch.setattr(profiles, "MAX_PAGE", 3)
    monkeypatch.setattr(profiles, "_YIELD_EVERY", 2)
    names = [f"meter-{i}" for i in range(8)] + [f"other-{i}" for i in range(5)]
    for name in names:  # straight into the book: only the listing is under test
        request = RegistrationRequest(endpoint=name)
        server.core.registrations.register(
            request, now=server.clock(), address=Address("192.0.2.1", 1)
        )
    doc = {"endpoints": ["meter-*"], "resources": {}}
    assert (await http.put("/api/profiles/meter", json=doc)).status == 201
    body = await (await http.get("/api/profiles")).json()
    listed = {p["name"]: p["devices"] for p in body["profiles"]}
    assert listed["meter"] == sorted(n for n in names if n.startswith("meter-"))
    assert listed["default"] == sorted(n for n in names if n.startswith("other-"))
    shown = await (await http.get("/api/profiles/meter")).json()
    assert shown["devices"] == listed["meter"]
