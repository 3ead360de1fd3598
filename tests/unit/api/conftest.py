from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from lwm2m_server.api import create_app

from .fake_ops import FakeOps


@pytest.fixture
def ops() -> FakeOps:
    fake = FakeOps()
    fake.add_client("dev-1")
    return fake


@pytest.fixture
async def api(ops: FakeOps) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    """A real HTTP server on a loopback port in front of ``ops``, and a client for it."""
    app = create_app(ops, keepalive=0.2)
    async with TestServer(app) as server, TestClient(server) as client:
        yield client
