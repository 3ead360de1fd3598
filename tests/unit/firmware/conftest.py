"""Fixtures of the campaign API and CLI tests: a real loopback HTTP server in front of the API's
operations double, with a campaign driver whose jobs the test finishes."""

from __future__ import annotations

import types
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from lwm2m_server.api import create_app
from lwm2m_server.firmware.campaign_store import MemoryCampaignStore
from lwm2m_server.firmware.campaigns import CampaignManager, Target
from lwm2m_server.profiles.loader import parse_profile
from object_models.registry import ModelRegistry
from tests.unit.api.fake_ops import FakeOps

from .test_campaigns import PACKAGE, FakeUpdates

Client = TestClient  # type: ignore[type-arg]


class Catalog:
    def __init__(self) -> None:
        self.profile = parse_profile(
            {
                "name": "meters",
                "firmware": {"firmware": {"strategy": "pull_http", "package": PACKAGE}},
            },
            "api",
            ModelRegistry.builtin(),
        )

    def get(self, name: str) -> Any:
        return self.profile if name == "meters" else None


@pytest.fixture
def updates() -> FakeUpdates:
    return FakeUpdates()


@pytest.fixture
async def campaign_server(updates: FakeUpdates) -> AsyncIterator[TestServer]:
    ops: Any = FakeOps()
    for i in range(30):
        ops.add_client(f"meter-{i:02d}" if i < 20 else f"other-{i}", queue_mode=i % 2 == 1)

    def resolve(target: Target) -> list[str]:
        if target.endpoints:
            return list(target.endpoints)
        if target.profile == "meters":
            return sorted(r.endpoint for r in ops.clients() if r.endpoint.startswith("meter"))
        return sorted(r.endpoint for r in ops.clients() if target.matches(r))

    ops.profiles = types.SimpleNamespace(catalog=Catalog())
    ops.campaigns = CampaignManager(updates, MemoryCampaignStore(), resolve=resolve, bus=ops.bus)
    await ops.campaigns.start()
    app = create_app(ops)
    try:
        async with TestServer(app) as server:
            yield server
    finally:
        await ops.campaigns.stop()


@pytest.fixture
async def api(campaign_server: TestServer) -> AsyncIterator[Client]:
    async with TestClient(campaign_server) as client:
        yield client
