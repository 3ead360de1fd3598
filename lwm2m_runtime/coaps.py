"""CoAPs on our own layers: one sans-IO CoAP :class:`~lwm2m_runtime.coap.Endpoint` over a
:class:`~keystore.coaps.endpoint.DtlsEndpoint` (our DTLS 1.2 engine on one UDP socket).

The CoAP peer is the DTLS **session object**, not its address. So a response or a notification
is matched to the session the request went to (RFC 7252 §9.1.2: "the same DTLS session"): a
record from another session — another device behind the same NAT address later, or an attacker
with its own credentials — carrying the right token and MID matches nothing. A new handshake
from the same address is a new session, so deduplication, MIDs and block-wise state start
afresh with it (a new epoch), as the RFC asks. What the handshake proved (``session.claim``, a
:class:`~keystore.coaps.identity.DtlsClaim`) travels with the peer to the request handler.

Duties, and where they are met:

* records in: ``application_data(session, data)`` → ``receive_datagram(data, session, now)``;
  one CoAP message per record (RFC 7252 §9.1);
* records out: each datagram of ``datagrams_to_send`` → ``DtlsEndpoint.send(session, data)``;
  a session that closed meanwhile just drops it (the peer will retransmit to a new session);
* session closed → every request waiting for that session fails (``ConnectionError``) and is
  cancelled in the CoAP endpoint; the rest of its per-peer state (dedup entries, MID counter)
  expires with EXCHANGE_LIFETIME like any idle peer's;
* session persistence (``EndpointSettings.session_store``) stays the DTLS endpoint's business:
  it holds our replies until the session's replay window is durable, and it restores sessions at
  open (``session_established`` is called for each; nothing to do here: the session is the peer).

* a ClientHello flood (issue 11) is the DTLS endpoint's business too: it is the datagram
  protocol, so it answers cookie-less ClientHellos after each batch of datagrams, within its
  ``hello_rate`` budget, and caps half-open handshakes (docs/coaps-transport.md, "ClientHello
  floods"); records of sessions reach ``application_data`` before any of that.

Client role too (``connect``): the same glue lets a device — or a test — dial a CoAPs server.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from keystore.coaps.endpoint import DtlsEndpoint, EndpointSettings, SessionListener
from keystore.coaps.sessions import Key, Session
from keystore.dtls.config import ClientConfig, ServerConfig
from keystore.dtls.errors import ConnectionStateError

from .coap import Endpoint, Parameters
from .driver import CoapDriver, Handler, Peer

log = logging.getLogger(__name__)


class _DtlsEndpoint(DtlsEndpoint):
    """The DTLS endpoint, telling when its socket is really closed (see ``close``)."""

    def __init__(self, listener: SessionListener, **kwargs: Any) -> None:
        super().__init__(listener, **kwargs)
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.lost.done():
            self.lost.set_result(None)


class CoapsEndpoint(CoapDriver):
    """CoAP over the sessions of one DTLS endpoint; also its ``SessionListener``.
    Build with :meth:`open`."""

    def __init__(self, endpoint: Endpoint, handler: Handler | None = None) -> None:
        super().__init__(endpoint, handler)
        self.dtls: _DtlsEndpoint | None = None

    @classmethod
    async def open(
        cls,
        bind: tuple[str, int],
        *,
        server_config: ServerConfig | None = None,
        handler: Handler | None = None,
        params: Parameters | None = None,
        settings: EndpointSettings | None = None,
        reuse_port: bool = False,
    ) -> CoapsEndpoint:
        """Bind ``bind`` (``0.0.0.0``/``::`` = every address, dual-stack; port 0 = any free
        port). With a ``server_config`` it accepts handshakes (and restores stored sessions);
        without, it only dials (:meth:`connect`). ``reuse_port``: SO_REUSEPORT (workers)."""
        self = cls(Endpoint(params), handler)
        dtls = await _DtlsEndpoint.open(
            self, bind, server_config=server_config, settings=settings, reuse_port=reuse_port
        )
        assert isinstance(dtls, _DtlsEndpoint)
        self.dtls = dtls
        return self

    @property
    def local_address(self) -> Key:
        """``(host, port)`` of the socket (the real port when bound to 0)."""
        if self.dtls is None or self.dtls.transport is None:
            raise RuntimeError("the CoAPs endpoint is closed")
        return self.dtls.local_address

    def session_for(self, host: str, port: int) -> Session | None:
        """The established session with the peer at ``host:port`` (also found by the address it
        had before a CID address change), or None: a CoAPs server reaches a device only over
        the session the device opened."""
        if self.dtls is None:
            return None
        session = self.dtls.sessions.find((host, port))
        return session if session is not None and session.established else None

    async def connect(self, host: str, port: int, config: ClientConfig) -> Session:
        """Client role: handshake with ``host:port`` and return the session (the CoAP peer to
        give to ``request``). ``keystore.coaps.HandshakeFailed`` when it does not complete."""
        if self.dtls is None:
            raise ConnectionError("the CoAPs endpoint is closed")
        sockaddr = await self.dtls.resolve(host, port)
        session = self.dtls.connect(sockaddr, config)
        assert session.handshake is not None
        await session.handshake
        return session

    async def close(self) -> None:
        """Stop: waiting requests fail; the DTLS endpoint closes its sessions (or keeps them in
        its session store for the restart, see ``DtlsEndpoint.shutdown``). Returns once the
        socket is closed (uvloop closes it one loop iteration later): the port is free again."""
        self._stop()
        dtls, self.dtls = self.dtls, None
        if dtls is not None:
            opened = dtls.transport is not None
            await dtls.shutdown()
            if opened:
                await asyncio.shield(dtls.lost)

    # -- SessionListener ------------------------------------------------------------------------
    def session_established(self, session: Session) -> None:
        """Nothing to set up: the session object is the CoAP peer."""

    def application_data(self, session: Session, data: bytes) -> None:
        if self._stopped:
            return
        self.endpoint.receive_datagram(data, session, self._loop.time())
        self._dispatch()

    def session_closed(self, session: Session, reason: str) -> None:
        self.fail_peer(session, f"DTLS session closed: {reason}")

    # -- internals ------------------------------------------------------------------------------
    def _check_peer(self, peer: Peer) -> None:
        dtls = self.dtls
        if not isinstance(peer, Session) or dtls is None:
            raise ConnectionError(f"{peer!r} is not a session of this CoAPs endpoint")
        if peer.closed or peer not in dtls.sessions:
            raise ConnectionError(f"DTLS session closed: {peer!r}")

    def _transmit(self, datagrams: list[tuple[bytes, Peer]]) -> None:
        dtls = self.dtls
        if dtls is None:
            return
        for data, peer in datagrams:
            session: Any = peer
            try:
                dtls.send(session, data)
            except (ConnectionStateError, ValueError) as exc:
                log.debug("CoAPs message to %s not sent: %s", session, exc)
