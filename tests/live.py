"""The pieces of "a real server, its HTTP API and real demo devices" that the integration tests
share, so that each test file's fixtures only say what is particular to it (a config change, a
device's defaults): an in-process ``Lwm2mServer`` on ephemeral loopback ports with its data under
the test's ``tmp_path``, the API in an aiohttp test server on a free port, and ``lwm2m_client``
devices started, registered and stopped at the end.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import attrs
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from lwm2m_client.client import Lwm2mClient
from lwm2m_server.api import create_app
from lwm2m_server.config import ServerConfig
from lwm2m_server.service import Lwm2mServer
from tests.auth import HEADERS

Http = TestClient[web.Request, None]
"""An HTTP client of a test server (``TestServer`` has no typed app)."""
DeviceFactory = Callable[..., Awaitable[Lwm2mClient]]


def loopback_config(data_dir: Path, **changes: Any) -> ServerConfig:
    """A server config on 127.0.0.1 with ephemeral CoAP and CoAPs ports (tests run in
    parallel), its data in ``data_dir``, and ``changes`` on top."""
    config = ServerConfig(host="127.0.0.1", coap_port=0, coaps_port=0, data_dir=data_dir)
    return attrs.evolve(config, **changes)


@asynccontextmanager
async def running(config: ServerConfig, **options: Any) -> AsyncIterator[Lwm2mServer]:
    """The server started with ``config`` (``options``: ``Lwm2mServer``'s, e.g. a clock),
    stopped on the way out."""
    server = Lwm2mServer(config, **options)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[Http]:
    """An HTTP client for ``app``, served on a free loopback port."""
    async with TestServer(app) as web_server:
        client: Http = TestClient(web_server)
        async with client:
            yield client


@asynccontextmanager
async def listening(app: web.Application, **runner_options: Any) -> AsyncIterator[int]:
    """``app`` served for real on 127.0.0.1 and a free port (yielded): for what a device or a
    process outside the test's HTTP client must reach (package downloads, a browser)."""
    runner = web.AppRunner(app, **runner_options)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


@asynccontextmanager
async def api_of(server: Lwm2mServer, **app_options: Any) -> AsyncIterator[Http]:
    """An HTTP client for the server's API (``create_app``, the server's model registry)."""
    async with serving(create_app(server, registry=server.registry, **app_options)) as client:
        yield client


def coap_uri(server: Lwm2mServer) -> str:
    return f"coap://127.0.0.1:{server.coap_address.port}"


def coaps_uri(server: Lwm2mServer) -> str:
    return f"coaps://127.0.0.1:{server.coaps_address.port}"


@asynccontextmanager
async def devices(
    server: Lwm2mServer, default_endpoint: str | None = None, **defaults: Any
) -> AsyncIterator[DeviceFactory]:
    """``await make(endpoint, register=True, **options)``: a started demo device of ``server``
    (over CoAPs when ``psk`` is given), registered unless ``register=False``; ``defaults`` are
    the options a test file gives every device (``auto_update`` is off unless said). All are
    stopped on the way out."""
    made: list[Lwm2mClient] = []

    async def make(
        endpoint: str | None = default_endpoint, register: bool = True, **options: Any
    ) -> Lwm2mClient:
        assert endpoint is not None, "an endpoint name is needed"
        options = {"auto_update": False, **defaults, **options}
        uri = coaps_uri(server) if "psk" in options else coap_uri(server)
        device = Lwm2mClient(endpoint, uri, **options)
        made.append(device)
        await device.start()
        if register:
            await device.register()
        return device

    try:
        yield make
    finally:
        for device in made:
            await device.stop()


async def next_sse_event(stream: ClientResponse, kind: str, timeout: float = 5.0) -> Any:
    """The JSON data of the next event of ``kind`` on a server-sent event stream (``GET
    /api/event``, either dialect); other events are skipped. Fails when the stream ends or
    nothing of ``kind`` comes within ``timeout`` seconds."""

    async def find() -> Any:
        event = None
        while True:
            raw = await stream.content.readline()
            if not raw:
                raise AssertionError("event stream ended")
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == kind:
                return json.loads(line.removeprefix("data: "))

    return await asyncio.wait_for(find(), timeout)


@asynccontextmanager
async def api_session() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP session with the tests' admin token for server processes' APIs: 30 s per
    request, no limit between the reads of an event stream."""
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout, headers=HEADERS) as session:
        yield session
