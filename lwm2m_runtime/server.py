"""The server side of the runtime: one facade over the NoSec UDP and the CoAPs listeners.

Why a facade: a server (bootstrap, LwM2M) wants three things from CoAP — a call per request it
answers, a way to send a request to a device and await the answer, and the addresses it listens
on — and should not care whether a device came over NoSec or DTLS. So:

* ``handler(request) -> response``: a plain call per request (no task per request on the hot
  path). It returns the response :class:`~lwm2m_runtime.coap.Message`, or an awaitable of one
  where it must wait (then, and only then, a task awaits it and answers). An
  :class:`~object_models.errors.Lwm2mError` raised by the handler is answered with its CoAP code
  and its message as diagnostic payload; any other exception is a bug: 5.00, logged with its
  traceback.
* ``await request(remote, message, timeout)``: a downlink request to the peer a request came
  from (``request.remote``) — over NoSec the peer's socket address, over CoAPs its DTLS session
  — matched by token **and** peer, so an answer from another session is not accepted.
  ``await resolve(host, port, secure=...)`` gives the remote of an address (server-initiated
  traffic); over CoAPs only an established session can be used (a server never dials a device).
* ``coap_address`` / ``coaps_address``, one ``start`` and one ``stop``.

Refused datagrams (the layer's ``ProtocolError`` events; the RFC's answer — RST, 4.00, 4.02… —
is already sent by the layer) are logged once per peer host and kind per ``log_interval``, never
with a traceback. Unknown notifications are refused with RST unless an ``on_event`` hook takes
the events the facade does not handle itself (observation is the LwM2M server's business).

uvloop: the loop is chosen before it runs; a CLI runs its main coroutine with :func:`run` (uvloop
when installed, without changing the process-wide loop policy, so an in-process caller such as a
test is not switched to uvloop behind its back).
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import inspect
import logging
import socket
from collections.abc import Awaitable, Callable, Coroutine
from types import FunctionType, MethodType
from typing import Any, TypeVar

from keystore.coaps.endpoint import EndpointSettings, _bound_socket
from keystore.coaps.identity import DtlsClaim
from keystore.coaps.sessions import Key, Session, address_key
from keystore.dtls.config import ServerConfig
from keystore.dtls.identity import AnonymousIdentity
from keystore.log_limit import PerPeerLimit
from keystore.resolver import PeerIdentity
from object_models.errors import Lwm2mError

from .coap import (
    Block,
    Code,
    ErrorKind,
    Event,
    Exchange,
    Message,
    Notification,
    Parameters,
    ProtocolError,
    RequestReceived,
    UnknownNotification,
)
from .coaps import CoapsEndpoint
from .driver import CoapDriver, Committer, Peer, ResponseHook
from .udp import UdpEndpoint, open_udp_endpoint

__all__ = [
    "CoapServer",
    "Committer",
    "IncomingRequest",
    "Peer",
    "RequestHandler",
    "Response",
    "error_response",
    "run",
]

log = logging.getLogger(__name__)

Response = Message | Awaitable[Message]
_new = object.__new__
T = TypeVar("T")


GC_THRESHOLDS = (20_000, 20, 20)
"""The cyclic collector's thresholds while a server runs (CPython's default: 700, 10, 10).

