"""A real server (in-process ``Lwm2mServer`` + its HTTP app on a free loopback port) and real
demo devices (``lwm2m_client``) for the web UI's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lwm2m_runtime.http_auth import ApiAuthSettings
from lwm2m_server.api.app import create_server_app
from lwm2m_server.config import QueueSettings
from lwm2m_server.service import Lwm2mServer
from tests.auth import ADMIN_TOKEN
from tests.live import DeviceFactory, Http, devices, loopback_config, running, serving

ClientFactory = DeviceFactory


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Lwm2mServer]:
    config = loopback_config(
        tmp_path / "data",
        http_port=0,
        api_auth=ApiAuthSettings(admin_token=ADMIN_TOKEN),
        queue=QueueSettings(awake_time=0.5),  # queue-mode devices fall asleep quickly
    )
    async with running(config) as srv:
        yield srv


@pytest.fixture
async def http(server: Lwm2mServer) -> AsyncIterator[Http]:
    """The API as ``lwm2m-server`` serves it, UI included, on a free port."""
    async with serving(create_server_app(server)) as client:
        yield client


@pytest.fixture
async def make_device(server: Lwm2mServer) -> AsyncIterator[ClientFactory]:
    async with devices(server, lwm2m_version="1.1") as make:
        yield make
