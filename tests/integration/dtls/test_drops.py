"""Every datagram the DTLS layer drops is counted by reason and logged at DEBUG, at most once
per host and interval, so that "the device gets no answer" can be diagnosed (issue 9, item 1);
and a device whose Mbed TLS 2.x stack writes ``FE 00`` into the record of its ClientHello
connects over a real socket."""

from __future__ import annotations

import logging
import os

import pytest

from keystore.dtls import ClientConfig
from lwm2m_server.service import Lwm2mServer

from . import coap
from .conftest import coaps_port, eventually
from .pki import PSK_IDENTITY, PSK_KEY
from .rawpeer import RawPeer, RawSocket


def server_addr(server: Lwm2mServer) -> tuple[str, int]:
    return ("127.0.0.1", coaps_port(server))


def psk_config() -> ClientConfig:
    return ClientConfig(psk_identity=PSK_IDENTITY, psk=PSK_KEY)


def drop_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.DEBUG and "DTLS datagram from 127.0.0.1:" in r.getMessage()
    ]


async def test_dropped_datagrams_are_counted_by_reason(
    server: Lwm2mServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="keystore.coaps.endpoint")
    endpoint = server.dtls
    stranger = await RawSocket.open(server_addr(server))
    try:
        stranger.send(os.urandom(5))  # shorter than a record header
        await eventually(lambda: endpoint.stats.drops.get("malformed") == 1)
        assert drop_lines(caplog) == [
            f"DTLS datagram from 127.0.0.1:{stranger.port} dropped: malformed"
        ]
        # a well-formed protected record from a peer without a session
        stranger.send(b"\x17\xfe\xfd\x00\x01" + bytes(6) + b"\x00\x10" + os.urandom(16))
        await eventually(lambda: endpoint.stats.drops.get("no_session") == 1)
        assert len(drop_lines(caplog)) == 1  # same host within the interval: counted only
    finally:
        stranger.close()

    peer = await RawPeer.connect(server_addr(server), psk_config())
    try:
        record = peer.send(coap.register("dev-psk"))
        assert await peer.receive() is not None
        peer.socket.send(record)  # a replay
        await eventually(lambda: endpoint.stats.drops.get("replay") == 1)
        tampered = record[:-1] + bytes([record[-1] ^ 1])
        peer.socket.send(tampered[:11] + b"\xff\xff" + tampered[13:])  # new seq, bad length
        peer.socket.send(tampered[:5] + b"\x00\x00\x00\x00\x10\x00" + tampered[11:])
        await eventually(lambda: endpoint.stats.drops.get("bad_mac") == 1)
        assert endpoint.stats.drops.get("malformed") == 2
    finally:
        peer.close()
    assert endpoint.stats.dropped == sum(endpoint.stats.drops.values())


async def test_mbedtls_fe00_client_hello_connects(server: Lwm2mServer) -> None:
    """Both ClientHellos go out with record version FE00 (as Mbed TLS 2.x with an SSL 3.0
    minimum sends them); the device registers."""
    socket = await RawSocket.open(server_addr(server))
    original = socket.send

    def send(data: bytes) -> None:
        if data[:1] == b"\x16" and data[3:5] == b"\x00\x00" and data[13:14] == b"\x01":
            data = data[:1] + b"\xfe\x00" + data[3:]
        original(data)

    socket.send = send  # type: ignore[method-assign]
    peer = RawPeer(socket, psk_config())
    try:
        await peer.handshake()
        assert sum(1 for d in peer.sent if d[:3] == b"\x16\xfe\xfd" and d[13] == 1) == 2
        peer.send(coap.register("dev-psk"))
        answer = await peer.receive()
        assert answer is not None and str(coap.decode(answer).code) == "2.01 Created"
        assert "bad_version" not in server.dtls.stats.drops
    finally:
        peer.close()
