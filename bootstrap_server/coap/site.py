"""``POST /bs?ep=&pct=`` (Bootstrap-Request) and ``GET /bspack?ep=`` (Bootstrap-Pack-Request,
LwM2M 1.2) as one aiocoap resource translating CoAP into calls on a ``BootstrapHandler``.

Translation only, as in the LwM2M server's site: the peer's identity comes from the transport
(``keystore.coaps.peer_of``: the DTLS claim, or NoSec), and an ``Lwm2mError`` becomes its CoAP
code with the message as diagnostic payload. ``/bs`` is answered 2.04 before the session's
first request goes out (the handler only schedules it), as Core §6.1.7.1 orders.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

import aiocoap
import aiocoap.resource
from aiocoap.numbers.codes import Code

from keystore.coaps import peer_of
from keystore.resolver import PeerIdentity
from lwm2m_runtime.address import Address
from lwm2m_server.coap.site import error_message
from lwm2m_server.coap.transport import peer_address
from object_models.errors import Lwm2mError, ResponseCode

log = logging.getLogger(__name__)


class BootstrapHandler(Protocol):
    def handle_bootstrap_request(
        self, query: Sequence[str], *, peer: PeerIdentity, address: Address, remote: Any
    ) -> None: ...

    def handle_bootstrap_pack(
        self, query: Sequence[str], accept: int | None, *, peer: PeerIdentity
    ) -> tuple[bytes, int]: ...


class BootstrapSite(aiocoap.resource.Resource, aiocoap.resource.PathCapable):  # type: ignore[misc]
    def __init__(self, handler: BootstrapHandler) -> None:
        super().__init__()
        self.handler = handler

    async def render(self, request: Any) -> Any:
        address = peer_address(request.remote)
        try:
            return self._dispatch(request, address)
        except Lwm2mError as exc:
            log.info("%s /%s from %s refused with %s: %s", request.code,
                     "/".join(request.opt.uri_path), address, exc.code.dotted,
                     exc.message)  # fmt: skip
            return error_message(exc)

    def _dispatch(self, request: Any, address: Address) -> Any:
        path = list(request.opt.uri_path)
        query = list(request.opt.uri_query)
        peer = peer_of(request.remote, (address.host, address.port))
        if path == ["bs"]:
            _allow(request.code, Code.POST)
            self.handler.handle_bootstrap_request(query, peer=peer, address=address,
                                                  remote=request.remote)  # fmt: skip
            return aiocoap.Message(code=Code.CHANGED)
        if path == ["bspack"]:
            _allow(request.code, Code.GET)
            accept = request.opt.accept
            payload, fmt = self.handler.handle_bootstrap_pack(
                query, None if accept is None else int(accept), peer=peer
            )
            return aiocoap.Message(code=Code.CONTENT, payload=payload, content_format=fmt)
        raise Lwm2mError(f"no resource at /{'/'.join(path)}", code=ResponseCode.NOT_FOUND)

    def get_link_description(self) -> Any:
        return None


def _allow(method: Any, allowed: Any) -> None:
    if method != allowed:
        raise Lwm2mError(f"method {method} not allowed here", code=ResponseCode.METHOD_NOT_ALLOWED)
