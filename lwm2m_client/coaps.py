"""CoAPs for the demo client on aiocoap: a ``MessageInterface`` for ``coaps://`` on top of
``keystore.coaps.DtlsEndpoint`` (our DTLS engine), in the client role only. The servers run on
our own CoAP layer (``lwm2m_runtime.coaps``); the demo client stays on aiocoap (DESIGN.md), and
this glue lives with it so that ``keystore`` stays free of aiocoap (``tests/test_layers.py``).

How it plugs in (the model is aiocoap's own ``tinydtls_server``): a ``Context`` holds a list of
request interfaces, each a ``TokenManager`` over a ``MessageManager`` over a
``MessageInterface``. :func:`create_client_context` appends one such stack whose message
interface is :class:`CoapsMessageInterface`, through
``Context._append_tokenmanaged_messagemanaged_transport`` (the same private helper
``create_server_context`` uses for udp6). From then on aiocoap does CoAP as usual (message ids,
deduplication, CON retransmission, tokens, block-wise, observe) and this interface only moves
whole CoAP messages in and out of DTLS records: one CoAP message per record (RFC 7252 §9.1).

Remotes. Each DTLS session gets one :class:`CoapsRemote` when its handshake completes. Incoming
messages (the server's requests to the device) carry it and responses go back through it
(``as_response_address`` is itself). A new handshake is a new remote object: aiocoap keys
exchanges, observations and block-wise state by remote and requires the key to change between
epochs (RFC 7252 §9.1.2), which identity equality gives for free.
``remote.authenticated_claims`` holds the session's :class:`~.identity.DtlsClaim`, and
``remote.sockaddr`` the peer's current ``(host, port)``.

``determine_remote`` for ``coaps://host:port`` runs the
handshake if there is no session yet and returns once it is established (the request waits),
resuming the previous session (abbreviated handshake) when the server still knows it. A server
that restarted or evicted us drops our records silently; so when a CON goes out for the
``STALE_AFTER_TRANSMISSIONS``-th time with nothing at all received on the session since its
first transmission, the session is dropped: that request fails at once and the next one starts
a new handshake (instead of every later request timing out on a dead session).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from aiocoap import COAPS_PORT, CON, Message, error, interfaces
from aiocoap.util import hostportjoin, hostportsplit

from keystore.coaps.endpoint import DtlsEndpoint, EndpointSettings, HandshakeFailed
from keystore.coaps.identity import DtlsClaim
from keystore.coaps.sessions import Key, Session, address_key
from keystore.dtls.config import ClientConfig
from keystore.dtls.errors import ConnectionStateError
from keystore.dtls.session import Session as ResumableSession

log = logging.getLogger(__name__)

#: client role: drop the session when a CON is sent this often without any answer meanwhile
STALE_AFTER_TRANSMISSIONS = 3


class CoapsRemote(interfaces.EndpointAddress):  # type: ignore[misc]
    """The aiocoap remote of one DTLS session (see the module docstring)."""

    scheme = "coaps"
    is_multicast = False
    is_multicast_locally = False

    def __init__(self, interface: CoapsMessageInterface, session: Session) -> None:
        self.interface: CoapsMessageInterface = interface
        self.session: Session = session

    def __repr__(self) -> str:
        return f"<CoapsRemote {self.session!r}>"

    @property
    def sockaddr(self) -> Key:
        """The peer's current ``(host, port)``; ``lwm2m_server`` reads addresses from here."""
        return self.session.key

    @property
    def hostinfo(self) -> str:
        host, port = self.session.key
        return str(hostportjoin(host, None if port == COAPS_PORT else port))

    @property
    def hostinfo_local(self) -> str:
        return self.interface.hostinfo_local

    @property
    def uri_base(self) -> str:
        return "coaps://" + self.hostinfo

    @property
    def uri_base_local(self) -> str:
        return "coaps://" + self.hostinfo_local

    @property
    def blockwise_key(self) -> object:
        return self

    @property
    def authenticated_claims(self) -> tuple[DtlsClaim, ...]:
        claim = self.session.claim
        return () if claim is None else (claim,)

    @property
    def claim(self) -> DtlsClaim | None:
        return self.session.claim


