"""Fixtures of the firmware tests over real sockets: a started server with its HTTP API (admin
token, a 256 KiB package limit, two PSK devices ``dev-a`` and ``dev-b``, an explicit clock),
the download events it emitted, and an aiocoap client."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiocoap
import aiohttp
import attrs
import pytest

from keystore.credentials import DeviceCredentials
from keystore.store.credentials import SqliteCredentialStore
from lwm2m_runtime.http_auth import ApiAuthSettings
from lwm2m_server.api import create_server_app
from lwm2m_server.config import FirmwareSettings
from lwm2m_server.firmware.contracts import DownloadEvent
from lwm2m_server.firmware.setup import set_http_base
from lwm2m_server.service import Lwm2mServer
from tests import live
from tests.auth import ADMIN_TOKEN, HEADERS

PACKAGE = os.urandom(200 * 1024 + 123)  # ~200 KiB, not a whole number of blocks
SHA = hashlib.sha256(PACKAGE).hexdigest()
LIMIT = 256 * 1024


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@attrs.define
class Running:
    server: Lwm2mServer
    http: str
    clock: Clock
    events: list[DownloadEvent]

    @property
    def downloads(self) -> Any:
        assert self.server.downloads is not None
        return self.server.downloads

    async def upload(self, data: bytes = PACKAGE, **query: str) -> aiohttp.ClientResponse:
        params = {"kind": "firmware", "name": "tracker-fw", "version": "1.4.2", **query}
        async with aiohttp.ClientSession() as session:
            response = await session.post(
                f"{self.http}/api/packages",
                params=params,
                data=data,
                headers={**HEADERS, "Content-Type": "application/octet-stream"},
            )
            await response.read()
            return response


PSK_A = (b"device-a-identity", b"device-a-key-16b")
PSK_B = (b"device-b-identity", b"device-b-key-16b")


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    config = live.loopback_config(
        tmp_path / "data",
        api_auth=ApiAuthSettings(admin_token=ADMIN_TOKEN),
        firmware=FirmwareSettings(max_package_size=LIMIT),
    )
    with SqliteCredentialStore.open(config.database) as store:
        store.put_device(DeviceCredentials.for_psk("dev-a", *PSK_A))
        store.put_device(DeviceCredentials.for_psk("dev-b", *PSK_B))
    clock = Clock()
    async with (
        live.running(config, clock=clock) as server,
        live.listening(create_server_app(server), access_log=None) as port,
    ):
        assert server.downloads is not None
        set_http_base(server.downloads, config, port)
        events: list[DownloadEvent] = []
        server.downloads.subscribe(events.append)
        yield Running(server, f"http://127.0.0.1:{port}", clock, events)


@pytest.fixture
async def coap_client() -> AsyncIterator[Any]:
    context = await aiocoap.Context.create_client_context()
    yield context
    await context.shutdown()
