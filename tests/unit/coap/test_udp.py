"""The asyncio UDP endpoint over real loopback sockets (few tests: the protocol is tested in
memory; these check the bytes really move, the timer really fires, bad input does not stop it)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from lwm2m_runtime.coap import (
    Code,
    Event,
    Message,
    Parameters,
    RequestReceived,
    Type,
    parse,
    serialize,
)
from lwm2m_runtime.udp import MAX_BATCH, UdpEndpoint, open_udp_endpoint, use_uvloop


async def _device() -> UdpEndpoint:
    box: list[UdpEndpoint] = []

    def handler(event: Event) -> None:
        if isinstance(event, RequestReceived):
            payload = "/".join(event.message.uri_path).encode()
            box[0].endpoint.respond(event.exchange, Message.response(Code.CONTENT, payload * 300))

    device = await open_udp_endpoint("127.0.0.1", 0, handler)
    box.append(device)
    return device


async def test_request_and_block2_response_over_loopback() -> None:
    device = await _device()
    server = await open_udp_endpoint("127.0.0.1", 0)
    try:
        response = await asyncio.wait_for(
            server.request(device.local_address, Message.request(Code.GET, "/3/0/9")), 10
        )
        assert response.code == Code.CONTENT and response.payload == b"3/0/9" * 300
    finally:
        server.close()
        device.close()


def _raw_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def test_malformed_datagram_gets_rst_and_the_endpoint_keeps_serving() -> None:
    device = await _device()
    loop = asyncio.get_running_loop()
    sock = _raw_socket()
    try:
        sock.sendto(
            b"\x49\x01\xbe\xef" + b"t" * 9, device.local_address
        )  # loopback UDP: never blocks
        data = await asyncio.wait_for(loop.sock_recv(sock, 2048), 10)
        assert parse(data).mtype is Type.RST and parse(data).mid == 0xBEEF
        request = Message.request(Code.GET, "/1", token=b"k").replace(mid=7)
        sock.sendto(serialize(request), device.local_address)  # loopback UDP: never blocks
        answer = parse(await asyncio.wait_for(loop.sock_recv(sock, 2048), 10))
        assert (answer.mtype, answer.code, answer.mid) == (Type.ACK, Code.CONTENT, 7)
    finally:
        sock.close()
        device.close()


async def test_retransmission_timer_fires_on_the_loop() -> None:
    """A device that ignores the first transmission: the request still completes."""
    server = await open_udp_endpoint("127.0.0.1", 0, params=Parameters(ack_timeout=0.05))
    loop = asyncio.get_running_loop()
    sock = _raw_socket()
    try:
        pending = asyncio.ensure_future(
            server.request(sock.getsockname(), Message.request(Code.GET, "/3/0/0"))
        )
        first = parse(await asyncio.wait_for(loop.sock_recv(sock, 2048), 10))
        again = parse(await asyncio.wait_for(loop.sock_recv(sock, 2048), 10))  # retransmitted
        assert again.mid == first.mid and again.token == first.token
        ack = Message(Type.ACK, Code.CONTENT, again.mid, again.token, (), b"ok")
        sock.sendto(serialize(ack), server.local_address)  # loopback UDP: never blocks
        assert (await asyncio.wait_for(pending, 10)).payload == b"ok"
        assert server.endpoint.counters["retransmissions"] >= 1
    finally:
        sock.close()
        server.close()


def _drain(sock: socket.socket, into: list[Message]) -> None:
    while True:
        try:
            into.append(parse(sock.recv(2048)))
        except BlockingIOError:
            return


async def test_a_backlog_in_the_socket_is_handled_in_one_iteration_and_one_commit() -> None:
    """Requests already waiting in the socket are read in the same loop iteration, up to
    ``MAX_BATCH`` (uvloop reads 32 datagrams per wake-up, the stdlib loop one), so one group
    commit covers them all; no reply leaves before the commit that covers its request."""
    box: list[UdpEndpoint] = []
    handled = 0

    def handler(event: Event) -> None:
        nonlocal handled
        if isinstance(event, RequestReceived):
            handled += 1
            box[0].endpoint.respond(event.exchange, Message.response(Code.CHANGED))

    device = _raw_socket()
    answers: list[Message] = []
    commits: list[tuple[int, int]] = []  # (requests handled, replies the device had) per commit

    class Committer:
        def commit(self) -> bool:
            _drain(device, answers)
            commits.append((handled, len(answers)))
            return True

    listening = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # the whole burst fits
    listening.bind(("127.0.0.1", 0))
    server = await open_udp_endpoint("", 0, handler, sock=listening)
    box.append(server)
    server.committer = Committer()
    count = MAX_BATCH + 40
    try:
        for mid in range(count):  # loopback UDP: every datagram is in the socket on return
            request = Message(Type.CON, Code.POST, mid, b"t", ((11, b"rd"),))
            device.sendto(serialize(request), server.local_address)
        for _ in range(1000):
            await asyncio.sleep(0.005)
            _drain(device, answers)
            if len(answers) >= count:
                break
        assert sorted(a.mid for a in answers) == list(range(count))
        assert all(a.code == Code.CHANGED for a in answers)
        batches = [(n, seen) for n, seen in commits if n]
        assert batches[0][0] >= MAX_BATCH  # uvloop may read up to 31 more after the backlog
        assert batches[0][1] == 0  # nothing answered before the first commit
        assert batches[1][0] == count  # the rest in the next iteration
        assert batches[1][1] == batches[0][0]  # ... and answered only after its commit
    finally:
        device.close()
        server.close()


def test_uvloop_policy_is_optional() -> None:
    pytest.importorskip("uvloop")
    before = asyncio.get_event_loop_policy()
    try:
        assert use_uvloop() is True
        loop = asyncio.new_event_loop()
        try:
            assert type(loop).__module__.startswith("uvloop")
        finally:
            loop.close()
    finally:
        asyncio.set_event_loop_policy(before)
