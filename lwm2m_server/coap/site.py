"""The server's CoAP resources: ``/rd`` (Register), ``/rd/{id}`` (Update, De-register) and
``/dp`` (Send), as one aiocoap resource that translates CoAP into calls on an ``UplinkHandler``.

Only translation lives here: which method on which path, reading the options, and turning the
outcome into a reply. ``Lwm2mError`` becomes its ``code`` with the message as diagnostic
payload (RFC 7252 §5.5.2); an unknown path is 4.04 and a known path with the wrong method 4.05.
Handlers are synchronous on purpose: they persist before returning, so the reply is only built
once the store has what it acknowledges.

Malformed input is logged at WARNING with the peer's address (never the payload, which may
carry secrets), at most once per peer per minute so that a flood does not flood the log too.
Identity refusals (4.01, 4.03) are not malformed input: they are logged as refusals, with the
same limit, naming the endpoint the request was for and the peer (its DTLS identity as text,
hex or fingerprint: ``PeerIdentity.describe`` never shows key material).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

import aiocoap
import aiocoap.resource
from aiocoap.numbers.codes import Code

from keystore.coaps.identity import peer_of
from keystore.log_limit import PerPeerLimit
from keystore.resolver import PeerIdentity as Peer
from lwm2m_runtime.address import Address
from object_models.errors import Lwm2mError, ResponseCode

from ..core.registration import Registration
from .transport import peer_address

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
        address: Address,
        identity: Peer,
    ) -> Registration: ...

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


def error_message(exc: Lwm2mError) -> Any:
    return aiocoap.Message(code=Code(int(exc.code)), payload=exc.message.encode("utf-8", "replace"))


def identity_of(remote: Any, address: Address) -> Peer:
    """Who sent the request: the identity the DTLS handshake authenticated (``keystore.coaps``
    lists it in ``remote.authenticated_claims``), or a NoSec peer. Which endpoint that peer may
    be is the uplink's question (``Resolver.resolve``)."""
    return peer_of(remote, (address.host, address.port))


class RegistrationSite(aiocoap.resource.Resource, aiocoap.resource.PathCapable):  # type: ignore[misc]
    """The whole server-side CoAP tree of the LwM2M server."""

    def __init__(self, handler: UplinkHandler) -> None:
        super().__init__()
        self.handler = handler
        self._warn = PerPeerLimit(60.0)  # one WARNING per peer host per minute
        self._refusals = PerPeerLimit(60.0)  # the same for identity refusals, counted apart

    async def render(self, request: Any) -> Any:
        address = peer_address(request.remote)
        try:
            return self._dispatch(request, address)
        except Lwm2mError as exc:
            self._log_refusal(request, address, exc)
            return error_message(exc)

    def _dispatch(self, request: Any, address: Address) -> Any:
        path = [s for s in request.opt.uri_path]
        method = request.code
        identity = identity_of(request.remote, address)
        cf = request.opt.content_format
        ct = None if cf is None else int(cf)
        query = list(request.opt.uri_query)
        payload = bytes(request.payload)
        if path == ["rd"]:
            _allow(method, Code.POST)
            scheme = getattr(request.remote, "scheme", "coap")
            registration = self.handler.handle_register(
                query,
                payload,
                ct,
                address=address,
                transport="coaps" if scheme == "coaps" else "coap",
                identity=identity,
            )
            return aiocoap.Message(
                code=Code.CREATED, location_path=("rd", registration.registration_id)
            )
        if len(path) == 2 and path[0] == "rd":
            _allow(method, Code.POST, Code.DELETE)
            if method == Code.DELETE:
                self.handler.handle_deregister(path[1], address=address, identity=identity)
                return aiocoap.Message(code=Code.DELETED)
            self.handler.handle_update(
                path[1], query, payload, ct, address=address, identity=identity
            )
            return aiocoap.Message(code=Code.CHANGED)
        if path == ["dp"]:
            _allow(method, Code.POST)
            self.handler.handle_send(payload, ct, address=address, identity=identity)
            return aiocoap.Message(code=Code.CHANGED)
        raise Lwm2mError(f"no resource at /{'/'.join(path)}", code=ResponseCode.NOT_FOUND)

    def _log_refusal(self, request: Any, address: Address, exc: Lwm2mError) -> None:
        code = exc.code
        what = f"{request.code} /{'/'.join(request.opt.uri_path)}"
        if code in (ResponseCode.NOT_FOUND, ResponseCode.INTERNAL_SERVER_ERROR):
            # an unknown registration id (a client the server forgot re-registers) and store
            # failures are not malformed input
            level = logging.WARNING if code == ResponseCode.INTERNAL_SERVER_ERROR else logging.INFO
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
        self, request: Any, what: str, address: Address, exc: Lwm2mError
    ) -> None:
        """4.01/4.03: who was refused as which endpoint, and why (the refusal's message)."""
        peer = identity_of(request.remote, address).describe()
        endpoint = self._endpoint_hint(request)
        target = f" as endpoint {endpoint!r}" if endpoint is not None else ""
        if self._refusals.allow(address.host, time.monotonic()):
            level = logging.WARNING
        else:
            level = logging.DEBUG
        log.log(
            level, "%s refused for %s%s with %s: %s", what, peer, target, exc.code.dotted,
            exc.message,
        )  # fmt: skip

    def _endpoint_hint(self, request: Any) -> str | None:
        """The endpoint a refused request was about: the ``ep`` of a Register, the endpoint of
        the registration an Update/De-register names; None for a Send (its refusal message
        names the endpoints when there are any)."""
        path = list(request.opt.uri_path)
        if path == ["rd"]:
            for item in request.opt.uri_query:
                if item.startswith("ep="):
                    return str(item[3:])
            return None
        if len(path) == 2 and path[0] == "rd":
            return self.handler.endpoint_of(path[1])
        return None

    def get_link_description(self) -> Any:
        return None


def _allow(method: Any, *allowed: Any) -> None:
    if method not in allowed:
        raise Lwm2mError(f"method {method} not allowed here", code=ResponseCode.METHOD_NOT_ALLOWED)
