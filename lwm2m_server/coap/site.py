"""The server's CoAP resources: ``/rd`` (Register), ``/rd/{id}`` (Update, De-register),
``/dp`` (Send) and ``/fw/{token}`` (a firmware download, handed to ``firmware.downloads``),
as the request handler of the runtime's ``CoapServer``, translating CoAP into calls on an
``UplinkHandler``.

Only translation lives here: which method on which path, reading the options, and turning the
outcome into a reply. ``Lwm2mError`` becomes its ``code`` with the message as diagnostic
payload (RFC 7252 §5.5.2); an unknown path is 4.04 and a known path with the wrong method 4.05.
Handlers are plain synchronous calls on purpose: they persist before returning, so the reply is
only built — and sent by the runtime at the end of the loop iteration — once the store has what
it acknowledges.

Malformed input is logged at WARNING with the peer's address (never the payload, which may
carry secrets), at most once per peer per minute so that a flood does not flood the log too.
Identity refusals (4.01, 4.03) are not malformed input: they are logged as refusals, with the
same limit, naming the endpoint the request was for and the peer (its DTLS identity as text,
hex or fingerprint: ``PeerIdentity.describe`` never shows key material).

Registers are rate-limited per source host (``register_limit``, a token bucket) before any
work: a source over its rate gets 5.03 Service Unavailable with Max-Age = the seconds until it
may register again (RFC 7252 §5.9.3.4), logged once per host per minute and counted.

A store that cannot be reached (``StoreUnavailable``: Redis down or restarting) is 5.03 with
Max-Age = its ``retry_after`` (RFC 7252 §5.9.3.4), never 5.00 nor 2.xx: nothing was stored, and
the device should retry in a few seconds. The outage is logged once by the store, so the
refusals are DEBUG here.

The peer a Register/Update came from (``IncomingRequest.remote``: the socket address, or the
DTLS session) is handed to ``on_contact``: downlink requests go back exactly there.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from typing import NoReturn, Protocol

from keystore.coaps.sessions import Key
from keystore.log_limit import PerPeerLimit
from keystore.resolver import PeerIdentity as Peer
from keystore.store.errors import StoreUnavailable
from lwm2m_runtime.address import Address
from lwm2m_runtime.coap import Code, Message, OptionNumber, Type, encode_uint
from lwm2m_runtime.limits import RateLimit
from lwm2m_runtime.server import IncomingRequest, error_response
from object_models.codecs import PayloadTooLarge
from object_models.errors import Lwm2mError, ResponseCode

from ..core.registration import Registration

log = logging.getLogger(__name__)


class UplinkHandler(Protocol):
    def handle_register(
        self,
        query: Sequence[str],
        payload: bytes,
        content_format: int | None,
        *,
        address: Address,
        transport: str,
        identity: Peer,
    ) -> Registration: ...

    def handle_update(
        self,
        registration_id: str,
        query: Sequence[str],
        payload: bytes,
        content_format: int | None,
        *,
        source: Key,
        identity: Peer,
    ) -> Registration:
        """``source``: the peer's ``(host, port)`` (``IncomingRequest.address``)."""
        ...

    def handle_deregister(
        self, registration_id: str, *, address: Address, identity: Peer
    ) -> Registration: ...

    def handle_send(
        self,
        payload: bytes,
        content_format: int | None,
        *,
        address: Address,
        identity: Peer,
    ) -> None: ...

    def endpoint_of(self, registration_id: str) -> str | None:
        """The endpoint of a live registration (for logging a refused Update/De-register)."""
        ...


ContactHook = Callable[[Registration, Hashable], None]
"""Told the remote (socket address or DTLS session) a Register/Update came from."""


