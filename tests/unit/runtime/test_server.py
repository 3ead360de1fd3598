"""The runtime's server facade (``lwm2m_runtime.server.CoapServer``) and its CoAPs glue
(``lwm2m_runtime.coaps``) over real loopback sockets: a few end-to-end checks that bytes move,
identities arrive, answers are matched to the right DTLS session and bad input is answered and
logged once. The protocol itself is tested in memory (``tests/unit/coap``)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from keystore.coaps import EndpointSettings, Session
from keystore.dtls import ClientConfig, ServerConfig
from keystore.dtls.identity import PskIdentity
from keystore.modes import SecurityMode
from keystore.store.database import SqliteDatabase
from keystore.store.dtls_sessions import SqliteDtlsSessionStore
from lwm2m_runtime.coap import (
    Code,
    Event,
    Message,
    RequestReceived,
    Type,
    parse,
    serialize,
)
from lwm2m_runtime.coaps import CoapsEndpoint
from lwm2m_runtime.server import CoapServer, IncomingRequest, Peer
from object_models.errors import Lwm2mError, ResponseCode

PSKS = {b"dev-a": b"0123456789abcdef", b"dev-b": b"fedcba9876543210"}
SERVER_DTLS = ServerConfig(
    cipher_suites=ClientConfig(psk_identity=b"i", psk=b"k").cipher_suites,
    psk_for_identity=PSKS.get,
)


def _client_config(identity: bytes) -> ClientConfig:
    return ClientConfig(psk_identity=identity, psk=PSKS[identity])


async def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for ``condition`` (checked once per loop turn, a few ms apart) or fail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)


class Recorder:
    """A handler that answers ``/echo`` (payload back, with the caller's identity), ``/later``
    (after an await), ``/refuse`` (an Lwm2mError) and records every request."""

    def __init__(self) -> None:
        self.requests: list[IncomingRequest] = []

    def __call__(self, request: IncomingRequest) -> Message | Awaitable[Message]:
        self.requests.append(request)
        path = request.message.uri_path
        if path == ["refuse"]:
            raise Lwm2mError("no such thing", code=ResponseCode.FORBIDDEN)
        if path == ["later"]:
            return self._later(request)
        who = request.identity
        text = f"{who.mode.name} {request.address[0]} {request.message.payload.decode()}"
        return Message.response(Code.CONTENT, text.encode())

    async def _later(self, request: IncomingRequest) -> Message:
        await asyncio.sleep(0)
        return Message.response(Code.CHANGED, b"later")


@pytest.fixture
async def server() -> AsyncIterator[tuple[CoapServer, Recorder]]:
    recorder = Recorder()
    coap = CoapServer(recorder)
    await coap.start(host="127.0.0.1", port=0, coaps_port=0, dtls_config=SERVER_DTLS)
    yield coap, recorder
    await coap.stop()


def _udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def _exchange(sock: socket.socket, to: tuple[str, int], message: Message) -> Message:
    sock.sendto(serialize(message), to)  # loopback UDP: never blocks
    loop = asyncio.get_running_loop()
    return parse(await asyncio.wait_for(loop.sock_recv(sock, 4096), 10))


class Device:
    """A CoAPs client on our glue: answers the server's requests with ``hello from <id>``, or
    holds them (``hold``) so a test can decide."""

    def __init__(self, identity: bytes) -> None:
        self.identity = identity
        self.coaps: CoapsEndpoint | None = None
        self.session: Session | None = None
        self.hold = False
        self.held: list[RequestReceived] = []

    async def __aenter__(self) -> Device:
        self.coaps = await CoapsEndpoint.open(("127.0.0.1", 0), handler=self._on_event)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.coaps is not None
        await self.coaps.close()

    async def connect(self, address: tuple[str, int]) -> Session:
        assert self.coaps is not None
        self.session = await self.coaps.connect(*address, _client_config(self.identity))
        return self.session

    async def request(self, path: str, payload: bytes = b"") -> Message:
        assert self.coaps is not None and self.session is not None
        message = Message.request(Code.POST, path, payload=payload)
        return await self.coaps.request(self.session, message, timeout=10)

    def _on_event(self, event: Event) -> None:
        if not isinstance(event, RequestReceived):
            return
        if self.hold:
            self.held.append(event)
            return
        assert self.coaps is not None
        answer = Message.response(Code.CONTENT, b"hello from " + self.identity)
        self.coaps.endpoint.respond(event.exchange, answer)


# -- NoSec ------------------------------------------------------------------------------------


async def test_request_response_over_udp(server: tuple[CoapServer, Recorder]) -> None:
    coap, recorder = server
    assert coap.coap_address is not None and coap.coap_address[1] != 0
    with _udp_socket() as sock:
        port = sock.getsockname()[1]
        echo = Message.request(Code.POST, "/echo", token=b"t1", payload=b"hi").replace(mid=11)
        answer = await _exchange(sock, coap.coap_address, echo)
        assert (answer.mtype, answer.mid, answer.token) == (Type.ACK, 11, b"t1")
        assert (answer.code, answer.payload) == (Code.CONTENT, b"NOSEC 127.0.0.1 hi")
        later = Message.request(Code.POST, "/later", token=b"t2").replace(mid=12)
        answer = await _exchange(sock, coap.coap_address, later)
        assert (answer.code, answer.payload, answer.token) == (Code.CHANGED, b"later", b"t2")
        refuse = Message.request(Code.GET, "/refuse", token=b"t3").replace(mid=13)
        answer = await _exchange(sock, coap.coap_address, refuse)
        assert (answer.code, answer.payload) == (Code.FORBIDDEN, b"no such thing")
    (first, *_) = recorder.requests
    assert not first.secure and first.claim is None
    assert first.address == ("127.0.0.1", port)


async def test_downlink_request_over_udp(server: tuple[CoapServer, Recorder]) -> None:
    coap, _ = server
    assert coap.coap_address is not None
    loop = asyncio.get_running_loop()
    with _udp_socket() as sock:
        remote = await coap.resolve(*sock.getsockname())
        pending = asyncio.ensure_future(
            coap.request(remote, Message.request(Code.GET, "/3/0/0"), timeout=10)
        )
        request = parse(await asyncio.wait_for(loop.sock_recv(sock, 4096), 10))
        assert request.uri_path == ["3", "0", "0"] and request.mtype is Type.CON
        ack = Message(Type.ACK, Code.CONTENT, request.mid, request.token, (), b"Acme")
        sock.sendto(serialize(ack), coap.coap_address)  # loopback UDP: never blocks
        assert (await pending).payload == b"Acme"


async def test_malformed_datagram_answered_and_logged_once(
    server: tuple[CoapServer, Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    """A CON with token length 9 is a message format error: RST with its MID (RFC 7252 §4.2),
    one log line per peer and minute however many come, no traceback; service goes on."""
    caplog.set_level(logging.DEBUG, logger="lwm2m_runtime")
    coap, _ = server
    assert coap.coap_address is not None
    loop = asyncio.get_running_loop()
    with _udp_socket() as sock:
        for _ in range(3):
            sock.sendto(b"\x49\x01\xbe\xef" + b"t" * 9, coap.coap_address)
            rst = parse(await asyncio.wait_for(loop.sock_recv(sock, 4096), 10))
            assert (rst.mtype, rst.mid, rst.code) == (Type.RST, 0xBEEF, 0)
        echo = Message.request(Code.POST, "/echo", token=b"ok").replace(mid=1)
        assert (await _exchange(sock, coap.coap_address, echo)).code == Code.CONTENT
    refusals = [r for r in caplog.records if "refused (format_error)" in r.getMessage()]
    assert len(refusals) == 1 and "127.0.0.1" in refusals[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records)


# -- CoAPs ------------------------------------------------------------------------------------


async def test_request_response_over_coaps_carries_the_dtls_identity(
    server: tuple[CoapServer, Recorder],
) -> None:
    coap, recorder = server
    assert coap.coaps_address is not None
    async with Device(b"dev-a") as device:
        await device.connect(coap.coaps_address)
        answer = await device.request("/echo", b"secret hi")
        assert (answer.code, answer.payload) == (Code.CONTENT, b"PSK 127.0.0.1 secret hi")
        big = await device.request("/echo", b"x" * 3000)  # Block1 up, Block2 down
        assert big.payload == b"PSK 127.0.0.1 " + b"x" * 3000
    (request, *_) = recorder.requests
    assert request.secure and request.claim is not None
    assert request.claim.identity == PskIdentity(b"dev-a")
    assert request.identity.mode is SecurityMode.PSK


async def _held_downlink(
    coap: CoapServer, recorder: Recorder, device: Device
) -> tuple[Peer, asyncio.Future[Message], RequestReceived]:
    """``device`` connects and sends a request (the server learns its session); the server
    sends a GET to that session, which the device holds unanswered."""
    assert coap.coaps_address is not None
    await device.connect(coap.coaps_address)
    await device.request("/echo")
    remote = recorder.requests[-1].remote
    device.hold = True
    pending = asyncio.ensure_future(
        coap.request(remote, Message.request(Code.GET, "/3/0/0"), timeout=10)
    )
    await eventually(lambda: bool(device.held))
    return remote, pending, device.held[0]


async def test_downlink_over_coaps_and_an_answer_from_another_session_is_not_accepted(
    server: tuple[CoapServer, Recorder],
) -> None:
    """The request to A's session is answered only by A: B, with its own session, sending a
    response with A's token and MID matches nothing (RFC 7252 §9.1.2)."""
    coap, recorder = server
    assert coap.coaps_address is not None and coap.coaps is not None
    endpoint = coap.coaps.endpoint
    async with Device(b"dev-a") as a, Device(b"dev-b") as b:
        await b.connect(coap.coaps_address)
        remote, pending, held = await _held_downlink(coap, recorder, a)
        assert a.coaps is not None and b.coaps is not None and b.coaps.dtls is not None
        assert remote is await coap.resolve("127.0.0.1", a.coaps.local_address[1], secure=True)
        forged = Message(Type.ACK, Code.CONTENT, held.message.mid, held.message.token, (), b"B")
        unmatched = endpoint.counters["unmatched"]
        assert b.session is not None
        b.coaps.dtls.send(b.session, serialize(forged))
        await eventually(lambda: endpoint.counters["unmatched"] > unmatched)
        assert not pending.done()
        a.coaps.endpoint.respond(held.exchange, Message.response(Code.CONTENT, b"A"))
        a.coaps.kick()
        assert (await pending).payload == b"A"


async def test_a_closed_session_fails_its_pending_requests(
    server: tuple[CoapServer, Recorder],
) -> None:
    coap, recorder = server
    async with Device(b"dev-a") as device:
        remote, pending, _ = await _held_downlink(coap, recorder, device)
        assert device.coaps is not None and device.coaps.dtls is not None
        assert device.session is not None
        device.coaps.dtls.close_session(device.session)  # close_notify
        with pytest.raises(ConnectionError, match="DTLS session closed"):
            await pending
        with pytest.raises(ConnectionError, match="DTLS session closed"):  # at once, no retries
            await coap.request(remote, Message.request(Code.GET, "/3/0/0"), timeout=10)
    with pytest.raises(ConnectionError):
        await coap.resolve("127.0.0.1", 1, secure=True)  # no session: never dialled


async def test_dtls_sessions_survive_a_restart(tmp_path: Path) -> None:
    """With a session store, a device keeps talking on its session across a server restart
    (the DTLS endpoint persists it; the CoAP glue only has to accept the restored peer)."""
    recorder = Recorder()
    with SqliteDatabase(tmp_path / "sessions.sqlite") as db:
        settings = EndpointSettings(session_store=SqliteDtlsSessionStore(db))
        first = CoapServer(recorder)
        await first.start(host="127.0.0.1", port=None, coaps_port=0, dtls_config=SERVER_DTLS,
                          dtls_settings=settings)  # fmt: skip
        assert first.coaps_address is not None
        port = first.coaps_address[1]
        async with Device(b"dev-a") as device:
            await device.connect(("127.0.0.1", port))
            assert (await device.request("/echo", b"1")).payload == b"PSK 127.0.0.1 1"
            await first.stop()
            second = CoapServer(recorder)
            await second.start(host="127.0.0.1", port=None, coaps_port=port,
                               dtls_config=SERVER_DTLS, dtls_settings=settings)  # fmt: skip
            try:
                assert (await device.request("/echo", b"2")).payload == b"PSK 127.0.0.1 2"
            finally:
                await second.stop()
