"""What the load generator puts on the wire, checked against aiocoap (an independent CoAP
implementation), and how it reacts to what comes back.

The generator builds and parses datagrams with ``lwm2m_runtime.coap``; the codec itself is
tested in ``tests/unit/coap/test_message.py``. These tests pin the LwM2M content of the
generator's messages, so that a benchmark figure is about the exchange it claims to measure.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiocoap
from aiocoap.numbers.codes import Code as AioCode
from aiocoap.numbers.types import Type as AioType

from bench.load.generator import (
    MANUFACTURER,
    NOTIFY_PAYLOADS,
    REGISTRATION_LINKS,
    SENML_CBOR,
    TEMPERATURE_PATH,
    ClientSocket,
    SimClient,
    Stats,
    read_request_like_server,
    registration_request,
)
from lwm2m_runtime.coap import Type


class _Transport:
    """Records what the socket sends (stands in for the asyncio datagram transport)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self.sent.append(data)

    def close(self) -> None:
        pass


def _with_client(body: Any) -> Any:
    """Run ``body(sock, client)`` with a socket (which needs a running loop) and its owner."""

    async def run() -> Any:
        sock = ClientSocket(echo=False, stats=Stats())
        sock.connection_made(_Transport())  # type: ignore[arg-type]
        client = SimClient(0, "bench-000000", sock, location="rd/abc")
        sock.owner = client
        return body(sock, client)

    return asyncio.run(run())


def _server_get(
    path: str, *, mid: int, observe: int | None = None, accept: int | None = None
) -> bytes:
    msg = aiocoap.Message(
        code=AioCode.GET, uri_path=tuple(path.split("/")), observe=observe, accept=accept
    )
    msg.mtype, msg.mid, msg.token = AioType.CON, mid, b"\x09" * 8
    return bytes(msg.encode())


def test_registration_request_as_aiocoap_reads_it() -> None:
    data = registration_request("bench-000001", 0x0102, b"\x01\x02\x03\x04", 86400)
    parsed = aiocoap.Message.decode(data)
    assert parsed.mtype == AioType.CON
    assert parsed.code == AioCode.POST
    assert parsed.mid == 0x0102
    assert parsed.token == b"\x01\x02\x03\x04"
    assert parsed.opt.uri_path == ("rd",)
    assert parsed.opt.uri_query == ("ep=bench-000001", "lt=86400", "lwm2m=1.1", "b=U")
    assert int(parsed.opt.content_format) == 40
    assert parsed.payload == REGISTRATION_LINKS


def test_update_and_notification_as_aiocoap_reads_them() -> None:
    def body(sock: ClientSocket, client: SimClient) -> None:
        update = aiocoap.Message.decode(client.update_request(7, b"\x00\x01"))
        assert (update.mtype, update.code, update.mid) == (AioType.CON, AioCode.POST, 7)
        assert update.opt.uri_path == ("rd", "abc")
        assert update.payload == b""

        client.observe_token, client.observe_seq = b"\x05" * 8, 69999
        note = aiocoap.Message.decode(client.notification(Type.NON, 8))
        assert (note.mtype, note.code, note.mid) == (AioType.NON, AioCode.CONTENT, 8)
        assert note.token == b"\x05" * 8
        assert note.opt.observe == 70000
        assert int(note.opt.content_format) == SENML_CBOR
        assert note.payload == NOTIFY_PAYLOADS[SENML_CBOR][70000 % len(NOTIFY_PAYLOADS[SENML_CBOR])]

    _with_client(body)


def test_read_request_like_server_as_aiocoap_reads_it() -> None:
    parsed = aiocoap.Message.decode(read_request_like_server(0xBEEF))
    assert (parsed.mtype, parsed.code, parsed.mid) == (AioType.CON, AioCode.GET, 0xBEEF)
    assert len(parsed.token) == 8
    assert parsed.opt.uri_path == ("3", "0", "0")
    assert int(parsed.opt.accept) == SENML_CBOR


def test_answers_the_servers_observe_and_read_piggybacked() -> None:
    def body(sock: ClientSocket, client: SimClient) -> list[bytes]:
        sock.datagram_received(
            _server_get("/".join(TEMPERATURE_PATH), mid=0x10, observe=0), ("", 0)
        )
        sock.datagram_received(_server_get("3/0/0", mid=0x11, accept=0), ("", 0))
        sock.datagram_received(_server_get("3/0/0", mid=0x12, accept=11542), ("", 0))
        sock.datagram_received(_server_get("9/9", mid=0x13), ("", 0))
        assert client.observe_token == b"\x09" * 8
        assert sock.stats.server_requests == 4
        transport = sock.transport
        assert isinstance(transport, _Transport)
        return transport.sent

    observe, read, not_acceptable, not_found = (
        aiocoap.Message.decode(d) for d in _with_client(body)
    )
    assert (observe.mtype, observe.code, observe.mid) == (AioType.ACK, AioCode.CONTENT, 0x10)
    assert observe.token == b"\x09" * 8
    assert observe.opt.observe == 1
    assert int(observe.opt.content_format) == SENML_CBOR
    assert (read.code, read.mid, read.opt.observe) == (AioCode.CONTENT, 0x11, None)
    assert int(read.opt.content_format) == 0
    assert read.payload == MANUFACTURER.encode()
    assert (not_acceptable.code, not_acceptable.mid) == (AioCode.NOT_ACCEPTABLE, 0x12)
    assert (not_found.code, not_found.mid) == (AioCode.NOT_FOUND, 0x13)


def test_malformed_datagrams_are_counted_and_a_ping_gets_a_reset() -> None:
    def body(sock: ClientSocket, client: SimClient) -> tuple[Stats, list[bytes]]:
        sock.datagram_received(b"\x40\x01", ("", 0))  # shorter than the header
        sock.datagram_received(b"\x40\x01\x00\x01\xb2\xff\xfe", ("", 0))  # Uri-Path not UTF-8
        sock.datagram_received(b"\x40\x00\x12\x34", ("", 0))  # CoAP ping (Empty CON)
        transport = sock.transport
        assert isinstance(transport, _Transport)
        return sock.stats, transport.sent

    stats, sent = _with_client(body)
    assert stats.malformed == 2
    assert sent == [b"\x70\x00\x12\x34"]  # Empty RST with the ping's Message ID
