"""Stateless HelloVerifyRequest cookies (RFC 6347 §4.2.1).

Why stateless and separate from the engine: the transport calls
:meth:`CookieVerifier.initial_datagram` for every datagram from an unknown address *before*
creating a session, so a spoofed source address costs the server one HMAC and one small reply,
never memory. The cookie is HMAC-SHA256 over the client address and the ClientHello fields the
client must repeat unchanged (version, random, session_id, cipher_suites, compression), keyed by
a secret that rotates every ``rotation_interval`` seconds; the previous secret stays valid so a
cookie lives between one and two intervals.

Why it reads raw bytes (:func:`scan_client_hello`) instead of the message classes: this is the
one path an attacker can drive at line rate with spoofed addresses (a flood of cookie-less
ClientHellos), so it must cost as little as possible. It checks only what the cookie needs —
one whole, unfragmented epoch-0 ClientHello whose fields up to the compression methods are
in bounds — and MACs the byte ranges of those fields as they are on the wire (the same bytes
the former field-by-field encoding produced, so the cookie did not change). The HMAC state is
keyed once per secret (``hmac`` objects ``copy()``-ed per datagram: no key schedule per
datagram), and the HelloVerifyRequest is one ``bytes`` join of constant pieces, slices of the
ClientHello and the cookie. Extensions are parsed by the engine, once a cookie proved the peer
receives at its address; a malformed one then fails the handshake there.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable
from typing import NamedTuple

from .constants import MAX_CIPHERTEXT, ContentType, HandshakeType
from .drops import DropReason
from .messages import ClientHello

COOKIE_LEN = 32

_HEADER = 13  # record header
_HS_HEADER = 12  # handshake header
_BODY = _HEADER + _HS_HEADER  # where the ClientHello body starts
_RANDOM_END = _BODY + 2 + 32  # client_version, random
_MAX_SESSION_ID = 32

#: HelloVerifyRequest pieces around the ClientHello's record sequence number and message_seq:
#: handshake record, DTLS 1.0 (RFC 6347 §4.2.1: the HVR's versions are DTLS 1.0), epoch 0 |
#: record length 47, hello_verify_request (3), length 35 | fragment offset 0, length 35,
#: server_version DTLS 1.0, cookie length 32
_HVR_HEAD = bytes([ContentType.HANDSHAKE, 0xFE, 0xFF, 0, 0])
_HVR_MID = bytes([0, 47, HandshakeType.HELLO_VERIFY_REQUEST, 0, 0, 35])
_HVR_TAIL = bytes([0, 0, 0, 0, 0, 35, 0xFE, 0xFF, COOKIE_LEN])


#: Where the cookie and the MACed fields of a ClientHello datagram are: the offset of the
#: cookie's length byte (the cookie follows it), and the end of the compression methods (the
#: MACed fields stop there). A plain tuple: it is made for every datagram of a flood.
HelloScan = tuple[int, int]

#: record header (type, version major, epoch, length) and handshake header (type, 24-bit
#: length, message_seq, 24-bit fragment offset and length as high byte + 16 bits) in one call
_HEADERS = struct.Struct("!BBxH6xHBBHxxBHBH")


def scan_client_hello(data: bytes) -> HelloScan | DropReason:
    """Find the cookie of a datagram that starts with one whole epoch-0 ClientHello, or say
    why it is not one. Reads only the headers and the length bytes up to the compression
    methods (no objects, no copies); see the module docstring for why that is enough."""
    n = len(data)
    if n <= _RANDOM_END:
        return _slow_reason(data)
    ctype, major, epoch, length, hs, t_hi, t_lo, o_hi, o_lo, f_hi, f_lo = _HEADERS.unpack_from(data)
    if ctype != ContentType.HANDSHAKE or major != 0xFE:
        return _slow_reason(data)
    if epoch:
        return DropReason.NO_SESSION  # epoch 1+ from a peer without a session
    record_end = _HEADER + length
    if record_end > n or length > MAX_CIPHERTEXT:
        return DropReason.MALFORMED
    if hs != HandshakeType.CLIENT_HELLO:
        return DropReason.NO_SESSION
    total = t_hi << 16 | t_lo
    offset = o_hi << 16 | o_lo
    fragment = f_hi << 16 | f_lo
    if offset + fragment > total or _BODY + fragment > record_end:
        return DropReason.MALFORMED
    if offset or fragment != total:
        # a fragmented ClientHello cannot be verified statelessly (RFC 6347 §4.2.1)
        return DropReason.UNEXPECTED
    end = _BODY + fragment
    session_id = data[_RANDOM_END]
    cookie_at = _RANDOM_END + 1 + session_id
    if session_id > _MAX_SESSION_ID or cookie_at >= end:
        return DropReason.MALFORMED
    suites_at = cookie_at + 1 + data[cookie_at]
    if suites_at + 2 > end:
        return DropReason.MALFORMED
    suites = data[suites_at] << 8 | data[suites_at + 1]
    compression_at = suites_at + 2 + suites
    if not suites or suites & 1 or compression_at >= end or not data[compression_at]:
        return DropReason.MALFORMED
    mac_end = compression_at + 1 + data[compression_at]
    if mac_end > end:
        return DropReason.MALFORMED
    return cookie_at, mac_end


def _slow_reason(data: bytes) -> DropReason:
    """Why a datagram that does not even start like a ClientHello is dropped, as the record
    and handshake parsers say it (garbage is rare enough to afford them)."""
    from .buffer import Buffer
    from .errors import DecodeError
    from .messages import pull_handshake_fragment
    from .record import parse_datagram_checked

    records, malformed = parse_datagram_checked(data)
    if not records:
        return malformed or DropReason.MALFORMED
    rec = records[0]
    if rec.content_type != ContentType.HANDSHAKE or rec.epoch != 0:
        return DropReason.NO_SESSION
    try:
        frag = pull_handshake_fragment(Buffer(rec.fragment))
    except DecodeError:
        return DropReason.MALFORMED
    if frag.msg_type != HandshakeType.CLIENT_HELLO:
        return DropReason.NO_SESSION
    return DropReason.MALFORMED if frag.is_complete else DropReason.UNEXPECTED


class CookieVerifier:
    """Issues and checks cookies; holds two secrets (as keyed HMAC states) and nothing per
    peer."""

    __slots__ = ("_current", "_interval", "_period", "_previous", "_random")

    def __init__(
        self,
        rotation_interval: float = 60.0,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if rotation_interval <= 0:
            raise ValueError("rotation_interval must be positive")
        self._interval = rotation_interval
        self._random = random_bytes
        self._period: int | None = None
        self._current = _Keyed(b"")
        self._previous = self._current

    def _rotate(self, now: float) -> None:
        period = int(now // self._interval)
        if period == self._period:
            return
        if self._period is None or period > self._period + 1:
            self._current = _Keyed(self._random(32))
            self._previous = _Keyed(self._random(32))  # nothing issued earlier stays valid
        elif period == self._period + 1:
            self._previous = self._current
            self._current = _Keyed(self._random(32))
        else:
            return  # clock went backwards: keep the secrets we have
        self._period = period

    @staticmethod
    def _peer(addr: object) -> bytes:
        peer = repr(addr).encode()
        return len(peer).to_bytes(2, "big") + peer

    @staticmethod
    def _mac(keyed: _Keyed, peer: bytes, data: bytes, scan: HelloScan) -> bytes:
        cookie_at, mac_end = scan
        # client_version, random, session_id | cipher_suites, compression_methods
        return keyed.digest(
            b"".join((peer, data[_BODY:cookie_at], data[cookie_at + 1 + data[cookie_at] : mac_end]))
        )

    # -- the transport's fast path ---------------------------------------------------------------
    def hello_verify_request(self, data: bytes, scan: HelloScan, addr: object, now: float) -> bytes:
        """The HelloVerifyRequest answering the ClientHello ``data`` (as scanned) from
        ``addr``: RFC 6347 §4.2.1 reuses the ClientHello's record sequence number; mirroring
        its message_seq keeps the client's expected message_seq in step (OpenSSL and Mbed TLS
        do)."""
        self._rotate(now)
        cookie = self._mac(self._current, self._peer(addr), data, scan)
        return b"".join((_HVR_HEAD, data[5:11], _HVR_MID, data[17:19], _HVR_TAIL, cookie))

    def cookie_valid(self, data: bytes, scan: HelloScan, addr: object, now: float) -> bool:
        """Whether the scanned ClientHello carries the cookie we would issue to ``addr`` now
        or during the previous interval (constant-time comparison)."""
        at = scan[0]
        if data[at] != COOKIE_LEN:
            return False
        self._rotate(now)
        cookie = data[at + 1 : at + 1 + COOKIE_LEN]
        peer = self._peer(addr)
        if hmac.compare_digest(self._mac(self._current, peer, data, scan), cookie):
            return True
        return hmac.compare_digest(self._mac(self._previous, peer, data, scan), cookie)

    # -- whole-message API (tests, tools) ----------------------------------------------------------
    def make_cookie(self, addr: object, hello: ClientHello, now: float) -> bytes:
        self._rotate(now)
        return self._current.digest(self._peer(addr) + _fields(hello))

    def check_cookie(self, addr: object, hello: ClientHello, now: float) -> bool:
        self._rotate(now)
        if len(hello.cookie) != COOKIE_LEN:
            return False
        data = self._peer(addr) + _fields(hello)
        ok = False
        for keyed in (self._current, self._previous):
            ok |= hmac.compare_digest(keyed.digest(data), hello.cookie)
        return ok

    def server_handle_initial_datagram(
        self, data: bytes, addr: object, now: float
    ) -> tuple[bytes | None, bool]:
        """Decide about a datagram from a peer without a session.

        Returns ``(reply, ok_to_create_session)``: a HelloVerifyRequest to send back (or None to
        drop silently), and whether the datagram carries a ClientHello with a valid cookie, in
        which case the transport creates the engine and feeds it the same datagram.
        """
        decision = self.initial_datagram(data, addr, now)
        return decision.reply, decision.ok

    def initial_datagram(self, data: bytes, addr: object, now: float) -> InitialDecision:
        """:meth:`server_handle_initial_datagram`, plus why a silent drop was silent."""
        scan = scan_client_hello(data)
        if isinstance(scan, DropReason):
            return InitialDecision(None, False, scan)
        if self.cookie_valid(data, scan, addr, now):
            return InitialDecision(None, True, None)
        return InitialDecision(self.hello_verify_request(data, scan, addr, now), False, None)


class _Keyed:
    """HMAC-SHA256 (RFC 2104) with one secret, its inner and outer hash states computed once:
    a MAC then costs two ``copy()``/``update()``/``digest()`` of C ``hashlib`` objects, no
    key schedule and no Python-level ``hmac`` wrapper (about half the time of
    ``hmac.digest`` per ClientHello)."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: bytes) -> None:
        key = secret.ljust(64, b"\0")  # 32-byte secrets: shorter than the block, no hashing
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest(self, data: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(data)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def _fields(hello: ClientHello) -> bytes:
    """The MACed fields of a parsed ClientHello, encoded as they are on the wire."""
    suites = b"".join(s.to_bytes(2, "big") for s in hello.cipher_suites)
    return b"".join((
        hello.client_version.to_bytes(2, "big"), hello.random,
        bytes([len(hello.session_id)]), hello.session_id,
        len(suites).to_bytes(2, "big"), suites,
        bytes([len(hello.compression_methods)]), hello.compression_methods,
    ))  # fmt: skip


class InitialDecision(NamedTuple):
    """What to do with a datagram from a peer without a session."""

    #: a HelloVerifyRequest to send back, or None
    reply: bytes | None
    #: the datagram is a ClientHello with a valid cookie: create the session and feed it
    ok: bool
    #: why nothing at all is done with it (None: a reply goes out or a session is created)
    drop: DropReason | None
