"""DTLS sessions survive ``kill -9`` (issue 9, item 10).

A real ``lwm2m-server`` process (``python -m lwm2m_server``) on a tmp data dir; a PSK device
that keeps its session (our engine on a bare UDP socket, as many devices never handshake again
on their own) registers and updates; the process is killed with SIGKILL and started again on
the same data dir and ports. The device's next CON Update on its *old* session is answered
2.04; the server's records after the restart use sequence numbers above every one it used
before (none reused: they were reserved ahead); and a record captured before the crash, replayed
after it, gets no answer and is counted as a replay.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import aiocoap
import pytest
from aiocoap.numbers.codes import Code

from keystore.credentials import DeviceCredentials
from keystore.dtls import ApplicationData, ClientConfig
from keystore.dtls.record import parse_datagram
from keystore.store.credentials import SqliteCredentialStore
from lwm2m_server.config import ServerConfig
from tests.integration.server.test_persistence import ServerProcess

from . import coap
from .pki import PSK_IDENTITY, PSK_KEY
from .rawpeer import RawPeer, RawSocket


@pytest.fixture
def process(tmp_path: Path) -> Iterator[ServerProcess]:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with SqliteCredentialStore.open(ServerConfig(data_dir=data_dir).database) as store:
        store.put_device(DeviceCredentials.for_psk("dev-psk", PSK_IDENTITY, PSK_KEY))
    proc = ServerProcess(data_dir, tmp_path / "server.log", log_level="DEBUG")
    yield proc
    proc.stop()


def update(location: tuple[str, ...], mid: int) -> bytes:
    """A CON ``POST /rd/<id>`` without parameters (a registration refresh)."""
    message = aiocoap.Message(code=Code.POST)
    message.mtype = aiocoap.CON
    message.mid = mid
    message.token = mid.to_bytes(2, "big")
    message.opt.uri_path = location
    return bytes(message.encode())


async def answer(peer: RawPeer, server_seqs: list[int], timeout: float = 5.0) -> bytes | None:
    """The next decrypted record from the server; the record sequence numbers of everything
    the server sent on the way are appended to ``server_seqs``."""
    loop_time = peer._now
    deadline = loop_time() + timeout
    while loop_time() < deadline:
        data = await peer.socket.receive(max(0.01, deadline - loop_time()))
        if data is None:
            return None
        server_seqs += [r.seq for r in parse_datagram(data) if r.epoch == 1]
        for event in peer.engine.receive_datagram(data, loop_time()):
            if isinstance(event, ApplicationData):
                return event.data
    return None


async def test_session_survives_kill_9(process: ServerProcess) -> None:
    process.start()
    socket = await RawSocket.open(("127.0.0.1", process.coaps_port))
    peer = RawPeer(socket, ClientConfig(psk_identity=PSK_IDENTITY, psk=PSK_KEY))
    try:
        await peer.handshake()
        before: list[int] = []
        peer.send(coap.register("dev-psk", lifetime=300))
        created = await answer(peer, before)
        assert created is not None
        response = coap.decode(created)
        assert str(response.code) == "2.01 Created"
        location = tuple(response.opt.location_path)
        captured = peer.send(update(location, 0x0100))
        changed = await answer(peer, before)
        assert changed is not None and str(coap.decode(changed).code) == "2.04 Changed"

        process.kill9()
        process.start(process.coap_port, process.coaps_port)  # same data dir, same ports

        after: list[int] = []
        peer.send(update(location, 0x0101))
        changed = await answer(peer, after)
        assert changed is not None, process.log()[-3000:]
        assert str(coap.decode(changed).code) == "2.04 Changed"
        assert "restored 1 DTLS sessions" in process.log()
        assert after and min(after) > max(before)  # no sequence number used twice

        # the record answered before the crash, replayed: no answer (without DTLS replay
        # protection the restarted server, whose CoAP deduplication is empty, would answer it)
        socket.send(captured)
        assert await answer(peer, after, timeout=1.0) is None
        assert re.search(r"DTLS datagram from 127\.0\.0\.1:\d+ dropped: replay", process.log())
        # and the session is still good
        peer.send(update(location, 0x0102))
        changed = await answer(peer, after)
        assert changed is not None and str(coap.decode(changed).code) == "2.04 Changed"
    finally:
        peer.close()
