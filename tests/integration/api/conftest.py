"""Fixtures: the real server (queue-mode devices fall asleep after 0.5 s) and its HTTP API with
a short event-stream keepalive, for the API tests that drive real demo devices (a test file that
needs another server defines its own ``server``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lwm2m_server.config import QueueSettings
from lwm2m_server.service import Lwm2mServer
from tests.live import Http, api_of, loopback_config, running


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Lwm2mServer]:
    config = loopback_config(tmp_path / "data", queue=QueueSettings(awake_time=0.5))
    async with running(config) as srv:
        yield srv


@pytest.fixture
async def http(server: Lwm2mServer) -> AsyncIterator[Http]:
    async with api_of(server, keepalive=0.5) as client:
        yield client
