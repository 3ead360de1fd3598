"""Fixtures: a fake LwM2M server and a registered demo client, both on ephemeral loopback ports
(so the tests can run in parallel)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from lwm2m_client.client import Lwm2mClient

from .fake_server import FakeLwm2mServer


@pytest.fixture
async def server() -> AsyncIterator[FakeLwm2mServer]:
    srv = FakeLwm2mServer()
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


ClientFactory = Callable[..., Awaitable[Lwm2mClient]]


@pytest.fixture
async def make_client(server: FakeLwm2mServer) -> AsyncIterator[ClientFactory]:
    """``await make_client(**kwargs)``: a started and registered client (stopped at teardown)."""
    clients: list[Lwm2mClient] = []

    async def make(endpoint: str = "test-ep", register: bool = True, **kwargs: Any) -> Lwm2mClient:
        kwargs.setdefault("auto_update", False)
        client = Lwm2mClient(endpoint, server.uri, **kwargs)
        clients.append(client)
        await client.start()
        if register:
            await client.register()
            await server.next_uplink("register")
        return client

    yield make
    for client in clients:
        await client.stop()


@pytest.fixture
async def client(make_client: ClientFactory) -> Lwm2mClient:
    return await make_client()
