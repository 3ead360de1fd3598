"""A thin asyncio UDP endpoint driving a sans-IO :class:`~lwm2m_runtime.coap.Endpoint`.

Why thin: every protocol decision lives in the sans-IO endpoint; this class only moves bytes,
reads the loop clock and arms one timer. Events go to a plain ``handler(event)`` call (no task per
request); what the handler sends (``respond``, ``send_request``) leaves in one flush at the end of
the loop iteration, so all datagrams received in one iteration are answered together — the hook
for group commit. uvloop is used when installed (:func:`use_uvloop`), stdlib asyncio otherwise.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable
from typing import cast

from .coap import (
    Endpoint,
    Event,
    Message,
    Parameters,
    Peer,
    RequestFailed,
    RequestHandle,
    ResponseReceived,
)

log = logging.getLogger(__name__)

Handler = Callable[[Event], None]


def use_uvloop() -> bool:
    """Install uvloop's event loop policy when uvloop is importable; True if it was."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


class UdpEndpoint(asyncio.DatagramProtocol):
    """One UDP socket, one CoAP endpoint. Build with :func:`open_udp_endpoint`."""

    def __init__(self, endpoint: Endpoint, handler: Handler | None = None) -> None:
        self.endpoint = endpoint
        self.handler = handler
        self.transport: asyncio.DatagramTransport | None = None
        self._loop = asyncio.get_running_loop()
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._waiters: dict[RequestHandle, asyncio.Future[Message]] = {}

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
        if self._timer is not None:
            self._timer.cancel()
        for future in self._waiters.values():
            if not future.done():
                future.set_exception(ConnectionError("endpoint closed"))
        self._waiters.clear()

    # -- application calls --------------------------------------------------------------------
    @property
    def local_address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (host, port)

    def send_request(self, peer: Peer, message: Message) -> RequestHandle:
        handle = self.endpoint.send_request(peer, message)
        self._dispatch()  # a queue-full failure is an event already
        return handle

    async def request(self, peer: Peer, message: Message) -> Message:
        """Send a request and wait for its response; raises ``ConnectionError`` on failure."""
        future: asyncio.Future[Message] = self._loop.create_future()
        handle = self.endpoint.send_request(peer, message)
        self._waiters[handle] = future
        self._dispatch()
        try:
            return await future
        finally:
            if self._waiters.pop(handle, None) is not None:
                self.endpoint.cancel(handle)
                self._schedule_flush()

    def kick(self) -> None:
        """Call after ``endpoint.respond(...)`` made outside an event handler."""
        self._schedule_flush()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- internals ----------------------------------------------------------------------------
    def _dispatch(self) -> None:
        endpoint = self.endpoint
        while (event := endpoint.next_event()) is not None:
            if isinstance(event, ResponseReceived | RequestFailed):
                future = self._waiters.pop(event.handle, None)
                if future is not None:
                    if not future.done():
                        if isinstance(event, ResponseReceived):
                            future.set_result(event.message)
                        else:
                            future.set_exception(ConnectionError(event.reason.value))
                    continue
            if self.handler is not None:
                try:
                    self.handler(event)
                except Exception:  # one bad handler call must not stop the socket
                    log.exception("CoAP event handler failed on %s", type(event).__name__)
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        transport = self.transport
        now = self._loop.time()
        if transport is not None and not transport.is_closing():
            for data, peer in self.endpoint.datagrams_to_send(now):
                transport.sendto(data, peer)  # type: ignore[arg-type]
        when = self.endpoint.get_timer()
        if when != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None if when is None else self._loop.call_at(when, self._on_timer)
            self._timer_at = when

    def _on_timer(self) -> None:
        # asyncio may run a timer up to one clock resolution early: never hand the endpoint a
        # time before the deadline it asked for (it would find nothing due and ask again)
        now = max(self._loop.time(), self._timer_at or 0.0)
        self._timer = None
        self._timer_at = None
        self.endpoint.handle_timer(now)
        self._dispatch()


async def open_udp_endpoint(
    host: str,
    port: int,
    handler: Handler | None = None,
    params: Parameters | None = None,
) -> UdpEndpoint:
    """Bind ``host:port`` (port 0: any free port) and serve CoAP on it."""
    loop = asyncio.get_running_loop()
    protocol = UdpEndpoint(Endpoint(params), handler)
    await loop.create_datagram_endpoint(lambda: protocol, local_addr=(host, port))
    return protocol
