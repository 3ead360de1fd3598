"""The session table of a DTLS endpoint: sessions by peer address and by Connection ID.

Why two indexes: a session is normally found by the UDP source address, but once RFC 9146
Connection IDs are negotiated the peer's NAT may give it a new source port at any time; its
records still carry our CID, so the CID finds the session and the engine (after authenticating
the record) tells us to re-key it under the new address. The address index is an ``OrderedDict``
kept in least-recently-active order, so idle eviction and "make room when full" look at the
front only (no scan over 100k sessions).

Pure data structure: no sockets, no clock, no asyncio (the endpoint passes ``now``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from ..dtls.engine import DtlsEngine
from .identity import DtlsClaim

Key = tuple[str, int]
"""A peer address as the table knows it: plain host text (v4-mapped IPv6 shown as IPv4) and
port. The cookie verifier MACs it too, so the same peer always yields the same key."""


def address_key(sockaddr: Any) -> Key:
    """``('::ffff:127.0.0.1', 5684, 0, 0)`` → ``('127.0.0.1', 5684)``.

    Called for every datagram, spoofed floods included, so the two shapes a socket reports
    most are answered without ``ipaddress``: an IPv4 host (any host text without ``:`` comes
    back unchanged) and a canonical v4-mapped one (``::ffff:`` + dotted quad, checked by
    ``inet_pton``/``inet_ntop``); everything else takes the general path."""
    host, port = sockaddr[0], sockaddr[1]
    if type(host) is not str or type(port) is not int:
        host, port = str(host), int(port)
    if ":" not in host:
        return host, port
    if host.startswith("::ffff:") and "." in host:
        v4 = host[7:]
        try:
            if socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, v4)) == v4:
                return v4, port
        except OSError:
            pass
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host, port
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped), port
    return str(ip) if "%" not in host else host, port


class Session:
    """One DTLS association and what the transport keeps beside the engine.

    ``sockaddr`` is the socket address to send to (as the socket reported it: a v4-mapped
    4-tuple on a dual-stack socket); ``remote`` is the object the aiocoap glue attaches (one per
    session, so a new handshake is a new remote, as aiocoap requires between epochs)."""

    __slots__ = (
        "cid",
        "claim",
        "durable_read",
        "durable_write",
        "engine",
        "handshake",
        "hello_random",
        "is_client",
        "key",
        "last_active",
        "persist_id",
        "remote",
        "sockaddr",
        "stored",
        "timer",
    )

    def __init__(
        self, key: Key, sockaddr: Any, engine: DtlsEngine, now: float, *, is_client: bool = False
    ) -> None:
        self.key = key
        self.sockaddr = sockaddr
        self.engine = engine
        self.last_active = now
        self.is_client = is_client
        self.claim: DtlsClaim | None = None
        self.cid: bytes | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.remote: Any = None
        #: server role: the random of the ClientHello that created the session
        self.hello_random = b""
        #: client role: resolved when the handshake completes (or fails)
        self.handshake: asyncio.Future[None] | None = None
        #: session store row id (None: the session is not persisted)
        self.persist_id: str | None = None
        #: the row is written; what it holds: the reserved write sequence number (never used
        #: yet) and the highest accepted read sequence number
        self.stored = False
        self.durable_write = 0
        self.durable_read = -1

    @property
    def established(self) -> bool:
        return self.engine.is_established

    @property
    def closed(self) -> bool:
        return self.engine.is_closed

    def __repr__(self) -> str:
        host, port = self.key
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        state = self.engine.state.value
        who = f" {self.claim.describe()}" if self.claim is not None else ""
        return f"<DTLS session {where} {state}{who}>"


class SessionTable:
    """Sessions by address (LRU order) and by our Connection ID."""

    __slots__ = ("_by_cid", "_by_key", "_moved")

    #: how many old addresses of moved sessions are remembered (see ``find``)
    MAX_MOVED = 10_000

    def __init__(self) -> None:
        self._by_key: OrderedDict[Key, Session] = OrderedDict()
        self._by_cid: dict[bytes, Session] = {}
        self._moved: OrderedDict[Key, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._by_key.values()))

    def __contains__(self, session: object) -> bool:
        return isinstance(session, Session) and self._by_key.get(session.key) is session

    def get(self, key: Key) -> Session | None:
        return self._by_key.get(key)

    def find(self, key: Key) -> Session | None:
        """Like ``get``, but also finds a session by the address it had before a CID address
        change: the LwM2M server still sends downlink requests to the address of the last
        Register/Update until the device's next Update tells it the new one."""
        session = self._by_key.get(key)
        if session is not None:
            return session
        moved = self._moved.get(key)
        if moved is None:
            return None
        if self._by_key.get(moved.key) is not moved:
            del self._moved[key]
            return None
        return moved

    def by_cid(self, cid: bytes) -> Session | None:
        return self._by_cid.get(cid)

    @property
    def cid_count(self) -> int:
        return len(self._by_cid)

    def add(self, session: Session) -> Session | None:
        """Insert under ``session.key``; returns a session that was there (now unindexed)."""
        old = self._by_key.pop(session.key, None)
        if old is not None:
            self._forget_cid(old)
        self._by_key[session.key] = session
        return old

    def add_cid(self, session: Session, cid: bytes) -> bool:
        """Index by CID; False when another live session already has it (random CIDs can
        collide: the caller then closes the new session and the peer retries)."""
        other = self._by_cid.get(cid)
        if other is not None and other is not session:
            return False
        self._by_cid[cid] = session
        session.cid = cid
        return True

    def touch(self, session: Session, now: float) -> None:
        session.last_active = now
        if self._by_key.get(session.key) is session:
            self._by_key.move_to_end(session.key)

    def move(self, session: Session, new_key: Key) -> Session | None:
        """Re-key a session after an authenticated address change (NAT rebinding); returns
        another session that was at ``new_key`` (now unindexed), if any."""
        if self._by_key.get(session.key) is session:
            del self._by_key[session.key]
            self._moved[session.key] = session
            while len(self._moved) > self.MAX_MOVED:
                self._moved.popitem(last=False)
        self._moved.pop(new_key, None)
        session.key = new_key
        displaced = self._by_key.pop(new_key, None)
        if displaced is not None and displaced is not session:
            self._forget_cid(displaced)
        else:
            displaced = None
        self._by_key[new_key] = session
        return displaced

    def remove(self, session: Session) -> bool:
        """Unindex; False if it was not (or no longer) in the table."""
        self._forget_cid(session)
        if self._by_key.get(session.key) is session:
            del self._by_key[session.key]
            return True
        return False

    def oldest(self) -> Session | None:
        return next(iter(self._by_key.values()), None)

    def idle_since(self, cutoff: float) -> list[Session]:
        """Sessions last active before ``cutoff``, least recent first (stops at the first
        more recent one: the order is by activity)."""
        idle: list[Session] = []
        for session in self._by_key.values():
            if session.last_active >= cutoff:
                break
            idle.append(session)
        return idle

    def _forget_cid(self, session: Session) -> None:
        if session.cid is not None and self._by_cid.get(session.cid) is session:
            del self._by_cid[session.cid]
