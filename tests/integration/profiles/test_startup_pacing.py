"""Start-up with many restored registrations (issue 11 item 2): CoAP is served first, the
profiles of the restored clients are re-applied in the background, paced, each client once."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from tests.integration.server.rawcoap import (
    CHANGED,
    CREATED,
    POST,
    PUT,
    Msg,
    RawPeer,
    decode,
    encode,
    register,
    request,
)

from .conftest import ServerFactory, settled, write_profile

LINKS = "</3/0>,</3303/0>"
NOT_FOUND_CODE = 0x84  # 4.04


async def _register_from(sock: socket.socket, server: tuple[str, int], endpoint: str) -> None:
    """Register ``endpoint`` from ``sock`` (a non-blocking socket the loop does not watch
    afterwards, so what the server sends it later stays in its buffer to be counted)."""
    loop = asyncio.get_running_loop()
    msg = request(
        POST, ["rd"], query=[f"ep={endpoint}", "lt=3600", "lwm2m=1.1", "b=U"],
        payload=LINKS.encode(), content_format=40,
    )  # fmt: skip
    msg.mid = hash(endpoint) & 0xFFFF
    await loop.sock_sendto(sock, encode(msg), server)
    while True:
        data = await asyncio.wait_for(loop.sock_recv(sock, 2048), 5.0)
        answer = decode(data)
        if answer.mid == msg.mid:
            assert answer.code == CREATED
            return


def _drain(sock: socket.socket) -> list[Msg]:
    messages = []
    while True:
        try:
            messages.append(decode(sock.recv(2048)))
        except BlockingIOError:
            return messages


async def test_a_register_is_answered_before_the_restored_clients_are_all_contacted(
    make_server: ServerFactory, profiles_dir: Path
) -> None:
    restored = 100  # more than the engine's restart concurrency (32)
    # one socket per device: the CoAP layer sends one request at a time per peer (NSTART 1)
    devices = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(restored)]
    try:
        for device in devices:
            device.bind(("127.0.0.1", 0))
            device.setblocking(False)
        first = await make_server()
        port = first.coap_address.port
        for n, device in enumerate(devices):
            await _register_from(device, ("127.0.0.1", port), f"temp-{n:03d}")
        await first.stop()
        for device in devices:
            _drain(device)
        # a profile that sends every restored client requests; they never answer, so no
        # application finishes during the test (a 30 s request timeout)
        write_profile(profiles_dir, endpoints=["temp-*"])
        second = await make_server(coap_port=port, request_timeout=30.0)
        probe = await RawPeer.open(("127.0.0.1", port))
        try:
            await register(probe, "newcomer", links=LINKS)
        finally:
            probe.close()
        contacted = sum(1 for device in devices if _drain(device))
        # before: one task per restored client, all run in the first loop iteration, so every
        # restored client had its request before the Register was even read
        assert contacted < restored
        assert second.profiles is not None and second.profiles.restart_waiting > 0
    finally:
        for device in devices:
            device.close()


async def test_a_client_that_speaks_before_its_turn_is_applied_then_and_only_once(
    make_server: ServerFactory, profiles_dir: Path
) -> None:
    restored = 40
    puts: dict[str, list[int]] = {}

    def answer(endpoint: str):  # type: ignore[no-untyped-def]
        def handler(msg: Msg) -> Msg:
            if msg.code == PUT:
                puts.setdefault(endpoint, []).append(msg.mid)
                return Msg(0, CHANGED, 0)
            return Msg(0, NOT_FOUND_CODE, 0)  # reads/observes refused: recorded as problems

        return handler

    first = await make_server()
    port = first.coap_address.port
    server = ("127.0.0.1", port)
    peers = {f"temp-{n:03d}": await RawPeer.open(server) for n in range(restored)}
    try:
        ids = {
            ep: await register(peer, ep, lifetime=3600, links=LINKS) for ep, peer in peers.items()
        }
        await first.stop()
        for endpoint, peer in peers.items():
            peer.handler = answer(endpoint)
        write_profile(profiles_dir, endpoints=["temp-*"])
        second = await make_server(coap_port=port)
        last = f"temp-{restored - 1:03d}"  # the engine's queue is in endpoint order: the last
        update = request(POST, ["rd", ids[last]])
        assert (await peers[last].exchange(update)).code == 0x44  # 2.04
        deadline = asyncio.get_running_loop().time() + 5.0
        while last not in puts:
            assert asyncio.get_running_loop().time() < deadline, "the Update was not applied"
            await asyncio.sleep(0.005)
        # applied on its Update, long before the pacer reached the end of the queue
        assert len(puts) < restored
        await settled(second)
        assert sorted(puts) == sorted(peers)
        assert {ep: len(set(mids)) for ep, mids in puts.items()} == dict.fromkeys(peers, 1)
    finally:
        for peer in peers.values():
            peer.close()