class RegistrationSite:
    """The whole server-side CoAP tree of the LwM2M server: ``site(request) -> response``."""

    def __init__(
        self,
        handler: UplinkHandler,
        on_contact: ContactHook | None = None,
        register_limit: RateLimit | None = None,
        counts: Counter[tuple[str, str]] | None = None,
        download: Callable[[IncomingRequest], Message] | None = None,
    ) -> None:
        self.handler = handler
        self.download = download
        """``GET /fw/<token>``: the firmware download server (``firmware.downloads``), which
        answers and logs its own refusals (its path holds a credential)."""
        self.counts: Counter[tuple[str, str]] = Counter() if counts is None else counts
        """(operation, CoAP code) of every request answered (``/metrics``)."""
        self.on_contact = on_contact
        self.register_limit = register_limit
        self._limited = PerPeerLimit(60.0)  # rate-limited Registers: one WARNING/host/minute
        self._warn = PerPeerLimit(60.0)  # one WARNING per peer host per minute
        self._refusals = PerPeerLimit(60.0)  # the same for identity refusals, counted apart
        self._not_found = PerPeerLimit(60.0)  # and for 4.04 (INFO), apart again

    def __call__(self, request: IncomingRequest) -> Message:
        message = request.message
        # decoded once, for the dispatch (and the path for the metrics' label)
        path, query, ct = message.path_query_format()
        method = message.code
        if method == _POST and len(path) == 2 and path[0] == "rd":
            # an Update, the most frequent request by far, answered here: what ``_operation``
            # and ``_dispatch`` do for it (operation ``update``, then ``handle_update``), two
            # calls fewer; a refusal is answered and counted as any other
            operation = _UPDATE
            try:
                # the source as a (host, port) tuple: a keep-alive comes from the address it
                # is registered at, whose ``Address`` the handler reuses rather than build one
                registration = self.handler.handle_update(
                    path[1], query, message.payload, ct, source=request.address,
                    identity=request.identity,
                )  # fmt: skip
                if self.on_contact is not None:
                    self.on_contact(registration, request.remote)
                self.counts[_UPDATE_CHANGED] += 1
                return _CHANGED_RESPONSE
            except Lwm2mError as exc:
                response = self._refused(request, Address(*request.address), exc)
        else:
            # the operation, told once from the path and method: the dispatch goes by it too
            operation = _operation(path, method)
            try:
                response = self._dispatch(request, path, query, ct, operation)
            except Lwm2mError as exc:
                response = self._refused(request, Address(*request.address), exc)
        code = response.code
        self.counts[(operation, _CODES.get(code) or _dotted(code))] += 1
        return response

    def _refused(self, request: IncomingRequest, address: Address, exc: Lwm2mError) -> Message:
        """The answer to a request the handler refused with ``exc`` (logged here)."""
        self._log_refusal(request, address, exc)
        if isinstance(exc, PayloadTooLarge):  # RFC 7959 §2.9.3: Size1 = what we take
            return Message.response(
                int(exc.code),
                exc.message.encode(),
                extra=((int(OptionNumber.SIZE1), encode_uint(exc.limit)),),
            )
        if isinstance(exc, StoreUnavailable):  # RFC 7252 §5.9.3.4: retry after Max-Age
            return Message.response(
                int(exc.code),
                exc.message.encode("utf-8", "replace"),
                extra=((int(OptionNumber.MAX_AGE), encode_uint(exc.retry_after)),),
            )
        return error_response(exc)

    def _dispatch(
        self,
        request: IncomingRequest,
        path: list[str],
        query: list[str],
        ct: int | None,
        operation: str,
    ) -> Message:
        """Answer a request to ``path`` (``operation``: ``_operation(path, method)``)."""
        message = request.message
        method = message.code
        identity = request.identity
        payload = message.payload
        if operation is _UPDATE:  # a POST was answered by ``__call__``: another method
            _refuse_method(method)
        address = Address(*request.address)
        if path == ["rd"]:
            if method != _POST:
                _refuse_method(method)
            if self.register_limit is not None:
                wait = self.register_limit.take(address.host, time.monotonic())
                if wait:
                    return self._register_limited(address, wait)
            registration = self.handler.handle_register(
                query,
                payload,
                ct,
                address=address,
                transport="coaps" if request.secure else "coap",
                identity=identity,
            )
            if self.on_contact is not None:
                self.on_contact(registration, request.remote)
            # what ``Message.response(CREATED, location_path=("rd", id))`` builds, built
            # directly: its shape is fixed (2.01, Location-Path rd and the id, no payload)
            return Message(
                _ACK,
                _CREATED,
                0,
                b"",
                (_LOCATION_RD, (_LOCATION_PATH, registration.registration_id.encode())),
                b"",
            )
        if operation is _DEREGISTER:
            self.handler.handle_deregister(path[1], address=address, identity=identity)
            return _DELETED_RESPONSE
        if operation is _SEND:
            if method != _POST:
                _refuse_method(method)
            self.handler.handle_send(payload, ct, address=address, identity=identity)
            return _CHANGED_RESPONSE
        if operation is _FIRMWARE_DOWNLOAD and self.download is not None:
            return self.download(request)
        raise Lwm2mError(f"no resource at /{'/'.join(path)}", code=ResponseCode.NOT_FOUND)

    def _register_limited(self, address: Address, wait: int) -> Message:
        """5.03 with Max-Age: the source registers faster than ``limits.register_rate``."""
        if self._limited.allow(address.host, time.monotonic()):
            log.warning(
                "Register from %s refused with 5.03: over limits.register_rate (retry in %d s)",
                address,
                wait,
            )
        return Message.response(
            Code.SERVICE_UNAVAILABLE,
            b"too many registrations from this address",
            extra=((int(OptionNumber.MAX_AGE), encode_uint(wait)),),
        )

    def _log_refusal(self, request: IncomingRequest, address: Address, exc: Lwm2mError) -> None:
        code = exc.code
        message = request.message
        what = f"{Code(message.code).name} /{'/'.join(message.uri_path)}"
        if isinstance(exc, StoreUnavailable):  # the store logged the outage once
            log.debug("%s from %s refused with %s: %s", what, address, code.dotted, exc.message)
            return
        if code in (ResponseCode.NOT_FOUND, ResponseCode.INTERNAL_SERVER_ERROR):
            # an unknown registration id (a client the server forgot re-registers) and store
            # failures are not malformed input; a 4.04 is still once per peer host a minute
            # (DEBUG after), or a flood of requests for unknown paths floods the log
            level = logging.WARNING if code == ResponseCode.INTERNAL_SERVER_ERROR else logging.INFO
            if code == ResponseCode.NOT_FOUND and not self._not_found.allow(
                address.host, time.monotonic()
            ):
                level = logging.DEBUG
            log.log(
                level, "%s from %s refused with %s: %s", what, address, code.dotted, exc.message
            )
            return
        if code in (ResponseCode.UNAUTHORIZED, ResponseCode.FORBIDDEN):
            self._log_identity_refusal(request, what, address, exc)
            return
        if self._warn.allow(address.host, time.monotonic()):
            log.warning(
                "malformed %s from %s refused with %s: %s", what, address, code.dotted, exc.message
            )
        else:
            log.debug("malformed %s from %s: %s", what, address, exc.message)

    def _log_identity_refusal(
        self, request: IncomingRequest, what: str, address: Address, exc: Lwm2mError
    ) -> None:
        """4.01/4.03: who was refused as which endpoint, and why (the refusal's message)."""
        peer = request.identity.describe()
        endpoint = self._endpoint_hint(request.message)
        target = f" as endpoint {endpoint!r}" if endpoint is not None else ""
        if self._refusals.allow(address.host, time.monotonic()):
            level = logging.WARNING
        else:
            level = logging.DEBUG
        log.log(
            level, "%s refused for %s%s with %s: %s", what, peer, target, exc.code.dotted,
            exc.message,
        )  # fmt: skip

    def _endpoint_hint(self, message: Message) -> str | None:
        """The endpoint a refused request was about: the ``ep`` of a Register, the endpoint of
        the registration an Update/De-register names; None for a Send (its refusal message
        names the endpoints when there are any)."""
        path = message.uri_path
        if path == ["rd"]:
            for item in message.uri_query:
                if item.startswith("ep="):
                    return item[3:]
            return None
        if len(path) == 2 and path[0] == "rd":
            return self.handler.endpoint_of(path[1])
        return None


