"""Sinks: the JSON-lines file and MQTT against a real broker (Debian's mosquitto, started here on
a free port). A broker that is down must neither block the server nor cost the sqlite copy; the
copies queued meanwhile reach the broker once it is up."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lwm2m_server.config import SinkSettings
from lwm2m_server.profiles.sinks.base import QueuedSink
from lwm2m_server.service import Lwm2mServer

from .conftest import ClientFactory, ServerFactory, settled, write_profile

MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Broker:
    def __init__(self, folder: Path, port: int) -> None:
        self.port = port
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {folder}/\n"
            f"user {getpass.getuser()}\n"  # as root it would switch to 'mosquitto': no write access
        )
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        assert MOSQUITTO is not None
        self.proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 15  # a loaded CI box can take seconds to start a process
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port)):
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited: {self.proc.stderr.read()!r}")  # type: ignore[union-attr]
            await asyncio.sleep(0.02)
        raise AssertionError("mosquitto did not listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if MOSQUITTO is None:
        pytest.skip("the mosquitto binary is missing (Debian: apt-get install mosquitto)")
    pytest.importorskip("aiomqtt", reason="aiomqtt is not installed (pip install aiomqtt)")
    broker = Broker(tmp_path, free_port())
    yield broker
    broker.stop()


@contextlib.asynccontextmanager
async def subscriber(
    port: int, session: str | None = None
) -> AsyncIterator[asyncio.Queue[tuple[str, Any]]]:
    """Messages on ``lwm2m/#``; with ``session`` a persistent session, so what is published
    while it is away waits in the broker (no race with a sink that reconnects at once)."""
    import aiomqtt

    received: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    persistent = {"identifier": session, "clean_session": False} if session else {}
    async with aiomqtt.Client("127.0.0.1", port, **persistent) as client:  # type: ignore[arg-type]
        await client.subscribe("lwm2m/#", qos=1)

        async def pump() -> None:
            async for message in client.messages:
                payload = message.payload
                assert isinstance(payload, bytes | bytearray)
                received.put_nowait((str(message.topic), json.loads(payload)))

        task = asyncio.create_task(pump())
        try:
            yield received
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def until(
    queue: asyncio.Queue[tuple[str, Any]], topic: str, key: str, value: object
) -> dict[str, Any]:
    async def find() -> dict[str, Any]:
        while True:
            got, data = await queue.get()
            if got == topic and data.get("values", data).get(key) == value:
                return dict(data)

    return await asyncio.wait_for(find(), 10)


async def test_mqtt_and_jsonl_copies(
    broker: Broker,
    make_server: ServerFactory,
    make_client: ClientFactory,
    profiles_dir: Path,
    tmp_path: Path,
) -> None:
    await broker.start()
    write_profile(profiles_dir, endpoints=["temp-*"], on_connect="read_mapped")
    jsonl = tmp_path / "out" / "values.jsonl"
    sinks = SinkSettings(jsonl=jsonl, mqtt=f"mqtt://127.0.0.1:{broker.port}")
    async with subscriber(broker.port) as received:
        server = await make_server(sinks=sinks)
        client, _ = await make_client(server)
        await settled(server)
        attributes = await until(received, "lwm2m/temp-1/attributes", "manufacturer", "pylwm2m")
        assert attributes["ep"] == "temp-1" and attributes["profile"] == "temperature-sensor"
        client.set_value("/3303/0/5700", 26.5)
        telemetry = await until(received, "lwm2m/temp-1/telemetry", "temperature", 26.5)
        assert isinstance(telemetry["ts"], int)
    # the JSONL sink writes on its own schedule: wait for the lines, do not assume they are there
    lines = await jsonl_lines(
        jsonl,
        lambda rs: (
            any(r["kind"] == "telemetry" and r["values"].get("temperature") == 26.5 for r in rs)
            and any(r["kind"] == "attributes" and r.get("units") == "Cel" for r in rs)
        ),
    )
    assert any(r["kind"] == "telemetry" and r["values"].get("temperature") == 26.5 for r in lines)
    assert any(r["kind"] == "attributes" and r.get("units") == "Cel" for r in lines)


async def jsonl_lines(
    path: Path, complete: Callable[[list[dict[str, Any]]], bool], timeout: float = 15
) -> list[dict[str, Any]]:
    """The file's records once ``complete`` holds for them (or, after ``timeout``, as they are,
    so the assertions that follow say what is missing)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        # a line being written has no newline yet: only whole lines count
        records = [
            json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")
        ]
        if complete(records) or asyncio.get_running_loop().time() > deadline:
            return records
        await asyncio.sleep(0.02)


async def test_a_broker_that_is_down_blocks_nothing_and_catches_up(
    broker: Broker,
    make_server: ServerFactory,
    make_client: ClientFactory,
    profiles_dir: Path,
) -> None:
    write_profile(profiles_dir, endpoints=["temp-*"])
    await broker.start()  # a persistent session first, then the broker goes away
    async with subscriber(broker.port, session="watcher"):
        pass
    broker.stop()
    server: Lwm2mServer = await make_server(
        sinks=SinkSettings(mqtt=f"mqtt://127.0.0.1:{broker.port}")
    )
    assert server.profiles is not None
    sink = server.profiles.sinks.sinks[0]
    assert isinstance(sink, QueuedSink)
    sink.retry_max = 0.3
    client, _ = await make_client(server)
    await settled(server)
    client.set_value("/3303/0/5700", 11.5)
    for _ in range(250):  # sqlite has it at once, whatever the broker
        latest = {p.key: p.value for p in server.telemetry_latest("temp-1").values()}
        if latest.get("temperature") == 11.5:
            break
        await asyncio.sleep(0.02)
    assert latest.get("temperature") == 11.5
    assert sink.failing and len(sink) > 0
    await broker.start()
    await asyncio.wait_for(sink.flush(10), 11)
    async with subscriber(broker.port, session="watcher") as received:
        await until(received, "lwm2m/temp-1/telemetry", "temperature", 11.5)
    assert not sink.failing and sink.dropped == 0
