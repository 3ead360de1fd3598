"""A thin asyncio UDP endpoint driving a sans-IO :class:`~lwm2m_runtime.coap.Endpoint`.

Why thin: every protocol decision lives in the sans-IO endpoint; this class only moves bytes,
reads the loop clock and arms one timer (all of which :class:`~.driver.CoapDriver` does, shared
with the CoAPs endpoint). Events go to a plain ``handler(event)`` call (no task per request);
what the handler sends (``respond``, ``send_request``) leaves in one flush at the end of the loop
iteration, so all datagrams received in one iteration are answered together — the hook for
group commit. uvloop is used when installed (:func:`use_uvloop`), stdlib asyncio otherwise.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import socket
from typing import cast

from .coap import Endpoint, Parameters
from .driver import CoapDriver, Handler, Peer

log = logging.getLogger(__name__)

__all__ = ["Handler", "UdpEndpoint", "open_udp_endpoint", "use_uvloop"]


def use_uvloop() -> bool:
    """Install uvloop's event loop policy when uvloop is importable; True if it was."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


MAX_BATCH = 128
"""Datagrams read in one loop iteration at most by :meth:`UdpEndpoint._drain`."""
_RECV_SIZE = 65536
"""The largest UDP payload fits (a smaller buffer would truncate a datagram silently)."""


class UdpEndpoint(CoapDriver, asyncio.DatagramProtocol):
    """One UDP socket, one CoAP endpoint. Build with :func:`open_udp_endpoint`.

    Why the first datagram of a loop iteration drains the socket: every iteration ends with a
    group commit (the store commits what the iteration wrote; the driver flushes the replies
    after it) whose cost is mostly fixed: one sqlite transaction, whose pages the iteration's
    Registers share. uvloop (libuv) reads at most 32 datagrams per wake-up and the stdlib
    loop one, so a loaded server committed every 32 requests (or every one). Reading what
    already waits, up to :data:`MAX_BATCH`, in the same iteration makes the group as large as
    the backlog. Replies still leave only after the commit of the writes they acknowledge."""

    def __init__(self, endpoint: Endpoint, handler: Handler | None = None) -> None:
        CoapDriver.__init__(self, endpoint, handler)
        self.transport: asyncio.DatagramTransport | None = None
        self._lost: asyncio.Future[None] = self._loop.create_future()
        self._sock: socket.socket | None = None
        """A duplicate of the transport's socket, to read the backlog with (``_drain``)."""

    # -- asyncio.DatagramProtocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # not an isinstance check: CPython 3.11's selector transport does not subclass it
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # uvloop hands out a stand-in without recvfrom: read through a dup of its fd
            self._sock = socket.socket(sock.family, sock.type, sock.proto, os.dup(sock.fileno()))
            self._sock.setblocking(False)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        # ``_dispatch`` written out: a request served by ``endpoint.serve`` (the server's
        # path) leaves no event, and the flush is scheduled once per iteration
        first = not self._flush_scheduled  # the iteration's first datagram schedules its flush
        if first and self._held:
            self._poll()  # before handling it (``serve`` answers inside ``receive_datagram``)
        endpoint = self.endpoint
        endpoint.receive_datagram(data, addr, self._loop.time())
        if endpoint.events:
            self._deliver()
        if first:
            if not self._flush_scheduled and not self._stopped:
                self._flush_scheduled = True
                self._loop.call_soon(self._flush)
            if self._sock is not None:
                self._drain(self._sock)

    def _drain(self, sock: socket.socket) -> None:
        """Read and handle what already waits in the socket, up to ``MAX_BATCH - 1`` more
        datagrams, before the iteration's flush (see the class docstring). The flush is
        scheduled already (by the iteration's first datagram), so only events are left to
        deliver: ``_dispatch`` without its first-datagram steps."""
        endpoint = self.endpoint
        receive = endpoint.receive_datagram
        events = endpoint.events
        time = self._loop.time
        for _ in range(MAX_BATCH - 1):
            try:
                data, addr = sock.recvfrom(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error reported on the socket: as uvloop does
                self.error_received(exc)
                return
            receive(data, addr, time())
            if events:
                self._deliver()

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)  # ICMP unreachable etc.; retransmission copes

    def connection_lost(self, exc: Exception | None) -> None:
        self._close_dup()
        self._stop()
        if not self._lost.done():
            self._lost.set_result(None)

    # -- application calls --------------------------------------------------------------------
    @property
    def local_address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (host, port)

    @property
    def family(self) -> int:
        """The socket's address family (peers of an ``AF_INET6`` socket are 4-tuples)."""
        assert self.transport is not None
        sock = self.transport.get_extra_info("socket")
        return int(sock.family) if sock is not None else int(socket.AF_INET)

    def close(self) -> None:
        self._stop()
        self._close_dup()
        if self.transport is not None:
            self.transport.close()

    def _close_dup(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    async def wait_closed(self) -> None:
        """After :meth:`close`: return once the socket is really closed (uvloop closes it one
        loop iteration later), so that its port can be bound again at once."""
        if self.transport is not None:
            await asyncio.shield(self._lost)

    # -- internals ----------------------------------------------------------------------------
    def _transmit(self, datagrams: list[tuple[bytes, Peer]]) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            for data, peer in datagrams:
                transport.sendto(data, peer)  # type: ignore[arg-type]


async def open_udp_endpoint(
    host: str,
    port: int,
    handler: Handler | None = None,
    params: Parameters | None = None,
    *,
    sock: socket.socket | None = None,
) -> UdpEndpoint:
    """Bind ``host:port`` (port 0: any free port) and serve CoAP on it; or serve on ``sock``,
    a socket the caller bound (a dual-stack one, say)."""
    loop = asyncio.get_running_loop()
    protocol = UdpEndpoint(Endpoint(params), handler)
    if sock is not None:
        await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
    else:
        await loop.create_datagram_endpoint(lambda: protocol, local_addr=(host, port))
    return protocol
