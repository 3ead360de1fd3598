"""A hand-built CoAP (RFC 7252) peer for tests that need what aiocoap's client API hides or
cannot do cheaply: malformed messages, a chosen message type/token, and a thousand simulated
devices without a thousand aiocoap contexts.

Only what the tests use: encode/decode of messages with options, and ``RawPeer``, one UDP
socket that sends requests (matching answers by message id for piggybacked responses) and
answers the server's requests with a user callback.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import struct
from collections.abc import Callable, Sequence
from typing import Any

import attrs

CON, NON, ACK, RST = 0, 1, 2, 3
EMPTY, GET, POST, PUT, DELETE, FETCH = 0, 1, 2, 3, 4, 5
CREATED, DELETED, CHANGED, CONTENT = 0x41, 0x42, 0x44, 0x45
OBSERVE, LOCATION_PATH, URI_PATH, CONTENT_FORMAT, URI_QUERY, ACCEPT = 6, 8, 11, 12, 15, 17
_STRING_OPTIONS = frozenset({LOCATION_PATH, URI_PATH, URI_QUERY})


def code_str(code: int) -> str:
    return f"{code >> 5}.{code & 0x1F:02d}"


@attrs.define
class Msg:
    mtype: int
    code: int
    mid: int
    token: bytes = b""
    options: list[tuple[int, bytes]] = attrs.field(factory=list)
    payload: bytes = b""

    def opt(self, number: int) -> list[bytes]:
        return [v for n, v in self.options if n == number]

    def uint(self, number: int) -> int | None:
        values = self.opt(number)
        return int.from_bytes(values[0], "big") if values else None

    def strings(self, number: int) -> list[str]:
        return [v.decode() for v in self.opt(number)]


def uint_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""


def _ext(value: int) -> tuple[int, bytes]:
    if value < 13:
        return value, b""
    if value < 269:
        return 13, bytes([value - 13])
    return 14, struct.pack("!H", value - 269)


def encode(msg: Msg) -> bytes:
    out = bytearray([0x40 | (msg.mtype << 4) | len(msg.token), msg.code])
    out += struct.pack("!H", msg.mid) + msg.token
    last = 0
    for number, value in sorted(msg.options, key=lambda o: o[0]):
        delta, dext = _ext(number - last)
        length, lext = _ext(len(value))
        out.append((delta << 4) | length)
        out += dext + lext + value
        last = number
    if msg.payload:
        out += b"\xff" + msg.payload
    return bytes(out)


def decode(data: bytes) -> Msg:
    if len(data) < 4 or data[0] >> 6 != 1:
        raise ValueError("not a CoAP message")
    tkl = data[0] & 0x0F
    msg = Msg((data[0] >> 4) & 3, data[1], struct.unpack("!H", data[2:4])[0], data[4 : 4 + tkl])
    pos, number = 4 + tkl, 0
    while pos < len(data):
        if data[pos] == 0xFF:
            msg.payload = data[pos + 1 :]
            break
        delta, length = data[pos] >> 4, data[pos] & 0x0F
        pos += 1
        values = []
        for nibble in (delta, length):
            if nibble == 13:
                values.append(data[pos] + 13)
                pos += 1
            elif nibble == 14:
                values.append(struct.unpack("!H", data[pos : pos + 2])[0] + 269)
                pos += 2
            else:
                values.append(nibble)
        number += values[0]
        msg.options.append((number, data[pos : pos + values[1]]))
        pos += values[1]
    return msg


def request(
    code: int,
    path: Sequence[str],
    *,
    query: Sequence[str] = (),
    payload: bytes = b"",
    content_format: int | None = None,
    mtype: int = CON,
    token: bytes | None = None,
) -> Msg:
    options: list[tuple[int, bytes]] = [(URI_PATH, p.encode()) for p in path]
    options += [(URI_QUERY, q.encode()) for q in query]
    if content_format is not None:
        options.append((CONTENT_FORMAT, uint_bytes(content_format)))
    tok = random.randbytes(4) if token is None else token
    return Msg(mtype, code, 0, tok, options, payload)


Handler = Callable[[Msg], Msg | None]
"""Answer to a request from the server: a response ``Msg`` (type/mid/token filled in) or None
to stay silent."""


class RawPeer(asyncio.DatagramProtocol):
    """One UDP socket on 127.0.0.1; ``handler`` answers the server's requests."""

    def __init__(self, server: tuple[str, int], handler: Handler | None = None) -> None:
        self.server = server
        self.handler = handler
        self.transport: asyncio.DatagramTransport | None = None
        self._mids = itertools.count(random.randrange(0x10000))
        self._waiting: dict[int, asyncio.Future[Msg]] = {}
        self.received: list[Msg] = []  # everything that is not an answer we waited for

    @classmethod
    async def open(cls, server: tuple[str, int], handler: Handler | None = None) -> RawPeer:
        loop = asyncio.get_running_loop()
        _, peer = await loop.create_datagram_endpoint(
            lambda: cls(server, handler), local_addr=("127.0.0.1", 0)
        )
        return peer

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def next_mid(self) -> int:
        return next(self._mids) & 0xFFFF

    def send(self, msg: Msg) -> None:
        assert self.transport is not None
        self.transport.sendto(encode(msg), self.server)

    def send_raw(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data, self.server)

    async def exchange(self, msg: Msg, timeout: float = 5.0, retries: int = 3) -> Msg:
        """Send ``msg`` (its mid is assigned) and wait for the message with the same mid:
        the piggybacked response, an empty ACK or a RST. Resent on timeout like a CON."""
        msg.mid = self.next_mid()
        future: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        self._waiting[msg.mid] = future
        try:
            for _ in range(retries):
                self.send(msg)
                try:
                    return await asyncio.wait_for(asyncio.shield(future), timeout / retries)
                except TimeoutError:
                    continue
            raise TimeoutError(f"no answer to mid {msg.mid}")
        finally:
            self._waiting.pop(msg.mid, None)

    async def resend(self, msg: Msg, timeout: float = 5.0) -> Msg:
        """Send ``msg`` again with its own mid (a CON retransmission, RFC 7252 §4.2) and wait
        for the answer with that mid."""
        future: asyncio.Future[Msg] = asyncio.get_running_loop().create_future()
        self._waiting[msg.mid] = future
        try:
            self.send(msg)
            return await asyncio.wait_for(future, timeout)
        finally:
            self._waiting.pop(msg.mid, None)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            msg = decode(data)
        except (ValueError, IndexError, struct.error):
            return
        if msg.mtype in (ACK, RST) and msg.mid in self._waiting:
            future = self._waiting[msg.mid]
            if not future.done():
                future.set_result(msg)
            return
        self.received.append(msg)
        if 1 <= msg.code <= 31 and self.handler is not None:
            answer = self.handler(msg)
            if answer is not None:
                answer.token = msg.token
                if msg.mtype == CON:
                    answer.mtype, answer.mid = ACK, msg.mid
                else:
                    answer.mtype, answer.mid = NON, self.next_mid()
                assert self.transport is not None
                self.transport.sendto(encode(answer), addr)
        elif msg.mtype == CON:
            assert self.transport is not None
            self.transport.sendto(encode(Msg(ACK, EMPTY, msg.mid)), addr)


async def register(
    peer: RawPeer,
    endpoint: str,
    *,
    lifetime: int = 300,
    links: str = "</3303/0>",
    version: str = "1.1",
    queue_mode: bool = False,
) -> str:
    """Register ``endpoint`` through ``peer`` (``queue_mode``: with ``Q``); returns the
    registration id."""
    msg = request(
        POST,
        ["rd"],
        query=[f"ep={endpoint}", f"lt={lifetime}", f"lwm2m={version}", "b=U"]
        + (["Q"] if queue_mode else []),
        payload=links.encode(),
        content_format=40,
    )
    answer = await peer.exchange(msg)
    if answer.code != CREATED:
        raise AssertionError(f"Register of {endpoint} answered {code_str(answer.code)}")
    return answer.strings(LOCATION_PATH)[-1]
