"""What the bootstrap integration tests share (here and in tests/integration/client): the real
LwM2M server and bootstrap servers in-process on ephemeral loopback ports, sharing one data
folder so that credentials the bootstrap server provisions land in the LwM2M server's keystore.
Import the fixtures into a test module to use them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bootstrap_server.config import BootstrapServerConfig
from bootstrap_server.service import BootstrapServer
from lwm2m_runtime.http_auth import ApiAuthSettings
from lwm2m_server.service import Lwm2mServer
from tests.auth import ADMIN_TOKEN
from tests.integration.server.conftest import server_config

Factory = Callable[..., Awaitable[BootstrapServer]]


@pytest.fixture
async def lwm2m_server(tmp_path: Path) -> AsyncIterator[Lwm2mServer]:
    server = Lwm2mServer(server_config(tmp_path / "data"))
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def make_bootstrap(tmp_path: Path) -> AsyncIterator[Factory]:
    """``await make_bootstrap(*config_docs, **settings)``: a started bootstrap server (NoSec
    only unless the settings say ``coaps=True``)."""
    started: list[BootstrapServer] = []

    async def make(*docs: dict[str, Any], **changes: Any) -> BootstrapServer:
        folder = tmp_path / "configs"
        folder.mkdir(exist_ok=True)
        for index, doc in enumerate(docs):
            (folder / f"c{index}.yaml").write_text(yaml.safe_dump(doc))
        settings: dict[str, Any] = {
            "coaps": False,
            "api_auth": ApiAuthSettings(admin_token=ADMIN_TOKEN),
            **changes,
        }
        config = BootstrapServerConfig(host="127.0.0.1", coap_port=0, data_dir=tmp_path / "data",
                                       configs_dir=folder, step_timeout=2.0, step_retries=1,
                                       **settings)  # fmt: skip
        server = BootstrapServer(config)
        await server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        await server.stop()


async def sessions(bootstrap: BootstrapServer, endpoint: str, count: int = 1,
                   wait: float = 15.0) -> list[dict[str, Any]]:  # fmt: skip
    """The endpoint's recorded sessions once there are ``count`` of them (newest first)."""
    for _ in range(int(wait / 0.02)):
        found = bootstrap.store.sessions(endpoint)
        if len(found) >= count:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"{endpoint}: fewer than {count} sessions recorded")


def coap_uri(server: Any) -> str:
    address = server.coap_address
    return f"coap://{address.host}:{address.port}"
