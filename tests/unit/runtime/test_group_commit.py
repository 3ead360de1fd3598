"""The drivers' group-commit hook (``CoapServer(committer=...)``) over real loopback sockets,
NoSec and CoAPs: the committer runs before the iteration's replies leave; when it fails, no
reply leaves and the retransmitted request is handled again (never replayed from the
deduplication cache); once it succeeds, the retransmission is answered."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from lwm2m_runtime.coap import Code, Message, parse, serialize
from lwm2m_runtime.server import CoapServer

from .test_server import SERVER_DTLS, Device, Recorder, _udp_socket, eventually


class Committer:
    def __init__(self) -> None:
        self.ok = False
        self.calls = 0

    def commit(self) -> bool:
        self.calls += 1
        return self.ok


@pytest.fixture
async def served() -> AsyncIterator[tuple[CoapServer, Recorder, Committer]]:
    recorder, committer = Recorder(), Committer()
    coap = CoapServer(recorder, committer=committer)
    await coap.start(host="127.0.0.1", port=0, coaps_port=0, dtls_config=SERVER_DTLS)
    yield coap, recorder, committer
    await coap.stop()


def _nothing_received(sock: socket.socket) -> bool:
    try:
        sock.recv(4096)
    except BlockingIOError:
        return True
    return False


async def test_failed_commit_withholds_the_reply_over_udp(
    served: tuple[CoapServer, Recorder, Committer],
) -> None:
    coap, recorder, committer = served
    assert coap.coap_address is not None and coap.udp is not None
    echo = Message.request(Code.POST, "/echo", token=b"g1", payload=b"x").replace(mid=21)
    with _udp_socket() as sock:
        sock.sendto(serialize(echo), coap.coap_address)
        await eventually(lambda: len(recorder.requests) == 1 and coap.udp.withheld == 1)  # type: ignore[union-attr]
        assert _nothing_received(sock)  # loopback: a sent reply would be queued already

        sock.sendto(serialize(echo), coap.coap_address)  # the retransmission: handled again
        await eventually(lambda: len(recorder.requests) == 2 and coap.udp.withheld == 2)  # type: ignore[union-attr]
        assert _nothing_received(sock)

        committer.ok = True
        sock.sendto(serialize(echo), coap.coap_address)
        await eventually(lambda: len(recorder.requests) == 3)
        sock.setblocking(True)
        sock.settimeout(10)
        answer = parse(sock.recv(4096))
    assert answer.code == Code.CONTENT and answer.mid == 21


async def test_failed_commit_withholds_the_reply_over_coaps(
    served: tuple[CoapServer, Recorder, Committer],
) -> None:
    coap, recorder, committer = served
    assert coap.coaps_address is not None and coap.coaps is not None
    async with Device(b"dev-a") as device:
        await device.connect(coap.coaps_address)
        calls = committer.calls
        request = device.request("/echo", b"y")
        task = asyncio.ensure_future(request)
        # the device's CON retransmission reaches the handler again: nothing was replayed
        await eventually(lambda: len(recorder.requests) == 2, timeout=15)
        assert not task.done() and committer.calls > calls
        assert coap.coaps.withheld == 2
        committer.ok = True
        answer = await task
    assert answer.code == Code.CONTENT and answer.payload.endswith(b" y")
