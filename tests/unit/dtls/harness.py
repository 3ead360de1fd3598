"""Drive a client and a server engine through in-memory datagram queues with a fake clock.

``Link`` hands every datagram through ``c2s``/``s2c`` hooks so tests can drop, duplicate or
reorder individual datagrams; time only moves when nothing is in flight (to the earliest timer).
"""

from __future__ import annotations

from collections.abc import Callable

from keystore.dtls import (
    ApplicationData,
    ClientConfig,
    ConnectionClosed,
    CookieVerifier,
    DtlsEngine,
    Event,
    HandshakeComplete,
    ServerConfig,
)

ADDR = ("192.0.2.10", 40000)
#: (batch of datagrams, running index of the first one) -> datagrams to deliver
Hook = Callable[[list[bytes], int], list[bytes]]


class Link:
    def __init__(
        self,
        client_config: ClientConfig,
        server_config: ServerConfig,
        *,
        cookies: bool = True,
        c2s: Hook | None = None,
        s2c: Hook | None = None,
    ) -> None:
        self.client = DtlsEngine.client(client_config)
        self.server_config = server_config
        self.server: DtlsEngine | None = None
        self.cookie = CookieVerifier() if cookies else None
        self.now = 0.0
        self.addr: object = ADDR
        self.client_events: list[Event] = []
        self.server_events: list[Event] = []
        self.c2s = c2s
        self.s2c = s2c
        self.sent_c2s = 0
        self.sent_s2c = 0
        self.wire_c2s: list[bytes] = []
        self.wire_s2c: list[bytes] = []

    # -- delivery -----------------------------------------------------------------------------
    def to_server(self, datagram: bytes) -> None:
        if self.server is None:
            if self.cookie is not None:
                reply, ok = self.cookie.server_handle_initial_datagram(
                    datagram, self.addr, self.now
                )
                if reply is not None:
                    self.wire_s2c.append(reply)
                    self.to_client_batch([reply])
                if not ok:
                    return
            self.server = DtlsEngine.server(self.server_config, self.addr)
        self.server_events += self.server.receive_datagram(datagram, self.now, self.addr)

    def to_client(self, datagram: bytes) -> None:
        self.client_events += self.client.receive_datagram(datagram, self.now)

    def to_client_batch(self, batch: list[bytes]) -> None:
        first = self.sent_s2c
        self.sent_s2c += len(batch)
        if self.s2c is not None:
            batch = self.s2c(batch, first)
        for d in batch:
            self.to_client(d)

    def flush(self) -> bool:
        """Deliver everything queued on both sides once; True if anything was sent."""
        moved = False
        batch = self.client.datagrams_to_send(self.now)
        if batch:
            moved = True
            self.wire_c2s += batch
            first = self.sent_c2s
            self.sent_c2s += len(batch)
            if self.c2s is not None:
                batch = self.c2s(batch, first)
            for d in batch:
                self.to_server(d)
        if self.server is not None:
            batch = self.server.datagrams_to_send(self.now)
            if batch:
                moved = True
                self.wire_s2c += batch
                self.to_client_batch(batch)
        return moved

    def advance(self) -> bool:
        timers = [t for t in (self.client.get_timer(),) if t is not None]
        if self.server is not None and (t := self.server.get_timer()) is not None:
            timers.append(t)
        if not timers:
            return False
        self.now = max(self.now, min(timers))
        self.client_events += self.client.handle_timer(self.now)
        if self.server is not None:
            self.server_events += self.server.handle_timer(self.now)
        return True

    # -- scenarios ----------------------------------------------------------------------------
    def handshake(self, max_rounds: int = 200) -> bool:
        self.client.connect(self.now)
        return self.run_until(self.both_complete, max_rounds)

    def run_until(self, done: Callable[[], bool], max_rounds: int = 200) -> bool:
        for _ in range(max_rounds):
            moved = self.flush()
            if done():
                self.flush()
                return True
            if self.client.is_closed and (self.server is None or self.server.is_closed):
                return done()
            if not moved and not self.advance():
                return done()
        return done()

    def both_complete(self) -> bool:
        return bool(self.complete(self.client_events)) and bool(self.complete(self.server_events))

    @staticmethod
    def complete(events: list[Event]) -> list[HandshakeComplete]:
        return [e for e in events if isinstance(e, HandshakeComplete)]

    @staticmethod
    def data(events: list[Event]) -> list[bytes]:
        return [e.data for e in events if isinstance(e, ApplicationData)]

    @staticmethod
    def closed(events: list[Event]) -> list[ConnectionClosed]:
        return [e for e in events if isinstance(e, ConnectionClosed)]

    def exchange_data(self, c_msg: bytes = b"ping", s_msg: bytes = b"pong") -> None:
        assert self.server is not None
        self.client.send_application_data(c_msg)
        self.flush()
        self.server.send_application_data(s_msg)
        self.flush()
        assert self.data(self.server_events)[-1] == c_msg
        assert self.data(self.client_events)[-1] == s_msg
