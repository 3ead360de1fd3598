"""Fixtures: a ``Lwm2mServer`` in-process on an ephemeral loopback port with a fresh data
directory, and real ``lwm2m_client`` clients registered to it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from lwm2m_server.config import ServerConfig
from lwm2m_server.service import Lwm2mServer
from tests.live import DeviceFactory, coap_uri, devices, loopback_config


def server_config(data_dir: Path, **changes: Any) -> ServerConfig:
    return loopback_config(data_dir, **changes)


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


uri_of = coap_uri
ClientFactory = DeviceFactory


@pytest.fixture
async def make_client(server: Lwm2mServer) -> AsyncIterator[ClientFactory]:
    """``await make_client(endpoint, **kwargs)``: a started (and registered) client."""
    async with devices(server, "dev-1") as make:
        yield make


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


async def wait_for(condition: Any, what: str, timeout: float = 10.0) -> None:
    """Until ``condition()`` holds (checked every loop turn, no fixed sleep)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
