"""Our DTLS client engine on a bare asyncio UDP socket: the test's "device" when it needs to
control records (replay, tamper), source addresses (NAT rebinding) or timing (reboots)."""

from __future__ import annotations

import asyncio
from typing import Any

from keystore.dtls import ApplicationData, ClientConfig, DtlsEngine, HandshakeComplete
from keystore.dtls.events import Event


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data)


class RawSocket:
    """A loopback UDP socket with a receive queue."""

    def __init__(self, transport: asyncio.DatagramTransport, protocol: _Protocol) -> None:
        self.transport = transport
        self.protocol = protocol

    @classmethod
    async def open(cls, server: tuple[str, int]) -> RawSocket:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            _Protocol, local_addr=("127.0.0.1", 0), remote_addr=server
        )
        return cls(transport, protocol)

    @property
    def port(self) -> int:
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes) -> None:
        self.transport.sendto(data)

    async def receive(self, timeout: float = 2.0) -> bytes | None:
        try:
            return await asyncio.wait_for(self.protocol.queue.get(), timeout)
        except TimeoutError:
            return None

    def close(self) -> None:
        self.transport.close()


class RawPeer:
    """One DTLS client session over a ``RawSocket`` (which can be swapped: NAT rebinding)."""

    def __init__(self, socket: RawSocket, config: ClientConfig) -> None:
        self.socket = socket
        self.engine = DtlsEngine.client(config)
        self.sent: list[bytes] = []  # every datagram sent, for replays
        self.events: list[Event] = []

    @classmethod
    async def connect(cls, server: tuple[str, int], config: ClientConfig) -> RawPeer:
        peer = cls(await RawSocket.open(server), config)
        await peer.handshake()
        return peer

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def flush(self) -> None:
        for datagram in self.engine.datagrams_to_send():
            self.sent.append(datagram)
            self.socket.send(datagram)

    async def handshake(self, timeout: float = 5.0) -> HandshakeComplete:
        self.engine.connect(self._now())
        self.flush()
        deadline = self._now() + timeout
        while self._now() < deadline:
            data = await self.socket.receive(0.2)
            if data is None:
                self.events += self.engine.handle_timer(self._now())
            else:
                self.events += self.engine.receive_datagram(data, self._now())
            self.flush()
            for event in self.events:
                if isinstance(event, HandshakeComplete):
                    return event
            if self.engine.is_closed:
                break
        raise ConnectionError(f"handshake did not complete: {self.events}")

    def send(self, data: bytes) -> bytes:
        """Encrypt and send one record; returns the datagram (to replay or tamper with)."""
        self.engine.send_application_data(data)
        datagrams = self.engine.datagrams_to_send()
        for datagram in datagrams:
            self.sent.append(datagram)
            self.socket.send(datagram)
        return datagrams[-1]

    async def receive(self, timeout: float = 2.0) -> bytes | None:
        """The next decrypted record from the server, or None."""
        deadline = self._now() + timeout
        while self._now() < deadline:
            data = await self.socket.receive(max(0.01, deadline - self._now()))
            if data is None:
                return None
            for event in self.engine.receive_datagram(data, self._now()):
                self.events.append(event)
                if isinstance(event, ApplicationData):
                    return event.data
            self.flush()
        return None

    def close(self) -> None:
        self.socket.close()
