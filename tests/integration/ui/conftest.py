"""A real server (in-process ``Lwm2mServer`` + its HTTP app on a free loopback port) and real
demo devices (``lwm2m_client``) for the web UI's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from lwm2m_client.client import Lwm2mClient
from lwm2m_runtime.http_auth import ApiAuthSettings
from lwm2m_server.api.app import create_server_app
from lwm2m_server.config import QueueSettings, ServerConfig
from lwm2m_server.service import Lwm2mServer
from tests.auth import ADMIN_TOKEN

Http = TestClient  # type: ignore[type-arg]
ClientFactory = Callable[..., Awaitable[Lwm2mClient]]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Lwm2mServer]:
    config = ServerConfig(
        host="127.0.0.1",
        coap_port=0,
        coaps_port=0,
        http_port=0,
        data_dir=tmp_path / "data",
        api_auth=ApiAuthSettings(admin_token=ADMIN_TOKEN),
        queue=QueueSettings(awake_time=0.5),  # queue-mode devices fall asleep quickly
    )
    srv = Lwm2mServer(config)
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def http(server: Lwm2mServer) -> AsyncIterator[Http]:
    """The API as ``lwm2m-server`` serves it, UI included, on a free port."""
    async with TestServer(create_server_app(server)) as web, TestClient(web) as client:
        yield client


@pytest.fixture
async def make_device(server: Lwm2mServer) -> AsyncIterator[ClientFactory]:
    devices: list[Lwm2mClient] = []

    async def make(endpoint: str, **kwargs: Any) -> Lwm2mClient:
        kwargs.setdefault("auto_update", False)
        kwargs.setdefault("lwm2m_version", "1.1")
        device = Lwm2mClient(endpoint, f"coap://127.0.0.1:{server.coap_address.port}", **kwargs)
        devices.append(device)
        await device.start()
        await device.register()
        return device

    yield make
    for device in devices:
        await device.stop()
