"""Sending a session's ``Request`` to the client and turning the answer into a ``Reply``.

The request goes to the remote the Bootstrap-Request came from (``IncomingRequest.remote``), so
it leaves through the same socket and, over DTLS, inside the same session: the client's NAT
binding and its DTLS session are the only ways back to it (and an answer is only accepted from
that same session). A server-initiated bootstrap has no such remote yet and is sent over NoSec
to ``host:port``.

Waiting is the caller's job (the session's deadline); a network-level failure (RST, no ACK after
the retransmissions, the DTLS session closed, an address that does not resolve) is
``Unreachable`` — for the session, "the client is gone". Bodies larger than one datagram (a big
Bootstrap-Write) go out block-wise (Block1) and large answers are followed (Block2) by the
runtime's CoAP layer.
"""

from __future__ import annotations

from bootstrap_server.core.session import Reply, Request
from lwm2m_runtime.address import Address
from lwm2m_runtime.coap import Code, Message
from lwm2m_runtime.server import CoapServer, Peer

_METHODS = {"GET": Code.GET, "PUT": Code.PUT, "POST": Code.POST, "DELETE": Code.DELETE}


class Unreachable(Exception):
    """The client cannot be reached any more (the reason says how we know)."""


def build_message(request: Request) -> Message:
    return Message.request(
        _METHODS[request.method],
        request.uri_path,
        payload=request.payload,
        content_format=request.content_format,
        accept=request.accept,
    )


async def send(server: CoapServer, request: Request, *, remote: Peer | None = None,
               address: Address | None = None) -> Reply:  # fmt: skip
    """Send and wait for the answer (cancel the await to give up on it)."""
    try:
        if remote is None:
            assert address is not None
            remote = await server.resolve(address.host, address.port)
        response = await server.request(remote, build_message(request))
    except (ConnectionError, OSError) as exc:
        raise Unreachable(str(exc) or type(exc).__name__) from None
    return Reply(response.code, response.payload, response.content_format)
