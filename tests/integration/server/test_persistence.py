"""Persistence across ``kill -9``: the server runs as a real process (``python -m lwm2m_server``),
clients register and are observed through the HTTP API, the process is killed with SIGKILL and
started again on the same port and data directory. Every registration must be listed again,
and a notification on a token from before the restart must be ACKed and stored (aiocoap alone
would answer it with RST: see docs/server.md, "aiocoap quirks").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lwm2m_client.client import Lwm2mClient
from tests.live import api_session

from ..processes import ServerProcess
from . import rawcoap as raw


@pytest.fixture
def process(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path, tmp_path / "server.log")
    yield proc
    proc.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with api_session() as session:
        yield session


async def get_json(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def observe(http: aiohttp.ClientSession, api: str, endpoint: str, path: str) -> None:
    async with http.post(f"{api}/clients/{endpoint}{path}/observe?timeout=10") as response:
        assert response.status == 200, await response.text()


async def test_restart_after_kill_with_real_clients(
    process: ServerProcess, http: aiohttp.ClientSession
) -> None:
    process.start()
    uri = f"coap://127.0.0.1:{process.coap_port}"
    clients = [Lwm2mClient(f"persist-{i}", uri, auto_update=False) for i in range(3)]
    try:
        for client in clients:
            await client.start()
            await client.register()
            await observe(http, process.api, client.endpoint, "/3303/0/5700")
        assert len(await get_json(http, f"{process.api}/clients")) == 3

        process.kill9()
        process.start(coap_port=process.coap_port)

        listed = await get_json(http, f"{process.api}/clients")
        assert sorted(c["endpoint"] for c in listed) == [c.endpoint for c in clients]
        for client in clients:
            observations = await get_json(
                http, f"{process.api}/clients/{client.endpoint}/observations"
            )
            assert [o["paths"] for o in observations["observations"]] == [["/3303/0/5700"]]
            client.set_value("/3303/0/5700", 33.5)  # notifies on the pre-restart token

        async def stored() -> bool:
            for client in clients:
                data = await get_json(http, f"{process.api}/clients/{client.endpoint}/telemetry")
                values = {p["path"]: p["value"] for p in data["points"]}
                if values.get("/3303/0/5700") != 33.5:
                    return False
            return True

        deadline = asyncio.get_running_loop().time() + 20
        while not await stored():
            assert asyncio.get_running_loop().time() < deadline, process.log_file.read_text()
            await asyncio.sleep(0.1)
        # the device kept its observation: the restarted server ACKed rather than RST
        assert all(client.observations.active for client in clients)
    finally:
        for client in clients:
            await client.stop()
    assert process.stop() == 0


class RawDevice:
    """One simulated device (a bare UDP socket): answers Observe with 2.05 and remembers the
    token, then sends notifications by hand."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.token = b""
        self.peer: raw.RawPeer

    def handle(self, msg: raw.Msg) -> raw.Msg:
        self.token = msg.token
        options = [(raw.OBSERVE, raw.uint_bytes(1)), (raw.CONTENT_FORMAT, b"")]
        return raw.Msg(raw.ACK, raw.CONTENT, 0, options=options, payload=b"20.0")

    def notification(self, value: str) -> raw.Msg:
        options = [(raw.OBSERVE, raw.uint_bytes(2)), (raw.CONTENT_FORMAT, b"")]
        return raw.Msg(raw.CON, raw.CONTENT, 0, self.token, options, value.encode())


async def gather_limited(coroutines: list[Any], limit: int = 64) -> list[Any]:
    semaphore = asyncio.Semaphore(limit)

    async def run(coroutine: Any) -> Any:
        async with semaphore:
            return await coroutine

    return await asyncio.gather(*(run(c) for c in coroutines))


@pytest.mark.slow
async def test_thousand_registrations_survive_kill(
    process: ServerProcess, http: aiohttp.ClientSession
) -> None:
    count = 1000
    process.start()
    server = ("127.0.0.1", process.coap_port)
    devices = [RawDevice(f"bulk-{i:04d}") for i in range(count)]
    try:
        for device in devices:
            device.peer = await raw.RawPeer.open(server, device.handle)
        await gather_limited(
            [raw.register(d.peer, d.endpoint, links="</3303/0>", lifetime=3600) for d in devices]
        )
        await gather_limited(
            [observe(http, process.api, d.endpoint, "/3303/0/5700") for d in devices], limit=32
        )
        assert all(d.token for d in devices)

        process.kill9()
        process.start(coap_port=process.coap_port)

        listed = await get_json(http, f"{process.api}/clients")
        assert sorted(c["endpoint"] for c in listed) == [d.endpoint for d in devices]

        answers = await gather_limited([d.peer.exchange(d.notification("31.5")) for d in devices])
        assert all(a.mtype == raw.ACK and a.code == raw.EMPTY for a in answers)
        for device in devices[:: count // 20]:
            data = await get_json(http, f"{process.api}/clients/{device.endpoint}/telemetry")
            assert {p["path"]: p["value"] for p in data["points"]}["/3303/0/5700"] == 31.5
    finally:
        for device in devices:
            if hasattr(device, "peer"):
                device.peer.close()


async def test_expired_while_down_is_swept(
    process: ServerProcess, http: aiohttp.ClientSession
) -> None:
    process.env["LWM2M_SERVER_LIFETIME_GRACE"] = "0"  # the environment overrides work too
    process.start()
    peer = await raw.RawPeer.open(("127.0.0.1", process.coap_port))
    try:
        await raw.register(peer, "short-lived", lifetime=1)
        await raw.register(peer, "long-lived", lifetime=3600)
        process.kill9()
        await asyncio.sleep(1.2)
        process.start(coap_port=process.coap_port)

        async def only_long() -> bool:
            listed = await get_json(http, f"{process.api}/clients")
            return [c["endpoint"] for c in listed] == ["long-lived"]

        # expired while the server was down: swept by the first timer tick after the start
        deadline = asyncio.get_running_loop().time() + 20
        while not await only_long():
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.2)
    finally:
        peer.close()