Why: a server allocates a few container objects per datagram that die young, and keeps a few
dozen per registration that live long. With the defaults the collector ran every ~50 Updates
and traversed every registration in a full collection every N/4 Updates (the long-lived
objects' 25 % rule): measured in process, ~25 µs of collector time per message at 20k
registrations, more with more clients, and pauses of a full traversal. Young collections every
20,000 allocations cost the same per object but far less per message, and full collections
become rare; cyclic garbage (rare here: most objects are freed by reference counting) waits a
little longer."""


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on a uvloop loop when uvloop is installed, else the stdlib's.

    While it runs, the collector uses :data:`GC_THRESHOLDS`, and what exists before ``main``
    starts (modules, classes, configuration: alive for the whole process) is frozen out of the
    collector's traversals (``gc.freeze``); both are undone on return, so an in-process caller
    such as a test gets its interpreter back as it was."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None
    try:
        factory = importlib.import_module("uvloop").new_event_loop
    except ImportError:
        factory = None
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main)
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


class IncomingRequest:
    """One request to answer: the message, who sent it, and over what.

    ``remote`` is what to give to :meth:`CoapServer.request` to reach the same peer the same
    way (the socket address, or the DTLS session). ``address`` and ``identity`` are computed on
    first use (address parsing is not free, and most handlers need it once at most)."""

    __slots__ = ("_address", "_identity", "block2", "message", "remote")

    def __init__(self, message: Message, remote: Peer, block2: Block | None = None) -> None:
        self.message = message
        self.remote = remote
        self.block2 = block2
        """The Block2 option the request carried (the endpoint takes it off ``message``): a
        handler that slices its own answer (a response carrying Block2, sent untouched) reads
        the block asked for here; None when the request asked for no particular block."""
        self._address: Key | None = None
        self._identity: PeerIdentity | None = None
        """A NoSec peer's identity once known (a DTLS one is derived on each read)."""

    @property
    def secure(self) -> bool:
        return isinstance(self.remote, Session)

    @property
    def address(self) -> Key:
        """The peer's ``(host, port)``, v4-mapped IPv6 shown as IPv4; over CoAPs the session's
        current address (it follows a Connection ID address change)."""
        address = self._address
        if address is None:
            remote = self.remote
            if isinstance(remote, Session):
                address = remote.key
            else:
                entry = _nosec_peers.get(remote) or _nosec_peer(remote)
                address = entry[0]
                self._identity = entry[1]
            self._address = address
        return address

    @property
    def claim(self) -> DtlsClaim | None:
        """What the DTLS handshake of the session authenticated (None over NoSec)."""
        remote = self.remote
        return remote.claim if isinstance(remote, Session) else None

    @property
    def identity(self) -> PeerIdentity:
        """Who sent it, for ``keystore.resolver.Resolver.resolve``: the DTLS identity, or a
        NoSec peer."""
        identity = self._identity
        if identity is not None:
            return identity
        remote = self.remote
        if isinstance(remote, Session):
            claim = remote.claim
            if claim is not None and not isinstance(claim.identity, AnonymousIdentity):
                return claim.peer(self.address)
            return PeerIdentity.nosec(self.address)
        # a NoSec peer: its address and identity are the same values for every request from
        # the same socket address, so they come from the bounded cache (see ``_nosec_peers``)
        entry = _nosec_peers.get(remote) or _nosec_peer(remote)
        self._address = entry[0]
        self._identity = identity = entry[1]
        return identity

    def __repr__(self) -> str:
        host, port = self.address
        return f"<IncomingRequest {Code(self.message.code).name} from {host}:{port}>"


class _NoSecRequest(IncomingRequest):
    """An :class:`IncomingRequest` from a NoSec socket address, as ``CoapServer._serve`` builds
    it: ``address`` and ``identity`` are plain slots (set from :data:`_nosec_peers` before the
    handler runs) and ``secure`` a class constant, where the base class computes each in a
    property.

    Why: a server reads the address and the identity of every request (a keep-alive Update
    both, a Register those and ``secure``), and each property read was a Python call; a slot
    is a plain load. The values are those the properties give for the same socket address
    (the same cached objects), and nothing changes them over a NoSec request's life, so the
    laziness the properties exist for (a DTLS session's address follows a Connection ID
    change) buys nothing here. A slot of the subclass shadows the base class's property."""

    __slots__ = ("address", "identity")

    secure = False

    address: Key
    identity: PeerIdentity


RequestHandler = Callable[[IncomingRequest], Response]


NOSEC_PEERS_CACHED = 4096
"""At most this many NoSec socket addresses keep their ``(address, identity)`` in
:data:`_nosec_peers`; the cache is emptied when it is full."""

_nosec_peers: dict[Peer, tuple[Key, PeerIdentity]] = {}
"""A NoSec socket address → its ``address`` (:func:`_socket_key`) and its
``PeerIdentity.nosec``: both are values fixed by the socket address alone, and a keep-alive
needs both, so a device (or a load generator's socket) that speaks again gets them with one
dict lookup instead of the address check (``inet_pton``/``inet_ntop`` for a v4-mapped one) and
a new identity (six fields set one at a time). Sharing one identity object between requests is
safe: it is a frozen value, and a registration that holds it compares equal to it either way.

Bounded under spoofed sources: every new source adds one entry, and at
:data:`NOSEC_PEERS_CACHED` entries the whole dict is cleared (no eviction order to keep; the
sources that speak again come back at the cost of one miss each). ~300 bytes an entry, so
at most ~1.2 MB. Process-wide, as the values depend on nothing but the socket address."""


def _nosec_peer(remote: Peer) -> tuple[Key, PeerIdentity]:
    """Compute and remember the ``(address, identity)`` of a NoSec socket address (a miss of
    :data:`_nosec_peers`)."""
    address = _socket_key(remote)
    entry = (address, PeerIdentity.nosec(address))
    if len(_nosec_peers) >= NOSEC_PEERS_CACHED:
        _nosec_peers.clear()  # the bound: a flood of new sources never grows it further
    _nosec_peers[remote] = entry
    return entry


def _is_canonical_ipv4(host: str) -> bool:
    """``host`` is a dotted quad exactly as ``str(IPv4Address)`` writes it (inet_ntop's form)."""
    try:
        return socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, host)) == host
    except (OSError, ValueError):
        return False


