"""A real device completes its handshake and registers over loopback while sockets around it
keep sending cookie-less ClientHellos they never follow up (issue 11, item 6): the flood gets
HelloVerifyRequests (or is dropped, counted, beyond the budget), holds no session, and does
not keep the device out."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from keystore.dtls import ClientConfig, DtlsEngine
from keystore.store.credentials import SqliteCredentialStore
from lwm2m_runtime.server import run
from lwm2m_server.config import ServerConfig
from lwm2m_server.service import Lwm2mServer

from . import coap
from .conftest import coaps_port, provision
from .pki import PSK_IDENTITY, PSK_KEY, Pki
from .rawpeer import RawPeer, RawSocket


def psk_hello(rng: random.Random) -> bytes:
    engine = DtlsEngine.client(ClientConfig(psk_identity=b"flood", psk=b"f" * 16))
    engine.connect(0.0)
    (hello,) = engine.datagrams_to_send()
    return hello[:27] + rng.randbytes(32) + hello[59:]  # a fresh client random


def test_a_device_registers_during_a_client_hello_flood(tmp_path: Path, pki: Pki) -> None:
    """On uvloop (``lwm2m_runtime.server.run``), as ``lwm2m-server`` runs: it reads up to 32
    datagrams per loop iteration, so the flood and the device's datagrams share batches and
    the end-of-batch answering and its budget are what is exercised (the stdlib loop, which
    the other tests run on, reads one datagram per iteration)."""
    config = ServerConfig(host="127.0.0.1", coap_port=0, coaps_port=0,
                          data_dir=tmp_path / "data", open_registration=False)  # fmt: skip
    with SqliteCredentialStore.open(config.database) as store:
        provision(store, pki)

    async def main() -> None:
        server = Lwm2mServer(config)
        await server.start()
        try:
            await flood_and_register(server)
        finally:
            await server.stop()

    run(main())


async def flood_and_register(server: Lwm2mServer) -> None:
    endpoint = server.dtls
    address = ("127.0.0.1", coaps_port(server))
    rng = random.Random(3)
    hellos = [psk_hello(rng) for _ in range(64)]
    flooders = [await RawSocket.open(address) for _ in range(16)]
    done = asyncio.Event()
    sent = 0

    async def flood() -> None:
        nonlocal sent
        while not done.is_set():
            for sock in flooders:  # 16 per loop iteration: the server reads up to 32
                sock.send(hellos[sent % len(hellos)])
                sent += 1
            await asyncio.sleep(0)

    flooding = asyncio.create_task(flood())
    try:
        while sent < 500:
            await asyncio.sleep(0)
        peer = await RawPeer.connect(address, ClientConfig(psk_identity=PSK_IDENTITY, psk=PSK_KEY))
        try:
            peer.send(coap.register("dev-psk"))
            answer = await peer.receive(5.0)
            assert answer is not None and str(coap.decode(answer).code) == "2.01 Created"
        finally:
            peer.close()
        flooded_during = sent
    finally:
        done.set()
        await flooding
        for sock in flooders:
            sock.close()

    assert flooded_during > 500
    stats = endpoint.stats
    assert stats.handshakes_completed == 1 and stats.handshakes_started == 1
    assert len(endpoint.sessions) == 1 and endpoint.handshakes_in_progress == 0
    # the flood was seen: answered or dropped over the budget, never a session
    assert stats.hello_verify_requests + stats.hellos_dropped > 500
    assert stats.drops.get("hello_overload", 0) == stats.hellos_dropped
