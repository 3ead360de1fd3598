"""The bootstrap server on the runtime's CoAP layer, what the other bootstrap tests do not show:
the default all-addresses listener is one dual-stack socket serving IPv4 clients (and a
server-initiated bootstrap sent to an IPv4 address reaches the client through it); bad input is
answered as the RFC says and logged once per peer and minute, never with a traceback."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiocoap.numbers.codes import Code

from bootstrap_server.config import BootstrapServerConfig
from bootstrap_server.service import BootstrapServer
from lwm2m_client.transport import local_address
from lwm2m_runtime.address import Address
from lwm2m_runtime.coap import Type, parse
from tests.integration.bootstrap import fixtures

from .bsclient import BootstrapTestClient

make_bootstrap = fixtures.make_bootstrap
CONFIG = {
    "endpoint": "rt-1",
    "bootstrap_security": [{"mode": "nosec"}],
    "servers": [{"uri": "coap://127.0.0.1:5683", "short_server_id": 1, "lifetime": 120,
                 "security": {"mode": "nosec"}}],
}  # fmt: skip


@pytest.fixture
async def everywhere(tmp_path: Path) -> AsyncIterator[BootstrapServer]:
    """A bootstrap server listening on ``0.0.0.0`` (the default), any free port."""
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "rt.yaml").write_text(yaml.safe_dump(CONFIG))
    server = BootstrapServer(BootstrapServerConfig(
        host="0.0.0.0", coap_port=0, coaps=False, data_dir=tmp_path / "data",
        configs_dir=folder, step_timeout=2.0, step_retries=1))  # fmt: skip
    await server.start()
    yield server
    await server.stop()


async def test_dual_stack_listener_and_server_initiated_bootstrap(
    everywhere: BootstrapServer,
) -> None:
    port = everywhere.coap_address.port
    async with BootstrapTestClient("rt-1") as bs:
        assert (await bs.bootstrap(f"coap://127.0.0.1:{port}")).code == Code.CHANGED
        (first,) = await fixtures.sessions(everywhere, "rt-1")
        assert first["success"] is True
        # server-initiated, to an address given as IPv4 (not where the last /bs came from)
        where = local_address(bs.context)
        assert where is not None
        bs.done.clear()
        everywhere.start_bootstrap("rt-1", Address("127.0.0.1", where[1]))
        await asyncio.wait_for(bs.done.wait(), 10)
        second = (await fixtures.sessions(everywhere, "rt-1", 2))[0]
        assert second["success"] is True


async def test_bad_input_answered_and_logged_once(
    make_bootstrap: fixtures.Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bootstrap = await make_bootstrap(CONFIG)
    target = ("127.0.0.1", bootstrap.coap_address.port)
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)

        async def exchange(datagram: bytes) -> Any:
            sock.sendto(datagram, target)  # loopback UDP: never blocks
            return parse(await asyncio.wait_for(loop.sock_recv(sock, 2048), 10))

        for mid in (1, 2):
            # token length 9: a message format error, RST (RFC 7252 §3, §4.2)
            rst = await exchange(bytes([0x49, 0x02, 0, mid]) + b"t" * 9)
            assert (rst.mtype, rst.mid) == (Type.RST, mid)
            # Uri-Path "bs" but not UTF-8 in Uri-Query: 4.00 (RFC 7252 §5.10)
            bad = await exchange(bytes([0x41, 0x02, 1, mid, 0x7A, 0xB2]) + b"bs" + b"\x41\xff")
            assert (bad.mtype, bad.code, bad.mid) == (Type.ACK, 0x80, 256 + mid)
            # no ep=: refused by the bootstrap server itself, 4.00 with a diagnostic
            no_ep = await exchange(bytes([0x40, 0x02, 2, mid, 0xB2]) + b"bs")
            assert (no_ep.code, no_ep.mid) == (0x80, 512 + mid) and no_ep.payload
    lines = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len([r for r in lines if "format_error" in r.getMessage()]) == 1
    assert len([r for r in lines if "bad_utf8" in r.getMessage()]) == 1
    assert len([r for r in lines if "refused with 4.00" in r.getMessage()]) == 1
    assert all(r.exc_info is None for r in caplog.records)
