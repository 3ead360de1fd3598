"""Sending a ``DownlinkRequest`` through the server's aiocoap context.

Requests go to the address the client registered from, below its alternate root path
(``</lwm2m>;rt="oma.lwm2m"`` → ``/lwm2m/3/0``), from the same socket that serves ``/rd``.
A request that gets no answer within ``timeout`` seconds is abandoned (aiocoap stops
retransmitting it) and reported as ``DeviceTimeoutError``; so are network-level failures (RST to
our CON, retransmissions exhausted, ICMP unreachable): for the caller they all mean "the device
did not answer".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import aiocoap
import aiocoap.error
from aiocoap.numbers.codes import Code

from ..core.registration import Registration
from ..operations import DeviceTimeoutError
from .requests import DownlinkRequest, RawResponse
from .transport import TokenPolicy, release_request, uri_base

log = logging.getLogger(__name__)

_METHODS = {
    "GET": Code.GET,
    "PUT": Code.PUT,
    "POST": Code.POST,
    "DELETE": Code.DELETE,
    "FETCH": Code.FETCH,
    "IPATCH": Code.iPATCH,
}


def build_message(registration: Registration, request: DownlinkRequest) -> Any:
    scheme = "coaps" if registration.transport == "coaps" else "coap"
    message = aiocoap.Message(
        code=_METHODS[request.method],
        uri=uri_base(registration.address, scheme),
        payload=request.payload,
    )
    root = [s for s in registration.object_links.root_path.split("/") if s]
    message.opt.uri_path = tuple(root + [str(i) for i in request.path.ids])
    if request.query:
        message.opt.uri_query = request.query
    if request.content_format is not None:
        message.opt.content_format = request.content_format
    if request.accept is not None:
        message.opt.accept = request.accept
    if request.observe is not None:
        message.opt.observe = request.observe
    return message


def raw_response(message: Any) -> RawResponse:
    cf = message.opt.content_format
    return RawResponse(
        code=int(message.code),
        payload=bytes(message.payload),
        content_format=None if cf is None else int(cf),
        location_path=tuple(message.opt.location_path),
        observe=message.opt.observe,
        token=bytes(message.token or b""),
    )


class Downlink:
    """Sends requests from ``context``; ``tokens`` is the context's installed ``TokenPolicy``."""

    def __init__(self, context: Any, tokens: TokenPolicy) -> None:
        self.context = context
        self.tokens = tokens

    async def send(
        self,
        registration: Registration,
        request: DownlinkRequest,
        timeout: float,
        *,
        on_observe: Callable[[RawResponse], None] | None = None,
    ) -> RawResponse:
        """Send and wait for the answer.

        For an Observe that the device accepts, ``on_observe(raw)`` runs in the response
        future's done-callback and aiocoap's request is then released (``release_request``),
        so later notifications go by token to the server's notification hook, the same path as
        after a restart. A done-callback, not the code after ``await``: it runs in the loop
        iteration right after the response, before the next datagram is read, so even an
        immediate first notification finds the observation indexed."""
        message = build_message(registration, request)
        # Observations and their cancels need the token of the *first* message and no
        # block-wise wrapper around it; other requests get aiocoap's block-wise handling.
        plain = request.observe is not None
        if request.token is not None:
            self.tokens.force(message, request.token)
        pending = self.context.request(message, handle_blockwise=not plain)
        if request.observe == 0:
            pending.response.add_done_callback(
                lambda future: self._accepted(future, pending, on_observe)
            )
        try:
            response = await asyncio.wait_for(pending.response, timeout)
        except TimeoutError:
            raise DeviceTimeoutError(
                f"{registration.endpoint!r} did not answer {request.describe()} within "
                f"{timeout:g} s"
            ) from None
        except aiocoap.error.Error as exc:
            raise DeviceTimeoutError(
                f"{registration.endpoint!r} unreachable for {request.describe()}: {exc}"
            ) from None
        finally:
            self.tokens.discard(message)
        return raw_response(response)

    @staticmethod
    def _accepted(
        future: Any, pending: Any, on_observe: Callable[[RawResponse], None] | None
    ) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        raw = raw_response(future.result())
        if not raw.success or raw.observe is None:
            return  # not observable: aiocoap ends its request itself
        try:
            if on_observe is not None:
                on_observe(raw)
        except Exception:
            log.exception("keeping the new observation failed")
        finally:
            release_request(pending)
