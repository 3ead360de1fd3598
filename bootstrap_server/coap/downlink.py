"""Sending a session's ``Request`` to the client and turning the answer into a ``Reply``.

The request goes to the remote the Bootstrap-Request came from (``message.remote``), so it
leaves through the same socket and, over DTLS, inside the same session: the client's NAT binding
and its DTLS session are the only ways back to it. A server-initiated bootstrap has no such
remote yet and is sent to ``coap://host:port``.

Waiting is the caller's job (the session's deadline); a network-level failure (RST, ICMP
unreachable, retransmissions exhausted) is ``Unreachable`` — for the session, "the client is
gone".
"""

from __future__ import annotations

from typing import Any

import aiocoap
import aiocoap.error
from aiocoap.numbers.codes import Code

from bootstrap_server.core.session import Reply, Request
from lwm2m_runtime.address import Address
from lwm2m_server.coap.transport import uri_base

_METHODS = {"GET": Code.GET, "PUT": Code.PUT, "POST": Code.POST, "DELETE": Code.DELETE}


class Unreachable(Exception):
    """The client cannot be reached any more (the reason says how we know)."""


def build_message(request: Request, *, remote: Any = None, address: Address | None = None) -> Any:
    if remote is not None:
        message = aiocoap.Message(code=_METHODS[request.method], payload=request.payload)
        message.remote = remote
    else:
        assert address is not None
        message = aiocoap.Message(code=_METHODS[request.method], payload=request.payload,
                                  uri=uri_base(address))  # fmt: skip
    message.opt.uri_path = request.uri_path
    if request.content_format is not None:
        message.opt.content_format = request.content_format
    if request.accept is not None:
        message.opt.accept = request.accept
    return message


async def send(context: Any, request: Request, *, remote: Any = None,
               address: Address | None = None) -> Reply:  # fmt: skip
    """Send and wait for the answer (cancel the await to give up on it)."""
    pending = context.request(build_message(request, remote=remote, address=address))
    try:
        response = await pending.response
    except aiocoap.error.Error as exc:
        raise Unreachable(str(exc) or type(exc).__name__) from None
    cf = response.opt.content_format
    return Reply(int(response.code), bytes(response.payload), None if cf is None else int(cf))
