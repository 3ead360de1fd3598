"""``POST /bs?ep=&pct=`` (Bootstrap-Request) and ``GET /bspack?ep=`` (Bootstrap-Pack-Request,
LwM2M 1.2): the request handler of the runtime's ``CoapServer``, translating CoAP into calls on
a ``BootstrapHandler``.

Translation only, as in the LwM2M server's site: the peer's identity comes from the transport
(``request.identity``: the DTLS claim of the session, or NoSec), and an ``Lwm2mError`` becomes its
CoAP code with the message as diagnostic payload. ``/bs`` is answered 2.04 before the session's
first request goes out (the handler only schedules it, and the runtime sends the answer ahead of
anything queued after it), as Core §6.1.7.1 orders. A plain call: nothing here waits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Protocol

from keystore.log_limit import PerPeerLimit
from keystore.resolver import PeerIdentity
from lwm2m_runtime.address import Address
from lwm2m_runtime.coap import Code, Message
from lwm2m_runtime.server import IncomingRequest, Peer, error_response
from object_models.errors import Lwm2mError, ResponseCode

log = logging.getLogger(__name__)


class BootstrapHandler(Protocol):
    def handle_bootstrap_request(
        self, query: Sequence[str], *, peer: PeerIdentity, address: Address, remote: Peer
    ) -> None: ...

    def handle_bootstrap_pack(
        self, query: Sequence[str], accept: int | None, *, peer: PeerIdentity
    ) -> tuple[bytes, int]: ...


class BootstrapSite:
    """``site(request) -> response`` for ``CoapServer``."""

    def __init__(self, handler: BootstrapHandler, log_interval: float = 60.0) -> None:
        self.handler = handler
        self._refusals = PerPeerLimit(log_interval)

    def __call__(self, request: IncomingRequest) -> Message:
        try:
            return self._dispatch(request)
        except Lwm2mError as exc:
            self._log_refusal(request, exc)
            return error_response(exc)

    def _log_refusal(self, request: IncomingRequest, exc: Lwm2mError) -> None:
        """INFO once per peer host and code per ``log_interval`` (a device retrying, or a flood
        of bad requests, is one line a minute), DEBUG otherwise."""
        host = request.address[0]
        first = self._refusals.allow(f"{host} {exc.code.dotted}", time.monotonic())
        if first or log.isEnabledFor(logging.DEBUG):
            message = request.message
            log.log(logging.INFO if first else logging.DEBUG,
                    "%s /%s from %s refused with %s: %s", Code(message.code).name,
                    "/".join(message.uri_path), Address(*request.address), exc.code.dotted,
                    exc.message)  # fmt: skip

    def _dispatch(self, request: IncomingRequest) -> Message:
        message = request.message
        path = message.uri_path
        query = message.uri_query
        if path == ["bs"]:
            _allow(message.code, Code.POST)
            self.handler.handle_bootstrap_request(
                query, peer=request.identity, address=Address(*request.address),
                remote=request.remote,
            )  # fmt: skip
            return Message.response(Code.CHANGED)
        if path == ["bspack"]:
            _allow(message.code, Code.GET)
            payload, fmt = self.handler.handle_bootstrap_pack(
                query, message.accept, peer=request.identity
            )
            return Message.response(Code.CONTENT, payload, content_format=fmt)
        raise Lwm2mError(f"no resource at /{'/'.join(path)}", code=ResponseCode.NOT_FOUND)


def _allow(method: int, allowed: Code) -> None:
    if method != allowed:
        raise Lwm2mError(f"method {Code(method).name} not allowed here",
                         code=ResponseCode.METHOD_NOT_ALLOWED)  # fmt: skip
