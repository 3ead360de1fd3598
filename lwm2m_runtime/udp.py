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


class UdpEndpoint(CoapDriver, asyncio.DatagramProtocol):
    """One UDP socket, one CoAP endpoint. Build with :func:`open_udp_endpoint`."""

    def __init__(self, endpoint: Endpoint, handler: Handler | None = None) -> None:
        CoapDriver.__init__(self, endpoint, handler)
        self.transport: asyncio.DatagramTransport | None = None
        self._lost: asyncio.Future[None] = self._loop.create_future()

    # -- asyncio.DatagramProtocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # not an isinstance check: CPython 3.11's selector transport does not subclass it
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.endpoint.receive_datagram(data, addr, self._loop.time())
        self._dispatch()

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)  # ICMP unreachable etc.; retransmission copes

    def connection_lost(self, exc: Exception | None) -> None:
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
        if self.transport is not None:
            self.transport.close()

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
