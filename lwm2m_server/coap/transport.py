"""Building the aiocoap context of a server, and the few places where we reach into aiocoap.

Shared by the LwM2M server and (later) the bootstrap server: ``create_context`` opens the NoSec
UDP listener and, given a DTLS ``ServerConfig``, the CoAPs listener (``keystore.coaps``: our DTLS
engine as one more aiocoap message interface in the same context).

One context does everything: it serves ``/rd``, ``/dp`` (and ``/bs``) and sends the downlink
requests, so a device sees our requests come from the address it registered with (NAT
bindings and firewalls on the device side only let that address in).

aiocoap internals we rely on (aiocoap 0.4.x; ``install_*`` check for them and fail loudly with a
clear message if a future aiocoap moves them, rather than silently misbehaving):

* **Tokens.** ``TokenManager.next_token`` counts up from a random 16-bit start, so tokens are
  1-2 bytes and a restarted server can hand out a token that a pre-restart observation still
  uses. We replace it with 8 random bytes (collisions between 100k observations are ~1e-9).
  It also ignores any token set on a request, but cancelling an observation actively (GET with
  Observe=1) must reuse the observation's token (RFC 7641 §3.6): ``TokenPolicy.force`` passes a
  chosen token to the next request of a given message.
* **Notifications for tokens aiocoap does not know.** aiocoap keeps client-side observations
  in memory only; after a restart (or once we released the aiocoap request, see
  ``release_request``) a notification matches no outgoing request, and ``MessageManager``
  answers a CON with RST, which ends the observation on the device. ``install_notification_hook``
  wraps ``MessageManager.dispatch_message``: a CON/NON response that no outgoing request waits
  for is first offered to our hook, which looks the token up in the persisted observations and
  decides: ACK (stored), RST (cancelled), RST and nothing else (not from the observation's
  peer: a token proves nothing about who sends it), or nothing (store failed: the device
  retransmits).
* **Exchanges nobody waits for.** aiocoap sends at most one CON at a time per peer (NSTART=1,
  RFC 7252 §4.7) and backlogs the rest, but a request whose caller gave up keeps its CON
  exchange: it is retransmitted until MAX_TRANSMIT_WAIT (up to 93 s), every later request to
  that device waits behind it, and when the retransmissions run out aiocoap fails *all*
  requests to the peer, the backlogged ones unsent. ``Exchanges`` ties the messages on the wire
  to the downlink request that sent them, so that a request that ends (answered, timed out,
  cancelled) gives up its CON exchange and its backlog place (§4.2: a sender MAY give up on a
  CON once the application no longer needs the answer), and exhausted retransmissions fail only
  the request they belong to (``install_exchange_limits``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import enum
import ipaddress
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import aiocoap
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type

from keystore.coaps import CoapsMessageInterface, EndpointSettings, add_coaps_transport
from keystore.dtls import ServerConfig
from lwm2m_runtime.address import Address

log = logging.getLogger(__name__)

TOKEN_LENGTH = 8


async def create_context(
    site: Any,
    *,
    host: str,
    port: int | None,
    coaps_port: int | None = None,
    coaps_config: ServerConfig | None = None,
    coaps_settings: EndpointSettings | None = None,
) -> Any:
    """An aiocoap server context serving ``site`` on ``udp host:port`` (0 = ephemeral; None =
    no NoSec listener), and on ``coaps_port`` (DTLS) too when a ``coaps_config`` is given.

    ``0.0.0.0`` means every address: aiocoap's ``udp6`` transport is one IPv6 socket with
    V6ONLY off, so it is bound to ``::`` and serves IPv4 peers as v4-mapped addresses (the
    CoAPs socket does the same).
    """
    bind_host = "::" if host in ("0.0.0.0", "", "*") else host
    if port is not None:
        context = await aiocoap.Context.create_server_context(
            site, bind=(bind_host, port), transports=["udp6"], loggername="coap-server"
        )
    else:
        # NoSec disabled: no plain listener at all. ``create_server_context(transports=[])``
        # would fall back to aiocoap's default transports, so the context is built by hand.
        if coaps_config is None or coaps_port is None:
            raise ValueError("neither a CoAP nor a CoAPs listener is configured")
        context = aiocoap.Context(
            loop=asyncio.get_running_loop(), serversite=site, loggername="coap-server"
        )
    if coaps_config is not None and coaps_port is not None:
        try:
            await add_coaps_transport(
                context,
                bind=(bind_host, coaps_port),
                server_config=coaps_config,
                settings=coaps_settings,
            )
        except BaseException:
            await context.shutdown()
            raise
    return context


def coaps_interface(context: Any) -> CoapsMessageInterface | None:
    """The context's CoAPs message interface, if it has one."""
    for manager in getattr(context, "request_interfaces", []):
        interface = getattr(getattr(manager, "token_interface", None), "message_interface", None)
        if isinstance(interface, CoapsMessageInterface):
            return interface
    return None


