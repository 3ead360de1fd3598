"""Fixtures: a ``Lwm2mServer`` in-process on an ephemeral loopback port with a fresh data
directory, and real ``lwm2m_client`` clients registered to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from lwm2m_client.client import Lwm2mClient
from lwm2m_server.config import ServerConfig
from lwm2m_server.service import Lwm2mServer


def server_config(data_dir: Path, **changes: Any) -> ServerConfig:
    return attrs.evolve(
        ServerConfig(host="127.0.0.1", coap_port=0, coaps_port=0, data_dir=data_dir), **changes
    )


ServerFactory = Callable[..., Awaitable[Lwm2mServer]]


@pytest.fixture
async def make_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """``await make_server(**config_changes)``: a started server (stopped at teardown)."""
    servers: list[Lwm2mServer] = []

    async def make(**changes: Any) -> Lwm2mServer:
        srv = Lwm2mServer(server_config(tmp_path / f"data{len(servers)}", **changes))
        await srv.start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        await srv.stop()


@pytest.fixture
async def server(make_server: ServerFactory) -> Lwm2mServer:
    return await make_server()


def uri_of(server: Lwm2mServer) -> str:
    return f"coap://127.0.0.1:{server.coap_address.port}"


ClientFactory = Callable[..., Awaitable[Lwm2mClient]]


@pytest.fixture
async def make_client(server: Lwm2mServer) -> AsyncIterator[ClientFactory]:
    """``await make_client(endpoint, **kwargs)``: a started (and registered) client."""
    clients: list[Lwm2mClient] = []

    async def make(endpoint: str = "dev-1", register: bool = True, **kwargs: Any) -> Lwm2mClient:
        kwargs.setdefault("auto_update", False)
        client = Lwm2mClient(endpoint, uri_of(server), **kwargs)
        clients.append(client)
        await client.start()
        if register:
            await client.register()
        return client

    yield make
    for client in clients:
        await client.stop()


async def eventually(
    check: Callable[[], object], timeout: float = 5.0, interval: float = 0.02
) -> Any:
    """Poll ``check`` until it returns something truthy (and return it)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


async def next_event(events: Any, kind: str, timeout: float = 5.0) -> Any:
    """The next event of ``kind`` from a ``server.events()`` iterator (others are skipped)."""

    async def find() -> Any:
        async for event in events:
            if event.kind == kind:
                return event
        raise AssertionError("event stream ended")

    return await asyncio.wait_for(find(), timeout)
