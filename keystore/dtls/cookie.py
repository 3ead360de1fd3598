"""Stateless HelloVerifyRequest cookies (RFC 6347 §4.2.1).

Why stateless and separate from the engine: the transport calls
:meth:`CookieVerifier.server_handle_initial_datagram` for every datagram from an unknown address
*before* creating a session, so a spoofed source address costs the server one HMAC and one small
reply, never memory. The cookie is HMAC-SHA256 over the client address and the ClientHello fields
the client must repeat unchanged (version, random, session_id, cipher_suites, compression), keyed
by a secret that rotates every ``rotation_interval`` seconds; the previous secret stays valid so a
cookie lives between one and two intervals.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from typing import NamedTuple

from .buffer import Buffer, Writer
from .constants import DTLS_1_0, ContentType, HandshakeType
from .drops import DropReason
from .errors import DecodeError
from .messages import (
    ClientHello,
    HelloVerifyRequest,
    encode_handshake,
    pull_client_hello,
    pull_handshake_fragment,
    push_hello_verify_request,
)
from .record import encode_record, parse_datagram_checked

COOKIE_LEN = 32


class CookieVerifier:
    """Issues and checks cookies; holds two 32-byte secrets and nothing per peer."""

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
        self._current = b""
        self._previous = b""

    def _rotate(self, now: float) -> None:
        period = int(now // self._interval)
        if self._period is None or period > self._period + 1:
            self._current = self._random(32)
            self._previous = self._random(32)  # nothing issued earlier stays valid
        elif period == self._period + 1:
            self._previous = self._current
            self._current = self._random(32)
        elif period < self._period:
            return  # clock went backwards: keep the secrets we have
        self._period = period

    @staticmethod
    def _mac_input(addr: object, hello: ClientHello) -> bytes:
        w = Writer()
        w.push_vector16(repr(addr).encode())
        w.push_uint16(hello.client_version)
        w.push_bytes(hello.random)
        w.push_vector8(hello.session_id)
        w.push_vector16(b"".join(s.to_bytes(2, "big") for s in hello.cipher_suites))
        w.push_vector8(hello.compression_methods)
        return w.getvalue()

    def make_cookie(self, addr: object, hello: ClientHello, now: float) -> bytes:
        self._rotate(now)
        return hmac.digest(self._current, self._mac_input(addr, hello), "sha256")[:COOKIE_LEN]

    def check_cookie(self, addr: object, hello: ClientHello, now: float) -> bool:
        self._rotate(now)
        if len(hello.cookie) != COOKIE_LEN:
            return False
        data = self._mac_input(addr, hello)
        return any(
            hmac.compare_digest(hmac.digest(secret, data, "sha256")[:COOKIE_LEN], hello.cookie)
            for secret in (self._current, self._previous)
        )

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
        records, malformed = parse_datagram_checked(data)
        if not records:
            return InitialDecision(None, False, malformed or DropReason.MALFORMED)
        rec = records[0]
        if rec.content_type != ContentType.HANDSHAKE or rec.epoch != 0:
            return InitialDecision(None, False, DropReason.NO_SESSION)
        try:
            buf = Buffer(rec.fragment)
            frag = pull_handshake_fragment(buf)
            if frag.msg_type != HandshakeType.CLIENT_HELLO:
                return InitialDecision(None, False, DropReason.NO_SESSION)
            if not frag.is_complete:
                # a fragmented ClientHello cannot be verified statelessly (RFC 6347 §4.2.1)
                return InitialDecision(None, False, DropReason.UNEXPECTED)
            hello = pull_client_hello(Buffer(frag.body))
        except DecodeError:
            return InitialDecision(None, False, DropReason.MALFORMED)
        if self.check_cookie(addr, hello, now):
            return InitialDecision(None, True, None)
        w = Writer()
        push_hello_verify_request(
            w, HelloVerifyRequest(DTLS_1_0, self.make_cookie(addr, hello, now))
        )
        # RFC 6347 §4.2.1: reuse the ClientHello's record sequence number; mirroring its
        # message_seq keeps the client's expected message_seq in step (OpenSSL and Mbed TLS do).
        body = encode_handshake(HandshakeType.HELLO_VERIFY_REQUEST, frag.message_seq, w.getvalue())
        reply = encode_record(ContentType.HANDSHAKE, DTLS_1_0, 0, rec.seq, body)
        return InitialDecision(reply, False, None)


class InitialDecision(NamedTuple):
    """What to do with a datagram from a peer without a session."""

    #: a HelloVerifyRequest to send back, or None
    reply: bytes | None
    #: the datagram is a ClientHello with a valid cookie: create the session and feed it
    ok: bool
    #: why nothing at all is done with it (None: a reply goes out or a session is created)
    drop: DropReason | None