def _dotted(code: int) -> str:
    return f"{code >> 5}.{code & 0x1F:02d}"


_CODES = {int(c): _dotted(int(c)) for c in Code}
"""Answer codes as the metrics label them (``2.04``), looked up rather than formatted."""


_LOCATION_PATH = int(OptionNumber.LOCATION_PATH)
_LOCATION_RD = (_LOCATION_PATH, b"rd")


_REGISTER = "register"
_UPDATE = "update"
_DEREGISTER = "deregister"
_SEND = "send"
_FIRMWARE_DOWNLOAD = "firmware_download"


def _operation(path: list[str], method: int) -> str:
    """The LwM2M operation a request to the server's tree is (for the metrics' label and the
    dispatch: one of the constants above, compared by identity there), from its Uri-Path and
    method (a method the operation does not take is refused with 4.05 by the dispatch)."""
    if len(path) == 2 and path[0] == "rd":
        return _DEREGISTER if method == _DELETE else _UPDATE
    if path == ["rd"]:
        return _REGISTER
    if path == ["dp"]:
        return _SEND
    if path and path[0] == "fw":
        return _FIRMWARE_DOWNLOAD
    return "other"


def _refuse_method(method: int) -> NoReturn:
    raise Lwm2mError(
        f"method {Code(method).name} not allowed here", code=ResponseCode.METHOD_NOT_ALLOWED
    )


# plain ints and shared answers: an attribute of an enum class costs ~0.1 µs on CPython 3.11
# (EnumType.__getattr__), several per request on this path
_POST = int(Code.POST)
_DELETE = int(Code.DELETE)
_CHANGED_RESPONSE = Message.response(Code.CHANGED)
_UPDATE_CHANGED = (_UPDATE, _CODES[_CHANGED_RESPONSE.code])
"""The metrics' key of an Update answered 2.04 (one tuple, not one per Update)."""
_DELETED_RESPONSE = Message.response(Code.DELETED)
_ACK = Type.ACK
_CREATED = Code.CREATED
