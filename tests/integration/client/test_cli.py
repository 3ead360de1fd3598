"""``python -m lwm2m_client`` as a real process against the fake server."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from aiocoap.numbers.codes import Code

from object_models.content_format import ContentFormat

from .fake_server import FakeLwm2mServer, Notifications

REPO = Path(__file__).resolve().parents[3]


async def spawn(*args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lwm2m_client",
        *args,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_demo_device_runs_until_interrupted(server: FakeLwm2mServer) -> None:
    process = await spawn(
        "--endpoint", "cli-1", "--server", server.uri, "--lifetime", "60",
        "--temperature-period", "0.2", "--log-level", "WARNING",
    )  # fmt: skip
    try:
        up = await server.next_uplink("register", timeout=10)
        assert up.params["ep"] == "cli-1" and up.params["lt"] == "60"
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 5)
        assert line.startswith(b"registered cli-1") and b" as r1 " in line

        response = await server.request(Code.GET, "/3/0/0", accept=ContentFormat.TEXT)
        assert response.payload == b"pylwm2m"
        # The simulated sensor changes, so an observation of it gets notifications.
        notifications = Notifications(server.observe("/3303/0/5700", accept=ContentFormat.TEXT))
        await notifications.next()
        notifications.cancel()
        # Current Time ticks: observing it gives the value and then a notification per second
        # (README's `observe demo-1 /3/0/13`), not one answer and silence until pmax.
        clock = Notifications(server.observe("/3/0/13", accept=ContentFormat.TEXT))
        first = int((await clock.next()).payload)
        second = int((await clock.next()).payload)
        assert second > first
        clock.cancel()

        process.send_signal(signal.SIGINT)
        await server.next_uplink("deregister", timeout=10)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_coaps_without_credentials_is_refused_clearly() -> None:
    process = await spawn("--endpoint", "x", "--server", "coaps://127.0.0.1:5684")
    _, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 2
    assert b"DTLS" in stderr and b"psk" in stderr


async def test_ctrl_c_while_registering_stops_the_client() -> None:
    """A server that never answers keeps the client retrying its Register; Ctrl-C (SIGINT)
    must still stop it at once, not only after it registered."""
    loop = asyncio.get_running_loop()
    received: asyncio.Queue[bytes] = asyncio.Queue()

    class Silent(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            received.put_nowait(data)

    transport, _ = await loop.create_datagram_endpoint(Silent, local_addr=("127.0.0.1", 0))
    port = transport.get_extra_info("sockname")[1]
    process = await spawn("--endpoint", "hang-1", "--server", f"coap://127.0.0.1:{port}")
    try:
        await asyncio.wait_for(received.get(), 15)  # its first Register went out
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 10) == 130
        assert process.stderr is not None
        assert b"stopped before hang-1 was registered" in await process.stderr.read()
    finally:
        transport.close()
        if process.returncode is None:
            process.kill()
            await process.wait()