def _socket_key(sockaddr: Any) -> Key:
    """``address_key`` of a socket address, without ``ipaddress`` for the usual IPv4 peer.

    Why: parsing the host with ``ipaddress`` cost ~3 µs per request. The kernel reports an
    IPv4 peer as a 2-tuple on an IPv4 socket (``address_key`` returns a host without ':' as
    it is) or ``::ffff:``-mapped in a 4-tuple on a dual-stack one (the dotted quad is taken
    out when it is canonical); any other form (IPv6, a scope id) goes through
    ``address_key``. Called once per NoSec source at most (:data:`_nosec_peers`)."""
    if sockaddr.__class__ is tuple:
        host = sockaddr[0]
        port = sockaddr[1]
        if host.__class__ is str and port.__class__ is int:
            if not host.startswith("::ffff:"):
                if len(sockaddr) == 2 and ":" not in host:
                    # what ``address_key`` gives for a host without ':' (a dotted quad, or a
                    # name in a test): the host unchanged; the very tuple, no new one
                    return sockaddr
            elif len(sockaddr) == 4 and _is_canonical_ipv4(v4 := host[7:]):
                return v4, port
    return address_key(sockaddr)


def _direct(handler: RequestHandler) -> RequestHandler:
    """What to call for ``handler``: an object with a ``__call__`` method (a server's site)
    as its bound ``__call__``, anything else (a function, a bound method) as it is.

    Why: CPython calls an instance through its type's call slot, which looks ``__call__`` up
    and runs it in a new C-level frame of the interpreter (callgrind: ~1,000 instructions a
    call on this interpreter); a bound method is called inline (~400). Per request."""
    # the raw class attribute: a plain function is a method (a function's own ``__call__``
    # is a slot wrapper; a staticmethod or classmethod stays as it is, not bound here)
    call = inspect.getattr_static(type(handler), "__call__", None)
    if isinstance(call, FunctionType):
        bound: RequestHandler = MethodType(call, handler)
        return bound
    return handler


def error_response(exc: Lwm2mError) -> Message:
    """The answer to a request refused with ``exc``: its code, its message as diagnostic
    payload (RFC 7252 §5.5.2)."""
    return Message.response(int(exc.code), exc.message.encode("utf-8", "replace"))


