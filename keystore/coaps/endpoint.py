"""One asyncio UDP socket driving many sans-IO DTLS sessions (server and/or client role).

Why our own ``DatagramProtocol`` and not aiocoap's socket classes: the engine needs the raw
datagram before any session exists (the stateless cookie exchange), CID demultiplexing before
the address lookup, and control of every datagram it emits. This module knows nothing about
CoAP; it hands decrypted records to a :class:`SessionListener` (the aiocoap glue in
:mod:`.interface`) and takes plaintext to encrypt.

Transport duties from docs/dtls.md, and how they are met here:

* **No state before the cookie.** A datagram from an address without a session goes to
  ``CookieVerifier.server_handle_initial_datagram``: a HelloVerifyRequest is sent back and
  nothing is stored; only a ClientHello with a valid cookie (proof that the peer receives at its
  source address) creates an engine. A flood of spoofed ClientHellos costs one HMAC each.
* **Rebooted clients.** A new epoch-0 ClientHello from the address of an *established* session
  (``is_client_hello``) goes through the verifier too, and a valid one replaces the old session
  (RFC 6347 §4.2.8). During a handshake, ClientHellos go to the engine (retransmissions), and so
  does a copy of the very ClientHello that created the session (same random: a duplicate from
  the network or a replay, which must not tear down a live session; the engine ignores it).
* **Connection IDs.** ``tls12_cid`` records are looked up by CID first (``peek_connection_id``);
  the engine authenticates them and reports ``PeerAddressChanged`` when a newer record came from
  another address, and only then is the session re-keyed. CIDs are random; a collision with a
  live session closes the new one (the peer retries and draws another).
* **Timers.** One loop timer per session, armed only while the engine has a deadline
  (handshake retransmission, the retained final flight); an idle established session has none.
  Idle eviction is one periodic sweep over the front of the LRU-ordered table.
* **Failures.** A failed handshake is logged once, with the peer address and the engine's reason
  (which never contains key material), at WARNING at most once per host per minute.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from ..dtls.config import ClientConfig, ServerConfig
from ..dtls.constants import AlertDescription, ContentType
from ..dtls.cookie import CookieVerifier
from ..dtls.engine import DtlsEngine
from ..dtls.errors import ConnectionStateError
from ..dtls.events import (
    AlertReceived,
    ApplicationData,
    ConnectionClosed,
    Event,
    HandshakeComplete,
    PeerAddressChanged,
)
from ..dtls.record import is_client_hello, peek_connection_id
from ..log_limit import PerPeerLimit
from .identity import DtlsClaim
from .sessions import Key, Session, SessionTable, address_key

log = logging.getLogger(__name__)


class HandshakeFailed(ConnectionError):
    """Client role: the handshake did not complete (the message says why, never a key)."""


class SessionListener(Protocol):
    """What the endpoint tells its user (the aiocoap glue)."""

    def session_established(self, session: Session) -> None: ...

    def application_data(self, session: Session, data: bytes) -> None: ...

    def session_closed(self, session: Session, reason: str) -> None: ...


@dataclass(slots=True)
class EndpointSettings:
    """Limits of one endpoint. Defaults suit an LwM2M server: devices keep their session
    across long sleeps (a new handshake costs them energy), so idle sessions live a day and,
    when the table is full, only one idle for ``stale_after`` may make room for a newcomer."""

    idle_timeout: float = 86400.0
    max_sessions: int = 150_000
    stale_after: float = 1800.0
    cookie_rotation: float = 60.0
    sweep_interval: float = 60.0
    #: at most one WARNING per host per this many seconds about failed handshakes
    log_interval: float = 60.0


@dataclass(slots=True)
class EndpointStats:
    datagrams: int = 0
    hello_verify_requests: int = 0
    dropped: int = 0
    handshakes_started: int = 0
    handshakes_completed: int = 0
    handshakes_failed: int = 0
    evicted: int = 0
    refused_full: int = 0
    address_changes: int = 0
    failures_by_alert: dict[str, int] = field(default_factory=dict)


def _where(key: Key) -> str:
    host, port = key
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _alert_name(alert: AlertDescription | int | None) -> str:
    if alert is None:
        return "none"
    return alert.name if isinstance(alert, AlertDescription) else str(alert)


class DtlsEndpoint(asyncio.DatagramProtocol):
    """A UDP socket with a table of DTLS sessions. Server role when ``server_config`` is given
    (accepts handshakes); client role through :meth:`connect` (both may be used together)."""

    def __init__(
        self,
        listener: SessionListener,
        *,
        server_config: ServerConfig | None = None,
        settings: EndpointSettings | None = None,
        cookies: CookieVerifier | None = None,
    ) -> None:
        self.listener = listener
        self.server_config = server_config
        self.settings = settings or EndpointSettings()
        self.cookies = cookies or CookieVerifier(self.settings.cookie_rotation)
        self.sessions = SessionTable()
        self.stats = EndpointStats()
        self.transport: asyncio.DatagramTransport | None = None
        self._loop = asyncio.get_running_loop()
        self._cid_length = server_config.cid_length if server_config is not None else None
        self._limiter = PerPeerLimit(self.settings.log_interval)
        self._sweeper: asyncio.TimerHandle | None = None
        self._closing = False

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    async def open(
        cls, listener: SessionListener, bind: tuple[str, int], **kwargs: Any
    ) -> DtlsEndpoint:
        """Bind ``bind`` (``0.0.0.0``/``::``/``""`` = every address, dual-stack) and start."""
        loop = asyncio.get_running_loop()
        sock = await _bound_socket(loop, bind)
        try:
            _, protocol = await loop.create_datagram_endpoint(
                lambda: cls(listener, **kwargs), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        assert isinstance(protocol, cls)
        return protocol

    @property
    def local_address(self) -> Key:
        assert self.transport is not None
        return address_key(self.transport.get_extra_info("sockname"))

    @property
    def family(self) -> int:
        assert self.transport is not None
        sock = self.transport.get_extra_info("socket")
        return int(sock.family)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # the selector loop's datagram transport does not subclass DatagramTransport
        self.transport = cast(asyncio.DatagramTransport, transport)
        self._schedule_sweep()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and not self._closing:
            log.error("DTLS socket lost: %s", exc)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors on an unconnected UDP socket carry no usable peer: nothing to map them to
        log.debug("DTLS socket error ignored: %s", exc)

    # -- incoming ------------------------------------------------------------------------------
    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.stats.datagrams += 1
        try:
            self._received(data, addr)
        except Exception:  # one bad datagram must never take the listener down
            log.exception("DTLS datagram from %s not processed", addr)

    def _received(self, data: bytes, sockaddr: Any) -> None:
        now = self._loop.time()
        key = address_key(sockaddr)
        session: Session | None = None
        if self._cid_length and data[:1] == bytes([ContentType.TLS12_CID]):
            cid = peek_connection_id(data, self._cid_length)
            if cid is not None:
                session = self.sessions.by_cid(cid)
        if session is None:
            session = self.sessions.get(key)
            if (
                session is not None
                and not session.is_client
                and session.established
                and is_client_hello(data)
                and _hello_random(data) != session.hello_random
            ):
                # a peer starting over at a known address: prove reachability first
                self._new_peer(data, sockaddr, key, now, replacing=session)
                return
        if session is None:
            self._new_peer(data, sockaddr, key, now, replacing=None)
            return
        events = session.engine.receive_datagram(data, now, key)
        self._after(session, events, sockaddr, now)

    def _new_peer(
        self, data: bytes, sockaddr: Any, key: Key, now: float, replacing: Session | None
    ) -> None:
        if self.server_config is None:
            self.stats.dropped += 1
            return
        reply, ok = self.cookies.server_handle_initial_datagram(data, key, now)
        if reply is not None:
            self.stats.hello_verify_requests += 1
            self._sendto(reply, sockaddr)
        if not ok:
            if reply is None:
                self.stats.dropped += 1
            return
        if replacing is not None:
            log.info("%s: new handshake from %s replaces its session", replacing, _where(key))
            self._drop(replacing, "the peer started a new handshake")
        if len(self.sessions) >= self.settings.max_sessions and not self._make_room(now):
            self.stats.refused_full += 1
            if self._limiter.allow("full", now):
                log.warning(
                    "DTLS session table full (%d): handshake from %s refused",
                    len(self.sessions),
                    _where(key),
                )
            return
        engine = DtlsEngine.server(self.server_config, key)
        session = Session(key, sockaddr, engine, now)
        session.hello_random = _hello_random(data)
        old = self.sessions.add(session)
        if old is not None:  # a handshaking session at this address that never finished
            self._drop(old, "superseded by a new handshake", unindexed=True)
        self.stats.handshakes_started += 1
        events = engine.receive_datagram(data, now, key)
        self._after(session, events, sockaddr, now)

    def _make_room(self, now: float) -> bool:
        victim = self.sessions.oldest()
        if victim is None or now - victim.last_active < self.settings.stale_after:
            return False
        self.stats.evicted += 1
        self._drop(victim, "evicted to make room (least recently active)")
        return True

    def _after(self, session: Session, events: Sequence[Event], sockaddr: Any, now: float) -> None:
        """Act on the engine's events, send what it queued, re-arm its timer."""
        if events or not session.established:
            self.sessions.touch(session, now)
        for event in events:
            if isinstance(event, ApplicationData):
                self._deliver(session, event.data)
            elif isinstance(event, HandshakeComplete):
                self._established(session, event)
            elif isinstance(event, PeerAddressChanged):
                self._moved(session, sockaddr)
            elif isinstance(event, ConnectionClosed):
                self._flush(session)
                self._closed(session, event)
                return
            elif isinstance(event, AlertReceived):
                log.debug("%s: alert %s", session, _alert_name(event.description))
        self._flush(session)
        if session.closed:
            self._closed(session, None)
        else:
            self._arm(session)

    def _established(self, session: Session, event: HandshakeComplete) -> None:
        session.claim = DtlsClaim(event.peer_identity, event.cipher_suite)
        if (
            event.connection_id
            and not session.is_client
            and not self.sessions.add_cid(session, event.connection_id)
        ):
            log.warning("%s: connection id collision, session closed", session)
            session.engine.close()
            return
        self.stats.handshakes_completed += 1
        log.debug("%s established%s", session, " (resumed)" if event.resumed else "")
        if session.handshake is not None and not session.handshake.done():
            session.handshake.set_result(None)
        try:
            self.listener.session_established(session)
        except Exception:
            log.exception("%s: session_established handler failed", session)

    def _deliver(self, session: Session, data: bytes) -> None:
        try:
            self.listener.application_data(session, data)
        except Exception:
            log.exception("%s: application data handler failed", session)

    def _moved(self, session: Session, sockaddr: Any) -> None:
        old = session.key
        new = address_key(sockaddr)
        session.sockaddr = sockaddr
        displaced = self.sessions.move(session, new)
        self.stats.address_changes += 1
        log.info("%s moved from %s (connection id)", session, _where(old))
        if displaced is not None:
            self._drop(displaced, "its address was taken over by another session", unindexed=True)

    def _closed(self, session: Session, event: ConnectionClosed | None) -> None:
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None
        was_indexed = self.sessions.remove(session)
        reason = event.reason if event is not None else "closed"
        if event is not None and session.claim is None:
            self._log_failure(session, event)
        if session.handshake is not None and not session.handshake.done():
            session.handshake.set_exception(
                HandshakeFailed(f"DTLS handshake with {_where(session.key)} failed: {reason}")
            )
        if was_indexed or session.claim is not None:
            self._notify_closed(session, reason)

    def _log_failure(self, session: Session, event: ConnectionClosed) -> None:
        self.stats.handshakes_failed += 1
        alert = _alert_name(event.alert)
        self.stats.failures_by_alert[alert] = self.stats.failures_by_alert.get(alert, 0) + 1
        direction = "received" if event.by_peer else "sent"
        level = (
            logging.WARNING
            if self._limiter.allow(session.key[0], self._loop.time())
            else logging.DEBUG
        )
        log.log(
            level,
            "DTLS handshake with %s failed: %s (alert %s %s)",
            _where(session.key),
            event.reason,
            alert,
            direction,
        )

    def _notify_closed(self, session: Session, reason: str) -> None:
        try:
            self.listener.session_closed(session, reason)
        except Exception:
            log.exception("%s: session_closed handler failed", session)

    # -- timers --------------------------------------------------------------------------------
    def _arm(self, session: Session) -> None:
        deadline = session.engine.get_timer()
        timer = session.timer
        if deadline is None:
            if timer is not None:
                timer.cancel()
                session.timer = None
            return
        if timer is not None:
            if timer.when() == deadline:
                return
            timer.cancel()
        session.timer = self._loop.call_at(deadline, self._on_timer, session)

    def _on_timer(self, session: Session) -> None:
        session.timer = None
        if session not in self.sessions or session.closed:
            return
        now = self._loop.time()
        try:
            events = session.engine.handle_timer(now)
            self._after(session, events, session.sockaddr, now)
        except Exception:
            log.exception("%s: timer handling failed", session)

    def _schedule_sweep(self) -> None:
        if not self._closing:
            self._sweeper = self._loop.call_later(self.settings.sweep_interval, self._sweep)

    def _sweep(self) -> None:
        self.evict_idle()
        self._schedule_sweep()

    def evict_idle(self, idle_timeout: float | None = None) -> int:
        """Drop sessions idle for ``idle_timeout`` (default: the settings'); returns how many.
        Silent (no close_notify): an idle device is usually asleep or gone."""
        cutoff = self._loop.time() - (
            self.settings.idle_timeout if idle_timeout is None else idle_timeout
        )
        idle = self.sessions.idle_since(cutoff)
        for session in idle:
            self.stats.evicted += 1
            self._drop(session, "idle")
        return len(idle)

    # -- outgoing ------------------------------------------------------------------------------
    def send(self, session: Session, data: bytes) -> None:
        """Encrypt ``data`` as one record on ``session``; ``ConnectionStateError`` when it is
        not established (closed, evicted, or still handshaking)."""
        if session.closed or session not in self.sessions:
            raise ConnectionStateError(f"{session} is closed")
        session.engine.send_application_data(data)
        self._flush(session)
        self.sessions.touch(session, self._loop.time())
        self._arm(session)

    def _flush(self, session: Session) -> None:
        for datagram in session.engine.datagrams_to_send():
            self._sendto(datagram, session.sockaddr)

    def _sendto(self, datagram: bytes, sockaddr: Any) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(datagram, sockaddr)

    # -- client role ---------------------------------------------------------------------------
    async def resolve(self, host: str, port: int) -> Any:
        """A socket address for ``host:port`` in this socket's family (IPv4 peers of a
        dual-stack IPv6 socket as v4-mapped addresses)."""
        family = self.family
        flags = socket.AI_V4MAPPED if family == socket.AF_INET6 else 0
        infos = await self._loop.getaddrinfo(
            host, port, family=family, type=socket.SOCK_DGRAM, flags=flags
        )
        if not infos:
            raise OSError(f"cannot resolve {host!r}")
        return infos[0][4]

    def connect(self, sockaddr: Any, config: ClientConfig) -> Session:
        """Start a client handshake to ``sockaddr``; await ``session.handshake`` for it (raises
        :class:`HandshakeFailed`). An existing session with that peer is dropped."""
        now = self._loop.time()
        key = address_key(sockaddr)
        old = self.sessions.get(key)
        if old is not None:
            self._drop(old, "replaced by a new client handshake")
        engine = DtlsEngine.client(config, key)
        session = Session(key, sockaddr, engine, now, is_client=True)
        session.handshake = self._loop.create_future()
        # a failure nobody awaits (the request was cancelled) must not log "never retrieved"
        session.handshake.add_done_callback(_retrieved)
        self.sessions.add(session)
        self.stats.handshakes_started += 1
        engine.connect(now)
        self._flush(session)
        self._arm(session)
        return session

    # -- closing -------------------------------------------------------------------------------
    def close_session(self, session: Session, reason: str = "closed locally") -> None:
        """close_notify (if established) and forget the session."""
        self._drop(session, reason, notify_peer=True)

    def _drop(
        self,
        session: Session,
        reason: str,
        *,
        notify_peer: bool = False,
        unindexed: bool = False,
    ) -> None:
        if notify_peer and session.established:
            session.engine.close()
            self._flush(session)
        else:
            session.engine.close()
            session.engine.datagrams_to_send()  # nothing goes out for a silent drop
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None
        removed = self.sessions.remove(session)
        if session.handshake is not None and not session.handshake.done():
            session.handshake.set_exception(HandshakeFailed(reason))
        if removed or unindexed:
            log.debug("%s dropped: %s", session, reason)
            self._notify_closed(session, reason)

    async def shutdown(self) -> None:
        """close_notify to every established peer, then close the socket."""
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for session in self.sessions:
            self._drop(session, "shutting down", notify_peer=True)
        if self.transport is not None:
            self.transport.close()
            self.transport = None


def _retrieved(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _hello_random(datagram: bytes) -> bytes:
    """The 32-byte random of a ClientHello datagram (record header 13 + handshake header 12 +
    client_version 2 bytes in front of it); the cookie verifier has already parsed it."""
    return bytes(datagram[27:59])


async def _bound_socket(loop: asyncio.AbstractEventLoop, bind: tuple[str, int]) -> socket.socket:
    host, port = bind
    if host in ("", "0.0.0.0", "::", "*"):
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind(("::", port))
        except BaseException:
            sock.close()
            raise
    else:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
        if not infos:
            raise OSError(f"cannot resolve bind address {host!r}")
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind(sockaddr)
        except BaseException:
            sock.close()
            raise
    sock.setblocking(False)
    for size in (4 << 20, 1 << 20):  # a burst of handshakes must not overflow the buffer
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
            break
        except OSError:
            continue
    return sock
