"""A tiny blocking UDP loop around the engine, for interop tests with real binaries only."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from keystore.dtls import (
    ApplicationData,
    ClientConfig,
    CookieVerifier,
    DtlsEngine,
    Event,
    HandshakeComplete,
    ServerConfig,
)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pump(engine: DtlsEngine, sock: socket.socket, addr: object) -> None:
    for d in engine.datagrams_to_send():
        sock.sendto(d, addr)  # type: ignore[arg-type]


def run_client(
    config: ClientConfig,
    server: tuple[str, int],
    until: Callable[[list[Event]], bool],
    timeout: float = 10.0,
    on_established: Callable[[DtlsEngine], None] | None = None,
    close: bool = False,
) -> tuple[DtlsEngine, list[Event]]:
    """Handshake with ``server`` and run until ``until(events)`` or the timeout.

    With ``close`` the engine sends close_notify before the socket goes away.
    """
    engine = DtlsEngine.client(config)
    events: list[Event] = []
    start = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        engine.connect(time.monotonic())
        established_seen = False
        while time.monotonic() - start < timeout and not until(events):
            _pump(engine, sock, server)
            now = time.monotonic()
            deadline = engine.get_timer()
            sock.settimeout(max(0.01, min(0.1, (deadline - now) if deadline else 0.1)))
            try:
                data, _ = sock.recvfrom(65535)
                events += engine.receive_datagram(data, time.monotonic())
            except TimeoutError:
                events += engine.handle_timer(time.monotonic())
            if engine.is_established and not established_seen:
                established_seen = True
                if on_established is not None:
                    on_established(engine)
            if engine.is_closed:
                break
        if close:
            engine.close()
        _pump(engine, sock, server)
    return engine, events


class UdpServer(threading.Thread):
    """Serves one listening socket: cookie check, one engine per address, echo-style hook."""

    def __init__(
        self, config: ServerConfig, reply: Callable[[bytes], bytes | None] | None = None
    ) -> None:
        super().__init__(daemon=True)
        self.config = config
        self.reply = reply
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = int(self.sock.getsockname()[1])
        self.cookies = CookieVerifier()
        self.sessions: dict[object, DtlsEngine] = {}
        self.events: list[Event] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                data, addr = b"", None
            now = time.monotonic()
            if addr is not None:
                engine = self.sessions.get(addr)
                if engine is None or engine.is_closed:
                    reply, ok = self.cookies.server_handle_initial_datagram(data, addr, now)
                    if reply is not None:
                        self.sock.sendto(reply, addr)
                    if ok:
                        engine = self.sessions[addr] = DtlsEngine.server(self.config, addr)
                if engine is not None and addr in self.sessions:
                    new = engine.receive_datagram(data, now, addr)
                    self.events += new
                    for e in new:
                        if isinstance(e, ApplicationData) and self.reply is not None:
                            answer = self.reply(e.data)
                            if answer is not None:
                                engine.send_application_data(answer)
            for peer, engine in list(self.sessions.items()):
                timer = engine.get_timer()
                if timer is not None and now >= timer:
                    self.events += engine.handle_timer(now)
                _pump(engine, self.sock, peer)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=2)
        self.sock.close()

    def completed(self) -> list[HandshakeComplete]:
        return [e for e in self.events if isinstance(e, HandshakeComplete)]