class CoapsMessageInterface(interfaces.MessageInterface):  # type: ignore[misc]
    """Moves CoAP messages through DTLS sessions; also the endpoint's ``SessionListener``."""

    def __init__(self, mman: Any, client_config: ClientConfig) -> None:
        self._mman: Any = mman
        self._client_config = client_config
        self._resume: dict[Key, ResumableSession] = {}
        #: client role: transmissions per CON message id since the session last received
        self._unanswered: dict[Session, dict[int, int]] = {}
        self.endpoint: DtlsEndpoint | None = None

    @classmethod
    async def create(
        cls,
        mman: Any,
        *,
        bind: tuple[str, int],
        client_config: ClientConfig,
        settings: EndpointSettings | None = None,
    ) -> CoapsMessageInterface:
        self = cls(mman, client_config)
        self.endpoint = await DtlsEndpoint.open(self, bind, settings=settings)
        return self

    # -- what the lwm2m code reads ---------------------------------------------------------------
    @property
    def transport(self) -> asyncio.DatagramTransport | None:
        """The asyncio transport (``local_address`` helpers read ``sockname`` from it)."""
        return None if self.endpoint is None else self.endpoint.transport

    def endpoint_address(self) -> Key:
        """The local ``(host, port)`` of the CoAPs socket (the real port when bound to 0)."""
        if self.endpoint is None or self.endpoint.transport is None:
            raise RuntimeError("the CoAPs transport is shut down")
        return self.endpoint.local_address

    @property
    def hostinfo_local(self) -> str:
        if self.endpoint is None or self.endpoint.transport is None:
            raise error.AnonymousHost("the CoAPs transport is shut down")
        host, port = self.endpoint.local_address
        return str(hostportjoin(host, None if port == COAPS_PORT else port))

    # -- MessageInterface ------------------------------------------------------------------------
    def send(self, message: Any) -> None:
        remote = message.remote
        if not isinstance(remote, CoapsRemote) or remote.interface is not self:
            log.warning("not sending %r: its remote is not a session of this transport", message)
            return
        if self.endpoint is None or self._mman is None:
            log.info("not sending %r: the CoAPs transport is shutting down", message)
            return
        try:
            if remote.session.is_client and self._stale(remote.session, message):
                raise ConnectionStateError(
                    f"no answer to {STALE_AFTER_TRANSMISSIONS} transmissions: the server has "
                    "probably lost the session"
                )
            self.endpoint.send(remote.session, message.encode())
        except (ConnectionStateError, ValueError) as exc:
            log.info("not sending to %s: %s", remote.hostinfo, exc)
            asyncio.get_running_loop().call_soon(
                self._fail, remote, error.NetworkError(f"DTLS session unusable: {exc}")
            )

    def _stale(self, session: Session, message: Any) -> bool:
        if message.mtype != CON or message.mid is None:
            return False
        sent = self._unanswered.setdefault(session, {})
        sent[message.mid] = count = sent.get(message.mid, 0) + 1
        if count < STALE_AFTER_TRANSMISSIONS:
            return False
        assert self.endpoint is not None
        self._resume.pop(session.key, None)  # the server forgot it too, most likely
        self.endpoint.close_session(session, "no answer from the server")
        return True

    async def determine_remote(self, request: Any) -> Any:
        if request.requested_scheme != "coaps":
            return None
        if request.unresolved_remote is not None:
            host, port = hostportsplit(request.unresolved_remote)
        elif request.opt.uri_host:
            host, port = request.opt.uri_host, request.opt.uri_port
        else:
            raise ValueError("no coaps:// host to send the message to")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        port = int(port or COAPS_PORT)
        if self.endpoint is None or self._mman is None:
            raise error.LibraryShutdown()
        session = self.endpoint.sessions.find(address_key((host, port)))
        if session is not None and session.established and session.remote is not None:
            return session.remote
        return await self._connect(host, port, session)

    async def recognize_remote(self, remote: Any) -> bool:
        return isinstance(remote, CoapsRemote) and remote.interface is self

    async def shutdown(self) -> None:
        self._mman = None  # aiocoap's managers are shut down already: no more dispatching
        if self.endpoint is not None:
            await self.endpoint.shutdown()
            self.endpoint = None

    # -- client role -----------------------------------------------------------------------------
    async def _connect(self, host: str, port: int, session: Session | None) -> CoapsRemote:
        endpoint, config = self.endpoint, self._client_config
        assert endpoint is not None
        if session is None or session.closed or session.handshake is None:
            sockaddr = await endpoint.resolve(host, port)
            key = address_key(sockaddr)
            session = endpoint.sessions.get(key)
            if session is None or session.closed or session.handshake is None:
                resume = self._resume.get(key)
                if resume is not None:
                    config = dataclasses.replace(config, session=resume)
                session = endpoint.connect(sockaddr, config)
        assert session.handshake is not None
        try:
            await asyncio.shield(session.handshake)
        except HandshakeFailed as exc:
            self._resume.pop(session.key, None)
            raise error.NetworkError(str(exc)) from None
        if session.engine.session is not None:
            self._resume[session.key] = session.engine.session
        assert isinstance(session.remote, CoapsRemote)
        return session.remote

    # -- SessionListener -------------------------------------------------------------------------
    def session_established(self, session: Session) -> None:
        session.remote = CoapsRemote(self, session)

    def application_data(self, session: Session, data: bytes) -> None:
        self._unanswered.pop(session, None)  # the session is alive
        mman = self._mman
        if mman is None or session.remote is None:
            return
        try:
            message = Message.decode(data, remote=session.remote)
        except error.UnparsableMessage:
            log.debug("not a CoAP message from %s (%d bytes): ignored", session, len(data))
            return
        mman.dispatch_message(message)

    def session_closed(self, session: Session, reason: str) -> None:
        self._unanswered.pop(session, None)
        if session.remote is not None:
            # on the next loop iteration: a close can happen inside aiocoap's own call stack
            # (a CON retransmission reaching ``send``), which must not be re-entered
            asyncio.get_running_loop().call_soon(
                self._fail, session.remote, error.NetworkError(f"DTLS session closed: {reason}")
            )

    def _fail(self, remote: CoapsRemote, exc: Exception) -> None:
        """Fail whatever aiocoap has pending with this remote (requests, CON retransmissions)."""
        if self._mman is not None:
            self._mman.dispatch_error(exc, remote)


def _append(context: Any) -> Callable[..., Any]:
    append = getattr(context, "_append_tokenmanaged_messagemanaged_transport", None)
    if append is None:
        raise RuntimeError(
            "aiocoap Context has no _append_tokenmanaged_messagemanaged_transport: this aiocoap "
            "version is not supported by lwm2m_client.coaps"
        )
    return append  # type: ignore[no-any-return]


async def create_client_context(
    site: Any,
    *,
    client_config: ClientConfig,
    bind: tuple[str, int] = ("0.0.0.0", 0),
    settings: EndpointSettings | None = None,
) -> Any:
    """An aiocoap context with only a CoAPs client transport: it dials the server, and serves
    ``site`` to the server's requests over the same session (LwM2M device side)."""
    import aiocoap

    context = aiocoap.Context(
        loop=asyncio.get_running_loop(), serversite=site, loggername="coaps-client"
    )

    async def construct(mman: Any) -> CoapsMessageInterface:
        return await CoapsMessageInterface.create(
            mman, bind=bind, client_config=client_config, settings=settings
        )

    await _append(context)(construct)
    return context
