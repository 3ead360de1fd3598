"""The NoSec listener hands requests to ``CoapServer`` directly (``Endpoint.serve``), not as
events: over a real socket, what the handler answers, refuses or fails still reaches the
device, and a failure past the handler is logged without stopping the listener."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import pytest

from lwm2m_runtime.coap import Code, Exchange, Message, Type, parse, serialize
from lwm2m_runtime.server import CoapServer, IncomingRequest
from object_models.errors import Lwm2mError, ResponseCode


def _handler(request: IncomingRequest) -> Message:
    path = request.message.uri_path
    if path == ["refuse"]:
        raise Lwm2mError("no", code=ResponseCode.FORBIDDEN)
    if path == ["bug"]:
        raise RuntimeError("a bug")
    return Message.response(Code.CHANGED)


@pytest.fixture
async def coap() -> AsyncIterator[CoapServer]:
    server = CoapServer(_handler)
    await server.start(host="127.0.0.1", port=0)
    yield server
    await server.stop()


async def _ask(sock: socket.socket, to: tuple[str, int], path: str, mid: int) -> Message:
    request = Message.request(Code.POST, path, token=b"tk").replace(mid=mid)
    sock.sendto(serialize(request), to)
    loop = asyncio.get_running_loop()
    return parse(await asyncio.wait_for(loop.sock_recv(sock, 4096), 10))


def _socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


async def test_the_udp_endpoint_serves_requests_without_events(coap: CoapServer) -> None:
    assert coap.udp is not None and coap.udp.endpoint.serve is not None
    assert coap.coap_address is not None
    with _socket() as sock:
        answer = await _ask(sock, coap.coap_address, "/rd/x", 1)
        assert (answer.mtype, answer.code, answer.mid, answer.token) == (
            Type.ACK,
            Code.CHANGED,
            1,
            b"tk",
        )
        assert (await _ask(sock, coap.coap_address, "/refuse", 2)).code == Code.FORBIDDEN
        assert (await _ask(sock, coap.coap_address, "/bug", 3)).code == Code.INTERNAL_SERVER_ERROR
    assert not coap.udp.endpoint.events


async def test_a_failure_past_the_handler_is_logged_and_the_listener_goes_on(
    coap: CoapServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert coap.udp is not None and coap.coap_address is not None
    endpoint = coap.udp.endpoint
    respond = endpoint.respond
    failures = [RuntimeError("respond failed")]

    def failing_respond(exchange: Exchange, response: Message) -> None:
        if failures:
            raise failures.pop()
        respond(exchange, response)

    monkeypatch.setattr(endpoint, "respond", failing_respond)
    with _socket() as sock, caplog.at_level(logging.ERROR, "lwm2m_runtime.server"):
        request = Message.request(Code.POST, "/rd/x", token=b"tk").replace(mid=7)
        sock.sendto(serialize(request), coap.coap_address)
        await asyncio.sleep(0.2)
        assert "CoAP request handling failed" in caplog.text
        # the listener still answers; the failed one comes back by its empty ACK
        answer = await _ask(sock, coap.coap_address, "/rd/y", 8)
        loop = asyncio.get_running_loop()
        while answer.mid != 8:
            answer = parse(await asyncio.wait_for(loop.sock_recv(sock, 4096), 10))
        assert answer.code == Code.CHANGED


async def test_the_request_built_inline_equals_the_constructors(coap: CoapServer) -> None:
    seen: list[IncomingRequest] = []

    def record(request: IncomingRequest) -> Message:
        seen.append(request)
        return Message.response(Code.CHANGED)

    coap.handler = record
    assert coap.coap_address is not None
    with _socket() as sock:
        await _ask(sock, coap.coap_address, "/rd/x", 1)
        port = sock.getsockname()[1]
    (request,) = seen
    built = IncomingRequest(request.message, request.remote, request.block2)
    for name in IncomingRequest.__slots__:
        if name not in ("_address", "_identity"):  # filled on first use: compare what they give
            assert getattr(request, name) == getattr(built, name)
    assert request.address == built.address == ("127.0.0.1", port)
    assert request.identity == built.identity
    assert built.identity is request.identity  # the one identity object of the source
