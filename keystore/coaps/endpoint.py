"""One asyncio UDP socket driving many sans-IO DTLS sessions (server and/or client role).

Why our own ``DatagramProtocol`` and not aiocoap's socket classes: the engine needs the raw
datagram before any session exists (the stateless cookie exchange), CID demultiplexing before
the address lookup, and control of every datagram it emits. This module knows nothing about
CoAP; it hands decrypted records to a :class:`SessionListener` (the aiocoap glue in
:mod:`.interface`) and takes plaintext to encrypt.

Transport duties from docs/dtls.md, and how they are met here:

* **No state before the cookie.** A datagram from an address without a session is scanned by
  ``scan_client_hello`` (headers and length bytes only); a ClientHello without a valid cookie
  gets a HelloVerifyRequest and nothing is stored; only a ClientHello with a valid cookie
  (proof that the peer receives at its source address) creates an engine. A spoofed
  ClientHello costs one scan, one HMAC from a pre-keyed state and one 60-byte reply.
* **A ClientHello flood does not starve the rest** (issue 11). uvloop hands a loop iteration
  up to 32 datagrams per socket, one ``datagram_received`` each. Everything that is not a
  ClientHello without a valid cookie — records of sessions, handshake flights, ClientHellos
  with a valid cookie — is handled at once, in arrival order. ClientHellos without a valid
  cookie are only queued, and answered together by one callback after the batch
  (``_answer_hellos``, the next ``call_soon`` turn). The budget of that turn is what a token
  bucket holds: ``hello_rate`` HelloVerifyRequests per second, up to a tenth of a second's
  worth saved up; ClientHellos beyond it are dropped and counted (``drops["hello_overload"]``,
  ``stats.hellos_dropped``), never logged one by one. Why tokens and not a fixed count per
  iteration (tried first, and measured by ``bench/dtls_flood.py``): how many datagrams one
  iteration reads says how long the process was *descheduled*, not how busy the loop is — on
  a shared 2-core machine a fixed 16 per batch dropped a fifth of a 10k/s flood (and with it
  a fifth of the devices' first ClientHellos, each then waiting a 1 s retransmission) while
  the server used a fifth of a core. The bucket answers every ClientHello the server can
  afford and bounds what a flood beyond ``hello_rate`` costs (the reply is the expensive
  part: a send system call; the scan and the drop cost a few µs). A dropped cookie-less
  ClientHello is retransmitted by its client (RFC 6347 §4.2.4); the datagrams it would have
  delayed are the ones devices wait for. Why cookie validity and not presence decides: a
  garbage cookie is as cheap to spoof as none, so only a *valid* cookie (one HMAC to check)
  skips the queue.
* **Half-open handshakes are bounded.** From the valid cookie on, a handshake holds an engine
  (≈10 KB) until it completes; the engine alone would give up only after its retransmissions
  (~2 min). The endpoint drops a handshake still incomplete after ``handshake_timeout`` and
  refuses a new one while ``max_handshakes`` are in progress (``drops["handshake_limit"]``,
  ``stats.handshakes_refused``; the client's retransmitted ClientHello, cookie still valid,
  gets in once there is room). One timer for all of them, on the oldest.
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
* **Drops.** Every record or datagram the DTLS layer discards (RFC 6347 says: silently) is
  counted by reason in ``stats.drops`` (:class:`~keystore.dtls.drops.DropReason` values) and
  logged at DEBUG, at most once per host per ``log_interval``: "the device gets no answer" is
  then one look at the counters or the debug log.
* **Persistence.** With a ``session_store`` (:mod:`.persistence`), established server sessions
  survive a crash: written when the handshake completes (before our Finished goes out), their
  replay window written before any reply to the records it accepted, their write sequence
  numbers reserved ahead (``reserve_ahead``) so a restored session never reuses one; all writes
  of one loop iteration in one transaction; restored by :meth:`DtlsEndpoint.open`. A graceful
  shutdown then keeps the sessions too (no close_notify). See docs/coaps-transport.md.
* **Sessions of other nodes.** With a store several nodes share (``SharedDtlsSessionStore``,
  Redis) nothing is loaded at start; a record (not a ClientHello) from a peer without a session
  here is looked up in the store, by our CID for a ``tls12_cid`` record, else by the peer's
  address (``_adopt``). The record must authenticate against the stored keys and replay window
  (a throw-away engine) before the session is *claimed* (it becomes this node's; its write
  reservation moves ahead) and continued without a handshake; the node that had it learns at
  its next write that it lost it and forgets it silently. Lookups are one synchronous store
  round trip each, bounded: at most ``lookup_rate`` per second (a token bucket), and a peer
  (address, CID) that found nothing is not looked up again for ``lookup_retry`` seconds, so a
  flood of records from spoofed unknown peers costs at most ``lookup_rate`` round trips per
  second (counted: ``stats.session_lookups*``). See docs/coaps-transport.md, "DTLS across nodes".
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from ..dtls.config import ClientConfig, ServerConfig
from ..dtls.constants import AlertDescription, ContentType
from ..dtls.cookie import CookieVerifier, HelloScan, scan_client_hello
from ..dtls.drops import DropReason
from ..dtls.engine import DtlsEngine
from ..dtls.errors import ConnectionStateError, DtlsError
from ..dtls.events import (
    AlertReceived,
    ApplicationData,
    ConnectionClosed,
    Event,
    HandshakeComplete,
    PeerAddressChanged,
    RecordDropped,
)
from ..dtls.record import is_client_hello, peek_connection_id
from ..log_limit import PerPeerLimit
from .identity import DtlsClaim
from .persistence import (
    DtlsSessionStore,
    SessionProgress,
    SharedDtlsSessionStore,
    StoredSession,
)
from .sessions import Key, Session, SessionTable, address_key

log = logging.getLogger(__name__)

_CID_RECORD = bytes([ContentType.TLS12_CID])


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
    #: at most one WARNING per host per this many seconds about failed handshakes (and one
    #: DEBUG line per host about dropped datagrams)
    log_interval: float = 60.0
    #: where established sessions are kept so that they survive a restart (None: memory only)
    session_store: DtlsSessionStore | None = None
    #: write sequence numbers reserved per store write; a restored session continues after
    #: the reservation, so numbers are skipped on a restart but never reused
    reserve_ahead: int = 1024
    #: seconds to wait before writing to the store again after it failed
    store_retry: float = 1.0
    #: HelloVerifyRequests per second at most (bursts up to a tenth of a second's worth);
    #: ClientHellos without a valid cookie beyond it are dropped, counted: a spoofed flood
    #: then costs a scan per datagram, not a reply
    hello_rate: float = 20_000.0
    #: seconds from the cookie-verified ClientHello to the end of the handshake; an
    #: incomplete handshake is dropped then (the engine's own retransmissions last ~2 min)
    handshake_timeout: float = 30.0
    #: handshakes in progress at once (≈10 KB each); a new one beyond it is refused (counted)
    max_handshakes: int = 1000
    #: shared session store: lookups of unknown peers' sessions per second at most (bursts up
    #: to a tenth of a second's worth, at least one); beyond, the record is dropped (counted)
    lookup_rate: float = 200.0
    #: shared session store: seconds a peer (address, CID) whose lookup found nothing is not
    #: looked up again (its records are dropped as without a session)
    lookup_retry: float = 5.0
    #: how many such peers are remembered at most (the oldest are forgotten first)
    max_lookup_misses: int = 100_000

    def __post_init__(self) -> None:
        """Refused at start, naming the setting: a zero budget or cap would lock every
        device out, silently."""
        for name in ("max_handshakes", "max_sessions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        for name in (
            "hello_rate",
            "handshake_timeout",
            "idle_timeout",
            "cookie_rotation",
            "lookup_rate",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be greater than 0")


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
    #: cookie-verified handshakes refused because ``max_handshakes`` were in progress
    handshakes_refused: int = 0
    #: handshakes dropped for not completing within ``handshake_timeout``
    handshakes_timed_out: int = 0
    #: ClientHellos without a valid cookie dropped beyond ``hello_rate`` (no reply)
    hellos_dropped: int = 0
    address_changes: int = 0
    failures_by_alert: dict[str, int] = field(default_factory=dict)
    #: datagrams/records dropped without an answer, by ``DropReason`` value
    drops: dict[str, int] = field(default_factory=dict)
    #: sessions restored from the session store at start
    sessions_restored: int = 0
    #: transactions written to the session store, and failed attempts
    session_writes: int = 0
    session_write_failures: int = 0
    #: shared store: lookups sent to the store, refused by ``lookup_rate``, answered by the
    #: memory of an earlier miss (not sent)
    session_lookups: int = 0
    session_lookups_refused: int = 0
    session_lookups_cached: int = 0
    #: shared store: sessions of other nodes (or of this node before a restart) continued here
    sessions_adopted: int = 0
    #: shared store: sessions forgotten because another node claimed them
    sessions_taken_over: int = 0


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
        self._drop_limiter = PerPeerLimit(self.settings.log_interval)
        self._sweeper: asyncio.TimerHandle | None = None
        self._closing = False
        self._store = self.settings.session_store if server_config is not None else None
        self._shared = self._store if isinstance(self._store, SharedDtlsSessionStore) else None
        #: shared store: lookups the token bucket allows now, when it was refilled, and the
        #: peers whose lookup found nothing → until when they are not looked up again
        self._lookup_tokens = max(1.0, self.settings.lookup_rate / 10)
        self._lookup_refill = self._loop.time()
        self._misses: dict[tuple[Key, bytes | None], float] = {}
        self._expire_cursor = 0
        #: sessions with state to write (insertion-ordered set), rows to delete
        self._dirty: dict[Session, None] = {}
        self._removed: list[str] = []
        self._commit_handle: asyncio.Handle | None = None
        self._store_retry_at = 0.0
        #: ClientHellos without a valid cookie waiting for their HelloVerifyRequest
        self._hellos: list[tuple[bytes, Any, Key, HelloScan]] = []
        #: HelloVerifyRequests the token bucket allows now, and when it was last refilled
        self._hello_tokens = self.settings.hello_rate / 10
        self._hello_refill = self._loop.time()
        #: server-role sessions still handshaking → when they started (oldest first)
        self._handshaking: dict[Session, float] = {}
        self._handshake_timer: asyncio.TimerHandle | None = None

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    async def open(
        cls,
        listener: SessionListener,
        bind: tuple[str, int],
        *,
        reuse_port: bool = False,
        **kwargs: Any,
    ) -> DtlsEndpoint:
        """Bind ``bind`` (``0.0.0.0``/``::``/``""`` = every address, dual-stack) and start;
        ``reuse_port``: share the port with other processes (SO_REUSEPORT)."""
        loop = asyncio.get_running_loop()
        sock = await _bound_socket(loop, bind, reuse_port=reuse_port)
        try:
            _, protocol = await loop.create_datagram_endpoint(
                lambda: cls(listener, **kwargs), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        assert isinstance(protocol, cls)
        protocol.restore_sessions()
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
        cid: bytes | None = None
        if self._cid_length and data[:1] == _CID_RECORD:
            cid = peek_connection_id(data, self._cid_length)
            if cid is not None:
                session = self.sessions.by_cid(cid)
                if (
                    session is None
                    and self._shared is not None
                    and _session_record(data)
                    and self._adopt(data, sockaddr, key, cid, now)
                ):
                    return
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
            if (
                self._shared is not None
                and cid is None
                and _session_record(data)
                and self._adopt(data, sockaddr, key, None, now)
            ):
                return
            self._new_peer(data, sockaddr, key, now, replacing=None)
            return
        events = session.engine.receive_datagram(data, now, key)
        self._after(session, events, sockaddr, now)

    # -- sessions of other nodes (shared store; see the module docstring) -----------------------
    def _adopt(self, data: bytes, sockaddr: Any, key: Key, cid: bytes | None, now: float) -> bool:
        """Continue a stored session this record belongs to; True when it did (the record
        was handed to it). False: nothing found, not authentic, or not looked up (rate, an
        earlier miss, a full table, a failing store): the caller drops it as before."""
        store, config = self._shared, self.server_config
        if store is None or config is None:
            return False
        probe = (key, cid)
        misses = self._misses
        until = misses.get(probe)
        if until is not None:
            if until > now:
                self.stats.session_lookups_cached += 1
                return False
            del misses[probe]
        rate = self.settings.lookup_rate
        self._lookup_tokens = min(
            max(1.0, rate / 10), self._lookup_tokens + max(0.0, now - self._lookup_refill) * rate
        )
        self._lookup_refill = now
        if self._lookup_tokens < 1:
            self.stats.session_lookups_refused += 1
            return False
        if len(self.sessions) >= self.settings.max_sessions and not self._make_room(now):
            return False
        self._lookup_tokens -= 1
        self.stats.session_lookups += 1
        try:
            row = store.find_dtls_session(
                address=None if cid is not None else key,
                cid=cid,
                cutoff=time.time() - self.settings.idle_timeout,
            )
        except Exception as exc:
            self._lookup_failed(exc, probe, now)
            return False
        if row is None or not self._authentic(config, row, data, key, now):
            self._miss(probe, now)
            return False
        try:
            claimed = store.claim_dtls_session(row.id, self.settings.reserve_ahead)
        except Exception as exc:
            self._lookup_failed(exc, probe, now)
            return False
        if claimed is None:
            self._miss(probe, now)
            return False
        stored_key = (claimed.host, claimed.port)
        try:
            engine = DtlsEngine.restore(config, claimed.state, stored_key)
        except (DtlsError, ValueError):
            self._miss(probe, now)
            return False
        own_cid = claimed.state.own_cid
        for held in (
            self.sessions.get(stored_key),
            self.sessions.get(key),
            self.sessions.by_cid(own_cid) if own_cid else None,
        ):
            if held is not None and held.persist_id == claimed.id:
                # a copy of this very session, held here before another node claimed it:
                # stale (its window and reservation); it goes without touching the row
                self._lose(held)
        # the session goes where the store had it (the engine then reports the authenticated
        # address change, RFC 9146 §6), unless this node has another session there
        place = stored_key if stored_key == key or self.sessions.get(stored_key) is None else key
        session = Session(
            place, sockaddr if place == key else self._sockaddr_for(place), engine, now
        )
        session.persist_id = claimed.id
        session.stored = True
        session.durable_write = claimed.state.write_seq + self.settings.reserve_ahead
        session.durable_read = claimed.state.read_top
        session.claim = DtlsClaim(claimed.state.peer_identity, claimed.state.cipher_suite)
        displaced = self.sessions.add(session)
        if displaced is not None:
            self._drop(displaced, "its address was taken over by another session", unindexed=True)
        if own_cid and not self.sessions.add_cid(session, own_cid):
            other = self.sessions.by_cid(own_cid)  # another session of ours drew the same CID
            if other is not None:
                self._drop(other, "connection id taken over by a stored session")
            self.sessions.add_cid(session, own_cid)
        misses.pop(probe, None)
        self.stats.sessions_adopted += 1
        log.info("%s continued from the session store", session)
        try:
            self.listener.session_established(session)
        except Exception:
            log.exception("%s: session_established handler failed", session)
        events = engine.receive_datagram(data, now, key)
        self._after(session, events, sockaddr, now)
        return True

    def _authentic(
        self, config: ServerConfig, row: StoredSession, data: bytes, key: Key, now: float
    ) -> bool:
        """Whether ``data`` authenticates under the stored session (its keys and replay
        window), checked on a throw-away engine: a forged or replayed record (a CID is
        visible on the wire) must not make this node claim a session another node uses."""
        try:
            engine = DtlsEngine.restore(config, row.state, (row.host, row.port))
        except (DtlsError, ValueError) as exc:
            log.info("stored DTLS session for %s not usable: %s", _where(key), exc)
            return False
        events = engine.receive_datagram(data, now, key)
        engine.datagrams_to_send()
        return any(not isinstance(e, RecordDropped) for e in events)

    def _miss(self, probe: tuple[Key, bytes | None], now: float) -> None:
        misses = self._misses
        misses[probe] = now + self.settings.lookup_retry
        while len(misses) > self.settings.max_lookup_misses:
            del misses[next(iter(misses))]

    def _lookup_failed(self, exc: Exception, probe: tuple[Key, bytes | None], now: float) -> None:
        """A store that fails is not asked again for this peer for ``lookup_retry`` seconds;
        logged once per ``log_interval``."""
        self._miss(probe, now)
        if self._limiter.allow("session-lookup", now):
            log.error("DTLS session lookup failed: %s", exc)

    def _lose(self, session: Session) -> None:
        """Another node claimed this session: forget it without a word (no close_notify,
        nothing sent in it) and without deleting the row (it is the other node's now)."""
        self.stats.sessions_taken_over += 1
        session.persist_id = None
        session.stored = False
        self._drop(session, "continued by another node", unindexed=True)

    def _count_drop(self, reason: DropReason, key: Key, now: float) -> None:
        """Count a silent drop and say why at DEBUG (at most once per host and interval)."""
        self.stats.dropped += 1
        drops = self.stats.drops
        drops[reason.value] = drops.get(reason.value, 0) + 1
        if log.isEnabledFor(logging.DEBUG) and self._drop_limiter.allow(key[0], now):
            log.debug("DTLS datagram from %s dropped: %s", _where(key), reason.value)

    def _new_peer(
        self, data: bytes, sockaddr: Any, key: Key, now: float, replacing: Session | None
    ) -> None:
        config = self.server_config
        if config is None:
            self._count_drop(
                DropReason.NOT_A_SERVER if is_client_hello(data) else DropReason.NO_SESSION,
                key,
                now,
            )
            return
        scan = scan_client_hello(data)
        if isinstance(scan, DropReason):
            self._count_drop(scan, key, now)
            return
        if not (data[scan[0]] and self.cookies.cookie_valid(data, scan, key, now)):
            self._defer_hello(data, sockaddr, key, scan, now)
            return
        if not self._handshake_room(key, now):
            return
        if replacing is not None:
            log.info("%s: new handshake from %s replaces its session", replacing, _where(key))
            self._drop(replacing, "the peer started a new handshake")
        if len(self.sessions) >= self.settings.max_sessions and not self._make_room(now):
            self.stats.refused_full += 1
            self._count_drop(DropReason.TABLE_FULL, key, now)
            if self._limiter.allow("full", now):
                log.warning(
                    "DTLS session table full (%d): handshake from %s refused",
                    len(self.sessions),
                    _where(key),
                )
            return
        engine = DtlsEngine.server(config, key)
        session = Session(key, sockaddr, engine, now)
        session.hello_random = _hello_random(data)
        old = self.sessions.add(session)
        if old is not None:  # a handshaking session at this address that never finished
            self._drop(old, "superseded by a new handshake", unindexed=True)
        self._handshaking[session] = now
        self._arm_handshake_timer()
        self.stats.handshakes_started += 1
        events = engine.receive_datagram(data, now, key)
        self._after(session, events, sockaddr, now)

    # -- ClientHellos without a valid cookie (see the module docstring) ---------------------------
    def _defer_hello(
        self, data: bytes, sockaddr: Any, key: Key, scan: HelloScan, now: float
    ) -> None:
        hellos = self._hellos
        if not hellos:  # the first of this batch: refill the bucket
            rate = self.settings.hello_rate
            elapsed = max(0.0, now - self._hello_refill)
            self._hello_tokens = min(rate / 10, self._hello_tokens + elapsed * rate)
            self._hello_refill = now
        if len(hellos) >= self._hello_tokens:
            self.stats.hellos_dropped += 1
            self._count_drop(DropReason.HELLO_OVERLOAD, key, now)
            return
        hellos.append((data, sockaddr, key, scan))
        if len(hellos) == 1:
            self._loop.call_soon(self._answer_hellos)

    def _answer_hellos(self) -> None:
        """Send the HelloVerifyRequests of the ClientHellos queued during the last batch."""
        hellos, self._hellos = self._hellos, []
        transport = self.transport
        if transport is None or transport.is_closing() or self._closing:
            return
        now = self._loop.time()
        answer = self.cookies.hello_verify_request
        for data, sockaddr, key, scan in hellos:
            transport.sendto(answer(data, scan, key, now), sockaddr)
        self.stats.hello_verify_requests += len(hellos)
        self._hello_tokens -= len(hellos)

    # -- half-open handshakes ------------------------------------------------------------------
    def _handshake_room(self, key: Key, now: float) -> bool:
        """Whether a new handshake from ``key`` may start (``max_handshakes``); a refusal is
        counted and warned about at most once per ``log_interval``."""
        handshaking = self._handshaking
        if len(handshaking) < self.settings.max_handshakes:
            return True
        self.expire_handshakes(now)
        if len(handshaking) < self.settings.max_handshakes:
            return True
        existing = self.sessions.get(key)
        if existing is not None and existing in handshaking:
            return True  # it replaces the one this address had
        self.stats.handshakes_refused += 1
        self._count_drop(DropReason.HANDSHAKE_LIMIT, key, now)
        if self._limiter.allow("handshakes", now):
            log.warning(
                "DTLS: %d handshakes in progress (dtls.max_handshakes): handshake from %s refused",
                len(handshaking),
                _where(key),
            )
        return False

    def expire_handshakes(self, now: float | None = None) -> int:
        """Drop the server-role handshakes started ``handshake_timeout`` or more before
        ``now`` (default: the loop's time) and not completed; returns how many. Silent (no
        alert): the peer is gone or was never there; it starts over if it is back."""
        if now is None:
            now = self._loop.time()
        cutoff = now - self.settings.handshake_timeout
        expired: list[Session] = []
        for session, started in self._handshaking.items():
            if started > cutoff:
                break
            expired.append(session)
        for session in expired:
            self.stats.handshakes_timed_out += 1
            self._handshaking.pop(session, None)
            self._drop(session, "handshake not completed within dtls.handshake_timeout")
        return len(expired)

    @property
    def handshakes_in_progress(self) -> int:
        """Server-role handshakes holding an engine (``max_handshakes`` bounds it)."""
        return len(self._handshaking)

    def _arm_handshake_timer(self) -> None:
        if self._handshake_timer is not None or not self._handshaking or self._closing:
            return
        started = next(iter(self._handshaking.values()))
        self._handshake_timer = self._loop.call_at(
            started + self.settings.handshake_timeout, self._on_handshake_timer
        )

    def _on_handshake_timer(self) -> None:
        self._handshake_timer = None
        # the loop may run a timer up to its clock resolution early: do not spin on it
        self.expire_handshakes(self._loop.time() + 0.01)
        self._arm_handshake_timer()

    def _make_room(self, now: float) -> bool:
        victim = self.sessions.oldest()
        if victim is None or now - victim.last_active < self.settings.stale_after:
            return False
        self.stats.evicted += 1
        self._drop(victim, "evicted to make room (least recently active)")
        return True

    def _after(self, session: Session, events: Sequence[Event], sockaddr: Any, now: float) -> None:
        """Act on the engine's events, send what it queued, re-arm its timer."""
        if not session.established or any(not isinstance(e, RecordDropped) for e in events):
            self.sessions.touch(session, now)
        for event in events:
            if isinstance(event, ApplicationData):
                if session.persist_id is not None:
                    self._track(session)  # before the listener can answer (see _flush)
                self._deliver(session, event.data)
            elif isinstance(event, RecordDropped):
                self._count_drop(event.reason, session.key, now)
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
        self._handshaking.pop(session, None)
        session.claim = DtlsClaim(event.peer_identity, event.cipher_suite)
        if (
            event.connection_id
            and not session.is_client
            and not self.sessions.add_cid(session, event.connection_id)
        ):
            log.warning("%s: connection id collision, session closed", session)
            session.engine.close()
            return
        if self._store is not None and not session.is_client:
            # written before our Finished goes out (``_flush`` holds it until the commit); a
            # shared store may name the id after our CID (found by CID in one round trip)
            shared = self._shared
            session.persist_id = (
                shared.new_session_id(event.connection_id or None)
                if shared is not None
                else os.urandom(12).hex()
            )
            self._track(session)
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
        if session.persist_id is not None:
            self._track(session)
        log.info("%s moved from %s (connection id)", session, _where(old))
        if displaced is not None:
            self._drop(displaced, "its address was taken over by another session", unindexed=True)

    def _closed(self, session: Session, event: ConnectionClosed | None) -> None:
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None
        self._forget(session)
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
        self.expire_stored()
        self._schedule_sweep()

    def expire_stored(self) -> None:
        """Shared store: delete a slice of the stored sessions idle for ``idle_timeout``
        (nobody loads them all at start any more, so nobody else would); the scan goes on
        where the last sweep left it. A failure is logged once per ``log_interval``."""
        store = self._shared
        if store is None:
            return
        try:
            self._expire_cursor = store.expire_dtls_sessions(
                time.time() - self.settings.idle_timeout, self._expire_cursor
            )
        except Exception as exc:
            if self._limiter.allow("session-expiry", self._loop.time()):
                log.error("idle DTLS sessions not expired in the store: %s", exc)

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
        """Send what the engine queued, unless the store must first cover it: a persisted
        session's datagrams wait for the commit (next loop iteration) while its row is new,
        its replay window is ahead of the stored one, or a record used a sequence number
        beyond the stored reservation."""
        if session.persist_id is not None:
            engine = session.engine
            if engine.is_established:
                if self._needs_write(session):
                    self._track(session)
                if self._must_hold(session):
                    return
            elif session.stored and engine.next_write_seq > session.durable_write:
                # closing (close_notify, fatal alert) past the reservation: stay silent rather
                # than use a sequence number a restored copy of the session could use again
                engine.datagrams_to_send()
                return
        for datagram in session.engine.datagrams_to_send():
            self._sendto(datagram, session.sockaddr)

    # -- persistence ---------------------------------------------------------------------------
    def _needs_write(self, session: Session) -> bool:
        engine = session.engine
        return (
            not session.stored
            or engine.read_high_water > session.durable_read
            or engine.next_write_seq + self.settings.reserve_ahead // 2 > session.durable_write
        )

    def _must_hold(self, session: Session) -> bool:
        engine = session.engine
        return (
            not session.stored
            or engine.read_high_water > session.durable_read
            or engine.next_write_seq > session.durable_write
        )

    def _track(self, session: Session) -> None:
        self._dirty[session] = None
        self._schedule_commit()

    def _schedule_commit(self) -> None:
        if self._commit_handle is not None or self._closing:
            return
        if self._store_retry_at > self._loop.time():
            self._commit_handle = self._loop.call_at(self._store_retry_at, self._commit)
        else:
            self._commit_handle = self._loop.call_soon(self._commit)

    def _forget(self, session: Session) -> None:
        """The session ends: its row goes (with the next commit)."""
        self._handshaking.pop(session, None)
        self._dirty.pop(session, None)
        if session.persist_id is not None and session.stored:
            self._removed.append(session.persist_id)
            self._schedule_commit()
        session.persist_id = None

    def _commit(self) -> None:
        """Write every pending session change in one transaction, then send what waited."""
        self._commit_handle = None
        store = self._store
        if store is None:
            return
        dirty, self._dirty = list(self._dirty), {}
        removed, self._removed = self._removed, []
        new: list[StoredSession] = []
        progress: list[SessionProgress] = []
        writes: list[tuple[Session, int, int]] = []
        wall = time.time()
        reserve = self.settings.reserve_ahead
        for session in dirty:
            engine = session.engine
            if session.persist_id is None or not engine.is_established:
                continue
            state = engine.export_state()
            write = session.durable_write
            if engine.next_write_seq + reserve // 2 > write:
                write = engine.next_write_seq + reserve
            host, port = session.key
            if session.stored:
                progress.append(
                    SessionProgress(
                        session.persist_id,
                        host,
                        port,
                        write,
                        state.read_top,
                        state.read_bitmap,
                        wall,
                    )
                )
            else:
                state = dataclasses.replace(state, write_seq=write)
                new.append(StoredSession(session.persist_id, host, port, state, wall))
            writes.append((session, write, state.read_top))
        if not (new or progress or removed):
            return
        lost: set[str] = set()
        try:
            if self._shared is not None:
                lost = set(self._shared.save_owned_dtls_sessions(new, progress, removed))
            else:
                store.save_dtls_sessions(new, progress, removed)
        except Exception as exc:
            self._store_failed(exc, writes, removed)
            return
        self.stats.session_writes += 1
        self._store_retry_at = 0.0
        for session, write, read in writes:
            if session.persist_id in lost:
                if not session.stored:
                    # a new session's id named a CID another stored session has (drawn twice):
                    # nothing was written; it is saved under a random id with the next commit
                    session.persist_id = os.urandom(12).hex()
                    self._track(session)
                    continue
                self._lose(session)
                continue
            session.stored = True
            session.durable_write = max(session.durable_write, write)
            session.durable_read = max(session.durable_read, read)
            self._flush(session)
            self._arm(session)

    def _store_failed(
        self, exc: Exception, writes: list[tuple[Session, int, int]], removed: list[str]
    ) -> None:
        """The store refused a write (disk full, locked): keep serving, never reuse a number.

        A new session runs unpersisted (it will not survive a crash, as without a store); a
        stored one keeps its replies flowing (its replay window on disk lags, logged) unless
        it used up its reservation, in which case it is dropped (the peer handshakes again).
        Deletions are retried with the next write, after ``store_retry`` seconds.

        A failed call may still have written part of what it was given (a store of several
        steps, e.g. Redis with one script per session, or a write that reached Redis before
        its answer timed out): every write is safe to repeat and moves nothing backwards, so
        treating it as not written is safe, except for a new session, whose row would be
        left with a reservation this node goes past unpersisted: its id joins the deletions
        (removing a row that was never written is harmless), retried until one succeeds."""
        self.stats.session_write_failures += 1
        now = self._loop.time()
        self._store_retry_at = now + self.settings.store_retry
        self._removed = removed + self._removed
        if self._limiter.allow("session-store", now):
            log.error("DTLS sessions not saved (they may not survive a restart): %s", exc)
        for session, _, read in writes:
            if not session.stored:
                if session.persist_id is not None:
                    self._removed.append(session.persist_id)
                session.persist_id = None
            elif session.engine.next_write_seq > session.durable_write:
                self._drop(session, "its sequence numbers could not be reserved in the store")
                continue
            else:
                session.durable_read = max(session.durable_read, read)
            self._flush(session)
        if self._removed:
            self._schedule_commit()  # after ``store_retry``

    def restore_sessions(self) -> int:
        """Put the stored sessions back in the table (at start); returns how many. Sessions
        idle for ``idle_timeout`` or that no longer fit the configuration are deleted."""
        store, config = self._store, self.server_config
        if store is None or config is None:
            return 0
        if self._shared is not None:
            # shared by several nodes: sessions are found when their peers' records arrive
            # (``_adopt``); loading them all would make every node hold every session
            return 0
        try:
            rows = store.load_dtls_sessions()
        except Exception as exc:
            log.error("stored DTLS sessions not restored: %s", exc)
            return 0
        now = self._loop.time()
        wall = time.time()
        stale: list[str] = []
        restored = 0
        for row in sorted(rows, key=lambda r: r.saved_at):
            key = (row.host, row.port)
            idle = max(0.0, wall - row.saved_at)
            if idle >= self.settings.idle_timeout:
                stale.append(row.id)
                continue
            try:
                engine = DtlsEngine.restore(config, row.state, key)
            except (DtlsError, ValueError) as exc:
                log.info("stored DTLS session with %s not restored: %s", _where(key), exc)
                stale.append(row.id)
                continue
            session = Session(key, self._sockaddr_for(key), engine, now - idle)
            session.persist_id = row.id
            session.stored = True
            session.durable_write = row.state.write_seq
            session.durable_read = row.state.read_top
            session.claim = DtlsClaim(row.state.peer_identity, row.state.cipher_suite)
            old = self.sessions.add(session)
            if old is not None and old.persist_id is not None:
                stale.append(old.persist_id)  # two rows for one address: the newer wins
                old.persist_id = None
                restored -= 1
            cid = row.state.own_cid
            if cid and not self.sessions.add_cid(session, cid):
                self.sessions.remove(session)
                stale.append(row.id)
                continue
            restored += 1
            try:
                self.listener.session_established(session)
            except Exception:
                log.exception("%s: session_established handler failed", session)
        if stale:
            try:
                store.remove_dtls_sessions(stale)
            except Exception as exc:
                log.error("expired DTLS sessions not removed from the store: %s", exc)
        self.stats.sessions_restored = restored
        if restored:
            log.info("restored %d DTLS sessions", restored)
        return restored

    def _sockaddr_for(self, key: Key) -> Any:
        """The socket address of ``key`` in this socket's family (v4-mapped on dual stack)."""
        host, port = key
        if self.family == socket.AF_INET6:
            if ":" not in host:
                host = "::ffff:" + host
            return (host, port, 0, 0)
        return (host, port)

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
        self._forget(session)
        removed = self.sessions.remove(session)
        if session.handshake is not None and not session.handshake.done():
            session.handshake.set_exception(HandshakeFailed(reason))
        if removed or unindexed:
            log.debug("%s dropped: %s", session, reason)
            self._notify_closed(session, reason)

    async def shutdown(self) -> None:
        """close_notify to every established peer, then close the socket. Sessions kept in a
        session store are not closed: what is pending is written, and they continue after the
        restart (a graceful restart must not cost the devices more than a crash)."""
        if self._commit_handle is not None:
            self._commit_handle.cancel()
            self._commit_handle = None
        self._commit()
        self._closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
            self._handshake_timer = None
        self._hellos.clear()
        for session in self.sessions:
            if session.persist_id is not None and session.stored and session.established:
                if session.timer is not None:
                    session.timer.cancel()
                    session.timer = None
                continue
            self._drop(session, "shutting down", notify_peer=True)
        self._commit()  # deletions of the sessions just closed
        if self.transport is not None:
            self.transport.close()
            self.transport = None


def _retrieved(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


def _session_record(datagram: bytes) -> bool:
    """Whether a datagram may be a record of an established session (what is worth a store
    lookup): application data, an alert or a CID record, of a DTLS version, at an epoch above
    0. Anything else (ClientHellos, garbage) never costs a lookup."""
    return (
        len(datagram) >= 13
        and datagram[0] in _SESSION_TYPES
        and datagram[1] == 0xFE
        and datagram[3:5] != b"\x00\x00"
    )


_SESSION_TYPES = frozenset({ContentType.APPLICATION_DATA, ContentType.ALERT, ContentType.TLS12_CID})


def _hello_random(datagram: bytes) -> bytes:
    """The 32-byte random of a ClientHello datagram (record header 13 + handshake header 12 +
    client_version 2 bytes in front of it); the cookie verifier has already parsed it."""
    return bytes(datagram[27:59])


async def _bound_socket(
    loop: asyncio.AbstractEventLoop, bind: tuple[str, int], *, reuse_port: bool = False
) -> socket.socket:
    """``reuse_port``: SO_REUSEPORT, so that the worker processes of ``lwm2m-server --workers``
    share the port (the kernel spreads peers over the sockets by a hash of the 4-tuple:
    docs/cluster.md)."""
    host, port = bind
    if host in ("", "0.0.0.0", "::", "*"):
        family: int = socket.AF_INET6
        sockaddr: tuple[Any, ...] = ("::", port)
    else:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
        if not infos:
            raise OSError(f"cannot resolve bind address {host!r}")
        family, _, _, _, sockaddr = infos[0]
    if reuse_port and port == 0:
        return _bound_reuseport_any(family, sockaddr)
    return _udp_socket(family, sockaddr, reuse_port=reuse_port)


def _udp_socket(family: int, sockaddr: tuple[Any, ...], *, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and sockaddr[0] == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(sockaddr)
    except BaseException:
        sock.close()
        raise
    return _tuned(sock)


_FREE_PORT_TRIES = 20


def _bound_reuseport_any(family: int, sockaddr: tuple[Any, ...]) -> socket.socket:
    """Port 0 with SO_REUSEPORT: Linux may hand out a port that another process's
    SO_REUSEPORT socket of the same user holds already (``bind(0)`` treats such a port as
    shareable), and the two would then split its datagrams. So the port is chosen by a probe
    bound *without* SO_REUSEPORT (the kernel gives a port nobody holds), closed, and the
    listener binds that port; EADDRINUSE (taken in between) tries another."""
    for _ in range(_FREE_PORT_TRIES):
        probe = _udp_socket(family, sockaddr, reuse_port=False)
        chosen = (*sockaddr[:1], probe.getsockname()[1], *sockaddr[2:])
        probe.close()
        try:
            return _udp_socket(family, chosen, reuse_port=True)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    raise OSError(errno.EADDRINUSE, f"no free UDP port after {_FREE_PORT_TRIES} tries")


def _tuned(sock: socket.socket) -> socket.socket:
    sock.setblocking(False)
    for size in (4 << 20, 1 << 20):  # a burst of handshakes must not overflow the buffer
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
            break
        except OSError:
            continue
    return sock
