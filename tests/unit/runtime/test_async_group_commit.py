"""The drivers' asynchronous group commit (``AsyncCommitter``, what the server runs on Redis)
over real loopback sockets: an iteration's replies leave only when its commit answers, after
every earlier iteration's (a reply never precedes a write it may have read); the loop keeps
handling datagrams meanwhile; a commit that answers False withholds its iteration's replies
and the device's retransmission is handled again, never replayed from the deduplication
cache."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from lwm2m_runtime.coap import Code, Message, parse, serialize
from lwm2m_runtime.server import CoapServer

from .test_server import SERVER_DTLS, Device, Recorder, _udp_socket, eventually


class AsyncCommitter:
    """Keeps each ``commit_async`` call's ``done`` until the test answers it (as Redis would,
    later); ``commit()`` is never used when ``commit_async`` exists."""

    def __init__(self) -> None:
        self.waiting: list[Callable[[bool], None]] = []

    def commit(self) -> bool:
        raise AssertionError("the driver must use commit_async")

    def commit_async(self, done: Callable[[bool], None]) -> None:
        self.waiting.append(done)

    def answer(self, ok: bool) -> None:
        """Answer every waiting call, oldest first (the store's order)."""
        waiting, self.waiting = self.waiting, []
        for done in waiting:
            done(ok)


@pytest.fixture
async def served() -> AsyncIterator[tuple[CoapServer, Recorder, AsyncCommitter]]:
    recorder, committer = Recorder(), AsyncCommitter()
    coap = CoapServer(recorder, committer=committer)
    await coap.start(host="127.0.0.1", port=0, coaps_port=0, dtls_config=SERVER_DTLS)
    yield coap, recorder, committer
    await coap.stop()


def _received(sock: socket.socket) -> list[Message]:
    """What reached ``sock`` so far (loopback: a sent datagram is queued at once)."""
    out = []
    while True:
        try:
            out.append(parse(sock.recv(4096)))
        except BlockingIOError:
            return out


def _echo(mid: int, payload: bytes) -> bytes:
    token = mid.to_bytes(2, "big")
    return serialize(
        Message.request(Code.POST, "/echo", token=token, payload=payload).replace(mid=mid)
    )


async def test_replies_leave_when_their_commit_answers_in_flush_order(
    served: tuple[CoapServer, Recorder, AsyncCommitter],
) -> None:
    coap, recorder, committer = served
    assert coap.coap_address is not None
    with _udp_socket() as sock:
        sock.sendto(_echo(31, b"first"), coap.coap_address)
        await eventually(lambda: len(recorder.requests) == 1 and len(committer.waiting) >= 1)
        # the loop is not blocked by the commit in flight: the next request is handled
        sock.sendto(_echo(32, b"second"), coap.coap_address)
        await eventually(lambda: len(recorder.requests) == 2 and len(committer.waiting) >= 2)
        assert _received(sock) == []  # neither commit answered: no reply left

        first, *later = committer.waiting
        committer.waiting = []
        for done in reversed(later):  # a later answer cannot overtake the first
            done(True)
        assert _received(sock) == []
        first(True)  # both leave now, in order
        sock.setblocking(True)
        sock.settimeout(10)
        answers = [parse(sock.recv(4096)), parse(sock.recv(4096))]
    assert [a.mid for a in answers] == [31, 32]
    assert all(a.code == Code.CONTENT for a in answers)


async def test_a_failed_commit_withholds_and_the_retransmission_is_handled_again(
    served: tuple[CoapServer, Recorder, AsyncCommitter],
) -> None:
    coap, recorder, committer = served
    assert coap.coap_address is not None and coap.udp is not None
    with _udp_socket() as sock:
        sock.sendto(_echo(41, b"x"), coap.coap_address)
        await eventually(lambda: len(recorder.requests) == 1 and committer.waiting != [])
        committer.answer(False)
        assert coap.udp.withheld == 1 and _received(sock) == []

        sock.sendto(_echo(41, b"x"), coap.coap_address)  # the retransmission: handled again
        await eventually(lambda: len(recorder.requests) == 2 and committer.waiting != [])
        assert _received(sock) == []
        committer.answer(True)
        sock.setblocking(True)
        sock.settimeout(10)
        answer = parse(sock.recv(4096))
    assert answer.code == Code.CONTENT and answer.mid == 41


async def test_coaps_replies_wait_for_the_commit_too(
    served: tuple[CoapServer, Recorder, AsyncCommitter],
) -> None:
    coap, recorder, committer = served
    assert coap.coaps_address is not None
    async with Device(b"dev-b") as device:
        await device.connect(coap.coaps_address)
        committer.answer(True)  # whatever the handshake's iterations committed
        task = asyncio.ensure_future(device.request("/echo", b"z"))
        await eventually(lambda: len(recorder.requests) == 1 and committer.waiting != [])
        assert not task.done()  # handled, its reply held behind the commit
        committer.answer(True)
        answer = await asyncio.wait_for(task, 10)
    assert answer.code == Code.CONTENT and answer.payload.endswith(b" z")


class PolledCommitter(AsyncCommitter):
    """Answers only through ``poll`` (as the Redis store finds an answer that arrived)."""

    def __init__(self) -> None:
        super().__init__()
        self.answered = 0  # how many of the waiting calls Redis "answered"
        self.polls = 0

    def poll(self) -> None:
        self.polls += 1
        ready, self.waiting = self.waiting[: self.answered], self.waiting[self.answered :]
        self.answered = 0
        for done in ready:
            done(True)


async def test_a_new_iteration_first_releases_the_replies_already_committed() -> None:
    """When datagrams arrive while replies are held, the driver asks the committer for the
    answers that arrived before handling them: the held replies leave without waiting for the
    loop to get to the committer's own reader."""
    recorder, committer = Recorder(), PolledCommitter()
    coap = CoapServer(recorder, committer=committer)
    await coap.start(host="127.0.0.1", port=0)
    try:
        assert coap.coap_address is not None
        with _udp_socket() as sock:
            sock.sendto(_echo(51, b"a"), coap.coap_address)
            await eventually(lambda: len(recorder.requests) == 1 and committer.waiting != [])
            committer.answered = len(committer.waiting)  # Redis answered the first commit
            assert _received(sock) == []
            sock.sendto(_echo(52, b"b"), coap.coap_address)
            await eventually(lambda: len(recorder.requests) == 2)
            assert committer.polls >= 1
            sock.setblocking(True)
            sock.settimeout(10)
            first = parse(sock.recv(4096))
            assert first.mid == 51  # released when b arrived; b's commit still waits
            assert committer.waiting != []
    finally:
        await coap.stop()
