"""Fixtures: a real ``Lwm2mServer`` on loopback with a profiles folder, and real ``lwm2m_client``
devices that record every request the server sends them."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

from lwm2m_client.client import Lwm2mClient
from lwm2m_client.management import Request, Response
from lwm2m_server.config import ServerConfig
from lwm2m_server.service import Lwm2mServer

TEMPERATURE_PROFILE: dict[str, Any] = {
    "name": "temperature-sensor",
    "objects": {3: "1.2", 3303: "1.1"},
    "observe_strategy": "single",
    "on_connect": "observe_only",
    "resources": {
        "/3303/0/5700": {
            "key": "temperature",
            "kind": "telemetry",
            "observe": True,
            "attributes": {"pmin": 1, "pmax": 60},
        },
        "/3303/0/5701": {"key": "units", "kind": "attribute"},
        "/3/0/9": {"key": "batteryLevel", "kind": "telemetry", "observe": True},
        "/3/0/0": {"key": "manufacturer", "kind": "attribute"},
        "/3/0/14": {"key": "utcOffset", "kind": "attribute"},
    },
}


def write_profile(folder: Path, **changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy({**TEMPERATURE_PROFILE, **changes})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{doc['name']}.yaml").write_text(yaml.safe_dump(doc))
    return doc


@attrs.define
class Recorder:
    """The requests a client served: ``(operation, paths, query)`` tuples."""

    client: Lwm2mClient | None = None
    seen: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = attrs.field(factory=list)

    def __call__(self, request: Request, response: Response) -> None:
        assert self.client is not None
        path = (str(request.path),)
        if request.method == "FETCH":
            paths = tuple(str(p) for p in self.client.management.composite_paths(request))
            kind = "observe_composite" if request.observe == 0 else "read_composite"
            self.seen.append((kind, paths, ()))
        elif request.method == "GET" and request.observe == 0:
            self.seen.append(("observe", path, ()))
        elif request.method == "GET":
            self.seen.append(("read", path, ()))
        elif request.method == "PUT" and not request.payload:
            self.seen.append(("write_attributes", path, tuple(sorted(request.query))))
        else:
            self.seen.append((request.method.lower(), path, ()))

    def take(self) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
        seen, self.seen = self.seen, []
        return seen


ServerFactory = Callable[..., Awaitable[Lwm2mServer]]


@pytest.fixture
def profiles_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "profiles"
    folder.mkdir()
    return folder


@pytest.fixture
async def make_server(tmp_path: Path, profiles_dir: Path) -> AsyncIterator[ServerFactory]:
    servers: list[Lwm2mServer] = []

    async def make(**changes: Any) -> Lwm2mServer:
        config = ServerConfig(
            host="127.0.0.1",
            coap_port=0,
            coaps_port=0,
            data_dir=tmp_path / "data",
            profiles_dir=profiles_dir,
            request_timeout=3.0,
        )
        server = Lwm2mServer(attrs.evolve(config, **changes))
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        if server.profiles is not None or server._coap is not None:
            await server.stop()


ClientFactory = Callable[..., Awaitable[tuple[Lwm2mClient, Recorder]]]


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    clients: list[Lwm2mClient] = []

    async def make(
        server: Lwm2mServer, endpoint: str = "temp-1", **kwargs: Any
    ) -> tuple[Lwm2mClient, Recorder]:
        recorder = Recorder()
        kwargs.setdefault("auto_update", False)
        client = Lwm2mClient(
            endpoint,
            f"coap://127.0.0.1:{server.coap_address.port}",
            on_request=recorder,
            **kwargs,
        )
        recorder.client = client
        clients.append(client)
        await client.start()
        await client.register()
        return client, recorder

    yield make
    for client in clients:
        await client.stop()


async def settled(server: Lwm2mServer) -> None:
    """Wait until the profile engine has nothing running."""
    assert server.profiles is not None
    await server.profiles.idle()