class CoapServer:
    """NoSec and CoAPs listeners serving one handler; see the module docstring."""

    def __init__(
        self,
        handler: RequestHandler,
        *,
        params: Parameters | None = None,
        on_event: Callable[[Event], None] | None = None,
        log_interval: float = 60.0,
        committer: Committer | None = None,
    ) -> None:
        self._handler = handler
        self._call: RequestHandler = _direct(handler)
        self.committer = committer
        """Group commit: both listeners commit through it before their replies leave."""
        self.params = params
        self.on_event = on_event
        self.udp: UdpEndpoint | None = None
        self.coaps: CoapsEndpoint | None = None
        self._refusals = PerPeerLimit(log_interval)
        self._pending: set[asyncio.Task[None]] = set()

    @property
    def handler(self) -> RequestHandler:
        """The request handler (see the module docstring); may be replaced while serving."""
        return self._handler

    @handler.setter
    def handler(self, handler: RequestHandler) -> None:
        self._handler = handler
        self._call = _direct(handler)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(
        self,
        *,
        host: str,
        port: int | None,
        coaps_port: int | None = None,
        dtls_config: ServerConfig | None = None,
        dtls_settings: EndpointSettings | None = None,
        reuse_port: bool = False,
    ) -> None:
        """Listen on ``udp host:port`` (NoSec; None = no NoSec listener) and, given a
        ``dtls_config``, on ``coaps_port``. Port 0 = any free port; ``0.0.0.0``/``::`` = every
        address, one dual-stack socket (IPv4 peers appear v4-mapped, and are shown as IPv4).
        ``reuse_port``: both sockets with SO_REUSEPORT (``lwm2m-server --workers``)."""
        if port is None and (dtls_config is None or coaps_port is None):
            raise ValueError("neither a CoAP nor a CoAPs listener is configured")
        loop = asyncio.get_running_loop()
        try:
            if port is not None:
                sock = await _bound_socket(loop, (host, port), reuse_port=reuse_port)
                try:
                    self.udp = await open_udp_endpoint(
                        host, port, self._udp_event, self.params, sock=sock
                    )
                    self.udp.committer = self.committer
                    # requests straight to ``_serve`` (no event): a bound method whose
                    # driver defaults to this listener's, which CPython calls for less
                    # than a ``functools.partial`` binding the driver
                    self.udp.endpoint.serve = self._serve
                except BaseException:
                    sock.close()
                    raise
            if dtls_config is not None and coaps_port is not None:
                self.coaps = await CoapsEndpoint.open(
                    (host, coaps_port),
                    server_config=dtls_config,
                    handler=self._coaps_event,
                    params=self.params,
                    settings=dtls_settings,
                    reuse_port=reuse_port,
                )
                self.coaps.committer = self.committer
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Close both listeners; requests waiting for an answer fail, handlers still waiting
        are cancelled. When it returns the ports are free (a restart can bind them again)."""
        for task in list(self._pending):
            task.cancel()
        udp, self.udp = self.udp, None
        if udp is not None:
            udp.close()
            await udp.wait_closed()
        coaps, self.coaps = self.coaps, None
        if coaps is not None:
            await coaps.close()

    @property
    def coap_address(self) -> Key | None:
        """Where the NoSec listener is bound (the real port when asked for 0), or None."""
        return None if self.udp is None else address_key(self.udp.local_address)

    @property
    def coaps_address(self) -> Key | None:
        return None if self.coaps is None else self.coaps.local_address

    def listening(self) -> bool:
        """Every listener that was started still has an open socket (servers' readiness)."""
        transports: list[asyncio.BaseTransport | None] = []
        if self.udp is not None:
            transports.append(self.udp.transport)
        if self.coaps is not None:
            transports.append(None if self.coaps.dtls is None else self.coaps.dtls.transport)
        return bool(transports) and all(t is not None and not t.is_closing() for t in transports)

    # -- downlink -------------------------------------------------------------------------------
    async def request(
        self,
        remote: Peer,
        message: Message,
        timeout: float | None = None,
        *,
        on_response: ResponseHook | None = None,
    ) -> Message:
        """Send ``message`` to ``remote`` (a request's ``remote``, or from :meth:`resolve`) and
        await the answer. ``ConnectionError`` when the peer cannot be reached (no ACK, RST, its
        DTLS session closed), ``TimeoutError`` after ``timeout``. ``on_response``: see
        :meth:`CoapDriver.request` (an observer's hook; the handle's notifications then go to
        ``on_event``)."""
        driver = self._driver(remote)
        return await driver.request(remote, message, timeout, on_response=on_response)

    def driver(self, remote: Peer) -> CoapDriver:
        """The driver (and with it the sans-IO endpoint) that serves ``remote``: an observer
        cancels or adopts observations there. ``ConnectionError`` if its listener is closed."""
        return self._driver(remote)

    async def resolve(self, host: str, port: int, *, secure: bool = False) -> Peer:
        """The remote of ``host:port``: a socket address for NoSec, the established DTLS
        session with that address for CoAPs (``ConnectionError`` if there is none)."""
        if secure:
            coaps = self.coaps
            if coaps is None or coaps.dtls is None:
                raise ConnectionError("no CoAPs listener")
            sockaddr = await coaps.dtls.resolve(host, port)
            session = coaps.session_for(*address_key(sockaddr))
            if session is None:
                raise ConnectionError(
                    f"no DTLS session with {host}:{port}: a CoAPs server reaches a device only "
                    "over the session the device opened"
                )
            return session
        udp = self.udp
        if udp is None or udp.transport is None:
            raise ConnectionError("no NoSec CoAP listener")
        family = udp.family
        infos = await asyncio.get_running_loop().getaddrinfo(
            host,
            port,
            family=family,
            type=socket.SOCK_DGRAM,
            flags=socket.AI_V4MAPPED if family == socket.AF_INET6 else 0,
        )
        if not infos:
            raise ConnectionError(f"cannot resolve {host!r}")
        found: Any = infos[0][4]
        return tuple(found)

    def _driver(self, remote: Peer) -> CoapDriver:
        driver: CoapDriver | None = self.coaps if isinstance(remote, Session) else self.udp
        if driver is None:
            raise ConnectionError("the listener of this remote is closed")
        return driver

    # -- events ---------------------------------------------------------------------------------
    def _udp_event(self, event: Event) -> None:
        if event.__class__ is Notification:
            # nearly every event of the NoSec listener (its requests go to ``_serve``, not
            # through events): straight to the hook, what ``_on_event`` does with it, one
            # call less per notification
            on_event = self.on_event
            if on_event is not None:
                on_event(event)
                return
        udp = self.udp
        assert udp is not None
        if type(event) is RequestReceived:
            self._on_request(udp, event)
        else:
            self._on_event(udp, event)

    def _coaps_event(self, event: Event) -> None:
        assert self.coaps is not None
        self._on_event(self.coaps, event)

    def _on_event(self, driver: CoapDriver, event: Event) -> None:
        if isinstance(event, RequestReceived):
            self._on_request(driver, event)
        elif isinstance(event, ProtocolError):
            self._log_refusal(event)
        elif self.on_event is not None:
            self.on_event(event)
        elif isinstance(event, UnknownNotification):
            driver.endpoint.reject_notification(event)  # we observe nothing: RST ends it

    def _on_request(self, driver: CoapDriver, event: RequestReceived) -> None:
        self._serve(event.peer, event.message, event.exchange, driver)

    def _serve(
        self,
        peer: Peer,
        message: Message,
        exchange: Exchange,
        driver: CoapDriver | None = None,
    ) -> None:
        """Answer one request: the NoSec endpoint calls it directly (``Endpoint.serve``; no
        ``driver``: the NoSec listener's), the CoAPs one through its ``RequestReceived``
        events. It never raises (``serve``'s contract): what escapes the handling is logged,
        as the driver logs a failed event handler."""
        try:
            if driver is None:
                driver = self.udp
                assert driver is not None, "a NoSec request after the listener closed"
            # ``IncomingRequest(message, peer, exchange.block2)`` with its ``__init__`` written
            # out: one Python call less per request (a test holds the slots equal)
            request: IncomingRequest
            if peer.__class__ is tuple:
                # a NoSec source: its address and identity (which a server reads for every
                # request) from the per-source table now, one lookup for both, held in plain
                # slots (``_NoSecRequest``: no property call per read)
                entry = _nosec_peers.get(peer) or _nosec_peer(peer)
                request = _new(_NoSecRequest)
                request.address = entry[0]
                request.identity = entry[1]
            else:
                request = _new(IncomingRequest)
                request._address = None
                request._identity = None
            request.message = message
            request.remote = peer
            request.block2 = exchange.block2
            try:
                response = self._call(request)
            except Lwm2mError as exc:
                response = error_response(exc)
            except Exception:
                log.exception("handler failed on %r", request)
                response = Message.response(Code.INTERNAL_SERVER_ERROR)
            # the class first: a handler's answer is a plain Message nearly always, and the
            # test is one comparison where ``isinstance`` is a builtin call
            if response.__class__ is Message or isinstance(response, Message):
                driver.endpoint.respond(exchange, response)
                return
            if inspect.isawaitable(response):
                task = asyncio.ensure_future(self._answer_later(driver, exchange, request,
                                                                response))  # fmt: skip
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
                return
            log.error("handler returned %r for %r, not a Message", response, request)
            driver.endpoint.respond(exchange, Message.response(Code.INTERNAL_SERVER_ERROR))
        except Exception:
            log.exception("CoAP request handling failed for %r", peer)

    async def _answer_later(
        self,
        driver: CoapDriver,
        exchange: Exchange,
        request: IncomingRequest,
        pending: Awaitable[Message],
    ) -> None:
        try:
            response = await pending
        except Lwm2mError as exc:
            response = error_response(exc)
        except asyncio.CancelledError:
            return  # stopping: the client retransmits to whoever serves next
        except Exception:
            log.exception("handler failed on %r", request)
            response = Message.response(Code.INTERNAL_SERVER_ERROR)
        if not driver.closed:
            driver.endpoint.respond(exchange, response)
            driver.kick()

    def _log_refusal(self, event: ProtocolError) -> None:
        peer = event.peer
        host = peer.key[0] if isinstance(peer, Session) else address_key(peer)[0]
        kind = event.kind
        if kind is ErrorKind.PING:
            return  # a CoAP ping is not a refusal; counted in the endpoint
        now = asyncio.get_running_loop().time()
        if not self._refusals.allow(f"{host} {kind.value}", now):
            return
        level = logging.INFO if kind is ErrorKind.UNMATCHED else logging.WARNING
        log.log(level, "CoAP message from %s refused (%s): %s", host, kind.value, event.detail)