def _token_managers(context: Any) -> list[Any]:
    managers = [
        ri
        for ri in getattr(context, "request_interfaces", [])
        if hasattr(ri, "next_token") and hasattr(ri, "outgoing_requests")
    ]
    if not managers:
        raise RuntimeError(
            "no aiocoap TokenManager on the context: this aiocoap version is not supported "
            "by lwm2m_server.coap.transport"
        )
    return managers


def local_address(context: Any) -> Address:
    """The (host, port) the context's UDP socket is bound to (for logs and ephemeral ports)."""
    for manager in _token_managers(context):
        mm = getattr(manager, "token_interface", None)
        transport = getattr(getattr(mm, "message_interface", None), "transport", None)
        if transport is None:
            continue
        sock = transport.get_extra_info("socket")
        sockname = transport.get_extra_info("sockname") or (sock.getsockname() if sock else None)
        if sockname:
            return Address(plain_host(str(sockname[0])), int(sockname[1]))
    raise RuntimeError("cannot find the local address of the aiocoap context")


def plain_host(host: str) -> str:
    """``::ffff:10.0.0.1`` → ``10.0.0.1``; other addresses unchanged (compressed)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return host


def peer_address(remote: Any) -> Address:
    """The ``Address`` of an aiocoap remote (``UDP6EndpointAddress`` or any with hostinfo)."""
    sockaddr = getattr(remote, "sockaddr", None)
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        return Address(plain_host(str(sockaddr[0])), int(sockaddr[1]))
    from aiocoap.util import hostportsplit

    host, port = hostportsplit(remote.hostinfo)
    return Address(plain_host(host), int(port or 5683))


def uri_base(address: Address, scheme: str = "coap") -> str:
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"{scheme}://{host}:{address.port}"


# -- tokens ---------------------------------------------------------------------------------------


class TokenPolicy:
    """Random 8-byte tokens, and a way to send a request with a chosen token."""

    def __init__(self) -> None:
        self._forced: dict[int, bytes] = {}
        self._next: bytes | None = None

    def install(self, context: Any) -> None:
        for manager in _token_managers(context):
            original_request = manager.request

            def request(pipe: Any, _original: Callable[[Any], None] = original_request) -> None:
                self._next = self._forced.pop(id(pipe.request), None)
                try:
                    _original(pipe)
                finally:
                    self._next = None

            manager.next_token = self.next_token
            manager.request = request

    def next_token(self) -> bytes:
        token = self._next
        self._next = None
        return token if token is not None else secrets.token_bytes(TOKEN_LENGTH)

    def force(self, message: Any, token: bytes) -> None:
        """Send ``message`` (a request given to ``context.request(..., handle_blockwise=False)``)
        with ``token``."""
        self._forced[id(message)] = token

    def discard(self, message: Any) -> None:
        self._forced.pop(id(message), None)


def release_request(request: Any) -> None:
    """Make aiocoap forget an observation request after its first response, so that later
    notifications on its token reach ``install_notification_hook`` (one path for live and
    restored observations) and the request does not pin memory for the observation's life.
    Sends nothing."""
    observation = getattr(request, "observation", None)
    if observation is not None and not observation.cancelled:
        observation.cancel()
    stop = getattr(request, "_stop_interest", None)
    if stop is not None:
        stop()


# -- exchanges ------------------------------------------------------------------------------------


class Sent:
    """The CON/NON messages one downlink request put on the wire (or in aiocoap's backlog)."""

    def __init__(self) -> None:
        self.messages: list[tuple[Any, Any]] = []  # (MessageManager, aiocoap.Message)


_current: contextvars.ContextVar[Sent | None] = contextvars.ContextVar(
    "lwm2m_server_sent", default=None
)


class Exchanges:
    """Which wire messages belong to which downlink request, and giving them up.

    ``context.request`` sends from tasks it creates; they inherit the context variables of the
    caller, so a request made inside ``with exchanges.track() as sent`` records every message
    it sends (blocks of a block-wise transfer included) in ``sent``."""

    def install(self, context: Any) -> None:
        for manager in _token_managers(context):
            mm = manager.token_interface
            for needed in ("_active_exchanges", "_backlogs", "_continue_backlog"):
                if not hasattr(mm, needed):
                    raise RuntimeError(
                        f"aiocoap MessageManager has no {needed}: this aiocoap version is not "
                        "supported by lwm2m_server.coap.transport"
                    )
            original_request = manager.request

            def request(
                pipe: Any, _original: Callable[[Any], None] = original_request, _mm: Any = mm
            ) -> None:
                _original(pipe)
                sent = _current.get()
                if sent is not None and getattr(pipe.request, "mid", None) is not None:
                    sent.messages.append((_mm, pipe.request))

            manager.request = request

    @staticmethod
    @contextlib.contextmanager
    def track() -> Iterator[Sent]:
        sent = Sent()
        reset = _current.set(sent)
        try:
            yield sent
        finally:
            _current.reset(reset)

    @staticmethod
    def abandon(sent: Sent) -> int:
        """Stop retransmitting ``sent``'s CONs and drop them from the backlog (never sent
        late), so the next request to that peer goes out now. Returns how many were dropped."""
        dropped = 0
        for mm, message in sent.messages:
            exchanges = mm._active_exchanges
            if exchanges is None:  # shutting down
                continue
            key = (message.remote, message.mid)
            if key in exchanges:
                _monitor, retransmission = exchanges.pop(key)
                retransmission.cancel()
                dropped += 1
                if message.remote in mm._backlogs:
                    mm._continue_backlog(message.remote)
                continue
            backlog = mm._backlogs.get(message.remote)
            if backlog:
                kept = [entry for entry in backlog if entry[0] is not message]
                dropped += len(backlog) - len(kept)
                backlog[:] = kept
        sent.messages.clear()
        return dropped


def install_exchange_limits(context: Any) -> None:
    """When a CON's retransmissions run out, fail only the request it belongs to and send the
    next one waiting for that peer. aiocoap fails every request to the peer and discards its
    backlog unsent, so a single lost request would fail requests the device never saw."""
    for manager in _token_managers(context):
        mm = manager.token_interface
        if not hasattr(mm, "_retransmit"):
            raise RuntimeError(
                "aiocoap MessageManager has no _retransmit: this aiocoap version is not "
                "supported by lwm2m_server.coap.transport"
            )
        original = mm._retransmit

        def retransmit(
            message: Any,
            timeout: float,
            counter: int,
            _original: Callable[[Any, float, int], None] = original,
            _mm: Any = mm,
        ) -> None:
            key = (message.remote, message.mid)
            if counter < message.transport_tuning.MAX_RETRANSMIT or key not in (
                _mm._active_exchanges or {}
            ):
                _original(message, timeout, counter)
                return
            monitor, retransmission = _mm._active_exchanges.pop(key)
            retransmission.cancel()
            log.debug("no ACK from %s after %d retransmissions", message.remote, counter)
            monitor()  # the request fails (aiocoap: MessageError)
            if message.remote in _mm._backlogs:
                _mm._continue_backlog(message.remote)

        mm._retransmit = retransmit


# -- notifications ------------------------------------------------------------------------------


class Verdict(enum.Enum):
    NOT_MINE = "not-mine"  # let aiocoap handle it (it RSTs a CON it cannot match)
    ACCEPT = "accept"  # ACK a CON
    REJECT = "reject"  # RST (CON or NON): the observation is cancelled or unknown
    IGNORE = "ignore"  # no answer: the device retransmits (we could not store it)
    REFUSE = "refuse"  # not from the observation's peer: RST a CON, drop a NON, keep no state


NotificationKey = tuple[str, Address, int]
"""(scheme, source address, message id): what a retransmitted notification repeats."""


NotificationHook = Callable[[Any, Address], Verdict]


class _Duplicates:
    """Recently accepted (remote, message id) pairs: aiocoap does not deduplicate responses,
    and a CON notification whose ACK got lost comes again; it must not be stored twice."""

    def __init__(self, lifetime: float = 247.0, limit: int = 100_000) -> None:
        self.lifetime = lifetime
        self.limit = limit
        self._seen: OrderedDict[NotificationKey, float] = OrderedDict()

    def seen(self, key: NotificationKey, now: float) -> bool:
        while self._seen:
            oldest_key, expires = next(iter(self._seen.items()))
            if expires > now and len(self._seen) <= self.limit:
                break
            del self._seen[oldest_key]
        return key in self._seen

    def add(self, key: NotificationKey, now: float) -> None:
        self._seen[key] = now + self.lifetime


def install_notification_hook(context: Any, hook: NotificationHook) -> None:
    """Route responses no aiocoap request waits for (notifications of restored or released
    observations) through ``hook``; see the module docstring."""
    duplicates = _Duplicates()
    for manager in _token_managers(context):
        mm = manager.token_interface
        for needed in ("dispatch_message", "_send_empty_ack", "_send_initially"):
            if not hasattr(mm, needed):
                raise RuntimeError(
                    f"aiocoap MessageManager has no {needed}: this aiocoap version is not "
                    "supported by lwm2m_server.coap.transport"
                )
        _wrap_dispatch(manager, mm, hook, duplicates)


def _wrap_dispatch(manager: Any, mm: Any, hook: NotificationHook, duplicates: _Duplicates) -> None:
    original = mm.dispatch_message

    def dispatch_message(message: Any) -> None:
        if (
            message.code.is_response()
            and message.mtype in (Type.CON, Type.NON)
            and (message.token, message.remote) not in manager.outgoing_requests
        ):
            address = peer_address(message.remote)
            # the scheme too: a plain datagram from a DTLS device's host:port is not a
            # retransmission of what its session sent
            key = (str(getattr(message.remote, "scheme", "coap")), address, message.mid)
            now = time.monotonic()
            if duplicates.seen(key, now):
                if message.mtype == Type.CON:
                    mm._send_empty_ack(message.remote, message.mid, "duplicate notification")
                return
            try:
                verdict = hook(message, address)
            except Exception:
                log.exception("notification handler failed for %s", address)
                verdict = Verdict.IGNORE
            if verdict is Verdict.NOT_MINE:
                original(message)
                return
            if verdict is Verdict.ACCEPT:
                duplicates.add(key, now)
                if message.mtype == Type.CON:
                    mm._send_empty_ack(message.remote, message.mid, "notification stored")
            elif verdict is Verdict.REFUSE:
                # RFC 7252 §4.2: a CON that cannot be processed is rejected with RST; a NON
                # is just dropped (an RST would only help a forger probe tokens)
                if message.mtype == Type.CON:
                    rst = aiocoap.Message(_mtype=Type.RST, _mid=message.mid, code=Code.EMPTY)
                    rst.remote = message.remote.as_response_address()
                    mm._send_initially(rst)
            elif verdict is Verdict.REJECT:
                rst = aiocoap.Message(_mtype=Type.RST, _mid=message.mid, code=Code.EMPTY)
                rst.remote = message.remote.as_response_address()
                mm._send_initially(rst)
            return
        original(message)

    mm.dispatch_message = dispatch_message
